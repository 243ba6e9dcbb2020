"""What the monitor knows of each run, built from its messages: plain Python, no Qt.

Bounded by design, whatever peers send: at most MAX_RUNS runs (a new run replaces one that ended,
else one silent for STALE_SECONDS), MAX_STEPS steps a run, FIRST_ERRORS + LAST_ERRORS errors a
run (each traceback already capped by the parser), MAX_POINTS points a step's history, and the ids
of MAX_CLOSED closed runs. A message that would break a cap raises :class:`Refused` and changes nothing.
"""

from __future__ import annotations

import time
from array import array
from collections import OrderedDict, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from pipeline.monitor.progress import Total, step_total

from .protocol import (
    ENDED_STATES,
    MAX_STEPS,
    ErrorMessage,
    FinishMessage,
    GraphMessage,
    Header,
    Message,
    StatusMessage,
    StepInfo,
    StepProgress,
    clamp_rate,
)

#: Runs kept at most.
MAX_RUNS = 20
#: Seconds without a message after which a run that has not ended may make room for a new one.
STALE_SECONDS = 60.0
#: Closed runs whose late messages are ignored (the oldest are forgotten first).
MAX_CLOSED = 1000
#: Errors kept per run: the first ones (the cause is usually among them) and the newest ones.
FIRST_ERRORS, LAST_ERRORS = 100, 100
#: Points kept per step in the throughput history; past this the history keeps every other point.
MAX_POINTS = 1000


class Refused(ValueError):
    """A message the monitor does not take in: it would break a cap, or it claims another key's run."""


class History:
    """A step's throughput over time, (elapsed seconds, messages per second), bounded in memory.

    When full, every other point is dropped and the spacing between kept points doubles, so a night
    of processing fits in ``MAX_POINTS`` while the whole run stays on the plot. Points are kept in
    arrays of doubles: 16 bytes each.
    """

    def __init__(self, capacity: int = MAX_POINTS) -> None:
        self.capacity = capacity
        self.times = array("d")
        self.rates = array("d")
        self._stride = 1
        self._skipped = 0

    @property
    def points(self) -> list[tuple[float, float]]:
        """The points, oldest first."""
        return list(zip(self.times, self.rates, strict=True))

    def add(self, elapsed: float, rate: float) -> None:
        """Record the rate at ``elapsed`` seconds into the run."""
        if self.times and elapsed <= self.times[-1]:
            return
        self._skipped += 1
        if self._skipped < self._stride:
            return
        self._skipped = 0
        self.times.append(elapsed)
        self.rates.append(rate)
        if len(self.times) >= self.capacity:
            self.times, self.rates = self.times[::2], self.rates[::2]
            self._stride *= 2


