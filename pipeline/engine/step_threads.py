"""The threads that run a step's Component: the producer, and each worker of a stager or consumer.

Both run the step's code the same way (``StepThread.call``): with their outlet unlocked, its
outputs collected, then committed to the outlet as a whole, or dropped if the code raised.
"""

from __future__ import annotations

from collections.abc import Callable
from time import perf_counter
from types import GeneratorType
from typing import Any

import zmq

from pipeline.component import Component
from pipeline.config.model import PipelineConfig, StepConfig
from pipeline.engine import sockets
from pipeline.engine.addresses import Addresses
from pipeline.engine.control import INIT_DONE, EngineThread, RunControl
from pipeline.engine.flow import SLOW_SOURCE_SECONDS, window_for
from pipeline.engine.handles import Handles
from pipeline.engine.outlets import NextSteps, NoOutputs, Outlet, ToRouter
from pipeline.engine.wire import UNORDERED, Kind, Outcome, Packet, control_frames, header_of, packet_from_frames
from pipeline.execution.executor import Collector, produce, send_outputs
from pipeline.execution.report import StepCounts
from pipeline.failures.describe import failure_line
from pipeline.message import Encoded, decode

#: Weight of the newest packet in a worker's running mean of seconds per message.
_SMOOTHING = 0.2


class StepThread(EngineThread):
    """A thread that owns one Component instance and its sockets; it records its counts and errors."""

    def __init__(self, context: zmq.Context, run: RunControl, config: PipelineConfig, step: StepConfig,
                 addresses: Addresses, index: int) -> None:
        super().__init__(f"{step.name}#{index}", run)
        self.context = context
        self.config = config
        self.step = step
        self.addresses = addresses
        self.index = index
        self.counts = StepCounts()
        self.first_error: str | None = None
        self.fatal = False
        self.busy_seq: int | None = None  # the message in run() now, to name a stuck worker
        self.busy_time = 0.0  # seconds in run() so far
        self.max_time = 0.0  # the longest run() call
        self.init_ok = False
        self.collector = Collector(step.name)
        self.outlet: Outlet = NoOutputs()

    def fail(self, what: str, error: BaseException) -> None:
        """Record an init(), finish() or producer error: the run will exit 1."""
        line = self.control.policy.lifecycle_failed(self.step.name, self.index, what, error)
        self.first_error = self.first_error or line
        self.fatal = True

    def open(self, outlet: Outlet) -> None:
        """Take ``outlet`` for this thread's outputs; the Flusher watches it from now on."""
        self.collector.claim()
        outlet.lock.acquire()
        self.outlet = outlet
        self.control.flusher.add(outlet)

    def close(self) -> None:
        """Stop the Flusher watching the outlet, then close its sockets."""
        self.control.flusher.remove(self.outlet)
        self.outlet.close()

    @property
    def emitter(self) -> Collector | None:
        """Where the step's code sends: the collector, or nowhere for a consumer (its returned values are dropped)."""
        return self.collector if self.step.next_steps else None

    def call(self, code: Callable[[], Any]) -> BaseException | None:
        """Run the step's ``code`` (which sends through the collector); None if it returned.

        An exception that is not an ``Exception`` (``SystemExit``, ``KeyboardInterrupt``) is
        returned too: it ends that code, never the thread.
        """
        try:
            with self.outlet.step_code():
                send_outputs(code(), self.emitter)
        except BaseException as err:  # a step's SystemExit fails the step, not the engine
            self.collector.take()
            return err
        return None

    def lifecycle(self, what: str, code: Callable[[], Any]) -> bool:
        """Run init() or finish() and commit what it sent; record its error. True if it returned."""
        error = self.call(code)
        if error is not None:
            self.fail(what, error)
            return False
        self.outlet.commit(UNORDERED, self.collector.take())
        return True

    def start_component(self) -> Component | None:
        """Build and init() the Component, then report to the runner; None if that failed."""
        component = None
        try:
            component = self.config.make_component(self.step.name)
        except Exception as err:
            self.fail("init()", err)
        else:
            component._emit = self.emitter
            self.init_ok = self.lifecycle("init()", component.init)
        self.control.events.put((INIT_DONE, self))
        return component if self.init_ok else None

    def finish_component(self, component: Component | None) -> None:
        """Call finish() and commit what it sent."""
        if component is not None:
            self.lifecycle("finish()", component.finish)


class ProducerThread(StepThread):
    """Runs the producer's generator and sends each message on, batching while it yields fast."""

    def work(self) -> None:
        self.open(NextSteps(self.context, self.config, self.step, self.addresses, self.counts, self.control.handles))
        try:
            component = self.start_component()
            self.control.go.wait()
            if component is not None and not self.control.stopping.is_set():
                self._produce(component)
            self.finish_component(component)
            self.outlet.end()
        finally:
            self.close()

    def _produce(self, component: Component) -> None:
        """Each value the generator yields is a message, and so is each one it passes to send_msg."""
        iterator: Any = None

        def start() -> None:
            nonlocal iterator
            iterator = produce(component)

        error = self.call(start)
        outlet = self.outlet
        collector = self.collector
        stopping = self.control.stopping
        release, acquire = outlet.lock.release, outlet.lock.acquire
        while error is None and not stopping.is_set():
            before = perf_counter()
            release()
            try:
                message = next(iterator)
            except StopIteration:
                break
            except BaseException as err:  # a step's SystemExit fails the step, not the engine
                error = err
            finally:
                acquire()
            after = perf_counter()
            spent = after - before
            self.busy_time += spent
            if spent > self.max_time:
                self.max_time = spent
            if error is None and message is not None:
                try:
                    collector.add(message)
                except Exception as err:
                    error = err
            outputs = collector.take()
            if error is None:
                self.counts.processed += len(outputs)
                outlet.commit(0, outputs)
                if spent > SLOW_SOURCE_SECONDS:
                    outlet.flush()  # a slow source: send each message at once
                elif outlet.oldest:
                    outlet.flush_if_due()
        if error is not None:
            self.counts.failed += 1
            self.fail("run()", error)
        outlet.flush()


