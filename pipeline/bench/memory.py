"""W5: peak memory under backpressure, each run in a child process so that its peak is its own.

``python -m pipeline.bench.memory DESIGN COUNT DELAY QUEUE_LIMIT [--gui]`` runs one child: COUNT
arrays of 1 MiB from a fast producer through a pass-through stager to a consumer that sleeps DELAY
seconds per message, every queue limited to QUEUE_LIMIT, on DESIGN ``engine`` (threads) or
``queue`` (plain threads and ``queue.Queue(QUEUE_LIMIT)``); the engine's run publishes its status
to the monitor only with ``--gui``. It prints one JSON line: the peak resident set size in bytes,
or the problem found in the run's output.
"""

from __future__ import annotations

import json
import resource
import subprocess
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

from pipeline.bench import baselines
from pipeline.bench.arguments import positive, seconds
from pipeline.bench.arrays import Arrays
from pipeline.bench.designs import ENGINE, QUEUE
from pipeline.bench.interpreter import python
from pipeline.bench.plan import Plan
from pipeline.bench.report import Target, Workload
from pipeline.bench.steps import PassThrough, Tally
from pipeline.bench.workloads import ARRAYS, Broken, Progress, chain, check_tally, measure, new_tag, run_engine, step
from pipeline.config.loader import load_config
from pipeline.console.arguments import ArgumentParser
from pipeline.engine.flow import message_bound

MIB = 1024 * 1024

#: The child's design argument per row of the report.
DESIGNS = {ENGINE: "engine", QUEUE: "queue"}


def document(count: int, delay: float, queue_limit: int, tag: str = "") -> dict[str, Any]:
    """The W5 config: arrays -> pass-through -> slow consumer, every queue limited to ``queue_limit``."""
    return chain(step("P", "Arrays", ARRAYS), step("S", "PassThrough", queue_limit=queue_limit),
                 step("C", "Tally", queue_limit=queue_limit),
                 Arrays={"count": count, "mib": 1}, Tally={"tag": tag, "delay": delay})


def peak_rss() -> int:
    """This process's peak resident set size in bytes (VmHWM; ru_maxrss where /proc is missing)."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_child(design: str, count: int, delay: float, queue_limit: int, gui: bool = False) -> dict[str, Any]:
    """One run in this process; its peak RSS, or the problem found in its output."""
    tag = new_tag()
    try:
        if design == "engine":
            run_engine(document(count, delay, queue_limit, tag), "threads", count, gui)
        else:
            sink = Tally(tag=tag, delay=delay)
            sink.init()
            baselines.queue_threads(Arrays(count=count).run(), [PassThrough().run], sink.run, maxsize=queue_limit)
            sink.finish()
        check_tally(tag, count, float(count * (count - 1) // 2))
    except (Broken, baselines.BaselineError) as err:
        return {"problem": str(err)}
    return {"peak_rss": peak_rss()}


def spawn(design: str, count: int, delay: float, queue_limit: int, gui: bool = False) -> int:
    """The peak RSS in bytes of a child process running one W5 run."""
    args = python("-m", "pipeline.bench.memory", design, str(count), str(delay), str(queue_limit),
                  *(["--gui"] if gui else []))
    try:
        child = subprocess.run(args, capture_output=True, text=True, timeout=300, check=False)
    except subprocess.TimeoutExpired:
        raise Broken(f"the {design} child process did not end within 300 s") from None
    lines = child.stdout.strip().splitlines()
    if child.returncode != 0 or not lines:
        raise Broken(f"the {design} child process failed (exit status {child.returncode}): {child.stderr[-500:]}")
    result = json.loads(lines[-1])
    if "problem" in result:
        raise Broken(result["problem"])
    return int(result["peak_rss"])


def memory(plan: Plan, progress: Progress) -> Workload:
    """W5: peak RSS of a run minus that of a one-message run, against the engine's memory bound."""
    count, delay, limit = plan.memory_count, plan.memory_delay, plan.memory_queue_limit
    bound = message_bound(load_config(document(count, delay, limit)))
    work = Workload("W5", f"memory under backpressure: {count} x 1 MiB arrays, a fast producer, a consumer "
                          f"taking {delay * 1000:g} ms per message, queue_limit {limit}")
    case = work.case("peak RSS above a 1-message run", "MiB", higher_is_better=False)
    for r in range(plan.repeat):
        progress(f"W5 memory, repeat {r + 1}/{plan.repeat}")
        for design, name in DESIGNS.items():
            run = partial(spawn, name, delay=delay, queue_limit=limit, gui=plan.gui)
            measure(case, design, lambda f=run: (f(count) - f(1)) / MIB, progress)
    work.notes += [
        f"the engine's bound for this config: at most {bound} messages alive (docs/architecture.md, "
        f"\"Backpressure and the memory bound\") x 1 MiB = {bound} MiB",
        f"queue.Queue({limit}) threads hold at most {2 * limit + 3} arrays: two full queues and one per thread",
        "peak RSS: the peak resident memory (VmHWM) of a child process per run, minus that of a 1-message run",
    ]
    figures = case.row(ENGINE).figures
    work.targets = [Target(f"engine threads worst run <= the bound, {bound} MiB", figures and [max(figures)],
                           bound, at_least=False)]
    return work


def main(argv: Sequence[str] | None = None) -> None:
    """The child: run once and print the result as one JSON line."""
    cli = ArgumentParser(prog="python -m pipeline.bench.memory",
                         description="One run of W5 (a slow consumer) in this process: its peak memory, as JSON.")
    cli.add_argument("design", choices=sorted(DESIGNS.values()), help="the design to run")
    cli.add_argument("count", type=positive, help="messages")
    cli.add_argument("delay", type=seconds, help="seconds the consumer takes per message")
    cli.add_argument("queue_limit", type=positive, help="the stage's queue_limit")
    cli.add_argument("--gui", action="store_true", help="publish to pipeline-gui")
    args = cli.parse_args(argv)
    print(json.dumps(run_child(args.design, args.count, args.delay, args.queue_limit, args.gui)))


if __name__ == "__main__":
    main()
