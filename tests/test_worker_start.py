"""How worker processes start (Pipeline.fork_workers, engine.zygote): forked from a copy of the run's process,
or from a fresh interpreter; each way a worker has its own random numbers, default signal handlers and the
run's stdout. Each run is a script of its own: the fork needs a process with no other Python thread."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.engine import zygote as zygote_module
from pipeline.engine.process_keeper import ProcessKeeper
from pipeline.engine.zygote import Zygote
from tests.process_helpers import REPO, run_to_end

#: The run's script: it seeds numpy, changes a module global, installs a SIGTERM handler and replaces sys.stdout
#: (as an application capturing its output would) before the run; with "thread", another Python thread runs meanwhile;
#: with "zmq-gc", pyzmq's garbage-collector thread does (a zero-copy send starts it for the rest of the process).
SCRIPT = """
import io, json, signal, sys, threading
import numpy as np
import tests.start_steps as steps
from pipeline import Pipeline

np.random.seed(42)

out, fork, thread = sys.argv[1], sys.argv[2] == "fork", sys.argv[3]
steps.SCRIPT_VALUE = "set by the script"
signal.signal(signal.SIGTERM, lambda signum, frame: None)
if thread == "thread":
    idle = threading.Event()
    threading.Thread(target=idle.wait, daemon=True).start()
if thread == "zmq-gc":
    import zmq
    context = zmq.Context()
    a, b = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
    a.bind("inproc://gc")
    b.connect("inproc://gc")
    a.send(memoryview(bytearray(100_000)), copy=False)
    b.recv()
    a.close()
    b.close()
    context.term()
    assert any(type(t).__module__ == "zmq.utils.garbage" for t in threading.enumerate())
document = {"version": 1, "Pipeline": {
    "gui": False, "progress": False, "fork_workers": fork,
    "producer_conf": {"name": "P", "module": "algorithms.basic", "class": "Counter", "next_steps": "S"},
    "stagers_conf": [{"name": "S", "module": "tests.start_steps", "class": "Origin", "nb_process": 2,
                      "next_steps": "W"}],
    "consumer_conf": {"name": "W", "module": "tests.failure_steps", "class": "MarkedWriter"}},
    "Counter": {"count": 0}, "MarkedWriter": {"path": out}}
captured, sys.stdout = sys.stdout, io.StringIO()
report = Pipeline.from_config(document).run()
sys.stdout = captured
sys.exit(report.exit_status)
"""


def started(tmp_path: Path, fork: bool, thread: str) -> tuple[list[dict], str]:
    """Run the script; what each worker process said of itself, and the run's stdout."""
    out = tmp_path / "out.jsonl"
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(out), "fork" if fork else "spawn", thread], cwd=REPO,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    said = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert said[-1] == {"finished": True}
    return said[:-1], done.stdout


@pytest.mark.parametrize(("fork", "thread", "sees_script"), [
    (True, "alone", True), (False, "alone", False), (True, "thread", False), (True, "zmq-gc", True)],
    ids=["forked from the run", "fork_workers false", "another thread runs: fresh", "pyzmq's gc thread: forked"])
def test_each_worker_process_starts_afresh(tmp_path: Path, fork: bool, thread: str, sees_script: bool) -> None:
    workers, stdout = started(tmp_path, fork, thread)
    assert {worker["spawned"] for worker in workers} == {not sees_script}
    assert len({worker["pid"] for worker in workers}) == 2
    # A fork of the run sees what its script set up; a fresh interpreter imports the module anew.
    assert {worker["value"] for worker in workers} == {"set by the script" if sees_script else "as imported"}
    assert len({worker["numpy"] for worker in workers}) == 2  # numpy's global generator: one stream each
    assert len({worker["random"] for worker in workers}) == 2
    assert all(worker["sigterm_default"] and worker["sigpipe_ignored"] for worker in workers)  # a fresh interpreter's
    for worker in workers:  # to the run's file 1, not to the object the script put in sys.stdout
        assert f"worker {worker['pid']} started" in stdout