class WorkerThread(StepThread):
    """One worker of a stager or consumer: asks its router for work, runs it, passes the outputs on.

    Its outlet sends the outputs to the next steps, or returns them to the router for an ordered
    step (which then sends them in input order).
    """

    #: Where a worker process marks the message each thread runs (engine.process_worker.BusyBoard).
    board: Any = None

    @property
    def handles(self) -> Handles | None:
        """Where buffers from and to the router are lent: the run's (None in a worker process)."""
        return self.control.handles

    def work(self) -> None:
        ctl = self.ctl = self.context.socket(zmq.DEALER)
        ctl.linger = 0
        try:
            self.open(self.make_outlet(ctl))
            self.connect(ctl)
            component = self.start_component()
            self._serve(ctl, component)
            self.finish_component(component)
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
        return NextSteps(self.context, self.config, self.step, self.addresses, self.counts, self.handles)

    def connect(self, ctl: zmq.Socket) -> None:
        """Connect to the step's router, under the routing id that makes it a thread of the run."""
        ctl.identity = self.control.thread_prefix + b"%d" % self.index
        ctl.connect(self.addresses.work(self.step.name))

    def report_failure(self, seq: int, error: Exception, message: Encoded) -> None:
        """A message's run() raised: hand it to the run's failure policy."""
        self.first_error = self.first_error or failure_line(error)
        self.control.policy.message_failed(self.step, self.index, seq, error, message)

    def report_not_run(self, seq: int, message: Encoded) -> None:
        """The step had stopped: the message is not run (a dead letter, to replay after the fix)."""
        self.control.policy.not_run(self.step, seq, message)
        self.outlet.failed(seq, Outcome.NOT_RUN)

    def _serve(self, ctl: zmq.Socket, component: Component | None) -> None:
        """Process packets until the router says FINISH; a worker whose init failed takes none."""
        mean = 0.0
        outlet = self.outlet
        # Start with a small window: the first messages tell how long run() takes.
        sockets.send(ctl, control_frames(Kind.JOIN, 2 if component is not None else 0))
        outlet.flush()  # what init() sent goes on now, not with the first packet's outputs
        received = sockets.recv(ctl)
        handles = self.handles
        while header_of(received[0])[0] is not Kind.FINISH:
            packet = packet_from_frames(received, handles=handles)
            before = self.busy_time
            self._process(component, packet)
            elapsed = (self.busy_time - before) / len(packet)
            mean = elapsed if not mean else mean + _SMOOTHING * (elapsed - mean)
            if outlet.answers_router or not sockets.waiting(ctl):
                # The router must have a packet's answers before its READY; and a worker about to
                # wait sends its outputs first, they are what the next step waits for.
                outlet.flush()
            sockets.send(ctl, control_frames(Kind.READY, window_for(mean)))
            received = sockets.recv(ctl)

    def _process(self, component: Component | None, packet: Packet) -> None:
        """Run each message of ``packet`` through the step's code, with the outlet unlocked; commit or
        report what it did.

        The hot path of every worker: ``call`` written out, and what every message needs looked up
        once per packet, since a method call and its lookups cost as much as a small message's work.
        """
        if component is None:
            raise RuntimeError(f"worker {self.name} was sent work although its init() failed")
        counts = self.counts
        halted = self.control.policy.halted
        name = self.step.name
        outlet = self.outlet
        release, acquire = outlet.lock.release, outlet.lock.acquire
        collector = self.collector
        run = component.run
        emitter = self.emitter
        answers = outlet.answers_router
        board = self.board
        for seq, inband, buffers in packet.messages():
            counts.received += 1
            if name in halted:
                self.report_not_run(seq, Encoded(bytes(inband), buffers))
                continue
            self.busy_seq = seq
            if board is not None:
                board.mark(self.index, seq)
            error: BaseException | None = None
            start = perf_counter()
            release()
            try:
                result = run(decode(inband, buffers))
                if result is not None:
                    if isinstance(result, GeneratorType):
                        send_outputs(result, emitter)
                    elif emitter is not None:
                        emitter.add(result)
            except BaseException as err:  # a step's SystemExit fails the step, not the engine
                error = err
            finally:
                acquire()
            spent = perf_counter() - start
            self.busy_time += spent
            if spent > self.max_time:
                self.max_time = spent
            self.busy_seq = None
            if board is not None:
                board.mark(self.index, None)
            if error is not None:
                self._failed(seq, error, Encoded(bytes(inband), buffers), spent)
                continue
            counts.processed += 1
            if collector.pending or answers:  # a consumer's thread has nothing to commit
                outlet.commit(seq, collector.take(), spent)
                if outlet.oldest:
                    outlet.flush_if_due()

    def _failed(self, seq: int, error: BaseException, message: Encoded, spent: float) -> None:
        """Message ``seq``'s run() raised ``error`` after ``spent`` seconds: drop its outputs, report it."""
        self.collector.take()
        self.counts.failed += 1
        if isinstance(error, Exception):
            self.report_failure(seq, error, message)
        else:
            self.fail("run()", error)
            self.control.policy.halt(self.step.name, f"step {self.step.name} raised {failure_line(error)} in run()")
        self.outlet.failed(seq, Outcome.FAILED, spent)
