"""The sequential runner: the whole graph in the calling thread, message by message.

It is the reference semantics of every other mode and the mode for debugging a step. Each step's
code runs through a ``StepExecutor`` as in every other mode; only the scheduling is this runner's
own. Steps are initialised sinks first, so what a step's init() sends reaches steps that are ready
for it. Each message goes depth first through the graph, one step's code at a time: a step's
outputs are delivered once its code has returned, so each step's times are its own.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from pipeline.config.model import PipelineConfig
from pipeline.config.options import RunOptions
from pipeline.console import lent_signals
from pipeline.execution.executor import Outcome, Outputs, Signalled, StepExecutor, signalled
from pipeline.execution.report import RunReport, StepReport, exit_status, stop_reason_of
from pipeline.execution.status import RunStatus, StepStatus, declared_totals
from pipeline.failures.policy import FailurePolicy
from pipeline.message import Copied, Encoded


class _Deliveries:
    """The sink of one step: its committed outputs are delivered, depth first, once its code returned."""

    oldest = 0.0
    answers_router = False
    copies = True  # the next steps run in this thread
    adopts = True  # each output, and all it leads to, before the step's code runs again (depth first)

    def __init__(self, runner: SequentialRunner, name: str) -> None:
        self.runner = runner
        self.name = name
        self.lock = threading.Lock()
        self.lock.acquire()  # held but while the step's code runs, as every sink's

    def commit(self, seq: int, outputs: Outputs, seconds: float = 0.0) -> None:
        """Queue the outputs for delivery (the runner delivers them before the next message of the producer)."""
        if outputs:
            self.runner.stack.append(self.runner.deliveries(self.name, outputs))

    def partial(self, seq: int, outputs: Outputs) -> None:
        """A chunk of the outputs of a call that goes on: deliver it now, and everything it leads to, so that it
        is not held until the call returns (memory stays bounded however many outputs one input has)."""
        depth = len(self.runner.stack)
        self.runner.stack.append(self.runner.deliveries(self.name, outputs))
        self.runner.deliver(depth)

    def failed(self, seq: int, outcome: Outcome = Outcome.FAILED, seconds: float = 0.0) -> None:
        """Nothing to deliver."""

    def flush_if_due(self) -> None:
        """Delivery is the runner's: nothing waits here."""

    def produced(self, seconds: float) -> None:
        """A producer's message: deliver it, and everything it leads to, now."""
        self.runner.deliver()

    def unsendable(self, made: int) -> int | None:
        """Its number: the messages made before it."""
        return made


