"""A run that cannot start a thread (the user's limit of processes and threads, RLIMIT_NPROC, met): one line names
the limit, the exit status is 1, and the run's cleanup completes; a worker process that cannot start one says so in
the run's line on its death. Each run is pipeline-run in a process of its own, where Thread.start fails for the
threads named (as at the limit), since a real limit counts every process of the user."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.process_helpers import REPO

#: pipeline-run, where Thread.start raises as at the limit for the threads named in argv[1] (comma-separated); at
#: its exit it prints its private directories and child processes still there.
SCRIPT = """
import atexit, glob, os, pathlib, sys, tempfile, threading
from pipeline.cli.run import main

failing = set(sys.argv[1].split(","))
real = threading.Thread.start


def start(thread):
    if thread.name in failing:
        raise RuntimeError("can't start new thread")
    real(thread)


def left():
    children = []
    for task in pathlib.Path("/proc/self/task").iterdir():
        try:
            children += (task / "children").read_text().split()
        except FileNotFoundError:  # a thread that ended between the listing and the read
            pass
    print("left:", glob.glob(os.path.join(tempfile.gettempdir(), f"pipeline-{os.getpid()}-*")), children, flush=True)


threading.Thread.start = start
atexit.register(left)
main(sys.argv[2:])
"""


def run_without(tmp_path: Path, threads: str, address_space: int | None = None,
                progress: bool = False) -> subprocess.CompletedProcess[str]:
    """pipeline-run of a chain whose stage runs in a worker process, where ``threads`` cannot start (under a limit of
    ``address_space`` bytes, ulimit -v, if given; with ``progress``, the monitor's thread shows it)."""
    config = tmp_path / "limit.json"
    config.write_text(json.dumps({"version": 1, "Pipeline": {
        "producer_conf": {"name": "P", "module": "algorithms.basic", "class": "Counter", "next_steps": "S"},
        "stagers_conf": [{"name": "S", "module": "algorithms.basic", "class": "PassThrough", "nb_process": 1,
                          "next_steps": "W"}],
        "consumer_conf": {"name": "W", "module": "algorithms.basic", "class": "PassThrough"}},
        "Counter": {"count": 20}}), encoding="utf-8")
    return subprocess.run([sys.executable, "-c", SCRIPT, threads, f"--config={config}",
                           f"--Pipeline.progress={progress}", "--Pipeline.max_worker_restarts=1"], cwd=REPO,
                          capture_output=True, text=True,
                          timeout=50, env={**os.environ, "PYTHONPATH": str(REPO), "TMPDIR": str(tmp_path)},
                          preexec_fn=None if address_space is None else lambda: resource.setrlimit(
                              resource.RLIMIT_AS, (address_space, resource.RLIM_INFINITY)))


@pytest.mark.parametrize("threads", ["flusher", "router-W,context-term", "P#0,context-term"])
def test_a_run_that_cannot_start_a_thread_says_so_in_a_line_and_cleans_up(tmp_path: Path, threads: str) -> None:
    """It printed tracebacks, the last from the abort's own thread, which skipped the zygote's end and the private
    directory's removal."""
    done = run_without(tmp_path, threads)
    assert done.returncode == 1, done.stderr
    assert "stopped: cannot start a thread at this user's limit of " in done.stderr
    assert "(ulimit -u: raise it, or run fewer threads and worker processes)" in done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stdout.splitlines()[-1] == "left: [] []"  # no private directory, no zygote


def test_a_thread_outside_the_engine_that_cannot_start_is_one_line_too(tmp_path: Path) -> None:
    """The monitor's thread (the progress display's) could not start: a traceback from Monitor.__enter__, no report."""
    done = run_without(tmp_path, "monitor", progress=True)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("pipeline-run: error: cannot start a thread at this user's limit of "), done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stdout.splitlines()[-1] == "left: [] []"


def test_under_a_limit_of_memory_the_line_names_it_too(tmp_path: Path) -> None:
    """Under ``ulimit -v`` a thread's stack is refused first, and the line named only the user's limit of processes
    and threads (ulimit -u)."""
    done = run_without(tmp_path, "router-W,context-term", address_space=64 << 30)
    assert done.returncode == 1, done.stderr
    assert ("stopped: cannot start a thread at this process's limit of 67,108,864 KiB of address space (ulimit -v), "
            "or this user's limit of ") in done.stderr, done.stderr
    assert "processes and threads (ulimit -u): raise them, or run fewer threads and worker processes" in done.stderr


def test_the_exit_without_a_thread_to_bound_it_keeps_the_runs_status(tmp_path: Path) -> None:
    """The thread that bounds the interpreter's exit could not start: a traceback, after the report of a run that
    went well."""
    done = run_without(tmp_path, "exit-grace")
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    assert "exit status 0" in done.stderr


def test_a_worker_process_that_cannot_start_a_thread_says_so_in_its_death(tmp_path: Path) -> None:
    """It printed a traceback, and the run's line on its death said only "exit code 1"."""
    done = run_without(tmp_path, "S#0")  # a thread of the worker processes only
    assert done.returncode == 1, done.stderr
    assert "died: exit code 1: cannot start a thread at this user's limit of " in done.stderr
    assert "Traceback" not in done.stderr, done.stderr
