"""A step's router thread: holds the step's queue and hands packets to its least recently used worker."""

from __future__ import annotations

from collections import deque

import zmq

from ..config import PipelineConfig, StepConfig
from ..report import StepCounts
from . import frames
from .addresses import Addresses
from .control import BOUND, EngineThread, RunControl
from .flow import HELD_BACK_BYTES, PIPE_HWM, QUEUE_BYTES, batch_limit, held_back_limit, sender_count
from .outlets import NextSteps
from .pool import WorkerPool
from .reorder import Reorderer
from .wire import Kind, Packet, control_frames, header_of, packet_from_frames


class Router(EngineThread):
    """Owns one step's queue (bounded by queue_limit and by QUEUE_BYTES) and hands it to the step's workers.

    The step is drained when every upstream sender has sent its end of stream, the messages
    received equal the sum they declared, the queue is empty and no worker holds work. Then each
    worker is told to finish, and the router stops once all have.
    """

    def __init__(self, context: zmq.Context, control: RunControl, config: PipelineConfig, step: StepConfig,
                 addresses: Addresses) -> None:
        super().__init__(f"router-{step.name}", control)
        self.context = context
        self.config = config
        self.step = step
        self.addresses = addresses
        self.senders = sender_count(config, step)
        self.counts = StepCounts()  # an ordered step's router sends its outputs, so it counts them
        self.queue: deque[Packet] = deque()
        self.queued = 0
        self.queued_bytes = 0
        self.received = 0
        self.pool = WorkerPool()
        self._next_seq = 0
        self._ended = 0
        self._expected = 0
        self._finished = 0
        self._finishing = False
        self.reorder: Reorderer | None = None
        self._no_worker = False  # every worker's init() failed
        self.state = "waiting"  # then running, draining (every sender ended), finished
        # Read input only while a whole packet still fits under the queue limit.
        limit = step.queue_limit
        self._read_below = limit - batch_limit(limit) + 1 if limit > 0 else None

    def work(self) -> None:
        inbox = self.context.socket(zmq.PULL)
        work = self.context.socket(zmq.ROUTER)
        outputs = None
        try:
            if self.step.ordered and self.step.next_steps:
                outputs = NextSteps(self.context, self.config, self.step, self.addresses, self.counts)
                self.reorder = Reorderer(outputs)
            inbox.rcvhwm = PIPE_HWM
            inbox.linger = 0
            inbox.bind(self.addresses.inbox(self.step.name))
            work.router_mandatory = True
            work.linger = 0
            work.bind(self.addresses.work(self.step.name))
            self.control.events.put((BOUND, self))  # peers may connect now
            self._loop(inbox, work)
            if outputs is not None:
                outputs.end()
            self.state = "finished"
        finally:
            if outputs is not None:
                outputs.close()
            inbox.close()
            work.close()

    def _accepting(self) -> bool:
        if self._ended == self.senders:
            return False
        if self.queued_bytes >= QUEUE_BYTES:
            return False
        return self._read_below is None or self.queued < self._read_below

    def _needs_workers(self) -> bool:
        """Whether what the workers send matters now.

        While the queue is empty a READY only adds credit that nothing uses yet: it waits in the
        socket until input comes, so a worker's READY does not wake the router (the wake takes the
        GIL just when the worker sends its outputs on).
        """
        return bool(self.queue) or self._ended == self.senders or self.reorder is not None

    def _loop(self, inbox: zmq.Socket, work: zmq.Socket) -> None:
        pollers = {}
        for wanted in ((work,), (inbox,), (work, inbox)):
            poller = pollers[wanted] = zmq.Poller()
            for socket in wanted:
                poller.register(socket, zmq.POLLIN)
        while self._finished < self.step.nb_thread:
            wanted = (work,) if self._needs_workers() else ()
            if self._accepting():
                wanted += (inbox,)
            events = dict(pollers[wanted].poll())
            if inbox in events:
                self._read_inbox(inbox)
            if self.queue or work in events:
                self._read_workers(work)
            self._dispatch(work)
            if self._drained():
                self._finishing = True
                for worker in self.pool.workers:
                    frames.send(work, [worker, *control_frames(Kind.FINISH)])

    def _read_workers(self, work: zmq.Socket) -> None:
        while frames.waiting(work):
            received = frames.recv(work)
            worker = received[0].bytes
            kind, window = header_of(received[1])
            if kind is Kind.RESULT and self.reorder is not None:
                self.reorder.add(received[1:])
            elif kind is Kind.READY:
                self.pool.done(worker, window)
            elif kind is Kind.JOIN:
                self.pool.join(worker, window)
                # A worker whose init() failed joins asking for nothing, and a live one never does.
                joined = self.pool.workers
                self._no_worker = len(joined) == self.step.nb_thread and not any(map(self.pool.window, joined))
            elif kind is Kind.FINISHED:
                self._finished += 1
        if self.reorder is not None:
            self.reorder.outputs.flush()

    def _read_inbox(self, inbox: zmq.Socket) -> None:
        while self._accepting() and frames.waiting(inbox):
            received = frames.recv(inbox)
            kind, value = header_of(received[0])
            if kind is Kind.DATA:
                self.state = "running"
                packet = packet_from_frames(received)
                packet.first_seq = self._next_seq
                self._next_seq += len(packet)
                self.received += len(packet)
                self.queued += len(packet)
                self.queued_bytes += packet.nbytes
                self.queue.append(packet)
            elif kind is Kind.END:
                self._ended += 1
                self._expected += value
                if self._ended == self.senders:
                    self.state = "draining"

    def _dispatch(self, work: zmq.Socket) -> None:
        pool = self.pool
        if self._no_worker or self.step.name in self.control.policy.halted:
            self._drop_queue()
            return
        if self.reorder is not None and (len(self.reorder.held) >= held_back_limit(self.step)
                                         or self.reorder.held_bytes >= HELD_BACK_BYTES):
            return  # an early input is late: hand out nothing more until it is done
        while self.queue:
            worker = pool.choose()
            if worker is None:
                return
            size = min(max(1, pool.window(worker) // 2), pool.room(worker))
            packet = self.queue[0]
            if len(packet) > size:
                packet, self.queue[0] = packet.split(size)
            else:
                self.queue.popleft()
            frames.send(work, [worker, *packet.frames(Kind.WORK)])
            self.queued -= len(packet)
            self.queued_bytes -= packet.nbytes
            pool.sent(worker, len(packet), packet.nbytes)

    def _drop_queue(self) -> None:
        """Give up the queued messages: every worker's init() failed, or the step stopped after a failure.

        The report counts them as never processed; a stopped step's go to the dead-letter file
        as not run, to replay after the fix. Holding them would keep the step from draining.
        """
        for packet in self.queue:
            self.counts.received += len(packet)  # received by the step, though no worker got them
            for seq, message in zip(range(packet.first_seq, packet.first_seq + len(packet)), packet.encoded(),
                                    strict=True):
                self.control.policy.not_run(self.step, seq, message)
        self.queue.clear()
        self.queued = 0
        self.queued_bytes = 0

    def _drained(self) -> bool:
        if self._finishing or self._ended < self.senders or self.queue:
            return False
        if len(self.pool.workers) < self.step.nb_thread or self.pool.busy():
            return False
        if self.received != self._expected:
            raise RuntimeError(
                f"step {self.step.name}: received {self.received} messages, senders declared {self._expected}"
            )
        return True
