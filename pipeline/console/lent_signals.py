"""Signal handlers and the wake-up fd that a run sets in its own process, given back in a child it forks.

A step may fork a helper from the run's process (``multiprocessing`` with the fork context, a ``multiprocessing.Pool``
in a ``with`` block). A forked child keeps its parent's Python signal handlers and wake-up fd: with pipeline-run's
(``cli.signals``), handlers that only wake the parent's watchdog, the helper ignored SIGTERM (``terminate()``, so
``Pool.__exit__`` hung), SIGINT and SIGHUP, and the byte of a signal sent to the helper landed in the parent's
wake-up pipe, where the run took it for its own SIGTERM. So the run sets them through ``install`` and
``set_wakeup_fd``, and a forked child gets back what the process had before (``restore`` ends the loan).

The forking thread blocks those signals across the fork: one sent to the child before it has its handlers back (a
``terminate()`` right after ``start()``) waits for them, instead of reaching the run's handler and wake-up pipe.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

#: The signals that stop a run and its commands (Ctrl+C, SIGTERM, SIGHUP), whose handlers a run lends its process.
HANDLED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
#: What each signal the run handles had before it (the handler a forked child gets back).
_before: dict[int, Any] = {}
#: The wake-up fd the process had before the run set its own (None: the run set none).
_wakeup_before: int | None = None
#: The signals the forking thread blocked for the fork (``unblock``), which it and the child unblock after it.
_fork = threading.local()


def install(signum: int, handler: Any) -> Any:
    """``signal.signal(signum, handler)``, which a child forked meanwhile undoes; the previous handler."""
    previous = signal.signal(signum, handler)
    # None: a handler not set from Python, which Python cannot set again: a fresh child's default is the closest.
    _before.setdefault(signum, signal.SIG_DFL if previous is None else previous)
    return previous


def restore(signum: int, handler: Any) -> None:
    """Set ``handler`` for ``signum`` as the run ends; once it is what the process had before, a child keeps it."""
    signal.signal(signum, handler)
    if _before.get(signum) is handler:
        del _before[signum]


def set_wakeup_fd(fd: int, **kwargs: Any) -> int:
    """``signal.set_wakeup_fd(fd)``, which a child forked meanwhile undoes (the fd is the parent's); the previous fd."""
    global _wakeup_before
    previous = signal.set_wakeup_fd(fd, **kwargs)
    if _wakeup_before is None:
        _wakeup_before = previous
    if fd == _wakeup_before:  # given back
        _wakeup_before = None
    return previous


def _block_for_fork() -> None:
    """Before a fork: block the lent signals in this thread (the child starts with this thread's mask)."""
    lent = set(_before)
    _fork.unblock = lent - signal.pthread_sigmask(signal.SIG_BLOCK, lent) if lent else set()


def _unblock_after_fork() -> None:
    """After a fork, in the parent: the signals blocked for it are delivered again (one that came meanwhile now)."""
    if _fork.unblock:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, _fork.unblock)


def _give_back_in_child() -> None:
    """A forked child: the handlers and the wake-up fd the process had before the run set its own, then the signals
    that came since the fork (under those handlers)."""
    global _wakeup_before
    if _wakeup_before is not None:
        signal.set_wakeup_fd(_wakeup_before)
        _wakeup_before = None
    for signum, handler in _before.items():
        signal.signal(signum, handler)
    _before.clear()
    _unblock_after_fork()


os.register_at_fork(before=_block_for_fork, after_in_parent=_unblock_after_fork, after_in_child=_give_back_in_child)
