"""A closed stdout is the end of output: every command stops quietly with exit status 141 (real
subprocesses whose stdout's reader has left before they write)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.console.end_of_output import EXIT_STATUS, caused_by_closed_output
from tests.test_failures import report_row

REPO = Path(__file__).resolve().parent.parent
CHAIN = str(REPO / "configs" / "chain.json")


def run_with_stdout_closed(*argv: str) -> tuple[int, str]:
    """Run ``python argv`` with a stdout whose reader is gone; its exit status and its stderr."""
    process = subprocess.Popen([sys.executable, *argv], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    process.stdout.close()  # as `| head -1` does once it has its line
    process.stdout = None
    try:
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    return process.returncode, stderr


def printer_config(tmp_path: Path, nb_thread: int) -> Path:
    """COUNT (100,000 numbers) -> PRINT (Printer, to stdout)."""
    path = tmp_path / "print.json"
    path.write_text(json.dumps({
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "COUNT", "module": "algorithms.basic", "class": "Counter", "next_steps": "PRINT"},
            "consumer_conf": {"name": "PRINT", "module": "algorithms.basic", "class": "Printer",
                              "nb_thread": nb_thread},
        },
        "Counter": {"count": 100_000},
    }), encoding="utf-8")
    return path


@pytest.mark.parametrize("mode", ["threads", "sequential"])
def test_a_run_stops_quietly_when_its_stdout_is_closed(tmp_path: Path, mode: str) -> None:
    status, stderr = run_with_stdout_closed("-m", "pipeline", f"--config={printer_config(tmp_path, 2)}",
                                            f"--Pipeline.mode={mode}")
    assert status == EXIT_STATUS == 141
    assert "Traceback" not in stderr
    assert "pipeline-run: stdout was closed: stopping after what is in flight" in stderr
    assert "stopped:" not in stderr  # the end of output, not the step's on_error=stop
    assert report_row(stderr, "COUNT")[2] < 100_000  # the producer stopped early
    assert stderr.endswith("exit status 141\n")


@pytest.mark.parametrize("argv", [
    ["-m", "pipeline", "--help"],
    ["-m", "pipeline", "--help-all"],
    ["-m", "pipeline", "--help-all", f"--config={CHAIN}"],
    ["-m", "pipeline", "--version"],
    ["-m", "pipeline", f"--config={CHAIN}", "--graph=dot"],
    ["-m", "gui", "--help"],
    ["-m", "gui", "--help-all"],
    ["-m", "gui", "--version"],
], ids=" ".join)
def test_every_command_stops_quietly_when_its_stdout_is_closed(argv: list[str]) -> None:
    assert run_with_stdout_closed(*argv) == (EXIT_STATUS, "")


@pytest.mark.parametrize("option", ["--help", "--version"])
def test_bench_stops_quietly_when_its_stdout_is_closed(option: str) -> None:
    """argparse ignores a failed write of its help itself: exit 0 if the text was written unbuffered,
    141 if its buffer was flushed at the end (by console_script)."""
    status, stderr = run_with_stdout_closed("-m", "pipeline.bench", option)
    assert status in (0, EXIT_STATUS) and stderr == ""


def test_other_errors_are_not_the_end_of_output() -> None:
    """Only a write into a closed stdout or stderr ends the output: the test's own stdout is open."""
    assert not caused_by_closed_output(ValueError("no"))
    assert not caused_by_closed_output(BrokenPipeError("some other pipe"))
