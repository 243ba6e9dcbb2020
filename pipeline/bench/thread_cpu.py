"""Where the microseconds go, per thread: ``python -m pipeline.bench.thread_cpu [--events] [--count=N]``.

Runs pipeline-bench's W1 workload (tiny dicts: producer -> pass-through stager -> consumer) in the
threaded engine, or with ``--events`` W7's camera events through one analysis step in 2 worker
processes, while a sampling thread reads the CPU clock of every thread of the run's process and of
the processes it started from ``/proc/PID/task/TID/schedstat`` every SAMPLE_SECONDS (Linux only), then
prints each thread's CPU microseconds per message. ``--events`` also times the same step objects in
a plain loop (``time.process_time()``). Run it on two checkouts, alternately, to compare them.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.bench import analysis, events
from pipeline.bench.arguments import positive
from pipeline.bench.workloads import check_tally, new_tag, tiny_config
from pipeline.console.arguments import ArgumentParser
from pipeline.engine import ThreadedRunner
from pipeline.engine.control import EngineThread
from pipeline.pipeline import Pipeline

#: Seconds between two reads of the threads' CPU clocks (the last read before a thread ends counts).
SAMPLE_SECONDS = 0.01
#: W7's one analysis step, which ``--events`` runs in 2 worker processes.
EVENTS_STEPS = events.ANALYSES["one step"]


def task_seconds(pid: int, tid: str) -> float | None:
    """The CPU seconds thread ``tid`` of process ``pid`` has run; None if it is gone.

    Read from ``schedstat`` (the scheduler's nanoseconds), not ``stat``: ``stat`` charges a whole clock tick
    (10 ms) to the thread running when the tick fires, so a thread that wakes on a timer, as the Flusher and
    the supervisor do, was charged many times the CPU it used.
    """
    try:
        return int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text(encoding="ascii").split()[0]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


def descendants(root: int) -> list[int]:
    """The processes started, directly or not, by process ``root``."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parent = int((entry / "stat").read_text(encoding="ascii").rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry.name))
    found, todo = [], [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def sample(used: dict[tuple[str, str], tuple[str, float]], skip: set[int]) -> None:
    """Read the CPU clock of every thread of this process and its descendants into ``used``: per (process,
    thread id), its name and CPU seconds; threads whose ids are in ``skip`` (the measurement's own) are left out."""
    me = os.getpid()
    names = {str(thread.native_id): thread.name for thread in threading.enumerate()}  # the OS knows "python"
    for pid in [me, *descendants(me)]:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            if int(tid) in skip:
                continue
            seconds = task_seconds(pid, tid)
            key = ("run" if pid == me else f"process {pid}", tid)
            if pid == me:  # a thread that has ended but not yet gone keeps the name it had while it ran
                name = names.get(tid) or (used[key][0] if key in used else "python")
            else:  # another process's threads: the name the OS has (a worker process sets its title)
                try:
                    name = Path(f"/proc/{pid}/task/{tid}/comm").read_text(encoding="utf-8").strip()
                except OSError:
                    continue
            if seconds is not None:  # never below what the thread said as it ended (profile), read since
                used[key] = (name, max(seconds, used[key][1] if key in used else 0.0))


def profile(config: dict[str, Any]) -> tuple[float, dict[tuple[str, str], tuple[str, float]]]:
    """Run ``config``; its wall seconds and each thread's name and CPU seconds.

    The runner is built before the sampling thread starts, as pipeline-run builds it before any thread:
    its worker processes then start as a run's do (engine.zygote forks only a process without other threads).
    """
    used: dict[tuple[str, str], tuple[str, float]] = {}
    done = threading.Event()
    skip = {threading.get_native_id()}

    def sampling() -> None:
        skip.add(threading.get_native_id())
        while not done.wait(SAMPLE_SECONDS):
            sample(used, skip)

    def timed(thread: EngineThread) -> None:
        """An engine thread's run, its CPU said as it ends: one that ends between two samples counts whole."""
        try:
            engine_run(thread)
        finally:
            used[("run", str(threading.get_native_id()))] = (thread.name, time.thread_time())

    pipeline = Pipeline.from_config(config, {"Pipeline": {"gui": False, "progress": False,
                                                          "keep_freed_memory": True}})
    start = time.perf_counter()
    runner = ThreadedRunner(pipeline.pipeline_config, pipeline.options())
    sampler = threading.Thread(target=sampling, name="cpu-sampler")
    sampler.start()
    engine_run, EngineThread.run = EngineThread.run, timed
    try:
        report = runner.run()
    finally:
        EngineThread.run = engine_run
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
    if report.exit_status != 0:
        raise SystemExit(f"the run failed:\n{report.table()}")
    return wall, used


def main(argv: Sequence[str] | None = None) -> None:
    """Print the workload's rate and each thread's CPU microseconds per message."""
    parser = ArgumentParser(prog="python -m pipeline.bench.thread_cpu", description=__doc__)
    parser.add_argument("--events", action="store_true", help="W7's camera events in 2 worker processes")
    parser.add_argument("--count", type=positive, default=None, help="messages (default 100,000; --events: 3,000)")
    args = parser.parse_args(argv)
    tag = new_tag()
    if args.events:
        count = args.count if args.count is not None else 3000
        wall, used = profile(analysis.document(EVENTS_STEPS, count, tag, {"nb_process": 2}))
        if analysis.summary(tag)[0] != count:
            raise SystemExit("the run's consumer did not see every event once")
        before = time.process_time()
        analysis.loop(EVENTS_STEPS, count, new_tag())
        loop = time.process_time() - before
        print(f"W7 one step: {count / wall:,.0f} events/s, {wall * 1e6 / count:.1f} us/event of wall time; "
              f"the plain loop {loop * 1e6 / count:.1f} us/event of CPU")
    else:
        count = args.count if args.count is not None else 100_000
        wall, used = profile(tiny_config(count, tag))
        check_tally(tag, count, count * (count - 1) // 2)
        print(f"W1: {count / wall:,.0f} msg/s, {wall * 1e6 / count:.1f} us/msg of wall time")
    totals: dict[str, float] = {}
    for (process, _), (_, seconds) in used.items():
        totals[process] = totals.get(process, 0.0) + seconds
    for process in sorted(totals):
        print(f"  {process}: {totals[process] * 1e6 / count:.1f} us/msg of CPU")
        for name, seconds in sorted(named for (owner, _), named in used.items() if owner == process):
            print(f"    {name:24s} {seconds * 1e6 / count:7.1f} us/msg of CPU")


if __name__ == "__main__":
    main()
