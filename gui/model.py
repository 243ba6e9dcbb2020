"""What the monitor knows of each run, built from its messages: plain Python, no Qt."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace

from .protocol import (
    ENDED_STATES,
    ErrorMessage,
    FinishMessage,
    GraphMessage,
    Header,
    Message,
    StatusMessage,
    StepInfo,
    StepProgress,
)

#: Errors kept per run (the newest); older ones are only counted.
MAX_ERRORS = 500
#: Points kept per step in the throughput history; past this the history keeps every other point.
MAX_POINTS = 2000


class History:
    """A step's throughput over time, (elapsed seconds, messages per second), bounded in memory.

    When full, every other point is dropped and the spacing between kept points doubles, so a night
    of processing fits in ``MAX_POINTS`` while the whole run stays on the plot.
    """

    def __init__(self, capacity: int = MAX_POINTS) -> None:
        self.capacity = capacity
        self.points: list[tuple[float, float]] = []
        self._stride = 1
        self._skipped = 0

    def add(self, elapsed: float, rate: float) -> None:
        """Record the rate at ``elapsed`` seconds into the run."""
        if self.points and elapsed <= self.points[-1][0]:
            return
        self._skipped += 1
        if self._skipped < self._stride:
            return
        self._skipped = 0
        self.points.append((elapsed, rate))
        if len(self.points) >= self.capacity:
            self.points = self.points[::2]
            self._stride *= 2


@dataclass
class StepView:
    """One step as the monitor shows it: its place in the graph and its latest progress."""

    name: str
    info: StepInfo | None = None
    progress: StepProgress | None = None
    rate: float = 0.0  # messages per second now
    first_error: str | None = None

    @property
    def state(self) -> str:
        """The step's state; "waiting" until a status says otherwise."""
        return self.progress.state if self.progress else "waiting"


class RunModel:
    """One run: its graph, its steps' progress and throughput, its errors and its outcome.

    ``version`` grows with every change, so a view redraws only when its copy is out of date.
    """

    def __init__(self, header: Header, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.run_id = header.run_id
        self.header = header
        self.graph: tuple[StepInfo, ...] | None = None
        self.steps: dict[str, StepView] = {}
        self.state = "starting"
        self.elapsed = 0.0
        self.exit_status: int | None = None
        self.stop_reason: str | None = None
        self.errors: deque[ErrorMessage] = deque(maxlen=MAX_ERRORS)
        self.error_count = 0
        self.dropped = 0  # messages the sender dropped because the monitor did not keep up
        self.history: dict[str, History] = {}
        self.last_message = clock()
        self.version = 0
        self._previous: dict[str, tuple[float, int]] = {}  # step -> (elapsed, processed) of the last status

    @property
    def title(self) -> str:
        """The run's name in a tab: its pipeline, host and process."""
        return f"{self.header.pipeline} · {self.header.host}:{self.header.pid}"

    @property
    def ended(self) -> bool:
        """True once the run finished, failed or was interrupted."""
        return self.state in ENDED_STATES

    def seconds_since_message(self) -> float:
        """How long ago the last message of this run arrived."""
        return max(0.0, self.clock() - self.last_message)

    def live_elapsed(self) -> float:
        """The run's elapsed time now: the last reported one, plus the time since it while the run goes on."""
        return self.elapsed if self.ended else self.elapsed + self.seconds_since_message()

    def apply(self, message: Message) -> None:
        """Take in one message of this run."""
        self.header = message.header
        self.last_message = self.clock()
        if isinstance(message, GraphMessage):
            self._apply_graph(message)
        elif isinstance(message, StatusMessage):
            self._apply_status(message)
        elif isinstance(message, ErrorMessage):
            self.errors.append(message)
            self.error_count += 1
        else:
            self._apply_finish(message)
        self.version += 1

    def _step(self, name: str) -> StepView:
        if name not in self.steps:
            self.steps[name] = StepView(name)
        return self.steps[name]

    def _apply_graph(self, message: GraphMessage) -> None:
        if self.graph == message.steps:
            return
        self.graph = message.steps
        known = self.steps
        self.steps = {info.name: known.get(info.name, StepView(info.name)) for info in message.steps}
        self.steps.update({name: view for name, view in known.items() if name not in self.steps})
        for info in message.steps:
            self.steps[info.name].info = info

    def _apply_status(self, message: StatusMessage) -> None:
        if self.ended:
            return  # a status that overtook the finish message
        self.state, self.elapsed, self.dropped = message.state, message.elapsed, message.dropped
        for progress in message.steps:
            view = self._step(progress.name)
            view.progress, view.rate = progress, self._rate(progress, message)
            self.history.setdefault(progress.name, History()).add(message.elapsed, view.rate)

    def _rate(self, progress: StepProgress, message: StatusMessage) -> float:
        """The publisher's rate, or else the processed count's change since the last status."""
        before = self._previous.get(progress.name)
        self._previous[progress.name] = (message.elapsed, progress.processed)
        if progress.rate is not None:
            return progress.rate
        if before is None or message.elapsed <= before[0]:
            return 0.0
        return max(0.0, (progress.processed - before[1]) / (message.elapsed - before[0]))

    def _apply_finish(self, message: FinishMessage) -> None:
        self.exit_status = message.exit_status
        self.stop_reason = message.stop_reason
        self.state = message.state
        if message.elapsed is not None:
            self.elapsed = message.elapsed
        for counts in message.steps:
            view = self._step(counts.name)
            # A finished step's rate: its average over the run.
            view.first_error = counts.first_error
            view.rate = counts.processed / self.elapsed if self.elapsed > 0 else 0.0
            previous = view.progress or StepProgress(counts.name, "waiting", 0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0)
            failed = counts.first_error is not None or previous.state == "failed"
            view.progress = replace(previous, state="failed" if failed else "finished", queue=0, busy=0,
                                    received=counts.received, processed=counts.processed,
                                    emitted=counts.emitted, failed=counts.failed, rate=view.rate,
                                    mean_time=counts.mean_time)


class Runs:
    """Every run reporting to this monitor, by ``run_id``; a closed run's later messages are ignored."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.runs: dict[str, RunModel] = {}
        self.closed: set[str] = set()

    def __len__(self) -> int:
        return len(self.runs)

    def __getitem__(self, run_id: str) -> RunModel:
        return self.runs[run_id]

    def apply(self, message: Message) -> RunModel | None:
        """Give ``message`` to its run, creating the run on its first message; None for a closed run."""
        run_id = message.header.run_id
        if run_id in self.closed:
            return None
        run = self.runs.get(run_id)
        if run is None:
            run = self.runs[run_id] = RunModel(message.header, self.clock)
        run.apply(message)
        return run

    def close(self, run_id: str) -> None:
        """Forget a run; its later messages are ignored."""
        self.runs.pop(run_id, None)
        self.closed.add(run_id)
