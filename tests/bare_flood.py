"""A flood of bare TCP connections, for the tests of listening ports: a peer that holds no key, never sends a byte, and
opens more connections than libzmq's socket monitor queues events (2,000: each connection accepted is one)."""

from __future__ import annotations

import contextlib
import resource
import selectors
import socket
import time
from collections.abc import Iterator

#: Connections a flood opens: more events than a socket monitor's queue holds, with room to spare.
CONNECTIONS = 2500
#: Connections opened and not yet greeted at once at most: fewer than libzmq's listen backlog (100), past which the
#: kernel drops a connection's SYN and the client tries again a second later (2,500 took 15 s, one after the other).
IN_FLIGHT = 64
#: Seconds without a greeting after which the listener is taken to accept no more: the flood goes no further.
GREETING_SECONDS = 3.0


@contextlib.contextmanager
def bare_flood(port: int, host: str = "127.0.0.1", count: int = CONNECTIONS) -> Iterator[list[socket.socket]]:
    """Open up to ``count`` idle connections to ``host:port`` and close them at the end: the connections that the
    listener greeted (ZeroMQ's greeting: its engine took them), fewer when it greets none for GREETING_SECONDS."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    needed = 2 * count + 1024  # both ends, when the listener is this process, and the test's own files
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(needed, hard)), hard))
    greeted: list[socket.socket] = []
    waiting = selectors.DefaultSelector()
    try:
        _greet(waiting, greeted, (host, port), count)
        yield greeted
    finally:
        for key in list(waiting.get_map().values()):
            key.fileobj.close()
        waiting.close()
        for connection in greeted:
            connection.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _greet(waiting: selectors.BaseSelector, greeted: list[socket.socket], address: tuple[str, int],
           count: int) -> None:
    """Open connections to ``address``, IN_FLIGHT at a time, until ``count`` were greeted (added to ``greeted``) or
    none was for GREETING_SECONDS."""
    opened = 0
    deadline = time.monotonic() + GREETING_SECONDS
    while len(greeted) < count and (left := deadline - time.monotonic()) > 0:
        while opened < count and len(waiting.get_map()) < IN_FLIGHT:
            connection = socket.socket()
            connection.setblocking(False)
            connection.connect_ex(address)
            waiting.register(connection, selectors.EVENT_READ)
            opened += 1
        for key, _ in waiting.select(left):
            waiting.unregister(key.fileobj)
            if _greeting(key.fileobj):
                greeted.append(key.fileobj)
                deadline = time.monotonic() + GREETING_SECONDS
            else:
                key.fileobj.close()


def _greeting(connection: socket.socket) -> bool:
    """Whether the listener greeted ``connection`` (its greeting's first byte is read, and never answered)."""
    try:
        return bool(connection.recv(1))
    except OSError:  # refused, or reset
        return False
