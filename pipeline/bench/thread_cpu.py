"""Where W1's microseconds go, per thread: ``python -m pipeline.bench.thread_cpu [--count=N]``.

Runs pipeline-bench's W1 workload (tiny dicts: producer -> pass-through stager -> consumer) in the
threaded engine while a sampling thread reads each engine thread's CPU clock from
``/proc/self/task/TID/stat`` every SAMPLE_SECONDS (Linux only), then prints each thread's CPU
microseconds per message. Run it on two checkouts, alternately, to compare them.
"""

from __future__ import annotations

import argparse
import os
import threading
import time
from collections.abc import Sequence

from pipeline.bench.workloads import check_tally, new_tag, tiny_config
from pipeline.pipeline import Pipeline

#: Seconds between two reads of the threads' CPU clocks (the last read before a thread ends counts).
SAMPLE_SECONDS = 0.01


def thread_seconds(thread: threading.Thread) -> float | None:
    """The CPU seconds ``thread`` has used (user and system), or None if it cannot be read."""
    try:
        with open(f"/proc/self/task/{thread.native_id}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except (OSError, TypeError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def profile(count: int) -> tuple[float, dict[str, float]]:
    """Run W1 with ``count`` messages; its wall seconds and each engine thread's CPU seconds."""
    used: dict[str, float] = {}
    done = threading.Event()
    engine = threading.current_thread()

    def sample() -> None:
        while not done.wait(SAMPLE_SECONDS):
            for thread in threading.enumerate():
                seconds = thread_seconds(thread)
                if seconds is not None and thread not in (engine, threading.current_thread()):
                    used[thread.name] = seconds

    sampler = threading.Thread(target=sample, name="cpu-sampler")
    sampler.start()
    tag = new_tag()
    pipeline = Pipeline.from_config(tiny_config(count, tag), {"Pipeline": {
        "gui": False, "progress": False, "keep_freed_memory": True}})
    start = time.perf_counter()
    try:
        report = pipeline.run()
    finally:
        wall = time.perf_counter() - start
        done.set()
        sampler.join()
    if report.exit_status != 0:
        raise SystemExit(f"the run failed:\n{report.table()}")
    check_tally(tag, count, count * (count - 1) // 2)
    return wall, used


def main(argv: Sequence[str] | None = None) -> None:
    """Print W1's rate and each engine thread's CPU microseconds per message."""
    parser = argparse.ArgumentParser(prog="python -m pipeline.bench.thread_cpu", description=__doc__)
    parser.add_argument("--count", type=int, default=100_000, help="messages (default 100,000)")
    args = parser.parse_args(argv)
    wall, used = profile(args.count)
    print(f"W1: {args.count / wall:,.0f} msg/s, {wall * 1e6 / args.count:.1f} us/msg of wall time")
    for name, seconds in sorted(used.items()):
        print(f"  {name:16s} {seconds * 1e6 / args.count:6.1f} us/msg of CPU")


if __name__ == "__main__":
    main()
