"""A step of one worker thread in the run's process runs in its router's thread (docs/architecture.md, "A step of
one worker runs in its router"); other steps keep their worker threads. What a step sees is the same either way."""

from __future__ import annotations

import uuid

import pytest

from pipeline.component import Component
from pipeline.config.model import StepConfig
from pipeline.config.options import RunOptions
from pipeline.engine.step_threads import runs_inline
from tests.engine_helpers import chain, run, step
from tests.engine_steps import COLLECTED

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
