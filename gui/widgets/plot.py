"""The throughput plot: each step's messages per second over the run's elapsed time, drawn with QPainter,
and its legend: one entry per step, in the step's own colour, a click hiding or showing its line.

The rate axis fits what is readable, not the producer's start-up burst, and lines that lie on one
another take turns in dashes so that each shows (``gui.plot_scale``); a rate above the axis is drawn at
its top, and the plot says how high it went.

pyqtgraph would give zoom and hover for free, but measured here it costs 0.35-0.5 s more at start
and 41 MiB more memory (more than the whole window without it), for a plot of a few lines that
changes twice a second: see docs/gui.md.
"""

from __future__ import annotations

import math
import sys

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QColor, QFont, QIcon, QPainter, QPainterPath, QPaintEvent, QPen, QPixmap
from PySide6.QtWidgets import QListWidget, QListWidgetItem, QSizePolicy, QWidget

from pipeline.console import humanize

from .. import theme
from ..model import History, RunModel
from ..plot_scale import overlap_groups, readable_top

LEFT, RIGHT, TOP, BOTTOM = 58.0, 18.0, 34.0, 30.0
#: Length of a dash of lines that take turns, in pen widths.
DASH = 4.0
#: Time axis steps, seconds.
TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)
#: Most ticks an axis draws: its steps give about five.
MAX_TICKS = 12
#: The lowest top of the rate axis, messages/s: one message in 100 s; slower rates lie on the axis.
MIN_TOP = 0.01


def nice_step(span: float, ticks: int = 4) -> float:
    """A round step (1, 2 or 5 times a power of ten) that cuts ``span`` into about ``ticks`` parts."""
    raw = span / ticks
    if not (raw >= sys.float_info.min and math.isfinite(raw)):  # its power of ten would be 0, or log10 fail
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def time_step(span: float, ticks: int = 5) -> float:
    """A round step of the time axis (seconds) for ``span`` seconds: past the longest of TIME_STEPS, a round number
    of them (a run's elapsed time is what a peer says: 1e300 s once made ticks for ever)."""
    longest = TIME_STEPS[-1]
    return next((s for s in TIME_STEPS if s * ticks >= span), None) or longest * nice_step(span / longest, ticks)


def time_label(seconds: float) -> str:
    """A tick of the time axis: "45 s", "2 min", "1.5 h"."""
    if seconds < 60 or seconds % 60:
        return f"{seconds:.0f} s"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:g} h"


def rate_label(value: float) -> str:
    """A tick of the rate axis: "0", "500", "1.5k"."""
    return f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"


