"""The progress display: numbers never cut into other numbers at any width, and a total with an ETA
when the producer declares its length (``Component.__length_hint__``)."""

from __future__ import annotations

import io
import logging
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from pipeline import Component
from pipeline.config import PipelineConfig, load_config
from pipeline.console.humanize import abbreviated, duration
from pipeline.engine import ThreadedRunner
from pipeline.execution.report import StepCounts
from pipeline.execution.sequential import SequentialRunner
from pipeline.execution.status import RunStatus, StepStatus, declared_totals
from pipeline.monitor.messages import Envelope, schema, status_body
from pipeline.monitor.progress import LINE_STEPS, progress_line, run_total
from pipeline.monitor.terminal import progress_table
from tests.cli_helpers import write_config
from tests.pty_helpers import run_on_terminal


def document(producer: str = "Counter", module: str = "algorithms.basic", **sections: Any) -> dict[str, Any]:
    return {"version": 1, "Pipeline": {
        "producer_conf": {"name": "COUNT", "module": module, "class": producer, "next_steps": "CALIBRATION"},
        "stagers_conf": [{"name": "CALIBRATION", "module": "algorithms.basic", "class": "PassThrough",
                          "nb_thread": 2, "next_steps": "W"}],
        "consumer_conf": {"name": "W", "module": "algorithms.basic", "class": "PassThrough", "queue_limit": -1},
    }, **sections}


CONFIG = load_config(document())


def status(processed: int = 60_000, failed: int = 0, queue: int = 12, total: int | None = 100_000) -> RunStatus:
    return RunStatus("running", 12.3, [
        StepStatus("COUNT", state="running", counts=StepCounts(0, processed, processed, 0), total=total),
        StepStatus("CALIBRATION", state="running", queue=queue, queue_limit=64, busy=2, workers=2,
                   counts=StepCounts(processed, processed - 10, processed - 10, failed)),
        StepStatus("W", state="waiting", queue=queue, queue_limit=-1,
                   counts=StepCounts(processed - 10, processed - 20)),
    ])


def shown(value: str) -> float:
    """The number an abbreviated figure stands for."""
    units = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}
    return float(value[:-1]) * units[value[-1]] if value[-1] in units else float(value)


@pytest.mark.parametrize(("number", "text"), [(0, "0"), (9999, "9999"), (10_000, "10.0k"), (60_000, "60.0k"),
                                              (99_999, "99.9k"), (123_456, "123k"), (1_150_000, "1.15M"),
                                              (10**12, "1.00T")])
def test_abbreviated(number: int, text: str) -> None:
    assert abbreviated(number) == text


@given(st.integers(0, 10**20))
def test_an_abbreviated_number_is_short_and_never_larger(number: int) -> None:
    text = abbreviated(number)
    assert len(text) <= 5
    assert shown(text) <= number < shown(text) * 1.01 + 1


def render(config: PipelineConfig, run: RunStatus, width: int, rates: dict[str, float] | None = None) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(progress_table(config, run, rates or {}, width))
    return out.getvalue().splitlines()


BAR = set("━╸╺ ")


@settings(max_examples=60, deadline=None)
@given(width=st.integers(24, 160), processed=st.integers(20, 10**12), failed=st.integers(0, 10**9),
       queue=st.integers(0, 10**7), rate=st.floats(0, 1e7))
def test_the_table_never_cuts_a_number(width: int, processed: int, failed: int, queue: int, rate: float) -> None:
    """At any width each figure is shown in full or with a unit, in its column; only names are cut."""
    run = status(processed, failed, queue)
    lines = render(CONFIG, run, width, {"CALIBRATION": rate})
    assert all(len(line) <= width for line in lines)
    header = lines[1].split()
    assert header[:1] == ["STEP"] and "PROCESSED" in header
    for line, step in zip(lines[2:], run.steps, strict=True):
        cells = [cell for cell in line.split() if not set(cell) <= BAR]
        assert len(cells) == len(header)
        name = cells[0]
        head, cut, tail = name.partition("…")
        assert name == step.name or (cut and step.name.startswith(head) and step.name.endswith(tail))
        figures = {"PROCESSED": step.counts.processed, "FAILED": step.counts.failed}
        for column, value in figures.items():
            if column in header:
                assert cells[header.index(column)] in (str(value), abbreviated(value))
        assert all("…" not in cell for cell in cells[1:])


