"""Run ``pipeline-run`` with worker processes as a test would watch it: in its own process group (so
nothing it started outlives a failed test), every wait bounded, worker pids checked in /proc; the
COUNT -> STAGE -> WRITER config of tests/process_steps.py that most of these runs run."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
#: The module of the steps that kill, stop or block their own worker process (tests/process_steps.py).
STEPS = "tests.process_steps"
#: Seconds between two looks at a file or at /proc while a test waits for something (always with a deadline).
POLL_SECONDS = 0.02


@dataclass
class Finished:
    """How a pipeline-run ended."""

    returncode: int
    stdout: str
    stderr: str


def start_run(config: Path, *options: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    """Start ``pipeline-run --config=CONFIG OPTIONS`` in a new session, its output captured."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "pipeline", f"--config={config}", "--no-progress", *options],
                            cwd=REPO, env=environment, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def finish_run(run: subprocess.Popen, timeout: float) -> Finished:
    """Wait (at most ``timeout`` seconds) for ``run`` to end; if it does not, kill its whole process group
    and fail the test with what it wrote."""
    try:
        out, err = run.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(run)
        out, err = run.communicate()
        raise AssertionError(f"pipeline-run did not end within {timeout:g} s; its stderr:\n{err}") from None
    finally:
        kill_group(run)  # whatever it left behind
    return Finished(run.returncode, out, err)


def run_to_end(config: Path, *options: str, timeout: float = 20.0, env: dict[str, str] | None = None) -> Finished:
    """Run pipeline-run to its end (bounded)."""
    return finish_run(start_run(config, *options, env=env), timeout)


def kill_group(run: subprocess.Popen) -> None:
    """SIGKILL every process left in ``run``'s process group."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(run.pid, signal.SIGKILL)


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    """Return once ``condition()`` holds; fail the test if it does not within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"waited {timeout:g} s for {what}")
        time.sleep(POLL_SECONDS)


def lines(path: Path) -> list[str]:
    """The complete lines of ``path`` ([] while it does not exist)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return text.splitlines() if text.endswith("\n") else text.splitlines()[:-1]


def pids(path: Path) -> set[int]:
    """The pids in the first column of the lines of ``path``."""
    return {int(line.split()[0]) for line in lines(path)}


def alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie, dead but not yet reaped by its parent, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def live_in_group(group: int) -> list[int]:
    """The processes of process group ``group`` that still run (zombies left for init to reap do not)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if fields[0] != "Z" and int(fields[2]) == group:
            found.append(int(stat.parent.name))
    return found


def report_line(stderr: str, step: str) -> str:
    """The report's line on the worker processes of ``step``: redeliveries and replacements."""
    found = [line for line in stderr.splitlines() if line.startswith(f"{step}: ") and "delivered again" in line]
    assert len(found) == 1, stderr
    return found[0]


def chain(tmp: Path, stage: dict[str, Any], writer: dict[str, Any] | None = None, count: int = 300,
          **sections: Any) -> Path:
    """COUNT (Counter) -> STAGE -> WRITER (by default MarkedWriter into tmp/out.jsonl), as a config file."""
    document = {
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "COUNT", "module": "algorithms.basic", "class": "Counter",
                              "next_steps": "STAGE"},
            "stagers_conf": [{"name": "STAGE", "module": STEPS, "class": "Trigger", "next_steps": "WRITER",
                              **stage}],
            "consumer_conf": {"name": "WRITER", "module": "tests.failure_steps", "class": "MarkedWriter",
                              **(writer or {})},
        },
        "Counter": {"count": count},
        **({} if writer else {"MarkedWriter": {"path": str(tmp / "out.jsonl")}}),
        **sections,
    }
    path = tmp / "pipeline.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def written(tmp: Path) -> list[Any]:
    """What MarkedWriter wrote, its finish line checked and left out."""
    values = [json.loads(line) for line in lines(tmp / "out.jsonl")]
    assert values and values[-1] == {"finished": True}
    return values[:-1]


#: One number in this many MostlyToAll sends to step A alone, and another one it returns as an array
#: (tests/process_steps.py).
EVERY = 25


def two_next_steps(tmp: Path, count: int, stage: dict[str, Any]) -> dict[str, Any]:
    """P (Numbers) -> R (MostlyToAll, with the step keys ``stage``) -> A and B (NumbersAndArrays into tmp/A.jsonl and
    tmp/B.jsonl), as a config document: most of R's RESULTs go on as they came, the others are taken apart."""
    def recorder(name: str) -> dict[str, Any]:
        return {"name": name, "module": STEPS, "class": "NumbersAndArrays",
                "config": {"path": str(tmp / f"{name}.jsonl")}}

    return {
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "P", "module": "tests.semantic_steps", "class": "Numbers", "next_steps": "R"},
            "stagers_conf": [{"name": "R", "module": STEPS, "class": "MostlyToAll", "next_steps": "A,B",
                              "config": {"every": EVERY, "alone": "A"}, **stage}, recorder("A")],
            "consumer_conf": recorder("B"),
        },
        "Numbers": {"count": count},
    }


def assert_each_output_went_where_it_goes_once(tmp: Path, count: int, emitted: int, received: int) -> None:
    """What A and B of ``two_next_steps`` recorded: each number once in each, but those R sent to A alone, and the
    arrays as arrays; R ``emitted`` as many outputs as A and B ``received`` together."""
    alone = [n for n in range(count) if n % EVERY == 1]
    arrays = [["array", n] for n in range(count) if n % EVERY == 2]
    plain = [n for n in range(count) if n % EVERY not in (1, 2)]
    got = {name: sorted(lines(tmp / f"{name}.jsonl")) for name in "AB"}
    assert got["A"] == sorted(map(json.dumps, plain + alone + arrays))
    assert got["B"] == sorted(map(json.dumps, plain + arrays))
    assert emitted == received == 2 * count - len(alone)
