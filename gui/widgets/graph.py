"""The graph view: a box per step, coloured by its state, and an arrow to each of its next steps."""

from __future__ import annotations

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QFont, QPainter, QPainterPath, QPen, QPolygonF
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsPathItem,
    QGraphicsPolygonItem,
    QGraphicsScene,
    QGraphicsView,
    QWidget,
)

from .. import humanize, theme
from ..layout import grid
from ..model import RunModel, StepView

BOX_WIDTH, BOX_HEIGHT = 210.0, 104.0
COLUMN_GAP, ROW_GAP = 64.0, 26.0
#: The view never zooms in more than this on a small graph.
MAX_SCALE = 1.3
#: Up to this many workers are drawn as one dot each.
MAX_DOTS = 8


class StepBox(QGraphicsItem):
    """One step: name, class, state, busy/total workers as dots, queue fill as a bar, messages done."""

    def __init__(self, view: StepView) -> None:
        super().__init__()
        self.name = view.name
        self.class_name = view.info.class_name if view.info else ""
        self.state = "waiting"
        self.busy = self.workers = self.queue = self.done = self.failed = 0
        self.queue_limit = 0
        self.has_queue = view.info is None or view.info.kind != "producer"
        self.setToolTip(f"{view.name}: {view.info.module}.{self.class_name}" if view.info else view.name)
        self.update_from(view)

    def update_from(self, view: StepView) -> None:
        """Show ``view``'s latest progress."""
        info, progress = view.info, view.progress
        self.state = view.state
        self.workers = progress.workers if progress else (info.workers if info else 0)
        self.queue_limit = info.queue_limit if info else (progress.queue_limit if progress else 0)
        if progress:
            self.busy, self.queue, self.done, self.failed = (progress.busy, progress.queue, progress.processed,
                                                             progress.failed)
        self.update()

    def workers_text(self) -> str:
        """Busy and total workers: "1/2 busy"."""
        return f"{self.busy}/{self.workers} busy"

    def queue_text(self) -> str:
        """Queue fill and limit: "12/64" ("12" when unbounded, "source" for the producer)."""
        if not self.has_queue:
            return "source"
        return f"{self.queue}/{self.queue_limit}" if self.queue_limit > 0 else str(self.queue)

    def boundingRect(self) -> QRectF:
        return QRectF(-2, -2, BOX_WIDTH + 4, BOX_HEIGHT + 4)

    def paint(self, painter: QPainter, option: object, widget: QWidget | None = None) -> None:
        colour = theme.state_colour(self.state)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        box = QRectF(0, 0, BOX_WIDTH, BOX_HEIGHT)
        fill = QColor(colour)
        fill.setAlpha(38)
        painter.setPen(QPen(colour, 2))
        painter.setBrush(theme.RAISED)
        painter.drawRoundedRect(box, 9, 9)
        painter.setBrush(fill)
        painter.drawRoundedRect(box, 9, 9)
        self._paint_texts(painter, colour)
        self._paint_workers(painter, colour)
        self._paint_queue(painter)

    def _paint_texts(self, painter: QPainter, colour: QColor) -> None:
        font = QFont(painter.font())
        font.setPointSizeF(11)
        font.setBold(True)
        painter.setFont(font)
        painter.setPen(theme.TEXT)
        painter.drawText(QRectF(12, 8, BOX_WIDTH - 24, 20), Qt.AlignmentFlag.AlignLeft, self.name)
        font.setPointSizeF(8)
        painter.setFont(font)
        painter.setPen(colour)
        painter.drawText(QRectF(12, 10, BOX_WIDTH - 24, 18), Qt.AlignmentFlag.AlignRight, self.state.upper())
        font.setBold(False)
        font.setPointSizeF(9)
        painter.setFont(font)
        painter.setPen(theme.MUTED)
        painter.drawText(QRectF(12, 29, BOX_WIDTH - 24, 18), Qt.AlignmentFlag.AlignLeft, self.class_name)
        if self.failed:
            painter.setPen(theme.STATE_COLOURS["failed"])
            painter.drawText(QRectF(12, 29, BOX_WIDTH - 24, 18), Qt.AlignmentFlag.AlignRight,
                             f"{humanize.count(self.failed)} failed")
        painter.setPen(theme.TEXT)
        painter.drawText(QRectF(12, 50, BOX_WIDTH - 24, 18), Qt.AlignmentFlag.AlignRight,
                         f"{humanize.count(self.done)} done")

    def _paint_workers(self, painter: QPainter, colour: QColor) -> None:
        left, text = 12.0, self.workers_text()
        if self.workers <= MAX_DOTS:
            for i in range(self.workers):
                painter.setBrush(colour if i < self.busy else Qt.BrushStyle.NoBrush)
                painter.setPen(QPen(colour, 1.2))
                painter.drawEllipse(QRectF(13 + i * 12, 54, 8, 8))
            left, text = left + self.workers * 12 + 4, f"{self.busy}/{self.workers}"
        painter.setPen(theme.MUTED)
        painter.drawText(QRectF(left, 50, BOX_WIDTH - 12 - left, 18), Qt.AlignmentFlag.AlignLeft, text)

    def _paint_queue(self, painter: QPainter) -> None:
        painter.setPen(theme.MUTED)
        painter.drawText(QRectF(BOX_WIDTH - 12 - 52, 75, 52, 18), Qt.AlignmentFlag.AlignRight, self.queue_text())
        if not self.has_queue:
            return
        bar = QRectF(12, 80, BOX_WIDTH - 24 - 56, 8)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(theme.GRID)
        painter.drawRoundedRect(bar, 4, 4)
        if self.queue_limit > 0 and self.queue > 0:
            fraction = min(1.0, self.queue / self.queue_limit)
            painter.setBrush(theme.STATE_COLOURS["draining"] if fraction > 0.8 else theme.ACCENT)
            painter.drawRoundedRect(QRectF(bar.x(), bar.y(), max(8.0, bar.width() * fraction), bar.height()), 4, 4)


