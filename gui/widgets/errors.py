"""The error panel: the run's errors, newest first, and the traceback of the one selected."""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel, QListWidget, QListWidgetItem, QPlainTextEdit, QSplitter, QVBoxLayout, QWidget

from .. import theme
from ..model import RunModel
from ..protocol import ErrorMessage


def summary(error: ErrorMessage) -> str:
    """One line: where the error happened and what it was."""
    where = f"{error.step}#{error.worker}" + (f" message {error.seq}" if error.seq is not None else "")
    return f"{where}: {error.error}"


class ErrorPanel(QWidget):
    """A list of errors (newest at the top) beside the selected error's traceback."""

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
        self.traceback.setPlaceholderText("No errors. A failed message's traceback shows here.")
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self.list)
        splitter.addWidget(self.traceback)
        splitter.setSizes([420, 580])
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addWidget(self.title)
        layout.addWidget(splitter)
        self.list.currentItemChanged.connect(self._show)
        self._shown = 0  # errors of the run already in the list (error_count when last refreshed)

    def refresh(self, run: RunModel) -> None:
        """Put the run's new errors at the top of the list; select the newest if the newest was selected."""
        new = run.error_count - self._shown
        if new <= 0:
            return
        follow = self.list.currentRow() <= 0
        for error in list(run.errors)[-min(new, len(run.errors)):]:
            item = QListWidgetItem(summary(error))
            item.setData(Qt.ItemDataRole.UserRole, error.traceback)
            item.setForeground(theme.STATE_COLOURS["failed"])
            item.setToolTip(error.error)
            self.list.insertItem(0, item)
        while self.list.count() > len(run.errors):
            self.list.takeItem(self.list.count() - 1)
        self._shown = run.error_count
        kept = f" (the newest {len(run.errors)} kept)" if run.error_count > len(run.errors) else ""
        self.title.setText(f"ERRORS  {run.error_count}{kept}")
        if follow:
            self.list.setCurrentRow(0)

    def summaries(self) -> list[str]:
        """The lines of the list, top first."""
        return [self.list.item(i).text() for i in range(self.list.count())]

    def _show(self, item: QListWidgetItem | None) -> None:
        self.traceback.setPlainText(item.data(Qt.ItemDataRole.UserRole) if item else "")
