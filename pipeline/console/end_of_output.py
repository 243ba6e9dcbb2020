"""A closed stdout is the end of output, as Unix tools treat it: stop quietly, exit status 141.

A C tool that writes into a pipe whose reader has left (``pipeline-run ... | head -1``) is killed
by SIGPIPE, silently. Python ignores SIGPIPE, so the write raises BrokenPipeError instead, and
with no care each print prints a traceback, and the interpreter's last flush of stdout another.

Here the first BrokenPipeError on a closed stdout (or stderr) ends the output: the closed stream is
pointed at /dev/null, so later writes and the final flush succeed and write nothing, and the
listeners are told (``pipeline-run`` then stops its run as if SIGPIPE had arrived). Every console
script's ``main`` is wrapped in ``console_script``, which turns what is left of the error into the
exit status 141 (128 + SIGPIPE, the status a shell shows for a tool that SIGPIPE killed).
"""

from __future__ import annotations

import functools
import os
import select
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

#: The exit status of a command whose output was closed: 128 + SIGPIPE.
EXIT_STATUS = 128 + signal.SIGPIPE
#: The streams whose closing ends the output: stdout and stderr.
OUTPUT_FDS = (1, 2)

_P = ParamSpec("_P")
_R = TypeVar("_R")

_ended = threading.Event()
_lock = threading.Lock()
_listeners: list[Callable[[], None]] = []


def closed_fds() -> list[int]:
    """Which of stdout and stderr are pipes (or sockets) whose reader has gone."""
    poller = select.poll()
    for fd in OUTPUT_FDS:
        poller.register(fd, select.POLLOUT)
    # A pipe without a reader polls as an error (Linux) or a hang-up (BSD, macOS); a closed fd as invalid.
    return [fd for fd, events in poller.poll(0) if events & (select.POLLERR | select.POLLHUP)]


def caused_by_closed_output(error: BaseException) -> bool:
    """Whether ``error`` is a write into a closed stdout or stderr; if so the output ends now."""
    if not isinstance(error, BrokenPipeError):
        return False
    if _ended.is_set():
        return True  # a write that raced with the first one
    if not closed_fds():
        return False  # some other pipe: the step's own failure
    end_output()
    return True


def end_output() -> None:
    """End the output (once): later writes to the closed streams go to /dev/null; tell the listeners."""
    with _lock:
        if _ended.is_set():
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            for fd in closed_fds():
                os.dup2(devnull, fd)
        finally:
            os.close(devnull)
        _ended.set()
        listeners = list(_listeners)
    for listener in listeners:
        listener()


@contextmanager
def listening(listener: Callable[[], None]) -> Iterator[None]:
    """Within ``with``, ``listener()`` is called (once, in the thread that saw it) when the output ends."""
    with _lock:
        _listeners.append(listener)
    try:
        yield
    finally:
        with _lock:
            _listeners.remove(listener)


def console_script(main: Callable[_P, _R]) -> Callable[_P, _R]:
    """Wrap a console script's ``main``: a closed stdout or stderr ends it quietly with EXIT_STATUS."""

    @functools.wraps(main)
    def script(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            try:
                return main(*args, **kwargs)
            finally:
                # Here, where it can be caught: at the interpreter's exit it would print a traceback.
                if sys.stdout is not None:
                    sys.stdout.flush()
        except BrokenPipeError as error:
            if not caused_by_closed_output(error):
                raise
            sys.exit(EXIT_STATUS)

    return script
