"""The threaded ZeroMQ engine: a router thread per step and worker threads, in one process."""

from __future__ import annotations

import logging
import queue
import shutil
import threading
import time
from collections import deque
from typing import Any

import zmq

from pipeline.config.model import PipelineConfig
from pipeline.config.options import RunOptions
from pipeline.console.end_of_output import hear_lost_output
from pipeline.engine import sockets
from pipeline.engine.addresses import Addresses, private_dir
from pipeline.engine.allocator import keep_freed_memory
from pipeline.engine.control import BOUND, ENDED, INIT_DONE, WAKE, WORKERS_JOINED, EngineThread, RunControl
from pipeline.engine.door import MAX_REMOTE_WORKER_THREADS, Door
from pipeline.engine.fusion import fused_after, fused_groups
from pipeline.engine.limits import (
    RUN_FILES_BASE,
    RUN_FILES_PER_PROCESS_THREAD,
    allow_open_files,
    files_short_of,
    out_of_threads,
    out_of_threads_line,
    worker_process_files,
)
from pipeline.engine.router import Router
from pipeline.engine.shards import shard_seed
from pipeline.engine.specs import spec_for
from pipeline.engine.step_threads import ProducerThread, StepHolder, StepThread, WorkerThread, runs_inline
from pipeline.engine.supervisor import Supervisor
from pipeline.engine.wire import Kind, control_frames
from pipeline.engine.zygote import LEAVE_SECONDS, Zygote
from pipeline.errors import ConfigError, LimitError
from pipeline.execution.report import (
    RunReport,
    StepCounts,
    StepReport,
    exit_status,
    signal_reason,
    stop_reason_of,
)
from pipeline.execution.status import RunStatus, StepStatus, declared_totals

log = logging.getLogger("pipeline.engine")

#: Seconds an abort waits for threads once the context is terminated, before leaving them behind.
ABORT_GRACE_SECONDS = 1.0
#: Longest the runner waits for its threads' next event at a time: how late an interrupt that is no signal is raised.
INTERRUPT_LOOK_SECONDS = 0.2


#: Sockets a run may open beyond what its steps need (the monitor's, the supervisor's and the door's).
SPARE_SOCKETS = 64


def socket_count(config: PipelineConfig) -> int:
    """How many ZeroMQ sockets a threaded run of ``config`` opens (ZeroMQ's default cap is 1023)."""
    total = 0
    for step in config.steps.values():
        pushes = len(step.next_steps)
        if step.kind == "producer":
            total += pushes
            continue
        total += 3 + pushes  # the router's inbox, work and notices sockets, and its outputs if it sends
        if not step.nb_process:
            total += step.nb_thread * (1 + pushes)  # each worker's socket to its router and its outputs
    return total


def process_threads(config: PipelineConfig) -> int:
    """How many worker threads a run's worker processes have in all (each connects to a router of the run)."""
    return sum(step.nb_process * step.nb_thread for step in config.steps.values())


def run_files(config: PipelineConfig) -> int:
    """Open files the run's process needs for a run of ``config``: a socket holds a file descriptor or two, and the
    worker processes' threads' connections hold some too."""
    return RUN_FILES_BASE + 2 * socket_count(config) + RUN_FILES_PER_PROCESS_THREAD * process_threads(config)


def files_needed(config: PipelineConfig) -> int:
    """Open files a run of ``config`` needs in its own process or in one of its worker processes, whichever needs more:
    they share its hard limit."""
    return max([run_files(config), *(worker_process_files(step.nb_thread) for step in config.steps.values()
                                     if step.nb_process)])


