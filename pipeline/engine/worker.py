"""The threads that run a step's Component: the producer, and each worker of a stager or consumer."""

from __future__ import annotations

import time
from typing import Any

import zmq

from ..component import Component
from ..config import PipelineConfig, StepConfig
from ..message import FINISH, Encoded, decode, encode, header_of, packet_from_frames
from ..report import StepCounts
from ..step import failure_line, produce, send_outputs
from . import frames as io
from .addresses import Addresses
from .control import INIT_DONE, EngineThread, RunControl
from .flow import SLOW_SOURCE_SECONDS, window_for
from .outputs import Outputs
from .protocol import FINISHED, JOIN, READY, control
from .reorder import UNORDERED, result_frames

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
        self.outputs: Outputs | None = None
        self.held: list[tuple[Encoded, int | None]] | None = None  # an ordered step's pending outputs

    def fail(self, what: str, error: BaseException) -> None:
        """Record an init(), finish() or producer error: the run will exit 1."""
        line = self.control.policy.lifecycle_failed(self.step.name, self.index, what, error)
        self.first_error = self.first_error or line
        self.fatal = True

    def start_component(self) -> Component | None:
        """Build and init() the Component, then report to the runner; None if that failed."""
        component = None
        try:
            component = self.config.make_component(self.step.name)
            if self.outputs is not None:
                component._emit = self.outputs.emit
            component.init()
            self.init_ok = True
        except zmq.ContextTerminated:
            raise  # the run is aborted: not the step's failure
        except Exception as err:
            self.fail("init()", err)
        self.control.events.put((INIT_DONE, self))
        return component if self.init_ok else None

    def finish_component(self, component: Component | None) -> None:
        """Call finish() and send what it returns."""
        if component is None:
            return
        try:
            send_outputs(component.finish(), component._emit)
        except zmq.ContextTerminated:
            raise  # the run is aborted: not the step's failure
        except Exception as err:
            self.fail("finish()", err)


class ProducerThread(StepThread):
    """Runs the producer's generator and sends each message on, batching while it yields fast."""

    def work(self) -> None:
        self.outputs = Outputs(self.context, self.config, self.step, self.addresses, self.counts)
        try:
            component = self.start_component()
            self.control.go.wait()
            if component is not None and not self.control.stopping.is_set():
                self._produce(component, self.outputs)
            self.finish_component(component)
            self.outputs.end()
        finally:
            self.outputs.close()

    def _produce(self, component: Component, outputs: Outputs) -> None:
        counts = self.counts
        stopping = self.control.stopping
        try:
            before = time.perf_counter()
            for message in produce(component):
                after = time.perf_counter()
                self.busy_time += after - before
                self.max_time = max(self.max_time, after - before)
                if message is not None:
                    counts.processed += 1
                    outputs.emit(message, None)
                if after - before > SLOW_SOURCE_SECONDS:
                    outputs.flush()  # a slow source: send each message at once
                else:
                    outputs.flush_if_due()
                if stopping.is_set():
                    break
                before = time.perf_counter()
        except zmq.ContextTerminated:
            raise  # the run is aborted: not the step's failure
        except Exception as err:
            counts.failed += 1
            self.fail("run()", err)
        outputs.flush()


class WorkerThread(StepThread):
    """One worker of a stager or consumer: asks its router for work, runs it, sends the outputs.

    A worker of an ordered step returns each input's outputs to its router instead (see reorder).
    """

    def work(self) -> None:
        ctl = self.context.socket(zmq.DEALER)
        ctl.linger = 0
        self.ctl = ctl
        try:
            ordered = self.step.ordered and bool(self.step.next_steps)
            if self.step.next_steps and not ordered:
                self.outputs = Outputs(self.context, self.config, self.step, self.addresses, self.counts)
            ctl.connect(self.addresses.work(self.step.name))
            component = self.start_component()
            if component is not None and ordered:
                self._return_outputs_to_router(component)
            self._serve(ctl, component)
            self.finish_component(component)
            if self.held is not None:
                self._send_held(UNORDERED, self.held)
            if self.outputs is not None:
                self.outputs.end()
            io.send(ctl, control(FINISHED))
        finally:
            if self.outputs is not None:
                self.outputs.close()
            ctl.close()

    def _serve(self, ctl: zmq.Socket, component: Component | None) -> None:
        """Process packets until the router says FINISH; a worker whose init failed takes none."""
        mean = 0.0
        # Start with a small window: the first messages tell how long run() takes.
        io.send(ctl, control(JOIN, 2 if component is not None else 0))
        outputs = self.outputs
        if outputs is not None:
            outputs.flush()  # what init() sent goes on now, not with the first packet's outputs
        frames = io.recv(ctl)
        while header_of(frames[0])[0] != FINISH:
            packet = packet_from_frames(frames)
            before = self.busy_time
            for seq, inband, buffers in packet.messages():
                self._process(component, seq, inband, buffers)
            elapsed = (self.busy_time - before) / len(packet)
            mean = elapsed if not mean else mean + _SMOOTHING * (elapsed - mean)
            if io.waiting(ctl):
                io.send(ctl, control(READY, window_for(mean)))
                if outputs is not None:
                    outputs.flush_if_due()
            else:
                # About to wait: the outputs go first, they are what the next step waits for.
                if outputs is not None:
                    outputs.flush()
                io.send(ctl, control(READY, window_for(mean)))
            frames = io.recv(ctl)

    def _process(self, component: Component | None, seq: int, inband: Any, buffers: list[Any]) -> None:
        if component is None:
            raise RuntimeError(f"worker {self.name} was sent work although its init() failed")
        self.counts.received += 1
        self.busy_seq = seq
        start = time.perf_counter()
        try:
            send_outputs(component.run(decode(inband, buffers)), component._emit)
            self.counts.processed += 1
        except zmq.ContextTerminated:
            raise  # the run is aborted: not the step's failure
        except Exception as err:
            self.counts.failed += 1
            self.first_error = self.first_error or failure_line(err)
            self.control.policy.message_failed(self.step, self.index, seq, err, Encoded(bytes(inband), buffers))
        spent = time.perf_counter() - start
        self.busy_time += spent
        if spent > self.max_time:
            self.max_time = spent
        self.busy_seq = None
        if self.held is not None:
            self._send_held(seq, self.held)

    def _return_outputs_to_router(self, component: Component) -> None:
        """Hold each output of an ordered step until the input's result goes back to the router."""
        held: list[tuple[Encoded, int | None]] = []
        index = {name: i for i, name in enumerate(self.step.next_steps)}

        def hold(message: Any, target: str | None) -> None:
            held.append((encode(message), None if target is None else index[target]))

        component._emit = hold
        self.held = held

    def _send_held(self, seq: int, held: list[tuple[Encoded, int | None]]) -> None:
        """Send the held outputs of input ``seq`` (even none: the router waits for every input)."""
        io.send(self.ctl, result_frames(seq, held))
        held.clear()
