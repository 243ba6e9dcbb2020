"""The SUB socket the runs publish to, read inside Qt's event loop without ever blocking it.

A ZeroMQ socket's ``zmq.FD`` is edge-triggered: it becomes readable when the socket's state
changes, not while messages wait. So each time the notifier fires (and on a slow safety timer) the
receiver reads while ``zmq.EVENTS`` says POLLIN, with NOBLOCK, a bounded batch at a time (at most
BATCH messages and BATCH_SECONDS) so that a flood of messages never starves the UI; a full batch
schedules the next one right away.

Unless the monitor runs in plaintext, the socket is a CURVE server (``pipeline.auth.curve.CurveServer``,
started before the bind): only runs holding an allowed key get in, and each message is credited to
the key its connection proved (the frame's User-Id), never to what the message says. Each handshake
the socket refuses is counted by cause (``gui.refusals``), so that a run whose settings do not match never goes
unseen: libzmq's socket monitor says so, read in a thread of its own (``pipeline.auth.events``), never in the window's
turns, since a monitor whose queue fills freezes libzmq's I/O thread (a flood of bare TCP connections left the window
deaf for good, and its close waiting for ever).

Whatever peers send in messages of the protocol's FRAMES frames, the socket's memory stays bounded: libzmq keeps, for
each connection, the messages queued for reading (``RECEIVE_HWM``, where its default is 1,000 per connection: a
gigabyte of 1 MiB messages) and the one being received, each frame ``MAX_FRAME_SIZE`` at most. So the monitor holds at
most ``MAX_CONNECTIONS`` connections at once: a ZAP handler (in both modes) asks :class:`Connections` about each one
it lets in (in CURVE mode, after the key check: an unknown key never takes a place), which counts those whose
handshake succeeded, from the socket's events, until disconnected, and turns the others away (counted as refused:
``too many connections``). libzmq tells the client nothing of it and holds the connection until its handshake times
out: ``handshake_ivl`` (``HANDSHAKE_SECONDS``) closes it, and an idle connection that never starts its handshake,
within seconds; the run then connects again, and gets in once a place is free. That is MAX_CONNECTIONS x (RECEIVE_HWM
+ 1) x FRAMES x MAX_FRAME_SIZE = 384 MiB at most in the socket (a run's messages are a few KiB: 3 MiB for 64 runs).

libzmq limits each frame's size but not a message's frames: a peer sending messages of many frames makes it queue
more. :meth:`Receiver.read` takes a message frame by frame and drops one of more than FRAMES, so Python never holds
more than FRAMES + 1 of its frames; libzmq's queue holds what the peer sent. In CURVE mode only a run holding an
allowed key gets that far; in plaintext, anyone who reaches the port: plaintext is for trusted networks alone.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable

import zmq
from PySide6.QtCore import QObject, QSocketNotifier, QTimer, Signal

from pipeline.auth.curve import HANDSHAKE_SECONDS, CurveServer, ServerKeys, ZapServer
from pipeline.auth.events import SocketEvents

from .protocol import FRAMES, ProtocolError, parse
from .refusals import REFUSAL_EVENTS, Refusals, cause

log = logging.getLogger("gui.receiver")

#: Messages read per turn of the event loop at most.
BATCH = 200
#: Seconds of reading per turn of the event loop at most (a batch of big messages takes long to parse).
BATCH_SECONDS = 0.02
#: Milliseconds between safety reads, in case an edge of the socket's FD was missed.
SAFETY_POLL_MS = 250
#: The largest frame accepted (bytes; libzmq's MAXMSGSIZE limits each frame, not a message); a larger one drops its
#: sender's connection. A run's biggest, an error with its traceback cut to 32,000 characters, is far below.
MAX_FRAME_SIZE = 1024 * 1024
#: Seconds between two warnings about ignored messages (the others are counted in the next one).
WARNING_INTERVAL = 5.0
#: Messages libzmq queues per connection for reading (its default, 1,000, let a peer grow the window by a GiB per
#: connection). A run sends a few messages a second and the window reads them at once; a burst waits in the run.
#: Not 1: with a ZAP handler, libzmq's queue of one held nothing but the connection's credentials, and stalled.
RECEIVE_HWM = 2
#: Connections held open at once at most (a run holds one): more than the runs the window keeps (20), since one turned
#: away still counts until its handshake times out (the count knows no file descriptor of a handshake's end) and
#: retries at once: with as few places as tabs, 25 runs at once kept 7 of them out while places were free.
MAX_CONNECTIONS = 64
#: The socket's events read: connections opened and closed, handshakes succeeded (counted), and refused handshakes.
EVENTS = REFUSAL_EVENTS | zmq.EVENT_ACCEPTED | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED


class Connections:
    """The connections whose handshake succeeded, from the socket's events; and whether one more may open.

    libzmq gives a file descriptor with a connection's ``accepted`` and ``disconnected`` events but none with how its
    handshake ended. Every accepted connection has one outcome (succeeded, or failed), and then its disconnection; so
    the connections open less those accepted without an outcome yet are the ones counted: an idle connection that
    never starts its handshake counts for nothing (``handshake_ivl`` closes it). :meth:`admit` runs in the ZAP
    handler's thread, :meth:`event` in the socket events' (``pipeline.auth.events``); a handshake succeeds (and its
    event comes) after the ZAP handler answers, so each admission counts too until a success is read, or for
    HANDSHAKE_SECONDS at most: by then its handshake has ended.
    """

    def __init__(self, limit: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit = limit
        self.clock = clock
        self._lock = threading.Lock()
        self._open: set[int] = set()
        self._handshaking = 0  # connections accepted whose handshake has not ended yet
        self._admitted: deque[float] = deque()  # when each admission whose success is not read yet was made

    @property
    def count(self) -> int:
        """Connections open past their handshake (or admitted and not yet seen to succeed)."""
        return len(self._open) - self._handshaking + len(self._admitted)

    def admit(self) -> bool:
        """True if one more connection may open (then it is counted); False when ``limit`` are."""
        with self._lock:
            now = self.clock()
            while self._admitted and now - self._admitted[0] > HANDSHAKE_SECONDS:
                self._admitted.popleft()
            if self.count >= self.limit:
                return False
            self._admitted.append(now)
            return True

    def event(self, kind: int, value: int) -> None:
        """Count a socket event: a connection accepted or disconnected (``value``: its fd), a handshake ended."""
        with self._lock:
            if kind == zmq.EVENT_ACCEPTED:
                self._open.add(value)
                self._handshaking += 1
            elif kind == zmq.EVENT_DISCONNECTED:
                self._open.discard(value)
                # No more handshakes than connections, should libzmq close one without saying how it ended.
                self._handshaking = min(self._handshaking, len(self._open))
            else:
                self._handshaking = max(self._handshaking - 1, 0)
                if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED and self._admitted:
                    self._admitted.popleft()


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
        self._discarding = False  # the frames left of a message of too many frames are let go (_discard)
        self._context = zmq.Context()
        self.curve = CurveServer(self._context, keys, self.connections.admit) if keys else None
        self._zap = self.curve or ZapServer(self._context, self.connections.admit)
        self._socket = self._context.socket(zmq.SUB)
        self._events = SocketEvents(self._socket, EVENTS, self._event)
        try:
            self._zap.secure(self._socket)
            self._socket.setsockopt(zmq.LINGER, 0)
            self._socket.setsockopt(zmq.MAXMSGSIZE, MAX_FRAME_SIZE)
            self._socket.handshake_ivl = int(HANDSHAKE_SECONDS * 1000)
            self._socket.setsockopt(zmq.RCVHWM, RECEIVE_HWM)
            self._socket.setsockopt(zmq.SUBSCRIBE, b"")
            if port == 0:
                port = self._socket.bind_to_random_port(f"tcp://{host}")
            else:
                self._socket.bind(f"tcp://{host}:{port}")
        except zmq.ZMQError:
            self._events.close()
            self._zap.close()
            self._context.term()
            raise
        self.address = f"tcp://{host}:{port}"
        self.port = port
        self._notifier = QSocketNotifier(self._socket.getsockopt(zmq.FD), QSocketNotifier.Type.Read, self)
        self._notifier.activated.connect(self.read)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self.read)
        self._timer.start(SAFETY_POLL_MS)
        self._more = QTimer(self, singleShot=True, interval=0)
        self._more.timeout.connect(self.read)

    @property
    def refused(self) -> int:
        """Connections refused so far, whatever the cause."""
        return self.refusals.total

    def _event(self, kind: int, value: int) -> None:
        """Count a socket event (in the events' thread): a refused handshake by its cause, and the connections."""
        if kind & REFUSAL_EVENTS:
            self.refusals.add(cause(kind, value, self.curve is None))
        self.connections.event(kind, value)

    def read(self) -> None:
        """Read and emit waiting messages, up to BATCH or BATCH_SECONDS; schedule another read if more wait."""
        if self._socket.closed:
            return
        deadline = time.monotonic() + BATCH_SECONDS
        for _ in range(BATCH):
            if self._discarding and not self._discard(deadline):
                break  # its frames go on at the next turn: a message of millions of frames never holds the window
            if not self._socket.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                return
            frames = self._receive()
            if frames is None:
                self.ignore(f"a message of more than {FRAMES} frames")
            else:
                peer = self.curve.peer(frames[0]) if self.curve is not None else None
                self.handle([frame.bytes for frame in frames], peer)
            if time.monotonic() > deadline:
                break
        self._more.start()

    def _receive(self) -> list[zmq.Frame] | None:
        """The next message's frames; None for one of more than FRAMES, whose frames past the first FRAMES + 1 are
        then let go by :meth:`_discard` (a message's frames all wait once its first does)."""
        frame = self._socket.recv(zmq.NOBLOCK, copy=False)
        frames = [frame]
        while frame.more and len(frames) <= FRAMES:
            frame = self._socket.recv(zmq.NOBLOCK, copy=False)
            frames.append(frame)
        if len(frames) <= FRAMES:
            return frames
        self._discarding = frame.more
        return None

    def _discard(self, deadline: float) -> bool:
        """Let go of the frames left of a message of too many frames, one at a time, until its last (True) or
        ``deadline`` (False: the next turn goes on; one message of 4 million frames held the window for 5 s)."""
        while self._socket.recv(zmq.NOBLOCK, copy=False).more:  # one frame at least a turn: it ends, however short
            if time.monotonic() > deadline:
                return False
        self._discarding = False
        return True

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
        self._events.close()  # the socket's close
        self._zap.close()
        self._context.term()
