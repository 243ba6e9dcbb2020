"""A worker process: runs one step's worker threads outside the run's own process.

Its parent starts it (engine.process_keeper): the run's supervisor on the run's host, or
``pipeline-worker`` on a remote one. What it runs (its ``Spec``: the step's configuration and where
its router is) is a file in the parent's private directory. It runs ``nb_thread`` workers with the
very loop of the run's own worker threads, connected to the step's router (a remote one's through
the run's door, with CURVE). Its outputs go back to the router with each input's answer, so a
process that dies mid-message has sent nothing on.

It keeps no heartbeat of its own: its parent watches it from outside (engine.process_keeper) and
reads its busy board (engine.board), so a long C call holding its GIL is no death. It dies with
its parent (``PR_SET_PDEATHSIG`` on Linux; elsewhere a thread watches the parent), and leaves on
SIGTERM or SIGINT (it runs in a session of its own: a terminal's Ctrl+C reaches only the parent).
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import dataclasses
import importlib
import io
import logging
import os
import pickle
import queue
import signal
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NoReturn

import zmq
from setproctitle import setproctitle

from pipeline.auth.curve import secure_client
from pipeline.auth.keys import KeyPair, load_key_pair, load_public_key
from pipeline.config.imports import hidden_file, hidden_folder
from pipeline.config.locks import serve_run
from pipeline.config.model import PipelineConfig, StepConfig
from pipeline.config.options import RunOptions
from pipeline.console.end_of_output import OUTPUT_EXIT_SECONDS, flush_output, tell_run_at_end
from pipeline.console.humanize import failure_place
from pipeline.console.log_lines import EscapingFormatter
from pipeline.engine import sockets
from pipeline.engine.addresses import Addresses
from pipeline.engine.allocator import keep_freed_memory
from pipeline.engine.board import BusyBoard, HaltedSteps
from pipeline.engine.control import ENDED, RunControl
from pipeline.engine.flow import PREFETCH_SECONDS_OUTSIDE
from pipeline.engine.fusion import Chain, tally_of
from pipeline.engine.limits import (
    allow_open_files,
    limit_line,
    out_of_threads,
    out_of_threads_line,
    worker_process_files,
)
from pipeline.engine.outlets import Outlet, ToRouter
from pipeline.engine.rings import Ring, make_rings
from pipeline.engine.shards import ShardSink, read_work
from pipeline.engine.step_threads import WorkerThread
from pipeline.engine.wire import (
    FATAL_RUN,
    NOT_RUN,
    UNSENDABLE,
    Failure,
    Kind,
    Packet,
    Tally,
    failed_frames,
    header_of,
    process_worker_id,
    tally_frames,
)
from pipeline.errors import ConfigError, printable
from pipeline.execution.executor import UNORDERED, Outcome, Outputs, StepExecutor
from pipeline.failures.describe import failure_line, traceback_text
from pipeline.message import Encoded

log = logging.getLogger("pipeline.worker")

#: Exit status of a worker process whose parent is gone.
PARENT_GONE = 3
#: Exit status of a worker process that cannot load its step.
CANNOT_LOAD = 2
#: The exit status of a worker process one of whose threads stopped on an internal error.
INTERNAL_ERROR = 1
#: The exit status of a worker process that ended by itself, its step's code having failed (a remote worker's host
#: tells it by its own exit status: a SLURM job that failed).
STEP_FAILED = 4
#: prctl's option that asks the kernel for a signal when the parent dies (linux/prctl.h).
_PR_SET_PDEATHSIG = 1
#: Seconds between two looks at the parent where the kernel cannot watch it.
_PARENT_POLL_SECONDS = 1.0
#: Seconds a worker process's thread waits, its FINISHED sent, for its router to say it read it (BYE). A process
#: that ended at once could take its last messages with it: libzmq drops what it has not read of a peer that
#: disconnects, and a router whose socket held little (a producer's) had not read them in about one run in 25 of
#: camera events in shards. The router answers at once; the wait ends sooner if the run is gone.
BYE_WAIT_SECONDS = 5.0


@dataclasses.dataclass(frozen=True)
class Spec:
    """What a worker process runs: written by its parent, as the run's supervisor or door gave it."""

    config: PipelineConfig  # the run's configuration, with the one step to run (its class not imported yet)
    step: str
    module: str
    class_name: str
    work: str  # the address of the step's router (a remote worker's: the run's door)
    heartbeat_interval: float  # the run's heartbeats, for a remote worker's parent
    heartbeat_liveness: int
    log_level: int
    members: tuple[str, ...] = ()  # the fused steps it runs after its step, in turn (engine.fusion)
    member_classes: Mapping[str, str] = dataclasses.field(default_factory=dict)  # their class names
    keep_freed_memory: bool = False  # tune malloc as the run's process does (engine.allocator)
    allow_failures: bool = False  # failed messages (on_error=skip) do not fail the run, nor this process's status
    token: bytes = b""  # a remote worker's: its slot's token, which ends its threads' routing ids (wire.SLOT_TOKEN)


