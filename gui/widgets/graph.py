"""The graph view: a box per step, coloured by its state, and an arrow to each of its next steps.

Readable at any size: the boxes keep their size and their text never drops below MIN_FONT_PT on
screen (the view never shrinks them below MIN_SCALE); columns that do not fit the width wrap into
bands stacked top to bottom, and what still does not fit scrolls (Ctrl+wheel zooms, a double click
fits again). The scene is rebuilt only when the graph or the bands change, in linear time. The arrows are one
item, and at most MAX_ARROWS of them are drawn (the view says how many are not), so that a graph of 200 steps
each sending to all the others (40,000 connections, within the protocol's caps) costs what a plain one does.
"""

from __future__ import annotations

from collections.abc import Callable
from html import escape

from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import (
    QBrush,
    QColor,
    QFont,
    QFontMetrics,
    QMouseEvent,
    QPainter,
    QPainterPath,
    QPen,
    QPolygonF,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsScene,
    QGraphicsView,
    QWidget,
)

from pipeline.console import humanize

from .. import theme
from ..layout import band_rows, bands, grid
from ..model import RunModel, StepView
from . import workers

BOX_WIDTH, BOX_HEIGHT = 210.0, 104.0
COLUMN_GAP, ROW_GAP, BAND_GAP = 64.0, 26.0, 48.0
#: The smallest font in a box, points at scale 1.
SMALLEST_FONT_PT = 9.0
#: The smallest a box's text may be on screen, points.
MIN_FONT_PT = 7.0
#: The view never shrinks the boxes more than this (their smallest text stays at MIN_FONT_PT).
MIN_SCALE = MIN_FONT_PT / SMALLEST_FONT_PT
#: The view never zooms in more than this on a small graph.
MAX_SCALE = 1.3
#: The scale the bands are cut for: columns wrap before the boxes would shrink below it.
WRAP_SCALE = 0.9
#: Up to this many workers are drawn as one dot each.
MAX_DOTS = 8
#: Arrows drawn at most. A real pipeline has a few dozen; a graph within the protocol's caps may have 200 steps
#: each sending to the 199 others, where drawing every arrow froze the window for seconds and took gigabytes,
#: and that many arrows say nothing anyway.
MAX_ARROWS = 1000


