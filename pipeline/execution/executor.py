"""How a step's code runs: the contract that every runner and every kind of worker share, written once.

- ``init()`` runs once, before the first message. Its return value is never sent (ctapipe's steps end
  ``init()`` with ``return True``); ``False``, exactly, means the step could not start: the run stops
  before any message is processed and exits 1 (what still reaches the step, from a ``finish()``, is not run:
  recorded as for a halted step). What it passes to ``send_msg()`` goes on, as does what
  it yields if it is a generator.
- ``run(msg)``: a stager's returned value is its output (``None``: the message is filtered out); a
  generator's values are its outputs; ``send_msg()`` sends too. A consumer's returned values go
  nowhere (a generator still runs to its end). A producer's ``run()`` is a generator: each value it
  yields (but ``None``) is a message, and so is each one it passes to ``send_msg()``.
- ``finish()`` runs once, after the last message. Like ``init()``, its return value is never sent;
  what it yields or passes to ``send_msg()`` is.
- A message's outputs are collected while its code runs and handed on once that code has returned:
  all of them, or none if it raised. Past OUTPUT_CHUNK_BYTES or OUTPUT_CHUNK_COUNT (engine.flow) of them, the
  ones collected so far are handed on at once, as a chunk, and the code goes on: memory stays bounded
  however many outputs one input has. A message that raises after a chunk went on is recorded with the
  number of its outputs *delivered*; sent again (a replay of its dead letter, or after its worker process
  died), its first ``delivered`` outputs are dropped, so none is lost or duplicated, provided the step
  yields the same outputs in the same order for the same input.
- An ``Exception`` in ``run()`` fails that message (the run's failure policy counts it, logs it,
  writes its dead letter and stops or goes on by the step's ``on_error``). An exception in
  ``init()``, ``finish()`` or a producer's generator fails the step (exit 1); so does any other
  ``BaseException`` (``SystemExit``, ``KeyboardInterrupt``) in a step's code, which then halts the
  step: it never ends a thread of the engine. Raised by ``run()``, it fails its message too, as an
  ``Exception`` does (counted, logged once, its dead letter written, so a replay runs it after the fix).
  Ctrl+C (or a SIGTERM handler's exception) in a sequential run from the Python API is not the step's:
  the step's code runs in the calling thread, where the run wraps the signal handlers so that what they
  raise comes as ``Signalled`` and leaves ``Pipeline.run()`` as itself, as in the other modes.
- ``send_msg()`` may be called from any thread while the step's code runs: the output belongs to
  the message in progress (outputs from threads other than the one running the code go on with that
  thread's next chunk, or at the end; either way cut in chunks of CHUNK_COUNT, the last one committed with
  the call's end). Called when no code of the step runs, it raises ``RoutingError`` and the step fails: an
  output is never refused in silence.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from enum import IntEnum
from time import perf_counter
from types import GeneratorType
from typing import Any, Protocol

from pipeline.component import Component, set_share
from pipeline.config.model import StepConfig
from pipeline.console.humanize import counted
from pipeline.errors import RoutingError, StepFailed
from pipeline.execution.report import StepCounts
from pipeline.failures.describe import failure_line, failure_of_run, message_words
from pipeline.message import (
    Buffer,
    Copied,
    Encoded,
    MessageError,
    Resume,
    UnreadableMessage,
    adopt_message,
    copy_message,
    decode,
    encode,
)

log = logging.getLogger("pipeline.failures")

#: Outputs of one call handed on as a chunk once they reach this many bytes or outputs (the values of
#: engine.flow.OUTPUT_CHUNK_BYTES and OUTPUT_CHUNK_COUNT, which a test holds equal: execution sits below engine).
CHUNK_BYTES = 16 * 1024 * 1024
CHUNK_COUNT = 4096

#: The outputs of one call of a step's code: each message, encoded (or copied, for a step of the same thread, see
#: Sink.copies), and its target (None: every next step).
Outputs = list[tuple[Encoded | Copied, "str | None"]]

#: What a producer's run() may not return although it iterates: its characters, bytes or keys would each be a
#: message.
ONE_VALUE = (str, bytes, bytearray, Mapping)

#: The input "sequence number" of outputs that belong to no input: those of init() and finish().
UNORDERED = 2**64 - 1


class Interrupted(BaseException):
    """The engine stops the step's code where it waits inside the framework (the run is aborted): not the step's
    failure, and no ``except Exception`` of the step's code catches it."""


