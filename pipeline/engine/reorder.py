"""Ordered steps: workers return their outputs to the step's router, which sends them in input order.

Outputs of different workers travel through different ZeroMQ pipes, and a receiver reads pipes
in no fixed order; so for an ordered step one sender, the router, sends every output.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ..message import Encoded
from .outlets import NextSteps
from .wire import UNORDERED, parse_result


class Reorderer:
    """Held outputs of an ordered step, released in input order through one set of sockets."""

    def __init__(self, outputs: NextSteps) -> None:
        self.outputs = outputs
        self.next_seq = 0
        self.held: dict[int, list[tuple[Encoded, str | None]]] = {}
        self.held_bytes = 0  # the size of the outputs held back

    def add(self, frames: Sequence[Any]) -> None:
        """Take a worker's RESULT (the frames it sent) and send what is now in order."""
        names = self.outputs.step.next_steps
        for seq, outputs in parse_result(frames):
            messages = [(message, None if target is None else names[target]) for message, target in outputs]
            if seq == UNORDERED:
                self.outputs.commit(seq, messages)
                continue
            self.held[seq] = messages
            self.held_bytes += sum(message.nbytes for message, _ in messages)
            while self.next_seq in self.held:
                released = self.held.pop(self.next_seq)
                self.held_bytes -= sum(message.nbytes for message, _ in released)
                self.outputs.commit(self.next_seq, released)
                self.next_seq += 1
