"""Control messages between a router and its workers (data packets are in pipeline.message)."""

from __future__ import annotations

import struct

JOIN = b"J"  # worker -> router: initialised, asks to hold `window` messages
READY = b"R"  # worker -> router: finished its oldest packet, asks to hold `window` messages
FINISHED = b"F"  # worker -> router: ran finish() and sent its end of stream

WINDOW = struct.Struct("<I")


def control(kind: bytes, window: int = 0) -> list[bytes]:
    """The frames a worker sends its router."""
    return [kind, WINDOW.pack(window)]


def parse_control(frames: list[bytes]) -> tuple[bytes, bytes, int]:
    """(worker identity, kind, window) of a control message received by a ROUTER socket."""
    return frames[0], frames[1], WINDOW.unpack(frames[2])[0]
