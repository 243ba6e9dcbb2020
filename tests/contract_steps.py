"""Steps for tests/test_contract.py: each one puts one promise of the worker contract to the test.

Steps of one run share state with the test through module-level dicts keyed by a run ``tag``
(every thread of a run is in the test's process), so a test can synchronise a step with another
(an Event) and read what each one saw, without sleeps.
"""

from __future__ import annotations

import copy
import ctypes
import json
import os
import signal
import threading
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import numpy as np
from traitlets import Any as AnyTrait
from traitlets import Bool, Enum, Float, Int, Unicode
from traitlets.config import Config

from pipeline import Component

#: What each recording step received, per run tag.
RECEIVED: dict[str, list[Any]] = defaultdict(list)
#: Events that one step of a run sets and another waits for, per run tag.
EVENTS: dict[str, threading.Event] = defaultdict(threading.Event)
#: What a producer sent, kept by the producer itself, per run tag.
SENT: dict[str, list[Any]] = defaultdict(list)
#: Errors a step caught (as "Type: message"), per run tag.
CAUGHT: dict[str, list[str]] = defaultdict(list)
#: A thread a step started, for another step to wait for, per run tag.
HELPERS: dict[str, threading.Thread] = {}
#: Whether the slow message of a run was released by its Event rather than by the timeout, per run tag.
RELEASED: dict[str, bool] = {}

#: The longest any step here waits for an Event; a test that reaches it has failed.
WAIT_SECONDS = 10.0


# --------------------------------------------------------------------------- producers


class Numbers(Component):
    """Producer: yields 0 .. count-1."""

    count = Int(10, help="How many numbers.").tag(config=True)

    def run(self) -> Iterator[int]:
        """Yield each number."""
        yield from range(self.count)


class SendsAfterItsLastYield(Component):
    """Producer (shardable): yields -1, then sends the numbers 0 .. count-1 of its shard with send_msg() and yields no
    more; raises after them if ``then_raise``."""

    shardable = True
    count = Int(5, help="How many numbers it sends.").tag(config=True)
    then_raise = Bool(False, help="Raise RuntimeError once they are sent.").tag(config=True)

    def run(self) -> Iterator[int]:
        """Yield -1 (shard 0 only), then send each number of the shard."""
        if self.shard == 0:
            yield -1
        for i in range(self.shard, self.count, self.n_shards):
            self.send_msg(i)
        if self.then_raise:
            raise RuntimeError("the source broke after its sends")


class NumbersWithExitingHint(Numbers):
    """Producer: Numbers whose ``__length_hint__`` calls sys.exit (a library's own check, run before init())."""

    def __length_hint__(self) -> int:
        """Leave, as a library's command-line check may."""
        raise SystemExit("the hint says no")


class NumbersWithHint(Numbers):
    """Producer: Numbers whose ``__length_hint__`` returns its option ``hint``, whatever it is."""

    hint = AnyTrait(None, help="What __length_hint__() returns.").tag(config=True)

    def __length_hint__(self) -> Any:
        """The option, as given."""
        return self.hint


class BadNumbers(Component):
    """Producer (shardable): yields the numbers 0 .. count-1 of its shard, but a lock, which no pickle carries, for
    number ``bad_on``."""

    shardable = True
    count = Int(10, help="How many numbers.").tag(config=True)
    bad_on = Int(5, help="The number yielded as a lock.").tag(config=True)
    kill_at = Int(-1, help="The number at which the first process that makes it kills itself (-1: none).").tag(
        config=True)
    marker = Unicode("", help="The file created as it kills itself (the token: once).").tag(config=True)
    how = Enum(["yield", "send_msg", "send_msg in a plain run()"], "yield", help="How each value goes: yielded, "
               "passed to send_msg() (then None yielded), or passed to send_msg() by a run() that returns [].").tag(
        config=True)

    def run(self) -> Iterator[Any] | list[Any]:
        """Yield (or send) each number of the shard, or the lock."""
        values = self.values()
        if self.how == "send_msg in a plain run()":
            for value in values:
                self.send_msg(value)
            return []
        return self.sent(values) if self.how == "send_msg" else values

    def values(self) -> Iterator[Any]:
        """Each number of the shard, or the lock."""
        for i in range(self.shard, self.count, self.n_shards):
            if i == self.kill_at and not os.path.exists(self.marker):
                Path(self.marker).touch()  # the token, made before the process dies
                os.kill(os.getpid(), signal.SIGKILL)
            yield threading.Lock() if i == self.bad_on else i

    def sent(self, values: Iterator[Any]) -> Iterator[None]:
        """Pass each value to send_msg(), yielding None after each."""
        for value in values:
            self.send_msg(value)
            yield None


