"""What a run reports: per-step counts, the first error of each step and the exit status."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class StepCounts:
    """Counters of one step (or one of its threads): plain integers, no locks."""

    received: int = 0  # messages delivered to the step
    processed: int = 0  # messages whose run() completed
    emitted: int = 0  # deliveries to next steps (a message sent to two steps counts twice)
    failed: int = 0  # messages whose run() raised

    def __iadd__(self, other: StepCounts) -> StepCounts:
        self.received += other.received
        self.processed += other.processed
        self.emitted += other.emitted
        self.failed += other.failed
        return self


def _align(row: tuple[str, ...], widths: list[int]) -> list[str]:
    """The first cell left-aligned, numbers right-aligned."""
    return [cell.ljust(w) if i == 0 else cell.rjust(w) for i, (cell, w) in enumerate(zip(row, widths, strict=True))]


@dataclass
class StepReport:
    """The final state of one step."""

    name: str
    counts: StepCounts = field(default_factory=StepCounts)
    first_error: str | None = None
    fatal: bool = False  # init() or finish() raised, or the producer's generator did

    def add_error(self, error: str, fatal: bool = False) -> None:
        """Keep the first error; a fatal one makes the run fail whatever the failure policy."""
        self.first_error = self.first_error or error
        self.fatal = self.fatal or fatal


@dataclass
class RunReport:
    """The outcome of a run: its exit status and a report per step, in config order."""

    steps: dict[str, StepReport]
    exit_status: int = 0
    stop_reason: str | None = None  # why the run stopped taking input before the producer's end
    stuck: list[str] = field(default_factory=list)  # workers still busy when the run was abandoned

    def __getitem__(self, name: str) -> StepCounts:
        return self.steps[name].counts

    @property
    def unprocessed(self) -> int:
        """Deliveries that no step finished processing: 0 unless the run was abandoned."""
        sent = sum(s.counts.emitted for s in self.steps.values())
        return sent - sum(s.counts.processed + s.counts.failed for s in list(self.steps.values())[1:])

    def as_dict(self) -> dict:
        """A JSON-ready form of the report."""
        return {"exit_status": self.exit_status, "stop_reason": self.stop_reason, "stuck": self.stuck,
                "unprocessed": self.unprocessed,
                "steps": {n: asdict(s) for n, s in self.steps.items()}}

    def table(self) -> str:
        """The report as a plain-text table, one line per step."""
        rows = [("STEP", "RECEIVED", "PROCESSED", "EMITTED", "FAILED")]
        for step in self.steps.values():
            c = step.counts
            rows.append((step.name, str(c.received), str(c.processed), str(c.emitted), str(c.failed)))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = ["  ".join(_align(row, widths)) for row in rows]
        lines += [f"{s.name}: first error: {s.first_error}" for s in self.steps.values() if s.first_error]
        if self.stop_reason:
            lines.append(f"stopped: {self.stop_reason}")
        lines += [f"still busy, left behind: {worker}" for worker in self.stuck]
        if self.unprocessed:
            lines.append(f"{self.unprocessed} messages were sent but never processed")
        lines.append(f"exit status {self.exit_status}")
        return "\n".join(lines)


def exit_status(steps: dict[str, StepReport], signal: int | None, stop_reason: str | None,
                allow_failures: bool) -> int:
    """The exit status of a run (DESIGN.md §5): 128 + signal number if interrupted; 1 if a step
    failed (failed messages only count when ``allow_failures`` is off or the run stopped on them)."""
    if signal is not None:
        return 128 + signal
    if any(s.fatal for s in steps.values()) or stop_reason is not None:
        return 1
    failed = any(s.counts.failed for s in steps.values())
    return 1 if failed and not allow_failures else 0
