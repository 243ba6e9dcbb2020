"""Sending and receiving multipart messages with the least Python work per frame.

pyzmq's send_multipart/recv_multipart spend several microseconds per call on flag enums,
RCVMORE queries and, for NOBLOCK, exceptions; these helpers pass plain integer flags, follow
``Frame.more`` and ask ``EVENTS`` instead. Large frames are sent without copying.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

import zmq

if TYPE_CHECKING:
    from pipeline.engine.addresses import Addresses

_SNDMORE = int(zmq.SNDMORE)
_POLLIN = int(zmq.POLLIN)
_EVENTS = zmq.EVENTS
#: Frames at least this large are handed to ZeroMQ by reference instead of copied.
_ZERO_COPY_BYTES = 64 * 1024
#: Numbers the monitors' addresses (see ``monitor``).
_MONITORS = itertools.count()


def open_all(context: zmq.Context, *kinds: int) -> list[zmq.Socket]:
    """A socket of each of ``kinds``; none left open if the context refuses one (it is being terminated), since its
    termination waits for every socket to close."""
    opened: list[zmq.Socket] = []
    try:
        for kind in kinds:
            opened.append(context.socket(kind))
    except BaseException:
        for socket in opened:
            socket.close()
        raise
    return opened


def monitor(socket: zmq.Socket, events: int) -> zmq.Socket:
    """A PAIR socket that hears ``events`` of ``socket``, at an address of its own.

    pyzmq's own address (``inproc://monitor.s-FD``) is unbound by ``disable_monitor()`` only later, in
    libzmq's reaper: a socket monitored again at once, or a new socket given a closed one's descriptor,
    found it still bound (pipeline-worker asks the run for each of its worker processes on one socket, and
    one in eight asks died of "Address already in use").
    """
    return socket.get_monitor_socket(events, addr=f"inproc://pipeline-monitor-{next(_MONITORS)}")


def terminated(context: zmq.Context, error: BaseException) -> bool:
    """Whether ``error`` only says that ``context`` was terminated: ContextTerminated from a blocking call, or a socket
    asked of it while it was being terminated (ETERM, which pyzmq raises as a plain ZMQError) or once it was
    (pyzmq's ENOTSUP)."""
    return isinstance(error, zmq.ZMQError) and (
        error.errno == zmq.ETERM or (error.errno == zmq.ENOTSUP and context.closed))


def send(socket: zmq.Socket, frames: Sequence[Any]) -> None:
    """Send ``frames`` as one multipart message (blocks at the high-water mark: backpressure).

    A zmq.Frame is always passed by reference (ZeroMQ counts references to its memory); a large
    memoryview too (pyzmq then releases it through its garbage-collector thread); the rest is copied.
    """
    last = len(frames) - 1
    for i, frame in enumerate(frames):
        kind = type(frame)
        by_reference = kind is zmq.Frame or (kind is memoryview and frame.nbytes >= _ZERO_COPY_BYTES)
        socket.send(frame, 0 if i == last else _SNDMORE, copy=not by_reference)


def send_while(socket: zmq.Socket, frames: Sequence[Any], wanted: Callable[[], bool]) -> bool:
    """Send ``frames`` through ``socket`` (its ``sndtimeo`` set) while ``wanted()`` holds: to a thread that may
    end meanwhile (a router that finished), which a plain send would wait for forever; False if not sent."""
    while wanted():
        try:
            send(socket, frames)
        except zmq.Again:
            continue
        return True
    return False


def recv(socket: zmq.Socket, flags: int = 0) -> list[zmq.Frame]:
    """Receive one multipart message as zmq.Frame objects (not copied); blocks until one comes."""
    frame = socket.recv(flags, False)
    frames = [frame]
    while frame.more:
        frame = socket.recv(0, False)
        frames.append(frame)
    return frames


def waiting(socket: zmq.Socket) -> bool:
    """True when a message can be received at once."""
    return bool(socket.getsockopt(_EVENTS) & _POLLIN)


#: Milliseconds a notice to a router waits before the router is looked at again (it may have finished).
NOTICE_WAIT_MS = 100


def notice_senders(context: zmq.Context, addresses: Addresses, steps: Iterable[str]) -> dict[str, zmq.Socket]:
    """A PUSH socket to each of ``steps``' routers' notice addresses (by step), whose send waits NOTICE_WAIT_MS at
    most: the thread that makes them (the supervisor's, the door's) owns them."""
    senders: dict[str, zmq.Socket] = {}
    for step in steps:
        notice = senders[step] = context.socket(zmq.PUSH)
        notice.linger = 0
        notice.sndtimeo = NOTICE_WAIT_MS
        notice.connect(addresses.notices(step))
    return senders
