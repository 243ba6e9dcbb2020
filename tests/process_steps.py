"""Steps for the worker-process tests: they leave traces in files, since a worker process shares no memory
with the test, and die, stop or block on purpose on a chosen message."""

from __future__ import annotations

import ctypes
import errno
import glob
import json
import logging
import os
import signal
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from traitlets import Bool, Enum, Float, Int, List, Unicode

from pipeline import Component


def times(factor: int) -> type[Component]:
    """A stager class that multiplies each message by ``factor``, made by a function: its own name is "Times"
    whatever the module calls it."""

    class Times(Component):
        def run(self, msg: int) -> int:
            """The message times the factor."""
            return msg * factor

    return Times


Tripled = times(3)
#: Another class made so, of the same own name: only the name the config gives tells them apart.
Twice = times(2)


#: What a Trigger does on its message: nothing, leave a marker only, SIGKILL its own process, block (a long run()),
#: block in a C call that holds the GIL, or pass it on and never read its work again ("deaf": a stuck worker).
ACTIONS = ("none", "mark", "kill", "exit0", "hold", "gil", "deaf")


def stop_reading(thread: threading.Thread) -> None:
    """Make ``thread`` (a worker thread of this process) block for ever the next time it waits for work: it still
    holds what its router hands it, and runs none of it, as a worker stuck in the framework's code would."""
    from pipeline.engine import sockets

    real = sockets.recv

    def recv(socket: Any, flags: int = 0) -> Any:
        if threading.current_thread() is thread:
            threading.Event().wait()
        return real(socket, flags)

    sockets.recv = recv


