"""The live table on a terminal: what the steps print survives it (the table keeps the terminal's last lines, below a
scrolling region), it measures text in terminal cells, and what a user named is drawn as text, never as escapes."""

from __future__ import annotations

import copy
import io
from pathlib import Path
from typing import Any

import pyte
import pytest
from rich.cells import cell_len
from rich.console import Console

from pipeline.config import PipelineConfig, load_config
from pipeline.console.humanize import abbreviated
from pipeline.execution.report import StepCounts
from pipeline.execution.status import RunStatus, StepStatus
from pipeline.monitor.terminal import (
    TerminalProgress,
    _shorten,
    drawing,
    progress_table,
    release,
    reserve,
    resized,
    table_room,
)
from tests.cli_helpers import write_config
from tests.pty_helpers import run_on_terminal

WIDE = "数据" * 20


def config(stage: str = "STAGE", name: str = "") -> PipelineConfig:
    """COUNT -> ``stage`` -> SINK."""
    return load_config({"version": 1, "Pipeline": {
        "producer_conf": {"name": "COUNT", "module": "algorithms.basic", "class": "Counter", "next_steps": stage},
        "stagers_conf": [{"name": stage, "module": "algorithms.basic", "class": "PassThrough", "next_steps": "SINK"}],
        "consumer_conf": {"name": "SINK", "module": "algorithms.basic", "class": "PassThrough"}}}, name=name)


def status(processed: int, stage: str = "STAGE") -> RunStatus:
    return RunStatus("running", 1.5, [
        StepStatus("COUNT", state="running", counts=StepCounts(0, processed, processed, 0), total=10**6),
        StepStatus(stage, state="running", queue=3, queue_limit=64, busy=1, workers=1,
                   counts=StepCounts(processed, processed - 1, processed - 1, 0)),
        StepStatus("SINK", state="waiting", queue=0, queue_limit=64, counts=StepCounts(processed - 1, processed - 2)),
    ])


def render(config_: PipelineConfig, run: RunStatus, width: int, height: int | None = None) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(progress_table(config_, run, {}, width, height))
    return out.getvalue().splitlines()


def test_the_escapes_of_the_table() -> None:
    """The table takes the last lines (IND scrolls the text up to make room, the cursor stays on its text), draws there
    with the cursor saved and put back, and at the end erases them and gives the whole terminal back."""
    assert reserve(24, 0, 3) == "\x1bD\x1bD\x1bD\x1b[3A\x1b7\x1b[1;21r\x1b8"
    assert reserve(24, 3, 5) == "\x1bD\x1bD\x1b[2A\x1b7\x1b[1;19r\x1b8"
    assert reserve(24, 0, 0) == "\x1b7\x1b[1;24r\x1b8"  # no CUU 0: that would move up a line
    assert drawing(24, 3, ["a", "b"]) == "\x1b7\x1b[22;1H\x1b[2Ka\x1b[23;1H\x1b[2Kb\x1b[24;1H\x1b[2K\x1b8"
    assert release(24, 3) == "\x1b7\x1b[22;1H\x1b[J\x1b[r\x1b8"
    assert resized(30, 3) == "\x1b7\x1b[r\x1b8" + reserve(30, 0, 3) + "\x1b[J"
    assert [table_room(rows) for rows in (1, 2, 3, 24, 60)] == [0, 0, 1, 11, 29]


class Terminal:
    """A terminal (pyte) that the display and a step's prints both write to, as a pseudo-terminal would get them."""

    def __init__(self, rows: int, columns: int) -> None:
        self.screen = pyte.HistoryScreen(columns, rows, history=1000)
        self.stream = pyte.Stream(self.screen)
        self.out = io.StringIO()
        self.console = Console(file=self.out, width=columns, height=rows, force_terminal=True, color_system=None)

    def feed(self) -> None:
        self.stream.feed(self.out.getvalue())
        self.out.seek(0)
        self.out.truncate()

    def print(self, text: str) -> None:
        self.stream.feed(text + "\r\n")  # a terminal's ONLCR makes a print's \n a CR LF

    def resize(self, rows: int, columns: int) -> None:
        """Resize as xterm does: the scrolling region ends, and a shorter terminal scrolls its top lines into the
        scrollback, the cursor with its text (pyte drops them, and leaves the cursor on its row)."""
        self.screen.set_margins()
        dropped = max(0, self.screen.lines - rows)
        for y in range(dropped):
            self.screen.history.top.append(copy.copy(self.screen.buffer[y]))  # pyte reuses the line
        cursor = self.screen.cursor.y
        self.screen.resize(rows, columns)
        self.screen.cursor.y = max(0, cursor - dropped)
        self.console.size = (columns, rows)

    def lines(self) -> list[str]:
        """Every line, scrollback first, trailing blanks cut."""
        history = ["".join(line[x].data for x in range(self.screen.columns)) for line in self.screen.history.top]
        return [line.rstrip() for line in [*history, *self.screen.display]]


