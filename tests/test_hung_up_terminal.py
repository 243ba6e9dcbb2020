"""A terminal that went away (the ssh session dropped): its writes fail with EIO and the kernel sends SIGHUP. It is
the end of output, as a closed pipe is, and the command exits 129 (real commands on a real pseudo-terminal)."""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import pytest

from tests.cli_helpers import ROOT, printer_config
from tests.failure_helpers import report_row
from tests.pty_helpers import Terminal
from tests.remote_helpers import BIN, Launcher, wait_during
from tests.remote_steps import ROLE, marker_pids

HUNG_UP = 128 + signal.SIGHUP

#: How each case runs PRINT: (its nb_process, the run's mode).
MODES = {"threads": (0, "threads"), "sequential": (0, "sequential"), "processes": (2, "threads")}


def print_on_terminal(tmp_path: Path, mode: str, stderr: Path | None = None) -> tuple[int, Path]:
    """pipeline-run printing 100,000 lines on a terminal that hangs up once the first lines are on it; its exit status
    and its dead-letter file."""
    nb_process, run_mode = MODES[mode]
    dead_letters = tmp_path / "failed.jsonl"
    terminal = Terminal([sys.executable, "-m", "pipeline", f"--config={printer_config(tmp_path, 2, nb_process)}",
                         f"--Pipeline.mode={run_mode}", f"--Pipeline.dead_letter={dead_letters}", "--no-progress"],
                        env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=stderr)
    try:
        terminal.read_until(b"\n100\r\n")
        terminal.hang_up()
        return terminal.wait(), dead_letters
    finally:
        terminal.close()


@pytest.mark.parametrize("mode", MODES)
def test_a_run_whose_terminal_hangs_up_while_a_step_prints_stops_as_on_sighup(tmp_path: Path, mode: str) -> None:
    """It exited 1 (`cannot write to stdout: Input/output error`) though its report said 129, the EIO a failure of
    PRINT (`stopped: step PRINT failed`) and a thousand messages dead letters."""
    stderr = tmp_path / "run.err"
    status, dead_letters = print_on_terminal(tmp_path, mode, stderr)
    text = stderr.read_text(encoding="utf-8")
    assert status == HUNG_UP, text
    assert text.endswith("exit status 129\n"), text
    assert "stopped: SIGHUP" in text
    assert re.search(r"^(SIGHUP|pipeline-run: the terminal hung up): stopping after what is in flight", text, re.M)
    assert "Traceback" not in text and "Input/output error" not in text and "failed messages" not in text
    received, processed, _, failed = report_row(text, "PRINT")
    assert failed == 0 and processed == received
    assert "0 records written" in text and dead_letters.read_text(encoding="utf-8") == ""


def test_a_run_on_a_terminal_that_hangs_up_exits_129(tmp_path: Path) -> None:
    """stderr on the terminal too, as a user's: its last words (the report) go nowhere, its status stays 129."""
    status, dead_letters = print_on_terminal(tmp_path, "threads")
    assert status == HUNG_UP
    assert dead_letters.read_text(encoding="utf-8") == ""


def test_a_remote_worker_whose_terminal_hangs_up_tells_its_run_at_once(launch: Launcher) -> None:
    """Its `SIGHUP: leaving` line failed with EIO and killed it (exit 1) before it told the run, which waited for
    its missed heartbeats."""
    run = launch.run(launch.chain(nb_thread=1, workers=2))
    worker = Terminal([BIN / "pipeline-worker", f"--connect={launch.address}",
                       f"--server-key={launch.keys.server_public}", f"--key={launch.keys.secret('node7')}",
                       "--step=TAG", "--processes=2"], env={**os.environ, ROLE: "remote-blocking"})
    try:
        wait_during(run, lambda: marker_pids(launch.gate, "busy"), "the remote worker to be in a message")
        worker.hang_up()
        assert worker.wait() == HUNG_UP
    finally:
        worker.close()
    wait_during(run, lambda: "left on SIGHUP" in run.stderr or "sent no heartbeat" in run.stderr,
                "the run to hear that the worker left, or to miss its heartbeats")
    assert re.search(r"remote worker node7 \(.*\): its worker process \d+ left: pipeline-worker left on SIGHUP",
                     run.stderr), run.stderr
    assert "sent no heartbeat" not in run.stderr
    assert run.wait() == 0, run.stderr
