"""W6: the wall time of ``pipeline-run`` on a one-message config, launch to exit."""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from functools import partial
from pathlib import Path

from pipeline.bench.designs import ENGINE, IMPORTS, PYTHON, SEQUENTIAL
from pipeline.bench.interpreter import python
from pipeline.bench.plan import Plan
from pipeline.bench.report import Target, Workload
from pipeline.bench.workloads import Broken, Progress, chain, measure, step


def commands(config: Path, gui: bool = False) -> dict[str, list[str]]:
    """What each row launches, ``python ARGS``; a pipeline run publishes to the monitor only with ``gui``."""
    run = ["-m", "pipeline", f"--config={config}", *([] if gui else ["--Pipeline.gui=False"])]
    return {
        ENGINE: run,
        SEQUENTIAL: [*run, "--Pipeline.mode=sequential"],
        PYTHON: ["-c", "pass"],
        IMPORTS: ["-c", "import pipeline.cli.run, pipeline.engine, pipeline.bench.steps"],
    }


def write_config(directory: Path) -> tuple[Path, Path]:
    """A one-message config (TinyDicts -> PassThrough -> Tally) and the file its Tally writes."""
    output = directory / "tally.json"
    document = chain(step("P", "TinyDicts"), step("S", "PassThrough"), step("C", "Tally"),
                     TinyDicts={"count": 1}, Tally={"path": str(output)})
    config = directory / "one.json"
    config.write_text(json.dumps(document), encoding="utf-8")
    return config, output


def launch(args: list[str], directory: Path, output: Path) -> float:
    """Seconds from launching ``python ARGS`` to its exit; a pipeline run must have counted its one message."""
    output.unlink(missing_ok=True)
    start = time.perf_counter()
    try:
        child = subprocess.run(python(*args), cwd=directory, capture_output=True, text=True,
                               timeout=60, check=False)
    except subprocess.TimeoutExpired:
        raise Broken(f"{' '.join(args)} did not end within 60 s") from None
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        raise Broken(f"exit status {child.returncode}: {child.stderr.strip()[-500:]}")
    if "pipeline" in args and (not output.exists() or json.loads(output.read_text(encoding="utf-8")) != [1, 0]):
        raise Broken(f"the run's consumer did not count exactly its one message (in {output})")
    return seconds


def startup(plan: Plan, progress: Progress) -> Workload:
    """W6: launch-to-exit time of ``python -m pipeline`` (pipeline-run), with interpreter references."""
    work = Workload("W6", "start-up: pipeline-run (python -m pipeline) on a one-message config, from launch to "
                          "exit")
    case = work.case("wall time", "s", higher_is_better=False)
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp:
        directory = Path(tmp)
        config, output = write_config(directory)
        for r in range(plan.repeat):
            progress(f"W6 start-up, repeat {r + 1}/{plan.repeat}")
            for design, args in commands(config, plan.gui).items():
                measure(case, design, partial(launch, args, directory, output), progress)
    if not plan.gui:
        work.notes.append("the pipeline-run rows run with --Pipeline.gui=False (pipeline-bench --gui: without it)")
    work.targets = [Target("engine threads <= 0.5 s", case.row(ENGINE).figures, 0.5, at_least=False)]
    return work
