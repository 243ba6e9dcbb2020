"""W6: the wall time of ``pipeline-run`` on a one-message config, launch to exit."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

from .plan import Plan
from .report import ENGINE, Target, Workload
from .workloads import BASIC, SEQUENTIAL, Broken, Progress, chain, measure, step

#: What each row launches: ``python ARGS``; ``{config}`` stands for the one-message config file.
COMMANDS = {
    ENGINE: ["-m", "pipeline", "--config={config}"],
    SEQUENTIAL: ["-m", "pipeline", "--config={config}", "--Pipeline.mode=sequential"],
    "python -c pass": ["-c", "pass"],
    "python, imports only": ["-c", "import pipeline.app, pipeline.engine, algorithms.basic"],
}


def write_config(directory: Path) -> tuple[Path, Path]:
    """A one-message config (Counter -> PassThrough -> JsonLinesWriter) and the file it writes."""
    output = directory / "out.jsonl"
    document = chain(step("P", "Counter", BASIC), step("S", "PassThrough", BASIC),
                     step("C", "JsonLinesWriter", BASIC), Counter={"count": 1},
                     JsonLinesWriter={"path": str(output)})
    config = directory / "one.json"
    config.write_text(json.dumps(document), encoding="utf-8")
    return config, output


def launch(args: list[str], directory: Path, output: Path) -> float:
    """Seconds from launching ``python ARGS`` to its exit; a pipeline run must have written its one line."""
    output.unlink(missing_ok=True)
    start = time.perf_counter()
    try:
        child = subprocess.run([sys.executable, *args], cwd=directory, capture_output=True, text=True,
                               timeout=60, check=False)
    except subprocess.TimeoutExpired:
        raise Broken(f"{' '.join(args)} did not end within 60 s") from None
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        raise Broken(f"exit status {child.returncode}: {child.stderr.strip()[-500:]}")
    if "pipeline" in args and output.read_text(encoding="utf-8").splitlines() != ["0"]:
        raise Broken(f"the run did not write exactly its one message to {output}")
    return seconds


def startup(plan: Plan, progress: Progress) -> Workload:
    """W6: launch-to-exit time of ``python -m pipeline`` (pipeline-run), with interpreter references."""
    work = Workload("W6", "start-up: pipeline-run (python -m pipeline) on a one-message config, launch to exit")
    case = work.case("wall time", "s", higher_is_better=False)
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as tmp:
        directory = Path(tmp)
        config, output = write_config(directory)
        for r in range(plan.repeat):
            progress(f"W6 start-up, repeat {r + 1}/{plan.repeat}")
            for design, template in COMMANDS.items():
                args = [arg.format(config=config) for arg in template]
                measure(case, design, partial(launch, args, directory, output), progress)
    work.targets = [Target("engine threads <= 0.5 s", case.row(ENGINE).median, 0.5, at_least=False)]
    return work
