"""What a run reports: per-step counts, the first error of each step and the exit status."""

from __future__ import annotations

import signal
from dataclasses import asdict, dataclass, field, replace

from rich.cells import cell_len

from pipeline.console.humanize import counted
from pipeline.console.log_lines import terminal_text
from pipeline.failures.describe import summary_error

#: The signal that the end of output stops a run with (pipeline/cli/signals.py): it says nothing more.
SIGPIPE = signal.SIGPIPE
#: What sends each signal that stops a run (pipeline-run's, docs/cli.md), as the report's stop_reason says it.
SIGNAL_CAUSES = {"SIGINT": "stopped by the user (Ctrl+C)", "SIGTERM": "terminated (kill, a batch system)",
                 "SIGHUP": "its terminal closed"}


@dataclass
class StepCounts:
    """Counters of one step (or one of its threads): plain integers, no locks."""

    received: int = 0  # messages delivered to the step
    processed: int = 0  # messages whose run() completed (a producer: messages it produced)
    emitted: int = 0  # deliveries to next steps (a message sent to two steps counts twice)
    failed: int = 0  # messages whose run() raised

    def __iadd__(self, other: StepCounts) -> StepCounts:
        self.received += other.received
        self.processed += other.processed
        self.emitted += other.emitted
        self.failed += other.failed
        return self


def _align(row: tuple[str, ...], widths: list[int]) -> list[str]:
    """The first cell left-aligned, numbers right-aligned, by the columns a terminal gives them (a step named in CJK
    or with an emoji takes two a character: padded by characters, its row stood out of the table)."""
    return [cell + " " * (w - cell_len(cell)) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))]


@dataclass
class StepFigures:
    """What a step has done so far: the figures that the live status and the final report share."""

    name: str
    counts: StepCounts = field(default_factory=StepCounts)
    busy_time: float = 0.0  # seconds in run() in all, all workers (the producer: in its generator)
    max_time: float = 0.0  # the longest single run() call, seconds (the producer: the longest a message took to make)
    redelivered: int = 0  # messages delivered again after their worker process died
    restarts: int = 0  # worker processes started to replace dead ones

    @property
    def mean_time(self) -> float:
        """Seconds per message in run(), on average (0 if the step ran none)."""
        done = self.counts.processed + self.counts.failed
        return self.busy_time / done if done else 0.0


