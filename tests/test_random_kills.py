"""Random DAGs whose worker processes are killed at random while messages are in flight give the sequential
runner's outputs, exactly once (issue 24): among them ordered steps at their limit of held-back results, and steps
whose run() holds the GIL in a C call, in worker processes and in the run's own process.

The producer stops half-way (tests/engine_steps.Source's hold) while the first messages go through the graph; the
test then SIGKILLs worker processes of the run at random moments, then lets the producer go on. A process step is
stateless (pass, filter, expand, route: a killed process's init() and finish() would be run again by its
replacement), so every output must come out once, as in sequential mode; thread steps may also sum and announce.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from pipeline import Pipeline
from pipeline.config import load_config
from pipeline.engine.flow import held_back_limit
from tests.engine_helpers import DAG_RUN_SECONDS, chain, end_or_stop, step
from tests.engine_steps import COLLECTED, HELD, RESUME

# The tests of this file take more than 10 s in all: `pytest -m "not slow"` leaves them out.
pytestmark = pytest.mark.slow

#: What a step in worker processes may do (no state across messages: see the module docstring).
STATELESS = ["pass", "filter", "expand", "route"]
#: Per-message sleeps, cycled by value: "slow" makes every fourth message late, so that an ordered step's
#: workers finish later ones first and reach its limit of held-back results.
DELAYS = {"none": [], "even": [0.001], "slow": [0.03, 0.0, 0.0, 0.0]}
#: Seconds of a GIL-holding C call, cycled by value.
GILS = {"none": [], "some": [0.0, 0.0, 0.01], "long": [0.05, 0.0, 0.0, 0.0, 0.0]}
#: Kills: each a pause (seconds) after the producer stopped half-way, then which live worker process.
KILLS = st.lists(st.tuples(st.sampled_from([0.0, 0.02, 0.05, 0.1]), st.integers(0, 7)), min_size=1, max_size=3)


@st.composite
def dags(draw: st.DrawFn) -> dict[str, Any]:
    """A random DAG of 1 to 3 stagers (edges only forward), at least one in worker processes."""
    n = draw(st.integers(1, 3))
    names = [f"S{i}" for i in range(n)]
    targets: dict[str, list[str]] = {}
    for i, name in enumerate(names):
        later = [*names[i + 1:], "C"]
        targets[name] = draw(st.lists(st.sampled_from(later), min_size=1, max_size=2, unique=True))
    reached = {names[0]}
    producer = [names[0]]
    for name in names:
        if name not in reached:
            parent = draw(st.sampled_from(["P", *sorted(r for r in reached if r in names and r < name)]))
            (producer if parent == "P" else targets[parent]).append(name)
        reached.update(targets[name])
    processes = [draw(st.sampled_from([0, 1, 2])) for _ in names]
    if not any(processes):
        processes[draw(st.integers(0, n - 1))] = 2
    stagers = []
    for name, nb_process in zip(names, processes, strict=True):
        behaviour = draw(st.sampled_from(STATELESS if nb_process else [*STATELESS, "sum"]))
        single = behaviour == "sum"
        stagers.append(stage(name, targets[name], nb_process, behaviour, ordered=draw(st.booleans()),
                             queue_limit=draw(st.sampled_from([1, 2, 3, 8])),
                             threads=1 if single else draw(st.integers(1, 2)),
                             delays=draw(st.sampled_from(sorted(DELAYS))), gil=draw(st.sampled_from(sorted(GILS))),
                             modulo=draw(st.integers(2, 4))))
    return document(producer, stagers, count=draw(st.integers(4, 40)))


def stage(name: str, targets: list[str], nb_process: int, behaviour: str, ordered: bool, queue_limit: int,
          threads: int = 1, delays: str = "none", gil: str = "none", modulo: int = 3) -> dict[str, Any]:
    """One stager of a random DAG."""
    extra = {"nb_process": nb_process} if nb_process else {}
    return step(name, "Behave", targets, nb_thread=threads, ordered=ordered, queue_limit=queue_limit, **extra,
                config={"behaviour": behaviour, "delays": DELAYS[delays], "gil": GILS[gil], "modulo": modulo})


def document(producer: list[str], stagers: list[dict[str, Any]], count: int) -> dict[str, Any]:
    """P (Source, holding half-way) -> the stagers -> C (Collect)."""
    return chain(step("P", "Source", producer), stagers, step("C", "Collect", queue_limit=4),
                 Source={"count": count, "hold_after": count // 2})


#: Always tried first: an ordered step in 2 processes at its limit of held-back results (Q 2: 4 inputs), every
#: fourth message slow, behind it a step of the run's process holding the GIL, then one in a process that does too.
AT_THE_LIMIT = document(["O"], [
    stage("O", ["G"], 2, "pass", ordered=True, queue_limit=2, delays="slow"),
    stage("G", ["H"], 0, "expand", ordered=False, queue_limit=3, gil="some"),
    stage("H", ["C"], 1, "filter", ordered=True, queue_limit=8, gil="long"),
], count=40)


def worker_processes() -> list[int]:
    """The worker processes this test's runs started (descendants of this process, by their title)."""
    parents: dict[int, int] = {}
    titles: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            titles[int(entry.name)] = (entry / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError, ValueError):
            continue  # it ended meanwhile
    ours = {os.getpid()}
    changed = True
    while changed:
        grown = ours | {pid for pid, parent in parents.items() if parent in ours}
        changed, ours = grown != ours, grown
    return sorted(pid for pid in ours if "worker process" in titles.get(pid, ""))