class Signalled(BaseException):
    """What a signal handler raised where a step's code runs in the calling thread (a sequential run from the Python
    API: Ctrl+C's KeyboardInterrupt, a SIGTERM handler's SystemExit), carried as ``error``: not the step's failure,
    ``Pipeline.run()`` raises ``error`` as the other modes do. A KeyboardInterrupt the step's code raises itself is
    its failure. Made by ``signalled``, it is of the handler's exception's type too, so that a step's own ``except
    KeyboardInterrupt:`` still cleans up (and raises it on)."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(error)
        self.error = error


def signalled(error: BaseException) -> Signalled:
    """``error``, raised by a signal handler, as a Signalled that is of its type too (a plain Signalled for a type
    that cannot be a base beside it)."""
    kind = type(error)
    try:
        carrier = type(f"Signalled{kind.__name__}", (Signalled, kind), {})
    except TypeError:
        carrier = Signalled
    return carrier(error)


#: What the step's code raises that is not its failure: it leaves the executor.
NOT_THE_STEPS = (Interrupted, Signalled)


#: What a worker marks on its busy board while its finish() runs (no message is that large): a keeper then sees
#: it at work, not idle with a FINISH it never read.
FINISHING = 2**64 - 2


class Outcome(IntEnum):
    """What became of one input."""

    DONE = 0  # run() returned
    FAILED = 1  # run() raised
    NOT_RUN = 2  # the step had stopped after a failure: the input was not started
    PARTIAL = 3  # a chunk of its outputs, handed on while its run() goes on (its outcome comes later)


class Policy(Protocol):
    """Where failures go: the run's FailurePolicy, or (in a worker process) the step's router."""

    halted: set[str]

    def lifecycle_failed(self, step: str, worker: int, what: str, error: BaseException) -> str:
        """Record an error of init(), finish() or a producer (the run fails); its one-line form."""
        ...

    def message_failed(self, step: StepConfig, worker: int, seq: int | None, error: BaseException,
                       message: Encoded | None, delivered: int = 0, fatal: bool = False) -> None:
        """Record a message whose run() raised after ``delivered`` of its outputs went on; ``fatal`` (a SystemExit or
        such, not an Exception): the step fails with it and halts. ``seq`` None: a message of no input, after fused
        steps (what an init() or a finish() sent)."""
        ...

    def not_run(self, step: StepConfig, seq: int | None, message: Encoded, delivered: int = 0) -> None:
        """Record a message that a halted step (or one whose init() failed) did not start (``delivered`` of its outputs
        went on in a process that ran it in part, then died: a replay skips them); ``seq``: as in message_failed."""
        ...

    def halt(self, step: str, reason: str) -> None:
        """Stop the run; ``step`` starts no further message."""
        ...


class Sink(Protocol):
    """Where a step's committed outputs go (an engine outlet, or the sequential runner's deliveries).

    Its ``lock`` is held except while the step's code runs (engine.outlets' Flusher takes it then). With
    ``copies``, the outputs go to steps of the same thread, which run them there: they are copied, not pickled
    (message.copy_message). With ``adopts`` too, those steps run each output before the step's code runs again:
    what its run() returns is copied once (message.adopt_message).
    """

    lock: threading.Lock
    oldest: float
    answers_router: bool
    copies: bool
    adopts: bool

    def commit(self, seq: int, outputs: Outputs, seconds: float = 0.0) -> None:
        """The code for input ``seq`` returned these outputs after ``seconds``."""
        ...

    def partial(self, seq: int, outputs: Outputs) -> None:
        """A chunk of the outputs of input ``seq``, whose code goes on: hand them on now (this may wait, as a
        full next step makes a send wait)."""
        ...

    def failed(self, seq: int, outcome: Outcome = Outcome.FAILED, seconds: float = 0.0) -> None:
        """Input ``seq`` has no outputs: its run() raised, or it was not run."""
        ...

    def flush_if_due(self) -> None:
        """Send what has waited long enough."""
        ...

    def produced(self, seconds: float) -> None:
        """A producer's message was committed after ``seconds`` in its generator."""
        ...

    def unsendable(self, made: int) -> int | None:
        """A value the producer yielded cannot be pickled, ``made`` messages after its first: the number its failure
        goes by, or None if it was counted already (a shard's, by a process that died after it)."""
        ...


