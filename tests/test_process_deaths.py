"""Worker processes that die, stop or lose their run: nothing is lost, nothing duplicated between steps,
poison is set aside, the run never hangs and never leaves a process behind.

Each test runs ``pipeline-run`` in its own process group; the steps (tests/process_steps.py) kill,
stop or block their own process on a chosen message, or the test signals a process by the pid a
step wrote to a file.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.engine import zygote
from pipeline.failures.deadletter import load_messages
from tests.failure_helpers import report_row
from tests.process_helpers import (
    STEPS,
    alive,
    chain,
    finish_run,
    kill_group,
    lines,
    pids,
    report_line,
    run_to_end,
    start_run,
    wait_for,
    written,
)
from tests.remote_steps import parent_of

#: Heartbeats of these runs: a silent process is taken for dead (and a run for gone) within 0.6 s.
HEARTBEATS = ("--Pipeline.heartbeat_interval=0.2", "--Pipeline.heartbeat_liveness=3")
PATIENCE = 0.2 * 3

# The tests of this file take more than 10 s in all: `pytest -m "not slow"` leaves them out.
pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]


def redeliveries(stderr: str, step: str, replaced: int) -> int:
    """The messages the report says were delivered again to ``step``, which replaced ``replaced`` processes."""
    processes = "worker process" if replaced == 1 else "worker processes"
    match = re.fullmatch(rf"{step}: (\d+) messages? delivered again, {replaced} {processes} replaced",
                         report_line(stderr, step))
    assert match is not None, report_line(stderr, step)
    return int(match.group(1))


def test_a_killed_stager_process_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "killed"
    path = chain(tmp_path, {"nb_process": 2}, Trigger={"at": 100, "action": "kill", "marker": str(marker)})
    result = run_to_end(path, *HEARTBEATS)
    assert result.returncode == 0, result.stderr
    assert sorted(written(tmp_path)) == list(range(300))  # each value exactly once
    assert redeliveries(result.stderr, "STAGE", replaced=1) >= 1
    assert report_row(result.stderr, "STAGE") == [300, 300, 300, 0]
    assert not alive(pids(marker).pop())
    assert "never ran in it" not in result.stderr  # it keeps nothing for a finish() to send


def test_a_killed_process_of_a_step_with_a_finish_says_what_it_kept_is_lost(tmp_path: Path) -> None:
    """A total that a finish() sends dies with its process, and the messages behind it are not run again (exactly
    once): the run said nothing of it, and a sum came out wrong, exit 0."""
    marker = tmp_path / "killed"
    path = chain(tmp_path, {"nb_process": 2, "class": "TriggerThenFinish"},
                 Trigger={"at": 100, "action": "kill", "marker": str(marker)})
    result = run_to_end(path, *HEARTBEATS)
    assert result.returncode == 0, result.stderr
    assert re.search(r"step STAGE: worker process \d+ \(pid \d+\) died: killed by signal SIGKILL; starting another; "
                     r"the finish\(\) of STAGE never ran in it: what it kept across the messages it had run is lost "
                     r"\(configuration.md, worker processes\)", result.stderr), result.stderr


def test_a_killed_consumer_process_processes_every_value_at_least_once(tmp_path: Path) -> None:
    values = tmp_path / "values.jsonl"
    path = chain(tmp_path, {"class": "PassOn"}, {"class": "AppendValues", "module": STEPS, "nb_process": 1},
                 AppendValues={"path": str(values), "at": 100, "action": "kill", "marker": str(tmp_path / "killed")})
    result = run_to_end(path, *HEARTBEATS)
    assert result.returncode == 0, result.stderr
    seen = [json.loads(line) for line in lines(values)]
    assert set(seen) == set(range(300))
    assert seen.count(100) >= 2  # written, then its process died: written again (at least once)
    assert redeliveries(result.stderr, "WRITER", replaced=1) >= 1


def test_a_one_worker_step_whose_process_dies_is_not_replaced_and_the_run_fails(tmp_path: Path) -> None:
    """A new instance would start its output again (a JsonLinesWriter replaced in its process emptied the lines the
    first had written, and the run said every message was processed, exit status 0): the step fails instead, and
    what it did not process is counted."""
    values = tmp_path / "values.jsonl"
    path = chain(tmp_path, {"class": "PassOn"}, {"class": "OneWorkerValues", "module": STEPS, "nb_process": 1},
                 OneWorkerValues={"path": str(values), "at": 100, "action": "kill", "marker": str(tmp_path / "killed")})
    result = run_to_end(path, *HEARTBEATS)
    assert result.returncode == 1, result.stderr
    assert "none replaces it: step WRITER runs in one worker (its class says one_worker)" in result.stderr
    assert "WRITER: first error: step WRITER has no workers left" in result.stderr
    assert "delivered again" not in result.stderr  # what the dead process held never was: none replaced it
    never = re.search(r"^(\d+) messages? (?:was|were) sent but never processed$", result.stderr, re.MULTILINE)
    unprocessed = int(never.group(1))
    assert report_row(result.stderr, "WRITER")[1] + unprocessed == 300
    assert set(range(101)) <= {json.loads(line) for line in lines(values)}  # what it wrote stays


@pytest.mark.parametrize("action", ["kill", "exit0"])
@pytest.mark.parametrize(("on_error", "allow", "status"), [("stop", False, 1), ("skip", False, 1), ("skip", True, 0)])
def test_a_poison_message_goes_to_the_dead_letters_after_max_redeliveries(
        tmp_path: Path, on_error: str, allow: bool, status: int, action: str) -> None:
    """exit0: os._exit(0) in run() was taken for a clean end, never replaced: one such message left the step with no
    workers ('has no workers left', 96 of 100 never processed)."""
    marker, dead = tmp_path / "deaths", tmp_path / "dead.jsonl"
    path = chain(tmp_path, {"nb_process": 2, "on_error": on_error}, count=40,
                 Trigger={"at": 7, "action": action, "once": False, "marker": str(marker)})
    result = run_to_end(path, *HEARTBEATS, f"--Pipeline.dead_letter={dead}", f"--Pipeline.allow_failures={allow}")
    assert result.returncode == status, result.stderr
    assert len(pids(marker)) == 2  # it killed max_redeliveries (2) processes, no more
    records = [json.loads(line) for line in lines(dead)]
    died = [r for r in records if r["error"].startswith("WorkerDied")]
    assert len(died) == 1 and died[0]["step"] == "STAGE"
    assert ("STAGE", 7) in load_messages(str(dead))
    if on_error == "skip":
        assert sorted(written(tmp_path)) == [n for n in range(40) if n != 7]
        assert len(records) == 1
    else:
        assert "stopped: step STAGE failed on message" in result.stderr


@pytest.mark.parametrize("max_failures", [0, 2])
def test_a_message_that_failed_in_a_process_that_then_died_has_one_dead_letter(tmp_path: Path,
                                                                              max_failures: int) -> None:
    """Its failure counted as it was said, before its answer: run again in the replacement, it failed again, so its
    dead letter came twice (a replay sent it twice) and max_failures=2 stopped a run with one failed message."""
    dead = tmp_path / "dead.jsonl"
    path = chain(tmp_path, {"class": "FailsThenDies", "nb_process": 1, "on_error": "skip"}, count=20,
                 FailsThenDies={"fails": 2, "dies": 3, "marker": str(tmp_path / "died")})
    result = run_to_end(path, *HEARTBEATS, f"--Pipeline.dead_letter={dead}",
                        f"--Pipeline.max_failures={max_failures}")
    assert result.returncode == 1, result.stderr
    assert (tmp_path / "died").exists()  # the process died, after message 2 failed in it
    assert load_messages(str(dead)) == [("STAGE", 2)]
    assert report_row(result.stderr, "STAGE")[3] == 1
    assert "max_failures" not in result.stderr
    assert sorted(written(tmp_path)) == [n for n in range(20) if n != 2]


def test_an_ordered_step_that_stops_as_a_process_dies_sends_on_what_it_processed(tmp_path: Path) -> None:
    """An ordered step in 2 worker processes stops on a failure (on_error stop) while the process running an earlier
    message dies: what the other process processed after that message waited for it, and was thrown away with the
    stopped step's queue (processed, never sent on, counted nowhere: 1-212 messages lost in 10 of 12 runs). Every
    message is written, in order, or is in the dead letters (failed, or not run)."""
    dead = tmp_path / "dead.jsonl"
    path = chain(tmp_path, {"class": "FailsThenDies", "nb_process": 2, "ordered": True, "on_error": "stop"},
                 count=400, FailsThenDies={"fails": 250, "dies": 100, "pause": 1.0, "delay": 0.002,
                                           "marker": str(tmp_path / "died")})
    result = run_to_end(path, *HEARTBEATS, f"--Pipeline.dead_letter={dead}")
    assert result.returncode == 1, result.stderr
    assert (tmp_path / "died").exists()
    out = written(tmp_path)
    assert out == sorted(out)
    assert sorted(out + [message for _, message in load_messages(str(dead))]) == list(range(400))


@pytest.mark.parametrize(("processes", "restarts"), [(1, 0), (2, 1)])
def test_a_step_whose_every_process_dies_fails_the_run(tmp_path: Path, processes: int, restarts: int) -> None:
    """on_error=skip: the messages that kill them are not what stops the run, the lack of workers is."""
    path = chain(tmp_path, {"nb_process": processes, "on_error": "skip"}, count=20,
                 Trigger={"action": "kill", "once": False, "marker": str(tmp_path / "deaths")})
    result = run_to_end(path, *HEARTBEATS, f"--Pipeline.max_worker_restarts={restarts}")
    assert result.returncode == 1, result.stderr
    assert len(pids(tmp_path / "deaths")) == processes + restarts
    assert ("stopped: step STAGE has no workers left: its worker processes died (killed by signal SIGKILL)"
            in result.stderr.splitlines())


def test_a_stopped_process_is_taken_for_dead_killed_and_replaced(tmp_path: Path) -> None:
    """A process stopped (SIGSTOP) for heartbeat_liveness beats is dead: killed, its messages redelivered."""
    marker = tmp_path / "holding"
    path = chain(tmp_path, {"nb_process": 2}, count=200, Trigger={"at": 50, "action": "hold", "marker": str(marker)})
    run = start_run(path, *HEARTBEATS)
    try:
        wait_for(lambda: bool(pids(marker)), 15, "a process to take message 50")
        stopped = pids(marker).pop()
        os.kill(stopped, signal.SIGSTOP)
    finally:
        result = finish_run(run, 20)
    assert result.returncode == 0, result.stderr
    assert f"(pid {stopped}) stopped for 0.6 s: killing it" in result.stderr
    assert sorted(written(tmp_path)) == list(range(200))
    assert redeliveries(result.stderr, "STAGE", replaced=1) >= 1
    assert not alive(stopped)


@pytest.mark.parametrize("action", ["hold", "gil"])
def test_a_long_run_call_is_not_a_death(tmp_path: Path, action: str) -> None:
    """A process is watched from outside: a run() longer than heartbeat_liveness beats is fine, even one inside
    a C call that holds the process's GIL all along ("gil")."""
    path = chain(tmp_path, {"nb_process": 1}, count=10,
                 Trigger={"at": 3, "action": action, "hold": 3 * PATIENCE, "marker": str(tmp_path / "held")})
    result = run_to_end(path, *HEARTBEATS)
    assert result.returncode == 0, result.stderr
    assert written(tmp_path) == list(range(10))
    assert "delivered again" not in result.stderr and "killing" not in result.stderr


