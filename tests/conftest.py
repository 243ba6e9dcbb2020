"""Shared fixtures: the GUI tests' window, offscreen (no display needed)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

# Read when pytest-qt makes the QApplication, after collection.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


@pytest.fixture
def window(qtbot: Any) -> Iterator[Any]:
    """The monitor on a free loopback port, shown offscreen."""
    from gui.window import MainWindow  # only the GUI tests pay for importing Qt

    window = MainWindow("127.0.0.1", 0)
    qtbot.addWidget(window)
    window.show()
    yield window
    window.shutdown()
