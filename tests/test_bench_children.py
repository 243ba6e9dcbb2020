"""pipeline-bench's child processes: a remote worker that fails, a user's pipeline.py in the current directory, a
stop while the warm-up's worker starts, a workload's process that dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.bench import loopback, workloads
from pipeline.bench.designs import REMOTE
from pipeline.bench.plan import QUICK
from pipeline.bench.report import BROKEN
from tests.cli_helpers import ROOT
from tests.process_helpers import kill_group, live_in_group, wait_for

#: The console script, as a user runs it (``python -m pipeline.bench`` would itself import a pipeline.py beside it).
BENCH = str(Path(sys.executable).parent / "pipeline-bench")
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def worker_cmdlines(group: int) -> list[str]:
    """The command lines of the processes of ``group`` that are a pipeline-worker."""
    found = []
    for pid in live_in_group(group):
        try:
            found.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue
    return [line for line in found if "pipeline.cli.worker" in line]


@pytest.mark.timeout(60)
def test_a_remote_worker_that_fails_breaks_its_row_at_once_with_its_own_error(monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker that died before joining left the run waiting out worker_timeout (60 s), and the row said 'no worker
    joined', not the worker's own error."""
    said = "No module named 'pipeline.cli'; 'pipeline' is not a package"
    monkeypatch.setattr(loopback, "python", lambda *args: [sys.executable, "-c", f"import sys; sys.exit({said!r})"])
    monkeypatch.setattr(workloads, "TINY_DESIGNS", (REMOTE,))
    work = workloads.tiny(QUICK, lambda line: None)
    row = work.cases[0].row(REMOTE)
    assert row.status == BROKEN
    assert row.note == f"the remote worker ended with 1: {said}"


@pytest.mark.timeout(120)
def test_a_pipeline_py_in_the_current_directory_does_not_shadow_the_package(tmp_path: Path) -> None:
    """The remote worker was ``python -m pipeline.cli.worker`` in the user's directory: a pipeline.py there was
    imported in place of the package (2 x 60 s of waiting, exit 1, the row broken)."""
    (tmp_path / "pipeline.py").write_text('print("user")\n')
    result = subprocess.run([BENCH, "--quick", "--only=W1,W5,W6"], cwd=tmp_path, env=ENV, capture_output=True,
                            text=True, timeout=110, check=False)
    assert result.returncode == 0, result.stderr
    assert BROKEN not in result.stderr and "user" not in result.stdout


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_stop_to_the_group_as_the_warm_up_worker_starts_ends_the_bench_at_once(signum: int) -> None:
    """The group's signal killed the warm-up's remote worker before it joined, and the bench, holding the stop until
    the warm-up's run ended, waited out the run's worker_timeout: 60 s, deaf to a second Ctrl+C."""
    bench = subprocess.Popen([BENCH, "--quick", "--only=W6"], cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        wait_for(lambda: worker_cmdlines(bench.pid), 30, "the warm-up's remote worker")
        os.killpg(bench.pid, signum)
        rest = bench.communicate(timeout=15)[1]  # docs/cli.md: tidied up within 10 s
    finally:
        kill_group(bench)
    assert bench.returncode == 128 + signum
    assert rest.rstrip().splitlines()[-1] == "pipeline-bench: interrupted" and "Traceback" not in rest, rest
    wait_for(lambda: not live_in_group(bench.pid), 10, "no process of the bench's session left")


def children(pid: int) -> list[int]:
    """The pids of the children of process ``pid``."""
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@pytest.mark.timeout(120)
def test_a_workload_whose_process_is_killed_costs_only_its_own_table() -> None:
    """A workload's process killed (as the OOM killer does) ended the bench with 'its traceback is above' and no
    traceback, the finished workloads' tables thrown away and the workloads after it never run."""
    bench = subprocess.Popen([BENCH, "--quick", "--only=W1,W2,W6"], cwd=ROOT, env=ENV, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert bench.stderr is not None
        for line in bench.stderr:
            if line.startswith("W2 large"):
                break
        for child in children(bench.pid):  # the bench's one child: W2's process
            os.kill(child, signal.SIGKILL)
        out, rest = bench.communicate(timeout=100)
    finally:
        kill_group(bench)
    assert bench.returncode == 1
    assert "pipeline-bench: workload W2 failed: its process was killed by SIGKILL\n" in rest, rest
    assert "W1  tiny messages" in out and "W2  not measured\n    FAILED: its process was killed by SIGKILL" in out
    assert "W6 start-up" in rest and "W6  start-up" in out
