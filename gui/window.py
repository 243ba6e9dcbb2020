"""The main window: a tab per run (by ``run_id``), a waiting page until one reports, and a status bar.

Messages only update the model; a timer redraws what changed at most ``1000 / REDRAW_MS`` times a
second, however fast messages come. Idle means idle: a redraw with nothing new sets no widget, so
Qt repaints nothing (setting a tab's icon, even the same one, repaints the whole tab page).
"""

from __future__ import annotations

import logging
from html import escape

from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QCloseEvent
from PySide6.QtWidgets import (
    QLabel,
    QMainWindow,
    QStackedWidget,
    QTabBar,
    QTabWidget,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from pipeline.auth.curve import ServerKeys

from . import theme
from .instructions import KeyFiles, Step, waiting_steps
from .model import Refused, RunModel, Runs
from .protocol import Message
from .receiver import Receiver
from .refusals import Refusals
from .widgets.run_view import RunView
from .widgets.status import StatusBar

log = logging.getLogger("gui.window")

#: Milliseconds between redraws: at most 20 a second.
REDRAW_MS = 50


class WaitingPage(QWidget):
    """What the window shows before any pipeline reported: where it listens, what a run needs to report
    here (``gui.instructions``), and the connections refused so far, by cause."""

    def __init__(self, address: str, steps: list[Step], parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.steps = steps
        self.headline = QLabel("waiting for a pipeline")
        self.headline.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.headline.setStyleSheet(f"font-size: 26px; color: {theme.TEXT.name()};")
        lines = [f"listening on {escape(address)}", ""]
        for step in steps:
            lines.append(escape(step.text))
            if step.command:
                lines.append(f"<span style='font-family: monospace; color: {theme.TEXT.name()}'>"
                             f"{escape(step.command)}</span>")
        self.hint = QLabel("<br>".join(lines))
        self.hint.setTextFormat(Qt.TextFormat.RichText)
        self.hint.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.hint.setObjectName("muted")
        self.hint.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.refused = QLabel("")
        self.refused.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.refused.setStyleSheet(f"color: {theme.STATE_COLOURS['failed'].name()};")
        self.refused.setTextFormat(Qt.TextFormat.RichText)
        layout = QVBoxLayout(self)
        layout.addStretch(1)
        layout.addWidget(self.headline)
        layout.addSpacing(12)
        layout.addWidget(self.hint)
        layout.addSpacing(12)
        layout.addWidget(self.refused)
        layout.addStretch(1)

    def show_refusals(self, refusals: Refusals) -> None:
        """Say which connections were refused and why (set only when it changed: an idle page repaints nothing)."""
        text = f"{escape(refusals.text(), False)}<br>{refusals.tip()}" if refusals.total else ""
        if self.refused.text() != text:
            self.refused.setText(text)


class MainWindow(QMainWindow):
    """Binds the monitor's SUB socket on ``host:port`` (0: a free port) and shows every run that reports.

    ``security`` None: plaintext (anyone who reaches the port); else only runs with an allowed key.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, security: ServerKeys | None = None,
                 parent: QWidget | None = None, key_files: KeyFiles | None = None) -> None:
        super().__init__(parent)
        self.receiver = Receiver(host, port, security, self)
        self.receiver.received.connect(self.on_message)
        self.address = self.receiver.address
        self.runs = Runs()
        self.views: dict[str, RunView] = {}
        self.redraws = 0  # redraws that changed something (for tests of the redraw limit)
        self._tab_states: dict[str, str] = {}  # the state each tab's icon shows
        self.tabs = QTabWidget()
        # Not tabsClosable: each tab has our own close button (_open_tab), and Qt's, which setTabButton only hides,
        # stayed alive for good, one a tab ever opened (a night of short runs grew the window without end).
        self.tabs.setDocumentMode(True)
        self.tabs.currentChanged.connect(self.redraw)
        if security is not None and key_files is None:
            key_files = KeyFiles.of()  # the user's own pair
        self.waiting = WaitingPage(self.address, waiting_steps(host, self.receiver.port, key_files))
        self.pages = QStackedWidget()
        self.pages.addWidget(self.waiting)
        self.pages.addWidget(self.tabs)
        self.setCentralWidget(self.pages)
        self.status = StatusBar(self.address, security)
        self.setStatusBar(self.status)
        self.setWindowTitle(f"pipeline-gui · {self.address}")
        self.resize(1400, 900)
        self.timer = QTimer(self)
        self.timer.setInterval(REDRAW_MS)
        self.timer.timeout.connect(self.redraw)
        self.timer.start()
        self.redraw()

    def on_message(self, message: Message, peer: str | None = None) -> None:
        """Give a message (sent under key ``peer``) to its run's model; open a tab for a new run, close the
        tabs of runs that made room for it (drawing waits for the timer)."""
        try:
            run = self.runs.apply(message, peer)
            if run is not None and run.run_id not in self.views:
                for gone in [run_id for run_id in self.views if run_id not in self.runs.runs]:
                    self.close_tab(self.tabs.indexOf(self.views[gone]))
                self._open_tab(run)
        except Refused as err:
            self.receiver.ignore(str(err))
        except Exception:
            # A message the window cannot take in must not stop it (STYLE.md, practice 8).
            log.exception("could not take in a message (%s) of run %s", type(message).__name__, message.header.run_id)

    def current_run(self) -> RunModel | None:
        """The run of the tab shown, if any."""
        view = self.tabs.currentWidget()
        return view.run if isinstance(view, RunView) else None

    def view(self, run_id: str) -> RunView:
        """The tab of run ``run_id``."""
        return self.views[run_id]

    def redraw(self) -> None:
        """Redraw the shown run if it changed, a tab's state dot if its state changed, and the status bar."""
        current = self.tabs.currentWidget()
        if isinstance(current, RunView) and current.refresh():
            self.redraws += 1
        for run_id, view in self.views.items():
            if self._tab_states.get(run_id) != view.run.state:
                self._tab_states[run_id] = view.run.state
                self.tabs.setTabIcon(self.tabs.indexOf(view), theme.state_icon(view.run.state))
        page = self.tabs if self.views else self.waiting
        if self.pages.currentWidget() is not page:
            self.pages.setCurrentWidget(page)
        self.status.show_run(self.current_run(), self.receiver.refusals)
        if page is self.waiting:
            self.waiting.show_refusals(self.receiver.refusals)

    def close_tab(self, index: int) -> None:
        """Close a run's tab; its later messages are ignored."""
        view = self.tabs.widget(index)
        if not isinstance(view, RunView):
            return
        self.tabs.removeTab(index)
        self.views.pop(view.run.run_id, None)
        self._tab_states.pop(view.run.run_id, None)
        self.runs.close(view.run.run_id)
        view.deleteLater()
        self.redraw()

    def _open_tab(self, run: RunModel) -> None:
        """Add the run's tab; show it if the run shown has ended (a night of runs follows the newest)."""
        shown = self.current_run()
        view = RunView(run)
        self.views[run.run_id] = view
        index = self.tabs.addTab(view, theme.state_icon(run.state), run.title)
        self._tab_states[run.run_id] = run.state
        self.tabs.setTabToolTip(index, f"run {run.run_id}")
        close = QToolButton(text="\u00d7", toolTip="close this run's tab (its later messages are ignored)")
        close.setObjectName("closeTab")
        close.clicked.connect(lambda: self.close_tab(self.tabs.indexOf(view)))
        self.tabs.tabBar().setTabButton(index, QTabBar.ButtonPosition.RightSide, close)
        if shown is not None and shown.ended:
            self.tabs.setCurrentIndex(index)

    def shutdown(self) -> None:
        """Stop redrawing and close the socket."""
        self.timer.stop()
        self.receiver.close()

    def closeEvent(self, event: QCloseEvent) -> None:
        self.shutdown()
        super().closeEvent(event)