@pytest.mark.parametrize("resize_at", [None, 10, 20], ids=["same-size", "taller", "shorter"])
def test_what_is_printed_survives_the_table(resize_at: int | None) -> None:
    """Each redraw moved the cursor up over the lines printed since the last and erased them: of 40 lines, 12 were
    left, with stale copies of the table between them. The lines scroll above the table now, a resize included."""
    terminal = Terminal(14, 80)
    display = TerminalProgress(config(), terminal.console)
    for i in range(30):
        if i == resize_at:
            terminal.resize(20 if i == 10 else 9, 80)
        display.update(status(i + 2), {}, float(i))
        terminal.feed()
        terminal.print(f"line {i}")
    screen = [line.rstrip() for line in terminal.screen.display]
    title = next(i for i, line in enumerate(screen) if line.startswith("COUNT → SINK  running"))
    room = table_room(terminal.screen.lines)
    assert screen[title:] == render(config(), status(31), 80, room)  # the table, in the terminal's last lines
    assert screen[title - 2:title] == ["line 29", ""]  # then the line printed last, and the cursor's (empty)
    display.close()
    terminal.feed()
    terminal.print("report")
    lines = [line for line in terminal.lines() if line]
    assert lines == [f"line {i}" for i in range(30)] + ["report"]  # in order, whole, and no table left


def test_a_wide_step_name_cuts_no_number() -> None:
    """A stager named 数据 x 20 on 100 columns: len() counted 40 where the terminal draws 80 cells, so every line
    overflowed the terminal and the numbers at its end were cut."""
    run = status(60_000, WIDE)
    for width in (100, 90, 60):
        lines = render(config(WIDE), run, width)
        assert all(cell_len(line) <= width for line in lines), lines
        header = lines[1].split()
        processed = header.index("PROCESSED")
        for line, step in zip(lines[2:], run.steps, strict=True):
            assert line.split()[processed] in (str(step.counts.processed), abbreviated(step.counts.processed))


@pytest.mark.parametrize("name", [WIDE, "e\u0301" * 30, "👍x" * 20, "STEP_" + "X" * 70 + "_0"])
@pytest.mark.parametrize("size", [2, 5, 10, 11, 30])
def test_a_name_is_shortened_to_terminal_cells(name: str, size: int) -> None:
    short = _shorten(name, size)
    assert cell_len(short) <= size
    head, _, tail = short.partition("…")
    assert name.startswith(head) and name.endswith(tail)
    assert not tail or cell_len(tail[0]) > 0  # an accent is never cut from its letter


def test_the_title_writes_escapes_as_text() -> None:
    """A config file named n\\x1b[2J.json drew the escape raw in the title: the screen was cleared at each redraw."""
    lines = render(config(name="n\x1b[2J"), status(5), 100)
    assert lines[0].startswith("n\\x1b[2J  running")
    assert "\x1b" not in "".join(lines)


def run_printing(tmp_path: Path, printer: dict[str, Any], name: str = "pipeline") -> list[str]:
    """The screen of a run whose consumer prints 60 lines, slowly enough for the table to be redrawn between them."""
    path = write_config(tmp_path, {"version": 1, "Pipeline": {
        "producer_conf": {"name": "COUNT", "module": "tests.engine_steps", "class": "Source", "next_steps": "PRINT"},
        "consumer_conf": {"name": "PRINT", "module": "algorithms.basic", "class": "Printer", **printer}},
        "Source": {"count": 60, "delay": 0.02}}).rename(tmp_path / f"{name}.json")
    run = run_on_terminal(f"--config={path}", "--Pipeline.gui=False", rows=30, columns=100)
    assert run.returncode == 0, run.output.decode(errors="replace")
    assert run.output.count(b"  running  ") >= 3  # the table was drawn a few times while the lines were printed
    return run.screen(30, 100)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("printer", [{}, {"nb_process": 2}], ids=["threads", "worker-processes"])
def test_every_printed_line_survives_the_live_table(tmp_path: Path, printer: dict[str, Any]) -> None:
    """A run on a real terminal: every line a step prints, from a thread of the run or from a worker process (which
    writes to the terminal itself), is there at the end, whole (in order from one thread), and then the report; no
    table is left."""
    lines = run_printing(tmp_path, printer)
    end = lines.index(next(line for line in lines if line.startswith("wall time")))
    printed = [line for line in lines[:end] if line]
    expected = [f"({i}, ())" for i in range(60)]
    # Two worker processes may print two lines in either order; each line is whole, none lost or repeated.
    assert printed == expected if not printer else sorted(printed) == sorted(expected), printed
    assert lines[end + 1].split()[:2] == ["STEP", "RECEIVED"] and lines[-1] == "exit status 0"
