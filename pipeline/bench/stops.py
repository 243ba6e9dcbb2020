"""How the bench and each of its workloads' processes stop on a signal: one line, exit status 128 + the signal's
number, whatever the signal interrupts."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Iterator
from types import FrameType
from typing import Any, NoReturn

from pipeline.console.lent_signals import HANDLED

#: The signals that stop the bench: Ctrl+C, SIGTERM (kill, timeout, a batch system) and SIGHUP (the terminal closed);
#: its exit status is then 128 + the signal's number (DESIGN.md section 5).
STOPS = set(HANDLED)


class Stopped(KeyboardInterrupt):
    """The bench, or a workload's process, was stopped by signal ``signum`` (one of STOPS)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class StopSignals:
    """The handler of STOPS in the process that installed it: the first signal raises Stopped, later ones are ignored.

    The stop is remembered, so that whatever escapes after it is taken for it: a KeyboardInterrupt raised inside a
    lock's wait (queue.get) can break the lock, and what escapes is ``RuntimeError: release unlocked lock``. A second
    signal (timeout(1) signals the bench, then its whole group) would interrupt the tidying up of the first. A process
    forked from this one that still has the handler (a Pool's process before its initializer ran) ends as the signal's
    default action ends it, quietly. A Stopped raised where Python ignores it (in a weakref callback, as garbage is
    collected) is not printed, and the next signal raises it again (the bench's own SIGTERM to its workload's process):
    else the process would take no stop any more.
    """

    def __init__(self) -> None:
        self.pid: int | None = None
        self.signum: int | None = None
        self.holding = self.lost = False

    def install(self) -> None:
        """Handle STOPS in this process, not stopped yet."""
        self.pid, self.signum, self.holding, self.lost = os.getpid(), None, False, False
        for signum in STOPS:
            signal.signal(signum, self)
        if sys.unraisablehook is not self._unraisable:
            self._ignored = sys.unraisablehook
            sys.unraisablehook = self._unraisable

    def _unraisable(self, unraisable: Any) -> None:
        """``sys.unraisablehook``: a Stopped that Python ignored is lost, anything else is printed as before."""
        if not isinstance(unraisable.exc_value, Stopped) or os.getpid() != self.pid:
            self._ignored(unraisable)
            return
        self.lost = True

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        """A signal of STOPS came."""
        if os.getpid() != self.pid:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        if self.signum is None or self.lost:
            self.signum, self.lost = self.signum or signum, False
            if not self.holding:
                raise Stopped(self.signum)

    def came(self, signum: int) -> NoReturn:
        """Stop as if signal ``signum`` had come here, unless one has (a workload's process was stopped first)."""
        if self.signum is None:
            self.signum = signum
        raise Stopped(self.signum)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Within ``with``, a stop is remembered but not raised; it is raised as the block ends."""
        self.holding = True
        try:
            yield
        finally:
            self.holding = False
            if self.signum is not None:
                raise Stopped(self.signum)


#: This process's StopSignals (the bench's, or a workload's process's once it is forked).
STOP = StopSignals()
