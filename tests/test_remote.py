"""Remote workers (issue 14, docs/cluster.md) on loopback: ``pipeline-run --Pipeline.listen=...`` and
``pipeline-worker`` as real processes, keys made with pipeline.auth.keys, marker files to synchronise.

A worker joins a running step beside a local one and every value arrives once; refused keys get
nothing and leave; kill -9 of a remote worker loses nothing; bad settings are one line and exit 2;
a worker leaves when its run is gone. What hostile peers try is in test_remote_hostile.py.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from pipeline import Pipeline
from pipeline.auth.curve import HANDSHAKE_SECONDS, CurveServer, ServerKeys
from pipeline.auth.keys import authorized_keys, load_key_pair, load_public_key
from pipeline.config.options import RunOptions
from pipeline.engine import sockets
from pipeline.engine.control import WORKERS_JOINED, RunControl
from pipeline.engine.door import MAX_THREADS_PER_KEY, Door
from pipeline.engine.remote_agent import RUN_GONE
from pipeline.engine.wire import (
    HEADER,
    WIRE_VERSION,
    Answer,
    Kind,
    Loss,
    control_frames,
    packet_from_frames,
    parse_lost,
    ping_frames,
    spec_frames,
)
from pipeline.execution.executor import Outcome
from pipeline.failures.deadletter import load_messages
from pipeline.message import encode
from tests.cli_helpers import ROOT, run_cli, write_config
from tests.engine_helpers import chain
from tests.engine_helpers import step as engine_step
from tests.failure_helpers import report_row
from tests.process_helpers import assert_each_output_went_where_it_goes_once, two_next_steps
from tests.remote_helpers import (
    BIN,
    PROCESS_SECONDS,
    PRODUCER,
    STAGE,
    STRANGER,
    Keys,
    Launcher,
    Proc,
    duplicates,
    lines,
    servers,
    wait_during,
)
from tests.remote_peers import WINDOW, Intruder
from tests.remote_steps import WAIT_SECONDS, marker_pids, markers, parent_of
from tests.wire_helpers import result_frames

# The tests of this file take more than 10 s in all: `pytest -m "not slow"` leaves them out.
pytestmark = pytest.mark.slow

#: How many values each run sends (Launcher.chain's default).
COUNT = 20
#: What the issue allows a refused worker before it says so.
REFUSED_WITHIN_SECONDS = 30.0


def assert_every_value_once(launch: Launcher, run: Proc) -> list[dict[str, int]]:
    """The run wrote each value once; its outputs."""
    outputs = launch.outputs()
    assert not duplicates(outputs), (duplicates(outputs), run.stderr)
    assert sorted(row["value"] for row in outputs) == list(range(COUNT)), run.stderr
    return outputs


def wait_for_local_worker(launch: Launcher, run: Proc) -> None:
    """Until the run's own worker has started a message: the run is going."""
    wait_during(run, lambda: run.pid in marker_pids(launch.gate, "ran"), "the run's own worker to start a message")


# --------------------------------------------------------------------------- a step's code that fails


@pytest.mark.parametrize(("fail_in", "said"), [
    ("init", "init(): RuntimeError: told to fail in init()"),
    ("init-false", "init(): StepFailed: init() returned False: the step could not start"),
    ("finish", "finish(): RuntimeError: told to fail in finish()"),
    ("run", "RuntimeError: told to fail in run()"),
    ("init-name", "init(): FileNotFoundError: missing input file caf\\udce9.txt"),
    ("run-name", "FileNotFoundError: missing input file caf\\udce9.txt"),
    ("run-allowed", None),
])
def test_a_worker_whose_step_fails_exits_1_saying_why(launch: Launcher, fail_in: str, said: str | None) -> None:
    """cluster.md: exit status 1 when a step's code failed (it was 0, silent: a SLURM job that failed looked
    COMPLETED); a failed message with allow_failures fails neither the run nor the worker. Before the step's first
    worker has run init(), its producer waits: one whose init() fails leaves nothing sent (it sent every value,
    and the run called their loss an internal error)."""
    config = launch.chain(nb_thread=0)
    config["Tagged"]["fail_in"] = fail_in.removesuffix("-allowed")
    options = []
    if said is None:
        config["Pipeline"]["stagers_conf"][0]["on_error"] = "skip"
        options = ["--Pipeline.allow_failures=True"]
    run = launch.run(config, *options)
    worker = launch.worker()
    status, run_status = worker.wait(), run.wait()
    if said is None:
        assert (status, run_status, lines(worker.stderr)) == (0, 0, []), run.stderr
        return
    assert (status, run_status) == (1, 1), (worker.stderr, run.stderr)
    [line] = lines(worker.stderr)
    assert line.startswith("pipeline-worker: worker process ") and line.endswith(
        f"its step's code failed: step {STAGE}: {said}"), line
    if fail_in.startswith("init"):
        assert report_row(run.stderr, PRODUCER)[:2] == [0, 0], run.stderr
        assert "internal error" not in run.stderr and "never processed" not in run.stderr


def test_a_remote_worker_whose_step_drops_its_arguments_exits_1_saying_what_to_pass(launch: Launcher) -> None:
    """A constructor that does not pass the step's arguments on to Component's fails the remote worker's init(), as
    in the run's own workers: it ran with its class's defaults, the config ignored."""
    config = launch.chain(nb_thread=0)
    config["Pipeline"]["stagers_conf"][0]["class"] = "TaggedDroppingItsArguments"
    run = launch.run(config)
    worker = launch.worker()
    assert (worker.wait(), run.wait()) == (1, 1), (worker.stderr, run.stderr)
    [line] = lines(worker.stderr)
    assert line.endswith(f"its step's code failed: step {STAGE}: init(): TypeError: TaggedDroppingItsArguments."
                         "__init__() did not pass config, step_name, next_steps on to Component.__init__(): pass "
                         "**kwargs to super().__init__()"), line


def test_a_worker_process_past_its_keys_threads_is_refused_and_those_taken_serve_on(launch: Launcher) -> None:
    """cluster.md: a worker process whose threads would pass what one key may hold is refused, the run goes on with
    those it has, and the refused pipeline-worker exits 2. The refusal of its last process ended those taken (the run,
    which held its messages for them, took them for dead and failed: no worker left)."""
    threads = MAX_THREADS_PER_KEY // 2 - 56  # 200: two are taken (400), a third would pass 512
    run = launch.run(launch.chain(nb_thread=0))
    worker = launch.worker(f"--threads={threads}", "--processes=3")
    assert (worker.wait(), run.wait()) == (2, 0), (worker.stderr, run.stderr)
    [line] = lines(worker.stderr)
    assert line == (f"pipeline-worker: error: the run refused: key node7 holds {2 * threads} remote worker threads, "
                    f"and one key may hold at most {MAX_THREADS_PER_KEY} (asked for {threads} more; give each host "
                    "its own key); the 2 worker processes it took serve on")
    outputs = launch.outputs()
    assert sorted(row["value"] for row in outputs) == list(range(20)) and not duplicates(outputs)


