"""A step that says in which process it started and what that process inherited from the run, for the tests of
how worker processes start (tests/test_worker_start.py)."""

from __future__ import annotations

import logging
import os
import random
import signal
from collections.abc import Iterator
from typing import Any

import numpy as np
from traitlets import Any as AnyValue

from pipeline import Component

#: A module global the run's script may change before the run: a worker process forked from the run sees the change.
SCRIPT_VALUE = "as imported"


def resident_mib() -> float:
    """The MiB of memory this process holds (its resident set, what it shares with its parent included)."""
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Origin(Component):
    """Stager whose init() sends one message about its process, and prints a line to stdout."""

    def init(self) -> Iterator[dict[str, Any]]:
        """Say where this worker runs; print a line and log one."""
        print(f"worker {os.getpid()} started", flush=True)
        logging.getLogger(__name__).warning("worker %d logs", os.getpid())
        with open(f"/proc/{os.getppid()}/cmdline", encoding="utf-8", errors="replace") as cmdline:
            spawned = "pipeline.engine.zygote" in cmdline.read()  # a fresh interpreter's zygote, not a fork
        yield {"pid": os.getpid(), "value": SCRIPT_VALUE, "numpy": float(np.random.random()),
               "random": random.random(), "spawned": spawned,
               "sigterm_default": signal.getsignal(signal.SIGTERM) == signal.SIG_DFL,
               "sigpipe_ignored": signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN, "rss_mib": resident_mib()}

    def run(self, message: Any) -> Any:
        """Pass a message on."""
        return message


class StopsItsZygote(Component):
    """Stager that passes messages on; its finish() stops (SIGSTOP) the zygote its process was forked from, as a
    debugger or a frozen host would: the zygote then reports no worker process's end."""

    def run(self, message: Any) -> Any:
        """Pass a message on."""
        return message

    def finish(self) -> None:
        """Stop the zygote (this process's parent)."""
        os.kill(os.getppid(), signal.SIGSTOP)


class Applies(Component):
    """Stager or consumer that applies its option ``fn``, a callable given from Python, to each message (a consumer's
    results kept in APPLIED)."""

    fn = AnyValue(None, help="The callable applied to each message.").tag(config=True)

    def run(self, msg: Any) -> Any:
        """``fn(msg)``."""
        done = self.fn(msg)
        APPLIED.append(done)
        return done


#: What Applies made in this process.
APPLIED: list[Any] = []


class AppliesToo(Applies):
    """Applies under a name of its own: a section of its own."""
