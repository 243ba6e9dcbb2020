"""The screenshot script runs offscreen against real runs, so the pictures in the docs cannot rot."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from PySide6.QtGui import QImage

from tests.cli_helpers import ROOT

NAMES = ["gui-waiting.png", "gui-running.png", "gui.png", "gui-12-steps.png", "gui-30-steps.png", "gui-processes.png"]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_the_screenshot_script_makes_every_picture(tmp_path: Path) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    result = subprocess.run([sys.executable, "-m", "gui.screenshots", f"--out={tmp_path}", "--events=300"],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=280, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(tmp_path / name) for name in NAMES]
    for name in NAMES:
        image = QImage(str(tmp_path / name))
        assert (image.width(), image.height()) == (1440, 900), name
    assert sorted(p.name for p in (ROOT / "docs" / "images").glob("gui*.png")) == sorted(NAMES)
