"""The console scripts' entry points: a Ctrl+C at any point of a command, from the import of its modules to its exit,
ends it as one while it runs does, and one once the command has decided its exit status leaves that status as it is.

Each command imports traitlets, pyzmq and its own modules before its ``main`` can handle a signal: some
0.2 s, longer on a loaded machine. A Ctrl+C then would print a KeyboardInterrupt traceback of an import;
here it prints the command's one line and exits 130, as a Ctrl+C while the command runs does. So does one in the
lines of ``main`` before its command handles signals, or after it gave them back (``launch`` catches what any of
them lets through). So this module, and the packages above it, import nothing but the standard library (and the list
of the signals a run handles, in a module that imports nothing else): what runs before ``launch()`` is the
interpreter's start-up and these few milliseconds of imports.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import signal
import sys
from typing import NoReturn

from pipeline.console.exit_status import status_of  # the standard library's alone too
from pipeline.console.lent_signals import HANDLED  # the standard library's alone, as this module's

#: The exit status of a command that Ctrl+C interrupted (DESIGN.md §5).
INTERRUPTED = 128 + signal.SIGINT


def launch(module: str, command: str) -> NoReturn:
    """Import ``module`` and run its ``main()`` as the console script ``command``."""
    try:
        # Registered before any other module's, so run after them all: the interpreter's exit then gives a signal with
        # a Python handler its default action back, and one while it tears down its modules would kill the process with
        # the signal's status after the command said its own.
        atexit.register(_ignore_signals)
        importlib.import_module(module).main()
    except KeyboardInterrupt as error:
        # Whatever the command was doing (importing, starting, ending): its one line. The bench's stop is a
        # KeyboardInterrupt that carries the signal (SIGTERM: 143).
        status = 128 + getattr(error, "signum", signal.SIGINT)
        exit_on_signals(status)  # a second Ctrl+C while the line is written cannot raise a traceback of it
        with contextlib.suppress(OSError):  # a terminal that went away (EIO) or a closed pipe: the status says it
            sys.stderr.write(f"{command}: interrupted\n")
        sys.exit(status)
    except SystemExit as exit_:
        # The status is decided: a signal during the interpreter's exit (its atexit hooks, its wait for the threads
        # left running) ends the process with it, rather than a traceback of an atexit hook or the signal's status.
        exit_on_signals(status_of(exit_))
        raise


def exit_on_signals(status: int) -> None:
    """From here, Ctrl+C, SIGTERM and SIGHUP end the process at once with ``status``: the command's exit status is
    decided, and the process may be waiting on a stdout or stderr that nobody reads, or on a thread left running."""
    for signum in HANDLED:
        signal.signal(signum, lambda *_: os._exit(status))


def _ignore_signals() -> None:
    """From here to its end, the process ignores Ctrl+C, SIGTERM and SIGHUP: its exit status is decided."""
    for signum in HANDLED:
        signal.signal(signum, signal.SIG_IGN)


def pipeline_run() -> NoReturn:
    """``pipeline-run``."""
    launch("pipeline.cli.run", "pipeline-run")


def pipeline_worker() -> NoReturn:
    """``pipeline-worker``."""
    launch("pipeline.cli.worker", "pipeline-worker")


def pipeline_keys() -> NoReturn:
    """``pipeline-keys``."""
    launch("pipeline.cli.keys", "pipeline-keys")


def pipeline_bench() -> NoReturn:
    """``pipeline-bench``."""
    launch("pipeline.bench.app", "pipeline-bench")


def pipeline_gui() -> NoReturn:
    """``pipeline-gui``."""
    launch("gui.app", "pipeline-gui")
