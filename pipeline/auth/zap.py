"""The ZAP handler (ZeroMQ RFC 27) of one context: a thread of plain sockets and a plain poller, no event loop.

libzmq asks the handler bound at ``inproc://zeromq.zap.01`` of a socket's context whether each connection may open.
pyzmq's ``ThreadAuthenticator`` answers from an asyncio loop in its thread; when the context terminates under it (a run
aborted by Ctrl+C, a second signal or shutdown_timeout, while the thread that owns the port is still in a socket call)
its socket's callbacks raise ContextTerminated on every turn of the loop: the thread spun for ever, a traceback a turn
on stderr (27 MB in 10 s), its sockets never closed, so the context's termination never ended and the port stayed
bound. Here, as in pyzmq's devices, ETERM is a clean stop: the thread closes its sockets and ends, whoever terminates
the context and whenever.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

import zmq

log = logging.getLogger("pipeline.auth.zap")

#: Where libzmq sends a context's ZAP requests (RFC 27).
ZAP_ENDPOINT = "inproc://zeromq.zap.01"
#: The version of the ZAP protocol (ZeroMQ RFC 27) that libzmq speaks; the first frame of every request and reply.
ZAP_VERSION = b"1.0"
#: The ZAP status of a connection let in.
ALLOWED = b"200"
#: The ZAP status of a connection turned away for now. libzmq 4.3 tells the client nothing: the server reports it
#: (HANDSHAKE_FAILED_AUTH 300) and holds the connection until its handshake times out (``handshake_ivl``); the client
#: then sees a connection closed during its handshake, and connects again.
TRY_LATER = b"300"
#: The ZAP status of a connection refused (HANDSHAKE_FAILED_AUTH 400 on the server's socket monitor).
REFUSED = b"400"
#: The ZAP status of a request the handler failed to answer (its check raised): refused, as a server fails closed.
FAILED = b"500"
#: Seconds start() waits for the handler's thread to bind, and close() for it to end: each takes a few milliseconds.
THREAD_SECONDS = 10.0

#: Which user a ZAP request is let in as (the frames' User-Id then), or None to refuse it.
Identify = Callable[[list[bytes]], "bytes | None"]


def answer(request: list[bytes], identify: Identify, admit: Callable[[], bool] | None) -> list[bytes]:
    """The reply to a ZAP ``request``: refused unless ``identify`` lets it in; then told to try later unless ``admit``
    admits it (so that a request refused never takes a place); else let in as ``identify``'s user."""
    request_id = request[1] if len(request) > 1 else b""
    if len(request) < 6 or request[0] != ZAP_VERSION:
        return _reply(request_id, REFUSED, b"malformed ZAP request")
    user = identify(request)
    if user is None:
        return _reply(request_id, REFUSED, b"not allowed")
    if admit is not None and not admit():
        return _reply(request_id, TRY_LATER, b"too many connections")
    return _reply(request_id, ALLOWED, b"OK", user)


def _reply(request_id: bytes, status: bytes, text: bytes, user: bytes = b"") -> list[bytes]:
    """A ZAP reply as RFC 27 has it: version, request id, status, its text, user id, metadata (none)."""
    return [ZAP_VERSION, request_id, status, text, user, b""]


class ZapHandler(threading.Thread):
    """The ZAP handler of ``context``, answering each request with :func:`answer`. :meth:`start` returns once it is
    bound (the server's sockets may bind then); it ends on :meth:`close`, or as soon as the context terminates."""

    def __init__(self, context: zmq.Context, identify: Identify, admit: Callable[[], bool] | None) -> None:
        super().__init__(name="zap-handler", daemon=True)
        self.context = context
        self.identify = identify
        self.admit = admit
        self._stop_address = f"inproc://zap-handler-stop.{id(self)}"
        self._bound = threading.Event()
        self._error: zmq.ZMQError | None = None  # why it could not bind, for start() to raise

    def start(self) -> None:
        """Start the thread; return once it is bound, else raise why it could not bind."""
        super().start()
        if not self._bound.wait(THREAD_SECONDS):
            raise RuntimeError(f"the ZAP handler did not start within {THREAD_SECONDS:g} s")
        if self._error is not None:
            raise self._error

    def run(self) -> None:
        """Answer requests until close() or the context's termination (ETERM: a clean stop); sockets made and closed
        here, in the thread that uses them."""
        opened: list[zmq.Socket] = []
        try:
            zap = self._bind(zmq.REP, ZAP_ENDPOINT, opened)
            stop = self._bind(zmq.PULL, self._stop_address, opened)
            self._bound.set()
            self._serve(zap, stop)
        except zmq.ZMQError as err:
            if not self._bound.is_set():
                self._error = err
            elif err.errno != zmq.ETERM:
                raise
        finally:
            for socket in opened:
                socket.close(linger=0)
            self._bound.set()

    def _bind(self, kind: int, address: str, opened: list[zmq.Socket]) -> zmq.Socket:
        """A socket of ``kind`` bound at ``address``, added to ``opened`` (to be closed) as soon as it exists."""
        socket = self.context.socket(kind)
        opened.append(socket)
        socket.bind(address)
        return socket

    def _serve(self, zap: zmq.Socket, stop: zmq.Socket) -> None:
        """Answer each request on ``zap`` until a word on ``stop``."""
        poller = zmq.Poller()
        poller.register(zap, zmq.POLLIN)
        poller.register(stop, zmq.POLLIN)
        while stop not in dict(poller.poll()):
            request = zap.recv_multipart()
            try:
                reply = answer(request, self.identify, self.admit)
            except Exception:  # a REP socket must answer, or no connection is ever checked again
                log.exception("the ZAP handler failed to check a connection: refused")
                reply = _reply(request[1] if len(request) > 1 else b"", FAILED, b"internal error")
            zap.send_multipart(reply)

    def close(self) -> None:
        """Stop the thread and wait for it; under a context that is terminating, its ETERM stops the thread."""
        if not self.is_alive():
            return
        with contextlib.ExitStack() as stack:
            try:
                stop = self.context.socket(zmq.PUSH)
                stack.callback(stop.close, linger=0)  # once the thread has ended: it sees the word before
                stop.connect(self._stop_address)
                stop.send(b"")
            except zmq.ZMQError as err:  # ETERM (pyzmq raises a plain ZMQError for a new socket): it stops the thread
                if err.errno != zmq.ETERM:
                    raise
            self.join(THREAD_SECONDS)
