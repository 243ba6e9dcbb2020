"""Progress while a run goes on: a log line every few seconds, or the terminal display.

When stderr is a terminal, the live table of ``terminal`` shows the run. Otherwise (a batch job,
a pipe) the same figures go out as one INFO line of the ``pipeline.progress`` logger every
``interval`` seconds: per step messages processed and failed, queue fill, busy workers and rate.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..config import PipelineConfig
from ..status import RunStatus, StepStatus

if TYPE_CHECKING:
    from rich.console import Console

    from .terminal import TerminalProgress

log = logging.getLogger("pipeline.progress")


class LogProgress:
    """One log line of per-step figures every ``interval`` seconds."""

    def __init__(self, config: PipelineConfig, interval: float, start: float) -> None:
        self.config = config
        self.interval = interval
        self._next = start + interval

    def update(self, status: RunStatus, rates: Mapping[str, float], now: float) -> None:
        """Log a line if ``interval`` seconds passed since the last one."""
        if now >= self._next:
            self._next = now + self.interval
            log.info("%s", progress_line(self.config, status, rates))

    def close(self) -> None:
        """Nothing to take down."""


def make_progress(config: PipelineConfig, interval: float, start: float,
                  console: Console | None = None) -> TerminalProgress | LogProgress:
    """The terminal display if stderr is a terminal (or ``console`` is given), else log lines."""
    if console is not None or (sys.stderr is not None and sys.stderr.isatty()):
        from .terminal import TerminalProgress  # rich is imported only for a terminal

        return TerminalProgress(config, console)
    return LogProgress(config, interval, start)


def progress_line(config: PipelineConfig, status: RunStatus, rates: Mapping[str, float]) -> str:
    """``<state> <elapsed> s: STEP processed=.. failed=.. queue=../.. busy=../.. rate=../s | ...``."""
    parts = []
    for step in status.steps:
        c = step.counts
        parts.append(f"{step.name} processed={c.processed} failed={c.failed} queue={queue_text(config, step)} "
                     f"busy={step.busy}/{step.workers} rate={rates.get(step.name, 0.0):.1f}/s")
    return f"{status.state} {status.elapsed:.1f} s: " + " | ".join(parts)


def queue_text(config: PipelineConfig, step: StepStatus) -> str:
    """The step's queue and its limit; "-" for the producer, which has none."""
    if config.steps[step.name].kind == "producer":
        return "-"
    return str(step.queue) if step.queue_limit < 0 else f"{step.queue}/{step.queue_limit}"
