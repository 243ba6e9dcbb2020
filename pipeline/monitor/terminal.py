"""The live terminal display: a per-step table that rich draws, kept in the last lines of the terminal on stderr.

About four times a second: a title (the pipeline, its state, the time, and when the producer
declares its length, how far it is and the ETA), then per step its state, messages processed and
failed, queue fill (with a bar), busy workers, where its workers run (WORKERS, ``2p+1r``: shown
only when some step has worker processes or remote workers) and recent rate. Under the table, a
line per step with something to say about its worker processes: messages redelivered and processes
restarted, its remote workers by key and host, and the worker processes whose heartbeat is late.
It is transient: it disappears when the run ends, before the summary table is printed. It takes the terminal's last
lines (less than half of them) below a scrolling region: whatever any thread or process prints to the terminal, on
stdout or stderr (a worker process writes there itself), scrolls in the lines above and is never drawn over.

The table fits the terminal's width, counted in terminal cells (a CJK character takes two), without ever cutting a
number (60000 must not read ``600…``):
when it is too wide, the bar goes first, then numbers take units (``60.0k``), then the least useful
columns go (DROP_ORDER), and last the step names are shortened (in their middle). A note line is cut between its
items, never inside one: what does not fit is counted (``+2 more``).
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from rich.cells import cell_len, get_character_cell_size
from rich.console import Console, Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from pipeline.config.model import PipelineConfig
from pipeline.console.humanize import abbreviated, duration
from pipeline.errors import printable
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
    """A live per-step table kept in the last lines of the terminal of ``console`` (stderr unless given)."""

    def __init__(self, config: PipelineConfig, console: Console | None = None) -> None:
        self.config = config
        self._next = 0.0
        self._console = console or Console(file=sys.stderr)
        self._size: tuple[int, int] | None = None  # the terminal's (lines, columns) at the last drawing
        self._reserved = 0  # lines at the terminal's bottom that are the table's
        self._lock = threading.Lock()  # the monitor's thread draws; a stop that cannot wait gives the lines back
        _shown.add(self)

    def update(self, status: RunStatus, rates: Mapping[str, float], now: float) -> None:
        """Redraw, at most every REDRAW_SECONDS and at once when the terminal changed size; a drawing that fails is
        raised, and nothing of it drawn (the display keeps its last good one)."""
        size = self._console.size
        rows, columns = size.height, size.width
        if now < self._next and (rows, columns) == self._size:
            return
        self._next = now + REDRAW_SECONDS
        room = table_room(rows)
        table = progress_table(self.config, status, rates, columns, room) if room else Text("")
        with self._console.capture() as capture:
            self._console.print(table, width=columns, crop=True, no_wrap=True)
        lines = capture.get().splitlines()[:room]
        with self._lock:
            self._write(self._frame(rows, columns, lines))

    def close(self) -> None:
        """Take the table off the terminal and give the terminal's whole height back to the text."""
        _shown.discard(self)
        try:
            self.give_back()
        except Exception:
            log.exception("the progress display failed as it ended")

    def give_back(self, wait: float = -1) -> None:
        """Erase the table and end the scrolling region, unless the drawing holds the terminal past ``wait`` seconds
        (a terminal that takes no more output: a process that leaves then must not wait for it)."""
        if self._lock.acquire(timeout=wait):
            try:
                if self._size is not None and self._reserved:
                    self._write(release(self._size[0], self._reserved))
                self._reserved = 0
            finally:
                self._lock.release()

    def _frame(self, rows: int, columns: int, lines: Sequence[str]) -> str:
        """What draws ``lines``: first, on a terminal of a new size or for a taller table, the lines it takes."""
        escapes = ""
        if (rows, columns) != self._size:
            escapes = resized(rows, len(lines)) if self._size is not None else reserve(rows, 0, len(lines))
            self._size, self._reserved = (rows, columns), len(lines)
        elif len(lines) > self._reserved:
            escapes = reserve(rows, self._reserved, len(lines))
            self._reserved = len(lines)
        return escapes + drawing(rows, self._reserved, lines) if self._reserved else escapes

    def _write(self, text: str) -> None:
        """``text`` to the terminal in one write(): a terminal takes a write whole, so what another thread or process
        prints lands before or after the drawing, never inside it (between its cursor moves)."""
        file = self._console.file
        try:
            fd = file.fileno()
        except (AttributeError, OSError, ValueError):  # a stand-in for a terminal (tests): its own write
            file.write(text)
            file.flush()
            return
        data = text.encode(getattr(file, "encoding", None) or "utf-8", "replace")
        while data:
            data = data[os.write(fd, data):]


