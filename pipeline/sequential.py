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
        """Init every step; if all succeeded run the producer to its end; finish every step; report."""
        order = self.config.topological_order()
        for step in order:
            self._init(step.name)
        producer = self.config.producer.name
        if len(self.components) == len(order):
            try:
                for message in produce(self.components[producer]):
                    if message is not None:
                        self.reports[producer].counts.processed += 1
                        self._emit(producer, message, None)
            except Exception as err:
                self.reports[producer].counts.failed += 1
                self._fail(producer, err)
        for step in order:
            component = self.components.get(step.name)
            if component is None:
                continue  # its init() failed: there is nothing to finish
            try:
                send_outputs(component.finish(), component._emit)
            except Exception as err:
                self._fail(step.name, err)
        failed = any(r.counts.failed or r.first_error for r in self.reports.values())
        return RunReport(self.reports, exit_status=1 if failed else 0)

    def _init(self, name: str) -> None:
        """Build and init() one step; it joins the run only if both succeed."""
        try:
            component = self.config.make_component(name)
            if self.config.steps[name].next_steps:
                component._emit = lambda msg, target: self._emit(name, msg, target)
            component.init()
        except Exception as err:
            self._fail(name, err)
        else:
            self.components[name] = component

    def _emit(self, source: str, message: Any, target: str | None) -> None:
        targets = self.config.steps[source].next_steps if target is None else (target,)
        # Each delivery is a decoded copy, as in the threaded engine: a step never sees another's changes.
        for name, copy in zip(targets, encode(message).copies(len(targets)), strict=True):
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