class Errors:
    """A run's errors: the first FIRST_ERRORS and the newest LAST_ERRORS kept, all counted."""

    def __init__(self) -> None:
        self.first: list[ErrorMessage] = []
        self.last: deque[ErrorMessage] = deque(maxlen=LAST_ERRORS)
        self.count = 0

    def add(self, error: ErrorMessage) -> None:
        """Keep ``error`` if it is among the first or the newest; count it in any case."""
        self.count += 1
        if len(self.first) < FIRST_ERRORS:
            self.first.append(error)
        else:
            self.last.append(error)

    @property
    def skipped(self) -> int:
        """Errors between the first and the newest kept, counted but not kept."""
        return self.count - len(self.first) - len(self.last)

    def __len__(self) -> int:
        return len(self.first) + len(self.last)

    def __iter__(self) -> Iterator[ErrorMessage]:
        yield from self.first
        yield from self.last


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

    def __init__(self, header: Header, clock: Callable[[], float] = time.monotonic, peer: str | None = None) -> None:
        self.clock = clock
        self.run_id = header.run_id
        self.peer = peer  # the name of the key that sent the run's first message (None: plaintext)
        self.header = header
        self.graph: tuple[StepInfo, ...] | None = None
        self.steps: dict[str, StepView] = {}
        self.state = "starting"
        self.elapsed = 0.0
        self.exit_status: int | None = None
        self.stop_reason: str | None = None
        self.errors = Errors()
        self.dropped = 0  # messages the sender dropped because the monitor did not keep up
        self.history: dict[str, History] = {}
        self.last_message = clock()
        self.version = 0
        self._previous: dict[str, tuple[float, int]] = {}  # step -> (elapsed, processed) of the last status

    @property
    def error_count(self) -> int:
        """Errors reported so far, kept or not."""
        return self.errors.count

    def stopping_error(self) -> ErrorMessage | None:
        """The error that stops (or stopped) the run: the first of an init(), finish() or producer, or
        of a step with on_error=stop; None if there is none among the first errors kept."""
        stops = {info.name for info in self.graph or () if info.on_error == "stop"}
        return next((e for e in self.errors.first if e.seq is None or e.step in stops), None)

    @property
    def title(self) -> str:
        """The run's name in a tab: its pipeline, host and process."""
        return f"{self.header.pipeline} · {self.header.host}:{self.header.pid}"

    @property
    def ended(self) -> bool:
        """True once the run finished, failed or was interrupted."""
        return self.state in ENDED_STATES

    def total(self) -> Total | None:
        """How far the first step with a declared total is (the producer), with its ETA while the run goes
        on (at the step's recent rate); None if no step declared one."""
        for view in self.steps.values():
            progress = view.progress
            if progress is not None and progress.total is not None:
                rate = 0.0 if self.ended else view.rate  # an ended run has no time left
                return step_total(view.name, progress.processed, progress.failed, progress.total, rate)
        return None

    def seconds_since_message(self) -> float:
        """How long ago the last message of this run arrived."""
        return max(0.0, self.clock() - self.last_message)

    def live_elapsed(self) -> float:
        """The run's elapsed time now: the last reported one, plus the time since it while the run goes on."""
        return self.elapsed if self.ended else self.elapsed + self.seconds_since_message()

    def apply(self, message: Message) -> None:
        """Take in one message of this run; Refused if it would give the run more than MAX_STEPS steps."""
        new = _step_names(message) - self.steps.keys()
        if len(self.steps) + len(new) > MAX_STEPS:
            raise Refused(f"run {self.run_id}: more than {MAX_STEPS} steps")
        self.header = message.header
        self.last_message = self.clock()
        if isinstance(message, GraphMessage):
            self._apply_graph(message)
        elif isinstance(message, StatusMessage):
            self._apply_status(message)
        elif isinstance(message, ErrorMessage):
            self.errors.add(message)
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
        # Counts over a tiny time step (a peer's elapsed times 1e-300 apart) would make an infinite rate.
        return clamp_rate(max(0.0, (progress.processed - before[1]) / (message.elapsed - before[0])))

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
            view.rate = clamp_rate(counts.processed / self.elapsed) if self.elapsed > 0 else 0.0
            previous = view.progress or StepProgress(counts.name, "waiting", 0, 0, 0, 0, 0, 0, 0, 0, 0.0, 0.0)
            failed = counts.first_error is not None or previous.state == "failed"
            # Its worker processes ended with the run: none is live any more, nor are the remote
            # workers' threads, which the status counted among the step's workers.
            remote = sum(max(0, w.threads) for w in previous.worker_processes if w.kind == "remote")
            view.progress = replace(previous, state="failed" if failed else "finished", queue=0, busy=0,
                                    workers=max(0, previous.workers - remote),
                                    received=counts.received, processed=counts.processed,
                                    emitted=counts.emitted, failed=counts.failed, rate=view.rate,
                                    mean_time=counts.mean_time, redelivered=counts.redelivered,
                                    restarts=counts.restarts, worker_processes=())


def _step_names(message: Message) -> set[str]:
    """The steps that ``message`` gives its run."""
    if isinstance(message, GraphMessage | StatusMessage | FinishMessage):
        return {step.name for step in message.steps}
    return set()


class Runs:
    """Every run reporting to this monitor, by ``run_id``; a closed run's later messages are ignored.

    At most MAX_RUNS: a new run takes the place of the run that ended first, else of the run silent
    longest beyond STALE_SECONDS, else it is refused. A run belongs to the key that sent its first
    message: a message of that run under another key is refused.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.runs: dict[str, RunModel] = {}
        self.closed: OrderedDict[str, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self.runs)

    def __getitem__(self, run_id: str) -> RunModel:
        return self.runs[run_id]

    def apply(self, message: Message, peer: str | None = None) -> RunModel | None:
        """Give ``message`` (sent under key ``peer``) to its run, made on its first message; None for a
        closed run; Refused if it breaks a cap or the run is another key's."""
        run_id = message.header.run_id
        if run_id in self.closed:
            return None
        run = self.runs.get(run_id)
        if run is None:
            self._make_room()
            run = RunModel(message.header, self.clock, peer)
        elif run.peer != peer:
            raise Refused(f"run {run_id} reports under key {run.peer!r}, not {peer!r}")
        run.apply(message)
        self.runs[run_id] = run  # only once it took the message in
        return run

    def _make_room(self) -> None:
        if len(self.runs) < MAX_RUNS:
            return
        ended = [run for run in self.runs.values() if run.ended]
        if ended:
            self.close(min(ended, key=lambda run: run.last_message).run_id)
            return
        silent = max(self.runs.values(), key=RunModel.seconds_since_message)
        if silent.seconds_since_message() < STALE_SECONDS:
            raise Refused(f"{MAX_RUNS} runs are going on: a new run is not shown until one ends")
        self.close(silent.run_id)

    def close(self, run_id: str) -> None:
        """Forget a run; its later messages are ignored."""
        self.runs.pop(run_id, None)
        self.closed[run_id] = None
        while len(self.closed) > MAX_CLOSED:
            self.closed.popitem(last=False)
