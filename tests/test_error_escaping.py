"""A terminal escape or a line break in a config key, a config file's name or any other part of a one-line error
reaches the terminal escaped, as the values in the message already were: the error stays one line of text, and a
file name cannot recolour or clear the user's terminal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.cli.keys import PipelineKeys
from pipeline.cli.run import PipelineRun
from pipeline.engine.remote_agent import say
from pipeline.errors import ConfigError, printable
from tests.cli_helpers import chain_config, run_cli, write_config

ESC = "\x1b[31m"


@pytest.mark.parametrize(
    ("text", "shown"),
    [("plain text, é, 日本", "plain text, é, 日本"), (f"a{ESC}b", "a\\x1b[31mb"), ("a\nb\tc\rd", "a\\nb\\tc\\rd"),
     ("\u202eevil", "\\u202eevil"), ("bad\udcffbyte", "bad\\udcffbyte"), ("\x07\x00", "\\x07\\x00")],
)
def test_printable_writes_what_a_terminal_would_act_on_as_repr_does(text: str, shown: str) -> None:
    assert printable(text) == shown
    assert printable(text).isprintable()


def test_a_config_error_escapes_each_of_its_parts_and_keeps_them_as_given() -> None:
    error = ConfigError(f"a{ESC}.json", f"Counter.co{ESC}unt", f"line\nbreak {'x' * 3}")
    assert str(error) == "a\\x1b[31m.json: Counter.co\\x1b[31munt: line\\nbreak xxx"
    assert (error.source, error.key, error.problem) == (f"a{ESC}.json", f"Counter.co{ESC}unt", "line\nbreak xxx")


@pytest.mark.parametrize(
    ("section", "values", "said"),
    [(f"Counter{ESC}", {"count": 1}, "Counter\\x1b[31m: unknown section: not a step class of this pipeline "
                                          "(did you mean 'Counter'?)"),
     ("Counter", {"co\x1bunt": 1}, "Counter.co\\x1bunt: Counter has no option 'co\\x1bunt' (did you mean 'count'?)")],
)
def test_a_control_character_in_a_config_key_is_escaped(tmp_path: Path, section: str, values: dict[str, int],
                                                        said: str) -> None:
    document = chain_config(str(tmp_path / "out.jsonl"))
    document[section] = values
    config = write_config(tmp_path, json.dumps(document))
    result = run_cli(f"--config={config}", "--no-progress")
    assert result.returncode == 2
    assert result.stderr == f"pipeline-run: error: {config}: {said}\n"


def test_a_control_character_in_the_config_path_is_escaped(tmp_path: Path) -> None:
    result = run_cli(f"--config={tmp_path}/a{ESC}b.json")
    assert result.returncode == 2
    assert result.stderr == (f"pipeline-run: error: {tmp_path}/a\\x1b[31mb.json: cannot read the config file: "
                             "No such file or directory\n")


def test_the_commands_print_escaped_lines_in_process(tmp_path: Path, app: PipelineRun, capsys) -> None:
    assert app.execute([f"--config=a{ESC}b"]) == 2
    assert capsys.readouterr().err == ("pipeline-run: error: a\\x1b[31mb: cannot read the config file: "
                                       "No such file or directory\n")
    (tmp_path / "file").write_text("")
    assert PipelineKeys().execute(["generate", "x", f"--dir={tmp_path}/file/{ESC}"]) == 2
    assert capsys.readouterr().err == (f"pipeline-keys: error: {tmp_path}/file/\\x1b[31m: cannot make the directory "
                                       "(Not a directory)\n")


def test_pipeline_worker_escapes_what_the_run_sent(capsys) -> None:
    say(f"error: the run refused: no step named {ESC}X\nfake line")
    assert capsys.readouterr().err == "pipeline-worker: error: the run refused: no step named \\x1b[31mX\\nfake line\n"