def test_a_system_exit_in_a_remote_workers_run_is_a_dead_letter_and_fails_both(launch: Launcher) -> None:
    """A sys.exit in run() on a remote worker fails its message as an Exception does (the run's dead letter, counted
    in its summary) and fails the step: the run and the worker exit 1 even with allow_failures. Its message was
    lost: only the step's failure was sent."""
    config = launch.chain(nb_thread=0)
    config["Tagged"]["fail_in"] = "run-exit"
    config["Pipeline"]["stagers_conf"][0]["on_error"] = "skip"
    dead = launch.directory / "dead.jsonl"
    run = launch.run(config, f"--Pipeline.dead_letter={dead}", "--Pipeline.allow_failures=True")
    worker = launch.worker()
    status, run_status = worker.wait(), run.wait()
    assert (status, run_status) == (1, 1), (worker.stderr, run.stderr)
    assert (STAGE, 3) in load_messages(str(dead)), run.stderr
    assert f"failed messages: {STAGE} 1 SystemExit" in run.stderr
    assert f"stopped: step {STAGE} raised SystemExit: told to exit in run() in run()" in run.stderr
    [line] = lines(worker.stderr)
    assert line.endswith(f"its step's code failed: step {STAGE}: run(): SystemExit: told to exit in run()"), line


def test_a_failed_init_of_the_runs_own_stops_it_without_waiting_for_remote_workers(launch: Launcher) -> None:
    """The wait for a remote-only step's first worker comes after the run's own init()s: one that failed stops the
    run at once (it waited worker_timeout, then said the remote step had no workers too)."""
    config = launch.chain(nb_thread=0)
    config["Pipeline"]["producer_conf"]["next_steps"] = "BAD"
    config["Pipeline"]["stagers_conf"].insert(0, {"name": "BAD", "module": "tests.remote_steps", "class": "Tagged",
                                                  "next_steps": STAGE, "config": {"fail_in": "init"}})
    run = launch.run(config, "--Pipeline.worker_timeout=600")
    assert run.wait() == 1, run.stderr  # within PROCESS_SECONDS, far below worker_timeout
    assert "BAD: first error: init(): RuntimeError: told to fail in init()" in run.stderr
    assert "has no workers left" not in run.stderr
    assert report_row(run.stderr, PRODUCER)[:2] == [0, 0]


def test_a_signal_ends_the_wait_for_a_remote_only_steps_first_worker(launch: Launcher) -> None:
    """SIGTERM while no remote worker has joined: the run ends at once, nothing sent (it sat out shutdown_timeout and
    said the run did not drain)."""
    run = launch.run(launch.chain(nb_thread=0), "--Pipeline.worker_timeout=600", "--Pipeline.shutdown_timeout=600")

    def listening() -> bool:
        with contextlib.suppress(OSError), socket.create_connection((launch.host, launch.port), timeout=1):
            return True
        return False

    wait_during(run, listening, "the run to listen")
    run.popen.send_signal(signal.SIGTERM)
    assert run.wait() == 143, run.stderr  # within PROCESS_SECONDS, far below both timeouts
    assert report_row(run.stderr, PRODUCER)[:2] == [0, 0]
    assert "did not drain" not in run.stderr


def test_a_signal_drain_waits_for_no_remote_worker_in_place_of_a_lost_one(launch: Launcher) -> None:
    """SIGINT once the only remote worker was lost while its step still held messages: no remote worker joins a
    stopping run, so the step gives them up at once and the summary says it has no workers left. It waited for
    worker_timeout, until shutdown_timeout stopped the run by force (and its summary did not say why)."""
    run = launch.run(launch.chain(nb_thread=0), "--Pipeline.worker_timeout=600", "--Pipeline.shutdown_timeout=600")
    worker = launch.worker(role="remote-blocking")
    wait_during(run, lambda: marker_pids(launch.gate, "busy"), "the remote worker to be in a message")
    worker.popen.send_signal(signal.SIGKILL)  # its worker processes end with it
    assert worker.wait() == -signal.SIGKILL
    wait_during(run, lambda: "remote worker node7" in run.stderr, "the run to take the worker for lost")
    run.popen.send_signal(signal.SIGINT)
    assert run.wait() == 130, run.stderr  # within PROCESS_SECONDS, far below both timeouts
    assert f"step {STAGE} has no workers left" in run.stderr
    assert "the run is stopping: none joins it" in run.stderr
    assert "did not drain" not in run.stderr


def test_a_step_of_remote_workers_only_that_none_joins_sends_nothing(launch: Launcher) -> None:
    """Its producer waits for the first remote worker, up to worker_timeout: then the step fails, nothing sent."""
    run = launch.run(launch.chain(nb_thread=0), "--Pipeline.worker_timeout=1")
    assert run.wait() == 1
    assert report_row(run.stderr, PRODUCER)[:2] == [0, 0], run.stderr
    assert f"stopped: step {STAGE} has no workers left: no worker joined within worker_timeout=1 s" in run.stderr


# --------------------------------------------------------------------------- joining


@pytest.mark.parametrize(("options", "processes", "threads"), [
    pytest.param((), 1, 1, id="one-thread"),
    pytest.param(("--threads=2",), 1, 2, id="threads-2"),
    pytest.param(("--processes=2",), 2, 1, id="processes-2"),
])
def test_a_remote_worker_joins_a_running_step(launch: Launcher, options: tuple[str, ...], processes: int,
                                              threads: int) -> None:
    # Each worker's first message waits until every worker has started one: the local one waits
    # for the remote ones, which join while it does.
    run = launch.run(launch.chain(nb_thread=1, workers=1 + processes * threads))
    wait_for_local_worker(launch, run)
    worker = launch.worker(*options)
    assert run.wait() == 0, run.stderr
    assert worker.wait() == 0, worker.stderr
    outputs = assert_every_value_once(launch, run)
    remote = marker_pids(launch.gate, "init") - {run.pid}
    assert len(remote) == processes, remote
    assert len(markers(launch.gate, "init")) == 1 + processes * threads
    assert worker.pid not in remote  # pipeline-worker keeps its worker processes; it runs no step itself
    assert {row["pid"] for row in outputs} == {run.pid, *remote}


def test_a_remote_worker_of_many_threads_ends_a_run_well(launch: Launcher) -> None:
    """256 threads in one remote worker process, the step's only workers, all idle at the end: each thread's last
    message (FINISHED) comes on a connection of its own and may follow the process's LEFT; the door still relays it
    (it dropped them, and the run failed: "a worker process died before its finish() ended", in 3 of 6 runs of a
    slower pipeline; this one seldom meets that timing, and checks that the door's grace ends the run well)."""
    run = launch.run(launch.chain(nb_thread=0, hold=True))
    worker = launch.worker("--threads=256")
    wait_during(run, lambda: len(markers(launch.gate, "init")) == 256, "every thread of the worker to start")
    launch.hold.touch()  # all 256 threads idle by the end: they finish at once
    assert run.wait() == 0, run.stderr
    assert worker.wait() == 0, worker.stderr
    assert_every_value_once(launch, run)
    assert "no slot of that key" not in run.stderr


