"""Configs of tests/semantic_steps.py run in-process in a mode; checks of what their steps collected and counted."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pipeline import Pipeline
from pipeline.execution.report import RunReport
from tests.semantic_steps import FINISH_KEY

#: The module of the steps these configs name.
MODULE = "tests.semantic_steps"


def step(name: str, cls: str, next_steps: str = "", **extra: Any) -> dict:
    """A step entry of stagers_conf (or producer_conf / consumer_conf)."""
    entry: dict[str, Any] = {"name": name, "module": MODULE, "class": cls}
    if next_steps:
        entry["next_steps"] = next_steps
    entry.update(extra)
    return entry


def collector(tmp: Path, name: str, cls: str = "Collect", **extra: Any) -> dict:
    """A step that writes what it receives to tmp/NAME.jsonl."""
    config = {"path": str(tmp / f"{name}.jsonl"), **extra.pop("config", {})}
    return step(name, cls, config=config, **extra)


def pipeline_config(producer: dict, stagers: list[dict], consumer: dict, **sections: Any) -> dict:
    """A whole config document."""
    return {
        "version": 1,
        "Pipeline": {"producer_conf": producer, "stagers_conf": stagers, "consumer_conf": consumer},
        **sections,
    }


def run(config: dict, mode: str, overrides: dict | None = None) -> RunReport:
    """Run ``config`` in ``mode`` and return the report."""
    return Pipeline.from_config(config, {"Pipeline": {"mode": mode}, **(overrides or {})}).run()


def read(tmp: Path, name: str, workers: int = 1) -> list[Any]:
    """What step ``name`` collected, in arrival order; checks that finish() wrote last, once per worker."""
    lines = [json.loads(line) for line in (tmp / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()]
    finishes = [i for i, line in enumerate(lines) if isinstance(line, dict) and FINISH_KEY in line]
    assert len(finishes) == workers, f"{name}: finish() ran {len(finishes)} times, expected {workers}"
    if workers == 1:
        assert finishes == [len(lines) - 1], f"{name}: a message arrived after finish(): {lines[finishes[0]:]}"
    return [line for i, line in enumerate(lines) if i not in finishes]


def ordered_key(value: Any) -> str:
    """``value`` as JSON text with sorted keys: the order of a multiset."""
    return json.dumps(value, sort_keys=True)


def multiset(values: Iterable[Any]) -> list[Any]:
    """``values`` sorted by their JSON text: a multiset that compares with ==."""
    return sorted(values, key=ordered_key)


def all_steps(config: dict) -> list[dict]:
    """The step entries of a config: its producer, its stagers, its consumer."""
    section = config["Pipeline"]
    return [section["producer_conf"], *section.get("stagers_conf", []), section["consumer_conf"]]


def next_of(entry: dict) -> list[str]:
    """The names in a step entry's next_steps."""
    return [n.strip() for n in entry.get("next_steps", "").split(",") if n.strip()]


def check_counts(report: RunReport, config: dict, broadcast: bool = True) -> None:
    """Counts that hold in every run.

    Every non-producer step has processed + failed == received; a step with no next steps emits
    nothing; every delivery is received (sum of emitted == sum of received). With ``broadcast``
    (no step sends to a named next step), each next step of S receives S.emitted / len(next steps),
    so a step receives the sum of what was emitted to it.
    """
    steps = all_steps(config)
    assert set(report.steps) == {s["name"] for s in steps}
    producer = steps[0]["name"]
    for entry in steps:
        counts = report[entry["name"]]
        if entry["name"] != producer:
            assert counts.processed + counts.failed == counts.received, (entry["name"], counts)
        if not next_of(entry):
            assert counts.emitted == 0, (entry["name"], counts)
    assert sum(report[s["name"]].emitted for s in steps) == sum(
        report[s["name"]].received for s in steps if s["name"] != producer
    )
    if not broadcast:
        return
    for target in steps[1:]:
        expected = 0
        for source in steps:
            targets = next_of(source)
            if target["name"] in targets:
                emitted = report[source["name"]].emitted
                assert emitted % len(targets) == 0, (source["name"], emitted, targets)
                expected += emitted // len(targets)
        assert report[target["name"]].received == expected, (target["name"], report[target["name"]], expected)


def assert_ok(report: RunReport) -> None:
    """The run succeeded: exit status 0, no step failed."""
    failures = {
        name: (s.counts.failed, s.first_error) for name, s in report.steps.items() if s.counts.failed or s.first_error
    }
    assert failures == {}, report.table()
    assert report.exit_status == 0, report.table()


def numbers(count: int, **traits: Any) -> dict:
    """The Numbers producer's class section."""
    return {"Numbers": {"count": count, **traits}}


def counts(report: Any) -> dict[str, tuple[int, int, int, int]]:
    """Each step's received, processed, emitted and failed counts."""
    return {name: (s.received, s.processed, s.emitted, s.failed) for name, s in report.steps.items()}


def run_checked_in_each_mode(tmp: Path, build: Callable[[Path], dict]) -> dict[str, RunReport]:
    """Per mode (sequential, threads): the report of a run of the config ``build`` makes for the mode's own folder
    in ``tmp``, a run that finished without failure with the counts its config implies."""
    done = {}
    for mode in ("sequential", "threads"):
        (tmp / mode).mkdir()
        config = build(tmp / mode)
        report = run(config, mode)
        assert_ok(report)
        check_counts(report, config, broadcast=False)
        done[mode] = report
    return done
