"""The live terminal display: a per-step table that rich redraws in place on stderr.

About four times a second: a title (the pipeline, its state, the time, and when the producer
declares its length, how far it is and the ETA), then per step its state, messages processed and
failed, queue fill (with a bar), busy workers and recent rate. It is transient: it disappears when
the run ends, before the summary table is printed. Prints to stderr during the run go above it;
stdout stays the steps'.

The table fits the terminal's width without ever cutting a number (60000 must not read ``600…``):
when it is too wide, the bar goes first, then numbers take units (``60.0k``), then the least useful
columns go (DROP_ORDER), and last the step names are shortened.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ..config import PipelineConfig
from ..status import RunStatus, StepStatus
from .progress import abbreviated, duration, queue_text, run_total

#: Seconds between two redraws.
REDRAW_SECONDS = 0.25
#: Width of the queue fill bar, in characters.
BAR_WIDTH = 12
#: The columns, in display order ("" is the queue's bar); numbers are right-aligned.
COLUMNS = ("STEP", "STATE", "PROCESSED", "FAILED", "QUEUE", "", "BUSY", "RATE/S")
#: The columns a narrow terminal loses, first to last (STEP and PROCESSED always stay).
DROP_ORDER = ("", "BUSY", "STATE", "RATE/S", "QUEUE", "FAILED")
#: Spaces between two columns.
GAP = 2
_LEFT = {"STEP", "STATE"}
_STATE_STYLES = {"running": "green", "draining": "yellow", "failed": "bold red", "finished": "dim"}


class TerminalProgress:
    """A live per-step table redrawn in place on ``console`` (stderr unless given)."""

    def __init__(self, config: PipelineConfig, console: Console | None = None) -> None:
        self.config = config
        self._next = 0.0
        self._console = console or Console(file=sys.stderr)
        # stdout stays the steps' own (a Printer writes there); prints to stderr go above the table.
        self._live = Live(console=self._console, auto_refresh=False, transient=True,
                          redirect_stdout=False, redirect_stderr=True)
        self._live.start()

    def update(self, status: RunStatus, rates: Mapping[str, float], now: float) -> None:
        """Redraw, at most every REDRAW_SECONDS."""
        if now >= self._next:
            self._next = now + REDRAW_SECONDS
            self._live.update(progress_table(self.config, status, rates, self._console.width), refresh=True)

    def close(self) -> None:
        """Take the display off the terminal."""
        self._live.stop()


@dataclass(frozen=True)
class _Row:
    """One step's cells: in full, and with numbers abbreviated."""

    step: StepStatus
    full: dict[str, str]
    short: dict[str, str]


def progress_table(config: PipelineConfig, status: RunStatus, rates: Mapping[str, float], width: int = 100) -> Group:
    """The terminal display, ``width`` columns wide at most: a title line and a row per step."""
    rows = [_Row(step, _cells(config, step, rates, str), _cells(config, step, rates, abbreviated))
            for step in status.steps]
    columns, short = _fit(rows, width)
    names = [row.step.name for row in rows]
    room = width - _width(columns, rows, short, names) + max(len(name) for name in [*names, "STEP"])
    if room < max(len(name) for name in names):
        names = [_shorten(name, max(room, 2)) for name in names]
    table = Table(box=None, padding=(0, GAP // 2), pad_edge=False, header_style="bold")
    for column in columns:
        table.add_column(column, justify="left" if column in _LEFT else "right", no_wrap=True,
                         width=BAR_WIDTH if column == "" else None)
    for row, name in zip(rows, names, strict=True):
        cells = row.short if short else row.full
        table.add_row(*(_render(config, row.step, column, cells, name) for column in columns))
    return Group(_title(config, status, rates, width), table)


def _cells(config: PipelineConfig, step: StepStatus, rates: Mapping[str, float],
           number: Callable[[int], str]) -> dict[str, str]:
    """A step's cells as text, its numbers written by ``number``."""
    c = step.counts
    rate = rates.get(step.name, 0.0)
    return {"STEP": step.name, "STATE": step.state, "PROCESSED": number(c.processed), "FAILED": number(c.failed),
            "QUEUE": queue_text(config, step, number), "": " " * BAR_WIDTH, "BUSY": f"{step.busy}/{step.workers}",
            "RATE/S": f"{rate:.1f}" if rate < 1000 else number(int(rate))}


def _fit(rows: Sequence[_Row], width: int) -> tuple[list[str], bool]:
    """The columns to show and whether numbers are abbreviated: the first layout that fits."""
    names = [row.step.name for row in rows]
    # Every column in full; without the bar; numbers with units; then fewer and fewer columns.
    layouts = [(0, False), (1, False), *((dropped, True) for dropped in range(1, len(DROP_ORDER) + 1))]
    for dropped, short in layouts:
        columns = [column for column in COLUMNS if column not in DROP_ORDER[:dropped]]
        if _width(columns, rows, short, names) <= width:
            return columns, short
    return [column for column in COLUMNS if column not in DROP_ORDER], True


def _width(columns: Sequence[str], rows: Sequence[_Row], short: bool, names: Sequence[str]) -> int:
    """The table's width in characters."""
    widths = []
    for column in columns:
        cells = names if column == "STEP" else [(row.short if short else row.full)[column] for row in rows]
        widths.append(max(len(column), *(len(cell) for cell in cells)))
    return sum(widths) + GAP * (len(columns) - 1)


def _shorten(name: str, size: int) -> str:
    """A step name cut to ``size`` characters, its end marked (names may be cut, numbers never)."""
    return name if len(name) <= size else name[: size - 1] + "…"


def _render(config: PipelineConfig, step: StepStatus, column: str, cells: Mapping[str, str],
            name: str) -> Text | ProgressBar | str:
    if column == "STEP":
        return name
    if column == "STATE":
        return Text(step.state, style=_STATE_STYLES.get(step.state, ""))
    if column == "FAILED":
        return Text(cells[column], style="red" if step.counts.failed else "")
    if column == "":
        return _bar(config, step)
    return cells[column]


def _bar(config: PipelineConfig, step: StepStatus) -> ProgressBar | str:
    """The queue's fill as a bar (none for the producer or an unbounded queue)."""
    if config.steps[step.name].kind == "producer" or step.queue_limit < 1:
        return ""
    return ProgressBar(total=step.queue_limit, completed=min(step.queue, step.queue_limit), width=BAR_WIDTH)


def _title(config: PipelineConfig, status: RunStatus, rates: Mapping[str, float], width: int) -> Text:
    """``chain  running  12.3 s  COUNT 600/1000 (60%)  ETA 8 s``, or less of it when narrow."""
    state, elapsed = status.state, f"{status.elapsed:.1f} s"
    candidates = [[state, elapsed]]
    total = run_total(status, rates)
    if total is not None:
        eta = [f"ETA {duration(total.eta)}"] if total.eta is not None else []
        candidates = [[state, elapsed, f"{total.step} {total.fraction()}", *eta],
                      [state, elapsed, f"{total.step} {total.fraction(abbreviated)}", *eta],
                      [state, f"{total.percent}%", *eta], [state, f"{total.percent}%"]]
    parts = next((c for c in candidates if len("  ".join([config.name, *c])) <= width), [state])
    return Text.assemble((config.name, "bold"), *(f"  {part}" for part in parts), no_wrap=True, overflow="ellipsis")
