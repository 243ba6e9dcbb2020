"""W7: an analysis of real shape, camera events (pipeline.bench.events), against the plain loop a user
would write instead.

The same step objects run in a plain Python loop (the baseline every user has: ``for event in
source.run(): consumer.run(stage.run(event))``, steps made and init()ed in the timing), in the engine
(the stage in worker processes, with the source sharded into them too, in threads, in sequential mode),
in a ``multiprocessing.Pool``
(``imap`` in chunks, as ``Pool.map`` sizes them) and in mpipe when it is installed. Each design's
figure is events per second; the comparison is each design against the loop of the same repeat.
The work is one step of about 1 ms per event, or the same work as a chain of three steps; short
runs include the start of the worker processes, which long runs amortise.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any

from pipeline.bench import baselines, events
from pipeline.bench.designs import LOOP, MPIPE, POOL, PROCESSES_1, PROCESSES_2, SEQUENTIAL, SHARDS_2, THREADS_2
from pipeline.bench.plan import Plan
from pipeline.bench.report import Case, Target, Workload
from pipeline.bench.steps import RESULTS
from pipeline.bench.workloads import Broken, Progress, measure, new_tag, run_engine, step

#: The seed of every run's events (the same events in every design).
SEED = 7
#: The designs of W7 and, for the engine's, how the chain's stages run (step keys), in which mode, and how
#: the source runs (its step keys).
ENGINE_DESIGNS: dict[str, tuple[dict[str, Any], str, dict[str, Any]]] = {
    PROCESSES_2: ({"nb_process": 2}, "threads", {}),
    SHARDS_2: ({"nb_process": 2}, "threads", {"nb_process": 2}),
    PROCESSES_1: ({"nb_process": 1}, "threads", {}),
    THREADS_2: ({"nb_thread": 2}, "threads", {}),
    SEQUENTIAL: ({}, "sequential", {}),
}
DESIGNS = (LOOP, PROCESSES_2, SHARDS_2, PROCESSES_1, THREADS_2, SEQUENTIAL, POOL, MPIPE)
#: Workers of the pool and of mpipe, as many as the engine's worker processes.
WORKERS = 2
#: Targets (issue 23): the engine with its stages in 2 worker processes against the plain loop.
TARGETS = {("one step", "long"): 1.6, ("three steps", "long"): 1.5, ("one step", "short"): 1.2}


def document(names: tuple[str, ...], count: int, tag: str, keys: dict[str, Any],
             source_keys: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config: WaveformSource (with step ``source_keys``) -> the stages ``names`` (each with step ``keys``) ->
    EventSummary."""
    stages = [f"S{i}" for i in range(len(names))]
    chain = [*stages, "C"]
    stagers = [step(stage, cls, events.__name__, next_steps=chain[i + 1], **keys)
               for i, (stage, cls) in enumerate(zip(stages, names, strict=True))]
    return {"version": 1,
            "Pipeline": {"producer_conf": step("P", "WaveformSource", events.__name__, next_steps=chain[0],
                                               **(source_keys or {})),
                         "stagers_conf": stagers,
                         "consumer_conf": step("C", "EventSummary", events.__name__)},
            "WaveformSource": {"n_events": count, "seed": SEED}, "EventSummary": {"tag": tag}}


def summary(tag: str) -> tuple[int, int, int]:
    """The run's (count, id sum, size sum), added over its consumer's workers."""
    seen = RESULTS.pop(tag, [])
    return tuple(sum(values) for values in zip(*seen, strict=True)) if seen else (0, 0, 0)  # type: ignore[return-value]


def loop(names: tuple[str, ...], count: int, tag: str) -> float:
    """The plain loop over the same step objects, made and init()ed within the timing."""
    gc.collect()
    start = time.perf_counter()
    source = events.WaveformSource(n_events=count, seed=SEED)
    stages = [getattr(events, name)() for name in names]
    consumer = events.EventSummary(tag=tag)
    for each in (source, *stages, consumer):
        each.init()
    for event in source.run():
        for stage in stages:
            event = stage.run(event)
        consumer.run(event)
    for each in (source, *stages, consumer):
        each.finish()
    return time.perf_counter() - start


