"""A step whose code forks (os.fork) a child that leaves that code as a script ends, by sys.exit() or an exception: the
child ends there, with Python's exit status, in every mode. Caught as the step's own failure, the child ran a copy of
the engine's loop for ever: a run in threads hung in the parent's waitpid(), worker processes' children spun at full
CPU after their run ended."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.semantic_helpers import collector, pipeline_config, read, run, step

pytestmark = pytest.mark.timeout(60)

#: Per mode: the run's mode, and the keys of the forking stage.
MODES: dict[str, tuple[str, dict[str, Any]]] = {
    "sequential": ("sequential", {}),
    "threads": ("threads", {"nb_thread": 2}),
    "processes": ("threads", {"nb_process": 2}),
}


@pytest.mark.parametrize(("child", "status"), [("exit", 3), ("raise", 1)])
@pytest.mark.parametrize("mode", MODES)
def test_a_child_the_step_forks_ends_where_it_leaves_the_steps_code(tmp_path: Path, mode: str, child: str,
                                                                    status: int) -> None:
    how, keys = MODES[mode]
    config = pipeline_config(step("P", "Numbers", "S"), [step("S", "ForksOnOne", "C", **keys)],
                             collector(tmp_path, "C"), Numbers={"count": 4}, ForksOnOne={"child": child})
    report = run(config, how)
    assert report.exit_status == 0, report.table()
    assert (report["S"].processed, report["S"].failed, report["C"].processed) == (4, 0, 4)
    assert sorted(read(tmp_path, "C"), key=str) == sorted([0, [1, status], 2, 3], key=str)
