"""The run's door for remote workers: one CURVE-authenticated port through which workers on other hosts
join a step, exchange heartbeats and talk to the step's router.

A remote host runs ``pipeline-worker --connect=tcp://HEAD:PORT --step=S`` (see docs/cluster.md). Its
keeper says HELLO (the step, how many threads), and gets a slot and the step's SPEC; its worker
threads then connect to the same port, under the routing id ``p<slot>.<thread>``, and the door
relays their frames to the step's router through an inproc socket of that same routing id, so
the router treats them exactly as the threads of a local worker process.

What a peer can send is checked before anything else happens to it:

- the port is a CURVE server whose ZAP handler (started before the port binds, with
  ``ZAP_ENFORCE_DOMAIN``) lets in only the public keys of ``authorized_keys``: a peer without
  CURVE, or with another key, never completes its handshake and never gets a frame to us;
- a peer is known by the key its handshake proved (the frames' User-Id), never by the routing id
  it claims: the frames of a slot are relayed only when they come from the key that opened it;
- each frame set is checked against the wire format (engine.wire) before it is relayed, so a
  malformed one is dropped (with one rate-limited warning) and never reaches a router; the door
  never unpickles anything.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq

from pipeline.auth.curve import CurveServer, ServerKeys
from pipeline.engine import sockets
from pipeline.engine.wire import Kind, WireError, check_from_worker, parse_worker_id
from pipeline.execution.status import WorkerProcessStatus

log = logging.getLogger("pipeline.engine")

#: Seconds between two warnings about dropped frames.
_WARN_EVERY_SECONDS = 10.0
#: Largest frame a remote peer may send (libzmq drops the connection of a peer that sends more).
MAX_FRAME_BYTES = 1 << 30


@dataclass
class RemoteWorker:
    """A remote worker host's process, in one slot of the run."""

    slot: int
    step: str
    key: str  # the name of the key it proved
    address: str  # where it connected from
    threads: int
    keeper: bytes  # the routing id of its keeper's socket
    pid: int  # its process id on its host (as it says)
    heard: float = field(default_factory=time.monotonic)
    running: list[int] = field(default_factory=list)  # the messages it said it was running, at its last heartbeat
    halted: bool = False
    relays: dict[bytes, zmq.Socket] = field(default_factory=dict)  # per worker thread: its socket to the router

    def status(self, now: float) -> WorkerProcessStatus:
        """What the monitor shows of it."""
        return WorkerProcessStatus(self.slot, "remote", self.pid, self.address, self.key, self.threads,
                                   now - self.heard)


class RemoteDoor:
    """The listening socket and the relays of the remote workers (owned by the worker host's thread)."""

    def __init__(self, context: zmq.Context, listen: str, keys: ServerKeys,
                 work_address: Callable[[str], str], next_steps: Callable[[str], int]) -> None:
        self.context = context
        self.work_address = work_address
        self.next_steps = next_steps  # how many next steps a step has: the targets its results may name
        self.server = CurveServer(context, keys)  # before the socket binds: no handshake escapes the check
        self.socket = context.socket(zmq.ROUTER)
        try:
            self.socket.linger = 0
            self.socket.router_mandatory = True
            self.socket.maxmsgsize = MAX_FRAME_BYTES
            self.server.secure(self.socket)
            self.socket.ipv6 = listen.startswith("tcp://[")  # libzmq takes an IPv6 address only with IPV6 set
            self.socket.bind(listen)
        except BaseException:
            self.socket.close()
            self.server.close()
            raise
        self.workers: dict[int, RemoteWorker] = {}
        self.dropped = 0
        self._warned = 0.0

    def relays(self) -> list[tuple[RemoteWorker, zmq.Socket]]:
        """The sockets from the routers to remote worker threads, each with its worker."""
        return [(worker, relay) for worker in self.workers.values() for relay in worker.relays.values()]

    def drop(self, why: str) -> None:
        """Count a message that is not relayed; warn at most every _WARN_EVERY_SECONDS."""
        self.dropped += 1
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY_SECONDS:
            self._warned = now
            log.warning("remote workers: dropped a message (%s); %d dropped in all", why, self.dropped)

    def owner(self, received: list[zmq.Frame]) -> str | None:
        """The key that sent ``received`` (its handshake's), or None."""
        return self.server.peer(received[-1])

    def worker_of(self, routing_id: bytes, key: str) -> RemoteWorker | None:
        """The remote worker whose thread claims ``routing_id``, if the key that sent it opened that slot."""
        parsed = parse_worker_id(routing_id)
        if parsed is None:
            return None
        slot, thread = parsed
        worker = self.workers.get(slot)
        if worker is None or worker.key != key or not 0 <= thread < worker.threads:
            return None
        return worker

    def to_router(self, worker: RemoteWorker, routing_id: bytes, payload: list[zmq.Frame]) -> None:
        """Relay what a worker thread sent to its router, once checked to be a well-formed message for it."""
        try:
            kind = check_from_worker(payload, self.next_steps(worker.step))
        except WireError as err:
            self.drop(f"from {worker.key}: {err}")
            return
        relay = worker.relays.get(routing_id)
        if relay is None:
            if kind not in (Kind.JOIN, Kind.FAILED):  # a FAILED init() comes before its thread's JOIN
                self.drop(f"from {worker.key}: a thread that has not joined")
                return
            relay = worker.relays[routing_id] = self.context.socket(zmq.DEALER)
            relay.linger = 0
            relay.identity = routing_id
            relay.connect(self.work_address(worker.step))
        sockets.send(relay, payload)

    def send(self, message: list) -> bool:
        """Send to a peer without ever blocking the worker host: False (and dropped) if the peer is gone
        or does not read what it is sent."""
        try:
            for frame in message[:-1]:
                self.socket.send(frame, zmq.SNDMORE | zmq.NOBLOCK, copy=False)
            self.socket.send(message[-1], zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as err:
            if err.errno not in (zmq.EHOSTUNREACH, zmq.EAGAIN):
                raise
            self.drop("to a peer that is gone or does not read")
            return False
        return True

    def to_worker(self, worker: RemoteWorker, relay: zmq.Socket) -> None:
        """Relay what a router sent to a remote worker thread; a worker that cannot take it is taken for
        dead at the worker host's next look (what it held goes to others)."""
        while sockets.waiting(relay):
            if not self.send([relay.identity, *sockets.recv(relay)]):
                worker.heard = float("-inf")

    def forget(self, worker: RemoteWorker) -> None:
        """Close the relays of a remote worker taken for dead; what it sends from now on is dropped."""
        for relay in worker.relays.values():
            relay.close()
        worker.relays.clear()
        self.workers.pop(worker.slot, None)

    def close(self) -> None:
        """Close every socket, then stop the ZAP handler."""
        for worker in list(self.workers.values()):
            self.forget(worker)
        self.socket.close()
        self.server.close()
