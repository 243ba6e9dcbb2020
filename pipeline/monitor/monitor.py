"""The monitor: a thread that watches a run and publishes its status stream and its progress.

It reads ``runner.snapshot()`` every POLL_SECONDS (plain attribute reads: the engine takes no
lock for it) and publishes a ``status`` message at each change of state of the run or of a step,
and at least every STATUS_SECONDS; the ``graph`` every ``graph_interval`` seconds and whenever a
subscriber subscribes; each error as the failure policy reports it. Errors arrive from the worker
threads through a listener that only keeps them (PendingErrors): the monitor's thread alone sends.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING, Any

import zmq

from pipeline.config.model import PipelineConfig
from pipeline.execution.report import RunReport
from pipeline.execution.runner import Runner
from pipeline.execution.status import RunStatus
from pipeline.failures.policy import ErrorEvent
from pipeline.monitor.credentials import (
    Credentials,
    no_key_reason,
    refusal_reason,
    run_credentials,
    say_once,
    unanswered_reason,
)
from pipeline.monitor.messages import (
    ERROR,
    FINISH,
    GRAPH,
    MAX_STEPS,
    STATUS,
    Envelope,
    error_body,
    finish_body,
    graph_body,
    status_body,
)
from pipeline.monitor.progress import LogProgress
from pipeline.monitor.publisher import END_WAIT_MS, HANDSHAKE_WAIT_MS, Publisher, Refusal

if TYPE_CHECKING:
    from rich.console import Console

    from pipeline.monitor.terminal import TerminalProgress

log = logging.getLogger("pipeline.monitor")

#: Seconds between two looks at the run.
POLL_SECONDS = 0.1
#: A status message goes out at least this often, and at each change of state.
STATUS_SECONDS = 0.5
#: A step's rate is measured over about this many recent seconds.
RATE_WINDOW_SECONDS = 2.0
#: Seconds the monitor's thread is given to send its last messages and close once the run ended.
JOIN_SECONDS = 5.0
#: Bytes of errors waiting for the monitor's thread at most; past this the oldest are dropped (counted). Each
#: error is kept as sent, cut to ERROR_CHARS and TRACEBACK_CHARS (about 136 KB in memory at most): this holds a
#: full send queue (SEND_HWM) of the largest, while a flood of a peer's 4 MB texts cannot grow the run.
MAX_PENDING_ERROR_BYTES = 16 * 1024 * 1024


#: Where a run reports unless told otherwise: ``pipeline-gui``'s default address.
DEFAULT_GUI_ADDRESS = "localhost:5565"


@dataclass(frozen=True)
class MonitorSettings:
    """What the monitor does (the Pipeline traits of the same names)."""

    gui: bool = False  # publish the status stream
    gui_address: str = DEFAULT_GUI_ADDRESS
    monitor_named: bool = False  # the user set gui_address (even to its default) or a key: a monitor is expected
    gui_plaintext: bool = False  # publish in clear, to whoever listens at gui_address
    gui_server_key: str = ""  # the monitor's public key file ("": the user's own pair)
    gui_key: str = ""  # this run's key pair file ("": the user's own pair)
    graph_interval: float = 2.0  # seconds between two graph messages
    progress: bool = False  # show progress on stderr
    progress_interval: float = 5.0  # seconds between two progress log lines (stderr not a terminal)


class Rates:
    """Messages processed per second by each step, over the last RATE_WINDOW_SECONDS."""

    def __init__(self) -> None:
        self._samples: dict[str, deque[tuple[float, int]]] = {}

    def add(self, status: RunStatus, now: float) -> dict[str, float]:
        """Take the counts of ``status`` seen at ``now``; return each step's recent rate."""
        rates = {}
        for step in status.steps:
            samples = self._samples.setdefault(step.name, deque())
            samples.append((now, step.counts.processed))
            while len(samples) > 2 and samples[1][0] <= now - RATE_WINDOW_SECONDS:
                samples.popleft()
            (start, first), (end, last) = samples[0], samples[-1]
            rates[step.name] = (last - first) / (end - start) if end > start else 0.0
        return rates


class PendingErrors:
    """The errors the monitor's thread has not sent yet, as error bodies, MAX_PENDING_ERROR_BYTES at most.

    Told by the worker threads (``add``), read by the monitor's thread (``take``). Kept only while they may be
    published: ``close`` (no publisher, or the run's end) drops what waits and keeps nothing more.
    """

    def __init__(self, max_bytes: int = MAX_PENDING_ERROR_BYTES) -> None:
        self.max_bytes = max_bytes
        self._bodies: deque[tuple[dict[str, Any], int]] = deque()  # each with its size
        self._bytes = 0
        self._dropped = 0  # thrown away to make room, not yet handed out by take()
        self._open = True
        self._lock = threading.Lock()  # worker threads add, the monitor's thread takes

    def add(self, event: ErrorEvent) -> None:
        """Keep ``event`` as the body it is sent as (its texts cut), dropping the oldest past ``max_bytes``."""
        body = error_body(event)  # cut here, in the reporting thread: a whole 4 MB text is never kept
        size = sys.getsizeof(body) + sum(sys.getsizeof(value) for value in body.values())
        with self._lock:
            if not self._open:
                return
            self._bodies.append((body, size))
            self._bytes += size
            while self._bytes > self.max_bytes:
                self._bytes -= self._bodies.popleft()[1]
                self._dropped += 1

    def take(self) -> tuple[list[dict[str, Any]], int]:
        """The bodies waiting, oldest first, and the number dropped since the last call."""
        with self._lock:
            bodies = [body for body, _ in self._bodies]
            dropped, self._dropped, self._bytes = self._dropped, 0, 0
            self._bodies.clear()
        return bodies, dropped

    def close(self) -> None:
        """Drop what waits and keep nothing more: nothing will publish it."""
        with self._lock:
            self._open = False
            self._bodies.clear()
            self._bytes = 0


