"""stderr for ``pipeline-run``: written in order, but never a reason for a thread to wait long.

When nobody reads stderr (a pipe left unread), a write blocks once the pipe's buffer is full. A
step's thread blocked in a log call cannot finish its message, so the run cannot drain, and a
signal cannot stop it either. So one thread of its own writes to stderr. A caller hands it its
text and waits until it is written, as a direct write would: output keeps its order, with stdout
too. If a write takes more than STALL_SECONDS, stderr is *stalled*: callers stop waiting, their
text queues up to MAX_PENDING_CHARS and beyond that is dropped (and counted), until the reader
catches up. A caller that waits is never dropped while stderr flows: its text (a summary quoting a
long error) is written whole, however long, and what is queued is bounded by the callers waiting.
``write_nowait`` never waits, for the signal watchdog.

The text goes to ``sys.stderr`` as it is when written (a test's capture, say).
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections import deque

#: Seconds a caller waits for its text to be written before stderr counts as stalled.
STALL_SECONDS = 1.0
#: Characters queued while stderr is stalled (about the size of a pipe's buffer, many times over);
#: past this, text is dropped rather than let memory grow.
MAX_PENDING_CHARS = 1 << 20


class StderrWriter:
    """A file-like stderr whose writes never block a caller for more than STALL_SECONDS."""

    def __init__(self) -> None:
        self.dropped = 0  # characters dropped while stderr was stalled
        self._pending: deque[str] = deque()
        self._pending_chars = 0
        self._queued = 0  # characters queued so far (written or pending)
        self._written = 0  # characters written (or lost to a broken stderr) so far
        self._stalled = False
        self._broken = False  # stderr raised on a write: it is gone, nothing more is written
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="stderr-writer", daemon=True)
        # A forked child (engine.zygote) gets a writer of its own if it needs one (_forget_in_child).
        self._thread.fork_safe = True  # type: ignore[attr-defined]
        self._thread.start()

    def write(self, text: str) -> int:
        """Write ``text``; wait until it is written, unless stderr is stalled (then only queue it)."""
        with self._cond:
            waiting = not self._stalled and not self._broken
            target = self._enqueue(text, waiting)
            if waiting and not self._cond.wait_for(lambda: self._written >= target or self._broken, STALL_SECONDS):
                self._stalled = True
        return len(text)

    def write_nowait(self, text: str) -> None:
        """Queue ``text`` and return at once."""
        with self._cond:
            self._enqueue(text, False)

    def flush(self) -> None:
        """Nothing to do: ``write`` returns once its text is written (or stderr is stalled)."""

    def drain(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds until everything queued is written; whether it was."""
        deadline = time.monotonic() + timeout
        with self._cond:
            return self._cond.wait_for(lambda: self._written >= self._queued or self._broken,
                                       max(0.0, deadline - time.monotonic()))

    def _enqueue(self, text: str, waits: bool) -> int:
        """Queue ``text`` (or drop it if too much is queued and its caller ``waits`` not for it); the count
        ``_written`` reaches once it is out."""
        if self._broken or (not waits and self._pending and self._pending_chars + len(text) > MAX_PENDING_CHARS):
            self.dropped += len(text)
        else:
            self._pending.append(text)
            self._pending_chars += len(text)
            self._queued += len(text)
            self._cond.notify_all()
        return self._queued

    def _run(self) -> None:
        """The writer's thread: write what is queued, in order, until the process ends."""
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending)
                text = "".join(self._pending)
                self._pending.clear()
                self._pending_chars = 0
            try:
                sys.stderr.write(text)
                sys.stderr.flush()
            except (OSError, ValueError, AttributeError):  # closed, or no stderr at all: stop writing
                with self._cond:
                    self._broken = True
            with self._cond:
                self._written += len(text)
                if not self._pending:
                    self._stalled = False
                self._cond.notify_all()


_shared: StderrWriter | None = None
_shared_lock = threading.Lock()


def shared() -> StderrWriter:
    """The process's one StderrWriter (made on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = StderrWriter()
        return _shared


def _forget_in_child() -> None:
    """A forked child has no writer thread: it makes its own writer on first use."""
    global _shared, _shared_lock
    _shared = None
    _shared_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_in_child)
