"""A producer -> STAGE -> WRITER config of tests/failure_steps.py, run by pipeline-run; its report rows and output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

#: The repository root: pipeline-run runs there, with it on PYTHONPATH.
REPO = Path(__file__).resolve().parent.parent
#: The module of the steps these configs name.
STEPS = "tests.failure_steps"


def config(tmp_path: Path, stager: dict[str, Any], producer: dict[str, Any] | None = None,
           **sections: Any) -> Path:
    """A producer -> STAGE -> WRITER config (MarkedWriter into tmp_path/out.jsonl), written to a file."""
    document = {
        "version": 1,
        "Pipeline": {
            "producer_conf": producer or {"name": "COUNT", "module": "algorithms.basic", "class": "Counter",
                                          "next_steps": "STAGE"},
            "stagers_conf": [{"name": "STAGE", "module": STEPS, "next_steps": "WRITER", **stager}],
            "consumer_conf": {"name": "WRITER", "module": STEPS, "class": "MarkedWriter"},
        },
        "MarkedWriter": {"path": str(tmp_path / "out.jsonl")},
        **sections,
    }
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def pipeline_run(path: Path, *options: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    """Run pipeline-run on ``path`` and wait for it (bounded)."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "pipeline", f"--config={path}", *options], cwd=REPO,
                          env=environment, capture_output=True, text=True, timeout=30)


def written(tmp_path: Path) -> list[Any]:
    """The WRITER's lines; the last is {"finished": true} if its finish() ran."""
    return [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]


def report_row(stderr: str, step: str) -> list[int]:
    """RECEIVED, PROCESSED, EMITTED, FAILED of ``step`` in the report table."""
    for line in stderr.splitlines():
        cells = line.split()
        if cells and cells[0] == step and len(cells) >= 5 and all(c.isdigit() for c in cells[1:5]):
            return [int(c) for c in cells[1:5]]
    raise AssertionError(f"no report row for {step} in:\n{stderr}")