class StepBox(QGraphicsItem):
    """One step: name, class, state, busy/total workers as dots, where they run (``2p+1r``) and a mark
    when worker processes died, queue fill as a bar, messages done; its worker processes on hover."""

    def __init__(self, view: StepView) -> None:
        super().__init__()
        self.name = view.name
        self.class_name = view.info.class_name if view.info else ""
        self.state = "waiting"
        self.busy = self.workers = self.queue = self.done = self.failed = self.emitted = 0
        self.queue_limit = 0
        self.mix = ""  # where the workers run, "" while they are threads of the run
        self.late = False  # a worker process is late with its heartbeat
        self.marks: list[str] = []  # the mark of redeliveries and restarts, longest first
        self.has_queue = view.info is None or view.info.kind != "producer"
        self.has_next = view.info is None or bool(view.info.next_steps)
        # Rich text always (<qt>), so that a name a peer sends is shown as sent, never read as markup.
        self.title = escape(f"{view.name}: {view.info.module}.{self.class_name}" if view.info else view.name)
        self.update_from(view)

    def update_from(self, view: StepView) -> None:
        """Show ``view``'s latest progress."""
        info, progress = view.info, view.progress
        self.state = view.state
        self.workers = progress.workers if progress else (info.workers if info else 0)
        self.queue_limit = info.queue_limit if info else (progress.queue_limit if progress else 0)
        if progress:
            self.busy, self.queue, self.done, self.failed, self.emitted = (
                progress.busy, progress.queue, progress.processed, progress.failed, progress.emitted)
        self.mix, self.late, self.marks = workers.mix_text(view), workers.late(view), workers.marks(view)
        hover = workers.hover(view) if workers.has_processes(view) else ""
        tip = f"<qt>{self.title}<br>{hover}</qt>" if hover else f"<qt>{self.title}</qt>"
        if tip != self.toolTip():  # a tooltip set again, even the same, is work an idle window does not do
            self.setToolTip(tip)
        self.update()

    def workers_text(self) -> str:
        """Busy and total workers: "1/2 busy"."""
        return f"{humanize.out_of(self.busy, self.workers)} busy"

    def queue_text(self) -> str:
        """Queue fill and limit: "12/64" ("12" when unbounded, "source" for the producer)."""
        if not self.has_queue:
            return "source"
        return humanize.fill(self.queue, self.queue_limit)

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

    def out_text(self) -> str:
        """Messages done, and deliveries to next steps when they differ: "588 done → 470 out"."""
        done = f"{humanize.count(self.done)} done"
        if self.emitted == self.done or not self.has_next:
            return done
        return f"{done} \u2192 {humanize.count(self.emitted)} out"

    def _paint_texts(self, painter: QPainter, colour: QColor) -> None:
        font = QFont(painter.font())
        font.setPointSizeF(SMALLEST_FONT_PT)
        font.setBold(True)
        painter.setFont(font)
        painter.setPen(colour)
        state = self.state.upper()
        painter.drawText(QRectF(12, 10, BOX_WIDTH - 24, 18), Qt.AlignmentFlag.AlignRight, state)
        state_width = QFontMetrics(font).horizontalAdvance(state) + 8
        font.setPointSizeF(11)
        painter.setFont(font)
        painter.setPen(theme.TEXT)
        name = QFontMetrics(font).elidedText(self.name, Qt.TextElideMode.ElideMiddle, int(BOX_WIDTH - 24 - state_width))
        painter.drawText(QRectF(12, 8, BOX_WIDTH - 24, 20), Qt.AlignmentFlag.AlignLeft, name)
        font.setBold(False)
        font.setPointSizeF(SMALLEST_FONT_PT)
        painter.setFont(font)
        painter.setPen(theme.MUTED)
        metrics = QFontMetrics(font)
        painter.drawText(QRectF(12, 29, BOX_WIDTH - 24, 18), Qt.AlignmentFlag.AlignLeft,
                         metrics.elidedText(self.class_name, Qt.TextElideMode.ElideRight, int(BOX_WIDTH - 100)))
        if self.failed:
            painter.setPen(theme.STATE_COLOURS["failed"])
            painter.drawText(QRectF(12, 29, BOX_WIDTH - 24, 18), Qt.AlignmentFlag.AlignRight,
                             f"{humanize.count(self.failed)} failed")
        painter.setPen(theme.TEXT)
        painter.drawText(QRectF(12, 50, BOX_WIDTH - 24, 18), Qt.AlignmentFlag.AlignRight, self.out_text())

    def _paint_workers(self, painter: QPainter, colour: QColor) -> None:
        left, text = 12.0, self.workers_text()
        if self.workers <= MAX_DOTS:
            for i in range(self.workers):
                painter.setBrush(colour if i < self.busy else Qt.BrushStyle.NoBrush)
                painter.setPen(QPen(colour, 1.2))
                painter.drawEllipse(QRectF(13 + i * 12, 54, 8, 8))
            # The dots say busy/total; the numbers too unless "done → out" needs the room.
            crowded = "\u2192" in self.out_text()
            left, text = left + self.workers * 12 + 4, "" if crowded else self.workers_text().removesuffix(" busy")
        metrics = QFontMetrics(painter.font())
        room = BOX_WIDTH - 12 - left - metrics.horizontalAdvance(self.out_text()) - 8
        text, mark = self.workers_line(text, room, metrics.horizontalAdvance)
        painter.setPen(theme.STATE_COLOURS["draining"] if self.late else theme.MUTED)
        painter.drawText(QRectF(left, 50, BOX_WIDTH - 12 - left, 18), Qt.AlignmentFlag.AlignLeft, text)
        if mark:
            painter.setPen(theme.STATE_COLOURS["draining"])
            shift = metrics.horizontalAdvance(text + "  ") if text else 0
            painter.drawText(QRectF(left + shift, 50, BOX_WIDTH - 12 - left - shift, 18), Qt.AlignmentFlag.AlignLeft,
                             mark)

    def workers_line(self, busy: str, room: float, width: Callable[[str], float]) -> tuple[str, str]:
        """The text after the dots (busy workers, then where they run) and the mark, the most of them that
        fits ``room`` pixels as ``width`` measures text: the mark first, since it says something went wrong."""
        texts = [" · ".join(filter(None, (busy, self.mix))), self.mix, busy, ""]
        for mark in [*self.marks, ""]:
            for text in texts:
                if width(f"{text}  {mark}" if text and mark else text or mark) <= room:
                    return text, mark
        return "", self.marks[-1] if self.marks else ""

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


