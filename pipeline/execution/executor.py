"""How a step's code runs: the contract that every runner and every kind of worker share, written once.

- ``init()`` runs once, before the first message. Its return value is never sent (ctapipe's steps end
  ``init()`` with ``return True``); ``False``, exactly, means the step could not start: the run stops
  before any message is processed and exits 1. What it passes to ``send_msg()`` goes on, as does what
  it yields if it is a generator.
- ``run(msg)``: a stager's returned value is its output (``None``: the message is filtered out); a
  generator's values are its outputs; ``send_msg()`` sends too. A consumer's returned values go
  nowhere (a generator still runs to its end). A producer's ``run()`` is a generator: each value it
  yields (but ``None``) is a message, and so is each one it passes to ``send_msg()``.
- ``finish()`` runs once, after the last message. Like ``init()``, its return value is never sent;
  what it yields or passes to ``send_msg()`` is.
- A message's outputs are collected while its code runs and handed on once that code has returned:
  all of them, or none if it raised (so a replay of a failed message never duplicates an output).
- An ``Exception`` in ``run()`` fails that message (the run's failure policy counts it, logs it,
  writes its dead letter and stops or goes on by the step's ``on_error``). An exception in
  ``init()``, ``finish()`` or a producer's generator fails the step (exit 1); so does any other
  ``BaseException`` (``SystemExit``, ``KeyboardInterrupt``) in a step's code, which then halts the
  step: it never ends a thread of the engine.
- ``send_msg()`` may be called from any thread while the step's code runs: the output belongs to
  the message in progress. Called when no code of the step runs, it raises ``RoutingError`` and
  the step fails: an output is never refused in silence.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from enum import IntEnum
from time import perf_counter
from types import GeneratorType
from typing import Any, Protocol

from pipeline.component import Component
from pipeline.config.model import StepConfig
from pipeline.errors import RoutingError, StepFailed
from pipeline.execution.report import StepCounts
from pipeline.failures.describe import failure_line
from pipeline.message import Buffer, Encoded, decode, encode

#: The outputs of one call of a step's code: each encoded message and its target (None: every next step).
Outputs = list[tuple[Encoded, "str | None"]]

#: The input "sequence number" of outputs that belong to no input: those of init() and finish().
UNORDERED = 2**64 - 1
#: What a worker marks on its busy board while its finish() runs (no message is that large): a keeper then sees
#: it at work, not idle with a FINISH it never read.
FINISHING = 2**64 - 2


class Outcome(IntEnum):
    """What became of one input."""

    DONE = 0  # run() returned
    FAILED = 1  # run() raised
    NOT_RUN = 2  # the step had stopped after a failure: the input was not started


class Policy(Protocol):
    """Where failures go: the run's FailurePolicy, or (in a worker process) the step's router."""

    halted: set[str]

    def lifecycle_failed(self, step: str, worker: int, what: str, error: BaseException) -> str:
        """Record an error of init(), finish() or a producer (the run fails); its one-line form."""
        ...

    def message_failed(self, step: StepConfig, worker: int, seq: int, error: BaseException,
                       message: Encoded | None) -> None:
        """Record a message whose run() raised."""
        ...

    def not_run(self, step: StepConfig, seq: int, message: Encoded) -> None:
        """Record a message that a halted step did not start."""
        ...

    def halt(self, step: str, reason: str) -> None:
        """Stop the run; ``step`` starts no further message."""
        ...


class Sink(Protocol):
    """Where a step's committed outputs go (an engine outlet, or the sequential runner's deliveries).

    Its ``lock`` is held except while the step's code runs (engine.outlets' Flusher takes it then).
    """

    lock: threading.Lock
    oldest: float
    answers_router: bool

    def commit(self, seq: int, outputs: Outputs, seconds: float = 0.0) -> None:
        """The code for input ``seq`` returned these outputs after ``seconds``."""
        ...

    def failed(self, seq: int, outcome: Outcome = Outcome.FAILED, seconds: float = 0.0) -> None:
        """Input ``seq`` has no outputs: its run() raised, or it was not run."""
        ...

    def flush_if_due(self) -> None:
        """Send what has waited long enough."""
        ...

    def produced(self, seconds: float) -> None:
        """A producer's message was committed after ``seconds`` in its generator."""
        ...


class Discard:
    """The sink of a step whose outputs go nowhere (a consumer in the run's process, or none attached yet)."""

    oldest = 0.0
    answers_router = False

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()  # held but while the step's code runs, as every sink's

    def commit(self, seq: int, outputs: Outputs, seconds: float = 0.0) -> None:
        """Nothing to send."""

    def failed(self, seq: int, outcome: Outcome = Outcome.FAILED, seconds: float = 0.0) -> None:
        """Nothing to answer."""

    def flush_if_due(self) -> None:
        """Nothing waits."""

    def produced(self, seconds: float) -> None:
        """Nothing to send."""


