"""The sequential runner: the whole graph in the calling thread, message by message.

It is the reference semantics of every other mode and the mode for debugging a step.
"""

from __future__ import annotations

import logging
from typing import Any

from .component import Component
from .config import PipelineConfig
from .message import decode, encode
from .report import RunReport, StepReport
from .step import failure_line, produce, send_outputs

log = logging.getLogger("pipeline.sequential")


class SequentialRunner:
    """Runs every step in the calling thread: each message goes depth-first through the graph."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.reports = {name: StepReport(name) for name in config.steps}
        self.components: dict[str, Component] = {}

    def run(self) -> RunReport:
        """Init every step, run the producer to its end, finish every step; return the report."""
        for step in self.config.topological_order():
            component = self.config.make_component(step.name)
            if step.next_steps:
                component._emit = lambda msg, target, source=step.name: self._emit(source, msg, target)
            component.init()
            self.components[step.name] = component
        producer = self.config.producer
        try:
            for message in produce(self.components[producer.name]):
                if message is not None:
                    self.reports[producer.name].counts.processed += 1
                    self._emit(producer.name, message, None)
        except Exception as err:
            self._fail(producer.name, err)
        for step in self.config.topological_order():
            component = self.components[step.name]
            try:
                send_outputs(component.finish(), component._emit)
            except Exception as err:
                self._fail(step.name, err)
        failed = any(r.counts.failed or r.first_error for r in self.reports.values())
        return RunReport(self.reports, exit_status=1 if failed else 0)

    def _emit(self, source: str, message: Any, target: str | None) -> None:
        targets = self.config.steps[source].next_steps if target is None else (target,)
        # Each delivery is a decoded copy, as in the threaded engine: a step never sees another's changes.
        for name, copy in zip(targets, encode(message).copies(len(targets))):
            self.reports[source].counts.emitted += 1
            self._deliver(name, decode(copy.inband, copy.buffers))

    def _deliver(self, name: str, message: Any) -> None:
        counts = self.reports[name].counts
        counts.received += 1
        component = self.components[name]
        try:
            send_outputs(component.run(message), component._emit)
        except Exception as err:
            counts.failed += 1
            self._fail(name, err)
        else:
            counts.processed += 1

    def _fail(self, name: str, error: Exception) -> None:
        log.error("step %s failed: %s", name, failure_line(error), exc_info=error)
        if self.reports[name].first_error is None:
            self.reports[name].first_error = failure_line(error)
