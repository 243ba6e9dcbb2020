"""Config documents of tests/engine_steps.py, run in-process: the engine tests' step, chain and run."""

from __future__ import annotations

import signal
import threading
from typing import Any

from pipeline import Pipeline

#: The module of the steps these configs name.
STEPS = "tests.engine_steps"
#: Seconds a random DAG's run may take before the test calls it hung (they take about a second).
DAG_RUN_SECONDS = 10.0


def step(name: str, cls: str, next_steps: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """One step entry of a config."""
    entry: dict[str, Any] = {"name": name, "class": cls, "module": STEPS, **extra}
    if next_steps:
        entry["next_steps"] = next_steps
    return entry


def chain(producer: dict, stagers: list[dict], consumer: dict, **sections: Any) -> dict[str, Any]:
    """A config document."""
    return {"version": 1, "Pipeline": {"producer_conf": producer, "stagers_conf": stagers,
                                       "consumer_conf": consumer}, **sections}


def run(document: dict[str, Any], mode: str = "threads") -> Any:
    """Run a config document in ``mode``."""
    return Pipeline.from_config(document, {"Pipeline": {"mode": mode}}).run()


def end_or_stop(pipeline: Pipeline, thread: threading.Thread, after: str = "") -> None:
    """Wait DAG_RUN_SECONDS for the run in ``thread`` to end; if it does not, stop it at once (as a second Ctrl+C)
    and fail, saying so (``after``: what the test had done): hypothesis would otherwise go on beside a hung run."""
    thread.join(DAG_RUN_SECONDS)
    if thread.is_alive():
        for _ in range(2):
            pipeline.interrupt(signal.SIGINT)
        thread.join(DAG_RUN_SECONDS)
        raise AssertionError(f"the run did not end within {DAG_RUN_SECONDS:g} s{after}")
