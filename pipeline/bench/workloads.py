"""W1-W4: workloads run in this process on the engine (threads and sequential) and on the baselines.

Repeats are interleaved (every design once, then every design again) so that a noisy spell on
the machine spreads over the designs instead of landing on one. Every run's output is checked
(counts and checksums) before its time is kept.
"""

from __future__ import annotations

import contextlib
import gc
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import numpy as np

from pipeline.bench import baselines
from pipeline.bench.arrays import Arrays, Double, MatMul
from pipeline.bench.designs import (
    ENGINE,
    MPIPE,
    POOL,
    PROCESSES,
    QUEUE,
    REMOTE,
    SEQUENTIAL,
    ZMQ,
    ZMQ_PLAIN,
    ZMQ_THROTTLED,
)
from pipeline.bench.loopback import LoopbackWorker, remote_worker
from pipeline.bench.plan import Plan
from pipeline.bench.report import BROKEN, OK, SKIPPED, Case, Row, Target, Workload, number
from pipeline.bench.steps import RESULTS, Latency, PassThrough, Stamped, Tally, TinyDicts, Work, busy
from pipeline.component import Component
from pipeline.errors import ConfigError
from pipeline.execution.report import RunReport
from pipeline.pipeline import Pipeline

Progress = Callable[[str], None]
Sink = Callable[[Any], None]
Baseline = Callable[[Iterable[Any], Sequence[Callable[[Any], Any]], Sink], float]

#: The modules of the benchmark's steps, as a config names them.
STEPS, ARRAYS = TinyDicts.__module__, Arrays.__module__
#: The engine's rows and the Pipeline.mode each runs in.
MODES = {ENGINE: "threads", SEQUENTIAL: "sequential"}

#: The baselines by design name: each runs producer -> stage -> consumer and returns seconds.
BASELINES: dict[str, Baseline] = {
    QUEUE: baselines.queue_threads,
    ZMQ: lambda source, stages, sink: baselines.zmq_push_pull(source, stages[0], sink),
    ZMQ_PLAIN: lambda source, stages, sink: baselines.zmq_push_pull(source, stages[0], sink, copy=True),
    ZMQ_THROTTLED: lambda source, stages, sink: baselines.zmq_push_pull(source, stages[0], sink, hwm=64),
    MPIPE: baselines.mpipe_ordered,
}

#: Step keys of engine work under way (process workers): a workload's config may set one; while
#: the engine refuses it, the rows that need it are skipped with the reason, not broken.
UPCOMING_KEYS = ("nb_process",)


class Broken(Exception):
    """A run whose report or output does not check: its time must not count."""


def step(name: str, cls: str, module: str = STEPS, **extra: Any) -> dict[str, Any]:
    """One step entry of a config (``chain`` adds where it sends to)."""
    return {"name": name, "class": cls, "module": module, **extra}


