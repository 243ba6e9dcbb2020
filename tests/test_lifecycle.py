"""What init() and finish() return is never sent; init() returning False stops the run before any message
is processed (issue 25): in every mode, with ctapipe-style steps (tests/lifecycle_steps.py)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli_helpers import read_lines, write_config
from tests.remote_helpers import Launcher

STEPS = "tests.lifecycle_steps"
COUNT = 10
#: How each mode runs the stage: its step keys, and whether a pipeline-worker serves it.
MODES = {
    "sequential": ({}, False),
    "threads": ({"nb_thread": 2}, False),
    "processes": ({"nb_process": 1}, False),
    "remote": ({"nb_thread": 0}, True),
}


def config(output: Path, refuse: bool, stage: dict[str, Any]) -> dict[str, Any]:
    """SOURCE (TrueSource) -> S (TrueStage) -> WRITE (JsonLinesWriter to ``output``)."""
    return {
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "SOURCE", "module": STEPS, "class": "TrueSource", "next_steps": "S"},
            "stagers_conf": [{"name": "S", "module": STEPS, "class": "TrueStage", "next_steps": "WRITE", **stage}],
            "consumer_conf": {"name": "WRITE", "module": "algorithms.basic", "class": "JsonLinesWriter"},
        },
        "TrueSource": {"count": COUNT},
        "TrueStage": {"refuse": refuse},
        "JsonLinesWriter": {"path": str(output)},
    }


def run(launch: Launcher, mode: str, refuse: bool) -> tuple[int, str, list[Any]]:
    """Run the chain in ``mode`` with pipeline-run; its exit status, its stderr and what WRITE wrote."""
    stage, remote = MODES[mode]
    output = launch.directory / "out.jsonl"
    document = config(output, refuse, stage)
    if remote:
        proc = launch.run(document)
        launch.worker(step="S").wait()
    else:
        options = ["--Pipeline.mode=sequential"] if mode == "sequential" else []
        path = write_config(launch.directory, document)
        proc = launch.start("run", [sys.executable, "-m", "pipeline", f"--config={path}", *options])
    status = proc.wait()
    return status, proc.stderr, read_lines(output) if output.exists() else []


@pytest.mark.parametrize("mode", MODES)
def test_what_init_and_finish_return_is_not_sent(launch: Launcher, mode: str) -> None:
    status, stderr, written = run(launch, mode, refuse=False)
    assert status == 0, stderr
    assert not any(v is True for v in written), written
    assert sorted(v for v in written if isinstance(v, int)) == list(range(COUNT)), written
    workers = 1 if mode in ("sequential", "processes", "remote") else 2
    assert written.count("init") == workers, written


@pytest.mark.parametrize("mode", MODES)
def test_init_returning_false_stops_the_run_before_any_message(launch: Launcher, mode: str) -> None:
    status, stderr, written = run(launch, mode, refuse=True)
    assert status == 1, stderr
    assert written == [], written  # no message was processed by S, nor reached WRITE
    assert "init(): StepFailed: init() returned False: the step could not start" in stderr, stderr
    assert "Traceback" not in stderr, stderr
