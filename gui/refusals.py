"""The connections the monitor refused, counted by cause: plain Python, no Qt.

A run whose settings do not match the monitor's never gets a tab, so the monitor says what it refused
instead: libzmq's socket monitor reports each failed handshake on the SUB socket (``gui.receiver``
reads the events), and :func:`cause` names why from the event and its value. The run's side says the
same in one line on its stderr (``pipeline.monitor.credentials.refusal_reason``).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from html import escape

import zmq

from pipeline.auth.zap import TRY_LATER
from pipeline.console import humanize

log = logging.getLogger("gui.receiver")

#: The handshake failures libzmq reports on the bound socket.
REFUSAL_EVENTS = (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
                  | zmq.EVENT_HANDSHAKE_FAILED_AUTH)

#: Each cause: its words in the status bar, and what it means and what to change (its tooltip, and the
#: warning on stderr the first time).
CAUSES = {
    "in clear": "a run that sends in clear (Pipeline.gui_plaintext=True): this monitor takes only runs that "
                "prove a key; drop that option on the run",
    "with keys": "a run with keys: this monitor is --plaintext; start it without --plaintext, or run with "
                 "Pipeline.gui_plaintext=True",
    "hung up (in clear?)": "a peer that hung up during the handshake: most often a run that sends in clear "
                           "(Pipeline.gui_plaintext=True), which saw the mismatch first; or a peer that is not a run",
    "hung up (keys?)": "a peer that hung up during the handshake: most often a run with keys, which saw the "
                       "mismatch with this --plaintext monitor first; or a peer that is not a run",
    "another monitor's key": "a run that trusts another monitor's key: its Pipeline.gui_server_key is not this "
                             "monitor's public key (or, without it, the user's own is another user's)",
    "unknown key": "a run whose key this monitor does not let in: put its public .key file in the "
                   "--authorized-keys directory and restart the monitor",
    "too many connections": "a connection beyond as many as the monitor holds at once: a run that comes once others "
                            "closed gets in; many runs at once, or a peer opening connections",
    "other": "a handshake that failed otherwise (a peer that is not a pipeline run, or one that went away)",
}


def cause(event: int, value: int, plaintext: bool) -> str:
    """Why the monitor (a CURVE server, or ``plaintext``) refused a connection: a key of CAUSES."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        # The ZAP handler said no: to the key (400), or for now, whatever the key (300, TRY_LATER).
        return "too many connections" if value == int(TRY_LATER) else "unknown key"
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            return "with keys" if plaintext else "in clear"
        if value == zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC and not plaintext:
            return "another monitor's key"  # its HELLO is sealed for another server key: it cannot be opened
    if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        # Both sides of a mechanism mismatch see it; the side that sees it first hangs up, and the other
        # side's event then says only that (measured: about two times in three for a run in clear).
        return "hung up (keys?)" if plaintext else "hung up (in clear?)"
    return "other"


class Refusals:
    """The connections refused so far, by cause; the first of each cause is also a warning on stderr. Counted in the
    socket events' thread, read in the window's: a cause counted while the window walked the counts broke its walk."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    @property
    def total(self) -> int:
        """Connections refused in all."""
        return sum(n for _, n in self._most_common())

    def add(self, reason: str) -> None:
        """Count one refusal for ``reason`` (a key of CAUSES)."""
        with self._lock:
            first = not self.counts[reason]
            self.counts[reason] += 1
        if first:
            log.warning("refused a connection: %s (the window counts the others)", CAUSES[reason])

    def _most_common(self) -> list[tuple[str, int]]:
        """Each cause seen and its count, the most frequent first."""
        with self._lock:
            return self.counts.most_common()

    def text(self) -> str:
        """``3 refused: 2 in clear, 1 unknown key`` (most frequent first); "" when none was refused."""
        counts = self._most_common()
        if not counts:
            return ""
        parts = [f"{humanize.count(n)} {reason}" for reason, n in counts]
        return f"{humanize.count(sum(n for _, n in counts))} refused: {', '.join(parts)}"

    def tip(self) -> str:
        """Rich text: each cause seen, with its count, what it means and what to change."""
        return "<br>".join(f"<b>{humanize.count(n)} {escape(reason, False)}</b>: {escape(CAUSES[reason], False)}"
                           for reason, n in self._most_common())
