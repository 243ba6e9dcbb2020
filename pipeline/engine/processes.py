"""The run's process host: starts the worker processes of steps with ``nb_process``, keeps them alive.

One thread of the run owns the host's ROUTER socket (an ipc endpoint in the run's private
directory). A new worker process says HELLO and gets its SPEC; each process's keeper sends PING
every ``heartbeat_interval`` and gets PONG back (zguide's Paranoid Pirate, both ways). A process
that exits, or misses ``heartbeat_liveness`` beats (it is then killed), is dead: the host tells
its step's router (LOST), which delivers again what the process held, and starts a replacement
while the step has restarts left (``max_worker_restarts``). Processes start with ``subprocess``
(a fresh interpreter: never ``fork``, which would copy the run's threads and sockets).
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

from ..config import PipelineConfig, StepConfig
from . import frames
from .addresses import Addresses
from .control import EngineThread, RunControl
from .process_worker import Spec, read_busy_board
from .router import Router
from .wire import HEADER, Kind, header_of, lost_frames

log = logging.getLogger("pipeline.engine")

#: What a worker process runs (not ``-m``: the module is imported by its package before it runs).
_WORKER_MAIN = "import sys; from pipeline.engine.process_worker import main; main(sys.argv[1:])"
#: Seconds a process that is asked to stop (SIGTERM) has before it is killed.
TERMINATE_GRACE_SECONDS = 1.0


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

    @property
    def pid(self) -> int | None:
        """Its process id (None if it could not be started)."""
        return self.popen.pid if self.popen is not None else None


class ProcessHost(EngineThread):
    """Starts, watches and replaces the run's worker processes; ends when their steps' routers have."""

    def __init__(self, context: zmq.Context, control: RunControl, config: PipelineConfig, addresses: Addresses,
                 routers: dict[str, Router]) -> None:
        super().__init__("process-host", control)
        self.context = context
        self.config = config
        self.addresses = addresses
        self.routers = {name: router for name, router in routers.items() if router.step.nb_process}
        self.processes: dict[int, WorkerProcess] = {}
        self.restarts: Counter[str] = Counter()  # per step: processes started to replace dead ones
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
            for name in self.routers:
                for _ in range(self.config.steps[name].nb_process):
                    self._start(name)
            tick = min(self.interval / 2, 0.1)
            while not self._finished() and not self.control.aborted.is_set():
                if gateway.poll(tick * 1000):
                    self._read(gateway)
                self._watch()
                self._relay_halts(gateway)
        finally:
            self._stop_all()
            gateway.close()
            for notice in self._notices.values():
                notice.close()

    def _finished(self) -> bool:
        return all(not router.is_alive() or router.state == "finished" for router in self.routers.values())

    def _start(self, step: str) -> None:
        """Start a worker process for ``step``, in a new slot."""
        slot = self._next_slot
        self._next_slot += 1
        command = [sys.executable, "-c", _WORKER_MAIN, f"--connect={self.addresses.host()}", f"--slot={slot}"]
        # The process imports the step's module as the run did: same working directory and sys.path.
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p or os.getcwd() for p in sys.path),
               "PYTHONUNBUFFERED": "1"}
        try:
            popen: subprocess.Popen | None = subprocess.Popen(command, env=env, stdin=subprocess.DEVNULL)
        except OSError as err:
            log.error("step %s: cannot start a worker process: %s", step, err)
            popen = None
        self.processes[slot] = WorkerProcess(slot, step, popen)

    def _read(self, gateway: zmq.Socket) -> None:
        while frames.waiting(gateway):
            received = frames.recv(gateway)
            keeper = received[0].bytes
            kind, slot = header_of(received[1])
            process = self.processes.get(slot)
            if process is None:
                continue  # a process this run no longer counts (it was taken for dead)
            process.heard = time.monotonic()
            process.keeper = keeper
            if kind is Kind.HELLO:
                spec = dataclasses.replace(self._spec(process.step), busy_board=self._board(slot))
                frames.send(gateway, [keeper, HEADER.pack(Kind.SPEC, 0, 0, 0), pickle.dumps(spec)])
            elif kind is Kind.PING:
                frames.send(gateway, [keeper, HEADER.pack(Kind.PONG, 0, 0, 0)])

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
        """Notice dead processes: exited, never started, or silent for heartbeat_liveness beats (killed)."""
        now = time.monotonic()
        for process in list(self.processes.values()):
            if process.popen is None:
                del self.processes[process.slot]
                self._died(process, "it could not be started")
                continue
            code = process.popen.poll()
            if code is None:
                if now - process.heard > self.patience:
                    log.error("step %s: worker process %d (pid %s) sent no heartbeat for %.1f s: killing it",
                              process.step, process.slot, process.pid, self.patience)
                    process.popen.kill()
                continue
            del self.processes[process.slot]
            self._died(process, _describe_exit(code), failed=code != 0)

    def _died(self, process: WorkerProcess, reason: str, failed: bool = True) -> None:
        """Tell the step's router (it knows whether the process had finished); replace a failed process
        while the step has restarts left."""
        if self.routers[process.step].state == "finished":
            return
        replace = failed and self.restarts[process.step] < self.control.options.max_worker_restarts
        if failed:
            log.error("step %s: worker process %d (pid %s) died: %s%s", process.step, process.slot, process.pid,
                      reason, "; starting another" if replace else "")
        running = read_busy_board(self._board(process.slot))
        frames.send(self._notices[process.step], lost_frames(process.slot, replace, reason, running))
        if replace:
            self.restarts[process.step] += 1
            self._start(process.step)

    def _relay_halts(self, gateway: zmq.Socket) -> None:
        """Tell the processes of a step that stopped after a failure to start no further message."""
        halted = self.control.policy.halted
        for process in self.processes.values():
            if process.step in halted and not process.halted and process.keeper is not None:
                process.halted = True
                frames.send(gateway, [process.keeper, HEADER.pack(Kind.HALT, 0, 0, 0)])

    def _stop_all(self) -> None:
        """Wait for the processes to leave (they do after FINISH), then ask them, then kill them."""
        deadline = time.monotonic() + (0 if self.control.aborted.is_set() else self.control.options.shutdown_timeout)
        for ask in (None, signal.SIGTERM, signal.SIGKILL):
            for process in self.processes.values():
                if ask is not None and process.popen is not None and process.popen.poll() is None:
                    process.popen.send_signal(ask)
            for process in self.processes.values():
                if process.popen is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):  # asked more firmly next round
                        process.popen.wait(max(0.0, deadline - time.monotonic()))
            deadline = time.monotonic() + TERMINATE_GRACE_SECONDS
        self.processes.clear()


def _describe_exit(code: int) -> str:
    """How a process ended, in words."""
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
