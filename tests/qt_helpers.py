"""Watch Qt's event loop in the GUI tests: count the paint events, run the loop for a number of redraw ticks."""

from __future__ import annotations

import time

from PySide6.QtCore import QEvent, QEventLoop, QObject, QTimer

from gui.window import MainWindow

#: Milliseconds that any wait of these helpers, and of test_gui_bounds, may take.
WAIT_MS = 20_000


class PaintCounter(QObject):
    """Counts the paint events of every widget of the application."""

    def __init__(self) -> None:
        super().__init__()
        self.paints = 0

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        """Count ``event`` if it is a paint event; let every event through."""
        if event.type() == QEvent.Type.Paint:
            self.paints += 1
        return False


def run_loop_for_ticks(window: MainWindow, ticks: int) -> float:
    """Run Qt's event loop until the redraw timer fired ``ticks`` times; the seconds it took."""
    fired = [0]
    loop = QEventLoop()

    def tick() -> None:
        fired[0] += 1
        if fired[0] >= ticks:
            loop.quit()

    window.timer.timeout.connect(tick)
    expire = QTimer(singleShot=True, interval=WAIT_MS)
    expire.timeout.connect(loop.quit)
    expire.start()
    start = time.monotonic()
    loop.exec()
    window.timer.timeout.disconnect(tick)
    assert fired[0] >= ticks, "the redraw timer stopped"
    return time.monotonic() - start
