"""The zygote: one process that holds the worker code, imported once, and forks each worker process from it.

A worker process started from scratch spends some 200 ms of CPU importing the framework and numpy
before it runs a step: with two of them that was the largest cost of a short run, and with six (a chain
of three steps) more than the work itself (docs/performance.md). The zygote pays it once, in one of two
ways:

- **a fork of the run's process** (``Zygote.forked_from_here``, the default:
  ``Pipeline.fork_workers``), made as the runner is built, before the run or its monitor start a
  thread, and only when no other Python thread runs (a thread may hold a lock, of a stream or of
  logging, that the child would wait for forever), but those marked ``fork_safe`` (pipeline-run's
  stderr writer and signal watchdog, whose modules reset their state in a forked child) and pyzmq's
  garbage collector. It has imported all the run has, the steps' modules included, so a worker is
  ready in milliseconds. It starts afresh what a new interpreter would: its own session, stdin from
  /dev/null, stdout and stderr as plain files 1 and 2 (the run's may be a test's capture or an
  application's window), every signal handler the run's Python code set back to a fresh
  interpreter's, no logger configured (the run's handlers may write through its own threads); its
  objects are frozen out of the garbage collector (``gc.freeze``), so that the workers' collections
  neither scan nor copy them.
- **a fresh interpreter** (``Zygote.spawned``: with ``fork_workers`` false, where the run's process runs
  other Python threads, or where it cannot fork): single-threaded, with no ZeroMQ context; it imports
  this module (and with it ``pipeline.engine.worker_process``) and numpy, and each worker process then
  imports its step's module (its side effects happen in the worker).

Either way a worker shares the zygote's pages until it writes them, and starts a stream of random
numbers of its own (Python's ``random`` reseeds itself at a fork; numpy's global generator is reseeded
here), as a fresh interpreter would.

The parent talks to it over a private socket pair, in length-prefixed pickles (the zygote is the
parent's own child: nothing else can reach that socket). Requests are ``("fork", argv)``, answered
``("forked", pid)``, or ``("failed", why)`` when the fork fails, in the order asked: an answer that
comes after the parent gave up on it (FORK_SECONDS) is still its own request's, never the next one's. The zygote says
``("ready",)`` once it serves: until a spawned one has, a fork waits for its start (ZYGOTE_START_SECONDS), the start
of a fresh interpreter, which a worker process started from scratch would take too. The zygote reaps its children and
reports ``("exit", pid, returncode)`` as Popen would give it (negative: the signal). A fork request also names the
files the parent removes at its end
(the worker process's shared-memory rings, the parent's private directory). The parent says ``("leave",)``
before it closes the socket at its end; the zygote leaves then, and its children end with it. When the
socket closes without that word, or the kernel says the parent died (``PR_SET_PDEATHSIG``, SIGTERM), the
parent was killed and cannot remove its files: the zygote removes them as it leaves (the rings of two
worker processes may take 64 MiB of ``/dev/shm``, all that a container has by default). Where it cannot start,
workers start from scratch.
"""

from __future__ import annotations

import contextlib
import gc
import io
import logging
import os
import pickle
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
import warnings
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from pipeline.console.exit_status import status_of
from pipeline.engine import rings, worker_process  # the whole worker code, imported once for all its workers
from pipeline.engine.addresses import is_stopped, proc_stat, process_alive, sweep_stale_dirs
from pipeline.engine.allocator import release_freed_memory

log = logging.getLogger("pipeline.engine")

#: What the zygote process runs.
ZYGOTE_MAIN = "import sys; from pipeline.engine.zygote import main; main(sys.argv[1:])"
#: Seconds a zygote told to leave is given before it is killed (an aborted run gives it none: its workers are killed
#: already, and a zygote that still starts read the word only once started).
LEAVE_SECONDS = 1.0
#: Seconds the parent waits for a started zygote's answer to a fork before it starts that worker from scratch instead,
#: and every later one (the keeper asks that zygote no more): a zygote answers in milliseconds; one that is stopped
#: (SIGSTOP) or stuck never does, and each wait holds up the supervisor (10 s per worker process outlasted a drain's
#: shutdown_timeout).
FORK_SECONDS = 3.0
#: Seconds the parent waits for a spawned zygote to start (to say it is ready) before it gives its fork up as it does
#: past FORK_SECONDS (one that is stopped meanwhile, after FORK_SECONDS): a fresh interpreter's imports (a site hook, a
#: network file system, a loaded host) may take seconds, as long as a worker process's from scratch would, and
#: FORK_SECONDS counted from the request took a slow but healthy zygote for a stuck one.
ZYGOTE_START_SECONDS = 60.0
#: Seconds a worker process may be gone (or a zombie) without its zygote's word on how it ended before it counts as
#: killed: a zygote that is stopped (SIGSTOP) or stuck reaps and reports nothing, and the run waited for ever.
UNREPORTED_EXIT_SECONDS = 2.0
#: How often the zygote looks for children that ended.
_REAP_SECONDS = 0.05
#: Seconds the zygote of a killed parent waits for it to be gone before it sweeps what it left.
PARENT_GONE_SECONDS = 2.0
_LENGTH = struct.Struct("<I")


