"""Where a step's workers run, as every display says it: the terminal table, the progress line and the GUI.

A step's workers are threads of the run (``t``), the run's own worker processes (``p``, ``nb_process``)
or remote workers that joined from other hosts (``r``), each process with its threads. ``2p+1r`` reads
"two worker processes of the run and one remote worker". A worker process is *late* when its last
heartbeat is older than LATE_SECONDS: it is busy with a long ``run()`` whose heartbeat thread starves,
or it is dying (the run declares it dead after ``heartbeat_liveness`` beats).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Protocol

from pipeline.console import humanize

#: Seconds since a worker process's last heartbeat past which the displays flag it (they come every
#: ``heartbeat_interval``, 1 s by default: two missed beats).
LATE_SECONDS = 2.0


class WorkerProcessLike(Protocol):
    """What the displays read of a worker process (the run's WorkerProcessStatus, the GUI's parsed form)."""

    @property
    def kind(self) -> str:
        """``process`` or ``remote``."""

    @property
    def threads(self) -> int:
        """Its worker threads."""

    @property
    def pid(self) -> int | None:
        """Its process id on its host."""

    @property
    def host(self) -> str:
        """Where a remote worker connected from."""

    @property
    def key(self) -> str:
        """The name of the key a remote worker proved."""

    @property
    def silent(self) -> float:
        """Seconds since its last heartbeat."""


@dataclass(frozen=True)
class WorkerMix:
    """How many of a step's workers are threads of the run, worker processes of the run, remote workers."""

    threads: int
    processes: int
    remote: int
    in_processes: bool  # the config gives the step worker processes (nb_process), even if none is alive now
    remote_only: bool = False  # the config gives the step no worker of its own (nb_thread 0): remote ones only

    @property
    def plain(self) -> bool:
        """True when every worker is a thread of the run: the displays then say nothing more."""
        return not (self.processes or self.remote or self.in_processes or self.remote_only)

    def __str__(self) -> str:
        """``2t``, ``2p``, ``2p+1r``, ``1t+1r``; ``0p`` or ``0r`` for a step whose processes or remote workers
        have all gone; ``0`` for a step of threads without a worker now."""
        parts = [f"{humanize.count(self.threads)}t"] if self.threads else []
        if self.processes or self.in_processes:
            parts.append(f"{humanize.count(self.processes)}p")
        if self.remote or (self.remote_only and not parts):
            parts.append(f"{humanize.count(self.remote)}r")
        return "+".join(parts) or "0"


def worker_mix(workers: int, processes: int, worker_processes: Iterable[WorkerProcessLike],
               remote_only: bool = False) -> WorkerMix:
    """The mix of a step with ``workers`` worker threads in all, ``processes`` worker processes in its
    config (nb_process) and these live worker processes (local and remote); ``remote_only``: its config
    gives it no worker of its own (``nb_thread`` 0, the graph's ``workers`` 0).

    A step with worker processes has no thread workers of its own; otherwise its threads are its workers
    less the remote workers' threads (the status counts those in ``workers``).
    """
    live = list(worker_processes)
    local = sum(w.kind == "process" for w in live)
    remote = [w for w in live if w.kind == "remote"]
    threads = 0 if processes > 0 else max(0, workers - sum(max(0, w.threads) for w in remote))
    return WorkerMix(threads, local, len(remote), processes > 0, remote_only)


def is_late(silent: float) -> bool:
    """Whether a worker process silent for ``silent`` seconds is flagged."""
    return silent > LATE_SECONDS


def heartbeat(silent: float) -> str:
    """``heartbeat 0.3 s ago`` (whole seconds past a minute, capped at a day: a peer's number stays short)."""
    silent = min(max(0.0, silent), 86_400.0)
    return f"heartbeat {silent:.1f} s ago" if silent < 60 else f"heartbeat {silent:.0f} s ago"


def label(worker: WorkerProcessLike) -> str:
    """A worker process in a few characters: ``node7@10.0.0.5`` (remote: its key and host), ``pid 4321``."""
    if worker.kind == "remote":
        return f"{worker.key}@{worker.host}"
    return f"pid {worker.pid}" if worker.pid is not None else "pid ?"


def troubles(redelivered: int, restarts: int, number: Callable[[int], str] = str) -> str:
    """``3 redelivered, 1 restart``, or the one of them that is not 0; "" when both are. ``number``
    writes the figures."""
    parts = [f"{number(redelivered)} redelivered"] if redelivered > 0 else []
    if restarts > 0:
        parts.append(f"{number(restarts)} restart" + ("s" if restarts > 1 else ""))
    return ", ".join(parts)
