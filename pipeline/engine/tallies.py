"""The figures of a step's fused steps (engine.fusion), from its worker processes' TALLYs.

A worker process that runs a fused chain sends, just before each RESULT, a TALLY: per step of the
chain, its totals so far (received, processed, failed, emitted, seconds in run(), the longest run()).
A TALLY counts once the answers sent right after it have been read: a process that dies in between
has its messages run again, and counted then, so a figure never counts a message twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from pipeline.engine.wire import Tally
from pipeline.execution.report import StepCounts


@dataclass
class MemberFigures:
    """What one step of a fused chain did, from its workers' TALLYs (each the worker's totals)."""

    per_worker: dict[bytes, Tally] = field(default_factory=dict)
    sent: StepCounts = field(default_factory=StepCounts)  # the last fused step's outputs the router sends on
    first_error: str | None = None
    fatal: bool = False

    def counts(self) -> StepCounts:
        """Received, processed, emitted and failed, over every worker that ever answered."""
        total = StepCounts()
        for received, processed, failed, emitted, _, _ in self.per_worker.values():
            total += StepCounts(received, processed, emitted, failed)
        total += self.sent
        return total

    @property
    def busy_time(self) -> float:
        """Seconds in run(), all workers."""
        return sum(record[4] for record in self.per_worker.values())

    @property
    def max_time(self) -> float:
        """The longest single run() call."""
        return max((record[5] for record in self.per_worker.values()), default=0.0)


class Tallies:
    """A step's own figures and its fused steps', and each worker's TALLY waiting for the answers after it."""

    def __init__(self, members: int) -> None:
        self.head = MemberFigures()  # the step's own figures in its workers' TALLYs: what it emitted
        self.members = [MemberFigures() for _ in range(members)]
        self._waiting: dict[bytes, Sequence[Tally]] = {}  # per worker: its last TALLY, not yet counted

    def expect(self, worker: bytes, records: Sequence[Tally]) -> bool:
        """Hold ``worker``'s TALLY until its answers come; False (ignored) if it is not one record per step."""
        if len(records) != 1 + len(self.members):
            return False
        self._waiting[worker] = records
        return True

    def take(self, worker: bytes) -> bool:
        """Count ``worker``'s held TALLY now that its answers came; whether it had one."""
        records = self._waiting.pop(worker, None)
        if records is None:
            return False
        for figures, record in zip([self.head, *self.members], records, strict=True):
            figures.per_worker[worker] = record
        return True

    def forget(self, worker: bytes) -> None:
        """Drop ``worker``'s held TALLY: its process died before its answers came (they run again)."""
        self._waiting.pop(worker, None)

    @property
    def emitted_to_members(self) -> int:
        """What the step sent to the first fused step after it, over its workers (0 without fused steps)."""
        if not self.members:
            return 0
        return sum(record[3] for record in self.head.per_worker.values())
