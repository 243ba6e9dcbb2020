"""A closed stdout is the end of output: every command stops quietly with exit status 141 (real
subprocesses whose stdout's reader has left before they write)."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from pipeline.console import end_of_output
from pipeline.console.end_of_output import EXIT_STATUS, caused_by_closed_output, console_script
from tests.cli_helpers import printer_config
from tests.failure_helpers import report_row

REPO = Path(__file__).resolve().parent.parent
CHAIN = str(REPO / "configs" / "chain.json")


def run_with_stdout_closed(*argv: str, buffered: bool = False) -> tuple[int, str]:
    """Run ``python argv`` with a stdout whose reader is gone; its exit status and its stderr.

    ``buffered``: without PYTHONUNBUFFERED, so that stdout has its buffer layer as it has for most users.
    """
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if buffered:
        env.pop("PYTHONUNBUFFERED", None)
    process = subprocess.Popen([sys.executable, *argv], cwd=REPO, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert process.stdout is not None
    process.stdout.close()  # as `| head -1` does once it has its line
    process.stdout = None
    try:
        _, stderr = process.communicate(timeout=30)
    finally:
        process.kill()
    return process.returncode, stderr


#: How each mode runs PRINT: (the config's nb_process, the run's mode, stdout buffered).
MODES = {
    "threads": (0, "threads", False),
    "threads-buffered": (0, "threads", True),
    "sequential": (0, "sequential", False),
    "processes": (2, "threads", False),
    "processes-buffered": (2, "threads", True),
}


@pytest.mark.parametrize("mode", MODES)
def test_a_run_stops_quietly_when_its_stdout_is_closed(tmp_path: Path, mode: str) -> None:
    """`pipeline-run ... | head -n 1`: the end of output, not a failed message (issue 26.3)."""
    nb_process, run_mode, buffered = MODES[mode]
    status, stderr = run_with_stdout_closed("-m", "pipeline", f"--config={printer_config(tmp_path, 2, nb_process)}",
                                            f"--Pipeline.mode={run_mode}", buffered=buffered)
    assert status == EXIT_STATUS == 141
    assert "Traceback" not in stderr
    assert "BrokenPipeError" not in stderr
    assert "failed messages" not in stderr and "first failure" not in stderr
    assert "pipeline-run: stdout was closed: stopping after what is in flight" in stderr
    assert "stopped:" not in stderr  # the end of output, not the step's on_error=stop
    received, processed, _, failed = report_row(stderr, "PRINT")
    assert failed == 0 and processed == received  # the write into the closed pipe wrote nothing, and failed nothing
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
    ["-m", "pipeline.cli.keys", "--help"],
    ["-m", "pipeline.cli.keys", "--help-all"],
    ["-m", "pipeline.cli.worker", "--help"],
    ["-m", "pipeline.bench", "--help"],
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


def test_a_write_that_raced_with_the_end_of_output_is_part_of_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two threads' writes find stdout closed; the first points it at /dev/null before it marks the output
    ended: the second, which then finds no closed stream, still belongs to the end of output (it is not a
    step's failure). The test holds the module's lock, as end_output() does between the two."""
    ended = threading.Event()
    monkeypatch.setattr(end_of_output, "_ended", ended)
    answer: list[bool] = []
    with end_of_output._lock:  # the first thread is between dup2() and marking the output ended
        second = threading.Thread(target=lambda: answer.append(caused_by_closed_output(BrokenPipeError())))
        second.start()
        second.join(0.2)  # bounded: it must wait for the lock, not answer already
        assert answer == []
        ended.set()
    second.join(5)
    assert answer == [True]


