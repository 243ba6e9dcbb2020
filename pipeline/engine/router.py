"""A step's router thread: holds the step's queue and hands packets to its least recently used worker."""

from __future__ import annotations

import logging
import time
from collections import deque
from itertools import islice

import zmq

from pipeline.config.model import PipelineConfig, StepConfig
from pipeline.engine import sockets
from pipeline.engine.addresses import Addresses
from pipeline.engine.control import BOUND, WORKERS_JOINED, EngineThread, RunControl
from pipeline.engine.flow import (
    HELD_BACK_BYTES,
    PIPE_HWM,
    PREFETCH_BYTES,
    QUEUE_BYTES,
    batch_limit,
    held_back_limit,
    sender_count,
)
from pipeline.engine.outlets import NextSteps
from pipeline.engine.pool import WorkerPool
from pipeline.engine.results import Results
from pipeline.engine.wire import (
    Kind,
    Packet,
    control_frames,
    header_of,
    packet_from_frames,
    parse_added,
    parse_failed,
    parse_lost,
    parse_result,
)
from pipeline.execution.executor import UNORDERED, Outcome
from pipeline.execution.report import StepCounts
from pipeline.failures.describe import RemoteError, failure_line
from pipeline.message import Encoded

log = logging.getLogger("pipeline.engine")

#: Seconds between two warnings about messages a router ignored.
WARN_EVERY_SECONDS = 10.0

#: The routing id of a worker in another process starts with this byte (then "slot.thread");
#: the run's own worker threads take RunControl.thread_prefix.
PROCESS_WORKER = b"p"


def process_worker_id(slot: int, thread: int) -> bytes:
    """The routing id of thread ``thread`` of worker process ``slot``."""
    return b"%s%d.%d" % (PROCESS_WORKER, slot, thread)


def slot_of(worker: bytes) -> int | None:
    """The worker process of a routing id (None: not the id of a worker process's thread)."""
    if worker[:1] != PROCESS_WORKER:
        return None
    slot, dot, thread = worker[1:].partition(b".")
    return int(slot) if dot and slot.isdigit() and thread.isdigit() else None


class WorkerDied(Exception):
    """A message was running in a worker process that died, and in as many as max_redeliveries."""


