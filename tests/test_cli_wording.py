"""Words a newcomer reads (issue 26.13): the report's line on dead workers says only what happened, in
the singular for one; --help shows the log level's default by its name. Worker processes' own words
are in test_cli_worker_names.py, the terminal table's queue column in test_progress_display.py."""

from __future__ import annotations

import subprocess
import sys

import pytest
from rich.cells import cell_len

from pipeline.execution.report import RunReport, StepCounts, StepReport
from tests.cli_helpers import ROOT


def test_the_report_says_what_dead_workers_cost_in_words() -> None:
    steps = [StepReport("REMOTE", redelivered=1), StepReport("LOCAL", redelivered=3, restarts=1),
             StepReport("RESTARTED", restarts=2), StepReport("CALM")]
    table = RunReport({step.name: step for step in steps}).table().splitlines()
    assert [line for line in table if "again" in line or "replaced" in line] == [
        "REMOTE: 1 message delivered again",  # remote workers are never replaced: no "0 worker processes"
        "LOCAL: 3 messages delivered again, 1 worker process replaced",
        "RESTARTED: 2 worker processes replaced",
    ]


def test_the_report_says_one_message_never_processed_in_the_singular() -> None:
    steps = [StepReport("READ", counts=StepCounts(emitted=4)), StepReport("WRITE", counts=StepCounts(3, 3))]
    assert "1 message was sent but never processed" in RunReport({s.name: s for s in steps}).table().splitlines()
    steps[0].counts.emitted = 5
    assert "2 messages were sent but never processed" in RunReport({s.name: s for s in steps}).table().splitlines()


@pytest.mark.parametrize("module", ["pipeline", "pipeline.cli.worker", "gui"])
def test_help_shows_the_log_levels_default_by_name(module: str) -> None:
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    block = result.stdout[result.stdout.index("--log-level=<Enum>"):].split("\n--", 1)[0]
    assert "Default: 'WARN'" in block and "Default: 30" not in block


@pytest.mark.parametrize(("module", "name"), [("pipeline", "pipeline-run"), ("pipeline.cli.worker", "pipeline-worker"),
                                              ("pipeline.cli.keys", "pipeline-keys"), ("gui", "pipeline-gui")])
def test_help_names_its_command_where_traitlets_says_cmd(module: str, name: str) -> None:
    """traitlets' words before the options said "To see all configurable class-options for some <cmd>, use:"."""
    result = subprocess.run([sys.executable, "-m", module, "--help"], cwd=ROOT, capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert "<cmd>" not in result.stdout and f"{name} --help-all lists every option." in " ".join(result.stdout.split())


def test_help_all_shows_the_current_log_level_by_name() -> None:
    result = subprocess.run([sys.executable, "-m", "pipeline", "--help-all"], cwd=ROOT, capture_output=True,
                            text=True, timeout=30, check=False)
    block = result.stdout[result.stdout.index("--Application.log_level=<Enum>"):].split("\n--", 1)[0]
    assert "Current: 'WARN'" in block


def test_the_summary_s_columns_line_up_whatever_the_step_names() -> None:
    """A no-break space in a name is shown escaped (``A\\xa0B``): its column was measured before, three cells short;
    a wide character counts two cells."""
    steps = [StepReport("A\u00a0B", counts=StepCounts(5, 5)), StepReport("日本", counts=StepCounts(5, 5)),
             StepReport("WRITE", counts=StepCounts(5, 5))]
    header, *rows = RunReport({step.name: step for step in steps}).table().splitlines()[1:5]
    assert rows[0].startswith("A\\xa0B ")
    received_ends = {cell_len(row[:row.index(" 5") + 2]) for row in rows}  # the RECEIVED column is right-aligned
    assert received_ends == {cell_len(header[:header.index("RECEIVED") + len("RECEIVED")])}, "\n".join(rows)