class SequentialRunner:
    """Runs every step in the calling thread: each message goes depth-first through the graph."""

    def __init__(self, config: PipelineConfig, options: RunOptions | None = None) -> None:
        self.config = config
        self.options = options or RunOptions()
        self.stopping = False
        self.signal: int | None = None
        self.policy = FailurePolicy.for_run(self.options, self._stop)
        self.executors: dict[str, StepExecutor] = {}
        for name, step in config.steps.items():
            executor = self.executors[name] = StepExecutor(step, 0, self.policy)
            executor.sink = _Deliveries(self, name)
        #: What is left to deliver: an iterator of (next step, message) per committed batch, newest last.
        self.stack: list[Iterator[tuple[str, Encoded | Copied]]] = []
        totals = declared_totals(config)  # for the progress display's total and ETA
        self.status = {name: StepStatus(name, queue_limit=step.queue_limit, counts=self.executors[name].counts,
                                        total=totals.get(name))
                       for name, step in config.steps.items()}
        self.started = time.monotonic()
        self.state = "starting"
        self.shards: list[int] = []  # a producer in worker processes elsewhere: messages of each of its shards

    def abort(self) -> None:
        """Nothing can stop a step's code in the calling thread: the caller must give up on it."""
        self.stop()

    def discard(self) -> None:
        """Close its failure policy (its dead-letter file), unless run() did (it was refused, its monitor could not
        start, or Ctrl+C came first)."""
        self.policy.close()

    def snapshot(self) -> RunStatus:
        """The run now (the monitor reads it from its own thread)."""
        for name, status in self.status.items():
            executor = self.executors[name]
            status.busy = int(executor.busy_seq is not None)
            status.busy_time, status.max_time = executor.busy_time, executor.max_time
        return RunStatus(self.state, time.monotonic() - self.started, list(self.status.values()))

    def busy(self) -> list[str]:
        """The step inside its code now (its run(), init() or finish()), if any."""
        return [f"step {name} {doing}" for name, executor in self.executors.items()
                if (doing := executor.doing()) is not None]

    def stop(self, signal: int | None = None) -> None:
        """Stop the producer after its current message; what it sent is still processed."""
        self.signal = self.signal or signal
        self.stopping = True

    def _stop(self, reason: str) -> None:
        self.stopping = True

    def _stopping(self) -> bool:
        return self.stopping

    def run(self) -> RunReport:
        """Init every step (sinks first); if all succeeded run the producer to its end; finish every step.

        From the main thread, what a signal handler raises (Python's own SIGINT handler's KeyboardInterrupt, a
        user's SIGTERM handler's SystemExit) comes as Signalled meanwhile, so that it stops the run at once and
        leaves this call as itself, as in the other modes, instead of failing the step whose code it interrupted.
        pipeline-run's guard reads signals itself: its handlers raise nothing."""
        lent = _lend_handlers() if threading.current_thread() is threading.main_thread() else {}
        order = self.config.topological_order()
        try:
            for step in reversed(order):
                executor = self.executors[step.name]
                executor.start(lambda name=step.name: self.config.make_component(name))
                self.deliver()
            if all(executor.started for executor in self.executors.values()):
                self.state = "running"
                self._produce()
            else:
                self.policy.stop_not_started()
            self.state = "draining"
            for step in order:
                executor = self.executors[step.name]
                executor.finish()
                self.deliver()
                self.status[step.name].state = "failed" if executor.first_error else "finished"
        except Signalled as signalled:
            raise signalled.error.with_traceback(signalled.error.__traceback__) from None
        finally:
            for signum, (handler, wrapped) in lent.items():
                if signal.getsignal(signum) is wrapped:  # a step's code may have set one of its own
                    lent_signals.restore(signum, handler)
            self.policy.close(self.executors[self.config.producer.name].component)
        return self._report()

    def _produce(self) -> None:
        """Run the producer; one in worker processes elsewhere (engine.shards) runs its shards here in turn."""
        producer = self.config.producer
        executor = self.executors[producer.name]
        count = producer.nb_process
        for shard in range(max(count, 1)):
            before = executor.counts.processed
            executor.produce(self._stopping, (shard, count) if count else None)
            self.deliver()
            if count:
                self.shards.append(executor.counts.processed - before)
            if executor.fatal or self.stopping:
                break

    def report_now(self) -> RunReport:
        """The report as the run stands, from another thread (this one is in a step's code): a running run's."""
        return self._report(running=True)

    def _report(self, running: bool = False) -> RunReport:
        reports = {}
        for name, executor in self.executors.items():
            executor.settle()
            # Copies: a report taken while the run goes on (report_now()) keeps its figures, as the other modes'.
            report = reports[name] = StepReport(name, counts=replace(executor.counts), busy_time=executor.busy_time,
                                                max_time=executor.max_time, total=self.status[name].total)
            if executor.first_error:
                report.add_error(executor.first_error, fatal=executor.fatal)
        reports[self.config.producer.name].shards = list(self.shards)
        stop_reason = stop_reason_of(reports, self.signal, self.policy.stop_reason, running)
        status = exit_status(reports, self.signal, stop_reason, self.options.allow_failures, self.policy.unrecorded,
                             self.policy.not_replayed.failed)
        return RunReport(reports, status, stop_reason=stop_reason, wall_time=time.monotonic() - self.started,
                         running=running, busy=self.busy() if running else [])

    def deliveries(self, sender: str, outputs: Outputs) -> Iterator[tuple[str, Encoded | Copied]]:
        """Each (next step, message) of ``outputs``, counted as emitted when it is delivered."""
        counts = self.executors[sender].counts
        for message, target in outputs:
            for name in self.config.steps[sender].next_steps if target is None else (target,):
                counts.emitted += 1
                yield name, message

    def deliver(self, depth: int = 0) -> None:
        """Deliver what is queued above ``depth`` and everything it leads to, depth first (no recursion: a chain
        may be longer than Python's recursion limit; only a chunk handed on while its step's code goes on, see
        _Deliveries.partial, delivers from inside that code, one level deeper)."""
        stack = self.stack
        while len(stack) > depth:
            delivery = next(stack[-1], None)
            if delivery is None:
                stack.pop()
                continue
            name, message = delivery
            executor = self.executors[name]
            if executor.started:
                self.status[name].state = "running"
            # A message's sequence number is its arrival index at the step (one whose init() failed does not run it).
            executor.run([(executor.counts.received, message, None)])


def _lend_handlers() -> dict[int, tuple[Callable[[int, Any], Any], Callable[[int, Any], Any]]]:
    """Wrap each Python handler of the signals that stop a run, so that what it raises comes as Signalled, which the
    steps' executors let through; per signal, its handler and the wrapper installed."""
    lent = {}
    for signum in lent_signals.HANDLED:
        handler = signal.getsignal(signum)
        if callable(handler):
            wrapped = _raising_as_signalled(handler)
            lent_signals.install(signum, wrapped)
            lent[signum] = (handler, wrapped)
    return lent


def _raising_as_signalled(handler: Callable[[int, Any], Any]) -> Callable[[int, Any], Any]:
    """``handler``, whose exception comes as Signalled."""
    def handle(signum: int, frame: Any) -> Any:
        try:
            return handler(signum, frame)
        except BaseException as err:  # a KeyboardInterrupt, a SystemExit: the caller's, not the step's
            raise signalled(err) from None
    return handle
