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
