"""docs/cluster.md's SLURM recipe on a real one-node cluster (tests/slurm_cluster.py): a job of workers
cancelled mid-run loses nothing, and the next job's workers finish the stream and end by themselves.

The recipe's job script and command lines are taken from docs/cluster.md as they are (the node
names substituted, as tests/test_docs.py does); only the pipeline is the test's: its HILLAS step
(tests.remote_steps.Tagged) tells through marker files which process ran what, and blocks the
first job's workers in their first message, so that ``scancel`` finds messages in flight.
"""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest

from pipeline.auth.keys import generate_key_pair
from tests.remote_helpers import BIN, Launcher, Proc, duplicates, wait_during
from tests.remote_steps import ROLE, marker_pids
from tests.slurm_cluster import CPUS, SlurmCluster
from tests.test_docs import ROOT, Example, console_commands, fenced_blocks

#: The document whose recipe runs here, and its files.
RECIPE = ROOT / "docs" / "cluster.md"
SCRIPT, CONFIG = "hillas-workers.sbatch", "hillas.json"
#: Messages of the test's run.
COUNT = 20
#: Seconds a job or the run may take here (each takes seconds; the run finds a dead worker in 5).
JOB_SECONDS = 45.0


def recipe() -> tuple[str, str, str]:
    """docs/cluster.md's job script, the run's command line (without its ``&``) and the job's submission."""
    blocks = fenced_blocks(RECIPE)
    script = next(block.text for block in blocks if block.marker == "file" and block.argument == SCRIPT)
    commands = [command for block in blocks if block.marker == "run" and block.argument == "slurm"
                for command, _ in console_commands(block.text)]
    run = next(command for command in commands if command.startswith("pipeline-run") and command.endswith("&"))
    submit = next(command for command in commands if command.startswith("sbatch"))
    return script, run[:-1].rstrip(), submit


def pipeline(directory: Path) -> dict[str, Any]:
    """NUMS (Numbers) -> HILLAS (Tagged, remote workers only) -> WRITE (JsonLinesWriter), the step names the
    recipe's job serves."""
    return {
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "NUMS", "module": "tests.remote_steps", "class": "Numbers",
                              "next_steps": "HILLAS"},
            "stagers_conf": [{"name": "HILLAS", "module": "tests.remote_steps", "class": "Tagged", "nb_thread": 0,
                              "next_steps": "WRITE"}],
            "consumer_conf": {"name": "WRITE", "module": "algorithms.basic", "class": "JsonLinesWriter"},
        },
        "Numbers": {"count": COUNT},
        "Tagged": {"gate": str(directory / "gate")},
        "JsonLinesWriter": {"path": str(directory / "out.jsonl")},
    }


def submitted(proc: Proc) -> int | None:
    """The job id that ``sbatch`` printed, once it has."""
    found = re.search(r"Submitted batch job (\d+)", proc.stdout)
    return int(found.group(1)) if found else None


@pytest.fixture
def launch(tmp_path: Path) -> Any:
    """The test's processes (the run, the sbatch commands), killed by pid at its end if still running."""
    with Launcher(tmp_path / "processes") as launcher:
        yield launcher


def test_scancel_of_a_job_mid_run_loses_nothing(slurm: SlurmCluster, launch: Launcher, tmp_path: Path) -> None:
    directory = tmp_path / "recipe"
    (directory / "gate").mkdir(parents=True)
    generate_key_pair(directory / "keys", "server")  # what the recipe's pipeline-keys commands make
    generate_key_pair(directory / "keys" / "workers", "cluster")
    script, run_line, submit_line = recipe()
    example = Example(directory, cluster=slurm)
    (directory / SCRIPT).write_text(example.substitute(script), encoding="utf-8")
    (directory / CONFIG).write_text(json.dumps(pipeline(directory)), encoding="utf-8")
    env = {**slurm.env, "PYTHONPATH": str(ROOT)}  # tests.remote_steps, for the run and (through sbatch) the job

    def start(name: str, line: str, role: str = "") -> Proc:
        argv = shlex.split(example.substitute(line))
        argv[0] = str(BIN / argv[0]) if argv[0].startswith("pipeline-") else argv[0]
        return launch.start(name, slurm.command(argv), cwd=directory, env={**env, ROLE: role} if role else env)

    run = start("run", run_line)
    first = start("first-job", submit_line, role="remote-blocking")  # its workers block in their first message
    gate = directory / "gate"
    wait_during(run, lambda: len(marker_pids(gate, "busy")) == CPUS, "the first job's workers to be in a message")
    first_job = wait_during(first, lambda: submitted(first), "the first job's id")
    held_by_first = marker_pids(gate, "busy")
    second = start("second-job", submit_line)  # pending: the first job has the node (--exclusive)
    second_job = wait_during(second, lambda: submitted(second), "the second job's id")
    slurm.client("scancel", str(first_job))

    assert slurm.final_state(first_job, JOB_SECONDS) == "CANCELLED"
    assert slurm.final_state(second_job, JOB_SECONDS) == "COMPLETED", example.diagnostics()  # by itself
    assert run.wait() == 0, run.stderr
    assert second.wait() == 0, second.stderr  # sbatch --wait: the job's exit status
    assert first.wait() != 0

    outputs = [json.loads(line) for line in (directory / "out.jsonl").read_text().splitlines()]
    assert not duplicates(outputs), run.stderr
    assert sorted(row["value"] for row in outputs) == list(range(COUNT)), run.stderr
    second_workers = marker_pids(gate, "init") - held_by_first
    assert len(second_workers) == CPUS
    assert {row["pid"] for row in outputs} <= second_workers  # the cancelled job's messages went to the next one's
    assert f"remote worker cluster ({slurm.node.address}) sent no heartbeat" in run.stderr  # its key and node
    redelivered = re.search(r"HILLAS: (\d+) messages? delivered again", run.stderr)
    assert redelivered and int(redelivered.group(1)) >= CPUS, run.stderr  # at least the ones inside run()
