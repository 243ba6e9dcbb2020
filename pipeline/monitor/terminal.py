"""The live terminal display: a per-step table that rich redraws in place on stderr.

About four times a second: a title (the pipeline, its state, the time, and when the producer
declares its length, how far it is and the ETA), then per step its state, messages processed and
failed, queue fill (with a bar), busy workers, where its workers run (WORKERS, ``2p+1r``: shown
only when some step has worker processes or remote workers) and recent rate. Under the table, a
line per step with something to say about its worker processes: messages redelivered and processes
restarted, its remote workers by key and host, and the worker processes whose heartbeat is late.
It is transient: it disappears when the run ends, before the summary table is printed. Prints to
stderr during the run go above it; stdout stays the steps'.

The table fits the terminal's width without ever cutting a number (60000 must not read ``600…``):
when it is too wide, the bar goes first, then numbers take units (``60.0k``), then the least useful
columns go (DROP_ORDER), and last the step names are shortened (in their middle). A note line is cut between its
items, never inside one: what does not fit is counted (``+2 more``).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from rich.console import Console, Group
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from pipeline.config.model import PipelineConfig
from pipeline.console.humanize import abbreviated, duration
from pipeline.execution.status import RunStatus, StepStatus
from pipeline.monitor.progress import line_steps, queue_text, run_total, step_mix
from pipeline.monitor.workers import is_late, label

log = logging.getLogger("pipeline.monitor")

#: Seconds between two redraws.
REDRAW_SECONDS = 0.25
#: Width of the queue fill bar, in characters.
BAR_WIDTH = 12
#: The columns, in display order ("" is the queue's bar); numbers are right-aligned.
COLUMNS = ("STEP", "STATE", "PROCESSED", "FAILED", "QUEUE", "", "BUSY", "WORKERS", "RATE/S")
#: The columns a narrow terminal loses, first to last (STEP and PROCESSED always stay).
DROP_ORDER = ("", "WORKERS", "BUSY", "STATE", "RATE/S", "QUEUE", "FAILED")
#: Lines of the display above the steps' rows: the title and the table's header.
HEAD_LINES = 2
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
        self._shown: Group | Text = Text("")  # the last drawing that worked
        self._live.start()

    def update(self, status: RunStatus, rates: Mapping[str, float], now: float) -> None:
        """Redraw, at most every REDRAW_SECONDS; a drawing that fails is raised once, and not drawn again (the
        display keeps its last good one)."""
        if now >= self._next:
            self._next = now + REDRAW_SECONDS
            table = progress_table(self.config, status, rates, self._console.width, self._console.height)
            try:
                self._live.update(table, refresh=True)
            except Exception:
                self._live.update(self._shown, refresh=False)
                raise
            self._shown = table

    def close(self) -> None:
        """Take the display off the terminal, whatever its last drawing does: what was printed meanwhile, above the
        table, must reach stderr, and the run's report after it (a drawing that raised lost them all)."""
        try:
            # stop() draws its renderable once more, whole: a table taller than the terminal scrolls, and the erase
            # that follows cannot reach back above the screen's top. Nothing is left to draw, so nothing stays.
            self._live.update(Text(""), refresh=False)
            self._live.stop()
        except Exception:
            log.exception("the progress display failed as it ended")


@dataclass(frozen=True)
class _Row:
    """One step's cells: in full, and with numbers abbreviated."""

    step: StepStatus
    full: dict[str, str]
    short: dict[str, str]


def progress_table(config: PipelineConfig, status: RunStatus, rates: Mapping[str, float], width: int = 100,
                   height: int | None = None) -> Group:
    """The terminal display, ``width`` columns wide and ``height`` lines high at most: a title line, a row per step
    (on a terminal too short for all, those at work first, and how many more there are), and the notes on worker
    processes."""
    steps = status.steps
    notes = [note for note in (_note(s, width) for s in steps) if note is not None]
    if height is not None and len(steps) > height - HEAD_LINES - len(notes):
        steps = line_steps(steps, max(1, height - HEAD_LINES - 1 - len(notes)))  # 1: the line that counts the rest
        notes = [note for note in (_note(s, width) for s in steps) if note is not None]
    rows = [_Row(step, _cells(config, step, rates, str), _cells(config, step, rates, abbreviated)) for step in steps]
    mixed = any(not step_mix(config, s).plain for s in status.steps)
    columns, short = _fit(rows, width, [c for c in COLUMNS if mixed or c != "WORKERS"])
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
    left_out = len(status.steps) - len(steps)
    more = [Text(f"+{left_out} more steps", style="dim")] if left_out else []
    return Group(_title(config, status, rates, width), table, *more, *notes)


def _cells(config: PipelineConfig, step: StepStatus, rates: Mapping[str, float],
           number: Callable[[int], str]) -> dict[str, str]:
    """A step's cells as text, its numbers written by ``number``."""
    c = step.counts
    rate = rates.get(step.name, 0.0)
    return {"STEP": step.name, "STATE": step.state, "PROCESSED": number(c.processed), "FAILED": number(c.failed),
            "QUEUE": _queue_cell(config, step, number), "": " " * BAR_WIDTH, "BUSY": f"{step.busy}/{step.workers}",
            "WORKERS": str(step_mix(config, step)),
            "RATE/S": f"{rate:.1f}" if rate < 1000 else number(int(rate))}