class Discard:
    """The sink of a step whose outputs go nowhere (a consumer in the run's process, or none attached yet)."""

    oldest = 0.0
    answers_router = False
    copies = False
    adopts = False

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()  # held but while the step's code runs, as every sink's

    def commit(self, seq: int, outputs: Outputs, seconds: float = 0.0) -> None:
        """Nothing to send."""

    def partial(self, seq: int, outputs: Outputs) -> None:
        """Nothing to send."""

    def failed(self, seq: int, outcome: Outcome = Outcome.FAILED, seconds: float = 0.0) -> None:
        """Nothing to answer."""

    def flush_if_due(self) -> None:
        """Nothing waits."""

    def produced(self, seconds: float) -> None:
        """Nothing to send."""

    def unsendable(self, made: int) -> int | None:
        """Its number: the messages made before it."""
        return made


class Collector:
    """The emitter installed in a Component: encodes (or copies, see ``prepare``) each output and keeps it until the
    call ends, or until a chunk's worth is collected (then ``release`` hands them on while the call goes on).

    The thread running the step's code sends without a lock; another thread (one the step started)
    may send while that code runs, and is refused once it has returned. Only the thread running the
    code releases chunks (it alone takes the list another thread appends to under the lock): what
    other threads send goes on with its next chunk, or at the end, cut in chunks of at most CHUNK_COUNT
    however much they sent (``hand_on``): no RESULT holds more (engine.flow.MAX_RESULT_OUTPUTS).
    """

    def __init__(self, step_name: str) -> None:
        self.step_name = step_name
        self.owner = threading.get_ident()
        self.pending: Outputs = []
        self.nbytes = 0  # the bytes of ``pending``
        #: What an output becomes while it waits: its pickle, or a copy for steps of this thread (Sink.copies).
        self.prepare: Callable[[Any], Encoded | Copied] = encode
        #: The same for what the step's run() returned, which its code cannot change any more (message.adopt_message).
        self.adopt: Callable[[Any], Encoded | Copied] = encode
        self.active = False  # the step's code is running: other threads may send
        self.refused: str | None = None  # the first send refused because no code of the step ran
        self.seq = UNORDERED  # the input whose outputs these are
        self.skip = 0  # outputs of this call still to drop: the next steps had them before (a replay)
        self.delivered = 0  # outputs of this call that went on (or were dropped as delivered before)
        #: Where the errors of values the step's code sent that cannot be pickled go, each to fail alone (a producer's
        #: generator goes on after them); None: raised to that code (a stager's input fails as a whole).
        self.unsendable: list[MessageError] | None = None
        #: Hands a chunk on while the call goes on (the executor's; by default nothing is released early).
        self.release: Callable[[int, Outputs], None] = _nowhere
        self._lock = threading.Lock()

    def claim(self) -> None:
        """Make the calling thread the one that runs the step's code."""
        self.owner = threading.get_ident()

    def __call__(self, message: Any, target: str | None) -> None:
        if threading.get_ident() == self.owner:
            self.add(message, target)
            return
        sent = self.prepare(message)
        with self._lock:
            if self.active:
                self.pending.append((sent, target))
                self.nbytes += sent.nbytes
                return
            why = (f"step {self.step_name!r}: send_msg() called from thread {threading.current_thread().name!r} "
                   "while no init(), run() or finish() of the step was running: the output belongs to no message")
            self.refused = self.refused or why
        raise RoutingError(why)

    def add(self, message: Any, target: str | None = None, returned: bool = False) -> None:
        """Collect an output of the thread that runs the step's code: a yielded value, or one its run() ``returned``."""
        if self.skip:
            self.skip -= 1  # delivered before this message was sent again: not again
            return
        try:
            sent = self.adopt(message) if returned else self.prepare(message)
        except MessageError as err:
            if self.unsendable is None:
                raise
            self.unsendable.append(err)
            return
        pending = self.pending
        pending.append((sent, target))
        nbytes = self.nbytes = self.nbytes + sent.nbytes
        if nbytes >= CHUNK_BYTES or len(pending) >= CHUNK_COUNT:
            with self._lock:
                chunk, self.pending, self.nbytes = self.pending, [], 0
            self.hand_on(chunk, self.release)

    def hand_on(self, outputs: Outputs, partial: Callable[[int, Outputs], None]) -> None:
        """Hand ``outputs`` of the call in progress on through ``partial``, in chunks of at most CHUNK_COUNT: other
        threads may have sent any number since the last chunk (a helper's million made one RESULT of a million)."""
        for start in range(0, len(outputs), CHUNK_COUNT):
            chunk = outputs[start:start + CHUNK_COUNT]
            self.delivered += len(chunk)
            partial(self.seq, chunk)

    def begin(self, seq: int = UNORDERED) -> None:
        """The step's code starts for input ``seq`` (``resume`` first if some of its outputs went on before):
        other threads may send."""
        self.seq = seq
        self.active = True

    def resume(self, delivered: int) -> None:
        """``delivered`` more outputs of this call went on before it was sent again: drop as many."""
        self.skip += delivered
        self.delivered += delivered

    def end(self) -> Outputs:
        """The step's code returned or raised: the outputs sent since ``begin`` (or the last chunk), in order;
        ``delivered`` says how many went on before, until the next ``begin``."""
        lock = self._lock
        lock.acquire()  # after every call of a step's code: acquire() and release() cost less than a with
        self.active = False
        pending = self.pending
        self.pending = []
        self.nbytes = 0
        lock.release()
        return pending

    def restart(self) -> None:
        """Forget what the last call delivered (its caller has read ``delivered``)."""
        self.delivered = self.skip = 0


