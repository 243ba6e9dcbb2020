"""Screenshots of the monitor watching the example pipeline, made offscreen: ``python -m gui.screenshots``.

It opens the window on a free port, runs ``configs/example.json`` against it in a subprocess, saves
``gui-running.png`` while the run is well under way and ``gui.png`` once it finished, and
``gui-waiting.png`` before it starts. Anyone can re-run it; it needs no display.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from . import theme
from .window import MainWindow

ROOT = Path(__file__).resolve().parent.parent
#: Window size of the screenshots, pixels.
SIZE = (1440, 900)
#: Seconds the example run may take.
TIMEOUT = 120.0


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    """Run Qt's event loop until ``condition()`` holds; raise TimeoutError after ``seconds``."""
    loop = QEventLoop()
    check = QTimer(interval=50)
    check.timeout.connect(lambda: condition() and loop.quit())
    expire = QTimer(singleShot=True, interval=int(seconds * 1000))
    expire.timeout.connect(loop.quit)
    check.start()
    expire.start()
    loop.exec()
    check.stop()
    if not condition():
        raise TimeoutError(f"gave up after {seconds:.0f} s waiting for {what}")


def settle(window: MainWindow) -> None:
    """Let the window redraw what it received."""
    wait_until(lambda: window.redraw() is None and all(v.shown_version == v.run.version for v in window.views.values()),
               5, "the window to redraw")


def screenshots(out: Path, events: int) -> list[Path]:
    """Make the screenshots in ``out``; return their paths."""
    app = QApplication.instance() or QApplication(["pipeline-gui"])
    theme.apply(app)
    window = MainWindow("127.0.0.1", 0)
    window.resize(*SIZE)
    window.show()
    out.mkdir(parents=True, exist_ok=True)
    saved = []

    def save(name: str) -> None:
        settle(window)
        path = out / name
        window.grab().save(str(path))
        saved.append(path)

    save("gui-waiting.png")
    with tempfile.TemporaryDirectory() as tmp:
        run = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "--config=configs/example.json", "--no-progress",
             f"--Pipeline.gui_address=127.0.0.1:{window.receiver.port}", f"--SimulatedCamera.n_events={events}",
             f"--JsonLinesWriter.path={Path(tmp) / 'events.jsonl'}"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            def produced(fraction: float) -> bool:
                runs = list(window.runs.runs.values())
                reader = runs[0].steps.get("READER") if runs else None
                done = reader.progress.processed if reader and reader.progress else 0
                return done >= fraction * events or any(r.ended for r in runs)

            wait_until(lambda: produced(0.6), TIMEOUT, "the run to be well under way")
            save("gui-running.png")
            wait_until(lambda: any(r.ended for r in window.runs.runs.values()), TIMEOUT, "the run to finish")
            save("gui.png")
        finally:
            if run.poll() is None:
                run.kill()
            run.wait(TIMEOUT)
    window.close()
    return saved


def main(argv: list[str] | None = None) -> None:
    """The command line: where to save, and how many events the example run simulates."""
    parser = argparse.ArgumentParser(prog="python -m gui.screenshots", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="folder of the PNG files")
    parser.add_argument("--events", type=int, default=20000, help="events the example run simulates")
    args = parser.parse_args(argv)
    for path in screenshots(args.out, args.events):
        print(path)


if __name__ == "__main__":
    main()
