"""Run ``pipeline-run`` as a real subprocess, and write the configs it reads."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

#: The repository root: the subprocess runs there, so ``tests.*`` and ``configs/`` resolve.
ROOT = Path(__file__).resolve().parent.parent


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    """``python -m pipeline ARGS`` from the repository root, with its output captured as text."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def chain_config(output: str = "out.jsonl") -> dict[str, Any]:
    """A valid config: COUNT (Counter) -> PASS (PassThrough, 2 threads) -> WRITE (JsonLinesWriter to ``output``)."""
    return {
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "COUNT", "module": "algorithms.basic", "class": "Counter", "next_steps": "PASS"},
            "stagers_conf": [
                {"name": "PASS", "module": "algorithms.basic", "class": "PassThrough", "nb_thread": 2,
                 "next_steps": "WRITE"}
            ],
            "consumer_conf": {"name": "WRITE", "module": "algorithms.basic", "class": "JsonLinesWriter"},
        },
        "Counter": {"count": 5},
        "JsonLinesWriter": {"path": output},
    }


def write_config(directory: Path, document: Any) -> Path:
    """Write ``document`` as JSON (or as is, if it is a string) to a config file in ``directory``."""
    path = directory / "pipeline.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document, indent=2), encoding="utf-8")
    return path


def read_lines(path: Path) -> list[Any]:
    """The JSON values of a JSON-lines file."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def printer_config(tmp_path: Path, nb_thread: int, nb_process: int = 0) -> Path:
    """COUNT (100,000 numbers) -> PRINT (Printer, to stdout), in ``nb_process`` worker processes if not 0."""
    path = tmp_path / "print.json"
    path.write_text(json.dumps({
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "COUNT", "module": "algorithms.basic", "class": "Counter", "next_steps": "PRINT"},
            "consumer_conf": {"name": "PRINT", "module": "algorithms.basic", "class": "Printer",
                              "nb_thread": nb_thread, "nb_process": nb_process},
        },
        "Counter": {"count": 100_000},
    }), encoding="utf-8")
    return path
