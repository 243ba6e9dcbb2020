"""A worker process: runs one step's worker threads for a run, outside the run's own process.

The run's worker host starts it (``main(["--connect=ADDRESS", "--slot=N"])`` in a new Python).
It asks the host what to run (HELLO; the answer, SPEC, is the step's configuration), then runs
``nb_thread`` workers with the very loop of the run's own worker threads, connected to the step's
router. Its outputs go back to the router with each input's answer, so a process that dies
mid-message has sent nothing on. A keeper thread exchanges heartbeats with the host: the process
leaves when the run is gone.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import io
import logging
import mmap
import os
import pickle
import queue
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import zmq
from setproctitle import setproctitle
from zmq.utils.monitor import recv_monitor_message

from pipeline.auth.curve import secure_client
from pipeline.auth.keys import KeyPair
from pipeline.config.loader import failure_place
from pipeline.config.model import PipelineConfig, StepConfig
from pipeline.config.options import RunOptions
from pipeline.console.end_of_output import tell_parent_at_end
from pipeline.engine import sockets
from pipeline.engine.addresses import Addresses
from pipeline.engine.control import ENDED, RunControl
from pipeline.engine.outlets import Outlet, ToRouter
from pipeline.engine.step_threads import WorkerThread
from pipeline.engine.wire import HEADER, Kind, failed_frames, header_of, ping_frames, process_worker_id
from pipeline.execution.executor import UNORDERED
from pipeline.failures.describe import failure_line, traceback_text
from pipeline.message import Encoded

log = logging.getLogger("pipeline.worker")

#: Seconds a new worker process waits for the run to say what to run.
HELLO_TIMEOUT_SECONDS = 30.0
#: Exit status of a worker process whose run is gone (no heartbeat for heartbeat_liveness beats).
RUN_GONE = 3


@dataclasses.dataclass(frozen=True)
class Spec:
    """What a worker process runs: sent by the run's worker host in answer to HELLO."""

    config: PipelineConfig  # the run's configuration, with the one step to run (its class not imported yet)
    step: str
    module: str
    class_name: str
    work: str  # the address of the step's router
    busy_board: str  # the file where it marks the messages it is running
    heartbeat_interval: float
    heartbeat_liveness: int
    log_level: int


#: A busy board holds one of these per worker thread: the message its run() is on (UNORDERED: none).
_BUSY = struct.Struct("<Q")


class BusyBoard:
    """Which message each thread of a worker process is running, in a file the worker host reads
    after the process died: so only the message it was running counts against it, even though its
    answers travel in batches."""

    def __init__(self, path: str, threads: int) -> None:
        with open(path, "wb") as file:
            file.write(_BUSY.pack(UNORDERED) * threads)
        with open(path, "r+b") as file:
            self.map = mmap.mmap(file.fileno(), _BUSY.size * threads)

    def mark(self, thread: int, seq: int | None) -> None:
        """Thread ``thread`` starts message ``seq`` (None: it finished it)."""
        _BUSY.pack_into(self.map, thread * _BUSY.size, UNORDERED if seq is None else seq)