def _around(count: int, tag: str, design: Callable[[Iterator[Any], Callable[[Any], Any]], float]) -> float:
    """The seconds of ``design`` (given the source's events and the consumer's run), between the source and
    consumer made and init()ed before it and the consumer's finish() after."""
    source = events.WaveformSource(n_events=count, seed=SEED)
    consumer = events.EventSummary(tag=tag)
    source.init()
    consumer.init()
    gc.collect()
    seconds = design(source.run(), consumer.run)
    consumer.finish()
    return seconds


def pool(names: tuple[str, ...], count: int, tag: str) -> float:
    """A Pool of WORKERS processes running the stages in turn on each event, the loop around it."""
    return _around(count, tag, lambda made, sink: baselines.process_pool(
        made, partial(events.analyse, names), WORKERS, sink, baselines.pool_chunksize(count, WORKERS)))


def mpipe(names: tuple[str, ...], count: int, tag: str) -> float:
    """mpipe's OrderedStage with WORKERS processes, each running the stages in turn."""
    return _around(count, tag, lambda made, sink: baselines.mpipe_ordered(
        made, [partial(events.analyse, names)] * WORKERS, sink))


BASELINE_RUNS: dict[str, Callable[[tuple[str, ...], int, str], float]] = {LOOP: loop, POOL: pool, MPIPE: mpipe}


def analysis(plan: Plan, progress: Progress) -> Workload:
    """W7: camera events through one step, or the same work in three, in events per second."""
    long, short = plan.analysis_counts
    work = Workload("W7", f"camera events: {long:,} and {short:,} events of 148 KB, about 1 ms of numpy and "
                          "Python each, producer -> analysis -> consumer")
    work.notes += [
        "one step: the whole analysis in one stage; three steps: the same work as three stages in a chain",
        f"long: {long:,} events; short: {short:,} events, where starting the worker processes weighs more",
        "plain loop: the same step objects called in one thread, made and init()ed within the timing",
        f"ratio: a design's events per second over the plain loop's in the same repeat; the gain needs free "
        f"cores (this machine has 2 for {WORKERS} worker processes and the run's own process)",
    ]
    if baselines.mpipe_installed():
        work.notes.append("mpipe: one step only; the three steps in its processes in turn would be the "
                          "multiprocessing Pool.imap row's design again")
    expected: dict[int, tuple[int, int, int]] = {}

    def timed(design: str, names: tuple[str, ...], count: int) -> float:
        tag = new_tag()
        if design in ENGINE_DESIGNS:
            keys, mode, source_keys = ENGINE_DESIGNS[design]
            seconds = run_engine(document(names, count, tag, keys, source_keys), mode, count, plan.gui)
        else:
            seconds = BASELINE_RUNS[design](names, count, tag)
        got = summary(tag)
        if expected.setdefault(count, got) != got or got[0] != count:
            raise Broken(f"summary {got}, expected {expected[count]} (count {count})")
        return count / seconds

    cases: dict[tuple[str, str], Case] = {}
    for r in range(plan.repeat):
        progress(f"W7 camera events, repeat {r + 1}/{plan.repeat}")
        for label, names in events.ANALYSES.items():
            for length, count in (("long", long), ("short", short)):
                case = cases.setdefault((label, length), work.case(f"{label}, {length}", "events/s",
                                                                   higher_is_better=True, base=PROCESSES_2))
                order = DESIGNS[r % len(DESIGNS):] + DESIGNS[:r % len(DESIGNS)]  # no design always first
                for design in order:
                    if design == MPIPE and label != "one step":
                        continue  # mpipe's stages are one process each: a chain of them is another design
                    measure(case, design, partial(timed, design, names, count), progress)
    for (label, length), goal in TARGETS.items():
        case = cases[(label, length)]
        work.targets.append(Target(f"{label}, {length}: {PROCESSES_2} >= {goal}x the plain loop",
                                   case.ratios(LOOP, base=PROCESSES_2), goal))
    return work
