"""Steps for tests/test_remote.py: they run both in a ``pipeline-run`` subprocess and in ``pipeline-worker``
subprocesses, and tell the test what happened through marker files in a shared directory.

A worker knows which side it is on from ``REMOTE_TEST_ROLE`` in its environment (the run's
process has none; a test sets ``remote`` or ``remote-blocking`` for the pipeline-worker it starts):
the step's configuration comes from the run, so it is the same on both sides.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from traitlets import Float, Int, Unicode

from pipeline import Component

#: The longest any step or test here waits for a marker; reaching it is a failure, never the normal path.
WAIT_SECONDS = 20.0
#: How often a wait looks at the files again.
_POLL_SECONDS = 0.01
#: The environment variable that says which side a worker is on.
ROLE = "REMOTE_TEST_ROLE"


def wait_for(condition: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
    """``condition()`` once it is true; TimeoutError naming ``what`` if it is not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout:g} s for {what}")
        time.sleep(_POLL_SECONDS)
    return result


def parent_of(pid: int) -> int:
    """The parent process id of process ``pid`` (from /proc; 0 if it cannot be read)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return 0


def keeper_of(pid: int) -> int:
    """The pipeline-worker that keeps worker process ``pid``: its parent, or its parent's parent when it was
    forked from pipeline-worker's zygote (engine.zygote)."""
    parent = parent_of(pid)
    try:
        zygote = "pipeline.engine.zygote" in Path(f"/proc/{parent}/cmdline").read_text(errors="replace")
    except OSError:
        zygote = False
    return parent_of(parent) if zygote else parent


def markers(directory: str | Path, prefix: str) -> list[Path]:
    """The marker files ``prefix-*`` in ``directory``."""
    return sorted(Path(directory).glob(f"{prefix}-*"))


def marker_pids(directory: str | Path, prefix: str) -> set[int]:
    """The process ids named by the markers ``prefix-PID-THREAD`` in ``directory``."""
    return {int(path.name.split("-")[1]) for path in markers(directory, prefix)}


def _mark(directory: str, prefix: str) -> None:
    Path(directory, f"{prefix}-{os.getpid()}-{threading.get_ident()}").touch()


class Numbers(Component):
    """Producer: yields 0 .. count-1; with ``hold``, waits for that file after the first half."""

    count = Int(20, help="How many numbers.").tag(config=True)
    hold = Unicode("", help="A file to wait for (bounded) half-way through: the test lets the run go on.").tag(
        config=True)
    hold_seconds = Float(WAIT_SECONDS, help="The bound of the wait for ``hold``.").tag(config=True)

    def run(self) -> Iterator[int]:
        """Yield each number, pausing half-way until the test says so."""
        for value in range(self.count):
            if value == self.count // 2 and self.hold:
                wait_for(Path(self.hold).exists, f"the file {self.hold}", self.hold_seconds)
            yield value


#: An error naming a file whose name is not UTF-8, as Python reads such a name (a lone surrogate).
MISSING = "missing input file " + os.fsdecode(b"caf\xe9.txt")


class Tagged(Component):
    """Stage: returns {"value", "pid", "keeper"}: the pid of the process that ran it, and of the pipeline-worker
    that keeps that process (keeper_of); marks its init() and first message.

    With ``workers`` > 0, each worker's first message waits until that many workers have each
    started one (a barrier): so every worker of the step, local or remote, processes some of the
    messages. A remote worker whose role is ``remote-blocking`` then blocks in its first message
    (marked ``busy-PID-THREAD``) until the test kills it.
    """

    gate = Unicode("", help="The directory of the marker files (init-, ran-, busy-).").tag(config=True)
    workers = Int(0, help="Workers that must each have started a message before any goes on (0: none).").tag(
        config=True)
    fail_in = Unicode("", help="Where the step's code fails: init, init-false (init() returns False), finish, run "
                               "(on value 3), run-exit (sys.exit on value 3), or init-name or run-name (naming a "
                               "file whose name is not UTF-8); empty: nowhere.").tag(config=True)

    def init(self) -> bool:
        """Mark that this worker is ready."""
        self.first = True
        if self.gate:
            _mark(self.gate, "init")
        if self.fail_in == "init":
            raise RuntimeError("told to fail in init()")
        if self.fail_in == "init-name":
            raise FileNotFoundError(MISSING)
        if os.environ.get(ROLE) == "remote-slow-init":  # longer than the run's worker_timeout in the test
            wait_for(Path(self.gate, "never").exists, "nothing", timeout=WAIT_SECONDS / 2)
        return self.fail_in != "init-false"

    def finish(self) -> None:
        """Fail if told to."""
        if self.fail_in == "finish":
            raise RuntimeError("told to fail in finish()")

    def run(self, value: int) -> dict[str, int]:
        """Tag the value with this process's id."""
        if self.fail_in == "run" and value == 3:
            raise RuntimeError("told to fail in run()")
        if self.fail_in == "run-name" and value == 3:
            raise FileNotFoundError(MISSING)
        if self.fail_in == "run-exit" and value == 3:
            raise SystemExit("told to exit in run()")
        if self.first and self.gate:
            self.first = False
            _mark(self.gate, "ran")
            if self.workers:
                wait_for(lambda: len(markers(self.gate, "ran")) >= self.workers, f"{self.workers} workers")
            if os.environ.get(ROLE) == "remote-blocking":
                _mark(self.gate, "busy")
                wait_for(Path(self.gate, "never").exists, "the test to kill this worker")
            if os.environ.get(ROLE) == "remote-exit-3":  # an exit status of the step's own (the run's "is gone")
                os._exit(3)
        return {"value": value, "pid": os.getpid(), "keeper": keeper_of(os.getpid())}


class TaggedDroppingItsArguments(Tagged):
    """Stage: Tagged, whose constructor does not pass the step's arguments on to Component's."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()


class GatedSink(Component):
    """Consumer: takes every value; its finish() touches ``gate.waiting`` (the steps before it have ended), then waits
    (bounded) for the file ``gate``, so that the run outlives the steps before it for as long as the test needs."""

    gate = Unicode("", help="The file finish() waits for.").tag(config=True)

    def run(self, msg: Any) -> None:
        """Take the value."""

    def finish(self) -> None:
        """Say that it waits, and wait for the gate."""
        Path(f"{self.gate}.waiting").touch()
        wait_for(Path(self.gate).exists, f"the file {self.gate}")
