"""The threads that run a step's Component: the producer, and each worker of a stager or consumer."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from ..component import Component
from ..config import PipelineConfig, StepConfig
from ..message import FINISH, HEADER, Encoded, decode, encode, packet_from_frames
from ..report import StepCounts
from ..step import failure_line, produce, send_outputs
from . import frames as io
from .addresses import Addresses
from .flow import SLOW_SOURCE_SECONDS, window_for
from .ordering import Turn
from .outputs import Outputs
from .protocol import FINISHED, JOIN, READY, control

log = logging.getLogger("pipeline.engine")

#: Weight of the newest packet in a worker's running mean of seconds per message.
_SMOOTHING = 0.2


class StepThread(threading.Thread):
    """A thread that owns one Component instance and its sockets; it records its counts and errors."""

    def __init__(self, context: zmq.Context, config: PipelineConfig, step: StepConfig,
                 addresses: Addresses, index: int, on_init: Callable[[StepThread], None]) -> None:
        super().__init__(name=f"{step.name}#{index}", daemon=True)
        self.context = context
        self.config = config
        self.step = step
        self.addresses = addresses
        self.index = index
        self.on_init = on_init
        self.counts = StepCounts()
        self.first_error: str | None = None
        self.init_ok = False
        self.outputs: Outputs | None = None

    def fail(self, what: str, error: BaseException) -> None:
        """Log an error of this thread with its traceback and keep the first one."""
        log.error("step %s worker %d: %s: %s", self.step.name, self.index, what, failure_line(error),
                  exc_info=error)
        if self.first_error is None:
            self.first_error = failure_line(error)

    def start_component(self) -> Component | None:
        """Build and init() the Component, then report to the runner; None if that failed."""
        component = None
        try:
            component = self.config.make_component(self.step.name)
            if self.outputs is not None:
                component._emit = self.outputs.emit
            component.init()
            self.init_ok = True
        except Exception as err:
            self.fail("init() failed", err)
        self.on_init(self)
        return component if self.init_ok else None

    def finish_component(self, component: Component | None) -> None:
        """Call finish() and send what it returns."""
        if component is None:
            return
        try:
            send_outputs(component.finish(), component._emit)
        except Exception as err:
            self.fail("finish() failed", err)


class ProducerThread(StepThread):
    """Runs the producer's generator and sends each message on, batching while it yields fast."""

    def __init__(self, *args: Any, go: threading.Event, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.go = go
        self.cancelled = False

    def run(self) -> None:
        self.outputs = Outputs(self.context, self.config, self.step, self.addresses, self.counts)
        try:
            component = self.start_component()
            self.go.wait()
            if component is not None and not self.cancelled:
                self._produce(component)
            self.finish_component(component)
            self.outputs.end()
        except BaseException as err:
            self.fail("stopped", err)
        finally:
            self.outputs.close()

    def _produce(self, component: Component) -> None:
        outputs = self.outputs
        assert outputs is not None
        counts = self.counts
        try:
            messages = produce(component)
            before = time.perf_counter()
            for message in messages:
                after = time.perf_counter()
                if message is not None:
                    counts.processed += 1
                    outputs.emit(message, None)
                if after - before > SLOW_SOURCE_SECONDS:
                    outputs.flush()
                else:
                    outputs.flush_if_due()
                before = time.perf_counter()
        except Exception as err:
            counts.failed += 1
            self.fail("run() failed", err)
        outputs.flush()


class WorkerThread(StepThread):
    """One worker of a stager or consumer: asks its router for work, runs it, sends the outputs."""

    def __init__(self, *args: Any, turn: Turn | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.turn = turn

    def run(self) -> None:
        ctl = self.context.socket(zmq.DEALER)
        ctl.linger = 0
        try:
            if self.step.next_steps:
                self.outputs = Outputs(self.context, self.config, self.step, self.addresses, self.counts)
            ctl.connect(self.addresses.work(self.step.name))
            component = self.start_component()
            self._serve(ctl, component)
            self.finish_component(component)
            if self.outputs is not None:
                self.outputs.end()
            io.send(ctl, control(FINISHED))
        except BaseException as err:
            self.fail("stopped", err)
        finally:
            if self.outputs is not None:
                self.outputs.close()
            ctl.close()

    def _serve(self, ctl: zmq.Socket, component: Component | None) -> None:
        """Process packets until the router says FINISH; a worker whose init failed takes none."""
        mean = 0.0
        window = window_for(mean) if component is not None else 0
        window = min(window, 2)  # start small: the first messages tell how long run() takes
        io.send(ctl, control(JOIN, window))
        outputs = self.outputs
        while True:
            if outputs is not None and not io.waiting(ctl):
                outputs.flush()  # about to wait: send what is pending first
            frames = io.recv(ctl)
            if HEADER.unpack_from(frames[0].bytes)[0] == FINISH:
                return
            packet = packet_from_frames(frames)
            start = time.perf_counter()
            for seq, inband, buffers in packet.messages():
                self._process(component, seq, inband, buffers)
            elapsed = (time.perf_counter() - start) / len(packet)
            mean = elapsed if not mean else mean + _SMOOTHING * (elapsed - mean)
            io.send(ctl, control(READY, window_for(mean)))
            if outputs is not None:
                outputs.flush_if_due()

    def _process(self, component: Component | None, seq: int, inband: Any, buffers: list[Any]) -> None:
        counts = self.counts
        counts.received += 1
        assert component is not None
        ordered = self.turn is not None and self.outputs is not None
        held: list[tuple[Encoded, str | None]] = []
        if ordered:
            component._emit = lambda msg, target: held.append((encode(msg), target))
        try:
            send_outputs(component.run(decode(inband, buffers)), component._emit)
            counts.processed += 1
        except Exception as err:
            counts.failed += 1
            self.fail(f"run() failed on message {seq}", err)
        if ordered:
            assert self.turn is not None and self.outputs is not None
            self.turn.wait(seq)
            for message, target in held:
                self.outputs.deliver(message, target)
            self.outputs.flush()
            self.turn.done()
            component._emit = self.outputs.emit
