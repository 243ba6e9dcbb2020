"""The worker processes one process starts and watches on its own host: the run's, for steps with
``nb_process`` (engine.supervisor), and ``pipeline-worker``'s on a remote host (engine.remote_agent).

A worker process is forked from the zygote (engine.zygote: a fresh interpreter that imported the
worker's code once, and never a fork of the parent, whose threads and sockets a child must not
inherit), or where there is none started with ``subprocess``; it runs in a session of its own so
that a terminal's Ctrl+C reaches only its parent, which decides. What it runs (its ``Spec``) is a
file in the parent's private directory (0700); so is its busy board (engine.board), through which
the parent knows what it is running and tells it to halt.

Liveness never depends on the child's GIL: a child is dead when it has exited, or when it has
been stopped (SIGSTOP) for the patience (``heartbeat_interval`` x ``heartbeat_liveness``), read from
``/proc`` (Linux); a child inside a long C call that holds its GIL is running, hence alive. The
child dies with its parent (``PR_SET_PDEATHSIG``, set by the child itself; engine.worker_process),
so a killed run leaves no worker process behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.engine.addresses import is_stopped
from pipeline.engine.board import BusyBoard
from pipeline.engine.wire import MAX_REASON_CHARS, NOT_STARTED
from pipeline.engine.worker_process import STEP_FAILED, Spec, last_word_path
from pipeline.engine.zygote import LEAVE_SECONDS, Forked, Zygote, python_command
from pipeline.errors import ConfigError
from pipeline.execution.status import WorkerProcessStatus
from pipeline.failures.describe import failure_line

log = logging.getLogger("pipeline.engine")

#: What a worker process runs (not ``-m``: the module is imported by its package before it runs).
WORKER_MAIN = "import sys; from pipeline.engine.worker_process import main; main(sys.argv[1:])"
#: Seconds to wait for a killed worker process to be gone.
KILL_GRACE_SECONDS = 1.0
#: Longest wait on one process before the others are looked at again, as they end.
LOOK_SECONDS = 0.1


@dataclass
class WorkerProcess:
    """One worker process this process started."""

    slot: int
    step: str
    threads: int
    steps: tuple[str, ...]  # its step and the fused steps after it (engine.fusion)
    child: subprocess.Popen | Forked | None  # None: it could not be started
    board: BusyBoard | None
    seen: float = field(default_factory=time.monotonic)  # when it was last seen alive and not stopped
    error: str = ""  # why it could not be started (child None)
    idle_since: float | None = None  # since when its busy board shows no message running (None: it runs one)
    killed_for: str = ""  # why its keeper killed it (its death's reason)

    @property
    def pid(self) -> int | None:
        """Its process id (None if it could not be started)."""
        return self.child.pid if self.child is not None else None

    def running(self) -> list[int]:
        """The messages its threads are running (from its busy board; after its death too)."""
        return self.board.running() if self.board is not None else []

    def status(self, now: float) -> WorkerProcessStatus:
        """What the monitor shows of it."""
        return WorkerProcessStatus(self.slot, "process", self.pid, "", "", self.threads, now - self.seen)


@dataclass(frozen=True)
class Death:
    """A worker process that is gone: why, whether it failed (it did not end by itself with status 0), and the
    messages it was running."""

    process: WorkerProcess
    reason: str
    failed: bool
    running: list[int]


class ProcessKeeper:
    """Starts worker processes in ``directory`` (private to the user) and says which have died."""

    def __init__(self, directory: str | Path, patience: float, zygote: Zygote | None = None) -> None:
        self.directory = Path(directory)
        self.patience = patience
        self.processes: dict[int, WorkerProcess] = {}
        # The process imports the step's module as this one did: same working directory and sys.path.
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(p or os.getcwd() for p in sys.path)}
        self._zygote = zygote  # given (forked from the run's process), else spawned on first use
        self._no_zygote = False  # it could not start: every worker starts from scratch
        self._made: dict[int, tuple[Spec, BusyBoard]] = {}  # by files(): the processes not started yet

    def _paths(self, slot: int) -> tuple[Path, Path]:
        """The spec and the busy board of the worker process of ``slot``."""
        return self.directory / f"spec-{slot}", self.directory / f"busy-{slot}"

    def files(self, slot: int, spec: Spec) -> None:
        """Write the spec of the worker process of ``slot`` and make its busy board, before ``start()``; a ConfigError
        naming the file if the directory refuses it (full, over quota, no file descriptor left, not writable): a
        setting of the host, said in one line, not a crash."""
        spec_path, board_path = self._paths(slot)
        path = spec_path  # the file being written, for the error
        try:
            spec_path.write_bytes(pickle.dumps(spec))
            path = board_path
            self._made[slot] = spec, BusyBoard(board_path, spec.config.steps[spec.step].nb_thread, create=True)
        except OSError as err:
            raise ConfigError("TMPDIR", "", f"cannot write {path}, a file of a worker process: "
                              f"{err.strerror or err}: expected a temporary directory with room for it (free "
                              "some, or set TMPDIR to another directory)") from None

    def start(self, slot: int, extra: Sequence[str] = (), leftovers: Sequence[Path] = (),
              waiting: Callable[[], None] | None = None) -> WorkerProcess:
        """Start the worker process of ``slot``, its files made (``files()``; ``extra``: more command-line options),
        forked from the zygote where it can be, else from scratch. ``leftovers``: its files that the owner removes at
        its end (its rings); the zygote removes them, and the keeper's directory, if the owner is killed. ``waiting``:
        called often while the zygote is waited for (its owner's heartbeats)."""
        spec_path, board_path = self._paths(slot)
        spec, board = self._made.pop(slot)
        argv = [f"--spec={spec_path}", f"--board={board_path}", f"--slot={slot}", f"--run={os.getpid()}", *extra]
        zygote = self._zygote_now()
        child: subprocess.Popen | Forked | None = None
        error = ""
        if zygote is not None:
            asked = time.monotonic()
            child = zygote.fork([*argv, f"--parent={zygote.pid}"], [*leftovers, self.directory], waiting)
            error = zygote.error
            if zygote.unanswered:  # stopped or stuck: each later start would wait for it as long
                log.warning("the zygote (pid %d) did not answer a fork within %.1f s: worker processes start from "
                            "scratch for the rest of the run", zygote.pid, time.monotonic() - asked)
        if child is None:
            try:
                child = subprocess.Popen(python_command("-c", WORKER_MAIN, *argv, f"--parent={os.getpid()}"),
                                         env=self.env, stdin=subprocess.DEVNULL, start_new_session=True)
            except OSError as err:  # said once by the keeper's owner (deaths()), not once per process
                error = failure_line(err)
        process = self.processes[slot] = WorkerProcess(slot, spec.step, board.threads, (spec.step, *spec.members),
                                                       child, board, error=error if child is None else "")
        return process

    def prepare(self) -> None:
        """Start the zygote now, if it is to be spawned: it imports while its caller does other work."""
        self._zygote_now()

    def _zygote_now(self) -> Zygote | None:
        """The zygote, started on first use; None where it cannot start, or once it left a fork unanswered (it still
        reports the ends of the processes it forked)."""
        if self._zygote is None and not self._no_zygote:
            try:
                self._zygote = Zygote.spawned(self.env)
            except OSError as err:
                log.debug("no zygote (%s): worker processes start from scratch", err)
                self._no_zygote = True
        return None if self._zygote is not None and self._zygote.unanswered else self._zygote

    def deaths(self) -> list[Death]:
        """The worker processes that died since the last look (they are forgotten); stopped ones are killed."""
        if self._zygote is not None:
            # What the zygote said meanwhile: a fork answered past FORK_SECONDS is killed now, not once a process it
            # forked is polled next (with none left, it lived to the run's end beside its replacement, rings and all).
            self._zygote.collect()
        now = time.monotonic()
        dead = []
        for process in list(self.processes.values()):
            if process.child is None:
                dead.append(Death(process, f"{NOT_STARTED}: {process.error or 'no reason given'}", True, []))
                del self.processes[process.slot]
                self._remove_files(process.slot)
                continue
            code = process.child.poll()
            if code is None:
                if not is_stopped(process.child.pid):
                    process.seen = now
                elif now - process.seen > self.patience and not process.killed_for:
                    log.error("step %s: worker process %d (pid %s) stopped for %.1f s: killing it", process.step,
                              process.slot, process.pid, self.patience)
                    self.kill(process, f"stopped for {self.patience:.1f} s")
                if process.running():
                    process.idle_since = None
                elif process.idle_since is None:
                    process.idle_since = now
                continue
            reason = f"{process.killed_for}: killed" if process.killed_for else describe_exit(code)
            said = self._last_word(process.slot)
            # A process whose step's code failed ended by itself: the run counted the failures as they came.
            failed = code not in (0, STEP_FAILED)
            dead.append(Death(process, f"{reason}: {said}" if said else reason, failed, process.running()))
            del self.processes[process.slot]
            if process.board is not None:
                process.board.close()
            self._remove_files(process.slot)
        return dead

    def _remove_files(self, slot: int) -> None:
        """Remove the spec and busy board of the dead worker process of ``slot``: a replacement has files of its own,
        and a step whose poison messages kill a process each (no bound on their replacements) left two a death."""
        for path in self._paths(slot):
            path.unlink(missing_ok=True)

    def _last_word(self, slot: int) -> str:
        """Why worker process ``slot`` could not run, if it said so before it ended (its step would not load)."""
        path = last_word_path(self.directory, slot)
        try:
            said = path.read_text(encoding="utf-8", errors="replace")[:MAX_REASON_CHARS]
        except OSError:
            return ""
        path.unlink(missing_ok=True)
        return said.strip()

    def resumed(self, now: float) -> None:
        """The keeper itself did not run until ``now`` (stopped with its host): a stop of its processes is timed from
        ``now`` (they were stopped with it, and may be resumed after it)."""
        for process in self.processes.values():
            process.seen = now

    def kill(self, process: WorkerProcess, why: str) -> None:
        """SIGKILL ``process``; its death, at the next look, says ``why``."""
        process.killed_for = why
        if process.child is not None:
            process.child.kill()

    def halt(self, step: str) -> None:
        """Tell the worker processes that run ``step`` to start no further message of it."""
        for process in self.processes.values():
            if step in process.steps and process.board is not None and not process.board.halted(
                    process.steps.index(step)):
                process.board.halt(process.steps.index(step))

    def roster(self) -> tuple[WorkerProcess, ...]:
        """The live worker processes (a new tuple: a reader in another thread never sees one change)."""
        return tuple(self.processes.values())

    def stop_all(self, timeout: float, signum: int | None = None) -> None:
        """Wait up to ``timeout`` seconds for the processes to leave (after FINISH they do; ``signum`` asks
        them first), then kill those still there."""
        deadline = time.monotonic() + timeout
        for ask in (signum, signal.SIGKILL):
            for process in self.processes.values():
                if ask is not None and process.child is not None and process.child.poll() is None:
                    process.child.send_signal(ask)
            self._wait_all(deadline)  # those still there are asked more firmly next round
            deadline = time.monotonic() + KILL_GRACE_SECONDS

    def _wait_all(self, deadline: float) -> None:
        """Wait until every process has ended, or ``deadline``: each is polled at each look, so that the waits of
        those whose zygote says nothing of their end (UNREPORTED_EXIT_SECONDS each) overlap, not add up."""
        while True:
            running = [process.child for process in self.processes.values()
                       if process.child is not None and process.child.poll() is None]
            left = deadline - time.monotonic()
            if not running or left <= 0:
                return
            with contextlib.suppress(subprocess.TimeoutExpired):  # the next look polls them all again
                running[0].wait(min(left, LOOK_SECONDS))

    def close(self, grace: float = LEAVE_SECONDS) -> None:
        """Unmap the boards (the processes are gone), and end the zygote (killed past ``grace`` seconds)."""
        made = [board for _, board in self._made.values()]
        for board in [*made, *(process.board for process in self.processes.values())]:
            if board is not None:
                board.close()
        self._made.clear()
        self.processes.clear()
        if self._zygote is not None:
            self._zygote.close(grace)
            self._zygote = None


def describe_exit(code: int) -> str:
    """How a process ended, in words."""
    if code == STEP_FAILED:
        return "its step's code failed"
    if code < 0:
        try:
            return f"killed by signal {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
