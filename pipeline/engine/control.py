"""What a run's threads share: the stop request, the abort, and the events they report to the runner."""

from __future__ import annotations

import contextlib
import itertools
import logging
import queue
import secrets
import threading
from typing import Any

import zmq

from pipeline.config.options import RunOptions
from pipeline.engine import sockets
from pipeline.engine.handles import Handles
from pipeline.engine.limits import limit_line
from pipeline.engine.outlets import Flusher
from pipeline.errors import ConfigError
from pipeline.failures.policy import FailurePolicy

log = logging.getLogger("pipeline.engine")

#: Event kinds a thread reports to the runner.
BOUND = "bound"  # a router's sockets are bound
INIT_DONE = "init"  # a step worker's init() returned or raised (a thread's, or one its router runs)
WORKERS_JOINED = "joined"  # every worker of a step in other processes has joined its router (init() done)
ENDED = "ended"  # a thread ended (its `crash` holds the internal error that ended it, if any)
WAKE = "wake"  # the runner was asked to stop or abort (from a signal handler)


class RunAborted(Exception):
    """The run aborted under an engine thread's wait: the thread ends quietly."""


class RunControl:
    """Shared by every thread of one run."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self.policy = FailurePolicy.for_run(options, self._stop)
        self.stopping = threading.Event()  # the producer stops; what is in flight drains
        self.aborted = threading.Event()  # every thread stops as soon as it can
        self.build = threading.Event()  # every router is bound: the steps' workers may build their Components
        self.go = threading.Event()  # every init() is done: the producer may start
        self.keepers_look = threading.Event()  # a router finished, or the run aborted: the supervisor looks now
        self.events: queue.Queue[tuple[str, Any]] = queue.Queue()  # (kind, the thread or step worker it concerns)
        self.flusher = Flusher()  # sends outputs that would wait behind a slow run() or yield
        self.handles = Handles()  # out-of-band buffers in transit between the run's threads
        # The routing ids of the run's own worker threads start with this: a peer outside the
        # process cannot guess it, so it cannot pass for a thread and be lent buffers by number.
        self.thread_prefix = b"t" + secrets.token_hex(8).encode() + b"."
        #: What the door refused of remote workers so far, in words ("": nothing), for a step's last word.
        self.refused = ""
        self._slots = itertools.count()  # worker processes, the run's and remote ones, share one numbering
        self._internal_errors = 0  # of the threads of this process: the first is logged in full
        self._internal_lock = threading.Lock()  # held while one is logged: the first logged is the one in full

    def _stop(self, reason: str) -> None:
        """The policy stops the run: the producer stops, and the supervisor tells the worker processes of the steps
        it halted now, not at its next look, which they spend failing what they hold."""
        self.stopping.set()
        self.keepers_look.set()

    def new_slot(self) -> int:
        """A number for a new worker process, unique in the run (next() on a count is atomic: threads share it)."""
        return next(self._slots)

    def log_internal_error(self, thread: str, err: BaseException) -> None:
        """Log the internal error that stopped ``thread``: the first of the run with its traceback, each later one at
        DEBUG, so that hundreds of threads failing alike (out of open files) print one (the report counts them)."""
        with self._internal_lock:  # decided and logged at once: a later one's DEBUG line came before the first's
            first = self._internal_errors == 0
            self._internal_errors += 1
            limit = limit_line(err)
            if limit is not None:  # the machine's limit, not a fault of the engine: one line says what to do
                log.log(logging.ERROR if first else logging.DEBUG, "thread %s stopped: %s", thread, limit)
                return
            log.log(logging.CRITICAL if first else logging.DEBUG, "thread %s stopped on an internal error", thread,
                    exc_info=err)

    def raise_if_aborted(self) -> None:
        """Raise RunAborted if the run aborted: for a wait of an engine thread outside ZeroMQ (whose calls the
        context's termination ends)."""
        if self.aborted.is_set():
            raise RunAborted

    def abort(self) -> None:
        """Ask every thread to stop now."""
        self.aborted.set()
        self.stopping.set()
        self.build.set()
        self.go.set()
        self.keepers_look.set()


class EngineThread(threading.Thread):
    """A thread of the engine: reports its end to the runner, with the error that ended it if any."""

    def __init__(self, name: str, control: RunControl, context: zmq.Context) -> None:
        super().__init__(name=name, daemon=True)
        self.control = control
        self.context = context
        self.crash: BaseException | None = None

    def run(self) -> None:
        # A daemon, so that the interpreter never waits for a thread of the engine; but a thread that the step's code
        # starts from here takes its creator's flag, and must be what it is in a plain script (or in sequential
        # mode): waited for at the interpreter's exit, not killed with it, its work lost in silence. Changed once
        # started, the flag no longer decides whether the interpreter waits for this thread itself.
        self._daemonic = False
        try:
            self.work()
        except ConfigError as err:  # a setting that cannot work here: the runner raises it, no internal error
            self.crash = err
        except BaseException as err:
            # The run ended under it (aborted, or its context terminated as it started: Ctrl+C in the runner's start).
            if not self.control.aborted.is_set() and not sockets.terminated(self.context, err):
                self.crash = err  # first: the runner must hear of it, whatever logging it does
                # A logging handler of the user's that raises (it may be what stopped the thread) has no more say:
                # raised here, it left the crash unsaid, and the run waited for ever.
                with contextlib.suppress(Exception):
                    self.control.log_internal_error(self.name, err)
        finally:
            self.control.events.put((ENDED, self))

    def work(self) -> None:
        """The thread's job."""
        raise NotImplementedError
