"""The threads that run a step's Component: the producer, and each worker of a stager or consumer.

Both run the step's code through a ``StepExecutor`` (execution.executor), which holds the contract
of a step's code; a thread adds only its sockets: the outlet its outputs go to, and for a worker,
the conversation with its step's router.
"""

from __future__ import annotations

import zmq

from pipeline.config.model import PipelineConfig, StepConfig
from pipeline.engine import sockets
from pipeline.engine.addresses import Addresses
from pipeline.engine.control import INIT_DONE, EngineThread, RunControl
from pipeline.engine.flow import PREFETCH_SECONDS, SOURCE_MAX_DELAY_SECONDS, window_for, window_limit
from pipeline.engine.handles import Handles
from pipeline.engine.outlets import NextSteps, NoOutputs, Outlet, ToRouter
from pipeline.engine.rings import Ring
from pipeline.engine.wire import Kind, Packet, control_frames, header_of, packet_from_frames, parse_skip
from pipeline.execution.executor import Policy, StepExecutor

#: Weight of the newest packet in a worker's running mean of seconds per message.
_SMOOTHING = 0.2


class StepThread(EngineThread):
    """A thread that owns one Component instance (through its executor) and the sockets it sends through."""

    def __init__(self, context: zmq.Context, run: RunControl, config: PipelineConfig, step: StepConfig,
                 addresses: Addresses, index: int, policy: Policy | None = None) -> None:
        super().__init__(f"{step.name}#{index}", run)
        self.context = context
        self.config = config
        self.step = step
        self.addresses = addresses
        self.index = index
        self.executor = StepExecutor(step, index, policy or run.policy)
        self.init_ok = False
        self.outlet: Outlet = NoOutputs()

    def open(self, outlet: Outlet) -> None:
        """Take ``outlet`` for this thread's outputs; the Flusher watches it from now on."""
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


class ProducerThread(StepThread):
    """Runs the producer's generator and sends each message on, batching while it yields fast."""

    def work(self) -> None:
        outlet = NextSteps(self.context, self.config, self.step, self.addresses, self.executor.counts,
                           self.control.handles)
        outlet.max_delay = SOURCE_MAX_DELAY_SECONDS
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
        finally:
            self.close()
            ctl.close()

    def make_outlet(self, ctl: zmq.Socket) -> Outlet:
        """Where this worker's outputs go: on to the next steps, or back to the router of an ordered step."""
        if not self.step.next_steps:
            return NoOutputs()
        if self.step.ordered:
            return ToRouter(ctl, self.step, self.handles)
        return NextSteps(self.context, self.config, self.step, self.addresses, self.executor.counts, self.handles)

    def run_packet(self, packet: Packet) -> None:
        """Run the step on each message of ``packet``."""
        self.executor.run(packet.messages())

    def finish_steps(self) -> None:
        """finish() of the step this thread runs."""
        self.executor.finish()

    def connect(self, ctl: zmq.Socket) -> None:
        """Connect to the step's router, under the routing id that makes it a thread of the run."""
        ctl.identity = self.control.thread_prefix + b"%d" % self.index
        ctl.connect(self.addresses.work(self.step.name))

    def _serve(self, ctl: zmq.Socket, started: bool) -> None:
        """Process packets until the router says FINISH; a worker whose init failed takes none."""
        mean = 0.0
        outlet = self.outlet
        executor = self.executor
        limit = window_limit(self.step.queue_limit)
        # Start with a small window: the first messages tell how long run() takes.
        sockets.send(ctl, control_frames(Kind.JOIN, 2 if started else 0))
        outlet.flush()  # what init() sent goes on now, not with the first packet's outputs
        received = self._next(ctl)
        handles = self.handles
        while (kind := header_of(received[0])[0]) is not Kind.FINISH:
            if kind is Kind.SKIP:  # a message of the next WORK had outputs delivered by a worker that died
                seq, delivered = parse_skip(received)
                executor.skips[seq] = delivered
                received = self._next(ctl)
                continue
            if kind is Kind.MORE:  # only a chunk waits for one (ToRouter.partial): a stray one asks nothing
                received = self._next(ctl)
                continue
            packet = packet_from_frames(received, handles=handles, ring=self.ring)
            before = executor.busy_time
            self.run_packet(packet)
            elapsed = (executor.busy_time - before) / len(packet)
            mean = elapsed if not mean else mean + _SMOOTHING * (elapsed - mean)
            if outlet.answers_router or not sockets.waiting(ctl):
                # The router must have a packet's answers before its READY; and a worker about to
                # wait sends its outputs first, they are what the next step waits for.
                outlet.flush()
            sockets.send(ctl, control_frames(Kind.READY, window_for(mean, limit, self.prefetch_seconds)))
            received = self._next(ctl)

    def _next(self, ctl: zmq.Socket) -> list[zmq.Frame]:
        """The router's next message: one that came while the outlet waited for a MORE, else the socket's."""
        early = getattr(self.outlet, "early", None)
        return early.popleft() if early else sockets.recv(ctl)