#: A step class of the script itself, in 2 worker processes: forked, or with fork_workers false.
SCRIPT_CLASS = """
import sys
from pipeline import Component, ConfigError, Pipeline

class Double(Component):
    def run(self, n):
        return 2 * n

document = {"version": 1, "Pipeline": {
    "gui": False, "progress": False, "fork_workers": sys.argv[1] == "fork",
    "producer_conf": {"name": "P", "module": "algorithms.basic", "class": "Counter", "next_steps": "D"},
    "stagers_conf": [{"name": "D", "module": "__main__", "class": "Double", "nb_process": 2, "next_steps": "W"}],
    "consumer_conf": {"name": "W", "module": "algorithms.basic", "class": "PassThrough"}},
    "Counter": {"count": 10}}
try:
    print(Pipeline.from_config(document).run()["D"].processed)
except ConfigError as err:
    print(err)
"""


@pytest.mark.parametrize(("how", "said"), [
    ("fork", "10"),
    ("fresh", "<config>: Pipeline.stagers_conf[0]: step D: its class Double is defined in the running script "
              "(__main__), which worker processes that start afresh cannot import (fork_workers is false): define "
              "it in a module, or run the step in threads"),
])
def test_a_class_of_the_script_runs_in_worker_processes_forked_from_it(tmp_path: Path, how: str, said: str) -> None:
    """Worker processes that start afresh cannot import the script: each failed to load it and died, one after
    another, and the run failed as a step with no worker left. Said before the run, as a setting."""
    done = subprocess.run([sys.executable, "-c", SCRIPT_CLASS, how], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.stdout.splitlines() == [said], done.stderr


def test_pipeline_run_forks_its_worker_processes(tmp_path: Path) -> None:
    """pipeline-run runs a thread that writes stderr and one that watches signals before its run starts: both are
    safe to fork beside, so its worker processes are forked too, and what they log and print reaches its stderr
    and stdout through fresh streams, not through the run's writer thread (which a fork does not copy)."""
    out = tmp_path / "out.jsonl"
    config = tmp_path / "start.json"
    config.write_text(json.dumps({"version": 1, "Pipeline": {
        "producer_conf": {"name": "P", "module": "algorithms.basic", "class": "Counter", "next_steps": "S"},
        "stagers_conf": [{"name": "S", "module": "tests.start_steps", "class": "Origin", "nb_process": 2,
                          "next_steps": "W"}],
        "consumer_conf": {"name": "W", "module": "tests.failure_steps", "class": "MarkedWriter"}},
        "Counter": {"count": 0}, "MarkedWriter": {"path": str(out)}}), encoding="utf-8")
    run = run_to_end(config, timeout=60)
    assert run.returncode == 0, run.stderr
    workers = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()][:-1]
    assert len({worker["pid"] for worker in workers}) == 2
    assert not any(worker["spawned"] for worker in workers)
    assert all(worker["sigterm_default"] and worker["sigpipe_ignored"] for worker in workers)
    for worker in workers:
        assert f"worker {worker['pid']} started" in run.stdout
        assert f"worker {worker['pid']} logs" in run.stderr
        assert "[S process" in run.stderr  # in the worker process's own format


#: A run of 4 worker processes whose zygote is stopped (SIGSTOP): "at start", as soon as it is forked (it answers no
#: fork, and the worker processes start from scratch: their step only passes messages on, or "leaving a thread" that
#: never ends, with a run that would wait a minute for them to end), or "at finish", by the step's finish() (it reports
#: no worker process's end). Prints the exit status, what the step processed and the run's wall time.
STOPPED_ZYGOTE = """
import os, signal, sys
from pipeline import Pipeline
from pipeline.engine.zygote import Zygote

when = sys.argv[1]
if when in ("at start", "leaving a thread"):
    made = Zygote.forked_from_here.__func__

    def stopped(cls):
        zygote = made(cls)
        os.kill(zygote.pid, signal.SIGSTOP)
        return zygote

    Zygote.forked_from_here = classmethod(stopped)
step = {"at start": ["algorithms.basic", "PassThrough"], "at finish": ["tests.start_steps", "StopsItsZygote"],
        "leaving a thread": ["tests.leftover_steps", "LeavesThread"]}[when]
document = {"version": 1, "Pipeline": {
    "gui": False, "progress": False, "shutdown_timeout": 60 if when == "leaving a thread" else 10,
    "producer_conf": {"name": "P", "module": "algorithms.basic", "class": "Counter", "next_steps": "S"},
    "stagers_conf": [{"name": "S", "module": step[0], "class": step[1], "nb_process": 4, "next_steps": "W"}],
    "consumer_conf": {"name": "W", "module": "algorithms.basic", "class": "PassThrough"}},
    "Counter": {"count": 50}}
report = Pipeline.from_config(document).run()
print(report.exit_status, report["S"].processed, report.wall_time)
"""


