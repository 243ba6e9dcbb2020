"""The run's door for remote workers: a thread of the run that owns one CURVE-authenticated port through
which workers on other hosts join a step, exchange heartbeats and talk to the step's router.

A remote host runs ``pipeline-worker --connect=tcp://HEAD:PORT --step=S`` (see docs/cluster.md). Its
own process (engine.remote_agent) says HELLO once per worker process (the step, how many threads),
and gets a slot, a token that no other peer knows and the step's SPEC; each worker process's threads
then connect to the same port, under the routing id ``p<slot>.<thread>:<token>``, and the door relays
their frames to the step's router through an inproc socket of routing id ``p<slot>.<thread>``, so the
router treats them exactly as the threads of a local worker process. (A ROUTER ignores a peer whose
routing id another peer took first: without the token, another key could take a slot's ids before
its threads connect, and leave them unheard.) The remote process sends a PING per slot every ``heartbeat_interval``
(with the messages it runs) and gets PONG; a slot silent for ``heartbeat_liveness`` beats, or one
its host says has ended (LEFT), is lost: the door tells the step's router (LOST), which delivers
again what it held. A step halted after a failure is told (HALT) to its remote workers.

What a peer can send is checked before anything else happens to it:

- the port is a CURVE server whose ZAP handler (started before the port binds, with
  ``ZAP_ENFORCE_DOMAIN``) lets in only the public keys of ``authorized_keys``: a peer without
  CURVE, or with another key, never completes its handshake and never gets a frame to us;
- a peer is known by the key its handshake proved (the frames' User-Id), never by the routing id
  it claims: the frames of a slot are relayed only when they come from the key that opened it, under
  the slot's token;
- each frame set is checked against the wire format (engine.wire) before it is relayed, so a
  malformed one is dropped (with one rate-limited warning) and never reaches a router; the door
  never unpickles anything.
"""

from __future__ import annotations

import hmac
import logging
import pickle
import secrets
import time
from dataclasses import dataclass, field

import zmq

from pipeline.auth.curve import HANDSHAKE_SECONDS, CurveServer, ServerKeys
from pipeline.auth.events import SocketEvents
from pipeline.config.model import PipelineConfig
from pipeline.config.traits import loopback_only, tcp_host, unresolved
from pipeline.console.humanize import counted
from pipeline.engine import sockets
from pipeline.engine.addresses import Addresses
from pipeline.engine.control import BOUND, EngineThread, RunControl
from pipeline.engine.flow import window_limit
from pipeline.engine.router import Router
from pipeline.engine.specs import spec_for
from pipeline.engine.step_state import FINISH_GRACE_SECONDS
from pipeline.engine.supervisor import LOOK_SECONDS, busy_lines
from pipeline.engine.wire import (
    HEADER,
    SLOT_TOKEN,
    Kind,
    Loss,
    WireError,
    added_frames,
    check_from_worker,
    control_frames,
    dropped_frames,
    header_of,
    joined_pid,
    lost_frames,
    parse_hello,
    parse_lost,
    parse_ping,
    parse_worker_id,
    refuse_frames,
    slot_of,
    spec_frames,
    version_mismatch,
)
from pipeline.errors import ConfigError
from pipeline.execution.status import WorkerProcessStatus
from pipeline.failures.log import ThrottledLog

log = logging.getLogger("pipeline.engine")

