"""Steps that fail, stall or signal on purpose, for the failure tests (run in pipeline-run subprocesses)."""

from __future__ import annotations

import _thread
import os
import signal
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
from traitlets import Bool, Enum, Float, Int, Unicode

from algorithms.basic import JsonLinesWriter
from pipeline import Component
from tests.process_helpers import wait_for

#: Seconds Hangs waits for its gate at most: a test that never opens it fails, never hangs.
GATE_SECONDS = 30.0


class FailEvery(Component):
    """Raises on every message divisible by ``every`` (0: never), else passes it on."""

    every = Int(0, help="Fail on multiples of this (0: never).").tag(config=True)
    delay = Float(0.0, help="Seconds to sleep per message.").tag(config=True)

    def run(self, msg: int) -> int:
        """Pass the message on, or raise."""
        if self.delay:
            time.sleep(self.delay)
        if self.every and msg % self.every == 0:
            raise ValueError(f"bad message {msg}")
        return msg


class FailsQuoting(FailEvery):
    """Raises as FailEvery does, its error quoting ``text`` (a step's data, as an error may quote it)."""

    text = Unicode("", help="The error's text, before the message's.").tag(config=True)

    def run(self, msg: int) -> int:
        """Pass the message on, or raise."""
        if self.every and msg % self.every == 0:
            raise ValueError(f"{self.text} {msg}")
        return msg