def read_busy_board(path: str) -> list[int]:
    """The messages the threads of a (dead) worker process were running; [] if it left no board."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return []
    return [seq for (seq,) in _BUSY.iter_unpack(data[:len(data) - len(data) % _BUSY.size]) if seq != UNORDERED]


class RouterPolicy:
    """The failure policy of a worker outside the run's process: each error goes to the step's router, which
    logs it, counts it and writes its dead letter (it holds the message)."""

    def __init__(self, thread: ProcessWorkerThread, halted: set[str]) -> None:
        self.thread = thread
        self.halted = halted  # shared by the process's threads; HALT from the run adds to it too

    def lifecycle_failed(self, step: str, worker: int, what: str, error: BaseException) -> str:
        """An init(), finish() or fatal run() error: the run logs it and fails."""
        sockets.send(self.thread.ctl, failed_frames(UNORDERED, what, failure_line(error), traceback_text(error)))
        return failure_line(error)

    def message_failed(self, step: StepConfig, worker: int, seq: int, error: BaseException,
                       message: Encoded | None) -> None:
        """Send the error to the router, after the answers before it (the router takes the message it answers next).

        With on_error=stop this process's workers start nothing more from now on, as the run's policy
        makes a step's threads do; the run's HALT would come a round trip later.
        """
        if step.on_error == "stop":
            self.halted.add(step.name)
        self.thread.outlet.flush()
        sockets.send(self.thread.ctl, failed_frames(seq, "run()", failure_line(error), traceback_text(error)))

    def not_run(self, step: StepConfig, seq: int, message: Encoded) -> None:
        """Nothing here: the router writes the dead letter, it holds the message."""

    def halt(self, step: str, reason: str) -> None:
        """This process's workers of ``step`` start no further message (the router stops the run)."""
        self.halted.add(step)


class ProcessWorkerThread(WorkerThread):
    """A worker thread in a worker process: it answers its router for every input and reports errors to it."""

    def __init__(self, context: zmq.Context, control: RunControl, config: PipelineConfig, spec: Spec, index: int,
                 slot: int, board: BusyBoard | None, login: Login | None, address: str) -> None:
        super().__init__(context, control, config, config.steps[spec.step], Addresses(), index,
                         policy=RouterPolicy(self, control.policy.halted))
        self.spec = spec
        self.slot = slot
        if board is not None:
            self.executor.mark = board.mark
        self.login = login
        self.address = spec.work or address  # a remote worker's threads talk through the run's door

    @property
    def handles(self) -> None:
        """None: what goes to and from the run's process is real frames."""
        return None

    def make_outlet(self, ctl: zmq.Socket) -> Outlet:
        """Every input's outputs (even none) go back to the router, which sends them on."""
        return ToRouter(ctl, self.step, None)

    def connect(self, ctl: zmq.Socket) -> None:
        """Connect to the step's router under the routing id that names this process and thread."""
        ctl.identity = process_worker_id(self.slot, self.index)
        if self.login is not None:
            secure_client(ctl, self.login.own, self.login.server.public)
        ctl.connect(self.address)


class Keeper(threading.Thread):
    """Exchanges heartbeats with the run's worker host; relays HALT; leaves the process when the run is gone.

    Each PING says which messages the process's threads are running, so that when a remote worker
    dies its host knows which one to blame (a local one's busy board says it exactly).
    """

    def __init__(self, socket: zmq.Socket, spec: Spec, slot: int, control: RunControl,
                 running: Callable[[], list[int]], speaker: str) -> None:
        super().__init__(name="keeper", daemon=True)
        self.socket = socket
        self.spec = spec
        self.slot = slot
        self.control = control
        self.running = running
        self.speaker = speaker  # how the process names itself on stderr (not the thread's name)
        self.stopped = threading.Event()

    def run(self) -> None:
        interval = self.spec.heartbeat_interval
        patience = interval * self.spec.heartbeat_liveness
        heard = time.monotonic()
        try:
            while not self.stopped.is_set():
                sockets.send(self.socket, ping_frames(self.slot, self.running()))
                until = time.monotonic() + interval
                while (left := until - time.monotonic()) > 0 and not self.stopped.is_set():
                    if not self.socket.poll(left * 1000):
                        continue
                    kind, _ = header_of(sockets.recv(self.socket)[0])
                    heard = time.monotonic()
                    if kind is Kind.HALT:
                        self.control.policy.halted.add(self.spec.step)
                if time.monotonic() - heard > patience:
                    print(f"{self.speaker}: the run is gone (no heartbeat for "
                          f"{patience:g} s); leaving", file=sys.stderr, flush=True)
                    os._exit(RUN_GONE)
        except zmq.ContextTerminated:
            pass  # the process is ending
        finally:
            self.socket.close()


