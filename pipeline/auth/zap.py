"""pyzmq's ZAP handler thread, which also asks whether a connection its checks let in may open now.

Imported by servers alone (``pipeline.auth.curve``): it loads asyncio, which a client does not need.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator

#: The ZAP status of a connection turned away for now. libzmq 4.3 tells the client nothing: the server reports it
#: (HANDSHAKE_FAILED_AUTH 300) and holds the connection until its handshake times out (``handshake_ivl``); the client
#: then sees a connection closed during its handshake, and connects again.
TRY_LATER = b"300"
#: The version of the ZAP protocol (ZeroMQ RFC 27) that libzmq speaks; the first frame of every reply.
ZAP_VERSION = b"1.0"


class AdmittingAuthenticator(ThreadAuthenticator):
    """pyzmq's ZAP handler in a thread; a request it would let in (``lets_in``) must then be admitted by ``admit``,
    else it is told to try later (TRY_LATER), so that a request it refuses never takes a place."""

    def __init__(self, context: zmq.Context, lets_in: Callable[[list[bytes]], bool],
                 admit: Callable[[], bool] | None, log: Any) -> None:
        super().__init__(context, log=log)
        self.lets_in = lets_in
        self.admit = admit

    async def handle_zap_message(self, msg: list[bytes]) -> None:
        """Answer TRY_LATER to a request that ``admit`` turns away; any other as pyzmq does."""
        if self.admit is not None and self.lets_in(msg) and not self.admit():
            # The reply as RFC 27 has it (version, request id, status, its text, user id, metadata), sent on the
            # ZAP socket: pyzmq's own helper for it is private, free to change between its releases.
            self.zap_socket.send_multipart([ZAP_VERSION, msg[1], TRY_LATER, b"too many connections", b"", b""])
            return
        await super().handle_zap_message(msg)
