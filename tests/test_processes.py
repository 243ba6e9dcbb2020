"""Worker processes (nb_process) give the sequential runner's results for every feature of the API, and
report what happened in them: errors with their tracebacks, prints, logs, the status of their processes.

Steps run in real worker processes: they leave their traces in files (tests/process_steps.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import types
import uuid
from pathlib import Path
from typing import Any

import pytest
import zmq

from pipeline import Component, ConfigError, Pipeline
from pipeline.config import load_config
from pipeline.config.options import RunOptions
from pipeline.engine import ThreadedRunner
from pipeline.engine.handles import Handles
from pipeline.engine.wire import Answer, Kind, control_frames
from pipeline.engine.worker_process import await_bye
from pipeline.execution.executor import UNORDERED
from pipeline.failures.deadletter import load_messages
from pipeline.message import OUT_OF_BAND_BYTES, encode
from tests.contract_helpers import received
from tests.contract_steps import EVENTS, WAIT_SECONDS
from tests.engine_helpers import chain as engine_chain
from tests.engine_helpers import step as engine_step
from tests.failure_helpers import REPO, report_row, written
from tests.failure_helpers import config as failure_config
from tests.process_helpers import assert_each_output_went_where_it_goes_once, lines, run_to_end, two_next_steps
from tests.semantic_helpers import (
    collector,
    counts,
    multiset,
    numbers,
    pipeline_config,
    read,
    run,
    run_checked_in_each_mode,
    step,
)
from tests.wire_helpers import result_frames

PROCESS_STEPS = "tests.process_steps"
CONTRACT_STEPS = "tests.contract_steps"

pytestmark = pytest.mark.timeout(60)


def features(tmp: Path, count: int = 40) -> dict[str, Any]:
    """Every feature at once, most steps in worker processes: routing by name, a generator, a fan-out, a
    filter, an ordered step with 2 processes, finish() and init() outputs, and a consumer in a process."""
    return pipeline_config(
        step("P", "Numbers", "R,B,O,SUM,A"),
        [
            step("R", "Route", "EVEN,ODD", nb_process=2),
            step("EVEN", "Repeat", "C", nb_process=1),
            step("ODD", "Scale", "C", nb_process=2, config={"factor": 10}),
            step("B", "Scale", "F,C", nb_process=1, config={"factor": 3}),
            step("F", "KeepEven", "C", nb_process=1),
            step("O", "Jitter", "OC", nb_process=2, ordered=True, config={"max_ms": 2}),
            collector(tmp, "OC", "CollectAndReturn"),
            step("SUM", "Summer", "C", nb_process=1, config={"how": "yield"}),
            {**step("A", "Announce", "C", nb_process=1), "module": PROCESS_STEPS},
        ],
        collector(tmp, "C", nb_process=1),
        **numbers(count),
    )


def test_every_feature_gives_the_sequential_results(tmp_path: Path) -> None:
    outcomes = {mode: (multiset(read(tmp_path / mode, "C")), read(tmp_path / mode, "OC"), counts(report))
                for mode, report in run_checked_in_each_mode(tmp_path, features).items()}
    assert outcomes["threads"] == outcomes["sequential"]
    consumed, ordered, _ = outcomes["threads"]
    assert ordered == list(range(40))  # the ordered step kept its input order across its 2 processes
    assert {"init A", "finish A", sum(range(40))} <= {v for v in consumed if not isinstance(v, list)}


@pytest.mark.parametrize("workers", [{}, {"nb_process": 1}], ids=["threads", "processes"])
def test_a_class_the_config_names_otherwise_than_itself_runs_in_every_mode(tmp_path: Path, workers: dict) -> None:
    """A class a function made (its own name "Times") runs as the config names it, "Twice" then "Tripled": a worker
    process imported it by its own name, failed to, and the step lost every worker process."""
    path = failure_config(tmp_path, {"class": "Twice", "module": PROCESS_STEPS, **workers},
                          producer={"name": "COUNT", "module": "algorithms.basic", "class": "Counter",
                                    "next_steps": "STAGE"}, Counter={"count": 5})
    document = json.loads(path.read_text(encoding="utf-8"))
    document["Pipeline"]["stagers_conf"][0]["next_steps"] = "AGAIN"
    document["Pipeline"]["stagers_conf"].append({"name": "AGAIN", "module": PROCESS_STEPS, "class": "Tripled",
                                                 "next_steps": "WRITER", **workers})
    path.write_text(json.dumps(document), encoding="utf-8")
    result = run_to_end(path, timeout=30)
    assert result.returncode == 0, result.stderr
    assert sorted(written(tmp_path)[:-1]) == [6 * n for n in range(5)]


def test_two_threads_in_each_of_two_processes(tmp_path: Path) -> None:
    pids = tmp_path / "workers.txt"
    path = failure_config(tmp_path, {"class": "PassOn", "module": PROCESS_STEPS, "nb_process": 2, "nb_thread": 2},
                          Counter={"count": 50}, PassOn={"pid_file": str(pids)})
    result = run_to_end(path, timeout=10)
    assert result.returncode == 0, result.stderr
    assert sorted(written(tmp_path)[:-1]) == list(range(50))
    workers = {tuple(line.split()) for line in lines(pids)}
    assert len(workers) == 4  # each worker thread has its own instance, init() once
    assert len({pid for pid, _ in workers}) == 2 and str(os.getpid()) not in {pid for pid, _ in workers}


def test_skipped_failures_and_dead_letters_match_the_sequential_run(tmp_path: Path) -> None:
    outcomes = {}
    for mode in ("sequential", "threads"):
        (tmp_path / mode).mkdir()
        dead = tmp_path / mode / "dead.jsonl"
        config = pipeline_config(
            step("P", "Numbers", "S"),
            [{**step("S", "FailEvery", "C", nb_process=2, on_error="skip"), "module": "tests.failure_steps"}],
            collector(tmp_path / mode, "C"),
            **numbers(30), FailEvery={"every": 5},
        )
        report = run(config, mode, {"Pipeline": {"mode": mode, "dead_letter": str(dead)}})
        assert report.exit_status == 1
        assert report.steps["S"].first_error is not None
        assert report.steps["S"].first_error.startswith("ValueError: bad message ")
        outcomes[mode] = (sorted(read(tmp_path / mode, "C")), counts(report), sorted(load_messages(str(dead))))
    assert outcomes["threads"] == outcomes["sequential"]
    assert outcomes["threads"][2] == [("S", n) for n in range(0, 30, 5)]


def test_on_error_stop_starts_no_message_after_the_failure(tmp_path: Path) -> None:
    """As with threads (tests/test_failures.py): the failing step stops, what it held is a dead letter."""
    dead = tmp_path / "dead.jsonl"
    path = failure_config(tmp_path, {"class": "FailEvery", "nb_process": 2}, Counter={"count": 100_000},
                          FailEvery={"every": 50})
    result = run_to_end(path, f"--Pipeline.dead_letter={dead}")
    assert result.returncode == 1
    produced = report_row(result.stderr, "COUNT")[2]
    received, processed, _, failed = report_row(result.stderr, "STAGE")
    assert produced < 100_000
    assert received == produced
    assert 1 <= failed <= 2, result.stderr  # the other process may have been in run(); no more
    records = [json.loads(line) for line in dead.read_text().splitlines()]
    not_run = received - processed - failed
    assert len(records) == failed + not_run
    assert sum(r["error"].startswith("NotRun: not run") for r in records) == not_run
    assert len(written(tmp_path)) - 1 == processed
    assert "stopped: step STAGE failed on message" in result.stderr


@pytest.mark.parametrize("threads", [1, 2])
def test_a_worker_process_whose_message_failed_starts_no_other(tmp_path: Path, threads: int) -> None:
    # One process, every message from the 3,000th fails (by then a worker holds packets of a hundred),
    # on_error=stop: its workers start nothing after the first failure, without waiting for the run's
    # HALT, which comes a round trip later.
    path = failure_config(tmp_path, {"class": "FailFrom", "nb_process": 1, "nb_thread": threads},
                          Counter={"count": 10_000}, FailFrom={"first": 3000})
    result = run_to_end(path)
    assert result.returncode == 1
    failed = report_row(result.stderr, "STAGE")[3]
    assert 1 <= failed <= threads, result.stderr  # another thread may have been in run() already


MYSTEPS = '''
from pipeline import Component
from traitlets import Unicode


class Suffix(Component):
    """Appends a suffix to each message."""

    suffix = Unicode("-file", help="The suffix.").tag(config=True)

    def run(self, msg):
        """Return the message with the suffix."""
        return f"{msg}{self.suffix}"
'''


def test_a_module_beside_the_config_and_command_line_overrides_reach_the_process(tmp_path: Path) -> None:
    (tmp_path / "mysteps.py").write_text(MYSTEPS, encoding="utf-8")
    document = {
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "COUNT", "module": "algorithms.basic", "class": "Counter", "next_steps": "S"},
            "stagers_conf": [{"name": "S", "module": "mysteps", "class": "Suffix", "nb_process": 2,
                              "next_steps": "W"}],
            "consumer_conf": {"name": "W", "module": "algorithms.basic", "class": "JsonLinesWriter", "nb_process": 1},
        },
        "Counter": {"count": 6},
        "Suffix": {"suffix": "-file"},
        "JsonLinesWriter": {"path": "out.jsonl"},
    }
    (tmp_path / "pipeline.json").write_text(json.dumps(document), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the installed command, as a user runs it
    result = subprocess.run([str(Path(sys.executable).parent / "pipeline-run"), "--config=pipeline.json",
                             "--Suffix.suffix=-cli", "--no-progress"], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert sorted(json.loads(line) for line in lines) == [f"{n}-cli" for n in range(6)]


def test_an_error_in_run_arrives_with_its_type_message_and_traceback(tmp_path: Path) -> None:
    path = failure_config(tmp_path, {"class": "FailEvery", "nb_process": 1, "on_error": "skip"},
                          Counter={"count": 12}, FailEvery={"every": 5})
    result = run_to_end(path)
    assert result.returncode == 1
    assert report_row(result.stderr, "STAGE") == [12, 9, 9, 3]
    assert "STAGE: first error: ValueError: bad message 0" in result.stderr
    # the traceback is the worker process's: it shows the step's own line
    assert "Traceback (most recent call last)" in result.stderr
    assert 'failure_steps.py", line' in result.stderr and 'raise ValueError(f"bad message {msg}")' in result.stderr
    assert sorted(written(tmp_path)[:-1]) == [n for n in range(12) if n % 5]


def test_an_init_error_in_a_process_fails_the_run_before_the_producer_starts(tmp_path: Path) -> None:
    path = failure_config(tmp_path, {"class": "FailingInit", "nb_process": 1}, Counter={"count": 5})
    result = run_to_end(path, env={"FAILURE_TEST_MARKER": str(tmp_path / "marker")})
    assert result.returncode == 1
    assert report_row(result.stderr, "COUNT")[2] == 0  # the producer sent nothing
    assert "init(): RuntimeError: cannot open the calibration table" in result.stderr
    assert "Traceback (most recent call last)" in result.stderr and "in init" in result.stderr


def test_a_finish_error_in_a_process_fails_the_run(tmp_path: Path) -> None:
    path = failure_config(tmp_path, {"class": "FailingFinish", "nb_process": 2}, Counter={"count": 5})
    result = run_to_end(path)
    assert result.returncode == 1
    assert "finish(): OSError: disk full while flushing" in result.stderr
    assert sorted(written(tmp_path)[:-1]) == list(range(5))  # every message went through first


def test_print_reaches_stdout_in_whole_lines(tmp_path: Path) -> None:
    """Printer (print(..., flush=True)) in 2 worker processes: every line whole, none mixed with another."""
    document = {
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "COUNT", "module": "algorithms.basic", "class": "Counter",
                              "next_steps": "PRINT"},
            "consumer_conf": {"name": "PRINT", "module": "algorithms.basic", "class": "Printer", "nb_process": 2},
        },
        "Counter": {"count": 2000},
    }
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    result = run_to_end(path)
    assert result.returncode == 0, result.stderr
    assert sorted(result.stdout.splitlines(), key=lambda line: (len(line), line)) == [str(n) for n in range(2000)]


def test_the_log_of_a_worker_process_reaches_stderr_with_the_step_named(tmp_path: Path) -> None:
    path = failure_config(tmp_path, {"class": "Warns", "module": PROCESS_STEPS, "nb_process": 2},
                          Counter={"count": 8}, Warns={"warn_on": 3})
    result = run_to_end(path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "odd message 3 in process" in line]
    assert len(warnings) == 1
    assert "WARNING" in warnings[0] and "STAGE" in warnings[0]


@pytest.mark.parametrize("processes", [0, 2])
@pytest.mark.parametrize("level", ["WARN", "ERROR"])
def test_a_librarys_log_is_formatted_and_follows_the_log_level(tmp_path: Path, processes: int, level: str) -> None:
    """In the run's process too, as in worker processes: a library's warning came bare, whatever --log-level said."""
    path = failure_config(tmp_path, {"class": "Warns", "module": PROCESS_STEPS, "nb_process": processes},
                          Counter={"count": 8}, Warns={"warn_on": 3, "library": "somelib.inner"})
    result = run_to_end(path, f"--log-level={level}")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "odd message 3 in process" in line]
    if level == "ERROR":
        assert warnings == []
    else:
        assert len(warnings) == 1 and re.match(r"\d{4}-\d\d-\d\d \S+ WARNING somelib\.inner", warnings[0]), warnings


def test_a_dead_worker_process_s_files_go_with_it(tmp_path: Path) -> None:
    """Poison messages kill a process each, with no bound on their replacements: each dead process left its spec and
    busy board in the run's private directory until the run's end (thousands over a night)."""
    document = pipeline_config(
        step("P", "Numbers", "S"),
        [{**step("S", "KillsItsProcessOn", "C", nb_process=2, on_error="skip"), "module": PROCESS_STEPS}],
        {**step("C", "CountsSpecFiles"), "module": PROCESS_STEPS, "config": {"path": str(tmp_path / "most")}},
        **numbers(60),
    )
    report = ThreadedRunner(load_config(document), RunOptions(heartbeat_interval=0.2, allow_failures=True)).run()
    assert report["S"].failed == 6 and report["S"].restarts >= 6, report.table()
    assert int((tmp_path / "most").read_text(encoding="utf-8")) <= 3, report.table()  # 2 processes, 1 replacing


def test_the_status_and_the_report_count_processes_redeliveries_and_restarts(tmp_path: Path) -> None:
    document = pipeline_config(
        step("P", "Numbers", "S"),
        [{**step("S", "Trigger", "C", nb_process=2,
                 config={"at": 20, "action": "kill", "marker": str(tmp_path / "killed")}), "module": PROCESS_STEPS}],
        collector(tmp_path, "C"),
        **numbers(60),
    )
    runner = ThreadedRunner(load_config(document), RunOptions(heartbeat_interval=0.2))
    report = runner.run()
    assert report.exit_status == 0, report.table()
    assert sorted(read(tmp_path, "C")) == list(range(60))  # each value once
    status = {s.name: s for s in runner.snapshot().steps}
    assert (status["S"].processes, status["C"].processes) == (2, 0)
    assert status["S"].redelivered == report["S"].redelivered >= 1
    assert status["S"].restarts == report["S"].restarts == 1
    assert {"processes", "redelivered", "restarts"} <= set(status["S"].as_dict())
    redelivered = report["S"].redelivered
    assert f"S: {redelivered} message{'s' * (redelivered > 1)} delivered again, 1 worker process replaced" in (
        report.table())


def test_a_step_module_the_worker_process_cannot_import_is_refused_before_the_run(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture) -> None:
    """A module that lives only in the run's memory (defined in a notebook, or loaded from a file by a plugin
    loader) cannot be imported by a fresh interpreter (``fork_workers`` false; a worker process forked from the
    run has it): each worker process died in turn with a traceback until the step had no workers left. Now the run
    is refused before it starts, in one line naming the step."""

    class Double(Component):
        """Doubles each message."""

        def run(self, msg: int) -> int:
            """Return twice the message."""
            return 2 * msg

    module = types.ModuleType("notebook_steps")
    Double.__module__ = module.__name__
    module.Double = Double  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, module.__name__, module)
    document = pipeline_config(step("P", "Numbers", "S"),
                               [{**step("S", "Double", "C", nb_process=1), "module": module.__name__}],
                               collector(tmp_path, "C"), **numbers(5))
    pipeline = Pipeline.from_config(document, {"Pipeline": {"max_worker_restarts": 1, "heartbeat_interval": 0.2,
                                                            "fork_workers": False}})
    with pytest.raises(ConfigError, match=r"step S: its class Double is defined in module notebook_steps, made in "
                                          r"memory, which worker processes that start afresh cannot import "
                                          r"\(fork_workers is false\)"):
        pipeline.run()
    assert "cannot load" not in capfd.readouterr().err


@pytest.mark.parametrize("routing_id", [None, b"pX", b"p1"], ids=["zeromq-chosen", "malformed", "no-thread"])
def test_a_stranger_on_the_worker_processes_endpoint_changes_nothing(routing_id: bytes | None,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """A socket of this user that connects to a step's ipc endpoint under a routing id that is neither a
    thread of the run's nor a worker process's is ignored: it gets no work, and a RESULT whose buffers
    come by number (as between the run's threads) takes nothing from the run."""
    gate, seen = uuid.uuid4().hex, uuid.uuid4().hex
    pipeline = Pipeline.from_config(engine_chain(
        engine_step("P", "Bursty", ["S"], module=CONTRACT_STEPS, config={"tag": gate}),
        [engine_step("S", "PassThrough", ["C"], module="algorithms.basic", nb_process=1)],
        engine_step("C", "Record", module=CONTRACT_STEPS, config={"tag": seen, "signal_after": 2})))
    reports: list[Any] = []
    running = threading.Thread(target=lambda: reports.append(pipeline.run()))
    running.start()
    context = zmq.Context()
    stranger = context.socket(zmq.DEALER)
    stranger.linger = 0
    try:
        assert EVENTS[seen].wait(WAIT_SECONDS), "the run did not start"
        if routing_id is not None:
            stranger.identity = routing_id
        stranger.connect(pipeline._runner.addresses.outside("S"))
        stranger.send_multipart(control_frames(Kind.JOIN, 2))
        lent = Handles()
        stranger.send_multipart(result_frames([Answer(UNORDERED, [(encode(bytes(OUT_OF_BAND_BYTES)), None)])], lent))
        assert not stranger.poll(500), "the run sent work to a stranger"
    finally:
        EVENTS[gate].set()
        stranger.close()
        context.term()
        running.join(WAIT_SECONDS)
    assert reports and reports[0].exit_status == 0, reports and reports[0].table()
    assert received(seen) == [0, 1, True]
    assert "neither a thread of the run nor a worker process" in caplog.text


# --------------------------------------------------------------------------- the end of a worker process

BYE_CHILD = """
import sys, zmq
from pipeline.engine import sockets
from pipeline.engine.wire import Kind, control_frames
from pipeline.engine.worker_process import await_bye
address, count, timeout = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
context = zmq.Context()
ctl = context.socket(zmq.DEALER)
ctl.linger = 5000
ctl.sndhwm = 1
ctl.identity = b"p0.0"
ctl.connect(address)
for n in range(count):
    sockets.send(ctl, [b"%d" % n, bytes(4096)])
sockets.send(ctl, control_frames(Kind.FINISHED))
print("sent", flush=True)
print("bye", await_bye(ctl, timeout), flush=True)
ctl.close()
context.term()
"""


@pytest.mark.parametrize("says_bye", [True, False])
def test_a_worker_process_ends_only_once_its_router_read_its_finished(tmp_path: Path, says_bye: bool) -> None:
    """The router reads little at a time (a producer's holds one message per worker): the worker process, all
    sent, waits for BYE before it ends, since libzmq drops what a router had not read of a peer that left; without
    a BYE it ends after its timeout. ROUTER and DEALER as the engine's, over ipc as between processes."""
    context = zmq.Context()
    router = context.socket(zmq.ROUTER)
    router.linger = 0
    router.rcvhwm = 1
    address = f"ipc://{tmp_path}/work"
    router.bind(address)
    child = subprocess.Popen([sys.executable, "-c", BYE_CHILD, address, "50", "30" if says_bye else "0.2"],
                             stdout=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
    try:
        got = []
        while router.poll(10_000):  # one at a time: the child's sends wait for the router to read
            frames = router.recv_multipart()
            got.append(frames[1])
            if frames[1] == control_frames(Kind.FINISHED)[0]:
                break
        assert got == [b"%d" % n for n in range(50)] + control_frames(Kind.FINISHED)
        assert child.stdout is not None
        assert child.stdout.readline() == "sent\n"
        if says_bye:
            assert child.poll() is None  # all sent and read, it still waits for the router to say so
            router.send_multipart([b"p0.0", *control_frames(Kind.BYE)])
        assert child.stdout.readline() == f"bye {says_bye}\n"
        assert child.wait(10) == 0
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()
        router.close()
        context.term()


def test_a_worker_waiting_for_bye_stops_when_its_process_is_stopped_at_once() -> None:
    context = zmq.Context()
    ctl = context.socket(zmq.DEALER)
    ctl.linger = 0
    ctl.connect("inproc://nobody")
    said: list[bool] = []

    def wait() -> None:
        said.append(await_bye(ctl, 60))
        ctl.close()

    waiting = threading.Thread(target=wait)
    waiting.start()
    context.term()  # returns once the thread, out of its wait, closed its socket
    waiting.join(10)
    assert said == [False]


def test_a_step_with_two_next_steps_sends_each_output_where_it_goes_once(tmp_path: Path) -> None:
    """Most RESULTs of its worker processes go on as they came (outputs to every next step, no buffers), the others
    are taken apart (an output to one step, an array): mixed in the router's reads, each next step gets what it
    should, once, and the counts add up."""
    count = 4000
    config = two_next_steps(tmp_path, count, {"nb_process": 2})
    report = Pipeline.from_config(config, {"Pipeline": {"gui": False, "progress": False}}).run()
    assert report.exit_status == 0
    assert_each_output_went_where_it_goes_once(tmp_path, count, report["R"].emitted,
                                               report["A"].received + report["B"].received)


@pytest.mark.parametrize("fork_workers", ["True", "False"])
def test_worker_processes_run_with_the_interpreters_flags(tmp_path: Path, fork_workers: str) -> None:
    """Under python -O a step's asserts do not run: worker processes started afresh ran without -O, and failed the
    messages that the same run's threads, or processes forked from it, passed."""
    path = failure_config(tmp_path, {"class": "AssertsBelow", "nb_process": 2, "on_error": "skip"},
                                  Counter={"count": 10})
    result = subprocess.run([sys.executable, "-O", "-m", "pipeline", f"--config={path}", "--no-progress",
                             f"--Pipeline.fork_workers={fork_workers}"], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True,
                            text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert report_row(result.stderr, "STAGE") == [10, 10, 10, 0]


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "spawned"])
def test_a_run_whose_process_ignores_sigchld_ends_and_replaces_a_killed_worker(tmp_path: Path, fork: bool) -> None:
    """The kernel reaps the children of a process that ignores SIGCHLD (``signal(SIGCHLD, SIG_IGN)``, which an exec
    keeps): its forked zygote's end was polled for ever, and run() never returned."""
    out = tmp_path / "out.jsonl"
    config = {"Pipeline": {"producer_conf": {"name": "P", "module": "algorithms.basic", "class": "Counter",
                                             "next_steps": "S"},
                           "stagers_conf": [{"name": "S", "module": "tests.process_steps", "class": "FailsThenDies",
                                             "nb_process": 2, "next_steps": "W"}],
                           "consumer_conf": {"name": "W", "module": "algorithms.basic", "class": "JsonLinesWriter"},
                           "fork_workers": fork},
              "Counter": {"count": 50}, "FailsThenDies": {"fails": 1000, "dies": 7, "marker": str(tmp_path / "died")},
              "JsonLinesWriter": {"path": str(out)}}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(config), encoding="utf-8")
    ignoring = ("import signal, sys; signal.signal(signal.SIGCHLD, signal.SIG_IGN); "
                "from pipeline.cli.run import main; main(sys.argv[1:])")
    done = subprocess.run([sys.executable, "-c", ignoring, f"--config={path}", "--no-progress"], capture_output=True,
                          text=True, timeout=60, cwd=REPO, check=False)
    assert done.returncode == 0, done.stderr
    assert sorted(json.loads(line) for line in lines(out)) == list(range(50))
    assert (tmp_path / "died").exists() and "1 worker process replaced" in done.stderr, done.stderr