class Monitor:
    """Watches one run: ``with Monitor(...) as monitor: report = monitor.close(runner.run())``.

    ``console`` forces the terminal display onto that rich Console (for tests); otherwise it is used
    only if stderr is a terminal.
    A key file named in ``settings`` that cannot be read is a ConfigError, raised here, before the run.
    """

    def __init__(self, config: PipelineConfig, runner: Runner, settings: MonitorSettings,
                 console: Console | None = None) -> None:
        self.config = config
        self.runner = runner
        self.settings = settings
        self.console = console
        self.envelope = Envelope.for_run(config)
        self.credentials: Credentials | None = None
        if settings.gui and not settings.gui_plaintext:
            self.credentials = run_credentials(settings.gui_server_key, settings.gui_key)
        self._graph = graph_body(config)
        self._errors = PendingErrors()
        self._ended = threading.Event()
        self._report: RunReport | None = None
        self._last: RunStatus | None = None  # the run's last status, taken when it ended
        self._final_state = "failed"
        self._thread = threading.Thread(target=self._watch, name="monitor", daemon=True)
        self._failures = 0
        # The publishing loop's state (the monitor's thread only).
        self._graph_sent = self._status_sent = float("-inf")
        self._states: tuple[str, ...] = ()
        self._held: Refusal | None = None  # a refusal that says too little on its own, until the next one
        self._refusal_said = False  # a run says at most once why nobody hears it

    def __enter__(self) -> Monitor:
        if self.settings.gui:
            self.runner.policy.listeners.append(self._errors.add)
        if self.settings.gui or self.settings.progress:
            try:
                self._thread.start()
            except BaseException:  # Ctrl+C landing in start(): ``with`` runs no __exit__, but the thread runs
                self.__exit__(*sys.exc_info())
                raise
        return self

    def close(self, report: RunReport) -> RunReport:
        """The run ended with ``report``: send the last status and the report, stop."""
        self._last = self.runner.snapshot()
        self._report = report
        self._final_state = report.state
        self._end()
        return report

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._report is None:  # the run raised: no report
            self._final_state = "interrupted" if kind is KeyboardInterrupt else "failed"
            self._last = self.runner.snapshot()
            self._end()

    def _end(self) -> None:
        self._ended.set()
        if self._thread.ident is not None:
            self._thread.join(JOIN_SECONDS)
            if self._thread.is_alive():
                log.warning("the monitor did not stop within %.0f s; left behind", JOIN_SECONDS)

    def _watch(self) -> None:
        """The monitor's thread: look at the run every POLL_SECONDS until it ends, then send the end."""
        tick = time.monotonic()
        publisher = self._open_publisher() if self.settings.gui else None
        if publisher is None:
            self._errors.close()  # nothing will send them: a run without a monitor keeps no error
        progress = self._open_progress(tick) if self.settings.progress else None
        rates = Rates()
        try:
            while not self._ended.is_set():
                self._look(publisher, progress, rates)
                # Looks on a fixed beat; after a slow look, the next one comes half a beat later.
                tick = max(tick + POLL_SECONDS, time.monotonic() + POLL_SECONDS / 2)
                self._ended.wait(tick - time.monotonic())
        finally:
            try:
                if progress is not None:
                    progress.close()  # before the summary table is printed
            finally:
                if publisher is not None:
                    self._publish_end(publisher, rates)
                    self._errors.close()
                    publisher.close()

    def _look(self, publisher: Publisher | None, progress: TerminalProgress | LogProgress | None, rates: Rates) -> None:
        """One look at the run; a failure is logged (the first with its traceback) and the next look goes on."""
        try:
            status = self.runner.snapshot()
            now = time.monotonic()
            current = rates.add(status, now)
            if publisher is not None:
                self._publish(publisher, status, current, now)
            if progress is not None:
                progress.update(status, current, now)
        except Exception:
            self._failures += 1
            if self._failures == 1:
                log.exception("the monitor failed to publish or show the run's status; it goes on")

    def _publish(self, publisher: Publisher, status: RunStatus, rates: Mapping[str, float], now: float) -> None:
        self._say_refusals(publisher)
        subscribed = publisher.new_subscribers()  # first: a new subscriber receives what follows
        self._publish_errors(publisher)
        states = (status.state, *(step.state for step in status.steps))
        graph_due = now - self._graph_sent >= self.settings.graph_interval - POLL_SECONDS / 2
        if subscribed or graph_due:
            publisher.publish(GRAPH, self._graph)
            self._graph_sent = now
            self._states = ()  # and a status right after it
        if states != self._states or now - self._status_sent >= STATUS_SECONDS - POLL_SECONDS / 2:
            publisher.publish(STATUS, status_body(status, rates, publisher.dropped))
            self._status_sent = now
            self._states = states

    def _publish_errors(self, publisher: Publisher) -> None:
        """Send the errors waiting while the queue has room; the others are dropped (counted), not tried one by one:
        a burst must leave room for what follows (at the end, the last status and the finish)."""
        bodies, dropped = self._errors.take()
        publisher.skip(dropped)
        for sent, body in enumerate(bodies):
            if not publisher.publish(ERROR, body):
                publisher.skip(len(bodies) - sent - 1)
                break

    def _publish_end(self, publisher: Publisher, rates: Rates) -> None:
        """The graph (a short run may have ended before a GUI heard it), the errors not yet sent,
        the last status (with the run's final state) and the report."""
        try:
            publisher.settle(HANDSHAKE_WAIT_MS)  # a short run may end before its monitor subscribed
            publisher.new_subscribers()
            publisher.publish(GRAPH, self._graph)
            self._publish_errors(publisher)
            last = self._last or self.runner.snapshot()
            publisher.publish(STATUS, status_body(last, rates.add(last, time.monotonic()), publisher.dropped,
                                                  self._final_state), END_WAIT_MS)
            if self._report is not None:
                publisher.publish(FINISH, finish_body(self._report), END_WAIT_MS)
            self._say_refusals(publisher, final=True)
            if publisher.handshaking and not self._refusal_said:  # a listener that never answered: not heard either
                self._refusal_said = True
                say_once(unanswered_reason(self.settings.gui_address, HANDSHAKE_WAIT_MS))
        except Exception:
            log.exception("the monitor failed to publish the end of the run")

    def _say_refusals(self, publisher: Publisher, final: bool = False) -> None:
        """Say once why the listener refused the run's handshake, if it did: nobody hears this run.

        A keyed run's handshake closed without a word comes from a listener that does not hold the key the run
        trusts, or, when libzmq sees the close first, from one that takes no keys: it waits for the next
        refusal (the run reconnects), which may tell them apart, or for the end of the run.
        """
        for refusal in publisher.refusals():
            ambiguous = refusal.event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL and self.credentials is not None
            if ambiguous and self._held is None:
                self._held = refusal
            else:
                self._say_refusal(refusal)
        if final and self._held is not None:
            self._say_refusal(self._held)

    def _say_refusal(self, refusal: Refusal) -> None:
        settings = self.settings
        if not self._refusal_said:
            self._refusal_said = True
            say_once(refusal_reason(refusal.event, refusal.value, settings.gui_address, self.credentials is None,
                                    settings.gui_server_key, settings.gui_key))

    def _open_progress(self, start: float) -> TerminalProgress | LogProgress | None:
        try:
            return make_progress(self.config, self.settings.progress_interval, start, self.console)
        except Exception:
            log.exception("cannot show the run's progress")
            return None

    def _open_publisher(self) -> Publisher | None:
        settings = self.settings
        if self.credentials is None and not settings.gui_plaintext:
            # Said when the user asked for a monitor; a run of a user who never started one stays quiet.
            named = settings.monitor_named or settings.gui_server_key or settings.gui_key
            if named or settings.gui_address != DEFAULT_GUI_ADDRESS:
                say_once(no_key_reason(settings.gui_server_key, settings.gui_key))
            return None
        if len(self.config.steps) > MAX_STEPS:  # said once, where the monitor would otherwise show nothing
            log.warning("pipeline-gui shows runs of at most %d steps: this run's %d are not shown there (the progress "
                        "display and the report show them)", MAX_STEPS, len(self.config.steps))
            return None  # what it would send, the monitor refuses
        try:
            return Publisher(settings.gui_address, self.envelope, self.credentials)
        except zmq.ZMQError as err:
            log.error("cannot publish the run's status to %s: %s", self.settings.gui_address, err)
            return None


def _is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal: a notebook's stand-in for sys.stderr may have no isatty() (a traceback and no
    progress at all, before), be None, or be closed."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def make_progress(config: PipelineConfig, interval: float, start: float,
                  console: Console | None = None) -> TerminalProgress | LogProgress:
    """The terminal display if stderr is a terminal that can redraw and no other run of this process draws its table
    there (or ``console`` is given), else log lines."""
    if console is None and _is_terminal(sys.stderr):
        from rich.console import Console  # rich is imported only for a terminal

        from pipeline.monitor.terminal import terminal_display

        terminal = Console(file=sys.stderr)
        if not terminal.is_dumb_terminal:  # rich's Live draws nothing at all on TERM=dumb: log lines say it there
            display = terminal_display(config, terminal)
            if display is not None:
                return display
    if console is not None:
        from pipeline.monitor.terminal import TerminalProgress

        return TerminalProgress(config, console)
    return LogProgress(config, interval, start)
