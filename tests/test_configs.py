"""Every example config in configs/ runs with pipeline-run, as a new user would run it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
#: The example configs, but those of an optional extra (they have tests of their own: tests/test_ctapipe.py).
CONFIGS = sorted(path for path in (REPO / "configs").glob("*.json") if not path.stem.startswith("ctapipe"))


@pytest.mark.parametrize("config", CONFIGS, ids=[c.stem for c in CONFIGS])
def test_example_config_runs(config: Path, tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "-m", "pipeline", f"--config={config}", "--no-progress"],
                            cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "exit status 0" in result.stderr
    outputs = list(tmp_path.glob("*.jsonl"))
    assert len(outputs) == 1
    rows = [json.loads(line) for line in outputs[0].read_text(encoding="utf-8").splitlines()]
    assert rows
    stagers = json.loads(config.read_text(encoding="utf-8"))["Pipeline"]["stagers_conf"]
    if all(stager.get("ordered") for stager in stagers):
        ids = [row["event_id"] for row in rows]
        assert ids == sorted(ids)  # ordered steps all the way keep the producer's order
