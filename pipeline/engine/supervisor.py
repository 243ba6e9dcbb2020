"""The run's worker host: starts the worker processes of steps with ``nb_process`` and keeps them
alive, and, with ``Pipeline.listen``, lets remote workers in (engine.remote).

One thread of the run owns the host's sockets: a ROUTER on an ipc endpoint in the run's private
directory for its own worker processes, and the remote door's. A new worker process says HELLO
and gets its SPEC; each process's keeper sends PING every ``heartbeat_interval`` and gets PONG
back (zguide's Paranoid Pirate, both ways). A process that exits, or misses
``heartbeat_liveness`` beats (a local one is then killed), is dead: the host tells its step's
router (LOST), which delivers again what the process held; a local one is replaced while the
step has restarts left (``max_worker_restarts``; the replacement is announced, ADDED, first).
Processes start with ``subprocess`` (a fresh interpreter: never ``fork``, which would copy the
run's threads and sockets).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

import zmq

from pipeline.config.model import PipelineConfig, StepConfig
from pipeline.engine import sockets
from pipeline.engine.addresses import Addresses
from pipeline.engine.control import BOUND, EngineThread, RunControl
from pipeline.engine.door import RemoteDoor, RemoteWorker
from pipeline.engine.router import Router
from pipeline.engine.wire import HEADER, Kind, added_frames, header_of, lost_frames, parse_ping
from pipeline.engine.worker_process import HELLO_TIMEOUT_SECONDS, Spec, read_busy_board
from pipeline.errors import ConfigError
from pipeline.execution.status import WorkerProcessStatus

log = logging.getLogger("pipeline.engine")

#: What a worker process runs (not ``-m``: the module is imported by its package before it runs).
_WORKER_MAIN = "import sys; from pipeline.engine.worker_process import main; main(sys.argv[1:])"
#: Most worker threads one remote worker process may ask for.
MAX_REMOTE_THREADS = 256
#: Seconds to wait for a killed worker process to be gone.
KILL_GRACE_SECONDS = 1.0


@dataclass
class WorkerProcess:
    """One worker process of the run."""

    slot: int
    step: str
    popen: subprocess.Popen | None
    started: float = field(default_factory=time.monotonic)
    heard: float = field(default_factory=time.monotonic)  # its last heartbeat
    keeper: bytes | None = None  # the routing id of its keeper's socket, once it said HELLO
    halted: bool = False  # HALT was sent to it

    threads: int = 1

    @property
    def pid(self) -> int | None:
        """Its process id (None if it could not be started)."""
        return self.popen.pid if self.popen is not None else None

    def status(self, now: float) -> WorkerProcessStatus:
        """What the monitor shows of it."""
        return WorkerProcessStatus(self.slot, "process", self.pid, "", "", self.threads, now - self.heard)


class WorkerHost(EngineThread):
    """Starts, watches and replaces the run's worker processes, and lets remote workers in; it ends when
    the routers it serves have."""

    def __init__(self, context: zmq.Context, control: RunControl, config: PipelineConfig, addresses: Addresses,
                 routers: dict[str, Router]) -> None:
        super().__init__("worker-host", control)
        self.context = context
        self.config = config
        self.addresses = addresses
        self.routers = {name: router for name, router in routers.items() if router.hears_notices}
        self.processes: dict[int, WorkerProcess] = {}
        self.restarts: Counter[str] = Counter()  # per step: processes started to replace dead ones
        self.door: RemoteDoor | None = None
        self.roster: tuple[WorkerProcess | RemoteWorker, ...] = ()  # the live ones, for the monitor's thread
        self._next_slot = 0
        self._notices: dict[str, zmq.Socket] = {}
        options = control.options
        self.interval = options.heartbeat_interval
        self.patience = options.heartbeat_interval * options.heartbeat_liveness

    def work(self) -> None:
        gateway = self.context.socket(zmq.ROUTER)
        gateway.linger = 0
        try:
            gateway.bind(self.addresses.host())
            for name in self.routers:
                notice = self._notices[name] = self.context.socket(zmq.PUSH)
                notice.linger = 0
                notice.connect(self.addresses.notices(name))
            options = self.control.options
            if options.listen and options.server_keys is not None:
                try:
                    self.door = RemoteDoor(self.context, options.listen, options.server_keys, self.addresses.work,
                                           lambda step: len(self.config.steps[step].next_steps))
                except zmq.ZMQError as err:
                    raise ConfigError(self.config.source, "Pipeline.listen",
                                      f"cannot listen on {options.listen}: {zmq.strerror(err.errno)}") from None
            self.control.events.put((BOUND, self))  # remote workers may come now; the run may start
            for name in self.routers:
                for _ in range(self.config.steps[name].nb_process):
                    self._start(name)
            self._loop(gateway)
        finally:
            self._stop_all()
            gateway.close()
            for notice in self._notices.values():
                notice.close()
            if self.door is not None:
                self.door.close()

    def _loop(self, gateway: zmq.Socket) -> None:
        tick = min(self.interval / 2, 0.1)
        while not self._finished() and not self.control.aborted.is_set():
            poller = zmq.Poller()
            poller.register(gateway, zmq.POLLIN)
            door = self.door
            relays = door.relays() if door is not None else []
            if door is not None:
                poller.register(door.socket, zmq.POLLIN)
            for _, relay in relays:
                poller.register(relay, zmq.POLLIN)
            events = dict(poller.poll(tick * 1000))
            if gateway in events:
                self._read(gateway)
            if door is not None:
                if door.socket in events:
                    self._read_door(door)
                for worker, relay in relays:
                    if relay in events and not relay.closed:
                        door.to_worker(worker, relay)
            self._watch()
            self._relay_halts(gateway)

    def _publish(self) -> None:
        """Replace the roster the monitor reads (a new tuple: its thread never sees one change)."""
        self.roster = (*self.processes.values(), *(self.door.workers.values() if self.door is not None else ()))

    def _finished(self) -> bool:
        return all(not router.is_alive() or router.state.phase == "finished" for router in self.routers.values())

    def _new_slot(self) -> int:
        slot = self._next_slot
        self._next_slot += 1
        return slot

    def _start(self, step: str) -> int:
        """Start a worker process for ``step``, in a new slot; the slot."""
        slot = self._new_slot()
        command = [sys.executable, "-c", _WORKER_MAIN, f"--connect={self.addresses.host()}", f"--slot={slot}"]
        # The process imports the step's module as the run did: same working directory and sys.path.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p or os.getcwd() for p in sys.path)}
        try:
            popen: subprocess.Popen | None = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
        except OSError as err:
            log.error("step %s: cannot start a worker process: %s", step, err)
            popen = None
        self.processes[slot] = WorkerProcess(slot, step, popen, threads=self.config.steps[step].nb_thread)
        self._publish()
        return slot

    def _read(self, gateway: zmq.Socket) -> None:
        while sockets.waiting(gateway):
            received = sockets.recv(gateway)
            keeper = received[0].bytes
            kind, slot = header_of(received[1])
            process = self.processes.get(slot)
            if process is None:
                continue  # a process this run no longer counts (it was taken for dead)
            process.heard = time.monotonic()
            process.keeper = keeper
            if kind is Kind.HELLO:
                spec = dataclasses.replace(self._spec(process.step), busy_board=self._board(slot))
                sockets.send(gateway, [keeper, HEADER.pack(Kind.SPEC, 0, 0, slot), pickle.dumps(spec)])
            elif kind is Kind.PING:
                sockets.send(gateway, [keeper, HEADER.pack(Kind.PONG, 0, 0, 0)])

    def _read_door(self, door: RemoteDoor) -> None:
        """HELLO and PING from remote keepers; anything else from a remote worker thread goes to its router."""
        while sockets.waiting(door.socket):
            received = sockets.recv(door.socket)
            key = door.owner(received)
            if key is None or len(received) < 2:
                door.drop("from an unknown peer")
                continue
            routing_id, payload = received[0].bytes, received[1:]
            if len(payload[0]) < HEADER.size:
                door.drop(f"from {key}: a header frame shorter than a header")
                continue
            kind, _, _, value = HEADER.unpack_from(payload[0])
            if kind == Kind.HELLO:
                self._remote_hello(door, key, routing_id, payload, received[0].get("Peer-Address"))
            elif kind == Kind.PING:
                self._remote_ping(door, key, routing_id, value, payload)
            else:
                worker = door.worker_of(routing_id, key)
                if worker is None:
                    door.drop(f"from {key}: a worker thread of no slot of that key")
                else:
                    door.to_router(worker, routing_id, payload)

    def _remote_hello(self, door: RemoteDoor, key: str, keeper: bytes, payload: list, address: str) -> None:
        """A remote worker asks to join a step: a slot and the step's SPEC, or REFUSE saying why."""
        step = bytes(payload[1]).decode(errors="replace") if len(payload) > 1 else ""
        _, _, threads, pid = HEADER.unpack_from(payload[0])
        router = self.routers.get(step)
        why = None
        if step not in self.config.steps:
            why = f"this run has no step {step!r} (its steps: {', '.join(self.routers)})"
        elif router is None:
            why = f"step {step} is the producer: it runs in the run's process"
        elif router.state.finishing or router.state.phase == "finished" or self.control.stopping.is_set():
            why = f"step {step} has no more work: the run is ending"
        elif not 1 <= threads <= MAX_REMOTE_THREADS:
            why = f"expected 1 to {MAX_REMOTE_THREADS} threads, got {threads}"
        if why is not None:
            door.send([keeper, HEADER.pack(Kind.REFUSE, 0, 0, 0), why.encode()])
            return
        slot = self._new_slot()
        door.workers[slot] = RemoteWorker(slot, step, key, address, threads, keeper, pid)
        self._publish()
        sockets.send(self._notices[step], added_frames(slot, threads))
        spec = dataclasses.replace(self._spec(step), work="")
        log.info("step %s: remote worker %s (%s) joined with %d threads, as worker process %d", step, key, address,
                 threads, slot)
        door.send([keeper, HEADER.pack(Kind.SPEC, 0, 0, slot), pickle.dumps(spec)])

    def _remote_ping(self, door: RemoteDoor, key: str, keeper: bytes, slot: int, payload: list) -> None:
        worker = door.workers.get(slot)
        if worker is None or worker.key != key:
            door.drop(f"from {key}: a heartbeat of no slot of that key")
            return  # a worker taken for dead gets no answer: it leaves
        worker.heard = time.monotonic()
        worker.keeper = keeper
        worker.running = parse_ping(payload)
        door.send([keeper, HEADER.pack(Kind.PONG, 0, 0, 0)])

    def _spec(self, name: str) -> Spec:
        """What a worker process of step ``name`` runs."""
        step: StepConfig = self.config.steps[name]
        config = dataclasses.replace(self.config, steps={name: dataclasses.replace(step, cls=None)})
        return Spec(config, name, step.module, step.class_name, self.addresses.outside(name), "", self.interval,
                    self.control.options.heartbeat_liveness, logging.getLogger("pipeline").getEffectiveLevel())

    def _board(self, slot: int) -> str:
        """The busy board of worker process ``slot``."""
        return os.path.join(self.addresses.ipc_dir, f"busy-{slot}")

    def _watch(self) -> None:
        """Notice dead workers: processes exited, never started or silent for heartbeat_liveness beats
        (killed), remote workers silent as long."""
        now = time.monotonic()
        for process in list(self.processes.values()):
            if process.popen is None:
                del self.processes[process.slot]
                self._publish()
                self._died(process, "it could not be started")
                continue
            code = process.popen.poll()
            if code is None:
                # Until its first word, a process is starting (importing its step): it has longer.
                patience = self.patience if process.keeper is not None else max(self.patience, HELLO_TIMEOUT_SECONDS)
                if now - process.heard > patience:
                    log.error("step %s: worker process %d (pid %s) sent no heartbeat for %.1f s: killing it",
                              process.step, process.slot, process.pid, patience)
                    process.popen.kill()
                continue
            del self.processes[process.slot]
            self._publish()
            self._died(process, _describe_exit(code), failed=code != 0)
        if self.door is not None:
            for worker in list(self.door.workers.values()):
                if now - worker.heard > self.patience:
                    log.error("step %s: remote worker %s (%s) sent no heartbeat for %.1f s: taken for dead",
                              worker.step, worker.key, worker.address, self.patience)
                    self.door.forget(worker)
                    self._publish()
                    sockets.send(self._notices[worker.step],
                                lost_frames(worker.slot, f"remote worker {worker.key} went silent", worker.running))

    def _died(self, process: WorkerProcess, reason: str, failed: bool = True) -> None:
        """Tell the step's router (it knows whether the process had finished); replace a failed process
        while the step has restarts left, announcing the replacement first."""
        router = self.routers[process.step]
        if router.state.phase == "finished":
            return
        replace = (failed and not self.control.stopping.is_set() and not router.state.finishing
                   and self.restarts[process.step] < self.control.options.max_worker_restarts)
        if failed:
            log.error("step %s: worker process %d (pid %s) died: %s%s", process.step, process.slot, process.pid,
                      reason, "; starting another" if replace else "")
        notices = self._notices[process.step]
        if replace:
            self.restarts[process.step] += 1
            slot = self._start(process.step)
            sockets.send(notices, added_frames(slot, self.config.steps[process.step].nb_thread))
        sockets.send(notices, lost_frames(process.slot, reason, read_busy_board(self._board(process.slot))))

    def _relay_halts(self, gateway: zmq.Socket) -> None:
        """Tell the processes of a step that stopped after a failure to start no further message."""
        halted = self.control.policy.halted
        keepers = [(gateway, p) for p in self.processes.values()]
        if self.door is not None:
            keepers += [(self.door.socket, w) for w in self.door.workers.values()]
        for socket, worker in keepers:
            if worker.step in halted and not worker.halted and worker.keeper is not None:
                worker.halted = True
                halt = [worker.keeper, HEADER.pack(Kind.HALT, 0, 0, 0)]
                if self.door is not None and socket is self.door.socket:
                    self.door.send(halt)
                else:
                    sockets.send(socket, halt)

    def _stop_all(self) -> None:
        """Wait for the processes to leave (they do after FINISH), until shutdown_timeout, then kill them."""
        deadline = time.monotonic() + (0 if self.control.aborted.is_set() else self.control.options.shutdown_timeout)
        for ask in (None, signal.SIGKILL):  # they ignore SIGTERM, as they do Ctrl+C: the run decides
            for process in self.processes.values():
                if ask is not None and process.popen is not None and process.popen.poll() is None:
                    process.popen.send_signal(ask)
            for process in self.processes.values():
                if process.popen is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):  # asked more firmly next round
                        process.popen.wait(max(0.0, deadline - time.monotonic()))
            deadline = time.monotonic() + KILL_GRACE_SECONDS
        self.processes.clear()


def _describe_exit(code: int) -> str:
    """How a process ended, in words."""
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
