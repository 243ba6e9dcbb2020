"""An option given twice takes its last value, as in most command lines (issue 26.6): a step's option
(in every mode, worker processes included), a run's ``Pipeline`` option, the command's own options,
a dict option, and ``pipeline-worker``'s options. Real subprocesses."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from pipeline.auth.keys import generate_key_pair
from tests.cli_helpers import ROOT, chain_config, run_cli, write_config
from tests.failure_helpers import report_row
from tests.remote_helpers import BIN

#: How the chain's consumer runs in each mode: (its nb_process, the run's mode).
MODES = {"threads": (0, "threads"), "sequential": (0, "sequential"), "processes": (1, "threads")}


@pytest.mark.parametrize("mode", MODES)
def test_a_step_option_given_twice_takes_the_last(tmp_path: Path, mode: str) -> None:
    nb_process, run_mode = MODES[mode]
    config = chain_config()
    config["Pipeline"]["consumer_conf"]["nb_process"] = nb_process
    first, last = tmp_path / "first.jsonl", tmp_path / "last.jsonl"
    result = run_cli(f"--config={write_config(tmp_path, config)}", f"--Pipeline.mode={run_mode}", "--no-progress",
                     "--Counter.count=5", "--Counter.count=6",
                     f"--JsonLinesWriter.path={first}", f"--JsonLinesWriter.path={last}")
    assert result.returncode == 0, result.stderr
    assert report_row(result.stderr, "COUNT")[1] == 6
    assert sorted(json.loads(line) for line in last.read_text().splitlines()) == list(range(6))  # the worker's too
    assert not first.exists()


@pytest.mark.parametrize(("values", "status"), [
    (("bogus", "sequential"), 0),
    (("sequential", "bogus"), 2),
])
def test_a_run_option_given_twice_takes_the_last(values: tuple[str, str], status: int) -> None:
    result = run_cli("--config=configs/chain.json", "--no-progress", "--Counter.count=3",
                     *(f"--Pipeline.mode={value}" for value in values))
    assert result.returncode == status, result.stderr
    if status:
        assert result.stderr == ("pipeline-run: error: command line: --Pipeline.mode: expected any of ['threads', "
                                 "'sequential'], got str 'bogus'\n")


def test_the_commands_own_option_given_twice_takes_the_last() -> None:
    result = run_cli("--config=missing.json", "--config=configs/chain.json", "--no-progress", "--Counter.count=3")
    assert result.returncode == 0, result.stderr
    assert report_row(result.stderr, "COUNT")[1] == 3


def test_a_dict_option_given_twice_takes_the_last() -> None:
    """Each value is the whole dict, as one Python literal: the last one routes."""
    result = run_cli("--config=configs/routing.json", "--no-progress", "--SimulatedCamera.n_events=20",
                     "--RouteByTelescope.routes={'LST': 'LST_HILLAS', 'MST': 'MST_HILLAS'}",
                     "--RouteByTelescope.routes={'LST': 'MST_HILLAS', 'MST': 'LST_HILLAS'}")
    assert result.returncode == 0, result.stderr
    assert report_row(result.stderr, "MST_HILLAS")[0] == 0  # configs/routing.json's events are MST: swapped
    assert report_row(result.stderr, "LST_HILLAS")[0] == report_row(result.stderr, "ROUTE")[2] > 0


def test_a_pipeline_worker_option_given_twice_takes_the_last(tmp_path: Path) -> None:
    public, secret = generate_key_pair(tmp_path, "node7")
    result = subprocess.run([str(BIN / "pipeline-worker"), "--connect=tcp://127.0.0.1:5570", "--connect=garbage",
                             f"--server-key={public}", f"--key={secret}", "--step=PASS"],
                            cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert result.stderr == ("pipeline-worker: error: command line: --connect: expected tcp://HOST:PORT, such as "
                             "tcp://head:5570, got 'garbage'\n")
