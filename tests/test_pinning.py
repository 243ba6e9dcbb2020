"""Worker processes on cores of their own (engine.pinning): the choice of cores and when one is let go, then real
runs: pinned, not pinned, and let go when another program loads its core."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.engine.pinning import WAIT_SHARE, WINDOW_SECONDS, Pinning
from tests.process_helpers import STEPS, chain, finish_run, kill_group, lines, start_run, wait_for

CORES = frozenset(os.sched_getaffinity(0))
needs_two_cores = pytest.mark.skipif(len(CORES) < 2, reason="pinning needs 2 cores at least")


class Clock:
    """A clock the test moves."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def pinning(cores: set[int], processes: int, waits: dict[int, dict[int, int]] | None = None,
            clock: Clock | None = None, siblings: int = 1) -> tuple[Pinning, list[int]]:
    """A Pinning of ``cores`` whose processes' threads waited ``waits`` (pid: {thread: ns}), and the pids it let go;
    ``siblings``: hardware threads of a physical core, numbered one after the other."""
    released: list[int] = []
    def waited(pid: int) -> dict[int, int] | None:
        return dict((waits or {})[pid]) if pid in (waits or {}) else None  # read now, as /proc is

    made = Pinning(frozenset(cores), processes, clock or Clock(), waited, lambda pid, cores: released.append(pid),
                   lambda core: (0, core // siblings))
    return made, released


def test_each_process_gets_a_core_no_other_has_and_a_dead_ones_core_is_free_again() -> None:
    made, _ = pinning({3, 5, 7}, 3)
    assert [made.core_for(slot) for slot in (0, 1, 2)] == [3, 5, 7]
    assert made.core_for(3) is None  # a fourth, beyond the cores: anywhere
    made.ended(1)
    assert made.core_for(4) == 5


def test_processes_take_a_physical_core_each_before_they_share_one() -> None:
    made, _ = pinning({0, 1, 2, 3}, 4, siblings=2)  # physical cores {0, 1} and {2, 3}
    assert [made.core_for(slot) for slot in range(4)] == [0, 2, 1, 3]
    made.ended(1)
    assert made.core_for(4) == 2


@pytest.mark.parametrize(("cores", "processes"), [({0}, 1), ({0, 1}, 3)], ids=["one-core", "more-processes"])
def test_no_process_is_pinned_with_one_core_or_more_processes_than_cores(cores: set[int], processes: int) -> None:
    made, _ = pinning(cores, processes)
    assert made.core_for(0) is None


def test_a_process_a_thread_of_which_waits_for_its_core_is_let_go_after_a_window() -> None:
    clock = Clock()
    waits = {10: {10: 0, 11: 0}, 20: {20: 0}}
    made, released = pinning({0, 1}, 2, waits, clock)
    made.core_for(0), made.core_for(1)
    assert made.look([(0, 10), (1, 20)]) == []  # the windows begin
    waits[10][11] = waits[20][20] = int(0.9 * WINDOW_SECONDS * 1e9)  # within the window: not judged yet
    clock.now += WINDOW_SECONDS / 2
    assert made.look([(0, 10), (1, 20)]) == []
    waits[20][20] = int(WAIT_SHARE / 2 * WINDOW_SECONDS * 1e9)  # pid 20: below the share over its window
    clock.now += WINDOW_SECONDS / 2
    assert made.look([(0, 10), (1, 20)]) == [(0, 0, pytest.approx(0.9))]
    assert released == [10] and made.pinned == {1: 1}
    assert made.core_for(2) == 0  # its core is free for another
    clock.now += 10 * WINDOW_SECONDS
    assert made.look([(0, 10), (1, 20)]) == []  # let go for good: never judged again
    assert released == [10]


def test_a_gone_process_and_one_not_started_are_not_judged() -> None:
    clock = Clock()
    made, released = pinning({0, 1}, 2, {}, clock)
    made.core_for(0), made.core_for(1)
    made.look([(0, 10), (1, None)])
    clock.now += 2 * WINDOW_SECONDS
    assert made.look([(0, 10), (1, None)]) == [] and released == []


def cores_seen(path: Path) -> dict[int, list[set[int]]]:
    """The cores each process said it may run on, in the order it said them (tests/process_steps.py Cores)."""
    seen: dict[int, list[set[int]]] = {}
    for line in lines(path):
        pid, cores = line.split()
        seen.setdefault(int(pid), []).append({int(core) for core in cores.split(",")})
    return seen


def cores_run(tmp_path: Path, count: int, *options: str) -> tuple[subprocess.Popen, Path]:
    """A run whose stage (Cores) runs in 2 worker processes, started."""
    path = chain(tmp_path, {"nb_process": 2, "class": "Cores", "module": STEPS}, count=count,
                 Cores={"path": str(tmp_path / "cores")})
    return start_run(path, *options), tmp_path / "cores"


@needs_two_cores
def test_two_worker_processes_each_keep_a_core_of_their_own(tmp_path: Path) -> None:
    """Each starts on one core, not the other's (a window passes before any could be let go: far longer than its
    start, even on a loaded machine)."""
    run, path = cores_run(tmp_path, 200)
    result = finish_run(run, 30)
    assert result.returncode == 0, result.stderr
    first = [said[0] for said in cores_seen(path).values()]
    assert len(first) == 2 and all(len(cores) == 1 for cores in first) and first[0] != first[1], lines(path)


@needs_two_cores
def test_with_pin_workers_false_the_worker_processes_run_on_any_core(tmp_path: Path) -> None:
    run, path = cores_run(tmp_path, 200, "--Pipeline.pin_workers=False")
    result = finish_run(run, 30)
    assert result.returncode == 0, result.stderr
    assert [said for said in cores_seen(path).values()] == [[set(CORES)], [set(CORES)]]


@needs_two_cores
def test_a_worker_process_whose_core_another_program_loads_is_let_go(tmp_path: Path) -> None:
    """A busy loop on the core of one worker process: within seconds that process runs on any core, the other keeps
    its own, and the run loses nothing."""
    run, path = cores_run(tmp_path, 1_000_000, "--log-level=INFO")
    wait_for(lambda: len(cores_seen(path)) == 2, 20, "two worker processes")
    pid, said = next(iter(cores_seen(path).items()))
    (core,) = said[0]
    busy = subprocess.Popen([sys.executable, "-c", f"import os; os.sched_setaffinity(0, {{{core}}})\nwhile True: pass"])
    try:
        wait_for(lambda: set(CORES) in cores_seen(path)[pid], 20, f"worker process {pid} let go of core {core}")
    finally:
        busy.kill()
        busy.wait()
    other = next(said for each, said in cores_seen(path).items() if each != pid)
    run.send_signal(signal.SIGINT)
    result = finish_run(run, 30)
    assert result.returncode == 130, result.stderr
    assert f"left core {core}, where a thread of it waited for " in result.stderr
    assert len(other[0]) == 1
    kill_group(run)
