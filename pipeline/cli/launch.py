"""The console scripts' entry points: a Ctrl+C while Python still imports a command ends it as one after does, and
one as the process ends once the command has exited leaves its exit status as it is.

Each command imports traitlets, pyzmq and its own modules before its ``main`` can handle a signal: some
0.2 s, longer on a loaded machine. A Ctrl+C then would print a KeyboardInterrupt traceback of an import;
here it prints the command's one line and exits 130, as a Ctrl+C while the command runs does. So this
module, and the packages above it, import nothing but the standard library (and the list of the signals a
run handles, in a module that imports nothing else).
"""

from __future__ import annotations

import atexit
import importlib
import signal
import sys
from typing import NoReturn

from pipeline.console.lent_signals import HANDLED  # the standard library's alone, as this module's

#: The exit status of a command that Ctrl+C interrupted (DESIGN.md §5).
INTERRUPTED = 128 + signal.SIGINT


def launch(module: str, command: str) -> NoReturn:
    """Import ``module`` and run its ``main()`` as the console script ``command``."""
    # Registered before any other module's, so run after them all: the interpreter's exit then gives a signal with a
    # Python handler its default action back, and one while it tears down its modules would kill the process with the
    # signal's status after the command said its own.
    atexit.register(_ignore_signals)
    try:
        main = importlib.import_module(module).main
    except KeyboardInterrupt:
        sys.stderr.write(f"{command}: interrupted\n")
        sys.exit(INTERRUPTED)
    main()


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
