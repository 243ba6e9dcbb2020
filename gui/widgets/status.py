"""The status bar: the bound address and who may report, the shown run's state, elapsed time and silence.

Each label is set only when its text changes, and an ended run's texts do not change: an idle
window repaints nothing.
"""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

from pipeline.auth.curve import ServerKeys
from pipeline.console import humanize

from .. import theme
from ..model import RunModel
from ..refusals import Refusals

#: Seconds without a message before the status bar says so.
QUIET_SECONDS = 3.0


def silence(seconds: float) -> str:
    """How long since the last message: "data 1 s ago" or "no data for 12 s"."""
    if seconds < QUIET_SECONDS:
        return f"data {seconds:.0f} s ago"
    return f"no data for {humanize.duration(seconds)}"


def access(security: ServerKeys | None) -> str:
    """Who may report: "plaintext: anyone who reaches the port", or the keys allowed."""
    if security is None:
        return "plaintext: anyone who reaches the port"
    names = sorted(set(security.allowed.values()))
    shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
    return f"CURVE: runs with key {shown}"


class StatusBar(QStatusBar):
    """Permanent labels, updated by ``show_run``."""

    def __init__(self, address: str, security: ServerKeys | None = None, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizeGripEnabled(False)
        self.address = QLabel(f"listening on {address} · {access(security)}")
        self.refused = QLabel("")
        self.state = QLabel("waiting for a pipeline")
        self.elapsed = QLabel("")
        self.silence = QLabel("")
        self.addWidget(self.address)
        for label in (self.refused, self.state, self.elapsed, self.silence):
            self.addPermanentWidget(label)

    def show_run(self, run: RunModel | None, refusals: Refusals | None = None) -> None:
        """Describe ``run`` (or say that no pipeline reported yet) and the connections refused so far, by cause."""
        self._set(self.refused, refusals.text() if refusals else "", theme.STATE_COLOURS["failed"].name())
        tip = f"<qt>connections refused:<br>{refusals.tip()}</qt>" if refusals and refusals.total else ""
        if self.refused.toolTip() != tip:
            self.refused.setToolTip(tip)
        if run is None:
            self._set(self.state, "waiting for a pipeline", theme.MUTED.name())
            self._set(self.elapsed, "", theme.MUTED.name())
            self._set(self.silence, "", theme.MUTED.name())
            return
        state = run.state if run.exit_status is None else f"{run.state} (exit {run.exit_status})"
        self._set(self.state, state, theme.state_colour(run.state).name())
        self._set(self.elapsed, f"elapsed {humanize.duration(run.live_elapsed())}", theme.MUTED.name())
        if run.ended:
            self._set(self.silence, "ended", theme.MUTED.name())
            return
        quiet = run.seconds_since_message()
        stale = quiet >= QUIET_SECONDS
        self._set(self.silence, silence(quiet), theme.STATE_COLOURS["draining"].name() if stale else theme.MUTED.name())

    @staticmethod
    def _set(label: QLabel, text: str, colour: str) -> None:
        if label.text() != text:
            label.setText(text)
        style = f"color: {colour}; font-weight: bold;"
        if label.styleSheet() != style:
            label.setStyleSheet(style)
