"""docs/cluster.md's SLURM recipe on a real one-node cluster (tests/slurm_cluster.py): a job of workers
cancelled mid-run loses nothing, and the next job's workers finish the stream and end by themselves;
the monitor on the user's desktop (another host) shows the job's workers by key and node address.

The recipe's job script and command lines are taken from docs/cluster.md as they are (the node
names substituted, as tests/test_docs.py does); only the pipeline is the test's: its HILLAS step
(tests.remote_steps.Tagged) tells through marker files which process ran what, and blocks the
first job's workers in their first message, so that ``scancel`` finds messages in flight.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pipeline.auth.keys import generate_key_pair
from pipeline.bench.netns import Host
from tests import slurm_cluster
from tests.doc_helpers import ROOT, Example, console_commands, fenced_blocks
from tests.remote_helpers import BIN, Launcher, Proc, duplicates, wait_during
from tests.remote_steps import ROLE, marker_pids
from tests.slurm_cluster import CPUS, SlurmCluster

#: The document whose recipe runs here, and its files.
RECIPE = ROOT / "docs" / "cluster.md"
SCRIPT, CONFIG = "hillas-workers.sbatch", "hillas.json"
#: Messages of the test's run.
COUNT = 20
#: Seconds a job or the run may take here (each takes seconds; the run finds a dead worker in 5).
JOB_SECONDS = 45.0


def recipe_commands() -> tuple[str, str, str]:
    """docs/cluster.md's job script, the run's command line (without its ``&``) and the job's submission."""
    blocks = fenced_blocks(RECIPE)
    script = next(block.text for block in blocks if block.marker == "file" and block.argument == SCRIPT)
    commands = [command for block in blocks if block.marker == "run" and block.argument == "slurm"
                for command, _ in console_commands(block.text)]
    run = next(command for command in commands if command.startswith("pipeline-run") and command.endswith("&"))
    submit = next(command for command in commands if command.startswith("sbatch"))
    return script, run[:-1].rstrip(), submit


def monitor_recipe() -> tuple[str, str]:
    """docs/cluster.md's pipeline-gui and pipeline-run lines for a monitor on the desktop (comments and ``&`` off)."""
    block = next(block for block in fenced_blocks(RECIPE) if block.language == "sh" and "pipeline-gui" in block.text)
    lines = re.sub(r"\\\n\s*", "", block.text).splitlines()  # continued lines joined
    commands = [re.sub(r"\s*&?\s*(#.*)?$", "", line) for line in lines]
    gui = next(command for command in commands if command.startswith("pipeline-gui"))
    return gui, next(command for command in commands if command.startswith("pipeline-run"))


def pipeline(directory: Path, hold: Path | None = None) -> dict[str, Any]:
    """NUMS (Numbers; with ``hold``, waiting half-way for that file) -> HILLAS (Tagged, remote workers only)
    -> WRITE (JsonLinesWriter): the step names the recipe's job serves."""
    return {
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "NUMS", "module": "tests.remote_steps", "class": "Numbers",
                              "next_steps": "HILLAS"},
            "stagers_conf": [{"name": "HILLAS", "module": "tests.remote_steps", "class": "Tagged", "nb_thread": 0,
                              "next_steps": "WRITE"}],
            "consumer_conf": {"name": "WRITE", "module": "algorithms.basic", "class": "JsonLinesWriter"},
        },
        "Numbers": {"count": COUNT, "hold": str(hold or "")},
        "Tagged": {"gate": str(directory / "gate")},
        "JsonLinesWriter": {"path": str(directory / "out.jsonl")},
    }


def submitted(proc: Proc) -> int | None:
    """The job id that ``sbatch`` printed, once it has."""
    found = re.search(r"Submitted batch job (\d+)", proc.stdout)
    return int(found.group(1)) if found else None


class Recipe:
    """The recipe's directory on the cluster's shared file system: its keys, job script and (the test's) config;
    its commands started as the test's processes, on the login node unless said otherwise."""

    def __init__(self, slurm: SlurmCluster, launch: Launcher, directory: Path, hold: Path | None = None) -> None:
        self.slurm, self.launch, self.directory = slurm, launch, directory
        self.gate = directory / "gate"
        self.gate.mkdir(parents=True)
        generate_key_pair(directory / "keys", "server")  # what the recipe's pipeline-keys commands make
        generate_key_pair(directory / "keys" / "workers", "cluster")
        script, self.run_line, self.submit_line = recipe_commands()
        self.example = Example(directory, cluster=slurm)
        (directory / SCRIPT).write_text(self.example.substitute(script), encoding="utf-8")
        (directory / CONFIG).write_text(json.dumps(pipeline(directory, hold)), encoding="utf-8")
        # tests.remote_steps, for the run and (sbatch passes the environment on) the job's workers
        self.env = {**slurm.env, "PYTHONPATH": str(ROOT)}

    def start(self, name: str, line: str, role: str = "", host: Host | None = None) -> Proc:
        """Start a documented command line (pipeline-* as this checkout's console scripts); ``role``: the
        Tagged step's role in the job it submits."""
        argv = shlex.split(self.example.substitute(line))
        argv[0] = str(BIN / argv[0]) if argv[0].startswith("pipeline-") else argv[0]
        env = {**self.env, ROLE: role} if role else self.env
        return self.launch.start(name, (host or self.slurm.login).command(argv), cwd=self.directory, env=env)

    def outputs(self) -> list[dict[str, int]]:
        """What the run wrote: one {"value", "pid"} per message."""
        return [json.loads(line) for line in (self.directory / "out.jsonl").read_text().splitlines()]


