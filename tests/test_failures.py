"""Failures never lose data or hang: real pipeline-run subprocesses, their exit codes, files and reports."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline import Pipeline
from pipeline.engine.addresses import process_alive
from pipeline.engine.flow import PREFETCH
from pipeline.errors import ConfigError
from pipeline.execution.report import never_processed
from pipeline.failures.describe import MAX_ERROR_CHARS, SUMMARY_ERROR_CHARS
from tests.failure_helpers import REPO, STEPS, config, pipeline_run, report_row, written
from tests.failure_steps import GO, STARTED
from tests.process_helpers import finish_run, start_run, wait_for
from tests.remote_helpers import Keys, free_port

# The tests of this file take more than 10 s in all: `pytest -m "not slow"` leaves them out.
pytestmark = pytest.mark.slow

MODES = ["threads", "sequential"]


@pytest.mark.parametrize("mode", MODES)
def test_skip_policy_counts_failures_and_goes_on(tmp_path: Path, mode: str) -> None:
    path = config(tmp_path, {"class": "FailEvery", "nb_thread": 2, "on_error": "skip"},
                  Counter={"count": 30}, FailEvery={"every": 5})
    result = pipeline_run(path, f"--Pipeline.mode={mode}")
    assert result.returncode == 1
    assert report_row(result.stderr, "STAGE") == [30, 24, 24, 6]
    assert sorted(written(tmp_path)[:-1]) == [n for n in range(30) if n % 5]
    assert written(tmp_path)[-1] == {"finished": True}
    assert "ValueError: bad message 0" in result.stderr and "Traceback" in result.stderr
    assert "STAGE: first error: ValueError: bad message" in result.stderr


@pytest.mark.parametrize("mode", [*MODES, "processes"])
def test_a_step_s_error_text_reaches_the_terminal_as_text(tmp_path: Path, mode: str) -> None:
    """An error quoting a step's data with terminal escapes (clear the screen, set the title, rewrite the line)
    reached stderr raw, in its log lines, the first failure and the step's first error: the summary was wiped off
    the screen."""
    stager = {"class": "FailsQuoting", "on_error": "skip", **({"nb_process": 1} if mode == "processes" else {})}
    path = config(tmp_path, stager, Counter={"count": 4},
                  FailsQuoting={"every": 2, "text": "bad \x1b[2J\x1b]0;X\x07\rY"})
    result = pipeline_run(path, f"--Pipeline.mode={'threads' if mode == 'processes' else mode}")
    assert result.returncode == 1, result.stderr
    assert {char for char in result.stderr if not char.isprintable()} == {"\n"}, result.stderr
    assert "STAGE: first error: ValueError: bad \\x1b[2J\\x1b]0;X\\x07 Y 0\n" in result.stderr  # \r: a line break


def test_a_step_s_first_error_is_its_first_whichever_worker_had_it(tmp_path: Path) -> None:
    """The summary's first failure and the step's first error name the same message: the step's, not worker 0's
    (each worker's first error merged in worker order named a later one in every run of a step of 4 threads)."""
    letters = tmp_path / "dead.jsonl"
    path = config(tmp_path, {"class": "FailFirstElsewhere", "nb_thread": 2, "on_error": "skip"},
                  Counter={"count": 20}, FailFirstElsewhere={"recorded": str(letters)})
    result = pipeline_run(path, f"--Pipeline.dead_letter={letters}")
    assert result.returncode == 1
    first = re.search(r"^first failure: step STAGE worker (\d+), message (\d+): ValueError", result.stderr, re.M)
    assert first is not None and first[1] != "0"
    assert f"STAGE: first error: ValueError: bad message {first[2]}\n" in result.stderr


@pytest.mark.parametrize("mode", MODES)
def test_allow_failures_exits_0(tmp_path: Path, mode: str) -> None:
    path = config(tmp_path, {"class": "FailEvery", "on_error": "skip"}, Counter={"count": 20},
                  FailEvery={"every": 4})
    result = pipeline_run(path, f"--Pipeline.mode={mode}", "--Pipeline.allow_failures=True")
    assert result.returncode == 0
    assert report_row(result.stderr, "STAGE")[3] == 5


@pytest.mark.parametrize("mode", MODES)
def test_stop_policy_stops_the_failing_step(tmp_path: Path, mode: str) -> None:
    """on_error=stop: the failing step starts no message after its first failure; what it had is counted."""
    dead = tmp_path / "dead.jsonl"
    path = config(tmp_path, {"class": "FailEvery", "nb_thread": 2}, Counter={"count": 100_000},
                  FailEvery={"every": 50})
    result = pipeline_run(path, f"--Pipeline.mode={mode}", f"--Pipeline.dead_letter={dead}")
    assert result.returncode == 1
    produced = report_row(result.stderr, "COUNT")[2]
    received, processed, _, failed = report_row(result.stderr, "STAGE")
    assert produced < 100_000  # the producer stopped early
    assert received == produced  # everything it produced reached STAGE
    assert 1 <= failed <= 2  # none started after the first failure (the other worker may have been in run())
    not_run = received - processed - failed
    if mode == "threads":  # the sequential mode holds nothing beyond the message that failed
        assert not_run > 0 and never_processed(not_run) in result.stderr
    records = [json.loads(line) for line in dead.read_text().splitlines()]
    assert len(records) == 1 + not_run  # the failure, then each message it did not run, to replay
    assert sum(r["error"].startswith("NotRun: not run") for r in records) == not_run
    assert len(written(tmp_path)) - 1 == processed == report_row(result.stderr, "WRITER")[1]
    assert "stopped: step STAGE failed on message" in result.stderr


#: Where STAGE runs, for the fatal failure tests: the run's mode, STAGE's workers, and the producer's (in shards,
#: with STAGE fused after them).
FATAL_WHERE = {
    "sequential": ("sequential", {}, {}),
    "threads-in-its-router": ("threads", {}, {}),
    "threads": ("threads", {"nb_thread": 2}, {}),
    "processes": ("threads", {"nb_process": 2}, {}),
    "after-shards": ("threads", {"nb_process": 2}, {"nb_process": 2}),
}


@pytest.mark.parametrize("raises", ["SystemExit", "KeyboardInterrupt", "BaseException"])
@pytest.mark.parametrize("where", list(FATAL_WHERE))
def test_a_system_exit_in_run_is_a_failed_message_that_halts_its_step(tmp_path: Path, where: str,
                                                                         raises: str) -> None:
    """What is not an Exception, raised by run(), fails its message as an Exception does (counted in the summary,
    logged once, its dead letter written, so the replay after the fix writes every message once), and fails and
    halts the step: the run exits 1 even with allow_failures. It was only the step's failure: no dead letter, and
    the replay lost the messages it failed on."""
    mode, stage, producer = FATAL_WHERE[where]
    dead = tmp_path / "dead.jsonl"
    path = config(tmp_path, {"class": "ExitEvery", "on_error": "skip", **stage},
                  {"name": "COUNT", "module": "algorithms.basic", "class": "Counter", "next_steps": "STAGE",
                   **producer}, Counter={"count": 30}, FailEvery={"every": 7}, ExitEvery={"raises": raises})
    result = pipeline_run(path, f"--Pipeline.mode={mode}", f"--Pipeline.dead_letter={dead}",
                          "--Pipeline.allow_failures=True")
    assert result.returncode == 1, result.stderr
    produced = report_row(result.stderr, "COUNT")[1]
    failed = report_row(result.stderr, "STAGE")[3]
    assert failed >= 1, result.stderr
    records = [json.loads(line) for line in dead.read_text(encoding="utf-8").splitlines()]
    failures = [r["error"] for r in records if not r["error"].startswith("NotRun")]
    assert len(failures) == failed and all(error.startswith(f"{raises}: bad message") for error in failures), records
    assert f"failed messages: STAGE {failed} {raises}" in result.stderr
    logged = [line for line in result.stderr.splitlines() if " ERROR pipeline.failures: step STAGE " in line]
    assert len(logged) == failed and all("run() failed on message" in line for line in logged), logged
    assert f"stopped: step STAGE raised {raises}: bad message" in result.stderr
    first = written(tmp_path)[:-1]
    replay = pipeline_run(path, f"--Pipeline.mode={mode}", f"--replay={dead}", "--FailEvery.every=0")
    assert replay.returncode == 0, replay.stderr
    both = first + written(tmp_path)[:-1]
    assert len(both) == len(set(both)) == produced and set(both) <= set(range(30)), (first, both)


@pytest.mark.parametrize("mode,workers,past", [("sequential", {}, 0), ("threads", {}, 0),
                                               ("threads", {"nb_thread": 2}, 1),
                                               ("threads", {"nb_process": 2}, 2 * PREFETCH)],
                         ids=["sequential", "threads-in-its-router", "threads", "processes"])
def test_max_failures_stops_the_run(tmp_path: Path, mode: str, workers: dict, past: int) -> None:
    """The failing step is halted once the limit is reached, not drained: draining failed every message queued for
    it, hundreds past the limit. What it did not run is counted and written, to replay."""
    dead = tmp_path / "dead.jsonl"
    path = config(tmp_path, {"class": "FailEvery", "on_error": "skip", **workers}, Counter={"count": 100_000},
                  FailEvery={"every": 2})
    result = pipeline_run(path, f"--Pipeline.mode={mode}", "--Pipeline.max_failures=3",
                          f"--Pipeline.dead_letter={dead}")
    assert result.returncode == 1
    produced = report_row(result.stderr, "COUNT")[2]
    received, processed, _, failed = report_row(result.stderr, "STAGE")
    assert produced < 100_000 and received == produced
    # What the producer never made is in no dead letter: the summary says it stopped short (a replay will not make it)
    assert f"COUNT: stopped after {produced} of its 100000 messages" in result.stderr.splitlines()
    # Past the limit, only what another worker thread was running, or what a worker process held before it heard
    # (its window: PREFETCH small messages at most; some 20 to 50 here).
    assert 3 <= failed <= 3 + past, result.stderr
    assert "stopped: max_failures=3 reached" in result.stderr
    not_run = received - processed - failed
    if not_run:
        assert never_processed(not_run) in result.stderr
    records = [json.loads(line) for line in dead.read_text(encoding="utf-8").splitlines()]
    assert len(records) == failed + not_run


@pytest.mark.parametrize("mode", MODES)
def test_dead_letters_replay_to_success_once_fixed(tmp_path: Path, mode: str) -> None:
    dead = tmp_path / "dead.jsonl"
    path = config(tmp_path, {"class": "FailEvery", "on_error": "skip"}, Counter={"count": 20},
                  FailEvery={"every": 3})
    result = pipeline_run(path, f"--Pipeline.mode={mode}", f"--Pipeline.dead_letter={dead}")
    assert result.returncode == 1
    records = [json.loads(line) for line in dead.read_text(encoding="utf-8").splitlines()]
    assert len({r["seq"] for r in records}) == len(records) == 7 and {r["step"] for r in records} == {"STAGE"}
    assert all("ValueError: bad message" in r["error"] and "Traceback" in r["traceback"] for r in records)
    # the step is fixed (it no longer fails): the replay re-feeds exactly the failed messages
    replay = pipeline_run(path, f"--Pipeline.mode={mode}", f"--replay={dead}", "--FailEvery.every=0")
    assert replay.returncode == 0, replay.stderr
    assert sorted(written(tmp_path)[:-1]) == [0, 3, 6, 9, 12, 15, 18]
    assert report_row(replay.stderr, "STAGE") == [7, 7, 7, 0]


@pytest.mark.parametrize(("mode", "workers"), [("sequential", {}), ("threads", {"nb_thread": 2}),
                                             ("threads", {"nb_process": 1})], ids=["sequential", "threads", "process"])
def test_an_error_of_a_million_characters_is_cut_everywhere_it_is_told(tmp_path: Path, mode: str,
                                                                       workers: dict) -> None:
    """A step's ValueError("x" * 1_100_000) was carried whole into every line that told it, its dead letter and a
    worker process's FAILED: now its start and its end, to MAX_ERROR_CHARS, saying how much was cut."""
    dead = tmp_path / "dead.jsonl"
    path = config(tmp_path, {"class": "FailsAtLength", "on_error": "skip", **workers}, Counter={"count": 6},
                  FailsAtLength={"every": 3, "padding": 1_100_000})
    result = pipeline_run(path, f"--Pipeline.mode={mode}", f"--Pipeline.dead_letter={dead}", "--no-progress")
    assert result.returncode == 1
    assert max(len(line) for line in result.stderr.splitlines()) < MAX_ERROR_CHARS + 200, result.stderr[:2000]
    assert "ValueError: bad message 0x" in result.stderr and "characters cut ...]" in result.stderr
    assert report_row(result.stderr, "STAGE") == [6, 4, 4, 2]
    # For people: the summary's lines, and each failure's own log line, quote it within SUMMARY_ERROR_CHARS.
    quoted = [line for line in result.stderr.splitlines()
              if line.startswith(("first failure: ", "STAGE: first error: ")) or "run() failed on message" in line]
    assert len(quoted) >= 3 and all(len(line) < SUMMARY_ERROR_CHARS + 200 for line in quoted), quoted
    assert all("characters cut ...]" in line for line in quoted)
    for record in (json.loads(line) for line in dead.read_text(encoding="utf-8").splitlines()):
        for text in (record["error"], record["traceback"]):
            assert len(text) < MAX_ERROR_CHARS + 200 and "characters cut ...]" in text and text.rstrip().endswith("x")
        assert record["error"].startswith("ValueError: bad message") and "Traceback" in record["traceback"]


@pytest.mark.parametrize("mode", MODES)
def test_init_failure_in_one_worker_does_not_start_the_producer(tmp_path: Path, mode: str) -> None:
    marker = tmp_path / "finished.txt"
    path = config(tmp_path, {"class": "FailingInit", "nb_thread": 3 if mode == "threads" else 1},
                  Counter={"count": 10})
    result = pipeline_run(path, f"--Pipeline.mode={mode}", env={"FAILURE_TEST_MARKER": str(marker)})
    assert result.returncode == 1
    assert report_row(result.stderr, "COUNT") == [0, 0, 0, 0]
    assert written(tmp_path) == [{"finished": True}]  # the writer still ran finish()
    finished = marker.read_text(encoding="utf-8").count("finished") if marker.exists() else 0
    assert finished == (2 if mode == "threads" else 0)  # the workers whose init() worked
    assert "init(): RuntimeError: cannot open the calibration table" in result.stderr


@pytest.mark.parametrize("mode", MODES)
def test_finish_failure_lets_the_others_finish(tmp_path: Path, mode: str) -> None:
    path = config(tmp_path, {"class": "FailingFinish"}, Counter={"count": 10})
    result = pipeline_run(path, f"--Pipeline.mode={mode}")
    assert result.returncode == 1
    assert written(tmp_path) == [*range(10), {"finished": True}]
    assert "finish(): OSError: disk full while flushing" in result.stderr


@pytest.mark.parametrize("mode", MODES)
def test_producer_failure_drains_what_it_produced(tmp_path: Path, mode: str) -> None:
    producer = {"name": "COUNT", "module": STEPS, "class": "FailingProducer", "next_steps": "STAGE"}
    path = config(tmp_path, {"class": "FailEvery"}, producer, FailingProducer={"after": 7})
    result = pipeline_run(path, f"--Pipeline.mode={mode}")
    assert result.returncode == 1
    assert sorted(written(tmp_path)[:-1]) == list(range(7))
    assert written(tmp_path)[-1] == {"finished": True}
    assert "ConnectionError: the source went away" in result.stderr


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("signum,status", [(2, 130), (15, 143), (1, 129)])  # SIGHUP: it killed the run, no report
def test_signal_drains_and_finishes(tmp_path: Path, mode: str, signum: int, status: int) -> None:
    path = config(tmp_path, {"class": "SignalSelf", "nb_thread": 2}, Counter={"count": 100_000},
                  SignalSelf={"at": 20, "signal": signum})
    result = pipeline_run(path, f"--Pipeline.mode={mode}")
    assert result.returncode == status
    produced = report_row(result.stderr, "COUNT")[2]
    assert 20 < produced < 100_000
    lines = written(tmp_path)
    assert lines[-1] == {"finished": True}  # finish() ran
    assert sorted(lines[:-1]) == list(range(produced))  # every message produced was consumed


#: From the Python API: a run that Ctrl+C stops, then one that runs to its end in the same process.
@pytest.mark.parametrize("returns", ["int", "str", "bytes", "dict"])
@pytest.mark.parametrize("mode,workers", [("sequential", {}), ("threads", {}), ("threads", {"nb_process": 1})],
                         ids=["sequential", "threads", "processes"])
def test_a_producer_that_is_no_generator_fails_in_one_line(tmp_path: Path, mode: str, workers: dict,
                                                           returns: str) -> None:
    """Its run() returned one value: the run fails saying so, without a traceback of the engine's own frames, and
    sends nothing (a str is not sent a character at a time, nor a dict key by key)."""
    producer = {"name": "COUNT", "module": STEPS, "class": "ReturnsAValue", "next_steps": "STAGE", **workers}
    path = config(tmp_path, {"class": "FailEvery"}, producer, ReturnsAValue={"returns": returns})
    result = pipeline_run(path, f"--Pipeline.mode={mode}")
    assert result.returncode == 1, result.stderr
    assert re.search(r"COUNT: first error: run\(\)( of shard 0)?: StepFailed: run\(\) must be a generator "
                     rf"\(or return an iterable\), it returned {returns}\b", result.stderr), result.stderr
    assert "Traceback" not in result.stderr
    assert written(tmp_path) == [{"finished": True}]


def test_the_signal_guard_refuses_a_thread_that_is_not_the_main_one_and_leaves_nothing_open() -> None:
    """Python sets signal handlers in the main thread only: the guard raised its raw ValueError there, after it had
    opened its pipe, which stayed open."""
    from pipeline.cli.signals import SignalGuard

    raised: list[BaseException] = []

    def guard() -> None:
        try:
            with SignalGuard(object(), 1.0):
                pass
        except BaseException as err:  # what the thread raised, for the test to read
            raised.append(err)

    before = sorted(os.listdir("/proc/self/fd"))
    thread = threading.Thread(target=guard)
    thread.start()
    thread.join(10)
    assert [type(err) for err in raised] == [RuntimeError]
    assert "Python delivers to the main thread only: use it in the main thread" in str(raised[0])
    assert sorted(os.listdir("/proc/self/fd")) == before


CTRL_C_FROM_PYTHON = """
import sys
from pipeline import Pipeline
try:
    Pipeline.from_config(sys.argv[1], {"Pipeline": {"mode": sys.argv[2]}}).run()
    print("returned")
except KeyboardInterrupt:
    print("KeyboardInterrupt")
report = Pipeline.from_config(sys.argv[1], {"Pipeline": {"mode": sys.argv[2]}, "Counter": {"count": 5}}).run()
print(report.exit_status, report["WRITER"].processed)
"""


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("signum", [2, 0], ids=["sigint", "interrupt_main"])
def test_ctrl_c_raises_keyboard_interrupt_out_of_the_python_api_in_every_mode(tmp_path: Path, mode: str,
                                                                               signum: int) -> None:
    """As the FAQ says. In sequential mode the step's code runs in the calling thread, where Ctrl+C interrupts it:
    it failed the step and the run returned a report (a KeyboardInterrupt the step raises itself still does). An
    interrupt that is no signal (_thread.interrupt_main()) came out only once the whole run had gone by."""
    path = config(tmp_path, {"class": "SignalSelf"}, Counter={"count": 100_000},
                  SignalSelf={"at": 20, "signal": signum})
    result = subprocess.run([sys.executable, "-c", CTRL_C_FROM_PYTHON, str(path), mode], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=30)
    assert result.stdout.splitlines() == ["KeyboardInterrupt", "0 5"], result.stderr


USERS_HANDLER = """
import signal, sys
from pipeline import Pipeline

def handler(signum, frame):
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    sys.exit(143)

signal.signal(int(sys.argv[3]), handler)
pipeline = Pipeline.from_config(sys.argv[1], {"Pipeline": {"mode": sys.argv[2], "gui": False, "progress": False,
                                                           "dead_letter": sys.argv[4]}})
try:
    pipeline.run()
    print("returned")
except BaseException as err:
    print(type(err).__name__, getattr(err, "code", ""))
print(signal.getsignal(int(sys.argv[3])) is handler)
"""


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize(("signum", "raised"), [(2, "KeyboardInterrupt "), (15, "SystemExit 143")])
def test_what_a_users_signal_handler_raises_leaves_the_python_api_in_every_mode(tmp_path: Path, mode: str,
                                                                                signum: int, raised: str) -> None:
    """In sequential mode the handler's exception, raised in the step's code, failed the step's message (a dead
    letter of a good message, exit 1) and run() returned; it leaves run() as in the other modes."""
    path = config(tmp_path, {"class": "SignalSelf"}, Counter={"count": 100_000},
                  SignalSelf={"at": 20, "signal": signum})
    dead = tmp_path / "dead.jsonl"
    result = subprocess.run([sys.executable, "-c", USERS_HANDLER, str(path), mode, str(signum), str(dead)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=30)
    assert result.stdout.splitlines() == [raised, "True"], result.stderr
    assert dead.read_text(encoding="utf-8") == ""  # no message failed


def test_a_steps_own_cleanup_on_ctrl_c_runs_in_a_sequential_python_api_run(tmp_path: Path) -> None:
    """What the run's wrapped handler raises is a KeyboardInterrupt still: a step's ``except KeyboardInterrupt:``
    cleans up, then it leaves run() as Ctrl+C does."""
    path = config(tmp_path, {"class": "CleansUpOnCtrlC"}, Counter={"count": 10})
    result = subprocess.run([sys.executable, "-c", CTRL_C_FROM_PYTHON, str(path), "sequential"], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=30)
    assert result.stdout.splitlines()[:2] == ["CLEANED 3", "KeyboardInterrupt"], result.stderr


def test_a_sequential_run_leaves_a_sigint_handler_its_steps_set_and_restores_its_own(tmp_path: Path) -> None:
    """The run sets its Ctrl+C handler for its time, and puts Python's back after, unless a step's code set one of
    its own meanwhile (it put Python's back over it)."""
    code = ("import signal, sys; from pipeline import Pipeline; from tests import failure_steps; "
            "report = Pipeline.from_config(sys.argv[1], {'Pipeline': {'mode': 'sequential'}}).run(); "
            "print(report.exit_status, signal.getsignal(signal.SIGINT) is failure_steps.step_sigint_handler); "
            "signal.signal(signal.SIGINT, signal.default_int_handler); "
            "Pipeline.from_config(sys.argv[2], {'Pipeline': {'mode': 'sequential'}}).run(); "
            "print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)")
    for directory in ("sets", "plain"):
        (tmp_path / directory).mkdir()
    sets = config(tmp_path / "sets", {"class": "SetsSigint"})
    plain = config(tmp_path / "plain", {"class": "FailEvery"})
    result = subprocess.run([sys.executable, "-c", code, str(sets), str(plain)], cwd=REPO, capture_output=True,
                            text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.stdout.splitlines() == ["0 True", "True"], result.stderr


@pytest.mark.parametrize("mode,processes", [("threads", 0), ("threads", 2), ("sequential", 0)])
@pytest.mark.parametrize("signum,status", [(2, 130), (15, 143)])
def test_a_signal_while_the_run_is_set_up_stops_it(tmp_path: Path, mode: str, processes: int, signum: int,
                                                   status: int) -> None:
    """A signal that comes before the run's runner exists (pipeline-run catches signals from its start: its guard
    arms the run) stops that run all the same; a later run of the same pipeline starts afresh."""
    path = config(tmp_path, {"class": "FailEvery", "nb_process": processes}, Counter={"count": 100_000})
    pipeline = Pipeline.from_config(path, {"Pipeline": {"mode": mode, "gui": False, "progress": False}})
    pipeline.expect_signals()
    pipeline.interrupt(signum)
    report = pipeline.run()
    assert report.exit_status == status
    assert report["WRITER"].processed == report["COUNT"].processed < 100_000
    assert written(tmp_path)[-1] == {"finished": True}
    (tmp_path / "out.jsonl").unlink()
    again = pipeline.run()
    assert again.exit_status == 0
    assert again["WRITER"].processed == 100_000


@pytest.mark.parametrize("mode,processes", [("threads", 0), ("threads", 2), ("sequential", 0)])
def test_an_interrupt_outside_a_run_stops_no_later_run(tmp_path: Path, mode: str, processes: int) -> None:
    """A notebook's stop button pressed after the run ended, or a timer that fired then, stopped the next run at once
    (exit 130, nothing processed)."""
    path = config(tmp_path, {"class": "FailEvery", "nb_process": processes}, Counter={"count": 10})
    pipeline = Pipeline.from_config(path, {"Pipeline": {"mode": mode, "gui": False, "progress": False}})
    pipeline.interrupt(signal.SIGINT)
    report = pipeline.run()
    assert report.exit_status == 0
    assert report["WRITER"].processed == 10


def test_a_signal_before_a_run_that_could_not_start_leaves_the_next_run_alone(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    path = config(tmp_path, {"class": "FailEvery"}, Counter={"count": 10})
    pipeline = Pipeline.from_config(path, {"Pipeline": {"gui": False, "progress": False}})
    pipeline.expect_signals()
    pipeline.interrupt(signal.SIGINT)

    def no_runner() -> None:
        raise OSError("no more processes")

    monkeypatch.setattr(pipeline, "_new_runner", no_runner)
    with pytest.raises(OSError, match="no more processes"):
        pipeline.run()
    monkeypatch.undo()
    report = pipeline.run()
    assert report.exit_status == 0
    assert report["WRITER"].processed == 10


def test_a_run_whose_monitor_cannot_start_leaves_no_process_behind(tmp_path: Path) -> None:
    """The runner forks the zygote of its worker processes before the monitor starts (a thread would stop the fork):
    a monitor key that cannot be read ends the call with its error, and the zygote with it."""
    path = config(tmp_path, {"class": "FailEvery", "nb_process": 1}, Counter={"count": 10})
    pipeline = Pipeline.from_config(path, {"Pipeline": {"gui": True, "gui_server_key": str(tmp_path / "no.key")}})
    children = Path(f"/proc/{os.getpid()}/task/{os.getpid()}/children")  # of this thread, which forks
    before = set(children.read_text().split())
    with pytest.raises(ConfigError, match=r"no\.key"):
        pipeline.run()
    assert set(children.read_text().split()) == before  # not even a zombie


def test_a_signal_that_leaves_a_stuck_step_behind_is_named(tmp_path: Path) -> None:
    """Ctrl+C once, then a step that never returns: the stop line said "threads left behind after shutdown_timeout"
    alone, where the sequential mode said the signal."""
    path = config(tmp_path, {"class": "SignalSelf"}, Counter={"count": 100},
                  SignalSelf={"at": 5, "signal": 2, "block": 1})
    result = subprocess.run([sys.executable, "-m", "pipeline", f"--config={path}", "--Pipeline.shutdown_timeout=0.5"],
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode == 130, result.stderr
    assert "stopped: SIGINT: stopped by the user (Ctrl+C); threads left behind after shutdown_timeout" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("listening", [False, True], ids=["", "listening"])
def test_second_signal_stops_at_once(tmp_path: Path, listening: bool) -> None:
    """Stopped at once, it names what it left behind; a run that listens for remote workers (its ZAP handler a thread
    that the context's termination ends) prints no traceback either."""
    path = config(tmp_path, {"class": "SignalSelf"}, Counter={"count": 100_000},
                  SignalSelf={"at": 5, "signal": 2, "block": 1})
    listen = []
    if listening:
        keys = Keys.make(tmp_path / "keys")
        listen = [f"--Pipeline.listen=tcp://127.0.0.1:{free_port()}", f"--Pipeline.server_key={keys.server_secret}",
                  f"--Pipeline.authorized_keys={keys.authorized}"]
    process = subprocess.Popen([sys.executable, "-m", "pipeline", f"--config={path}", "--Pipeline.shutdown_timeout=60",
                                *listen], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                               stderr=subprocess.PIPE, text=True)
    try:
        seen = []
        assert process.stderr is not None
        for line in process.stderr:  # the first SIGINT was handled: send the second
            seen.append(line)
            if "stopping after what is in flight" in line:
                process.send_signal(signal.SIGINT)
                break
        _, rest = process.communicate(timeout=30)
    finally:
        process.kill()
    stderr = "".join(seen) + rest
    assert process.returncode == 130
    assert "stopped: SIGINT: stopped by the user (Ctrl+C); a second signal stopped the run at once" in stderr
    assert "still busy, left behind: step STAGE worker 0 in run() on message 5" in stderr
    assert re.search(r"messages? (was|were) sent but never processed", stderr)
    assert "Traceback" not in stderr
    # The producer, blocked sending to a full queue, counts what it sent: the value it was sending is not made (it
    # was counted processed, and then neither emitted nor never processed).
    _, produced, emitted, _ = report_row(stderr, "COUNT")
    assert produced == emitted, stderr


@contextlib.contextmanager
def waiting_in_its_step(pipeline: Pipeline) -> Iterator[list[Any]]:
    """Run ``pipeline`` (its STAGE a WaitsForGo) in another thread; within, its step waits on message 3, then goes on
    to the end; what is yielded holds the run's report once it has ended."""
    STARTED.clear()
    GO.clear()
    reports: list[Any] = []
    runner = threading.Thread(target=lambda: reports.append(pipeline.run()))
    runner.start()
    try:
        assert STARTED.wait(20), "the step did not start message 3"
        yield reports
    finally:
        GO.set()
        runner.join(30)


@contextlib.contextmanager
def waiting_in_its_file_step(tmp_path: Path, mode: str, at: int) -> Iterator[tuple[Pipeline, list[Any]]]:
    """Run a config whose STAGE is a Hangs with a gate (at ``at``; ``mode`` "processes": threads, STAGE in a worker
    process) in another thread; within, its step waits; what is yielded holds the run's report once it has ended."""
    marker, gate = tmp_path / "waiting", tmp_path / "go"
    stage = {"class": "Hangs", **({"nb_process": 1} if mode == "processes" else {})}
    path = config(tmp_path, stage, Counter={"count": 10},
                  Hangs={"at": at, "marker": str(marker), "gate": str(gate)})
    pipeline = Pipeline.from_config(path, {"Pipeline": {"mode": "threads" if mode == "processes" else mode}})
    reports: list[Any] = []
    runner = threading.Thread(target=lambda: reports.append(pipeline.run()))
    runner.start()
    try:
        wait_for(marker.exists, 20, "the step to wait")
        yield pipeline, reports
    finally:
        gate.touch()
        runner.join(30)


@pytest.mark.parametrize(("mode", "at", "named"), [
    ("threads", 3, r"step STAGE worker 0 in run\(\) on message 3"),
    ("threads", -1, r"step STAGE worker 0 in init\(\)"),
    ("sequential", 3, r"step STAGE in run\(\) on message 3"),
    ("sequential", -1, r"step STAGE in init\(\)"),
    ("processes", 3, r"step STAGE worker process 0 \(pid \d+\) in run\(\) on message 3"),
    ("processes", -1, r"step STAGE worker process 0 \(pid \d+\) in init\(\)"),
])
def test_busy_names_the_workers_in_their_steps_code_in_every_mode(tmp_path: Path, mode: str, at: int,
                                                                  named: str) -> None:
    """Pipeline.busy() while STAGE waits in its code names it, as its docstring says (worker processes were never
    named: []; a step in init() was not either, and the sequential mode did not say run())."""
    with waiting_in_its_file_step(tmp_path, mode, at) as (pipeline, reports):
        busy = pipeline.busy()
    assert len(busy) == 1 and re.fullmatch(named, busy[0]), busy
    [final] = reports
    assert (final.exit_status, final["WRITER"].processed) == (0, 10)


@pytest.mark.parametrize("mode", [*MODES, "processes"])
def test_a_report_taken_during_the_run_is_a_running_ones_and_changes_nothing(tmp_path: Path, mode: str) -> None:
    """Pipeline.report_now() from another thread, while a step waits: the report of a run that goes on, its busy
    step named busy (it said the healthy run failed, exit 1, 'internal error: N messages were sent but never
    processed', its busy workers 'left behind'; worker processes were not named); the run's own report at its end is
    a clean one."""
    with waiting_in_its_file_step(tmp_path, mode, 3) as (pipeline, reports):
        peek = pipeline.report_now()
    assert peek is not None
    assert (peek.state, peek.exit_status, peek.stop_reason, peek.stuck) == ("running", 0, None, [])
    # WRITER may be in its run() at that instant too, writing a message that came before
    [stage] = [line for line in peek.busy if not line.startswith("step WRITER ")]
    assert re.search(r"^step STAGE .*in run\(\) on message 3$", stage), peek.busy
    table = peek.table().splitlines()
    assert f"busy: {stage}" in table
    assert peek.unprocessed >= 1 and re.fullmatch(rf"{peek.unprocessed} messages? in flight", table[-2]), table
    assert table[-1] == "exit status so far 0" and table[0].endswith(", run still running"), table
    assert not [line for line in table if "left behind" in line or "internal error" in line or "never" in line]
    [final] = reports
    assert (final.exit_status, final.state, final.stuck, final.busy, final.stop_reason) == (0, "finished", [], [], None)
    assert final["WRITER"].processed == 10


@pytest.mark.parametrize("mode", MODES)
def test_a_pipeline_runs_once_at_a_time_and_another_of_its_config_beside_it(tmp_path: Path, mode: str) -> None:
    """Run again from a second thread while it ran, it was accepted: the second run took the first's place, and an
    interrupt() reached only the run started last."""
    path = config(tmp_path, {"class": "WaitsForGo"}, Counter={"count": 10})
    pipeline = Pipeline.from_config(path, {"Pipeline": {"mode": mode}})
    with waiting_in_its_step(pipeline) as reports:
        with pytest.raises(RuntimeError, match="this Pipeline is running already, in another thread"):
            pipeline.run()
        # Another of the same config runs meanwhile (its 3 messages come before the one its step would wait on), into a
        # file of its own: of two runs on one output, the later is refused (test_locks.py).
        beside = Pipeline.from_config(path, {"Pipeline": {"mode": mode}, "Counter": {"count": 3},
                                             "MarkedWriter": {"path": str(tmp_path / "beside.jsonl")}})
        assert beside.run()["WRITER"].processed == 3
    assert [report["WRITER"].processed for report in reports] == [10]
    assert pipeline.run()["WRITER"].processed == 10  # and again, once the first run is over


@pytest.mark.parametrize("mode", MODES)
def test_stuck_step_is_left_behind_after_shutdown_timeout(tmp_path: Path, mode: str) -> None:
    path = config(tmp_path, {"class": "SignalSelf"}, Counter={"count": 100},
                  SignalSelf={"at": 5, "signal": 15, "block": 1})
    result = pipeline_run(path, f"--Pipeline.mode={mode}", "--Pipeline.shutdown_timeout=0.5")
    assert result.returncode == 143
    assert "STAGE" in result.stderr and "message 5" in result.stderr
    # The report too, in sequential mode as well, where the stuck thread is the one that would print it (the
    # process exits from its watchdog: only a line naming the step was printed)
    assert "still busy, left behind: step STAGE" in result.stderr
    assert report_row(result.stderr, "WRITER")[:2] == [5, 5]
    assert re.search(r"^\d+ messages? (was|were) sent but never processed$", result.stderr, re.MULTILINE)


def stopped_once_it_hangs(tmp_path: Path, stage: dict[str, Any], **hangs: Any) -> Any:
    """pipeline-run of a chain whose stage (Hangs, with ``hangs``) hangs, given SIGTERM once it does, with a
    shutdown_timeout of 0.5 s: how it ended."""
    marker = tmp_path / "hangs"
    path = config(tmp_path, stage, Counter={"count": 100}, Hangs={**hangs, "marker": str(marker)})
    run = start_run(path, "--Pipeline.shutdown_timeout=0.5")
    try:
        wait_for(marker.exists, 20, "the step to hang")
        os.kill(run.pid, signal.SIGTERM)
    finally:
        result = finish_run(run, 20)
    return result


@pytest.mark.parametrize(("at", "doing", "hold_gil"), [(5, "in run() on message 5", False), (-1, "in init()", False),
                                                     (5, "in run() on message 5", True)])
def test_a_worker_process_stuck_in_a_step_is_named_when_the_run_gives_up_on_it(tmp_path: Path, at: int, doing: str,
                                                                               hold_gil: bool) -> None:
    """Waiting, or in C code that keeps the GIL (faq.md: the run's process is not held; it kills the stuck one)."""
    result = stopped_once_it_hangs(tmp_path, {"class": "Hangs", "nb_process": 1}, at=at, hold_gil=hold_gil)
    assert result.returncode == 143
    assert result.stderr.count("did not drain within shutdown_timeout") == 1
    left = [line for line in result.stderr.splitlines() if line.startswith("still busy, left behind: ")]
    assert len(left) == 1 and left[0].startswith("still busy, left behind: step STAGE worker process 0 (pid ")
    assert left[0].endswith(f") {doing}")
    pid = int(left[0].split("(pid ")[1].split(")")[0])
    wait_for(lambda: not process_alive(pid), 10, "the stuck worker process to be killed with its run")


@pytest.mark.parametrize(("at", "doing"), [(5, "in run() on message 5"), (-1, "in init()")])
def test_a_worker_thread_stuck_in_a_step_is_named_when_the_run_gives_up_on_it(tmp_path: Path, at: int,
                                                                              doing: str) -> None:
    """As cli.md says, in init() too (it said "in its step code")."""
    result = stopped_once_it_hangs(tmp_path, {"class": "Hangs"}, at=at)
    assert result.returncode == 143
    left = [line for line in result.stderr.splitlines() if line.startswith("still busy, left behind: ")]
    assert left == [f"still busy, left behind: step STAGE worker 0 {doing}"], result.stderr


def test_init_failure_in_an_ordered_step_is_a_step_failure(tmp_path: Path) -> None:
    marker = tmp_path / "finished.txt"
    path = config(tmp_path, {"class": "FailingInit", "nb_thread": 2, "ordered": True}, Counter={"count": 10})
    result = pipeline_run(path, env={"FAILURE_TEST_MARKER": str(marker)})
    assert result.returncode == 1
    assert "init(): RuntimeError: cannot open the calibration table" in result.stderr
    assert "internal error" not in result.stderr
    assert written(tmp_path) == [{"finished": True}]


#: A signal that comes once the run has returned, as pipeline-run prints its report and exits (its guard made for a
#: process that ends, as launch_instance's), then Python's own guard for the Python API.
SIGNAL_AS_THE_RUN_ENDS = """
import os, signal
from pipeline.cli.signals import SignalGuard

class Finished:
    def expect_signals(self): pass
    def interrupt(self, signum): pass
    def busy(self): return []

with SignalGuard(Finished(), 10.0):
    pass
print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)
with SignalGuard(Finished(), 10.0, process_ends=True):
    pass
for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
    os.kill(os.getpid(), signum)
print("report printed")
"""


#: pipeline-run, in the same process a signal to itself as the interpreter tears down its modules, once it has exited
#: (sys.exit) with the report's status.
SIGNAL_AS_THE_INTERPRETER_EXITS = """
import os, signal, sys
from pipeline.cli.launch import pipeline_run

class SignalWhenCollected:
    def __del__(self):
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            os.kill(os.getpid(), signum)
        print("signalled", flush=True)

collected = SignalWhenCollected()
pipeline_run()
"""


def test_a_signal_as_the_interpreter_exits_leaves_the_reports_status(tmp_path: Path) -> None:
    """The interpreter's exit gives a signal with a Python handler its default action back: one then (17 runs in 20
    with a signal 0-30 ms after the report) killed the process, 143 or 130 after the report said 0."""
    path = config(tmp_path, {"class": "FailEvery"}, Counter={"count": 3}, FailEvery={"every": 0})
    command = [sys.executable, "-c", SIGNAL_AS_THE_INTERPRETER_EXITS, f"--config={path}", "--no-progress"]
    result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert (result.returncode, result.stdout) == (0, "signalled\n"), result.stderr
    assert result.stderr.endswith("exit status 0\n"), result.stderr


def test_a_signal_as_pipeline_run_ends_leaves_its_report_and_status() -> None:
    """One that came between the run's return and the exit killed the process (SIGTERM: 143, no report) or raised
    KeyboardInterrupt ("interrupted" instead of the report's status); the Python API gets Python's handlers back."""
    result = subprocess.run([sys.executable, "-c", SIGNAL_AS_THE_RUN_ENDS], cwd=REPO, capture_output=True, text=True,
                            timeout=30, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert (result.returncode, result.stdout.splitlines()) == (0, ["True", "report printed"]), result.stderr
