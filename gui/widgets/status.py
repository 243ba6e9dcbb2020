"""The status bar: the bound address, and the shown run's state, elapsed time and silence."""

from __future__ import annotations

from PySide6.QtWidgets import QLabel, QStatusBar, QWidget

from .. import humanize, theme
from ..model import RunModel

#: Seconds without a message before the status bar says so.
QUIET_SECONDS = 3.0


def silence(seconds: float) -> str:
    """How long since the last message: "data 1 s ago" or "no data for 12 s"."""
    if seconds < QUIET_SECONDS:
        return f"data {seconds:.0f} s ago"
    return f"no data for {humanize.duration(seconds)}"


class StatusBar(QStatusBar):
    """Permanent labels, updated by ``show_run``."""

    def __init__(self, address: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setSizeGripEnabled(False)
        self.address = QLabel(f"listening on {address}")
        self.state = QLabel("waiting for a pipeline")
        self.elapsed = QLabel("")
        self.silence = QLabel("")
        self.addWidget(self.address)
        for label in (self.state, self.elapsed, self.silence):
            self.addPermanentWidget(label)

    def show_run(self, run: RunModel | None) -> None:
        """Describe ``run``, or say that no pipeline reported yet."""
        if run is None:
            self._set(self.state, "waiting for a pipeline", theme.MUTED.name())
            self.elapsed.setText("")
            self.silence.setText("")
            return
        state = run.state if run.exit_status is None else f"{run.state} (exit {run.exit_status})"
        self._set(self.state, state, theme.state_colour(run.state).name())
        self.elapsed.setText(f"elapsed {humanize.duration(run.live_elapsed())}")
        quiet = run.seconds_since_message()
        stale = quiet >= QUIET_SECONDS and not run.ended
        self._set(self.silence, silence(quiet), theme.STATE_COLOURS["draining"].name() if stale else theme.MUTED.name())

    @staticmethod
    def _set(label: QLabel, text: str, colour: str) -> None:
        if label.text() != text:
            label.setText(text)
        style = f"color: {colour}; font-weight: bold;"
        if label.styleSheet() != style:
            label.setStyleSheet(style)