class Router(EngineThread):
    """Owns one step's queue (bounded by queue_limit and by QUEUE_BYTES) and hands it to the step's workers.

    The step is drained when every upstream sender has sent its end of stream, the messages
    received equal the sum they declared, the queue is empty, every expected worker has joined
    and none holds work. Then each worker is told to finish, and the router stops once all have.

    Workers in other processes return every input's outputs to the router, which sends them on
    and keeps each packet a worker holds until its inputs are answered: when the worker host
    reports the worker's process dead (LOST), what it held goes back to the front of the queue.
    """

    def __init__(self, context: zmq.Context, control: RunControl, config: PipelineConfig, step: StepConfig,
                 addresses: Addresses) -> None:
        super().__init__(f"router-{step.name}", control)
        self.context = context
        self.config = config
        self.step = step
        self.addresses = addresses
        self.senders = sender_count(config, step, bool(control.options.listen))
        # What the router itself counts: the outputs it sends on, and the inputs of process workers.
        self.counts = StepCounts()
        self.busy_time = 0.0  # run() seconds of the step's process workers
        self.max_time = 0.0
        self.redelivered = 0  # messages handed out again after their worker process died
        self.busy_workers = 0  # workers outside the run's process that hold work (the monitor reads it)
        self.first_error: str | None = None  # the first error its process workers reported
        self.fatal = False  # an init()/finish() error of a process worker, or every worker process lost
        self.queue: deque[Packet] = deque()
        self.queued = 0
        self.queued_bytes = 0
        self.received = 0
        self.pool = WorkerPool()
        self.expected_workers = step.workers
        self._numbers: dict[bytes, int] = {}  # process workers' numbers
        self._told_to_finish: set[bytes] = set()  # workers sent FINISH that have not said FINISHED
        self.ignored = 0  # messages from workers outside the run that did not match what they hold
        self._warned = 0.0
        self._finished_threads: dict[int, int] = {}  # per worker process: its threads that ran finish()
        self._slot_threads: dict[int, int] = {}  # threads of the worker processes that joined later (ADDED)
        self._deaths: dict[int, int] = {}  # per message sequence number: worker processes it died in
        self._next_seq = 0
        self._ended = 0
        self._expected = 0
        self._finished = 0
        self._finishing = False  # every worker was told to finish (the worker host reads it: no replacement then)
        self._joined_reported = False
        # While the step has no worker and remote ones may join: since when (None: it has workers).
        self._alone_since: float | None = time.monotonic() if self.expected_workers == 0 else None
        self.results: Results | None = None
        self.no_worker = False  # every worker's init() failed, or every worker process is lost
        self.state = "waiting"  # then running, draining (every sender ended), finished
        # Read input only while a whole packet still fits under the queue limit.
        limit = step.queue_limit
        self._read_below = limit - batch_limit(limit) + 1 if limit > 0 else None

    @property
    def finishing(self) -> bool:
        """Whether every worker has been told to finish: a worker process that joins now has nothing to do."""
        return self._finishing

    @property
    def hears_notices(self) -> bool:
        """Whether the worker host tells this router about worker processes: local or remote ones."""
        return self.step.nb_process > 0 or bool(self.control.options.listen)

    @property
    def returns_results(self) -> bool:
        """Whether the workers return their outputs to this router: an ordered step, or workers in other
        processes (of this host or, with Pipeline.listen, of others)."""
        return self.step.ordered or self.hears_notices

    def work(self) -> None:
        inbox = self.context.socket(zmq.PULL)
        work = self.context.socket(zmq.ROUTER)
        notices = self.context.socket(zmq.PULL)
        outputs = None
        try:
            if self.returns_results:
                if self.step.next_steps:
                    outputs = NextSteps(self.context, self.config, self.step, self.addresses, self.counts,
                                        self.control.handles)
                self.results = Results(outputs, self.step.ordered)
            inbox.rcvhwm = PIPE_HWM
            inbox.linger = 0
            inbox.bind(self.addresses.inbox(self.step.name))
            work.router_mandatory = True
            work.linger = 0
            work.bind(self.addresses.work(self.step.name))
            notices.linger = 0
            if self.step.nb_process:
                work.bind(self.addresses.outside(self.step.name))
            if self.hears_notices:
                notices.bind(self.addresses.notices(self.step.name))
            self.control.events.put((BOUND, self))  # peers may connect now
            self._loop(inbox, work, notices)
            if outputs is not None:
                outputs.end()
            self.state = "finished"
        finally:
            if outputs is not None:
                outputs.close()
            inbox.close()
            work.close()
            notices.close()

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
        return bool(self.queue) or self._ended == self.senders or self.results is not None

    def _loop(self, inbox: zmq.Socket, work: zmq.Socket, notices: zmq.Socket) -> None:
        pollers = {}
        extra = (notices,) if self.hears_notices else ()
        for wanted in ((), (work,), (inbox,), (work, inbox)):
            poller = pollers[wanted] = zmq.Poller()
            for socket in (*wanted, *extra):
                poller.register(socket, zmq.POLLIN)
        while not (self._finishing and self._finished >= self.expected_workers):
            wanted = (work,) if self._needs_workers() else ()
            if self._accepting():
                wanted += (inbox,)
            events = dict(pollers[wanted].poll(self._wait_alone()))
            if notices in events:
                self._read_notices(notices)
            if inbox in events:
                self._read_inbox(inbox)
            if self.queue or work in events:
                self._read_workers(work)
            self._dispatch(work)
            if self.hears_notices:  # workers outside the run: the monitor cannot ask them (a plain int it reads)
                self.busy_workers = self.pool.busy()
            if self._drained():
                self._finishing = True
                for worker in list(self.pool.workers):
                    if self._send(work, worker, control_frames(Kind.FINISH)):
                        self._told_to_finish.add(worker)

    def _read_workers(self, work: zmq.Socket) -> None:
        while sockets.waiting(work):
            received = sockets.recv(work)
            worker = received[0].bytes
            if not self._own(worker) and slot_of(worker) is None:
                self._ignore(worker, "a message under a routing id of neither a thread of the run nor a worker process")
                continue
            kind, value = header_of(received[1])
            if kind is Kind.JOIN:
                if worker in self.pool.workers:
                    self._ignore(worker, "a second JOIN")
                else:
                    self._join(work, worker, value)
            elif kind is Kind.FAILED:  # an init() failure comes before the worker joins
                self._failed(worker, received[1:])
            elif worker not in self.pool.workers:
                continue  # a worker whose process was lost: what it still says is moot
            elif kind is Kind.RESULT:
                self._answered(worker, received[1:])
            elif kind is Kind.READY:
                # A worker outside the run answers each input of its packet before its READY.
                if self.pool.finished_oldest(worker, answered=not self._own(worker)):
                    self.pool.done(worker, value)
                else:
                    self._ignore(worker, "a READY for a packet it has not finished")
            elif kind is Kind.FINISHED:
                if worker not in self._told_to_finish:
                    self._ignore(worker, "a FINISHED before it was told to finish")
                    continue
                self._told_to_finish.discard(worker)
                self._finished += 1
                slot = slot_of(worker)
                if slot is not None:
                    self._finished_threads[slot] = self._finished_threads.get(slot, 0) + 1
        if self.results is not None and self.results.outputs is not None:
            self.results.outputs.flush()

    def _own(self, worker: bytes) -> bool:
        """Whether ``worker`` is a thread of the run's process (buffers go to and from it by number)."""
        return worker.startswith(self.control.thread_prefix)

    def _join(self, work: zmq.Socket, worker: bytes, window: int) -> None:
        """A worker has run init(): it asks for ``window`` messages (0: its init() failed)."""
        if self._finishing:  # a process that came after the end: it has nothing to do but finish()
            if self._send(work, worker, control_frames(Kind.FINISH)):
                self._told_to_finish.add(worker)
            return
        self.pool.join(worker, window)
        self._check_joined()

    def _check_joined(self) -> None:
        """Once every expected worker has joined, tell the runner (the producer starts after that)."""
        joined = self.pool.workers
        if len(joined) == self.expected_workers and not self._joined_reported:
            self._joined_reported = True
            # A worker whose init() failed joins asking for nothing, and a live one never does.
            self.no_worker = bool(joined) and not any(map(self.pool.window, joined))
            if self.step.nb_process:  # the runner waits for these before the producer starts
                self.control.events.put((WORKERS_JOINED, self))

    def _answered(self, worker: bytes, received: list) -> None:
        """A RESULT: count what a process worker did, then send the outputs on."""
        own = self._own(worker)
        answers = parse_result(received, self.control.handles if own else None)
        if not own:  # a thread of this process counts its own work
            answered = [answer.seq for answer in answers if answer.seq != UNORDERED]
            if answered != self.pool.next_seqs(worker, len(answered)):  # within its oldest packet only
                self._ignore(worker, "a RESULT answering messages it was not running")
                return
            counts = self.counts
            for answer in answers:
                if answer.seq == UNORDERED:
                    continue
                packet, index = self.pool.answered(worker)
                counts.received += 1
                if answer.outcome is Outcome.DONE:
                    counts.processed += 1
                elif answer.outcome is Outcome.FAILED:
                    counts.failed += 1
                else:
                    self.control.policy.not_run(self.step, answer.seq, _message_at(packet, index))
                self.busy_time += answer.seconds
                self.max_time = max(self.max_time, answer.seconds)
        if self.results is not None:
            self.results.add(answers)

    def _failed(self, worker: bytes, received: list) -> None:
        """A process worker's error: a message's (the one it answers next), or init()'s / finish()'s."""
        seq, what, line, traceback = parse_failed(received)
        name = self._number(worker)
        error = RemoteError(line, traceback)
        if seq == UNORDERED:
            failure = self.control.policy.lifecycle_failed(self.step.name, name, what, error)
            self.first_error = self.first_error or failure
            self.fatal = True
            if what == "run()":  # a SystemExit or such in run(): the step stops, as in the run's own threads
                self.control.policy.halt(self.step.name, f"step {self.step.name} raised {line} in run()")
            return
        if worker not in self.pool.workers or self.pool.next_seqs(worker, 1) != [seq]:
            self._ignore(worker, f"a failure of message {seq}, which it was not running")
            return
        state = self.pool.workers[worker]
        message = _message_at(state.in_flight[0], state.answered)
        self.first_error = self.first_error or line
        self.control.policy.message_failed(self.step, name, seq, error, message)

    def _ignore(self, worker: bytes, what: str) -> None:
        """Drop what a worker sent that does not match what it holds (a worker outside the run that does
        not keep the protocol); like a worker stuck in run(), it keeps what it holds until it answers or dies."""
        self.ignored += 1
        now = time.monotonic()
        if now - self._warned >= WARN_EVERY_SECONDS:
            self._warned = now
            log.warning("step %s: ignored %s from worker %s (%d ignored in all)", self.step.name, what,
                        worker.decode(errors="replace"), self.ignored)

    def _requeue(self, packets: list[Packet]) -> None:
        """Put ``packets`` back at the front of the queue, in order, counted as delivered again."""
        for packet in reversed(packets):
            self.queue.appendleft(packet)
            self.queued += len(packet)
            self.queued_bytes += packet.nbytes
            self.redelivered += len(packet)

    def _number(self, worker: bytes) -> int:
        """A process worker's number in the step, for logs and the monitor (in order of first sight)."""
        return self._numbers.setdefault(worker, len(self._numbers))

    def _read_notices(self, notices: zmq.Socket) -> None:
        while sockets.waiting(notices):
            received = sockets.recv(notices)
            if header_of(received[0])[0] is Kind.ADDED:
                slot, threads = parse_added(received)
                self._slot_threads[slot] = threads
                self.expected_workers += threads
                self._alone_since = None
            else:
                self._lose(*parse_lost(received))

    def _lose(self, slot: int, reason: str, running: list[int]) -> None:
        """Worker process ``slot`` died while running the messages ``running``: what its workers held
        goes back to the front of the queue; only a message it was running counts the death against it.

        A replacement is announced (ADDED) before the loss, so the step is never taken for empty.
        """
        requeue: list[Packet] = []
        for worker in [worker for worker in self.pool.workers if slot_of(worker) == slot]:
            requeue.extend(self._blame(self.pool.lose(worker), running, worker, reason))
        self._requeue(requeue)
        unfinished = self._slot_threads.get(slot, self.step.nb_thread) - self._finished_threads.get(slot, 0)
        self.expected_workers -= unfinished
        if self._finishing and unfinished > 0:  # what its finish() would have sent is lost
            line = f"step {self.step.name}: a worker process died before its finish() ended ({reason})"
            self.first_error = self.first_error or line
            self.fatal = True
            log.error("%s", line)
        if self.expected_workers == 0:
            if self.control.options.listen:
                self._alone_since = time.monotonic()  # a remote worker may still come
            else:
                self._no_workers_left(f"its worker processes died ({reason})")
        self._check_joined()

    def _no_workers_left(self, why: str) -> None:
        """The step can process nothing: the run fails, naming the step and why."""
        line = f"step {self.step.name} has no workers left: {why}"
        self.first_error = self.first_error or line
        self.fatal = True
        self.no_worker = True
        self._alone_since = None
        self.control.policy.halt(self.step.name, line)

    def _wait_alone(self) -> float | None:
        """Milliseconds the router may wait for a remote worker before the step fails; None: no such wait."""
        if self._alone_since is None or self._finishing:
            return None
        left = self._alone_since + self.control.options.worker_timeout - time.monotonic()
        if left <= 0:
            self._no_workers_left(f"no worker joined within worker_timeout={self.control.options.worker_timeout:g} "
                                  f"s (remote workers connect to {self.control.options.listen} with pipeline-worker)")
            return 0.0  # do not wait: the queue is to be given up now
        return left * 1000

    def _blame(self, packets: list[Packet], running: list[int], worker: bytes, reason: str) -> list[Packet]:
        """Count a death against each message of ``packets`` that was running; one that has now died
        with max_redeliveries workers fails (on_error, dead letters) instead of going round again."""
        kept: list[Packet] = []
        for packet in packets:
            seq = next((s for s in running if packet.first_seq <= s < packet.first_seq + len(packet)), None)
            if seq is None:
                kept.append(packet)
                continue
            deaths = self._deaths[seq] = self._deaths.get(seq, 0) + 1
            if deaths < self.control.options.max_redeliveries:
                kept.append(packet)
                continue
            before, rest = packet.split(seq - packet.first_seq)
            poison, after = rest.split(1)
            kept.extend(p for p in (before, after) if len(p))
            self.counts.received += 1
            self.counts.failed += 1
            error = WorkerDied(f"message {seq} was running in {deaths} worker processes that died (last: {reason})")
            self.first_error = self.first_error or failure_line(error)
            self.control.policy.message_failed(self.step, self._number(worker), seq, error, next(poison.encoded()))
        return kept

    def _read_inbox(self, inbox: zmq.Socket) -> None:
        while self._accepting() and sockets.waiting(inbox):
            received = sockets.recv(inbox)
            kind, value = header_of(received[0])
            if kind is Kind.DATA:
                self.state = "running"
                packet = packet_from_frames(received, handles=self.control.handles)
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
        if self.no_worker or self.step.name in self.control.policy.halted:
            self._drop_queue()
            return
        results = self.results
        if results is not None and results.ordered and (len(results.held) >= held_back_limit(self.step)
                                                        or results.held_bytes >= HELD_BACK_BYTES):
            return  # an early input is late: hand out nothing more until it is done
        while self.queue:
            worker = pool.choose()
            if worker is None:
                return
            size = min(max(1, pool.window(worker) // 2), pool.room(worker))
            packet = self.queue[0]
            if packet.nbytes > PREFETCH_BYTES:  # large messages: a worker is handed PREFETCH_BYTES at a time
                size = min(size, packet.leading_within(PREFETCH_BYTES))
            if len(packet) > size:
                packet, rest = packet.split(size)
            else:
                rest = None
            handles = self.control.handles if self._own(worker) else None
            if not self._send(work, worker, packet.frames(Kind.WORK, handles=handles)):
                continue
            if rest is None:
                self.queue.popleft()
            else:
                self.queue[0] = rest
            self.queued -= len(packet)
            self.queued_bytes -= packet.nbytes
            # A thread of this process is never handed its work again: keeping only the packet's
            # counts lets its buffers be freed as soon as that thread is done with them.
            pool.sent(worker, packet if handles is None else packet.receipt())

    def _send(self, work: zmq.Socket, worker: bytes, payload: list) -> bool:
        """Send to a worker; False if its process has just died (the worker host will report it LOST)."""
        try:
            sockets.send(work, [worker, *payload])
        except zmq.ZMQError as err:
            if err.errno != zmq.EHOSTUNREACH or slot_of(worker) is None:
                raise
            self.pool.stall(worker)
            return False
        return True

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
        if len(self.pool.workers) < self.expected_workers or self.pool.busy():
            return False
        if self.received != self._expected:
            raise RuntimeError(
                f"step {self.step.name}: received {self.received} messages, senders declared {self._expected}"
            )
        return True


def _message_at(packet: Packet, index: int) -> Encoded:
    """Message ``index`` of ``packet``."""
    return next(islice(packet.encoded(), index, None))