class Collector:
    """The emitter installed in a Component: encodes each output and keeps it until the call ends.

    The thread running the step's code sends without a lock; another thread (one the step started)
    may send while that code runs, and is refused once it has returned.
    """

    def __init__(self, step_name: str) -> None:
        self.step_name = step_name
        self.owner = threading.get_ident()
        self.pending: Outputs = []
        self.active = False  # the step's code is running: other threads may send
        self.refused: str | None = None  # the first send refused because no code of the step ran
        self._lock = threading.Lock()

    def claim(self) -> None:
        """Make the calling thread the one that runs the step's code."""
        self.owner = threading.get_ident()

    def __call__(self, message: Any, target: str | None) -> None:
        if threading.get_ident() == self.owner:
            self.pending.append((encode(message), target))
            return
        encoded = encode(message)
        with self._lock:
            if self.active:
                self.pending.append((encoded, target))
                return
            why = (f"step {self.step_name!r}: send_msg() called from thread {threading.current_thread().name!r} "
                   "while no init(), run() or finish() of the step was running: the output belongs to no message")
            self.refused = self.refused or why
        raise RoutingError(why)

    def add(self, message: Any, target: str | None = None) -> None:
        """Collect an output of the thread that runs the step's code (a returned or yielded value)."""
        self.pending.append((encode(message), target))

    def begin(self) -> None:
        """The step's code starts: other threads may send."""
        self.active = True

    def end(self) -> Outputs:
        """The step's code returned or raised: the outputs sent since ``begin``, in order."""
        with self._lock:
            self.active = False
            pending = self.pending
            self.pending = []
        return pending


def send_outputs(result: Any, emit: Collector | None) -> None:
    """Send what run() returned: a value, nothing (None), or each value a generator yields.

    A sink (``emit`` is None) still runs its generator to the end; its values go nowhere.
    """
    if result is None:
        return
    if isinstance(result, GeneratorType):
        for output in result:
            if output is not None and emit is not None:
                emit.add(output)
    elif emit is not None:
        emit.add(result)


def _run_generator(result: Any, emit: Collector | None) -> None:
    """What init() or finish() returned: only a generator's values are outputs (it runs to its end)."""
    if isinstance(result, GeneratorType):
        send_outputs(result, emit)