@dataclasses.dataclass(frozen=True)
class Login:
    """How a remote worker joins a run: the step, its threads, and the CURVE keys of both sides."""

    step: str
    threads: int
    own: KeyPair
    server: KeyPair


class JoinError(Exception):
    """A worker process cannot join its run or load its step: one line for the user."""

    def __init__(self, line: str, status: int) -> None:
        super().__init__(line)
        self.status = status


#: What a client's socket monitor reports about its handshakes with the run.
_HANDSHAKE_EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_AUTH | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                     | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_SUCCEEDED | zmq.EVENT_DISCONNECTED)


def ask_spec(socket: zmq.Socket, slot: int, login: Login | None) -> tuple[Spec, int]:
    """Say HELLO to the run's worker host; its SPEC and the slot it gives (the run is trusted: a local
    one started us, a remote one proved its server key in the CURVE handshake)."""
    hello = [HEADER.pack(Kind.HELLO, 0, 0, slot)] if login is None else [
        HEADER.pack(Kind.HELLO, 0, login.threads, os.getpid()), login.step.encode()]
    monitor = socket.get_monitor_socket(_HANDSHAKE_EVENTS) if login is not None else None
    try:
        sockets.send(socket, hello)
        _wait_for_answer(socket, monitor, login.own.name if login is not None else "")
    finally:
        if monitor is not None:
            socket.disable_monitor()
            monitor.close()
    received = sockets.recv(socket)
    kind, given = header_of(received[0])
    if kind is Kind.REFUSE:
        raise JoinError(f"the run refused: {bytes(received[1]).decode(errors='replace')}", 2)
    return pickle.loads(received[1].bytes), given


def _wait_for_answer(socket: zmq.Socket, monitor: zmq.Socket | None, key: str) -> None:
    """Wait up to HELLO_TIMEOUT_SECONDS for the run's answer; a JoinError if the handshake fails.

    The run refusing our key is an explicit failure; a run whose key is not --server-key cannot read
    our handshake and closes the connection before it completes, which is the same failure to us.
    """
    poller = zmq.Poller()
    poller.register(socket, zmq.POLLIN)
    if monitor is not None:
        poller.register(monitor, zmq.POLLIN)
    deadline = time.monotonic() + HELLO_TIMEOUT_SECONDS
    shaken = False
    while (left := deadline - time.monotonic()) > 0:
        events = dict(poller.poll(left * 1000))
        if socket in events:
            return
        if monitor is not None and monitor in events:
            event = recv_monitor_message(monitor)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                shaken = True
            elif event != zmq.EVENT_DISCONNECTED or not shaken:
                raise JoinError(f"authentication failed: the run did not accept key {key!r}, or is not the "
                                f"holder of --server-key (is {key}.key in its authorized_keys?)", 1)
    raise JoinError(f"no answer from the run within {HELLO_TIMEOUT_SECONDS:g} s (is it listening there?)", 1)


def load_step(spec: Spec, threads: int | None) -> PipelineConfig:
    """The spec's configuration with its step's class imported (and ``threads`` worker threads if given)."""
    try:
        cls = getattr(importlib.import_module(spec.module), spec.class_name)
    except Exception as err:  # an ImportError, an AttributeError, or whatever the module raises while importing
        raise JoinError(f"step {spec.step}: cannot load {spec.module}.{spec.class_name}: {failure_line(err)}"
                        f"{failure_place(err)}", 2) from None  # the file and line of the failure (issue 26.5)
    step = dataclasses.replace(spec.config.steps[spec.step], cls=cls)
    if threads is not None:
        step = dataclasses.replace(step, nb_thread=threads)
    return dataclasses.replace(spec.config, steps={spec.step: step})


