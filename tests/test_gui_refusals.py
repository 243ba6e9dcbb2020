"""The monitor counts and shows every connection it refuses, by cause: a run in clear against its keys,
a keyed run against --plaintext, a run that trusts another monitor's key, a run whose key it does not
let in. The runs' side here is the real publisher's socket, with its real settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gui.refusals import CAUSES, Refusals, cause
from gui.window import MainWindow
from pipeline import auth
from pipeline.monitor.credentials import Credentials
from pipeline.monitor.messages import Envelope
from pipeline.monitor.publisher import Publisher

# Read when pytest-qt makes the QApplication, after collection: the tests need no display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

#: Milliseconds any wait may take.
WAIT_MS = 10_000


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, auth.KeyPair]:
    """The monitor's pair, another monitor's, and a run's whose key the monitor does not know."""
    return {name: auth.load_key_pair(auth.generate_key_pair(tmp_path, name)[1]) for name in ("desk", "other", "node7")}


@pytest.fixture
def monitor(qtbot: Any, keys: dict[str, auth.KeyPair], request: pytest.FixtureRequest) -> Iterator[MainWindow]:
    """The monitor, offscreen, with the desk pair (or in plaintext when the test is marked so)."""
    plaintext = "plaintext" in request.node.name
    security = None if plaintext else auth.ServerKeys(keys["desk"], {keys["desk"].public: "desk"})
    window = MainWindow("127.0.0.1", 0, security)
    qtbot.addWidget(window)
    window.show()
    yield window
    window.shutdown()


def refused(qtbot: Any, window: MainWindow, credentials: Credentials | None, *reasons: str) -> str:
    """Connect a run's publisher with ``credentials``, wait until the monitor refused it for one of ``reasons``;
    the one it saw (a mismatch of mechanisms is seen by the side that reads the other's greeting first:
    the other side sees a peer that hung up)."""
    publisher = Publisher(f"127.0.0.1:{window.receiver.port}", Envelope("r" * 32, "p", "c", "h", 1), credentials)
    counts = window.receiver.refusals.counts
    try:
        qtbot.waitUntil(lambda: any(counts[reason] for reason in reasons), timeout=WAIT_MS)
    finally:
        publisher.close(0)
    window.redraw()
    assert set(counts) <= set(reasons), counts
    return next(reason for reason in reasons if counts[reason])


def shown(window: MainWindow, reason: str) -> None:
    """The status bar and the waiting page say the refusal, its cause and what to change; no run got a tab."""
    refusals = window.receiver.refusals
    said = window.status.refused.text()
    assert said.startswith(f"{refusals.total} refused: ") and f"{refusals.counts[reason]} {reason}" in said, said
    assert CAUSES[reason] in window.status.refused.toolTip()
    assert window.pages.currentWidget() is window.waiting
    assert window.waiting.refused.text().startswith(f"{said}<br>")
    assert window.runs.runs == {}


def test_a_run_in_clear_is_refused_and_shown(qtbot, monitor: MainWindow) -> None:
    shown(monitor, refused(qtbot, monitor, None, "in clear", "hung up (in clear?)"))


def test_a_run_that_trusts_another_monitors_key_is_refused_and_shown(qtbot, monitor: MainWindow, keys) -> None:
    refused(qtbot, monitor, Credentials(keys["node7"], keys["other"].public), "another monitor's key")
    shown(monitor, "another monitor's key")


def test_a_run_whose_key_is_not_let_in_is_refused_and_shown(qtbot, monitor: MainWindow, keys) -> None:
    refused(qtbot, monitor, Credentials(keys["node7"], keys["desk"].public), "unknown key")
    shown(monitor, "unknown key")


def test_a_keyed_run_at_a_plaintext_monitor_is_refused_and_shown(qtbot, monitor: MainWindow, keys) -> None:
    shown(monitor, refused(qtbot, monitor, Credentials(keys["node7"], keys["desk"].public), "with keys",
                           "hung up (keys?)"))


def test_every_refusal_is_counted_and_the_most_frequent_cause_comes_first(caplog) -> None:
    refusals = Refusals()
    for reason in ("unknown key", "in clear", "in clear"):
        refusals.add(reason)
    assert refusals.total == 3
    assert refusals.text() == "3 refused: 2 in clear, 1 unknown key"
    # The first refusal of each cause is a warning on the monitor's stderr; the others are counted.
    assert [r.getMessage() for r in caplog.records] == [
        f"refused a connection: {CAUSES['unknown key']} (the window counts the others)",
        f"refused a connection: {CAUSES['in clear']} (the window counts the others)"]
    assert Refusals().text() == ""


@pytest.mark.parametrize(("event", "value", "plaintext", "reason"), [
    ("HANDSHAKE_FAILED_AUTH", 400, False, "unknown key"),
    ("HANDSHAKE_FAILED_PROTOCOL", "ZMTP_MECHANISM_MISMATCH", False, "in clear"),
    ("HANDSHAKE_FAILED_PROTOCOL", "ZMTP_MECHANISM_MISMATCH", True, "with keys"),
    ("HANDSHAKE_FAILED_PROTOCOL", "ZMTP_CRYPTOGRAPHIC", False, "another monitor's key"),
    ("HANDSHAKE_FAILED_PROTOCOL", "ZMTP_UNEXPECTED_COMMAND", False, "other"),
    ("HANDSHAKE_FAILED_NO_DETAIL", 32, False, "hung up (in clear?)"),
    ("HANDSHAKE_FAILED_NO_DETAIL", 32, True, "hung up (keys?)"),
])
def test_each_handshake_failure_has_its_cause(event: str, value: int | str, plaintext: bool, reason: str) -> None:
    import zmq

    number = value if isinstance(value, int) else getattr(zmq, f"PROTOCOL_ERROR_{value}")
    assert cause(getattr(zmq, f"EVENT_{event}"), number, plaintext) == reason