def claim(path: str) -> bool:
    """Create the file ``path`` holding this process's pid; False if it existed (one process of all wins)."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    except FileExistsError:
        return False
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
    finally:
        os.close(fd)
    return True


def append_line(path: str, text: str) -> None:
    """Append one line to ``path`` at once (O_APPEND: lines of several processes never mix)."""
    fd = os.open(path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600)
    try:
        os.write(fd, (text + "\n").encode())
    finally:
        os.close(fd)


class PidRecorder(Component):
    """Appends "pid thread" to ``pid_file`` in init(), so a test knows the processes and threads that ran it."""

    pid_file = Unicode("", help="File to append this worker's pid and thread to ('' : none).").tag(config=True)

    def init(self) -> None:
        """Say who runs this instance."""
        if self.pid_file:
            append_line(self.pid_file, f"{os.getpid()} {threading.get_ident()}")


class PassOn(PidRecorder):
    """Stager: passes messages on unchanged."""

    def run(self, msg: Any) -> Any:
        """Return the message."""
        return msg


class Trigger(PidRecorder):
    """Passes messages on (after ``delay`` seconds each); on message ``at`` it does ``action``.

    With ``once`` (the default) only the first process that takes message ``at`` acts (the marker
    file is the token), so a redelivered message goes through the replacement; without, every one does.
    ``at`` = -1 acts on every message.
    """

    at = Int(-1, help="The message to act on (-1: every message).").tag(config=True)
    also = List(Int(), default_value=[], help="More messages to act on.").tag(config=True)
    action = Enum(list(ACTIONS), "none", help="What to do on that message.").tag(config=True)
    marker = Unicode("", help="The file created when the step acts (with once: the token).").tag(config=True)
    once = Bool(True, help="Act in the first process only (else in every process that takes the message).").tag(
        config=True)
    delay = Float(0.0, help="Seconds of work per message.").tag(config=True)
    hold = Float(20.0, help="Seconds a 'hold' blocks in run().").tag(config=True)

    def run(self, msg: Any) -> Any:
        """Pass the message on, acting on message ``at``."""
        if self.delay:
            time.sleep(self.delay)
        if self.action != "none" and (self.at in (-1, msg) or msg in self.also) and self._acts():
            if self.action == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            elif self.action == "exit0":
                os._exit(0)  # a clean status, mid-stream: a death all the same
            elif self.action == "hold":
                threading.Event().wait(self.hold)  # a long run(): the test stops or kills the process meanwhile
            elif self.action == "gil":
                # A C call that holds the GIL (ctypes.PyDLL does not release it): no thread of the process runs.
                ctypes.PyDLL(None).usleep(int(self.hold * 1e6))
            elif self.action == "deaf":
                stop_reading(threading.current_thread())
        return msg

    def _acts(self) -> bool:
        if self.once:
            return claim(self.marker)
        if self.marker:
            append_line(self.marker, str(os.getpid()))
        return True


class TriggerThenFinish(Trigger):
    """Trigger with a finish() of its own, which sends one message more: "finished"."""

    def finish(self) -> None:
        """Send the last word."""
        self.send_msg("finished")


class FailsThenDies(Component):
    """Passes messages on (after ``delay`` seconds each), but raises on message ``fails`` and kills its process on
    message ``dies`` (once: the marker file is the token), ``pause`` seconds into its run(): by default before the
    answer of the failed message left the process."""

    fails = Int(2, help="The message that raises.").tag(config=True)
    dies = Int(3, help="The message whose first run kills its process.").tag(config=True)
    marker = Unicode("", help="The file created when it kills its process.").tag(config=True)
    delay = Float(0.0, help="Seconds of work per message.").tag(config=True)
    pause = Float(0.0, help="Seconds message ``dies`` runs before it kills its process.").tag(config=True)

    def run(self, msg: int) -> int:
        """Pass the message on, or raise, or die."""
        if self.delay:
            time.sleep(self.delay)
        if msg == self.fails:
            raise ValueError(f"bad message {msg}")
        if msg == self.dies and claim(self.marker):
            if self.pause:
                time.sleep(self.pause)  # the other process runs the messages after this one meanwhile
            os.kill(os.getpid(), signal.SIGKILL)
        return msg


class AppendValues(Trigger):
    """Consumer: appends each message to ``path`` as a JSON line, before acting like a Trigger on it."""

    path = Unicode(help="The file to append to.").tag(config=True)

    def run(self, msg: Any) -> Any:
        """Write the message, then act on it."""
        append_line(self.path, json.dumps(msg))
        return super().run(msg)


class OneWorkerValues(AppendValues):
    """AppendValues that says ``one_worker``, as a writer whose init() replaces its file would."""

    one_worker = True


class Announce(Component):
    """Stager: sends "init STEP" from init(), passes messages on doubled, yields "finish STEP" from finish()."""

    def init(self) -> None:
        """Announce the start."""
        self.send_msg(f"init {self.step_name}")

    def run(self, msg: int) -> int:
        """Double the message."""
        return 2 * msg

    def finish(self) -> Iterator[str]:
        """Announce the end."""
        yield f"finish {self.step_name}"


class Warns(Component):
    """Stager: passes messages on, logging a warning for message ``warn_on``."""

    warn_on = Int(0, help="The message that is logged as a warning.").tag(config=True)
    library = Unicode("", help="Log through this logger, as a library the step uses would (ctapipe's components); "
                               "empty: the step's own.").tag(config=True)

    def run(self, msg: int) -> int:
        """Maybe warn, pass on."""
        if msg == self.warn_on:
            log = logging.getLogger(self.library) if self.library else self.log
            log.warning("odd message %d in process %d", msg, os.getpid())
        return msg


class BigArrays(Component):
    """Producer (shardable): float64 arrays (1 MiB by default), array i filled with i."""

    shardable = True

    count = Int(10, help="How many arrays.").tag(config=True)
    values = Int(131072, min=1, help="float64 values in each array.").tag(config=True)

    def run(self) -> Iterator[np.ndarray]:
        """Yield each array of its shard."""
        for i in range(self.shard, self.count, self.n_shards):
            yield np.full(self.values, float(i))


class DoubleArray(Trigger):
    """Stager: returns its array doubled, acting like a Trigger on the array whose first value is ``at``."""

    unlink_rings = Bool(False, help="init() removes the files of the shared-memory rings its process made, before "
                        "the router could map them (as an operator's rm or another user's sweep could).").tag(
        config=True)

    keep = Bool(False, help="Keep every array received, and check in finish() that none changed since.").tag(
        config=True)

    shm_full = Bool(False, help="init() makes shared memory full for this process from then on: its rings, made "
                    "already, can reserve no more than they have.").tag(config=True)

    def init(self) -> None:
        """Remove the process's ring files, or fill its shared memory, if asked."""
        self.kept: list[tuple[float, np.ndarray]] = []  # each array kept, and the value it came filled with
        if self.shm_full:
            def full(fd: int, offset: int, length: int) -> None:
                raise OSError(errno.ENOSPC, "No space left on device")

            os.posix_fallocate = full
        if self.unlink_rings:
            with open("/proc/self/maps", encoding="utf-8") as maps:
                for path in {line.split()[-1] for line in maps if "/dev/shm/pipeline-ring-" in line}:
                    os.unlink(path)

    def run(self, msg: Any) -> Any:
        """Double the array (after acting on array ``at``)."""
        super().run(int(msg[0]))
        if self.keep:
            self.kept.append((float(msg[0]), msg))
        return msg * 2

    def finish(self) -> None:
        """Fail if an array kept has changed since it came (each came filled with one value)."""
        damaged = [value for value, kept in self.kept if not (kept == value).all()]
        if damaged:
            raise RuntimeError(f"arrays kept since they came have changed: {damaged}")


class ArraySums(Component):
    """Consumer: appends each array's first value, whether it arrived read-only, whether its every value is the
    first one, and its size, to ``path`` as a JSON line."""

    path = Unicode(help="The file to append to.").tag(config=True)
    keep = Bool(False, help="Keep every array received; finish() appends how many changed since they came.").tag(
        config=True)

    def init(self) -> None:
        """Nothing kept yet."""
        self.kept: list[tuple[float, np.ndarray]] = []  # each array kept, and the value it came filled with

    def run(self, msg: np.ndarray) -> None:
        """Record the array."""
        append_line(self.path, json.dumps({"value": float(msg[0]), "read_only": not msg.flags.writeable,
                                           "whole": bool((msg == msg[0]).all()), "size": msg.size}))
        if self.keep:
            self.kept.append((float(msg[0]), msg))

    def finish(self) -> None:
        """With ``keep``: append the count of kept arrays that changed since they came."""
        if self.keep:
            damaged = sum(1 for value, kept in self.kept if not (kept == value).all())
            append_line(self.path + ".kept", json.dumps({"kept": len(self.kept), "damaged": damaged}))


