"""The pipeline-run command: help, overrides, modes, the report and the exit codes of DESIGN.md §5."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest

from pipeline import Pipeline
from pipeline.cli.keys import PipelineKeys
from pipeline.cli.run import PipelineRun
from tests.cli_helpers import ROOT, chain_config, read_lines, run_cli, write_config

CHAIN = "configs/chain.json"


def report_rows(stderr: str) -> list[list[str]]:
    """The first five cells of each line of the report table that ends ``stderr`` (the header, a row
    per step, the exit status)."""
    lines = stderr.splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("STEP "))
    return [line.split()[:5] for line in lines[start:]]


@pytest.mark.parametrize("config", [[f"--config={CHAIN}"], ["--config", CHAIN], [f"--PipelineRun.config_file={CHAIN}"],
                                    ["--config=missing.json", "--PipelineRun.config_file", CHAIN],
                                    ["--PipelineRun.config_file=missing.json", f"--config={CHAIN}"]],
                         ids=["equals", "space", "full-name", "full-name-last", "alias-last"])
def test_help_all_lists_the_options_of_the_config_steps(config: list[str]) -> None:
    """--help-all with --config (or its full name; the last of them, as a run reads it) shows each step class's
    options, with their help and default."""
    result = run_cli("--help-all", *config)
    assert result.returncode == 0
    assert "--Counter.count=<Int>\n    How many numbers to yield.\n    Default: 10\n" in result.stdout
    assert "--JsonLinesWriter.path=<OutputFile>\n    The file to write (replaced if it exists).\n" in result.stdout
    assert "--Pipeline.mode=<Enum>" in result.stdout
    assert "listed when its config is given" not in result.stdout


def test_help_all_without_config_says_how_to_list_step_options() -> None:
    """--help-all alone shows the framework's options and how to see a config's step options."""
    result = run_cli("--help-all")
    assert result.returncode == 0
    assert "--Pipeline.mode=<Enum>" in result.stdout
    assert "--Counter.count=<Int>" not in result.stdout
    assert "pipeline-run --help-all --config=FILE" in result.stdout.splitlines()[-1]


def test_help_all_with_a_broken_config_is_a_config_error(tmp_path: Path) -> None:
    """Help for a config that cannot load reports why, as a run would."""
    path = write_config(tmp_path, "{")
    result = run_cli("--help-all", f"--config={path}")
    assert result.returncode == 2
    assert result.stderr == f"pipeline-run: error: {path}: invalid JSON at line 1 column 2: " + (
        "Expecting property name enclosed in double quotes\n"
    )


def test_success_prints_the_report_table(tmp_path: Path) -> None:
    """A run that succeeds exits 0 and prints the per-step counts to stderr, not stdout."""
    output = tmp_path / "out.jsonl"
    result = run_cli(f"--config={write_config(tmp_path, chain_config(str(output)))}")
    assert result.returncode == 0
    assert result.stdout == ""
    assert report_rows(result.stderr) == [
        ["STEP", "RECEIVED", "PROCESSED", "EMITTED", "FAILED"],
        ["COUNT", "0", "5", "5", "0"],
        ["PASS", "5", "5", "5", "0"],
        ["WRITE", "5", "5", "0", "0"],
        ["exit", "status", "0"],
    ]
    assert sorted(read_lines(output)) == [0, 1, 2, 3, 4]


def test_override_changes_the_count(tmp_path: Path) -> None:
    """--Counter.count and --JsonLinesWriter.path win over the values in the config file."""
    output = tmp_path / "out.jsonl"
    result = run_cli(f"--config={CHAIN}", "--Counter.count=7", f"--JsonLinesWriter.path={output}")
    assert result.returncode == 0
    assert sorted(read_lines(output)) == list(range(7))


@pytest.mark.parametrize("count", ["7.0", "7e0"])
def test_an_int_written_as_a_float_of_its_value_is_taken_as_in_a_file(tmp_path: Path, count: str) -> None:
    """--Counter.count=7.0 is 7, as {"count": 7.0} is in a config file (traitlets' Int takes an integer's float); 7.5
    is refused in both places."""
    output = tmp_path / "out.jsonl"
    result = run_cli(f"--config={CHAIN}", f"--Counter.count={count}", f"--JsonLinesWriter.path={output}")
    assert result.returncode == 0, result.stderr
    assert sorted(read_lines(output)) == list(range(7))
    refused = run_cli(f"--config={CHAIN}", "--Counter.count=7.5", f"--JsonLinesWriter.path={output}")
    assert refused.returncode == 2
    assert refused.stderr == ("pipeline-run: error: command line: --Counter.count: expected an int (at least 0), got "
                              "float 7.5\n")
    # The run's own options too (traitlets reads them itself, and left "5.0" a string)
    run = run_cli(f"--config={CHAIN}", "--Pipeline.heartbeat_liveness=5.0", f"--JsonLinesWriter.path={output}")
    assert run.returncode == 0, run.stderr


def test_sequential_mode_runs_every_step_in_the_main_thread(tmp_path: Path) -> None:
    """--Pipeline.mode=sequential reaches the Pipeline: each message is handled in the main thread."""
    document = chain_config(str(tmp_path / "out.jsonl"))
    document["Pipeline"]["stagers_conf"][0].update(module="tests.config_steps", **{"class": "ThreadNamer"})
    path = write_config(tmp_path, document)
    result = run_cli(f"--config={path}", "--Pipeline.mode=sequential")
    assert result.returncode == 0
    assert read_lines(tmp_path / "out.jsonl") == ["MainThread"] * 5
    threaded = run_cli(f"--config={path}")
    assert threaded.returncode == 0
    assert "MainThread" not in read_lines(tmp_path / "out.jsonl")


def test_app_options_are_not_step_overrides(tmp_path: Path) -> None:
    """--debug and --log-level set the application's own traits; the run goes on."""
    output = tmp_path / "out.jsonl"
    path = write_config(tmp_path, chain_config(str(output)))
    result = run_cli("--config", path, "--debug", "--log-level=INFO", "--Pipeline.mode=sequential")
    assert result.returncode == 0
    assert read_lines(output) == [0, 1, 2, 3, 4]


