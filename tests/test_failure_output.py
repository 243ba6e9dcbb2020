"""Failure output that reads well: one traceback per (step, exception type), then short lines, then
a count; the summary names the first failure and the counts per step (units and pipeline-run runs)."""

from __future__ import annotations

import json
import logging
import os
import re
import resource
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.config import StepConfig
from pipeline.config.options import RunOptions
from pipeline.engine.control import RunControl
from pipeline.failures.log import COUNT, LINE, LINES_PER_WINDOW, TRACEBACK, WINDOW_SECONDS, FailureLog
from pipeline.failures.policy import ErrorEvent, FailurePolicy
from tests.failure_helpers import REPO, config, pipeline_run, report_row
from tests.failure_steps import FailEvery

MODES = ["threads", "sequential"]


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_first_of_each_kind_gets_a_traceback_then_lines_then_counts() -> None:
    clock = Clock()
    failures = FailureLog(clock)
    assert failures.classify("S", "ValueError") == (TRACEBACK, 0)
    assert failures.classify("S", "KeyError") == (TRACEBACK, 0)  # another type: its own traceback
    assert failures.classify("T", "ValueError") == (TRACEBACK, 0)  # another step too
    assert [failures.classify("S", "ValueError") for _ in range(5)] == [(LINE, 0)] * LINES_PER_WINDOW + [
        (COUNT, 0)] * (5 - LINES_PER_WINDOW)
    assert failures.unreported() == [("S", "ValueError", 5 - LINES_PER_WINDOW)]
    assert failures.unreported() == []  # reported once


def test_a_new_window_reports_the_count_then_allows_lines_again() -> None:
    clock = Clock()
    failures = FailureLog(clock)
    for _ in range(1 + LINES_PER_WINDOW + 10):
        failures.classify("S", "ValueError")
    clock.now += WINDOW_SECONDS
    assert failures.classify("S", "ValueError") == (LINE, 10)
    assert failures.unreported() == []


@given(st.lists(st.tuples(st.sampled_from(["A", "B"]), st.sampled_from(["ValueError", "OSError"]),
                          st.floats(0, 3 * WINDOW_SECONDS)), max_size=200))
def test_every_failure_is_logged_or_counted_once(events: list[tuple[str, str, float]]) -> None:
    """Whatever the timing: one traceback per kind, at most LINES_PER_WINDOW + 1 lines per kind and
    window, and every failure either logged or in exactly one count."""
    clock = Clock()
    failures = FailureLog(clock)
    logged: Counter[tuple[str, str]] = Counter()
    counted: Counter[tuple[str, str]] = Counter()
    tracebacks: Counter[tuple[str, str]] = Counter()
    for step, kind, wait in events:
        clock.now += wait
        how, earlier = failures.classify(step, kind)
        counted[step, kind] += earlier
        logged[step, kind] += how != COUNT
        tracebacks[step, kind] += how == TRACEBACK
    for step, kind, count in failures.unreported():
        counted[step, kind] += count
    happened = Counter((step, kind) for step, kind, _ in events)
    assert tracebacks == Counter(dict.fromkeys(happened, 1))
    assert logged + counted == happened
    windows = 1 + sum(wait for _, _, wait in events) / WINDOW_SECONDS
    assert all(logged[key] <= 1 + LINES_PER_WINDOW * (windows + 1) for key in happened)


def step_config(name: str, on_error: str = "skip") -> StepConfig:
    return StepConfig(name=name, kind="stager", cls=FailEvery, module="tests.failure_steps", next_steps=(),
                      on_error=on_error)


def test_summary_names_the_first_failure_and_the_counts_by_type(tmp_path: Path) -> None:
    dead = tmp_path / "dead.jsonl"
    stage, sink = step_config("STAGE"), step_config("SINK")
    policy = FailurePolicy(0, str(dead), lambda reason: None)
    events: list[ErrorEvent] = []
    policy.listeners.append(events.append)
    for seq in range(4):
        policy.message_failed(stage, 1, seq, ValueError(f"bad {seq}"), None)
    policy.message_failed(stage, 0, 4, KeyError("k"), None)
    policy.lifecycle_failed("SINK", 0, "finish()", OSError("disk full"))
    policy.message_failed(sink, 0, 9, OSError("gone"), None)
    policy.close()
    assert policy.summary() == [
        "first failure: step STAGE worker 1, message 0: ValueError: bad 0",
        "failed messages: STAGE 4 ValueError, 1 KeyError; SINK 1 OSError",
        f"dead letters: 6 records written to {dead}",
    ]
    assert [e.seq for e in events] == [0, 1, 2, 3, 4, None, 9]  # the GUI gets every one, in full
    assert all(e.traceback.endswith(e.error.removeprefix("finish(): ") + "\n") for e in events)


