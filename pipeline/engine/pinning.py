"""Each of a run's worker processes on a core of its own, while that core is its own.

A worker process that the scheduler moves to another core finds the caches of that core cold: on 2
cores, 2 worker processes of camera events (W7) ran about 3% faster pinned, each to its core
(docs/performance.md). A pinned process cannot leave a core that another program loads, though (a
laptop, a shared node, a second pipeline on the host): there it would run at a fraction of its speed
beside an idle core. So the run pins a worker process only while it has no more of them than the cores
it may use, each to a core no other of them has (on another physical core than theirs while there is one: two
hardware threads of one core share its caches and its units), and lets go of one, for good, as soon as it waits for
its core more than WAIT_SHARE of the time, any of its threads (the run's own threads, which are not
pinned, take their share of every core, far less than that).

The process pins itself as it starts (``--cpu``), before it starts a thread, so that its threads keep
that core; the run's supervisor lets it go from outside, each of its threads (``sched_setaffinity``
sets the cores of one thread). The waits are the kernel's (``/proc/PID/task/TID/schedstat``: the time
each thread was runnable and waited for a core).
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

#: The share of the time a thread of a pinned process may wait for its core before the process is let go: a program
#: as busy as it on its core makes it wait about half the time; the run's own threads, a tenth.
WAIT_SHARE = 0.25
#: The seconds over which a pinned process's waits are summed before they are judged: long enough that a burst of
#: the run's own threads (its start, its end) is no load, short enough that a loaded core costs little.
WINDOW_SECONDS = 1.0


def allowed_cores() -> frozenset[int]:
    """The cores this process may run on (its affinity: a container's, a SLURM job's, taskset's)."""
    return frozenset(os.sched_getaffinity(0))


def physical_core(cpu: int) -> tuple[int, int]:
    """The physical core of logical ``cpu`` (its package and core numbers, from sysfs); ``(-1, cpu)`` where sysfs does
    not say (each its own)."""
    topology = Path(f"/sys/devices/system/cpu/cpu{cpu}/topology")
    try:
        return int((topology / "physical_package_id").read_text()), int((topology / "core_id").read_text())
    except (OSError, ValueError):
        return (-1, cpu)


def waited_ns(pid: int) -> dict[int, int] | None:
    """The nanoseconds each thread of process ``pid`` alive now has waited for a core, by thread id; None if the
    process is gone."""
    waits = {}
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    for task in tasks:
        # A thread that ended meanwhile waits no more.
        with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{pid}/task/{task}/schedstat",
                                                                        encoding="ascii") as stats:
            waits[int(task)] = int(stats.read().split()[1])
    return waits


def let_go(pid: int, cores: frozenset[int]) -> None:
    """Let each thread of process ``pid`` run on any of ``cores`` (a process that is gone has nothing to let go)."""
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):  # a thread that ended meanwhile
                os.sched_setaffinity(int(task), cores)


class Pinning:
    """Which core each pinned worker process (by slot) keeps, and when to let one go (not thread-safe: the
    supervisor's alone)."""

    def __init__(self, cores: frozenset[int], processes: int, clock: Callable[[], float] = time.monotonic,
                 waited: Callable[[int], dict[int, int] | None] = waited_ns,
                 release: Callable[[int, frozenset[int]], None] = let_go,
                 physical: Callable[[int], tuple[int, int]] = physical_core) -> None:
        # Pinned only with a core for each of the run's worker processes: with more of them than cores the scheduler
        # shares the cores among them better than fixed places would.
        self.cores = cores if len(cores) > 1 and processes <= len(cores) else frozenset()
        self.clock = clock
        self.waited = waited
        self.release = release
        self.physical = {core: physical(core) for core in self.cores}
        self.pinned: dict[int, int] = {}  # slot: its core
        self._since: dict[int, tuple[float, dict[int, int]]] = {}  # slot: when its window began, its threads' waits

    def core_for(self, slot: int) -> int | None:
        """The core for the process starting in ``slot`` (None: it runs on any core)."""
        taken = [self.physical[core] for core in self.pinned.values()]
        free = sorted(self.cores - set(self.pinned.values()), key=lambda core: (taken.count(self.physical[core]), core))
        if not free:
            return None
        self.pinned[slot] = free[0]
        return free[0]

    def ended(self, slot: int) -> None:
        """The process of ``slot`` ended (or could not start): its core is free."""
        self.pinned.pop(slot, None)
        self._since.pop(slot, None)

    def look(self, processes: Iterable[tuple[int, int | None]]) -> list[tuple[int, int, float]]:
        """Judge the pinned ones of ``processes`` (slot, pid), each once a window: let go of those a thread of which
        waited for their core more than WAIT_SHARE of it; each (slot, core, share of the window that thread waited)
        let go."""
        now = self.clock()
        released = []
        for slot, pid in processes:
            if slot not in self.pinned or pid is None:
                continue
            waited = self.waited(pid)
            if waited is None:
                continue
            began, before = self._since.setdefault(slot, (now, waited))
            if now - began < WINDOW_SECONDS:
                continue
            share = max((waited[thread] - before[thread] for thread in waited.keys() & before.keys()),
                        default=0) / 1e9 / (now - began)
            self._since[slot] = (now, waited)
            if share > WAIT_SHARE:
                self.release(pid, self.cores)
                released.append((slot, self.pinned[slot], share))
                self.ended(slot)
        return released
