"""A step's router thread: a poll loop over the step's sockets that feeds its ``StepState`` and carries
out what the state says (engine.step_state holds every rule: queue, credit, drain, redelivery).

Sockets, all owned by this thread:

- ``inbox`` (PULL, bound inproc): packets and ends of stream from the upstream senders;
- ``work`` (ROUTER, bound inproc, and ipc for worker processes): the step's workers ask for work
  (JOIN, READY), get it (WORK, FINISH) and answer (RESULT, FAILED, FINISHED);
- ``notices`` (PULL, bound inproc): the supervisor's word that a worker process joined or died;
- the outputs (``NextSteps``) of a step whose workers return their results to the router.

A step of one worker thread (engine.step_threads.runs_inline) has no worker thread: its router runs that
worker itself, handing it each packet by a call where it would send it, and sends its outputs on through
the worker's outlet. A message then crosses one thread less per step: no send to a worker, no wake-up,
no receive, and no READY back.
"""

from __future__ import annotations

import logging
import os

import zmq

from pipeline.config.model import PipelineConfig, StepConfig
from pipeline.engine import sockets
from pipeline.engine.addresses import Addresses
from pipeline.engine.control import BOUND, WORKERS_JOINED, EngineThread, RunControl
from pipeline.engine.flow import PIPE_HWM, sender_count
from pipeline.engine.outlets import NextSteps
from pipeline.engine.rings import Ring, map_pair, ring_paths
from pipeline.engine.step_state import StepState
from pipeline.engine.step_threads import InlineWorker
from pipeline.engine.wire import (
    Kind,
    WireError,
    control_frames,
    header_of,
    packet_from_frames,
    parse_added,
    parse_failed,
    parse_lost,
    parse_result,
    parse_tally,
    parse_worker_id,
    plain_result,
    result_deliveries,
    skip_frames,
    slot_of,
)
from pipeline.execution.executor import Outputs

log = logging.getLogger("pipeline.engine")

#: Milliseconds the socket to the workers keeps what it has not sent yet when the router ends: the BYE to its last
#: worker process, which otherwise waits worker_process.BYE_WAIT_SECONDS to end. A worker process that does not read
#: costs the end of the run at most this (one that is gone, nothing: what waits for it is dropped).
WORK_LINGER_MS = 500