@dataclasses.dataclass(frozen=True)
class ClientKeys:
    """A remote worker's CURVE keys: its own pair, and the run's public key."""

    own: KeyPair
    server: KeyPair


class LoadError(Exception):
    """A worker process cannot load its step: one line for the user."""


class RouterPolicy:
    """The failure policy of a worker outside the run's process: each error goes to the step's router, which
    logs it, counts it and writes its dead letter (it holds the message; a fused step's ``member`` > 0 sends
    its message along, engine.fusion)."""

    def __init__(self, thread: ProcessWorkerThread, halted: set[str], member: int = 0) -> None:
        self.thread = thread
        self.halted = halted  # shared by the process's threads; HALT from the run adds to it too
        self.member = member

    def _send(self, failure: Failure) -> None:
        sockets.send(self.thread.ctl, failed_frames(failure))

    def lifecycle_failed(self, step: str, worker: int, what: str, error: BaseException) -> str:
        """An init(), finish() or producer's generator error: the run logs it and fails; its one-line form, as the
        run's."""
        self._send(Failure(UNORDERED, what, failure_line(error), traceback_text(error), self.member))
        return f"{what}: {failure_line(error)}"

    def message_failed(self, step: StepConfig, worker: int, seq: int, error: BaseException,
                       message: Encoded | None, delivered: int = 0, fatal: bool = False) -> None:
        """Send the error to the router, after the answers before it (the router takes the message it answers next;
        it counted the outputs that went on before, in chunks, itself). A fused step's goes at once, with its message
        and what of it went on, and counts with the answer that covers its message (engine.step_state).

        With on_error=stop, or a ``fatal`` failure (FATAL_RUN: the router halts the step and fails it), this
        process's workers start nothing more from now on, as the run's policy makes a step's threads do; the run's
        HALT would come a round trip later.
        """
        if step.on_error == "stop" or fatal:
            self.halted.add(step.name)
        if step.kind == "producer" and message is None:  # a value of a shard that cannot travel: it fails alone
            self._send(Failure(seq, UNSENDABLE, failure_line(error), traceback_text(error), self.member))
            return
        if not self.member:  # a fused step's failure carries its message, and counts with the answer that covers it
            self.thread.outlet.flush()
        self._send(Failure(seq, FATAL_RUN if fatal else "run()", failure_line(error), traceback_text(error),
                           self.member, message if self.member else None, delivered if self.member else 0))

    def not_run(self, step: StepConfig, seq: int, message: Encoded, delivered: int = 0) -> None:
        """The router writes the dead letter of the messages it holds; a fused step's goes to it with its message."""
        if self.member:
            self._send(Failure(seq, NOT_RUN, "", "", self.member, message))

    def halt(self, step: str, reason: str) -> None:
        """This process's workers of ``step`` start no further message (the router stops the run)."""
        self.halted.add(step)


class TalliedToRouter(ToRouter):
    """The outlet of a worker of fused steps: with its answers goes each step's figures so far (a TALLY)."""

    def __init__(self, socket: zmq.Socket, step: StepConfig, ring: Ring | None,
                 tally: Callable[[], list[Tally]]) -> None:
        super().__init__(socket, step, None, ring)
        self.tally = tally

    def flush(self) -> None:
        """Send the figures, then the held answers (the router reads them in this order)."""
        if len(self.result):
            sockets.send(self.socket, tally_frames(self.tally()))
        super().flush()

    def partial(self, seq: int, outputs: Outputs, made: int | None = None) -> None:
        """Send the figures before a chunk too: it went through the fused steps, whose figures count with it."""
        self.flush()
        sockets.send(self.socket, tally_frames(self.tally()))
        super().partial(seq, outputs, made)