def test_summary_is_empty_without_failures() -> None:
    assert FailurePolicy(0, "", lambda reason: None).summary() == []


def failure_lines(stderr: str) -> tuple[int, int, int]:
    """Tracebacks, one-line failure reports and the failures in '... and N more' lines of ``stderr``."""
    more = sum(int(n) for n in re.findall(r"\.\.\. and (\d+) more ValueError in STAGE", stderr))
    return stderr.count("Traceback"), len(re.findall(r"run\(\) failed on message \d+", stderr)), more


def test_a_thousand_failures_in_one_thread_read_as_five_lines(tmp_path: Path) -> None:
    path = config(tmp_path, {"class": "FailEvery", "on_error": "skip"}, Counter={"count": 1000},
                  FailEvery={"every": 1})
    result = pipeline_run(path, "--Pipeline.mode=sequential", f"--Pipeline.dead_letter={tmp_path / 'dead.jsonl'}")
    assert result.returncode == 1
    assert failure_lines(result.stderr) == (1, 1 + LINES_PER_WINDOW, 1000 - 1 - LINES_PER_WINDOW)
    assert "ERROR pipeline.failures: ... and 996 more ValueError in STAGE" in result.stderr
    lines = result.stderr.splitlines()
    start = lines.index("first failure: step STAGE worker 0, message 0: ValueError: bad message 0")
    assert lines[start + 1:start + 3] == [
        "failed messages: STAGE 1000 ValueError", f"dead letters: 1000 records written to {tmp_path / 'dead.jsonl'}"]
    assert lines[start + 3].startswith("wall time")  # then the table
    assert len((tmp_path / "dead.jsonl").read_text(encoding="utf-8").splitlines()) == 1000  # every one in full


def test_a_thousand_failures_in_two_threads_are_each_logged_or_counted(tmp_path: Path) -> None:
    path = config(tmp_path, {"class": "FailEvery", "on_error": "skip", "nb_thread": 2}, Counter={"count": 1000},
                  FailEvery={"every": 1})
    result = pipeline_run(path)
    assert result.returncode == 1
    tracebacks, lines, more = failure_lines(result.stderr)
    assert tracebacks == 1 and lines + more == 1000 and lines < 20
    assert "failed messages: STAGE 1000 ValueError" in result.stderr


@pytest.mark.parametrize("workers", [{"nb_thread": 6}, {"nb_process": 2, "nb_thread": 3}], ids=["threads", "processes"])
@pytest.mark.parametrize(("method", "step", "error"), [("init", "InitAlwaysFails", "RuntimeError"),
                                                       ("finish", "FailingFinish", "OSError")])
def test_a_lifecycle_failure_in_every_worker_reads_as_one_traceback(tmp_path: Path, workers: dict[str, int],
                                                                    method: str, step: str, error: str) -> None:
    """Each worker logged its init()'s failure with the traceback: six of them for one bug. The traceback goes with
    the first line of them, which the summary names as the first failure (a line without one came first)."""
    path = config(tmp_path, {"class": step, **workers})
    result = pipeline_run(path)
    assert result.returncode == 1
    assert result.stderr.count("Traceback") == 1, result.stderr
    said = re.compile(rf"step STAGE worker (\d+): {method}\(\): {error}")
    lines = result.stderr.splitlines()
    first = next(i for i, line in enumerate(lines) if said.search(line))
    assert lines[first + 1].startswith("Traceback"), result.stderr
    assert f"first failure: step STAGE worker {said.search(lines[first])[1]}, {method}(): {error}" in result.stderr
    more = sum(int(n) for n in re.findall(rf"\.\.\. and (\d+) more {method}\(\) {error} in STAGE", result.stderr))
    count = sum(1 for line in lines if said.search(line))
    assert 1 <= count <= 1 + LINES_PER_WINDOW and count + more <= 6
    if "nb_process" not in workers or method == "finish":  # every worker started: each failure is logged or counted
        assert count + more == 6, result.stderr


class FirstLineHeld(logging.Filter):
    """Holds the first failure's log line, once decided, until a second failure has either been logged (the first
    line comes after it) or waits for the lock it is decided under (it comes after the first): what two workers
    failing at once may do, made certain."""

    def __init__(self, second: threading.Thread) -> None:
        super().__init__()
        self.second = second
        self.moved = threading.Event()  # the second failure was logged, or waits for the lock

    def filter(self, record: logging.LogRecord) -> bool:
        """Let the first line through once the second failure has moved on."""
        if threading.current_thread() is self.second:
            self.moved.set()
        elif self.second.ident is None:  # the first line: the second failure starts now
            self.second.start()
            assert self.moved.wait(10), "the second failure neither logged nor waited for the lock"
        return True