#: Lost remote worker processes whose late messages the door still recognises (and drops quietly).
MAX_LOST_KEPT = 1024
#: Seconds between two warnings about dropped frames.
_WARN_EVERY_SECONDS = 10.0
#: Largest frame a remote peer may send (libzmq drops the connection of a peer that sends more).
MAX_FRAME_BYTES = 1 << 30
#: Most worker threads one remote worker process may ask for.
MAX_REMOTE_THREADS = 256
#: Most remote worker threads a run takes at once, over every key and slot: each is a socket of the run's process
#: (the door's relay to its router), which counts them in its sockets and open files; 4 processes of 256 threads
#: ran it out of both.
MAX_REMOTE_WORKER_THREADS = 1024
#: Most remote worker threads one key may hold at once (in as many worker processes at most: each has one): half of
#: the run's, so that another key always finds room. A peer that said HELLO for 4 processes of 256 threads, and again
#: as soon as one was taken for dead, held every thread of the run, and honest workers were refused.
MAX_THREADS_PER_KEY = MAX_REMOTE_WORKER_THREADS // 2
#: Messages the door reads from its port in one turn of its loop before it looks at its workers and relays what
#: their routers sent: a peer that sends without pause would keep it reading.
READ_BATCH = 1000
#: A remote worker thread's messages that its relay holds for a router that does not read them now (the router's own
#: socket holds ZeroMQ's 1000 more), in messages it may hold (flow.window_limit): more than a worker ever sends
#: before its router reads, an answer, a failure and a READY per message it holds, RESULTs waiting for their MORE,
#: its JOIN and FINISHED. One that fills it broke the protocol, and is dropped: the door never waits for a router.
RELAY_SLACK = 16


def relay_hwm(queue_limit: int) -> int:
    """The high-water mark of a remote worker thread's relay to the router of a step of ``queue_limit``."""
    return 3 * window_limit(queue_limit) + RELAY_SLACK
#: The failed handshakes the door hears of (its socket monitor, read in a thread of its own: a monitor's full queue
#: froze the I/O thread of the run's context, every worker process's link with it): a key the ZAP handler refused
#: (AUTH), and a peer without CURVE or that was given another server key (PROTOCOL, NO_DETAIL).
_HANDSHAKE_FAILED = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                     | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)
#: Under what name the door's lines count the peers it cannot name (their handshake failed).
_UNNAMED = "(no key)"


@dataclass
class RemoteWorker:
    """A remote worker host's process, in one slot of the run."""

    slot: int
    step: str
    key: str  # the name of the key it proved
    address: str  # where it connected from
    threads: int
    keeper: bytes  # the routing id of its keeper's socket
    keeper_pid: int  # its pipeline-worker's process id on its host (as its HELLO says: it comes before the process)
    token: bytes  # what ends its threads' routing ids (wire.SLOT_TOKEN): no other peer knows it
    heard: float = field(default_factory=time.monotonic)
    hello: float = field(default_factory=time.monotonic)  # when it said HELLO
    running: list[int] = field(default_factory=list)  # those it holds of what it said it ran, at its last heartbeat
    idle_since: float | None = None  # since when its heartbeats say it runs no message (None: it runs one)
    halted: bool = False
    pid: int | None = None  # its own process id on its host, as its threads' JOIN says (None until one has joined)
    #: Per worker thread, by its routing id at the door: its socket to the router.
    relays: dict[bytes, zmq.Socket] = field(default_factory=dict)

    def named(self) -> str:
        """How the run's lines name it: ``step S remote worker process N (pid P at HOST)``; before its threads have
        said its own pid, by its pipeline-worker's (``its pipeline-worker's pid P``), never as its own."""
        pid = f"pid {self.pid}" if self.pid else f"its pipeline-worker's pid {self.keeper_pid}"
        return f"step {self.step} remote worker process {self.slot} ({pid} at {self.address})"

    def status(self, now: float) -> WorkerProcessStatus:
        """What the monitor shows of it."""
        return WorkerProcessStatus(self.slot, "remote", self.pid, self.address, self.key, self.threads,
                                   now - self.heard)


