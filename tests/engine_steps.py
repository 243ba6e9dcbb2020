"""Steps for the engine tests: messages are (value, path) tuples so outputs tell which way they went,
with a large numpy payload as a third item when the Source is asked for one (it travels out of band)."""

from __future__ import annotations

import ctypes
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import numpy as np
from traitlets import Bool, Float, Int, List, Unicode

from pipeline import Component

#: What each collecting sink received, per run tag and step name (threads of one process share it).
COLLECTED: dict[str, list[Any]] = defaultdict(list)


#: Per run tag: set by a Source once it has yielded ``hold_after`` messages, and set by the test to let it go on.
HELD: dict[str, threading.Event] = defaultdict(threading.Event)
RESUME: dict[str, threading.Event] = defaultdict(threading.Event)
#: The longest a Source waits to be let go on.
HOLD_SECONDS = 10.0


class Source(Component):
    """Yields (i, ()) for i in range(count), or (i, (), payload) with a payload of ``payload`` bytes.

    With a ``hold`` tag it stops after ``hold_after`` messages, says so (HELD[tag]) and waits for RESUME[tag]:
    a test does something to the run while the first messages are in flight.
    """

    count = Int(10, help="How many messages.").tag(config=True)
    payload = Int(0, min=0, help="Bytes of a uint8 array filled with i % 251 added to each message (0: none).").tag(
        config=True)
    hold = Unicode("", help="The run tag of the hold ('': no hold).").tag(config=True)
    hold_after = Int(0, help="Messages yielded before the hold.").tag(config=True)
    delay = Float(0.0, help="Seconds of work before each message (a slow source's go one by one).").tag(config=True)

    def run(self) -> Iterator[tuple[Any, ...]]:
        """Yield each message."""
        for i in range(self.count):
            if self.hold and i == self.hold_after:
                self._hold()
            if self.delay:
                time.sleep(self.delay)
            yield (i, ()) if not self.payload else (i, (), np.full(self.payload, i % 251, dtype=np.uint8))
        if self.hold and self.count <= self.hold_after:
            self._hold()

    def _hold(self) -> None:
        HELD[self.hold].set()
        RESUME[self.hold].wait(HOLD_SECONDS)