def run_with_stopped_zygote(when: str) -> tuple[int, int, float, str]:
    """Run STOPPED_ZYGOTE: its exit status, the messages its step processed, its wall time and its stderr."""
    done = subprocess.run([sys.executable, "-c", STOPPED_ZYGOTE, when], cwd=REPO, capture_output=True, text=True,
                          timeout=90, env={**os.environ, "PYTHONPATH": str(REPO)})
    status, processed, wall_time = done.stdout.split()
    return int(status), int(processed), float(wall_time), done.stderr


def test_a_zygote_that_answers_no_fork_is_asked_once() -> None:
    """A stopped zygote held up each worker process's start for FORK_SECONDS, one after another (and a drain behind
    them): once a fork goes unanswered, the others start from scratch at once."""
    status, processed, wall_time, stderr = run_with_stopped_zygote("at start")
    assert (status, processed) == (0, 50), stderr
    assert stderr.count("did not answer a fork within") == 1, stderr
    assert wall_time < 2 * zygote_module.FORK_SECONDS, stderr  # one wait, where 4 took 4 x FORK_SECONDS


def test_a_worker_process_from_scratch_ends_without_waiting_for_the_threads_its_step_left() -> None:
    """Started from scratch, it ran its interpreter's exit, which waits for every thread that is no daemon: with one its
    step left running, the run waited its shutdown_timeout and killed it (a forked one always ended at once)."""
    status, processed, _, stderr = run_with_stopped_zygote("leaving a thread")
    assert (status, processed) == (0, 50), stderr


def test_the_waits_for_unreported_ends_overlap() -> None:
    """A zygote stopped at the end of the run reports no worker process's end: each is taken for ended after
    UNREPORTED_EXIT_SECONDS, which counted from its own first look, so that the end waited as long per process."""
    status, processed, wall_time, stderr = run_with_stopped_zygote("at finish")
    assert (status, processed) == (0, 50), stderr
    assert wall_time < 4 * zygote_module.UNREPORTED_EXIT_SECONDS, stderr  # once, where 4 waited 4 times as long


#: The argv of a worker process that leaves at once, silently: it is told that its parent is no process (0).
LEAVING_WORKER = ["--spec=-", "--board=-", "--slot=0", "--parent=0"]


