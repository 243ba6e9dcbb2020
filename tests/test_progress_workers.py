"""Worker processes and remote workers in the terminal table and the progress log line: where a step's
workers run (``2p+1r``), redeliveries and restarts, remote workers by key and host, late heartbeats;
at any width, never a number cut into another."""

from __future__ import annotations

import io
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from pipeline.config import load_config
from pipeline.console.humanize import abbreviated
from pipeline.execution.report import StepCounts
from pipeline.execution.status import RunStatus, StepStatus, WorkerProcessStatus
from pipeline.monitor.progress import progress_line
from pipeline.monitor.terminal import progress_table
from pipeline.monitor.workers import LATE_SECONDS, heartbeat, is_late, label, troubles, worker_mix

CONFIG = load_config({"version": 1, "Pipeline": {
    "producer_conf": {"name": "READ", "module": "algorithms.basic", "class": "Counter", "next_steps": "HILLAS"},
    "stagers_conf": [{"name": "HILLAS", "module": "algorithms.basic", "class": "PassThrough", "nb_process": 2,
                      "next_steps": "WRITE"}],
    "consumer_conf": {"name": "WRITE", "module": "algorithms.basic", "class": "PassThrough"},
}})


def local(slot: int, pid: int, silent: float = 0.3, threads: int = 1) -> WorkerProcessStatus:
    return WorkerProcessStatus(slot, "process", pid, "", "", threads, silent)


def remote(slot: int, key: str, host: str, silent: float = 0.1, threads: int = 2) -> WorkerProcessStatus:
    return WorkerProcessStatus(slot, "remote", 4000 + slot, host, key, threads, silent)


def run_status(redelivered: int = 3, restarts: int = 1, workers: list[WorkerProcessStatus] | None = None,
               processed: int = 590) -> RunStatus:
    """READ (threads) -> HILLAS (2 worker processes of the run, 1 remote worker of 2 threads) -> WRITE."""
    if workers is None:
        workers = [local(0, 1234), local(1, 1240), remote(2, "node7", "10.0.0.7")]
    return RunStatus("running", 4.2, [
        StepStatus("READ", state="running", counts=StepCounts(0, 600, 600, 0)),
        StepStatus("HILLAS", state="running", queue=5, queue_limit=64, busy=3, workers=4, processes=2,
                   redelivered=redelivered, restarts=restarts, counts=StepCounts(600, processed, processed, 0),
                   worker_processes=workers),
        StepStatus("WRITE", state="running", queue=0, queue_limit=64, counts=StepCounts(590, 580, 0, 0)),
    ])


def render(status: RunStatus, width: int) -> list[str]:
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(progress_table(CONFIG, status, {}, width))
    return out.getvalue().splitlines()


# -- the mix, in every display's words -------------------------------------------------------


@pytest.mark.parametrize(("workers", "processes", "live", "remote_only", "text", "plain"), [
    (2, 0, [], False, "2t", True),  # threads of the run
    (4, 2, [local(0, 10, threads=2), local(1, 11, threads=2)], False, "2p", False),
    (4, 2, [local(0, 10), local(1, 11), remote(2, "node7", "h")], False, "2p+1r", False),
    (3, 0, [remote(0, "node7", "h")], False, "1t+1r", False),  # one thread of the run, a remote worker of two
    (0, 0, [], False, "0", True),  # a step of threads that has none now
    (0, 0, [], True, "0r", False),  # a step of remote workers only (nb_thread 0) waiting for one, or left by it
    (2, 0, [remote(0, "a", "h"), remote(1, "b", "h", threads=1)], True, "2r", False),  # remote only
    (2, 2, [], False, "0p", False),  # every worker process died, replacements on their way
])
def test_where_the_workers_run(workers: int, processes: int, live: list[WorkerProcessStatus], remote_only: bool,
                               text: str, plain: bool) -> None:
    mix = worker_mix(workers, processes, live, remote_only)
    assert (str(mix), mix.plain) == (text, plain)


def test_a_step_of_remote_workers_only_left_by_them_shows_0r_as_one_of_processes_shows_0p() -> None:
    """After its remote worker left, a remote-only step showed WORKERS ``0``, where a step of processes shows ``0p``."""
    config = load_config({"version": 1, "Pipeline": {
        "producer_conf": {"name": "READ", "module": "algorithms.basic", "class": "Counter", "next_steps": "HILLAS"},
        "stagers_conf": [{"name": "HILLAS", "module": "algorithms.basic", "class": "PassThrough", "nb_thread": 0,
                          "next_steps": "WRITE"}],
        "consumer_conf": {"name": "WRITE", "module": "algorithms.basic", "class": "PassThrough"}}})
    status = RunStatus("running", 4.2, [
        StepStatus("READ", state="running", counts=StepCounts(0, 600, 600, 0)),
        StepStatus("HILLAS", state="running", queue=5, queue_limit=64, workers=0, counts=StepCounts(600, 9, 9, 0)),
        StepStatus("WRITE", state="running", queue=0, queue_limit=64, counts=StepCounts(9, 9, 0, 0))])
    out = io.StringIO()
    Console(file=out, width=140, color_system=None).print(progress_table(config, status, {}, 140))
    lines = out.getvalue().splitlines()
    assert "WORKERS" in lines[1].split()
    assert lines[3].split()[:1] + lines[3].split()[-2:-1] == ["HILLAS", "0r"]
    assert "HILLAS processed=9 failed=0 queue=5/64 busy=0/0 rate=0.0/s workers=0r" in progress_line(config, status, {})