def _send(sock: socket.socket, message: Any) -> None:
    data = pickle.dumps(message)
    sock.sendall(_LENGTH.pack(len(data)) + data)


def _receive(sock: socket.socket) -> Any:
    """One message, or None at the end of the stream."""
    head = _exactly(sock, _LENGTH.size)
    if head is None:
        return None
    data = _exactly(sock, _LENGTH.unpack(head)[0])
    return None if data is None else pickle.loads(data)  # the other end is our own parent or child


def _exactly(sock: socket.socket, size: int) -> bytes | None:
    chunks = []
    while size:
        chunk = sock.recv(size)
        if not chunk:
            return None
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


class Forked:
    """A worker process forked by the zygote, as much of ``subprocess.Popen`` as a keeper uses."""

    def __init__(self, zygote: Zygote, pid: int) -> None:
        self.zygote = zygote
        self.pid = pid
        self.returncode: int | None = None
        self._gone_since: float | None = None  # when it was first seen gone without the zygote's report

    def poll(self) -> int | None:
        """Its exit status once it has ended, as the zygote reports it; if the zygote says nothing for
        UNREPORTED_EXIT_SECONDS after it ended, the status the kernel keeps for a child not reaped, or (reaped, its
        report lost) killed after five times as long; else None."""
        if self.returncode is None:
            self.zygote.collect()
        if self.returncode is None and not process_alive(self.pid):
            now = time.monotonic()
            if self._gone_since is None:
                self._gone_since = now  # the zygote's report may be on its way: it has the true status
            elif now - self._gone_since >= UNREPORTED_EXIT_SECONDS:
                status = _unreaped_status(self.pid)
                if status is not None:
                    self.returncode = os.waitstatus_to_exitcode(status)
                elif now - self._gone_since >= 5 * UNREPORTED_EXIT_SECONDS:
                    self.returncode = -signal.SIGKILL
        return self.returncode

    def send_signal(self, signum: int) -> None:
        """Signal it, if it still runs."""
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signum)

    def kill(self) -> None:
        """SIGKILL it."""
        self.send_signal(signal.SIGKILL)

    def wait(self, timeout: float | None = None) -> int:
        """Its exit status, waiting up to ``timeout`` seconds (subprocess.TimeoutExpired past it)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
            self.zygote.collect(min(left, 0.1) if left is not None else 0.1)
        return self.returncode  # type: ignore[return-value]


def _unreaped_status(pid: int) -> int | None:
    """The wait status of process ``pid`` if it is a child that ended and was not reaped (a zombie: /proc keeps its
    exit code, the last field of its stat); None otherwise."""
    fields = proc_stat(pid)
    return int(fields[-1]) if fields and fields[0] == "Z" and fields[-1].isdigit() else None


class _ForkedZygote:
    """A zygote forked from this process: the part of Popen that a Zygote uses, its end heard through a pidfd."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None

    def poll(self) -> int | None:
        """Its exit status once it has ended (reaped here), else None."""
        if self.returncode is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:  # reaped by the kernel: this process ignores SIGCHLD (its status is lost)
                self.returncode = 0  # as subprocess takes such a child; polled for ever, it hung the run's end
                return 0
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        """Its exit status, waiting up to ``timeout`` seconds (subprocess.TimeoutExpired past it)."""
        if self.poll() is None:
            try:
                ended = os.pidfd_open(self.pid)  # readable once the process has ended
            except (OSError, AttributeError):  # a kernel before 5.3 (RHEL 8's 4.18): look until the deadline
                self._poll_until(timeout)
                return self.returncode if self.returncode is not None else 0
            try:
                if not select.select([ended], [], [], timeout)[0]:
                    raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
            finally:
                os.close(ended)
            with contextlib.suppress(ChildProcessError):
                self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        return self.returncode if self.returncode is not None else 0

    def _poll_until(self, timeout: float | None) -> None:
        """Reap it once it has ended, looking every _REAP_SECONDS, for ``timeout`` seconds at most."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() >= deadline:
                raise subprocess.TimeoutExpired(str(self.pid), timeout or 0.0)
            time.sleep(_REAP_SECONDS)

    def kill(self) -> None:
        """SIGKILL it, if it still runs."""
        if self.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)


#: Interpreter flags a fresh process does not take from the run's process: those that change where it imports from
#: (the run hands its sys.path over in the environment) or what the interpreter prints of itself.
_OWN_FLAGS = ("-I", "-E", "-s", "-S", "-P", "-v", "-q")


def python_command(*args: str) -> list[str]:
    """A fresh interpreter running ``args``, with the run's flags that change what a step's code does (``-O`` drops its
    asserts, ``-W`` handles its warnings, ``-X dev``): a worker process started afresh ran without them, and counted
    failures that the same run's forked processes, or its threads, did not."""
    flags = [flag for flag in subprocess._args_from_interpreter_flags() if flag[:2] not in _OWN_FLAGS]
    return [sys.executable, *flags, *args]


