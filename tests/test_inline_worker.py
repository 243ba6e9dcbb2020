"""A step of one worker thread in the run's process runs in its router's thread (docs/architecture.md, "A step of
one worker runs in its router"); other steps keep their worker threads. What a step sees is the same either way."""

from __future__ import annotations

import signal
import threading
import uuid

import pytest

from pipeline import Pipeline
from pipeline.component import Component
from pipeline.config import load_config
from pipeline.config.model import StepConfig
from pipeline.config.options import RunOptions
from pipeline.engine import ThreadedRunner
from pipeline.engine.flow import Prefetch
from pipeline.engine.step_threads import runs_inline
from tests.engine_helpers import chain, run, step
from tests.engine_steps import COLLECTED, HOLDING, RESUME

pytestmark = pytest.mark.timeout(60)


def _threads_of(tag: str, name: str) -> dict[str, set[str]]:
    seen: dict[str, set[str]] = {}
    for call, thread in COLLECTED[tag + name]:
        seen.setdefault(call, set()).add(thread)
    return seen


@pytest.mark.parametrize(("extra", "inline"), [({}, True), ({"nb_thread": 2}, False), ({"ordered": True}, False)])
def test_the_router_runs_a_step_of_one_worker(extra: dict, inline: bool) -> None:
    tag = uuid.uuid4().hex
    report = run(chain(step("P", "Source"), [step("S", "ThreadNames", **extra)], step("C", "ThreadNames"),
                       Source={"count": 50}, ThreadNames={"tag": tag}))
    assert report.exit_status == 0
    assert report.steps["C"].counts.processed == 50
    stage = _threads_of(tag, "S")
    assert len(COLLECTED[tag + "S"]) == 50 + 2 * (extra.get("nb_thread", 1))  # each worker's init and finish
    if inline:
        assert stage == {"init": {"router-S"}, "run": {"router-S"}, "finish": {"router-S"}}
    else:
        assert stage["run"] <= {"S#0", "S#1"} and "router-S" not in stage["run"]
    assert _threads_of(tag, "C") == {"init": {"router-C"}, "run": {"router-C"}, "finish": {"router-C"}}


def test_inline_and_threaded_steps_give_the_same_outputs_and_counts() -> None:
    results = []
    for nb_thread in (1, 2):
        tag = uuid.uuid4().hex
        document = chain(step("P", "Source"), [step("S", "Behave", nb_thread=nb_thread)], step("C", "Collect"),
                         Source={"count": 200}, Behave={"behaviour": "expand"}, Collect={"tag": tag})
        report = run(document)
        counts = {name: (s.counts.received, s.counts.processed, s.counts.emitted) for name, s in report.steps.items()}
        results.append((report.exit_status, counts, sorted(map(repr, COLLECTED[tag + "C"]))))
    assert results[0] == results[1]


def _step(**keys: object) -> StepConfig:
    values = {"name": "S", "kind": "stager", "cls": Component, "module": "tests.engine_steps", "next_steps": ("C",),
              **keys}
    return StepConfig(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize(("keys", "listen", "expected"), [
    ({}, "", True),
    ({"kind": "consumer", "next_steps": ()}, "", True),
    ({"nb_thread": 2}, "", False),
    ({"nb_process": 1}, "", False),
    ({"ordered": True}, "", False),
    ({"kind": "producer"}, "", False),
    ({}, "tcp://127.0.0.1:5555", False),
])
def test_which_steps_run_in_their_router(keys: dict, listen: str, expected: bool) -> None:
    assert runs_inline(_step(**keys), RunOptions(listen=listen)) is expected


def test_a_second_stop_ends_an_inline_sink_at_once() -> None:
    """Stopped at once (a second Ctrl+C), the router that runs a sink runs no more of its messages: the run ends with
    nothing left behind, its router thread gone, and the sink ran no message after the run returned."""
    tag = uuid.uuid4().hex
    pipeline = Pipeline.from_config(chain(step("P", "Source"), [], step("C", "Hold"), Source={"count": 5000},
                                          Hold={"tag": tag, "hold_at": 20, "delay": 0.02}),
                                    {"Pipeline": {"progress": False}})
    reports: list = []
    thread = threading.Thread(target=lambda: reports.append(pipeline.run()))
    thread.start()
    assert HOLDING[tag].wait(10)
    pipeline.interrupt(signal.SIGINT)
    pipeline.interrupt(signal.SIGINT)
    RESUME[tag].set()
    thread.join(10)
    assert not thread.is_alive()
    [report] = reports
    assert report.stuck == []
    assert "router-C" not in {t.name for t in threading.enumerate()}
    assert len(COLLECTED[tag]) == report.steps["C"].counts.processed < 5000


def test_the_queue_of_a_slow_inline_step_shows_it_is_the_bottleneck() -> None:
    """A step whose run() is slow asks for few messages at a time (adaptive prefetch), as a worker thread does, and its
    router reads input between them: its queue fills to where its router stops reading (a packet short of its
    limit) and the monitor shows it as the bottleneck, not a packet of half its limit taken out of the queue."""
    tag = uuid.uuid4().hex
    document = chain(step("P", "Source"), [step("S", "Hold", queue_limit=256)], step("C", "Collect"),
                     Source={"count": 400, "delay": 0.0006}, Hold={"tag": tag, "hold_at": 200},
                     Collect={"tag": tag})
    runner = ThreadedRunner(load_config(document), RunOptions())
    thread = threading.Thread(target=runner.run)
    thread.start()
    try:
        assert HOLDING[tag].wait(10)
        queued = {s.name: s for s in runner.snapshot().steps}["S"].queue
    finally:
        RESUME[tag].set()
        thread.join(20)
    limit = load_config(document).steps["S"].queue_limit
    assert queued >= limit // 2 - 1
    assert len(COLLECTED[tag + "C"]) == 400


def test_a_worker_asks_for_what_keeps_it_busy_for_its_prefetch_time() -> None:
    prefetch = Prefetch(queue_limit=256)
    assert prefetch.after(100, 100 * 0.000_001) == 256  # 1 us a message: the whole window (the queue limit)
    assert prefetch.after(2, 2 * 0.01) == 2  # then 10 ms ones: the mean (0.2 of the way) asks for the least
    small = Prefetch(queue_limit=8, prefetch_seconds=0.05)
    assert small.after(1, 0.001) == 8  # the queue limit caps it
