"""``--Class.trait`` options of every command: an option of the command's own classes that it does not have, or a
class it does not take, is one line and exit 2 (traitlets only warned, or said nothing, and the command ran); the
options it has stay valid, and pipeline-run still reads its pipeline's and steps' classes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from traitlets.config import Application

from gui.app import PipeGui
from pipeline.cli.application import StrictApplication
from pipeline.cli.keys import PipelineKeys
from pipeline.cli.run import PipelineRun
from pipeline.cli.worker import PipelineWorker
from tests.cli_helpers import ROOT, chain_config, read_lines, run_cli, write_config

CHAIN = "configs/chain.json"


@pytest.fixture(autouse=True)
def _elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process commands run in the test's directory: a key that pipeline-keys wrongly writes lands there."""
    monkeypatch.chdir(tmp_path)

#: Each command's class, with the leading words that come before its options.
COMMANDS = {"pipeline-run": (PipelineRun, [f"--config={ROOT / CHAIN}"]), "pipeline-worker": (PipelineWorker, []),
            "pipeline-keys": (PipelineKeys, ["generate", "x"]), "pipeline-gui": (PipeGui, [])}


def refused(command: str, option: str, capsys: pytest.CaptureFixture[str]) -> str:
    """The one line that ``command`` says, in-process, refusing ``option`` (exit 2), having written nothing."""
    cls, words = COMMANDS[command]
    assert cls().execute([*words, option]) == 2
    assert list(Path.cwd().iterdir()) == []
    error = capsys.readouterr().err
    assert error.count("\n") == 1, error
    assert error.startswith(f"{command}: error: command line: ")
    return error.removeprefix(f"{command}: error: command line: ").rstrip("\n")


@pytest.mark.parametrize(
    ("option", "said"),
    [("--PipelineRun.progress=False", "--PipelineRun.progress: PipelineRun has no option 'progress' "
                                      "(did you mean --progress / --no-progress or --Pipeline.progress?)"),
     ("--PipelineRun.nope=1", "--PipelineRun.nope: PipelineRun has no option 'nope' (expected one of: config_file, "),
     ("--PipelineRun.confg_file=x", "--PipelineRun.confg_file: PipelineRun has no option 'confg_file' "
                                    "(did you mean 'config_file'?)"),
     ("--Application.replay=x", "--Application.replay: Application has no option 'replay' "
                                "(did you mean --replay or --PipelineRun.replay?)"),
     ("--Application.nope=1", "--Application.nope: Application has no option 'nope'"),
     ("-PipelineRun.nope=1", "-PipelineRun.nope: PipelineRun has no option 'nope'"),
     ("--StrictApplication.x=1", "--StrictApplication.x: StrictApplication has no option 'x'"),
     ("--HasTraits.x=1", "--HasTraits: unknown class (expected PipelineRun, Pipeline or a class of the config's "
                         "steps)"),
     ("--Configurable.x=1", "--Configurable: unknown class"),
     ("--SingletonConfigurable.x=1", "--SingletonConfigurable: unknown class")],
)
def test_pipeline_run_refuses_options_its_own_classes_do_not_have(option: str, said: str, capsys) -> None:
    assert refused("pipeline-run", option, capsys).startswith(said)


#: ctapipe flow's command line, as docs/ctapipe.md's table of edits has it here.
FLOW_MODE_EDIT = ("(expected 'threads' or 'sequential': a step's workers run in worker processes with \"nb_process\" "
                  "in the step)")


@pytest.mark.parametrize(
    ("option", "said"),
    [("--mode=sequential", "--mode: unknown option (did you mean --Pipeline.mode?)"),  # it said '--debug'
     ("--gui=True", "--gui: unknown option (did you mean --Pipeline.gui?)"),
     ("--gui_address=tcp://127.0.0.1:5555", "--gui_address: unknown option (did you mean --Pipeline.gui_address?)"),
     ("--Flow.mode=sequential", '--Flow.mode: the section of a ctapipe flow config: rename it to "Pipeline" '
                                "(did you mean --Pipeline.mode?)"),  # it said: unknown class
     ("--Flow.nope=1", '--Flow: the section of a ctapipe flow config: rename it to "Pipeline"'),
     ("--Pipeline.mode=multiprocessus", f"--Pipeline.mode: ctapipe flow's 'multiprocessus' {FLOW_MODE_EDIT}"),
     ("--Pipeline.mode=multiprocess", f"--Pipeline.mode: ctapipe flow's 'multiprocess' {FLOW_MODE_EDIT}")],
)
def test_pipeline_run_names_the_option_of_a_ctapipe_flow_command_line(option: str, said: str, capsys) -> None:
    """A ctapipe flow command line ported as it was: the line names the option to write here, as a file's key is."""
    assert refused("pipeline-run", option, capsys) == said