def wrapped(start: QPointF, end: QPointF, gap_y: float) -> QPainterPath:
    """A path from ``start`` (a box's right side) down to the gap under its band at ``gap_y``, back
    left, and down into ``end`` (a box's left side in a later band)."""
    out, back = start.x() + COLUMN_GAP / 3, end.x() - COLUMN_GAP / 3
    path = QPainterPath(start)
    path.lineTo(out, start.y())
    path.lineTo(out, gap_y)
    path.lineTo(back, gap_y)
    path.lineTo(back, end.y())
    path.lineTo(end)
    return path


def arrowhead(tip: QPointF) -> QPolygonF:
    """A small triangle pointing right, at ``tip``."""
    return QPolygonF([tip, QPointF(tip.x() - 9, tip.y() - 5), QPointF(tip.x() - 9, tip.y() + 5)])


class Arrows(QGraphicsItem):
    """Every arrow of the graph as one item behind the boxes: one path of lines, one of heads (a step with several
    arrows in has one head). Never under the mouse: a click or a tooltip does not stroke thousands of curves."""

    #: The lines' width, scene pixels.
    PEN_WIDTH = 1.6

    def __init__(self, lines: QPainterPath, heads: QPainterPath) -> None:
        super().__init__()
        self.lines, self.heads = lines, heads
        self._bounds = lines.boundingRect().united(heads.boundingRect()).adjusted(-2, -2, 2, 2)
        self.setZValue(-1)
        # Drawn once per view (the visible part), not again each time a box above them repaints (20 times a
        # second while a run goes): a thousand long curves took 0.2 s a frame.
        self.setCacheMode(QGraphicsItem.CacheMode.DeviceCoordinateCache)

    def boundingRect(self) -> QRectF:
        """Every line and head."""
        return self._bounds

    def shape(self) -> QPainterPath:
        """None: the arrows take no clicks and show no tooltip."""
        return QPainterPath()

    def paint(self, painter: QPainter, option: object, widget: QWidget | None = None) -> None:
        """The lines, then the heads over their ends."""
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(QPen(theme.MUTED, self.PEN_WIDTH))
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawPath(self.lines)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QBrush(theme.MUTED))
        painter.drawPath(self.heads)


