"""The command line's edges: --version on every command, --graph's formats, and --help-all in the
order a user reads it (the steps' options first), all as subprocesses."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipeline.cli.application import package_version
from tests.cli_helpers import ROOT, run_cli

CHAIN = "configs/chain.json"


@pytest.mark.parametrize(("module", "name"), [("pipeline", "pipeline-run"), ("gui", "pipeline-gui"),
                                              ("pipeline.bench", "pipeline-bench")])
def test_every_command_has_version(module: str, name: str) -> None:
    result = subprocess.run([sys.executable, "-m", module, "--version"], cwd=ROOT, capture_output=True, text=True,
                            timeout=30, check=False)
    assert (result.returncode, result.stdout, result.stderr) == (0, f"{name} {package_version()}\n", "")
    assert package_version()[0].isdigit()


@pytest.mark.parametrize("fmt", ["svg", "Dot", ""])
def test_an_unknown_graph_format_lists_the_formats(fmt: str) -> None:
    """An empty one too (--graph=$FORMAT with FORMAT unset): it ran the pipeline, as if --graph were not given."""
    result = run_cli(f"--config={CHAIN}", f"--graph={fmt}")
    assert result.returncode == 2
    assert result.stderr == (f"pipeline-run: error: command line: --graph: unknown format {fmt!r} "
                             "(expected one of: mermaid, dot)\n")


def test_help_all_shows_the_steps_first_then_the_run_then_the_command() -> None:
    result = run_cli("--help-all", f"--config={CHAIN}")
    assert result.returncode == 0
    text = result.stdout
    order = ["Options of the steps of configs/chain.json", "--Counter.count=<Int>", "--JsonLinesWriter.path=",
             "Options of the run", "--Pipeline.mode=<Enum>", "Options of the command", "--config=<Unicode>",
             "--Application.log_level=<Enum>", "Examples"]
    assert [text.index(heading) for heading in order] == sorted(text.index(heading) for heading in order)
    assert text.count("--Application.logging_config") == 1 and "c.Application.logging_config" not in text
    assert "PipelineRun(StrictApplication) options" not in text and "Application(SingletonConfigurable)" not in text
    assert len(text.splitlines()) < 200  # was 327 with three copies of the logging boilerplate


def test_help_all_without_config_has_no_step_section() -> None:
    result = run_cli("--help-all")
    assert result.returncode == 0
    assert "Options of the steps" not in result.stdout
    assert result.stdout.index("Options of the run") < result.stdout.index("Options of the command")
