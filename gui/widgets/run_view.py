"""One run's tab: a header, the graph, the step table, the throughput plot and the errors."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QSplitter, QVBoxLayout, QWidget

from .. import humanize, theme
from ..model import RunModel
from .errors import ErrorPanel
from .graph import GraphView
from .plot import ThroughputPlot
from .table import StepTable


class RunHeader(QWidget):
    """The run's pipeline, where it runs, its state as a coloured badge, and how it ended."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel()
        self.title.setObjectName("title")
        self.origin = QLabel()
        self.origin.setObjectName("muted")
        self.badge = QLabel()
        self.badge.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.outcome = QLabel()
        self.outcome.setObjectName("muted")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.origin)
        layout.addStretch(1)
        layout.addWidget(self.outcome)
        layout.addWidget(self.badge)

    def refresh(self, run: RunModel) -> None:
        """Show the run's latest state."""
        header = run.header
        self.title.setText(header.pipeline)
        self.origin.setText(f"{header.host} · pid {header.pid} · run {run.run_id}")
        colour = theme.state_colour(run.state).name()
        self.badge.setText(run.state.upper())
        self.badge.setStyleSheet(f"background: {colour}; color: {theme.BACKGROUND.name()}; font-weight: bold;"
                                 " border-radius: 10px; padding: 3px 12px;")
        outcome = f"elapsed {humanize.duration(run.elapsed)}"
        if run.exit_status is not None:
            outcome += f" · exit status {run.exit_status}"
        if run.stop_reason:
            outcome += f" · {run.stop_reason}"
        if run.dropped:
            outcome += f" · {humanize.count(run.dropped)} updates dropped by the sender"
        self.outcome.setText(outcome)


class RunView(QWidget):
    """Everything about one run; ``refresh`` redraws only what changed since the last call."""

    def __init__(self, run: RunModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run = run
        self.header = RunHeader()
        self.graph = GraphView()
        self.table = StepTable()
        self.plot = ThroughputPlot()
        self.errors = ErrorPanel()
        middle = QSplitter(Qt.Orientation.Horizontal)
        middle.addWidget(self.table)
        middle.addWidget(self.plot)
        middle.setSizes([560, 440])
        body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(self.graph)
        body.addWidget(middle)
        body.addWidget(self.errors)
        body.setSizes([210, 340, 170])
        body.setChildrenCollapsible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 10, 10, 6)
        layout.setSpacing(8)
        layout.addWidget(self.header)
        layout.addWidget(body, 1)
        self.shown_version = -1

    def refresh(self) -> bool:
        """Redraw if the run changed since the last redraw; True if it did."""
        if self.run.version == self.shown_version:
            return False
        self.shown_version = self.run.version
        for part in (self.header, self.graph, self.table, self.plot, self.errors):
            part.refresh(self.run)
        return True
