"""Steps for tests/test_chunks.py: a stager that makes many large outputs of one input (a file's worth of events),
and a consumer that records them, both counting the outputs alive in a *gauge* that every process can read; and,
for tests/test_result_bounds.py, a stager whose outputs a thread it started sends.

The gauge is two files in a directory: each output made appends one byte to ``made``, each output consumed one
byte to ``used`` (O_APPEND: writes of several processes never mix), so their sizes are counts that any process
reads with one ``stat``. The stager reads both after each output it makes and keeps the largest difference, the
outputs alive at once (made and not yet consumed, wherever they wait); its ``finish()`` appends that peak to
``peaks``. No psutil: what is counted is exactly what the bound is about, messages alive.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from traitlets import Int, Unicode

from pipeline import Component

#: Each output is an array of this many float64 (1 MiB).
VALUES = 131072


def bump(path: Path) -> int:
    """Append one byte to ``path``; its size after (other processes may append too)."""
    fd = os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
    try:
        os.write(fd, b"x")
        return os.fstat(fd).st_size
    finally:
        os.close(fd)


def size(path: Path) -> int:
    """The size of ``path`` (0 while it does not exist)."""
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def once(marker: str) -> bool:
    """Create ``marker``; False if it existed (the first process to get here wins)."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
    except FileExistsError:
        return False
    return True


class Inputs(Component):
    """Producer: yields 0, 1, ... (count of them)."""

    count = Int(1, help="How many inputs.").tag(config=True)

    def run(self) -> Iterator[int]:
        """Yield each input."""
        yield from range(self.count)


class BigInputs(Inputs):
    """Producer: yields (i, a chunk's worth of bytes) for each input i: each is handed on as soon as it is made."""

    def run(self) -> Iterator[Any]:
        """Yield each input with its 16 MiB."""
        for i in range(self.count):
            yield InputWithBytes(i, bytes(16 * 1024 * 1024))


class InputWithBytes(int):
    """An input number carrying bytes (they travel out of band, and the stager ignores them)."""

    def __new__(cls, value: int, data: bytes) -> InputWithBytes:
        made = super().__new__(cls, value)
        made.data = data  # type: ignore[attr-defined]
        return made

    def __reduce__(self) -> tuple[Any, ...]:
        return InputWithBytes, (int(self), self.data)  # type: ignore[attr-defined]


class Explode(Component):
    """Stager: yields ``per`` arrays of 1 MiB for each input i, output k filled with i * 1e6 + k; on output
    ``fail_at`` of input 0 it raises, on output ``kill_at`` of input 0 it SIGKILLs its own process (once)."""

    per = Int(300, help="Outputs per input.").tag(config=True)
    values = Int(VALUES, help="float64 values of each output (VALUES: 1 MiB).").tag(config=True)
    gauge = Unicode("", help="The gauge's directory ('': none).").tag(config=True)
    fail_at = Int(-1, help="Raise at this output of input 0 (-1: never).").tag(config=True)
    kill_at = Int(-1, help="SIGKILL this process at this output of input 0, in the first process only.").tag(
        config=True)
    marker = Unicode("", help="The token of kill_at (one process kills itself).").tag(config=True)

    def init(self) -> None:
        """No output made yet."""
        self.peak = 0

    def run(self, i: int) -> Iterator[np.ndarray]:
        """Yield each output of input ``i``."""
        gauge = Path(self.gauge) if self.gauge else None
        for k in range(self.per):
            if i == 0 and k == self.fail_at:
                raise ValueError(f"failed half-way, at output {k}")
            if i == 0 and k == self.kill_at and once(self.marker):
                os.kill(os.getpid(), signal.SIGKILL)
            if gauge is not None:
                made = bump(gauge / "made")
                self.peak = max(self.peak, made - size(gauge / "used"))
            yield np.full(self.values, i * 1e6 + k)

    def finish(self) -> None:
        """Say the most outputs this worker saw alive at once."""
        if self.gauge:
            with open(Path(self.gauge) / "peaks", "a", encoding="utf-8") as peaks:
                peaks.write(f"{self.peak}\n")


class Tally(Component):
    """Consumer: appends each output's value to ``path`` (a line each) and counts it consumed in the gauge."""

    path = Unicode(help="The file of values.").tag(config=True)
    gauge = Unicode("", help="The gauge's directory ('': none).").tag(config=True)

    def run(self, msg: Any) -> None:
        """Record one output."""
        fd = os.open(self.path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
        try:
            os.write(fd, f"{int(msg[0])}\n".encode())
        finally:
            os.close(fd)
        if self.gauge:
            bump(Path(self.gauge) / "used")


#: Longest a HelperSends run() waits for its helper thread (reaching it is a failure: outputs are then missing).
HELPER_SECONDS = 30.0


class HelperSends(Component):
    """Stager: for each input i, its run() starts a thread that send_msg()s i * per + k for each k < per, waits for
    it and returns nothing: every output of the call comes from a thread other than the one running the step's
    code, which no chunk cuts while the call runs."""

    per = Int(20_000, help="Outputs the helper thread sends per input.").tag(config=True)

    def run(self, i: int) -> None:
        """Send the input's outputs from a helper thread."""
        helper = threading.Thread(target=self._send, args=(i,), name=f"helper-of-{self.step_name}")
        helper.start()
        helper.join(HELPER_SECONDS)

    def _send(self, i: int) -> None:
        for k in range(self.per):
            self.send_msg(i * self.per + k)
