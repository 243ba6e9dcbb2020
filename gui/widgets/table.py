"""The step table: one row per step with its workers, queue, counts, rate and mean time.

WORKERS (where the workers run) and REDELIVERED are shown only for a run with worker processes: a run
of threads keeps its narrow table. Hovering over a step's workers lists its worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableView, QWidget

from pipeline.console import humanize

from .. import theme
from ..model import RunModel, StepView
from . import workers

COLUMNS = ("STEP", "CLASS", "BUSY", "WORKERS", "QUEUE", "DONE", "OUT", "FAILED", "REDELIVERED", "RATE", "MEAN TIME")
#: What a column's header says when pointed at.
TIPS = {"BUSY": "workers inside run() now / all its workers", "WORKERS": "where its workers run: t threads of the run, "
        "p its worker processes, r remote workers (point at a step's to list them)",
        "DONE": "messages whose run() completed", "OUT": "deliveries to next steps: fewer than DONE if the step "
        "dropped messages (a filter), more if it sends one to several steps", "FAILED": "messages whose run() raised",
        "REDELIVERED": "messages delivered again after their worker process died",
        "RATE": "messages done per second, recently (the run's average once it ended)"}
#: The columns shown only for a run with worker processes.
PROCESS_COLUMNS = ("WORKERS", "REDELIVERED")
#: The columns whose cells list the step's worker processes when pointed at.
_HOVER = {COLUMNS.index(name) for name in ("BUSY", "WORKERS", "REDELIVERED")}
_FAILED, _WORKERS, _REDELIVERED = (COLUMNS.index(name) for name in ("FAILED", "WORKERS", "REDELIVERED"))

_Index = QModelIndex | QPersistentModelIndex


@dataclass(frozen=True)
class Row:
    """One step's row: its texts, its state, what hovering over its workers shows and whether they need a look."""

    texts: tuple[str, ...]
    state: str
    hover: str  # rich text; "" for a step whose workers are threads of the run
    alert: bool  # a worker process is late with its heartbeat, or some were restarted


def row(view: StepView) -> Row:
    """``view``'s row."""
    progress = view.progress
    alert = workers.late(view) or (progress is not None and progress.restarts > 0)
    return Row(cells(view), view.state, workers.hover(view) if workers.has_processes(view) else "", alert)


def cells(view: StepView) -> tuple[str, ...]:
    """The texts of ``view``'s row, in COLUMNS order."""
    info, progress = view.info, view.progress
    class_name = info.class_name if info else ""
    if progress is None:
        workers_total = info.workers if info else 0
        return (view.name, class_name, humanize.out_of(0, workers_total), "", "", "0", "0", "0", "0", "0", "—")
    limit = progress.queue_limit or (info.queue_limit if info else 0)
    producer = info is not None and info.kind == "producer"
    queue = "—" if producer else humanize.fill(progress.queue, limit)  # the producer has no queue
    out = humanize.count(progress.emitted) if info is None or info.next_steps else "—"
    return (view.name, class_name, humanize.out_of(progress.busy, progress.workers), str(workers.mix(view)), queue,
            humanize.count(progress.processed), out, humanize.count(progress.failed),
            humanize.count(progress.redelivered), humanize.rate(view.rate), humanize.seconds(progress.mean_time))


class StepTableModel(QAbstractTableModel):
    """The rows of one run's steps; ``refresh`` replaces them all."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.lines: list[Row] = []

    @property
    def rows(self) -> list[tuple[str, ...]]:
        """The texts of every row."""
        return [line.texts for line in self.lines]

    @property
    def states(self) -> list[str]:
        """The state of every row's step."""
        return [line.state for line in self.lines]

    def refresh(self, run: RunModel) -> None:
        """Show the run's latest state."""
        lines = [row(view) for view in run.steps.values()]
        if len(lines) != len(self.lines):
            self.beginResetModel()
            self.lines = lines
            self.endResetModel()
        elif lines != self.lines:
            self.lines = lines
            self.dataChanged.emit(self.index(0, 0), self.index(len(lines) - 1, len(COLUMNS) - 1))

    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 (Qt's default)
        return 0 if parent.isValid() else len(self.rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008 (Qt's default)
        return 0 if parent.isValid() else len(COLUMNS)

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        line, column = self.lines[index.row()], index.column()
        if role == Qt.ItemDataRole.DisplayRole:
            return line.texts[column]
        if role == Qt.ItemDataRole.DecorationRole and column == 0:
            return theme.state_icon(line.state)
        if role == Qt.ItemDataRole.ToolTipRole and column == 0:
            return line.state
        if role == Qt.ItemDataRole.ToolTipRole and column in _HOVER:
            return f"<qt>{line.hover}</qt>" if line.hover else None
        if role == Qt.ItemDataRole.ForegroundRole:
            if column == _FAILED and line.texts[_FAILED] != "0":
                return theme.STATE_COLOURS["failed"]
            if (column == _REDELIVERED and line.texts[_REDELIVERED] != "0") or (column == _WORKERS and line.alert):
                return theme.STATE_COLOURS["draining"]
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
        """Show the run's latest state; the process columns once a step has worker processes."""
        self.steps.refresh(run)
        hidden = not any(workers.has_processes(view) for view in run.steps.values())
        for name in PROCESS_COLUMNS:
            column = COLUMNS.index(name)
            if self.isColumnHidden(column) != hidden:  # set only on a change: an idle table repaints nothing
                self.setColumnHidden(column, hidden)

    def content_width(self) -> int:
        """The width that shows every column shown without a scroll bar (the sections resize lazily: asked here)."""
        header = self.horizontalHeader()
        columns = [c for c in range(header.count()) if not header.isSectionHidden(c)]
        return (sum(max(header.sectionSizeHint(c), self.sizeHintForColumn(c)) for c in columns)
                + 2 * self.frameWidth() + self.verticalScrollBar().sizeHint().width())

    def content_height(self) -> int:
        """The height that shows every row without a scroll bar."""
        return (self.horizontalHeader().height() + self.verticalHeader().defaultSectionSize() * self.steps.rowCount()
                + 2 * self.frameWidth() + 2)
