"""The run-wide failure policy: every failed message is logged once, counted, written as a dead
letter if asked, and may stop the run (a step's ``on_error: stop``, or ``max_failures`` reached)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .config import StepConfig
from .deadletter import DeadLetterWriter
from .message import Encoded
from .step import RemoteError, failure_line, traceback_text

log = logging.getLogger("pipeline.failures")


@dataclass(frozen=True)
class ErrorEvent:
    """One error, as the monitor reports it."""

    step: str
    worker: int
    seq: int | None  # the message's sequence number at the step; None for init()/finish()/a producer
    error: str  # one line: the exception's type and message
    traceback: str


class NotRun(Exception):
    """The reason recorded for a message that a stopped step never started."""


class FailurePolicy:
    """Shared by every thread of a run; calls ``stop(reason)`` when the run must stop taking input."""

    def __init__(self, max_failures: int, dead_letter: str, stop: Callable[[str], None]) -> None:
        self.max_failures = max_failures
        self.stop = stop
        self.total = 0
        self.stop_reason: str | None = None
        self._lock = threading.Lock()  # failures are rare: a lock here costs nothing on the hot path
        self._writer = DeadLetterWriter(dead_letter) if dead_letter else None
        self.listeners: list[Callable[[ErrorEvent], None]] = []  # told of every error (the monitor)
        self.halted: set[str] = set()  # steps that start no further message (on_error=stop)

    def _notify(self, step: str, worker: int, seq: int | None, what: str, error: BaseException) -> None:
        event = ErrorEvent(step, worker, seq, what + failure_line(error), traceback_text(error))
        for listener in self.listeners:
            listener(event)

    def lifecycle_failed(self, step: str, worker: int, what: str, error: BaseException) -> str:
        """Log an init(), finish() or producer error (the run will exit 1); return its one-line form."""
        line = f"{what}: {failure_line(error)}"
        _log_error(error, "step %s worker %d: %s", step, worker, line)
        self._notify(step, worker, None, f"{what}: ", error)
        return line

    def message_failed(self, step: StepConfig, worker: int, seq: int, error: BaseException,
                       message: Encoded | None) -> None:
        """Log, count and record one failed message; stop the run if the policy says so."""
        with self._lock:
            # Decide first: a halted step's other workers start nothing more from now on.
            self.total += 1
            stopped = None
            if step.on_error == "stop":
                stopped = self._halt(step.name, f"step {step.name} failed on message {seq} (on_error=stop)")
            elif self.max_failures and self.total >= self.max_failures:
                stopped = self._stop(f"{self.total} messages failed (max_failures={self.max_failures})")
            if self._writer is not None:
                self._writer.write(step.name, worker, seq, error, message)
        _log_error(error, "step %s worker %d: run() failed on message %d: %s", step.name, worker, seq,
                   failure_line(error))
        self._notify(step.name, worker, seq, "", error)
        self._log_stop(stopped)

    def halt(self, step: str, reason: str) -> None:
        """Stop the run, and make ``step`` start no further message."""
        with self._lock:
            stopped = self._halt(step, reason)
        self._log_stop(stopped)

    def _halt(self, step: str, reason: str) -> str | None:
        self.halted.add(step)
        return self._stop(reason)

    def not_run(self, step: StepConfig, seq: int, message: Encoded) -> None:
        """Record a message that a halted step did not start: a dead letter, to replay after the fix."""
        if self._writer is not None:
            with self._lock:
                self._writer.write(step.name, -1, seq, NotRun(f"not run: step {step.name} had stopped"), message)

    def _stop(self, reason: str) -> str | None:
        """Stop the run for ``reason``; the reason if this stopped it, None if it was already stopping."""
        if self.stop_reason is not None:
            return None
        self.stop_reason = reason
        self.stop(reason)
        return reason

    @staticmethod
    def _log_stop(reason: str | None) -> None:
        if reason is not None:
            log.error("stopping the run: %s; draining what is in flight", reason)

    def close(self) -> None:
        """Close the dead-letter file."""
        if self._writer is not None:
            self._writer.close()


def _log_error(error: BaseException, text: str, *args: object) -> None:
    """Log ``text`` with the traceback of ``error`` (a worker process's, for a RemoteError)."""
    if isinstance(error, RemoteError):
        log.error(text + "\n%s", *args, error.remote_traceback.rstrip())
    else:
        log.error(text, *args, exc_info=error)
