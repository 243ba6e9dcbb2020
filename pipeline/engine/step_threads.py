"""What runs a step's Component in the run's process: the producer's thread, each worker thread of a
stager or consumer, and the one worker that a step of one worker thread runs in its router's thread.

Each runs the step's code through a ``StepExecutor`` (execution.executor), which holds the contract
of a step's code; what differs is only where its work comes from: a worker thread asks its step's
router over a socket, an inline worker is called by the router itself (engine.router).
"""

from __future__ import annotations

import os

import zmq

from pipeline.config.model import PipelineConfig, StepConfig
from pipeline.config.options import RunOptions
from pipeline.engine import sockets
from pipeline.engine.addresses import Addresses
from pipeline.engine.control import INIT_DONE, EngineThread, RunControl
from pipeline.engine.flow import FIRST_WINDOW, PREFETCH_SECONDS, Prefetch
from pipeline.engine.handles import Handles
from pipeline.engine.outlets import NextSteps, NoOutputs, Outlet, ToRouter
from pipeline.engine.rings import Ring
from pipeline.engine.wire import Kind, Packet, control_frames, header_of, join_frames, packet_from_frames, parse_skip
from pipeline.execution.executor import Policy, StepExecutor


def runs_inline(step: StepConfig, options: RunOptions) -> bool:
    """Whether ``step``'s one worker runs in its router's thread: a stager or consumer of one worker thread
    and no worker processes, unordered, in a run that no remote worker may join. It spares each message a hop
    between threads (a send, a wake-up, a receive) and the worker its socket to the router."""
    return (step.kind != "producer" and step.nb_process == 0 and step.nb_thread == 1 and not step.ordered
            and not options.listen)


class StepHolder:
    """Holds one Component instance of a step (through its executor) and the outlet its outputs go to."""

    def __init__(self, control: RunControl, config: PipelineConfig, step: StepConfig, index: int,
                 policy: Policy | None = None) -> None:
        self.control = control
        self.config = config
        self.step = step
        self.index = index
        self.executor = StepExecutor(step, index, policy or control.policy)
        self.init_ok = False
        self.outlet: Outlet = NoOutputs()

    def next_steps_outlet(self, context: zmq.Context, addresses: Addresses) -> Outlet:
        """Where the outputs of a worker in the run's process go: to the next steps' routers (nowhere for a
        consumer)."""
        if not self.step.next_steps:
            return NoOutputs()
        return NextSteps(context, self.config, self.step, addresses, self.executor.counts, self.control.handles)

    def open(self, outlet: Outlet) -> None:
        """Take ``outlet`` for this worker's outputs; the Flusher watches it from now on."""
        outlet.lock.acquire()
        self.outlet = outlet
        self.executor.sink = outlet
        self.control.flusher.add(outlet)

    def close(self) -> None:
        """Stop the Flusher watching the outlet, then close its sockets."""
        self.control.flusher.remove(self.outlet)
        self.outlet.close()

    def start_component(self) -> bool:
        """Build and init() the Component, then report to the runner; whether the step may take messages."""
        self.init_ok = self.executor.start(lambda: self.config.make_component(self.step.name))
        self.control.events.put((INIT_DONE, self))
        return self.init_ok

    def run_packet(self, packet: Packet) -> None:
        """Run the step on each message of ``packet``."""
        self.executor.run(packet.messages())

    @property
    def busy_time(self) -> float:
        """Seconds in the step's code so far (fused steps' too: a message's time is its whole group's)."""
        return self.executor.busy_time

    def take(self, packet: Packet, prefetch: Prefetch) -> int:
        """Run ``packet``; how many messages to ask for next (``prefetch``: this worker's)."""
        before = self.busy_time
        self.run_packet(packet)
        return prefetch.after(len(packet), self.busy_time - before)


class StepThread(StepHolder, EngineThread):
    """A thread that owns one Component instance (through its executor) and the sockets it sends through."""

    def __init__(self, context: zmq.Context, run: RunControl, config: PipelineConfig, step: StepConfig,
                 addresses: Addresses, index: int, policy: Policy | None = None) -> None:
        EngineThread.__init__(self, f"{step.name}#{index}", run, context)
        StepHolder.__init__(self, run, config, step, index, policy)
        self.addresses = addresses


class InlineWorker(StepHolder):
    """The one worker of a step that its router runs in its own thread (``runs_inline``): the router hands it
    a packet by calling ``run``, where a worker thread would be sent it; it answers as a thread of the run
    (its buffers come by number), sizes its window as one does, and ends when the router calls ``finish``."""

    def __init__(self, control: RunControl, config: PipelineConfig, step: StepConfig) -> None:
        super().__init__(control, config, step, 0)
        #: Its routing id in its router's state, as a worker thread of the run would name itself.
        self.identity = control.thread_prefix + b"0"
        self.prefetch = Prefetch(step.queue_limit)

    def start(self, context: zmq.Context, addresses: Addresses) -> int:
        """Open its outlet (in the router's thread, which owns its sockets) and init() the step; what init()
        sent goes on now, not with the first packet's outputs. The window it joins with (0: init() failed)."""
        self.open(self.next_steps_outlet(context, addresses))
        started = self.start_component()
        self.outlet.flush()
        return FIRST_WINDOW if started else 0

    def run(self, packet: Packet) -> int:
        """Run the step on each message of ``packet``; how many messages to be handed next."""
        return self.take(packet, self.prefetch)

    def finish(self) -> None:
        """Call finish() and send the end of stream on."""
        self.executor.finish()
        self.outlet.end()