@pytest.mark.parametrize("mode", ["sequential", "threads"])
def test_a_failed_step_exits_1(tmp_path: Path, mode: str) -> None:
    """A step that raises makes the run exit 1; the report names its first error."""
    output = tmp_path / "out.jsonl"
    document = chain_config(str(output))
    document["Pipeline"]["stagers_conf"][0].update(module="tests.config_steps", on_error="skip", **{"class": "FailOn"})
    result = run_cli(f"--config={write_config(tmp_path, document)}", f"--Pipeline.mode={mode}")
    assert result.returncode == 1
    assert ["PASS", "5", "4", "4", "1"] in report_rows(result.stderr)
    assert "PASS: first error: ValueError: bad message 3" in result.stderr
    assert sorted(read_lines(output)) == [0, 1, 2, 4]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        pytest.param([], "command line: --config: missing: the pipeline's JSON config file (--config=FILE)", id="none"),
        pytest.param(
            ["--Counter.count=3"],
            "command line: --config: missing: the pipeline's JSON config file (--config=FILE)",
            id="no-config",
        ),
        pytest.param(
            [f"--confg={CHAIN}"], "command line: --confg: unknown option (did you mean '--config'?)", id="typo"
        ),
        pytest.param(  # it listed the command's own options, none of them near
            [f"--config={CHAIN}", "--Counter-count=3"],
            "command line: --Counter-count: unknown option (did you mean '--Counter.count'?)", id="dash-for-dot",
        ),
        pytest.param(
            [f"--config={CHAIN}", "--fast"],
            "command line: --fast: unknown option (expected one of: --config, --debug, --graph, --help, --help-all, "
            "--log-level, --no-progress, --progress, --replay, --version, -h)",
            id="unknown-flag",
        ),
        pytest.param(
            [f"--config={CHAIN}", "-v"],
            "command line: -v: unknown option (expected one of: --config, --debug, --graph, --help, --help-all, "
            "--log-level, --no-progress, --progress, --replay, --version, -h)",
            id="unknown-short",
        ),
        pytest.param(
            [CHAIN],
            "command line: configs/chain.json: unexpected argument (options are --name=value; did you mean "
            "--config=configs/chain.json?)",
            id="positional",
        ),
        pytest.param(
            ["extra"], "command line: extra: unexpected argument (options are --name=value)", id="positional-not-a-file"
        ),
        pytest.param(
            ["--config"], "command line: argument --config: expected one argument", id="no-value"
        ),
        pytest.param(  # named by its alias too, not by the trait behind it (--Application.log_level)
            [f"--config={CHAIN}", "--log-level"], "command line: argument --log-level: expected one argument",
            id="no-value-of-an-alias"
        ),
        pytest.param(  # --replay=$DL with DL unset re-ran the whole pipeline from its producer, exit 0
            [f"--config={CHAIN}", "--replay="],
            "command line: --replay: missing: the dead-letter file to replay (--replay=FILE)", id="empty-replay",
        ),
        pytest.param(  # --graph=$FORMAT with FORMAT unset ran the pipeline instead of printing its graph
            [f"--config={CHAIN}", "--graph="],
            "command line: --graph: unknown format '' (expected one of: mermaid, dot)", id="empty-graph",
        ),
        pytest.param(  # given twice, the last one wins (issue 26.6): here a file that is not there
            [f"--config={CHAIN}", "--config=other.json"],
            "other.json: cannot read the config file: No such file or directory",
            id="twice",
        ),
        pytest.param(  # traitlets failed on its own objects: "'LazyConfigValue' object does not support item ..."
            [f"--config={CHAIN}", "--counter.count=3"],
            "command line: --counter.count: 'counter' is not a class name (class names begin with a capital letter: "
            "did you mean 'Counter'?)",
            id="class-in-lowercase",
        ),
        pytest.param(  # it said "did you mean 'Count'?"
            [f"--config={CHAIN}", "--Counter.count.x=3"],
            "command line: --Counter.count.x: 'count' is not a class name: an option is the last name of an option's "
            "path (expected --Class.option=value)",
            id="option-with-more-after-it",
        ),
        pytest.param(  # "values whose keys begin with an uppercase char must be Config instances"
            [f"--config={CHAIN}", "--Pipeline.Mode=sequential"],
            "command line: --Pipeline.Mode: 'Mode' is not an option name (option names begin with a lowercase letter: "
            "did you mean 'mode'?)",
            id="option-capitalized",
        ),
        pytest.param(
            [f"--config={CHAIN}", "--log-level=LOUD"],
            "command line: --log-level: expected any of "
            "[0, 10, 20, 30, 40, 50, 'DEBUG', 'INFO', 'WARN', 'ERROR', 'CRITICAL', 'WARNING'], got str 'LOUD'",
            id="bad-log-level",
        ),
        # Application's logging options (issue: each was a traceback and exit 1, or a traceback per log line).
        pytest.param(
            [f"--config={CHAIN}", "--Application.logging_config={'version': 2}"],
            "command line: --Application.logging_config: Unsupported version: 2 (expected a logging.config "
            "dictionary, version 1, e.g. {'handlers': {'file': {'class': 'logging.FileHandler', "
            "'filename': 'run.log'}}, 'loggers': {'pipeline': {'handlers': ['console', 'file']}}})",
            id="logging-config-version",
        ),
        pytest.param(
            [f"--config={CHAIN}", "--Application.logging_config={'handlers': {'x': {'class': 'nope.Nope'}}}"],
            "command line: --Application.logging_config: Unable to configure handler 'x': Cannot resolve "
            "'nope.Nope': No module named 'nope' (expected a logging.config dictionary, version 1, e.g. "
            "{'handlers': {'file': {'class': 'logging.FileHandler', 'filename': 'run.log'}}, 'loggers': {'pipeline': "
            "{'handlers': ['console', 'file']}}})",
            id="logging-config-handler-class",
        ),
        pytest.param(
            [f"--config={CHAIN}", "--Application.logging_config={'formatters': {'console': {'format': '%(nope)s'}}}"],
            "command line: --Application.logging_config: Formatting field not found in record: 'nope' (expected a "
            "format of a log record's fields, e.g. '%(asctime)s %(levelname)s %(name)s: %(message)s')",
            id="logging-config-format",
        ),
        pytest.param(
            [f"--config={CHAIN}", "--Application.log_format=%(nope)s"],
            "command line: --Application.log_format: Formatting field not found in record: 'nope' (expected a "
            "format of a log record's fields, e.g. '%(asctime)s %(levelname)s %(name)s: %(message)s')",
            id="log-format-field",
        ),
        pytest.param(
            [f"--config={CHAIN}", "--Application.log_format=%(message"],
            "command line: --Application.log_format: Invalid format '%(message' for '%' style (expected a "
            "format of a log record's fields, e.g. '%(asctime)s %(levelname)s %(name)s: %(message)s')",
            id="log-format-syntax",
        ),
        pytest.param(  # said twice: traitlets' words, then the trait's own
            [f"--config={CHAIN}", "--Pipeline.gui_address=nohost"],
            "command line: --Pipeline.gui_address: expected an address host:port or tcp://host:port (a port from 1 to "
            "65535), got str 'nohost'",
            id="gui-address-once",
        ),
        pytest.param(  # it said "did you mean --Pipeline.stagers_conf?", the very option it refused
            [f"--config={CHAIN}", "--Pipeline.stagers_conf=[]"],
            "command line: --Pipeline.stagers_conf: Pipeline has no option 'stagers_conf' (the steps are the config "
            "file's: they cannot be set on the command line)",
            id="steps-on-the-command-line",
        ),
        # The writer's file (a traceback of its init() and exit 1 once the run had started).
        pytest.param(
            [f"--config={CHAIN}", "--JsonLinesWriter.path=no-such-folder/ev.jsonl"],
            "command line: --JsonLinesWriter.path: the folder 'no-such-folder' does not exist (expected a file in an "
            "existing folder)",
            id="writer-file-in-no-folder",
        ),
        pytest.param(
            [f"--config={CHAIN}", "--JsonLinesWriter.path=."],
            "command line: --JsonLinesWriter.path: '.' is a folder (expected the path of a file to write)",
            id="writer-file-a-folder",
        ),
        pytest.param(
            [f"--config={CHAIN}", "--JsonLinesWriter.path="],
            "command line: --JsonLinesWriter.path: step 'WRITE': JsonLinesWriter.path is empty (expected the path of a "
            "file to write)",
            id="writer-file-empty",
        ),
        pytest.param(  # traitlets' words named the bare trait: --show_config
            [f"--config={CHAIN}", "--Application.show_config=maybe"],
            "command line: --Application.show_config: expected a boolean, got str 'maybe'",
            id="application-option-value",
        ),
    ],
)
def test_usage_error_exits_2(argv: list[str], message: str) -> None:
    """A command line that cannot run: exit 2 and one line on stderr, before any step runs."""
    result = run_cli(*argv)
    assert result.returncode == 2
    assert result.stderr == f"pipeline-run: error: {message}\n"
    assert result.stdout == ""


