"""What a router does with the results its workers return: send their outputs on, in order if asked.

Workers of an ordered step, and every worker in another process, return each input's outputs to
the step's router (a RESULT) instead of sending them on. Outputs of different workers travel
through different ZeroMQ pipes, and a receiver reads pipes in no fixed order; so for an ordered
step one sender, the router, sends every output, releasing them in input order.
"""

from __future__ import annotations

from collections.abc import Iterable

from pipeline.engine.outlets import NextSteps
from pipeline.engine.wire import Answer
from pipeline.execution.executor import UNORDERED
from pipeline.message import Encoded


class Results:
    """Sends the outputs of answered inputs on; an ordered step's are held until every earlier input's are out."""

    def __init__(self, outputs: NextSteps | None, ordered: bool) -> None:
        self.outputs = outputs
        self.ordered = ordered
        self.next_seq = 0
        self.held: dict[int, tuple[list[tuple[Encoded, str | None]], int]] = {}  # early outputs, and their bytes
        self.held_bytes = 0  # the size of the outputs held back

    def add(self, answers: Iterable[Answer]) -> None:
        """Take answered inputs and send what is now in order."""
        if self.outputs is None:
            return  # a sink: its workers answer only so that the router knows what they hold
        names = self.outputs.step.next_steps
        for answer in answers:
            messages = [(message, None if target is None else names[target]) for message, target in answer.outputs]
            if answer.seq == UNORDERED or not self.ordered:
                self.outputs.commit(answer.seq, messages)
                continue
            if answer.seq != self.next_seq:  # early: held until every earlier input's outputs are out
                size = sum(message.nbytes for message, _ in messages)
                self.held[answer.seq] = (messages, size)
                self.held_bytes += size
                continue
            self.outputs.commit(answer.seq, messages)
            self.next_seq += 1
            while self.next_seq in self.held:
                released, size = self.held.pop(self.next_seq)
                self.held_bytes -= size
                self.outputs.commit(self.next_seq, released)
                self.next_seq += 1