class ThreadedRunner:
    """Runs a pipeline with one router thread per step and ``nb_thread`` worker threads per step."""

    def __init__(self, config: PipelineConfig, options: RunOptions | None = None) -> None:
        # Refused before anything starts: past the hard limit, libzmq aborted the run's process where a socket found no
        # file (SIGABRT, no report), or a worker process's.
        short = files_short_of(files_needed(config))
        if short is not None:
            raise LimitError(short)
        self.config = config
        self.options = options or RunOptions()
        self.addresses = Addresses()
        self.control = RunControl(self.options)
        self.policy = self.control.policy
        self.routers: dict[str, Router] = {}
        self.threads: dict[str, list[StepThread]] = {}
        self.crashed: list[EngineThread] = []
        self.ended: set[EngineThread] = set()  # threads that reported their end
        # Events a wait for other kinds read, kept for the wait for theirs: a worker process's join came as the
        # runner still waited for the door's BOUND, and its start then waited for that join for ever.
        self._kept: deque[tuple[str, Any]] = deque()
        self.supervisor: Supervisor | None = None  # starts and watches the worker processes (nb_process)
        self.door: Door | None = None  # lets remote workers in (Pipeline.listen)
        self._shard_feed: zmq.Socket | None = None  # to the router of a producer in worker processes
        self.signal: int | None = None
        self.deadline: float | None = None  # after a signal: when busy threads are given up on
        self.abort_requested = False
        self.overdue = False  # the shutdown deadline passed
        self.stuck: list[str] = []
        self.limit: str | None = None  # a limit of the machine that stopped the run (no thread could start), in words
        self.started = time.monotonic()
        self.totals = declared_totals(config)  # for the progress display's total and ETA
        # Steps fused into the worker processes of the one before them (engine.fusion): they have no router.
        self.groups = fused_groups(config, self.options.fuse and not self.options.listen)
        self.fused = fused_after(self.groups)
        if self.options.keep_freed_memory:  # before the zygote's fork, which keeps the setting
            keep_freed_memory()
        # Worker processes fork from a copy of this process made now, before the run or its monitor starts a
        # thread (engine.zygote); where it cannot be made, the supervisor spawns a zygote.
        self.zygote = Zygote.forked_from_here() if self.options.fork_workers and any(
            step.nb_process for step in config.steps.values()) else None
        #: Why worker processes start afresh, not forked from a copy of this process ("": they do not).
        self.afresh = "" if self.zygote is not None else (
            "fork_workers is false" if not self.options.fork_workers else
            "the run's process runs other Python threads, or cannot fork")
        try:  # what a worker process could not be given, said now rather than as each dies
            for name, step in config.steps.items():
                if step.nb_process:
                    spec_for(config, name, "", self.control, afresh=self.afresh)
        except ConfigError:
            self.discard()  # its zygote and its dead-letter file
            raise

    def stop(self, signal: int | None = None) -> None:
        """Stop the producer; drain what is in flight; give up on busy threads after shutdown_timeout."""
        self.signal = self.signal or signal
        if signal is not None and self.deadline is None:
            self.deadline = time.monotonic() + self.options.shutdown_timeout
        self.control.stopping.set()
        self.control.events.put((WAKE, None))

    def discard(self) -> None:
        """End the zygote forked for the run, and close its failure policy (its dead-letter file), unless run() did (it
        was refused, its monitor could not start, or Ctrl+C came first)."""
        if self.zygote is not None:
            self.zygote.close()
        self.policy.close()

    def abort(self) -> None:
        """Stop now: end every blocking socket call and leave busy threads behind."""
        self.abort_requested = True
        self.control.events.put((WAKE, None))

    def run(self) -> RunReport:
        """Start every thread, let the producer go once every init() succeeded, wait for the end."""
        context = zmq.Context()
        flusher = self.control.flusher
        try:  # from here on: a Ctrl+C landing in a thread's start() leaves no thread behind
            spare = SPARE_SOCKETS + (MAX_REMOTE_WORKER_THREADS if self.options.listen else 0)
            context.max_sockets = max(context.max_sockets, socket_count(self.config) + spare)
            allow_open_files(run_files(self.config) + 2 * spare)  # room for the spare sockets, which no run needs
            flusher.start()
            if self.options.listen or any(step.nb_process for step in self.config.steps.values()):
                self.addresses = Addresses(self.addresses.run_id, private_dir())
            self._start_routers(context)
            self._start_steps(context)
            self._wait_for_end()
        except RuntimeError as err:
            if not out_of_threads(err):
                raise
            self.limit = out_of_threads_line()  # the run stops, and its report says why (exit status 1)
        finally:
            if self._shard_feed is not None:
                self._shard_feed.close(linger=0)
            if self._alive():
                self._abort(context)
            else:
                context.term()
            if self.zygote is not None:  # the supervisor's keeper closed it, unless it never started
                self.zygote.close(0.0 if self.control.aborted.is_set() else LEAVE_SECONDS)
            flusher.stopped.set()  # one whose start() was interrupted stops as soon as it runs
            if flusher.is_alive():
                flusher.join(ABORT_GRACE_SECONDS)
            producer = self.threads.get(self.config.producer.name)
            # A replay stopped before its end, its thread even left behind: what it did not send is recorded.
            self.control.policy.close(producer[0].executor.component if producer else None)
            if self.addresses.ipc_dir:
                hear_lost_output(self.addresses.ipc_dir)  # the worker processes' stdout is the run's
                shutil.rmtree(self.addresses.ipc_dir, ignore_errors=True)
        return self._report()

    def _all_threads(self) -> list[EngineThread]:
        keepers = [keeper for keeper in (self.supervisor, self.door) if keeper is not None]
        return [*self.routers.values(), *keepers, *(t for ts in self.threads.values() for t in ts)]

    def _alive(self) -> list[EngineThread]:
        return [t for t in self._all_threads() if t.is_alive()]

    def _next_event(self, *kinds: str) -> EngineThread | StepHolder | None:
        """The thread (or inline step worker) of the next event of one of ``kinds``; None once a thread crashed,
        an abort was asked for or the shutdown deadline passed. An event of another kind is kept for a later wait."""
        while not self.crashed and not self.abort_requested:
            kept = next((each for each in self._kept if each[0] in kinds), None)
            if kept is not None:
                self._kept.remove(kept)
                return kept[1]
            left = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
            try:
                # In turns: an interrupt that is no signal (_thread.interrupt_main(), as an IDE or a kernel may send
                # one) is raised only once the wait ends, and a wait without end let the whole run go by first.
                event, thread = self.control.events.get(timeout=INTERRUPT_LOOK_SECONDS if left is None
                                                        else min(left, INTERRUPT_LOOK_SECONDS))
            except queue.Empty:
                if left is None or left > INTERRUPT_LOOK_SECONDS:
                    continue
                if not self.overdue:  # said once, though the runner's later waits end here too
                    log.error("the run did not drain within shutdown_timeout=%.1f s", self.options.shutdown_timeout)
                self.overdue = True
                return None
            if event == ENDED and thread is not None:
                self.ended.add(thread)
                if thread.crash is not None:
                    self.crashed.append(thread)
                    continue
            if event in kinds:
                return thread
            if event != ENDED:  # counted above: the wait for the end counts the threads that ended, not events
                self._kept.append((event, thread))
        return None

    def _start_routers(self, context: zmq.Context) -> None:
        for step in self.config.steps.values():
            if (step.kind != "producer" or step.nb_process) and step.name not in self.fused:
                members = self.groups.get(step.name, (step.name,))[1:]
                self.routers[step.name] = Router(context, self.control, self.config, step, self.addresses, members,
                                                 inline=runs_inline(step, self.options))
        for router in self.routers.values():
            router.start()
        for _ in self.routers:
            if self._next_event(BOUND) is None:
                return
        if any(router.step.nb_process for router in self.routers.values()):
            self.supervisor = Supervisor(context, self.control, self.config, self.addresses, self.routers, self.zygote,
                                         self.afresh)
            self.supervisor.start()
            if self._next_event(BOUND) is None:
                if isinstance(self.supervisor.crash, ConfigError):
                    raise self.supervisor.crash  # no room for a worker process's files: exit 2, no step started
                return
        options = self.options
        if options.listen and options.server_keys is not None:
            self.door = Door(context, self.control, self.config, self.addresses, self.routers, options.listen,
                             options.server_keys)
            self.door.start()
            if self._next_event(BOUND) is None and isinstance(self.door.crash, ConfigError):
                raise self.door.crash  # such as a listen address in use: exit 2, nothing started

    def _start_steps(self, context: zmq.Context) -> None:
        if self._alive() != self._all_threads():
            return  # a router did not start
        for step in self.config.steps.values():
            if step.kind == "producer" and not step.nb_process:
                threads: list[StepThread] = [ProducerThread(context, self.control, self.config, step,
                                                            self.addresses, 0)]
            elif step.nb_process or step.name in self.fused or self.routers[step.name].inline is not None:
                threads = []  # its workers are the supervisor's processes, or its router runs its one worker
            else:
                threads = [WorkerThread(context, self.control, self.config, step, self.addresses, i)
                           for i in range(step.nb_thread)]
            self.threads[step.name] = threads
            for thread in threads:
                thread.start()
        self.control.build.set()  # and the routers that run their step's one worker init() it
        inits_ok = True
        joining = sum(1 for router in self.routers.values() if router.step.nb_process)
        inline = sum(1 for router in self.routers.values() if router.inline is not None)
        # Steps of remote workers only (nb_thread 0): the first worker's init(), or worker_timeout, once the run's own
        # init()s went well (one that failed stops the run at once, and a signal ends the wait).
        remote = {router for router in self.routers.values() if not router.step.nb_process and not router.step.workers}
        local = sum(len(ts) for ts in self.threads.values()) + joining + inline
        while local or (remote and inits_ok and not self.control.stopping.is_set()):
            worker = self._next_event(INIT_DONE, WORKERS_JOINED, WAKE)
            if self.crashed or self.abort_requested or self.overdue:
                return
            if worker in remote:
                remote.discard(worker)  # type: ignore[arg-type]
            elif worker is None:
                continue  # a signal (WAKE): the wait for remote workers ends with the stop
            else:
                local -= 1
            if isinstance(worker, Router):
                inits_ok = inits_ok and not worker.state.no_worker and not worker.state.start_failed
            else:
                inits_ok = inits_ok and isinstance(worker, StepHolder) and worker.init_ok
        if not inits_ok:
            self.control.policy.stop_not_started()
            self.control.stopping.set()  # an init() failed: the producer does not start
        self.control.go.set()
        producer = self.config.producer
        if producer.nb_process:  # its router starts its shards in its worker processes (engine.shards)
            self._shard_feed = context.socket(zmq.PUSH)
            self._shard_feed.connect(self.addresses.inbox(producer.name))
            seed = shard_seed(0 if self.control.stopping.is_set() else producer.nb_process)
            if len(seed):
                sockets.send(self._shard_feed, seed.frames(Kind.DATA))
            sockets.send(self._shard_feed, control_frames(Kind.END, len(seed)))

    def _wait_for_end(self) -> None:
        """Wait until every thread has reported its end (a thread reports it just before it stops)."""
        threads = self._all_threads()
        while len(self.ended) < len(threads):
            if self._next_event(ENDED) is None:
                return
        for thread in threads:
            thread.join(ABORT_GRACE_SECONDS)  # each has reported its end: only its last bytecodes remain

    def _abort(self, context: zmq.Context) -> None:
        """Stop every thread: terminating the context ends their blocking socket calls; the worker processes still
        in a step's code are named, then killed."""
        processes = self._busy_processes()
        self.control.abort()
        deadline = time.monotonic() + ABORT_GRACE_SECONDS
        terminator = threading.Thread(target=context.term, name="context-term", daemon=True)
        try:
            terminator.start()
        except RuntimeError as err:
            if not out_of_threads(err):
                raise
            # No thread to spare (the run met its limit as it started threads): terminated here, which waits for the
            # threads in a step's code to leave it (an init(), at the start), the others stopped by the termination.
            context.term()
        for thread in [terminator, *self._alive()] if terminator.is_alive() else self._alive():
            thread.join(max(0.0, deadline - time.monotonic()))
        self.stuck = [*(self._describe(t) for t in self._alive()), *processes]
        for description in self.stuck:
            log.critical("left behind, still busy: %s", description)

    def snapshot(self) -> RunStatus:
        """The run now, for the monitor (read from another thread: plain attribute reads only)."""
        steps = [self._step_status(name) for name in self.config.steps]
        if not self.control.go.is_set():
            state = "starting"
        elif self.control.stopping.is_set() or steps[0].state == "finished":
            state = "draining"
        else:
            state = "running"
        return RunStatus(state, time.monotonic() - self.started, steps)

    def _workers(self, name: str) -> list[StepHolder]:
        """The workers of step ``name`` in the run's process: its threads, or the one its router runs."""
        router = self.routers.get(name)
        if router is not None and router.inline is not None:
            return [router.inline]
        return list(self.threads.get(name, []))

    def _step_status(self, name: str) -> StepStatus:
        step = self.config.steps[name]
        workers = self._workers(name)
        router = self.routers.get(name)
        status = StepStatus(name, queue_limit=step.queue_limit, workers=step.workers, counts=StepCounts(),
                            processes=step.nb_process, total=self.totals.get(name))
        for worker in workers:
            executor = worker.executor
            status.counts += executor.counts
            status.busy += executor.busy_seq is not None
            status.busy_time += executor.busy_time
            status.max_time = max(status.max_time, executor.max_time)
        head = self.routers.get(self.fused.get(name, ""))
        if head is not None:  # a fused step: what its group's router heard from the worker processes
            figures = head.state.tallies.members[self.groups[head.step.name].index(name) - 1]
            status.counts += figures.counts()
            status.state = head.state.phase
            status.busy_time, status.max_time = figures.busy_time, figures.max_time
            if figures.first_error and status.state == "finished":
                status.state = "failed"
        elif router is not None:
            state = router.state
            status.counts += state.counts
            status.counts.emitted += state.tallies.emitted_to_members
            status.queue = state.queued
            status.state = state.phase
            status.busy_time += state.busy_time
            status.max_time = max(status.max_time, state.max_time)
            status.redelivered = state.redelivered
            status.busy += router.busy_workers
            if state.first_error and status.state == "finished":
                status.state = "failed"
        elif self.threads.get(name) and not self.threads[name][0].is_alive():  # the producer's thread
            status.state = "finished"
        elif self.control.go.is_set():
            status.state = "running"
        now = time.monotonic()
        if self.supervisor is not None:
            status.restarts = self.supervisor.restarts[name]
            status.worker_processes += [w.status(now) for w in self.supervisor.roster if w.step == name]
        if self.door is not None:
            remote = [w.status(now) for w in self.door.roster if w.step == name]
            status.worker_processes += remote
            status.workers += sum(w.threads for w in remote)
        if status.state == "finished" and any(w.executor.first_error for w in workers):
            status.state = "failed"
        return status

    def busy(self) -> list[str]:
        """The workers inside a step's code now: the run's threads, then its worker processes, local and remote."""
        threads = [self._describe(worker) for name in self.config.steps for worker in self._workers(name)
                   if worker.executor.doing() is not None]
        return [*threads, *self._busy_processes()]

    def _busy_processes(self) -> list[str]:
        """The worker processes (local, then remote) inside a step's code now, each busy thread named."""
        return [*(self.supervisor.busy() if self.supervisor is not None else []),
                *(self.door.busy() if self.door is not None else [])]

    @staticmethod
    def _describe(thread: EngineThread | StepHolder) -> str:
        if isinstance(thread, Router) and thread.inline is not None:
            thread = thread.inline  # a router left behind is in the step's code it runs: name the step's worker
        if isinstance(thread, StepHolder):
            return f"step {thread.step.name} worker {thread.index} {thread.executor.doing() or 'in its step code'}"
        return f"the run's thread {thread.name}"

    def report_now(self) -> RunReport:
        """The report as the run stands, from another thread: a running run's, unless it has given up on workers."""
        return self._report(running=not self.stuck)

    def _report(self, running: bool = False) -> RunReport:
        reports: dict[str, StepReport] = {}
        crashed: set[EngineThread] = set()  # a supervisor or door serves several steps: counted once
        for name in self.config.steps:
            status = self._step_status(name)
            report = StepReport(name, counts=status.counts, busy_time=status.busy_time, max_time=status.max_time,
                                redelivered=status.redelivered, restarts=status.restarts, total=status.total)
            if (first := self.policy.first_errors.get(name)) is not None:
                report.add_error(first)  # the step's first, of whichever worker: those below may only make it fatal
            for worker in self._workers(name):
                worker.executor.settle()
                if worker.executor.first_error:
                    report.add_error(worker.executor.first_error, fatal=worker.executor.fatal)
            router = self.routers.get(name)
            if router is not None and router.state.first_error:
                report.add_error(router.state.first_error, fatal=router.state.fatal)
            if router is not None and router.state.shards is not None:
                report.shards = list(router.state.shards.sent)
            head = self.routers.get(self.fused.get(name, ""))
            if head is not None:
                report.fused_with = head.step.name
                figures = head.state.tallies.members[self.groups[head.step.name].index(name) - 1]
                if figures.first_error:
                    report.add_error(figures.first_error, fatal=figures.fatal)
            keepers = []
            if router is not None and router.step.nb_process:
                keepers.append(self.supervisor)
            if router is not None and self.options.listen:
                keepers.append(self.door)
            for thread in [*self.threads.get(name, []), router, *keepers]:
                if thread is not None and thread.crash is not None:
                    report.add_error(f"internal error in {thread.name}: {thread.crash!r}", fatal=True)
                    if not isinstance(thread.crash, ConfigError):  # logged as a setting, not an internal error
                        crashed.add(thread)
            reports[name] = report
        if len(crashed) > 1:
            log.critical("%d more threads stopped too (--debug shows why)", len(crashed) - 1)
        stop_reason = self.control.policy.stop_reason or self.limit
        how = None  # how the run ended, beside what stopped it
        if self.abort_requested:
            how = "a second signal stopped the run at once"
        elif self.stuck and stop_reason is None:  # the deadline passed, or an abort (an internal error) left them
            how = "threads left behind after shutdown_timeout" if self.overdue else "threads left behind"
        if how is not None:  # which signal first: GNU timeout sends its TERM twice (to the run, then to its group)
            stop_reason = f"{signal_reason(self.signal)}; {how}" if self.signal else how
        stop_reason = stop_reason_of(reports, self.signal, stop_reason, running)
        policy = self.control.policy
        status = exit_status(reports, self.signal, stop_reason, self.options.allow_failures, policy.unrecorded,
                             policy.not_replayed.failed)
        return RunReport(reports, status, stop_reason=stop_reason, stuck=self.stuck,
                         wall_time=time.monotonic() - self.started, running=running,
                         busy=self.busy() if running else [])