def test_heartbeats_labels_and_troubles() -> None:
    assert heartbeat(0.34) == "heartbeat 0.3 s ago" and heartbeat(75.4) == "heartbeat 75 s ago"
    assert heartbeat(-1.0) == "heartbeat 0.0 s ago" and heartbeat(1e300) == "heartbeat 86400 s ago"
    assert not is_late(LATE_SECONDS) and is_late(LATE_SECONDS + 0.1)
    assert label(local(0, 1234)) == "pid 1234" and label(remote(0, "node7", "10.0.0.7")) == "node7@10.0.0.7"
    assert label(WorkerProcessStatus(0, "process", None, "", "", 1, 0.0)) == "pid ?"
    assert troubles(0, 0) == "" and troubles(3, 0) == "3 redelivered" and troubles(0, 2) == "2 restarts"
    assert troubles(60_000, 1, abbreviated) == "60.0k redelivered, 1 restart"


# -- the terminal table --------------------------------------------------------------------


def test_the_table_shows_where_the_workers_run_and_a_note_on_them() -> None:
    workers = [local(0, 1234), local(1, 1240, silent=3.4), remote(2, "node7", "10.0.0.7")]
    lines = render(run_status(workers=workers), 140)
    assert lines[1].split() == ["STEP", "STATE", "PROCESSED", "FAILED", "QUEUE", "BUSY", "WORKERS", "RATE/S"]
    rows = {line.split()[0]: line.split() for line in lines[2:5]}
    assert rows["HILLAS"][-3:] == ["3/4", "2p+1r", "0.0"]
    assert rows["READ"][-2] == "1t"
    assert lines[5:] == ["HILLAS  3 redelivered · 1 restart · pid 1240 late 3 s · remote node7@10.0.0.7"]


def test_a_run_of_threads_keeps_its_table() -> None:
    status = run_status(0, 0, [])
    status.steps[1].processes, status.steps[1].workers = 0, 2
    lines = render(status, 140)
    assert "WORKERS" not in lines[1] and len(lines) == 5  # no column, no note


def test_a_narrow_terminal_counts_the_items_it_leaves_out() -> None:
    status = run_status(workers=[remote(i, f"node{i}", f"10.0.0.{i}") for i in range(5)])
    note = render(status, 60)[-1]
    assert note.startswith("HILLAS  3 redelivered · 1 restart · ") and re.search(r"\+(\d) more$", note)
    shown = note.count("remote ")
    assert shown + int(re.search(r"\+(\d) more$", note).group(1)) == 5  # type: ignore[union-attr]


_ITEM = re.compile(r"(?P<number>[\d.]+[kMGTPE]?) (redelivered|restarts?)|remote (?P<key>node\d+)@(?P<host>[\d.]+)|"
                   r"(remote )?(node\d+@[\d.]+|pid \d+) late \d+ s|\+(?P<more>\d+) more")


@settings(max_examples=60, deadline=None)
@given(width=st.integers(24, 160), redelivered=st.integers(0, 10**12), restarts=st.integers(0, 10**6),
       remotes=st.integers(0, 6), late=st.booleans(), name=st.text("ABCDEFGHIJ", min_size=1, max_size=30))
def test_a_note_is_cut_between_its_items_never_inside_one(width: int, redelivered: int, restarts: int,
                                                          remotes: int, late: bool, name: str) -> None:
    workers = [remote(i, f"node{i}", f"10.0.{i}.{i + 1}") for i in range(remotes)]
    workers.append(local(9, 123, silent=5.0 if late else 0.2))
    status = run_status(redelivered, restarts, workers)
    status.steps[1].name = name
    config = load_config({"version": 1, "Pipeline": {
        "producer_conf": {"name": "READ", "module": "algorithms.basic", "class": "Counter", "next_steps": name},
        "stagers_conf": [{"name": name, "module": "algorithms.basic", "class": "PassThrough", "nb_process": 2,
                          "next_steps": "WRITE"}],
        "consumer_conf": {"name": "WRITE", "module": "algorithms.basic", "class": "PassThrough"}}})
    out = io.StringIO()
    Console(file=out, width=width, color_system=None).print(progress_table(config, status, {}, width))
    lines = out.getvalue().splitlines()
    assert all(len(line) <= width for line in lines)
    expected = (redelivered > 0) + (restarts > 0) + remotes + late
    notes = lines[5:]
    assert len(notes) == (1 if expected else 0)
    if not notes:
        return
    shown_name, _, rest = notes[0].partition("  ")
    head, cut, tail = shown_name.partition("…")
    assert shown_name == name or (cut and name.startswith(head) and name.endswith(tail))
    items = rest.split(" · ") if rest else []
    count = 0
    for item in items:
        match = _ITEM.fullmatch(item)
        assert match, f"{item!r} is cut"
        if match.group("more"):
            count += int(match.group("more"))
        else:
            count += 1
        if match.group("number"):
            assert match.group("number") in ({str(redelivered), abbreviated(redelivered)} if "redelivered" in item
                                             else {str(restarts), abbreviated(restarts)})
    assert count == expected


# -- the log line --------------------------------------------------------------------------


def test_the_log_line_says_where_the_workers_run_after_the_usual_fields() -> None:
    line = progress_line(CONFIG, run_status(), {"HILLAS": 12.5})
    parts = line.split(": ", 1)[1].split(" | ")
    assert parts[0] == "READ processed=600 failed=0 queue=- busy=0/1 rate=0.0/s"
    assert parts[1] == ("HILLAS processed=590 failed=0 queue=5/64 busy=3/4 rate=12.5/s workers=2p+1r "
                        "redelivered=3 restarts=1")
    quiet = progress_line(CONFIG, run_status(0, 0, [local(0, 1), local(1, 2)]), {})
    assert " | HILLAS processed=590 failed=0 queue=5/64 busy=3/4 rate=0.0/s workers=2p | " in quiet