@dataclass
class StepReport(StepFigures):
    """The final state of one step."""

    first_error: str | None = None
    fatal: bool = False  # init() or finish() raised, or the producer's generator did
    shards: list[int] = field(default_factory=list)  # a producer in worker processes: messages of each shard
    fused_with: str = ""  # the first step of the fused group it runs in, after that step (engine.fusion)
    total: int | None = None  # the messages a producer declared it would make (Component.__length_hint__), if known

    @property
    def received(self) -> int:
        """Messages delivered to the step."""
        return self.counts.received

    @property
    def processed(self) -> int:
        """Messages whose run() completed (a producer: messages it produced)."""
        return self.counts.processed

    @property
    def emitted(self) -> int:
        """Deliveries to next steps (a message sent to two steps counts twice)."""
        return self.counts.emitted

    @property
    def failed(self) -> int:
        """Messages whose run() raised."""
        return self.counts.failed

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
    wall_time: float = 0.0  # seconds from the runner's start to the end of the run (or to now, while it runs)
    #: A report of a run that goes on (report_now()): its unprocessed messages are in flight, not lost.
    running: bool = False
    busy: list[str] = field(default_factory=list)  # a running run's workers in their step's code, not left behind

    def __getitem__(self, name: str) -> StepReport:
        """The report of step ``name`` (its counts are also its attributes: ``report["C"].received``)."""
        return self.steps[name]

    @property
    def unprocessed(self) -> int:
        """Deliveries that no step finished processing: 0 unless the run was stopped or abandoned (a running run's:
        those in flight)."""
        return unprocessed(self.steps)

    @property
    def state(self) -> str:
        """How the run ended: "finished" (exit 0), "interrupted" (by a signal) or "failed"; "running" if it goes on."""
        if self.running:
            return "running"
        if self.exit_status == 0:
            return "finished"
        return "interrupted" if self.exit_status > 128 else "failed"

    def as_dict(self) -> dict:
        """A JSON-ready form of the report."""
        return {"exit_status": self.exit_status, "state": self.state, "stop_reason": self.stop_reason,
                "stuck": self.stuck, "unprocessed": self.unprocessed, "wall_time": self.wall_time,
                "running": self.running, "busy": self.busy,
                "steps": {n: {**asdict(s), "mean_time": s.mean_time} for n, s in self.steps.items()}}

    def table(self) -> str:
        """The summary: the wall time, a line per step (counts, seconds per message in run(), messages
        processed per second of wall time), then the errors, the stop reason and the exit status."""
        rows = [("STEP", "RECEIVED", "PROCESSED", "EMITTED", "FAILED", "MEAN_MS", "MAX_MS", "MSG/S")]
        for step in self.steps.values():
            c = step.counts
            ran = c.processed + c.failed > 0
            rate = c.processed / self.wall_time if self.wall_time > 0 else 0.0
            # the name as the terminal will show it (a no-break space escaped), so that its column is measured so
            rows.append((terminal_text(step.name), str(c.received), str(c.processed), str(c.emitted), str(c.failed),
                         _milliseconds(step.mean_time) if ran else "-",
                         _milliseconds(step.max_time) if ran else "-", f"{rate:.0f}"))
        widths = [max(cell_len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [f"wall time {self.wall_time:.2f} s, run {'still running' if self.running else self.state}"]
        lines += ["  ".join(_align(row, widths)) for row in rows]
        lines += [f"{s.name}: first error: {summary_error(s.first_error)}"
                  for s in self.steps.values() if s.first_error]
        groups: dict[str, list[str]] = {}
        for s in self.steps.values():
            if s.fused_with:
                groups.setdefault(s.fused_with, [s.fused_with]).append(s.name)
        lines += [f"fused: {' -> '.join(group)} (each message through all of them in one worker process)"
                  for group in groups.values()]
        lines += [f"{s.name}: messages per shard: {', '.join(map(str, s.shards))}" for s in self.steps.values()
                  if len(s.shards) > 1]
        lines += [f"{s.name}: {_worker_deaths(s)}" for s in self.steps.values() if s.redelivered or s.restarts]
        producer = next(iter(self.steps.values()), None)
        if self.stop_reason and producer is not None and producer.total is not None and (
                producer.processed < producer.total and not self.running):
            # its other messages are in no dead letter: a replay of those sends what failed or was not run, not them
            lines.append(f"{producer.name}: stopped after {producer.processed} of its {producer.total} messages")
        if self.stop_reason:
            lines.append(f"stopped: {self.stop_reason}")
        lines += [f"still busy, left behind: {worker}" for worker in self.stuck]
        lines += [f"busy: {worker}" for worker in self.busy]
        if self.unprocessed:
            lines.append(in_flight(self.unprocessed) if self.running else never_processed(self.unprocessed))
        lines.append(f"exit status so far {self.exit_status}" if self.running else f"exit status {self.exit_status}")
        return "\n".join(lines)


def _worker_deaths(step: StepReport) -> str:
    """What dead workers cost ``step``, each count said only if not 0 (a step of remote workers replaces none):
    "3 messages delivered again, 1 worker process replaced"."""
    again = f"{counted(step.redelivered, 'shard')} started again" if step.shards else (
        f"{counted(step.redelivered, 'message')} delivered again")
    parts = [again] if step.redelivered else []
    if step.restarts:
        parts.append(f"{counted(step.restarts, 'worker process', 'worker processes')} replaced")
    return ", ".join(parts)


def _milliseconds(seconds: float) -> str:
    """Seconds as milliseconds with about three significant digits."""
    ms = seconds * 1000
    if ms >= 100:
        return f"{ms:.0f}"
    return f"{ms:.1f}" if ms >= 10 else f"{ms:.3f}" if ms < 1 else f"{ms:.2f}"


def unprocessed(steps: dict[str, StepReport]) -> int:
    """Deliveries that no step finished processing (the first step is the producer)."""
    sent = sum(s.counts.emitted for s in steps.values())
    return sent - sum(s.counts.processed + s.counts.failed for s in list(steps.values())[1:])


def never_processed(count: int) -> str:
    """The report's line for ``count`` messages that no step finished processing."""
    return f"{counted(count, 'message')} {'was' if count == 1 else 'were'} sent but never processed"


def in_flight(count: int) -> str:
    """A running run's report's line for ``count`` messages that no step has finished processing yet."""
    return f"{counted(count, 'message')} in flight"


def given_up(report: RunReport) -> RunReport:
    """``report`` (report_now()'s) of a run given up on while workers were still in their code: a copy naming them left
    behind, and why it stopped (the run's own report is left as it is: the run may still end by itself)."""
    stop_reason = report.stop_reason or "the run did not stop in time"
    return replace(report, running=False, busy=[], stuck=report.stuck or report.busy, stop_reason=stop_reason,
                   exit_status=report.exit_status or 1)  # as exit_status() says of a run with a stop reason


def stop_reason_of(steps: dict[str, StepReport], signal: int | None, stop_reason: str | None,
                   running: bool = False) -> str | None:
    """Why the run stopped early (a signal that stopped it says which, but for SIGPIPE: its output ended); messages
    lost although nothing stopped the run are an internal error (a ``running`` run's are in flight)."""
    if stop_reason is None and signal is not None and signal != SIGPIPE:  # the end of output stops a run quietly
        return signal_reason(signal)
    if stop_reason is None and not running and unprocessed(steps):
        return f"internal error: {never_processed(unprocessed(steps))}"
    return stop_reason


def signal_reason(number: int) -> str:
    """``SIGINT: stopped by the user (Ctrl+C)``: the signal that stopped a run, and what sends it."""
    try:
        name = signal.Signals(number).name
    except ValueError:
        name = f"signal {number}"
    return f"{name}: {SIGNAL_CAUSES.get(name, 'a signal stopped the run')}"


def exit_status(steps: dict[str, StepReport], signal: int | None, stop_reason: str | None,
                allow_failures: bool, unrecorded: int = 0, not_replayed: int = 0) -> int:
    """The exit status of a run (DESIGN.md §5): 128 + signal number if interrupted; 1 if a step
    failed (failed messages only count when ``allow_failures`` is off or the run stopped on them, or when
    ``unrecorded`` of them could not be written to the dead-letter file: they are lost), or if a replay left
    ``not_replayed`` failures of its file with no message to send, or cut by a killed run (counted as failed
    messages)."""
    if signal is not None:
        return 128 + signal
    if any(s.fatal for s in steps.values()) or stop_reason is not None or unrecorded:
        return 1
    failed = not_replayed or any(s.counts.failed for s in steps.values())
    return 1 if failed and not allow_failures else 0
