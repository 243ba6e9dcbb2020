"""Steps of the benchmark workloads (``pipeline-bench``): sources, stagers and checking sinks.

The benchmark runs these same steps on the engine and, called directly, on its baselines, so
every design does the same work. A sink publishes what it saw under ``RESULTS[tag]`` when it
finishes, which lets the benchmark check that every message arrived before it trusts a time.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np
from traitlets import Enum, Float, Int, Unicode

from pipeline import Component

#: What each sink saw, per run tag: one entry per sink thread (threads of one process share it).
RESULTS: dict[str, list[Any]] = defaultdict(list)

#: float64 elements in one MiB.
MIB_ELEMENTS = 1024 * 1024 // 8


def tiny_message(i: int) -> dict[str, Any]:
    """The small dict of W1: about 100 bytes pickled."""
    return {"i": i, "name": "event", "values": [1.0, 2.0, 3.0], "tag": "x" * 40}


class TinyDicts(Component):
    """Producer: yields ``count`` small dicts (about 100 bytes pickled), dict i holding ``"i": i``."""

    count = Int(1000, min=0, help="How many messages.").tag(config=True)

    def run(self) -> Iterator[dict[str, Any]]:
        """Yield each dict."""
        for i in range(self.count):
            yield tiny_message(i)


class Arrays(Component):
    """Producer: yields ``count`` float64 arrays of ``mib`` MiB each, array i filled with i."""

    count = Int(10, min=0, help="How many arrays.").tag(config=True)
    mib = Int(1, min=1, help="Size of each array in MiB.").tag(config=True)

    def run(self) -> Iterator[np.ndarray]:
        """Yield each array."""
        for i in range(self.count):
            yield np.full(self.mib * MIB_ELEMENTS, float(i))


class Double(Component):
    """Stager: returns ``arr * 2``."""

    def run(self, arr: np.ndarray) -> np.ndarray:
        """Double the array."""
        return arr * 2


class Work(Component):
    """Stager: does about ``seconds`` of work that releases the GIL, then sends the message on."""

    kind = Enum(["sleep", "matmul"], default_value="sleep", help="sleep, or a numpy matrix product.").tag(
        config=True
    )
    seconds = Float(0.005, min=0.0, help="How long to sleep per message (kind sleep).").tag(config=True)
    matrix_size = Int(256, min=1, help="Rows of the square float64 matrices multiplied (kind matmul).").tag(
        config=True
    )

    def init(self) -> None:
        """Make the matrices once."""
        if self.kind == "matmul":
            rng = np.random.default_rng(0)
            self._a = rng.random((self.matrix_size, self.matrix_size))
            self._b = rng.random((self.matrix_size, self.matrix_size))

    def run(self, msg: Any) -> Any:
        """Work, then return the message unchanged."""
        if self.kind == "sleep":
            time.sleep(self.seconds)
        else:
            self._a @ self._b
        return msg


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

    The value of a message is its ``"i"`` for a dict, its first element for an array (whose last
    element must equal it, else the message counts as damaged: NaN) and the message itself otherwise.
    """

    tag = Unicode("", help="Run tag: where the result goes in RESULTS.").tag(config=True)
    delay = Float(0.0, min=0.0, help="Seconds to sleep per message (a slow consumer).").tag(config=True)

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


def value_of(msg: Any) -> float:
    """The value a Tally adds for ``msg``."""
    if isinstance(msg, dict):
        return msg["i"]
    if isinstance(msg, np.ndarray):
        return float(msg[0]) if msg[0] == msg[-1] else float("nan")
    return msg


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
