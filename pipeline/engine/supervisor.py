"""The run's supervisor: starts the worker processes of steps with ``nb_process``, watches them and
replaces the dead ones.

One thread of the run, with no socket to its worker processes: it starts them and watches them
from outside (engine.process_keeper: an exit, or a stop longer than ``heartbeat_interval`` x
``heartbeat_liveness``), so their liveness never waits for their GIL. When one dies, it tells the
step's router (LOST, with the messages the process was running, from its busy board), which
delivers again what the process held; it starts a replacement while the step has restarts left
(``max_worker_restarts``, not counting deaths blamed on a message that then failed for good; the
replacement is announced, ADDED, before the loss). A process that holds work without running any of
it for the patience (its threads no longer read their work) is killed as dead. It relays a step's
halt to the busy boards of its processes. It ends when the routers it serves have.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence

import zmq

from pipeline.component import Component
from pipeline.config.model import PipelineConfig
from pipeline.engine import sockets
from pipeline.engine.addresses import Addresses
from pipeline.engine.control import BOUND, EngineThread, RunControl
from pipeline.engine.process_keeper import Death, ProcessKeeper, WorkerProcess
from pipeline.engine.rings import remove_rings, ring_paths, sweep_stale
from pipeline.engine.router import Router
from pipeline.engine.shards import read_mark
from pipeline.engine.specs import spec_for
from pipeline.engine.wire import Loss, added_frames, lost_frames, slot_of
from pipeline.engine.zygote import LEAVE_SECONDS, Zygote
from pipeline.errors import ConfigError
from pipeline.execution.executor import FINISHING
from pipeline.failures.log import ThrottledLog

log = logging.getLogger("pipeline.engine")

#: Longest wait between two looks at the worker processes.
LOOK_SECONDS = 0.1


class Supervisor(EngineThread):
    """Starts, watches and replaces the run's worker processes; ends when the routers it serves have."""

    def __init__(self, context: zmq.Context, control: RunControl, config: PipelineConfig, addresses: Addresses,
                 routers: dict[str, Router], zygote: Zygote | None = None, afresh: str = "") -> None:
        super().__init__("supervisor", control, context)
        self.config = config
        self.addresses = addresses
        self.routers = {name: router for name, router in routers.items() if router.step.nb_process}
        options = control.options
        self.afresh = afresh  # why its worker processes start afresh, not forked from the run's ("": they are forked)
        self.keeper = ProcessKeeper(addresses.ipc_dir, options.heartbeat_interval * options.heartbeat_liveness, zygote)
        self.restarts: Counter[str] = Counter()  # per step: processes started to replace dead ones
        self.roster: tuple[WorkerProcess, ...] = ()  # the live ones, for the monitor's thread
        self.unstarted = 0  # worker processes that could not be started (fork or exec failed)
        self.replaced: set[int] = set()  # the slots of dead worker processes that were replaced
        self._notices: dict[str, zmq.Socket] = {}
        # A poison message kills a process a message, with no bound on replacements (they are forgiven): a few lines
        # of deaths per step in a window, then their count.
        self._deaths = ThrottledLog(log, "step %(key)s: %(count)d more %(kind)s")

    def work(self) -> None:
        self.keeper.prepare()  # a zygote to spawn imports meanwhile
        sweep_stale()
        try:
            self._notices = sockets.notice_senders(self.context, self.addresses, self.routers)
            # Every first process's files before BOUND: one that finds no room (a ConfigError) is the runner's to
            # raise, with no process started and no step run (started, the processes were waited for in vain).
            slots = [(name, self._files(name)) for name, router in self.routers.items()
                     for _ in range(router.step.nb_process)]
            self.control.events.put((BOUND, self))
            for name, slot in slots:
                self._start(name, slot)
            self._loop()
        finally:
            aborted = self.control.aborted.is_set()
            self.keeper.stop_all(0.0 if aborted else self.control.options.shutdown_timeout)
            self.roster = ()  # before their boards are unmapped: busy() reads them
            self.keeper.close(0.0 if aborted else LEAVE_SECONDS)
            remove_rings(os.getpid(), self.addresses.run_id)
            for notice in self._notices.values():
                notice.close()
            self._deaths.close()

    def _loop(self) -> None:
        look = min(self.control.options.heartbeat_interval / 2, LOOK_SECONDS)
        nudged = self.control.keepers_look
        while not self._finished():
            nudged.wait(look)
            nudged.clear()  # before the looks below: a router that finishes meanwhile sets it again
            if self.control.aborted.is_set():
                break
            for death in self.keeper.deaths():
                self._died(death)
            self._watch_stalls()
            halted = set(self.control.policy.halted)
            if self.control.stopping.is_set():  # a producer in worker processes stops, as its thread would
                halted.add(self.config.producer.name)
            for step in halted:
                self.keeper.halt(step)  # a step its processes run (a fused one too): their boards say so
            self.roster = self.keeper.roster()

    def _watch_stalls(self) -> None:
        """Kill a worker process that has held work for heartbeat_liveness beats without running any of it
        (its threads no longer read their work); one inside a long run() runs a message, and is no stall. Kill one
        that broke the protocol too: its router has given what it held to others already."""
        now = time.monotonic()
        patience = self.keeper.patience
        for process in tuple(self.keeper.processes.values()):
            why = self.routers[process.step].state.broken.pop(process.slot, None)
            if why is not None and not process.killed_for:
                log.error("step %s: worker process %d (pid %s) broke the protocol: %s: killing it", process.step,
                          process.slot, process.pid, why)
                self.keeper.kill(process, f"it broke the protocol: {why}")
            if process.idle_since is None or process.killed_for:
                continue
            held = self.routers[process.step].state.stall(process.slot, now - process.idle_since, patience)
            if held is not None:
                log.error("step %s: worker process %d (pid %s) has held work for %.1f s without running any of it: "
                          "killing it", process.step, process.slot, process.pid, held)
                self.keeper.kill(process, f"held work for {held:.1f} s without running any of it")

    def busy(self) -> list[str]:
        """Its worker processes in a step's code now, named (for busy(), and for an abandoned run: they are killed
        next). Read from any thread: the roster is a tuple, a busy board plain words, a pool's workers taken at once."""
        described = []
        for process in self.roster:
            router = self.routers[process.step]
            try:
                running = process.running()
            except ValueError:  # its board is unmapped: the process is gone
                continue
            described += busy_lines(f"step {process.step} worker process {process.slot} (pid {process.pid})",
                                    process.slot, running, router)
        return described

    def _finished(self) -> bool:
        return all(not router.is_alive() or router.state.phase == "finished" for router in self.routers.values())

    def restarts_used(self, step: str) -> int:
        """The replacements that count against max_worker_restarts: not those of processes that died of a message
        that then failed for good (poison, after max_redeliveries deaths: it is in the dead letters)."""
        return self.restarts[step] - len(self.replaced & self.routers[step].state.forgiven)

    def _files(self, step: str) -> int:
        """A new slot for a worker process of ``step``, its files made (a ConfigError if they cannot be)."""
        slot = self.control.new_slot()
        members = tuple(member.name for member in self.routers[step].members)
        self.keeper.files(slot, spec_for(self.config, step, self.addresses.outside(step), self.control, members,
                                         self.afresh))
        return slot

    def _start(self, step: str, slot: int) -> None:
        """Start the worker process of ``slot`` for ``step``, its files made (it makes its shared-memory rings where
        it can)."""
        run_pid, run_id = os.getpid(), self.addresses.run_id
        rings = [path for thread in range(self.config.steps[step].nb_thread)
                 for path in ring_paths(run_pid, run_id, slot, thread)]
        # An abort ends the wait for the zygote's answer: it may take seconds (a spawned zygote still importing), and
        # the run's end waited for it (the supervisor outlived run() raising KeyboardInterrupt).
        self.keeper.start(slot, [f"--rings={run_pid}:{run_id}"], leftovers=rings, waiting=self.control.raise_if_aborted)
        self.roster = self.keeper.roster()

    def _died(self, death: Death) -> None:
        """Tell the step's router (it knows whether the process had finished); replace a failed process
        while the step has restarts left, announcing the replacement first."""
        process = death.process
        remove_rings(os.getpid(), self.addresses.run_id, process.slot)  # the router keeps what it mapped
        router = self.routers[process.step]
        if router.state.phase == "finished":
            return
        if not death.failed and not router.state.slot_told_to_finish(process.slot):
            # os._exit(0) in a step's code, mid-stream: a death as any other (it was taken for a clean end, never
            # replaced, and one such message left the step with no workers)
            death = dataclasses.replace(death, failed=True, reason=f"{death.reason}, before it was told to finish")
        unstarted = process.child is None
        # A new instance of a one_worker step would start its output again (a writer's file, emptied by init()).
        single = next((step.name for step in (router.step, *router.members) if step.cls.one_worker), None)
        replace = (death.failed and not unstarted and not self.control.stopping.is_set()
                   and not router.state.finishing and single is None
                   and self.restarts_used(process.step) < self.control.options.max_worker_restarts)
        no_room = ""
        if replace:
            try:
                slot = self._files(process.step)
            except ConfigError as err:  # a TMPDIR full now: its line says so (it was an internal error of this thread)
                replace, no_room = False, f"; none replaces it: {err}"
        if unstarted:
            # Said once per run: a process limit or a lack of memory fails every start alike, and a line per
            # process (and per replacement, which would fail too) buried the rest (issue 24.7).
            self.unstarted += 1
            if self.unstarted == 1:
                log.error("step %s: cannot start a worker process: %s (no replacement is tried, and no later such "
                          "failure is logged)", process.step, process.error)
        elif death.failed:
            if replace:
                then = "; starting another"
            elif single is not None:
                then = f"; none replaces it: step {single} runs in one worker (its class says one_worker)"
            else:
                then = no_room
            # A total that a finish() sends dies with its process, and the messages behind it are not run again.
            keeping = [step.name for step in (router.step, *router.members) if step.cls.finish is not Component.finish]
            if keeping and not router.state.slot_told_to_finish(process.slot):
                then += (f"; the finish() of {', '.join(keeping)} never ran in it: what it kept across the messages it "
                         "had run is lost (configuration.md, worker processes)")
            self._deaths.say(logging.ERROR, process.step, "worker process deaths",
                             "step %s: worker process %d (pid %s) died: %s%s", process.step, process.slot, process.pid,
                             death.reason, then)
        notices = self._notices[process.step]
        if replace:
            self.restarts[process.step] += 1
            self.replaced.add(process.slot)
            self._start(process.step, slot)
            sockets.send_while(notices, added_frames(slot, process.threads), router.listening)
        sockets.send_while(notices, lost_frames(Loss(process.slot, death.reason, death.running, not death.failed)),
                           router.listening)


def busy_lines(name: str, slot: int, running: Sequence[int], router: Router) -> list[str]:
    """What worker process ``slot`` (called ``name``) of ``router``'s step is doing, its threads ``running`` those
    marks: a line for each busy thread, or one for the process still in init()."""
    if slot not in {slot_of(worker) for worker in tuple(router.state.pool.workers)}:
        return [f"{name} in init()"]  # its threads join the step once every init() returned
    return [f"{name} {'in finish()' if seq == FINISHING else _doing(seq, router)}" for seq in running]


def _doing(mark: int, router: Router) -> str:
    """What a busy board's ``mark`` says a thread of ``router``'s step runs: a message, or a shard's (engine.shards:
    the mark also says which message of the shard, named where steps are fused after the producer)."""
    if router.state.shards is None:
        return f"in run() on message {mark}"
    shard, position = read_mark(mark)
    return f"in run() of shard {shard}, on its message {position}" if router.members else f"in run() of shard {shard}"
