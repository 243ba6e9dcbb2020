"""Steps that start something in the run's process and leave it there: a forked helper process, a thread."""

from __future__ import annotations

import atexit
import concurrent.futures
import multiprocessing
import os
import signal
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

from traitlets import Bool, Unicode

from pipeline import Component

#: Seconds a step waits for its helper at most (a helper that ignores SIGTERM is then killed).
HELPER_SECONDS = 10.0


def _helper(sender: Connection) -> None:
    """A forked helper: says whether it has Python's own SIGINT handler, then waits to be terminated."""
    sender.send(signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    threading.Event().wait()


class ForksHelper(Component):
    """Stager: forks a helper process (multiprocessing's fork context, as a Pool may) and ends it with terminate(),
    as ``Pool.__exit__`` does; returns {"n", "exitcode" (-15: SIGTERM ended it), "python_sigint"}."""

    at_once = Bool(False, help="terminate() right after start(), before the helper says anything.").tag(config=True)

    def run(self, msg: int) -> dict[str, Any]:
        """Fork the helper, end it, say how it ended."""
        receiver, sender = multiprocessing.Pipe(duplex=False)
        helper = multiprocessing.get_context("fork").Process(target=_helper, args=(sender,))
        helper.start()
        said = None if self.at_once or not receiver.poll(HELPER_SECONDS) else receiver.recv()
        helper.terminate()
        helper.join(HELPER_SECONDS)
        if helper.exitcode is None:  # it ignored SIGTERM
            helper.kill()
            helper.join(HELPER_SECONDS)
        receiver.close()
        sender.close()
        return {"n": msg, "exitcode": helper.exitcode, "python_sigint": said}


def _wait_long() -> None:
    """A helper process's work: as long as the run's process lives (a minute at most). Its stdout and stderr go
    nowhere, so that a reader of the run's sees their end when the run ends."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for fd in (1, 2):
        os.dup2(devnull, fd)
    parent = os.getppid()
    deadline = time.monotonic() + HELPER_SECONDS * 6
    while os.getppid() == parent and time.monotonic() < deadline:
        threading.Event().wait(0.05)


class LeavesHelper(Component):
    """Stager: forks a helper process (not a daemon) on message 0 that runs long and is never joined, which
    multiprocessing's atexit hook would join; passes messages on."""

    def run(self, msg: int) -> int:
        """Fork and forget, once."""
        if msg == 0:
            multiprocessing.get_context("fork").Process(target=_wait_long, name="helper").start()
        return msg


#: A thread pool of the module, as a step's library may keep one: its idle threads end at the interpreter's exit.
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=2)


class UsesAPool(Component):
    """Stager: runs each message through a module-level thread pool; at the interpreter's exit its atexit hook appends
    "atexit ran" to ``path``."""

    path = Unicode("", help="The file the atexit hook writes to.").tag(config=True)

    def init(self) -> None:
        """Register the hook."""
        atexit.register(_append, self.path, "atexit ran")

    def run(self, msg: int) -> int:
        """Pass the message on through the pool."""
        return _POOL.submit(int, msg).result()


def _append(path: str, line: str) -> None:
    """Append ``line`` to ``path``."""
    with open(path, "a", encoding="utf-8") as file:
        file.write(line + "\n")


class LeavesWork(Component):
    """Stager: starts a thread as a plain script does (Python's default daemon flag) that writes the message to
    ``path`` a little after run() returned, and passes the message on."""

    path = Unicode(help="The file the threads write to.").tag(config=True)

    def run(self, msg: int) -> int:
        """Start the thread and forget it."""

        def later() -> None:
            time.sleep(0.3)  # past the run's end: the interpreter's exit must wait for it
            _append(self.path, f"{msg} daemon={threading.current_thread().daemon}")

        threading.Thread(target=later).start()
        return msg


class LeavesThread(Component):
    """Stager: starts a thread (not a daemon) that waits for ever, named ``left-N`` for message N, and passes the
    message on."""

    def run(self, msg: int) -> int:
        """Start the thread and forget it."""
        threading.Thread(target=threading.Event().wait, name=f"left-{msg}", daemon=False).start()
        return msg
