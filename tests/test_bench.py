"""pipeline-bench: a --quick --json smoke run measures every workload and checks every run's output."""

from __future__ import annotations

import json
import math
import subprocess
import sys

from tests.cli_helpers import ROOT

WORKLOADS = ["W1", "W2", "W3", "W4", "W5", "W6"]


def test_quick_json_run_measures_and_verifies_every_workload() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "pipeline.bench", "--quick", "--json"],
        cwd=ROOT, capture_output=True, text=True, timeout=50, check=False,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    result = json.loads(run.stdout)
    assert result["verified"] is True
    assert sorted(result["workloads"]) == WORKLOADS
    for key, workload in result["workloads"].items():
        assert workload["verified"] is True, key
        assert workload["targets"], key
        rows = [(case["label"], row) for case in workload["cases"] for row in case["rows"]]
        measured = [row for _, row in rows if row["status"] == "ok"]
        assert any(row["design"] == "engine threads" for row in measured), key
        for label, row in rows:
            where = f"{key} {label} {row['design']}"
            if row["status"] == "skipped":
                assert row["design"].startswith("mpipe"), where  # the only optional baseline
                continue
            assert row["status"] == "ok", f"{where}: {row['note']}"
            assert row["samples"], where
            for value in [*row["samples"], row["median"], row["min"], row["max"]]:
                assert math.isfinite(value) and value > 0, f"{where}: {value}"
        for target in workload["targets"]:
            assert math.isfinite(target["value"]) and target["value"] > 0, f"{key} {target['text']}"