def serve(address: str, slot: int = 0, login: Login | None = None) -> int:
    """Run the workers of one step for the run at ``address``: a local run's (``slot`` given by it) or,
    with ``login``, a remote one's; the exit status."""
    context = zmq.Context()
    context.ipv6 = address.startswith("tcp://[")  # libzmq connects to an IPv6 address only with IPV6 set
    keeper_socket = _socket(context, login)
    keeper: Keeper | None = None
    try:
        keeper_socket.connect(address)
        try:
            spec, slot = ask_spec(keeper_socket, slot, login)
            _log_as(spec, slot)
            setproctitle(_name(login, slot, spec.step))  # what ps and top show, instead of python3 -c ...
            config = load_step(spec, login.threads if login is not None else None)
        except JoinError as err:
            print(f"{_name(login, slot)}: error: {err}", file=sys.stderr, flush=True)
            return err.status
        control = RunControl(RunOptions())  # this process's own: its policy's halted set is what HALT sets
        nb_thread = config.steps[spec.step].nb_thread
        board = BusyBoard(spec.busy_board, nb_thread) if spec.busy_board else None
        threads = [ProcessWorkerThread(context, control, config, spec, i, slot, board, login, address)
                   for i in range(nb_thread)]
        keeper = Keeper(keeper_socket, spec, slot, control,
                        lambda: [t.executor.busy_seq for t in threads if t.executor.busy_seq is not None],
                        _name(login, slot, spec.step))
        keeper.start()
        control.flusher.start()
        for thread in threads:
            thread.start()
        crashed = _wait_for(threads, control.events)
        control.flusher.stopped.set()
        keeper.stopped.set()
        return 1 if crashed else 0
    finally:
        if keeper is None:
            keeper_socket.close()  # else the keeper closes it: terminating the context ends its wait at once
        context.term()


def _name(login: Login | None, slot: int, step: str = "") -> str:
    """How this process names itself in ps and on stderr: a worker process of the pipeline-run that started
    it (its user never ran pipeline-worker), or a pipeline-worker; by its step and slot once it knows them."""
    command = "pipeline-run" if login is None else "pipeline-worker"
    if not step:
        return f"{command}: worker process {slot}" if login is None else command
    return f"{command}: step {step} worker process {slot}"


def _socket(context: zmq.Context, login: Login | None) -> zmq.Socket:
    """A DEALER to the run: a CURVE client pinned to the run's key when joining a remote run."""
    socket = context.socket(zmq.DEALER)
    socket.linger = 0
    if login is not None:
        secure_client(socket, login.own, login.server.public)
    return socket


def _log_as(spec: Spec, slot: int) -> None:
    """Log to stderr as the run does, naming the step and this process."""
    logging.basicConfig(level=spec.log_level, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s %(name)s [{spec.step} process {slot}, pid "
                               f"{os.getpid()}]: %(message)s", datefmt="%Y-%m-%d %H:%M:%S")


def _wait_for(threads: Sequence[WorkerThread], events: queue.Queue[tuple[str, Any]]) -> bool:
    """Wait until every thread has ended; True if one ended on an internal error."""
    ended = 0
    crashed = False
    while ended < len(threads):
        kind, thread = events.get()
        if kind == ENDED:
            ended += 1
            crashed = crashed or thread.crash is not None
    for thread in threads:
        thread.join()
    return crashed


def main(argv: Sequence[str] | None = None) -> None:
    """The command line of a worker process started by a run: ``--connect=ADDRESS --slot=N``."""
    parser = argparse.ArgumentParser(prog="pipeline-worker-process", description=__doc__)
    parser.add_argument("--connect", required=True, help="The run's worker host address.")
    parser.add_argument("--slot", type=int, required=True, help="This process's number in the run.")
    args = parser.parse_args(argv)
    # Ctrl+C in a terminal signals the whole process group, and a service manager's stop may too:
    # the run drains on its first signal, and its workers keep serving it until FINISH (the run
    # kills them itself if they must go sooner).
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)
    line_by_line()
    tell_parent_at_end(os.getppid())  # a closed stdout ends the run's output, not this message (issue 26.3)
    sys.exit(serve(args.connect, args.slot))


def line_by_line() -> None:
    """Write stdout a line at a time: the run's and its worker processes' lines share one stdout, and a
    line written in two calls could be split by another process's."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)


