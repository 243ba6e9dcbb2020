"""Steps for tests/test_semantics.py: each one exercises one part of the Component API.

Consumers write what they receive to a JSON-lines file named by their ``path`` trait, and a
last line ``{"__finish__": STEP}`` from finish(), so a test can read what arrived and in which
order, and check that nothing arrived after finish().
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
import time
from collections.abc import Iterator
from typing import Any, TextIO

import numpy as np
from traitlets import Bool, Enum, Int, Unicode

from pipeline import Component

#: The key of the line a collecting step writes from its finish().
FINISH_KEY = "__finish__"

PAYLOAD_KINDS = ("ndarray", "bytes", "bytearray", "memoryview", "memoryview_f8")


# --------------------------------------------------------------------------- producers


class Numbers(Component):
    """Producer: yields start, start+1, … (count of them); with yield_none, a None before each and at the end."""

    start = Int(0, help="The first number.").tag(config=True)
    count = Int(10, help="How many numbers to yield.").tag(config=True)
    yield_none = Bool(False, help="Also yield None (which must send nothing) around every number.").tag(config=True)
    final = Int(-1, help="If >= 0, finish() sends this number with send_msg().").tag(config=True)

    def run(self) -> Iterator[int | None]:
        """Yield each number."""
        for n in range(self.start, self.start + self.count):
            if self.yield_none:
                yield None
            yield n
        if self.yield_none:
            yield None

    def finish(self) -> None:
        """Send the final number, if there is one."""
        if self.final >= 0:
            self.send_msg(self.final)


class Records(Component):
    """Producer: yields {"i": i, "arr": float array of `size` values i, "tags": ["P"]}."""

    count = Int(10, help="How many records.").tag(config=True)
    size = Int(1000, help="Values per array (above 8192 the array travels out of band).").tag(config=True)

    def run(self) -> Iterator[dict]:
        """Yield each record."""
        for i in range(self.count):
            yield {"i": i, "arr": np.full(self.size, float(i)), "tags": ["P"]}


def make_payload(kind: str, i: int, nbytes: int) -> Any:
    """The i-th large payload of a kind: content depends on i, so a swap or a corruption shows."""
    raw = np.random.default_rng(i).integers(0, 256, nbytes, dtype=np.uint8)
    if kind == "ndarray":
        return raw.view(np.float64).reshape(-1, 8) if nbytes % 64 == 0 else raw
    if kind == "bytes":
        return raw.tobytes()
    if kind == "bytearray":
        return bytearray(raw.tobytes())
    if kind == "memoryview":
        return memoryview(bytearray(raw.tobytes()))
    if kind == "memoryview_f8":
        return memoryview(raw.view(np.float64).copy())
    raise ValueError(kind)


def describe(payload: Any) -> dict:
    """Type, size and sha256 of a payload, as JSON."""
    info: dict[str, Any] = {"type": type(payload).__name__}
    if isinstance(payload, np.ndarray):
        info.update(dtype=str(payload.dtype), shape=list(payload.shape))
        data = np.ascontiguousarray(payload).tobytes()
    elif isinstance(payload, memoryview):
        info.update(format=payload.format, shape=list(payload.shape))
        data = payload.tobytes()
    else:
        data = bytes(payload)
    info.update(nbytes=len(data), sha=hashlib.sha256(data).hexdigest())
    return info


class Payloads(Component):
    """Producer: yields `count` large payloads of one kind, bare or inside {"i": i, "data": payload}."""

    kind = Enum(list(PAYLOAD_KINDS), "ndarray", help="What to send.").tag(config=True)
    count = Int(4, help="How many payloads.").tag(config=True)
    nbytes = Int(2 * 1024 * 1024, help="Bytes per payload.").tag(config=True)
    wrap = Bool(False, help="Send {'i': i, 'data': payload} instead of the bare payload.").tag(config=True)

    def run(self) -> Iterator[Any]:
        """Yield each payload."""
        for i in range(self.count):
            payload = make_payload(self.kind, i, self.nbytes)
            yield {"i": i, "data": payload} if self.wrap else payload


# --------------------------------------------------------------------------- stagers


class Scale(Component):
    """Stager: returns msg * factor (the return value is sent on)."""

    factor = Int(2, help="The multiplier.").tag(config=True)

    def run(self, msg: int) -> int:
        """Return the scaled message."""
        return msg * self.factor


class KeepEven(Component):
    """Stager: a filter; returns even messages and None (send nothing) for odd ones."""

    def run(self, msg: int) -> int | None:
        """Keep the even numbers."""
        return msg if msg % 2 == 0 else None


class Repeat(Component):
    """Stager: a generator yielding [msg, k] for k in range(copies)."""

    copies = Int(3, help="Outputs per input.").tag(config=True)

    def run(self, msg: int) -> Iterator[list[int]]:
        """Yield each copy."""
        for k in range(self.copies):
            yield [msg, k]


class SendMany(Component):
    """Stager: calls send_msg([msg, k]) for k in range(times) and returns None."""

    times = Int(3, help="send_msg calls per input.").tag(config=True)

    def run(self, msg: int) -> None:
        """Send each copy."""
        for k in range(self.times):
            self.send_msg([msg, k])


class Route(Component):
    """Stager: sends even messages to the next step `even_step` only, odd ones to `odd_step` only."""

    even_step = Unicode("EVEN", help="Where even messages go.").tag(config=True)
    odd_step = Unicode("ODD", help="Where odd messages go.").tag(config=True)

    def run(self, msg: int) -> None:
        """Route by parity."""
        self.send_msg(msg, self.even_step if msg % 2 == 0 else self.odd_step)


class BadRoute(Component):
    """Stager: returns each message, but sends message `bad_on` to `bad_target` (not a next step)."""

    bad_on = Int(3, help="The message sent to a wrong step name.").tag(config=True)
    bad_target = Unicode("NOWHERE", help="A step name that is not a next step.").tag(config=True)

    def run(self, msg: int) -> int | None:
        """Pass the message on, except the bad one."""
        if msg == self.bad_on:
            self.send_msg(msg, self.bad_target)
            return None
        return msg


class Summer(Component):
    """Stager: sums its messages, sends nothing from run(), and emits the sum from finish()."""

    how = Enum(["send", "yield"], "send", help="How finish() emits the sum.").tag(config=True)

    def init(self) -> None:
        """Start at zero."""
        self.total = 0

    def run(self, msg: int) -> None:
        """Add the message."""
        self.total += msg

    def finish(self) -> Any:
        """Emit the sum."""
        if self.how == "send":
            self.send_msg(self.total)
            return None
        return self._yield_total()

    def _yield_total(self) -> Iterator[int]:
        yield self.total


class Label(Component):
    """Stager: appends f"{step}:{label}:{factor}" to the list message, as init() saw the traits."""

    label = Unicode("default", help="A label.").tag(config=True)
    factor = Int(1, help="A number.").tag(config=True)

    def init(self) -> None:
        """Remember what the traits were when init() ran."""
        self.seen = f"{self.step_name}:{self.label}:{self.factor}"

    def run(self, msg: list) -> list:
        """Append the remembered text."""
        return [*msg, self.seen]


class Wrap(Component):
    """Stager: turns a number into a one-element list."""

    def run(self, msg: int) -> list:
        """Wrap the message."""
        return [msg]


class Jitter(Component):
    """Stager: sleeps 0 to max_ms ms (random per message), then emits the message as `how` says."""

    max_ms = Int(2, help="Longest sleep, in milliseconds.").tag(config=True)
    how = Enum(["return", "yield", "send"], "return", help="How to emit.").tag(config=True)

    def run(self, msg: int) -> Any:
        """Simulate work of random length, then emit."""
        time.sleep(random.uniform(0, self.max_ms / 1000))
        if self.how == "return":
            return msg
        if self.how == "send":
            self.send_msg([msg, 0])
            self.send_msg([msg, 1])
            return None
        return _pair(msg)


def _pair(msg: int) -> Iterator[list[int]]:
    yield [msg, 0]
    yield [msg, 1]


class Mutate(Component):
    """Stager: changes the record it received in place, then reports what it sees."""

    def run(self, msg: dict) -> dict:
        """Overwrite a copy of the array (a received array is read-only), change the dict, and report."""
        msg["arr"] = msg["arr"].copy()
        msg["arr"][:] = -1.0
        msg["arr"] *= 3
        msg["tags"].append("MUT")
        msg["i_seen"] = msg["i"]
        msg["i"] = -1
        return view_of(msg, "MUT")


class Look(Component):
    """Stager: sleeps `delay_ms` (so a mutating sibling runs first), then reports what it sees."""

    delay_ms = Int(1, help="Milliseconds to wait before looking.").tag(config=True)

    def run(self, msg: dict) -> dict:
        """Report the record as received."""
        time.sleep(self.delay_ms / 1000)
        return view_of(msg, "LOOK")


def view_of(msg: dict, branch: str) -> dict:
    """What a branch saw of a record: plain JSON."""
    arr = msg["arr"]
    return {
        "branch": branch,
        "i": msg["i"],
        "i_seen": msg.get("i_seen", msg["i"]),
        "tags": list(msg["tags"]),
        "min": float(arr.min()),
        "max": float(arr.max()),
        "size": int(arr.size),
    }


class ForksOnOne(Component):
    """Stager: on message 1 its run() forks a child that leaves its code by sys.exit(3) or an exception, as a script
    would end; it sends on (message, the child's exit status) after waiting for it, and every other message alone."""

    child = Enum(["exit", "raise"], "exit", help="How the forked child leaves the step's code.").tag(config=True)

    def run(self, msg: int) -> Any:
        """Pass the message on; on 1, with its child's exit status."""
        if msg != 1:
            return msg
        pid = os.fork()
        if pid == 0:
            if self.child == "exit":
                sys.exit(3)
            raise ValueError("the child's own error")
        _, status = os.waitpid(pid, 0)
        return [msg, os.waitstatus_to_exitcode(status)]


class PassThrough(Component):
    """Stager: returns the message unchanged."""

    def run(self, msg: Any) -> Any:
        """Return the message."""
        return msg


# --------------------------------------------------------------------------- consumers and sinks


class Collect(Component):
    """Consumer: writes each message as a JSON line, then a finish line from finish()."""

    path = Unicode(help="The JSON-lines file to append to.").tag(config=True)

    def init(self) -> None:
        """Open the file."""
        self._file: TextIO = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in finish)

    def run(self, msg: Any) -> Any:
        """Write one line."""
        self._file.write(json.dumps(msg) + "\n")
        self._file.flush()

    def finish(self) -> None:
        """Write the finish line and close the file."""
        self._file.write(json.dumps({FINISH_KEY: self.step_name}) + "\n")
        self._file.close()


class CollectAndReturn(Collect):
    """A sink stager (no next steps): collects like Collect, and returns the message (sent nowhere)."""

    def run(self, msg: Any) -> Any:
        """Write one line and return the message."""
        super().run(msg)
        return msg


class CollectAndSend(Collect):
    """A consumer that collects like Collect, but sends message ``send_on`` on, which a step without next steps
    cannot."""

    send_on = Int(-1, help="The message it sends on.").tag(config=True)

    def run(self, msg: Any) -> Any:
        """Write one line, or send the message."""
        if msg == self.send_on:
            self.send_msg(msg)
        super().run(msg)


class Digest(Collect):
    """Consumer: writes describe() of each payload (bare or in {"i": i, "data": payload})."""

    def run(self, msg: Any) -> None:
        """Write the payload's description."""
        if isinstance(msg, dict):
            super().run({"i": msg["i"], **describe(msg["data"])})
        else:
            super().run(describe(msg))