class Behave(Component):
    """A stager whose behaviour the config picks: pass, filter, expand, route or finish-sum.

    It may sleep a per-message delay taken from ``delays`` (seconds, cycled by value).
    """

    behaviour = Unicode("pass", help="pass | filter | expand | route | sum").tag(config=True)
    modulo = Int(3, help="filter drops values divisible by it; route picks next step value % n").tag(config=True)
    delays = List(Float(), default_value=[], help="Per-message sleeps, cycled by value.").tag(config=True)
    gil = List(Float(), default_value=[], help="Per-message seconds in a C call that holds the GIL (no other "
               "thread of its process runs meanwhile), cycled by value.").tag(config=True)
    announce = Bool(False, help="Send a message from init() and one from finish().").tag(config=True)

    def init(self) -> None:
        """Start the finish-sum at zero; announce the start."""
        self.total = 0
        if self.announce and self.next_steps:
            self.send_msg((-1_000_000, (self.step_name, "init")))

    def run(self, msg: tuple[Any, ...]) -> Any:
        """Transform one message according to ``behaviour`` (a payload goes on with it unchanged)."""
        value, path, *payload = msg
        if self.delays:
            time.sleep(self.delays[value % len(self.delays)])
        if self.gil and self.gil[value % len(self.gil)]:
            # ctypes.PyDLL calls keep the GIL: the whole process stands still (the run's, for a thread step)
            ctypes.PyDLL(None).usleep(int(self.gil[value % len(self.gil)] * 1e6))
        out = (value, (*path, self.step_name), *payload)
        if self.behaviour == "filter":
            return None if value % self.modulo == 0 else out
        if self.behaviour == "expand":
            return self._expand(out)
        if self.behaviour == "route":
            self.send_msg(out, self.next_steps[value % len(self.next_steps)])
            return None
        if self.behaviour == "sum":
            self.total += value
        return out

    def _expand(self, out: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
        value, path, *payload = out
        yield (value * 2, path, *payload)
        yield (value * 2 + 1, path, *payload)

    def finish(self) -> Iterator[tuple[int, tuple[str, ...]]]:
        """A sum step sends its total once, at the end; an announcing step yields a last message."""
        if self.behaviour == "sum" and self.next_steps:
            self.send_msg((-1 - self.total, (self.step_name, "total")))
        if self.announce and self.next_steps:
            yield (-2_000_000, (self.step_name, "finish"))


class Collect(Component):
    """A sink that records every message under COLLECTED[tag + step name]."""

    tag = Unicode("", help="Run tag that keeps runs apart.").tag(config=True)

    def run(self, msg: Any) -> None:
        """Record the message; a payload as (size, first byte, last byte, writeable): what arrived of it."""
        if isinstance(msg, tuple) and len(msg) == 3 and isinstance(msg[2], np.ndarray):
            payload = msg[2]
            msg = (*msg[:2], (payload.size, int(payload[0]), int(payload[-1]), payload.flags.writeable))
        COLLECTED[self.tag + self.step_name].append(msg)


class Arrays(Component):
    """Yields count float64 arrays of `size` elements, array i filled with i."""

    count = Int(10, help="How many arrays.").tag(config=True)
    size = Int(131072, help="Elements per array (131072 = 1 MiB).").tag(config=True)

    def run(self) -> Iterator[np.ndarray]:
        """Yield each array."""
        for i in range(self.count):
            yield np.full(self.size, float(i))


class Double(Component):
    """Returns arr * 2."""

    def run(self, arr: np.ndarray) -> np.ndarray:
        """Double the array."""
        return arr * 2


class PickyDouble(Component):
    """Returns arr * 2, but drops arrays of values divisible by 5 and raises on values that are 3 modulo 7."""

    def run(self, arr: np.ndarray) -> np.ndarray | None:
        """Double, filter or fail one array."""
        value = int(arr[0])
        if value % 7 == 3:
            raise ValueError(f"picky about {value}")
        return None if value % 5 == 0 else arr * 2


class ArraySummer(Component):
    """Checks each array is uniform and adds its first value to COLLECTED[tag]."""

    tag = Unicode("", help="Run tag.").tag(config=True)

    def run(self, arr: np.ndarray) -> None:
        """Record the array's value, or a marker if it arrived damaged."""
        COLLECTED[self.tag].append(float(arr[0]) if (arr == arr[0]).all() and arr.size > 0 else "damaged")


class Tiny(Component):
    """Yields count small dicts (~100 bytes pickled)."""

    count = Int(1000, help="How many messages.").tag(config=True)

    def run(self) -> Iterator[dict[str, Any]]:
        """Yield each dict."""
        for i in range(self.count):
            yield {"i": i, "name": "event", "values": [1.0, 2.0, 3.0], "tag": "x" * 40}


class Add(Component):
    """Sums the ``i`` field of every message; the total and count go to COLLECTED[tag]."""

    tag = Unicode("", help="Run tag.").tag(config=True)

    def init(self) -> None:
        """Start at zero."""
        self.total = 0
        self.count = 0

    def run(self, msg: dict[str, Any]) -> None:
        """Add one message."""
        self.total += msg["i"]
        self.count += 1

    def finish(self) -> None:
        """Publish the total."""
        COLLECTED[self.tag].append((self.count, self.total))


class Gauge:
    """Messages alive between a producer and a consumer: produced minus consumed, and the peak."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.alive = 0
        self.peak = 0

    def change(self, delta: int) -> None:
        """Add delta and keep the peak."""
        with self.lock:
            self.alive += delta
            self.peak = max(self.peak, self.alive)


GAUGES: dict[str, Gauge] = defaultdict(Gauge)


class CountedSource(Component):
    """Yields count payloads of `size` bytes, counting each one alive in GAUGES[tag]."""

    tag = Unicode("", help="Run tag.").tag(config=True)
    count = Int(100, help="How many messages.").tag(config=True)
    size = Int(100, help="Bytes per payload.").tag(config=True)

    def run(self) -> Iterator[bytes]:
        """Yield each payload."""
        for i in range(self.count):
            GAUGES[self.tag].change(+1)
            yield bytes([i % 256]) * self.size


class SlowCountedSink(Component):
    """Sleeps `delay` per message and counts it no longer alive in GAUGES[tag]."""

    tag = Unicode("", help="Run tag.").tag(config=True)
    delay = Float(0.001, help="Seconds per message.").tag(config=True)

    def run(self, msg: bytes) -> None:
        """Take one message."""
        GAUGES[self.tag].change(-1)
        time.sleep(self.delay)


class Stuck(Component):
    """A stager whose run() blocks until `release` is set (or forever)."""

    release = threading.Event()
    entered = threading.Event()

    def run(self, msg: Any) -> Any:
        """Block."""
        Stuck.entered.set()
        Stuck.release.wait()
        return msg


class SlowOnZero(Component):
    """Passes payloads on; sleeps ``delay`` on those whose first byte is 0 (a late message)."""

    delay = Float(0.2, help="Seconds to sleep on a late message.").tag(config=True)

    def run(self, msg: bytes) -> bytes:
        """Pass the payload on, late if it starts with 0."""
        if msg[0] == 0:
            time.sleep(self.delay)
        return msg


#: Set once the consumer of a run (by tag) got what a stager's init() sent.
INIT_OUTPUT_SEEN: dict[str, threading.Event] = defaultdict(threading.Event)


class AfterInitOutput(Component):
    """Producer: waits (at most ``timeout``) for the consumer to get a stager's init() output; yields whether it did."""

    tag = Unicode("", help="Run tag.").tag(config=True)
    timeout = Float(10.0, help="Seconds to wait.").tag(config=True)

    def run(self) -> Iterator[bool]:
        """Yield one message: whether the init() output arrived first."""
        yield INIT_OUTPUT_SEEN[self.tag].wait(self.timeout)


class SendsInInit(Component):
    """Stager: sends "from-init" from init(), then passes messages on."""

    def init(self) -> None:
        """Send one message before any input."""
        self.send_msg("from-init")

    def run(self, msg: Any) -> Any:
        """Pass the message on."""
        return msg


class CollectInitOutput(Component):
    """Consumer: collects messages and signals when "from-init" arrives."""

    tag = Unicode("", help="Run tag.").tag(config=True)

    def run(self, msg: Any) -> None:
        """Keep the message."""
        if msg == "from-init":
            INIT_OUTPUT_SEEN[self.tag].set()
        COLLECTED[self.tag].append(msg)


class ThreadNames(Component):
    """Passes each message on; records the name of the thread that runs its init(), run() and finish() under
    COLLECTED[tag + step name]."""

    tag = Unicode("", help="Run tag that keeps runs apart.").tag(config=True)

    def init(self) -> None:
        """Record init()'s thread."""
        COLLECTED[self.tag + self.step_name].append(("init", threading.current_thread().name))

    def run(self, msg: Any) -> Any:
        """Record run()'s thread; pass the message on."""
        COLLECTED[self.tag + self.step_name].append(("run", threading.current_thread().name))
        return msg

    def finish(self) -> None:
        """Record finish()'s thread."""
        COLLECTED[self.tag + self.step_name].append(("finish", threading.current_thread().name))


#: Per run tag: set once a Hold step has run ``hold_at`` messages and waits; set by the test to let it go on.
HOLDING: dict[str, threading.Event] = defaultdict(threading.Event)
#: The longest a Hold step waits to be let go on.
HOLD_STEP_SECONDS = 10.0


class Hold(Component):
    """Passes each message on after ``delay`` seconds of work; the ``hold_at``-th waits (HOLDING[tag] set) until
    RESUME[tag] is set. Each message it ran is counted under COLLECTED[tag]."""

    tag = Unicode("", help="Run tag.").tag(config=True)
    delay = Float(0.002, help="Seconds of work per message.").tag(config=True)
    hold_at = Int(-1, help="The call that waits (-1: none).").tag(config=True)

    def run(self, msg: Any) -> Any:
        """Work, maybe wait, pass the message on."""
        calls = COLLECTED[self.tag]
        if len(calls) == self.hold_at:
            HOLDING[self.tag].set()
            RESUME[self.tag].wait(HOLD_STEP_SECONDS)
        time.sleep(self.delay)
        calls.append(msg)
        return msg