class Shards(Component):
    """A shardable producer: yields every n_shards-th number of 0 .. count-1 from its shard's own, ``delay``
    seconds each; on number ``at`` (once, the marker file the token; without ``once``, every time) it kills its
    process or raises."""

    shardable = True
    count = Int(100, help="How many numbers in all shards.").tag(config=True)
    at = Int(-1, help="The number to act on (-1: none).").tag(config=True)
    action = Enum(["kill", "raise"], "kill", help="What to do on that number.").tag(config=True)
    marker = Unicode("", help="The file created when it acts.").tag(config=True)
    delay = Float(0.0, help="Seconds per number.").tag(config=True)
    greeting = Int(0, help="How many messages init() sends: -1, -2, ...").tag(config=True)
    burst = Int(0, help="How many times each number is also passed to send_msg() before it is yielded.").tag(
        config=True)
    once = Bool(True, help="Act in the first process only (else in every process that makes number at).").tag(
        config=True)
    then_at = Int(-1, help="A second number to act on, once (its token: the marker file + '-then').").tag(config=True)

    def init(self) -> None:
        """Send the greeting (each worker process's init() does)."""
        for k in range(self.greeting):
            self.send_msg(-1 - k)

    def run(self) -> Iterator[int]:
        """Yield this shard's numbers."""
        for number in range(self.shard, self.count, self.n_shards):
            if self.delay:
                time.sleep(self.delay)
            acts = number == self.at and (not self.once or claim(self.marker))
            if acts or (number == self.then_at and claim(self.marker + "-then")):
                if self.action == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                raise ValueError(f"bad number {number}")
            for _ in range(self.burst):
                self.send_msg(number)
            yield number


class ShardsChosenInInit(Shards):
    """Shards whose numbers are chosen in init(), where no shard is running yet."""

    def init(self) -> None:
        """Choose this shard's numbers (too early: the shard is known in run() only)."""
        self.numbers = range(self.shard, self.count, self.n_shards)

    def run(self) -> Iterator[int]:
        """Yield the numbers init() chose."""
        yield from self.numbers


class MostlyToAll(Component):
    """Stager: each number to every next step, but one in ``every`` to step ``alone`` only and another one in
    ``every`` as a numpy array of it (an out-of-band buffer): RESULTs its router takes apart, among others it
    passes on as they came (engine.router)."""

    every = Int(25, min=3, help="One number in this many goes to ``alone`` only, another becomes an array.").tag(
        config=True)
    alone = Unicode(help="The next step that gets the numbers sent to one step.").tag(config=True)

    def run(self, msg: int) -> Any:
        """Return the number, or send it to ``alone``, or return it as an array."""
        if msg % self.every == 1:
            self.send_msg(msg, self.alone)
            return None
        if msg % self.every == 2:
            return np.full(20_000, msg)
        return msg


class NumbersAndArrays(Component):
    """Stager or consumer: appends each number it gets, or an array's first value, to ``path``, a JSON line each."""

    path = Unicode(help="The file to append to.").tag(config=True)

    def run(self, msg: Any) -> None:
        """Record the message."""
        append_line(self.path, json.dumps(int(msg) if isinstance(msg, int) else ["array", int(msg[0])]))


class InitSends(Component):
    """Stager: its init() sends ``many`` messages ("init"), then takes ``pause`` seconds more; run() passes each
    message on."""

    many = Int(0, help="How many messages init() sends.").tag(config=True)
    pause = Float(0.0, help="Seconds init() takes after its sends.").tag(config=True)

    def init(self) -> None:
        """Send, then be slow to return."""
        for _ in range(self.many):
            self.send_msg("init")
        time.sleep(self.pause)

    def run(self, msg: Any) -> Any:
        """Pass the message on."""
        return msg


class KillsItsProcessOn(Component):
    """Stager: each message that ends in ``digit`` kills its worker process, every time (a poison message)."""

    digit = Int(7, help="The last digit of the messages that kill.").tag(config=True)

    def run(self, msg: int) -> int:
        """Pass the message on, or kill the process."""
        if msg % 10 == self.digit:
            os.kill(os.getpid(), signal.SIGKILL)
        return msg


class CountsSpecFiles(Component):
    """Consumer in the run's process: the most worker-process spec files it saw in the run's private directory at
    once, written to ``path`` by finish()."""

    path = Unicode(help="Where finish() writes the count.").tag(config=True)

    def init(self) -> None:
        """Nothing seen yet."""
        self.most = 0

    def run(self, msg: int) -> None:
        """Count the spec files now."""
        pattern = f"{tempfile.gettempdir()}/pipeline-{os.getpid()}-*/spec-*"
        self.most = max(self.most, len(glob.glob(pattern)))

    def finish(self) -> None:
        """Write the count."""
        Path(self.path).write_text(str(self.most), encoding="utf-8")
