"""Edges a review found in fused steps, chunks and shards (tests/edge_steps.py): a fused step that names one of
its next steps, a finish() that yields more than a chunk in a worker process, a fused step that fails on or takes
long over the outputs of the previous step's finish(), a shard whose generator is slower than the stall patience.
Each is run fused and not (or in the modes it applies to), bounded in time: a hang fails the test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline import Pipeline
from pipeline.execution.executor import CHUNK_COUNT
from tests.edge_steps import FINISH_FIRST, records

pytestmark = pytest.mark.timeout(60)

STEPS = "tests.edge_steps"


def step(name: str, cls: str, **keys: Any) -> dict[str, Any]:
    """One step entry."""
    return {"name": name, "module": STEPS, "class": cls, **keys}


def inputs(next_steps: str) -> dict[str, Any]:
    """The producer: the project's Counter, 0, 1, 2 (three inputs unless a test's sections say otherwise)."""
    return {"name": "IN", "module": "algorithms.basic", "class": "Counter", "next_steps": next_steps}


def run(tmp: Path, producer: dict[str, Any], stagers: list[dict[str, Any]], consumer: dict[str, Any],
        fuse: bool = True, **options: Any) -> Any:
    """Run the graph (fast heartbeats: a stall is judged within about a second); its report."""
    doc = {"version": 1, "Pipeline": {"producer_conf": producer, "stagers_conf": stagers, "consumer_conf": consumer},
           "Record": {"path": str(tmp / "out"), **options.pop("record", {})},
           **({"Counter": {"count": 3}} if producer["class"] == "Counter" else {}),  # a section needs its class
           **options.pop("sections", {})}
    settings = {"mode": "threads", "gui": False, "heartbeat_interval": 0.2, "fuse": fuse, **options}
    return Pipeline.from_config(doc, {"Pipeline": settings}).run()


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "not-fused"])
def test_a_step_after_a_fused_one_that_names_one_of_its_next_steps_sends_there(tmp_path: Path, fuse: bool) -> None:
    """A -> B fused, B with next steps C and D sending to D by name: the outputs that come back are B's, and their
    targets B's next steps (the router had read them as A's: it crashed)."""
    report = run(tmp_path, inputs("A"),
                 [step("A", "Pass", next_steps="B", nb_process=1),
                  step("B", "ToD", next_steps=["C", "D"], nb_process=1), step("C", "Record", next_steps="D")],
                 step("D", "Record"), fuse,
                 sections={"Counter": {"count": 5}})
    assert report.exit_status == 0
    assert records(tmp_path / "out") == [f"D {i}" for i in range(5)]


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "not-fused"])
def test_a_finish_in_a_worker_process_that_yields_more_than_a_chunk_ends(tmp_path: Path, fuse: bool) -> None:
    """finish() yields CHUNK_COUNT + 904 outputs in a worker process: its chunk (of no input) is taken on and its
    worker told MORE, as an input's (it had waited for ever)."""
    many = CHUNK_COUNT + 904
    report = run(tmp_path, inputs("MID"),
                 [step("MID", "FinishMany", next_steps="OUT", nb_process=1)], step("OUT", "Record", nb_process=1),
                 fuse, sections={"FinishMany": {"many": many}})
    assert report.exit_status == 0
    got = records(tmp_path / "out")
    assert len(got) == 3 + many and len(set(got)) == len(got)


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "not-fused"])
def test_a_fused_step_failing_on_the_outputs_of_a_finish_fails_those_messages_not_the_step(tmp_path: Path,
                                                                                         fuse: bool) -> None:
    """OUT raises (on_error skip) on the three outputs of MID's finish(): three failed messages with their dead
    letters, fused or not (fused, a failure of a message of no input had been taken for OUT's finish() failing)."""
    dead = tmp_path / "dead.jsonl"
    report = run(tmp_path, inputs("MID"),
                 [step("MID", "FinishMany", next_steps="OUT", nb_process=1)],
                 step("OUT", "Record", nb_process=1, on_error="skip"), fuse,
                 sections={"FinishMany": {"many": 3}}, record={"fail": 1}, allow_failures=True, dead_letter=str(dead))
    assert report.exit_status == 0 and not report["OUT"].fatal
    assert report["OUT"].counts.failed == 3
    letters = [json.loads(line) for line in dead.read_text(encoding="utf-8").splitlines()]
    assert sorted(letter["step"] for letter in letters) == ["OUT"] * 3
    assert records(tmp_path / "out") == [f"OUT {i}" for i in range(3)]


@pytest.mark.parametrize("fuse", [True, False], ids=["fused", "not-fused"])
def test_a_fused_step_long_at_work_on_the_outputs_of_a_finish_is_not_a_stall(tmp_path: Path, fuse: bool) -> None:
    """OUT takes 0.05 s on each of 40 outputs of MID's finish() (2 s, twice the stall patience of 1 s): the busy
    board says the process is finishing, so it is not killed as holding work without running any."""
    report = run(tmp_path, inputs("MID"),
                 [step("MID", "FinishMany", next_steps="OUT", nb_process=1)], step("OUT", "Record", nb_process=1),
                 fuse, sections={"FinishMany": {"many": 40}}, record={"sleep": 0.05})
    assert report.exit_status == 0
    assert records(tmp_path / "out") == sorted(f"OUT {i}" for i in [0, 1, 2, *range(FINISH_FIRST, FINISH_FIRST + 40)])


def test_a_shard_slower_between_two_yields_than_the_stall_patience_is_not_a_stall(tmp_path: Path) -> None:
    """Two shards, each 2 s between yields (the patience: 1 s): their processes run a shard, the busy board says so,
    and nothing is killed; every message comes once."""
    report = run(tmp_path, step("IN", "SlowShards", next_steps="OUT", nb_process=2), [], step("OUT", "Record"))
    assert report.exit_status == 0 and report["IN"].restarts == 0
    assert records(tmp_path / "out") == sorted(f"OUT {i}" for i in (0, 1, 2, 100, 101, 102))
