"""Where a thread's committed outputs go: on to the next steps, or back to the step's router.

Every kind of worker runs the same loop; what differs is its outlet, chosen before ``init()``:

- ``NextSteps`` batches outputs per next step and sends them on itself (a producer, or a thread
  worker of an unordered step);
- ``ToRouter`` returns each input's outputs to the step's router with the input's result (a worker
  of an ordered step; the router releases them in input order);
- ``NoOutputs`` for a consumer.

An outlet's ``lock`` is held by its thread except while the step's own code runs; the run's
``Flusher`` takes it then to send outputs that would otherwise wait behind a slow ``run()`` or a
slow yield (the latency bound, docs/architecture.md).
"""

from __future__ import annotations

import threading
import time
from bisect import bisect_left
from collections import deque
from itertools import accumulate

import zmq

from pipeline.config.model import PipelineConfig, StepConfig
from pipeline.engine import sockets
from pipeline.engine.addresses import Addresses
from pipeline.engine.flow import (
    FANOUT_CREDIT,
    FLUSH_TICK_SECONDS,
    MAX_BATCH,
    MAX_BATCH_BYTES,
    MAX_DELAY_SECONDS,
    MAX_RESULT_OUTPUTS,
    PIPE_HWM,
    SHARD_CREDIT,
    SLOW_SOURCE_SECONDS,
    SOURCE_DELAY_STEP_SECONDS,
    SOURCE_MAX_DELAY_SECONDS,
    batch_limit,
    fans_out,
)
from pipeline.engine.handles import Handles
from pipeline.engine.rings import Ring
from pipeline.engine.wire import Kind, Packet, ResultPacket, control_frames, header_of
from pipeline.execution.executor import Interrupted, Outcome, Outputs
from pipeline.execution.report import StepCounts
from pipeline.message import Encoded


class Outlet:
    """What every outlet does; this base sends nothing (a consumer's)."""

    #: Whether it answers the router: its answers must reach the router before the worker's READY.
    answers_router = False
    #: Its outputs leave the thread: pickled (execution.executor.Sink.copies).
    copies = False
    adopts = False

    #: Longest an output waits for more to go with it (a worker process's answers wait longer).
    max_delay = MAX_DELAY_SECONDS

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.oldest = 0.0  # when the oldest unsent output was committed (0: none)

    def commit(self, seq: int, outputs: Outputs, seconds: float = 0.0) -> None:
        """The step's code for input ``seq`` returned these outputs after ``seconds``."""

    def partial(self, seq: int, outputs: Outputs) -> None:
        """A chunk of the outputs of input ``seq``, whose code goes on: they go as committed ones."""
        self.commit(seq, outputs)

    def failed(self, seq: int, outcome: Outcome = Outcome.FAILED, seconds: float = 0.0) -> None:
        """Input ``seq`` has no outputs: its run() raised (they were dropped), or it was not run."""

    def flush(self) -> None:
        """Send every committed output now."""

    def acknowledged(self) -> None:
        """The router said MORE: nothing of this outlet waits for one (see ToRouter)."""

    def produced(self, seconds: float) -> None:
        """A producer's message was committed after ``seconds`` in its generator: a slow source's
        messages go at once, a fast one's batch, each batch waiting longer than the one before up to
        SOURCE_MAX_DELAY_SECONDS (a producer's outlet starts at ``max_delay`` 0: its first message goes at once)."""
        if seconds > SLOW_SOURCE_SECONDS:
            self.flush()
        elif self.oldest and self.due(time.monotonic()):
            self.flush()
            if self.max_delay < SOURCE_MAX_DELAY_SECONDS:  # a producer thread's, ramping up (a shard's waits longer)
                self.max_delay = min(SOURCE_MAX_DELAY_SECONDS, 2 * self.max_delay + SOURCE_DELAY_STEP_SECONDS)

    def unsendable(self, made: int) -> int | None:
        """Its number: the messages made before it."""
        return made

    def due(self, now: float) -> bool:
        """Whether the oldest unsent output has waited MAX_DELAY_SECONDS at ``now``."""
        return bool(self.oldest) and now - self.oldest >= self.max_delay

    def flush_if_due(self) -> None:
        """Send what has waited MAX_DELAY_SECONDS (callers test ``oldest`` first: it is most often 0)."""
        if self.due(time.monotonic()):
            self.flush()

    def end(self) -> None:
        """Send everything; no output follows."""
        self.flush()

    def close(self) -> None:
        """Close the sockets the outlet opened (in the thread that used them)."""


