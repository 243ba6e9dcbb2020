"""What a step starts in the run's process and leaves there: a helper process it forks gets the process's own signal
handlers back (not pipeline-run's), and a thread it leaves running does not keep pipeline-run from exiting."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.failure_helpers import REPO, config, pipeline_run, written

#: The steps of these tests.
STEPS = "tests.leftover_steps"

#: A sequential run from the Python API of the config given as argv[1]; prints its exit status.
PYTHON_API_RUN = """
import sys
from pipeline import Pipeline
print(Pipeline.from_config(sys.argv[1], {"Pipeline": {"mode": "sequential"}}).run().exit_status)
"""


@pytest.mark.parametrize("mode", ["sequential", "threads"])
@pytest.mark.parametrize("at_once", [False, True])
def test_a_helper_a_step_forks_ends_on_sigterm_and_the_run_goes_on(tmp_path: Path, mode: str, at_once: bool) -> None:
    """It kept pipeline-run's handlers: it ignored terminate() (Pool.__exit__ hung), and the signal's byte reached
    the run's wake-up pipe, which took it for its own SIGTERM (exit 143). ``at_once``: terminate() right after
    start(), while the child may not have its handlers back yet."""
    count = 20 if at_once else 3
    path = config(tmp_path, {"module": STEPS, "class": "ForksHelper"}, Counter={"count": count},
                  ForksHelper={"at_once": at_once})
    result = pipeline_run(path, f"--Pipeline.mode={mode}")
    assert result.returncode == 0, result.stderr
    outputs = written(tmp_path)
    assert [output["exitcode"] for output in outputs[:-1]] == [-15] * count
    assert outputs[-1] == {"finished": True}
    assert "SIGTERM" not in result.stderr


def test_a_helper_forked_in_a_sequential_python_api_run_has_python_s_own_sigint_handler(tmp_path: Path) -> None:
    """The run's SIGINT handler (wrapping Python's own) is the run's: the helper gets Python's own."""
    path = config(tmp_path, {"module": STEPS, "class": "ForksHelper"}, Counter={"count": 2})
    result = subprocess.run([sys.executable, "-c", PYTHON_API_RUN, str(path)], cwd=REPO, capture_output=True,
                            text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert (result.returncode, result.stdout) == (0, "0\n"), result.stderr
    assert [(output["exitcode"], output["python_sigint"]) for output in written(tmp_path)[:-1]] == [(-15, True)] * 2


@pytest.mark.parametrize("mode", ["sequential", "threads"])
def test_pipeline_run_exits_with_its_status_past_the_threads_a_step_left_running(tmp_path: Path, mode: str) -> None:
    """It printed "exit status 0" and then waited for ever for the threads (not daemons) a step started."""
    path = config(tmp_path, {"module": STEPS, "class": "LeavesThread"}, Counter={"count": 5})
    result = pipeline_run(path, f"--Pipeline.mode={mode}")
    assert result.returncode == 0, result.stderr
    assert written(tmp_path) == [*range(5), {"finished": True}]
    last = result.stderr.splitlines()[-2:]
    assert last[0] == "exit status 0"
    assert last[1].startswith("pipeline-run: exiting without waiting for 5 threads a step left running (left-")
    assert last[1].endswith(" and 2 more)")


@pytest.mark.parametrize("mode", ["sequential", "threads"])
def test_the_work_of_a_thread_a_step_left_running_is_not_lost_at_the_exit(tmp_path: Path, mode: str) -> None:
    """A thread a step starts as a plain script does is no daemon, in every mode of the run's process: the exit waits
    for it (in threads mode it took the daemon flag of the engine's thread, and died unheard with the process)."""
    done = tmp_path / "done.txt"
    path = config(tmp_path, {"module": STEPS, "class": "LeavesWork"}, Counter={"count": 3},
                  LeavesWork={"path": str(done)})
    result = pipeline_run(path, f"--Pipeline.mode={mode}")
    assert result.returncode == 0, result.stderr
    assert sorted(done.read_text(encoding="utf-8").splitlines()) == [f"{n} daemon=False" for n in range(3)]
    assert result.stderr.splitlines()[-1] == "exit status 0"


@pytest.mark.parametrize("mode", ["sequential", "threads"])
def test_pipeline_run_exits_with_its_status_past_a_helper_process_a_step_left(tmp_path: Path, mode: str) -> None:
    """multiprocessing's atexit hook joins the helper, which runs for a minute: pipeline-run ends anyway, saying so
    (it waited until a signal, which it then ignored)."""
    path = config(tmp_path, {"module": STEPS, "class": "LeavesHelper"}, Counter={"count": 3})
    result = pipeline_run(path, f"--Pipeline.mode={mode}")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-2:] == [
        "exit status 0", "pipeline-run: exiting without waiting for what a step left running (a helper process, or "
        "an atexit hook)"]


@pytest.mark.parametrize("mode", ["sequential", "threads"])
def test_the_idle_threads_of_a_steps_thread_pool_let_its_atexit_hooks_run(tmp_path: Path, mode: str) -> None:
    """A thread pool's threads (no daemons, in every mode) end as the
    interpreter exits: they are not threads left running, and the step's atexit hook still runs (it did not: the
    command left at once, naming them)."""
    hooked = tmp_path / "atexit.txt"
    path = config(tmp_path, {"module": STEPS, "class": "UsesAPool"}, Counter={"count": 3},
                  UsesAPool={"path": str(hooked)})
    result = pipeline_run(path, f"--Pipeline.mode={mode}")
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[-1] == "exit status 0"
    assert hooked.read_text(encoding="utf-8") == "atexit ran\n"

