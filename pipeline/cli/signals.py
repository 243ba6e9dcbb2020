"""Ctrl+C, SIGTERM and SIGHUP for pipeline-run: the first drains, the second stops now, and the process
always ends, even when a step's run() never returns (a thread cannot be killed), and whatever
stderr does (a full pipe that nobody reads cannot stop the watchdog: it never waits for stderr).

Python runs signal handlers only in the main thread and only between bytecodes, so a main thread
blocked in a lock may not see them. A watchdog thread reads the signals from a wakeup file
descriptor instead, asks the pipeline to stop or abort, and exits the process if the run has not
returned in time.

A closed stdout (see ``end_of_output``) stops the run as a first signal would, as SIGPIPE: exit
status 141. A worker process of the run that finds the shared stdout closed sends the run SIGPIPE,
which the watchdog takes for the same news once it has seen that stdout is closed here too (a
SIGPIPE from a write into some other pipe or socket is no end of output). A terminal that hung up (its
writes fail with EIO) is the end of output too, and stops the run as SIGHUP: the kernel's SIGHUP, which
comes with it, is the same news, not a second signal.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from contextlib import ExitStack, suppress
from types import TracebackType
from typing import Any

from pipeline.console import end_of_output, lent_signals
from pipeline.console.stderr import shared as shared_stderr
from pipeline.execution.report import given_up

#: Seconds after a second signal, or after shutdown_timeout, before the process exits anyway
#: (the threaded runner gives up on busy threads after ABORT_GRACE_SECONDS and reports first).
EXIT_GRACE_SECONDS = 3.0
#: Seconds the watchdog gives its last note to reach stderr before it exits the process.
NOTE_SECONDS = 0.5

#: The signals handled (console.lent_signals's HANDLED): SIGHUP too, a terminal closed or an ssh session dropped ends
#: the run as SIGTERM does, its report and its steps' finish() with it (the default action killed it at once, its
#: buffered output lost).
HANDLED = lent_signals.HANDLED
#: A byte on the wakeup pipe that is no signal: it only makes the watchdog look at its deadline again.
_WAKE = 0


class SignalGuard:
    """Within ``with``, SIGINT, SIGTERM and SIGHUP stop ``pipeline`` (it must have interrupt() and busy()).

    ``process_ends``: the process exits once the run has returned (pipeline-run): those signals are then ignored,
    not given back to Python's handlers, so that one sent as the run ends neither kills the process before its report
    is printed nor makes it exit with another status than the report says.
    """

    def __init__(self, pipeline: Any, shutdown_timeout: float, process_ends: bool = False) -> None:
        if threading.current_thread() is not threading.main_thread():
            # Python runs signal handlers in the main thread only, and refuses to set them elsewhere (a raw
            # ValueError, after this guard's pipe was opened and left open).
            raise RuntimeError("SignalGuard handles Ctrl+C, SIGTERM and SIGHUP, which Python delivers to the main "
                               "thread only: use it in the main thread (another thread can run Pipeline.run() "
                               "without it, and stop it with Pipeline.interrupt(signum))")
        self.pipeline = pipeline
        self.shutdown_timeout = shutdown_timeout
        self.process_ends = process_ends
        self.first_signal: int | None = None
        self._hangup_found = False  # a write found the terminal hung up before the kernel's SIGHUP was read
        self._deadline: float | None = None
        self._lock = threading.Lock()  # signals come from the watchdog, the end of output from any thread
        self._stderr = shared_stderr()
        self._done = threading.Event()
        self._read_fd, self._write_fd = os.pipe()
        self._previous: dict[int, Any] = {}
        self._previous_fd = -1
        self._stack = ExitStack()
        self._watchdog = threading.Thread(target=self._watch, name="signal-watchdog", daemon=True)
        self._watchdog.fork_safe = True  # type: ignore[attr-defined]  # a forked child gets its signals back (lent_signals)

    def __enter__(self) -> SignalGuard:
        self.pipeline.expect_signals()  # a signal before its run starts stops that run
        os.set_blocking(self._write_fd, False)
        for sig in (*HANDLED, signal.SIGPIPE):
            self._previous[sig] = lent_signals.install(sig, lambda signum, frame: None)  # the watchdog acts
        self._previous_fd = lent_signals.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        self._stack.enter_context(end_of_output.listening(self._output_ended))
        self._watchdog.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stack.close()
        self._done.set()
        lent_signals.set_wakeup_fd(self._previous_fd)
        for sig, handler in self._previous.items():
            lent_signals.restore(sig, signal.SIG_IGN if self.process_ends and sig in HANDLED else handler)
        os.write(self._write_fd, bytes([_WAKE]))  # wake the watchdog so it ends
        self._watchdog.join()
        os.close(self._read_fd)
        os.close(self._write_fd)

    def _watch(self) -> None:
        while not self._done.is_set():
            with self._lock:
                deadline = self._deadline
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([self._read_fd], [], [], timeout)
            if self._done.is_set():
                return
            if not ready:
                self._exit_now("the run did not stop in time")
            for signum in os.read(self._read_fd, 64):
                if signum in HANDLED:
                    self._arrived(signum)
                elif signum == signal.SIGPIPE and 1 in end_of_output.closed_fds():
                    end_of_output.end_output()  # a worker process found stdout closed: tells _output_ended

    def _arrived(self, signum: int) -> None:
        """A signal: the first stops the run after what is in flight, the next stops it now."""
        with self._lock:
            if signum == signal.SIGHUP and self._hangup_found:
                self._hangup_found = False  # the kernel's news of the hang-up the run is already stopping for
                return
            name = signal.Signals(signum).name
            if self.first_signal is None:
                self.first_signal = signum
                self._deadline = time.monotonic() + self.shutdown_timeout + EXIT_GRACE_SECONDS
                self._note(f"{name}: stopping after what is in flight (send it again to stop at once)")
            else:
                self._deadline = min(self._deadline or float("inf"), time.monotonic() + EXIT_GRACE_SECONDS)
                self._note(f"{name} again: stopping now")
            self.pipeline.interrupt(signum)

    def _output_ended(self) -> None:
        """stdout was closed, or its terminal hung up (called in the thread that found it): stop as a first SIGPIPE
        (SIGHUP) would."""
        signum = end_of_output.ending_signal()
        with self._lock:
            if self.first_signal is not None:
                return  # already stopping: a closed stdout is no reason to stop at once
            self.first_signal = signum
            self._hangup_found = signum == signal.SIGHUP
            self._deadline = time.monotonic() + self.shutdown_timeout + EXIT_GRACE_SECONDS
            what = "the terminal hung up" if signum == signal.SIGHUP else "stdout was closed"
            self._note(f"pipeline-run: {what}: stopping after what is in flight")
            # In this thread, before the step that found it goes on: the run's exit status is 141 (129) for sure.
            self.pipeline.interrupt(signum)
        with suppress(OSError):  # a thread left behind may find it after the guard closed its pipe
            os.write(self._write_fd, bytes([_WAKE]))  # the watchdog takes the new deadline

    def _note(self, text: str) -> None:
        self._stderr.write_nowait(text + "\n")

    def _exit_now(self, why: str) -> None:
        """Leave the process: some run() did not return, and a thread cannot be killed; with the run's report as it
        stands (a sequential run's thread is the one stuck: nothing else would print it)."""
        busy = self.pipeline.busy()
        detail = "; still busy: " + ", ".join(busy) if busy else ""
        try:
            report = self.pipeline.report_now()
        except Exception:  # a last resort: nothing may keep it from exiting
            report = None
        table = "" if report is None else given_up(report).table() + "\n"
        from pipeline.monitor.terminal import give_back_terminals  # here: rich is imported only for a terminal

        give_back_terminals(NOTE_SECONDS)  # the progress table's scrolling region would outlive the process
        self._note(f"pipeline-run: {why}{detail}\n{table}".rstrip("\n"))
        self._stderr.drain(NOTE_SECONDS)
        os._exit(128 + (self.first_signal or signal.SIGINT))