class Zygote:
    """The parent's side: makes the zygote, asks it for workers, hears when they end."""

    def __init__(self, sock: socket.socket, process: subprocess.Popen | _ForkedZygote, started: bool = False) -> None:
        self.sock = sock
        self.process = process
        self.started_at = time.monotonic() if started else None  # when it said it is ready (forked: imported already)
        self.children: dict[int, Forked] = {}
        self.error = ""  # why the last fork failed, as the zygote said
        self._exits: dict[int, int] = {}  # exits heard before their child was known
        self._abandoned = 0  # requests given up on (past FORK_SECONDS) whose answers are still to come, in order
        self.unanswered = False  # a fork was given up on: the keeper asks this zygote for no more

    @property
    def pid(self) -> int:
        """The zygote's process id (its workers' parent)."""
        return self.process.pid

    @classmethod
    def spawned(cls, env: dict[str, str]) -> Zygote:
        """A zygote in a fresh interpreter, started with ``env``; an OSError if it cannot start."""
        ours, theirs = socket.socketpair()
        try:
            popen = subprocess.Popen(python_command("-c", ZYGOTE_MAIN, f"--fd={theirs.fileno()}",
                                                    f"--parent={os.getpid()}"), pass_fds=[theirs.fileno()], env=env,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return cls(ours, popen)

    @classmethod
    def forked_from_here(cls) -> Zygote | None:
        """A zygote forked from this process now; None where that is not safe (not Linux, or another Python
        thread runs) or the fork fails: the caller then spawns one when it needs it."""
        if not sys.platform.startswith("linux"):
            return None
        if others := _other_python_threads():
            log.debug("other Python threads run (%s): the zygote starts as a fresh interpreter",
                      ", ".join(thread.name for thread in others))
            return None
        for stream in (sys.stdout, sys.stderr):  # else the child would write again what they hold
            with contextlib.suppress(Exception):
                stream.flush()
        ours, theirs = socket.socketpair()
        parent = os.getpid()
        try:
            with warnings.catch_warnings():
                # Python 3.12 warns of any native thread, such as numpy's BLAS pool, which holds no lock the
                # child takes; the Python threads that could are ruled out above.
                warnings.simplefilter("ignore", DeprecationWarning)
                pid = os.fork()
        except OSError as err:
            ours.close()
            theirs.close()
            log.debug("cannot fork the zygote (%s): it starts as a fresh interpreter", err)
            return None
        if pid == 0:
            ours.close()
            _forked_zygote(theirs, parent)
        theirs.close()
        return cls(ours, _ForkedZygote(pid), started=True)

    def fork(self, argv: Sequence[str], leftovers: Sequence[str | os.PathLike[str]] = (),
             waiting: Callable[[], None] | None = None) -> Forked | None:
        """A new worker process running ``worker_process.main(argv)``; None if the zygote cannot make one.
        ``leftovers``: the files and directories this process removes at its end, which the zygote removes if this
        process is killed. ``waiting`` is called every _REAP_SECONDS while the answer is awaited (a keeper's
        heartbeats go on). Given up on (_given_up: the keeper starts that worker process another way), its answer,
        when it comes, is still its own (a process forked then is killed), never the next request's."""
        self.error = ""
        try:
            _send(self.sock, ("fork", list(argv), [os.fspath(path) for path in leftovers]))
            asked = time.monotonic()
            while not self._given_up(asked):
                if waiting is not None:
                    waiting()
                message = self._next(_REAP_SECONDS)
                if message is None:
                    continue
                if message[0] not in ("forked", "failed") or self._abandoned:
                    self._heard(message)  # an exit, or the answer to a request given up on before
                elif message[0] == "failed":
                    self.error = message[1]
                    return None
                else:
                    child = self.children[message[1]] = Forked(self, message[1])
                    if message[1] in self._exits:
                        child.returncode = self._exits.pop(message[1])
                    return child
        except OSError:
            return None
        self._abandoned += 1
        self.unanswered = True
        return None

    def _given_up(self, asked: float) -> bool:
        """Whether a fork asked at ``asked`` is given up on now: FORK_SECONDS after it was asked of a started zygote
        (or after that one started), or of one stopped while it starts; else ZYGOTE_START_SECONDS after."""
        now = time.monotonic()
        if self.started_at is not None:
            return now - max(asked, self.started_at) > FORK_SECONDS
        return now - asked > (FORK_SECONDS if is_stopped(self.pid) else ZYGOTE_START_SECONDS)

    def collect(self, timeout: float = 0.0) -> None:
        """Take the exits the zygote reported (waiting up to ``timeout`` seconds for one)."""
        with contextlib.suppress(OSError):
            while (message := self._next(timeout)) is not None:
                self._heard(message)
                timeout = 0.0

    def _next(self, timeout: float) -> Any:
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return None
        message = _receive(self.sock)
        if message is None:  # the zygote is gone: so are its children (they die with it)
            for pid, child in self.children.items():
                if child.returncode is None:
                    child.returncode = -signal.SIGKILL
                    self._exits.pop(pid, None)
            raise OSError("the zygote ended")
        return message

    def _heard(self, message: Any) -> None:
        """Take a message that answers no request: a child's exit, or the late answer to a fork given up on (past
        FORK_SECONDS the keeper starts that worker process another way, so a child forked now is one too many), or the
        zygote's word that it started."""
        if message[0] == "ready":
            self.started_at = time.monotonic()
        elif message[0] == "exit":
            _, pid, code = message
            child = self.children.get(pid)
            if child is None:
                self._exits[pid] = code
            else:
                child.returncode = code
        elif message[0] in ("forked", "failed"):
            self._abandoned = max(0, self._abandoned - 1)
            if message[0] == "forked":
                with contextlib.suppress(ProcessLookupError):
                    os.kill(message[1], signal.SIGKILL)

    def close(self, grace: float = LEAVE_SECONDS) -> None:
        """End the zygote (its children end with it), killed past ``grace`` seconds; once is enough."""
        if self.sock.fileno() == -1:  # closed before
            return
        with contextlib.suppress(OSError):  # else the zygote takes this process for killed
            _send(self.sock, ("leave",))
        self.sock.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(grace)
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


#: The module of pyzmq's garbage-collector thread, which a zero-copy send starts for the rest of the process: it
#: waits in a ZeroMQ call holding no lock, and pyzmq starts another in a child that needs one.
_PYZMQ_GARBAGE = "zmq.utils.garbage"
#: The handlers a fresh interpreter starts with, where not SIG_DFL.
_FRESH_HANDLERS = {signal.SIGINT: signal.default_int_handler, signal.SIGPIPE: signal.SIG_IGN,
                   signal.SIGXFSZ: signal.SIG_IGN}


#: The packages of a Jupyter kernel, whose threads (its channels, heartbeat, history, and those that read what is
#: written to files 1 and 2) hold locks of their own objects only, which the forked zygote never uses: it writes to
#: streams of its own, clears every logging handler and leaves by os._exit, so their exit handlers never run. A step
#: class of a notebook then reaches worker processes as a script's does.
_KERNEL_PACKAGES = frozenset({"ipykernel", "IPython"})


def _other_python_threads() -> list[threading.Thread]:
    """The Python threads but this one that could hold a lock a forked child would wait for forever: not those
    marked ``fork_safe`` (pipeline-run's stderr writer and signal watchdog, whose state a child resets at the
    fork), pyzmq's garbage collector, nor a Jupyter kernel's."""
    this = threading.current_thread()
    return [thread for thread in threading.enumerate()
            if thread is not this and type(thread).__module__ != _PYZMQ_GARBAGE
            and not getattr(thread, "fork_safe", False) and _package_of(thread) not in _KERNEL_PACKAGES]


def _package_of(thread: threading.Thread) -> str:
    """The top package of the code that made ``thread``: its class's, or for a plain Thread its target's."""
    made_by = type(thread) if type(thread) is not threading.Thread else getattr(thread, "_target", None)
    return (getattr(made_by, "__module__", None) or "").partition(".")[0]


def _fresh_signals() -> None:
    """Every handler the run's Python code set back to a fresh interpreter's, and no wake-up fd (the run's)."""
    signal.set_wakeup_fd(-1)
    for signum in signal.valid_signals():
        if callable(signal.getsignal(signum)) or signum in _FRESH_HANDLERS:
            signal.signal(signum, _FRESH_HANDLERS.get(signum, signal.SIG_DFL))


def _fresh_logging() -> None:
    """No logger configured, as in a fresh interpreter: the run's handlers write through its threads (pipeline-run's
    stderr writer), which a fork does not copy; a worker process configures its own (worker_process)."""
    for logger in [logging.getLogger(), *logging.Logger.manager.loggerDict.values()]:
        if isinstance(logger, logging.Logger):
            logger.handlers.clear()
            logger.propagate = True
            logger.disabled = False
            logger.setLevel(logging.WARNING if logger is logging.getLogger() else logging.NOTSET)


def main(argv: Sequence[str]) -> None:
    """The spawned zygote: preload, then fork a worker process per request until the socket closes."""
    fd = int(next(a for a in argv if a.startswith("--fd=")).split("=", 1)[1])
    parent = int(next(a for a in argv if a.startswith("--parent=")).split("=", 1)[1])
    with contextlib.suppress(ImportError):
        import numpy  # noqa: F401  (most steps use it: each worker would import it again)
    _serve(socket.socket(fileno=fd), parent)


def _forked_zygote(sock: socket.socket, parent: int) -> NoReturn:
    """The zygote forked from the run's process: start afresh what a new interpreter would, then serve; it never
    returns into the run's code."""
    code = 0
    try:
        os.setsid()  # a session of its own, as a spawned zygote: a terminal's Ctrl+C reaches only the run
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.close(devnull)
        sys.stdout = io.TextIOWrapper(io.FileIO(1, "w", closefd=False), line_buffering=True)
        sys.stderr = io.TextIOWrapper(io.FileIO(2, "w", closefd=False), line_buffering=True,
                                      errors="backslashreplace")
        _fresh_signals()
        _fresh_logging()
        _serve(sock, parent)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        os._exit(code)


def _serve(sock: socket.socket, parent: int) -> NoReturn:
    """Fork a worker process per request until the socket closes or the parent is gone, and report each one's end."""
    gc.freeze()  # what the zygote holds is never collected: its workers' collections skip it
    release_freed_memory()  # its parent's freed memory, which the zygote would keep from it (engine.allocator)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when the zygote leaves
    # A child's end wakes the loop (SIGCHLD writes to ``ended``): the run hears of it at once, not a look later.
    # So does SIGTERM, which the kernel sends when the parent's thread that made the zygote ends: the parent's
    # death, or only that thread's (the parent decides when the zygote leaves, as for SIGINT).
    ended, wake = os.pipe()
    os.set_blocking(ended, False)
    os.set_blocking(wake, False)
    signal.set_wakeup_fd(wake)
    signal.signal(signal.SIGCHLD, _ignore)
    signal.signal(signal.SIGTERM, _ignore)
    held = _Held()
    if os.getppid() != parent:  # killed while this zygote started (a spawned one imports for a while): sweep
        _parent_gone(held, parent)
        os._exit(0)
    worker_process.die_with_parent(parent, signal.SIGTERM)  # once SIGTERM is handled: it wakes the loop
    if not _told(sock, ("ready",)):
        _parent_gone(held, parent)
        os._exit(0)
    while _serve_once(sock, parent, (ended, wake), held):
        pass
    os._exit(0)


class _Held:
    """What the zygote answers for if its parent is killed: the files and directories the parent named, and the
    worker processes it forked that have not ended."""

    def __init__(self) -> None:
        self.leftovers: set[str] = set()
        self.children: set[int] = set()


def _serve_once(sock: socket.socket, parent: int, wakes: tuple[int, int], held: _Held) -> bool:
    """Wait for a request or a child's end, and answer; False once the parent said to leave or is gone (killed: what
    it left is removed then, and its socket's end may say so with an error, ECONNRESET or EPIPE)."""
    ended, wake = wakes
    ready, _, _ = select.select([sock, ended], [], [], _REAP_SECONDS)
    if ended in ready:
        with contextlib.suppress(BlockingIOError):
            if signal.SIGTERM in os.read(ended, 4096) and os.getppid() != parent:
                return _parent_gone(held, parent)
    if sock in ready:
        try:
            request = _receive(sock)
        except OSError:
            request = None
        if request is None:  # closed without a word
            return _parent_gone(held, parent)
        if request[0] == "leave":
            return False
        held.leftovers.update(request[2])
        try:
            child = _fork((sock.fileno(), ended, wake), request[1])
            held.children.add(child)
            answer: tuple = ("forked", child)
        except OSError as err:  # fork failed (a process limit, no memory): the parent decides
            answer = ("failed", f"{type(err).__name__}: {err}")
        if not _told(sock, answer):
            return _parent_gone(held, parent)
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return True
        if pid == 0:
            return True
        held.children.discard(pid)
        if not _told(sock, ("exit", pid, -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))):
            return _parent_gone(held, parent)