def collect(doc: dict[str, Any], mode: str, kills: list[tuple[float, int]]) -> tuple[Counter, Any, int]:
    """What C received (a multiset), the report, and how many processes were killed, for one run in ``mode``."""
    tag = os.urandom(8).hex()
    overrides = {"Pipeline": {"mode": mode, "gui": False, "max_worker_restarts": 100, "max_redeliveries": 100},
                 "Source": {"hold": tag}, "Collect": {"tag": tag}}
    pipeline = Pipeline.from_config(doc, overrides)
    reports: list[Any] = []
    thread = threading.Thread(target=lambda: reports.append(pipeline.run()), name="killed-run")
    thread.start()
    killed: list[int] = []
    try:
        if not HELD[tag].wait(DAG_RUN_SECONDS):
            raise AssertionError("the producer did not reach its hold")
        for pause, which in kills if mode == "threads" else []:
            threading.Event().wait(pause)  # the chaos's own schedule: kill at random moments
            live = worker_processes()
            if live:
                victim = live[which % len(live)]
                try:
                    os.kill(victim, signal.SIGKILL)
                except ProcessLookupError:  # it ended between the listing and the kill: none was killed
                    continue
                killed.append(victim)
        if killed:
            wait_until_seen(pipeline, killed)
    finally:
        RESUME[tag].set()
        thread.join(DAG_RUN_SECONDS)  # even when the test failed on its way: no run left behind
    end_or_stop(pipeline, thread, f" after killing {killed}")
    HELD.pop(tag), RESUME.pop(tag)
    return Counter(COLLECTED.pop(tag + "C", [])), reports[0], len(killed)


def wait_until_seen(pipeline: Pipeline, killed: list[int]) -> None:
    """Return once the run has seen every process in ``killed`` die (they left its status), before the producer
    goes on: a process killed just before its step is told to finish, its death seen only after, would be taken
    for one that died in its finish() (rightly: that finish() never ran), and the run would fail."""
    deadline = time.monotonic() + DAG_RUN_SECONDS
    while time.monotonic() < deadline:
        runner = pipeline._runner  # the run in progress: what the monitor reads
        if runner is None:
            return
        listed = {process.pid for step in runner.snapshot().steps for process in step.worker_processes}
        if not listed & set(killed):
            return
        threading.Event().wait(0.01)
    raise AssertionError(f"the run did not see the deaths of {killed} within {DAG_RUN_SECONDS:g} s")


# No shrinking: each run starts worker processes (a fraction of a second), a hung one takes DAG_RUN_SECONDS.
@pytest.mark.timeout(300)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@example(AT_THE_LIMIT, [(0.0, 0), (0.02, 1), (0.05, 2)])
@given(dags(), KILLS)
def test_random_kills_of_worker_processes_give_the_sequential_outputs(doc: dict[str, Any],
                                                                      kills: list[tuple[float, int]]) -> None:
    sequential, seq_report, _ = collect(doc, "sequential", [])
    threaded, report, _ = collect(doc, "threads", kills)
    assert report.exit_status == seq_report.exit_status == 0, report.stop_reason
    assert threaded == sequential  # every output once: nothing lost, nothing duplicated
    for name in load_config(doc).steps:
        counts, expected = report[name], seq_report[name]
        assert (counts.processed, counts.emitted, counts.failed) == (expected.processed, expected.emitted, 0), name


def test_the_first_example_reaches_the_held_back_limit() -> None:
    """AT_THE_LIMIT's ordered step has 2 workers and queue_limit 2: it holds back at most 4 inputs' results, and
    a slow message every fourth lets the three after it finish first, so its router stops at the limit."""
    config = load_config(AT_THE_LIMIT)
    ordered = config.steps["O"]
    assert ordered.ordered and held_back_limit(ordered.workers, ordered.queue_limit) == 4
    assert DELAYS["slow"].count(0.0) == 3 and GILS["some"] and GILS["long"]
