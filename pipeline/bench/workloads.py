"""W1-W4: workloads run in this process on the engine (threads and sequential) and on the baselines.

Repeats are interleaved (every design once, then every design again) so that a noisy spell on
the machine spreads over the designs instead of landing on one. Every run's output is checked
(counts and checksums) before its time is kept.
"""

from __future__ import annotations

import gc
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from functools import partial
from typing import Any

import numpy as np

from algorithms.basic import Counter, PassThrough
from algorithms.bench import RESULTS, Arrays, Double, Latency, Stamped, Tally, TinyDicts, Work

from ..pipeline import Pipeline
from ..report import RunReport
from . import baselines
from .plan import Plan
from .report import BROKEN, ENGINE, OK, SKIPPED, Case, Target, Workload, number

Progress = Callable[[str], None]
Baseline = Callable[[Iterable[Any], Sequence[Callable[[Any], Any]], Callable[[Any], None]], float]

BENCH, BASIC = "algorithms.bench", "algorithms.basic"
SEQUENTIAL = "engine sequential"
#: The engine's rows and the Pipeline.mode each runs in.
MODES = {ENGINE: "threads", SEQUENTIAL: "sequential"}
QUEUE, ZMQ, MPIPE = "queue.Queue threads", "zmq PUSH/PULL", "mpipe OrderedStage"

#: The baselines by design name: each runs producer -> stage -> consumer and returns seconds.
BASELINES: dict[str, Baseline] = {
    QUEUE: baselines.queue_threads,
    ZMQ: lambda source, stages, sink: baselines.zmq_push_pull(source, stages[0], sink),
    MPIPE: lambda source, stages, sink: baselines.mpipe_ordered(source, stages[0], sink),
}

class Broken(Exception):
    """A run whose report or output does not check: its time must not count."""


def step(name: str, cls: str, module: str = BENCH, **extra: Any) -> dict[str, Any]:
    """One step entry of a config (``chain`` adds where it sends to)."""
    return {"name": name, "class": cls, "module": module, **extra}


def chain(producer: dict[str, Any], stager: dict[str, Any], consumer: dict[str, Any], **sections: Any) -> dict:
    """A config of producer P -> stager S -> consumer C (the entries' names must be P, S and C)."""
    section = {"producer_conf": {**producer, "next_steps": "S"}, "stagers_conf": [{**stager, "next_steps": "C"}],
               "consumer_conf": consumer}
    return {"version": 1, "Pipeline": section, **sections}


def new_tag() -> str:
    """A fresh RESULTS key."""
    return uuid.uuid4().hex


def run_engine(document: dict[str, Any], mode: str, expected: int) -> float:
    """Run ``document`` in ``mode``; the seconds from run() to its return, once the report checks."""
    pipeline = Pipeline.from_config(document, {"Pipeline": {"mode": mode}})
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


def run_baseline(design: str, source: Iterable[Any], stages: Sequence[Callable[[Any], Any]], sink: Any) -> float:
    """Run a baseline with a Tally or Latency ``sink`` component: init, run, finish around it."""
    sink.init()
    gc.collect()
    seconds = BASELINES[design](source, stages, sink.run)
    sink.finish()
    return seconds


def measure(case: Case, design: str, run: Callable[[], float], progress: Progress) -> float | None:
    """Add one sample of ``run()`` to ``design``'s row of ``case``; None if the row is (now) broken."""
    values = measure_each([case], design, lambda: (run(),), progress)
    return None if values is None else values[0]


def measure_each(cases: Sequence[Case], design: str, run: Callable[[], Sequence[float]],
                 progress: Progress) -> Sequence[float] | None:
    """Add the values of one ``run()`` to ``design``'s rows of ``cases``, one each; None if broken."""
    rows = [case.row(design) for case in cases]
    if any(row.status != OK for row in rows):
        return None
    try:
        values = run()
    except (Broken, baselines.BaselineError) as err:
        for row in rows:
            row.fail(str(err))
        progress(f"  {design}: {BROKEN}: {err}")
        return None
    for case, row, value in zip(cases, rows, values, strict=True):
        row.add(value)
        progress(f"  {case.label}, {design}: {number(value)} {case.unit}")
    return values


