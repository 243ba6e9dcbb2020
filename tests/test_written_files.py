"""The files a run writes, against one another and against what it reads (pipeline/config/outputs.py): two steps
writing one file lost half the records, an output or dead-letter file that is the config file emptied it; each is
refused in one line, exit 2, before anything runs or is written."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline import ConfigError, Pipeline
from pipeline.config.traits import shown
from tests.cli_helpers import chain_config, read_lines, run_cli, write_config

EXPECTED = "(expected a file that nothing else of the run writes or reads)"


def two_writers(tmp_path: Path, second: str | None = None) -> dict[str, Any]:
    """COUNT -> W1 and W2, both JsonLinesWriter: by default to the one file of their class's section."""
    document: dict[str, Any] = {"version": 1, "Pipeline": {
        "producer_conf": {"name": "COUNT", "module": "algorithms.basic", "class": "Counter", "next_steps": "W1, W2"},
        "stagers_conf": [{"name": "W1", "module": "algorithms.basic", "class": "JsonLinesWriter"}],
        "consumer_conf": {"name": "W2", "module": "algorithms.basic", "class": "JsonLinesWriter"}},
        "Counter": {"count": 50}, "JsonLinesWriter": {"path": str(tmp_path / "out.jsonl")}}
    if second is not None:
        document["Pipeline"]["consumer_conf"]["config"] = {"path": second}
    return document


def test_two_steps_writing_one_file_are_refused(tmp_path: Path) -> None:
    config = write_config(tmp_path, two_writers(tmp_path))
    result = run_cli(f"--config={config}")
    assert result.returncode == 2
    output = shown(str(tmp_path / "out.jsonl"))
    assert result.stderr == (f"pipeline-run: error: {config}: JsonLinesWriter.path: {output} is also step W1's output "
                             f"{EXPECTED}\n")
    assert not (tmp_path / "out.jsonl").exists()


def test_two_steps_writing_files_of_their_own_run(tmp_path: Path) -> None:
    config = write_config(tmp_path, two_writers(tmp_path, second=str(tmp_path / "other.jsonl")))
    result = run_cli(f"--config={config}")
    assert result.returncode == 0, result.stderr
    assert read_lines(tmp_path / "out.jsonl") == read_lines(tmp_path / "other.jsonl") == list(range(50))


def test_a_link_to_another_steps_file_is_that_file(tmp_path: Path) -> None:
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "out.jsonl")
    with pytest.raises(ConfigError, match="is also step W1's output"):
        Pipeline.from_config(two_writers(tmp_path, second=str(tmp_path / "link.jsonl")))


@pytest.mark.parametrize("key", ["dead_letter", "path"])
def test_a_file_to_write_that_is_the_config_file_is_refused_and_the_config_kept(tmp_path: Path, key: str) -> None:
    """--Pipeline.dead_letter (or the writer's path) naming the config file emptied it as the run started, exit 0."""
    config = write_config(tmp_path, chain_config(str(tmp_path / "out.jsonl")))
    before = config.read_bytes()
    option = "--Pipeline.dead_letter" if key == "dead_letter" else "--JsonLinesWriter.path"
    result = run_cli(f"--config={config}", f"{option}={config}")
    assert result.returncode == 2
    assert result.stderr == (f"pipeline-run: error: command line: {option}: {shown(str(config))} is also the run's "
                             f"config file {EXPECTED}\n")
    assert config.read_bytes() == before and not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize("mode", ["threads", "sequential"])
def test_a_dead_letter_file_that_is_a_steps_output_is_refused(tmp_path: Path, mode: str) -> None:
    """Both files mixed in one: an output lost, the first record garbled (its replay failed), and exit 0."""
    document = chain_config(str(tmp_path / "out.jsonl"))
    document["Pipeline"].update(dead_letter=str(tmp_path / "out.jsonl"), mode=mode)
    config = write_config(tmp_path, document)
    result = run_cli(f"--config={config}")
    assert result.returncode == 2
    output = shown(str(tmp_path / "out.jsonl"))
    assert result.stderr == (f"pipeline-run: error: {config}: Pipeline.dead_letter: {output} is also step WRITE's "
                             f"output {EXPECTED}\n")


def test_an_output_that_is_the_replayed_file_is_refused(tmp_path: Path) -> None:
    """The replay's records would be replaced by the writer's lines as it reads them; its dead letters may go there."""
    dead = tmp_path / "dead.jsonl"
    dead.write_text(json.dumps({"step": "WRITE", "worker": 0, "seq": 0, "error": "x", "traceback": "",
                                "pickle": "gAVLAS4=", "buffers": []}) + "\n", encoding="utf-8")
    document = chain_config(str(dead))
    with pytest.raises(ConfigError) as raised:
        Pipeline.from_config(document, replay=str(dead))
    assert (raised.value.key, raised.value.problem) == (
        "JsonLinesWriter.path", f"{shown(str(dead))} is also the dead-letter file this run replays {EXPECTED}")
    document["JsonLinesWriter"]["path"] = str(tmp_path / "out.jsonl")
    replay = Pipeline.from_config(document, {"Pipeline": {"dead_letter": str(dead), "gui": False}}, replay=str(dead))
    assert replay.run().exit_status == 0
    assert read_lines(tmp_path / "out.jsonl") == [1]


def test_an_output_that_is_a_steps_input_is_refused_and_the_input_kept(tmp_path: Path) -> None:
    """LineReader reading the file JsonLinesWriter writes: the writer emptied it as the run started, and the reader
    read nothing (exit 0, the data gone)."""
    data = tmp_path / "data.txt"
    data.write_text("a\nb\n", encoding="utf-8")
    document = chain_config(str(data))
    document["Pipeline"]["producer_conf"].update({"class": "LineReader"})
    document.pop("Counter")
    document["LineReader"] = {"path": str(data)}
    config = write_config(tmp_path, document)
    result = run_cli(f"--config={config}")
    assert result.returncode == 2
    assert result.stderr == (f"pipeline-run: error: {config}: JsonLinesWriter.path: {shown(str(data))} is also step "
                             f"COUNT's input {EXPECTED}\n")
    assert data.read_text(encoding="utf-8") == "a\nb\n"