def test_names_that_differ_at_their_end_stay_apart_on_a_narrow_terminal() -> None:
    """At 30 columns steps named STEP_XXX...X_0 to _3 were all shown as the same ``STEP_XXXXXXXXXXXXX…``."""
    names = [f"STEP_{'X' * 70}_{i}" for i in range(4)]
    stagers = [{"name": name, "module": "algorithms.basic", "class": "PassThrough",
                "next_steps": names[i + 1] if i < 3 else "W"} for i, name in enumerate(names)]
    config = load_config({"version": 1, "Pipeline": {
        "producer_conf": {"name": "COUNT", "module": "algorithms.basic", "class": "Counter", "next_steps": names[0]},
        "stagers_conf": stagers, "consumer_conf": {"name": "W", "module": "algorithms.basic", "class": "PassThrough"}}})
    steps = [StepStatus(name, state="running", queue=0, queue_limit=64, counts=StepCounts(5, 5, 5, 0))
             for name in ["COUNT", *names, "W"]]
    lines = render(config, RunStatus("running", 1.0, steps), 30)
    shown = [line.split()[0] for line in lines[3:7]]
    assert len(set(shown)) == 4 and all(name.startswith("STEP_") and "…" in name and name.endswith(f"_{i}")
                                        for i, name in enumerate(shown))


def test_a_wide_terminal_shows_every_figure_in_full() -> None:
    lines = render(CONFIG, status(), 120, {"COUNT": 5000.0})
    # A dict config is named by its first and last steps.
    assert lines[0] == "COUNT → W  running  12.3 s  COUNT 60000/100000 (60%)  ETA 8 s"
    assert lines[1].split() == ["STEP", "STATE", "PROCESSED", "FAILED", "QUEUE", "BUSY", "RATE/S"]
    assert lines[3].split()[:5] == ["CALIBRATION", "running", "59990", "0", "12/64"]


def test_a_60_column_terminal_abbreviates_instead_of_cutting() -> None:
    lines = render(CONFIG, status(failed=1_234_567), 60)
    assert "60.0k" in lines[2] and "1.23M" in lines[3] and "600…" not in "\n".join(lines)


def test_total_and_eta() -> None:
    total = run_total(status(), {"COUNT": 4000.0})
    assert total is not None and str(total) == "COUNT 60000/100000 (60%), ETA 10 s"
    assert run_total(status(), {}) is not None and run_total(status(), {}).eta is None  # not moving: no ETA
    assert run_total(status(total=None), {"COUNT": 1.0}) is None
    assert run_total(status(processed=100_000), {"COUNT": 1.0}).percent == 100  # type: ignore[union-attr]
    stopped = status()
    stopped.steps[0].state = "finished"  # stopped short of its total (Ctrl+C): the run drains, the producer is done
    assert str(run_total(stopped, {"COUNT": 4000.0})) == "COUNT 60000/100000 (60%)"
    assert [duration(s) for s in (8.4, 125, 11_000)] == ["8 s", "2 min 05 s", "3 h 03 min"]


def test_the_progress_line_carries_the_total() -> None:
    line = progress_line(CONFIG, status(), {"COUNT": 4000.0})
    assert line.startswith("running 12.3 s, COUNT 60000/100000 (60%), ETA 10 s: COUNT processed=60000 ")
    assert progress_line(CONFIG, status(total=None), {}).startswith("running 12.3 s: COUNT processed=60000 ")


class Unknown(Component):
    """A producer that does not say how many messages it yields."""

    def run(self) -> Iterator[int]:
        yield 1


class Broken(Unknown):
    """A producer whose length hook is broken."""

    def __length_hint__(self) -> int:
        raise RuntimeError("oops")