class ProcessWorkerThread(WorkerThread):
    """A worker thread in a worker process: it answers its router for every input and reports errors to it;
    with fused steps after its own (engine.fusion), it runs each input through all of them in turn."""

    #: Its last answers and FINISHED cross to another process: the process waits for them to leave.
    linger_ms = 5000
    #: A round trip to the router costs more from another process: a worker asks for more at a time.
    prefetch_seconds = PREFETCH_SECONDS_OUTSIDE

    def __init__(self, context: zmq.Context, control: RunControl, config: PipelineConfig, spec: Spec, index: int,
                 slot: int, board: BusyBoard, halted: HaltedSteps, keys: ClientKeys | None,
                 rings: tuple[Ring, Ring] | None) -> None:
        super().__init__(context, control, config, config.steps[spec.step], Addresses(), index,
                         policy=RouterPolicy(self, halted))
        self.spec = spec
        self.slot = slot
        self.members = [StepExecutor(config.steps[name], index, RouterPolicy(self, halted, member))
                        for member, name in enumerate(spec.members, start=1)]
        for executor in [self.executor, *self.members]:
            executor.mark = board.mark
        self.chain: Chain | None = None
        self.shard_sink: ShardSink | None = None  # a producer's (engine.shards)
        self.halted = halted
        self.keys = keys
        self.ring, self.out_ring = rings if rings is not None else (None, None)
        # The outputs that come back are the last fused step's, for its next steps.
        self.tail = config.steps[spec.members[-1]] if spec.members else self.step

    def failure(self, allow_failures: bool) -> str | None:
        """The first failure of its steps' code that fails the run (``allow_failures``: not a failed message),
        as one line naming the step; None if there was none."""
        for executor in self.chain.executors if self.chain is not None else [self.executor]:
            if executor.fatal or (executor.counts.failed and not allow_failures):
                return f"step {executor.step.name}: {executor.first_error}"
        return None

    @property
    def handles(self) -> None:
        """None: what goes to and from the run's process is real frames."""
        return None

    @property
    def busy_time(self) -> float:
        """Seconds in the code of its step and of the steps fused after it so far: each input's time is the
        group's (counted for the first step alone, a window of three fused steps was three times too long)."""
        return self.executor.busy_time + (self.chain.after_seconds if self.chain is not None else 0.0)

    def make_outlet(self, ctl: zmq.Socket) -> Outlet:
        """Every input's outputs (even none) go back to the router, which sends them on: together with the
        rest of their packet's answers, unless the packet takes longer than its prefetch time."""
        # Its ring back to the router serves once a WORK says that the router mapped it (wire.RINGS_READY).
        if self.members or self.step.kind == "producer":  # a producer's shards tell its longest yield (MAX_MS) too
            outlet: ToRouter = TalliedToRouter(ctl, self.tail, None, self._tally)
            if self.members:
                self.chain = Chain(outlet, [self.executor, *self.members])
        else:
            outlet = ToRouter(ctl, self.tail, None, None)
        if self.step.kind == "producer":
            self.shard_sink = ShardSink(outlet, self.executor, self.chain)
            outlet.for_shard()
        outlet.max_delay = PREFETCH_SECONDS_OUTSIDE
        return outlet

    def _tally(self) -> list[Tally]:
        """The figures of its step and of each fused step after it so far (a TALLY's records)."""
        return tally_of(self.chain.executors if self.chain is not None else [self.executor])

    def open(self, outlet: Outlet) -> None:
        """Take the outlet; a producer's outputs go through its shard's sink, a stager's through the fused
        steps after it first, if any."""
        super().open(outlet)
        sink = self.shard_sink or self.chain
        if sink is not None:
            self.executor.sink = sink

    def run_packet(self, packet: Packet) -> None:
        """Run the step on each message of ``packet``; a producer's are shards, each run to its end (or until
        the run stops it) and then answered."""
        outlet = self.outlet
        if packet.rings_ready and isinstance(outlet, ToRouter) and outlet.ring is None:  # under the outlet's lock
            outlet.ring = self.out_ring
        sink = self.shard_sink
        if sink is None:
            super().run_packet(packet)
            return
        executor = self.executor
        for seq, inband, buffers in packet.messages():
            work = read_work(inband, buffers)
            sink.start(work)
            busy = executor.busy_time
            if executor.mark is not None:  # the shard runs: the process is at work, not stalled
                executor.mark(executor.worker, seq)
            raised = executor.produce(lambda: self.step.name in self.halted, (work.shard, work.count))
            if executor.mark is not None:
                executor.mark(executor.worker, None)
            # FAILED: the shard's generator raised (a value that could not travel is a failure of its own)
            sink.failed(seq, Outcome.FAILED if raised else Outcome.DONE, executor.busy_time - busy)

    def start_component(self) -> bool:
        """Build and init() every step this thread runs, the last fused step first (so that what an init()
        sends finds the steps after it ready); whether all of them may take messages."""
        chain = self.chain
        ready = True
        for number in range(len(self.members), 0, -1):
            executor = self.members[number - 1]
            ready = executor.start(lambda name=executor.step.name: self.config.make_component(name)) and ready
            if chain is not None:
                outputs = chain.flow(number, UNORDERED, executor.sink.take())  # type: ignore[attr-defined]
                if outputs:
                    self.outlet.commit(UNORDERED, outputs)
        return super().start_component() and ready

    def leave(self, ctl: zmq.Socket) -> None:
        """A local worker process's thread waits until its router has read its FINISHED, and so all it sent before
        (BYE). A remote one does not: the run's door reads what it sends at once, and may end before it relays a
        BYE (the worker's keeper would then take the run for gone)."""
        if self.keys is None and not await_bye(ctl, BYE_WAIT_SECONDS):
            log.debug("step %s: no BYE from the run within %.0f s of FINISHED", self.step.name, BYE_WAIT_SECONDS)

    def finish_steps(self) -> None:
        """finish() of this thread's step, then of each fused step after it."""
        super().finish_steps()
        if self.chain is not None:
            self.chain.finish()

    def connect(self, ctl: zmq.Socket) -> None:
        """Connect to the step's router under the routing id that names this process and thread."""
        ctl.identity = process_worker_id(self.slot, self.index, self.spec.token)
        if self.keys is not None:
            secure_client(ctl, self.keys.own, self.keys.server.public)
        ctl.connect(self.spec.work)


