"""The zygote: one fresh process that imports the worker code once, and forks each worker process from it.

A worker process started from scratch spends some 200 ms of CPU importing the framework and numpy
before it runs a step: with two of them that was the largest cost of a short run, and with six (a chain
of three steps) more than the work itself (docs/performance.md). The zygote pays it once: it is a
fresh interpreter (``subprocess``, never a fork of the run, whose threads and sockets a child must not
inherit), single-threaded, with no ZeroMQ context; it imports ``pipeline.engine.worker_process`` and
numpy, then forks a worker process on each request, which imports only its step's module (its
side effects happen in the worker, as with a fresh interpreter). A forked worker shares the zygote's
imported pages until it writes them.

The parent talks to it over a private socket pair, in length-prefixed pickles (the zygote is the
parent's own child: nothing else can reach that socket). Requests are ``("fork", argv)``, answered
``("forked", pid)``, or ``("failed", why)`` when the fork fails; the zygote reaps its children and
reports ``("exit", pid, returncode)`` as Popen
would give it (negative: the signal). The zygote dies with its parent (``PR_SET_PDEATHSIG``), and its
children with it; it leaves when the socket closes. Where it cannot start, workers start from
scratch.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import select
import signal
import socket
import struct
import subprocess
import sys
import time
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn

#: What the zygote process runs.
ZYGOTE_MAIN = "import sys; from pipeline.engine.zygote import main; main(sys.argv[1:])"
#: Seconds the parent waits for a fork's answer before it starts that worker from scratch instead.
FORK_SECONDS = 10.0
#: How often the zygote looks for children that ended.
_REAP_SECONDS = 0.05
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

    def poll(self) -> int | None:
        """Its exit status once it has ended (as the zygote reports it), else None."""
        if self.returncode is None:
            self.zygote.collect()
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


class Zygote:
    """The parent's side: starts the zygote, asks it for workers, hears when they end."""

    def __init__(self, env: dict[str, str]) -> None:
        self.sock, theirs = socket.socketpair()
        try:
            self.popen = subprocess.Popen([sys.executable, "-c", ZYGOTE_MAIN, f"--fd={theirs.fileno()}",
                                           f"--parent={os.getpid()}"], pass_fds=[theirs.fileno()], env=env,
                                          stdin=subprocess.DEVNULL, start_new_session=True)
        except BaseException:
            self.sock.close()
            raise
        finally:
            theirs.close()
        self.children: dict[int, Forked] = {}
        self.error = ""  # why the last fork failed, as the zygote said
        self._exits: dict[int, int] = {}  # exits heard before their child was known

    def fork(self, argv: Sequence[str]) -> Forked | None:
        """A new worker process running ``worker_process.main(argv)``; None if the zygote cannot make one
        (``error`` then says why, if the zygote said)."""
        self.error = ""
        try:
            _send(self.sock, ("fork", list(argv)))
            deadline = time.monotonic() + FORK_SECONDS
            while (left := deadline - time.monotonic()) > 0:
                message = self._next(left)
                if message is None:
                    return None
                if message[0] == "failed":
                    self.error = message[1]
                    return None
                if message[0] == "forked":
                    child = self.children[message[1]] = Forked(self, message[1])
                    if message[1] in self._exits:
                        child.returncode = self._exits.pop(message[1])
                    return child
                self._exited(message)
        except OSError:
            return None
        return None

    def collect(self, timeout: float = 0.0) -> None:
        """Take the exits the zygote reported (waiting up to ``timeout`` seconds for one)."""
        with contextlib.suppress(OSError):
            while (message := self._next(timeout)) is not None:
                self._exited(message)
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

    def _exited(self, message: Any) -> None:
        _, pid, code = message
        child = self.children.get(pid)
        if child is None:
            self._exits[pid] = code
        else:
            child.returncode = code

    def close(self) -> None:
        """End the zygote (its children end with it)."""
        self.sock.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(1.0)
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait()


def main(argv: Sequence[str]) -> None:
    """The zygote process: preload, then fork a worker process per request until the socket closes."""
    fd = int(next(a for a in argv if a.startswith("--fd=")).split("=", 1)[1])
    parent = int(next(a for a in argv if a.startswith("--parent=")).split("=", 1)[1])
    from pipeline.engine import worker_process  # the whole worker's code, once for all its workers

    worker_process.die_with_parent(parent)
    with contextlib.suppress(ImportError):
        import numpy  # noqa: F401  (most steps use it: each worker would import it again)
    sock = socket.socket(fileno=fd)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when the zygote leaves
    while True:
        ready, _, _ = select.select([sock], [], [], _REAP_SECONDS)
        if ready:
            request = _receive(sock)
            if request is None:
                break
            try:
                _send(sock, ("forked", _fork(sock, request[1])))
            except OSError as err:  # fork failed (a process limit, no memory): the parent decides
                _send(sock, ("failed", f"{type(err).__name__}: {err}"))
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            _send(sock, ("exit", pid, -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)))
    os._exit(0)


def _fork(sock: socket.socket, argv: list[str]) -> int:
    """Fork a worker process running ``worker_process.main(argv)``; its pid (in the zygote)."""
    pid = os.fork()
    if pid:
        return pid
    _child(sock, argv)


def _child(sock: socket.socket, argv: list[str]) -> NoReturn:
    """The forked worker process: it runs the worker's main and leaves, never returning to the zygote's loop."""
    code = 1
    try:
        sock.close()
        os.setsid()  # a session of its own, as a worker started from scratch
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        from pipeline.engine import worker_process

        worker_process.main(argv)
        code = 0
    except SystemExit as err:
        code = err.code if isinstance(err.code, int) else (0 if err.code is None else 1)
    except BaseException:
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
