"""Signals work whatever stderr does: a stderr pipe that nobody reads neither blocks a step nor keeps
Ctrl+C or SIGTERM from stopping the run (the stderr writer, and real pipeline-run subprocesses)."""

from __future__ import annotations

import io
import json
import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipeline.console import stderr as stderr_module
from pipeline.console.stderr import StderrWriter

# The tests of this file take more than 10 s in all: `pytest -m "not slow"` leaves them out.
pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
#: Seconds any test waits for something at most.
WAIT = 30.0


class Blocked(io.StringIO):
    """A stderr whose writes wait until it is released, as a full pipe does until someone reads it."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.writing = threading.Event()

    def write(self, text: str) -> int:
        self.writing.set()
        assert self.release.wait(WAIT)
        return super().write(text)


class Broken(io.StringIO):
    """A stderr whose reader has gone."""

    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_a_write_is_done_when_it_returns(monkeypatch: pytest.MonkeyPatch) -> None:
    """While stderr flows, a write waits for its text, so output keeps its order (with stdout too)."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    writer = StderrWriter()
    for text in ("a", "b\n", "c"):
        writer.write(text)
        assert stream.getvalue().endswith(text)
    writer.write_nowait("d")
    assert writer.drain(WAIT) and stream.getvalue() == "ab\ncd"


def test_a_stalled_stderr_stops_making_writers_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = Blocked()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setattr(stderr_module, "STALL_SECONDS", 0.05)
    writer = StderrWriter()
    writer.write("first ")  # waits STALL_SECONDS, then counts stderr as stalled
    assert stream.getvalue() == "" and not writer.drain(0)
    monkeypatch.setattr(stderr_module, "STALL_SECONDS", 10 * WAIT)  # a write that waited now would time out
    writer.write("second")
    stream.release.set()
    assert writer.drain(WAIT)
    assert stream.getvalue() == "first second"


def test_a_stalled_stderr_drops_text_past_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = Blocked()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setattr(stderr_module, "MAX_PENDING_CHARS", 10)
    writer = StderrWriter()
    writer.write_nowait("first ")
    assert stream.writing.wait(WAIT)  # the writer's thread holds it, blocked
    writer.write_nowait("x" * 8)
    writer.write_nowait("y" * 8)  # 16 characters pending: over the limit, dropped
    stream.release.set()
    assert writer.drain(WAIT)
    assert stream.getvalue() == "first " + "x" * 8 and writer.dropped == 8


def test_a_broken_stderr_is_given_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", Broken())
    writer = StderrWriter()
    writer.write("lost\n")
    assert writer.drain(WAIT)
    writer.write("also lost\n")  # returns at once: nothing is written any more
    assert writer.dropped == len("also lost\n")


def chatty_config(tmp_path: Path) -> Path:
    """COUNT (endless) -> CHAT (logs 1 KiB per message, 2 threads) -> SINK."""
    path = tmp_path / "chatty.json"
    path.write_text(json.dumps({
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "COUNT", "module": "algorithms.basic", "class": "Counter", "next_steps": "CHAT"},
            "stagers_conf": [{"name": "CHAT", "module": "tests.output_steps", "class": "Chatty", "nb_thread": 2,
                              "next_steps": "SINK"}],
            "consumer_conf": {"name": "SINK", "module": "algorithms.basic", "class": "PassThrough"},
        },
        "Counter": {"count": 10**9},
    }), encoding="utf-8")
    return path


@pytest.mark.parametrize("mode", ["threads", "sequential"])
@pytest.mark.parametrize(("signum", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_a_run_whose_stderr_nobody_reads(tmp_path: Path, mode: str, signum: int,
                                                         status: int) -> None:
    process = subprocess.Popen([sys.executable, "-m", "pipeline", f"--config={chatty_config(tmp_path)}",
                                f"--Pipeline.mode={mode}"], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # stderr: never read until the end
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], WAIT)
        # The step logged 256 KiB: far more than the stderr pipe holds, so stderr is full, and the step goes on.
        assert ready and process.stdout.readline() == b"flooded\n"
        process.send_signal(signum)
        assert process.wait(WAIT) == status
        assert b"finished\n" in process.stdout.read()  # the run drained: finish() ran
    finally:
        process.kill()
        process.communicate()


def test_a_text_longer_than_the_limit_is_written_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's summary quoting a step's error of a million characters went as one write past MAX_PENDING_CHARS, and
    was dropped whole while stderr flowed: the report and its exit line were lost."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    monkeypatch.setattr(stderr_module, "MAX_PENDING_CHARS", 10)
    writer = StderrWriter()
    writer.write("x" * 100 + "\nexit status 1\n")
    assert stream.getvalue() == "x" * 100 + "\nexit status 1\n" and writer.dropped == 0
