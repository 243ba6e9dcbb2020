"""The monitor's look: a dark palette for a second screen at night, and one clear colour per state."""

from __future__ import annotations

from functools import cache

from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QApplication

BACKGROUND = QColor("#16191f")
PANEL = QColor("#1e232b")
RAISED = QColor("#272d37")
GRID = QColor("#323945")
TEXT = QColor("#e3e7ee")
MUTED = QColor("#8b95a5")
ACCENT = QColor("#5aa9ff")

#: A step's or a run's state, by colour.
STATE_COLOURS = {
    "starting": QColor("#8b95a5"),
    "waiting": QColor("#6b7585"),
    "running": QColor("#3d9bff"),
    "draining": QColor("#f0b429"),
    "finished": QColor("#35c46a"),
    "failed": QColor("#f25757"),
    "interrupted": QColor("#c77dff"),
}

#: One colour per step in the throughput plot (chosen to stay apart from each other on the dark panel).
SERIES_COLOURS = [QColor(c) for c in ("#5aa9ff", "#ff9f43", "#2ed3b7", "#ff6b9a", "#b18cff", "#f6d55c",
                                      "#7bd389", "#ff7f50", "#6fc3df", "#d4a5ff")]


def state_colour(state: str) -> QColor:
    """The colour of ``state``; grey for a state the monitor does not know."""
    return STATE_COLOURS.get(state, MUTED)


def series_colour(index: int) -> QColor:
    """The plot colour of the ``index``-th step."""
    return SERIES_COLOURS[index % len(SERIES_COLOURS)]


@cache
def state_icon(state: str) -> QIcon:
    """A dot of the state's colour (for a run's tab, a step's row)."""
    pixmap = QPixmap(12, 12)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setRenderHint(QPainter.RenderHint.Antialiasing)
    painter.setPen(Qt.PenStyle.NoPen)
    painter.setBrush(state_colour(state))
    painter.drawEllipse(1, 1, 10, 10)
    painter.end()
    return QIcon(pixmap)


def monospace() -> QFont:
    """The font of tracebacks and numbers that line up."""
    font = QFont("DejaVu Sans Mono")
    font.setStyleHint(QFont.StyleHint.Monospace)
    return font


STYLE_SHEET = f"""
QMainWindow, QTabWidget::pane {{ background: {BACKGROUND.name()}; border: none; }}
QTabBar::tab {{ background: {PANEL.name()}; color: {MUTED.name()}; padding: 6px 14px; border: none;
               border-top-left-radius: 6px; border-top-right-radius: 6px; margin-right: 2px; }}
QTabBar::tab:selected {{ background: {RAISED.name()}; color: {TEXT.name()}; }}
QToolButton#closeTab {{ background: transparent; border: none; color: {MUTED.name()}; font-size: 15px;
                       padding: 0 2px; }}
QToolButton#closeTab:hover {{ color: {TEXT.name()}; }}
QTableView {{ background: {PANEL.name()}; alternate-background-color: #222832; gridline-color: {GRID.name()};
             border: 1px solid {GRID.name()}; border-radius: 6px; }}
QHeaderView::section {{ background: {RAISED.name()}; color: {MUTED.name()}; border: none; padding: 5px 8px;
                       font-weight: bold; }}
QListWidget, QPlainTextEdit, QGraphicsView {{ background: {PANEL.name()}; border: 1px solid {GRID.name()};
                                             border-radius: 6px; }}
QListWidget::item {{ padding: 3px; }}
QListWidget::item:selected {{ background: {RAISED.name()}; color: {TEXT.name()}; }}
QStatusBar {{ background: {PANEL.name()}; color: {MUTED.name()}; }}
QStatusBar QLabel {{ padding: 0 10px; }}
QSplitter::handle {{ background: {BACKGROUND.name()}; }}
QLabel#title {{ font-size: 16px; font-weight: bold; }}
QLabel#muted {{ color: {MUTED.name()}; }}
"""


def apply(app: QApplication) -> None:
    """Give ``app`` the monitor's style, palette and style sheet."""
    app.setStyle("Fusion")
    palette = QPalette()
    for role, colour in (
        (QPalette.ColorRole.Window, BACKGROUND), (QPalette.ColorRole.WindowText, TEXT),
        (QPalette.ColorRole.Base, PANEL), (QPalette.ColorRole.AlternateBase, RAISED),
        (QPalette.ColorRole.Text, TEXT), (QPalette.ColorRole.Button, RAISED),
        (QPalette.ColorRole.ButtonText, TEXT), (QPalette.ColorRole.Highlight, ACCENT),
        (QPalette.ColorRole.HighlightedText, BACKGROUND), (QPalette.ColorRole.ToolTipBase, RAISED),
        (QPalette.ColorRole.ToolTipText, TEXT), (QPalette.ColorRole.PlaceholderText, MUTED),
    ):
        palette.setColor(role, colour)
    app.setPalette(palette)
    app.setStyleSheet(STYLE_SHEET)
