"""The error panel: the error that stops the run first, then the others in the order they came, and the
traceback of the one selected. With no error it shrinks to its title line."""

from __future__ import annotations

from html import escape

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QListWidget, QListWidgetItem, QPlainTextEdit, QSplitter, QVBoxLayout, QWidget

from pipeline.console import humanize

from .. import theme
from ..model import RunModel
from ..protocol import ErrorMessage

#: The mark of the error that stops the run.
STOPPED = "stopped the run \u2014 "


def summary(error: ErrorMessage) -> str:
    """One line: where the error happened and what it was."""
    where = f"{error.step}#{error.worker}" + (f" message {error.seq}" if error.seq is not None else "")
    return f"{where}: {error.error}"


class ErrorPanel(QWidget):
    """A list of errors (the one that stops the run first) beside the selected error's traceback."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QLabel("ERRORS  none")
        self.title.setObjectName("muted")
        self.list = QListWidget()
        self.list.setWordWrap(False)
        self.traceback = QPlainTextEdit()
        self.traceback.setReadOnly(True)
        self.traceback.setFont(theme.monospace())
        self.traceback.setLineWrapMode(QPlainTextEdit.LineWrapMode.NoWrap)
        self.traceback.setPlaceholderText("Select an error to see its traceback.")
        self.body = QSplitter(Qt.Orientation.Horizontal)
        self.body.addWidget(self.list)
        self.body.addWidget(self.traceback)
        self.body.setSizes([420, 580])
        self.body.hide()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.title)
        layout.addWidget(self.body)
        self.list.currentItemChanged.connect(self._show)
        self._shown = 0  # errors of the run in the list (error_count when last refreshed)

    def refresh(self, run: RunModel) -> None:
        """List the run's kept errors again if new ones came; keep the selection on the same error."""
        if run.error_count == self._shown:
            return
        self._shown = run.error_count
        selected = self.list.currentItem()
        chosen = selected.data(Qt.ItemDataRole.UserRole + 1) if selected else None
        stopping = run.stopping_error()
        ordered = ([stopping] if stopping else []) + [e for e in run.errors.first if e is not stopping]
        self.list.blockSignals(True)
        self.list.clear()
        for error in ordered:
            self._add(error, STOPPED if error is stopping else "")
        if run.errors.skipped:
            gap = QListWidgetItem(f"\u2026 {humanize.count(run.errors.skipped)} more errors, counted, not kept \u2026")
            gap.setFlags(Qt.ItemFlag.NoItemFlags)
            gap.setForeground(theme.MUTED)
            self.list.addItem(gap)
        for error in run.errors.last:
            self._add(error, "")
        self.list.blockSignals(False)
        kept = f" ({len(run.errors)} kept: the first and the newest)" if run.errors.skipped else ""
        self.title.setText(f"ERRORS  {humanize.count(run.error_count)}{kept}")
        self.body.show()
        rows = [self.list.item(i).data(Qt.ItemDataRole.UserRole + 1) for i in range(self.list.count())]
        self.list.setCurrentRow(rows.index(chosen) if chosen in rows else 0)

    def _add(self, error: ErrorMessage, mark: str) -> None:
        item = QListWidgetItem(mark + summary(error))
        item.setData(Qt.ItemDataRole.UserRole, error.traceback)
        item.setData(Qt.ItemDataRole.UserRole + 1, id(error))
        item.setForeground(theme.STATE_COLOURS["failed"])
        item.setToolTip(f"<qt>{escape(error.error)}</qt>")  # a tooltip that looks like HTML is rendered as HTML
        self.list.addItem(item)

    def summaries(self) -> list[str]:
        """The lines of the list, top first."""
        return [self.list.item(i).text() for i in range(self.list.count())]

    def _show(self, item: QListWidgetItem | None) -> None:
        self.traceback.setPlainText(item.data(Qt.ItemDataRole.UserRole) or "" if item else "")
