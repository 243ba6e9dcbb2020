"""``pipeline-run`` on a real pseudo-terminal of a given size, and the screen a user would then see (pyte)."""

from __future__ import annotations

import fcntl
import os
import select
import struct
import subprocess
import sys
import termios
import time
from dataclasses import dataclass
from pathlib import Path

import pyte

from tests.cli_helpers import ROOT

#: Seconds a run on the terminal may take.
PTY_WAIT = 40.0


@dataclass(frozen=True)
class TerminalRun:
    """What a run wrote to its terminal, and its exit code."""

    output: bytes
    returncode: int

    def screen(self, rows: int, columns: int) -> list[str]:
        """The lines a terminal of ``rows`` x ``columns`` shows at the end, scrollback first (trailing blanks cut)."""
        screen = pyte.HistoryScreen(columns, rows, history=10_000)
        stream = pyte.ByteStream(screen)
        stream.feed(self.output)
        history = ["".join(line[x].data for x in range(columns)) for line in screen.history.top]
        lines = [line.rstrip() for line in [*history, *screen.display]]
        while lines and not lines[-1]:
            lines.pop()
        return lines


def run_on_terminal(*args: str | Path, rows: int = 40, columns: int = 100, term: str = "xterm",
                    cwd: Path = ROOT) -> TerminalRun:
    """``python -m pipeline ARGS`` with stdin, stdout and stderr on a new pseudo-terminal of this size."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, columns, 0, 0))
    env = {**os.environ, "TERM": term, "COLUMNS": str(columns), "LINES": str(rows)}
    try:
        process = subprocess.Popen([sys.executable, "-m", "pipeline", *map(str, args)], cwd=cwd, env=env,
                                   stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
    finally:
        os.close(slave)
    output = bytearray()
    deadline = time.monotonic() + PTY_WAIT
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 0.2)[0]:
                continue
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the run closed its side of the terminal
                break
            if not chunk:
                break
            output += chunk
        returncode = process.wait(max(deadline - time.monotonic(), 1))
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(master)
    return TerminalRun(bytes(output), returncode)


class Terminal:
    """A command on a new pseudo-terminal that is its controlling terminal (its session's, as an ssh session's
    shell), whose other side the test closes as a dropped ssh connection does: :meth:`hang_up`."""

    def __init__(self, command: list[str | Path], cwd: Path = ROOT, env: dict[str, str] | None = None,
                 stderr: Path | None = None) -> None:
        self.master, slave = os.openpty()
        try:
            with open(stderr or os.devnull, "wb") as err:
                self.process = subprocess.Popen([str(part) for part in command], cwd=cwd, env=env, stdin=slave,
                                                stdout=slave, stderr=err if stderr else slave, start_new_session=True,
                                                preexec_fn=_take_terminal)
        finally:
            os.close(slave)
        self.output = bytearray()

    def read_until(self, marker: bytes, timeout: float = PTY_WAIT) -> None:
        """Read what the command writes until ``marker`` is in it; an AssertionError after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        while marker not in self.output:
            assert time.monotonic() < deadline, f"no {marker!r} within {timeout:g} s: {bytes(self.output[-500:])!r}"
            if select.select([self.master], [], [], 0.2)[0]:
                self.output += os.read(self.master, 65536)

    def hang_up(self) -> None:
        """Close the terminal's other side: the kernel sends the command SIGHUP, its writes there fail with EIO."""
        os.close(self.master)
        self.master = -1

    def wait(self, timeout: float = PTY_WAIT) -> int:
        """The command's exit status (it is killed after ``timeout`` s)."""
        try:
            return self.process.wait(timeout)
        finally:
            self.close()

    def close(self) -> None:
        """Kill the command if it still runs, and close the terminal."""
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.master >= 0:
            self.hang_up()


def _take_terminal() -> None:
    """In the child, a session leader by now: make its stdin (the new terminal) its controlling terminal."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