class Door(EngineThread):
    """The listening socket, the remote workers' slots and their relays; it ends when the routers it serves have."""

    def __init__(self, context: zmq.Context, control: RunControl, config: PipelineConfig, addresses: Addresses,
                 routers: dict[str, Router], listen: str, keys: ServerKeys) -> None:
        super().__init__("door", control, context)
        self.config = config
        self.addresses = addresses
        self.routers = routers
        self.listen = listen
        self.keys = keys
        options = control.options
        self.patience = options.heartbeat_interval * options.heartbeat_liveness
        self.workers: dict[int, RemoteWorker] = {}
        #: Per slot: a remote worker process that ended cleanly, and until when what its threads still send is
        #: relayed: each thread's last message (its FINISHED) comes on a connection of its own, and may come after
        #: the process's LEFT (a run with 256 such threads failed, its late FINISHEDs dropped).
        self._departed: dict[int, tuple[RemoteWorker, float]] = {}
        #: Per slot: the key of a remote worker process lost (not ended cleanly), the last MAX_LOST_KEPT of them: what
        #: its threads still send (a heartbeat, a thread's last words) is dropped without a warning: it read as a
        #: message lost, where the router gives what the process held to other workers.
        self._lost: dict[int, str] = {}
        self.roster: tuple[RemoteWorker, ...] = ()  # the live ones, for the monitor's thread
        self.dropped = 0
        self._warned = float("-inf")
        self._notices: dict[str, zmq.Socket] = {}
        self.said = ThrottledLog(log, "remote workers: %(count)d more %(kind)s from key %(key)s")
        self.refused_keys = 0  # handshakes refused: a key not in authorized_keys (counted in the events' thread)
        self.failed_handshakes = 0  # handshakes failed: no CURVE, or another server key (counted there too)
        self._said_handshakes = (0, 0)  # refused_keys and failed_handshakes when the door last said them
        self.refused_hellos = 0  # HELLOs refused (another version, a step that takes none, no room)
        self._first_refusal = ""  # why the first of them was
        self._specs: dict[str, bytes | str] = {}  # by step: the pickled spec of its remote workers, or why none goes
        # Made in work(), in this thread: a socket belongs to the thread that made it.
        self.socket: zmq.Socket
        self.server: CurveServer
        self.events: SocketEvents | None = None

    def work(self) -> None:
        try:
            self._notices = sockets.notice_senders(self.context, self.addresses, self.routers)
            self._bind()
            self.control.events.put((BOUND, self))  # remote workers may come now; the run may start
            self._loop()
        finally:
            for worker in [*self.workers.values(), *(departed for departed, _ in self._departed.values())]:
                self._forget(worker)
            self._departed.clear()
            if self.events is not None:
                self.events.close()  # the socket's close
            elif hasattr(self, "socket"):  # it could not bind
                self.socket.close()
            self.said.close()
            if hasattr(self, "server"):
                self.server.close()
            for notice in self._notices.values():
                notice.close()

    def _bind(self) -> None:
        """Start the ZAP handler, then bind the CURVE port (no handshake escapes the check)."""
        self.server = CurveServer(self.context, self.keys)
        socket = self.socket = self.context.socket(zmq.ROUTER)
        socket.linger = 0
        socket.handshake_ivl = int(HANDSHAKE_SECONDS * 1000)
        socket.router_mandatory = True
        socket.maxmsgsize = MAX_FRAME_BYTES
        socket.ipv6 = self.listen.startswith("tcp://[")  # libzmq binds an IPv6 address only with IPV6 set
        self.server.secure(socket)
        try:
            socket.bind(self.listen)
        except zmq.ZMQError as err:
            host = tcp_host(self.listen)
            unknown = unresolved(host)  # libzmq says only "No such device" for a name it could not look up
            why = (zmq.strerror(err.errno) if unknown is None else
                   f"{host!r} is neither a network interface nor a host name that is known ({unknown})")
            raise ConfigError(*self.config.setting_source("Pipeline", "listen"),
                              f"cannot listen on {self.listen}: {why}") from None
        self.events = SocketEvents(socket, _HANDSHAKE_FAILED, self._handshake_failed)  # refused peers never get a frame
        host = tcp_host(self.listen)
        if loopback := loopback_only(host):
            log.warning("Pipeline.listen %s: %s is %s here, a loopback address that only this host reaches: workers "
                        "on other hosts cannot connect (give the address they reach this host at; `getent hosts %s` "
                        "on one of them says it)", self.listen, host, " and ".join(loopback), host)

    def _loop(self) -> None:
        look = min(self.control.options.heartbeat_interval / 2, LOOK_SECONDS)
        while not self._finished() and not self.control.aborted.is_set():
            poller = zmq.Poller()
            poller.register(self.socket, zmq.POLLIN)
            relays = [(worker, thread, relay) for worker in self.workers.values()
                      for thread, relay in worker.relays.items()]
            for _, _, relay in relays:
                poller.register(relay, zmq.POLLIN)
            events = dict(poller.poll(look * 1000))
            self._handshakes()
            if self.socket in events:
                self._read()
            for worker, thread, relay in relays:
                if relay in events and not relay.closed:
                    self._to_worker(worker, thread, relay)
            self._watch()
            self._relay_halts()

    def _finished(self) -> bool:
        return all(not router.is_alive() or router.state.phase == "finished" for router in self.routers.values())

    def _publish(self) -> None:
        """Replace the roster the monitor reads (a new tuple: its thread never sees one change)."""
        self.roster = tuple(self.workers.values())

    def drop(self, why: str) -> None:
        """Count a message that is not relayed; warn at most every _WARN_EVERY_SECONDS."""
        self.dropped += 1
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY_SECONDS:
            self._warned = now
            log.warning("remote workers: dropped a message (%s); %d dropped in all", why, self.dropped)

    def _handshake_failed(self, kind: int, value: int) -> None:
        """Count a failed handshake (in the socket events' thread, its only writer)."""
        if kind == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            self.refused_keys += 1
        else:
            self.failed_handshakes += 1

    def _handshakes(self) -> None:
        """Say (now and then) whom the port refused since the last look: a key not in authorized_keys, or a peer whose
        handshake failed; the step's last word counts them too (no worker joined, but some tried)."""
        refused, failed = self.refused_keys, self.failed_handshakes
        if (refused, failed) == self._said_handshakes:
            return
        if refused > self._said_handshakes[0]:
            self.said.say(logging.WARNING, _UNNAMED, "refused connections",
                          "remote workers: refused a connection whose key is not in authorized_keys (its public "
                          "key: %s); %d refused in all", self.server.last_refused, refused)
        if failed > self._said_handshakes[1]:
            self.said.say(logging.WARNING, _UNNAMED, "failed handshakes",
                          "remote workers: a connection failed its CURVE handshake (a peer without CURVE, or one "
                          "given another --server-key than this run's); %d in all", failed)
        self._said_handshakes = (refused, failed)
        self._tell_refusals()

    def _tell_refusals(self) -> None:
        """Put in words, for the step's last line, whom the door refused: handshakes, and HELLOs."""
        words = []
        if self.refused_keys:
            words.append(f"{counted(self.refused_keys, 'connection')} refused: key not in authorized_keys")
        if self.failed_handshakes:
            words.append(f"{counted(self.failed_handshakes, 'connection')} failed the CURVE handshake")
        if self.refused_hellos:
            words.append(f"{counted(self.refused_hellos, 'worker process', 'worker processes')} refused (the first: "
                         f"{self._first_refusal})")
        self.control.refused = "; ".join(words)

    def _read(self) -> None:
        """HELLO, PING and LEFT from remote workers' own processes; anything else from a worker thread goes
        to its router."""
        for _ in range(READ_BATCH):
            if not sockets.waiting(self.socket):
                return
            received = sockets.recv(self.socket)
            key = self.server.peer(received[-1])  # the key its handshake proved, never what it claims
            if key is None or len(received) < 2:
                self.drop("from an unknown peer")
                continue
            routing_id, payload = received[0].bytes, received[1:]
            if len(payload[0]) < HEADER.size:
                self.drop(f"from {key}: a header frame shorter than a header")
                continue
            kind, _, _, value = HEADER.unpack_from(payload[0])
            if kind == Kind.HELLO:
                self._hello(key, routing_id, payload, received[0].get("Peer-Address"))
            elif kind == Kind.PING:
                self._ping(key, routing_id, value, payload)
            elif kind == Kind.LEFT:
                self._left(key, value, payload)
            else:
                worker = self.worker_of(routing_id, key)
                if worker is None:
                    self._unknown(key, slot_of(routing_id.partition(SLOT_TOKEN)[0]), "a worker thread")
                else:
                    self._to_router(worker, routing_id, payload)

    def _hello(self, key: str, keeper: bytes, payload: list, address: str) -> None:
        """A remote worker asks to join a step: a slot and the step's SPEC, or REFUSE saying why."""
        step, threads, pid, version = parse_hello(payload)
        why = version_mismatch(version, "the worker") or self._refusal(key, step, threads)
        ending = why is None and self._ending(step)
        if ending:
            why = f"step {step} has no more work: the run is ending"
        if why is not None:
            self.said.say(logging.WARNING, key, "refused HELLOs", "remote worker %s (%s): refused: %s", key, address,
                          why)
            if not ending:  # a worker turned away, which the last line on a step without workers counts
                self.refused_hellos += 1
                self._first_refusal = self._first_refusal or why
                self._tell_refusals()
            self.send([keeper, *refuse_frames(why, ending)])
            return
        router = self.routers[step]
        slot = self.control.new_slot()
        token = secrets.token_hex(16).encode()
        self.workers[slot] = RemoteWorker(slot, step, key, address, threads, keeper, pid, token)
        self._publish()
        sockets.send_while(self._notices[step], added_frames(slot, threads), router.listening)
        self.said.say(logging.INFO, key, "worker processes joined", "step %s: remote worker %s (%s) joined with %d "
                      "threads, as worker process %d", step, key, address, threads, slot)
        self.send([keeper, *spec_frames(slot, self._specs[step], token)])

    def _refusal(self, key: str, step: str, threads: int) -> str | None:
        """Why a HELLO of ``key`` for ``step`` with ``threads`` threads is refused; None if it is not."""
        router = self.routers.get(step)
        if step not in self.config.steps:
            return f"this run has no step {step!r} (its steps: {', '.join(self.routers)})"
        if router is None or router.step.kind == "producer":
            return f"step {step} is the producer: it runs in the run's process or its own worker processes"
        if router.step.cls.one_worker:
            return f"step {step} runs in one worker, its own: {router.step.cls.__name__} says one_worker"
        if isinstance(spec := self._spec(step), str):
            return spec
        if not 1 <= threads <= MAX_REMOTE_THREADS:
            return f"expected 1 to {MAX_REMOTE_THREADS} threads, got {threads}"
        own = sum(worker.threads for worker in self.workers.values() if worker.key == key)
        if own + threads > MAX_THREADS_PER_KEY:
            return (f"key {key} holds {own} remote worker threads, and one key may hold at most {MAX_THREADS_PER_KEY} "
                    f"(asked for {threads} more; give each host its own key)")
        held = sum(worker.threads for worker in self.workers.values())
        if held + threads > MAX_REMOTE_WORKER_THREADS:
            return (f"the run holds {held} remote worker threads, and takes at most {MAX_REMOTE_WORKER_THREADS} "
                    f"(asked for {threads} more)")
        return None

    def _spec(self, step: str) -> bytes | str:
        """The pickled spec of a remote worker of ``step``, or why none can go (an option pickle cannot copy), made
        once."""
        if step not in self._specs:
            try:
                self._specs[step] = pickle.dumps(spec_for(self.config, step, "", self.control,
                                                          afresh="they start on their own host"))
            except ConfigError as err:
                self._specs[step] = str(err)
        return self._specs[step]

    def _ending(self, step: str) -> bool:
        """Whether ``step`` has no more work for a worker that joins now: its stream ended, or the run is stopping."""
        router = self.routers[step]
        return router.state.finishing or router.state.phase == "finished" or self.control.stopping.is_set()

    def busy(self) -> list[str]:
        """Its remote worker processes in a step's code now, named (for busy(), or an abandoned run). Their heartbeats
        are up to a beat old: of what the last one said each ran, only the messages its step still holds unanswered are
        named in run() (one it answered since, written downstream, was named left behind); a thread that holds messages
        none of which the heartbeat named is named holding them. Read from any thread: the roster is a tuple, each
        one's running list replaced whole."""
        now = time.monotonic()
        lines = []
        for worker in self.roster:
            router = self.routers[worker.step]
            name = worker.named()
            unanswered = router.state.unanswered(worker.slot)
            running = router.state.holding(worker.slot, worker.running, unanswered)
            lines += busy_lines(name, worker.slot, running, router)
            lines += [f"{name} holding {_messages(held)}, none of them in run() at its last heartbeat "
                      f"({now - worker.heard:.1f} s before)" for held in unanswered
                      if not any(seq in messages for messages in held for seq in running)]
        return lines

    def _ping(self, key: str, keeper: bytes, slot: int, payload: list) -> None:
        worker = self._slot(key, slot, "a heartbeat")
        if worker is None:
            return  # a worker taken for dead gets no answer: it leaves
        worker.heard = time.monotonic()
        worker.keeper = keeper
        worker.running = self.routers[worker.step].state.holding(slot, parse_ping(payload))
        if worker.running:
            worker.idle_since = None
        elif worker.idle_since is None:
            worker.idle_since = worker.heard
        self.send([keeper, *control_frames(Kind.PONG)])

    def _left(self, key: str, slot: int, payload: list) -> None:
        """A remote worker's process ended: what it held goes to the step's other workers at once."""
        worker = self._slot(key, slot, "a LEFT")
        if worker is None:
            return
        try:
            loss = parse_lost(payload)
        except WireError as err:
            self.drop(f"from {key}: {err}")
            return
        if not loss.clean:
            self.said.say(logging.ERROR, key, "worker processes that left", "step %s: remote worker %s (%s): its "
                          "worker process %d left: %s", worker.step, worker.key, worker.address, worker.slot,
                          loss.reason)
        self._lose(worker, Loss(worker.slot, f"remote worker {worker.key}: {loss.reason}", loss.running, loss.clean))

    def _slot(self, key: str, slot: int, what: str) -> RemoteWorker | None:
        """The remote worker of ``slot`` if ``key`` opened it; else the message is dropped."""
        worker = self.workers.get(slot)
        if worker is None or worker.key != key:
            self._unknown(key, slot, what)
            return None
        return worker

    def _unknown(self, key: str, slot: int | None, what: str) -> None:
        """Drop a message of ``key`` for ``slot``, which it holds no more (or never held): one of a worker process of
        its that was lost is moot (a thread's last words, a heartbeat), and said at debug level only."""
        if slot is not None and self._lost.get(slot) == key:
            log.debug("remote workers: ignored %s of worker process %d of %s, which was lost", what, slot, key)
        else:
            self.drop(f"from {key}: {what} of no slot of that key")

    def worker_of(self, routing_id: bytes, key: str) -> RemoteWorker | None:
        """The remote worker whose thread claims ``routing_id``, if the key that sent it opened that slot and the
        id ends with the slot's token."""
        name, _, token = routing_id.partition(SLOT_TOKEN)
        parsed = parse_worker_id(name)
        if parsed is None:
            return None
        slot, thread = parsed
        worker = self.workers.get(slot) or self._departed.get(slot, (None, 0.0))[0]
        if worker is None or worker.key != key or not 0 <= thread < worker.threads:
            return None
        return worker if hmac.compare_digest(token, worker.token) else None

    def _to_router(self, worker: RemoteWorker, routing_id: bytes, payload: list[zmq.Frame]) -> None:
        """Relay what a worker thread sent to its router, once checked to be a well-formed message for it."""
        try:
            step = self.config.steps[worker.step]
            kind = check_from_worker(payload, len(step.next_steps), step.queue_limit)
        except WireError as err:
            self.drop(f"from {worker.key}: {err}")
            return
        relay = worker.relays.get(routing_id)
        if relay is None:
            # A FAILED init(), and what init() sent (a chunk's worth waits for its MORE), come before a JOIN.
            if kind not in (Kind.JOIN, Kind.FAILED, Kind.RESULT):
                self.drop(f"from {worker.key}: a thread that has not joined")
                return
            try:
                relay = worker.relays[routing_id] = self.context.socket(zmq.DEALER)
            except zmq.ZMQError as err:  # out of sockets or open files: the thread never joins, the run goes on
                self.drop(f"from {worker.key}: no socket for its thread: {err}")
                return
            relay.linger = 0
            relay.sndhwm = relay_hwm(step.queue_limit)
            relay.sndtimeo = 0  # a full relay is a peer that broke the protocol: the door never waits for a router
            relay.identity = routing_id.partition(SLOT_TOKEN)[0]  # the router knows it as a worker process's thread
            relay.connect(self.addresses.work(worker.step))
        if kind is Kind.JOIN:
            worker.pid = joined_pid(payload) or worker.pid
        # A router that has finished reads no more: a plain send to it waited for ever, and the door with it (a
        # peer's frame after its step's end hung the run).
        if not self.routers[worker.step].listening():
            self.drop(f"from {worker.key}: {kind.name} for step {worker.step}, which has finished")
            return
        try:
            sockets.send(relay, payload)
        except zmq.Again:  # a router busy sending on held every other peer's messages while the door waited for it
            self._break(worker, f"it sent more than its step had read while busy ({relay.sndhwm} messages and more "
                                "waiting for it: a worker waits for its step's answers)")

    def send(self, message: list) -> bool:
        """Send to a peer without ever blocking the door: False (and dropped) if the peer is gone or does not
        read what it is sent."""
        if self._deliver(message):
            return True
        self.drop("to a peer that is gone or does not read")
        return False

    def _deliver(self, message: list) -> bool:
        """Send to a peer without ever blocking the door; whether it could take the message."""
        try:
            for frame in message[:-1]:
                self.socket.send(frame, zmq.SNDMORE | zmq.NOBLOCK, copy=False)
            self.socket.send(message[-1], zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as err:
            if err.errno not in (zmq.EHOSTUNREACH, zmq.EAGAIN):
                raise
            return False
        return True

    def _to_worker(self, worker: RemoteWorker, thread: bytes, relay: zmq.Socket) -> None:
        """Relay what a router sent to a remote worker thread; a worker that cannot take it is taken for
        dead at the next look (what it held goes to others). A BYE goes to a thread that is done: one that
        has left already owes the run nothing, and is neither dead nor a dropped message. ``thread``: its routing
        id at the door."""
        while sockets.waiting(relay):
            frames = sockets.recv(relay)
            if header_of(frames[0])[0] is Kind.BYE:
                self._deliver([thread, *frames])
            elif not self.send([thread, *frames]):
                worker.heard = float("-inf")

    def _watch(self) -> None:
        """Remote workers silent for heartbeat_liveness beats are taken for dead; so are those whose heartbeats
        have said as long that they run none of the messages they hold (they do not read their work). A long
        run() is neither: its process runs a message, and its keeper's heartbeats never wait for it. Those that
        ended cleanly are forgotten once their grace is over. So are those whose threads have not all joined
        within worker_timeout of their HELLO: the step would wait for them to the end of the stream, as long as
        their process answers heartbeats."""
        now = time.monotonic()
        for departed, until in list(self._departed.values()):
            if now > until:
                del self._departed[departed.slot]
                self._forget(departed)
        for worker in list(self.workers.values()):
            why = self.routers[worker.step].state.broken.pop(worker.slot, None)
            if why is not None:
                self._break(worker, why)
                continue
            if now - worker.heard > self.patience:
                self.said.say(logging.ERROR, worker.key, "worker processes taken for dead", "step %s: remote worker "
                              "%s (%s) sent no heartbeat for %.1f s: taken for dead", worker.step, worker.key,
                              worker.address, self.patience)
                self._take_for_dead(worker, "it sent no heartbeat", f"remote worker {worker.key} went silent",
                                    worker.running)
                continue
            # At least the heartbeats' patience: worker_timeout 0 (a step without workers fails at once) must not take
            # every remote worker for dead as it says HELLO.
            joined, timeout = len(worker.relays), max(self.control.options.worker_timeout, self.patience)
            if joined < worker.threads and now - worker.hello > timeout:
                why = f"{joined} of its {worker.threads} threads joined the step within {timeout:g} s"
                self.said.say(logging.ERROR, worker.key, "worker processes taken for dead", "step %s: remote worker "
                              "%s (%s): worker process %d: %s: taken for dead", worker.step, worker.key,
                              worker.address, worker.slot, why)
                self._take_for_dead(worker, why, f"remote worker {worker.key}: {why}", worker.running)
                continue
            if worker.idle_since is None:
                continue
            held = self.routers[worker.step].state.stall(worker.slot, now - worker.idle_since, self.patience)
            if held is not None:
                self.said.say(logging.ERROR, worker.key, "worker processes taken for dead", "step %s: remote worker "
                              "%s (%s): worker process %d has held work for %.1f s without running any of it: taken "
                              "for dead", worker.step, worker.key, worker.address, worker.slot, held)
                why = f"held work for {held:.1f} s without running any of it"
                self._take_for_dead(worker, why, f"remote worker {worker.key} {why}", [])

    def _break(self, worker: RemoteWorker, why: str) -> None:
        """Drop ``worker``, which broke the protocol (``why``), naming it: what it held goes to other workers."""
        self.said.say(logging.ERROR, worker.key, "worker processes dropped", "step %s: remote worker %s (%s): worker "
                      "process %d broke the protocol: %s: dropped", worker.step, worker.key, worker.address,
                      worker.slot, why)
        why = f"it broke the protocol: {why}"
        self._take_for_dead(worker, why, f"remote worker {worker.key}: {why}", [])

    def _take_for_dead(self, worker: RemoteWorker, why: str, reason: str, running: list[int]) -> None:
        """Take ``worker`` for dead (``reason``, for its step), and tell its pipeline-worker ``why`` (DROPPED), in case
        it still hears: it ends that process saying so, where it would have kept it waiting for heartbeats that no
        longer come, and then said the run was gone."""
        self.send([worker.keeper, *dropped_frames(worker.slot, why)])
        self._lose(worker, Loss(worker.slot, reason, running))

    def _lose(self, worker: RemoteWorker, loss: Loss) -> None:
        """Forget ``worker`` (one that ended cleanly once FINISH_GRACE_SECONDS have passed) and tell its step's
        router, which delivers again what it held."""
        if loss.clean:
            self.workers.pop(worker.slot, None)
            self._departed[worker.slot] = (worker, time.monotonic() + FINISH_GRACE_SECONDS)
        else:
            self._forget(worker)
            self._lost[worker.slot] = worker.key
            if len(self._lost) > MAX_LOST_KEPT:  # a peer that joins and dies again and again holds no more
                del self._lost[next(iter(self._lost))]
        self._publish()
        sockets.send_while(self._notices[worker.step], lost_frames(loss), self.routers[worker.step].listening)

    def _relay_halts(self) -> None:
        """Tell the remote workers of a step that stopped after a failure to start no further message."""
        halted = self.control.policy.halted
        for worker in self.workers.values():
            if worker.step in halted and not worker.halted:
                worker.halted = True
                self.send([worker.keeper, *control_frames(Kind.HALT)])

    def _forget(self, worker: RemoteWorker) -> None:
        """Close the relays of a remote worker; what it sends from now on is dropped."""
        for relay in worker.relays.values():
            relay.close()
        worker.relays.clear()
        self.workers.pop(worker.slot, None)


def _messages(held: list[range]) -> str:
    """``message 7``, ``messages 7-9, 12``: the messages of ``held`` (ranges in order), adjacent ones in one span."""
    spans: list[list[int]] = []
    for messages in held:
        if spans and spans[-1][1] == messages.start:
            spans[-1][1] = messages.stop
        else:
            spans.append([messages.start, messages.stop])
    words = [str(start) if stop - start == 1 else f"{start}-{stop - 1}" for start, stop in spans]
    return f"{'message' if sum(map(len, held)) == 1 else 'messages'} {', '.join(words)}"
