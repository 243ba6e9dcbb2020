"""A listening socket's events (libzmq's socket monitor), read in a thread of their own as fast as libzmq makes them.

libzmq's I/O thread hands each event of a socket to its monitor with a blocking send, holding the socket's monitor
lock: once the monitor's queue is full (2,000 events, the two high-water marks of its PAIR pipe) it waits for a reader,
and every connection of every socket of the context waits with it; ``disable_monitor()`` waits for that lock. A peer
that can only open TCP connections, no key needed, makes events as fast as it opens and drops them (one accepted, one
failed handshake, one disconnected each). Read in the owner's loop, between its other work, they filled the queue:
pipeline-gui then heard no run, kept the flood's connections open, and waited for ever in its close (only SIGKILL
ended it). Here a thread does nothing but read them, each handed to a callback that only counts it: the queue never
stays full, whatever the owner is busy with, and the thread ends when the monitor stops or the context terminates.

The monitor is never stopped by hand: pyzmq's ``disable_monitor()`` waits for that lock holding the GIL, which this
thread needs to read the event libzmq's I/O thread is handing on under the lock (pipeline-gui, closing after a flood,
waited there for ever). :meth:`SocketEvents.close` closes the socket instead, which only hands it to libzmq's reaper
thread; the reaper stops the monitor as it destroys the socket, and this thread, free to read, ends on MONITOR_STOPPED.

The clients' monitors (a run's status stream, pipeline-worker's join) stay in their owners' loops: their events come
from their own connections, a few per reconnection (100 ms apart at least), far fewer than their loops read.
"""

from __future__ import annotations

import itertools
import logging
import threading
from collections.abc import Callable

import zmq
from zmq.utils.monitor import recv_monitor_message

from pipeline.auth.zap import THREAD_SECONDS

log = logging.getLogger("pipeline.auth.events")

#: Numbers the monitors' addresses: each its own (pyzmq's, ``inproc://monitor.s-FD``, outlives its socket a while).
_NUMBERS = itertools.count()

#: What is told of each event, in the events' thread: its kind (a zmq.EVENT_*) and its value.
Handle = Callable[[int, int], None]


class SocketEvents(threading.Thread):
    """Reads the ``events`` of ``socket`` as they come and hands each to ``handle`` (in this thread: it must only
    count, under its own lock). Made in the socket's own thread before its bind; :meth:`close` closes the socket."""

    def __init__(self, socket: zmq.Socket, events: int, handle: Handle) -> None:
        super().__init__(name="socket-events", daemon=True)
        self.handle = handle
        self._socket = socket
        self._address = f"inproc://pipeline-events-{next(_NUMBERS)}"
        self._connected = threading.Event()
        # MONITOR_STOPPED: the socket's destruction says so, and the thread ends once it has read what came before.
        socket.monitor(self._address, events | zmq.EVENT_MONITOR_STOPPED)
        self.start()

    def start(self) -> None:
        """Start the thread; return once it reads (libzmq's first event waits for its reader)."""
        super().start()
        if not self._connected.wait(THREAD_SECONDS):
            raise RuntimeError(f"the reader of a socket's events did not start within {THREAD_SECONDS:g} s")

    def run(self) -> None:
        """Read and hand on events until the monitor stops or the context terminates (ETERM: a clean stop, whether
        it comes as the reader is made or as it reads)."""
        reader = None
        try:
            reader = self._socket.context.socket(zmq.PAIR)
            reader.connect(self._address)
            self._connected.set()
            self._read(reader)
        except zmq.ZMQError as err:
            if err.errno != zmq.ETERM:
                raise
        finally:
            if reader is not None:
                reader.close(linger=0)
            self._connected.set()

    def _read(self, reader: zmq.Socket) -> None:
        """Hand on each event read from ``reader`` until MONITOR_STOPPED; a callback that fails is logged, the
        reading goes on (a reader that stopped would freeze libzmq's I/O thread)."""
        while True:
            event = recv_monitor_message(reader)
            kind = int(event["event"])
            if kind == zmq.EVENT_MONITOR_STOPPED:
                return
            try:
                self.handle(kind, int(event["value"]))
            except Exception:
                log.exception("counting a socket event (%d) failed; the events are read on", kind)

    def close(self) -> None:
        """Close the socket (in its own thread) and wait for the thread to end: libzmq's reaper stops the monitor as
        it destroys the socket, or the context's termination ends the thread."""
        self._socket.close()
        self.join(THREAD_SECONDS)