def await_bye(ctl: zmq.Socket, timeout: float) -> bool:
    """Whether the router said BYE within ``timeout`` seconds (what else it sends now is owed nothing: dropped)."""
    deadline = time.monotonic() + timeout
    try:
        while (left := deadline - time.monotonic()) > 0:
            if not ctl.poll(left * 1000):
                return False
            if header_of(sockets.recv(ctl)[0])[0] is Kind.BYE:
                return True
    except zmq.ContextTerminated:  # the process is being stopped at once
        pass
    return False


#: Why a worker process cannot load a class of the running script: one started from scratch (its zygote killed, or
#: unanswering) is a fresh interpreter, whose __main__ is not the script.
MAIN_GONE = ("; the class is the running script's, which only a worker process forked from the run's zygote has, and "
             "that zygote is gone or does not answer")


def load_step(spec: Spec, threads: int | None = None) -> PipelineConfig:
    """The spec's configuration with the classes of its step and fused steps imported (and ``threads`` worker
    threads if given)."""
    steps = {}
    for name in (spec.step, *spec.members):
        step = spec.config.steps[name]
        module = spec.module if name == spec.step else step.module
        class_name = spec.class_name if name == spec.step else spec.member_classes[name]
        try:
            cls = getattr(importlib.import_module(module), class_name)
        except KeyboardInterrupt:
            raise
        except BaseException as err:  # an ImportError, an AttributeError, whatever the module raises (sys.exit())
            # The file and line of the failure (issue 26.5), and an installed package hiding the user's own module,
            # as the run's loader says (a remote worker's folder is not the run's).
            hint = hidden_folder(module, err) or hidden_file(module, sys.modules.get(module)) or (
                MAIN_GONE if module == "__main__" else "")
            raise LoadError(f"step {name}: cannot load {module}.{class_name}: {failure_line(err)}"
                            f"{failure_place(err)}{hint}") from None
        steps[name] = dataclasses.replace(step, cls=cls, **({"nb_thread": threads} if threads is not None else {}))
    return dataclasses.replace(spec.config, steps=steps)