class ProducerThread(StepThread):
    """Runs the producer's generator and sends each message on, batching while it yields fast."""

    def work(self) -> None:
        outlet = self.next_steps_outlet(self.context, self.addresses)
        outlet.max_delay = 0.0  # the first message goes at once; then batches wait longer (Outlet.produced)
        self.open(outlet)
        try:
            started = self.start_component()
            self.control.go.wait()
            if started and not self.control.stopping.is_set():
                self.executor.produce(self.control.stopping.is_set)
            self.outlet.flush()
            self.executor.finish()
            self.outlet.end()
        finally:
            self.close()


class WorkerThread(StepThread):
    """One worker of a stager or consumer: asks its router for work, runs it, passes the outputs on.

    Its outlet sends the outputs to the next steps, or returns them to the router for an ordered
    step (which then sends them in input order).
    """

    #: Milliseconds the socket to the router keeps unsent messages once closed (its last is FINISHED).
    linger_ms = 0
    #: Seconds of work a worker asks to hold (engine.flow).
    prefetch_seconds = PREFETCH_SECONDS

    #: The shared-memory ring its work comes in (a local worker process's thread; engine.rings).
    ring: Ring | None = None

    @property
    def handles(self) -> Handles | None:
        """Where buffers from and to the router are lent: the run's (None in a worker process)."""
        return self.control.handles

    def work(self) -> None:
        ctl = self.ctl = self.context.socket(zmq.DEALER)
        ctl.linger = self.linger_ms
        try:
            self.open(self.make_outlet(ctl))
            self.connect(ctl)
            started = self.start_component()
            self._serve(ctl, started)
            self.finish_steps()
            self.outlet.end()
            sockets.send(ctl, control_frames(Kind.FINISHED))
            self.leave(ctl)
        finally:
            self.close()
            ctl.close()

    def leave(self, ctl: zmq.Socket) -> None:
        """What the thread does once its FINISHED is sent: nothing (what a closed inproc socket sent is read)."""

    def make_outlet(self, ctl: zmq.Socket) -> Outlet:
        """Where this worker's outputs go: on to the next steps, or back to the router of an ordered step."""
        if self.step.ordered and self.step.next_steps:
            return ToRouter(ctl, self.step, self.handles, counts=self.executor.counts)
        return self.next_steps_outlet(self.context, self.addresses)

    def finish_steps(self) -> None:
        """finish() of the step this thread runs."""
        self.executor.finish()

    def connect(self, ctl: zmq.Socket) -> None:
        """Connect to the step's router, under the routing id that makes it a thread of the run."""
        ctl.identity = self.control.thread_prefix + b"%d" % self.index
        ctl.connect(self.addresses.work(self.step.name))

    def _serve(self, ctl: zmq.Socket, started: bool) -> None:
        """Process packets until the router says FINISH; a worker whose init failed takes none."""
        outlet = self.outlet
        executor = self.executor
        prefetch = Prefetch(self.step.queue_limit, self.prefetch_seconds)
        sockets.send(ctl, join_frames(FIRST_WINDOW if started else 0, os.getpid()))
        outlet.flush()  # what init() sent goes on now, not with the first packet's outputs
        received = self._next(ctl)
        handles = self.handles
        while (kind := header_of(received[0])[0]) is not Kind.FINISH:
            if kind is Kind.SKIP:  # a message of the next WORK had outputs delivered by a worker that died
                seq, delivered = parse_skip(received)
                executor.skips[seq] = delivered
                received = self._next(ctl)
                continue
            if kind is Kind.MORE:  # a shard's RESULT sent on, read here with the router's work (ToRouter.credit)
                outlet.acknowledged()
                received = self._next(ctl)
                continue
            window = self.take(packet_from_frames(received, handles=handles, ring=self.ring), prefetch)
            if outlet.answers_router or not sockets.waiting(ctl):
                # The router must have a packet's answers before its READY; and a worker about to
                # wait sends its outputs first, they are what the next step waits for.
                outlet.flush()
            sockets.send(ctl, control_frames(Kind.READY, window))
            received = self._next(ctl)

    def _next(self, ctl: zmq.Socket) -> list[zmq.Frame]:
        """The router's next message: one that came while the outlet waited for a MORE, else the socket's."""
        early = getattr(self.outlet, "early", None)
        return early.popleft() if early else sockets.recv(ctl)