def leave_forked_child(owner: int, error: BaseException) -> None:
    """End this process as Python ends one whose code raised ``error``, unless it is ``owner``: a child that a step's
    code forked (os.fork) and that called sys.exit() or raised out of that code. Caught as the step's, the child ran a
    copy of the engine's loop on its parent's sockets for ever (a run in threads hung in the parent's waitpid(); worker
    processes' children spun at full CPU after their run)."""
    if os.getpid() == owner:
        return
    if isinstance(error, SystemExit):
        code = error.code
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)
        status = code if isinstance(code, int) else 0 if code is None else 1
    else:
        traceback.print_exception(error)
        status = 1
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError, AttributeError):  # closed, or none at all: nothing more to lose
            stream.flush()
    os._exit(status)


def _nowhere(seq: int, chunk: Outputs) -> None:
    """A Collector without an executor releases nothing early."""
    raise RuntimeError("a chunk of outputs with nowhere to go")


def send_yielded(generator: GeneratorType, emit: Collector | None) -> Any:
    """Send each value a step's generator yields (a yielded None is skipped); a value its run() returns goes through
    ``Collector.add(..., returned=True)`` in StepExecutor.run instead. What the generator returns, which is no output.

    A sink (``emit`` is None) still runs its generator to the end; its values go nowhere.
    """
    yielded = generator.__next__
    while True:
        try:
            output = yielded()
        except StopIteration as end:  # a for loop would drop its value, which the caller tells the step's author of
            return end.value
        if output is not None and emit is not None:
            emit.add(output)


def _messages_of(component: Component) -> Iterator[Any]:
    """What the producer ``component``'s run() makes: its generator, or an iterator of the iterable it returned."""
    messages = component.run()
    # A str, bytes or dict iterates as its characters, bytes or keys: one value, never the messages meant.
    if isinstance(messages, ONE_VALUE):
        raise StepFailed(f"run() must be a generator (or return an iterable), it returned "
                         f"{type(messages).__name__}: yield it, or return [it], to send it as one message")
    try:
        return iter(messages)
    except TypeError:  # the engine's own word (no traceback of its code): the line says it all
        raise StepFailed(f"run() must be a generator (or return an iterable), it returned "
                         f"{type(messages).__name__}") from None


