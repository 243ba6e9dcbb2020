"""Steps for tests/test_monitor.py: producers that wait at a gate the test opens."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator

from traitlets import Int, Unicode

from pipeline import Component

#: Seconds a gate waits before the step gives up (a test that never opens it fails, never hangs).
GATE_TIMEOUT = 30.0
#: In-process gates by tag: ``REACHED[tag]`` is set by the producer, the test sets ``OPEN[tag]``.
REACHED: dict[str, threading.Event] = {}
OPEN: dict[str, threading.Event] = {}


def gate(tag: str) -> tuple[threading.Event, threading.Event]:
    """The (reached, open) events of gate ``tag``, made on first use."""
    return REACHED.setdefault(tag, threading.Event()), OPEN.setdefault(tag, threading.Event())


class GatedCounter(Component):
    """Producer: yields 0 .. count-1, stopping after ``before`` messages until the test opens gate ``tag``."""

    count = Int(10, help="How many numbers to yield.").tag(config=True)
    before = Int(0, help="Messages yielded before the gate.").tag(config=True)
    tag = Unicode(help="The gate's tag.").tag(config=True)
    fail = Unicode("", help="If set: raise RuntimeError(fail) after the last number.").tag(config=True)

    def run(self) -> Iterator[int]:
        """Yield ``before`` numbers, wait at the gate, yield the rest (then fail, if asked)."""
        yield from range(self.before)
        self.wait()
        yield from range(self.before, self.count)
        if self.fail:
            raise RuntimeError(self.fail)

    def wait(self) -> None:
        """Say the gate is reached, then wait for the test to open it."""
        reached, opened = gate(self.tag)
        reached.set()
        if not opened.wait(GATE_TIMEOUT):
            raise TimeoutError(f"gate {self.tag} was not opened within {GATE_TIMEOUT} s")


class StdinGatedCounter(GatedCounter):
    """GatedCounter for a subprocess: the gate opens when a line arrives on stdin."""

    def wait(self) -> None:
        """Read one line of stdin (the test writes it, or closes stdin)."""
        sys.stdin.readline()