#: The displays on a terminal now, which a process that leaves at once gives back (give_back_terminals).
_shown: weakref.WeakSet[TerminalProgress] = weakref.WeakSet()


#: Held while a run's display takes the terminal: of two runs of one process that start together, one draws.
_taking = threading.Lock()


def terminal_display(config: PipelineConfig, console: Console) -> TerminalProgress | None:
    """A live table of ``config``'s steps on ``console``, unless a run of this process has its table on the terminal
    already: two runs' tables, in threads of one process, took the same last lines and drew over each other in turns
    (the later run then shows its progress in log lines)."""
    with _taking:
        return None if _shown else TerminalProgress(config, console)


def give_back_terminals(wait: float) -> None:
    """Give the terminal back from every display still on it, waiting ``wait`` seconds at most for each: for a process
    that leaves without ending its run (os._exit), which would leave the terminal's scrolling region set."""
    for display in list(_shown):
        display.give_back(wait)


# The table lives in the terminal's last lines, below a scrolling region (DECSTBM, as apt's progress bar): what any
# thread or process prints (a step's print(), a worker process's write to fd 1, a log line) scrolls in the lines
# above, and the table is drawn below them with the cursor saved and put back (DECSC, DECRC), in one write.
#: Save and restore the cursor (and its colours).
SAVE, RESTORE = "\x1b7", "\x1b8"
#: The scrolling region back to the whole terminal (this moves the cursor home: save and restore it around).
WHOLE_REGION = "\x1b[r"


