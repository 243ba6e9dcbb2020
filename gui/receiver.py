"""The SUB socket the runs publish to, read inside Qt's event loop without ever blocking it.

A ZeroMQ socket's ``zmq.FD`` is edge-triggered: it becomes readable when the socket's state
changes, not while messages wait. So each time the notifier fires (and on a slow safety timer) the
receiver reads while ``zmq.EVENTS`` says POLLIN, with NOBLOCK, a bounded batch at a time (at most
BATCH messages and BATCH_SECONDS) so that a flood of messages never starves the UI; a full batch
schedules the next one right away.

Unless the monitor runs in plaintext, the socket is a CURVE server (``pipeline.auth.keys.CurveServer``,
started before the bind): only runs holding an allowed key get in, and each message is credited to
the key its connection proved (the frame's User-Id), never to what the message says. Each handshake
the socket refuses (libzmq's socket monitor, read with the messages) is counted by cause
(``gui.refusals``), so that a run whose settings do not match never goes unseen.

Whatever peers send, the socket's memory stays bounded: libzmq keeps, for each connection, the messages
queued for reading (``RECEIVE_HWM``, where its default is 1,000 per connection: a gigabyte of 1 MiB
messages) and the one being received (``MAX_MESSAGE_SIZE`` at most). So the monitor holds at most
``MAX_CONNECTIONS`` connections at once: a ZAP handler (in both modes) asks :class:`Connections` about each
new one, which counts those open from the socket's events (accepted, disconnected, by file descriptor)
and turns the others away (counted as refused: ``too many connections``; libzmq's client takes it as final). That is
MAX_CONNECTIONS x (RECEIVE_HWM + 1) x MAX_MESSAGE_SIZE = 60 MiB at most in the socket.
"""

from __future__ import annotations

import logging
import threading
import time

import zmq
from PySide6.QtCore import QObject, QSocketNotifier, QTimer, Signal
from zmq.utils.monitor import recv_monitor_message

from pipeline.auth.curve import CurveServer, ServerKeys, ZapServer

from .protocol import ProtocolError, parse
from .refusals import REFUSAL_EVENTS, Refusals, cause

log = logging.getLogger("gui.receiver")

#: Messages read per turn of the event loop at most.
BATCH = 200
#: Seconds of reading per turn of the event loop at most (a batch of big messages takes long to parse).
BATCH_SECONDS = 0.02
#: Milliseconds between safety reads, in case an edge of the socket's FD was missed.
SAFETY_POLL_MS = 250
#: The largest message accepted (bytes); a larger one drops its sender's connection. A run's biggest,
#: an error with its traceback cut to 32,000 characters, is far below.
MAX_MESSAGE_SIZE = 1024 * 1024
#: Seconds between two warnings about ignored messages (the others are counted in the next one).
WARNING_INTERVAL = 5.0
#: Socket events (connections opened and closed, refused handshakes) read per turn of the event loop at most.
EVENT_BATCH = 100
#: Messages libzmq queues per connection for reading (its default, 1,000, let a peer grow the window by a GiB per
#: connection). A run sends a few messages a second and the window reads them at once; a burst waits in the run.
#: Not 1: with a ZAP handler, libzmq's queue of one held nothing but the connection's credentials, and stalled.
RECEIVE_HWM = 2
#: Connections held open at once at most (a run holds one; as many as the runs the window keeps); more are turned
#: away until some close.
MAX_CONNECTIONS = 20
#: The socket's events read: connections opened and closed (counted), and refused handshakes.
EVENTS = REFUSAL_EVENTS | zmq.EVENT_ACCEPTED | zmq.EVENT_DISCONNECTED


