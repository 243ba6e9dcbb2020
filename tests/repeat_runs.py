"""Run one small pipeline many times in this process and print, as JSON, what the runs left behind.

``python -m tests.repeat_runs MODE RUNS`` (tests/test_contract.py runs it as a subprocess, so
that its memory is measured in a process of its own). It prints the threads left after the last
run that were not there before the first (pyzmq's garbage-collector thread, made once per
process, aside), and the open file descriptors, threads and resident memory after the 5th run,
half-way from it to the last, and after the last.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import os
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

from zmq.utils.garbage import GarbageCollectorThread

from pipeline import Pipeline
from tests.contract_steps import RECEIVED, SENT

#: The run after which the first measure is taken: by then every lazily made singleton exists.
WARM_UP_RUNS = 5
MESSAGES = 20


def document(tag: str) -> dict[str, Any]:
    """Arrays (128 KiB out of band) -> an ordered stager with two workers -> a recording consumer."""
    steps = "tests.contract_steps"
    return {
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "P", "module": steps, "class": "Arrays", "next_steps": "W"},
            "stagers_conf": [{"name": "W", "module": steps, "class": "WriteInPlace", "next_steps": "C",
                              "nb_thread": 2, "ordered": True}],
            "consumer_conf": {"name": "C", "module": steps, "class": "Record"},
        },
        "Arrays": {"tag": tag, "count": MESSAGES},
        "Record": {"tag": tag},
    }


def measure() -> dict[str, Any]:
    """Threads, open file descriptors and resident bytes, after freeing what can be freed."""
    gc.collect()
    # Give freed heap pages back to the system, so that RSS counts what is still in use.
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.malloc_trim(0)
    status = Path("/proc/self/status").read_text(encoding="utf-8")
    rss = next(int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:"))
    return {"threads": sorted(t.name for t in threading.enumerate()), "fds": len(os.listdir("/proc/self/fd")),
            "rss": rss}


def main(mode: str, runs: int) -> dict[str, Any]:
    """Run the pipeline ``runs`` times in ``mode``; what was left behind."""
    before = set(threading.enumerate())
    warm: dict[str, Any] = {}
    middle: dict[str, Any] = {}
    for i in range(1, runs + 1):
        tag = uuid.uuid4().hex
        report = Pipeline.from_config(document(tag), {"Pipeline": {"mode": mode}}).run()
        got = RECEIVED.pop(tag)
        if report.exit_status != 0 or len(got) != MESSAGES + 1:
            raise SystemExit(f"run {i} failed:\n{report.table()}")
        SENT.pop(tag)
        if i == WARM_UP_RUNS:
            warm = measure()
        if i == (WARM_UP_RUNS + runs) // 2:
            middle = measure()
    new = [t.name for t in set(threading.enumerate()) - before if not isinstance(t, GarbageCollectorThread)]
    return {"new_threads": new, "after_warm_up": warm, "halfway": middle, "at_end": measure()}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1], int(sys.argv[2]))))