class FailsAtLength(FailEvery):
    """FailEvery whose errors end with ``padding`` characters: lines of nine 'x'."""

    padding = Int(0, help="Characters of lines of 'x' that end each error's message.").tag(config=True)

    def run(self, msg: int) -> int:
        """Pass the message on, or raise."""
        if self.every and msg % self.every == 0:
            raise ValueError(f"bad message {msg}" + "xxxxxxxxx\n" * (self.padding // 10))
        return msg


class FailFirstElsewhere(Component):
    """Raises on every message; its worker thread 0 only once the dead-letter file ``recorded`` holds a failure of
    another worker, so that worker 0's first error is never its step's first."""

    recorded = Unicode(help="The run's dead-letter file.").tag(config=True)

    def run(self, msg: int) -> None:
        """Raise, after another worker's failure if this is worker 0."""
        if threading.current_thread().name.endswith("#0"):
            deadline = time.monotonic() + 20
            while not os.path.getsize(self.recorded) and time.monotonic() < deadline:
                time.sleep(0.01)
        raise ValueError(f"bad message {msg}")


#: What ExitEvery may raise, by name: none is an Exception.
NOT_EXCEPTIONS: dict[str, type[BaseException]] = {kind.__name__: kind for kind in (
    SystemExit, KeyboardInterrupt, BaseException)}


class ExitEvery(FailEvery):
    """FailEvery (configured as it is, ``every`` too) raising what is not an Exception: a SystemExit or such."""

    raises = Enum(list(NOT_EXCEPTIONS), "SystemExit", help="What it raises.").tag(config=True)

    def run(self, msg: int) -> int:
        """Pass the message on, or raise."""
        if self.every and msg % self.every == 0:
            raise NOT_EXCEPTIONS[self.raises](f"bad message {msg}")
        return msg


#: What ReturnsAValue returns, by the name of its type: none is messages.
RETURNED: dict[str, Any] = {type(value).__name__: value for value in (5, "hello", b"hello", {"a": 1, "b": 2})}


class ReturnsAValue(Component):
    """Producer whose run() returns one value (a number, a str, bytes, a dict) instead of being a generator."""

    returns = Enum(list(RETURNED), "int", help="The type of the value it returns.").tag(config=True)

    def run(self) -> Any:
        """Not messages."""
        return RETURNED[self.returns]


class MakesArrays(Component):
    """Stager: turns n into {"n", "small" (16 zeros, in band), "big" (128 KiB of zeros, out of band),
    "earlier_intact" (whether every dict it returned before is as it returned it)}, and keeps each."""

    def init(self) -> None:
        """Nothing returned yet."""
        self.returned: list[dict[str, Any]] = []

    def run(self, msg: int) -> dict[str, Any]:
        """Check what it returned before; return a new dict."""
        intact = all(set(out) == {"n", "small", "big", "earlier_intact"} and not out["small"].any()
                     and not out["big"].any() for out in self.returned)
        out = {"n": msg, "small": np.zeros(16), "big": np.zeros(16384), "earlier_intact": intact}
        self.returned.append(out)
        return out


class DeepOutput(Component):
    """Stager: returns {"n", "array", "nested"} with ``depth`` dicts nested in "nested" (600: deeper than a pickle
    may go in a worker thread's stack)."""

    depth = Int(600, min=0, help="Dicts nested in each output.").tag(config=True)

    def run(self, msg: int) -> dict[str, Any]:
        """Return the deep message."""
        nested: Any = 0
        for _ in range(self.depth):
            nested = {"deeper": nested}
        return {"n": msg, "array": np.zeros(4), "nested": nested}


class ChangesThenFails(Component):
    """Stager: changes the dict it receives (a key added, its small array written, its big one tried), then raises
    on every n divisible by ``every``, else returns {"n", "earlier_intact", "big_read_only"}."""

    every = Int(5, min=1, help="Fail on multiples of this.").tag(config=True)

    def run(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Change the message, then fail or report."""
        msg["added"] = True
        msg["small"] += 1
        try:
            msg["big"] += 1
            read_only = False
        except ValueError:
            read_only = True
        if msg["n"] % self.every == 0:
            raise ValueError(f"bad message {msg['n']}")
        return {"n": msg["n"], "earlier_intact": msg["earlier_intact"], "big_read_only": read_only}


class SplitsInTwo(Component):
    """Stager: yields {"n": 2 * msg, "small"} and {"n": 2 * msg + 1, "small"}, "small" 4 values of its n."""

    def run(self, msg: int) -> Iterator[dict[str, Any]]:
        """Both halves of one message."""
        for n in (2 * msg, 2 * msg + 1):
            yield {"n": n, "small": np.full(4, n)}


class ManyFor(Component):
    """Stager: yields ``many`` outputs [msg, k] for msg == ``at``, else one, [msg, 0]."""

    at = Int(-1, help="The message that makes many outputs.").tag(config=True)
    many = Int(5000, help="How many.").tag(config=True)

    def run(self, msg: int) -> Iterator[list[int]]:
        """Yield this message's outputs."""
        for k in range(self.many if msg == self.at else 1):
            yield [msg, k]


class HoldsUpFirst(Component):
    """Stager: yields ``copies`` outputs of each message; message 0 never returns (its worker is left behind), and on
    message ``at`` it sends its own process SIGINT (the run stops, and cannot drain)."""

    at = Int(10, help="The message that sends SIGINT.").tag(config=True)
    copies = Int(3, help="Outputs per message.").tag(config=True)

    def run(self, msg: int) -> Iterator[int]:
        """Yield this message's outputs, or block for ever on message 0."""
        if msg == 0:
            threading.Event().wait()
        if msg == self.at:
            os.kill(os.getpid(), signal.SIGINT)
        yield from [msg] * self.copies


class StuckOnFirst(Component):
    """Consumer: on its first message, whatever it is, sends its own process SIGINT and never returns."""

    def run(self, msg: Any) -> None:
        """Stop the run, then block for ever."""
        os.kill(os.getpid(), signal.SIGINT)
        threading.Event().wait()


class ReusesItsOutput(Component):
    """Stager: returns the same dict every time, refilled with the n of its input and 4 values of it (as a step that
    keeps one output object does)."""

    def init(self) -> None:
        """The one dict it returns."""
        self.out: dict[str, Any] = {"n": -1, "small": np.zeros(4, dtype=int)}

    def run(self, msg: dict[str, Any]) -> dict[str, Any]:
        """Refill the dict with this message's n, and return it."""
        self.out["n"] = msg["n"]
        self.out["small"][:] = msg["n"]
        return self.out


class FailsOnMultiples(Component):
    """Stager: raises on every dict whose n is divisible by ``every``, else returns its n."""

    every = Int(5, min=1, help="Fail on multiples of this.").tag(config=True)

    def run(self, msg: dict[str, Any]) -> int:
        """Fail or pass the number on."""
        if msg["n"] % self.every == 0:
            raise ValueError(f"bad message {msg['n']}")
        return msg["n"]


class FailFrom(Component):
    """Raises on every message from ``first`` on, else passes it on."""

    first = Int(0, help="The first message that fails.").tag(config=True)

    def run(self, msg: int) -> int:
        """Pass the message on, or raise."""
        if msg >= self.first:
            raise ValueError(f"bad message {msg}")
        return msg


class FailsWithLongText(Component):
    """Raises on every message, with a message of ``chars`` characters (a step that puts its input in its error)."""

    chars = Int(1_000_000, min=1, help="Characters of each error's message.").tag(config=True)

    def run(self, msg: int) -> int:
        """Fail, quoting a long text."""
        raise ValueError(f"bad message {msg}: " + "x" * self.chars)


class InitAlwaysFails(Component):
    """Every instance's init() raises: one bug, met by each worker."""

    def init(self) -> None:
        """Fail."""
        raise RuntimeError("cannot open the calibration table")

    def run(self, msg: int) -> int:
        """Never called."""
        return msg


class InitFailsButOnce(Component):
    """The first instance's init() (the one that makes ``token``) starts; every other one's raises: a resource that
    one worker holds, met by the others."""

    token = Unicode("", help="A file that the first init() creates; it must not exist before the run.").tag(config=True)

    def init(self) -> None:
        """Take the token, or fail."""
        try:
            os.close(os.open(self.token, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            raise RuntimeError("the calibration table is held by another worker") from None

    def run(self, msg: int) -> int:
        """Pass the message on."""
        return msg


class FailingInit(Component):
    """The first instance's init() raises; the others pass messages on and mark finish() in a file."""

    marker = os.environ.get("FAILURE_TEST_MARKER", "")
    _lock = threading.Lock()
    _made = 0

    def init(self) -> None:
        """Fail in the first worker only."""
        with FailingInit._lock:
            FailingInit._made += 1
            first = FailingInit._made == 1
        if first:
            raise RuntimeError("cannot open the calibration table")

    def run(self, msg: Any) -> Any:
        """Pass the message on."""
        return msg

    def finish(self) -> None:
        """Leave a trace that finish() ran."""
        with open(self.marker, "a", encoding="utf-8") as marker:
            marker.write("finished\n")


class FailingFinish(Component):
    """Passes messages on; finish() raises."""

    def run(self, msg: Any) -> Any:
        """Pass the message on."""
        return msg

    def finish(self) -> None:
        """Fail."""
        raise OSError("disk full while flushing")


class FailingProducer(Component):
    """Yields 0 .. after-1, then raises."""

    after = Int(5, help="Messages before the failure.").tag(config=True)

    def run(self) -> Iterator[int]:
        """Yield, then fail."""
        yield from range(self.after)
        raise ConnectionError("the source went away")


class SignalSelf(Component):
    """Passes messages on, sending its own process ``signal`` on message ``at``."""

    at = Int(10, help="The message that triggers the signal.").tag(config=True)
    signal = Int(2, help="The signal number (2: SIGINT, 15: SIGTERM; 0: _thread.interrupt_main(), no signal).").tag(
        config=True)
    delay = Float(0.002, help="Seconds per message: a slow step.").tag(config=True)
    block = Int(0, help="1: after signalling, block forever in run() (a stuck step).").tag(config=True)

    def run(self, msg: int) -> int:
        """Pass the message on; signal and maybe block on message ``at``."""
        time.sleep(self.delay)
        if msg == self.at:
            if self.signal:
                os.kill(os.getpid(), self.signal)
            else:  # as an IDE or a kernel may interrupt a program: the main thread's flag, and no signal
                _thread.interrupt_main()
            if self.block:
                threading.Event().wait()
        return msg


class ReplacesFile(SignalSelf):
    """SignalSelf that first puts a file of one line in the place of ``path`` on message ``at`` (-1: in finish(),
    without a signal), as a replay into its own file puts its records in its place while another replay reads it."""

    path = Unicode(help="The file replaced.").tag(config=True)

    def run(self, msg: int) -> int:
        """Replace the file on message ``at``, then go on as SignalSelf."""
        if msg == self.at:
            self.replace()
        return super().run(msg)

    def finish(self) -> None:
        """Replace the file if ``at`` is -1."""
        if self.at == -1:
            self.replace()

    def replace(self) -> None:
        """Put another file in the place of ``path``."""
        with open(f"{self.path}.other", "w", encoding="utf-8") as other:
            other.write("another replay's records\n")
        os.replace(f"{self.path}.other", self.path)


class CleansUpOnCtrlC(Component):
    """Passes messages on; on message ``at`` it sends its own process SIGINT and, as a step that holds a resource
    would, cleans up in ``except KeyboardInterrupt:`` (it prints CLEANED) and raises it on."""

    at = Int(3, help="The message during which Ctrl+C comes.").tag(config=True)

    def run(self, msg: int) -> int:
        """Pass the message on; on ``at``, clean up after the Ctrl+C that comes meanwhile."""
        try:
            if msg == self.at:
                os.kill(os.getpid(), signal.SIGINT)
                threading.Event().wait(10)  # the signal's handler runs here
        except KeyboardInterrupt:
            print("CLEANED", msg, flush=True)
            raise
        return msg


class Hangs(Component):
    """Passes messages on, but hangs in init() (``at`` -1) or in run() on message ``at``, once it has created the file
    ``marker``: for ever, or until the file ``gate`` exists (GATE_SECONDS at most; a worker process's too, where a
    test's events do not reach)."""

    at = Int(-1, help="The message to hang on (-1: hang in init()).").tag(config=True)
    marker = Unicode("", help="The file it creates as it starts to hang.").tag(config=True)
    hold_gil = Bool(False, help="Hang in C code that never gives the GIL back, rather than waiting.").tag(config=True)
    gate = Unicode("", help="The file whose creation ends the hang (empty: none does).").tag(config=True)

    def init(self) -> None:
        """Hang if told to hang here."""
        if self.at < 0:
            self._hang()

    def run(self, msg: int) -> int:
        """Pass the message on; hang on message ``at``."""
        if msg == self.at:
            self._hang()
        return msg

    def _hang(self) -> None:
        with open(self.marker, "a", encoding="utf-8"):
            pass
        if self.hold_gil:
            sum(range(10**15))  # one C call over a range: hours without giving the GIL back
        if self.gate:
            wait_for(lambda: os.path.exists(self.gate), GATE_SECONDS, f"the file {self.gate}")
        else:
            threading.Event().wait()


class MarkedWriter(JsonLinesWriter):
    """A JsonLinesWriter whose finish() writes a last line {"finished": true}."""

    def finish(self) -> None:
        """Mark the end, then close."""
        self.run({"finished": True})
        super().finish()


#: Set by WaitsForGo when its run() starts waiting; set GO to let it go on.
STARTED = threading.Event()
GO = threading.Event()


class WaitsForGo(Component):
    """Passes messages on; on message ``at`` it sets STARTED and waits for GO (at most ``patience`` seconds)."""

    at = Int(3, help="The message to wait on.").tag(config=True)
    patience = Float(20.0, help="Seconds to wait for GO at most.").tag(config=True)

    def run(self, msg: int) -> int:
        """Pass the message on, waiting on message ``at``."""
        if msg == self.at:
            STARTED.set()
            GO.wait(self.patience)
        return msg


def step_sigint_handler(signum: int, frame: object) -> None:
    """The SIGINT handler SetsSigint installs (a library's own, say)."""


class SetsSigint(Component):
    """Passes messages on; its init() installs a SIGINT handler of its own, as some libraries do."""

    def init(self) -> None:
        """Install the handler."""
        signal.signal(signal.SIGINT, step_sigint_handler)

    def run(self, msg: int) -> int:
        """Pass the message on."""
        return msg


class AssertsBelow(Component):
    """Passes messages on, asserting that each is below ``limit`` (``python -O`` drops the assert)."""

    limit = Int(5, help="The first message that fails the assert.").tag(config=True)

    def run(self, msg: int) -> int:
        """Pass the message on, after the assert."""
        assert msg < self.limit, f"{msg} is not below {self.limit}"
        return msg
