"""A config in which no step has ``next_steps`` runs as a linear chain in list order, in every mode,
as the first ctapipe pipeline ran its documented examples; a config that gives some steps
``next_steps`` and not the producer is refused."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from pipeline import Pipeline
from pipeline.config import load_config
from pipeline.monitor import render_graph
from tests.cli_helpers import chain_config, read_lines, run_cli, write_config

STEPS = "tests.config_steps"
SETTINGS = {"gui": False, "progress": False}


def linear_config(output: Path, stagers: list[str], producer: str = "Counter", count: int = 3) -> dict[str, Any]:
    """Producer COUNT, AppendName stagers named ``stagers`` in that order, consumer WRITE: no next_steps at all."""
    module = STEPS if producer == "SendThenYield" else "algorithms.basic"
    return {
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "COUNT", "module": module, "class": producer},
            "stagers_conf": [{"name": name, "module": STEPS, "class": "AppendName"} for name in stagers],
            "consumer_conf": {"name": "WRITE", "module": "algorithms.basic", "class": "JsonLinesWriter"},
        },
        producer: {"count": count},
        "JsonLinesWriter": {"path": str(output)},
    }


def run(document: dict[str, Any], mode: str) -> int:
    """Run ``document`` in ``mode``; its exit status."""
    return Pipeline.from_config(document, {"Pipeline": {"mode": mode, **SETTINGS}}).run().exit_status


@pytest.mark.parametrize("mode", ["threads", "sequential"])
def test_the_steps_run_in_list_order(tmp_path: Path, mode: str) -> None:
    """Every message goes through the stagers in the order of the list (not of their names)."""
    output = tmp_path / "out.jsonl"
    assert run(linear_config(output, ["B", "A", "C"]), mode) == 0
    assert sorted(read_lines(output)) == ["0>B>A>C", "1>B>A>C", "2>B>A>C"]


@pytest.mark.parametrize("mode", ["threads", "sequential"])
def test_without_stagers_the_producer_sends_to_the_consumer(tmp_path: Path, mode: str) -> None:
    output = tmp_path / "out.jsonl"
    assert run(linear_config(output, []), mode) == 0
    assert read_lines(output) == [0, 1, 2]


@pytest.mark.parametrize("mode", ["threads", "sequential"])
def test_a_producer_in_the_ctapipe_style(tmp_path: Path, mode: str) -> None:
    """``self.send_msg(x)`` then a bare ``yield``, as ctapipe's pipeline documentation wrote a producer."""
    output = tmp_path / "out.jsonl"
    assert run(linear_config(output, ["PASS"], producer="SendThenYield", count=5), mode) == 0
    assert sorted(read_lines(output)) == [f"{number}>PASS" for number in range(5)]


def test_the_chain_is_filled_in_when_the_config_is_loaded(tmp_path: Path) -> None:
    """Every mode and --graph see the same next steps, and the config says it was chained."""
    config = load_config(linear_config(tmp_path / "out.jsonl", ["B", "A"]))
    assert {name: step.next_steps for name, step in config.steps.items()} == {
        "COUNT": ("B",), "B": ("A",), "A": ("WRITE",), "WRITE": ()
    }
    assert config.linear
    assert not load_config(chain_config()).linear


def test_one_info_line_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="pipeline.config"):
        load_config(linear_config(tmp_path / "out.jsonl", ["B", "A"]))
    assert [(record.levelname, record.getMessage()) for record in caplog.records] == [
        ("INFO", "<config>: no step has next_steps: the steps run as a linear chain in list order: "
                 "COUNT -> B -> A -> WRITE")
    ]


def test_pipeline_run_logs_the_line_at_start_up(tmp_path: Path) -> None:
    """Shown with --log-level=INFO, before the run's output."""
    path = write_config(tmp_path, linear_config(tmp_path / "out.jsonl", ["PASS"]))
    result = run_cli(f"--config={path}", "--log-level=INFO", "--no-progress", "--Pipeline.gui=False")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if "pipeline.config" in line]
    assert len(lines) == 1
    assert lines[0].endswith(f"INFO pipeline.config: {path}: no step has next_steps: the steps run as a linear "
                             "chain in list order: COUNT -> PASS -> WRITE")
    assert result.stderr.index("pipeline.config") < result.stderr.index("wall time")


@pytest.mark.parametrize(("fmt", "comment"), [("mermaid", "    %% "), ("dot", "    // ")])
def test_the_graph_says_so_in_a_comment(tmp_path: Path, fmt: str, comment: str) -> None:
    """--graph output notes that the chain came from the list, not from the config's next_steps."""
    note = f"{comment}no step has next_steps in the config: the steps run as a linear chain in list order"
    linear = render_graph(load_config(linear_config(tmp_path / "out.jsonl", ["A"])), fmt).splitlines()
    assert linear.count(note) == 1
    assert not any(line.startswith(comment) for line in render_graph(load_config(chain_config()), fmt).splitlines())


def test_a_producer_without_next_steps_beside_stagers_with_them_is_refused(tmp_path: Path) -> None:
    """Mixed: the intent is unclear, so pipeline-run exits 2 with one line naming the producer's key."""
    document = chain_config()
    del document["Pipeline"]["producer_conf"]["next_steps"]
    path = write_config(tmp_path, document)
    result = run_cli(f"--config={path}")
    assert result.returncode == 2
    assert result.stderr == (
        f"pipeline-run: error: {path}: Pipeline.producer_conf.next_steps: missing: the producer must send to at "
        "least one step (or leave next_steps out of every step to chain the steps in list order)\n"
    )


def test_a_stager_without_next_steps_in_a_wired_config_is_a_sink(tmp_path: Path) -> None:
    """Once the producer has next_steps, nothing is filled in: a stager without them sends nothing."""
    output = tmp_path / "out.jsonl"
    document = chain_config(str(output))
    document["Pipeline"]["producer_conf"]["next_steps"] = "PASS, WRITE"
    del document["Pipeline"]["stagers_conf"][0]["next_steps"]
    config = load_config(document)
    assert (config.linear, config.steps["PASS"].next_steps) == (False, ())
    assert run(document, "sequential") == 0
    assert read_lines(output) == [0, 1, 2, 3, 4]