def test_the_quiet_stdout_outlives_its_with_for_threads_still_printing() -> None:
    """CPython 3.11's print() holds sys.stdout without a reference: a quiet copy freed as the run's ``with`` ended
    crashed a step's thread still printing (a segmentation fault after the report). Kept, and used again."""
    script = (
        "import gc, sys, weakref\n"
        "from pipeline.console.end_of_output import quiet_stdout\n"
        "with quiet_stdout():\n"
        "    first = weakref.ref(sys.stdout)\n"
        "gc.collect()\n"
        "with quiet_stdout():\n"
        "    again = sys.stdout is first()\n"
        "print(first() is not None, again)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                          capture_output=True, text=True, timeout=60)
    assert done.stdout.split() == ["True", "True"], done.stderr


@pytest.mark.parametrize("fd", [1, 2])
def test_a_command_started_without_stdout_or_stderr_runs_as_into_dev_null(tmp_path: Path, fd: int) -> None:
    """``>&-``: sys.stdout was None, so the run's last flush raised AttributeError (exit 1 after 'exit status 0'), and
    a printing step failed every message; and fd 2 closed could be taken by a socket, where writes to it would go."""
    output = tmp_path / "out.jsonl"
    command = [sys.executable, "-m", "pipeline", f"--config={CHAIN}", f"--JsonLinesWriter.path={output}"]
    kept = subprocess.PIPE  # the other stream, to read
    process = subprocess.Popen(command, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, text=True,
                               stdout=kept if fd == 2 else None, stderr=kept if fd == 1 else None,
                               preexec_fn=lambda: os.close(fd))
    out, err = process.communicate(timeout=60)
    said = err if fd == 1 else out
    assert process.returncode == 0, said
    assert len(output.read_text(encoding="utf-8").splitlines()) == 1000
    if fd == 1:
        assert said.endswith("exit status 0\n") and "Traceback" not in said, said


@pytest.mark.parametrize("argv", [["--version"], [f"--config={CHAIN}", "--graph=dot"]], ids=" ".join)
def test_a_stdout_that_takes_no_more_is_one_line_and_exit_1(argv: list[str]) -> None:
    """A full disk (/dev/full): a chained traceback and exit status 120 (the interpreter's own, for a failed flush)."""
    with open("/dev/full", "w", encoding="utf-8") as full:
        result = subprocess.run([sys.executable, "-m", "pipeline", *argv], cwd=REPO, stdout=full,
                                stderr=subprocess.PIPE, text=True, timeout=60,
                                env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    assert (result.returncode, result.stderr) == (1, "pipeline: error: cannot write to stdout: No space left on "
                                                     "device\n")


@pytest.mark.parametrize("mode", MODES)
def test_a_run_whose_stdout_takes_no_more_fails_the_message_and_says_so_at_its_end(tmp_path: Path, mode: str) -> None:
    """The promise of docs/cli.md, in every mode: with Printer in worker processes, the failures and exit status 1
    were there, but not the last line (the run's own stdout held nothing left to fail at its end)."""
    nb_process, run_mode, buffered = MODES[mode]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    if buffered:
        env.pop("PYTHONUNBUFFERED", None)
    config = printer_config(tmp_path, 2, nb_process)
    with open("/dev/full", "w", encoding="utf-8") as full:
        result = subprocess.run([sys.executable, "-m", "pipeline", f"--config={config}", f"--Pipeline.mode={run_mode}",
                                 "--no-progress"], cwd=REPO, stdout=full, stderr=subprocess.PIPE, text=True,
                                timeout=60, env=env, check=False)
    assert result.returncode == 1, result.stderr
    assert "LostOutput: [Errno 28] No space left on device" in result.stderr
    assert result.stderr.splitlines()[-2:] == ["exit status 1",
                                               "pipeline: error: cannot write to stdout: No space left on device"]


def test_a_full_disk_under_another_file_is_not_taken_for_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    """Any ENOSPC out of a command (a dead-letter file's, on a full disk) was said as 'cannot write to stdout', exit 1,
    although stdout was fine: only a write into stdout is stdout's to report."""
    @console_script
    def main() -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(OSError, match="No space left on device"):
        main()
    assert "stdout" not in capsys.readouterr().err