def curve(start: QPointF, end: QPointF) -> QPainterPath:
    """A smooth curve from ``start`` (a box's right side) to ``end`` (the next box's left side)."""
    path = QPainterPath(start)
    bend = max(30.0, (end.x() - start.x()) / 2)
    path.cubicTo(QPointF(start.x() + bend, start.y()), QPointF(end.x() - bend, end.y()), end)
    return path


def arrowhead(tip: QPointF) -> QPolygonF:
    """A small triangle pointing right, at ``tip``."""
    return QPolygonF([tip, QPointF(tip.x() - 9, tip.y() - 5), QPointF(tip.x() - 9, tip.y() + 5)])


class GraphView(QGraphicsView):
    """The steps of one run in columns by their longest path from the producer."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.boxes: dict[str, StepBox] = {}
        self.edges: list[tuple[str, str]] = []
        self._shape: tuple = ()  # the graph (or the step names) the scene shows
        self.scene().addText("waiting for the run's graph…").setDefaultTextColor(theme.MUTED)

    def refresh(self, run: RunModel) -> None:
        """Build the scene when the run's graph (or, until it arrives, its list of steps) is new; update every box."""
        shape = run.graph if run.graph is not None else tuple(run.steps)
        if shape and shape != self._shape:
            self._shape = shape
            self._build(run)
        for name, box in self.boxes.items():
            box.update_from(run.steps[name])

    def _build(self, run: RunModel) -> None:
        """Columns by longest path; without the graph, the known steps in a row with no arrows."""
        scene = self.scene()
        scene.clear()
        self.boxes, self.edges = {}, []
        if run.graph is not None:
            next_steps = {info.name: info.next_steps for info in run.graph}
            cells = grid(next_steps)
        else:
            next_steps = {name: () for name in run.steps}
            cells = {name: (i, 0) for i, name in enumerate(run.steps)}
        rows = {col: 1 + max(r for c, r in cells.values() if c == col) for col, _ in cells.values()}
        tallest = max(rows.values())
        for name, (col, row) in cells.items():
            offset = (tallest - rows[col]) * (BOX_HEIGHT + ROW_GAP) / 2
            box = StepBox(run.steps[name])
            box.setPos(col * (BOX_WIDTH + COLUMN_GAP), offset + row * (BOX_HEIGHT + ROW_GAP))
            scene.addItem(box)
            self.boxes[name] = box
        for name, targets in next_steps.items():
            for target in targets:
                if target in self.boxes:
                    self._add_arrow(name, target)
        if run.graph is None:
            note = scene.addText("the run's graph has not arrived: steps shown without their connections")
            note.setDefaultTextColor(theme.MUTED)
            note.setPos(0, -30)
        scene.setSceneRect(scene.itemsBoundingRect().adjusted(-16, -16, 16, 16))
        self._fit()

    def _add_arrow(self, source: str, target: str) -> None:
        start, end = self.boxes[source].pos(), self.boxes[target].pos()
        tip = QPointF(end.x() - 3, end.y() + BOX_HEIGHT / 2)
        line = QGraphicsPathItem(curve(QPointF(start.x() + BOX_WIDTH + 2, start.y() + BOX_HEIGHT / 2),
                                       QPointF(tip.x() - 8, tip.y())))
        line.setPen(QPen(theme.MUTED, 1.6))
        head = QGraphicsPolygonItem(arrowhead(tip))
        head.setPen(Qt.PenStyle.NoPen)
        head.setBrush(QBrush(theme.MUTED))
        for item in (line, head):
            item.setZValue(-1)
            self.scene().addItem(item)
        self.edges.append((source, target))

    def _fit(self) -> None:
        rect = self.scene().sceneRect()
        if rect.isEmpty():
            return
        viewport = self.viewport().rect()
        scale = min(viewport.width() / rect.width(), viewport.height() / rect.height(), MAX_SCALE)
        self.resetTransform()
        self.scale(scale, scale)
        self.centerOn(rect.center())

    def resizeEvent(self, event: object) -> None:
        super().resizeEvent(event)
        self._fit()
