"""Ctrl+C and SIGTERM for pipeline-run: the first drains, the second stops now, and the process
always ends, even when a step's run() never returns (a thread cannot be killed).

Python runs signal handlers only in the main thread and only between bytecodes, so a main thread
blocked in a lock may not see them. A watchdog thread reads the signals from a wakeup file
descriptor instead, asks the pipeline to stop or abort, and exits the process if the run has not
returned in time.
"""

from __future__ import annotations

import os
import select
import signal
import sys
import threading
import time
from types import TracebackType
from typing import Any

#: Seconds after a second signal, or after shutdown_timeout, before the process exits anyway
#: (the threaded runner gives up on busy threads after ABORT_GRACE_SECONDS and reports first).
EXIT_GRACE_SECONDS = 3.0

HANDLED = (signal.SIGINT, signal.SIGTERM)


class SignalGuard:
    """Within ``with``, SIGINT and SIGTERM stop ``pipeline`` (it must have interrupt() and busy())."""

    def __init__(self, pipeline: Any, shutdown_timeout: float) -> None:
        self.pipeline = pipeline
        self.shutdown_timeout = shutdown_timeout
        self.first_signal: int | None = None
        self._done = threading.Event()
        self._read_fd, self._write_fd = os.pipe()
        self._previous: dict[int, Any] = {}
        self._previous_fd = -1
        self._watchdog = threading.Thread(target=self._watch, name="signal-watchdog", daemon=True)

    def __enter__(self) -> SignalGuard:
        os.set_blocking(self._write_fd, False)
        for sig in HANDLED:
            self._previous[sig] = signal.signal(sig, lambda signum, frame: None)  # the watchdog acts
        self._previous_fd = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        self._watchdog.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._done.set()
        signal.set_wakeup_fd(self._previous_fd)
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        os.write(self._write_fd, b"\0")  # wake the watchdog so it ends
        self._watchdog.join()
        os.close(self._read_fd)
        os.close(self._write_fd)

    def _watch(self) -> None:
        deadline: float | None = None
        while not self._done.is_set():
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._read_fd], [], [], timeout)
            if self._done.is_set():
                return
            if not ready:
                self._exit_now("the run did not stop in time")
            for signum in os.read(self._read_fd, 64):
                if signum not in HANDLED:
                    continue
                if self.first_signal is None:
                    self.first_signal = signum
                    deadline = time.monotonic() + self.shutdown_timeout + EXIT_GRACE_SECONDS
                    print(f"{signal.Signals(signum).name}: stopping after what is in flight "
                          "(send it again to stop at once)", file=sys.stderr, flush=True)
                    self.pipeline.interrupt(signum)
                else:
                    deadline = min(deadline or float("inf"), time.monotonic() + EXIT_GRACE_SECONDS)
                    print(f"{signal.Signals(signum).name} again: stopping now", file=sys.stderr, flush=True)
                    self.pipeline.interrupt(signum)

    def _exit_now(self, why: str) -> None:
        """Leave the process: some run() did not return, and a thread cannot be killed."""
        busy = self.pipeline.busy()
        detail = "; still busy: " + ", ".join(busy) if busy else ""
        print(f"pipeline-run: {why}{detail}", file=sys.stderr, flush=True)
        os._exit(128 + (self.first_signal or signal.SIGINT))
