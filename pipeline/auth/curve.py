"""CurveZMQ authentication of sockets: libzmq's CURVE (no crypto of our own), checked by our ZAP handler.

A server socket (the side that binds and checks who connects) is made safe in three steps, each
closing a hole that CURVE alone leaves open:

1. :class:`CurveServer` starts a ZAP handler (``pipeline.auth.zap``) on the socket's context *before*
   the socket binds: without one, libzmq lets any CURVE key in, and a client whose handshake ends
   before a late handler starts gets in too.
2. :meth:`CurveServer.secure` sets ``ZAP_ENFORCE_DOMAIN``, so that should the handler be missing
   the handshake fails (fails closed) instead of letting everyone in.
3. A peer's identity is the ``User-Id`` of the frames it sent: the public key that the handshake
   proved. :meth:`CurveServer.peer` maps it to a key's name. A routing id or a field in a message
   is whatever the peer chose to claim.

A client (the side that connects) pins the server's public key with :func:`secure_client`: the
handshake succeeds only with the holder of the matching secret key, so nothing is ever sent to an
impostor, nor in clear to a plaintext peer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import zmq
from zmq.utils import z85

from pipeline.auth.keys import KeyPair
from pipeline.auth.zap import ZapHandler

#: The ZAP domain of every server socket of the project; the handler answers for it alone.
ZAP_DOMAIN = "zmq-pipeline"
#: Seconds a connection to a run's port has to complete its CURVE handshake before the run closes it: each takes one of
#: the run's open files from its first byte (libzmq's default, 30 s, let 1,100 idle TCP connections of a peer with no
#: key hold all 1,024 of a run's for longer than a worker waits to join). A handshake takes a few round trips and the
#: ZAP handler's answer: well under a second, even over a WAN (a link of 1 s each way takes more: its worker says so).
HANDSHAKE_SECONDS = 5.0


def secure_client(socket: zmq.Socket, own: KeyPair, server: bytes) -> None:
    """Make ``socket`` (before it connects) a CURVE client that talks only to the holder of ``server``'s secret."""
    if own.secret is None:
        raise ValueError(f"key {own.name!r} has no secret key")
    socket.curve_publickey = own.public
    socket.curve_secretkey = own.secret
    socket.curve_serverkey = server


def _ask_handler(socket: zmq.Socket) -> None:
    """Make ``socket`` ask the ZAP handler of its context about each connection, failing closed without one."""
    socket.zap_domain = ZAP_DOMAIN.encode()
    socket.setsockopt(zmq.ZAP_ENFORCE_DOMAIN, 1)


@dataclass(frozen=True)
class ServerKeys:
    """What a server authenticates with: its key pair, and the clients' public keys it lets in (z85 -> name)."""

    own: KeyPair
    allowed: Mapping[bytes, str]


class _AllowList:
    """The ZAP handler's check of a client key (called in the handler's thread): in the allowed set?"""

    def __init__(self, allowed: Mapping[bytes, str]) -> None:
        self.allowed = dict(allowed)
        self.refused = 0
        self.last_refused = b""  # the public key (z85) of the last client refused
        self._lock = threading.Lock()

    def check(self, key: bytes) -> bool:
        """True for an allowed key; counts the others, and keeps the last one (to say whom it refused)."""
        if self.allows(key):
            return True
        with self._lock:
            self.refused += 1
            self.last_refused = key
        return False

    def allows(self, key: bytes) -> bool:
        """Whether ``key`` (z85) is allowed; nothing counted."""
        return key in self.allowed


class ZapServer:
    """A ZAP handler of one context, started before the sockets bind; with ``admit``, each connection it lets in must
    then be admitted (else it is told to try later: a bound on the connections held open), so that a connection it
    refuses (an unknown key) never takes a place.

    It lets in every connection without CURVE that ``admit`` admits. Call :meth:`secure` on the socket before
    it binds; :meth:`close` after the sockets closed, before the context terminates.
    """

    def __init__(self, context: zmq.Context, admit: Callable[[], bool] | None = None) -> None:
        self._handler = ZapHandler(context, self._user, admit)
        self._handler.start()  # returns once the handler is bound: safe to bind the sockets

    def _user(self, request: list[bytes]) -> bytes | None:
        """The user the ZAP ``request`` is let in as (before ``admit`` is asked), None if refused: without keys, a
        connection without CURVE (mechanism NULL), as nobody."""
        return b"" if request[5] == b"NULL" else None

    def secure(self, socket: zmq.Socket) -> None:
        """Make ``socket`` (before it binds) ask this handler about each connection, failing closed without it."""
        _ask_handler(socket)

    def close(self) -> None:
        """Stop the handler."""
        self._handler.close()


class CurveServer(ZapServer):
    """The ZAP handler of one context, allowing only the public keys of ``keys.allowed`` (and what ``admit`` admits).

    Make it on the socket's context before the socket binds, call :meth:`secure` on the socket, then
    bind; :meth:`close` it after the sockets closed, before the context terminates.
    """

    def __init__(self, context: zmq.Context, keys: ServerKeys, admit: Callable[[], bool] | None = None) -> None:
        if keys.own.secret is None:
            raise ValueError(f"a server needs a secret key; key {keys.own.name!r} has none")
        self.own = keys.own
        self._allow = _AllowList(keys.allowed)
        super().__init__(context, admit)

    def _user(self, request: list[bytes]) -> bytes | None:
        """A CURVE handshake of our ZAP domain that proved an allowed key (its frame 6, 32 bytes) is let in as that key
        (z85: the frames' User-Id); another key is refused (and counted); any other request, as without keys."""
        if request[5] != b"CURVE":
            return super()._user(request)
        if len(request) != 7 or request[2] != ZAP_DOMAIN.encode():
            return None
        key = z85.encode(request[6])
        return key if self._allow.check(key) else None

    @property
    def refused(self) -> int:
        """Connections refused so far because their key is not allowed."""
        return self._allow.refused

    @property
    def last_refused(self) -> str:
        """The public key (z85 text) of the last client refused ("" : none yet)."""
        return self._allow.last_refused.decode("ascii", errors="replace")

    def allowed(self) -> dict[bytes, str]:
        """The allowed public keys, each with its name."""
        return dict(self._allow.allowed)

    def secure(self, socket: zmq.Socket) -> None:
        """Make ``socket`` (before it binds) a CURVE server checked by this handler, failing closed without it."""
        socket.curve_server = True
        socket.curve_publickey = self.own.public
        socket.curve_secretkey = self.own.secret
        _ask_handler(socket)

    def peer(self, frame: zmq.Frame) -> str | None:
        """The name of the key that sent ``frame`` (from its User-Id, set by the handshake); None if unknown."""
        try:
            user = frame.get("User-Id")
        except zmq.ZMQError:
            return None
        return self._allow.allowed.get(user.encode()) if isinstance(user, str) else None
