"""A run stopped at once counts every output a step made: those it held back, or was still sending, count as sent but
never processed (docs/cli.md), never lost in silence. Real pipeline-run subprocesses and their reports."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.execution.report import never_processed
from tests.failure_helpers import STEPS, pipeline_run, report_row

#: Outputs of the one input that the stage makes: far more than the pipes to a stuck consumer hold.
MANY = 3000


def _config(tmp_path: Path, producer: dict[str, Any], stager: dict[str, Any], consumer: dict[str, Any],
            **sections: Any) -> Path:
    """A COUNT -> STAGE -> SINK config of tests/failure_steps.py, written to a file."""
    document = {
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "COUNT", "module": "algorithms.basic", "class": "Counter", "next_steps": "STAGE",
                              **producer},
            "stagers_conf": [{"name": "STAGE", "module": STEPS, "next_steps": "SINK", **stager}],
            "consumer_conf": {"name": "SINK", "module": STEPS, **consumer},
        },
        **sections,
    }
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.mark.parametrize(("producer", "stager"), [
    ({}, {"nb_thread": 1}),
    ({}, {"nb_thread": 2}),
    ({}, {"nb_thread": 2, "ordered": True}),
    ({}, {"nb_process": 1}),
    ({"nb_process": 1}, {"nb_process": 1}),  # fused with the producer's shard
], ids=["inline", "threads", "ordered", "process", "fused-shard"])
def test_outputs_still_to_send_at_a_stop_at_once_are_counted(tmp_path: Path, producer: dict[str, Any],
                                                           stager: dict[str, Any]) -> None:
    """The stage's one input makes MANY outputs; the consumer stops the run on its first and never returns, so the
    stage's sender (its thread, or its router) is cut off mid-send by shutdown_timeout: each output not yet queued was
    in no count (the report's STAGE row said 1 processed and fewer emitted, the never-processed line fewer still)."""
    path = _config(tmp_path, producer, {"class": "ManyFor", **stager},
                   {"class": "StuckOnFirst", "queue_limit": 1}, Counter={"count": 1}, ManyFor={"at": 0, "many": MANY})
    result = pipeline_run(path, "--Pipeline.shutdown_timeout=0.5")
    assert result.returncode == 130, result.stderr
    assert "still busy, left behind: step SINK worker 0 in run() on message 0" in result.stderr
    assert report_row(result.stderr, "STAGE")[1:3] == [1, MANY], result.stderr
    assert report_row(result.stderr, "SINK")[1:] == [0, 0, 0], result.stderr
    assert f"\n{never_processed(MANY)}\n" in result.stderr


def test_outputs_an_ordered_step_held_back_at_a_stop_at_once_are_counted(tmp_path: Path) -> None:
    """An ordered step's first input never returns: every later input's outputs wait for it (in its router, or on
    their way there from its threads) when shutdown_timeout stops the run at once. They were in no count: STAGE 199
    processed, 0 emitted, and the never-processed line short of all of them."""
    count, copies = 200, 3
    path = _config(tmp_path, {}, {"class": "HoldsUpFirst", "nb_thread": 2, "ordered": True},
                   {"class": "MarkedWriter"}, Counter={"count": count},
                   HoldsUpFirst={"at": count - 1, "copies": copies}, MarkedWriter={"path": str(tmp_path / "out.jsonl")})
    result = pipeline_run(path, "--Pipeline.shutdown_timeout=0.5")
    assert result.returncode == 130, result.stderr
    assert "still busy, left behind: step STAGE worker" in result.stderr
    _, processed, emitted, failed = report_row(result.stderr, "STAGE")
    assert processed > 0 and failed == 0, result.stderr
    assert emitted == copies * processed, result.stderr
    assert report_row(result.stderr, "SINK")[1] == 0, result.stderr  # nothing goes before the first input's outputs
    assert f"\n{never_processed(count - processed + emitted)}\n" in result.stderr