def serve(spec: Spec, slot: int, board: BusyBoard, keys: ClientKeys | None, name: str, rings: str = "",
          last_word: Path | None = None) -> int:
    """Run the workers of the spec's step (with shared-memory rings named after ``rings``, "run-pid:run-id", when
    the run wants them); the exit status. Why it cannot load its step, or the first failure of its step's code, also
    goes to ``last_word``, a file its parent reads when it ends (engine.process_keeper), so that the run, or
    pipeline-worker, can say why it left."""
    if spec.keep_freed_memory:
        keep_freed_memory()
    context = zmq.Context()
    context.ipv6 = spec.work.startswith("tcp://[")  # libzmq connects to an IPv6 address only with IPV6 set
    try:
        try:
            config = load_step(spec)
        except LoadError as err:  # it names the config's module and class, and what importing them raised
            print(f"{name}: error: {printable(str(err))}", file=sys.stderr, flush=True)
            _say_last_word(str(err), last_word)
            return CANNOT_LOAD
        control = RunControl(RunOptions())  # this process's own
        halted = HaltedSteps((spec.step, *spec.members), board)
        nb_thread = config.steps[spec.step].nb_thread
        allow_open_files(worker_process_files(nb_thread))
        threads = [ProcessWorkerThread(context, control, config, spec, i, slot, board, halted, keys,
                                       _make_rings(rings, slot, i)) for i in range(nb_thread)]
        try:
            control.flusher.start()
            for thread in threads:
                thread.start()
        except RuntimeError as err:
            if not out_of_threads(err):
                raise
            line = out_of_threads_line()
            print(f"{name}: error: {line}", file=sys.stderr, flush=True)
            _leave(line, last_word)  # the threads started wait for work that cannot come
        crashed = _wait_for(threads, control.events)
        if crashed is not None:
            # A thread stopped on an internal error (logged): the others may wait for work for ever, and the context
            # would wait for their sockets. The process ends now; the run gives what it held to other workers.
            _leave(limit_line(crashed), last_word)
        control.flusher.stopped.set()
        failure = next((line for line in (thread.failure(spec.allow_failures) for thread in threads) if line), None)
        if failure is None:
            return 0
        _say_last_word(failure, last_word)
        return STEP_FAILED
    finally:
        context.term()


def _make_rings(named: str, slot: int, thread: int) -> tuple[Ring, Ring] | None:
    """Thread ``thread``'s rings (to it, from it), made now if the run wants them (``named``: "run-pid:run-id")
    and shared memory has room: its router maps them when it first hands this thread work."""
    if not named:
        return None
    run_pid, run_id = named.split(":", 1)
    return make_rings(int(run_pid), run_id, slot, thread)


def worker_name(command: str, slot: int, step: str) -> str:
    """How a worker process names itself in ps and on stderr: as the command its user ran (pipeline-run
    or pipeline-worker), by its step and slot."""
    return f"{command}: step {step} worker process {slot}"