def _queue_cell(config: PipelineConfig, step: StepStatus, number: Callable[[int], str]) -> str:
    """``  7/512``: the queue padded to the width of its limit, so that the column keeps its width from frame
    to frame as the queue fills and empties (a table that changes width each frame is hard to read)."""
    text = queue_text(config, step, number)
    queue, slash, limit = text.partition("/")
    return f"{queue:>{len(limit)}}{slash}{limit}" if slash else text


def _fit(rows: Sequence[_Row], width: int, wanted: Sequence[str]) -> tuple[list[str], bool]:
    """The columns to show, of ``wanted``, and whether numbers are abbreviated: the first layout that fits."""
    names = [row.step.name for row in rows]
    # Every column in full; without the bar; numbers with units; then fewer and fewer columns.
    layouts = [(0, False), (1, False), *((dropped, True) for dropped in range(1, len(DROP_ORDER) + 1))]
    for dropped, short in layouts:
        columns = [column for column in wanted if column not in DROP_ORDER[:dropped]]
        if _width(columns, rows, short, names) <= width:
            return columns, short
    return [column for column in wanted if column not in DROP_ORDER], True


def _width(columns: Sequence[str], rows: Sequence[_Row], short: bool, names: Sequence[str]) -> int:
    """The table's width in characters."""
    widths = []
    for column in columns:
        cells = names if column == "STEP" else [(row.short if short else row.full)[column] for row in rows]
        widths.append(max(len(column), *(len(cell) for cell in cells)))
    return sum(widths) + GAP * (len(columns) - 1)


def _shorten(name: str, size: int) -> str:
    """A step name cut in its middle to ``size`` characters, marked (names may be cut, numbers never): its start and
    its end stay, so that names differing only at their end (``STEP_…_0``, ``STEP_…_1``) stay apart."""
    if len(name) <= size:
        return name
    tail = (size - 1) // 2
    return name[: size - 1 - tail] + "…" + name[len(name) - tail:]


def _render(config: PipelineConfig, step: StepStatus, column: str, cells: Mapping[str, str],
            name: str) -> Text | ProgressBar | str:
    if column == "STEP":
        return Text(name)  # as it is: a plain str is rich markup, and a step named "[/]" broke every drawing
    if column == "STATE":
        return Text(step.state, style=_STATE_STYLES.get(step.state, ""))
    if column == "FAILED":
        return Text(cells[column], style="red" if step.counts.failed else "")
    if column == "":
        return _bar(config, step)
    return Text(cells[column])


def _bar(config: PipelineConfig, step: StepStatus) -> ProgressBar | str:
    """The queue's fill as a bar (none for the producer or an unbounded queue)."""
    if config.steps[step.name].kind == "producer" or step.queue_limit < 1:
        return ""
    return ProgressBar(total=step.queue_limit, completed=min(step.queue, step.queue_limit), width=BAR_WIDTH)


def _note(step: StepStatus, width: int) -> Text | None:
    """``HILLAS  3 redelivered · 1 restart · remote node7@10.0.0.5 · pid 4321 late 3 s``, ``width``
    characters at most, or None when the step's workers have nothing to say. Items that do not fit
    are counted (``+2 more``), never cut; numbers take units before the step's name is shortened."""
    items = _note_items(step, str)
    if not items:
        return None
    if len(step.name) + GAP + len(items[0][0]) > width:
        items = _note_items(step, abbreviated)
    rest = f" · +{len(items) - 1} more" if len(items) > 1 else ""
    name = _shorten(step.name, max(2, width - GAP - len(items[0][0]) - len(rest)))
    shown = _fitting(items, width - len(name) - GAP)
    if not shown:  # not even the first item fits: the name keeps what the count leaves it
        name = _shorten(step.name, max(2, width - GAP - len(f"+{len(items)} more")))
    parts: list[str | tuple[str, str]] = [(name, "bold"), " " * GAP]
    for i, (text, style) in enumerate(shown):
        parts += [" · "] * (i > 0) + [(text, style)]
    if len(shown) < len(items):
        parts.append(f"{' · ' if shown else ''}+{len(items) - len(shown)} more")
    return Text.assemble(*parts, no_wrap=True, overflow="crop")


def _note_items(step: StepStatus, number: Callable[[int], str]) -> list[tuple[str, str]]:
    """The items of a step's note, each with its style: redeliveries and restarts, late worker
    processes, then the remote workers."""
    items = [(f"{number(step.redelivered)} redelivered", "yellow")] if step.redelivered else []
    if step.restarts:
        items.append((f"{number(step.restarts)} restart" + ("s" if step.restarts > 1 else ""), "yellow"))
    for worker in step.worker_processes:
        if is_late(worker.silent):
            where = "remote " * (worker.kind == "remote")
            items.append((f"{where}{label(worker)} late {duration(worker.silent)}", "bold yellow"))
    items += [(f"remote {label(w)}", "") for w in step.worker_processes if w.kind == "remote" and not is_late(w.silent)]
    return items


def _fitting(items: Sequence[tuple[str, str]], room: int) -> Sequence[tuple[str, str]]:
    """The most items (from the first) that fit ``room`` characters joined by " · ", with room left
    for "+N more" when some are left out."""
    for count in range(len(items), -1, -1):
        used = sum(len(text) for text, _ in items[:count]) + 3 * max(0, count - 1)
        if count < len(items):
            used += len(f"+{len(items) - count} more") + (3 if count else 0)
        if used <= room:
            return items[:count]
    return ()


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
