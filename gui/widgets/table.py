"""The step table: one row per step with its workers, queue, counts, rate and mean time."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from .. import humanize, theme
from ..model import RunModel, StepView

COLUMNS = ("STEP", "CLASS", "WORKERS", "QUEUE", "DONE", "OUT", "FAILED", "RATE", "MEAN TIME")
#: What a column's header says when pointed at.
TIPS = {"DONE": "messages whose run() completed", "OUT": "deliveries to next steps: fewer than DONE if the step "
        "dropped messages (a filter), more if it sends one to several steps", "FAILED": "messages whose run() raised",
        "RATE": "messages done per second, recently (the run's average once it ended)"}
_FAILED = COLUMNS.index("FAILED")

_Index = QModelIndex | QPersistentModelIndex


def cells(view: StepView) -> tuple[str, ...]:
    """The texts of ``view``'s row, in COLUMNS order."""
    info, progress = view.info, view.progress
    class_name = info.class_name if info else ""
    if progress is None:
        workers = info.workers if info else 0
        return (view.name, class_name, f"0/{workers}", "", "0", "0", "0", "0", "—")
    limit = progress.queue_limit or (info.queue_limit if info else 0)
    if info is not None and info.kind == "producer":
        queue = "—"  # the producer has no queue
    else:
        queue = f"{progress.queue}/{limit}" if limit > 0 else str(progress.queue)
    out = humanize.count(progress.emitted) if info is None or info.next_steps else "—"
    return (view.name, class_name, f"{progress.busy}/{progress.workers}", queue, humanize.count(progress.processed),
            out, humanize.count(progress.failed), humanize.rate(view.rate), humanize.seconds(progress.mean_time))


class StepTableModel(QAbstractTableModel):
    """The rows of one run's steps; ``refresh`` replaces them all."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.rows: list[tuple[str, ...]] = []
        self.states: list[str] = []

    def refresh(self, run: RunModel) -> None:
        """Show the run's latest state."""
        views = list(run.steps.values())
        rows = [cells(view) for view in views]
        states = [view.state for view in views]
        if len(rows) != len(self.rows):
            self.beginResetModel()
            self.rows, self.states = rows, states
            self.endResetModel()
        elif rows != self.rows or states != self.states:
            self.rows, self.states = rows, states
            self.dataChanged.emit(self.index(0, 0), self.index(len(rows) - 1, len(COLUMNS) - 1))

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 (Qt's default)
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 (Qt's default)
        return 0 if parent.isValid() else len(COLUMNS)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        row, column = index.row(), index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return self.rows[row][column]
        if role == Qt.ItemDataRole.DecorationRole and column == 0:
            return theme.state_icon(self.states[row])
        if role == Qt.ItemDataRole.ToolTipRole and column == 0:
            return self.states[row]
        if role == Qt.ItemDataRole.ForegroundRole:
            if column == _FAILED and self.rows[row][_FAILED] != "0":
                return theme.STATE_COLOURS["failed"]
            return theme.MUTED if column == 1 else theme.TEXT
        if role == Qt.ItemDataRole.TextAlignmentRole and column >= 2:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None

    def headerData(self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return COLUMNS[section]
        if role == Qt.ItemDataRole.ToolTipRole and orientation == Qt.Orientation.Horizontal:
            return TIPS.get(COLUMNS[section])
        if role == Qt.ItemDataRole.TextAlignmentRole and orientation == Qt.Orientation.Horizontal and section >= 2:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        return None


class StepTable(QTableView):
    """The table view of a StepTableModel, sized for reading at a distance."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.steps = StepTableModel(self)
        self.setModel(self.steps)
        self.setAlternatingRowColors(True)
        self.setShowGrid(False)
        self.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.setFocusPolicy(Qt.FocusPolicy.NoFocus)
        self.verticalHeader().hide()
        self.verticalHeader().setDefaultSectionSize(30)
        header = self.horizontalHeader()
        # Every column as wide as its header and cells (no clipped "MEAN TIME"); the table scrolls if narrow.
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setStretchLastSection(True)
        self.setFont(theme.monospace())

    def refresh(self, run: RunModel) -> None:
        """Show the run's latest state."""
        self.steps.refresh(run)

    def content_height(self) -> int:
        """The height that shows every row without a scroll bar."""
        return (self.horizontalHeader().height() + self.verticalHeader().defaultSectionSize() * self.steps.rowCount()
                + 2 * self.frameWidth() + 2)