@pytest.mark.parametrize("refused", ["unknown-key", "wrong-server-key"])
def test_a_refused_worker_gets_nothing_and_says_why(launch: Launcher, refused: str) -> None:
    # The producer holds half-way until the worker has left (longer than the issue's 30 s).
    run = launch.run(launch.chain(nb_thread=1, hold=True), "--Numbers.hold_seconds=45")
    wait_for_local_worker(launch, run)
    if refused == "unknown-key":
        worker = launch.worker(key=STRANGER)
    else:  # the run's key is another one than the worker was told
        worker = launch.worker(server_key=launch.keys.public("intruder"))
    started = time.monotonic()
    status = worker.wait(REFUSED_WITHIN_SECONDS + 10)
    took = time.monotonic() - started
    launch.hold.touch()
    assert run.wait() == 0, run.stderr
    outputs = assert_every_value_once(launch, run)
    assert {row["pid"] for row in outputs} == {run.pid}
    assert marker_pids(launch.gate, "init") == {run.pid}  # it never got the step
    assert status != 0
    assert len(lines(worker.stderr)) == 1, worker.stderr
    assert "authentication failed" in worker.stderr
    assert took < REFUSED_WITHIN_SECONDS
    # The run says whom it refused (issue 26.10), at most a few lines however often the worker tries.
    if refused == "unknown-key":
        stranger = load_public_key(launch.keys.public(STRANGER)).public.decode()
        said = f"refused a connection whose key is not in authorized_keys (its public key: {stranger})"
    else:
        said = "failed its CURVE handshake (a peer without CURVE, or one given another --server-key than this run's)"
    assert 1 <= len([line for line in lines(run.stderr) if said in line]) <= 4, run.stderr


def test_a_remote_worker_of_a_step_with_two_next_steps_sends_each_output_where_it_goes_once(launch: Launcher) -> None:
    """A remote worker's RESULTs go through its step's router as a local worker process's do: most on as they came
    (each output to every next step, no buffers), the others taken apart (an output to one step, an array): mixed in
    the router's reads, each next step gets what it should, once, and the report's counts add up."""
    count = 2000
    run = launch.run(two_next_steps(launch.directory, count, {"nb_thread": 0}))
    worker = launch.worker("--processes=2", step="R")
    assert run.wait() == 0, run.stderr
    assert worker.wait() == 0, worker.stderr
    assert_each_output_went_where_it_goes_once(launch.directory, count, report_row(run.stderr, "R")[2],
                                               report_row(run.stderr, "A")[0] + report_row(run.stderr, "B")[0])


# --------------------------------------------------------------------------- death


def test_kill_9_of_a_remote_worker_loses_nothing(launch: Launcher) -> None:
    run = launch.run(launch.chain(nb_thread=1, workers=2))
    worker = launch.worker(role="remote-blocking")
    wait_during(run, lambda: marker_pids(launch.gate, "busy"), "the remote worker to be in a message")
    worker.popen.send_signal(signal.SIGKILL)
    assert worker.wait() == -signal.SIGKILL
    assert run.wait() == 0, run.stderr
    outputs = assert_every_value_once(launch, run)
    assert {row["pid"] for row in outputs} == {run.pid}  # the local worker did what the dead one held
    assert "remote worker node7" in run.stderr  # said when it was taken for dead
    assert "delivered again" in run.stderr


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_a_remote_worker_told_to_end_tells_its_run_at_once(launch: Launcher, signum: int) -> None:
    """scancel's SIGTERM, and SIGHUP when the worker's terminal closes (it left without a word: the run waited for
    its missed heartbeats)."""
    run = launch.run(launch.chain(nb_thread=1, workers=2))
    worker = launch.worker(role="remote-blocking")
    wait_during(run, lambda: marker_pids(launch.gate, "busy"), "the remote worker to be in a message")
    worker.popen.send_signal(signum)
    assert worker.wait() == 128 + signum, worker.stderr
    assert run.wait() == 0, run.stderr
    assert_every_value_once(launch, run)
    assert "sent no heartbeat" not in run.stderr


def test_a_remote_worker_told_to_end_while_it_starts_its_worker_process_tells_its_run_at_once(
        launch: Launcher) -> None:
    """SIGTERM while pipeline-worker started its first worker process (its zygote still importing): the run had given
    that process its slot, but heard nothing of it, and waited for its missed heartbeats."""
    run = launch.run(launch.chain(nb_thread=1, hold=True))  # the run goes on until the test has seen what it said
    held = launch.directory / "zygote-go"
    worker = launch.worker("--processes=2", env=slowed_zygote(HELD_ZYGOTE=str(held)))
    wait_during(worker, Path(f"{held}.waiting").exists, "pipeline-worker to start its first worker process")
    worker.popen.send_signal(signal.SIGTERM)
    assert worker.wait() == 128 + signal.SIGTERM, worker.stderr
    wait_during(run, lambda: "left on SIGTERM" in run.stderr or "sent no heartbeat" in run.stderr,
                "the run to hear that the worker left, or to miss its heartbeats")
    assert re.search(r"remote worker node7 \(.*\): its worker process \d+ left: pipeline-worker left on SIGTERM",
                     run.stderr), run.stderr
    assert "sent no heartbeat" not in run.stderr
    launch.hold.touch()
    assert run.wait() == 0, run.stderr
    assert_every_value_once(launch, run)


def slowed_zygote(**variables: str) -> dict[str, str]:
    """The environment of a pipeline-worker whose zygote starts slowly: ``variables`` say how (tests/held_zygote)."""
    return {**os.environ, **variables,
            "PYTHONPATH": os.pathsep.join([str(ROOT / "tests" / "held_zygote"), os.environ.get("PYTHONPATH", "")])}


def test_a_remote_worker_whose_processes_start_slowly_is_not_taken_for_dead(launch: Launcher) -> None:
    """Its zygote takes 2.5 s to start, longer than the run waits for heartbeats (5 x 0.2 s): pipeline-worker sent
    none while it waited for the zygote (nor for its first process while it asked for the second), and the run took
    the healthy worker for dead. A slot has heartbeats from the moment it is held: worker_timeout bounds a start."""
    run = launch.run(launch.chain(nb_thread=0))
    worker = launch.worker("--processes=2", env=slowed_zygote(SLOW_ZYGOTE="2.5"))
    assert worker.wait() == 0, worker.stderr
    assert run.wait() == 0, run.stderr
    assert "sent no heartbeat" not in run.stderr
    assert lines(worker.stderr) == [], worker.stderr  # nor did the zygote's fork go unanswered
    assert len(markers(launch.gate, "init")) == 2
    assert_every_value_once(launch, run)


def test_a_remote_worker_whose_zygote_is_stuck_serves_from_scratch_each_of_its_lines_named(launch: Launcher) -> None:
    """Its zygote stopped as it starts: the fork is given up on after FORK_SECONDS (3 s), while the heartbeats go on,
    and the worker process starts from scratch. The keeper's warning came bare, through logging's last resort, without
    the name that starts each other line of pipeline-worker."""
    run = launch.run(launch.chain(nb_thread=0))
    held = launch.directory / "zygote-go"
    worker = launch.worker(env=slowed_zygote(HELD_ZYGOTE=str(held)))
    waiting = Path(f"{held}.waiting")
    wait_during(worker, lambda: waiting.exists() and waiting.read_text(), "pipeline-worker's zygote to start")
    os.kill(int(waiting.read_text()), signal.SIGSTOP)
    assert worker.wait() == 0, worker.stderr
    assert run.wait() == 0, run.stderr
    assert "sent no heartbeat" not in run.stderr
    said = lines(worker.stderr)
    assert len(said) == 1 and "did not answer a fork within 3." in said[0], worker.stderr
    assert said[0].startswith("pipeline-worker: WARNING pipeline.engine: the zygote (pid "), worker.stderr
    assert_every_value_once(launch, run)