def give_up_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forks are given up on at once, the zygote started or not (monkeypatch.undo() ends it)."""
    monkeypatch.setattr(zygote_module, "FORK_SECONDS", 0.0)
    monkeypatch.setattr(zygote_module, "ZYGOTE_START_SECONDS", 0.0)


@contextlib.contextmanager
def spawned_zygote(**variables: str) -> Iterator[Zygote]:
    """A zygote in a fresh interpreter that imports this checkout, with ``variables`` in its environment (those of
    tests/held_zygote slow its start); ended after the test (once is enough)."""
    path = os.pathsep.join([str(REPO / "tests" / "held_zygote"), str(REPO)])
    made = Zygote.spawned({**os.environ, **variables, "PYTHONPATH": path})
    try:
        yield made
    finally:
        made.close()


def test_a_zygote_slow_to_start_is_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    """A spawned zygote's first fork waits for its start: FORK_SECONDS, counted from the request, took a zygote slow to
    import (a site hook, a loaded host) for a stuck one, and every worker process of the run started from scratch, after
    a warning."""
    monkeypatch.setattr(zygote_module, "FORK_SECONDS", 0.5)
    with spawned_zygote(SLOW_ZYGOTE="1.5") as zygote:
        child = zygote.fork(LEAVING_WORKER)
        assert child is not None
        assert child.wait(20) is not None
        assert not zygote.unanswered


def test_a_zygote_stopped_as_it_starts_is_given_up_on_after_fork_seconds(monkeypatch: pytest.MonkeyPatch) -> None:
    """A zygote stopped (SIGSTOP) is stuck, starting or not: its fork is given up on as soon as of a started one."""
    monkeypatch.setattr(zygote_module, "FORK_SECONDS", 0.5)
    with spawned_zygote(SLOW_ZYGOTE="1") as zygote:
        os.kill(zygote.pid, signal.SIGSTOP)
        asked = time.monotonic()
        assert zygote.fork(LEAVING_WORKER) is None
        assert time.monotonic() - asked < zygote_module.ZYGOTE_START_SECONDS / 10
        assert zygote.unanswered


@pytest.fixture
def zygote() -> Iterator[Zygote]:
    """A zygote in a fresh interpreter that imports this checkout; ended after the test (once is enough)."""
    made = Zygote.spawned({**os.environ, "PYTHONPATH": str(REPO)})
    yield made
    made.close()


@pytest.mark.parametrize("parent", ["ends", "is killed"])
def test_the_zygote_removes_what_a_killed_parent_leaves_and_nothing_else(tmp_path: Path, zygote: Zygote,
                                                                         parent: str) -> None:
    """Each fork request names the files its parent removes at its end (a worker process's rings, the private
    directory): the zygote removes them when the parent is killed (their socket closes without its last word),
    never when it ends (it says so before closing, and removes its files itself)."""
    ring, directory = tmp_path / "ring", tmp_path / "private"
    ring.write_bytes(b"shared memory")
    directory.mkdir()
    (directory / "spec-0").write_bytes(b"a spec")
    assert zygote.fork(LEAVING_WORKER, [ring, directory]) is not None
    if parent == "ends":
        zygote.close()
    else:
        zygote.sock.close()  # as the kernel closes a killed process's files
        zygote.process.wait(10)
    assert zygote.process.poll() is not None
    assert ring.exists() == directory.exists() == (parent == "ends")


def test_a_fork_answered_too_late_leaves_no_worker_process(tmp_path: Path, zygote: Zygote,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Past FORK_SECONDS the keeper starts the worker process another way: a child the zygote forks after that is
    one too many, killed when its late answer comes, and that answer breaks nothing."""
    children = Path(f"/proc/{zygote.pid}/task/{zygote.pid}/children")
    give_up_at_once(monkeypatch)
    assert zygote.fork(waiting_worker(tmp_path / "spec", zygote)) is None
    monkeypatch.undo()
    deadline = time.monotonic() + 20
    late: list[str] = []
    while not late or Path(f"/proc/{late[0]}").exists():  # forked, then killed and reaped
        assert time.monotonic() < deadline, f"the late child {late} still runs"
        zygote.collect(0.05)  # takes the late answer (and later the child's end)
        late = late or children.read_text().split()


def waiting_worker(spec: Path, zygote: Zygote) -> list[str]:
    """The argv of a worker process that waits to read its spec, a FIFO no one writes: it lives until killed."""
    os.mkfifo(spec)
    return [f"--spec={spec}", "--board=-", "--slot=0", f"--parent={zygote.pid}"]