class Router(EngineThread):
    """Runs one step's ``StepState`` on its sockets; the monitor reads the state's plain values."""

    def __init__(self, context: zmq.Context, control: RunControl, config: PipelineConfig, step: StepConfig,
                 addresses: Addresses, members: tuple[str, ...] = (), inline: bool = False) -> None:
        super().__init__(f"router-{step.name}", control, context)
        self.config = config
        self.step = step
        self.addresses = addresses
        #: The fused steps after this one, which its worker processes run (engine.fusion); the outputs that
        #: come back are the last one's, for its next steps.
        self.members = [config.steps[name] for name in members]
        self.tail = self.members[-1] if self.members else step
        # A producer's router has one sender, the runner, which hands it the shards (engine.shards).
        senders = 1 if step.kind == "producer" else sender_count(config, step, bool(control.options.listen))
        self.state = StepState(step, senders, control.options, control.policy, self._own, self.returns_results,
                               members=self.members)
        self.state.refusals = lambda: control.refused  # the door's words on whom it refused
        self.state.stopping = control.stopping.is_set
        self.busy_workers = 0  # workers outside the run's process that hold work (the monitor reads it)
        self.outputs: NextSteps | None = None
        # Per worker thread of a local worker process: its rings (to it, from it); (None, None) for a remote one.
        self._rings: dict[bytes, tuple[Ring | None, Ring | None]] = {}
        #: The step's one worker, when this thread runs it (engine.step_threads.runs_inline).
        self.inline = InlineWorker(control, config, step) if inline else None

    def listening(self) -> bool:
        """Whether the router still reads its notices (a notice to one that finished would wait forever)."""
        return self.is_alive() and self.state.phase != "finished"

    @property
    def hears_notices(self) -> bool:
        """Whether the supervisor tells this router about worker processes: local or remote ones."""
        return self.step.nb_process > 0 or bool(self.control.options.listen)

    @property
    def returns_results(self) -> bool:
        """Whether the workers return their outputs to this router: an ordered step, or workers in other
        processes (of this host or, with Pipeline.listen, of others)."""
        return self.step.ordered or self.hears_notices

    def _own(self, worker: bytes) -> bool:
        """Whether ``worker`` is a thread of the run's process (buffers go to and from it by number)."""
        return worker.startswith(self.control.thread_prefix)

    def work(self) -> None:
        inbox, work, notices = sockets.open_all(self.context, zmq.PULL, zmq.ROUTER, zmq.PULL)
        try:
            if self.returns_results and self.tail.next_steps:
                counts = self.state.tallies.members[-1].sent if self.members else self.state.counts
                self.outputs = NextSteps(self.context, self.config, self.tail, self.addresses, counts,
                                         self.control.handles)
            inbox.rcvhwm = PIPE_HWM
            inbox.linger = 0
            inbox.bind(self.addresses.inbox(self.step.name))
            work.router_mandatory = True
            work.linger = WORK_LINGER_MS
            work.bind(self.addresses.work(self.step.name))
            notices.linger = 0
            if self.step.nb_process:
                work.bind(self.addresses.outside(self.step.name))
            if self.hears_notices:
                notices.bind(self.addresses.notices(self.step.name))
            self.control.events.put((BOUND, self))  # peers may connect now
            if self.inline is not None and not self._start_inline(self.inline):
                return
            self._loop(inbox, work, notices)
            if self.outputs is not None:
                self.outputs.end()
            self.state.phase = "finished"
            self.control.keepers_look.set()  # the supervisor ends its processes now, not at its next look
        finally:
            if self.outputs is not None and self.state.results is not None:
                # Stopped at once (a drained step holds none back): what an ordered step held back for earlier
                # inputs counts as sent but never processed, not lost in silence.
                for messages in self.state.results.abandon():
                    self.outputs.abandon(messages)
            if self.inline is not None:
                self.inline.close()
            if self.outputs is not None:
                self.outputs.close()
            for pair in self._rings.values():
                for ring in pair:
                    if ring is not None:
                        ring.close()
            inbox.close()
            work.close()
            notices.close()

    def _start_inline(self, inline: InlineWorker) -> bool:
        """Once every router is bound, init() the step's one worker here, and let it join: False if the run was
        aborted first."""
        self.control.build.wait()
        if self.control.aborted.is_set():
            return False
        self.state.joined(inline.identity, inline.start(self.context, self.addresses))
        return True

    def _loop(self, inbox: zmq.Socket, work: zmq.Socket, notices: zmq.Socket) -> None:
        state = self.state
        pollers = {}
        extra = (notices,) if self.hears_notices else ()
        for wanted in ((), (work,), (inbox,), (work, inbox)):
            poller = pollers[wanted] = zmq.Poller()
            for socket in (*wanted, *extra):
                poller.register(socket, zmq.POLLIN)
        while not state.done():
            wanted = (work,) if state.needs_workers() else ()
            if state.accepting():
                wanted += (inbox,)
            waits = [wait for wait in (state.wait_alone(), state.settle_losses()) if wait is not None]
            if self._inline_may_run():
                waits.append(0.0)  # read what came, then run the next packet: the queue fills as the step runs
            state.waiting = True  # the keepers judge a stalled worker only while the router is up to date
            events = dict(pollers[wanted].poll(min(waits) * 1000 if waits else None))
            state.waiting = False
            if notices in events:
                self._read_notices(notices)
            if inbox in events:
                self._read_inbox(inbox)
            if state.queue or work in events:
                self._read_workers(work)
            # The runner waits for these before the producer starts: worker processes, or a remote worker's
            if state.joined_now() and (self.step.nb_process or not self.step.workers):
                self.control.events.put((WORKERS_JOINED, self))
            self._dispatch(work)
            if self.inline is not None and not self._inline_may_run() and not sockets.waiting(inbox):
                self.inline.outlet.flush()  # about to wait: what the step sent goes on first
            if self.hears_notices:  # workers outside the run: the monitor cannot ask them (a plain int it reads)
                self.busy_workers = state.busy_workers()
            for worker in state.drained():
                self._finish(work, worker)

    def _read_inbox(self, inbox: zmq.Socket) -> None:
        state = self.state
        handles = self.control.handles
        while state.accepting() and sockets.waiting(inbox):
            received = sockets.recv(inbox)
            kind, value = header_of(received[0])
            if kind is Kind.DATA:
                state.take_input(packet_from_frames(received, handles=handles))
            elif kind is Kind.END:
                state.take_end(value)

    def _read_workers(self, work: zmq.Socket) -> None:
        state = self.state
        while sockets.waiting(work):
            received = sockets.recv(work)
            worker = received[0].bytes
            own = self._own(worker)
            if not own and slot_of(worker) is None:
                state.ignore_stranger(worker)
                continue
            kind, value = header_of(received[1])
            if kind is Kind.READY:
                state.ready(worker, value)
            elif kind is Kind.RESULT:
                joined = worker in state.pool.workers
                if not joined and not state.may_join(worker):
                    continue  # a worker whose process was lost: what it still says is moot
                # The common RESULT goes on as the packet it came in: no object per input or output here.
                if joined and state.forwards(worker) and (plain := plain_result(received[1:], self._ring(worker, 1))):
                    counted = state.answered_done(worker, plain.seqs, plain.seconds, len(plain.outputs))
                    if counted and self.outputs is not None:
                        self.outputs.commit_packet(plain.outputs)
                    continue
                try:
                    answers = parse_result(received[1:], self.control.handles if own else None,
                                           self._ring(worker, 1))
                except WireError as err:  # a worker process's ring record that cannot be (its ring is gone)
                    state.ignore(worker, f"a RESULT that cannot be read ({err})")
                    continue
                if own and self.outputs is not None:  # its thread counted these outputs as it sent them (ToRouter)
                    self.outputs.counts.emitted -= result_deliveries(received[1], len(self.outputs.every))
                self._emit(state.answered(worker, answers))
            elif kind is Kind.JOIN:
                if state.joined(worker, value):
                    self._finish(work, worker)
            elif kind is Kind.FAILED:  # an init() failure comes before the worker joins
                state.failed(worker, parse_failed(received[1:]))
            elif kind is Kind.TALLY:
                try:
                    state.tally(worker, parse_tally(received[1:]))
                except WireError as err:
                    state.ignore(worker, str(err))
            elif kind is Kind.FINISHED and state.finished_worker(worker) and not own:
                # Its process may end now: all it sent, FINISHED last, is read (a local one waits for this,
                # engine.worker_process; to a remote one the door relays it if it is still there).
                self._send(work, worker, control_frames(Kind.BYE))
        if self.outputs is not None:
            self.outputs.flush()
        if state.acks:
            self._acknowledge(work)

    def _read_notices(self, notices: zmq.Socket) -> None:
        while sockets.waiting(notices):
            received = sockets.recv(notices)
            if header_of(received[0])[0] is Kind.ADDED:
                self.state.added(*parse_added(received))
            else:
                loss = parse_lost(received)
                self._emit(self.state.lost(loss))
                self._close_rings(loss.slot)

    def _emit(self, release: list[tuple[int, Outputs]]) -> None:
        """Send on the outputs the state released, in its order."""
        outputs = self.outputs
        if outputs is not None:
            left = iter(release)
            try:
                for seq, messages in left:
                    outputs.commit(seq, messages)
            except BaseException:
                for _, messages in left:  # a stop at once ended a send: the rest never goes, counted (NextSteps)
                    outputs.abandon(messages)
                raise

    def _dispatch(self, work: zmq.Socket) -> None:
        state = self.state
        handles = self.control.handles
        while (offer := state.offer()) is not None:
            if self.inline is not None:  # the step's only worker: it runs here, now, a packet at a time
                if not self.control.aborted.is_set():  # stopped at once: no more of the step's code
                    state.handed(offer)
                    state.ready(offer.worker, self.inline.run(offer.packet))
                return
            own = self._own(offer.worker)
            for seq, delivered in offer.skips:  # before the WORK: its outputs that went on from a worker that died
                self._send(work, offer.worker, skip_frames(seq, delivered))
            frames = offer.packet.frames(Kind.WORK, handles=handles if own else None,
                                         ring=None if own else self._ring(offer.worker, 0))
            if self._send(work, offer.worker, frames):
                state.handed(offer)
            else:
                state.unreachable(offer.worker)
        if state.released:  # held back for inputs the step gave up as it offered
            self._emit(state.take_released())
        if state.acks:
            self._acknowledge(work)

    def _inline_may_run(self) -> bool:
        """Whether this router runs its step's worker, which has work queued and room for it (it is idle whenever
        the router is not running it), and the run was not stopped at once."""
        state = self.state
        return (self.inline is not None and bool(state.queue) and bool(state.pool.waiting)
                and not self.control.aborted.is_set())

    def _acknowledge(self, work: zmq.Socket) -> None:
        """Tell the workers whose chunk of outputs went on (or may wait here) to go on: MORE."""
        for worker in self.state.take_acks():
            self._send(work, worker, control_frames(Kind.MORE))

    def _ring(self, worker: bytes, direction: int) -> Ring | None:
        """A worker process thread's ring to it (``direction`` 0) or from it (1); None for a remote worker, or
        a local one whose rings could not be made (engine.rings)."""
        pair = self._rings.get(worker)
        if pair is None:
            pair = self._rings[worker] = self._open_rings(worker)
        return pair[direction]

    def _open_rings(self, worker: bytes) -> tuple[Ring | None, Ring | None]:
        parsed = parse_worker_id(worker)
        if parsed is None or not self.step.nb_process:
            return None, None
        paths = ring_paths(os.getpid(), self.addresses.run_id, *parsed)
        try:
            pair = map_pair(paths, create=False)
        except OSError:  # a remote worker, a process that could not make its rings, or one that died meanwhile
            return None, None
        for path in paths:  # both ends have mapped them: their memory lasts until both unmap it, whatever ends them
            path.unlink(missing_ok=True)
        return pair

    def _close_rings(self, slot: int) -> None:
        """Unmap the rings of worker process ``slot``, which ended."""
        for worker in [worker for worker in self._rings if slot_of(worker) == slot]:
            for ring in self._rings.pop(worker):
                if ring is not None:
                    ring.close()

    def _finish(self, work: zmq.Socket, worker: bytes) -> None:
        """Tell ``worker`` to run finish() and stop (the inline worker: run its finish() now)."""
        if self.inline is not None:
            self.state.told_to_finish(worker)
            self.inline.finish()
            self.state.finished_worker(worker)
            return
        if self._send(work, worker, control_frames(Kind.FINISH)):
            self.state.told_to_finish(worker)

    def _send(self, work: zmq.Socket, worker: bytes, payload: list) -> bool:
        """Send to a worker; False if its process has just died (the supervisor will report it LOST)."""
        try:
            sockets.send(work, [worker, *payload])
        except zmq.ZMQError as err:
            if err.errno != zmq.EHOSTUNREACH or slot_of(worker) is None:
                raise
            return False
        return True
