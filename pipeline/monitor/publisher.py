"""The status stream's socket: an XPUB that connects to the GUI's address and never blocks.

The GUI binds a SUB socket; each run connects to it, so a GUI may start before or after the run,
on this host or another (ZeroMQ reconnects until the address is bound). The socket is an XPUB, a
PUB that also hears its subscribers: when one subscribes, the monitor sends it the graph at once.
Sends never wait: with no subscriber a message is discarded; a subscriber that does not keep up
has its messages dropped at a small high-water mark, and the drops are counted.

The socket belongs to the monitor's thread, in a context of its own (not the engine's).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any

import zmq
from traitlets import TraitError, Unicode

from .messages import Envelope, encode

log = logging.getLogger("pipeline.monitor")

#: Messages queued for a slow subscriber before the next ones are dropped.
SEND_HWM = 100
#: Milliseconds the last messages may take to leave when the socket closes.
CLOSE_LINGER_MS = 500

_ADDRESS = re.compile(r"(tcp://)?(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):\d{1,5}")


class Address(Unicode):
    """A ``host:port`` (or ``tcp://host:port``) trait; ``*`` is not a host: the GUI binds, a run connects."""

    info_text = "an address host:port or tcp://host:port"

    def validate(self, obj: Any, value: Any) -> str:
        value = super().validate(obj, value)
        if not _ADDRESS.fullmatch(value) or value.rpartition(":")[0].endswith("*"):
            raise TraitError(f"expected {self.info_text}, got {value!r}")
        return value


def endpoint(address: str) -> str:
    """The ZeroMQ endpoint of ``host:port`` or ``tcp://host:port``."""
    return address if address.startswith("tcp://") else f"tcp://{address}"


class Publisher:
    """Sends a run's messages to ``address``; make it, use it and close it in the same thread."""

    def __init__(self, address: str, envelope: Envelope) -> None:
        self.envelope = envelope
        self.sent = 0  # messages handed to ZeroMQ (with no subscriber, ZeroMQ discards them)
        self.dropped = 0  # messages dropped because a subscriber was at its high-water mark
        self._serial = 0
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.XPUB)
        try:
            self._socket.sndhwm = SEND_HWM
            self._socket.linger = 0
            self._socket.setsockopt(zmq.XPUB_VERBOSE, 1)  # hear every subscriber, not only the first
            self._socket.setsockopt(zmq.XPUB_NODROP, 1)  # at the high-water mark: EAGAIN, so drops are counted
            self._socket.connect(endpoint(address))
        except zmq.ZMQError:
            self.close(0)
            raise

    def publish(self, topic: str, body: Mapping[str, Any]) -> bool:
        """Send one message now or drop it; True if ZeroMQ took it."""
        self._serial += 1
        frames = encode(self.envelope.message(topic, self._serial, body))
        try:
            self._socket.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            return False
        self.sent += 1
        return True

    def new_subscribers(self) -> bool:
        """True if a subscriber subscribed since the last call (read without waiting)."""
        subscribed = False
        while True:
            try:
                frame = self._socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return subscribed
            subscribed = subscribed or frame[:1] == b"\x01"

    def close(self, linger_ms: int = CLOSE_LINGER_MS) -> None:
        """Close the socket, giving what is queued ``linger_ms`` to leave, and end the context."""
        self._socket.close(linger=linger_ms)
        self._context.term()
