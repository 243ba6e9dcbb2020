"""``pipeline-worker``'s own process on a remote host: it joins a run's step and keeps its worker processes.

It connects to the run's door (CURVE, pinned to the run's key), asks for a slot and the step's ``Spec`` (HELLO;
SPEC or REFUSE) and starts that worker process (engine.process_keeper); it is their keeper towards the run from the
moment the run gives it the first slot, while it asks for the next ones and starts them too: every
``heartbeat_interval`` it sends a PING per slot it holds, saying which messages the process is running (read from its
busy board, none while it starts),
and it hears the run's PONG; it relays HALT to the boards; when a process ends it tells the run
at once (LEFT, with what it was running), so that its messages go to other workers without
waiting for a heartbeat to be missed. Its heartbeats never wait for a worker process's GIL.

It leaves, killing its worker processes, when the run is gone (no PONG for ``heartbeat_liveness``
beats) or on SIGTERM / SIGINT (as ``scancel`` sends) / SIGHUP, telling the run what they held; and exits 0
once every worker process has finished its share of the stream. What the run holds of it (``Membership``: the
slots it gave, a HELLO it has still to answer) is written down as it happens, so that a leave at any moment,
while a worker process is still being asked for or started too, tells the run of each of them at once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import signal
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import zmq
from setproctitle import setproctitle
from zmq.utils.monitor import recv_monitor_message

from pipeline.auth.curve import HANDSHAKE_SECONDS, secure_client
from pipeline.auth.greeting import NOT_ZEROMQ, mechanism_at
from pipeline.auth.keys import KeyPair
from pipeline.config.traits import tcp_parts
from pipeline.engine import sockets
from pipeline.engine.addresses import private_dir
from pipeline.engine.process_keeper import ProcessKeeper
from pipeline.engine.wire import (
    REFUSED_ENDING,
    Kind,
    Loss,
    header_of,
    hello_frames,
    left_frames,
    parse_refuse,
    parse_spec,
    ping_frames,
    version_mismatch,
)
from pipeline.engine.worker_process import CANNOT_LOAD, STEP_FAILED, Spec
from pipeline.errors import ConfigError, printable

#: The command this agent serves: its lines on stderr start with its name.
COMMAND = "pipeline-worker"
#: Seconds a new worker waits for the run to say what to run.
HELLO_TIMEOUT_SECONDS = 30.0
#: Seconds a worker whose handshake failed without a reason waits for a reason on the next try before it says that
#: authentication failed (libzmq connects again after 0.1 s, then less often).
REASON_WAIT_SECONDS = 2.0
#: Exit status of a worker whose run is gone (no heartbeat for heartbeat_liveness beats).
RUN_GONE = 3
#: Exit status of a worker one of whose processes the run took for dead (its threads did not join in time, it held
#: work it did not run, its heartbeats did not come).
TAKEN_FOR_DEAD = 1
#: Seconds worker processes get to leave after a signal, before they are killed.
LEAVE_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class Login:
    """How a remote worker joins a run: the step, its threads, and the CURVE keys of both sides (and their files,
    which its worker processes load)."""

    step: str
    threads: int
    own: KeyPair
    server: KeyPair
    key_file: str
    server_key_file: str


class JoinError(Exception):
    """A worker cannot join its run: one line for the user, and the exit status."""

    def __init__(self, line: str, status: int) -> None:
        super().__init__(line)
        self.status = status

    def line(self) -> str:
        """What pipeline-worker says of it: an error, unless its status is 0 (the run has nothing for it)."""
        return f"error: {self}" if self.status else str(self)


#: What a client's socket monitor reports about its handshakes with the run: a few events per connection, one
#: connection per reconnection (100 ms apart), each read as it comes, far from the 2,000 whose queue, once full, would
#: freeze libzmq's I/O thread (pipeline.auth.events).
_HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                     | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED
                     | zmq.EVENT_CONNECTED)


def say(line: str) -> None:
    """Tell the person who started pipeline-worker ``line``, at once, on stderr (its own lines, not its log's), as
    printable text: it may hold what the run sent (why it refused, a step's name)."""
    print(f"{COMMAND}: {printable(line)}", file=sys.stderr, flush=True)


def ask_spec(socket: zmq.Socket, login: Login, membership: Membership,
             address: str | None = None) -> tuple[Spec, int]:
    """Join the run: say HELLO to its door (connecting to ``address`` first, if given); its SPEC and the slot it gives
    (the run proved its server key in the CURVE handshake: it is trusted with what we unpickle), written down in
    ``membership`` as it comes."""
    monitor = sockets.monitor(socket, _HANDSHAKE_EVENTS)
    if address is not None:  # once its monitor hears: whether a connection was made tells what a silence means
        socket.connect(address)
    try:
        say_hello(socket, login, membership)
        _wait_for_answer(socket, monitor, login.own.name, address, membership)
    except JoinError:
        membership.asking = False  # the run refused the handshake, or was silent all along: no answer is coming
        raise
    finally:
        with membership.held():  # the run answers a HELLO sent once the handshake succeeded: a leave waits for it
            membership.connected |= _handshake_heard(monitor)
            socket.disable_monitor()
            monitor.close()
    with membership.held():
        received = sockets.recv(socket)
        slot = membership.answered(received)
    return spec_of(slot, received), slot


def say_hello(socket: zmq.Socket, login: Login, membership: Membership) -> None:
    """Ask the run for a slot (HELLO), written down as asked: the run gives a slot for each HELLO it gets."""
    with membership.held():
        sockets.send(socket, hello_frames(login.step, login.threads, os.getpid()))
        membership.asking = True


def spec_of(slot: int | None, received: list[zmq.Frame]) -> Spec:
    """The Spec of the run's answer to a HELLO, which gave ``slot`` (None: it refused); a JoinError if it refused (of
    status 0 if the step has no more work: nothing is wrong), or speaks another version."""
    if slot is None:
        if header_of(received[0])[1] == REFUSED_ENDING:
            raise JoinError(f"nothing to join: {parse_refuse(received)}", 0)
        raise JoinError(f"the run refused: {parse_refuse(received)}", 2)
    _, spec, version, token = parse_spec(received)
    mismatch = version_mismatch(version, "the run")
    if mismatch is not None:  # before its Spec is unpickled: another version's classes may not read it
        raise JoinError(f"cannot join the run: {mismatch}", 2)
    return dataclasses.replace(pickle.loads(spec), token=token)


def _handshake_heard(monitor: zmq.Socket) -> bool:
    """Whether the events still waiting on ``monitor`` say that a handshake succeeded (they are read)."""
    heard = False
    while sockets.waiting(monitor):
        heard |= recv_monitor_message(monitor)["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED
    return heard


#: How a handshake with a ZeroMQ peer that does not use CURVE (a plain socket of another service) fails for us.
_NOT_CURVE = zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
#: What a worker connected to another service's port is told, after what that service speaks.
_NO_RUN = "what listens there is no run: it {} (is that port the run's Pipeline.listen, and not another service's?)"
#: How a connection that the run closed in the middle of its handshake ends for us (libzmq says EPIPE, no detail).
_CLOSED = (zmq.EVENT_DISCONNECTED, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL)


def _not_a_run(address: str | None) -> JoinError | None:
    """Why what listens at ``address`` is no run, from the greeting it sends; None when it greets as a run does, or
    cannot be asked."""
    if address is None:
        return None
    mechanism = mechanism_at(*tcp_parts(address))
    if mechanism is None or mechanism == "CURVE":
        return None
    return JoinError(_NO_RUN.format("does not speak ZeroMQ" if mechanism == NOT_ZEROMQ else "does not use CurveZMQ"),
                     1)


def _wait_for_answer(socket: zmq.Socket, monitor: zmq.Socket, key: str, address: str | None,
                     membership: Membership) -> None:
    """Wait up to HELLO_TIMEOUT_SECONDS for the run's answer; a JoinError if the handshake fails.

    The run refusing our key is an explicit failure; a run whose key is not --server-key cannot read
    our handshake and closes the connection before it completes, which is the same failure to us. But a
    peer that does not speak CURVE at all closes its first connection the same way, and says why only on
    the next (libzmq connects again within a second), or not at all when the peer noticed first: such a failure is
    judged REASON_WAIT_SECONDS later, by the greeting of what listens at ``address`` (None: not asked). A
    connection closed before its handshake ended, but only once the run's HANDSHAKE_SECONDS were nearly
    over, was closed for its slowness (a link of a second each way), not for its key.
    """
    poller = zmq.Poller()
    poller.register(socket, zmq.POLLIN)
    poller.register(monitor, zmq.POLLIN)
    waited_until = deadline = time.monotonic() + HELLO_TIMEOUT_SECONDS
    shaken = False
    connected = time.monotonic()  # when the last connection was made
    ever_connected = False
    refused = JoinError(f"authentication failed: the run did not accept key {key!r}, or is not the holder of "
                        f"--server-key (is {key}.key in its authorized_keys?)", 1)
    doubted = False  # a handshake failed without saying why
    while (left := deadline - time.monotonic()) > 0:
        events = dict(poller.poll(left * 1000))
        if socket in events:
            return
        if monitor not in events:
            continue
        said = recv_monitor_message(monitor)
        event = said["event"]
        if event == zmq.EVENT_CONNECTED:
            connected = time.monotonic()
            ever_connected = True
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:  # a doubt before it is moot: the run may answer in its time
            shaken, doubted, deadline = True, False, waited_until
            membership.connected = True
        elif event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL and said["value"] == _NOT_CURVE:
            raise JoinError(_NO_RUN.format("does not use CurveZMQ"), 1)
        elif event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
            raise refused
        elif event in _CLOSED and not shaken and time.monotonic() - connected > 0.8 * HANDSHAKE_SECONDS:
            raise JoinError(f"the run closed the connection after {time.monotonic() - connected:.1f} s, before "
                            f"the CURVE handshake ended: it allows {HANDSHAKE_SECONDS:g} s for one (a link or a "
                            "host this slow takes longer)", 1)
        elif (event != zmq.EVENT_DISCONNECTED or not shaken) and not doubted:
            doubted = True
            deadline = min(deadline, time.monotonic() + REASON_WAIT_SECONDS)
    if doubted:
        raise _not_a_run(address) or refused
    if ever_connected:
        why = "a connection was made, but what listens there did not answer as a run does (is that port the run's " \
              "Pipeline.listen, and not another service's?)"
    else:
        why = "nothing accepted a connection at that host and port (is the run started, and listening there?)"
    raise JoinError(f"no answer from the run within {HELLO_TIMEOUT_SECONDS:g} s: {why}", 1)


class _Signalled(Exception):
    """SIGTERM, SIGINT or SIGHUP (its terminal closed) arrived: leave."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


#: The signals that make pipeline-worker leave.
LEAVING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _leaving(signum: int, frame: object) -> None:
    """A signal while pipeline-worker leaves already: nothing more to do."""


class Membership:
    """What the run holds of this pipeline-worker, written down as it happens so that a leave at any moment tells
    the run of all of it (LEFT): the slots it gave whose end it has not been told, and a HELLO it got and has still to
    answer (a slot to come). A worker process is in its slot from the SPEC on, not only once it has started: a
    leave while it started (its keeper waiting for the zygote) left the run to wait for its missed heartbeats.

    It turns LEAVING_SIGNALS into _Signalled where they land, but in held() sections, which keep these records:
    there a signal waits for the section's end, so that no slot is ever received and not yet written down."""

    def __init__(self) -> None:
        self.slots: set[int] = set()
        self.asking = False  # a HELLO was sent and its answer not read
        self.connected = False  # a handshake with the run succeeded: a HELLO sent reaches it, and is answered
        self._holding = False
        self._pending: int | None = None

    def handle(self, signum: int, frame: object) -> None:
        """The handler of LEAVING_SIGNALS: leave (_Signalled), now or at the end of the held() section."""
        for sig in LEAVING_SIGNALS:  # the first starts the leaving: another (GNU timeout sends TERM twice) broke it
            signal.signal(sig, _leaving)  # off with a traceback and exit 1 (SIG_IGN: Python raises for one pending)
        if self._holding:
            self._pending = signum
            return
        raise _Signalled(signum)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """A section (that never waits) in which a leaving signal waits for the section's end."""
        self._holding = True
        try:
            yield
        finally:
            self._holding = False
            signum, self._pending = self._pending, None
            if signum is not None:
                raise _Signalled(signum)

    def answered(self, received: list[zmq.Frame]) -> int | None:
        """Take the run's answer to our HELLO (SPEC or REFUSE): the slot it gave (written down), None if it refused."""
        self.asking, self.connected = False, True
        kind, slot = header_of(received[0])
        if kind is not Kind.SPEC:
            return None
        self.slots.add(slot)
        return slot


def serve_remote(address: str, login: Login, processes: int) -> int:
    """Join the run at ``address`` with ``processes`` worker processes and keep them; the exit status."""
    directory = private_dir("worker")  # 0700: the specs and boards are ours alone (first: a ConfigError if none)
    context = zmq.Context()
    context.ipv6 = address.startswith("tcp://[")  # libzmq connects to an IPv6 address only with IPV6 set
    keeper_socket = context.socket(zmq.DEALER)
    keeper_socket.linger = 0
    secure_client(keeper_socket, login.own, login.server.public)
    keeper: ProcessKeeper | None = None
    membership = Membership()
    previous = {sig: signal.signal(sig, membership.handle) for sig in LEAVING_SIGNALS}
    try:
        spec, slot = ask_spec(keeper_socket, login, membership, address)
        setproctitle(f"pipeline-worker: step {spec.step}, {processes} worker process{'es' if processes > 1 else ''}")
        keeper = ProcessKeeper(directory, spec.heartbeat_interval * spec.heartbeat_liveness)
        return _Keeping(keeper_socket, keeper, spec, membership, login, address).serve(slot, spec, processes)
    except JoinError as err:
        say(err.line())
        _leave(keeper_socket, keeper, membership, f"pipeline-worker could not join: {err}")
        return err.status
    except ConfigError as err:  # no room for a worker process's files here: the run hears it now, not by heartbeats
        _leave(keeper_socket, keeper, membership, f"pipeline-worker cannot start a worker process: {err}")
        raise
    except _Signalled as signalled:
        name = signal.Signals(signalled.signum).name
        say(f"{name}: leaving; the run gives this worker's messages to others")
        _leave(keeper_socket, keeper, membership, f"pipeline-worker left on {name}")
        # The handlers stay the leave's, which take another signal for nothing, until the process exits: put back,
        # a second SIGTERM (a SLURM time limit sends one 8 ms after the first) killed it on the way out (-15, not 143).
        previous.clear()
        return 128 + signalled.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if keeper is not None:
            keeper.stop_all(0.0)
            keeper.close()
        keeper_socket.close()
        context.term()
        for path in Path(directory).iterdir():
            path.unlink()
        os.rmdir(directory)


class _Keeping:
    """pipeline-worker once it has joined: it starts a worker process for each slot the run gives, asks for the next
    (one HELLO at a time), and keeps them until each has ended or the run is gone. Every slot it holds has its
    heartbeats from the moment the run gave it, while its process starts too (waiting for the zygote, or while the
    next slot is asked for): a start longer than the run's heartbeat window took a healthy worker for dead, where
    worker_timeout is what bounds a start."""

    def __init__(self, socket: zmq.Socket, keeper: ProcessKeeper, spec: Spec, membership: Membership, login: Login,
                 address: str) -> None:
        self.socket = socket
        self.keeper = keeper
        self.step = spec.step
        self.interval = spec.heartbeat_interval
        self.membership = membership
        self.login = login
        self.address = address
        self.heard = self.looked = time.monotonic()
        self.beat = 0.0  # when the next PINGs are due
        self.wanted = 0  # worker processes still to ask the run for
        self.refused = 0  # the exit status of the run's refusal of one of them
        self.worst = 0  # the worst exit status of those that ended
        self.failed_steps = 0  # worker processes whose step's code failed: the first says how, the rest are counted
        self.dropped: set[int] = set()  # worker processes the run took for dead (DROPPED)

    def serve(self, slot: int, spec: Spec, processes: int) -> int:
        """Start the worker process of ``slot``, then ``processes`` - 1 more, and keep them; the exit status."""
        self.wanted = processes - 1
        self._start(slot, spec)
        status = self._keep()
        if self.failed_steps > 1:
            say(f"the step's code failed in {self.failed_steps} worker processes")
        return max(status, self.refused)

    def pulse(self) -> None:
        """Send a PING for each slot held (with the messages its process runs), if they are due. A gap since the last
        pulse longer than a beat is this process's own stop (its host suspended): neither the run's silence nor its
        processes' stops were theirs, so each is timed afresh, and the run is asked at once."""
        now = time.monotonic()
        if now - self.looked > self.interval:
            self.heard = self.beat = now
            self.keeper.resumed(now)
        self.looked = now
        if now < self.beat:
            return
        self.beat = now + self.interval
        for slot in sorted(self.membership.slots):
            process = self.keeper.processes.get(slot)
            sockets.send(self.socket, ping_frames(slot, process.running() if process is not None else []))

    def _keep(self) -> int:
        """Heartbeats with the run until every worker process has ended (their worst exit status) or the run is gone
        (RUN_GONE); the slots still wanted are asked for meanwhile."""
        patience = self.keeper.patience
        while self.keeper.processes or self.membership.asking or self.wanted:
            self.pulse()
            if self.wanted and not self.membership.asking:
                say_hello(self.socket, self.login, self.membership)
                self.wanted -= 1
            if self.socket.poll(min(self.interval, 0.1) * 1000):
                while sockets.waiting(self.socket):
                    self._hear()
            self._deaths()
            now = time.monotonic()
            if now - self.looked > self.interval:  # stopped during this turn: judged in the next, afresh
                continue
            if now - self.heard > patience:
                say(f"the run is gone (no heartbeat for {patience:g} s); leaving")
                return RUN_GONE
        return self.worst

    def _hear(self) -> None:
        """Take one message of the run: PONG, HALT, DROPPED, or its answer to a HELLO (a worker process to start)."""
        with self.membership.held():  # a slot the run gives is written down as it comes
            frames = sockets.recv(self.socket)
            kind, slot = header_of(frames[0])
            answer = kind in (Kind.SPEC, Kind.REFUSE)
            given = self.membership.answered(frames) if answer else None
        self.heard = time.monotonic()
        if kind is Kind.HALT:
            self.keeper.halt(self.step)
        elif kind is Kind.DROPPED and slot in self.keeper.processes:  # the run has forgotten that process
            self.dropped.add(slot)
            self.membership.slots.discard(slot)
            say(f"the run took worker process {slot} for dead: {parse_refuse(frames)}; ending it")
            self.keeper.kill(self.keeper.processes[slot], "taken for dead by the run")
        elif answer:
            self._answered(given, frames)

    def _answered(self, slot: int | None, frames: list[zmq.Frame]) -> None:
        """Start the worker process of the slot the run gave; or, refused (its remote threads' limit, its stream
        ended), ask for no more: those it took serve on."""
        try:
            spec = spec_of(slot, frames)
        except JoinError as err:
            self.wanted = 0
            if slot is not None:  # a slot whose process is not started: the run hears of it at once
                self.membership.slots.discard(slot)
                sockets.send(self.socket, left_frames(Loss(slot, f"pipeline-worker could not join: {err}", [])))
            if err.status:  # (a step with no more work is no error: those taken end with its stream)
                count = len(self.keeper.processes)
                say(f"{err.line()}; the {count} worker process{'es' if count > 1 else ''} it took serve on")
                self.refused = err.status
            return
        self._start(slot, spec)

    def _start(self, slot: int, spec: Spec) -> None:
        """Start the worker process of ``slot``: the run's step with this worker's threads, its router the door (the
        heartbeats go on meanwhile). One that cannot start (its death, said to the run, follows at once) ends the
        asking: the next would fail alike (a process limit, no memory), one line, not one each."""
        step = dataclasses.replace(spec.config.steps[spec.step], nb_thread=self.login.threads)
        spec = dataclasses.replace(spec, work=self.address,
                                   config=dataclasses.replace(spec.config, steps={spec.step: step}))
        self.keeper.files(slot, spec)
        process = self.keeper.start(slot, [f"--key={self.login.key_file}",
                                                 f"--server-key={self.login.server_key_file}"], waiting=self.pulse)
        if process.child is None:
            say(f"error: cannot start a worker process: {process.error}")
            self.wanted = 0

    def _deaths(self) -> None:
        """Tell the run of each worker process that ended, and say how it ended where that is news."""
        with self.membership.held():  # a death the keeper gives is told to the run, even as a signal comes
            for death in self.keeper.deaths():
                self.membership.slots.discard(death.process.slot)
                if death.process.slot in self.dropped:  # said, and the run has nothing to hear of it
                    self.worst = max(self.worst, TAKEN_FOR_DEAD)
                    continue
                code = death.process.child.returncode if death.process.child is not None else 1
                process = f"worker process {death.process.slot} (pid {death.process.pid})"
                if code == STEP_FAILED:
                    self.failed_steps += 1
                    if self.failed_steps == 1:
                        say(f"{process}: {death.reason}")
                elif code not in (0, CANNOT_LOAD) and death.process.child is not None:  # (one not started is said)
                    # A signal, or an exit status of the step's code's own (os._exit(3)): one line says so, and the
                    # worker fails (its status passed on said 3, "the run is gone", or 9)
                    say(f"step {self.step}: {process} {death.reason if code < 0 else 'ended: ' + death.reason}")
                self.worst = max(self.worst, 0 if code == 0 else 2 if code == CANNOT_LOAD else 1)
                sockets.send(self.socket, left_frames(Loss(death.process.slot, death.reason, death.running,
                                                           not death.failed)))


def _leave(socket: zmq.Socket, keeper: ProcessKeeper | None, membership: Membership, reason: str) -> None:
    """Tell the run that each worker process it gave a slot leaves, with what it was running (one it is giving a slot
    now, or one still starting, too: it runs nothing yet), then end them."""
    # The run gives a slot for a HELLO it got: it is told of that one too. (Before a handshake succeeded, none is
    # coming: the HELLO is dropped as the socket closes.) Its PONGs may come before that answer.
    deadline = time.monotonic() + (LEAVE_SECONDS if membership.connected else 0)
    while membership.asking and socket.poll(max(deadline - time.monotonic(), 0) * 1000):
        received = sockets.recv(socket)
        if header_of(received[0])[0] in (Kind.SPEC, Kind.REFUSE):
            membership.answered(received)
    for slot in sorted(membership.slots):
        process = keeper.processes.get(slot) if keeper is not None else None
        sockets.send(socket, left_frames(Loss(slot, reason, process.running() if process is not None else [])))
    if keeper is not None:
        keeper.stop_all(LEAVE_SECONDS, signal.SIGTERM)
    if membership.slots:  # the run must hear it before the socket closes
        socket.linger = int(LEAVE_SECONDS * 1000)