def table_room(rows: int) -> int:
    """The most lines the table takes on a terminal of ``rows`` lines: less than half, so that what the steps print
    keeps the rest (a scrolling region has two lines at least)."""
    return max(0, (rows - 1) // 2)


def reserve(rows: int, had: int, lines: int) -> str:
    """The escapes that give the table the last ``lines`` lines of a terminal of ``rows``, of which it had the last
    ``had``: the text moves up as many lines (IND scrolls at the region's bottom, and keeps the cursor's column), the
    cursor comes back to the text it was on, and the region ends above the table. The cursor is saved inside the new
    region: some terminals (pyte) restore a cursor outside it onto its edge."""
    grown = lines - had
    up = f"\x1b[{grown}A" if grown > 0 else ""  # CUU 0 would move up one line
    return "\x1bD" * grown + up + SAVE + f"\x1b[1;{rows - lines}r" + RESTORE


def resized(rows: int, lines: int) -> str:
    """The escapes that take the table's ``lines`` anew on a terminal that changed size (some terminals end the region
    then, some keep it), erasing what was left of the last drawing below the cursor."""
    return SAVE + WHOLE_REGION + RESTORE + reserve(rows, 0, lines) + "\x1b[J"


def drawing(rows: int, reserved: int, lines: Sequence[str]) -> str:
    """The escapes that draw ``lines`` in the last ``reserved`` lines of a terminal of ``rows``, the lines below
    them erased and the cursor left where the text goes on."""
    top = rows - reserved + 1
    padded = [*lines, *[""] * (reserved - len(lines))]
    return SAVE + "".join(f"\x1b[{top + i};1H\x1b[2K{line}" for i, line in enumerate(padded)) + RESTORE


def release(rows: int, reserved: int) -> str:
    """The escapes that erase the table from the last ``reserved`` lines of a terminal of ``rows`` and give the whole
    terminal back to the text, the cursor where the text goes on (the report follows there)."""
    return SAVE + f"\x1b[{rows - reserved + 1};1H\x1b[J" + WHOLE_REGION + RESTORE


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
    names = [row.full["STEP"] for row in rows]
    room = width - _width(columns, rows, short, names) + max(cell_len(name) for name in [*names, "STEP"])
    if room < max(cell_len(name) for name in names):
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
    return {"STEP": printable(step.name), "STATE": step.state, "PROCESSED": number(c.processed),
            "FAILED": number(c.failed),
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
    names = [row.full["STEP"] for row in rows]
    # Every column in full; without the bar; numbers with units; then fewer and fewer columns.
    layouts = [(0, False), (1, False), *((dropped, True) for dropped in range(1, len(DROP_ORDER) + 1))]
    for dropped, short in layouts:
        columns = [column for column in wanted if column not in DROP_ORDER[:dropped]]
        if _width(columns, rows, short, names) <= width:
            return columns, short
    return [column for column in wanted if column not in DROP_ORDER], True


def _width(columns: Sequence[str], rows: Sequence[_Row], short: bool, names: Sequence[str]) -> int:
    """The table's width in terminal cells (a CJK character or an emoji takes two, a combining accent none)."""
    widths = []
    for column in columns:
        cells = names if column == "STEP" else [(row.short if short else row.full)[column] for row in rows]
        widths.append(max(len(column), *(cell_len(cell) for cell in cells)))
    return sum(widths) + GAP * (len(columns) - 1)


def _shorten(name: str, size: int) -> str:
    """A step name cut in its middle to ``size`` terminal cells, marked (names may be cut, numbers never): its start
    and its end stay, so that names differing only at their end (``STEP_…_0``, ``STEP_…_1``) stay apart."""
    if cell_len(name) <= size:
        return name
    tail = _fitted(name[::-1], (size - 1) // 2)[::-1]
    # An accent (a combining character) cut from its letter would sit on the mark.
    tail = tail[next((i for i, char in enumerate(tail) if get_character_cell_size(char)), len(tail)):]
    return _fitted(name, size - 1 - cell_len(tail)) + "…" + tail


def _fitted(text: str, size: int) -> str:
    """The longest start of ``text`` that takes ``size`` terminal cells at most."""
    used = 0
    for end, char in enumerate(text):
        used += get_character_cell_size(char)
        if used > size:
            return text[:end]
    return text


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
    full = printable(step.name)
    if cell_len(full) + GAP + cell_len(items[0][0]) > width:
        items = _note_items(step, abbreviated)
    rest = f" · +{len(items) - 1} more" if len(items) > 1 else ""
    name = _shorten(full, max(2, width - GAP - cell_len(items[0][0]) - len(rest)))
    shown = _fitting(items, width - cell_len(name) - GAP)
    if not shown:  # not even the first item fits: the name keeps what the count leaves it
        name = _shorten(full, max(2, width - GAP - len(f"+{len(items)} more")))
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
            items.append((f"{where}{printable(label(worker))} late {duration(worker.silent)}", "bold yellow"))
    items += [(f"remote {printable(label(w))}", "") for w in step.worker_processes
              if w.kind == "remote" and not is_late(w.silent)]
    return items


def _fitting(items: Sequence[tuple[str, str]], room: int) -> Sequence[tuple[str, str]]:
    """The most items (from the first) that fit ``room`` terminal cells joined by " · ", with room left
    for "+N more" when some are left out."""
    for count in range(len(items), -1, -1):
        used = sum(cell_len(text) for text, _ in items[:count]) + 3 * max(0, count - 1)
        if count < len(items):
            used += len(f"+{len(items) - count} more") + (3 if count else 0)
        if used <= room:
            return items[:count]
    return ()


def _title(config: PipelineConfig, status: RunStatus, rates: Mapping[str, float], width: int) -> Text:
    """``chain  running  12.3 s  COUNT 600/1000 (60%)  ETA 8 s``, or less of it when narrow."""
    name, state, elapsed = printable(config.name), status.state, f"{status.elapsed:.1f} s"
    candidates = [[state, elapsed]]
    total = run_total(status, rates)
    if total is not None:
        eta = [f"ETA {duration(total.eta)}"] if total.eta is not None else []
        step = printable(total.step)
        candidates = [[state, elapsed, f"{step} {total.fraction()}", *eta],
                      [state, elapsed, f"{step} {total.fraction(abbreviated)}", *eta],
                      [state, f"{total.percent}%", *eta], [state, f"{total.percent}%"]]
    parts = next((c for c in candidates if cell_len("  ".join([name, *c])) <= width), [state])
    return Text.assemble((name, "bold"), *(f"  {part}" for part in parts), no_wrap=True, overflow="ellipsis")
