"""Which consecutive steps run fused: in the same worker processes, one after the other for each message.

A chain of steps that each run in worker processes would otherwise send every message across a
process boundary and through a router at each step; fused (Flink chains operators of the same
parallelism into one task the same way), a message crosses once: the first step's router hands it
to a worker process, whose thread runs it through every step of the group in turn and returns the
last step's outputs. Each step keeps its own instance per worker thread, its own counts, errors,
dead letters and monitor row; exactly once holds as for one step: a worker process that dies has
sent nothing on, and its message goes through the whole group again in another.

Steps A -> B are fused when both run in worker processes with the same ``nb_process`` and
``nb_thread``, A sends to B alone, B receives from A alone, and neither is ``ordered``. Never when
remote workers may join (``Pipeline.listen``: they join one step by its name), nor with
``Pipeline.fuse`` off. A may be the producer, in shards (engine.shards): each shard's messages then go
through the steps after it in the process that reads them, and an event read there never leaves it
before the last fused step is done with it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from time import perf_counter
from typing import TYPE_CHECKING

from pipeline.config.model import PipelineConfig, StepConfig
from pipeline.engine.wire import Tally
from pipeline.execution.executor import FINISHING, UNORDERED, Discard, Outcome, Outputs, StepExecutor

if TYPE_CHECKING:
    from pipeline.engine.outlets import ToRouter


def fusable(config: PipelineConfig, first: StepConfig, second: StepConfig) -> bool:
    """Whether ``second`` may run in the worker processes of ``first``, right after it."""
    return (first.kind != "consumer" and second.kind != "producer" and first.nb_process > 0
            and (second.nb_process, second.nb_thread) == (first.nb_process, first.nb_thread)
            and first.next_steps == (second.name,) and config.upstream(second.name) == [first.name]
            and not first.ordered and not second.ordered)


def fused_groups(config: PipelineConfig, enabled: bool = True) -> dict[str, tuple[str, ...]]:
    """The groups of fused steps: each group's first step, and the names of all its steps in order (only
    groups of two or more)."""
    if not enabled:
        return {}
    groups: dict[str, tuple[str, ...]] = {}
    inner: set[str] = set()
    for step in config.topological_order():
        if step.name in inner:
            continue
        members = [step.name]
        while len(config.steps[members[-1]].next_steps) == 1:
            following = config.steps[config.steps[members[-1]].next_steps[0]]
            if not fusable(config, config.steps[members[-1]], following):
                break
            members.append(following.name)
        if len(members) > 1:
            groups[step.name] = tuple(members)
            inner.update(members[1:])
    return groups


def fused_after(groups: Mapping[str, tuple[str, ...]]) -> dict[str, str]:
    """Each step of ``groups`` (fused_groups) that runs after another of its group, and its group's first step."""
    return {name: head for head, members in groups.items() for name in members[1:]}


class Gather(Discard):
    """The sink of a fused step in a worker process: its outputs wait for the next fused step (``copies``: they are
    copied, not pickled), or the last one's for the router."""

    def __init__(self, copies: bool) -> None:
        super().__init__()
        self.copies = self.adopts = copies  # a fused step's outputs go through the steps after it at once (Chain.flow)
        self.outputs: Outputs = []

    def commit(self, seq: int, outputs: Outputs, seconds: float = 0.0) -> None:
        """Keep the outputs for the next fused step."""
        self.outputs += outputs

    def partial(self, seq: int, outputs: Outputs) -> None:
        """A chunk of a call that goes on: kept too (the chunk goes on with what the call returns)."""
        self.outputs += outputs

    def take(self) -> Outputs:
        """The outputs gathered since the last take."""
        outputs, self.outputs = self.outputs, []
        return outputs