@pytest.mark.parametrize("action", ["hold", "gil"])
def test_sigkill_of_the_run_leaves_no_worker_process(tmp_path: Path, action: str) -> None:
    """The worker processes die with their run, in every state: one of them is inside run() (and, with
    "gil", inside a C call that holds its GIL, so none of its threads can run)."""
    workers, marker = tmp_path / "workers", tmp_path / "holding"
    path = chain(tmp_path, {"nb_process": 2}, {"class": "AppendValues", "module": STEPS, "nb_process": 1},
                 count=1000, Trigger={"at": 5, "action": action, "marker": str(marker), "pid_file": str(workers)},
                 AppendValues={"path": str(tmp_path / "values"), "pid_file": str(workers)})
    run = start_run(path, *HEARTBEATS)
    try:
        wait_for(lambda: bool(pids(marker)) and len(pids(workers)) == 3, 15, "3 worker processes, one holding")
        os.kill(run.pid, signal.SIGKILL)
        run.wait(5)
        started = pids(workers)
        wait_for(lambda: not any(map(alive, started)), PATIENCE + 3, f"the worker processes {started} to leave")
    finally:
        kill_group(run)  # what is left, once checked: the test failed
        run.communicate(timeout=5)


@pytest.mark.parametrize(("target", "sig", "status"), [
    ("run", signal.SIGINT, 130),
    ("group", signal.SIGINT, 130),  # Ctrl+C in a terminal: every process of the foreground group gets it
    ("run", signal.SIGTERM, 143),
])
def test_a_signal_drains_the_run_and_ends_its_worker_processes(
        tmp_path: Path, target: str, sig: signal.Signals, status: int) -> None:
    workers, marker = tmp_path / "workers", tmp_path / "reached"
    path = chain(tmp_path, {"nb_process": 2}, count=100_000,
                 Trigger={"at": 20, "action": "mark", "delay": 0.002, "marker": str(marker),
                          "pid_file": str(workers)})
    run = start_run(path)
    try:
        wait_for(lambda: bool(pids(marker)) and len(pids(workers)) == 2, 15, "message 20 at STAGE")
        if target == "group":
            os.killpg(run.pid, sig)
        else:
            os.kill(run.pid, sig)
    finally:
        result = finish_run(run, 20)
    assert result.returncode == status, result.stderr
    assert not [pid for pid in pids(workers) if alive(pid)]
    values = written(tmp_path)  # drained: the writer's finish() ran last
    assert len(values) == len(set(values)) == report_row(result.stderr, "WRITER")[1] < 100_000
    assert "Traceback" not in result.stderr
    assert "starting another" not in result.stderr  # a draining run replaces no process


