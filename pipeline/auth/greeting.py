"""Which security mechanism a ZeroMQ peer greets with: read from its ZMTP 3 greeting (RFC 23) on a TCP connection.

A CURVE client whose handshake fails against a peer without CURVE learns why from libzmq only when
its side is the one to notice the mismatch: which side notices first is a race, lost on a loaded
host, and the failure then looks like a refused key. The peer's greeting tells it for certain: its
first 64 bytes name the mechanism (``NULL``, ``PLAIN``, ``CURVE``), and a peer that sends something
else does not speak ZeroMQ at all.
"""

from __future__ import annotations

import socket

#: Bytes of a ZMTP 3 greeting: signature (10), version (2), mechanism (20), as-server (1), filler (31).
GREETING_BYTES = 64
#: The ZMTP major version that first named its mechanism in the greeting.
ZMTP_3 = 3
#: Seconds the probe waits to connect and for the peer's greeting (a run answers in one round trip).
PROBE_SECONDS = 2.0
#: What the probe says when the peer's first bytes are not a ZMTP 3 greeting.
NOT_ZEROMQ = ""
#: The first 11 bytes of a ZMTP 3 greeting (signature, major version): what a peer waits for before it sends the rest
#: of its own. The probe sends no more: a peer offered a mechanism it lacks closes the connection before it greets.
OPENING = b"\xff" + bytes(8) + b"\x7f" + bytes([ZMTP_3])


def mechanism_in(received: bytes) -> str:
    """The mechanism a peer's greeting names, or NOT_ZEROMQ when ``received`` is not a ZMTP 3 greeting."""
    if len(received) < GREETING_BYTES or received[0] != 0xFF or received[9] & 1 != 1 or received[10] < ZMTP_3:
        return NOT_ZEROMQ
    return received[12:32].rstrip(b"\0").decode("ascii", "replace")


def mechanism_at(host: str, port: int, timeout: float = PROBE_SECONDS) -> str | None:
    """The mechanism the ZeroMQ peer at ``host:port`` greets with (NOT_ZEROMQ: it does not speak ZeroMQ); None when
    no connection was made or no greeting came within ``timeout`` seconds."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as link:
            link.sendall(OPENING)
            received = b""
            while len(received) < GREETING_BYTES:
                more = link.recv(GREETING_BYTES - len(received))
                if not more:
                    break
                received += more
    except OSError:  # refused, unreachable, or silent past the timeout
        return None
    if len(received) == GREETING_BYTES or (received and received[0] != 0xFF):
        return mechanism_in(received)
    return None  # nothing said, or a greeting cut short: no telling