def _run_generator(result: Any, emit: Collector | None) -> Any:
    """What init() or finish() returned: only a generator's values are outputs (it runs to its end); what that
    generator returned, or None."""
    return send_yielded(result, emit) if isinstance(result, GeneratorType) else None


class StepExecutor:
    """Runs the code of one worker of one step (its own Component instance) by the contract above.

    It owns the worker's counts and times (plain values the monitor reads); what differs between
    runners is only the ``sink`` its outputs go to and the ``policy`` its failures go to.
    """

    def __init__(self, step: StepConfig, worker: int, policy: Policy) -> None:
        self.step = step
        self.worker = worker
        self.policy = policy
        self.component: Component | None = None
        self.collector = Collector(step.name)
        self.sink: Sink = Discard()  # the runner attaches its own before the step's code runs
        self.emitter = self.collector if step.next_steps else None  # a consumer's returned values go nowhere
        self.counts = StepCounts()
        self.busy_seq: int | None = None  # the message in run() now, to name a stuck worker
        self.busy_call = ""  # "init()" or "finish()" while the step's code runs it, to name a stuck worker
        self.busy_time = 0.0  # seconds in run() (a producer: in its generator) so far
        self.max_time = 0.0  # the longest single run() call
        self.first_error: str | None = None
        self.fatal = False  # the step failed (not only some of its messages)
        self.pid = os.getpid()  # the process whose engine runs the step's code (a child it forks is not)
        #: Told the message each run() starts and ends (None): a worker process's busy board.
        self.mark: Callable[[int, int | None], None] | None = None
        #: Per message sent again after some of its outputs went on (a worker process that died): how many.
        self.skips: dict[int, int] = {}
        self._told_returned = False  # a generator of the step returned a value, which is no output: said once
        self.collector.release = self._release

    @property
    def sink(self) -> Sink:
        """Where the step's committed outputs go."""
        return self._sink

    @sink.setter
    def sink(self, sink: Sink) -> None:
        """Send the committed outputs to ``sink``, prepared as it takes them (copied, or encoded for a socket)."""
        self._sink = sink
        collector = self.collector
        collector.prepare = copy_message if sink.copies else encode
        collector.adopt = adopt_message if sink.adopts else collector.prepare

    @property
    def started(self) -> bool:
        """Whether the Component was built and its init() succeeded."""
        return self.component is not None

    def fail(self, what: str, error: BaseException) -> None:
        """The step failed in ``what`` (init(), finish(), run()): the run will exit 1."""
        line = self.policy.lifecycle_failed(self.step.name, self.worker, what, error)
        self.first_error = self.first_error or line
        self.fatal = True

    def _release(self, seq: int, chunk: Outputs) -> None:
        """Hand on a chunk of the outputs of the call in progress (the step's code waits meanwhile, as it would
        for a full next step): the sink is used under its lock, as the Flusher uses it."""
        sink = self.sink
        sink.lock.acquire()
        try:
            sink.partial(seq, chunk)
        finally:
            sink.lock.release()

    def _last_chunk(self, outputs: Outputs) -> Outputs:
        """The last CHUNK_COUNT of the ``outputs`` of a call that returned, those before handed on as chunks now (other
        threads sent more than a chunk's worth since the last one): what the call commits is a chunk's worth at most.
        The sink's lock is held, as ``_release`` holds it."""
        self.collector.hand_on(outputs[:-CHUNK_COUNT], self.sink.partial)
        return outputs[-CHUNK_COUNT:]

    def doing(self) -> str | None:
        """What the step's code runs now, in words ("in run() on message 6", "in init()"); None outside it."""
        if self.busy_seq is not None:
            return f"in run() on message {self.busy_seq}"
        return f"in {self.busy_call}" if self.busy_call else None

    def _lifecycle(self, what: str, code: Callable[[], Any]) -> tuple[Any, bool]:
        """Call init() or finish() with the sink unlocked; commit what it sent. (its result, whether it returned)"""
        sink = self.sink
        collector = self.collector
        collector.begin()
        sink.lock.release()
        self.busy_call = what
        try:
            result = code()
            self._check_returned(what, _run_generator(result, self.emitter))
        except NOT_THE_STEPS:
            raise
        except BaseException as err:  # a step's SystemExit fails the step, not the engine
            leave_forked_child(self.pid, err)
            sink.lock.acquire()
            collector.end()
            collector.restart()
            self.fail(what, err)
            return None, False
        finally:
            self.busy_call = ""
        sink.lock.acquire()
        outputs = collector.end()
        if len(outputs) > CHUNK_COUNT:
            outputs = self._last_chunk(outputs)
        collector.restart()
        self._check_refused()
        sink.commit(UNORDERED, outputs)
        return result, True

    def start(self, make: Callable[[], Component]) -> bool:
        """Build the Component with ``make`` and call its init(); True if the step may take messages."""
        self.collector.claim()
        try:
            component = make()
        except NOT_THE_STEPS:
            raise
        except BaseException as err:  # its constructor is the step's code: a SystemExit there fails the step too
            leave_forked_child(self.pid, err)
            self.fail("init()", err)
            return False
        component._emit = self.emitter
        if self.step.kind == "producer" and self.step.nb_process:  # in shards: each run() is told its own
            set_share(component, None)
        result, returned = self._lifecycle("init()", component.init)
        if returned and result is False:
            self.fail("init()", StepFailed("init() returned False: the step could not start"))
        if not returned or self.fatal:
            return False
        self.component = component
        return True

    def finish(self) -> None:
        """Call finish() (if init() succeeded) and commit what it sent."""
        if self.component is not None:
            if self.mark is not None:
                self.mark(self.worker, FINISHING)
            self._lifecycle("finish()", self.component.finish)
            if self.mark is not None:
                self.mark(self.worker, None)

    def settle(self) -> None:
        """The run is over: a send from a thread of the step refused since the last look still fails the step."""
        self._check_refused()

    def _check_refused(self) -> None:
        """A send from another thread was refused since the last look: the step fails, once."""
        refused = self.collector.refused
        if refused is not None and not self.fatal:
            self.fail("send_msg()", StepFailed(refused))

    def produce(self, stopping: Callable[[], bool], share: tuple[int, int] | None = None) -> bool:
        """A producer: each value its generator yields is a message, and so is each it passes to send_msg(). A producer
        in shards runs the ``share`` (shard, n_shards) it is given; its shard is unknown again once run() ends.
        Whether the generator failed (it raised, or could not be made; not a value that failed alone)."""
        component = self.component
        if component is None:
            return False
        # A value the wire cannot carry, yielded or passed to send_msg(), fails alone: the generator goes on.
        unsendable: list[MessageError] = []
        self.collector.unsendable = unsendable
        try:
            if share is None:
                return self._produce(component, stopping, "run()", unsendable)
            set_share(component, share)
            try:
                return self._produce(component, stopping, f"run() of shard {share[0]}", unsendable)
            finally:
                set_share(component, None)
        finally:
            self.collector.unsendable = None

    def _produce(self, component: Component, stopping: Callable[[], bool], what: str,
                 unsendable: list[MessageError]) -> bool:
        """produce() once the producer's share is set; ``what`` names the call in a failure, ``unsendable`` gets the
        errors of the values that could not be sent (the collector's)."""
        sink = self.sink
        collector = self.collector
        counts = self.counts
        release, acquire = sink.lock.release, sink.lock.acquire

        def start() -> None:
            """run() itself, the first step of the loop: what a run() that is no generator sends as it makes its
            iterable is produced as what it yields, and goes as the messages of its shard."""
            nonlocal yielded
            yielded = _messages_of(component).__next__

        yielded: Callable[[], Any] = start
        error: BaseException | None = None
        # The producer's hot path: a yield of a fast source costs about as much as all that follows it here.
        begin, add, end = collector.begin, collector.add, collector.end
        commit, produced = sink.commit, sink.produced
        ended = False
        # The time of calls that made no message (a yield of None, the generator's end) counts in the next message's,
        # or the last one's: MAX_MS is the longest a message took to make, never below MEAN_MS (it was, with one).
        carried = last = 0.0
        while not ended and not stopping():
            before = perf_counter()
            begin()
            release()
            try:
                message = yielded()
                if message is not None:
                    # Before the sink's lock is taken again: a message a chunk's worth hands itself on at once,
                    # and that takes the lock.
                    add(message)
            except StopIteration:
                # What it sent after its last yield goes too (send_msg() then the generator's end: it was dropped)
                ended = True
            except NOT_THE_STEPS:
                raise
            except BaseException as err:  # a step's SystemExit fails the step, not the engine
                leave_forked_child(self.pid, err)
                error, ended = err, True  # what it sent before it raised goes, as what it yielded did
            acquire()
            spent = perf_counter() - before
            self.busy_time += spent
            outputs = end()
            if len(outputs) > CHUNK_COUNT:
                outputs = self._last_chunk(outputs)
            if collector.refused is not None:
                self._check_refused()
            delivered = collector.delivered  # those handed on early, as chunks
            if delivered:
                collector.restart()
            made = len(outputs) + delivered
            if made:
                last, carried = (carried + spent) / made, 0.0
                if last > self.max_time:
                    self.max_time = last
            else:
                carried += spent
            # Made before it is sent: a stop at once in commit() counts it emitted too (engine.outlets.NextSteps),
            # sent but never processed.
            counts.processed += made
            commit(0, outputs)
            produced(spent)
            if unsendable:
                self._fail_unsendable(unsendable)
        if last + carried > self.max_time:
            self.max_time = last + carried
        self._fail_unsendable(unsendable)
        if error is not None:
            counts.failed += 1
            if not self.fatal:  # failed already (a send_msg() refused): told once, as a worker outside the run may
                self.fail(what, error)
        return error is not None

    def _fail_unsendable(self, errors: list[MessageError]) -> None:
        """Values the producer yielded or sent cannot be pickled (``errors``, emptied): each fails as a message of its
        own (on_error, a dead letter that says why and holds no message), numbered by its sink (the messages made
        before it; in a shard, its place there)."""
        for error in errors:
            number = self.sink.unsendable(self.counts.processed + self.counts.failed)
            if number is None:
                continue
            self.counts.failed += 1
            self.first_error = self.first_error or failure_line(error)
            self.policy.message_failed(self.step, self.worker, number, error, None)
        errors.clear()

    def run(self, messages: Iterable[tuple[int, Buffer, list[Buffer]] | tuple[int, Encoded | Copied, None]]) -> None:
        """Run each message (sequence number, in-band pickle, buffers) through the step's run(); a message from a step
        of the same thread comes as (sequence number, what that step's Collector made of it, None).

        The hot path of every worker: what every message needs is looked up once per batch, since a
        method call and its lookups cost as much as a small message's work.
        """
        component = self.component
        if component is None:  # its init() failed (the run stops): what still reaches it, from a finish(), is not run
            for seq, inband, buffers in messages:
                self._not_run(seq, inband, buffers)
            return
        sink = self.sink
        counts = self.counts
        halted = self.policy.halted
        name = self.step.name
        release, acquire = sink.lock.release, sink.lock.acquire
        collector = self.collector
        begin, end = collector.begin, collector.end
        run = component.run
        emitter = self.emitter
        collects = emitter is not None  # a consumer's code cannot send (Component.send_msg): nothing to collect
        answers = sink.answers_router
        # Messages of no input (init()'s or finish()'s, through fused steps) leave the board as their call set it.
        mark = self.mark
        skips = self.skips
        for seq, inband, buffers in messages:
            if name in halted:
                self._not_run(seq, inband, buffers)
                continue
            counts.received += 1
            self.busy_seq = seq
            if mark is not None and seq != UNORDERED:
                mark(self.worker, seq)
            error: BaseException | None = None
            resumed = 0  # outputs delivered by an earlier run, for a message replayed from its dead letter
            if collects:
                begin(seq)
            if skips and (again := skips.pop(seq, 0)):
                collector.resume(again)
            start = perf_counter()
            release()
            try:
                try:
                    message = decode(inband, buffers) if buffers is not None else inband.open()
                except Exception as err:  # the receiver's failure, but not of its run(): said so
                    raise UnreadableMessage(failure_line(err)) from err
                if type(message) is Resume:
                    resumed = message.delivered
                    collector.resume(resumed)
                    message = message.message
                result = run(message)
                if result is not None:
                    if isinstance(result, GeneratorType):
                        self._check_returned("run()", send_yielded(result, emitter))
                    elif emitter is not None:
                        emitter.add(result, None, True)
            except NOT_THE_STEPS:
                raise
            except BaseException as err:  # a step's SystemExit fails the step, not the engine
                leave_forked_child(self.pid, err)
                error = err
            acquire()
            spent = perf_counter() - start
            outputs = end() if collects else []
            if len(outputs) > CHUNK_COUNT and error is None:  # a failed call's outputs not handed on are dropped
                outputs = self._last_chunk(outputs)
            delivered = collector.delivered
            if delivered:
                if collector.skip and error is None:
                    self._made_fewer(seq, delivered, collector.skip)
                collector.restart()
            self.busy_time += spent
            if spent > self.max_time:
                self.max_time = spent
            self.busy_seq = None
            if mark is not None and seq != UNORDERED:
                mark(self.worker, None)
            if error is not None:
                # The dead letter keeps the message as it came (a Resume says what an earlier run delivered).
                self._failed(seq, error, _as_received(inband, buffers), spent, delivered - resumed)
                continue
            if collector.refused is not None:
                self._check_refused()
            counts.processed += 1
            if outputs or answers:  # a consumer's thread has nothing to commit
                sink.commit(seq, outputs, spent)
                if sink.oldest:
                    sink.flush_if_due()

    def _check_returned(self, what: str, value: Any) -> None:
        """A generator ``what`` of the step returned ``value`` too: unless None (or the step sends nothing), say once
        that it is no output; a ``return`` in a plain function sends, in a generator it does not."""
        if value is None or self.emitter is None or self._told_returned:
            return
        self._told_returned = True
        log.warning("step %s: its %s is a generator that returned a %s: not sent (a generator's return value is no "
                    "output: yield it to send it); said once a worker", self.step.name, what, type(value).__name__)

    def _made_fewer(self, seq: int, delivered: int, missing: int) -> None:
        """Message ``seq``, sent again after ``delivered`` of its outputs went on, made ``missing`` fewer than that:
        say so (a hand-edited dead letter, or a step whose outputs changed), since none of them went on."""
        log.warning("step %s: %s made %s when it ran again, fewer than the %d that had gone on before: none went on "
                    "again (a replay drops as many as its dead letter's \"delivered\")", self.step.name,
                    message_words(seq), counted(delivered - missing, "output"), delivered)

    def _not_run(self, seq: int, inband: Any, buffers: list[Buffer] | None) -> None:
        """Message ``seq`` came to a step that starts no message (halted, or its init() failed): received, not run,
        recorded as such (a dead letter, to replay after the fix)."""
        self.counts.received += 1
        self.policy.not_run(self.step, seq, _as_received(inband, buffers))
        self.sink.failed(seq, Outcome.NOT_RUN)

    def _failed(self, seq: int, error: BaseException, message: Encoded, spent: float, delivered: int) -> None:
        """Message ``seq``'s run() raised ``error`` after ``spent`` seconds: its outputs not yet handed on are
        dropped (``delivered`` were, in chunks); report it."""
        self.counts.failed += 1
        fatal = not isinstance(error, Exception)  # a SystemExit or such: the step fails (exit 1) and halts
        self.first_error = self.first_error or failure_of_run(failure_line(error), fatal)
        self.fatal = self.fatal or fatal
        # Still a failed message, whatever ended it: its dead letter lets a replay run it after the fix.
        self.policy.message_failed(self.step, self.worker, seq, error, message, delivered, fatal)
        self.sink.failed(seq, Outcome.FAILED, spent)


def _as_received(inband: Any, buffers: list[Buffer] | None) -> Encoded:
    """A message as StepExecutor.run received it, pickled: for its dead letter, or to say it was not run."""
    return inband.encoded() if buffers is None else Encoded(bytes(inband), buffers)