def test_sigterm_aimed_at_one_worker_process_ends_it_and_loses_nothing(tmp_path: Path) -> None:
    """As SLURM's scancel or an operator's kill sends it: the process leaves, its messages go to the others."""
    marker = tmp_path / "holding"
    path = chain(tmp_path, {"nb_process": 2}, count=200, Trigger={"at": 50, "action": "hold", "marker": str(marker)})
    run = start_run(path, *HEARTBEATS)
    try:
        wait_for(lambda: bool(pids(marker)), 15, "a process to take message 50")
        target = pids(marker).pop()
        os.kill(target, signal.SIGTERM)
        wait_for(lambda: not alive(target), 10, f"worker process {target} to leave on SIGTERM")
    finally:
        result = finish_run(run, 20)
    assert result.returncode == 0, result.stderr
    assert f"(pid {target}) died: killed by signal SIGTERM; starting another" in result.stderr
    assert sorted(written(tmp_path)) == list(range(200))
    assert redeliveries(result.stderr, "STAGE", replaced=1) >= 1


def test_a_step_module_slow_to_import_is_no_death(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker process importing its step's module for longer than heartbeat_liveness beats is starting, not dead."""
    monkeypatch.setenv("SLOW_IMPORT_SECONDS", str(3 * PATIENCE))
    path = chain(tmp_path, {"nb_process": 1, "module": "tests.slow_import_steps", "class": "Pass"}, count=20)
    result = run_to_end(path, *HEARTBEATS)
    assert result.returncode == 0, result.stderr
    assert written(tmp_path) == list(range(20))
    assert "died" not in result.stderr and "killing" not in result.stderr


def test_the_private_directory_of_a_killed_run_is_swept_by_the_next_run(tmp_path: Path, short_tmp: Path) -> None:
    """A run's ipc directory is named after its pid: one that a SIGKILL left behind (of the run and of its
    worker processes' zygote, which removes it when only the run is killed) is removed when the next run starts
    (a live run's, or another process's, is left alone)."""
    env = {"TMPDIR": str(short_tmp)}
    marker = tmp_path / "holding"
    path = chain(tmp_path, {"nb_process": 1}, count=20, Trigger={"at": 5, "action": "hold", "marker": str(marker)})
    killed = start_run(path, *HEARTBEATS, env=env)
    try:
        wait_for(lambda: bool(pids(marker)), 15, "a worker process to take message 5")
        os.kill(parent_of(pids(marker).pop()), signal.SIGKILL)  # the zygote
        os.kill(killed.pid, signal.SIGKILL)
        killed.wait(5)
    finally:
        kill_group(killed)
        killed.communicate(timeout=5)
    left = [p.name for p in short_tmp.iterdir()]
    assert len(left) == 1 and left[0].startswith(f"pipeline-{killed.pid}-"), left
    (short_tmp / "pipeline-1-kept").mkdir()  # pid 1 is alive (and not ours to judge): never swept
    marker.unlink()
    result = run_to_end(chain(tmp_path, {"nb_process": 1}, count=20), env=env)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in short_tmp.iterdir()) == ["pipeline-1-kept"]  # the run's own is gone too