@pytest.mark.parametrize("command", ["pipeline-worker", "pipeline-keys", "pipeline-gui"])
@pytest.mark.parametrize(
    ("option", "said"),
    [("--Foo.bar=1", "--Foo: unknown class ("),
     ("--Pipeline.heartbeat_interval=9", "--Pipeline: unknown class ("),
     ("--{cls}.nope=1", "--{cls}.nope: {cls} has no option 'nope' (expected one of: "),
     ("--Application.nope=1", "--Application.nope: Application has no option 'nope'"),
     ("--Configurable.x=1", "--Configurable: unknown class")],
)
def test_the_other_commands_refuse_a_class_they_do_not_take(command: str, option: str, said: str, capsys) -> None:
    name = COMMANDS[command][0].__name__
    assert refused(command, option.format(cls=name), capsys).startswith(said.format(cls=name))


def test_pipeline_worker_says_where_the_runs_settings_go(capsys) -> None:
    assert refused("pipeline-worker", "--Pipeline.heartbeat_interval=9", capsys) == (
        "--Pipeline: unknown class (a worker takes the run's and its step's settings from the run: give them to "
        "pipeline-run; expected PipelineWorker)")


def test_a_class_option_of_its_alias_names_the_alias(capsys) -> None:
    assert refused("pipeline-keys", "--Application.dir=k", capsys) == (
        "--Application.dir: Application has no option 'dir' (did you mean --dir or --PipelineKeys.dir?)")


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("section", ["Application", "StrictApplication", "{cls}"])
def test_the_commands_own_options_by_class_stay_valid(command: str, section: str) -> None:
    app = COMMANDS[command][0]()
    app.parse_strictly([f"--{section.format(cls=type(app).__name__)}.log_level=DEBUG"])
    assert app.log_level == 10


def test_pipeline_run_takes_its_own_traits_by_class_name(app: PipelineRun) -> None:
    app.initialize(["--PipelineRun.config_file=x.json", "--PipelineRun.graph=dot", "--Pipeline.mode=sequential",
                    "--Counter.count=3"])
    assert (app.config_file, app.graph) == ("x.json", "dot")
    assert app.step_overrides() == {"Pipeline": {"mode": "sequential"}, "Counter": {"count": "3"}}


def test_the_check_is_the_one_every_command_shares() -> None:
    for cls, _ in COMMANDS.values():
        assert cls.check_option_names is StrictApplication.check_option_names
        assert issubclass(cls, Application)


def test_pipeline_run_refuses_as_a_process_before_running(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    config = write_config(tmp_path, chain_config(str(output)))
    result = run_cli(f"--config={config}", "--no-progress", "--PipelineRun.progress=False")
    assert result.returncode == 2
    assert result.stderr == ("pipeline-run: error: command line: --PipelineRun.progress: PipelineRun has no option "
                             "'progress' (did you mean --progress / --no-progress or --Pipeline.progress?)\n")
    assert not output.exists()


def test_pipeline_run_as_a_process_runs_with_valid_class_options(tmp_path: Path) -> None:
    output = tmp_path / "out.jsonl"
    config = write_config(tmp_path, chain_config(str(output)))
    result = run_cli(f"--config={config}", "--no-progress", "--PipelineRun.log_level=ERROR",
                     "--Application.log_level=ERROR", "--Pipeline.mode=sequential", "--Counter.count=3")
    assert result.returncode == 0, result.stderr
    assert sorted(read_lines(output)) == [0, 1, 2]
    assert "WARNING" not in result.stderr


@pytest.mark.parametrize(
    ("module", "argv", "said"),
    [("pipeline.cli.keys", ["generate", "x", "--dir=.", "--Foo.bar=1", "--Pipeline.mode=xyz"], "--Foo: unknown class"),
     ("pipeline.cli.keys", ["generate", "x", "--dir=.", "--PipelineKeys.nope=1"],
      "--PipelineKeys.nope: PipelineKeys has no option 'nope'"),
     ("pipeline.cli.worker", ["--Pipeline.heartbeat_interval=9"], "--Pipeline: unknown class"),
     ("gui", ["--PipeGui.nope=1"], "--PipeGui.nope: PipeGui has no option 'nope'"),
     # Application's logging options, shared by every command: a traceback before, or one per log line.
     ("pipeline.cli.keys", ["generate", "x", "--dir=.", "--Application.log_format=%(nope)s"],
      "--Application.log_format: Formatting field not found in record: 'nope'"),
     ("pipeline.cli.worker", ["--Application.logging_config={'version': 2}"],
      "--Application.logging_config: Unsupported version: 2"),
     ("gui", ["--Application.logging_config={'handlers': {'x': {'class': 'nope.Nope'}}}"],
      "--Application.logging_config: Unable to configure handler 'x'")],
)
def test_the_other_commands_refuse_as_processes_and_write_nothing(tmp_path: Path, module: str, argv: list[str],
                                                                   said: str) -> None:
    result = subprocess.run([sys.executable, "-m", module, *argv], cwd=tmp_path, capture_output=True, text=True,
                            timeout=60, check=False,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and said in result.stderr, result.stderr
    assert "WARNING" not in result.stderr
    assert list(tmp_path.iterdir()) == []
