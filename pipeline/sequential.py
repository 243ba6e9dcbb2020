"""The sequential runner: the whole graph in the calling thread, message by message.

It is the reference semantics of every other mode and the mode for debugging a step.
"""

from __future__ import annotations

import time
from typing import Any

from .component import Component
from .config import PipelineConfig
from .failures import FailurePolicy
from .message import Encoded, decode, encode
from .options import RunOptions
from .report import RunReport, StepReport, exit_status
from .status import RunStatus, StepStatus, declared_totals
from .step import failure_line, produce, send_outputs


class SequentialRunner:
    """Runs every step in the calling thread: each message goes depth-first through the graph."""

    def __init__(self, config: PipelineConfig, options: RunOptions | None = None) -> None:
        self.config = config
        self.options = options or RunOptions()
        self.reports = {name: StepReport(name) for name in config.steps}
        self.components: dict[str, Component] = {}
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
        """Init every step; if all succeeded run the producer to its end; finish every step; report."""
        order = self.config.topological_order()
        try:
            for step in order:
                self._init(step.name)
            if len(self.components) == len(order):
                self.state = "running"
                self._produce()
            self.state = "draining"
            for step in order:
                self._finish(step.name)
        finally:
            self.policy.close()
        status = exit_status(self.reports, self.signal, self.policy.stop_reason, self.options.allow_failures)
        return RunReport(self.reports, status, stop_reason=self.policy.stop_reason)

    def _init(self, name: str) -> None:
        """Build and init() one step; it joins the run only if both succeed."""
        try:
            component = self.config.make_component(name)
            if self.config.steps[name].next_steps:
                component._emit = lambda msg, target: self._emit(name, msg, target)
            component.init()
        except Exception as err:
            self._lifecycle_error(name, "init()", err)
        else:
            self.components[name] = component

    def _produce(self) -> None:
        name = self.config.producer.name
        counts = self.reports[name].counts
        try:
            for message in produce(self.components[name]):
                if message is not None:
                    counts.processed += 1
                    self._emit(name, message, None)
                if self.stopping:
                    break
        except Exception as err:
            counts.failed += 1
            self._lifecycle_error(name, "run()", err)

    def _finish(self, name: str) -> None:
        component = self.components.get(name)
        if component is not None:  # a step whose init() failed has nothing to finish
            try:
                send_outputs(component.finish(), component._emit)
            except Exception as err:
                self._lifecycle_error(name, "finish()", err)
        self.status[name].state = "failed" if self.reports[name].first_error else "finished"

    def _emit(self, source: str, message: Any, target: str | None) -> None:
        targets = self.config.steps[source].next_steps if target is None else (target,)
        # Each delivery is a decoded copy, as in the threaded engine: a step never sees another's changes.
        for name, copy in zip(targets, encode(message).copies(len(targets)), strict=True):
            self.reports[source].counts.emitted += 1
            self._deliver(name, copy)

    def _deliver(self, name: str, message: Encoded) -> None:
        component = self.components.get(name)
        if component is None:
            return  # its init() failed (the run fails): the report counts the message as never processed
        report = self.reports[name]
        seq = report.counts.received  # a message's sequence number is its arrival index at the step
        report.counts.received += 1
        outer, self._busy = self._busy, (name, seq)
        status = self.status[name]
        status.state, status.busy = "running", 1
        start = time.perf_counter()
        try:
            send_outputs(component.run(decode(message.inband, message.buffers)), component._emit)
        except Exception as err:
            report.counts.failed += 1
            report.add_error(failure_line(err))
            self.policy.message_failed(self.config.steps[name], 0, seq, err, message)
        else:
            report.counts.processed += 1
        finally:
            self._busy = outer
            spent = time.perf_counter() - start
            status.busy_time += spent
            status.max_time = max(status.max_time, spent)
            status.busy = 0

    def _lifecycle_error(self, name: str, what: str, error: Exception) -> None:
        self.reports[name].add_error(self.policy.lifecycle_failed(name, 0, what, error), fatal=True)
