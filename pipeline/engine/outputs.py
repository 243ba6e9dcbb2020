"""A thread's connections to its step's next steps: outputs batched per next step into packets."""

from __future__ import annotations

import time
from typing import Any

import zmq

from ..config import PipelineConfig, StepConfig
from ..message import DATA, END, Encoded, Packet, control_frames, encode
from ..report import StepCounts
from . import frames as io
from .addresses import Addresses
from .flow import MAX_BATCH_BYTES, MAX_DELAY_SECONDS, PIPE_HWM, batch_limit


class Outbox:
    """Messages waiting to go to one next step, and the socket they go through."""

    def __init__(self, socket: zmq.Socket, limit: int) -> None:
        self.socket = socket
        self.limit = limit
        self.packet = Packet()
        self.sent = 0

    def add(self, message: Encoded) -> None:
        """Queue one message; send the packet once it is full."""
        self.packet.add(message)
        if len(self.packet) >= self.limit or self.packet.nbytes >= MAX_BATCH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Send what is queued (blocks while the next step's router is full: backpressure)."""
        if self.packet.lengths:
            io.send(self.socket, self.packet.frames(DATA))
            self.sent += len(self.packet)
            self.packet = Packet()

    def end(self) -> None:
        """Send what is queued, then the end of stream with the number of messages sent."""
        self.flush()
        io.send(self.socket, control_frames(END, self.sent))


class Outputs:
    """Serialises a thread's outputs and batches them per next step."""

    def __init__(
        self, context: zmq.Context, config: PipelineConfig, step: StepConfig, addresses: Addresses, counts: StepCounts
    ) -> None:
        self.step = step
        self.counts = counts
        self.boxes: dict[str, Outbox] = {}
        for name in step.next_steps:
            socket = context.socket(zmq.PUSH)
            socket.sndhwm = PIPE_HWM
            socket.linger = 0
            socket.connect(addresses.inbox(name))
            self.boxes[name] = Outbox(socket, batch_limit(config.steps[name].queue_limit))
        self.oldest = 0.0  # when the oldest unsent output was queued (0: none)

    def emit(self, message: Any, target: str | None) -> None:
        """Send ``message`` to ``target`` or, when it is None, to every next step."""
        self.deliver(encode(message), target)

    def deliver(self, message: Encoded, target: str | None) -> None:
        """Queue an encoded message for ``target`` or every next step."""
        names = self.step.next_steps if target is None else (target,)
        for name, copy in zip(names, message.copies(len(names)), strict=True):
            self.boxes[name].add(copy)
        self.counts.emitted += len(names)
        if not self.oldest:
            self.oldest = time.monotonic()

    def flush_if_due(self) -> None:
        """Send pending outputs that have waited MAX_DELAY_SECONDS."""
        if self.oldest and time.monotonic() - self.oldest >= MAX_DELAY_SECONDS:
            self.flush()

    def flush(self) -> None:
        """Send every pending output now."""
        for box in self.boxes.values():
            box.flush()
        self.oldest = 0.0

    def end(self) -> None:
        """Send everything, then tell each next step how many messages it was sent."""
        for box in self.boxes.values():
            box.end()
        self.oldest = 0.0

    def close(self) -> None:
        """Close the sockets (in the thread that used them)."""
        for box in self.boxes.values():
            box.socket.close()
