"""pipeline-bench: smoke runs as a user runs them, the report's arithmetic, the baselines and --gui."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import weakref
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import zmq
from hypothesis import given
from hypothesis import strategies as st

from pipeline import Component, Pipeline
from pipeline.bench import app, baselines, memory, overhead, startup, stops, workloads
from pipeline.bench.designs import (
    DESCRIPTIONS,
    ENGINE,
    MPIPE,
    OPTIONAL,
    PROCESSES,
    PROCESSES_2,
    QUEUE,
    ZMQ,
    ZMQ_PLAIN,
)
from pipeline.bench.events import WaveformSource
from pipeline.bench.plan import QUICK
from pipeline.bench.report import (
    MET,
    MISSED,
    NO_FIGURE,
    NOT_JUDGED,
    SKIPPED,
    UNCERTAIN,
    Case,
    Target,
    Workload,
    table,
)
from pipeline.bench.steps import busy
from pipeline.bench.workloads import fastest_raw
from tests.cli_helpers import ROOT
from tests.process_helpers import live_in_group, wait_for

WORKLOADS = ["W1", "W2", "W3", "W4", "W5", "W6", "W7"]


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    """``python -m pipeline.bench ARGS`` from the repository root."""
    return subprocess.run([sys.executable, "-m", "pipeline.bench", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=50, check=False)


@pytest.mark.slow
def test_quick_json_run_measures_and_verifies_every_workload() -> None:
    run = bench("--quick", "--json")
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert result["verified"] is True
    assert result["targets_met"] is None  # --quick judges no target
    assert sorted(result["workloads"]) == WORKLOADS
    assert set(result["designs"]) <= set(DESCRIPTIONS)
    for key, workload in result["workloads"].items():
        assert workload["verified"] is True, key
        assert workload["targets"], key
        rows = [(case["label"], row) for case in workload["cases"] for row in case["rows"]]
        measured = [row for _, row in rows if row["status"] == "ok"]
        assert any(row["design"] in (ENGINE, PROCESSES_2) for row in measured), key
        for label, row in rows:
            where = f"{key} {label} {row['design']}"
            if row["status"] == "skipped":
                assert row["design"] in OPTIONAL and row["note"], where
                continue
            assert row["status"] == "ok", f"{where}: {row['note']}"
            assert row["samples"], where
            assert row["unreliable"] is False, where  # one repeat: no spread to judge
            for value in [*row["samples"], row["median"], row["min"], row["max"]]:
                assert math.isfinite(value) and value > 0, f"{where}: {value}"
        for target in workload["targets"]:
            assert target["verdict"] == NOT_JUDGED, f"{key} {target['text']}"
            if target["missing"]:  # a row it needs skipped: an optional baseline not installed
                assert target["value"] is None and target["missing"].split(":")[0] in OPTIONAL, target
                continue
            assert math.isfinite(target["value"]) and target["value"] > 0, f"{key} {target['text']}"


@pytest.mark.slow
def test_process_worker_rows_are_measured_or_skipped_with_the_reason_printed() -> None:
    run = bench("--quick", "--only", "W3", "--json")
    assert run.returncode == 0, run.stderr[-2000:]
    cases = json.loads(run.stdout)["workloads"]["W3"]["cases"]
    rows = [row for case in cases if case["label"].startswith("python") for row in case["rows"]
            if row["design"] == PROCESSES]
    assert len(rows) == len(QUICK.parallel_workers)
    if rows[0]["status"] == "skipped":  # the engine does not take nb_process yet
        assert all(row["status"] == "skipped" and "nb_process" in row["note"] for row in rows)
        assert re.search(rf"^  {PROCESSES}: skipped: .*nb_process", run.stderr, re.MULTILINE), run.stderr
    else:
        assert all(row["status"] == "ok" for row in rows)


@pytest.mark.slow
def test_quick_table_explains_its_rows_and_judges_no_target() -> None:
    run = bench("--quick", "--only", "W1")
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.splitlines()
    assert any("engine vs this" in line and "above 1: the engine is better" in line for line in lines)
    for design in (ENGINE, QUEUE, ZMQ, ZMQ_PLAIN):
        assert any(line.strip().startswith(design) and DESCRIPTIONS[design] in line for line in lines), design
    targets = [line for line in lines if line.strip().startswith("target:")]
    assert targets and all(line.endswith(NOT_JUDGED) for line in targets)
    assert lines[-1].startswith("targets: not judged")


@pytest.mark.slow
def test_bench_runs_do_not_publish_to_the_monitor_unless_asked(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    """Every engine run the benchmark builds has Pipeline.gui off (and no progress display of its
    own); --gui leaves pipeline-run's default."""
    built: list[tuple[bool, bool]] = []

    class Recording:
        @staticmethod
        def from_config(*args: Any, **kwargs: Any) -> Pipeline:
            pipeline = Pipeline.from_config(*args, **kwargs)
            built.append((pipeline.gui, pipeline.progress))
            return pipeline

    monkeypatch.setattr(workloads, "Pipeline", Recording)
    workloads.tiny(replace(QUICK, tiny_count=50), lambda _: None)
    assert "peak_rss" in memory.run_child("engine", 3, 0.0, 8)
    assert built and set(built) == {(False, False)}
    config = tmp_path / "one.json"
    quiet, published = startup.commands(config), startup.commands(config, gui=True)
    assert all("--Pipeline.gui=False" in quiet[d] for d in (ENGINE, workloads.SEQUENTIAL))
    assert not any("--Pipeline.gui=False" in args for args in published.values())