def designs(with_mpipe: bool = True) -> list[str]:
    """The engine modes and the baselines, mpipe only where it is installed."""
    names = [ENGINE, SEQUENTIAL, QUEUE, ZMQ]
    return [*names, MPIPE] if with_mpipe and baselines.mpipe_installed() else names


def skip_mpipe(case: Case) -> None:
    """Show mpipe's row as skipped when mpipe is not installed."""
    if not baselines.mpipe_installed():
        row = case.row(MPIPE)
        row.status, row.note = SKIPPED, "not installed (pip install mpipe)"


def warm_up() -> None:
    """One small run of each in-process design, so that imports and first-run costs are not timed."""
    tiny(Plan(repeat=1, tiny_count=200), lambda _: None)


# -- W1 ---------------------------------------------------------------------------------------

def tiny_config(count: int, tag: str = "") -> dict[str, Any]:
    """The W1 config: TinyDicts -> PassThrough -> Tally."""
    return chain(step("P", "TinyDicts"), step("S", "PassThrough", BASIC), step("C", "Tally"),
                 TinyDicts={"count": count}, Tally={"tag": tag})


def tiny(plan: Plan, progress: Progress) -> Workload:
    """W1: small dicts through producer -> stager -> consumer, in messages per second."""
    n = plan.tiny_count
    work = Workload("W1", f"tiny: {n:,} dicts of ~100 B, producer -> stager (pass) -> consumer")
    case = work.case("throughput", "msg/s", higher_is_better=True)

    def engine(mode: str) -> float:
        tag = new_tag()
        seconds = run_engine(tiny_config(n, tag), mode, n)
        check_tally(tag, n, n * (n - 1) // 2)
        return n / seconds

    def baseline(design: str) -> float:
        tag = new_tag()
        seconds = run_baseline(design, TinyDicts(count=n).run(), [PassThrough().run], Tally(tag=tag))
        check_tally(tag, n, n * (n - 1) // 2)
        return n / seconds

    for r in range(plan.repeat):
        progress(f"W1 tiny, repeat {r + 1}/{plan.repeat}")
        for design in designs():
            run = partial(engine, MODES[design]) if design in MODES else partial(baseline, design)
            measure(case, design, run, progress)
    skip_mpipe(case)
    work.targets = [
        Target("engine threads >= 50,000 msg/s", case.row(ENGINE).median, 50_000),
        Target(f"engine threads >= 1.0x {ZMQ}", case.ratio(ZMQ), 1.0),
    ]
    return work


# -- W2 ---------------------------------------------------------------------------------------

def large(plan: Plan, progress: Progress) -> Workload:
    """W2: float64 arrays, the stager computes arr * 2; in MiB per second."""
    sizes = ", ".join(f"{count:,} x {mib} MiB" for mib, count in plan.large_counts)
    work = Workload("W2", f"large: {sizes} float64 arrays, stager computes arr * 2")

    def engine(mode: str, mib: int, n: int) -> float:
        tag = new_tag()
        doc = chain(step("P", "Arrays"), step("S", "Double"), step("C", "Tally"),
                    Arrays={"count": n, "mib": mib}, Tally={"tag": tag})
        seconds = run_engine(doc, mode, n)
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
            for design in designs(with_mpipe=mib == plan.mpipe_large_mib):
                run = partial(engine, MODES[design]) if design in MODES else partial(baseline, design)
                measure(case, design, partial(run, mib, n), progress)
    first = work.cases[0]
    skip_mpipe(first)
    if baselines.mpipe_installed() and len(work.cases) > 1:
        work.notes.append(f"mpipe pickles arrays in-band through a pipe to its worker process: it runs the "
                          f"{plan.mpipe_large_mib} MiB case only")
    work.targets = [
        Target(f"{first.label}: engine threads >= 3,000 MiB/s", first.row(ENGINE).median, 3_000),
        Target(f"{first.label}: engine threads >= 0.6x {QUEUE}", first.ratio(QUEUE), 0.6),
    ]
    return work


# -- W3 ---------------------------------------------------------------------------------------

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


def parallel(plan: Plan, progress: Progress) -> Workload:
    """W3: messages of GIL-releasing work with 1, 2 and 4 workers; speedup over 1 worker."""
    n, seconds = plan.parallel_count, plan.parallel_seconds
    size = matrix_size_for(seconds)
    work = Workload("W3", f"parallel: {n} messages x {seconds * 1000:g} ms of GIL-releasing work, "
                          f"workers {', '.join(map(str, plan.parallel_workers))}")
    work.notes += [
        f"matmul: one {size} x {size} float64 product (about {seconds * 1000:g} ms with one BLAS thread, "
        f"calibrated at start); the machine's cores bound its speedup",
        "sequential mode has no workers: it has no row here",
    ]
    traits = {"seconds": seconds, "matrix_size": size}

    def engine(kind: str, workers: int) -> float:
        tag = new_tag()
        doc = chain(step("P", "Counter", BASIC), step("S", "Work", nb_thread=workers), step("C", "Tally"),
                    Counter={"count": n}, Work={"kind": kind, **traits}, Tally={"tag": tag})
        elapsed = run_engine(doc, "threads", n)
        check_tally(tag, n, n * (n - 1) // 2)
        return elapsed

    def queue(kind: str, workers: int) -> float:
        tag = new_tag()
        stages = [Work(kind=kind, **traits) for _ in range(workers)]
        for stage in stages:
            stage.init()
        elapsed = run_baseline(QUEUE, Counter(count=n).run(), [s.run for s in stages], Tally(tag=tag))
        check_tally(tag, n, n * (n - 1) // 2)
        return elapsed

    runners = {ENGINE: engine, QUEUE: queue}
    for r in range(plan.repeat):
        progress(f"W3 parallel, repeat {r + 1}/{plan.repeat}")
        for kind in ("sleep", "matmul"):
            for design, runner in runners.items():
                one = measure(work.case(f"{kind}, 1 worker", "s", higher_is_better=False), design,
                              lambda k=kind, f=runner: f(k, 1), progress)
                for workers in plan.parallel_workers[1:]:
                    case = work.case(f"{kind}, {workers} workers", "x speedup", higher_is_better=True)
                    measure(case, design, lambda k=kind, w=workers, f=runner, t=one: _speedup(t, f(k, w)), progress)
    for workers, goal in ((2, 1.9), (4, 3.8)):
        if workers in plan.parallel_workers:
            case = work.case(f"sleep, {workers} workers", "x speedup", higher_is_better=True)
            work.targets.append(Target(f"sleep, {workers} workers: engine speedup >= {goal}x",
                                       case.row(ENGINE).median, goal))
    return work


def _speedup(one: float | None, many: float) -> float:
    if one is None:
        raise Broken("the 1-worker run is broken: no speedup")
    return one / many


# -- W4 ---------------------------------------------------------------------------------------

def latency(plan: Plan, progress: Progress) -> Workload:
    """W4: messages at a low fixed rate; p50 and p99 from the producer's stamp to the consumer."""
    n, rate = plan.latency_count, plan.latency_rate
    work = Workload("W4", f"latency: {n:,} messages at {rate:,.0f}/s, producer -> stager (pass) -> consumer")
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
            doc = chain(step("P", "Stamped"), step("S", "PassThrough", BASIC), step("C", "Latency"),
                        Stamped={"count": n, "rate": rate}, Latency={"tag": tag})
            run_engine(doc, MODES[design], n)
        else:
            run_baseline(design, Stamped(count=n, rate=rate).run(), [PassThrough().run], Latency(tag=tag))
        return [float(p) * 1e6 for p in np.percentile(latencies(tag), [50, 99])]

    for r in range(plan.repeat):
        progress(f"W4 latency, repeat {r + 1}/{plan.repeat}")
        for design in designs(with_mpipe=False):
            measure_each([p50, p99], design, partial(run, design), progress)
    work.targets = [
        Target("engine threads p50 <= 300 us", p50.row(ENGINE).median, 300, at_least=False),
        Target("engine threads p99 <= 2,000 us", p99.row(ENGINE).median, 2_000, at_least=False),
    ]
    return work

