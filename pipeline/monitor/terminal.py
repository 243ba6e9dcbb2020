"""The live terminal display: a per-step table that rich redraws in place on stderr.

About four times a second: per step its state, messages processed and failed, queue fill (with a
bar), busy workers and recent rate. It is transient: it disappears when the run ends, before the
summary table is printed. Prints to stderr during the run go above it; stdout stays the steps'.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..config import PipelineConfig
from ..status import RunStatus, StepStatus
from .progress import queue_text

#: Seconds between two redraws.
REDRAW_SECONDS = 0.25
#: Width of the queue fill bar, in characters.
BAR_WIDTH = 12


class TerminalProgress:
    """A live per-step table redrawn in place on ``console`` (stderr unless given)."""

    def __init__(self, config: PipelineConfig, console: Console | None = None) -> None:
        self.config = config
        self._next = 0.0
        # stdout stays the steps' own (a Printer writes there); prints to stderr go above the table.
        self._live = Live(console=console or Console(file=sys.stderr), auto_refresh=False, transient=True,
                          redirect_stdout=False, redirect_stderr=True)
        self._live.start()

    def update(self, status: RunStatus, rates: Mapping[str, float], now: float) -> None:
        """Redraw, at most every REDRAW_SECONDS."""
        if now >= self._next:
            self._next = now + REDRAW_SECONDS
            self._live.update(progress_table(self.config, status, rates), refresh=True)

    def close(self) -> None:
        """Take the display off the terminal."""
        self._live.stop()


def progress_table(config: PipelineConfig, status: RunStatus, rates: Mapping[str, float]) -> Group:
    """The terminal display: a title line and a row per step."""
    table = Table(box=None, padding=(0, 1), header_style="bold")
    for column in ("STEP", "STATE"):
        table.add_column(column)
    for column in ("PROCESSED", "FAILED", "QUEUE"):
        table.add_column(column, justify="right")
    table.add_column("", width=BAR_WIDTH)
    for column in ("BUSY", "RATE/S"):
        table.add_column(column, justify="right")
    for step in status.steps:
        c = step.counts
        failed = Text(str(c.failed), style="red" if c.failed else "")
        table.add_row(step.name, _state(step.state), str(c.processed), failed, queue_text(config, step),
                      _bar(config, step), f"{step.busy}/{step.workers}", f"{rates.get(step.name, 0.0):.1f}")
    title = Text.assemble((config.name, "bold"), f"  {status.state}  {status.elapsed:.1f} s")
    return Group(title, table)


def _bar(config: PipelineConfig, step: StepStatus) -> ProgressBar | str:
    """The queue's fill as a bar (none for the producer or an unbounded queue)."""
    if config.steps[step.name].kind == "producer" or step.queue_limit < 1:
        return ""
    return ProgressBar(total=step.queue_limit, completed=min(step.queue, step.queue_limit), width=BAR_WIDTH)


def _state(state: str) -> Text:
    style = {"running": "green", "draining": "yellow", "failed": "bold red", "finished": "dim"}.get(state, "")
    return Text(state, style=style)
