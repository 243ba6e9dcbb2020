"""The sequential runner: the whole graph in the calling thread, message by message.

It is the reference semantics of every other mode and the mode for debugging a step. Steps are
initialised sinks first, so what a step's init() sends reaches steps that are ready for it.
Each message goes depth first through the graph, one step's code at a time: a step's outputs
are delivered once its code has returned, so each step's times are its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

from pipeline.component import Component
from pipeline.config.model import PipelineConfig
from pipeline.config.options import RunOptions
from pipeline.execution.executor import Collector, Outputs, produce, send_outputs
from pipeline.execution.report import RunReport, StepReport, exit_status, stop_reason_of
from pipeline.execution.status import RunStatus, StepStatus, declared_totals
from pipeline.failures.describe import failure_line
from pipeline.failures.policy import FailurePolicy
from pipeline.message import Encoded, decode


class SequentialRunner:
    """Runs every step in the calling thread: each message goes depth-first through the graph."""

    def __init__(self, config: PipelineConfig, options: RunOptions | None = None) -> None:
        self.config = config
        self.options = options or RunOptions()
        self.reports = {name: StepReport(name) for name in config.steps}
        self.components: dict[str, Component] = {}
        self.collectors = {name: Collector(name) for name in config.steps}
        self.stopping = False
        self.signal: int | None = None
        self.policy = FailurePolicy(self.options.max_failures, self.options.dead_letter, self._stop)
        self._busy: tuple[str, int] | None = None  # the step and message in run() now
        totals = declared_totals(config)  # for the progress display's total and ETA
        self.status = {name: StepStatus(name, queue_limit=step.queue_limit, counts=self.reports[name].counts,
                                        total=totals.get(name))
                       for name, step in config.steps.items()}
        self.started = time.monotonic()
        self.state = "starting"

    def abort(self) -> None:
        """Nothing can stop a step's code in the calling thread: the caller must give up on it."""
        self.stop()

    def snapshot(self) -> RunStatus:
        """The run now (the monitor reads it from its own thread)."""
        return RunStatus(self.state, time.monotonic() - self.started, list(self.status.values()))

    def busy(self) -> list[str]:
        """The step in its run() now, if any."""
        return [f"step {self._busy[0]} on message {self._busy[1]}"] if self._busy else []

    def stop(self, signal: int | None = None) -> None:
        """Stop the producer after its current message; what it sent is still processed."""
        self.signal = self.signal or signal
        self.stopping = True

    def _stop(self, reason: str) -> None:
        self.stopping = True

    def run(self) -> RunReport:
        """Init every step (sinks first); if all succeeded run the producer to its end; finish every step."""
        order = self.config.topological_order()
        for collector in self.collectors.values():
            collector.claim()
        try:
            for step in reversed(order):
                self._init(step.name)
            if len(self.components) == len(order):
                self.state = "running"
                self._produce()
            self.state = "draining"
            for step in order:
                self._finish(step.name)
        finally:
            self.policy.close()
        for name, report in self.reports.items():
            report.busy_time, report.max_time = self.status[name].busy_time, self.status[name].max_time
        stop_reason = stop_reason_of(self.reports, self.signal, self.policy.stop_reason)
        status = exit_status(self.reports, self.signal, stop_reason, self.options.allow_failures)
        return RunReport(self.reports, status, stop_reason=stop_reason, wall_time=time.monotonic() - self.started)

    def _call(self, name: str, code: Callable[[], Any]) -> tuple[Outputs, BaseException | None]:
        """Run one step's code; its outputs (none if it raised) and its exception, timed as the step's own."""
        collector = self.collectors[name]
        status = self.status[name]
        status.busy = 1
        start = time.perf_counter()
        try:
            send_outputs(code(), self.components[name]._emit)
        except BaseException as err:  # a step's SystemExit fails the step, as in threads mode
            collector.take()
            return [], err
        finally:
            spent = time.perf_counter() - start
            status.busy_time += spent
            status.max_time = max(status.max_time, spent)
            status.busy = 0
        return collector.take(), None

    def _init(self, name: str) -> None:
        """Build and init() one step; it joins the run only if both succeed."""
        try:
            component = self.config.make_component(name)
        except Exception as err:
            self._lifecycle_error(name, "init()", err)
            return
        component._emit = self.collectors[name] if self.config.steps[name].next_steps else None
        self.components[name] = component
        outputs, error = self._call(name, component.init)
        if error is not None:
            del self.components[name]
            self._lifecycle_error(name, "init()", error)
        else:
            self._send(name, outputs)

    def _produce(self) -> None:
        """Each value the generator yields is a message, and so is each one it passes to send_msg."""
        name = self.config.producer.name
        counts = self.reports[name].counts
        collector = self.collectors[name]
        iterator: Any = None

        def start() -> None:
            nonlocal iterator
            iterator = produce(self.components[name])

        outputs, error = self._call(name, start)
        while error is None and not self.stopping:
            message = None

            def step() -> None:
                nonlocal message
                message = next(iterator)

            outputs, error = self._call(name, step)
            if isinstance(error, StopIteration):
                return
            if error is None and message is not None:
                try:
                    collector(message, None)
                except Exception as err:
                    error = err
                outputs += collector.take()
            if error is None:
                counts.processed += len(outputs)
                self._send(name, outputs)
        if error is not None:
            counts.failed += 1
            self._lifecycle_error(name, "run()", error)

    def _finish(self, name: str) -> None:
        component = self.components.get(name)
        if component is not None:  # a step whose init() failed has nothing to finish
            outputs, error = self._call(name, component.finish)
            if error is not None:
                self._lifecycle_error(name, "finish()", error)
            else:
                self._send(name, outputs)
        self.status[name].state = "failed" if self.reports[name].first_error else "finished"

    def _send(self, source: str, outputs: Outputs) -> None:
        """Deliver ``outputs`` of ``source`` and everything they lead to, depth first (no recursion:
        a chain may be longer than Python's recursion limit)."""
        stack = [self._deliveries(source, outputs)]
        while stack:
            delivery = next(stack[-1], None)
            if delivery is None:
                stack.pop()
                continue
            name, message = delivery
            produced = self._deliver(name, message)
            if produced:
                stack.append(self._deliveries(name, produced))

    def _deliveries(self, sender: str, outputs: Outputs) -> Iterator[tuple[str, Encoded]]:
        """Each (next step, message) of ``outputs``, counted as emitted when it is delivered."""
        counts = self.reports[sender].counts
        for message, target in outputs:
            for name in self.config.steps[sender].next_steps if target is None else (target,):
                counts.emitted += 1
                yield name, message

    def _deliver(self, name: str, message: Encoded) -> Outputs:
        """Run step ``name`` on ``message``; return its outputs."""
        step = self.config.steps[name]
        report = self.reports[name]
        seq = report.counts.received  # a message's sequence number is its arrival index at the step
        report.counts.received += 1
        component = self.components.get(name)
        if component is None:
            return []  # its init() failed (the run fails): the report counts the message as never processed
        if name in self.policy.halted:
            self.policy.not_run(step, seq, message)
            return []
        self.status[name].state = "running"
        outer, self._busy = self._busy, (name, seq)
        outputs, error = self._call(name, lambda: component.run(decode(message.inband, message.buffers)))
        self._busy = outer
        if error is None:
            report.counts.processed += 1
        elif isinstance(error, Exception):
            report.counts.failed += 1
            report.add_error(failure_line(error))
            self.policy.message_failed(step, 0, seq, error, message)
        else:
            report.counts.failed += 1
            self._lifecycle_error(name, "run()", error)
            self.policy.halt(name, f"step {name} raised {failure_line(error)} in run()")
        return outputs

    def _lifecycle_error(self, name: str, what: str, error: BaseException) -> None:
        self.reports[name].add_error(self.policy.lifecycle_failed(name, 0, what, error), fatal=True)