class Contended:
    """A lock that tells ``moved`` when a thread comes to it while another holds it."""

    def __init__(self, moved: threading.Event) -> None:
        self.lock = threading.Lock()
        self.moved = moved

    def __enter__(self) -> None:
        if not self.lock.acquire(blocking=False):
            self.moved.set()
            self.lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self.lock.release()


class Lines(logging.Handler):
    """The log lines, in the order they are written."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self.levels: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        """Keep its text and level."""
        self.lines.append(record.getMessage())
        self.levels.append(record.levelname)


def raised(error: Exception) -> Exception:
    """``error``, raised and caught: with its traceback."""
    try:
        raise error
    except Exception as caught:
        return caught


@pytest.mark.parametrize("kind", ["finish()", "run()"])
def test_the_first_line_logged_of_a_kind_has_its_traceback_and_is_the_first_failure(kind: str) -> None:
    """The policy decided which failure of a kind was first (the one with the traceback) under its lock, and logged
    outside it: two workers failing at once logged 'worker 1: finish(): ...' without a traceback, then worker 0's
    with it, and the summary named worker 0 as the first failure."""
    policy = FailurePolicy(0, "", lambda reason: None)

    def fail(worker: int) -> None:
        error = raised(RuntimeError("finish broke" if kind == "finish()" else f"bad {worker}"))
        if kind == "finish()":
            policy.lifecycle_failed("BAD", worker, "finish()", error)
        else:
            policy.message_failed(step_config("BAD"), worker, worker, error, None)

    second = threading.Thread(target=fail, args=(1,))
    held, lines = FirstLineHeld(second), Lines()
    policy._lock = Contended(held.moved)  # type: ignore[assignment]  # to tell when the second failure waits for it
    logger = logging.getLogger("pipeline.failures")
    logger.addFilter(held)
    logger.addHandler(lines)
    try:
        fail(0)
        second.join(10)
    finally:
        logger.removeFilter(held)
        logger.removeHandler(lines)
    assert not second.is_alive()
    assert [line.startswith("step BAD worker 0: ") for line in lines.lines] == [True, False]
    assert ["Traceback" in line for line in lines.lines] == [True, False]
    assert policy.summary()[0].startswith("first failure: step BAD worker 0, ")


def test_the_first_internal_error_logged_is_the_one_in_full() -> None:
    """The first of a run's internal errors was decided by a shared count and logged after it: at --debug, a later
    thread's DEBUG line could come before the first's CRITICAL one."""
    control = RunControl(RunOptions())
    second = threading.Thread(target=control.log_internal_error, args=("T1", raised(RuntimeError("broken 1"))))
    held, lines = FirstLineHeld(second), Lines()
    control._internal_lock = Contended(held.moved)  # type: ignore[assignment]  # to tell when the second waits for it
    logger = logging.getLogger("pipeline.engine")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addFilter(held)
    logger.addHandler(lines)
    try:
        control.log_internal_error("T0", raised(RuntimeError("broken 0")))
        second.join(10)
    finally:
        logger.setLevel(level)
        logger.removeFilter(held)
        logger.removeHandler(lines)
    assert not second.is_alive()
    assert lines.lines == ["thread T0 stopped on an internal error", "thread T1 stopped on an internal error"]
    assert lines.levels == ["CRITICAL", "DEBUG"]


@pytest.mark.parametrize("mode", MODES)
def test_the_failure_that_stops_a_run_is_not_buried(tmp_path: Path, mode: str) -> None:
    """on_error=stop: one traceback, and the summary still names the first failure at any log level."""
    path = config(tmp_path, {"class": "FailEvery", "nb_thread": 2}, Counter={"count": 100_000},
                  FailEvery={"every": 1})
    result = pipeline_run(path, f"--Pipeline.mode={mode}")
    assert result.returncode == 1
    assert result.stderr.count("Traceback") == 1
    assert "stopped: step STAGE failed on message" in result.stderr
    quiet = pipeline_run(path, f"--Pipeline.mode={mode}", "--log-level=CRITICAL")
    assert "Traceback" not in quiet.stderr
    assert re.search(r"^first failure: step STAGE worker \d, message \d+: ValueError: bad message \d+$",
                     quiet.stderr, re.MULTILINE)
    failed = report_row(quiet.stderr, "STAGE")[3]
    assert f"failed messages: STAGE {failed} ValueError" in quiet.stderr


def run_passing_chain(tmp: Path, steps: int, keys: dict[str, int], open_files: int, hard: bool,
                      count: int = 10) -> subprocess.CompletedProcess:
    """pipeline-run of COUNT -> ``steps`` PassThrough steps (``keys``: nb_thread, nb_process) -> WRITE, under a soft
    limit of ``open_files`` open files (the hard one too, with ``hard``)."""
    names = [chr(ord("A") + i) for i in range(steps)]
    stagers = [{"name": name, "module": "algorithms.basic", "class": "PassThrough", **keys, "next_steps": after}
               for name, after in zip(names, [*names[1:], "WRITE"], strict=True)]
    document = {"version": 1, "Pipeline": {
        "producer_conf": {"name": "COUNT", "module": "algorithms.basic", "class": "Counter", "next_steps": "A"},
        "stagers_conf": stagers,
        "consumer_conf": {"name": "WRITE", "module": "algorithms.basic", "class": "JsonLinesWriter"}},
        "Counter": {"count": count}, "JsonLinesWriter": {"path": str(tmp / "out.jsonl")}}
    path = tmp / "pipeline.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    limit = f"({open_files}, {open_files if hard else 'resource.getrlimit(resource.RLIMIT_NOFILE)[1]'})"
    return subprocess.run([sys.executable, "-c", f"import resource, runpy, sys; resource.setrlimit("
                           f"resource.RLIMIT_NOFILE, {limit}); sys.argv = ['pipeline-run', sys.argv[1], "
                           "'--no-progress']; runpy.run_module('pipeline', run_name='__main__')", f"--config={path}"],
                          cwd=REPO, capture_output=True, text=True, timeout=50, env={**os.environ, "TMPDIR": str(tmp)})


@pytest.mark.parametrize(("steps", "keys", "hard", "needs"), [
    (3, {"nb_thread": 64}, 256, 834),
    (1, {"nb_process": 4, "nb_thread": 4}, 64, 114),
    (1, {"nb_process": 2, "nb_thread": 64}, 256, 576),
], ids=["threads", "processes", "threads-of-a-worker-process"])
def test_a_hard_limit_of_open_files_below_what_the_run_needs_is_refused_in_one_line(
        tmp_path: Path, steps: int, keys: dict[str, int], hard: int, needs: int) -> None:
    """Below what the run needs, libzmq aborted the run's process (exit 134, one line of libzmq's and no report), or a
    thread stopped when its sockets found no file (a worker process's threads too), and the run failed with a report of
    threads "left behind after shutdown_timeout": refused before anything starts, in one line, nothing left behind."""
    result = run_passing_chain(tmp_path, steps, keys, hard, hard=True)
    assert result.returncode == 1, result.stderr
    assert result.stderr == (f"pipeline-run: error: out of open files: this process may open {hard} (ulimit -n; its "
                             f"hard limit, ulimit -Hn, {hard}) and needs {needs} at least: raise it\n")
    assert [path.name for path in tmp_path.iterdir()] == ["pipeline.json"]  # no output, no private directory


def test_threads_of_worker_processes_count_in_the_open_files_the_run_asks_for(tmp_path: Path) -> None:
    """Two steps of 2 worker processes of 64 threads under a soft limit of 256 open files (the hard one higher): the
    run raises its soft limit for their connections too, and ends well (libzmq aborted it, exit 134, no report)."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard != resource.RLIM_INFINITY and hard < 4096:
        pytest.skip(f"a hard limit of {hard} open files")
    result = run_passing_chain(tmp_path, 2, {"nb_process": 2, "nb_thread": 64}, 256, hard=False, count=2000)
    assert result.returncode == 0, result.stderr
    assert report_row(result.stderr, "WRITE")[:2] == [2000, 2000]


RAISING_HANDLER = """
import logging, sys
from pipeline import Pipeline

class Raising(logging.Handler):
    def emit(self, record):
        raise RuntimeError("alerting backend down")

logging.getLogger().addHandler(Raising(level=logging.ERROR))
try:
    report = Pipeline.from_config(sys.argv[1], {"Pipeline": {"mode": sys.argv[2], "gui": False, "progress": False},
                                                "FailEvery": {"every": 7}}).run()
    print("returned", report.exit_status)
except RuntimeError as err:
    print("raised", err)
"""


@pytest.mark.parametrize(("mode", "keys"), [("threads", {}), ("threads", {"nb_process": 2}), ("sequential", {})],
                         ids=["threads", "processes", "sequential"])
def test_a_logging_handler_that_raises_never_hangs_the_run(tmp_path: Path, mode: str, keys: dict[str, int]) -> None:
    """A handler of the user's that raises on ERROR: the router that logged a failed message stopped, and then its
    crash went unsaid (logging it raised again) and the run waited for ever."""
    path = config(tmp_path, {"class": "FailEvery", "on_error": "skip", **keys}, Counter={"count": 100})
    result = subprocess.run([sys.executable, "-c", RAISING_HANDLER, str(path), mode], cwd=REPO, capture_output=True,
                            text=True, timeout=40, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.stdout.splitlines()[-1:] in (["returned 1"], ["raised alerting backend down"]), result.stderr