def as_step(name: str, component: Component, **keys: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """A step entry of ``component``'s class with the step ``keys``, and the config section that
    gives the step ``component``'s options: the engine runs what a baseline calls directly."""
    cls = type(component)
    options = {option: getattr(component, option) for option in cls.class_own_traits(config=True)}
    return step(name, cls.__name__, cls.__module__, **keys), {cls.__name__: options}


def chain(producer: dict[str, Any], stager: dict[str, Any], consumer: dict[str, Any], **sections: Any) -> dict:
    """A config of producer P -> stager S -> consumer C (the entries' names must be P, S and C)."""
    section = {"producer_conf": {**producer, "next_steps": "S"}, "stagers_conf": [{**stager, "next_steps": "C"}],
               "consumer_conf": consumer}
    return {"version": 1, "Pipeline": section, **sections}


def new_tag() -> str:
    """A fresh RESULTS key."""
    return uuid.uuid4().hex


def run_engine(document: dict[str, Any], mode: str, expected: int, gui: bool = False,
               worker: LoopbackWorker | None = None) -> float:
    """Run ``document`` in ``mode`` (its stage served by the remote ``worker``, which it lets in and which stops it
    if it fails); the seconds from run() to its return, once the report checks.

    The run publishes its status to the monitor only with ``gui`` (``pipeline-bench --gui``), so
    that a benchmark does not fill pipeline-gui with its runs nor share the CPU with it; it never
    draws its progress display, which would mix with the benchmark's own progress lines.
    """
    # keep_freed_memory: the bench owns its process, as pipeline-run does (the Python API default is off).
    options: dict[str, Any] = {"mode": mode, "progress": False, "keep_freed_memory": True,
                               **(worker.settings if worker else {})}
    if not gui:
        options["gui"] = False
    try:
        pipeline = Pipeline.from_config(document, {"Pipeline": options})
    except ConfigError as err:
        upcoming = [key for key in UPCOMING_KEYS if key in str(err)]
        if not upcoming:
            raise
        raise baselines.Unavailable(f"the engine refuses the step key {upcoming[0]} (not built yet)") from err
    if worker is not None:
        worker.watch(pipeline)
    gc.collect()
    start = time.perf_counter()
    report = pipeline.run()
    seconds = time.perf_counter() - start
    check_report(report, expected)
    return seconds


def check_report(report: RunReport, expected: int) -> None:
    """The run succeeded and its consumer C processed ``expected`` messages."""
    if report.exit_status != 0:
        errors = [f"{s.name}: {s.first_error}" for s in report.steps.values() if s.first_error]
        raise Broken(f"exit status {report.exit_status}" + "".join(f"; {e}" for e in errors))
    if report["C"].processed != expected:
        raise Broken(f"consumer processed {report['C'].processed} messages, expected {expected}")


def check_tally(tag: str, count: int, total: float) -> None:
    """The Tally of run ``tag`` saw ``count`` messages adding up to ``total``."""
    seen = RESULTS.pop(tag, [])
    got = (sum(c for c, _ in seen), sum(t for _, t in seen))
    if got != (count, total):
        raise Broken(f"consumer saw {got[0]} messages adding up to {got[1]}, expected {count} and {total}")


def with_sink(sink: Any, run: Callable[[Sink], float]) -> float:
    """``run(consume)`` with a Tally or Latency ``sink`` component's run() as ``consume``: init,
    run, finish around it; the seconds ``run`` returns."""
    sink.init()
    gc.collect()
    seconds = run(sink.run)
    sink.finish()
    return seconds


def run_baseline(design: str, source: Iterable[Any], stages: Sequence[Callable[[Any], Any]], sink: Any) -> float:
    """Run a baseline with a Tally or Latency ``sink`` component."""
    return with_sink(sink, lambda consume: BASELINES[design](source, stages, consume))


def measure(case: Case, design: str, run: Callable[[], float], progress: Progress) -> float | None:
    """Add one sample of ``run()`` to ``design``'s row of ``case``; None if the row is (now) broken
    or skipped."""
    values = measure_each([case], design, lambda: (run(),), progress)
    return None if values is None else values[0]


def measure_each(cases: Sequence[Case], design: str, run: Callable[[], Sequence[float]],
                 progress: Progress) -> Sequence[float] | None:
    """Add the values of one ``run()`` to ``design``'s rows of ``cases``, one each; None if broken
    or skipped (a design that cannot run here: the reason is printed once)."""
    rows = [case.row(design) for case in cases]
    if any(row.status != OK for row in rows):
        return None
    try:
        values = run()
    except baselines.Unavailable as err:
        for row in rows:
            row.skip(str(err))
        progress(f"  {design}: {SKIPPED}: {err}")
        return None
    except (Broken, baselines.BaselineError) as err:
        for row in rows:
            row.fail(str(err))
        progress(f"  {design}: {BROKEN}: {err}")
        return None
    for case, row, value in zip(cases, rows, values, strict=True):
        row.add(value)
        progress(f"  {case.label}, {design}: {number(value)} {case.unit}")
    return values


def warm_up() -> None:
    """One small run of each in-process design, so that imports and first-run costs are not timed."""
    tiny(Plan(repeat=1, tiny_count=200), lambda _: None)


# -- W1 ---------------------------------------------------------------------------------------

#: W1's designs: the engine (its stage in a thread, in one worker process, in a remote worker on
#: loopback), a thread and a process baseline, and raw ZeroMQ (throttled too, as a reference).
TINY_DESIGNS = (ENGINE, SEQUENTIAL, PROCESSES, REMOTE, QUEUE, ZMQ, ZMQ_PLAIN, ZMQ_THROTTLED, MPIPE)
#: The stage's step keys for each engine design (a remote worker's stage has no worker of the run's).
STAGE_KEYS = {ENGINE: {}, SEQUENTIAL: {}, PROCESSES: {"nb_process": 1}, REMOTE: {"nb_thread": 0}}
ENGINE_MODES = {**MODES, PROCESSES: "threads", REMOTE: "threads"}


def tiny_config(count: int, tag: str = "", stage: dict[str, Any] | None = None) -> dict[str, Any]:
    """The W1 config: TinyDicts -> PassThrough (with the ``stage`` step keys) -> Tally."""
    return chain(step("P", "TinyDicts"), step("S", "PassThrough", **(stage or {})), step("C", "Tally"),
                 TinyDicts={"count": count}, Tally={"tag": tag})


def tiny(plan: Plan, progress: Progress) -> Workload:
    """W1: small dicts through producer -> stager -> consumer, in messages per second."""
    n = plan.tiny_count
    work = Workload("W1", f"tiny messages: {n:,} dicts of ~100 B, producer -> stager (pass) -> consumer")
    case = work.case("throughput", "msg/s", higher_is_better=True)

    def engine(design: str) -> float:
        tag = new_tag()
        with remote_worker("S") if design == REMOTE else contextlib.nullcontext() as worker:
            seconds = run_engine(tiny_config(n, tag, STAGE_KEYS[design]), ENGINE_MODES[design], n, plan.gui,
                                 worker)
        check_tally(tag, n, n * (n - 1) // 2)
        return n / seconds

    def baseline(design: str) -> float:
        tag = new_tag()
        seconds = run_baseline(design, TinyDicts(count=n).run(), [PassThrough().run], Tally(tag=tag))
        check_tally(tag, n, n * (n - 1) // 2)
        return n / seconds

    for r in range(plan.repeat):
        progress(f"W1 tiny, repeat {r + 1}/{plan.repeat}")
        for design in TINY_DESIGNS:
            run = partial(engine, design) if design in STAGE_KEYS else partial(baseline, design)
            measure(case, design, run, progress)
    work.targets = [
        Target("engine threads >= 50,000 msg/s", case.row(ENGINE).figures, 50_000),
        Target(f"engine threads >= 1.0x {fastest_raw(case)} (the faster raw way here)",
               case.ratios(fastest_raw(case)), 1.0),
    ]
    work.targets.append(Target(f"{PROCESSES} >= 1.0x {MPIPE}", case.ratios(MPIPE, base=PROCESSES), 1.0,
                               missing=case.unmeasured(MPIPE, PROCESSES)))
    return work


def fastest_raw(case: Case) -> str:
    """Of the two raw ZeroMQ baselines, the one with the higher median in ``case`` (the honest baseline)."""
    medians = {design: case.row(design).median for design in (ZMQ, ZMQ_PLAIN)}
    return max(medians, key=lambda design: medians[design] or 0.0)


# -- W2 ---------------------------------------------------------------------------------------

#: W2's targets against plain threads, by array size in MiB.
LARGE_GOALS = {1: 0.6, 16: 0.9}


def large(plan: Plan, progress: Progress) -> Workload:
    """W2: float64 arrays, the stager computes arr * 2; in MiB per second."""
    sizes = ", ".join(f"{count:,} x {mib} MiB" for mib, count in plan.large_counts)
    work = Workload("W2", f"large arrays: {sizes} float64 arrays, the stager computes arr * 2")

    def engine(design: str, mib: int, n: int) -> float:
        tag = new_tag()
        doc = chain(step("P", "Arrays", ARRAYS), step("S", "Double", ARRAYS, **STAGE_KEYS[design]), step("C", "Tally"),
                    Arrays={"count": n, "mib": mib}, Tally={"tag": tag})
        seconds = run_engine(doc, ENGINE_MODES[design], n, plan.gui)
        check_tally(tag, n, float(n * (n - 1)))
        return n * mib / seconds

    def baseline(design: str, mib: int, n: int) -> float:
        tag = new_tag()
        seconds = run_baseline(design, Arrays(count=n, mib=mib).run(), [Double().run], Tally(tag=tag))
        check_tally(tag, n, float(n * (n - 1)))
        return n * mib / seconds

    for r in range(plan.repeat):
        progress(f"W2 large, repeat {r + 1}/{plan.repeat}")
        for mib, n in plan.large_counts:
            case = work.case(f"{mib} MiB arrays", "MiB/s", higher_is_better=True)
            designs = [ENGINE, SEQUENTIAL, PROCESSES, QUEUE, ZMQ, ZMQ_PLAIN,
                       *([MPIPE] if mib == plan.mpipe_large_mib else [])]
            for design in designs:
                run = partial(engine, design) if design in STAGE_KEYS else partial(baseline, design)
                measure(case, design, partial(run, mib, n), progress)
    if any(row.design == MPIPE and row.status == OK for case in work.cases for row in case.rows):
        work.notes.append(f"mpipe pickles arrays in-band through a pipe to its worker process: it runs the "
                          f"{plan.mpipe_large_mib} MiB case only")
    work.notes.append(f"{ZMQ} queues up to its default high-water mark, 1,000 messages per socket: its memory "
                      "is not held to a bound as the engine's is")
    first = work.cases[0]
    work.targets = [Target(f"{first.label}: engine threads >= 3,000 MiB/s", first.row(ENGINE).figures, 3_000),
                    Target(f"{first.label}: {PROCESSES} >= 3,000 MiB/s (ezmsg moves large arrays between its "
                           "processes through shared memory)", first.row(PROCESSES).figures, 3_000)]
    for mib, _ in plan.large_counts:
        if mib in LARGE_GOALS:
            case = work.case(f"{mib} MiB arrays", "MiB/s", higher_is_better=True)
            work.targets.append(Target(f"{case.label}: engine threads >= {LARGE_GOALS[mib]}x {QUEUE}",
                                       case.ratios(QUEUE), LARGE_GOALS[mib]))
    return work


# -- W3 ---------------------------------------------------------------------------------------

#: The designs measured for each kind of W3 work: the process-based ones only for the work that
#: holds the GIL, the only kind where processes can do what threads cannot.
PARALLEL_DESIGNS = {
    "sleep": (ENGINE, QUEUE),
    "matmul": (ENGINE, QUEUE),
    "python": (ENGINE, PROCESSES, QUEUE, POOL, MPIPE),
}
#: The step key that sets the stage's number of workers, for each engine row of W3.
WORKERS_KEY = {ENGINE: "nb_thread", PROCESSES: "nb_process"}


def matrix_size_for(seconds: float) -> int:
    """The size n whose n x n float64 product takes about ``seconds`` on this thread."""
    n = 128
    for _ in range(4):
        a = np.ones((n, n))
        times = []
        for _ in range(5):
            start = time.perf_counter()
            a @ a
            times.append(time.perf_counter() - start)
        n = max(16, round(n * (seconds / min(times)) ** (1 / 3)))
    return n


def loops_for(seconds: float) -> int:
    """The rounds of ``busy`` that take about ``seconds`` on this thread."""
    loops = 10_000
    for _ in range(3):
        times = []
        for _ in range(5):
            start = time.perf_counter()
            busy(None, loops)
            times.append(time.perf_counter() - start)
        loops = max(1, round(loops * seconds / min(times)))
    return loops


def parallel(plan: Plan, progress: Progress) -> Workload:
    """W3: messages of ~5 ms of work with 1, 2 and 4 workers; each design's speedup over its 1 worker."""
    n, seconds = plan.parallel_count, plan.parallel_seconds
    size, loops = matrix_size_for(seconds), loops_for(seconds)
    ms = f"{seconds * 1000:g} ms"
    work = Workload("W3", f"parallel stage: {n} messages x about {ms} of work, with "
                          f"{', '.join(map(str, plan.parallel_workers))} workers")
    work.notes += [
        f"sleep: time.sleep({seconds:g}), which releases the GIL",
        f"matmul: one {size} x {size} float64 product (about {ms} with one BLAS thread, calibrated at start), "
        "which releases the GIL; the machine's cores bound its speedup",
        f"python: {loops:,} rounds of pure-Python arithmetic (about {ms}, calibrated at start), which holds the "
        "GIL: threads cannot run it in parallel, processes can",
        "speedup: a design's time with 1 worker divided by its time with N workers",
        "engine sequential runs every step in one thread, without workers: it has no row here",
    ]
    stages: dict[str, Callable[[], Component]] = {
        "sleep": lambda: Work(kind="sleep", seconds=seconds),
        "matmul": lambda: MatMul(matrix_size=size),
        "python": lambda: Work(kind="python", loops=loops),
    }

    def engine(design: str, kind: str, workers: int) -> float:
        tag = new_tag()
        stager, section = as_step("S", stages[kind](), **{WORKERS_KEY[design]: workers})
        doc = chain(step("P", "TinyDicts"), stager, step("C", "Tally"),
                    TinyDicts={"count": n}, Tally={"tag": tag}, **section)
        elapsed = run_engine(doc, "threads", n, plan.gui)
        check_tally(tag, n, n * (n - 1) // 2)
        return elapsed

    def baseline(design: str, kind: str, workers: int) -> float:
        tag = new_tag()
        source, sink = TinyDicts(count=n).run(), Tally(tag=tag)
        if design == POOL:  # a picklable function, which a spawned pool process imports
            chunksize = baselines.pool_chunksize(n, workers)
            elapsed = with_sink(sink, lambda consume: baselines.process_pool(
                source, partial(busy, loops=loops), workers, consume, chunksize))
        else:
            components = [stages[kind]() for _ in range(workers)]
            for component in components:
                component.init()
            elapsed = run_baseline(design, source, [c.run for c in components], sink)
        check_tally(tag, n, n * (n - 1) // 2)
        return elapsed

    for r in range(plan.repeat):
        progress(f"W3 parallel, repeat {r + 1}/{plan.repeat}")
        for kind, designs in PARALLEL_DESIGNS.items():
            for design in designs:
                run = partial(engine if design in WORKERS_KEY else baseline, design, kind)
                base = work.case(f"{kind}, 1 worker", "s", higher_is_better=False)
                one = measure(base, design, partial(run, 1), progress)
                for workers in plan.parallel_workers[1:]:
                    case = work.case(f"{kind}, {workers} workers", "x speedup", higher_is_better=True)
                    if one is None:
                        _without_base(case.row(design), base.row(design))
                    else:
                        measure(case, design, lambda w=workers, f=run, t=one: t / f(w), progress)
    for workers, goal in ((2, 1.9), (4, 3.8)):
        if workers in plan.parallel_workers:
            case = work.case(f"sleep, {workers} workers", "x speedup", higher_is_better=True)
            work.targets.append(Target(f"sleep, {workers} workers: engine threads speedup >= {goal}x",
                                       case.row(ENGINE).figures, goal))
    if 2 in plan.parallel_workers:
        case = work.case("python, 2 workers", "x speedup", higher_is_better=True)
        work.targets.append(Target(f"python, 2 workers: {PROCESSES} speedup >= 1.8x", case.row(PROCESSES).figures,
                                   1.8))
    return work


def _without_base(row: Row, base: Row) -> None:
    """A speedup row whose 1-worker run has no figure: skipped for the same reason, or broken."""
    if row.status != OK:
        return
    if base.status == SKIPPED:
        row.skip(base.note)
    else:
        row.fail("the 1-worker run failed: no speedup")


# -- W4 ---------------------------------------------------------------------------------------

def latency(plan: Plan, progress: Progress) -> Workload:
    """W4: messages at a low fixed rate; p50 and p99 from the producer's stamp to the consumer."""
    n, rate = plan.latency_count, plan.latency_rate
    work = Workload("W4", f"latency: {n:,} messages at {rate:,.0f}/s, producer -> stager (pass) -> consumer, "
                          "from the producer's stamp to the consumer")
    p50 = work.case("p50", "us", higher_is_better=False)
    p99 = work.case("p99", "us", higher_is_better=False)

    def latencies(tag: str) -> list[float]:
        seen = [x for part in RESULTS.pop(tag, []) for x in part]
        if len(seen) != n:
            raise Broken(f"consumer saw {len(seen)} messages, expected {n}")
        return seen

    def run(design: str) -> list[float]:
        tag = new_tag()
        if design in MODES:
            doc = chain(step("P", "Stamped"), step("S", "PassThrough"), step("C", "Latency"),
                        Stamped={"count": n, "rate": rate}, Latency={"tag": tag})
            run_engine(doc, MODES[design], n, plan.gui)
        else:
            run_baseline(design, Stamped(count=n, rate=rate).run(), [PassThrough().run], Latency(tag=tag))
        return [float(p) * 1e6 for p in np.percentile(latencies(tag), [50, 99])]

    for r in range(plan.repeat):
        progress(f"W4 latency, repeat {r + 1}/{plan.repeat}")
        for design in (ENGINE, SEQUENTIAL, QUEUE, ZMQ, ZMQ_PLAIN):
            measure_each([p50, p99], design, partial(run, design), progress)
    work.targets = [
        Target("engine threads p50 <= 200 us", p50.row(ENGINE).figures, 200, at_least=False),
        Target("engine threads p99 <= 1,000 us", p99.row(ENGINE).figures, 1_000, at_least=False),
    ]
    return work
