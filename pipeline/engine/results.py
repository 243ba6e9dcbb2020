"""What a router does with the results its workers return: which outputs go on now, in order if asked.

Workers of an ordered step, and every worker in another process, return each input's outputs to
the step's router (a RESULT) instead of sending them on. Outputs of different workers travel
through different ZeroMQ pipes, and a receiver reads pipes in no fixed order; so for an ordered
step one sender, the router, sends every output, releasing them in input order.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from pipeline.engine.flow import HELD_MESSAGE_BYTES
from pipeline.engine.wire import Answer
from pipeline.execution.executor import UNORDERED, Outcome, Outputs


class Results:
    """Which answered inputs' outputs go on now; an ordered step's wait until every earlier input's are out.

    An input may be answered in chunks first (PARTIAL, while its run() goes on): an unordered step's, or
    the input in turn's, go on at once; another's are held back with the rest of its outputs.
    """

    def __init__(self, next_steps: Sequence[str], ordered: bool) -> None:
        self.names = tuple(next_steps)
        self.ordered = ordered
        self.next_seq = 0  # the input whose outputs go next (ordered)
        self.held: dict[int, tuple[Outputs, int]] = {}  # early outputs, and their bytes
        self.parts: dict[int, list[tuple[Outputs, int]]] = {}  # chunks of inputs not yet in turn, and their bytes
        self.held_bytes = 0  # the size of the outputs held back, each counted with HELD_MESSAGE_BYTES
        self._skipped: set[int] = set()  # inputs that will never be answered (failed for good)

    def add(self, answers: Iterable[Answer]) -> list[tuple[int, Outputs]]:
        """Take answered inputs; the outputs that may go on now, each with its input, in order."""
        if not self.names:
            return []  # a sink: its workers answer only so that the router knows what they hold
        names = self.names
        ordered = self.ordered
        release: list[tuple[int, Outputs]] = []
        for answer in answers:
            messages = [(message, None if target is None else names[target]) for message, target in answer.outputs]
            seq = answer.seq
            if seq == UNORDERED or not ordered:
                release.append((seq, messages))
                continue
            partial = answer.outcome is Outcome.PARTIAL
            if seq != self.next_seq:  # early: held until every earlier input's outputs are out
                size = sum(message.nbytes for message, _ in messages) + HELD_MESSAGE_BYTES * len(messages)
                self.held_bytes += size
                if partial:
                    self.parts.setdefault(seq, []).append((messages, size))
                else:
                    self.held[seq] = (messages, size)
            else:
                self._release_parts(seq, release)
                release.append((seq, messages))
                if not partial:
                    self.next_seq += 1
                    self._release_held(release)
        return release

    def skip(self, seq: int) -> list[tuple[int, Outputs]]:
        """Input ``seq`` will never be answered (it failed without its worker, which died): the outputs that
        waited for it may go on now, and the chunks of it that came before."""
        if not self.ordered or not self.names or seq < self.next_seq:
            return []
        self._skipped.add(seq)
        release: list[tuple[int, Outputs]] = []
        self._release_held(release)
        return release

    def abandon(self) -> list[Outputs]:
        """Give up the outputs held back (the run stopped at once, before the inputs they wait for were answered):
        each input's, for the router to count as never sent on."""
        abandoned = [messages for messages, _ in self.held.values()]
        abandoned += [messages for chunks in self.parts.values() for messages, _ in chunks]
        self.held.clear()
        self.parts.clear()
        self.held_bytes = 0
        return abandoned

    def _release_parts(self, seq: int, release: list[tuple[int, Outputs]]) -> None:
        """Move the chunks held for input ``seq`` (now in turn) to ``release``."""
        for messages, size in self.parts.pop(seq, ()):
            self.held_bytes -= size
            release.append((seq, messages))

    def _release_held(self, release: list[tuple[int, Outputs]]) -> None:
        """Move what is now in order from the held outputs to ``release``; chunks of the input now in turn too."""
        while True:
            if self.next_seq in self._skipped:
                self._skipped.discard(self.next_seq)
                self._release_parts(self.next_seq, release)
            elif self.next_seq in self.held:
                self._release_parts(self.next_seq, release)
                messages, size = self.held.pop(self.next_seq)
                self.held_bytes -= size
                release.append((self.next_seq, messages))
            else:
                self._release_parts(self.next_seq, release)  # in turn now, still running: its chunks go on
                return
            self.next_seq += 1
