"""Ctrl+C (and the bench's SIGTERM) at each point of a console script outside its own signal handling: before its
command handles signals, and after it has given them back. Each point is made to interrupt deterministically: a
function the command calls there raises KeyboardInterrupt, as Python's handler would raise it in that line, or an
atexit hook sends the real signal as the interpreter exits."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.cli_helpers import ROOT

#: Run in a fresh interpreter: wrap ``OWNER.NAME`` (``OWNER`` an expression) so that it runs ``BEFORE`` and
#: ``AFTER`` around its real self, then start the command as its console script does.
_PROGRAM = """
import atexit, importlib, os, signal, sys
from pipeline.cli import launch
module = importlib.import_module(MODULE)
owner = OWNER
real = getattr(owner, NAME)
def wrapped(*args, **kwargs):
    BEFORE
    result = real(*args, **kwargs)
    AFTER
    return result
setattr(owner, NAME, wrapped)
sys.argv = [COMMAND, *ARGV]
launch.launch(MODULE, COMMAND)
"""

#: What the wrapped function does to interrupt the command there.
RAISE = "raise KeyboardInterrupt"
#: Once the command has run: the signal comes as the interpreter exits, after every hook of the command's own.
AT_EXIT = "atexit.register(os.kill, os.getpid(), signal.SIGINT)"

#: Each console script: its module, its command, its Application class (None: pipeline-bench's argparse).
COMMANDS = [
    ("pipeline.cli.run", "pipeline-run", "module.PipelineRun"),
    ("pipeline.cli.worker", "pipeline-worker", "module.PipelineWorker"),
    ("pipeline.cli.keys", "pipeline-keys", "module.PipelineKeys"),
    ("gui.app", "pipeline-gui", "module.PipeGui"),
]


def run_command(module: str, command: str, argv: list[str], owner: str, name: str, before: str = "pass",
                after: str = "pass") -> subprocess.CompletedProcess[str]:
    """Run ``command`` through pipeline.cli.launch with ``owner.name`` wrapped; its result, output as text."""
    program = _PROGRAM
    for key, value in (("MODULE", repr(module)), ("COMMAND", repr(command)), ("ARGV", repr(argv)),
                       ("OWNER", owner), ("NAME", repr(name)), ("BEFORE", before), ("AFTER", after)):
        program = program.replace(key, value)
    return subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          check=False)


def interrupted(result: subprocess.CompletedProcess[str], command: str, status: int = 130) -> None:
    """The command ended as Ctrl+C ends it: its one line last, its status, no traceback."""
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.endswith(f"{command}: interrupted\n"), result.stderr
    assert result.returncode == status, result.stderr


@pytest.mark.parametrize(("owner", "name"), [
    ("os", "getcwd"),  # main()'s first line, which puts the working directory on sys.path
    ("importlib.import_module('pipeline.console.end_of_output')", "_open_closed_streams"),  # main()'s wrapper
    ("module.PipelineRun", "instance"),  # launch_instance(), before execute() handles Ctrl+C
], ids=["main", "console-script", "instance"])
def test_ctrl_c_before_pipeline_run_handles_it_is_one_line_and_130(owner: str, name: str) -> None:
    """It was a KeyboardInterrupt traceback ending in main() and exit status 1 (a Ctrl+C 0.3 s after the start)."""
    result = run_command("pipeline.cli.run", "pipeline-run", ["--config=configs/chain.json"], owner, name,
                         before=RAISE)
    interrupted(result, "pipeline-run")


def test_ctrl_c_as_pipeline_run_returns_from_a_run_it_never_started_is_one_line_and_130() -> None:
    """A command line that cannot run sets no handler: a Ctrl+C after its error line raised a traceback."""
    result = run_command("pipeline.cli.run", "pipeline-run", [], "module.PipelineRun", "execute", after=RAISE)
    assert result.stderr.startswith("pipeline-run: error: command line: --config: missing"), result.stderr
    interrupted(result, "pipeline-run")


@pytest.mark.parametrize(("module", "command", "owner"), COMMANDS[1:], ids=[c[1] for c in COMMANDS[1:]])
def test_ctrl_c_before_the_other_commands_start_is_one_line_and_130(module: str, command: str, owner: str) -> None:
    """The same in pipeline-worker, pipeline-keys and pipeline-gui, whose main() launch() now covers."""
    interrupted(run_command(module, command, [], owner, "instance", before=RAISE), command)


def test_ctrl_c_before_the_bench_handles_it_is_one_line_and_130() -> None:
    """pipeline-bench as it reads its command line, before its own handler is set."""
    result = run_command("pipeline.bench.app", "pipeline-bench", [], "module", "parser", before=RAISE)
    interrupted(result, "pipeline-bench")


def test_the_benchs_sigterm_before_its_run_is_one_line_and_143() -> None:
    """The bench's stop (a KeyboardInterrupt carrying SIGTERM) in a line of main() outside its try: it was a
    traceback; its status is the signal's, as inside."""
    result = run_command("pipeline.bench.app", "pipeline-bench", ["--quick"], "module", "machine",
                         before="raise importlib.import_module('pipeline.bench.stops').Stopped(signal.SIGTERM)")
    interrupted(result, "pipeline-bench", status=143)


@pytest.mark.parametrize(("module", "command", "owner"), COMMANDS, ids=[c[1] for c in COMMANDS])
def test_ctrl_c_as_a_command_exits_keeps_its_status(module: str, command: str, owner: str) -> None:
    """A Ctrl+C during the interpreter's exit (an atexit hook of the command's): the exit status the command decided,
    and its output; it was "Exception ignored in atexit callback" and a KeyboardInterrupt traceback."""
    result = run_command(module, command, ["--version"], owner, "launch_instance", before=AT_EXIT)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{command} {_version()}\n", "")


def test_ctrl_c_as_the_bench_exits_keeps_its_status() -> None:
    """The same for pipeline-bench (its --version, through argparse)."""
    result = run_command("pipeline.bench.app", "pipeline-bench", ["--version"], "module", "parser", before=AT_EXIT)
    assert (result.returncode, result.stderr) == (0, ""), result.stderr


def _version() -> str:
    """The version that the commands' --version says."""
    from pipeline.cli.application import package_version

    return package_version()


@pytest.mark.parametrize(("module", "command"), [("pipeline.cli.worker", "pipeline-worker"),
                                                 ("pipeline.cli.keys", "pipeline-keys")])
def test_python_m_of_a_command_module_handles_ctrl_c_as_its_console_script(module: str, command: str) -> None:
    """``python -m pipeline.cli.worker`` (the bench's loopback starts its workers so) called main() outside launch():
    a Ctrl+C before the command handled it was a traceback."""
    program = ("import runpy, sys\nfrom pipeline.cli.application import StrictApplication\n"
               "def interrupt(*args, **kwargs):\n    raise KeyboardInterrupt\n"
               f"StrictApplication.instance = classmethod(interrupt)\nsys.argv = [{command!r}]\n"
               f"runpy.run_module({module!r}, run_name='__main__', alter_sys=True)\n")
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=60,
                            check=False)
    interrupted(result, command)