def test_declared_totals(caplog: pytest.LogCaptureFixture) -> None:
    assert declared_totals(load_config(document(Counter={"count": 42}))) == {"COUNT": 42}
    assert declared_totals(load_config(document("SimulatedCamera", "algorithms.camera",
                                                SimulatedCamera={"n_events": 7}))) == {"COUNT": 7}
    assert declared_totals(load_config(document("Unknown", __name__))) == {}
    with caplog.at_level(logging.WARNING, logger="pipeline.status"):
        assert declared_totals(load_config(document("Broken", __name__))) == {}
    assert "step COUNT: __length_hint__() failed; no total shown" in caplog.text


@pytest.mark.parametrize("runner", [SequentialRunner, ThreadedRunner])
def test_the_runners_status_carries_the_total(runner: Any) -> None:
    config = load_config(document(Counter={"count": 42}))
    snapshot = runner(config).snapshot()
    assert [step.total for step in snapshot.steps] == [42, None, None]
    message = Envelope.for_run(config).message("status", 1, status_body(snapshot, {}, 0))
    jsonschema.validate(message, schema())
    assert message["steps"][0]["total"] == 42 and message["steps"][1]["total"] is None


def test_the_queue_column_keeps_its_width_from_frame_to_frame() -> None:
    """The queue of a bounded step is padded to its limit's width: 0/256 to 256/256 take as much room (26.13)."""
    def frame(queue: int) -> list[str]:
        run = status()
        run.steps[1].queue, run.steps[1].queue_limit = queue, 256
        return render(CONFIG, run, 120)

    frames = [frame(queue) for queue in (0, 7, 12, 255, 256)]
    assert len({frame[1] for frame in frames}) == 1, [frame[1] for frame in frames]  # every column stays put
    assert len({len(frame[3]) for frame in frames}) == 1
    assert [frame[3].split()[4] for frame in frames] == ["0/256", "7/256", "12/256", "255/256", "256/256"]


def test_step_names_are_shown_as_they_are_never_as_markup() -> None:
    """A step named "[/]" raised rich's MarkupError in every drawing, and "[bold red]X[link=...]" drew another name."""
    names = ["[/]", "[bold red]RED[link=http://evil.example]click"]
    document_ = document()
    document_["Pipeline"]["stagers_conf"][0]["name"] = names[0]
    document_["Pipeline"]["producer_conf"]["next_steps"] = names[0]
    document_["Pipeline"]["stagers_conf"][0]["next_steps"] = names[1]
    document_["Pipeline"]["consumer_conf"]["name"] = names[1]
    config = load_config(document_)
    run = RunStatus("running", 1.0, [StepStatus(name, state="running") for name in ["COUNT", *names]])
    lines = render(config, run, 200)
    assert [line.split("  ")[0] for line in lines[2:5]] == ["COUNT", *names]


class _Broken:
    """A drawing that raises as it is drawn."""

    def __rich_console__(self, console: Console, options: Any) -> Iterator[Any]:
        raise RuntimeError("a drawing that fails")