def per_band(width: float) -> int:
    """Columns in a band of a view ``width`` pixels wide, cut for WRAP_SCALE."""
    return max(1, int((width / WRAP_SCALE + COLUMN_GAP) // (BOX_WIDTH + COLUMN_GAP)))


class GraphView(QGraphicsView):
    """The steps of one run in columns by their longest path from the producer, wrapped into bands."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setScene(QGraphicsScene(self))
        self.setRenderHint(QPainter.RenderHint.Antialiasing)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setVerticalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAsNeeded)
        self.setDragMode(QGraphicsView.DragMode.ScrollHandDrag)
        self.setToolTip("")
        self.boxes: dict[str, StepBox] = {}
        self.edges: list[tuple[str, str]] = []  # the arrows drawn, (step, next step)
        self.undrawn = 0  # the connections not drawn, past MAX_ARROWS
        self.zoom = 1.0  # the user's zoom, over the scale that fits
        self._shape: tuple = ()  # the graph (or the step names) the scene shows
        self._per_band = 0  # columns per band the scene was built with
        self._run: RunModel | None = None
        self.scene().addText("waiting for the run's graph…").setDefaultTextColor(theme.MUTED)

    def refresh(self, run: RunModel) -> None:
        """Build the scene when the run's graph (or, until it arrives, its list of steps) is new; update every box."""
        self._run = run
        shape = run.graph if run.graph is not None else tuple(run.steps)
        if shape and (shape != self._shape or per_band(self.viewport().width()) != self._per_band):
            self._shape = shape
            self._build(run)
        for name, box in self.boxes.items():
            box.update_from(run.steps[name])

    def content_height(self) -> float:
        """The scene's height at the scale the bands are cut for: the height this view would like."""
        return self.scene().sceneRect().height() * WRAP_SCALE

    def _build(self, run: RunModel) -> None:
        """Columns by longest path, wrapped; without the graph, the known steps in a row with no arrows."""
        scene = self.scene()
        scene.clear()
        self.boxes, self.edges, self.undrawn = {}, [], 0
        if run.graph is not None:
            next_steps = {info.name: info.next_steps for info in run.graph}
            cells = grid(next_steps)
        else:
            next_steps = {name: () for name in run.steps}
            cells = {name: (i, 0) for i, name in enumerate(run.steps)}
        self._per_band = per_band(self.viewport().width())
        placed = bands(cells, self._per_band)
        rows = band_rows(placed)
        column_rows: dict[tuple[int, int], int] = {}
        for band, col, row in placed.values():
            column_rows[band, col] = max(column_rows.get((band, col), 0), row + 1)
        tops, top = {}, 0.0
        for band in sorted(rows):
            tops[band] = top
            top += rows[band] * (BOX_HEIGHT + ROW_GAP) - ROW_GAP + BAND_GAP
        for name, (band, col, row) in placed.items():
            offset = (rows[band] - column_rows[band, col]) * (BOX_HEIGHT + ROW_GAP) / 2
            box = StepBox(run.steps[name])
            box.setPos(col * (BOX_WIDTH + COLUMN_GAP), tops[band] + offset + row * (BOX_HEIGHT + ROW_GAP))
            scene.addItem(box)
            self.boxes[name] = box
        lines, heads = QPainterPath(), QPainterPath()
        for name, targets in next_steps.items():
            for target in dict.fromkeys(targets):  # a next step named twice is one arrow
                if target not in self.boxes:
                    continue
                if len(self.edges) == MAX_ARROWS:
                    self.undrawn += 1
                    continue
                gap = tops[placed[name][0]] + rows[placed[name][0]] * (BOX_HEIGHT + ROW_GAP) - ROW_GAP
                lines.addPath(self._arrow(name, target, placed[name][0] != placed[target][0], gap + BAND_GAP / 2))
                self.edges.append((name, target))
        for target in dict.fromkeys(target for _, target in self.edges):
            heads.addPolygon(arrowhead(self._tip(target)))
            heads.closeSubpath()
        if self.edges:
            scene.addItem(Arrows(lines, heads))
        if run.graph is None:
            self._note("the run's graph has not arrived: steps shown without their connections")
        elif self.undrawn:
            self._note(f"{humanize.count(len(self.edges))} of {humanize.count(len(self.edges) + self.undrawn)} "
                       f"connections drawn (at most {humanize.count(MAX_ARROWS)} are)")
        scene.setSceneRect(scene.itemsBoundingRect().adjusted(-16, -16, 16, 16))
        self._fit()

    def _arrow(self, source: str, target: str, across: bool, gap_y: float) -> QPainterPath:
        """The line of the arrow from ``source``'s box to ``target``'s, down to the gap at ``gap_y`` when ``across``
        bands; it ends where the head (one per target) begins."""
        start, tip = self.boxes[source].pos(), self._tip(target)
        begin = QPointF(start.x() + BOX_WIDTH + 2, start.y() + BOX_HEIGHT / 2)
        finish = QPointF(tip.x() - 8, tip.y())
        return wrapped(begin, finish, gap_y) if across else curve(begin, finish)

    def _tip(self, target: str) -> QPointF:
        """Where arrows into ``target``'s box end: the middle of its left side."""
        end = self.boxes[target].pos()
        return QPointF(end.x() - 3, end.y() + BOX_HEIGHT / 2)

    def _note(self, text: str) -> None:
        """A line above the graph saying what it does not show."""
        note = self.scene().addText(text)
        note.setDefaultTextColor(theme.MUTED)
        note.setPos(0, -30)

    def scale_shown(self) -> float:
        """The scale of the boxes on screen."""
        return self.transform().m11()

    def _fit(self) -> None:
        rect = self.scene().sceneRect()
        if rect.isEmpty():
            return
        viewport = self.viewport().rect()
        fit = min(viewport.width() / rect.width(), viewport.height() / rect.height(), MAX_SCALE)
        scale = min(max(fit * self.zoom, MIN_SCALE), MAX_SCALE * 2)
        self.resetTransform()
        self.scale(scale, scale)
        if fit >= MIN_SCALE and self.zoom == 1.0:
            self.centerOn(rect.center())

    def wheelEvent(self, event: QWheelEvent) -> None:
        """Ctrl+wheel zooms (never below MIN_SCALE); the wheel alone scrolls."""
        if event.modifiers() & Qt.KeyboardModifier.ControlModifier:
            self.zoom = min(max(self.zoom * (1.15 if event.angleDelta().y() > 0 else 1 / 1.15), 0.1), 10.0)
            self._fit()
            event.accept()
            return
        super().wheelEvent(event)

    def mouseDoubleClickEvent(self, event: QMouseEvent) -> None:
        """A double click fits the graph again."""
        self.zoom = 1.0
        self._fit()
        super().mouseDoubleClickEvent(event)

    def resizeEvent(self, event: object) -> None:
        super().resizeEvent(event)
        if self._run is not None and per_band(self.viewport().width()) != self._per_band:
            self._build(self._run)
        else:
            self._fit()
