"""The run-wide failure policy: every failed message is counted, logged (briefly past the first of
its kind, see ``failure_log``), written as a dead letter if asked, and may stop the run (a step's
``on_error: stop``, or ``max_failures`` reached). Its ``summary()`` ends the run's report."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from pipeline.component import Component
from pipeline.config.model import StepConfig
from pipeline.config.options import RunOptions
from pipeline.console.end_of_output import caused_by_closed_output
from pipeline.console.humanize import counted
from pipeline.errors import ConfigError, StepFailed
from pipeline.failures.deadletter import OPTION, DeadLetterReplay, DeadLetterWriter, NotReplayed
from pipeline.failures.describe import (
    error_kind,
    failure_line,
    failure_of_run,
    message_words,
    summary_error,
    traceback_text,
)
from pipeline.failures.log import COUNT, TRACEBACK, FailureLog, count_line
from pipeline.message import Encoded, UnreadableMessage, resumed

log = logging.getLogger("pipeline.failures")


@dataclass(frozen=True)
class ErrorEvent:
    """One error, as the monitor reports it."""

    step: str
    worker: int
    seq: int | None  # the message's sequence number at the step; None for init()/finish()/a producer, or a message
    # of no input (describe.message_words)
    error: str  # one line: the exception's type and message
    traceback: str


class NotRun(Exception):
    """The reason recorded for a message that a stopped step never started."""


class FailurePolicy:
    """Shared by every thread of a run; calls ``stop(reason)`` when the run must stop taking input."""

    def __init__(self, max_failures: int, dead_letter: str, stop: Callable[[str], None],
                 dead_letter_setting: tuple[str, str] = ("", OPTION), replayed: str | None = None) -> None:
        """``dead_letter_setting``: where the dead-letter path was given, as an error opening it names it;
        ``replayed``: the dead-letter file the run replays (DeadLetterWriter's)."""
        self.max_failures = max_failures
        self.stop = stop
        self.total = 0
        self.stop_reason: str | None = None
        self.first_failure: str | None = None  # where and what, of the run's first failure of any kind
        #: Each step's first error, as its report gives it: the first to reach this policy, whichever worker had it
        #: (the workers' own first errors, merged in worker order, are not the step's first).
        self.first_errors: dict[str, str] = {}
        self.by_step: dict[str, Counter[str]] = {}  # failed messages per step, per exception type
        self._lock = threading.Lock()  # failures are rare: a lock here costs nothing on the hot path
        self._log = FailureLog()
        self._writer = DeadLetterWriter(dead_letter, dead_letter_setting, replayed) if dead_letter else None
        #: The records of the replayed file with no message to send: failures this run leaves as they were.
        self.not_replayed = self._writer.kept if self._writer is not None else (
            NotReplayed.read(replayed) if replayed is not None else NotReplayed())
        self.listeners: list[Callable[[ErrorEvent], None]] = []  # told of every error (the monitor)
        self.halted: set[str] = set()  # steps that start no further message (on_error=stop)
        self.not_run_count = 0  # messages that halted steps did not start (the report counts them as not processed)
        self.not_started: str | None = None  # the first init() failure, as the run's stop reason says it
        self.closed = False  # by the run's end, or by its runner's discard() if it never ran

    def _notify(self, step: str, worker: int, seq: int | None, what: str, error: BaseException) -> None:
        event = ErrorEvent(step, worker, seq, what + failure_line(error), traceback_text(error))
        for listener in self.listeners:
            listener(event)

    def lifecycle_failed(self, step: str, worker: int, what: str, error: BaseException) -> str:
        """Log an init(), finish() or producer error (the run will exit 1; a producer's stops it, as the stop reason
        says); return its one-line form."""
        line = f"{what}: {failure_line(error)}"
        quiet = caused_by_closed_output(error)  # the end of output is not worth a line
        kind = f"{what.split(' ', 1)[0]} {error_kind(error)}"  # init(), finish() or run() (of shard N), and the type
        with self._lock:  # logged under it too: the first logged of a kind is the one decided first (cli.md, Output)
            self.first_failure = self.first_failure or f"step {step} worker {worker}, {line}"
            self.first_errors.setdefault(step, line)
            if what == "init()" and self.not_started is None:
                self.not_started = f"step {step} could not start: {line}"
            # Every worker of a step runs its init(): one bug there fails them all, with one traceback in the log.
            how, earlier = (COUNT, 0) if quiet else self._log.classify(step, kind)
            if earlier:
                log.error("%s", count_line(step, kind, earlier))
            if how != COUNT:
                # A StepFailed is the engine's own word (init() returned False): its line says it all.
                _log_failure(error, how == TRACEBACK and error_kind(error) != StepFailed.__name__,
                             "step %s worker %d: %s", step, worker, line)
        if what.startswith("run()"):  # the producer's generator (one shard's: the others stop too) sends no more
            self.halt(step, f"step {step} raised {failure_line(error)} in run()")
        self._notify(step, worker, None, f"{what}: ", error)
        return line

    def message_failed(self, step: StepConfig, worker: int, seq: int | None, error: BaseException,
                       message: Encoded | None, delivered: int = 0, fatal: bool = False) -> None:
        """Log, count and record one failed message (``delivered`` of its outputs went on before it failed, in
        chunks: its dead letter says so, and its replay skips them); stop the run if the policy says so, or if
        the failure is ``fatal`` (a SystemExit or such in run(): the step fails and is halted)."""
        kind = error_kind(error)
        quiet = caused_by_closed_output(error)
        with self._lock:  # logged under it too: the first logged of a kind is the one decided first (cli.md, Output)
            self.total += 1
            self.by_step.setdefault(step.name, Counter())[kind] += 1
            self.first_failure = self.first_failure or f"step {step.name} worker {worker}, {message_words(seq)}: " + (
                failure_line(error))
            self.first_errors.setdefault(step.name, failure_of_run(failure_line(error), fatal))
            how, earlier = (COUNT, 0) if quiet else self._log.classify(step.name, kind)
            # Decide first: a halted step's other workers start nothing more from now on.
            stop = None if quiet else self._stop_reason(step, seq, error if fatal else None)
            if self._writer is not None:
                self._writer.write(step.name, worker, seq, error, message, delivered)
            if earlier:
                log.error("%s", count_line(step.name, kind, earlier))
            if how != COUNT:
                _log_message_failure(step.name, worker, seq, error, message, delivered, how == TRACEBACK)
        self._stop_now(stop)  # after the failure's own line, which says why
        self._notify(step.name, worker, seq, "", error)

    def _stop_reason(self, step: StepConfig, seq: int | None, fatal: BaseException | None = None) -> str | None:
        """Why this failure stops the run, the first time one does (the caller holds the lock); a step whose run()
        raised a ``fatal`` error (not an Exception), or with on_error=stop, is halted at once, and once max_failures
        is reached every step that failed a message.

        Halted, not drained: the messages queued for a failing step would only fail in turn (hundreds past the
        limit, where the queues are long); what it did not run is counted and written as not run, to replay.
        A closed stdout is not asked about: it stops the run already, as SIGPIPE would.
        """
        if fatal is not None:
            self.halted.add(step.name)
            return self._claim(f"step {step.name} raised {failure_line(fatal)} in run()")
        if step.on_error == "stop":
            self.halted.add(step.name)
            return self._claim(f"step {step.name} failed on {message_words(seq)} (on_error=stop)")
        if self.max_failures and self.total >= self.max_failures:
            self.halted.update(self.by_step)
            return self._claim(f"max_failures={self.max_failures} reached")
        return None

    def _claim(self, reason: str) -> str | None:
        """Make ``reason`` the run's stop reason if it has none yet (the caller holds the lock)."""
        if self.stop_reason is not None:
            return None
        self.stop_reason = reason
        return reason

    def _stop_now(self, reason: str | None) -> None:
        if reason is not None:
            log.error("stopping the run: %s; draining what is in flight", reason)
            self.stop(reason)

    def halt(self, step: str, reason: str) -> None:
        """Stop the run, and make ``step`` start no further message."""
        with self._lock:
            self.halted.add(step)
            stop = self._claim(reason)
        self._stop_now(stop)

    def stop_not_started(self) -> None:
        """An init() failed, so the producer does not start: that init() failure is why the run stopped (unless the
        run has a reason already); the failure's own line has told it."""
        with self._lock:
            if self.not_started is not None:
                self._claim(self.not_started)

    def not_run(self, step: StepConfig, seq: int | None, message: Encoded, delivered: int = 0) -> None:
        """Record a message that a halted step (or one whose init() failed) did not start: a dead letter, to replay
        after the fix (which skips the ``delivered`` outputs of it that went on from a process that ran it in part
        and died)."""
        with self._lock:
            self.not_run_count += 1
            if self._writer is not None:
                self._writer.write(step.name, -1, seq, NotRun(f"not run: step {step.name} had stopped"), message,
                                   delivered)

    @classmethod
    def for_run(cls, options: RunOptions, stop: Callable[[str], None]) -> FailurePolicy:
        """The policy of a run with ``options`` (its failure settings and dead-letter file), stopping it by ``stop``."""
        return cls(options.max_failures, options.dead_letter, stop, options.dead_letter_setting,
                   options.replayed)

    def close(self, producer: Component | None = None) -> None:
        """The run ended, its producer ``producer`` (its Component, if it was built): if that is a replay stopped
        before its end (or never started), each message it did not send is written as not run, to replay again (its
        file may be the one this run writes over); log the failures only counted so far, and close the dead-letter
        file. Once: a later call does nothing."""
        if self.closed:
            return
        self.closed = True
        if isinstance(producer, DeadLetterReplay) and self._writer is not None:
            self._record_unsent(producer, self._writer)
        with self._lock:  # after any line of a failure that is still being logged
            for step, kind, count in self._log.unreported():
                log.error("%s", count_line(step, kind, count))
        if self._writer is not None:
            self._writer.close()

    def _record_unsent(self, producer: DeadLetterReplay, writer: DeadLetterWriter) -> None:
        """Write each message the replay did not send as not run; if its file changed since the replay read it (another
        replay put its own records in its place), count them as dead letters that could not be written: the run ends
        with its report (exit 1), not with that error alone."""
        try:
            for record in producer.unsent():  # as recorded: still pickled, with what of it went on
                with self._lock:
                    writer.write(record.step, -1, None, NotRun("not sent: the replay stopped before it"),
                                 record.encoded, record.delivered)
        except ConfigError as err:  # raised before any record: the file is checked as it is opened
            with self._lock:
                writer.lost += producer.unsent_count()
                writer.error = writer.error or f"the messages not sent are gone: {err}"

    def settle(self, lost_in_flight: bool) -> str | None:
        """The run has ended, and lost messages in flight or not: its dead letters replace the file it replayed, or
        not (DeadLetterWriter.settle); a line for its summary, if any."""
        return self._writer.settle(lost_in_flight) if self._writer is not None else None

    def summary(self) -> list[str]:
        """The lines the run's report starts with: its first failure, the failed messages of each step
        by exception type, the replayed records with no message to send, and the dead letters written (and those that
        could not be)."""
        lines = []
        if self.first_failure:
            lines.append(f"first failure: {summary_error(self.first_failure)}")
        if self.by_step:
            lines.append("failed messages: " + "; ".join(
                f"{step} " + ", ".join(f"{count} {kind}" for kind, count in kinds.most_common())
                for step, kinds in self.by_step.items()))
        if self.not_replayed.failed:
            lines.append(self.not_replayed.summary())
        writer = self._writer
        if writer is not None:
            count = writer.records
            lost = f"; {writer.lost} could not be written: {writer.error}" if writer.lost else ""
            kept = (f" ({counted(writer.kept.count, 'record')} of the replayed file kept as it was: no message to "
                    "replay)" if writer.kept.count else "")
            lines.append(f"dead letters: {counted(count, 'record')} written to {writer.path}{kept}{lost}")
        return lines

    @property
    def unrecorded(self) -> int:
        """The dead letters that could not be written to the dead-letter file (those messages are lost)."""
        return self._writer.lost if self._writer is not None else 0


def _log_message_failure(step: str, worker: int, seq: int | None, error: BaseException, message: Encoded | None,
                         delivered: int, with_traceback: bool) -> None:
    """Log the failure of message ``seq`` of ``step`` (``delivered`` of its outputs went on, in chunks)."""
    # The record keeps the message as it came: a Resume of what earlier runs delivered, which adds up.
    before = resumed(message) if message is not None else 0
    sent = "" if not delivered + before else (
        f" ({delivered + before} of its outputs had gone on"
        f"{f', {delivered} in this run' if before else ''}: a replay skips them)")
    line = failure_line(error)
    unread = error_kind(error) == UnreadableMessage.__name__  # its cause's line follows the type's name
    _log_failure(error, with_traceback, "step %s worker %d: %s %s: %s%s", step, worker,
                 "could not unpickle" if unread else "run() failed on", message_words(seq),
                 summary_error(line.split(": ", 1)[-1] if unread else line), sent)


def _log_failure(error: BaseException, with_traceback: bool, text: str, *args: object) -> None:
    """Log ``text``, with the traceback of ``error`` if asked (a worker process's, for a RemoteError), to
    MAX_ERROR_CHARS (a step's ValueError("x" * 1_100_000) was logged whole)."""
    if with_traceback:
        log.error(text + "\n%s", *args, traceback_text(error).rstrip())
    else:
        log.error(text, *args)
