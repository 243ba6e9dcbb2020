"""Ordered steps: workers return their outputs to the step's router, which sends them in input order.

Outputs of different workers travel through different ZeroMQ pipes, and a receiver reads pipes
in no fixed order; so for an ordered step one sender, the router, sends every output.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Sequence
from typing import Any

from ..message import DATA, Encoded, Packet, packet_from_frames
from .outputs import Outputs

RESULT = ord("O")  # worker -> router: the outputs of one input message (or of finish())
#: The sequence number of outputs that keep no order: those of finish().
UNORDERED = 2**64 - 1
_RESULT_HEAD = struct.Struct("<BQ")  # RESULT, the input's sequence number
_EVERY_NEXT_STEP = 0xFFFF


def result_frames(seq: int, outputs: Sequence[tuple[Encoded, int | None]]) -> list[Any]:
    """The frames a worker sends its router: the input's sequence number and its outputs.

    Each output names its next step by index in the step's next_steps (None: every next step).
    """
    packet = Packet()
    targets = array("H")
    for message, target in outputs:
        packet.add(message)
        targets.append(_EVERY_NEXT_STEP if target is None else target)
    return [_RESULT_HEAD.pack(RESULT, seq), targets.tobytes(), *packet.frames(DATA)]


class Reorderer:
    """Held outputs of an ordered step, released in input order through one set of sockets."""

    def __init__(self, outputs: Outputs) -> None:
        self.outputs = outputs
        self.next_seq = 0
        self.held: dict[int, list[tuple[Encoded, str | None]]] = {}

    def add(self, frames: Sequence[Any]) -> None:
        """Take a worker's result (the frames it sent) and send what is now in order."""
        seq = _RESULT_HEAD.unpack(frames[0].bytes)[1]
        targets = array("H")
        targets.frombytes(frames[1].bytes)
        names = self.outputs.step.next_steps
        messages = [
            (Encoded(inband, buffers), None if target == _EVERY_NEXT_STEP else names[target])
            for (_, inband, buffers), target in zip(packet_from_frames(frames[2:]).messages(), targets, strict=True)
        ]
        if seq == UNORDERED:
            self._send(messages)
            return
        self.held[seq] = messages
        while self.next_seq in self.held:
            self._send(self.held.pop(self.next_seq))
            self.next_seq += 1

    def _send(self, messages: list[tuple[Encoded, str | None]]) -> None:
        for message, target in messages:
            self.outputs.deliver(message, target)