def _told(sock: socket.socket, message: Any) -> bool:
    """Send ``message`` to the parent; False if it is gone."""
    try:
        _send(sock, message)
    except OSError:
        return False
    return True


def _parent_gone(held: _Held, parent: int) -> bool:
    """The parent was killed: end its worker processes first (one starting makes its rings), then remove what it
    left, what it told of and what it had not told of yet (its directory before its first fork), as its next run
    would, once it is gone for the sweeps too (a dying process closes its files before it is gone). False: the
    zygote leaves."""
    for child in held.children:
        with contextlib.suppress(OSError):
            os.kill(child, signal.SIGKILL)
    for child in held.children:
        with contextlib.suppress(OSError):
            os.waitpid(child, 0)
    deadline = time.monotonic() + PARENT_GONE_SECONDS
    while process_alive(parent) and time.monotonic() < deadline:
        time.sleep(_REAP_SECONDS / 10)
    _remove(held.leftovers)
    sweep_stale_dirs()
    rings.sweep_stale()
    return False


def _ignore(signum: int, frame: object) -> None:
    """SIGCHLD's and SIGTERM's handler: their wake-up byte is what matters."""


def _remove(leftovers: set[str]) -> None:
    """Remove what a killed parent left: its files and directories. The worker processes, which die with the
    zygote, may still map a ring: its memory goes once they are gone."""
    for path in leftovers:
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _fork(zygote_files: Sequence[int], argv: list[str]) -> int:
    """Fork a worker process running ``worker_process.main(argv)``; its pid (in the zygote). SIGTERM waits while
    the child still has the zygote's handler: sent then, it ends the child once the child has its own."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    pid = os.fork()
    if pid:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        return pid
    _child(zygote_files, argv)


def _child(zygote_files: Sequence[int], argv: list[str]) -> NoReturn:
    """The forked worker process: it runs the worker's main and leaves, never returning to the zygote's loop."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        for fd in zygote_files:  # the zygote's socket and pipe stay the zygote's
            os.close(fd)
        os.setsid()  # a session of its own, as a worker started from scratch
        for signum in (signal.SIGINT, signal.SIGCHLD, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        numpy_random = sys.modules.get("numpy.random")
        if numpy_random is not None:  # its global generator: this worker's own stream, not a copy of the zygote's
            numpy_random.seed()
        worker_process.main(argv)  # which leaves through worker_process.exit_now, but for its arguments' errors
    except SystemExit as err:
        code = status_of(err)
    except BaseException:
        traceback.print_exc()
    finally:
        worker_process.exit_now(code)
