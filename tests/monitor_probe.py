"""The monitor as ``pipeline-gui`` starts it (offscreen), writing what its window shows to a JSON file, for tests
that run the monitor on another host (a network namespace) than the run.

    python -m tests.monitor_probe --out=FILE [pipeline-gui options]

Every 100 ms (and once at start, with no run) FILE is replaced by
``{"address": ..., "runs": [{"origin": ..., "state": ..., "steps": {STEP: {"workers": ..., "hover": ...}}}]}``:
each run's tab header line and state badge, and each step's WORKERS cell and its hover text, as a user sees
them. It stops on SIGTERM (as pipeline-gui does) or after ``--seconds``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

#: Milliseconds between two snapshots of the window.
SNAPSHOT_MS = 100


def shown(window: Any) -> dict[str, Any]:
    """What the window shows: its address, and per run its header line, its state and each step's WORKERS cell
    and hover."""
    from PySide6.QtCore import Qt

    from gui.widgets.table import COLUMNS

    runs = []
    for view in window.views.values():
        model, column = view.table.steps, COLUMNS.index("WORKERS")
        steps = {}
        for row in range(model.rowCount()):
            name = model.index(row, 0).data()
            cell = model.index(row, column)
            steps[name] = {"workers": cell.data(), "hover": cell.data(Qt.ItemDataRole.ToolTipRole) or ""}
        runs.append({"origin": view.header.origin.text(), "state": view.header.badge.text(), "steps": steps})
    return {"address": window.address, "runs": runs}


def main(argv: Sequence[str] | None = None) -> None:
    """Run the monitor with pipeline-gui's options and keep FILE up to date."""
    cli = argparse.ArgumentParser(prog="python -m tests.monitor_probe")
    cli.add_argument("--out", type=Path, required=True, help="The JSON file to keep up to date.")
    cli.add_argument("--seconds", type=float, default=60.0, help="Stop after this long at most.")
    args, gui_options = cli.parse_known_args(argv)

    from PySide6.QtCore import QTimer
    from PySide6.QtWidgets import QApplication

    from gui.app import PipeGui, QuitOnSignal
    from gui.window import MainWindow

    app = PipeGui()
    app.initialize(gui_options)
    qt_app = QApplication.instance() or QApplication(["monitor-probe"])
    with QuitOnSignal(qt_app):
        window = MainWindow(app.host, app.port, app.security())

        def snapshot() -> None:
            window.redraw()
            scratch = args.out.with_suffix(".tmp")
            scratch.write_text(json.dumps(shown(window)), encoding="utf-8")
            scratch.replace(args.out)  # a reader never sees half a file

        timer = QTimer()
        timer.setInterval(SNAPSHOT_MS)
        timer.timeout.connect(snapshot)
        timer.start()
        QTimer.singleShot(int(args.seconds * 1000), qt_app.quit)
        snapshot()
        qt_app.exec()
    window.shutdown()
    sys.exit(0)


if __name__ == "__main__":
    main()
