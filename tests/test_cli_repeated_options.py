"""An option given twice takes its last value, as in most command lines (issue 26.6): a step's option
(in every mode, worker processes included), a run's ``Pipeline`` option, the command's own options,
a dict option, and ``pipeline-worker``'s options; an option given by two of its forms (an alias, its
full name, a flag) likewise, in every command. Real subprocesses, and the commands in-process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from gui.app import PipeGui
from pipeline.auth.keys import generate_key_pair
from pipeline.cli.run import PipelineRun
from pipeline.pipeline import Pipeline
from tests.cli_helpers import ROOT, chain_config, run_cli, write_config
from tests.failure_helpers import report_row
from tests.remote_helpers import BIN

#: How the chain's consumer runs in each mode: (its nb_process, the run's mode).
MODES = {"threads": (0, "threads"), "sequential": (0, "sequential"), "processes": (1, "threads")}


@pytest.mark.parametrize("mode", MODES)
def test_a_step_option_given_twice_takes_the_last(tmp_path: Path, mode: str) -> None:
    nb_process, run_mode = MODES[mode]
    config = chain_config()
    config["Pipeline"]["consumer_conf"]["nb_process"] = nb_process
    first, last = tmp_path / "first.jsonl", tmp_path / "last.jsonl"
    result = run_cli(f"--config={write_config(tmp_path, config)}", f"--Pipeline.mode={run_mode}", "--no-progress",
                     "--Counter.count=5", "--Counter.count=6",
                     f"--JsonLinesWriter.path={first}", f"--JsonLinesWriter.path={last}")
    assert result.returncode == 0, result.stderr
    assert report_row(result.stderr, "COUNT")[1] == 6
    assert sorted(json.loads(line) for line in last.read_text().splitlines()) == list(range(6))  # the worker's too
    assert not first.exists()


@pytest.mark.parametrize(("values", "status"), [
    (("bogus", "sequential"), 0),
    (("sequential", "bogus"), 2),
])
def test_a_run_option_given_twice_takes_the_last(values: tuple[str, str], status: int) -> None:
    result = run_cli("--config=configs/chain.json", "--no-progress", "--Counter.count=3",
                     *(f"--Pipeline.mode={value}" for value in values))
    assert result.returncode == status, result.stderr
    if status:
        assert result.stderr == ("pipeline-run: error: command line: --Pipeline.mode: expected any of ['threads', "
                                 "'sequential'], got str 'bogus'\n")


def test_the_commands_own_option_given_twice_takes_the_last() -> None:
    result = run_cli("--config=missing.json", "--config=configs/chain.json", "--no-progress", "--Counter.count=3")
    assert result.returncode == 0, result.stderr
    assert report_row(result.stderr, "COUNT")[1] == 3


def test_a_dict_option_given_twice_takes_the_last() -> None:
    """Each value is the whole dict, as one Python literal: the last one routes."""
    result = run_cli("--config=configs/routing.json", "--no-progress", "--SimulatedCamera.n_events=20",
                     "--RouteByTelescope.routes={'LST': 'LST_HILLAS', 'MST': 'MST_HILLAS'}",
                     "--RouteByTelescope.routes={'LST': 'MST_HILLAS', 'MST': 'LST_HILLAS'}")
    assert result.returncode == 0, result.stderr
    assert report_row(result.stderr, "MST_HILLAS")[0] == 0  # configs/routing.json's events are MST: swapped
    assert report_row(result.stderr, "LST_HILLAS")[0] == report_row(result.stderr, "ROUTE")[2] > 0


def test_a_pipeline_worker_option_given_twice_takes_the_last(tmp_path: Path) -> None:
    public, secret = generate_key_pair(tmp_path, "node7")
    result = subprocess.run([str(BIN / "pipeline-worker"), "--connect=tcp://127.0.0.1:5570", "--connect=garbage",
                             f"--server-key={public}", f"--key={secret}", "--step=PASS"],
                            cwd=ROOT, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert result.stderr == ("pipeline-worker: error: command line: --connect: expected tcp://HOST:PORT, such as "
                             "tcp://head:5570, got 'garbage'\n")


@pytest.mark.parametrize(("argv", "shown"), [
    (("--no-progress", "--Pipeline.progress=True"), True),
    (("--progress", "--Pipeline.progress=False"), False),
    (("--Pipeline.progress=False", "--progress"), True),
    (("--Pipeline.progress=maybe", "--no-progress"), False),
    (("--progress", "--no-progress"), False),
])
def test_a_flag_and_its_option_take_the_last(app: PipelineRun, argv: tuple[str, str], shown: bool) -> None:
    """--progress / --no-progress are short for --Pipeline.progress: one option, whichever form comes last (traitlets
    applied the flags after every other option, whatever their order)."""
    app.initialize([f"--config={ROOT / 'configs/chain.json'}", *argv])
    assert Pipeline.from_config(app.config_file, app.step_overrides()).progress is shown


def test_a_bad_option_after_its_flag_is_refused() -> None:
    result = run_cli("--config=configs/chain.json", "--Counter.count=3", "--no-progress", "--Pipeline.progress=maybe")
    assert result.returncode == 2
    assert result.stderr == ("pipeline-run: error: command line: --Pipeline.progress: expected a boolean, got str "
                             "'maybe'\n")


@pytest.mark.parametrize(("argv", "plaintext"), [
    (("--plaintext", "--PipeGui.plaintext=False"), False),
    (("--PipeGui.plaintext=False", "--plaintext"), True),
])
def test_pipeline_gui_flag_and_its_option_take_the_last(argv: tuple[str, str], plaintext: bool) -> None:
    app = PipeGui()
    app.parse_strictly(argv)
    assert app.plaintext is plaintext


#: Each command, as a process, with words that make it refuse something once it has read its options (so that it
#: runs nothing), and the start of what it then says.
LATER_ERRORS = {
    "pipeline-run": (["pipeline", "--config=configs/chain.json", "--Counter.count=many"],
                     "--Counter.count: expected an int"),
    "pipeline-worker": (["pipeline.cli.worker"], "--connect: missing required option"),
    "pipeline-keys": (["pipeline.cli.keys", "generate"], "generate: expected one key NAME"),
    "pipeline-gui": (["gui", "--host=nonexistent.invalid"], "--host: 'nonexistent.invalid' is not an address"),
}
#: Two forms of the log level, and what the last one makes of the command's error: shown with its traceback (at
#: DEBUG), alone (at ERROR), or refused (NOPE is no level).
LEVELS = [
    (("--log-level=NOPE", "--Application.log_level=DEBUG"), "traceback"),
    (("--Application.log_level=NOPE", "--log-level=ERROR"), "alone"),
    (("--Application.log_level=NOPE", "--debug"), "traceback"),
    (("--debug", "--log-level=ERROR"), "alone"),
    (("--debug", "--Application.log_level=NOPE"), "refused"),
    (("--Application.log_level=DEBUG", "--log-level=NOPE"), "refused"),
]


@pytest.mark.parametrize("command", LATER_ERRORS)
@pytest.mark.parametrize(("argv", "outcome"), LEVELS)
def test_an_alias_its_full_name_and_a_flag_are_one_option(command: str, argv: tuple[str, str], outcome: str) -> None:
    """--log-level, --Application.log_level and --debug set one option in every command: the last wins, and only its
    value is read (traitlets read the alias as --PipelineRun.log_level, which outranked --Application.log_level, and
    applied --debug after both)."""
    words, later = LATER_ERRORS[command]
    result = subprocess.run([sys.executable, "-m", *words, *argv], cwd=ROOT, capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 2
    *before, last = result.stderr.splitlines()
    if outcome == "refused":
        assert result.stderr == (f"{command}: error: command line: --log-level: expected any of [0, 10, 20, 30, 40, "
                                 f"50, 'DEBUG', 'INFO', 'WARN', 'ERROR', 'CRITICAL', 'WARNING'], got str 'NOPE'\n")
    else:
        assert last.startswith(f"{command}: error: command line: {later}")
        assert ("Traceback (most recent call last):" in before) is (outcome == "traceback"), result.stderr