def test_a_remote_worker_that_joins_once_its_step_has_ended_exits_0_in_one_line(launch: Launcher) -> None:
    """A job of workers that starts just after its step drained (more jobs are submitted while a run goes on) was
    refused with exit status 2, a FAILED job: it has nothing to do, which is no error."""
    gate = launch.sink_gate
    run = launch.run(launch.gated_chain(1))
    wait_during(run, Path(f"{gate}.waiting").exists, "the steps before the consumer to end")
    worker = launch.worker()
    assert worker.wait() == 0, worker.stderr
    assert lines(worker.stderr) == [f"pipeline-worker: nothing to join: step {STAGE} has no more work: the run is "
                                    "ending"], worker.stderr
    gate.touch()
    assert run.wait() == 0, run.stderr


def test_a_run_killed_while_its_remote_worker_asks_for_a_second_process_is_left_within_the_heartbeats(
        launch: Launcher) -> None:
    """kill -9 of the run while pipeline-worker --processes=2 started its first worker process: its HELLO for the
    second went unanswered for 30 s, then it said that nothing accepted a connection there and that the process it
    took served on. The run that answered once is gone when silent as long as its heartbeats may be."""
    run = launch.run(launch.chain(nb_thread=0, hold=True))
    held = launch.directory / "zygote-go"
    worker = launch.worker("--processes=2", env=slowed_zygote(HELD_ZYGOTE=str(held)))
    wait_during(worker, Path(f"{held}.waiting").exists, "pipeline-worker to start its first worker process")
    run.popen.kill()
    run.wait()
    held.touch()  # the first process starts; the HELLO for the second reaches no run
    assert worker.wait() == RUN_GONE, worker.stderr
    said = lines(worker.stderr)
    assert said[-1].startswith("pipeline-worker: the run is gone ("), worker.stderr
    assert "nothing accepted a connection" not in worker.stderr and "serve on" not in worker.stderr


def test_a_remote_worker_told_to_end_while_the_run_gives_it_a_slot_tells_the_run_of_that_slot(
        launch: Launcher) -> None:
    """SIGTERM after the run got the worker's HELLO, before its SPEC came: the run gave a slot that it never heard of
    again, and waited for its missed heartbeats. The worker waits for the answer, and tells of its slot at once."""
    with run_door(launch) as door:
        worker = launch.worker(name="asking")
        keeper = hello_at(door)
        worker.popen.send_signal(signal.SIGTERM)
        door.send_multipart([keeper, *spec_frames(7, b"never unpickled: the worker leaves", b"token")])
        assert worker.wait() == 128 + signal.SIGTERM, worker.stderr
        assert lines(worker.stderr) == ["pipeline-worker: SIGTERM: leaving; the run gives this worker's messages to "
                                        "others"]
        assert left_at(door) == Loss(7, "pipeline-worker left on SIGTERM", [])


def test_kill_9_of_a_remote_workers_process_fails_that_worker_in_one_line(launch: Launcher) -> None:
    run = launch.run(launch.chain(nb_thread=1, workers=2))
    worker = launch.worker(role="remote-blocking")
    wait_during(run, lambda: marker_pids(launch.gate, "busy"), "the remote worker's process to be in a message")
    [child] = marker_pids(launch.gate, "busy") - {run.pid}
    os.kill(child, signal.SIGKILL)
    assert worker.wait() == 1, worker.stderr
    said = lines(worker.stderr)
    assert len(said) == 1, worker.stderr
    assert re.search(rf"step {STAGE}: worker process \d+ \(pid {child}\) killed by signal SIGKILL", said[0]), said[0]
    assert run.wait() == 0, run.stderr
    assert_every_value_once(launch, run)


def test_a_worker_process_that_exits_with_a_status_of_its_own_fails_its_worker_in_one_line(launch: Launcher) -> None:
    """The step's code's os._exit(3) was passed on as pipeline-worker's status, without a word: 3 says the run is
    gone, and 9 is no status the docs give."""
    run = launch.run(launch.chain(nb_thread=1, workers=2))
    worker = launch.worker(role="remote-exit-3")
    assert worker.wait() == 1, worker.stderr
    said = lines(worker.stderr)
    assert len(said) == 1, worker.stderr
    ended = rf"pipeline-worker: step {STAGE}: worker process \d+ \(pid \d+\) ended: exit code 3"
    assert re.fullmatch(ended, said[0]), said[0]
    assert run.wait() == 0, run.stderr
    assert_every_value_once(launch, run)


def _tree(pid: int) -> list[int]:
    """``pid`` and every process below it."""
    children = [int(child) for task in Path(f"/proc/{pid}/task").iterdir()
                for child in (task / "children").read_text().split()]
    return [pid, *(grandchild for child in children for grandchild in _tree(child))]


@pytest.mark.parametrize("first", ["keeper", "processes"])
def test_a_worker_whose_host_stopped_for_a_while_is_taken_for_dead_not_told_the_run_is_gone(
        launch: Launcher, first: str) -> None:
    """Its host stopped (SIGSTOP of the whole tree) past the heartbeats' patience, then resumed: pipeline-worker
    counted its own stop as the run's silence ("the run is gone", exit 3, while the run went on), and took its
    processes, still stopped as it resumed first, for stopped themselves."""
    run = launch.run(launch.chain(nb_thread=1, workers=2, hold=True))  # the run goes on until the worker has ended
    worker = launch.worker(role="remote-blocking")
    wait_during(run, lambda: marker_pids(launch.gate, "busy"), "the remote worker to be in a message")
    tree = _tree(worker.pid)
    for pid in tree:
        os.kill(pid, signal.SIGSTOP)
    wait_during(run, lambda: "remote worker node7" in run.stderr, "the run to take the stopped worker for dead")
    for pid in tree if first == "keeper" else reversed(tree):
        os.kill(pid, signal.SIGCONT)
    assert worker.wait() == 1, worker.stderr
    assert "the run took worker process" in worker.stderr and "the run is gone" not in worker.stderr, worker.stderr
    launch.hold.touch()
    assert run.wait() == 0, run.stderr
    assert_every_value_once(launch, run)


def test_two_signals_at_once_leave_once(launch: Launcher) -> None:
    """The second came while the worker left (GNU timeout sends its TERM twice): a traceback, and exit 1."""
    run = launch.run(launch.chain(nb_thread=1, workers=2))
    worker = launch.worker(role="remote-blocking")
    wait_during(run, lambda: marker_pids(launch.gate, "busy"), "the remote worker to be in a message")
    worker.popen.send_signal(signal.SIGTERM)
    worker.popen.send_signal(signal.SIGINT)
    assert worker.wait() in (128 + signal.SIGTERM, 128 + signal.SIGINT), worker.stderr
    assert "Traceback" not in worker.stderr
    assert len([line for line in lines(worker.stderr) if ": leaving; " in line]) == 1, worker.stderr
    assert run.wait() == 0, run.stderr
    assert_every_value_once(launch, run)