#: A directory whose sitecustomize.py makes every start of a worker process fail (EAGAIN), in every process.
FAILING_STARTS = {"PYTHONPATH": f"{Path(__file__).parent / 'failing_starts'}{os.pathsep}{Path(__file__).parent.parent}",
                  "PIPELINE_TEST_FAIL_STARTS": "1"}


def test_worker_processes_that_cannot_be_started_are_one_line(tmp_path: Path) -> None:
    """fork and exec fail (as under a process limit): one line says so, no replacement is tried, the run fails
    naming the step and the error, with no traceback."""
    path = chain(tmp_path, {"nb_process": 4}, count=20)
    result = run_to_end(path, *HEARTBEATS, env=FAILING_STARTS)
    assert result.returncode == 1, result.stderr
    errors = [line for line in result.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 2, result.stderr  # the start failure, once for 4 processes; then the run stops
    assert errors[0].endswith("step STAGE: cannot start a worker process: BlockingIOError: [Errno 11] Resource "
                              "temporarily unavailable (no replacement is tried, and no later such "
                              "failure is logged)")
    assert ("stopped: step STAGE has no workers left: its worker processes could not be started (BlockingIOError: "
            "[Errno 11] Resource temporarily unavailable)") in result.stderr.splitlines()
    assert "Traceback" not in result.stderr and "starting another" not in result.stderr


def test_a_process_that_holds_work_and_runs_none_of_it_is_taken_for_dead(tmp_path: Path) -> None:
    """A worker process whose thread no longer reads its work (stuck in the framework's code) holds what its
    router handed it: after heartbeat_liveness beats without running any of it, it is killed and its messages go
    to the other process."""
    marker = tmp_path / "deaf"
    # 5 ms a message: the deaf process is handed more work after message 20 (it does not get only its FINISH).
    path = chain(tmp_path, {"nb_process": 2}, count=200,
                 Trigger={"at": 20, "action": "deaf", "delay": 0.005, "marker": str(marker)})
    result = run_to_end(path, *HEARTBEATS)
    assert result.returncode == 0, result.stderr
    deaf = pids(marker).pop()
    assert f"(pid {deaf}) has held work for" in result.stderr and "without running any of it: killing it" \
        in result.stderr
    assert sorted(written(tmp_path)) == list(range(200))
    assert redeliveries(result.stderr, "STAGE", replaced=1) >= 1
    assert not alive(deaf)


@pytest.mark.parametrize("step", ["TriggerThenFinish", "Trigger"])
def test_a_process_that_never_reads_its_finish_ends_the_run_instead_of_hanging_it(tmp_path: Path, step: str) -> None:
    """The last message makes its process deaf: told to finish, it never reads it. It is taken for dead like a
    process holding work; what its finish() would have sent is lost, so the run fails, saying so. A step without
    a finish() of its own loses nothing there: the run succeeds (it failed, every message delivered)."""
    path = chain(tmp_path, {"class": step, "nb_process": 1}, count=20,
                 Trigger={"at": 19, "action": "deaf", "marker": str(tmp_path / "deaf")})
    result = run_to_end(path, *HEARTBEATS)
    assert sorted(written(tmp_path)) == list(range(20))
    if step == "Trigger":
        assert result.returncode == 0, result.stderr
        assert "finish() ended" not in result.stderr
    else:
        assert result.returncode == 1, result.stderr
        assert "a worker process died before its finish() ended (held work for" in result.stderr


def test_poison_messages_do_not_spend_the_restart_budget(tmp_path: Path) -> None:
    """Three poison messages, each killing max_redeliveries (2) processes of a one-process step: 6 deaths, all
    replaced although max_worker_restarts is 3, since each was blamed on a message now in the dead letters."""
    marker, dead = tmp_path / "deaths", tmp_path / "dead.jsonl"
    path = chain(tmp_path, {"nb_process": 1, "on_error": "skip"}, count=40,
                 Trigger={"at": 5, "also": [15, 25], "action": "kill", "once": False, "marker": str(marker)})
    result = run_to_end(path, *HEARTBEATS, f"--Pipeline.dead_letter={dead}", "--Pipeline.allow_failures=True",
                        "--Pipeline.max_worker_restarts=3")
    assert result.returncode == 0, result.stderr
    assert len(pids(marker)) == 6
    assert sorted(written(tmp_path)) == [n for n in range(40) if n not in (5, 15, 25)]
    assert sorted(seq for step, seq in load_messages(str(dead))) == [5, 15, 25]
    assert redeliveries(result.stderr, "STAGE", replaced=6) >= 3


def test_deaths_past_three_a_step_in_ten_seconds_are_counted_not_logged(tmp_path: Path) -> None:
    """Fifteen poison messages kill 30 processes of a one-process step: a line for the first death, then at most 3 in
    each 10 seconds, the others counted in "N more worker process deaths" lines, every death in one or the other."""
    marker, poison = tmp_path / "deaths", list(range(3, 60, 4))
    path = chain(tmp_path, {"nb_process": 1, "on_error": "skip"}, count=60,
                 Trigger={"at": poison[0], "also": poison[1:], "action": "kill", "once": False, "marker": str(marker)})
    started = time.monotonic()
    result = run_to_end(path, *HEARTBEATS, "--Pipeline.allow_failures=True")
    windows = 1 + int((time.monotonic() - started) // 10)
    assert result.returncode == 0, result.stderr
    assert len(pids(marker)) == 2 * len(poison)
    said = len(re.findall(r"step STAGE: worker process \d+ \(pid \d+\) died: ", result.stderr))
    counted = sum(int(n) for n in re.findall(r"step STAGE: (\d+) more worker process deaths", result.stderr))
    assert said + counted == 2 * len(poison), result.stderr
    assert said <= 1 + 3 * windows, result.stderr
    assert sorted(written(tmp_path)) == [n for n in range(60) if n not in poison]


def test_the_restart_budget_still_ends_a_step_whose_processes_die_of_no_poison(tmp_path: Path) -> None:
    """Deaths not blamed on a message that went to the dead letters (processes killed from outside, and no message
    dies in max_redeliveries of them) still spend max_worker_restarts."""
    workers = tmp_path / "workers"
    path = chain(tmp_path, {"nb_process": 1}, count=100_000, Trigger={"delay": 0.001, "pid_file": str(workers)})
    run = start_run(path, *HEARTBEATS, "--Pipeline.max_worker_restarts=1", "--Pipeline.max_redeliveries=10")
    try:
        for started in (1, 2):
            wait_for(lambda started=started: len(lines(workers)) == started, 15, f"worker process {started}")
            os.kill(int(lines(workers)[-1].split()[0]), signal.SIGKILL)  # the newest
    finally:
        result = finish_run(run, 20)
    assert result.returncode == 1, result.stderr
    assert "has no workers left: its worker processes died (killed by signal SIGKILL)" in result.stderr


class _SilentZygote:
    """A zygote that reports nothing (stopped with SIGSTOP, or stuck)."""

    def collect(self, timeout: float = 0.0) -> None:
        """Nothing comes."""


def test_a_worker_process_gone_without_its_zygotes_word_counts_as_killed(monkeypatch: pytest.MonkeyPatch) -> None:
    """A stopped zygote reaps and reports nothing: its killed children looked alive for ever and the run hung. Gone
    for UNREPORTED_EXIT_SECONDS (here 0: at the second look), it is taken for killed; a live one never is."""
    monkeypatch.setattr(zygote, "UNREPORTED_EXIT_SECONDS", 0.0)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)  # reaped: its pid is gone
    gone = zygote.Forked(_SilentZygote(), child.pid)  # type: ignore[arg-type]
    live = zygote.Forked(_SilentZygote(), os.getpid())
    unreaped = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    os.waitid(os.P_PID, unreaped.pid, os.WEXITED | os.WNOWAIT)  # ended, not reaped: as a stopped zygote leaves it
    ended = zygote.Forked(_SilentZygote(), unreaped.pid)  # type: ignore[arg-type]
    assert [gone.poll(), ended.poll(), live.poll()] == [None, None, None]  # the zygote's report may be on its way
    assert [gone.poll(), ended.poll(), live.poll()] == [-signal.SIGKILL, 3, None]  # its own status, where it is kept
    unreaped.wait(timeout=30)