def test_interrupt_exits_130(app: PipelineRun, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """Ctrl+C during the run: exit status 130 and a short note, no traceback."""

    def interrupted(self: Pipeline) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(Pipeline, "run", interrupted)
    assert app.execute([f"--config={ROOT / CHAIN}"]) == 130
    assert capsys.readouterr().err == "pipeline-run: interrupted\n"


def test_interrupt_while_the_command_imports_exits_130(tmp_path: Path) -> None:
    """Ctrl+C while Python still imports the command (its first 0.2 s): exit status 130 and the same
    short note as during the run, no traceback of the import."""
    # A module that Ctrl+C interrupts as it is imported, standing in for the command's own.
    (tmp_path / "interrupted_import.py").write_text(
        "import os, signal\nos.kill(os.getpid(), signal.SIGINT)\nwhile True:\n    pass\n", encoding="utf-8")
    code = (f"import sys; sys.path.insert(0, {str(tmp_path)!r}); from pipeline.cli import launch; "
            "launch.launch('interrupted_import', 'the-command')")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30,
                            check=False)
    assert (result.returncode, result.stderr) == (130, "the-command: interrupted\n")


def test_the_console_scripts_import_nothing_before_they_handle_ctrl_c() -> None:
    """Every console script starts in pipeline.cli.launch, and what runs before its launch() (pipeline/__init__ and
    that module) imports neither traitlets nor pyzmq, so the import a Ctrl+C can interrupt is inside launch()."""
    scripts = {entry.name: entry.value for entry in metadata.distribution("zmq-pipeline").entry_points
               if entry.group == "console_scripts"}
    assert sorted(scripts) == ["pipeline-bench", "pipeline-gui", "pipeline-keys", "pipeline-run", "pipeline-worker"]
    assert {value.split(":")[0] for value in scripts.values()} == {"pipeline.cli.launch"}
    code = ("import sys, pipeline.cli.launch; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'traitlets', 'zmq', 'numpy', 'gui'}))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30,
                            check=True)
    assert result.stdout == "[]\n"