def test_a_drawing_that_fails_leaves_the_terminal_and_what_follows_as_they_should_be(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """A drawing that raised was drawn again as the display ended, which raised out of it: stderr stayed captured, and
    the run's report, printed after, was lost."""
    from pipeline.monitor import terminal

    stderr = sys.stderr
    progress = terminal.TerminalProgress(CONFIG, Console(file=io.StringIO(), width=100, force_terminal=True))
    progress.update(status(), {}, 0.0)
    monkeypatch.setattr(terminal, "progress_table", lambda *_: _Broken())
    with pytest.raises(RuntimeError, match="a drawing that fails"):
        progress.update(status(), {}, 1.0)
    progress.close()  # raised the drawing's error again
    assert not caplog.records
    assert sys.stderr is stderr  # given back: what is printed next reaches the terminal


@pytest.mark.parametrize("steps", [3, 30], ids=["fits", "taller-than-the-terminal"])
def test_the_table_leaves_nothing_on_the_terminal_but_what_was_logged_and_the_report(tmp_path: Path,
                                                                                      steps: int) -> None:
    """A table taller than the terminal (30 steps, 20 rows) left its title, header and rows above the summary: the
    display's end drew it whole once more, scrolling, and its erase could not reach above the screen's top."""
    stagers = [{"name": f"S{i}", "module": "algorithms.basic", "class": "PassThrough",
                "next_steps": f"S{i + 1}" if i < steps - 1 else "SINK"} for i in range(steps)]
    stagers[0].update({"module": "tests.failure_steps", "class": "FailEvery", "on_error": "skip"})
    config = write_config(tmp_path, {"version": 1, "Pipeline": {
        "producer_conf": {"name": "COUNT", "module": "algorithms.basic", "class": "Counter", "next_steps": "S0"},
        "stagers_conf": stagers,
        "consumer_conf": {"name": "SINK", "module": "tests.failure_steps", "class": "FailEvery"}},
        "Counter": {"count": 10}, "FailEvery": {"every": 5, "delay": 0.05}})
    run = run_on_terminal(f"--config={config}", "--Pipeline.gui=False", "--Pipeline.allow_failures=True",
                          rows=20, columns=100)
    assert run.returncode == 0, run.output.decode()
    lines = run.screen(20, 100)
    drawn = re.compile(r"(pipeline|\S+) +(waiting|starting|running|draining|finished|failed) |STEP +STATE ")
    assert [line for line in lines if drawn.match(line)] == []  # neither its title, nor its header, nor a row
    end = next(i for i, line in enumerate(lines) if line.startswith("wall time"))
    assert any(" ERROR pipeline.failures: step S0 " in line for line in lines[:end])  # printed during the run: kept
    assert [line.split()[0] for line in lines[end + 1:]] == ["STEP", "COUNT", *(s["name"] for s in stagers), "SINK",
                                                             "S0:", "exit"]  # S0's first error, then the exit status


def many_steps() -> tuple[PipelineConfig, RunStatus]:
    """A chain of 200 steps, and a status of it where S150 has a queue and S170 is busy."""
    steps = [StepStatus(f"S{i}", state="running", counts=StepCounts(10, 10, 10, 0), queue_limit=64, workers=1)
             for i in range(200)]
    steps[150].queue, steps[170].busy = 5, 1
    document = {"version": 1, "Pipeline": {
        "producer_conf": {"name": "S0", "module": "algorithms.basic", "class": "Counter", "next_steps": "S1"},
        "stagers_conf": [{"name": f"S{i}", "module": "algorithms.basic", "class": "PassThrough",
                          "next_steps": f"S{i + 1}"} for i in range(1, 199)],
        "consumer_conf": {"name": "S199", "module": "algorithms.basic", "class": "Printer"}}}
    return load_config(document), RunStatus("running", 1.0, steps)


@pytest.mark.parametrize("height", [6, 15, 40])
def test_a_table_taller_than_the_terminal_shows_the_steps_at_work(height: int) -> None:
    """200 steps on a terminal of 15 lines: the table showed the first 11 and '...', never the steps at work further
    down the chain; it fits the terminal now, those at work first, and says how many more there are."""
    config, run = many_steps()
    out = io.StringIO()
    Console(file=out, width=100, color_system=None).print(progress_table(config, run, {}, 100, height))
    lines = out.getvalue().splitlines()
    rows = [line.split()[0] for line in lines[2:-1]]
    assert len(lines) <= height
    assert "S150" in rows and "S170" in rows and rows == sorted(rows, key=lambda name: int(name[1:]))
    assert lines[-1] == f"+{200 - len(rows)} more steps"


def test_a_progress_line_of_many_steps_stays_short() -> None:
    """A run of 200 steps wrote progress lines of 12 KB: the line gives LINE_STEPS of them, those at work first, and
    how many more there are."""
    config, run = many_steps()
    line = progress_line(config, run, {})
    assert len(line) < 1500, len(line)
    assert " S150 processed=" in line and " S170 processed=" in line and line.endswith(" | +190 more steps")
    assert line.count(" processed=") == LINE_STEPS
