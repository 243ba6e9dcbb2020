"""Control messages from a worker to its router: one frame, a kind byte and a window.

(Data packets are in pipeline.message; an ordered step's results are in reorder.)
"""

from __future__ import annotations

import struct

JOIN = ord("J")  # initialised, asks to hold `window` messages (0: its init() failed)
READY = ord("R")  # finished its oldest packet, asks to hold `window` messages
FINISHED = ord("F")  # ran finish() and sent its end of stream

CONTROL = struct.Struct("<BI")


def control(kind: int, window: int = 0) -> list[bytes]:
    """The frames of a control message."""
    return [CONTROL.pack(kind, window)]


def parse_control(payload: bytes) -> tuple[int, int]:
    """(kind, window) of a control message's frame."""
    return CONTROL.unpack(payload)
