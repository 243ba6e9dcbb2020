"""A stdout that nobody reads (a full pipe) never keeps a stopped pipeline-run from exiting with its status: the steps'
threads left blocked in a write there hold stdout's lock, which the end of the command must not wait for unbounded
(real pipeline-run subprocesses, each writing into a pipe filled before it starts and never read)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.cli_helpers import printer_config

REPO = Path(__file__).resolve().parent.parent
#: Seconds any one wait of these tests may take: the run stops 1 s after SIGTERM, and ends 2 s after its report.
WAIT = 30


def full_pipe() -> tuple[int, int]:
    """A pipe whose buffer is full: the first write into it blocks until its reader reads, which none does."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    try:
        while True:
            os.write(write_fd, b"x" * 65536)
    except BlockingIOError:
        pass
    os.set_blocking(write_fd, True)
    return read_fd, write_fd


@contextmanager
def printing_into_a_full_pipe(tmp_path: Path, mode: str) -> Iterator[subprocess.Popen[bytes]]:
    """pipeline-run of Printer in 2 threads (or sequential ``mode``) whose stdout is a full pipe, once its run has
    started (its first progress line)."""
    read_fd, write_fd = full_pipe()
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", f"--config={printer_config(tmp_path, 2)}", f"--Pipeline.mode={mode}",
         "--Pipeline.shutdown_timeout=1", "--Pipeline.progress_interval=0.1"],
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, stdout=write_fd, stderr=subprocess.PIPE,
        bufsize=0)  # stderr unbuffered: a line read is one select() saw come
    os.close(write_fd)
    try:
        assert process.stderr is not None
        assert select.select([process.stderr], [], [], WAIT)[0], "no progress line"
        process.stderr.readline()
        yield process
    finally:
        process.kill()
        process.communicate()
        os.close(read_fd)


@pytest.mark.parametrize("mode", ["threads", "sequential"])
def test_a_run_stopped_while_its_stdout_is_full_exits_with_its_status(tmp_path: Path, mode: str) -> None:
    """In threads mode it printed its report and then waited for ever, deaf to every signal but SIGKILL: its main
    thread flushed stdout, waiting for the lock that a Printer thread left behind held in its blocked write."""
    with printing_into_a_full_pipe(tmp_path, mode) as process:
        process.send_signal(signal.SIGTERM)
        assert process.wait(WAIT) == 143
        said = process.stderr.read().decode()
    assert "stopped: SIGTERM" in said
    assert "exit status 143\n" in said
    assert "Traceback" not in said, said
    if mode == "threads":  # the Printer threads left behind, blocked in their writes
        assert said.splitlines()[-1] == ("pipeline-run: exiting without waiting for the workers left behind, still "
                                         "busy (named above)")


def test_a_signal_after_the_report_ends_the_run_at_once_though_its_stdout_is_full(tmp_path: Path) -> None:
    """The promise of docs/cli.md: a signal once the report is printed ends the process at once, with its status
    (it did nothing: the main thread, waiting for stdout's lock, ran no signal handler)."""
    with printing_into_a_full_pipe(tmp_path, "threads") as process:
        process.send_signal(signal.SIGTERM)
        said = b""
        while b"exit status 143\n" not in said:
            assert select.select([process.stderr], [], [], WAIT)[0], said
            said += process.stderr.readline()
        # Again until it ends: one sent before the command handles signals as it exits is ignored, as the report ends.
        while True:
            process.send_signal(signal.SIGINT)
            try:
                status = process.wait(0.1)
                break
            except subprocess.TimeoutExpired:
                pass
        said += process.stderr.read()
    assert status == 143
    assert b"exiting without waiting" not in said, said  # what the exit says 2 s after the report