def test_bench_gui_flag_is_documented_and_off_by_default() -> None:
    from pipeline.bench.app import parser

    assert parser().parse_args([]).gui is False
    assert parser().parse_args(["--gui"]).gui is True
    assert "--gui" in bench("--help").stdout


@pytest.mark.slow
def test_the_overhead_script_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """python -m pipeline.bench.overhead, small: one run of each case, the subscriber hears the stream."""
    overhead.main(["--count=300", "--repeat=1"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "W1, 300 tiny dicts, threads, median of 1 runs"
    assert [line.split("  ")[0] for line in lines[1:4]] == [overhead.OFF, overhead.UNHEARD, overhead.HEARD]
    assert re.fullmatch(r"the subscriber received \d+ messages of the stream", lines[4])


# -- baselines --------------------------------------------------------------------------------

def collect(run: Any, source: list[Any]) -> list[Any]:
    """What a baseline's consumer receives, in order."""
    seen: list[Any] = []
    seconds = run(source, sink=seen.append)
    assert seconds > 0
    return seen


def double(x: int) -> int:
    """A picklable stage."""
    return 2 * x


@pytest.mark.parametrize("hwm", [None, 64])
def test_zmq_push_pull_delivers_every_message_in_order(hwm: int | None) -> None:
    messages = list(range(3000))  # more than a high-water mark of 64, or of 1,000, holds
    assert collect(partial(baselines.zmq_push_pull, stage=double, hwm=hwm), messages) == [2 * m for m in messages]


def test_process_pool_delivers_every_result_in_order_and_reports_a_failure() -> None:
    messages = list(range(25))
    assert collect(partial(baselines.process_pool, work=double, workers=2, chunksize=4), messages) == \
        [2 * m for m in messages]
    with pytest.raises(baselines.BaselineError, match="ZeroDivisionError"):
        baselines.process_pool([1, 0], partial(divmod, 1), 1, lambda _: None, 1)


#: A pool's processes, each in a message, made by a process that handles the signals as the bench's workload process.
POOL_STOPPED = """
import os, sys, threading
from pipeline.bench.app import STOP
from pipeline.bench.baselines import process_pool

def work(message):
    os.write(2, b"working\\n")
    threading.Event().wait(60)

STOP.install()
try:
    process_pool(range(2), work, 2, print, 1)
except KeyboardInterrupt:
    sys.exit("stopped")
"""


@pytest.mark.parametrize(("to", "signum"), [("process", signal.SIGTERM), ("group", signal.SIGINT)])
def test_a_stopped_pool_ends_its_processes_without_a_traceback(to: str, signum: int) -> None:
    # Forked, the pool's processes kept the bench's handler, which raised KeyboardInterrupt for Ctrl+C and for
    # Pool.terminate()'s SIGTERM: "Process ForkPoolWorker-1:" and a traceback for each.
    pool = subprocess.Popen([sys.executable, "-c", POOL_STOPPED], cwd=ROOT, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert pool.stderr is not None
        working = 0
        while working < 2:  # each of the pool's processes is in a message
            line = pool.stderr.readline()
            assert line, "the pool's processes never started their messages"
            working += line == "working\n"
        if to == "group":
            os.killpg(pool.pid, signum)  # as a terminal's Ctrl+C
        else:
            pool.send_signal(signum)  # as the bench stops its workload's process
        rest = pool.communicate(timeout=30)[1]
    finally:
        if pool.poll() is None:
            os.killpg(pool.pid, signal.SIGKILL)
    assert pool.returncode == 1 and rest == "stopped\n", rest
    wait_for(lambda: not live_in_group(pool.pid), 10, "no process of the pool left")


@pytest.mark.parametrize(("count", "workers", "expected"), [(400, 1, 100), (400, 2, 50), (400, 4, 25),
                                                             (40, 4, 3), (1, 4, 1), (0, 2, 1)])
def test_pool_chunksize_is_about_four_chunks_per_worker(count: int, workers: int, expected: int) -> None:
    assert baselines.pool_chunksize(count, workers) == expected


def test_busy_holds_the_work_and_returns_the_message() -> None:
    message = {"i": 3}
    assert busy(message, 1000) is message


def test_mpipe_is_skipped_with_the_reason_when_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(baselines, "mpipe_installed", lambda: False)
    with pytest.raises(baselines.Unavailable, match="not installed"):
        baselines.mpipe_ordered([1], [double], lambda _: None)


# -- the report -------------------------------------------------------------------------------

def case_of(higher_is_better: bool, engine: list[float], other: list[float]) -> Case:
    case = Case("c", "u", higher_is_better)
    case.row(ENGINE).samples = engine
    case.row("other").samples = other
    return case


def test_comparisons_read_one_way_whatever_the_unit() -> None:
    """Above 1 the engine is better: twice the rate, or half the time."""
    assert case_of(True, [200.0], [100.0]).ratio("other") == 2.0
    assert case_of(False, [0.5], [1.0]).ratio("other") == 2.0
    assert case_of(False, [2.0], [1.0]).ratio("other") == 0.5
    assert case_of(True, [1.0, 4.0, 9.0], [1.0, 2.0, 3.0]).ratios("other") == [1.0, 2.0, 3.0]


positive = st.floats(min_value=1e-3, max_value=1e6, allow_nan=False)


@given(st.booleans(), st.lists(st.tuples(positive, positive), min_size=1, max_size=7))
def test_swapping_the_rows_inverts_each_comparison(higher: bool, pairs: list[tuple[float, float]]) -> None:
    engine, other = [e for e, _ in pairs], [o for _, o in pairs]
    there, back = case_of(higher, engine, other).ratios("other"), case_of(higher, other, engine).ratios("other")
    assert all(math.isclose(a * b, 1.0) for a, b in zip(there, back, strict=True))


def test_no_comparison_without_figures_for_every_repeat() -> None:
    assert case_of(True, [1.0, 2.0], [1.0]).ratio("other") is None
    case = case_of(True, [1.0], [1.0])
    case.row("other").skip("not installed")
    assert case.ratio("other") is None


def test_a_wide_spread_marks_a_figure_unreliable() -> None:
    case = case_of(True, [100.0, 110.0, 120.0], [100.0, 60.0, 140.0])
    assert not case.row(ENGINE).unreliable
    assert case.row("other").unreliable
    assert not case_of(True, [1.0], [5.0]).row("other").unreliable  # one repeat: nothing to judge
    work = Workload("W9", "title", cases=[case])
    text = table({"summary": "s", "noise": "n", "quick": False}, [work])
    (line,) = [line for line in text.splitlines() if "unreliable:" in line]
    assert line.split()[:2] == ["other", "100"]
    assert line.endswith("unreliable: the repeats differ by 80%")


def test_a_target_is_judged_only_when_every_repeat_agrees() -> None:
    assert Target("t", [3.0, 4.0], 2.0).verdict() == MET
    assert Target("t", [1.0, 1.5], 2.0).verdict() == MISSED
    assert Target("t", [1.0, 3.0, 4.0], 2.0).verdict() == UNCERTAIN
    assert Target("t", [1.0, 1.5], 2.0, at_least=False).verdict() == MET
    assert Target("t", [], 2.0).verdict() == NO_FIGURE
    assert Target("t", [3.0], 2.0).verdict(judged=False) == NOT_JUDGED


def test_the_last_line_names_the_targets_not_met() -> None:
    work = Workload("W9", "title", targets=[Target("fast", [3.0], 2.0), Target("small", [1.0, 3.0], 2.0)])
    last = table({"summary": "s", "noise": "n", "quick": False}, [work]).splitlines()[-1]
    assert last == f"targets not met: W9 small ({UNCERTAIN})"


def test_a_target_whose_row_was_skipped_is_not_judged_and_says_why() -> None:
    """Without mpipe, W1's target against it vanished and the last line said "targets: all met"."""
    case = Case("throughput", "msg/s", higher_is_better=True)
    case.row(MPIPE).status, case.row(MPIPE).note = SKIPPED, "not installed (pip install mpipe)"
    target = Target("process workers >= 1.0x mpipe", case.ratios(MPIPE), 1.0, missing=case.unmeasured(MPIPE))
    assert target.verdict() == "not judged: mpipe OrderedStage: not installed (pip install mpipe)"
    work = Workload("W1", "title", targets=[Target("fast", [3.0], 2.0), target])
    last = table({"summary": "s", "noise": "n", "quick": False}, [work]).splitlines()[-1]
    assert last == ("targets: all met; not judged: W1 process workers >= 1.0x mpipe (not judged: mpipe OrderedStage: "
                    "not installed (pip install mpipe))")
    work.targets.append(Target("small", [1.0], 2.0))
    last = table({"summary": "s", "noise": "n", "quick": False}, [work]).splitlines()[-1]
    assert last.startswith(f"targets not met: W1 small ({MISSED}); W1 process workers >= 1.0x mpipe (not judged")


@pytest.mark.parametrize(("frames", "plain", "expected"), [((100, 110), (130, 120), ZMQ_PLAIN),
                                                             ((130, 140), (120, 90), ZMQ)])
def test_the_raw_baseline_a_target_compares_with_is_the_faster_one(frames: tuple[float, ...],
                                                                   plain: tuple[float, ...], expected: str) -> None:
    case = Case("throughput", "msg/s", higher_is_better=True)
    for value in frames:
        case.row(ZMQ).add(value)
    for value in plain:
        case.row(ZMQ_PLAIN).add(value)
    assert fastest_raw(case) == expected


def test_the_camera_source_in_shards_makes_the_events_of_one_run() -> None:
    """W7's source is shardable: shard k of 3 makes every third event, each equal to that event of one run."""
    def made(shard: int = 0, n_shards: int = 1) -> dict[int, Any]:
        source = WaveformSource(n_events=10, seed=3)
        source.shard, source.n_shards = shard, n_shards
        return {event["event_id"]: event for event in source.run()}

    whole = made()
    shards = [made(shard, 3) for shard in range(3)]
    assert [sorted(events) for events in shards] == [[0, 3, 6, 9], [1, 4, 7], [2, 5, 8]]
    for events in shards:
        for event_id, event in events.items():
            assert event["tel_id"] == whole[event_id]["tel_id"]
            assert (event["waveform"] == whole[event_id]["waveform"]).all()
    assert not (whole[0]["waveform"] == whole[1]["waveform"]).all()  # each event its own draws


def _leaves_ballast(plan: Any, progress: Any) -> Workload:
    """A workload that leaves 64 MiB behind in its process, and says which process it ran in and what it found."""
    found = len(_BALLAST)
    _BALLAST.append(bytearray(64 * 2**20))
    return Workload("WX", f"pid {os.getpid()}, found {found}")


_BALLAST: list[bytearray] = []


def _fails(plan: Any, progress: Any) -> Workload:
    raise ValueError("broken workload")


def test_each_workload_runs_apart_from_what_the_others_left(monkeypatch: pytest.MonkeyPatch) -> None:
    # After W1 to W6 the bench's process held 680 MiB, and W7's 600-event runs forked their worker processes 15%
    # slower: each workload now starts from the bench's own process.
    monkeypatch.setitem(app.WORKLOADS, "WX", _leaves_ballast)
    first, second = app.run_apart("WX", QUICK), app.run_apart("WX", QUICK)
    assert first.title.endswith("found 0") and second.title.endswith("found 0")
    assert first.title != second.title and f"pid {os.getpid()}," not in first.title
    assert not _BALLAST


class StoppedMidStep(Component):
    """A consumer in whose run() the bench's stop (SIGTERM to its workload's process) comes."""

    def run(self, msg: Any) -> None:
        os.kill(os.getpid(), signal.SIGTERM)


def _stopped_in_a_sequential_run(plan: Any, progress: Any) -> Workload:
    pipeline = Pipeline.from_config({"Pipeline": {
        "producer_conf": {"name": "COUNT", "module": "algorithms.basic", "class": "Counter", "next_steps": "STOP"},
        "consumer_conf": {"name": "STOP", "module": __name__, "class": "StoppedMidStep"},
        "mode": "sequential", "gui": False, "progress": False}})
    report = pipeline.run()
    return Workload("WX", f"the run went on to its end: exit status {report.exit_status}")


def test_the_benchs_stop_ends_a_sequential_run_as_ctrl_c_does(monkeypatch: pytest.MonkeyPatch) -> None:
    # Raised as a plain KeyboardInterrupt in a step's code, it failed that step ("run(): KeyboardInterrupt" and its
    # traceback), and the workload measured its next designs until the bench killed it.
    monkeypatch.setitem(app.WORKLOADS, "WX", _stopped_in_a_sequential_run)
    with pytest.raises(KeyboardInterrupt):
        app.run_apart("WX", QUICK)


def _stop_breaks_a_lock(plan: Any, progress: Any) -> Workload:
    try:
        os.kill(os.getpid(), signal.SIGTERM)  # the bench's stop, in a queue.get of a run
    except KeyboardInterrupt:
        os.kill(os.getpid(), signal.SIGTERM)  # the group's signal after the bench's: it must not break the tidying up
        raise RuntimeError("release unlocked lock") from None  # what escapes a lock that the interrupt broke
    return Workload("WX", "the stop never came")


def test_what_escapes_a_stopped_workload_is_its_stop_not_a_failure(monkeypatch: pytest.MonkeyPatch,
                                                                   capfd: pytest.CaptureFixture[str]) -> None:
    # Its traceback was printed (RuntimeError: release unlocked lock, chained to the KeyboardInterrupt), then
    # "pipeline-bench: interrupted": the workload's process now remembers that it was stopped.
    monkeypatch.setitem(app.WORKLOADS, "WX", _stop_breaks_a_lock)
    with pytest.raises(KeyboardInterrupt) as stopped:  # was SystemExit: "workload WX failed"
        app.run_apart("WX", QUICK)
    assert isinstance(stopped.value, stops.Stopped) and stopped.value.signum == signal.SIGTERM
    assert "Traceback" not in capfd.readouterr().err


class Garbage:
    """An object whose collection runs a weakref callback."""


def _stopped_in_a_weakref_callback(plan: Any, progress: Any) -> Workload:
    garbage = Garbage()
    ref = weakref.ref(garbage, lambda _: signal.raise_signal(signal.SIGTERM))  # the stop comes as garbage goes
    del garbage
    os.kill(os.getpid(), signal.SIGTERM)  # the bench's own stop, which follows the group's
    return Workload("WX", f"the stop was lost ({ref})")


def test_a_stop_raised_where_python_ignores_it_still_stops_the_workload(monkeypatch: pytest.MonkeyPatch,
                                                                         capfd: pytest.CaptureFixture[str]) -> None:
    # Raised in a weakref callback, it was printed ("Exception ignored in: <function WeakSet...>") and lost, and the
    # workload's process, stopped once, took no stop any more: it would measure on until the bench killed it.
    monkeypatch.setitem(app.WORKLOADS, "WX", _stopped_in_a_weakref_callback)
    with pytest.raises(KeyboardInterrupt):
        app.run_apart("WX", QUICK)
    assert "Exception ignored" not in capfd.readouterr().err


def test_a_workload_that_fails_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(app.WORKLOADS, "WX", _fails)
    failed = app.run_apart("WX", QUICK)
    assert (failed.key, failed.failure, failed.verified) == ("WX", "its process failed (its traceback is above)", False)


@pytest.mark.parametrize(("to", "signum"), [("group", signal.SIGINT), ("bench", signal.SIGINT),
                                           ("group", signal.SIGTERM), ("bench", signal.SIGTERM),
                                           ("bench", signal.SIGHUP)])
def test_ctrl_c_stops_the_bench_in_one_line_and_leaves_no_process(to: str, signum: int) -> None:
    """A raw KeyboardInterrupt traceback, and with the signal to the bench alone, a workload that measured on; SIGTERM
    killed the bench silently, and its workload's process with SIGKILL, its runs not tidied up."""
    # W7 follows W1: the bench cannot have ended when the signal comes
    bench = subprocess.Popen([sys.executable, "-m", "pipeline.bench", "--quick", "--only=W1,W7"], cwd=ROOT,
                             stderr=subprocess.PIPE, text=True, start_new_session=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert bench.stderr is not None
        for line in bench.stderr:  # the workload runs in its own process now
            if line.startswith("W1 tiny"):
                break
        if to == "group":
            os.killpg(bench.pid, signum)  # as a terminal's Ctrl+C, or timeout(1)
        else:
            bench.send_signal(signum)
        rest = bench.communicate(timeout=60)[1]
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
    assert bench.returncode == 128 + signum
    assert rest.rstrip().splitlines()[-1] == "pipeline-bench: interrupted" and "Traceback" not in rest, rest
    # The whole session, the workload's process and its workers included (a zombie, dead, waits for init to reap it).
    wait_for(lambda: not live_in_group(bench.pid), 10, "no process of the bench's session left")


def test_ctrl_c_in_the_warm_up_stops_the_bench_in_one_line() -> None:
    # The warm-up runs in the bench's own process: Ctrl+C there printed a KeyboardInterrupt traceback through the
    # run's queue.get, or hundreds of asyncio "ContextTerminated" tracebacks of its ZAP handler.
    bench = subprocess.Popen([sys.executable, "-m", "pipeline.bench", "--quick", "--only=W1"], cwd=ROOT,
                             stderr=subprocess.PIPE, text=True, start_new_session=True,
                             env={**os.environ, "PYTHONPATH": str(ROOT)})
    try:
        assert bench.stderr is not None
        # The machine's line: the warm-up comes next (a loaded machine's warning may come before it).
        for _ in range(20):
            line = bench.stderr.readline()
            if not line or (line.startswith("pipeline-bench: ") and " cores " in line):
                break
        os.killpg(bench.pid, signal.SIGINT)
        rest = bench.communicate(timeout=60)[1]
    finally:
        if bench.poll() is None:
            os.killpg(bench.pid, signal.SIGKILL)
    assert bench.returncode == 130
    assert rest == "pipeline-bench: interrupted\n", rest
    wait_for(lambda: not live_in_group(bench.pid), 10, "no process of the bench's session left")


@pytest.mark.parametrize(("main", "argv"), [
    ("pipeline.bench.thread_cpu", ["--count", "-5"]),  # was a ConfigError traceback, exit 1
    ("pipeline.bench.thread_cpu", ["--count", "0"]),  # was 100,000 messages, in silence
    ("pipeline.bench.thread_cpu", ["--events", "--count=x"]),
    ("pipeline.bench.app", ["--repeat", "x"]),  # said "invalid _positive value"
    ("pipeline.bench.app", ["--repeat=0"]),
    ("pipeline.bench.hosts", ["--repeat", "0"]),  # was a ValueError traceback
    ("pipeline.bench.hosts", ["--messages", "0"]),  # a ZeroDivisionError
    ("pipeline.bench.overhead", ["--count", "0"]),  # a ZeroDivisionError
    ("pipeline.bench.overhead", ["--repeat", "0"]),  # a StatisticsError
])
def test_a_count_below_one_is_a_usage_error(main: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    module = __import__(main, fromlist=["main"])
    with pytest.raises(SystemExit) as stopped:
        module.main(argv)
    assert stopped.value.code == 2
    said = capsys.readouterr().err.strip().splitlines()
    assert len(said) == 1, said  # argparse's usage came first, two lines of it
    assert said[0].endswith(f"expected an integer >= 1, got {argv[-1].split('=')[-1]!r}") and "positive" not in said[0]


@pytest.mark.parametrize(("main", "argv", "said"), [
    ("pipeline.bench.hosts", ["--sleep", "nan"], "argument --sleep: expected a number of seconds >= 0, got 'nan'"),
    ("pipeline.bench.memory", [], "the following arguments are required: design, count, delay, queue_limit"),
])
def test_a_helper_benchmarks_bad_arguments_are_one_line_and_exit_2(main: str, argv: list[str], said: str,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    """W5's child took its arguments by position, unchecked: with none, a ValueError traceback, exit 0."""
    module = __import__(main, fromlist=["main"])
    with pytest.raises(SystemExit) as stopped:
        module.main(argv)
    assert stopped.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"python -m {main}: error: {said}"]


@pytest.mark.parametrize("argv", [["--only=W9"], ["extra"], ["--nope"]])
def test_a_bad_command_line_of_the_bench_is_one_line(argv: list[str]) -> None:
    result = subprocess.run([sys.executable, "-m", "pipeline.bench", *argv], cwd=ROOT, capture_output=True,
                            text=True, timeout=60, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2
    assert result.stderr.startswith("pipeline-bench: error: ") and result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""


def test_a_baseline_thread_whose_context_the_stop_terminated_ends_in_silence(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ctrl+C terminates the raw zmq baselines' context under their threads: each printed a ContextTerminated
    traceback beside the bench's one line."""
    raised: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: raised.append(args.exc_value))

    def stopped() -> None:
        raise zmq.ContextTerminated

    baselines._run([stopped, stopped], [])
    assert raised == []


def test_thread_cpu_counts_every_engine_thread_of_a_short_run(capsys: pytest.CaptureFixture[str]) -> None:
    """A run shorter than a few samples printed only the flusher: its threads ended between two reads of their
    clocks. Each now says its CPU as it ends."""
    from pipeline.bench import thread_cpu

    thread_cpu.main(["--count", "300"])
    lines = capsys.readouterr().out.splitlines()
    threads = {line.split()[0] for line in lines if line.startswith("    ")}
    assert {"P#0", "router-S", "router-C"} <= threads, lines


def _out_of_memory() -> None:
    raise MemoryError("as under ulimit -v")


class _FailsToArrive:
    """A message whose unpickling in the receiving thread fails outside any step's code."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return _out_of_memory, ()


@pytest.mark.timeout(60)
@pytest.mark.parametrize("copy", [False, True])
def test_a_baseline_thread_that_dies_outside_a_step_breaks_the_row_at_once(copy: bool) -> None:
    """Under ulimit -v a receive raised MemoryError outside the step's try: that thread died, the others waited for
    what it would have sent, the baseline for its 600 s, and the context's term() for ever on a socket left open."""
    with pytest.raises(baselines.BaselineError, match="MemoryError: as under ulimit -v"):
        baselines.zmq_push_pull([1, _FailsToArrive(), 3], lambda message: message, lambda message: None, copy=copy)