def _log_as(spec: Spec, slot: int) -> None:
    """Log to stderr as the run does (escaped), naming the step and this process."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(EscapingFormatter(f"%(asctime)s %(levelname)s %(name)s [{spec.step} process {slot}, pid "
                                           f"{os.getpid()}]: %(message)s", "%Y-%m-%d %H:%M:%S"))
    logging.basicConfig(level=spec.log_level, handlers=[handler])


def _wait_for(threads: Sequence[WorkerThread], events: queue.Queue[tuple[str, Any]]) -> BaseException | None:
    """Wait until every thread has ended, or one ended on an internal error (returned: the others are not waited
    for)."""
    ended = 0
    while ended < len(threads):
        kind, thread = events.get()
        if kind == ENDED:
            if thread.crash is not None:
                return thread.crash
            ended += 1
    for thread in threads:
        thread.join()
    return None


def _leave(why: str | None, last_word: Path | None) -> NoReturn:
    """End this process now, its threads and context left as they are (its threads may wait for ever); ``why`` (a
    limit of the machine that it met, in words), if known, goes to its last word, which the run's line on its death
    repeats."""
    if why is not None:
        _say_last_word(why, last_word)
    with contextlib.suppress(OSError):
        sys.stderr.flush()
    os._exit(INTERNAL_ERROR)


def _say_last_word(why: str, last_word: Path | None) -> None:
    """Write ``why`` to the last word, if this process has one (a lone surrogate, of a file's name that is not UTF-8,
    written as repr writes it)."""
    if last_word is not None:
        with contextlib.suppress(OSError):  # out of open files, the file cannot be opened either: the log line said it
            last_word.write_text(why, encoding="utf-8", errors="backslashreplace")


def die_with_parent(parent: int, signum: int = signal.SIGKILL) -> None:
    """Be sent ``signum`` when process ``parent`` ends: by the kernel on Linux, else killed by a thread that
    watches it; leave at once if it has already ended (it may have, before the kernel was asked)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        watched = libc.prctl(_PR_SET_PDEATHSIG, signum, 0, 0, 0) == 0
    except (OSError, AttributeError):
        watched = False
    if os.getppid() != parent:
        os._exit(PARENT_GONE)
    if not watched:
        def watch() -> None:
            while os.getppid() == parent:
                threading.Event().wait(_PARENT_POLL_SECONDS)
            os._exit(PARENT_GONE)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> None:
    """The command line of a worker process, as its parent starts it (engine.process_keeper)."""
    parser = argparse.ArgumentParser(prog="pipeline-worker-process", description=__doc__)
    parser.add_argument("--spec", required=True, help="The file of what to run (the parent's, private).")
    parser.add_argument("--board", required=True, help="The busy board's file.")
    parser.add_argument("--slot", type=int, required=True, help="This process's number in the run.")
    parser.add_argument("--parent", type=int, required=True, help="The process id of the parent (or zygote).")
    parser.add_argument("--run", type=int, default=0, help="The process id of the run (default: the parent).")
    parser.add_argument("--key", default="", help="A remote worker's secret key file.")
    parser.add_argument("--server-key", default="", help="The run's public key file (a remote worker's).")
    parser.add_argument("--rings", default="", help="Make shared-memory rings for the run run-pid:run-id.")
    args = parser.parse_args(argv)
    die_with_parent(args.parent)
    signal.signal(signal.SIGINT, signal.SIG_DFL)  # SIGINT and SIGTERM end it, as they end a C program
    line_by_line()
    # A closed stdout ends the output: the run must stop; one that takes no more, the run must say.
    tell_run_at_end(args.run or args.parent, args.parent, Path(args.spec).parent)
    serve_run(args.run or args.parent)  # the outputs it claimed are this process's to write (config.locks)
    spec: Spec = pickle.loads(Path(args.spec).read_bytes())  # the parent's own file, in its private directory
    name = worker_name("pipeline-worker" if args.key else "pipeline-run", args.slot, spec.step)
    setproctitle(name)  # what ps and top show, instead of python3 -c ...
    _log_as(spec, args.slot)
    try:
        keys = ClientKeys(load_key_pair(args.key, "--key"), load_public_key(args.server_key, "--server-key")) \
            if args.key else None
    except ConfigError as err:
        print(f"{name}: error: {err}", file=sys.stderr, flush=True)
        exit_now(CANNOT_LOAD)
    board = BusyBoard(args.board, spec.config.steps[spec.step].nb_thread)
    last_word = last_word_path(Path(args.spec).parent, args.slot)
    exit_now(serve(spec, args.slot, board, keys, name, args.rings, last_word))


def exit_now(status: int) -> NoReturn:
    """End the worker process with ``status`` once its output is written, without waiting for the threads its step
    left running (they are no daemons, as in a script) and without running atexit hooks (docs/components.md): a
    process started from scratch waited at its interpreter's exit until its run killed it."""
    flush_output(OUTPUT_EXIT_SECONDS)  # a thread of the step's may hold stdout, in a write that nobody reads
    os._exit(status)


def last_word_path(directory: Path, slot: int) -> Path:
    """Where worker process ``slot`` leaves why it could not run (its parent's private directory)."""
    return directory / f"last-word-{slot}"


def line_by_line() -> None:
    """Write stdout a line at a time: the run's and its worker processes' lines share one stdout, and a
    line written in two calls could be split by another process's."""
    if isinstance(sys.stdout, io.TextIOWrapper):
        sys.stdout.reconfigure(line_buffering=True)