def test_a_run_that_gives_up_names_the_remote_workers_it_leaves_behind(launch: Launcher) -> None:
    """cli.md: busy workers left behind are named in the report, a worker process with its pid: remote ones too (none
    was named)."""
    run = launch.run(launch.chain(nb_thread=0), "--Pipeline.shutdown_timeout=1")
    launch.worker(role="remote-blocking")
    wait_during(run, lambda: marker_pids(launch.gate, "busy"), "the remote worker to be in a message")
    run.popen.send_signal(signal.SIGTERM)
    assert run.wait() == 143, run.stderr
    left = [line for line in lines(run.stderr) if line.startswith("still busy, left behind: ")]
    assert len(left) == 1, run.stderr
    assert re.fullmatch(rf"still busy, left behind: step {STAGE} remote worker process \d+ \(pid \d+ at 127\.0\.0\.1\) "
                        r"in run\(\) on message 0", left[0]), left[0]


def test_a_run_that_gives_up_names_each_remote_worker_process_by_its_own_pid(launch: Launcher) -> None:
    """cli.md: `worker process N (pid P)`. Two worker processes of one pipeline-worker were both named with the
    pid of that pipeline-worker (the HELLO's), not their own, which `ps` shows them under."""
    run = launch.run(launch.chain(nb_thread=0), "--Pipeline.shutdown_timeout=1")
    worker = launch.worker("--processes=2", role="remote-blocking")
    busy = wait_during(run, lambda: len(found := marker_pids(launch.gate, "busy")) == 2 and found,
                       "both remote worker processes to be in a message")
    run.popen.send_signal(signal.SIGTERM)
    assert run.wait() == 143, run.stderr
    left = [line for line in lines(run.stderr) if line.startswith("still busy, left behind: ")]
    named = {int(pid) for line in left for pid in re.findall(r"remote worker process \d+ \(pid (\d+) at ", line)}
    assert len(left) == 2 and named == busy and worker.pid not in named, (busy, worker.pid, run.stderr)


def test_a_run_that_gives_up_names_a_remote_worker_process_in_init_by_its_pipeline_workers_pid(
        launch: Launcher) -> None:
    """Before its threads join, the run knows only its pipeline-worker's pid (the HELLO's): the line says whose."""
    run = launch.run(launch.chain(nb_thread=0), "--Pipeline.shutdown_timeout=1")
    worker = launch.worker(role="remote-slow-init")
    wait_during(run, lambda: markers(launch.gate, "init"), "the remote worker process to be in init()")
    run.popen.send_signal(signal.SIGTERM)
    assert run.wait() == 143, run.stderr
    left = [line for line in lines(run.stderr) if line.startswith("still busy, left behind: ")]
    assert left == [f"still busy, left behind: step {STAGE} remote worker process 0 (its pipeline-worker's pid "
                    f"{worker.pid} at 127.0.0.1) in init()"], run.stderr


def test_a_run_that_gives_up_names_only_what_a_remote_worker_still_holds(launch: Launcher) -> None:
    """cluster.md: a forced stop's `still busy` names only messages a worker holds. A heartbeat is up to a beat old:
    the run named the message the last one said a worker ran, which the worker had answered since and the run had
    written (a user could replay it). Here the heartbeat names message A, the worker answers A and holds the next
    without a word: the run names what it holds, not A."""
    run = launch.run(launch.chain(nb_thread=0), "--Pipeline.shutdown_timeout=1",
                     "--Pipeline.heartbeat_liveness=100")  # no heartbeat after A's: the peer is not taken for dead
    server = load_public_key(launch.keys.server_public).public
    with Intruder(launch.address, load_key_pair(launch.keys.secret("intruder")), server, 0.2,
                  lambda: run.popen.poll() is None) as peer:
        slot = peer.join(STAGE)
        thread = peer.thread
        assert thread is not None
        peer.send(thread, control_frames(Kind.JOIN, WINDOW))
        first = packet_from_frames(peer.receive(thread, "first WORK"))
        peer.send(peer.keeper, ping_frames(slot, [first.first_seq]))
        peer.receive(peer.keeper, "PONG")  # the door has read the heartbeat naming A
        peer.send(thread, result_frames([Answer(seq, [(encode({"value": seq, "pid": 0}), None)], Outcome.DONE)
                                         for seq, _, _ in first.messages()]))
        peer.send(thread, control_frames(Kind.READY, WINDOW))
        wait_during(run, launch.outputs, "the run to write the answered message")
        wait_during(run, lambda: thread.poll(0), "the run to hand the peer more work")
        run.popen.send_signal(signal.SIGTERM)
        assert run.wait() == 143, run.stderr
        held = []  # what the run handed the peer after A: all of it in its socket by now
        while sockets.waiting(thread):
            held += [seq for seq, _, _ in packet_from_frames(sockets.recv(thread)).messages()]
    assert [row["value"] for row in launch.outputs()] == [first.first_seq]
    left = [line for line in lines(run.stderr) if line.startswith("still busy, left behind: ")]
    assert len(left) == 1 and held, run.stderr
    assert held == list(range(held[0], held[0] + len(held))), held  # from one queue, in order
    spans = f"message {held[0]}" if len(held) == 1 else f"messages {held[0]}-{held[-1]}"
    assert re.fullmatch(rf"still busy, left behind: step {STAGE} remote worker process {slot} \([^)]* at 127\.0\.0\.1\)"
                        rf" holding {spans}, none of them in run\(\) at its last heartbeat \([\d.]+ s before\)",
                        left[0]), left[0]


def test_kill_9_of_the_only_worker_then_another_joins(launch: Launcher) -> None:
    run = launch.run(launch.chain(nb_thread=0))
    first = launch.worker(role="remote-blocking", name="first")
    wait_during(run, lambda: marker_pids(launch.gate, "busy"), "the first remote worker to be in a message")
    first.popen.send_signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    second = launch.worker(name="second")
    assert run.wait() == 0, run.stderr
    assert second.wait() == 0, second.stderr
    outputs = assert_every_value_once(launch, run)
    assert servers(outputs, run) == {second.pid}
    # A remote worker is never replaced by the run: the report says what was delivered again, and no "0 replaced".
    assert re.search(rf"^{STAGE}: 1 message delivered again$|^{STAGE}: \d+ messages delivered again$", run.stderr,
                     re.MULTILINE), run.stderr
    assert "replaced" not in run.stderr


# --------------------------------------------------------------------------- the run's settings


def assert_one_line(result: subprocess.CompletedProcess[str], status: int, *expected: str) -> None:
    """The process exited with ``status`` and one stderr line holding each of ``expected``."""
    assert result.returncode == status, result.stderr
    said = lines(result.stderr)
    assert len(said) == 1, result.stderr
    for text in expected:
        assert text in said[0], said[0]


@pytest.mark.parametrize("given", [(), ("server_key",), ("authorized_keys",)], ids=["none", "server-only",
                                                                                    "authorized-only"])