class Connections:
    """The connections open on the socket, by file descriptor, from its events; and whether one more may open.

    :meth:`admit` runs in the ZAP handler's thread, the rest in the window's. A connection's ``accepted`` event
    comes before its handshake asks :meth:`admit`, but may not be read yet: admissions since the events were
    last read to their end count too (twice for a moment at worst, never none), so the limit always holds.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.lock = threading.Lock()  # held while the events are read, so that admit() sees them read or unseen
        self._open: set[int] = set()
        self._unseen = 0  # admissions since the events were last read to their end

    @property
    def count(self) -> int:
        """Connections open (or admitted and not yet seen open)."""
        return len(self._open) + self._unseen

    def admit(self) -> bool:
        """True if one more connection may open (then it is counted); False when MAX_CONNECTIONS are."""
        with self.lock:
            if self.count >= self.limit:
                return False
            self._unseen += 1
            return True

    def event(self, kind: int, fd: int) -> None:
        """Count a connection ``accepted`` or ``disconnected`` (libzmq gives its file descriptor); under lock."""
        if kind == zmq.EVENT_ACCEPTED:
            self._open.add(fd)
        elif kind == zmq.EVENT_DISCONNECTED:
            self._open.discard(fd)

    def caught_up(self) -> None:
        """Every event was read (call under lock): the admissions are among the connections seen open."""
        self._unseen = 0


class Receiver(QObject):
    """Binds a SUB socket on ``host:port`` (port 0: a free port) and emits every valid message.

    ``keys`` None: plaintext, anyone who reaches the port is heard.
    """

    #: A parsed message (gui.protocol.Message) and the name of the key it came under (None: plaintext).
    received = Signal(object, object)

    def __init__(self, host: str, port: int, keys: ServerKeys | None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.count = 0  # valid messages received
        self.ignored = 0  # messages ignored as malformed, of an unknown protocol version or over a cap
        self.clock = time.monotonic  # of the warnings' rate limit
        self._unreported = 0
        self._last_warning = float("-inf")
        self.refusals = Refusals()  # connections refused, by cause
        self.connections = Connections(MAX_CONNECTIONS)
        self._context = zmq.Context()
        self.curve = CurveServer(self._context, keys, self.connections.admit) if keys else None
        self._zap = self.curve or ZapServer(self._context, self.connections.admit)
        self._socket = self._context.socket(zmq.SUB)
        self._events = self._socket.get_monitor_socket(EVENTS)
        try:
            self._zap.secure(self._socket)
            self._socket.setsockopt(zmq.LINGER, 0)
            self._socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_SIZE)
            self._socket.setsockopt(zmq.RCVHWM, RECEIVE_HWM)
            self._socket.setsockopt(zmq.SUBSCRIBE, b"")
            if port == 0:
                port = self._socket.bind_to_random_port(f"tcp://{host}")
            else:
                self._socket.bind(f"tcp://{host}:{port}")
        except zmq.ZMQError:
            self._socket.disable_monitor()
            self._events.close(linger=0)
            self._socket.close()
            self._zap.close()
            self._context.term()
            raise
        self.address = f"tcp://{host}:{port}"
        self.port = port
        self._notifier = QSocketNotifier(self._socket.getsockopt(zmq.FD), QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(self.read)
        self._events_notifier = QSocketNotifier(self._events.getsockopt(zmq.FD), QSocketNotifier.Type.Read, self)
        self._events_notifier.activated.connect(self.read_events)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.read)
        self._timer.start(SAFETY_POLL_MS)
        self._more = QTimer(self, singleShot=True, interval=0)
        self._more.timeout.connect(self.read)

    @property
    def refused(self) -> int:
        """Connections refused so far, whatever the cause."""
        return self.refusals.total

    def read_events(self) -> None:
        """Count the connections opened and closed, and the handshakes refused, since the last call (up to
        EVENT_BATCH; the safety timer reads on)."""
        if self._events.closed:
            return
        plaintext = self.curve is None
        with self.connections.lock:
            for _ in range(EVENT_BATCH):
                if not self._events.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                    self.connections.caught_up()
                    return
                event = recv_monitor_message(self._events, zmq.NOBLOCK)
                kind, value = int(event["event"]), int(event["value"])
                if kind & REFUSAL_EVENTS:
                    self.refusals.add(cause(kind, value, plaintext))
                else:
                    self.connections.event(kind, value)

    def read(self) -> None:
        """Read and emit waiting messages, up to BATCH or BATCH_SECONDS; schedule another read if more wait."""
        if self._socket.closed:
            return
        self.read_events()  # the events' FD is edge-triggered too: the safety timer reads them as well
        deadline = time.monotonic() + BATCH_SECONDS
        for _ in range(BATCH):
            if not self._socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                return
            frames = self._socket.recv_multipart(zmq.NOBLOCK, copy=False)
            peer = self.curve.peer(frames[0]) if self.curve is not None else None
            self.handle([frame.bytes for frame in frames], peer)
            if time.monotonic() > deadline:
                break
        self._more.start()

    def handle(self, frames: list[bytes], peer: str | None = None) -> None:
        """Emit the message in ``frames`` (sent under key ``peer``); warn about and count one that is not valid."""
        try:
            message = parse(frames)
        except ProtocolError as err:
            self.ignore(str(err))
            return
        except Exception as err:
            # A peer's bytes the parser did not foresee are still only a bad message: one traceback per message and
            # the rest of the batch abandoned would let any peer flood stderr (the traceback is kept for --debug).
            log.debug("the parser failed on a message", exc_info=True)
            self.ignore(f"{type(err).__name__}: {err}")
            return
        self.count += 1
        self.received.emit(message, peer)

    def ignore(self, reason: str) -> None:
        """Count a message not taken in; warn, at most once every WARNING_INTERVAL seconds."""
        self.ignored += 1
        now = self.clock()
        if now - self._last_warning < WARNING_INTERVAL:
            self._unreported += 1
            return
        more = f" ({self._unreported} more ignored since the last warning)" if self._unreported else ""
        log.warning("ignored a message: %s%s", reason, more)
        self._last_warning, self._unreported = now, 0

    def close(self) -> None:
        """Stop reading; close the socket and its context."""
        if self._socket.closed:
            return
        self._timer.stop()
        self._more.stop()
        self._notifier.setEnabled(False)
        self._notifier.deleteLater()
        self._events_notifier.setEnabled(False)
        self._events_notifier.deleteLater()
        self._socket.disable_monitor()
        self._events.close(linger=0)
        self._socket.close()
        self._zap.close()
        self._context.term()