def test_a_late_answer_is_not_taken_for_the_next_request(tmp_path: Path, zygote: Zygote,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """The answer to a fork given up on (past FORK_SECONDS) may come after the next request was sent: it is the
    late request's, killed as it comes, and the next request gets its own process."""
    give_up_at_once(monkeypatch)
    assert zygote.fork(waiting_worker(tmp_path / "late", zygote)) is None
    monkeypatch.undo()
    children = Path(f"/proc/{zygote.pid}/task/{zygote.pid}/children")
    child = zygote.fork(LEAVING_WORKER)
    assert child is not None
    assert child.wait(20) is not None  # the process that leaves at once, not the late one that waits for ever
    deadline = time.monotonic() + 20
    while children.read_text().split():  # the late one is killed and reaped
        assert time.monotonic() < deadline, f"the late child {children.read_text()} still runs"
        zygote.collect(0.05)


def test_a_late_fork_is_killed_at_the_keepers_next_look_with_no_other_process_left(
        tmp_path: Path, zygote: Zygote, monkeypatch: pytest.MonkeyPatch) -> None:
    """A fork given up on (the zygote stopped, its one worker process then replaced from scratch) answered later,
    when no process of the zygote is left to poll: the keeper's next look takes the answer and kills that process;
    it lived beside its replacement until the run ended, its rings in /dev/shm."""
    give_up_at_once(monkeypatch)
    assert zygote.fork(waiting_worker(tmp_path / "late", zygote)) is None
    monkeypatch.undo()
    keeper = ProcessKeeper(tmp_path, 1.0, zygote)
    children = Path(f"/proc/{zygote.pid}/task/{zygote.pid}/children")
    deadline = time.monotonic() + 20
    while not children.read_text().split():  # the late child is forked
        assert time.monotonic() < deadline, "the zygote forked nothing"
        time.sleep(0.01)  # polling /proc: no event says when the zygote forked
    while children.read_text().split():  # the keeper's looks take the late answer: the child is killed and reaped
        assert time.monotonic() < deadline, f"the late child {children.read_text()} still runs"
        assert keeper.deaths() == []
        time.sleep(0.01)  # the supervisor's looks come every LOOK_SECONDS; nothing else here reads the zygote


def test_the_zygote_outlives_a_sigterm_while_its_parent_lives(zygote: Zygote) -> None:
    """The kernel sends the zygote SIGTERM when the parent's thread that made it ends (PR_SET_PDEATHSIG follows the
    thread): while the parent process lives, the zygote goes on forking, and leaves when the parent says so."""
    assert zygote.fork(LEAVING_WORKER) is not None  # it serves
    os.kill(zygote.pid, signal.SIGTERM)
    assert zygote.fork(LEAVING_WORKER) is not None  # it still does
    assert zygote.process.poll() is None
    zygote.close()
    assert zygote.process.poll() is not None


def test_the_zygote_is_waited_for_with_a_deadline_without_pidfd(monkeypatch: pytest.MonkeyPatch) -> None:
    """On a kernel before 5.3 (RHEL 8's 4.18) a wait for the zygote ignored its timeout and could wait for ever."""
    def no_pidfd(pid: int) -> int:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(os, "pidfd_open", no_pidfd)
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        forked = zygote_module._ForkedZygote(child.pid)
        with pytest.raises(subprocess.TimeoutExpired):
            forked.wait(0.2)
        child.kill()
        assert forked.wait(10) == -signal.SIGKILL
    finally:
        child.kill()
        with contextlib.suppress(ChildProcessError):
            os.waitpid(child.pid, 0)



#: A run of a step whose class is the script's, its zygote killed as soon as it is forked: its worker processes start
#: from scratch.
SCRIPT_CLASS_ZYGOTE_KILLED = """
import os, signal
from pipeline import Component, Pipeline
from pipeline.engine.zygote import Zygote

made = Zygote.forked_from_here.__func__


def killed(cls):
    zygote = made(cls)
    os.kill(zygote.pid, signal.SIGKILL)
    return zygote


class Double(Component):
    def run(self, n):
        return 2 * n


Zygote.forked_from_here = classmethod(killed)
document = {"version": 1, "Pipeline": {
    "gui": False, "progress": False,
    "producer_conf": {"name": "P", "module": "algorithms.basic", "class": "Counter", "next_steps": "D"},
    "stagers_conf": [{"name": "D", "module": "__main__", "class": "Double", "nb_process": 1, "next_steps": "W"}],
    "consumer_conf": {"name": "W", "module": "algorithms.basic", "class": "PassThrough"}},
    "Counter": {"count": 10}}
print(Pipeline.from_config(document).run().exit_status)
"""


def test_a_class_of_the_script_whose_zygote_is_gone_says_why_it_cannot_load() -> None:
    """Worker processes that start from scratch when the zygote is gone cannot load a class of the script: their
    death said only AttributeError, as if the class were missing."""
    done = subprocess.run([sys.executable, "-c", SCRIPT_CLASS_ZYGOTE_KILLED], cwd=REPO, capture_output=True,
                          text=True, timeout=50, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.stdout.split() == ["1"], done.stderr
    assert ("cannot load __main__.Double: AttributeError: module '__main__' has no attribute 'Double'; the class is "
            "the running script's, which only a worker process forked from the run's zygote has") in done.stderr


#: Options given from Python that a worker process cannot be given as they are: a lambda, an object of the script's own
#: class, a step class of a module made in memory. argv: the case, then "fork" or "fresh" (fork_workers false).
#: Prints the values the consumer got, sorted, or the ConfigError.
UNSENDABLE = """
import sys, types
import tests.start_steps as steps
from pipeline import ConfigError, Pipeline

class Tenfold:
    def __call__(self, n):
        return 10 * n

case, how = sys.argv[1:]
stager = {"name": "S", "module": "algorithms.basic", "class": "PassThrough", "nb_process": 2, "next_steps": "C"}
consumer = {"name": "C", "module": "tests.start_steps", "class": "Applies"}
given = {"Counter": {"count": 5}}
if case == "lambda of the consumer in threads":
    given["Applies"] = {"fn": lambda n: 10 * n}
elif case == "lambda of the stage in processes":
    stager.update(module="tests.start_steps", **{"class": "Applies"})
    consumer.update(module="algorithms.basic", **{"class": "PassThrough"})
    given["Applies"] = {"fn": lambda n: 10 * n}
elif case == "script's object for the stage in processes":
    stager.update(module="tests.start_steps", **{"class": "Applies"}, config={"fn": Tenfold()})
    consumer.update(module="algorithms.basic", **{"class": "PassThrough"})
elif case == "class of a module made in memory":
    made = types.ModuleType("made_in_memory")
    exec("from pipeline import Component\\nclass Same(Component):\\n    def run(self, n):\\n        return n\\n",
         made.__dict__)
    sys.modules["made_in_memory"] = made
    stager.update(module="made_in_memory", **{"class": "Same"})
    consumer.update(module="algorithms.basic", **{"class": "PassThrough"})
document = {"version": 1, "Pipeline": {
    "gui": False, "progress": False, "fork_workers": how == "fork",
    "producer_conf": {"name": "P", "module": "algorithms.basic", "class": "Counter", "next_steps": "S"},
    "stagers_conf": [stager], "consumer_conf": consumer}}
try:
    report = Pipeline.from_config(document, given).run()
    print(report.exit_status, report["C"].received, sorted(steps.APPLIED))
except ConfigError as err:
    print(err)
"""

_GIVEN = "cannot be given to the worker processes of step S: {}"
#: How a line that says what cannot be given ends.
_EXPECTED = ("(expected a value pickle can copy, of a class or function defined at the top of a module; or run the "
             "step in threads)")


@pytest.mark.parametrize(("case", "how", "said"), [
    ("lambda of the consumer in threads", "fork", "0 5 [0, 10, 20, 30, 40]"),
    ("lambda of the consumer in threads", "fresh", "0 5 [0, 10, 20, 30, 40]"),
    ("lambda of the stage in processes", "fork", "overrides: Applies.fn: " + _GIVEN.format(
        "pickle cannot copy it (PicklingError: Can't pickle <function <lambda>")),
    ("script's object for the stage in processes", "fork", "0 5 []"),
    ("script's object for the stage in processes", "fresh", "<config>: Pipeline.stagers_conf[0].config.fn: "
        + _GIVEN.format("it refers to the running script (__main__), which worker processes that start afresh cannot "
                        "import (fork_workers is false)")),
    ("class of a module made in memory", "fork", "0 5 []"),
    ("class of a module made in memory", "fresh", "<config>: Pipeline.stagers_conf[0]: step S: its class Same is "
        "defined in module made_in_memory, made in memory, which worker processes that start afresh cannot import "
        "(fork_workers is false): define it in a module, or run the step in threads"),
])
def test_what_a_worker_process_cannot_be_given_is_refused_before_the_run(case: str, how: str, said: str) -> None:
    """A lambda given to a step in threads stopped a run whose other step had worker processes on an internal error
    (the spec they are sent carried every option); given to the step in worker processes, or an object of the script's
    class to ones that start afresh, each process died in turn with a traceback; so did a class of a module made in
    memory. Now what goes is what the processes' steps read, and what cannot go is refused in one line naming it."""
    done = subprocess.run([sys.executable, "-c", UNSENDABLE, case, how], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    line = done.stdout.splitlines()[0]
    assert line.startswith(said), done.stdout + done.stderr
    assert line.endswith(_EXPECTED) or "given" not in said
    assert "Traceback" not in done.stderr, done.stderr