def test_listening_without_both_keys_is_refused(launch: Launcher, given: tuple[str, ...]) -> None:
    path = write_config(launch.directory, launch.chain())
    keys = {"server_key": launch.keys.server_secret, "authorized_keys": launch.keys.authorized}
    result = run_cli(f"--config={path}", f"--Pipeline.listen={launch.address}",
                     *(f"--Pipeline.{name}={keys[name]}" for name in given))
    assert_one_line(result, 2, "command line: --Pipeline.listen:", "server_key", "authorized_keys")


@pytest.mark.parametrize("bad", ["missing", "garbled", "public-only", "authorized-not-a-directory",
                                 "authorized-garbled"])
def test_a_bad_key_file_is_named(launch: Launcher, bad: str) -> None:
    server, authorized = launch.keys.server_secret, launch.keys.authorized
    named: Path
    if bad == "missing":
        server = named = launch.directory / "missing.key_secret"
    elif bad == "garbled":
        server = named = launch.directory / "garbled.key_secret"
        named.write_text("this is not a key\n")
    elif bad == "public-only":
        server = named = launch.keys.server_public
    elif bad == "authorized-not-a-directory":
        authorized = named = launch.keys.server_public
    else:
        named = authorized / "garbled.key"
        named.write_bytes(os.urandom(64))
    path = write_config(launch.directory, launch.chain())
    result = run_cli(f"--config={path}", f"--Pipeline.listen={launch.address}",
                     f"--Pipeline.server_key={server}", f"--Pipeline.authorized_keys={authorized}")
    assert_one_line(result, 2, str(named))


def test_a_listen_address_in_use_is_one_line_and_nothing_runs(launch: Launcher) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"tcp://127.0.0.1:{taken.getsockname()[1]}"
        path = write_config(launch.directory, launch.chain())
        result = run_cli(f"--config={path}", f"--Pipeline.listen={address}", *launch.keys.run_options())
    assert_one_line(result, 2, "command line: --Pipeline.listen:", f"cannot listen on {address}", "in use")
    assert not launch.output.exists()  # not one message went through


def test_a_door_that_fails_fails_the_run(launch: Launcher, monkeypatch: pytest.MonkeyPatch) -> None:
    # With remote workers only allowed (no worker processes), an internal error of the thread that
    # lets them in still fails the run: never an exit 0 with messages unprocessed.
    def broken(door: Door) -> None:
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(Door, "_loop", broken)
    keys = launch.keys
    document = chain(engine_step("P", "Source", ["S"]), [engine_step("S", "Behave", ["C"])],
                     engine_step("C", "Collect"), Source={"count": 50})
    pipeline = Pipeline.from_config(document, {"Pipeline": {
        "listen": launch.address, "server_key": str(keys.server_secret), "authorized_keys": str(keys.authorized)}})
    report = pipeline.run()
    assert report.exit_status == 1
    assert any("internal error in door" in (step.first_error or "") for step in report.steps.values())


