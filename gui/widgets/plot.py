"""The throughput plot: each step's messages per second over the run's elapsed time, drawn with QPainter."""

from __future__ import annotations

import math

from PySide6.QtCore import QPointF, QRectF, QSize, Qt
from PySide6.QtGui import QFont, QPainter, QPainterPath, QPaintEvent, QPen
from PySide6.QtWidgets import QSizePolicy, QWidget

from .. import theme
from ..model import RunModel

LEFT, RIGHT, TOP, BOTTOM = 58.0, 18.0, 46.0, 30.0
#: Time axis steps, seconds.
TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200)


def nice_step(span: float, ticks: int = 4) -> float:
    """A round step (1, 2 or 5 times a power of ten) that cuts ``span`` into about ``ticks`` parts."""
    if span <= 0:
        return 1.0
    raw = span / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def time_step(span: float, ticks: int = 5) -> float:
    """A round step of the time axis (seconds) for ``span`` seconds."""
    return next((s for s in TIME_STEPS if s * ticks >= span), TIME_STEPS[-1])


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
    """Each step's rate over time, one colour per step, with a legend."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.series: dict[str, list[tuple[float, float]]] = {}
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Expanding)
        self.setMinimumSize(280, 180)

    def sizeHint(self) -> QSize:
        return QSize(520, 260)

    def refresh(self, run: RunModel) -> None:
        """Take the run's throughput history, in step order, and repaint."""
        self.series = {name: list(run.history[name].points) for name in run.steps if name in run.history}
        self.update()

    def paintEvent(self, event: QPaintEvent) -> None:
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        frame = QRectF(self.rect()).adjusted(0.5, 0.5, -0.5, -0.5)
        painter.setPen(QPen(theme.GRID, 1))
        painter.setBrush(theme.PANEL)
        painter.drawRoundedRect(frame, 6, 6)
        font = QFont(painter.font())
        font.setPointSizeF(8.5)
        painter.setFont(font)
        painter.setPen(theme.MUTED)
        painter.drawText(QRectF(12, 6, frame.width() - 24, 18), Qt.AlignmentFlag.AlignLeft, "THROUGHPUT  messages/s")
        area = QRectF(LEFT, TOP, max(1.0, frame.width() - LEFT - RIGHT), max(1.0, frame.height() - TOP - BOTTOM))
        points = [p for series in self.series.values() for p in series]
        if not points:
            painter.drawText(area, Qt.AlignmentFlag.AlignCenter, "no data yet")
            return
        x_max = max(2.0, max(t for t, _ in points))
        y_step = nice_step(max(r for _, r in points) * 1.1 or 1.0)
        y_max = y_step * math.ceil(max(r for _, r in points) * 1.1 / y_step) or y_step
        self._paint_axes(painter, area, x_max, y_max, y_step)
        self._paint_series(painter, area, x_max, y_max)
        self._paint_legend(painter, frame)

    def _paint_axes(self, painter: QPainter, area: QRectF, x_max: float, y_max: float, y_step: float) -> None:
        y = 0.0
        while y <= y_max + y_step / 2:
            py = area.bottom() - y / y_max * area.height()
            painter.setPen(QPen(theme.GRID, 1, Qt.PenStyle.DotLine if y else Qt.PenStyle.SolidLine))
            painter.drawLine(QPointF(area.left(), py), QPointF(area.right(), py))
            painter.setPen(theme.MUTED)
            right = Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter
            painter.drawText(QRectF(0, py - 9, LEFT - 8, 18), right, rate_label(y))
            y += y_step
        step = time_step(x_max)
        t = 0.0
        while t <= x_max:
            px = area.left() + t / x_max * area.width()
            painter.setPen(QPen(theme.GRID, 1, Qt.PenStyle.DotLine))
            painter.drawLine(QPointF(px, area.top()), QPointF(px, area.bottom()))
            painter.setPen(theme.MUTED)
            painter.drawText(QRectF(px - 40, area.bottom() + 6, 80, 18), Qt.AlignmentFlag.AlignHCenter, time_label(t))
            t += step

    def _paint_series(self, painter: QPainter, area: QRectF, x_max: float, y_max: float) -> None:
        painter.setBrush(Qt.BrushStyle.NoBrush)
        for index, series in enumerate(self.series.values()):
            if not series:
                continue
            path = QPainterPath()
            for i, (t, r) in enumerate(series):
                point = QPointF(area.left() + t / x_max * area.width(), area.bottom() - r / y_max * area.height())
                if i:
                    path.lineTo(point)
                else:
                    path.moveTo(point)
            painter.setPen(QPen(theme.series_colour(index), 2.0, Qt.PenStyle.SolidLine, Qt.PenCapStyle.RoundCap,
                                Qt.PenJoinStyle.RoundJoin))
            painter.drawPath(path)

    def _paint_legend(self, painter: QPainter, frame: QRectF) -> None:
        x = LEFT
        metrics = painter.fontMetrics()
        for index, name in enumerate(self.series):
            width = metrics.horizontalAdvance(name) + 30
            if x + width > frame.width() - RIGHT:
                break
            painter.setPen(QPen(theme.series_colour(index), 3))
            painter.drawLine(QPointF(x, 32), QPointF(x + 14, 32))
            painter.setPen(theme.TEXT)
            painter.drawText(QRectF(x + 18, 24, width, 16), Qt.AlignmentFlag.AlignLeft, name)
            x += width