class StepExecutor:
    """Runs the code of one worker of one step (its own Component instance) by the contract above.

    It owns the worker's counts and times (plain values the monitor reads); what differs between
    runners is only the ``sink`` its outputs go to and the ``policy`` its failures go to.
    """

    def __init__(self, step: StepConfig, worker: int, policy: Policy) -> None:
        self.step = step
        self.worker = worker
        self.policy = policy
        self.sink: Sink = Discard()  # the runner attaches its own before the step's code runs
        self.component: Component | None = None
        self.collector = Collector(step.name)
        self.emitter = self.collector if step.next_steps else None  # a consumer's returned values go nowhere
        self.counts = StepCounts()
        self.busy_seq: int | None = None  # the message in run() now, to name a stuck worker
        self.busy_time = 0.0  # seconds in run() (a producer: in its generator) so far
        self.max_time = 0.0  # the longest single run() call
        self.first_error: str | None = None
        self.fatal = False  # the step failed (not only some of its messages)
        #: Told the message each run() starts and ends (None): a worker process's busy board.
        self.mark: Callable[[int, int | None], None] | None = None

    @property
    def started(self) -> bool:
        """Whether the Component was built and its init() succeeded."""
        return self.component is not None

    def fail(self, what: str, error: BaseException) -> None:
        """The step failed in ``what`` (init(), finish(), run()): the run will exit 1."""
        line = self.policy.lifecycle_failed(self.step.name, self.worker, what, error)
        self.first_error = self.first_error or line
        self.fatal = True

    def _lifecycle(self, what: str, code: Callable[[], Any]) -> tuple[Any, bool]:
        """Call init() or finish() with the sink unlocked; commit what it sent. (its result, whether it returned)"""
        sink = self.sink
        collector = self.collector
        collector.begin()
        sink.lock.release()
        try:
            result = code()
            _run_generator(result, self.emitter)
        except BaseException as err:  # a step's SystemExit fails the step, not the engine
            sink.lock.acquire()
            collector.end()
            self.fail(what, err)
            return None, False
        sink.lock.acquire()
        outputs = collector.end()
        self._check_refused()
        sink.commit(UNORDERED, outputs)
        return result, True

    def start(self, make: Callable[[], Component]) -> bool:
        """Build the Component with ``make`` and call its init(); True if the step may take messages."""
        self.collector.claim()
        try:
            component = make()
        except Exception as err:
            self.fail("init()", err)
            return False
        component._emit = self.emitter
        result, returned = self._lifecycle("init()", component.init)
        if returned and result is False:
            self.fail("init()", StepFailed("init() returned False: the step could not start"))
        if not returned or self.fatal:
            return False
        self.component = component
        return True

    def finish(self) -> None:
        """Call finish() (if init() succeeded) and commit what it sent."""
        if self.component is not None:
            if self.mark is not None:
                self.mark(self.worker, FINISHING)
            self._lifecycle("finish()", self.component.finish)
            if self.mark is not None:
                self.mark(self.worker, None)

    def settle(self) -> None:
        """The run is over: a send from a thread of the step refused since the last look still fails the step."""
        self._check_refused()

    def _check_refused(self) -> None:
        """A send from another thread was refused since the last look: the step fails, once."""
        refused = self.collector.refused
        if refused is not None and not self.fatal:
            self.fail("send_msg()", StepFailed(refused))

    def produce(self, stopping: Callable[[], bool]) -> None:
        """A producer: each value its generator yields is a message, and so is each it passes to send_msg()."""
        component = self.component
        if component is None:
            return
        sink = self.sink
        collector = self.collector
        counts = self.counts
        release, acquire = sink.lock.release, sink.lock.acquire
        iterator: Any = None

        def start() -> None:
            nonlocal iterator
            messages = component.run()
            try:
                iterator = iter(messages)
            except TypeError:
                raise TypeError(f"producer {self.step.name!r}: run() must be a generator, it returned "
                                f"{type(messages).__name__}") from None

        _, returned = self._lifecycle("run()", start)
        if not returned:
            counts.failed += 1
            return
        error: BaseException | None = None
        while not stopping():
            before = perf_counter()
            collector.begin()
            release()
            try:
                message = next(iterator)
            except StopIteration:
                acquire()
                collector.end()
                break
            except BaseException as err:  # a step's SystemExit fails the step, not the engine
                acquire()
                collector.end()
                error = err
                break
            acquire()
            spent = perf_counter() - before
            self.busy_time += spent
            if spent > self.max_time:
                self.max_time = spent
            if message is not None:
                try:
                    collector.add(message)
                except Exception as err:
                    collector.end()
                    error = err
                    break
            outputs = collector.end()
            if collector.refused is not None:
                self._check_refused()
            counts.processed += len(outputs)
            sink.commit(0, outputs)
            sink.produced(spent)
        if error is not None:
            counts.failed += 1
            self.fail("run()", error)

    def run(self, messages: Iterable[tuple[int, Buffer, list[Buffer]]]) -> None:
        """Run each message (sequence number, in-band pickle, buffers) through the step's run().

        The hot path of every worker: what every message needs is looked up once per batch, since a
        method call and its lookups cost as much as a small message's work.
        """
        component = self.component
        sink = self.sink
        if component is None:
            raise RuntimeError(f"step {self.step.name} worker {self.worker} was sent work although it did not start")
        counts = self.counts
        halted = self.policy.halted
        name = self.step.name
        release, acquire = sink.lock.release, sink.lock.acquire
        collector = self.collector
        begin, end = collector.begin, collector.end
        run = component.run
        emitter = self.emitter
        answers = sink.answers_router
        mark = self.mark
        for seq, inband, buffers in messages:
            counts.received += 1
            if name in halted:
                self.policy.not_run(self.step, seq, Encoded(bytes(inband), buffers))
                sink.failed(seq, Outcome.NOT_RUN)
                continue
            self.busy_seq = seq
            if mark is not None:
                mark(self.worker, seq)
            error: BaseException | None = None
            begin()
            start = perf_counter()
            release()
            try:
                result = run(decode(inband, buffers))
                if result is not None:
                    if isinstance(result, GeneratorType):
                        send_outputs(result, emitter)
                    elif emitter is not None:
                        emitter.add(result)
            except BaseException as err:  # a step's SystemExit fails the step, not the engine
                error = err
            acquire()
            spent = perf_counter() - start
            outputs = end()
            self.busy_time += spent
            if spent > self.max_time:
                self.max_time = spent
            self.busy_seq = None
            if mark is not None:
                mark(self.worker, None)
            if error is not None:
                self._failed(seq, error, Encoded(bytes(inband), buffers), spent)
                continue
            if collector.refused is not None:
                self._check_refused()
            counts.processed += 1
            if outputs or answers:  # a consumer's thread has nothing to commit
                sink.commit(seq, outputs, spent)
                if sink.oldest:
                    sink.flush_if_due()

    def _failed(self, seq: int, error: BaseException, message: Encoded, spent: float) -> None:
        """Message ``seq``'s run() raised ``error`` after ``spent`` seconds: its outputs are dropped; report it."""
        self.counts.failed += 1
        if isinstance(error, Exception):
            self.first_error = self.first_error or failure_line(error)
            self.policy.message_failed(self.step, self.worker, seq, error, message)
        else:
            self.fail("run()", error)
            self.policy.halt(self.step.name, f"step {self.step.name} raised {failure_line(error)} in run()")
        self.sink.failed(seq, Outcome.FAILED, spent)
