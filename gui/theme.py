"""The monitor's look: a dark palette for a second screen at night, and one clear colour per state."""

from __future__ import annotations

import zlib
from collections.abc import Iterable
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

#: The colours of the steps in the throughput plot (chosen to stay apart from each other on the dark panel).
SERIES_COLOURS = [QColor(c) for c in (
    "#5aa9ff", "#ff9f43", "#2ed3b7", "#ff6b9a", "#b18cff", "#f6d55c", "#7bd389", "#ff5c5c", "#6fc3df",
    "#e377c2", "#c5e17a", "#ffc8a2", "#8c9eff", "#4dd0a1", "#ffd700", "#a1887f", "#00bcd4", "#f48fb1",
    "#aed581", "#ce93d8")]
#: Line styles that tell apart two steps of the same colour, once every colour is taken.
SERIES_DASHES = (Qt.PenStyle.SolidLine, Qt.PenStyle.DashLine, Qt.PenStyle.DotLine)


def state_colour(state: str) -> QColor:
    """The colour of ``state``; grey for a state the monitor does not know."""
    return STATE_COLOURS.get(state, MUTED)


def series_styles(names: Iterable[str]) -> dict[str, tuple[QColor, Qt.PenStyle]]:
    """Each step's colour and line style, tied to its name: the same in every run and on every host.

    A name's hash picks its colour; two names of one run that pick the same go, in sorted order, to
    the next free colour, then to the next line style once every colour is taken, so the steps of a
    run stay apart (up to 60 steps; past that, styles repeat).
    """
    slots = len(SERIES_COLOURS) * len(SERIES_DASHES)
    taken: set[int] = set()
    styles = {}
    for name in sorted(set(names)):
        preferred = zlib.crc32(name.encode()) % len(SERIES_COLOURS)
        slot = next((s % slots for s in range(preferred, preferred + slots) if s % slots not in taken), preferred)
        taken.add(slot)
        styles[name] = (SERIES_COLOURS[slot % len(SERIES_COLOURS)], SERIES_DASHES[slot // len(SERIES_COLOURS)])
    return styles


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
QProgressBar {{ background: {RAISED.name()}; border: none; border-radius: 4px; }}
QProgressBar::chunk {{ background: {ACCENT.name()}; border-radius: 4px; }}
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
