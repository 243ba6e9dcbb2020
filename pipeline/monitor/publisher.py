"""The status stream's socket: an XPUB that connects to the GUI's address, never blocks and never grows.

The GUI binds a SUB socket; each run connects to it, so a GUI may start before or after the run,
on this host or another (ZeroMQ reconnects until the address is bound). With credentials the
socket is a CURVE client pinned to the monitor's public key: it completes a handshake only with
the holder of the monitor's secret key, and sends nothing to anyone else, nor anything in clear.

The socket is an XPUB, a PUB that also hears its subscribers: when one subscribes, the monitor
sends it the graph at once. libzmq keeps every distinct subscription a peer sends, with no limit
on their number (manual mode keeps them too), so a peer could grow the run's memory without end.
Here a subscription may be ``SUBSCRIPTION_BYTES`` long at most, one waits to be read at a time
(``SUBSCRIPTION_HWM``), a bounded number is read per look,
and a connection that subscribes more than ``MAX_SUBSCRIPTIONS`` times (a monitor subscribes once)
is dropped and made again, which frees all it subscribed. With credentials, only the user's
monitor gets that far. Sends never wait: with no subscriber a message is discarded; a subscriber
that does not keep up has its messages dropped at a small high-water mark, and the drops are counted.

A run that nobody can hear must not stay silent about it: the socket's own events (libzmq's socket
monitor, read without waiting on each look) tell how each handshake with the listener ended, and
:meth:`Publisher.refusals` hands the failures to the monitor, which says why once
(``credentials.refusal_reason``): a listener that takes no keys, or only keys, or does not hold the
monitor key the run trusts, or refuses the run's key.

The socket belongs to the monitor's thread, in a context of its own (not the engine's); so does the
PAIR socket that reads its events.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import zmq
from traitlets import Unicode
from zmq.utils.monitor import recv_monitor_message

from pipeline.auth.curve import secure_client
from pipeline.config.traits import ValueProblem, check_encodable, shown
from pipeline.monitor.credentials import Credentials
from pipeline.monitor.messages import Envelope, encode

log = logging.getLogger("pipeline.monitor")

#: Messages queued for a slow subscriber before the next ones are dropped.
SEND_HWM = 100
#: Milliseconds the last messages may take to leave when the socket closes: a full queue (SEND_HWM) read by a
#: monitor that parses each in a few milliseconds, then the run's last status and its finish.
CLOSE_LINGER_MS = 2500
#: Milliseconds the run's last status and its finish may each wait for room in a monitor's queue: the end of a
#: run that a monitor hears is never the part dropped (the errors before it are, counted in that status).
END_WAIT_MS = 500
#: The longest subscription a peer may send (ours is 1 byte); a longer one drops that peer's connection.
SUBSCRIPTION_BYTES = 256
#: Subscriptions read per look at most, so that a peer flooding them cannot hold the monitor's thread.
SUBSCRIPTIONS_PER_LOOK = 16
#: Subscriptions queued for reading at most; more wait in the peer's socket (ZeroMQ's backpressure). One, because
#: libzmq's XPUB takes every subscription its queue holds into its trie (about 50 bytes per byte of topic) in a loop
#: that goes on while the queue refills: with 16, a peer's flood kept it refilled and 50 drops grew the run by up to
#: 340 MiB; with one the loop ends at the first message, and the trie holds about what the run has read.
SUBSCRIPTION_HWM = 1
#: Subscriptions and cancels one connection may send before it is dropped (a monitor sends one).
MAX_SUBSCRIPTIONS = 8
#: Milliseconds between reconnections at most, while no monitor listens or a handshake fails.
RECONNECT_MAX_MS = 2000
#: The handshake failures libzmq reports, each with its value: a ZMTP error code, an errno, or a ZAP status.
HANDSHAKE_FAILURES = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                      zmq.EVENT_HANDSHAKE_FAILED_AUTH)
#: The socket events read: a connection made or refused (nobody listens: retried later), and how its handshake ended.
WATCHED_EVENTS = (zmq.EVENT_CONNECTED | zmq.EVENT_CONNECT_RETRIED | zmq.EVENT_HANDSHAKE_SUCCEEDED
                  | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                  | zmq.EVENT_HANDSHAKE_FAILED_AUTH)
#: Socket events read per look at most (a listener that fails every handshake makes one each reconnection). A queue
#: of 2,000 unread freezes libzmq's I/O thread: a listener that drops each connection at once made 30 a second (three
#: a connection, one connection per libzmq's reconnect_ivl, 100 ms), and a look every 0.1 s reads 160.
EVENTS_PER_LOOK = 16
#: Milliseconds the end of a run waits at most for a listener whose connection is made to finish its
#: handshake and subscribe, so that a short run is still heard (or says why not); no wait when no
#: connection was made (nobody listens) or the listener subscribed already.
HANDSHAKE_WAIT_MS = 500
#: Milliseconds the end of a run waits at most to learn whether its first connection was made or refused: on a busy
#: host a short run may end while its connection is still in progress (a listener on this host answers in about a
#: millisecond; a refusal takes as long, so a run that nobody hears does not wait).
CONNECT_WAIT_MS = 200

_ADDRESS = re.compile(r"(tcp://)?(\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):\d{1,5}")


class Address(Unicode):
    """A ``host:port`` (or ``tcp://host:port``) trait; ``*`` is not a host: the GUI binds, a run connects."""

    info_text = "an address host:port or tcp://host:port (a port from 1 to 65535)"

    def validate(self, obj: Any, value: Any) -> str:
        """The address, if it is host:port with a port from 1 to 65535 (a GUI to connect to); else a ValueProblem, the
        whole problem in one line (a TraitError's words were said after traitlets' own: the line said it twice)."""
        value = check_encodable(super().validate(obj, value), self.info_text)  # libzmq takes UTF-8 only
        host, _, port = value.rpartition(":")
        if not _ADDRESS.fullmatch(value) or host.endswith("*") or not 1 <= int(port) <= 65535:
            raise ValueProblem(f"expected {self.info_text}, got {type(value).__name__} {shown(value)}")
        return value


def endpoint(address: str) -> str:
    """The ZeroMQ endpoint of ``host:port`` or ``tcp://host:port``."""
    return address if address.startswith("tcp://") else f"tcp://{address}"


@dataclass(frozen=True)
class Refusal:
    """A handshake with the listener at the run's address that failed, as libzmq reported it."""

    event: int  # one of HANDSHAKE_FAILURES
    value: int  # a ZMTP protocol error (zmq.PROTOCOL_ERROR_*), an errno, or a ZAP status code (400)


class Publisher:
    """Sends a run's messages to ``address``; make it, use it and close it in the same thread.

    ``credentials`` None: in clear (``Pipeline.gui_plaintext``), to whoever listens at the address.
    """

    def __init__(self, address: str, envelope: Envelope, credentials: Credentials | None) -> None:
        self.envelope = envelope
        self.sent = 0  # messages handed to ZeroMQ (with no subscriber, ZeroMQ discards them)
        self.dropped = 0  # messages dropped because a subscriber was at its high-water mark
        self.resets = 0  # connections dropped for subscribing too much
        self._serial = 0
        self._subscriptions = 0  # since the connection was last made
        self.heard = False  # a handshake with the listener succeeded (then nothing is refused)
        self.subscribed = False  # a listener subscribed (since the connection was last dropped by us)
        self._handshaking = False  # a connection is made and its handshake has not ended yet
        self._answered = False  # a connection was made or refused at least once (an event was read)
        self._refused: list[Refusal] = []  # read from the events, not yet handed out by refusals()
        self._endpoint = endpoint(address)
        self._context = zmq.Context()
        self._socket = self._context.socket(zmq.XPUB)
        self._events: zmq.Socket | None = None
        try:
            self._events = self._socket.get_monitor_socket(WATCHED_EVENTS)
            self._socket.sndhwm = SEND_HWM
            self._socket.rcvhwm = SUBSCRIPTION_HWM
            self._socket.linger = 0
            self._socket.reconnect_ivl_max = RECONNECT_MAX_MS
            self._socket.setsockopt(zmq.MAXMSGSIZE, SUBSCRIPTION_BYTES)
            self._socket.setsockopt(zmq.XPUB_NODROP, 1)  # at the high-water mark: EAGAIN, so drops are counted
            if credentials is not None:
                secure_client(self._socket, credentials.own, credentials.server)
            self._socket.connect(self._endpoint)
        except zmq.ZMQError:
            self.close(0)
            raise

    def publish(self, topic: str, body: Mapping[str, Any], wait_ms: int = 0) -> bool:
        """Send one message, waiting ``wait_ms`` at most for room in a subscriber's queue (0: now), or drop it;
        True if ZeroMQ took it."""
        self._serial += 1
        frames = encode(self.envelope.message(topic, self._serial, body))
        try:
            if wait_ms:
                self._socket.sndtimeo = wait_ms  # a blocking send waits for room (XPUB_NODROP), this long at most
                self._socket.send_multipart(frames)
            else:
                self._socket.send_multipart(frames, zmq.NOBLOCK)
        except zmq.Again:
            self.dropped += 1
            return False
        self.sent += 1
        return True

    def skip(self, count: int) -> None:
        """Count ``count`` messages dropped without trying to send them (the queue had no room)."""
        self.dropped += count

    def new_subscribers(self) -> bool:
        """True if a subscriber subscribed since the last call (read without waiting, a bounded number).

        A connection that subscribed more than MAX_SUBSCRIPTIONS times is dropped and made again.
        """
        subscribed = False
        for _ in range(SUBSCRIPTIONS_PER_LOOK):
            try:
                frame = self._socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            self._subscriptions += 1
            subscribed = subscribed or frame[:1] == b"\x01"
        self.subscribed = self.subscribed or subscribed
        if self._subscriptions > MAX_SUBSCRIPTIONS:
            self._reconnect()
            return False
        return subscribed

    def refusals(self) -> list[Refusal]:
        """The handshakes that failed since the last call (events read without waiting, a bounded number)."""
        self._read_events()
        refused, self._refused = self._refused, []
        return refused

    @property
    def handshaking(self) -> bool:
        """Whether a connection to a listener was made and its handshake has not ended (as of the events read)."""
        return self._handshaking

    @property
    def connected(self) -> bool:
        """Whether a connection to a listener was made (as of the events read so far)."""
        return self._handshaking or self.heard

    def settle(self, wait_ms: int) -> None:
        """Wait ``wait_ms`` at most while a connection is made and its listener has neither subscribed nor
        been refused: at the end of a short run, which sends its graph then whatever subscribed.

        A first connection still in progress is given CONNECT_WAIT_MS to be made or refused first.
        """
        deadline = time.monotonic() + wait_ms / 1000
        poller = zmq.Poller()
        poller.register(self._socket, zmq.POLLIN)
        if self._events is not None:
            poller.register(self._events, zmq.POLLIN)
            self._read_events()
            if not self._answered and self._events.poll(min(CONNECT_WAIT_MS, wait_ms)):
                self._read_events()
        while self.connected and not self.subscribed and not self._refused:
            left = deadline - time.monotonic()
            if left <= 0 or not poller.poll(left * 1000):
                break
            self._read_events()
            self.new_subscribers()

    def _read_events(self) -> None:
        """Read the socket's events waiting (a bounded number): how its handshakes went."""
        events = self._events
        for _ in range(EVENTS_PER_LOOK):
            if events is None or not events.poll(0):
                break
            event = recv_monitor_message(events)
            kind, value = int(event["event"]), int(event["value"])
            self._answered = True
            self._handshaking = kind == zmq.EVENT_CONNECTED
            if kind == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.heard = True
            elif kind in HANDSHAKE_FAILURES:
                self._refused.append(Refusal(kind, value))

    def _reconnect(self) -> None:
        """Drop the connection, and with it every subscription its peer made; connect again."""
        if not self.resets:
            log.warning("the peer at %s subscribed %d times (a monitor subscribes once): its connection is "
                        "dropped and made again, as often as it does so", self._endpoint, self._subscriptions)
        self.resets += 1
        self._subscriptions = 0
        self.subscribed = False
        self._socket.disconnect(self._endpoint)
        self._socket.connect(self._endpoint)

    def close(self, linger_ms: int = CLOSE_LINGER_MS) -> None:
        """Close the socket, giving what is queued ``linger_ms`` to leave, and end the context."""
        if self._handshaking:
            # Nothing of the run's waits for a listener that never finished its handshake (a full monitor holds one
            # until it times out), but libzmq would wait linger_ms for it: the run's exit with it.
            linger_ms = 0
        if self._events is not None:
            self._socket.disable_monitor()
            self._events.close(linger=0)
        self._socket.close(linger=linger_ms)
        self._context.term()
