"""Steps that start something in the run's process and leave it there: a forked helper process, a thread."""

from __future__ import annotations

import multiprocessing
import signal
import threading
from multiprocessing.connection import Connection
from typing import Any

from traitlets import Bool

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


class LeavesThread(Component):
    """Stager: starts a thread (not a daemon) that waits for ever, named ``left-N`` for message N, and passes the
    message on."""

    def run(self, msg: int) -> int:
        """Start the thread and forget it."""
        threading.Thread(target=threading.Event().wait, name=f"left-{msg}", daemon=False).start()
        return msg