def test_execute_returns_the_report_status(app: PipelineRun, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """In-process, execute() returns the exit status instead of leaving the interpreter."""
    output = tmp_path / "out.jsonl"
    path = write_config(tmp_path, chain_config(str(output)))
    assert app.execute([f"--config={path}", "--Counter.count=3", "--Pipeline.mode=sequential"]) == 0
    assert read_lines(output) == [0, 1, 2]
    assert capsys.readouterr().err.endswith("exit status 0\n")


def test_the_logging_config_its_errors_give_as_an_example_writes_the_run_s_lines_to_a_file(tmp_path: Path) -> None:
    """The example ({'handlers': {'file': ...}}, traitlets' own) made a file handler that no logger used: run.log
    stayed empty while the run logged its failures on stderr."""
    from pipeline.cli.application import _LOGGING_CONFIG_EXAMPLE

    document = chain_config(str(tmp_path / "out.jsonl"))
    document["Pipeline"]["stagers_conf"][0].update({"module": "tests.failure_steps", "class": "FailEvery",
                                                     "on_error": "skip"})
    document["FailEvery"] = {"every": 2}
    example = _LOGGING_CONFIG_EXAMPLE.replace("'run.log'", repr(str(tmp_path / "run.log")))
    result = run_cli(f"--config={write_config(tmp_path, document)}", "--no-progress",
                     f"--Application.logging_config={example}")
    assert result.returncode == 1, result.stderr
    logged = (tmp_path / "run.log").read_text(encoding="utf-8")
    assert "ValueError: bad message 0" in logged and "ValueError: bad message 0" in result.stderr


@pytest.mark.parametrize(("argv", "said"), [
    (["--Countr.count=5"], "command line: --Countr: unknown class (did you mean 'Counter'?)"),
    (["--Counter.count=abc"], "command line: --Counter.count: expected an int (at least 0), got str 'abc'"),
], ids=["unknown-class", "bad-value"])
@pytest.mark.parametrize("show", ["show_config", "show_config_json"])
def test_show_config_checks_the_command_line_first(argv: list[str], said: str, show: str) -> None:
    """--Application.show_config printed what the command line set, unchecked, and exited 0 (cli.md: every command
    checks its options before it does anything)."""
    result = run_cli(f"--config={CHAIN}", *argv, f"--Application.{show}=True")
    assert (result.returncode, result.stderr) == (2, f"pipeline-run: error: {said}\n")


def test_show_config_shows_the_file_s_settings_under_the_command_line_s(tmp_path: Path) -> None:
    """It showed the command line's alone, its values as strings: none of the file's sections."""
    document = chain_config(str(tmp_path / "out.jsonl"))
    result = run_cli(f"--config={write_config(tmp_path, document)}", "--Counter.count=4", "--Pipeline.mode=threads",
                     "--Application.show_config_json=True")
    assert result.returncode == 0, result.stderr
    shown = json.loads(result.stdout)
    assert shown["Counter"] == {"count": 4} and shown["Pipeline"] == {"mode": "threads"}
    assert shown["JsonLinesWriter"] == {"path": str(tmp_path / "out.jsonl")}


@pytest.mark.parametrize(("given", "level"), [("WARNING", logging.WARNING), ("warning", logging.WARNING),
                                               ("Warn", logging.WARNING), ("debug", logging.DEBUG), ("40", 40)])
def test_the_log_level_is_taken_by_python_s_names_in_any_case(tmp_path: Path, given: str, level: int) -> None:
    """``--log-level=WARNING``, as Python's logging names it, was refused (traitlets knows WARN alone)."""
    app = PipelineKeys()
    app.initialize(["generate", "node", f"--dir={tmp_path}", f"--log-level={given}"])
    assert app.log_level == level