NoOutputs = Outlet


class _Outbox:
    """Messages waiting to go to one next step, and the socket they go through."""

    def __init__(self, socket: zmq.Socket, limit: int, handles: Handles) -> None:
        self.socket = socket
        self.limit = limit
        self.handles = handles
        self.packet = Packet()
        self.sent = 0

    def add(self, message: Encoded) -> None:
        """Queue one message; send the packet once it holds ``limit`` messages or MAX_BATCH_BYTES."""
        self.packet.add(message)
        self._flush_if_full()

    def add_packet(self, messages: Packet) -> None:
        """Queue the messages of a packet without out-of-band buffers: the packets sent are those ``add`` would send,
        message after message. The outbox keeps copies of its counts, never the packet itself, which the caller may
        hand to another outbox too."""
        ends = list(accumulate(messages.lengths))  # where each message ends in the body
        body = messages.body()
        done = 0
        while done < len(ends):
            packet = self.packet
            start = ends[done - 1] if done else 0
            # The messages up to the one that reaches MAX_BATCH_BYTES (it goes too), up to the limit.
            reaching = bisect_left(ends, start + MAX_BATCH_BYTES - packet.nbytes, lo=done)
            stop = min(len(ends), done + self.limit - len(packet), reaching + 1)
            taken = Packet(messages.lengths[done:stop], messages.oob_counts[done:stop], [body[start:ends[stop - 1]]],
                           [], 0, ends[stop - 1] - start)
            self.packet = Packet.concat([packet, taken]) if len(packet) else taken
            self._flush_if_full()
            done = stop

    def _flush_if_full(self) -> None:
        """Send the packet once it holds ``limit`` messages or MAX_BATCH_BYTES (add and add_packet cut alike)."""
        packet = self.packet
        if len(packet.lengths) >= self.limit or packet.nbytes >= MAX_BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Send what is queued (blocks while the next step's router is full: backpressure)."""
        if self.packet.lengths:
            sockets.send(self.socket, self.packet.frames(Kind.DATA, handles=self.handles))
            self.sent += len(self.packet)
            self.packet = Packet()


class NextSteps(Outlet):
    """Batches a thread's outputs per next step into packets and sends them to those steps' routers
    (threads of the run's process: the buffers go by ``handles``)."""

    def __init__(self, context: zmq.Context, config: PipelineConfig, step: StepConfig, addresses: Addresses,
                 counts: StepCounts, handles: Handles) -> None:
        super().__init__()
        self.step = step
        self.counts = counts
        self.boxes: dict[str, _Outbox] = {}
        for name in step.next_steps:
            socket = context.socket(zmq.PUSH)
            socket.sndhwm = PIPE_HWM
            socket.linger = 0
            socket.connect(addresses.inbox(name))
            self.boxes[name] = _Outbox(socket, batch_limit(config.steps[name].queue_limit), handles)
        self.every = list(self.boxes.values())  # where an output that names no next step goes

    def commit(self, seq: int, outputs: Outputs, seconds: float = 0.0) -> None:
        """Queue each output for its next step (all of them when it names none)."""
        every = self.every
        boxes = self.boxes
        emitted = 0
        try:
            for message, target in outputs:
                for box in every if target is None else (boxes[target],):
                    emitted += 1  # before it is queued: a send that fails below it leaves it in the packet
                    box.add(message)
        except BaseException:
            # A stop at once ended a send (the next step's pipe was full): those not queued yet count as the queued
            # ones do, sent but never processed, not lost in silence.
            emitted = self.deliveries(outputs)
            raise
        finally:
            self.counts.emitted += emitted
        if outputs and not self.oldest:
            self.oldest = time.monotonic()

    def commit_packet(self, outputs: Packet) -> None:
        """Queue ``outputs``, a packet without out-of-band buffers, each for every next step, as it came (a RESULT's
        outputs: engine.router): the packets sent are those ``commit`` would send."""
        if not len(outputs):
            return
        # Counted first: a stop at once that ends a send below leaves them sent but never processed, as ``commit``.
        self.counts.emitted += len(outputs) * len(self.every)
        for box in self.every:
            box.add_packet(outputs)
        if not self.oldest:
            self.oldest = time.monotonic()

    def deliveries(self, outputs: Outputs) -> int:
        """The deliveries ``outputs`` make: one each, one per next step for those that name none."""
        every = len(self.every)
        return sum(every if target is None else 1 for _, target in outputs)

    def abandon(self, outputs: Outputs) -> None:
        """``outputs`` will never be sent (the run stopped at once with them still to send): they count as sent but
        never processed, as those already queued do, rather than vanish from the report."""
        self.counts.emitted += self.deliveries(outputs)

    def flush(self) -> None:
        """Send every pending output now."""
        for box in self.boxes.values():
            box.flush()
        self.oldest = 0.0

    def end(self) -> None:
        """Send everything, then tell each next step how many messages it was sent."""
        self.flush()
        for box in self.boxes.values():
            sockets.send(box.socket, control_frames(Kind.END, box.sent))

    def close(self) -> None:
        """Close the sockets (in the thread that used them)."""
        for box in self.boxes.values():
            box.socket.close()


class ToRouter(Outlet):
    """Returns each input's outputs to the step's router, batched, through the worker's own socket.

    Every input is answered, even one without outputs: the router releases an ordered step's
    outputs in input order, and keeps what a worker in another process holds until it is answered.
    A worker in the run's process lends the buffers to ``handles``; one in another process has none.
    """

    answers_router = True

    def __init__(self, socket: zmq.Socket, step: StepConfig, handles: Handles | None, ring: Ring | None = None,
                 counts: StepCounts | None = None) -> None:
        super().__init__()
        self.socket = socket
        #: A thread of the run's process counts its outputs as emitted once they leave for the router (which takes
        #: them off its own count as it reads them): at a stop at once, those the router never read are counted, as
        #: sent but never processed. A worker process's are the router's to count (None).
        self.counts = counts
        self.handles = handles
        self.ring = ring  # a local worker process's ring to its router (engine.rings)
        self.index = {name: i for i, name in enumerate(step.next_steps)}
        self.result = ResultPacket()  # the answers held until the next flush
        #: What the router sent while this outlet waited for its MORE (work, SKIPs): its thread takes them first.
        self.early: deque[list[zmq.Frame]] = deque()
        #: Most RESULTs it sends that the router has not yet sent on (MORE) of those that take credit: a worker's
        #: that fan out (flow.fans_out), or with ``for_shard`` every one of a shard's.
        self.credit = FANOUT_CREDIT
        self.credits_all = False
        #: A RESULT that takes credit goes once it holds this many outputs (or its last input's, or message's through
        #: fused steps, made it pass them).
        self.most_outputs = batch_limit(step.queue_limit)
        self.unacked = 0  # RESULTs (and chunks) sent whose MORE has not come

    def commit(self, seq: int, outputs: Outputs, seconds: float = 0.0) -> None:
        """Hold the outputs of input ``seq`` until the next flush."""
        self._hold(seq, outputs, Outcome.DONE, seconds)

    def chunk(self, seq: int, outputs: Outputs, made: int | None = None) -> None:
        """Hold some outputs of input ``seq``, whose code goes on, until the next flush, and go on without waiting
        for the router (a shard's messages, engine.shards: its router takes them on as they come). ``made``: the
        producer's messages they stand for, if fused steps after it made these."""
        self._hold(seq, outputs, Outcome.PARTIAL, 0.0, made)

    def _hold(self, seq: int, outputs: Outputs, outcome: Outcome, seconds: float, made: int | None = None) -> None:
        # Sent once it is held, never before: a TALLY sent with the RESULT counts the fused steps' work on it.
        result = self.result
        if len(result.targets) + len(outputs) > MAX_RESULT_OUTPUTS:  # the answers held go first: a RESULT's bound
            self.flush()
            result = self.result
        result.answer(seq, outputs, outcome, seconds, made, self.index)
        if not self.oldest:
            self.oldest = time.monotonic()
        if len(result) >= MAX_BATCH or result.outputs.nbytes >= MAX_BATCH_BYTES or self._credit_full(result):
            self.flush()

    def _takes_credit(self, result: ResultPacket) -> bool:
        """Whether ``result`` waits for its turn and gets a MORE: every one of a shard's, a worker's that fans out."""
        return self.credits_all or fans_out(len(result.outputs), len(result))

    def _credit_full(self, result: ResultPacket) -> bool:
        """Whether ``result`` takes credit and holds ``most_outputs`` outputs."""
        return len(result.outputs) >= self.most_outputs and self._takes_credit(result)

    def partial(self, seq: int, outputs: Outputs, made: int | None = None) -> None:
        """Return a chunk of input ``seq``'s outputs now (after the answers before it), then wait until the router
        has sent it on (MORE): a worker holds at most this chunk and the next, whatever the router's pace.
        ``made``: the outputs of the step's code it stands for, if fused steps after it made these."""
        self.flush()
        chunk = ResultPacket()
        chunk.answer(seq, outputs, Outcome.PARTIAL, 0.0, made, self.index)
        sockets.send(self.socket, chunk.frames(self.handles, self.ring))
        self._count_sent(chunk)
        self.unacked += 1
        self._await_more(0)

    def _await_more(self, most: int) -> None:
        """Wait until at most ``most`` of what it sent awaits the router's MORE (what else comes meanwhile, work
        or SKIPs, its thread reads after this call)."""
        try:
            while self.unacked > most:
                received = sockets.recv(self.socket)
                if header_of(received[0])[0] is Kind.MORE:
                    self.unacked -= 1
                else:
                    self.early.append(received)
        except zmq.ContextTerminated:
            raise Interrupted from None  # the run is aborted: out of the step's code, which must not catch it

    def end(self) -> None:
        """Send everything, then wait for the MOREs still owed: the router answers each RESULT that took credit, and
        a thread gone meanwhile could not hear it (the router's send to it would fail)."""
        self.flush()
        self._await_more(0)

    def for_shard(self) -> None:
        """Make it a producer shard's outlet: every RESULT takes credit, SHARD_CREDIT of them (the shard's messages
        wait here while the router cannot send them on), and holds MAX_BATCH messages."""
        self.credit = SHARD_CREDIT
        self.credits_all = True
        self.most_outputs = MAX_BATCH

    def acknowledged(self) -> None:
        """A MORE came that no wait of its own read (its thread read it with the router's work)."""
        if self.unacked:
            self.unacked -= 1

    def failed(self, seq: int, outcome: Outcome = Outcome.FAILED, seconds: float = 0.0) -> None:
        """Answer an input that has no outputs."""
        self._hold(seq, [], outcome, seconds)

    def flush(self) -> None:
        """Send the held answers to the router."""
        result = self.result
        if len(result):
            if self._takes_credit(result):
                self._await_more(self.credit - 1)
                self.unacked += 1
            sockets.send(self.socket, result.frames(self.handles, self.ring))
            self._count_sent(result)
            self.result = ResultPacket()
        self.oldest = 0.0

    def close(self) -> None:
        """Count what it still holds: its thread was stopped at once before sending it (the answers of inputs it
        processed, whose outputs are sent but never processed, not lost in silence)."""
        self._count_sent(self.result)

    def _count_sent(self, packet: ResultPacket) -> None:
        """Count the outputs of ``packet`` as emitted, for a thread of the run's process (``counts``)."""
        if self.counts is not None:
            self.counts.emitted += packet.deliveries(len(self.index))


class Flusher(threading.Thread):
    """Sends outputs that have waited MAX_DELAY_SECONDS while their thread is inside the step's code.

    It wakes every FLUSH_TICK_SECONDS and only takes an outlet's lock when it is free, that is
    when the outlet's thread is inside the step's code and not using its sockets.
    """

    def __init__(self) -> None:
        super().__init__(name="flusher", daemon=True)
        self.outlets: list[Outlet] = []  # replaced, never changed in place: the loop reads it without the lock
        self.stopped = threading.Event()
        self._changing = threading.Lock()  # threads add and remove their outlets at the same time

    def add(self, outlet: Outlet) -> None:
        """Watch ``outlet`` from now on (its thread holds its lock)."""
        with self._changing:
            self.outlets = [*self.outlets, outlet]

    def remove(self, outlet: Outlet) -> None:
        """Stop watching ``outlet`` (its thread holds its lock)."""
        with self._changing:
            self.outlets = [o for o in self.outlets if o is not outlet]

    def run(self) -> None:
        while not self.stopped.wait(FLUSH_TICK_SECONDS):
            now = time.monotonic()
            for outlet in self.outlets:
                if outlet.due(now) and outlet.lock.acquire(False):
                    try:
                        outlet.flush()
                    except (zmq.ContextTerminated, Interrupted):
                        return  # the run is being aborted
                    finally:
                        outlet.lock.release()