class ReturnsLock(Component):
    """Consumer whose init(), run() and finish() return what no pickle can carry: a consumer's returned
    values go nowhere."""

    def init(self) -> threading.Lock:
        """Return a lock."""
        return threading.Lock()

    def run(self, msg: Any) -> threading.Lock:
        """Return a lock."""
        return threading.Lock()

    def finish(self) -> Iterator[threading.Lock]:
        """Yield a lock."""
        yield threading.Lock()


class Bursty(Component):
    """Producer: yields 0 and 1 at once, then blocks until the run's Event is set; yields whether it was."""

    tag = Unicode("", help="Run tag.").tag(config=True)

    def run(self) -> Iterator[Any]:
        """Two values, a wait for the consumer to have them, then the wait's outcome."""
        yield 0
        yield 1
        yield EVENTS[self.tag].wait(WAIT_SECONDS)


class ThenBlocks(Component):
    """Producer: yields 0 .. count-1, then blocks in its generator (a source waiting for input)."""

    count = Int(10, help="How many numbers before blocking.").tag(config=True)
    block = Float(60.0, help="Seconds to block after the last number.").tag(config=True)

    def run(self) -> Iterator[int]:
        """Yield each number, then wait for input that never comes."""
        yield from range(self.count)
        threading.Event().wait(self.block)


class Arrays(Component):
    """Producer: yields {"i", "big", "small", "masked"} of zeros, keeping each dict in SENT[tag] to check it later
    ("masked": a numpy subclass as large as "big", which travels inside the pickle)."""

    tag = Unicode("", help="Run tag.").tag(config=True)
    count = Int(4, help="How many messages.").tag(config=True)
    big = Int(16384, help="float64 values of the big array (16384: 128 KiB, out of band).").tag(config=True)
    small = Int(16, help="float64 values of the small array (pickled in band).").tag(config=True)

    def run(self) -> Iterator[dict[str, Any]]:
        """Yield each message."""
        for i in range(self.count):
            message = {"i": i, "big": np.zeros(self.big), "small": np.zeros(self.small),
                       "masked": np.ma.masked_array(np.zeros(self.big))}
            SENT[self.tag].append(message)
            yield message


class SendsAndYieldsNone(Component):
    """Producer in ctapipe style: sends 1 + i % 3 messages with send_msg() for each i, and yields None."""

    count = Int(10, help="How many rounds.").tag(config=True)

    def run(self) -> Iterator[None]:
        """Send, then yield None."""
        for i in range(self.count):
            for k in range(1 + i % 3):
                self.send_msg([i, k])
            yield None


# --------------------------------------------------------------------------- stagers


class InitFinishSender(Component):
    """Stager: sends "init" from init() and "finish" from finish() (a generator); passes messages on."""

    def init(self) -> None:
        """Send one message before any input."""
        self.send_msg("init")

    def run(self, msg: Any) -> Any:
        """Pass the message on."""
        return msg

    def finish(self) -> Iterator[str]:
        """Send one message after the last input (as a generator: its values are sent)."""
        yield "finish"


class YieldsAndReturns(Component):
    """Stager: a generator that yields each message and returns ("total", msg), which is no output; so does its
    finish()."""

    def run(self, msg: Any) -> Iterator[Any]:
        """Yield the message, then return."""
        yield msg
        return ("total", msg)

    def finish(self) -> Iterator[Any]:
        """Yield "finish", then return."""
        yield "finish"
        return "finished"


def _refuse_to_unpickle(value: int) -> Any:
    """What unpickling a Token calls: it raises."""
    raise ValueError(f"cannot unpickle token {value}")


class Token:
    """An object that pickles, and whose unpickling raises."""

    def __init__(self, value: int) -> None:
        self.value = value

    def __reduce__(self) -> tuple[Any, tuple[int]]:
        return _refuse_to_unpickle, (self.value,)


class MakesTokens(Component):
    """Stager: a Token of each number, which no receiver can unpickle."""

    def run(self, msg: int) -> Token:
        """The number as a Token."""
        return Token(msg)


class SlowOne(Component):
    """Stager: passes messages on as [msg, None]; message ``slow_on`` first waits for the run's Event.

    Its output is [msg, whether the Event was set before the timeout].
    """

    tag = Unicode("", help="Run tag.").tag(config=True)
    slow_on = Int(1, help="The message that waits.").tag(config=True)

    def run(self, msg: int) -> list:
        """Pass the message on, waiting first if it is the slow one."""
        if msg == self.slow_on:
            return [msg, EVENTS[self.tag].wait(WAIT_SECONDS)]
        return [msg, None]


