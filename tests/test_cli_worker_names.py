"""Worker processes say who they are (issues 26.7 and 26.13): ``ps`` shows a run's worker process as
``pipeline-run: step STAGE worker process N`` and a remote one as ``pipeline-worker: step STAGE worker
process N``, not ``python3 -c import sys; ...``; what a run's own worker process prints on stderr
names the run, never ``pipeline-worker``, which its user never ran; ``pipeline-worker`` itself shows the step
it keeps worker processes for. Real processes, /proc read."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from tests.process_helpers import STEPS, alive, chain, kill_group, pids, start_run, wait_for
from tests.remote_helpers import Launcher, wait_during
from tests.remote_steps import marker_pids

pytestmark = pytest.mark.timeout(60)

#: Heartbeats a worker process may miss: 3 s of silence at 0.2 s a beat.
LIVENESS = 15


def title(pid: int) -> str:
    """What ``ps -o args`` shows for process ``pid``."""
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()


def test_a_runs_worker_processes_show_their_step_and_slot_and_speak_as_the_run(tmp_path: Path) -> None:
    workers, marker = tmp_path / "workers", tmp_path / "holding"
    path = chain(tmp_path, {"nb_process": 2}, {"class": "AppendValues", "module": STEPS, "nb_process": 1},
                 count=1000, Trigger={"at": 5, "action": "hold", "marker": str(marker), "pid_file": str(workers)},
                 AppendValues={"path": str(tmp_path / "values"), "pid_file": str(workers)})
    # Heartbeats slow enough that no worker process is taken for dead on a loaded machine, fast enough that
    # they find their run gone within seconds.
    run = start_run(path, "--Pipeline.heartbeat_interval=0.2", f"--Pipeline.heartbeat_liveness={LIVENESS}")
    try:
        wait_for(lambda: bool(pids(marker)) and len(pids(workers)) == 3, 15, "3 worker processes, one holding")
        started = pids(workers)
        assert sorted(title(pid) for pid in started) == [
            "pipeline-run: step STAGE worker process 0", "pipeline-run: step STAGE worker process 1",
            "pipeline-run: step WRITER worker process 2"]
        os.kill(run.pid, signal.SIGKILL)  # its worker processes die with it
        run.wait(5)
        wait_for(lambda: not any(map(alive, started)), 5, f"the worker processes {started} to leave")
    finally:
        kill_group(run)
        _, stderr = run.communicate(timeout=10)  # the pipes end once the last worker process has left
    assert "pipeline-worker" not in stderr


def test_a_remote_worker_shows_its_step_and_slot(launch: Launcher) -> None:
    run = launch.run(launch.chain(hold=True))
    worker = launch.worker()
    joined = wait_during(run, lambda: marker_pids(launch.gate, "init") - {run.pid}, "the remote worker to join")
    assert title(worker.pid) == "pipeline-worker: step TAG, 1 worker process"
    assert [title(pid) for pid in joined] == [f"pipeline-worker: step TAG worker process {slot}"
                                             for slot in sorted(int(title(pid).rsplit(" ", 1)[1]) for pid in joined)]
    launch.hold.touch()
    assert run.wait() == 0, run.stderr
    assert worker.wait() == 0, worker.stderr
