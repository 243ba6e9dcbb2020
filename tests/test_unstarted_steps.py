"""A step whose init() fails stops the run before its producer starts; what still reaches it (what the steps before
it send from their finish()) is counted and written as not run, and the report says which step could not start: the
same in every mode. Fused after another step, it crashed that step's worker processes (the finish() outputs were lost,
the step before blamed); elsewhere the report called the messages left an internal error, and a sequential run wrote
no dead letters for them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.execution.report import RunReport
from pipeline.failures.deadletter import load_messages
from tests.process_helpers import lines
from tests.remote_helpers import Launcher
from tests.semantic_helpers import collector, numbers, pipeline_config, run, step

pytestmark = pytest.mark.timeout(60)

#: Per mode: its Pipeline settings, the keys of A and B, and how many workers A has (each sends one sum).
MODES: dict[str, tuple[dict[str, Any], dict[str, Any], int]] = {
    "sequential": ({"mode": "sequential"}, {}, 1),
    "threads": ({}, {"nb_thread": 2}, 2),
    "processes": ({"fuse": False}, {"nb_process": 2}, 2),
    "fused": ({}, {"nb_process": 2}, 2),
}
#: Each way an init() fails: B's step entry, and the stop reason the run gives.
REFUSALS = {
    "returns False": ({"module": "tests.lifecycle_steps", "class": "TrueStage", "config": {"refuse": True}},
                      "step B could not start: init(): StepFailed: init() returned False: the step could not start"),
    "raises": ({"module": "tests.failure_steps", "class": "InitAlwaysFails"},
               "step B could not start: init(): RuntimeError: cannot open the calibration table"),
}


def summing_chain(tmp: Path, b: dict[str, Any], keys: dict[str, Any], count: int = 0, **pipeline: Any) -> dict:
    """P (Numbers) -> A (Summer: its finish() yields its sum) -> B -> C, with ``keys`` on A and B, B's entry
    completed by ``b``, and the dead letters in tmp."""
    document = pipeline_config(
        step("P", "Numbers", "A"),
        [step("A", "Summer", "B", config={"how": "yield"}, **keys), {**step("B", "PassThrough", "C", **keys), **b}],
        collector(tmp, "C"), **numbers(count))
    document["Pipeline"].update(dead_letter=str(tmp / "dead.jsonl"), **pipeline)
    return document


def records(tmp: Path) -> list[dict[str, Any]]:
    """The dead letters the run wrote in tmp."""
    return [json.loads(line) for line in lines(tmp / "dead.jsonl")]


@pytest.mark.parametrize("refusal", REFUSALS)
@pytest.mark.parametrize("mode", MODES)
def test_what_finish_sends_to_a_step_that_could_not_start_is_written_as_not_run(tmp_path: Path, mode: str,
                                                                                 refusal: str) -> None:
    settings, keys, workers = MODES[mode]
    b, reason = REFUSALS[refusal]
    report: RunReport = run(summing_chain(tmp_path, b, keys, **settings), settings.get("mode", "threads"))
    assert report.exit_status == 1
    assert report.stop_reason == reason  # not "internal error", nor the step before it
    assert report["A"].first_error is None, report["A"].first_error  # its worker processes did not die
    assert report["B"].first_error is not None and report["B"].first_error.startswith("init(): ")
    assert (report["A"].emitted, report["B"].received, report["B"].processed) == (workers, workers, 0)
    written = records(tmp_path)
    assert [r["error"] for r in written] == ["NotRun: not run: step B had stopped"] * workers
    assert load_messages(str(tmp_path / "dead.jsonl")) == [("B", 0)] * workers  # each of A's sums, to replay
    assert "internal error" not in report.table()


@pytest.mark.parametrize("mode", ["threads", "processes", "fused"])
def test_an_init_that_fails_in_one_worker_of_two_stops_the_run_before_it_starts(tmp_path: Path, mode: str) -> None:
    """One of B's two worker processes could not start: the run went on with the other and processed every message
    (exit 1, no stop reason), where threads stopped it before the producer started, as the docs say of every mode."""
    settings, keys, workers = MODES[mode]
    b = {"module": "tests.failure_steps", "class": "InitFailsButOnce", "config": {"token": str(tmp_path / "token")}}
    report: RunReport = run(summing_chain(tmp_path, b, keys, count=50, **settings), "threads")
    assert report.exit_status == 1
    assert report.stop_reason == ("step B could not start: init(): RuntimeError: the calibration table is held by "
                                  "another worker")
    assert report["P"].processed == 0  # the producer never started
    # What A's finish() sent reached B's worker that started, or (fused) the one beside it that did not: not run
    not_run = [r["step"] for r in records(tmp_path) if r["error"] == "NotRun: not run: step B had stopped"]
    assert report["B"].received == workers and report["B"].processed + len(not_run) == workers
    assert report["C"].processed == report["B"].processed


def test_a_step_whose_remote_worker_could_not_start_says_so_and_writes_what_reached_it(tmp_path: Path) -> None:
    b, reason = REFUSALS["returns False"]
    with Launcher(tmp_path) as launch:
        proc = launch.run(summing_chain(tmp_path, {**b, "nb_thread": 0}, {}))
        assert launch.worker(step="B").wait() == 1
        assert proc.wait() == 1, proc.stderr
    assert f"stopped: {reason}" in proc.stderr.splitlines(), proc.stderr
    assert "internal error" not in proc.stderr
    assert [r["error"] for r in records(tmp_path)] == ["NotRun: not run: step B had stopped"]
