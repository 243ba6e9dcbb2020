"""End to end: a real ``pipeline-run`` subprocess reports to a monitor window in this test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gui.widgets.table import COLUMNS
from gui.window import MainWindow
from pipeline.console import humanize
from tests.cli_helpers import ROOT

# Read when pytest-qt makes the QApplication, after collection: the tests need no display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

#: Messages the run's producer yields: enough for the run to last a second or so.
COUNT = 20_000
#: Milliseconds the run may take, start-up included.
RUN_MS = 30_000


def test_a_real_run_ends_finished_with_its_counts_in_the_window(qtbot, secure_window: MainWindow,
                                                                tmp_path: Path) -> None:
    """As a user runs them: the monitor with the user's own key pair; the run reads it and proves it."""
    window = secure_window
    output = tmp_path / "chain.jsonl"
    run = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "--config=configs/chain.json", "--no-progress",
         # The graph goes out every 0.2 s, so that it reaches the window within this short run.
         f"--Pipeline.gui_address=127.0.0.1:{window.receiver.port}", "--Pipeline.graph_interval=0.2",
         f"--Counter.count={COUNT}",
         f"--JsonLinesWriter.path={output}"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        qtbot.waitUntil(lambda: any(r.ended for r in window.runs.runs.values()), timeout=RUN_MS)
        _, stderr = run.communicate(timeout=RUN_MS / 1000)
    finally:
        if run.poll() is None:
            run.kill()
            run.communicate()
    assert run.returncode == 0, stderr
    assert len(output.read_text(encoding="utf-8").splitlines()) == COUNT

    (model,) = window.runs.runs.values()
    view = window.view(model.run_id)
    qtbot.waitUntil(lambda: view.shown_version == model.version, timeout=RUN_MS)
    assert (model.state, model.exit_status, model.header.pipeline) == ("finished", 0, "chain")
    assert model.header.pid == run.pid
    assert model.peer == "monitor"  # the key its connection proved

    table = view.table.steps
    rows = {table.index(row, 0).data(): [table.index(row, c).data() for c in range(table.columnCount())]
            for row in range(table.rowCount())}
    assert list(rows) == ["COUNT", "PASS", "WRITE"]
    for name, row in rows.items():
        values = dict(zip(COLUMNS, row, strict=True))
        assert (values["DONE"], values["FAILED"]) == (humanize.count(COUNT), "0"), name
        assert values["OUT"] == ("—" if name == "WRITE" else humanize.count(COUNT)), name
    assert rows["PASS"][1:3] == ["PassThrough", "0/2"]
    assert table.states == ["finished"] * 3

    assert [(name, box.state, box.done) for name, box in view.graph.boxes.items()] == [
        ("COUNT", "finished", COUNT), ("PASS", "finished", COUNT), ("WRITE", "finished", COUNT)]
    assert view.graph.edges == [("COUNT", "PASS"), ("PASS", "WRITE")]
    assert view.header.badge.text() == "FINISHED"
    assert window.status.state.text() == "finished (exit 0)"
    assert view.errors.summaries() == []