class SeenEvents(queue.Queue):
    """A run's queue of events that tells a test which kinds were put in it."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: defaultdict[str, threading.Event] = defaultdict(threading.Event)

    def put(self, item: tuple[str, Any], block: bool = True, timeout: float | None = None) -> None:
        super().put(item, block, timeout)
        self.seen[item[0]].set()


@pytest.mark.timeout(30)
def test_a_worker_process_that_joins_before_the_door_is_bound_starts_the_run(
        launch: Launcher, monkeypatch: pytest.MonkeyPatch) -> None:
    # The runner read the join of a step's worker process while it waited for the door's BOUND, and dropped it: the
    # start waited for that join for ever (four runs side by side, each with a remote worker, hung now and then).
    real_control, real_bind = RunControl.__init__, Door._bind

    def control(self: RunControl, options: RunOptions) -> None:
        real_control(self, options)
        self.events = SeenEvents()

    def bind_once_joined(door: Door) -> None:
        real_bind(door)
        assert door.control.events.seen[WORKERS_JOINED].wait(WAIT_SECONDS)  # BOUND comes after the join

    monkeypatch.setattr(RunControl, "__init__", control)
    monkeypatch.setattr(Door, "_bind", bind_once_joined)
    document = launch.chain(count=20)
    document["Pipeline"]["stagers_conf"][0]["nb_process"] = 1
    keys = launch.keys
    report = Pipeline.from_config(document, {"Pipeline": {
        "listen": launch.address, "server_key": str(keys.server_secret), "authorized_keys": str(keys.authorized),
        "progress": False, "gui": False}}).run()
    assert report.exit_status == 0
    assert sorted(output["value"] for output in launch.outputs()) == list(range(20))


def test_a_step_without_local_workers_needs_listen(launch: Launcher) -> None:
    path = write_config(launch.directory, launch.chain(nb_thread=0))
    assert_one_line(run_cli(f"--config={path}"), 2, "nb_thread", "Pipeline.listen")


def test_a_step_no_worker_joins_fails_after_worker_timeout(launch: Launcher) -> None:
    started = time.monotonic()
    run = launch.run(launch.chain(nb_thread=0), "--Pipeline.worker_timeout=1")
    assert run.wait(20) == 1, run.stderr
    assert time.monotonic() - started < 15
    said = [line for line in lines(run.stderr) if STAGE in line and launch.address in line]
    assert said, run.stderr
    assert "Traceback" not in run.stderr


# --------------------------------------------------------------------------- pipeline-worker


def worker_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``pipeline-worker ARGS`` as a subprocess, its output as text."""
    return subprocess.run([str(BIN / "pipeline-worker"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=30, check=False)


@pytest.mark.parametrize("leave_out", ["connect", "server-key", "key", "step"])
def test_pipeline_worker_names_a_missing_option(launch: Launcher, leave_out: str) -> None:
    options = {"connect": launch.address, "server-key": str(launch.keys.server_public),
               "key": str(launch.keys.secret("node7")), "step": STAGE}
    args = [f"--{name}={value}" for name, value in options.items() if name != leave_out]
    assert_one_line(worker_cli(*args, cwd=launch.directory), 2, f"--{leave_out}")


@pytest.mark.parametrize("bad", ["missing-key", "public-key-as-key", "garbled-server-key"])
def test_pipeline_worker_names_a_bad_key_file(launch: Launcher, bad: str) -> None:
    key, server = launch.keys.secret("node7"), launch.keys.server_public
    if bad == "missing-key":
        key = named = launch.directory / "nowhere.key_secret"
    elif bad == "public-key-as-key":
        key = named = launch.keys.public("node7")
    else:
        server = named = launch.directory / "server.key"
        named.write_text("metadata\ncurve\n    public-key = \"short\"\n")
    result = worker_cli(f"--connect={launch.address}", f"--server-key={server}", f"--key={key}", f"--step={STAGE}",
                        cwd=launch.directory)
    assert_one_line(result, 2, str(named))


def test_pipeline_worker_is_refused_a_step_the_run_does_not_serve(launch: Launcher) -> None:
    run = launch.run(launch.chain(hold=True))
    wait_for_local_worker(launch, run)
    missing = launch.worker(step="NOPE", name="missing")
    producer = launch.worker(step=PRODUCER, name="producer")
    assert missing.wait() == 2, missing.stderr
    assert producer.wait() == 2, producer.stderr
    launch.hold.touch()
    assert run.wait() == 0, run.stderr
    assert_every_value_once(launch, run)
    for proc, reason in ((missing, "NOPE"), (producer, PRODUCER)):
        said = lines(proc.stderr)
        assert len(said) == 1, proc.stderr
        assert reason in said[0]
        assert "refused" in said[0]


def test_pipeline_worker_without_the_steps_module(launch: Launcher, tmp_path: Path) -> None:
    # The run imports the stage's module from its working directory; the worker host has no such module.
    head, node = tmp_path / "head", tmp_path / "node"
    head.mkdir()
    node.mkdir()
    (head / "head_only_steps.py").write_text("from tests.remote_steps import Tagged as HeadOnly  # noqa: F401\n")
    config = launch.chain(hold=True)
    config["Pipeline"]["stagers_conf"][0].update({"module": "head_only_steps", "class": "HeadOnly"})
    run = launch.run(config, cwd=head, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wait_for_local_worker(launch, run)
    env = {name: value for name, value in os.environ.items() if name != "PYTHONPATH"}
    worker = launch.worker(cwd=node, env=env)
    assert worker.wait() == 2, worker.stderr
    launch.hold.touch()
    assert run.wait() == 0, run.stderr
    assert_every_value_once(launch, run)
    said = lines(worker.stderr)
    assert len(said) == 1, worker.stderr
    assert "head_only_steps" in said[0]
    # The run says why it left (issue 26.10): the worker process's own line reached it.
    left = [line for line in lines(run.stderr) if "its worker process" in line and "left" in line]
    assert len(left) == 1 and "exit code 2: step TAG: cannot load head_only_steps." \
        in left[0], run.stderr


def test_the_last_word_of_a_step_whose_only_worker_left_says_why(launch: Launcher, tmp_path: Path) -> None:
    """A step served by remote workers only, whose one worker joined and left (it could not import the step):
    the run fails after worker_timeout saying what became of it, not that no worker ever joined (issue 26.10)."""
    head, node = tmp_path / "head", tmp_path / "node"
    head.mkdir()
    node.mkdir()
    (head / "head_only_steps.py").write_text("from tests.remote_steps import Tagged as HeadOnly  # noqa: F401\n")
    config = launch.chain(nb_thread=0)
    config["Pipeline"]["stagers_conf"][0].update({"module": "head_only_steps", "class": "HeadOnly"})
    run = launch.run(config, "--Pipeline.worker_timeout=2", cwd=head, env={**os.environ, "PYTHONPATH": str(ROOT)})
    worker = launch.worker(cwd=node, env={name: value for name, value in os.environ.items() if name != "PYTHONPATH"})
    assert worker.wait() == 2, worker.stderr
    assert run.wait() == 1, run.stderr
    stopped = [line for line in lines(run.stderr) if line.startswith("stopped: ")]
    assert len(stopped) == 1, run.stderr
    assert re.fullmatch(
        r"stopped: step TAG has no workers left: its worker process \d+ left \(remote worker node7: exit code 2: "
        r"step TAG: cannot load head_only_steps\.\w+: ModuleNotFoundError: No module named 'head_only_steps'"
        r".*\), and no other joined within worker_timeout=2 s \(remote workers connect to "
        + re.escape(launch.address) + r" with pipeline-worker\)", stopped[0]), stopped[0]


def test_pipeline_worker_leaves_when_its_run_is_killed(launch: Launcher) -> None:
    run = launch.run(launch.chain(hold=True))
    worker = launch.worker()
    wait_during(run, lambda: len(marker_pids(launch.gate, "init")) == 2, "the remote worker to join")
    run.popen.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    assert run.wait() == -signal.SIGKILL
    assert worker.wait(10) == 3, worker.stderr
    # heartbeat_liveness (5) x heartbeat_interval (0.2 s), and a margin for a loaded machine
    assert time.monotonic() - killed < 5 * 0.2 + 3.0
    assert "the run is gone" in lines(worker.stderr)[-1]


@pytest.mark.parametrize("zygote_too", [False, True], ids=["pipeline-worker killed", "its zygote killed too"])
def test_the_private_directory_of_a_killed_pipeline_worker_is_removed(launch: Launcher, short_tmp: Path,
                                                                      zygote_too: bool) -> None:
    """pipeline-worker's directory (its worker processes' specs and boards) is named after its pid: when a SIGKILL
    ends pipeline-worker, the zygote of its worker processes removes it as it leaves; when the zygote is killed
    too, the next pipeline-worker removes it as it starts."""
    env = {**os.environ, "TMPDIR": str(short_tmp)}
    run = launch.run(launch.chain(nb_thread=0))
    first = launch.worker(role="remote-blocking", env=env)
    wait_during(run, lambda: marker_pids(launch.gate, "busy"), "the first remote worker to be in a message")
    if zygote_too:
        os.kill(parent_of(marker_pids(launch.gate, "busy").pop()), signal.SIGKILL)
    first.popen.send_signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    if zygote_too:
        assert [p.name for p in short_tmp.iterdir()] == [
            p.name for p in short_tmp.glob(f"pipeline-worker-{first.pid}-*")] != []
    else:
        wait_during(run, lambda: not list(short_tmp.iterdir()), "the zygote to remove the killed worker's directory")
    second = launch.worker(env=env, name="second")
    assert run.wait() == 0, run.stderr
    assert second.wait() == 0, second.stderr
    assert_every_value_once(launch, run)
    assert list(short_tmp.iterdir()) == []


def test_a_pipeline_worker_that_cannot_start_its_processes_says_it_in_one_line(launch: Launcher) -> None:
    """fork and exec fail on the worker's host (as under a process limit): pipeline-worker says it once, starts no
    more of its 4 processes, and the run, told at once, goes on with its own worker."""
    failing = {**os.environ, "PYTHONPATH": f"{Path(__file__).parent / 'failing_starts'}{os.pathsep}{ROOT}",
               "PIPELINE_TEST_FAIL_STARTS": "1"}
    run = launch.run(launch.chain(nb_thread=1, hold=True))
    wait_for_local_worker(launch, run)
    worker = launch.worker("--processes=4", env=failing)
    assert worker.wait() != 0
    assert lines(worker.stderr) == ["pipeline-worker: error: cannot start a worker process: BlockingIOError: "
                                    "[Errno 11] Resource temporarily unavailable"], worker.stderr
    launch.hold.touch()
    assert run.wait() == 0, run.stderr
    assert_every_value_once(launch, run)
    said = [line for line in lines(run.stderr) if "could not be started" in line]
    assert len(said) == 1 and "remote worker node7" in said[0], run.stderr


@pytest.mark.parametrize("files", [8, 10, 11, 20])
def test_a_pipeline_worker_out_of_open_files_says_it_in_one_line(launch: Launcher, files: int) -> None:
    """Under `ulimit -n 10` pipeline-worker could not open its sockets: a ZMQError's traceback (exit 1); at 11 it
    said that no run answered."""
    worker = launch.worker(prefix=["sh", "-c", f'ulimit -n {files} && exec "$@"', "sh"])
    assert worker.wait() == 1
    assert lines(worker.stderr) == [f"pipeline-worker: error: out of open files: this process may open {files} "
                                    f"(ulimit -n; its hard limit, ulimit -Hn, {files}) and needs 64 at least: raise "
                                    "it"], worker.stderr


@contextlib.contextmanager
def run_door(launch: Launcher) -> Iterator[zmq.Socket]:
    """The door of a run that the test plays itself: a CURVE ROUTER at the launcher's address, with the run's keys."""
    context = zmq.Context()
    server = CurveServer(context, ServerKeys(load_key_pair(launch.keys.server_secret),
                                             authorized_keys(launch.keys.authorized)))
    door = context.socket(zmq.ROUTER)
    door.linger = 0
    try:
        server.secure(door)
        door.bind(launch.address)
        yield door
    finally:
        door.close()
        server.close()
        context.term()


def hello_at(door: zmq.Socket) -> bytes:
    """The routing id of the worker whose HELLO (of this version) comes to ``door`` next."""
    assert door.poll(PROCESS_SECONDS * 1000), "no HELLO from the worker"
    keeper, header, *_ = door.recv_multipart()
    assert HEADER.unpack_from(header)[:2] == (Kind.HELLO, WIRE_VERSION)
    return keeper


def left_at(door: zmq.Socket) -> Loss:
    """What the LEFT that a worker sent ``door`` before it ended says (it is on its way, or there)."""
    assert door.poll(WAIT_SECONDS * 1000), "no LEFT from the worker"
    _, *frames = door.recv_multipart()
    assert HEADER.unpack_from(frames[0])[0] == Kind.LEFT
    return parse_lost(frames)


def test_pipeline_worker_leaves_a_run_of_another_version_before_it_reads_its_spec(launch: Launcher) -> None:
    """A run of another zmq-pipeline (its SPEC carries another WIRE_VERSION, over a proper CURVE handshake): the
    worker says so in one line and exits 2, without unpickling what that run sent, and tells it that the slot it gave
    is left (it waited for the slot's heartbeats)."""
    with run_door(launch) as door:
        worker = launch.worker(name="newer")
        keeper = hello_at(door)
        door.send_multipart([keeper, HEADER.pack(Kind.SPEC, WIRE_VERSION - 1, 0, 7), b"not a pickle of ours"])
        assert worker.wait() == 2, worker.stderr
        said = lines(worker.stderr)
        assert len(said) == 1, worker.stderr
        older = WIRE_VERSION - 1
        assert f"the run speaks version {older} of the engine's frames and this one {WIRE_VERSION}" in said[0]
        left = left_at(door)
        assert left.slot == 7 and not left.running and not left.clean, left
        assert left.reason.startswith("pipeline-worker could not join: cannot join the run: the run speaks version")


@pytest.mark.parametrize("worker_timeout", ["1", "0"])
def test_a_worker_whose_threads_do_not_join_in_time_is_told_it_was_taken_for_dead(launch: Launcher,
                                                                                   worker_timeout: str) -> None:
    """Its init() outlasts worker_timeout (at least the heartbeats' patience: 0 took every remote worker for dead as it
    said HELLO): the run takes it for dead and goes on with its own worker, and pipeline-worker hears why and leaves
    saying so (it waited for heartbeats that no longer came, then said the run was gone, exit 3)."""
    run = launch.run(launch.chain(nb_thread=1, hold=True), f"--Pipeline.worker_timeout={worker_timeout}")
    worker = launch.worker(role="remote-slow-init")
    assert worker.wait() == 1, worker.stderr
    launch.hold.touch()
    assert run.wait() == 0, run.stderr
    said = lines(worker.stderr)
    assert len(said) == 1, worker.stderr
    assert re.fullmatch(r"pipeline-worker: the run took worker process \d+ for dead: 0 of its 1 threads joined the "
                        r"step within [0-9.]+ s; ending it", said[0]), worker.stderr
    assert sorted(row["value"] for row in launch.outputs()) == list(range(20))



def test_a_handshake_the_run_closed_for_its_slowness_is_said_so_not_a_refused_key(tmp_path: Path) -> None:
    """Over a link of a second each way the run closes the connection at HANDSHAKE_SECONDS, its handshake not ended:
    the worker said its key was refused (is w1.key in its authorized_keys?). A listener that answers nothing and closes
    the connection then stands in for such a run."""
    keys = Keys.make(tmp_path / "keys")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def answer_nothing_then_close() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(HANDSHAKE_SECONDS)
            with contextlib.suppress(OSError):  # what the worker sends is never answered, until the bound
                while connection.recv(4096):
                    pass

    closer = threading.Thread(target=answer_nothing_then_close, daemon=True)
    closer.start()
    try:
        result = subprocess.run([BIN / "pipeline-worker", f"--connect=tcp://127.0.0.1:{port}",
                                 f"--server-key={keys.server_public}", f"--key={keys.secret('node7')}",
                                 f"--step={STAGE}"], capture_output=True, text=True, timeout=60, check=False)
    finally:
        listener.close()
    assert result.returncode == 1, result.stderr
    assert re.fullmatch(r"pipeline-worker: error: the run closed the connection after [0-9.]+ s, before the CURVE "
                        r"handshake ended: it allows 5 s for one \(a link or a host this slow takes longer\)\n",
                        result.stderr), result.stderr


def test_a_worker_whose_host_has_no_room_for_its_process_s_files_says_so_and_tells_the_run(launch: Launcher) -> None:
    """Its TMPDIR (here a file size limit of 1 KiB: the spec is larger, the line it writes smaller) refused a worker
    process's files: a traceback and exit 1, and the run heard nothing until the heartbeats it missed. One line, exit
    2, and the run told at once."""
    run = launch.run(launch.chain(nb_thread=0))
    worker = launch.worker(prefix=["prlimit", "--fsize=1024", "--"])
    assert worker.wait() == 2, worker.stderr
    [line] = lines(worker.stderr)
    assert line.startswith("pipeline-worker: error: TMPDIR: cannot write ") and "File too large" in line, line
    wait_during(run, lambda: "pipeline-worker cannot start a worker process: TMPDIR: cannot write" in run.stderr,
                "the run to hear why the worker left")
    assert "sent no heartbeat" not in run.stderr


def test_a_remote_worker_told_to_end_again_and_again_as_it_leaves_exits_with_the_first_signals_status(
        launch: Launcher) -> None:
    """A SLURM time limit sends SIGTERM, then another about 8 ms later: the worker put the default handlers back
    before it closed its sockets, and the second killed it (``srun: task 0: Terminated``, not exit 143). SIGTERM every
    millisecond while it leaves changes nothing."""
    run = launch.run(launch.chain(nb_thread=1, workers=2))
    worker = launch.worker(role="remote-blocking")
    wait_during(run, lambda: marker_pids(launch.gate, "busy"), "the remote worker to be in a message")
    worker.popen.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 30
    while worker.popen.poll() is None and time.monotonic() < deadline:
        worker.popen.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.popen.wait(0.001)
    assert worker.wait() == 128 + signal.SIGTERM, worker.stderr
    assert run.wait() == 0, run.stderr
    assert_every_value_once(launch, run)