class BigOutputs(Component):
    """Stager: returns (msg, an array of ``size`` bytes); message 0 first waits for the run's Event."""

    tag = Unicode("", help="Run tag.").tag(config=True)
    size = Int(1 << 20, help="Bytes of each output array.").tag(config=True)

    def run(self, msg: int) -> tuple[int, np.ndarray]:
        """Return a large output; the first message is late."""
        if msg == 0:
            RELEASED[self.tag] = EVENTS[self.tag].wait(WAIT_SECONDS)
        return msg, np.full(self.size // 8, float(msg))


class WriteInPlace(Component):
    """Stager: adds 1 in place to the received arrays and reports what happened, per message."""

    def run(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Try the writes; report the big one's error and the others' new values."""
        big_error = None
        try:
            msg["big"] += 1
        except ValueError as err:
            big_error = f"{type(err).__name__}: {err}"
        msg["small"] += 1
        msg["masked"] += 1
        return {"i": msg["i"], "big_error": big_error, "big_seen": float(msg["big"].max()),
                "small_seen": float(msg["small"].min()), "masked_seen": float(msg["masked"].min())}


class ForeignSender(Component):
    """Stager: passes messages on; on message ``at`` a thread it starts calls send_msg() while run() waits for
    it (a failure is recorded)."""

    tag = Unicode("", help="Run tag.").tag(config=True)
    at = Int(3, help="The message whose run() starts the thread.").tag(config=True)

    def run(self, msg: int) -> int:
        """Pass the message on, after a helper thread tried to send."""
        if msg == self.at:
            helper = threading.Thread(target=self._send_from_helper, name=f"helper-of-{self.step_name}")
            helper.start()
            helper.join(WAIT_SECONDS)
        return msg

    def _send_from_helper(self) -> None:
        try:
            self.send_msg("from-helper")
        except Exception as err:
            CAUGHT[self.tag].append(f"{type(err).__name__}: {err}")


class LateSender(Component):
    """Stager: passes messages on; its finish() starts a thread that sends once the run's consumer lets it,
    after this step's code has returned for good."""

    tag = Unicode("", help="Run tag.").tag(config=True)

    def run(self, msg: int) -> int:
        """Pass the message on."""
        return msg

    def finish(self) -> None:
        """Start the late sender."""
        helper = HELPERS[self.tag] = threading.Thread(target=self._send_late, name=f"late-helper-of-{self.step_name}")
        helper.start()

    def _send_late(self) -> None:
        EVENTS[self.tag].wait(WAIT_SECONDS)
        try:
            self.send_msg("late")
        except Exception as err:
            CAUGHT[self.tag].append(f"{type(err).__name__}: {err}")


class Point(ctypes.Structure):
    """A C struct: a memoryview of an array of them has a format no receiver can cast to."""

    _fields_ = (("x", ctypes.c_int), ("y", ctypes.c_double))


def unframeable(kind: str) -> Any:
    """A message the wire cannot carry: 70,000 out-of-band buffers (all views of one 64 KiB
    bytearray, so no big memory), a memoryview of C structs, or an empty one of floats in two dimensions."""
    if kind == "buffers":
        shared = bytearray(64 * 1024)
        return [memoryview(shared) for _ in range(70_000)]
    if kind == "empty":
        return memoryview(np.zeros((0, 5)))
    return memoryview((Point * 4)())


class BadOutput(Component):
    """Stager: passes messages on, but returns an unframeable message (see ``unframeable``) for message ``bad_on``."""

    bad_on = Int(5, help="The message answered with an unframeable output.").tag(config=True)
    kind = Enum(["buffers", "ctypes", "empty"], "buffers", help="Which unframeable output.").tag(config=True)

    def run(self, msg: int) -> Any:
        """Pass the message on, or return what cannot travel."""
        return unframeable(self.kind) if msg == self.bad_on else msg


class EmptyViews(Component):
    """Stager: returns each message with two empty memoryviews of bytes (an empty one, and the tail of one)."""

    def run(self, msg: int) -> Any:
        """The message and its empty views."""
        return msg, memoryview(b""), memoryview(b"abc")[3:]


class Unprintable(Exception):
    """An exception whose ``__str__`` itself fails (a step's own exception class, broken)."""

    def __str__(self) -> str:
        raise RuntimeError("str is broken")


class RaisesUnprintable(Component):
    """Stager: passes messages on, but raises Unprintable on message ``at``, or in init() or finish() (``where``)."""

    at = Int(3, help="The message that raises.").tag(config=True)
    where = Enum(["init", "run", "finish"], "run", help="Which call raises.").tag(config=True)

    def init(self) -> None:
        """Raise here if told so."""
        if self.where == "init":
            raise Unprintable

    def run(self, msg: int) -> int:
        """Pass the message on, or raise."""
        if self.where == "run" and msg == self.at:
            raise Unprintable
        return msg

    def finish(self) -> None:
        """Raise here if told so."""
        if self.where == "finish":
            raise Unprintable


class MissesAFile(Component):
    """Stager: passes messages on, but fails on message ``at``, or in init() or finish() (``where``), naming a file
    whose name is not UTF-8, as Python reads such a name (``os.fsdecode``: a lone surrogate)."""

    at = Int(3, help="The message that fails.").tag(config=True)
    where = Enum(["init", "run", "finish"], "run", help="Which call fails.").tag(config=True)

    def init(self) -> None:
        """Fail here if told so."""
        if self.where == "init":
            self._missing()

    def run(self, msg: int) -> int:
        """Pass the message on, or fail."""
        if self.where == "run" and msg == self.at:
            self._missing()
        return msg

    def finish(self) -> None:
        """Fail here if told so."""
        if self.where == "finish":
            self._missing()

    def _missing(self) -> None:
        raise FileNotFoundError("missing input file " + os.fsdecode(b"caf\xe9.txt"))


class ExitsWhenBuilt(Component):
    """Stager whose constructor calls sys.exit (a library's own command-line check, run as it is built)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        raise SystemExit("library says no")

    def run(self, msg: int) -> int:
        """Never called: the step cannot start."""
        return msg


class DropsItsArguments(Component):
    """Stager whose constructor takes the step's arguments but does not pass them on to Component's."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()

    def run(self, msg: int) -> int:
        """Never called: the step cannot start."""
        return msg


class DropsItsConfig(Component):
    """Stager whose constructor keeps the config argument from Component's: it would run with its defaults."""

    def __init__(self, config: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)

    def run(self, msg: int) -> int:
        """Never called: the step cannot start."""
        return msg


class PassesACopyOfItsConfig(Component):
    """Stager whose constructor passes on a config of its own making (a copy, with a section added) and a step name
    of its own: its choice, not a dropped argument; it multiplies by ``factor``."""

    factor = Int(1, help="What each message is multiplied by.").tag(config=True)

    def __init__(self, config: Any = None, step_name: str = "", **kwargs: Any) -> None:
        mine = copy.deepcopy(config)
        mine.Extra = Config({"added": True})
        super().__init__(config=mine, step_name=step_name.lower(), **kwargs)

    def run(self, msg: int) -> int:
        """The message times ``factor``."""
        return msg * self.factor


class ShardsDroppingTheirArguments(Numbers):
    """Producer (shardable) whose constructor does not pass the step's arguments on to Component's."""

    shardable = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__()


class Raises(Component):
    """Stager: passes messages on, but raises SystemExit(0) or KeyboardInterrupt on message ``at``."""

    at = Int(3, help="The message that raises.").tag(config=True)
    what = Enum(["SystemExit", "KeyboardInterrupt"], "SystemExit", help="What run() raises.").tag(config=True)

    def run(self, msg: int) -> int:
        """Pass the message on, or raise."""
        if msg == self.at:
            raise SystemExit(0) if self.what == "SystemExit" else KeyboardInterrupt
        return msg


# --------------------------------------------------------------------------- consumers


class Record(Component):
    """Consumer: appends each message to RECEIVED[tag], then "finished" from finish(); sets the
    run's Event once it has ``signal_after`` messages (0: never)."""

    tag = Unicode("", help="Run tag.").tag(config=True)
    signal_after = Int(0, help="Set EVENTS[tag] on this many messages (0: never).").tag(config=True)
    index_only = Bool(False, help="Record msg[0] only (for large messages).").tag(config=True)

    def run(self, msg: Any) -> None:
        """Record the message."""
        received = RECEIVED[self.tag]
        received.append(msg[0] if self.index_only else msg)
        if len(received) == self.signal_after:
            EVENTS[self.tag].set()

    def finish(self) -> None:
        """Record the end."""
        RECEIVED[self.tag].append("finished")


class ReleaseAtFinish(Record):
    """Consumer: records like Record; its finish() lets a LateSender's thread send, and waits for it."""

    def finish(self) -> None:
        """Release the late sender of the run, wait until it has tried, record the end."""
        EVENTS[self.tag].set()
        HELPERS.pop(self.tag).join(WAIT_SECONDS)
        super().finish()


class AppendLines(Component):
    """Consumer: appends each message to ``path`` as a JSON line, flushed at once (another process reads it)."""

    path = Unicode("", help="The JSON-lines file.").tag(config=True)

    def init(self) -> None:
        """Open the file."""
        self._file: TextIO = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in finish)

    def run(self, msg: Any) -> None:
        """Write and flush one line."""
        self._file.write(json.dumps(msg) + "\n")
        self._file.flush()

    def finish(self) -> None:
        """Close the file."""
        self._file.close()
