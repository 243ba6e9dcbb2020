"""What a step's router knows, as plain objects: it takes events and says what to do, with no socket inside.

A ``StepState`` holds one step's queue (bounded by ``queue_limit`` and ``QUEUE_BYTES``), its workers'
credit (engine.pool), the end-of-stream accounting, which workers belong to which worker process,
what a dead process held and whom to blame for it, the outputs an ordered step holds back
(engine.results), its fused steps' figures (engine.tallies) and the failures its worker processes
reported, held until answered (engine.held_failures). The router thread (engine.router) only reads
its sockets, turns what arrives into calls of this class and carries out what they return, so every
rule here is tested without I/O (tests/test_step_state.py).

The step is drained when every upstream sender has sent its end of stream, the messages received
equal the sum they declared, the queue is empty, every expected worker has joined and none holds
work. Then each worker is told to finish, and the router stops once all have.

Workers in other processes return every input's outputs to the router, which sends them on, and
the state keeps each packet such a worker holds until its inputs are answered: when its process
dies (LOST), what it held goes back to the front of the queue, and only the message it was running
counts the death against it; a message that dies with ``max_redeliveries`` workers fails instead.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import islice

from pipeline.component import Component
from pipeline.config.model import StepConfig
from pipeline.config.options import RunOptions
from pipeline.engine.flow import (
    FANOUT_CREDIT,
    HELD_BACK_BYTES,
    PREFETCH_BYTES,
    QUEUE_BYTES,
    batch_limit,
    fans_out,
    held_back_limit,
    window_limit,
)
from pipeline.engine.held_failures import WHOLE, HeldFailures
from pipeline.engine.pool import WorkerPool
from pipeline.engine.results import Results
from pipeline.engine.shards import ShardBook, read_mark
from pipeline.engine.tallies import MemberFigures, Tallies
from pipeline.engine.wire import NOT_RUN, NOT_STARTED, UNSENDABLE, Answer, Failure, Loss, Packet, Tally, slot_of
from pipeline.errors import WorkerDied
from pipeline.execution.executor import FINISHING, UNORDERED, Outcome, Outputs, Policy
from pipeline.execution.report import StepCounts
from pipeline.failures.describe import RemoteError, failure_line, failure_of_run
from pipeline.message import Encoded

log = logging.getLogger("pipeline.engine")

#: Seconds between two warnings about messages a router ignored.
WARN_EVERY_SECONDS = 10.0


#: Seconds a worker process that ended while its step finished is given for its FINISHEDs to arrive.
FINISH_GRACE_SECONDS = 2.0
#: How many of the reasons why worker processes left the line saying a step has no workers left names.
DEPARTURES_NAMED = 3
#: init() or finish() failures (FAILED of no input) one worker thread outside the run may report for each step it
#: runs: a step's thread fails at most once before its finish() (init(), send_msg() or a shard's generator: the
#: step is failed then) and once in its finish(). A peer's 30 such FAILEDs were each logged and kept.
LIFECYCLE_FAILURES = 2
#: Seconds between two looks of a router whose step waits for a remote worker: a stopping run ends the wait.
ALONE_LOOK_SECONDS = 0.25
#: Most MOREs a worker outside the run may be owed at once: a worker sends at most FANOUT_CREDIT RESULTs that take
#: credit and then one chunk (engine.outlets.ToRouter.partial), before it waits (a shard's, flow.SHARD_CREDIT, fewer).
#: What the router reads it answers with MORE only once it has read all that waits: more owed than this was sent
#: without waiting for them (a peer's 3,000 RESULTs of init() outputs froze its step's router and the door).
MOST_OWED = FANOUT_CREDIT + 1


@dataclass
class _PendingLoss:
    """A worker process that ended after it was told to finish: its workers whose FINISHED may still come."""

    deadline: float
    reason: str
    workers: set[bytes]


@dataclass(frozen=True)
class Offer:
    """Work the state would hand out: ``packet`` to ``worker``, taken from ``taken`` queued packets from
    ``index`` on, which ``remains`` replace (what is left of them: none, a tail, or what was around a late
    input)."""

    worker: bytes
    packet: Packet
    index: int
    remains: tuple[Packet, ...]
    taken: int = 1
    #: Messages of ``packet`` some of whose outputs went on from a worker that died running them, and how many
    #: (the router sends a SKIP for each before the WORK).
    skips: tuple[tuple[int, int], ...] = ()


class StepState:
    """One step's queue, workers and accounting: events in, what to send out.

    ``own(worker)`` tells a thread of the run's process (it counts its own work, and is handed
    buffers by number) from a worker in another process. ``policy`` takes the failures.
    """

    def __init__(self, step: StepConfig, senders: int, options: RunOptions, policy: Policy,
                 own: Callable[[bytes], bool], returns_results: bool,
                 clock: Callable[[], float] = time.monotonic, members: Sequence[StepConfig] = ()) -> None:
        self.step = step
        #: The fused steps after this one that its worker processes run (engine.fusion), and their figures.
        self.members = tuple(members)
        self.tallies = Tallies(len(self.members))
        #: A producer in worker processes (engine.shards): its queue holds its shards, one per process.
        self.shards = ShardBook(step.nb_process) if step.kind == "producer" else None
        self.senders = senders
        self.options = options
        self.policy = policy
        self.own = own
        self.clock = clock
        # What the state itself counts: the inputs of workers outside the run's process.
        self.counts = StepCounts()
        self.busy_time = 0.0  # run() seconds of the step's workers outside the run's process
        self.max_time = 0.0
        self.redelivered = 0  # messages handed out again after their worker process died
        #: The inputs a dead worker gave back that are not handed out again yet: counted as redelivered only once
        #: they are (none may ever be: no worker left to take them, or the step stopped).
        self._given_back: set[int] = set()
        self.first_error: str | None = None  # the first error its workers outside the run reported
        self.fatal = False  # an init()/finish() error of such a worker, or every worker process lost
        self.ignored = 0  # messages from workers outside the run that did not match what they hold
        self.phase = "waiting"  # then running, draining (every sender ended), finished
        self.queue: deque[Packet] = deque()
        self.queued = 0
        self.queued_bytes = 0
        self.received = 0
        self.pool = WorkerPool()
        self.expected_workers = step.workers
        # The outputs that come back are the last fused step's: their targets index its next steps.
        tail = self.members[-1] if self.members else step
        self.results = Results(tail.next_steps, step.ordered) if returns_results else None
        self.no_worker = False  # every worker's init() failed, or every worker process is lost
        self.start_failed = False  # the init() of one of the workers it started with failed: the run does not start
        self.finishing = False  # every worker was told to finish (no replacement, no join then)
        self.finished = 0  # workers that said FINISHED
        self.joined_reported = False
        self._members_changed = False  # a worker joined or a process was lost since joined_now() looked
        self._pending: dict[int, _PendingLoss] = {}  # per slot: a loss waiting for FINISHEDs still on their way
        self._numbers: dict[bytes, int] = {}  # workers outside the run: their numbers in the step
        # Per worker outside the run and step it runs (0: its own, N: fused step N): its init()/finish() failures.
        self._lifecycle_failures: Counter[tuple[bytes, int]] = Counter()
        self._told_to_finish: set[bytes] = set()  # workers told to finish that have not said FINISHED
        self._finished_threads: dict[int, int] = {}  # per worker process: its threads that ran finish()
        self._slot_threads: dict[int, int] = {}  # threads of the worker processes that joined later (ADDED)
        self._lost_slots: set[int] = set()  # worker processes that ended: what they still send is moot
        self._deaths: dict[int, int] = {}  # per message sequence number: worker processes it died in
        self._held_failures = HeldFailures()  # per worker outside the run: the failures it reported, until answered
        self._blamed: dict[int, list[int]] = {}  # per message sequence number: the slots of those processes
        # Worker processes whose death is blamed on a message that then failed for good (poison): their
        # replacements do not count against max_worker_restarts. Replaced, never changed in place: the
        # supervisor reads it from its thread.
        self.forgiven: frozenset[int] = frozenset()
        # Workers outside the run: when each last answered, or was handed work while it held none (a worker
        # that holds work without progress is watched by the supervisor and the door, engine.stall).
        self._progress: dict[bytes, float] = {}
        # The router is waiting in its poll: it has read what its workers sent, so what the state says they hold
        # is up to date (the keepers judge a stall only then; a router blocked sending on has not read the READYs).
        self.waiting = False
        # Chunks of outputs (PARTIAL answers) of inputs still running: per input, how many outputs a worker outside
        # the run sent on so far (a worker that runs it again after a death skips as many; its dead letter says so).
        self._partial: dict[int, int] = {}
        self._unacked: dict[int, bytes] = {}  # per input: the worker whose chunk waits, held back, for its MORE
        self.acks: list[bytes] = []  # workers whose chunk went on (or may wait here): the router sends them MORE
        self._owed: Counter[bytes] = Counter()  # per worker outside the run: the MOREs it is owed (MOST_OWED)
        #: Per worker outside the run: the answers of no input that ended what its init() and then its finish() sent
        #: (one per step it runs, each); a worker in ``_running`` answered an input: its init() is over.
        self._calls_ended: Counter[bytes] = Counter()
        self._running: set[bytes] = set()
        #: Per worker process that broke the protocol (its messages are dropped, what it held is back in the queue):
        #: why, until the door or the supervisor that keeps it has read it (and ends it, naming it).
        self.broken: dict[int, str] = {}
        # Outputs an ordered step held back for inputs it then gave up with its queue (it stopped, or lost its last
        # worker, holding inputs a dead process gave back): the router sends them on.
        self.released: list[tuple[int, Outputs]] = []
        self._departures: list[tuple[int, str]] = []  # the first worker processes that left, and why
        self._departed = 0
        #: What the run refused of remote workers (the door's count of refused handshakes), for that line too.
        self.refusals: Callable[[], str] = lambda: ""
        #: Whether the run is stopping (a signal, on_error stop): no remote worker joins it then (the door tells it to
        #: finish), so a step left without workers waits for none.
        self.stopping: Callable[[], bool] = lambda: False
        self._next_seq = 0
        self._ended = 0
        self._expected = 0
        self._warned = float("-inf")
        # While the step has no worker and remote ones may join: since when (None: it has workers).
        self._alone_since: float | None = clock() if self.expected_workers == 0 else None
        # What one worker may hold, whatever it asks for (a remote one could ask for anything).
        self.window_limit = 1 if self.shards is not None else window_limit(step.queue_limit)
        # Read input only while a whole packet still fits under the queue limit.
        limit = step.queue_limit
        self._read_below = limit - batch_limit(limit) + 1 if limit > 0 else None

    # ------------------------------------------------------------------ what the router asks

    def accepting(self) -> bool:
        """Whether to read input now: senders still sending, and room for a whole packet."""
        if self._ended == self.senders or self.queued_bytes >= QUEUE_BYTES:
            return False
        return self._read_below is None or self.queued < self._read_below

    def needs_workers(self) -> bool:
        """Whether what the workers send matters now.

        While the queue is empty a READY only adds credit that nothing uses yet: it waits in the
        socket until input comes, so a worker's READY does not wake the router (the wake takes the
        GIL just when the worker sends its outputs on).
        """
        return bool(self.queue) or self._ended == self.senders or self.results is not None

    def done(self) -> bool:
        """Whether the step is over: every worker told to finish has said FINISHED (or is settled as lost)."""
        return self.finishing and not self._pending and self.finished >= self.expected_workers

    def busy_workers(self) -> int:
        """How many workers outside the run's process hold work now (the run's own threads count themselves: the
        monitor showed a consumer of one thread busy=2/1 in a run open to remote workers)."""
        own = self.own
        return sum(1 for worker, state in self.pool.workers.items() if state.held and not own(worker))

    def wait_alone(self) -> float | None:
        """Seconds the router may wait for a remote worker before the step fails, looking again at least every
        ALONE_LOOK_SECONDS; None: no such wait (0 once the wait is over: the step has no workers left and its queue
        is given up). A stopping run waits for none while the step holds messages: none would join it."""
        if self._alone_since is None or self.finishing:
            return None
        left = self._alone_since + self.options.worker_timeout - self.clock()
        stopping = bool(self.queue) and self.stopping()  # with nothing queued, the drain ends the wait as it finishes
        if left <= 0 or stopping:
            if stopping:
                others, nobody = "the run is stopping: none joins it", "the run is stopping: no worker joins it"
            else:
                timeout = f"worker_timeout={self.options.worker_timeout:g} s"
                others, nobody = f"no other joined within {timeout}", f"no worker joined within {timeout}"
            why = f"{self._departure_line()}, and {others}" if self._departures else nobody
            refused = self.refusals()
            self._no_workers_left(f"{why} (remote workers connect to {self.options.listen} with pipeline-worker"
                                  f"{'; ' + refused if refused else ''})")
            return 0.0
        return min(left, ALONE_LOOK_SECONDS)

    def _departure_line(self) -> str:
        """What became of the worker processes that left, the first few named with their reasons."""
        if self._departed == 1:
            slot, reason = self._departures[0]
            return f"its worker process {slot} left ({reason})"
        more = self._departed - len(self._departures)
        named = "; ".join(f"{slot}: {reason}" for slot, reason in self._departures)
        return f"its {self._departed} worker processes left ({named}{f'; and {more} more' if more > 0 else ''})"

    # ------------------------------------------------------------------ input

    def take_input(self, packet: Packet) -> None:
        """A packet from an upstream sender: number its messages and queue it."""
        self.phase = "running"
        packet.first_seq = self._next_seq
        self._next_seq += len(packet)
        self.received += len(packet)
        self.queued += len(packet)
        self.queued_bytes += packet.nbytes
        self.queue.append(packet)

    def take_end(self, count: int) -> None:
        """An upstream sender has sent its last message: ``count`` messages in all."""
        self._ended += 1
        self._expected += count
        if self._ended == self.senders and self.shards is None:  # a producer's shards run on: it is running
            self.phase = "draining"

    # ------------------------------------------------------------------ handing out work

    def offer(self) -> Offer | None:
        """The next work to hand out, if any: the oldest queued messages to the worker idle the longest, with
        the SKIPs of those some of whose outputs went on before.

        Past an ordered step's limit of held-back results only the input they all wait for is
        handed out (it was redelivered after its worker died): it must always be dispatchable. So
        while no worker runs it (it is queued, or handed to a worker busy with a later input), the
        workers whose chunks wait here for their MORE are let go on: they may be all the step has,
        and one of them may hold it behind the input whose chunk waits.
        """
        if self._unacked and self._earliest_waits():
            self.acks.extend(self._unacked.values())
            self._unacked.clear()
        offer = self._offer()
        if offer is None or not self._partial:
            return offer
        first, end = offer.packet.first_seq, offer.packet.first_seq + len(offer.packet)
        skips = tuple((seq, count) for seq, count in self._partial.items() if first <= seq < end)
        return dataclasses.replace(offer, skips=skips) if skips else offer

    def _earliest_waits(self) -> bool:
        """Whether no worker runs the input an ordered step's outputs wait for: it is in no worker's oldest
        packet (a worker runs its oldest packet's inputs in order, and those before it there are answered)."""
        if self.results is None:
            return False
        seq = self.results.next_seq
        for held in self.pool.workers.values():
            if held.in_flight:
                oldest = held.in_flight[0]
                if oldest.first_seq <= seq < oldest.first_seq + len(oldest):
                    return False
        return True

    def _offer(self) -> Offer | None:
        """The next work to hand out, if any (``offer`` without its SKIPs)."""
        if not self.queue:
            return None
        if self.no_worker or self.step.name in self.policy.halted:
            self._drop_queue()
            return None
        ending = self._ended == self.senders  # no more input comes: what is left is shared out (WorkerPool.share_out)
        if ending:  # lest one worker still run a long packet at the end while the others idle
            chosen = self.pool.share_out(self.queued)
            if chosen is None:
                return None  # each worker with room holds its share: the next READY offers again
            worker, share = chosen
        else:
            first = self.pool.choose()
            if first is None:
                return None
            worker, share = first, self.pool.room(first)
        index = 0
        results = self.results
        limit = held_back_limit(self.expected_workers, self.step.queue_limit)
        if results is not None and results.ordered and (len(results.held) >= limit
                                                        or results.held_bytes >= HELD_BACK_BYTES):
            found = self._find(results.next_seq)
            if found is None:
                return None  # the late input is at a worker: wait for it
            index, at = found
            before, rest = self.queue[index].split(at)
            late, after = rest.split(1)
            return Offer(worker, late, index, tuple(p for p in (before, after) if len(p)))
        size = min(max(1, self.pool.window(worker) // 2), self.pool.room(worker), share)
        # Consecutive queued packets (each sender's batch is one), up to ``size`` messages and PREFETCH_BYTES
        # (at least one message): one packet handed out, not one per batch that came in.
        taken: list[Packet] = []
        count = nbytes = 0
        for packet in self.queue:
            if count >= size or (taken and (nbytes >= PREFETCH_BYTES
                                           or packet.first_seq != taken[-1].first_seq + len(taken[-1]))):
                break
            taken.append(packet)
            count += len(packet)
            nbytes += packet.nbytes
        if count < size and nbytes < PREFETCH_BYTES and self.pool.held(worker) >= 2 and not ending:
            # The worker has work for a while: wait for a whole packet (``size`` messages, or PREFETCH_BYTES of
            # them) rather than send a few messages now (each packet costs its worker a wake-up and a round trip;
            # to another process, two switches). Not waiting for bytes that never come: a window of 150 camera
            # events asked for 75, PREFETCH_BYTES holds 28, and the worker got work only once it had run dry.
            return None
        packet = Packet.concat(taken)
        if packet.nbytes > PREFETCH_BYTES:  # large messages: a worker is handed PREFETCH_BYTES at a time
            size = min(size, packet.leading_within(PREFETCH_BYTES))
        if len(packet) <= size:
            return Offer(worker, packet, 0, (), len(taken))
        packet, rest = packet.split(size)
        return Offer(worker, packet, 0, (rest,), len(taken))

    def handed(self, offer: Offer) -> None:
        """The offered work went to its worker."""
        for _ in range(offer.taken):
            del self.queue[offer.index]
        for remain in reversed(offer.remains):
            self.queue.insert(offer.index, remain)
        packet = offer.packet
        self.queued -= len(packet)
        self.queued_bytes -= packet.nbytes
        if self._given_back:
            again = self._given_back.intersection(range(packet.first_seq, packet.first_seq + len(packet)))
            self.redelivered += len(again)
            self._given_back -= again
        # A thread of this process is never handed its work again: keeping only the packet's counts
        # lets its buffers be freed as soon as that thread is done with them.
        if self.own(offer.worker):
            for seq, _ in offer.skips:  # a thread of this process never dies: its outputs go on from it
                self._partial.pop(seq, None)
            self.pool.sent(offer.worker, packet.receipt())
            return
        if not self.pool.held(offer.worker):
            self._progress[offer.worker] = self.clock()  # it held nothing: its wait for progress starts now
        self.pool.sent(offer.worker, packet)

    def unreachable(self, worker: bytes) -> None:
        """A worker could not be sent to (its process has just died): it gets no more work until it is lost."""
        self.pool.stall(worker)

    def _find(self, seq: int) -> tuple[int, int] | None:
        """Where input ``seq`` waits in the queue: (packet index, message index), or None."""
        for index, packet in enumerate(self.queue):
            if packet.first_seq <= seq < packet.first_seq + len(packet):
                return index, seq - packet.first_seq
        return None

    def _drop_queue(self) -> None:
        """Give up the queued messages: every worker's init() failed, or the step stopped after a failure.

        The report counts them as never processed; a stopped step's go to the dead-letter file
        as not run, to replay after the fix. Holding them would keep the step from draining. An ordered
        step's outputs held back for them go on without them (those a dead process gave back come before
        outputs already answered): they were processed, and would otherwise wait for ever.
        """
        release: list[tuple[int, Outputs]] = []
        for packet in self.queue:
            numbers = range(packet.first_seq, packet.first_seq + len(packet))
            if self.shards is None:  # a producer's shards are no messages
                self.counts.received += len(packet)  # received by the step, though no worker got them
                for seq, message in zip(numbers, packet.encoded(), strict=True):
                    # One that ran in part in a process that died: a replay skips what of it went on.
                    self.policy.not_run(self.step, seq, message, self._partial.pop(seq, 0))
            if self.results is not None:
                for seq in numbers:
                    release.extend(self.results.skip(seq))
        if release:
            self._ack_released(release)
            self.released.extend(release)
        self.queue.clear()
        self._given_back.clear()
        self.queued = 0
        self.queued_bytes = 0

    # ------------------------------------------------------------------ what workers say

    def joined(self, worker: bytes, window: int) -> bool:
        """A worker has run init() and asks for ``window`` messages (0: its init() failed). True if it
        must be told to finish at once (it came after the end: it has nothing to do but finish())."""
        if worker in self.pool.workers:
            self.ignore(worker, "a second JOIN")
            return False
        if not self.may_join(worker):
            return False  # its process was lost (its JOIN came after the notice): it takes no work
        if window < 1 and not self.own(worker) and not any(key[0] == worker for key in self._lifecycle_failures):
            # A step whose only worker did so would not start, and the run end "finished" having done nothing.
            self._breach(worker, "it joined asking for no messages (its init() failed) without saying how it failed")
            return False
        if self.finishing:
            return True
        self.pool.join(worker, min(window, self.window_limit))
        self._alone_since = None
        self._members_changed = True
        return False

    def told_to_finish(self, worker: bytes) -> None:
        """``worker`` was sent FINISH (a worker outside the run then holds it, as work, until its FINISHED)."""
        self._told_to_finish.add(worker)
        if not self.own(worker):
            self._progress[worker] = self.clock()

    def ready(self, worker: bytes, window: int) -> None:
        """A worker finished its oldest packet and asks for ``window`` messages."""
        if worker not in self.pool.workers:
            return  # a worker whose process was lost: what it still says is moot
        if window < 1 and not self.own(worker):  # it would hold a place in the step and never take work
            self._breach(worker, "a READY asking for no messages")
            return
        # A worker outside the run answers each input of its packet before its READY.
        if worker in self._progress:
            self._progress[worker] = self.clock()
        if self.pool.finished_oldest(worker, answered=not self.own(worker)):
            self.pool.done(worker, min(window, self.window_limit))
        else:
            self.ignore(worker, "a READY for a packet it has not finished")

    def answered(self, worker: bytes, answers: Sequence[Answer]) -> list[tuple[int, Outputs]]:
        """A RESULT: count what a worker outside the run did; the outputs to send on now, in order. A chunk
        (PARTIAL) answers nothing yet: its outputs go on (or wait their turn) and its worker waits for MORE."""
        if worker not in self.pool.workers:
            return self._before_join(worker, answers)
        # The router's hot path for worker processes: a pass over each RESULT's answers, names bound once.
        partial, done = Outcome.PARTIAL, Outcome.DONE
        chunks = True  # whether the answers may hold chunks (a thread of this process: not looked at)
        if not self.own(worker):  # a thread of this process counts its own work
            expected = self.pool.next_seqs(worker, len(answers))  # within its oldest packet only
            at = 0
            chunks = False
            for answer in answers:
                if answer.seq == UNORDERED:
                    if answer.outcome is partial:
                        chunks = True  # a chunk of init()'s or finish()'s outputs: its worker waits for MORE too
                    continue
                if at >= len(expected) or answer.seq != expected[at]:
                    self.ignore(worker, "a RESULT answering messages it was not running")
                    return []
                if answer.outcome is partial:
                    chunks = True  # its chunks come before its answer, for the same input
                else:
                    at += 1
            if not self._in_turn(worker, answers):
                return []
            self._progress[worker] = self.clock()
            counts = self.counts
            if self.shards is not None:
                self._shard_answers(self.shards, worker, answers)
            answered = self.pool.answered
            for answer in answers if self.shards is None else ():
                seq = answer.seq
                if seq == UNORDERED:
                    continue
                outcome = answer.outcome
                if outcome is partial:
                    self._partial[seq] = self._partial.get(seq, 0) + answer.stands_for
                    continue
                delivered = self._partial.pop(seq, 0) if self._partial else 0
                packet, index = answered(worker)
                counts.received += 1
                if outcome is done:
                    counts.processed += 1
                elif outcome is Outcome.FAILED:
                    counts.failed += 1
                else:
                    self.policy.not_run(self.step, seq, _message_at(packet, index), delivered)
                seconds = answer.seconds
                self.busy_time += seconds
                if seconds > self.max_time:
                    self.max_time = seconds
            self._take_tally(worker)
            if self._held_failures:
                self._release_failures(worker, answers)
        if self.results is None:
            return []
        release = self.results.add(answers)
        if self.shards is not None:  # a RESULT of a shard, read (_shard_answers) and sent on, or held back in turn
            shard = next((answer.seq for answer in answers if answer.outcome is partial), UNORDERED)
            self._chunk_taken(worker, shard, release)  # it may send another: MORE (flow.SHARD_CREDIT), or wait its turn
        else:
            chunked = [answer.seq for answer in answers if answer.outcome is partial] if chunks else []
            for seq in chunked:
                self._chunk_taken(worker, seq, release)
            if not chunked:
                self._credit_fan_out(worker, _outputs_of(answers), len(answers))
        if self._unacked:
            self._ack_released(release)
        return release

    def may_join(self, worker: bytes) -> bool:
        """Whether what a worker that has not joined sends counts: a thread of this process, or a worker process that
        was not lost (its JOIN comes once every init() of its steps has returned, and what they send may come first)."""
        slot = slot_of(worker)
        return self.own(worker) or (slot is not None and slot not in self._lost_slots)

    def _before_join(self, worker: bytes, answers: Sequence[Answer]) -> list[tuple[int, Outputs]]:
        """A RESULT of a worker yet to join: what its init()s sent (a chunk's worth goes at once, and a fused group's
        first step's init() runs after the others have sent theirs), which goes on; a chunk of it, and any RESULT
        of a producer's shard, is answered MORE. Inputs it cannot have been given are ignored."""
        if not self.may_join(worker):
            return []  # a worker whose process was lost
        if any(answer.seq != UNORDERED for answer in answers):
            self.ignore(worker, "a RESULT answering messages before it joined")
            return []
        if not self.own(worker) and not self._in_turn(worker, answers):
            return []
        self._take_tally(worker)
        self.acks.extend([worker] * self._mores(answers))
        return self.results.add(answers) if self.results is not None else []

    def _mores(self, answers: Sequence[Answer]) -> int:
        """The MOREs a RESULT of ``answers`` is owed: one for a shard's, else one per chunk, else one if it fans out."""
        if self.shards is not None:
            return 1
        chunks = sum(1 for answer in answers if answer.outcome is Outcome.PARTIAL)
        return chunks or int(fans_out(_outputs_of(answers), len(answers)))

    def _in_turn(self, worker: bytes, answers: Sequence[Answer]) -> bool:
        """Whether a RESULT of ``worker``, outside the run, comes when a worker may send it: answers of no input (what
        its init() or finish() sent, chunks then one answer per step it runs) only before it answers an input, or
        once told to finish; and within the MOREs it may be owed. If not, it broke the protocol (``_breach``)."""
        told = worker in self._told_to_finish
        # What its init() sent may come after it was told to finish: its JOIN goes first, and a worker that joins a
        # step that is ending is told at once (an honest one was dropped for it). Its calls end in turn, init()'s
        # first: told, it may have ended both.
        calls = len(self.members) + 1
        most = 2 * calls if told else calls
        ended = self._calls_ended[worker]
        of_inputs = False
        for answer in answers:
            if answer.seq != UNORDERED:
                of_inputs = True
                continue
            if ended >= most or (worker in self._running and not told):
                call = "finish()" if told else "init()"
                self._breach(worker, f"outputs of no input after its {call} ended")
                return False
            if answer.outcome is not Outcome.PARTIAL:
                ended += 1
        if not self._within_credit(worker, self._mores(answers)):
            return False
        if ended:
            self._calls_ended[worker] = ended
        if of_inputs:
            self._runs(worker)
        return True

    def _runs(self, worker: bytes) -> None:
        """``worker``, outside the run, answered an input: its init() is over, whatever it sent (one that sent nothing
        ended it too), and its next answers of no input are its finish()'s."""
        if worker not in self._running:
            self._running.add(worker)
            self._calls_ended[worker] = len(self.members) + 1

    def _within_credit(self, worker: bytes, mores: int) -> bool:
        """Whether ``worker`` may be owed ``mores`` more MOREs (MOST_OWED); they are counted if so, else it broke the
        protocol."""
        owed = self._owed[worker] + mores
        if owed > MOST_OWED:
            self._breach(worker, f"{owed} RESULTs unanswered by a MORE, more than the {MOST_OWED} a worker sends "
                                 "before it waits for one")
            return False
        if mores:
            self._owed[worker] = owed
        return True

    def _breach(self, worker: bytes, why: str) -> None:
        """``worker``, outside the run, broke the protocol: its process is taken as lost at once (what it held goes
        back to the queue, what it sends from now on is moot), and ``broken`` says why to its keeper (the door or the
        supervisor), which ends it and names it."""
        slot = slot_of(worker)
        if slot is None or slot in self._lost_slots:
            return
        self.broken[slot] = why
        self.released.extend(self.lost(Loss(slot, f"it broke the protocol: {why}", [])))

    def _credit_fan_out(self, worker: bytes, outputs: int, inputs: int) -> None:
        """A RESULT without chunks (nor a shard's) of ``inputs`` inputs and ``outputs`` outputs is read: if it fans out
        (flow.fans_out), its worker may send another once its outputs went on (MORE, flow.FANOUT_CREDIT)."""
        if fans_out(outputs, inputs):
            self.acks.append(worker)

    def forwards(self, worker: bytes) -> bool:
        """Whether the outputs of a plain RESULT of ``worker`` (wire.PlainResult) may go on as they came: a worker
        process of an unordered step, with nothing held back for it (chunks, failures, MOREs, shards)."""
        return (self.results is not None and not self.results.ordered and self.shards is None and not self._partial
                and not self._held_failures and not self._unacked and not self.own(worker))

    def answered_done(self, worker: bytes, seqs: range, seconds: Sequence[float], outputs: int) -> bool:
        """A plain RESULT of ``worker`` (``forwards``): its inputs ``seqs`` all answered DONE, their run()s took
        ``seconds``, and it holds ``outputs`` outputs; counted as ``answered`` counts them. False if they are not the
        inputs it was running (ignored)."""
        if seqs != self.pool.next_seqs(worker, len(seqs)):
            self.ignore(worker, "a RESULT answering messages it was not running")
            return False
        if not self._within_credit(worker, int(fans_out(outputs, len(seqs)))):
            return False
        self._runs(worker)
        self._credit_fan_out(worker, outputs, len(seqs))
        self._progress[worker] = self.clock()
        self.pool.answered_many(worker, len(seqs))
        self.counts.received += len(seqs)
        self.counts.processed += len(seqs)
        if seconds:
            self.busy_time = sum(seconds, self.busy_time)  # added one by one, as answered adds them
            self.max_time = max(self.max_time, max(seconds))
        self._take_tally(worker)
        return True

    def _take_tally(self, worker: bytes) -> None:
        """The figures of the fused steps ``worker`` sent before its answers (a TALLY) count from now on."""
        if self.tallies.take(worker) and self.shards is not None:
            self.max_time = max(self.max_time, self.tallies.head.max_time)

    def _chunk_taken(self, worker: bytes, seq: int, release: list[tuple[int, Outputs]]) -> None:
        """A chunk of input ``seq`` came from ``worker``, which waits for MORE: it goes on at once if its outputs
        went on, or wait here within HELD_BACK_BYTES; past that it waits until its input is in turn. An ordered
        producer's shards are its inputs: a shard that runs ahead of the one before it waits so too."""
        results = self.results
        if (results is None or not results.ordered or seq == UNORDERED or results.held_bytes < HELD_BACK_BYTES
                or any(released == seq for released, _ in release)):
            self.acks.append(worker)
        else:
            self._unacked[seq] = worker

    def _ack_released(self, release: list[tuple[int, Outputs]]) -> None:
        """Let go on the workers whose held chunks are now sent on."""
        for seq, _ in release:
            waiting = self._unacked.pop(seq, None)
            if waiting is not None and waiting in self.pool.workers:
                self.acks.append(waiting)

    def take_acks(self) -> list[bytes]:
        """The workers to send MORE now (each once)."""
        acks, self.acks = self.acks, []
        owed = self._owed
        for worker in acks:
            if owed[worker] > 1:
                owed[worker] -= 1
            else:
                owed.pop(worker, None)
        return acks

    def take_released(self) -> list[tuple[int, Outputs]]:
        """The outputs to send on that no answer or loss released: those held back for inputs given up (each once)."""
        released, self.released = self.released, []
        return released

    def _shard_answers(self, shards: ShardBook, worker: bytes, answers: Sequence[Answer]) -> None:
        """A producer's worker process answers: messages of the shard it runs (chunks of it, to send on), messages
        of its init() or finish() (of no input: no shard's), or the shard's end, with its seconds in the generator.
        The producer processed the messages its generator yielded, as in every mode (not those of init() and
        finish()); with fused steps after it, a chunk holds their outputs and says how many of its messages it
        stands for."""
        for answer in answers:
            if answer.seq == UNORDERED:  # init()'s or finish()'s messages, even a chunk's worth: no shard's
                continue
            if answer.outcome is Outcome.PARTIAL:
                self.counts.processed += answer.stands_for
                shards.sent[answer.seq] += answer.stands_for
            else:
                self.pool.answered(worker)
                if answer.outcome is Outcome.FAILED:
                    self.counts.failed += 1
                self.busy_time += answer.seconds

    def failed(self, worker: bytes, failure: Failure) -> None:
        """A worker outside the run reports an error: a message's (the one it answers next), or its
        init()'s / finish()'s (``seq`` UNORDERED); or one of a fused step after this one."""
        if failure.member:
            self._member_failed(worker, failure)
            return
        seq, what, line = failure.seq, failure.what, failure.error
        number = self._number(worker)
        error = RemoteError(line, failure.traceback)
        if seq == UNORDERED:
            if not self._lifecycle_failure(worker, failure):
                return
            failure = self.policy.lifecycle_failed(self.step.name, number, what, error)
            self.first_error = self.first_error or failure
            self.fatal = True  # the generator of a shard: the policy halts the producer, its other shards stop too
            return
        if what == UNSENDABLE and self.shards is not None and worker in self.pool.workers:
            # A value of a shard that could not be pickled (engine.shards.ShardSink.unsendable): it counts once the
            # chunk that stands for its place comes, as a fused step's failure does.
            shard, place = read_mark(seq)
            if not 0 <= shard < self.shards.count or self._held_failures.holds(worker, shard, place):
                self.ignore(worker, f"a failure of value {place} of shard {shard}, which it cannot have made, or again")
                return

            def count_value() -> None:
                # Failed, not processed: the chunk that stands for its place counted it as made, as any of the shard's.
                self.counts.processed -= 1
                self.counts.failed += 1
                self.first_error = self.first_error or line
                self.policy.message_failed(self.step, number, place, error, None)

            if self.shards.covers(shard, place):
                count_value()  # its chunk came first
            else:
                self._held_failures.hold(worker, shard, place, count_value)
            return
        if worker not in self.pool.workers or self.pool.next_seqs(worker, 1) != range(seq, seq + 1):
            self.ignore(worker, f"a failure of message {seq}, which it was not running")
            return
        if self._held_failures.holds(worker, seq):  # a worker outside the run may say anything twice
            self.ignore(worker, f"a second failure of message {seq}")
            return
        state = self.pool.workers[worker]
        message = _message_at(state.in_flight[0], state.answered)
        delivered = self._partial.get(seq, 0)

        def count() -> None:
            self.first_error = self.first_error or failure_of_run(line, failure.fatal)
            self.fatal = self.fatal or failure.fatal
            self.policy.message_failed(self.step, number, seq, error, message, delivered, failure.fatal)

        # It counts once its answer comes (the worker sends it after this, on the same socket): a process that dies
        # before has the message run again, which fails again (one dead letter, not two; max_failures counts one).
        self._held_failures.hold(worker, seq, WHOLE, count)

    def _lifecycle_failure(self, worker: bytes, failure: Failure) -> bool:
        """Whether an init() or finish() failure of ``worker`` counts: past LIFECYCLE_FAILURES for the step it names,
        it is ignored."""
        key = (worker, failure.member)
        if self._lifecycle_failures[key] >= LIFECYCLE_FAILURES:
            self.ignore(worker, f"an init() or finish() failure beyond the {LIFECYCLE_FAILURES} a worker thread has")
            return False
        self._lifecycle_failures[key] += 1
        return True

    def _member_failed(self, worker: bytes, failure: Failure) -> None:
        """An error of the fused step ``failure.member`` (engine.fusion): it carries its own message, since this
        router never held it; the input of this step that led to it stays in flight."""
        if not 1 <= failure.member <= len(self.members):
            self.ignore(worker, f"a failure of fused step {failure.member}, which its step does not have")
            return
        member = self.members[failure.member - 1]
        figures = self.tallies.members[failure.member - 1]
        number = self._number(worker)
        error = RemoteError(failure.error, failure.traceback)
        answer, place = failure.seq, WHOLE  # the input (after a producer: the shard, and its message's place in it)
        if self.shards is not None and failure.seq != UNORDERED:
            answer, place = read_mark(failure.seq)
            failure = dataclasses.replace(failure, seq=place)
        message = failure.message
        if message is not None and answer != UNORDERED and self._unanswered(worker, answer, place):
            # It counts once the answer that covers its message comes: a process that dies before has its input run
            # again, which fails again (one dead letter, not two).
            self._held_failures.hold(worker, answer, place, lambda: self._member_message_failed(
                member, figures, number, error, failure, message))
            return
        if failure.seq == UNORDERED and failure.message is None:  # not a message's (those of init()/finish())
            if not self._lifecycle_failure(worker, failure):
                return
            line = self.policy.lifecycle_failed(member.name, number, failure.what, error)
            figures.first_error = figures.first_error or line
            figures.fatal = True
        elif message is None or (worker not in self.pool.workers and not self.may_join(worker)):
            # A worker yet to join counts: what its init()s sent runs through the fused steps before it joins.
            self.ignore(worker, f"a failure of fused step {member.name} without its message, or from a worker "
                        "whose process was lost")
        else:
            self._member_message_failed(member, figures, number, error, failure, message)

    def _member_message_failed(self, member: StepConfig, figures: MemberFigures, number: int, error: RemoteError,
                               failure: Failure, message: Encoded) -> None:
        """A fused step's ``message`` failed, or was not run: the run's policy logs it and writes its dead letter (one
        that an init() or finish() sent has no number: UNORDERED is no message's)."""
        seq = None if failure.seq == UNORDERED else failure.seq
        if failure.what == NOT_RUN:
            self.policy.not_run(member, seq, message)
        else:
            figures.first_error = figures.first_error or failure_of_run(failure.error, failure.fatal)
            figures.fatal = figures.fatal or failure.fatal
            self.policy.message_failed(member, number, seq, error, message, failure.delivered, failure.fatal)

    def _unanswered(self, worker: bytes, answer: int, place: int) -> bool:
        """Whether ``worker`` still owes the answer that covers a fused step's message: its input's (one it holds
        and has not answered), or after a producer a chunk of shard ``answer`` that goes past ``place``."""
        state = self.pool.workers.get(worker)
        if state is None:
            return False
        if self.shards is not None:
            return 0 <= answer < self.shards.count and not self.shards.covers(answer, place)
        return any(packet.first_seq + (state.answered if index == 0 else 0) <= answer < packet.first_seq + len(packet)
                   for index, packet in enumerate(state.in_flight))

    def _release_failures(self, worker: bytes, answers: Sequence[Answer]) -> None:
        """The failures that ``answers`` cover count now (the step's own, and its fused steps'): an answer of their
        input, or after a producer, a chunk of their shard that stands for their message (the shard's messages sent
        on go past it)."""
        shards = self.shards
        if shards is not None:
            self._held_failures.release(worker, shards.covers)
        else:
            answered = {answer.seq for answer in answers}
            self._held_failures.release(worker, lambda seq, _place: seq in answered)

    def tally(self, worker: bytes, records: Sequence[Tally]) -> None:
        """A worker's figures so far for this step and each fused step after it, sent just before its answers,
        with which they count; of this step's, only what it emitted to the next fused step counts (its answers
        say the rest), and a producer's longest yield (its shards' answers say how long each shard took)."""
        if worker not in self.pool.workers and not self.may_join(worker):
            return  # a worker whose process was lost: what it still says is moot
        if not self.tallies.expect(worker, records):
            self.ignore(worker, "a TALLY of another number of fused steps")

    def slot_told_to_finish(self, slot: int) -> bool:
        """Whether worker process ``slot`` was told to finish (some of its threads ran finish(), or were told to): an
        exit of its own before that, even with status 0, cut its stream short."""
        return slot in self._finished_threads or self._finishing(slot)

    def _finishing(self, slot: int) -> bool:
        """Whether a thread of worker process ``slot`` was told to finish and has not said FINISHED yet (read from any
        thread: the set is copied at once under the GIL)."""
        return any(slot_of(worker) == slot for worker in tuple(self._told_to_finish))

    def finished_worker(self, worker: bytes) -> bool:
        """A worker ran finish() and sent its end of stream; whether that counts (a worker says it once, when told)."""
        if worker not in self.pool.workers:
            slot = slot_of(worker)
            pending = self._pending.get(slot) if slot is not None else None
            if pending is not None and worker in pending.workers:  # it came after its process's loss
                pending.workers.discard(worker)
            elif worker not in self._told_to_finish:
                return False
            # Else it joined after the end: told to finish at once, never in the pool.
        elif worker not in self._told_to_finish:
            self.ignore(worker, "a FINISHED before it was told to finish")
            return False
        self._told_to_finish.discard(worker)
        self._count_finished(worker)
        return True

    def _count_finished(self, worker: bytes) -> None:
        self.finished += 1
        slot = slot_of(worker)
        if slot is not None:
            self._finished_threads[slot] = self._finished_threads.get(slot, 0) + 1

    def drained(self) -> list[bytes]:
        """Once the step is drained, the workers to tell to finish (each once); [] before."""
        if self.finishing or self._ended < self.senders or self.queue:
            return []
        if len(self.pool.workers) < self.expected_workers or self.pool.busy():
            return []
        if self.received != self._expected:
            raise RuntimeError(f"step {self.step.name}: received {self.received} messages, senders declared "
                               f"{self._expected}")
        self.finishing = True
        return list(self.pool.workers)

    def _check_joined(self) -> bool:
        """Whether every expected worker has now joined, for the first time."""
        joined = self.pool.workers
        if len(joined) != self.expected_workers or self.joined_reported or not (joined or self.no_worker):
            return False  # a step of remote workers only waits for its first, or for worker_timeout
        self.joined_reported = True
        # A worker whose init() failed joins asking for nothing, and a live one never does.
        windows = [self.pool.window(worker) for worker in joined]
        self.no_worker = self.no_worker or (bool(joined) and not any(windows))
        self.start_failed = not all(windows)  # as a thread's failed init() stops the run, one process's does
        return True

    # ------------------------------------------------------------------ worker processes come and go

    def added(self, slot: int, threads: int) -> None:
        """Worker process ``slot`` with ``threads`` worker threads joins the step."""
        self._slot_threads[slot] = threads
        self.expected_workers += threads  # the wait for a worker goes on until one joins: a HELLO is no worker
        self._members_changed = True  # its threads may have joined already (what they send may come first)

    def lost(self, loss: Loss) -> list[tuple[int, Outputs]]:
        """A worker process ended (``loss``): what its workers held goes back to the front of the queue;
        only a message it was running counts the death against it. The outputs an ordered step may now
        send on (those that waited for a message that failed for good).

        A replacement is announced (ADDED) before the loss, so the step is never taken for empty. A
        process told to finish may have sent its FINISHEDs just before it ended: they travel through
        another socket and may come after this notice, so it is given FINISH_GRACE_SECONDS for them
        before its finish() is taken for cut short.
        """
        slot, reason, running = loss.slot, loss.reason, loss.running
        if slot in self._lost_slots:
            return []  # dropped already, for breaking the protocol: its keeper's notice comes after
        self._lost_slots.add(slot)
        self._forget_books(slot)
        requeue: list[Packet] = []
        release: list[tuple[int, Outputs]] = []
        told: set[bytes] = set()
        for worker in [worker for worker in self.pool.workers if slot_of(worker) == slot]:
            if worker in self._told_to_finish:
                told.add(worker)
            self._progress.pop(worker, None)
            requeue.extend(self._blame(self.pool.lose(worker), running, worker, reason, release))
            self.tallies.forget(worker)
            self._held_failures.forget(worker)  # its inputs run again, and fail again
        if not loss.clean:
            self._departed += 1
            if len(self._departures) < DEPARTURES_NAMED:
                self._departures.append((slot, reason))
        self._requeue(requeue)
        for seq, waiting in list(self._unacked.items()):
            if slot_of(waiting) == slot:
                del self._unacked[seq]
        if self._unacked:
            self._ack_released(release)
        if told:
            self._pending[slot] = _PendingLoss(self.clock() + FINISH_GRACE_SECONDS, reason, told)
        else:
            self._settle(slot, reason, cut_short=False)
        self._members_changed = True
        return release

    def _forget_books(self, slot: int) -> None:
        """Forget what the protocol's rules keep of the workers of process ``slot``, which ended."""
        for worker in [worker for worker in self._owed if slot_of(worker) == slot]:
            del self._owed[worker]
        for worker in [worker for worker in self._calls_ended if slot_of(worker) == slot]:
            del self._calls_ended[worker]
        self._running -= {worker for worker in self._running if slot_of(worker) == slot}

    def _settle(self, slot: int, reason: str, cut_short: bool) -> None:
        """Count worker process ``slot``'s threads that never said FINISHED out of the step; ``cut_short``: some
        of them were told to finish and did not (what their finish() would have sent is lost: the run fails).

        A process whose death is heard only after its step drained, but which could not be told to finish
        (it was gone), died before its finish() began, as one that dies mid-stream: its replacement, if any,
        runs finish() instead, and the step goes on without it otherwise.
        """
        unfinished = self._slot_threads.get(slot, self.step.nb_thread) - self._finished_threads.get(slot, 0)
        self.expected_workers -= unfinished
        if cut_short and self._finish_sends:
            line = f"step {self.step.name}: a worker process died before its finish() ended ({reason})"
            self.first_error = self.first_error or line
            self.fatal = True
            log.error("%s", line)
        if self.expected_workers == 0 and not self.finishing:
            if self.options.listen:  # a remote worker may still come; an earlier wait goes on (a HELLO ends none)
                self._alone_since = self.clock() if self._alone_since is None else self._alone_since
            elif reason.startswith(NOT_STARTED):
                self._no_workers_left(f"its worker processes could not be started ({reason[len(NOT_STARTED) + 2:]})")
            else:
                self._no_workers_left(f"its worker processes died ({reason})")

    @property
    def _finish_sends(self) -> bool:
        """Whether a finish() of this step or of its fused steps may send or write anything: Component's own does
        nothing, so a worker process that dies in it loses nothing, and the run goes on as after any death."""
        return any(getattr(step.cls, "finish", None) is not Component.finish for step in (self.step, *self.members))

    def settle_losses(self) -> float | None:
        """Settle the losses whose grace is over; seconds until the next one's is (None: none pending)."""
        now = self.clock()
        settled = False
        for slot, pending in list(self._pending.items()):
            if not pending.workers or now >= pending.deadline:
                del self._pending[slot]
                for worker in pending.workers:
                    self._told_to_finish.discard(worker)
                self._settle(slot, pending.reason, cut_short=bool(pending.workers))
                settled = True
        if settled:
            return 0.0  # the step may be done now: the router must look again at once, not wait for an event
        if not self._pending:
            return None
        return max(0.0, min(pending.deadline for pending in self._pending.values()) - now)

    def stalled_for(self, slot: int) -> float | None:
        """Seconds worker process ``slot`` has held work (or a FINISH) without answering any of it (None: it
        holds none).

        Called from the supervisor's or the door's thread: it reads plain values only (a tuple of a dict's
        items is taken at once under the GIL).
        """
        pool = self.pool.workers
        told = self._told_to_finish
        latest = None
        for worker, since in tuple(self._progress.items()):
            held = pool.get(worker)
            if held is not None and (held.held or worker in told) and slot_of(worker) == slot:
                latest = since if latest is None else max(latest, since)
        return None if latest is None else self.clock() - latest

    def holding(self, slot: int, running: Sequence[int], unanswered: list[list[range]] | None = None) -> list[int]:
        """Those of ``running`` (what a remote worker process's heartbeat says it runs) that worker process ``slot``
        holds: a message handed to one of its threads, or FINISHING once one was told to finish. A peer's heartbeat
        may name any number: one that named a message it was never given was taken for busy, and kept the run
        from ending while it held a real one without answering it. ``unanswered``: what ``unanswered(slot)`` gave
        the caller already.

        Called from the door's thread, and the runner's: it reads plain values only (tuples taken at once under the
        GIL)."""
        unanswered = self.unanswered(slot) if unanswered is None else unanswered
        held = [messages for thread in unanswered for messages in thread]
        finishing = self._finishing(slot)
        return [seq for seq in running if any(seq in messages for messages in held) or (seq == FINISHING and finishing)]

    def unanswered(self, slot: int) -> list[list[range]]:
        """Per thread of worker process ``slot`` that holds any: the messages handed to it that it has not answered,
        oldest first. Not the answered inputs of its oldest packet: their outputs went on already, and a heartbeat
        that still named one named a message the run had written (and a forced stop said it was left behind).

        Read from other threads as holding() is."""
        threads = []
        for worker, state in tuple(self.pool.workers.items()):
            if slot_of(worker) != slot:
                continue
            answered = state.answered
            held = [range(packet.first_seq + (answered if index == 0 else 0), packet.first_seq + len(packet))
                    for index, packet in enumerate(tuple(state.in_flight))]
            if any(held):
                threads.append([messages for messages in held if messages])
        return threads

    def stall(self, slot: int, idle_for: float, patience: float) -> float | None:
        """Seconds worker process ``slot`` has held work without progress, if it must be taken for dead: it has
        run none of its messages for ``idle_for`` seconds (its busy board, or a remote one's heartbeats), and both
        exceed ``patience``; None otherwise, or while the router is not up to date (it may not have read the
        answers). A long run() is no stall: the process runs a message."""
        if not self.waiting or idle_for <= patience:
            return None
        held = self.stalled_for(slot)
        return held if held is not None and held > patience else None

    def joined_now(self) -> bool:
        """Whether the expected workers have all joined since the last look (the runner waits for this)."""
        if not self._members_changed:
            return False
        self._members_changed = False
        return self._check_joined()

    def _no_workers_left(self, why: str) -> None:
        """The step can process nothing: the run fails, naming the step and why."""
        line = f"step {self.step.name} has no workers left: {why}"
        self.first_error = self.first_error or line
        self.fatal = True
        self.no_worker = True
        self._alone_since = None
        self._members_changed = True  # a runner waiting for this step's first worker waits no more
        self.policy.halt(self.step.name, line)

    def _blame(self, packets: list[Packet], running: Sequence[int], worker: bytes, reason: str,
               release: list[tuple[int, Outputs]]) -> list[Packet]:
        """Count a death against each message of ``packets`` that was running; one that has now died
        with max_redeliveries workers fails (on_error, dead letters) instead of going round again."""
        kept: list[Packet] = []
        positions: dict[int, int] = {}
        if self.shards is not None:  # a shard's mark names the message of it that was running (engine.shards)
            positions = dict(map(read_mark, running))
            running = list(positions)
        for packet in packets:
            seq = next((s for s in running if packet.first_seq <= s < packet.first_seq + len(packet)), None)
            if seq is None:
                kept.append(packet)
                continue
            if self.shards is not None:  # deaths count per message of the shard, as per message elsewhere
                deaths = self.shards.died(seq, positions[seq], self.options.max_redeliveries)
            else:
                deaths = self._deaths[seq] = self._deaths.get(seq, 0) + 1
            slot = slot_of(worker)
            blamed = self._blamed.setdefault(seq, [])
            if slot is not None:
                blamed.append(slot)
            if self.shards is not None and self.members:
                # A fused step may have died on one message: once as many processes died running it, it goes to the
                # dead letters (engine.shards), and the deaths it caused spend no restarts. One more there is the
                # generator's own: the producer fails.
                if deaths == self.options.max_redeliveries:
                    self.forgiven = self.forgiven | set(self._blamed.pop(seq))
                if deaths <= self.options.max_redeliveries:
                    kept.append(packet)
                    continue
            elif deaths < self.options.max_redeliveries:
                kept.append(packet)
                continue
            if self.shards is not None:  # a shard that kills its processes: the producer fails, as its generator
                line = (f"producer {self.step.name}: shard {seq} was running in {deaths} worker processes that "
                        f"died (last: {reason})")
                self.counts.failed += 1  # as a shard whose generator raised
                self.first_error = self.first_error or line
                self.fatal = True
                log.error("%s", line)
                self.policy.halt(self.step.name, line)
                continue
            # Poison: the deaths it caused do not spend the step's restarts (a night of data has a few such
            # events, and each would otherwise use max_redeliveries restarts; issue 24.11).
            self.forgiven = self.forgiven | set(self._blamed.pop(seq))
            before, rest = packet.split(seq - packet.first_seq)
            poison, after = rest.split(1)
            kept.extend(p for p in (before, after) if len(p))
            self.counts.received += 1
            self.counts.failed += 1
            error = WorkerDied(f"message {seq} was running in {deaths} worker processes that died (last: {reason})")
            self.first_error = self.first_error or failure_line(error)
            self.policy.message_failed(self.step, self._number(worker), seq, error, next(poison.encoded()),
                                       self._partial.pop(seq, 0))
            if self.results is not None:
                release.extend(self.results.skip(seq))
        return kept

    def _requeue(self, packets: list[Packet]) -> None:
        """Put ``packets`` back at the front of the queue, in order, to count as delivered again once handed out (a
        producer's shards to skip what they sent on)."""
        if self.shards is not None:
            packets = [self.shards.again(packet) for packet in packets]
        for packet in reversed(packets):
            self.queue.appendleft(packet)
            self.queued += len(packet)
            self.queued_bytes += packet.nbytes
            self._given_back.update(range(packet.first_seq, packet.first_seq + len(packet)))

    def _number(self, worker: bytes) -> int:
        """A worker's number in the step, for logs and the monitor (in order of first sight)."""
        return self._numbers.setdefault(worker, len(self._numbers))

    def ignore(self, worker: bytes, what: str) -> None:
        """Drop what a worker sent that does not match what it holds (a worker outside the run that does
        not keep the protocol); like a worker stuck in run(), it keeps what it holds until it answers or dies."""
        self.ignored += 1
        now = self.clock()
        if now - self._warned >= WARN_EVERY_SECONDS:
            self._warned = now
            log.warning("step %s: ignored %s from worker %s (%d ignored in all)", self.step.name, what,
                        worker.decode(errors="replace"), self.ignored)

    def ignore_stranger(self, worker: bytes) -> None:
        """A message under a routing id of neither a thread of the run nor a worker process."""
        self.ignore(worker, "a message under a routing id of neither a thread of the run nor a worker process")


def _outputs_of(answers: Sequence[Answer]) -> int:
    """How many outputs ``answers`` hold in all."""
    return sum(len(answer.outputs) for answer in answers)


def _message_at(packet: Packet, index: int) -> Encoded:
    """Message ``index`` of ``packet``."""
    return next(islice(packet.encoded(), index, None))
