"""One run's tab: a header, the graph, the step table, the throughput plot and its legend, and the errors.

The panels get the room their content needs: when the number of steps or the presence of errors
changes, the graph gets its wrapped height (up to GRAPH_SHARE of the tab), the errors their list
(or a title line when there are none), the table and the plot the rest. When the table's columns
or its rows change (a run's worker processes add two columns), the table gets its width back from
the plot, as long as the plot keeps PLOT_MIN pixels.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QSplitter, QVBoxLayout, QWidget

from pipeline.console import humanize

from .. import theme
from ..model import RunModel
from .errors import ErrorPanel
from .graph import GraphView
from .plot import Legend, ThroughputPlot
from .table import StepTable

#: The share of the tab's height the graph may take at most, and its height at least (pixels).
GRAPH_SHARE, GRAPH_MIN = 0.55, 150
#: The errors' height when there are some, and the middle row's (table and plot) at least, pixels.
ERRORS_HEIGHT, MIDDLE_MIN = 190, 180
#: The plot's width at least when the table takes room from it, pixels.
PLOT_MIN = 320
#: Steps of the progress bar: per mille, so that a long run's bar still moves.
PROGRESS_STEPS = 1000


class RunHeader(QWidget):
    """The run's pipeline, where it runs, how far it is when the producer declared its length (a bar,
    the fraction and the ETA, as the terminal says them), its state as a coloured badge, and how it ended."""

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
        self.bar = QProgressBar()
        self.bar.setRange(0, PROGRESS_STEPS)
        self.bar.setTextVisible(False)
        self.bar.setFixedSize(140, 8)
        self.bar.hide()
        self.progress = QLabel()
        # Pipeline, host, run id, stop reason and step name are what a peer says: shown as plain text, since
        # Qt's automatic rich text loaded whatever <img src=...> a name held (/dev/zero until the memory ran out).
        for label in (self.title, self.origin, self.badge, self.outcome, self.progress):
            label.setTextFormat(Qt.TextFormat.PlainText)
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.origin)
        layout.addStretch(1)
        layout.addWidget(self.bar)
        layout.addWidget(self.progress)
        layout.addSpacing(8)
        layout.addWidget(self.outcome)
        layout.addWidget(self.badge)

    def refresh(self, run: RunModel) -> None:
        """Show the run's latest state."""
        header = run.header
        self.title.setText(header.pipeline)
        key = f" · key {run.peer}" if run.peer else " · plaintext"
        self.origin.setText(f"{header.host} · pid {header.pid} · run {run.run_id}{key}")
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
        total = run.total()
        self.bar.setVisible(total is not None)
        self.progress.setText(total.text(humanize.count) if total is not None else "")
        if total is not None:
            self.bar.setValue(PROGRESS_STEPS if total.done >= total.total
                              else total.done * PROGRESS_STEPS // max(total.total, 1))


class RunView(QWidget):
    """Everything about one run; ``refresh`` redraws only what changed since the last call."""

    def __init__(self, run: RunModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.run = run
        self.header = RunHeader()
        self.graph = GraphView()
        self.table = StepTable()
        self.plot = ThroughputPlot()
        self.legend = Legend(self.plot)
        self.errors = ErrorPanel()
        self.middle = middle = QSplitter(Qt.Orientation.Horizontal)
        middle.addWidget(self.table)
        middle.addWidget(self.plot)
        middle.addWidget(self.legend)
        middle.setSizes([600, 420, 150])
        self.body = body = QSplitter(Qt.Orientation.Vertical)
        body.addWidget(self.graph)
        body.addWidget(middle)
        body.addWidget(self.errors)
        body.setChildrenCollapsible(False)
        self._sized: tuple = ()  # what the panels were last sized for
        self._widened: tuple[int, int] = (-1, -1)  # the table's columns shown and rows when it was last widened
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
        self.legend.refresh()
        self.size_panels()
        return True

    def size_panels(self) -> None:
        """Give each panel the room its content needs, when the content changed shape (not on every redraw)."""
        self._widen_table()
        shape = (len(self.run.steps), self.run.graph is not None, self.run.error_count > 0, self.body.height())
        if shape == self._sized or self.body.height() <= 0:
            return
        self._sized = shape
        total = self.body.height() - 2 * self.body.handleWidth()
        errors = ERRORS_HEIGHT if self.run.error_count else self.errors.title.sizeHint().height()
        self.errors.setMaximumHeight(16_777_215 if self.run.error_count else errors)
        graph = int(min(max(self.graph.content_height(), GRAPH_MIN), GRAPH_SHARE * total))
        graph = min(graph, max(GRAPH_MIN, total - errors - MIDDLE_MIN))
        self.body.setSizes([graph, max(MIDDLE_MIN, total - graph - errors), errors])

    def _widen_table(self) -> None:
        """Give the table the width of its columns, from the plot, when the columns or rows shown changed."""
        header = self.table.horizontalHeader()
        shown = (header.count() - header.hiddenSectionCount(), self.table.steps.rowCount())
        if shown == self._widened or self.middle.width() <= 0:
            return
        self._widened = shown
        table, plot, legend = self.middle.sizes()
        wanted = self.table.content_width()
        extra = min(wanted - table, plot - PLOT_MIN)
        if extra > 0:
            self.middle.setSizes([table + extra, plot - extra, legend])

    def resizeEvent(self, event: object) -> None:
        super().resizeEvent(event)
        self.size_panels()
