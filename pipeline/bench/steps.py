"""Steps of the benchmark workloads in plain Python: sources, stagers and checking sinks.

The benchmark runs these same steps on the engine and, called directly, on its baselines, so
every design does the same work. A sink publishes what it saw under ``RESULTS[tag]`` when it
finishes, which lets the benchmark check that every message arrived before it trusts a time.
This module does not import numpy (the array steps are in ``arrays``), so that a run of these
steps imports no more than a user's run would (W6 times it).
"""

from __future__ import annotations

import json
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

from traitlets import Enum, Float, Int, Unicode

from pipeline.component import Component

#: What each sink saw, per run tag: one entry per sink thread (threads of one process share it).
RESULTS: dict[str, list[Any]] = defaultdict(list)


def tiny_message(i: int) -> dict[str, Any]:
    """The small dict of W1: about 100 bytes pickled."""
    return {"i": i, "name": "event", "values": [1.0, 2.0, 3.0], "tag": "x" * 40}


def busy(msg: Any, loops: int) -> Any:
    """Pure-Python arithmetic, ``loops`` rounds of it, holding the GIL throughout; returns ``msg``.

    A module-level function so that a process pool can pickle it.
    """
    total = 0
    for i in range(loops):
        total += i % 7
    return msg


class TinyDicts(Component):
    """Producer: yields ``count`` small dicts (about 100 bytes pickled), dict i holding ``"i": i``."""

    count = Int(1000, min=0, help="How many messages.").tag(config=True)

    def run(self) -> Iterator[dict[str, Any]]:
        """Yield each dict."""
        for i in range(self.count):
            yield tiny_message(i)


class PassThrough(Component):
    """Stager: sends every message on unchanged."""

    def run(self, msg: Any) -> Any:
        """Return the message."""
        return msg


class Work(Component):
    """Stager: does about ``seconds`` of sleep (the GIL released) or ``loops`` of Python (the GIL held)."""

    kind = Enum(["sleep", "python"], default_value="sleep",
                help="sleep (releases the GIL), or pure-Python arithmetic (holds it).").tag(config=True)
    seconds = Float(0.005, min=0.0, help="How long to sleep per message (kind sleep).").tag(config=True)
    loops = Int(10_000, min=0, help="Rounds of arithmetic per message (kind python).").tag(config=True)

    def run(self, msg: Any) -> Any:
        """Work, then return the message unchanged."""
        if self.kind == "sleep":
            time.sleep(self.seconds)
            return msg
        return busy(msg, self.loops)


class Stamped(Component):
    """Producer: yields ``count`` dicts at ``rate`` per second, each stamped with time.perf_counter()."""

    count = Int(100, min=0, help="How many messages.").tag(config=True)
    rate = Float(1000.0, min=1.0, help="Messages per second.").tag(config=True)

    def run(self) -> Iterator[dict[str, Any]]:
        """Yield each message on its schedule, stamped just before it leaves."""
        start = time.perf_counter()
        for i in range(self.count):
            wait = start + i / self.rate - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            yield {"i": i, "t": time.perf_counter()}


class Tally(Component):
    """Consumer: counts messages and sums their values; publishes ``(count, total)`` in RESULTS[tag].

    The value of a message is its ``"i"`` for a dict, the number itself for a number, and for an
    array its first element (whose last element must equal it, else the message counts as
    damaged: NaN).
    """

    tag = Unicode("", help="Run tag: where the result goes in RESULTS.").tag(config=True)
    delay = Float(0.0, min=0.0, help="Seconds to sleep per message (a slow consumer).").tag(config=True)
    path = Unicode("", help="Also write [count, total] to this file as JSON (for a run in another process).").tag(
        config=True
    )

    def init(self) -> None:
        """Start at zero."""
        self.count = 0
        self.total = 0.0

    def run(self, msg: Any) -> None:
        """Count one message."""
        self.count += 1
        self.total += value_of(msg)
        if self.delay:
            time.sleep(self.delay)

    def finish(self) -> None:
        """Publish the count and the total."""
        RESULTS[self.tag].append((self.count, self.total))
        if self.path:
            with open(self.path, "w", encoding="utf-8") as out:
                json.dump([self.count, self.total], out)


def value_of(msg: Any) -> float:
    """The value a Tally adds for ``msg``."""
    if isinstance(msg, dict):
        return msg["i"]
    if isinstance(msg, int | float):
        return msg
    return float(msg[0]) if msg[0] == msg[-1] else float("nan")


class Latency(Component):
    """Consumer: records now minus each message's ``"t"`` stamp (seconds); publishes the list in RESULTS[tag]."""

    tag = Unicode("", help="Run tag: where the latencies go in RESULTS.").tag(config=True)

    def init(self) -> None:
        """Start an empty list."""
        self.latencies: list[float] = []

    def run(self, msg: dict[str, Any]) -> None:
        """Record one latency."""
        self.latencies.append(time.perf_counter() - msg["t"])

    def finish(self) -> None:
        """Publish the latencies."""
        RESULTS[self.tag].append(self.latencies)