class Chain:
    """The sink of a group's first step in a worker process (a producer's: behind its ShardSink): each of its
    outputs goes through the fused steps after it, in turn, and only what the last one returns goes to the router,
    as the answer of the input it came from (one answer per input, as for a step alone).

    It shares the outlet's lock: while the first step's code runs, the run's Flusher may send what waits.
    A chunk of the first step's outputs goes through the fused steps at once, and what the last one makes of
    it goes to the router as a chunk that stands for the first step's outputs: those are what an input sent
    again after its worker process died skips, and what a dead letter says went on.
    """

    answers_router = True
    copies = True  # the first step's outputs go to the second, in this thread
    adopts = True  # each of them through every fused step before the first step's code runs again (flow)

    def __init__(self, outlet: ToRouter, executors: list[StepExecutor]) -> None:
        self.outlet = outlet
        self.lock = outlet.lock
        self.executors = executors  # the group's, the first step's included
        #: Seconds the fused steps ran on what the first step's code returned (a chunk of its outputs runs through
        #: them while its code goes on: in the first step's own time).
        self.after_seconds = 0.0
        for executor in executors[1:]:
            executor.sink = Gather(copies=executor is not executors[-1])

    @property
    def oldest(self) -> float:
        """When the oldest unsent answer was committed."""
        return self.outlet.oldest

    def commit(self, seq: int, outputs: Outputs, seconds: float = 0.0) -> None:
        """Run the first step's outputs for input ``seq`` through the fused steps; answer with the last's."""
        start = perf_counter()
        flowed = self.flow(0, seq, outputs)
        self.after_seconds += perf_counter() - start
        self.outlet.commit(seq, flowed, seconds)

    def partial(self, seq: int, outputs: Outputs) -> None:
        """A chunk of the first step's outputs for input ``seq``, whose code goes on: through the fused steps
        now, and what comes out to the router as a chunk standing for them (even none: the router counts them)."""
        flowed = self.flow(0, seq, outputs)
        first = self.executors[0]
        if first.mark is not None and seq != UNORDERED:  # the fused steps' calls marked the board idle
            first.mark(first.worker, seq)
        self.outlet.partial(seq, flowed, len(outputs))

    def flow(self, step: int, seq: int, outputs: Outputs) -> Outputs:
        """What ``outputs`` of the group's step number ``step`` become through the steps after it: each output goes
        through all of them before the next one starts (depth first, as in the sequential mode), so that a step's
        code runs again only once the steps after it are done with what it returned (message.adopt_message)."""
        if step + 1 == len(self.executors):
            return outputs
        self.executors[step].counts.emitted += len(outputs)
        executor = self.executors[step + 1]
        sink: Gather = executor.sink  # type: ignore[assignment]
        flowed: Outputs = []
        for message, _ in outputs:
            executor.run(((seq, message, None),))
            flowed += self.flow(step + 1, seq, sink.take())
        return flowed

    def failed(self, seq: int, outcome: Outcome = Outcome.FAILED, seconds: float = 0.0) -> None:
        """Input ``seq`` failed at the first step (or was not run): its answer has no outputs."""
        self.outlet.failed(seq, outcome, seconds)

    def flush_if_due(self) -> None:
        """Send the answers that have waited long enough."""
        self.outlet.flush_if_due()

    def produced(self, seconds: float) -> None:
        """Never called: a producer's shards come through their ShardSink (engine.shards), which hands them here."""

    def finish(self) -> None:
        """Each fused step's finish(), in turn after the first's: what it sends goes through the steps after it."""
        first = self.executors[0]
        for number, executor in enumerate(self.executors[1:], start=1):
            executor.finish()
            outputs = executor.sink.take()  # type: ignore[attr-defined]
            if outputs:
                if first.mark is not None:
                    first.mark(first.worker, FINISHING)
                self.outlet.commit(UNORDERED, self.flow(number, UNORDERED, outputs))
                if first.mark is not None:
                    first.mark(first.worker, None)


def tally_of(executors: Sequence[StepExecutor]) -> list[Tally]:
    """The figures of each of ``executors`` so far, as a TALLY's records."""
    return [(e.counts.received, e.counts.processed, e.counts.failed, e.counts.emitted, e.busy_time, e.max_time)
            for e in executors]