@pytest.fixture
def launch(tmp_path: Path) -> Iterator[Launcher]:
    """The test's processes (the run, the sbatch commands, the monitor), killed by pid at its end if still running."""
    with Launcher(tmp_path / "processes") as launcher:
        yield launcher


def test_scancel_of_a_job_mid_run_loses_nothing(slurm: SlurmCluster, launch: Launcher, tmp_path: Path) -> None:
    recipe = Recipe(slurm, launch, tmp_path / "recipe")
    run = recipe.start("run", recipe.run_line)
    first = recipe.start("first-job", recipe.submit_line, role="remote-blocking")  # its workers block in a message
    wait_during(run, lambda: len(marker_pids(recipe.gate, "busy")) == CPUS,
                "the first job's workers to be in a message")
    first_job = wait_during(first, lambda: submitted(first), "the first job's id")
    held_by_first = marker_pids(recipe.gate, "busy")
    second = recipe.start("second-job", recipe.submit_line)  # pending: the first job has the node (--exclusive)
    second_job = wait_during(second, lambda: submitted(second), "the second job's id")
    slurm.client("scancel", str(first_job))

    assert slurm.final_state(first_job, JOB_SECONDS) == "CANCELLED"
    assert slurm.final_state(second_job, JOB_SECONDS) == "COMPLETED", recipe.example.diagnostics()  # by itself
    assert run.wait() == 0, run.stderr
    assert second.wait() == 0, second.stderr  # sbatch --wait: the job's exit status
    assert first.wait() != 0

    outputs = recipe.outputs()
    assert not duplicates(outputs), run.stderr
    assert sorted(row["value"] for row in outputs) == list(range(COUNT)), run.stderr
    second_workers = marker_pids(recipe.gate, "init") - held_by_first
    assert len(second_workers) == CPUS
    assert {row["pid"] for row in outputs} <= second_workers  # the cancelled job's messages went to the next one's
    # scancel's SIGTERM: pipeline-worker tells the run at once (no wait for missed heartbeats), naming key and node.
    assert f"remote worker cluster ({slurm.node.address}): its worker process " in run.stderr, run.stderr
    assert "sent no heartbeat" not in run.stderr
    redelivered = re.search(r"HILLAS: (\d+) messages? delivered again", run.stderr)
    assert redelivered and int(redelivered.group(1)) >= CPUS, run.stderr  # at least the ones inside run()


def test_the_monitor_on_the_desktop_shows_the_jobs_workers(slurm: SlurmCluster, launch: Launcher,
                                                          tmp_path: Path) -> None:
    hold = tmp_path / "go"
    recipe = Recipe(slurm, launch, tmp_path / "recipe", hold=hold)  # the run waits half-way until the test looks
    desk, keys = recipe.directory / "desk", recipe.directory / "keys"
    generate_key_pair(desk, "desk")
    generate_key_pair(keys / "runs", "cluster-runs")
    shutil.copy(desk / "desk.key", keys)  # the recipe's two scp commands
    (desk / "runs").mkdir()
    shutil.copy(keys / "runs" / "cluster-runs.key", desk / "runs")
    gui_line, run_line = monitor_recipe()
    shown = tmp_path / "shown.json"
    # pipeline-gui with the recipe's options, made to write what its window shows
    probe = recipe.start("monitor", gui_line.replace("pipeline-gui", f"{sys.executable} -m tests.monitor_probe "
                                                   f"--out={shown}", 1), host=slurm.desk)
    wait_during(probe, shown.exists, "the monitor to listen")
    run = recipe.start("run", run_line)
    job = recipe.start("job", recipe.submit_line)

    def hillas() -> dict[str, str] | None:
        runs = json.loads(shown.read_text())["runs"]
        step = runs[0]["steps"].get("HILLAS") if runs else None
        return step if step and step["workers"] == f"{CPUS}r" else None

    seen = wait_during(run, hillas, "the monitor to show the job's workers")
    origin = json.loads(shown.read_text())["runs"][0]["origin"]
    hold.touch()
    assert run.wait() == 0, run.stderr
    assert job.wait() == 0, job.stderr
    assert origin.endswith(" · key cluster-runs"), origin
    rows = re.findall(r"<tr>(.*?)</tr>", seen["hover"])
    assert len(rows) == CPUS, seen["hover"]
    for row in rows:
        cells = re.findall(r"<td>(.*?)</td>", row)
        assert cells[:2] == ["remote", f"cluster on {slurm.node.address}"], cells
        assert cells[3] == "1 thread", cells
    assert f"HILLAS</b>: {CPUS} remote workers" in seen["hover"]
    # Once the run has finished, no worker is left, and none is said to be a thread of the run.
    ended = wait_during(probe, lambda: (runs := json.loads(shown.read_text())["runs"])[0]["state"] == "FINISHED"
                        and runs[0], "the monitor to show the run finished")
    # "0r": a step of remote workers only, none left (it was "2t": its remote threads, as if the run's)
    assert ended["steps"]["HILLAS"]["workers"] == "0r", ended
    probe.popen.terminate()
    assert probe.wait() == 0, probe.stderr


@pytest.mark.parametrize(("missing", "root", "reason"), [
    ((), False, "needs root to make network namespaces"),
    (("munged", "slurmd"), True, "SLURM is not installed (apt-get install slurm-wlm munge: missing munge, slurmd)"),
])
def test_where_no_cluster_can_start_the_tests_say_why(monkeypatch: pytest.MonkeyPatch, missing: tuple[str, ...],
                                                    root: bool, reason: str) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None if name in missing else f"/usr/bin/{name}")
    monkeypatch.setattr(os, "geteuid", lambda: 0 if root else 1000)
    assert slurm_cluster.unavailable() == reason
