"""The freed memory a run's process keeps for reuse (``keep_freed_memory``, engine.allocator): it is reused, run after
run, not piled up in a new malloc arena by each run's new threads; and the worker processes, forked from the
zygote (engine.zygote), do not carry it. Each check runs a script of its own: malloc's settings are the process's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.process_helpers import REPO

#: A script that runs camera events (148 KB each) through a stage with the step keys of its second argument (2 worker
#: processes, or 2 worker threads) RUNS times in one process, as a notebook or a benchmark does, and prints its
#: resident MiB after each run.
REPEATED_RUNS = """
import json, sys
from pipeline import Pipeline
from pipeline.bench import analysis, events
from tests.start_steps import resident_mib

sizes = []
for run in range(int(sys.argv[1])):
    document = analysis.document(events.ANALYSES["one step"], 400, f"run {run}", json.loads(sys.argv[2]))
    report = Pipeline.from_config(document, {"Pipeline": {"gui": False, "progress": False,
                                                          "keep_freed_memory": True}}).run()
    assert report.exit_status == 0 and report["C"].processed == 400, report
    sizes.append(resident_mib())
print(json.dumps(sizes))
"""

#: A script that keeps 120 MiB of freed memory (malloc's, once a run has set keep_freed_memory: it keeps up to 128 MiB),
#: then runs a stage in 2 worker processes that say how much memory they hold; its last line is its resident MiB.
FREED_BEFORE_THE_RUN = """
import io, json, sys
import numpy as np
from pipeline import Pipeline
from tests.start_steps import resident_mib

def document(count):
    return {"version": 1, "Pipeline": {
        "gui": False, "progress": False, "keep_freed_memory": True,
        "producer_conf": {"name": "P", "module": "algorithms.basic", "class": "Counter", "next_steps": "S"},
        "stagers_conf": [{"name": "S", "module": "tests.start_steps", "class": "Origin", "nb_process": 2,
                          "next_steps": "W"}],
        "consumer_conf": {"name": "W", "module": "tests.failure_steps", "class": "MarkedWriter"}},
        "Counter": {"count": count}, "MarkedWriter": {"path": sys.argv[1]}}

captured, sys.stdout = sys.stdout, io.StringIO()  # the workers' lines
assert Pipeline.from_config(document(1)).run().exit_status == 0  # sets malloc's keep_freed_memory
held = [np.ones(1 << 17) for _ in range(120)]  # 120 MiB, each page written, by the main thread: the main arena
del held  # freed: kept by malloc for reuse
before = resident_mib()
assert Pipeline.from_config(document(0)).run().exit_status == 0
sys.stdout = captured
print(json.dumps(before))
"""


@pytest.mark.parametrize("stage", [{"nb_process": 2}, {"nb_thread": 2}], ids=["processes", "threads"])
def test_runs_one_after_another_reuse_what_they_kept(stage: dict[str, int]) -> None:
    """Each run's threads are new and take over the arenas of the last run's in another order; with glibc's default
    of up to 8 arenas a core, each run kept its in-flight events in another one until all held some: a process that
    ran 60 pipelines held 427 MiB and forked ever slower (threads: 866ae27 grew 114 MiB in ten runs, now some 50)."""
    runs = 10
    done = subprocess.run([sys.executable, "-c", REPEATED_RUNS, str(runs), json.dumps(stage)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    sizes = json.loads(done.stdout)
    assert len(sizes) == runs
    # The first runs make what the later ones reuse: two arenas' worth of events in flight at most (226 MiB more
    # with an arena per run's thread).
    assert sizes[-1] - sizes[0] < 128, f"resident MiB after each run: {[round(s) for s in sizes]}"


def test_worker_processes_do_not_carry_what_their_run_freed_in_the_main_arena(tmp_path) -> None:
    """The zygote gives back the freed memory it shares with the run's process as it starts (what malloc can give
    back: the main arena's): its worker processes, forked from it, neither copy its page tables nor hold it."""
    out = tmp_path / "out.jsonl"
    done = subprocess.run([sys.executable, "-c", FREED_BEFORE_THE_RUN, str(out)], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    before = json.loads(done.stdout.splitlines()[-1])  # after the workers' lines
    assert before > 120  # the script's premise: its process kept what it freed
    said = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    workers = [each for each in said if "rss_mib" in each]
    assert len(workers) == 2
    for worker in workers:
        assert worker["rss_mib"] < before - 100, f"a worker process holds {worker['rss_mib']:.0f} MiB of {before:.0f}"