class ThroughputPlot(QWidget):
    """Each step's rate over time, in the step's colour; the steps the legend hides are left out."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.series: dict[str, History] = {}
        self.styles: dict[str, tuple[QColor, Qt.PenStyle]] = {}
        self.hidden: set[str] = set()
        self.peak_note = ""  # what the last paint said of rates above the axis
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(280, 180)

    def sizeHint(self) -> QSize:
        return QSize(520, 260)

    def refresh(self, run: RunModel) -> None:
        """Take the run's throughput history, in step order, and repaint."""
        self.series = {name: run.history[name] for name in run.steps if name in run.history}
        if self.styles.keys() != self.series.keys():
            self.styles = theme.series_styles(self.series)
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        # The painter ends whatever happens: one left active by an exception crashed the monitor at exit.
        with QPainter(self) as painter:
            self._paint(painter)

    def _paint(self, painter: QPainter) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        frame = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        painter.setPen(QPen(theme.GRID, 1))
        painter.setBrush(theme.PANEL)
        painter.drawRoundedRect(frame, 6, 6)
        font = QFont(painter.font())
        font.setPointSizeF(8.5)
        painter.setFont(font)
        painter.setPen(theme.MUTED)
        title = QRectF(12, 6, frame.width() - 24, 18)
        painter.drawText(title, Qt.AlignmentFlag.AlignLeft, "THROUGHPUT  messages/s")
        area = QRectF(LEFT, TOP, max(1.0, frame.width() - LEFT - RIGHT), max(1.0, frame.height() - TOP - BOTTOM))
        shown = [history for name, history in self.series.items() if name not in self.hidden and history.times]
        if not shown:
            painter.drawText(area, Qt.AlignmentFlag.AlignCenter, "no data yet")
            return
        x_max, y_max, y_step = self.scale()
        self.peak_note = peak_note(max(max(history.rates) for history in shown), y_max)
        painter.drawText(title, Qt.AlignmentFlag.AlignRight, self.peak_note)
        self._paint_axes(painter, area, x_max, y_max, y_step)
        self._paint_series(painter, area, x_max, y_max)

    def scale(self) -> tuple[float, float, float]:
        """The time axis's end, the rate axis's top and its step, for the steps shown."""
        shown = [history for name, history in self.series.items() if name not in self.hidden and history.times]
        # The model clamps the rates it keeps; the axis holds to the same range whatever its series hold.
        top = min(readable_top([(history.times, history.rates) for history in shown]), humanize.MAX_RATE)
        top = top if top >= MIN_TOP else 0.0
        x_max = max([2.0, *(history.times[-1] for history in shown)])
        y_step = nice_step(top * 1.1 or 1.0)
        return x_max, y_step * math.ceil(top * 1.1 / y_step) or y_step, y_step

    def _paint_axes(self, painter: QPainter, area: QRectF, x_max: float, y_max: float, y_step: float) -> None:
        # Each axis has a handful of ticks by its step; the bound holds whatever the figures (a step lost in a huge
        # value's rounding would add nothing).
        for y in (tick * y_step for tick in range(MAX_TICKS)):
            if y > y_max + y_step / 2:
                break
            py = area.bottom() - y / y_max * area.height()
            painter.setPen(QPen(theme.GRID, 1, Qt.PenStyle.DotLine if y else Qt.PenStyle.SolidLine))
            painter.drawLine(QPointF(area.left(), py), QPointF(area.right(), py))
            painter.setPen(theme.MUTED)
            right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
            painter.drawText(QRectF(0, py - 9, LEFT - 8, 18), right, rate_label(y))
        step = time_step(x_max)
        for t in (tick * step for tick in range(MAX_TICKS)):
            if t > x_max:
                break
            px = area.left() + t / x_max * area.width()
            painter.setPen(QPen(theme.GRID, 1, Qt.PenStyle.DotLine))
            painter.drawLine(QPointF(px, area.top()), QPointF(px, area.bottom()))
            painter.setPen(theme.MUTED)
            painter.drawText(QRectF(px - 40, area.bottom() + 6, 80, 18), Qt.AlignmentFlag.AlignHCenter, time_label(t))

    def lines(self, area: QRectF, x_max: float, y_max: float) -> dict[str, list[QPointF]]:
        """Each shown step's points in pixels; a rate above ``y_max`` at the top of ``area``."""
        return {name: [QPointF(area.left() + t / x_max * area.width(),
                               area.bottom() - min(r, y_max) / y_max * area.height())
                       for t, r in zip(history.times, history.rates, strict=True)]
                for name, history in self.series.items() if name not in self.hidden and history.times}

    def _paint_series(self, painter: QPainter, area: QRectF, x_max: float, y_max: float) -> None:
        painter.setBrush(Qt.BrushStyle.NoBrush)
        lines = self.lines(area, x_max, y_max)
        turns = overlap_groups([[point.y() for point in points] for points in lines.values()])
        for (name, points), (rank, size) in zip(lines.items(), turns, strict=True):
            path = QPainterPath(points[0])
            for point in points[1:]:
                path.lineTo(point)
            colour, dash = self.styles.get(name, (theme.MUTED, Qt.PenStyle.SolidLine))
            pen = QPen(colour, 2.0, dash, Qt.PenCapStyle.FlatCap, Qt.PenJoinStyle.RoundJoin)
            if size > 1:  # lines on one another: each draws one dash in turn, so every colour shows
                pen.setDashPattern([DASH, DASH * (size - 1)])
                pen.setDashOffset(DASH * ((size - rank) % size))
            painter.setPen(pen)
            painter.drawPath(path)


def peak_note(peak: float, y_max: float) -> str:
    """What the plot says when a rate went above its axis: "peak 4000/s above the scale"; "" otherwise."""
    return f"peak {humanize.rate(peak)} above the scale" if peak > y_max else ""


def swatch(colour: QColor, dash: Qt.PenStyle) -> QIcon:
    """A short line in a step's colour and style, for its legend entry."""
    pixmap = QPixmap(22, 12)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    painter.setPen(QPen(colour, 3, dash))
    painter.drawLine(1, 6, 21, 6)
    painter.end()
    return QIcon(pixmap)


class Legend(QListWidget):
    """One entry per step of the plot, in its colour; unticking an entry hides the step's line."""

    def __init__(self, plot: ThroughputPlot, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.plot = plot
        self.setToolTip("untick a step to hide its line")
        self.setMinimumWidth(120)
        self.itemChanged.connect(self._toggle)
        self._names: list[str] = []

    def refresh(self) -> None:
        """Rebuild the entries when the plot's steps changed (a redraw with the same steps sets nothing)."""
        names = list(self.plot.series)
        if names == self._names:
            return
        self._names = names
        self.blockSignals(True)
        self.clear()
        for name in names:
            item = QListWidgetItem(swatch(*self.plot.styles[name]), name)
            item.setFlags(item.flags() | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Unchecked if name in self.plot.hidden else Qt.CheckState.Checked)
            self.addItem(item)
        self.blockSignals(False)

    def entries(self) -> list[str]:
        """The steps listed, top first."""
        return [self.item(i).text() for i in range(self.count())]

    def _toggle(self, item: QListWidgetItem) -> None:
        if item.checkState() == Qt.CheckState.Checked:
            self.plot.hidden.discard(item.text())
        else:
            self.plot.hidden.add(item.text())
        self.plot.update()
