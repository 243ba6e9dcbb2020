"""Screenshots of the monitor watching real runs, made offscreen: ``python -m gui.screenshots``.

It makes a key pair for the monitor and one for the runs in a temporary directory (as across hosts),
opens the window on a free port, saves ``gui-waiting.png``, runs ``configs/example.json`` against it
in a subprocess, saves ``gui-running.png`` while the run is well under way and ``gui.png`` once it
finished, then runs a 12-step and a 30-step pipeline (fan-out and fan-in included) and saves
``gui-12-steps.png`` and ``gui-30-steps.png``, and last runs the example with worker processes
(``nb_process: 2`` on CLEAN and HILLAS), kills one of HILLAS's mid-run, as a crash would, and saves
``gui-processes.png`` once the run has redelivered its messages and replaced it. Anyone can re-run
it; it needs no display.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from PySide6.QtCore import QEventLoop, QTimer
from PySide6.QtWidgets import QApplication

from pipeline import auth

from . import theme
from .instructions import KeyFiles
from .protocol import StepProgress
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


def long_config(name: str, count: int, fan: int, events: int, output: Path) -> dict[str, Any]:
    """A pipeline of ``count`` steps: a chain of the camera's steps and pass-throughs, with ``fan``
    parallel branches that fan out from one step and fan in to the next (the camera example, longer)."""
    stages = ["CALIB", "CLEAN", *[f"{name}{i:02d}" for i in range(1, count - 4 - fan + 1)]]
    middle = len(stages) // 2
    branches = [f"BRANCH{chr(ord('A') + i)}" for i in range(fan)]
    classes = {"CALIB": ("algorithms.camera", "Calibrate"), "CLEAN": ("algorithms.camera", "TailcutsClean")}
    order = [*stages[:middle], *branches, *stages[middle:], "WRITER"]
    targets: dict[str, list[str]] = {}
    for i, step in enumerate(stages):
        nxt = stages[i + 1] if i + 1 < len(stages) else "WRITER"
        targets[step] = branches if i == middle - 1 else [nxt]
    for branch in branches:
        targets[branch] = [stages[middle]]

    def stager(step: str) -> dict[str, Any]:
        module, cls = classes.get(step, ("algorithms.basic", "PassThrough"))
        return {"name": step, "module": module, "class": cls, "nb_thread": 2 if step in classes else 1,
                "next_steps": targets[step]}

    return {
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "READER", "module": "algorithms.camera", "class": "SimulatedCamera",
                              "next_steps": "CALIB"},
            "stagers_conf": [stager(step) for step in order if step != "WRITER"],
            "consumer_conf": {"name": "WRITER", "module": "algorithms.basic", "class": "JsonLinesWriter"},
        },
        "SimulatedCamera": {"n_events": events, "seed": 0},
        "JsonLinesWriter": {"path": str(output)},
    }


def processes_config(events: int, output: Path) -> dict[str, Any]:
    """The example, with CLEAN and HILLAS in two worker processes each."""
    config = json.loads((ROOT / "configs" / "example.json").read_text(encoding="utf-8"))
    for stager in config["Pipeline"]["stagers_conf"]:
        if stager["name"] in ("CLEAN", "HILLAS"):
            stager.update(nb_process=2, nb_thread=1)
    config["SimulatedCamera"]["n_events"] = events
    config["JsonLinesWriter"]["path"] = str(output)
    return config


class Scene:
    """The window, offscreen, with keys as across hosts; ``run`` starts a pipeline reporting to it."""

    def __init__(self, out: Path, keys: Path) -> None:
        auth.generate_key_pair(keys, "monitor")
        auth.generate_key_pair(keys / "runs", "screenshots")
        own = auth.load_key_pair(keys / "monitor.key_secret")
        allowed = {own.public: own.name, **auth.authorized_keys(keys / "runs")}
        self.keys = keys
        key_files = KeyFiles.of(str(keys / "monitor.key_secret"), str(keys / "runs"))
        self.window = MainWindow("127.0.0.1", 0, auth.ServerKeys(own, allowed), key_files=key_files)
        self.window.resize(*SIZE)
        self.window.show()
        self.out = out
        self.saved: list[Path] = []

    def save(self, name: str) -> None:
        """Save the window as ``name`` once it has drawn what it received."""
        settle(self.window)
        path = self.out / name
        self.window.grab().save(str(path))
        self.saved.append(path)

    def run(self, config: str, *options: str) -> subprocess.Popen[bytes]:
        """Start ``pipeline-run --config=CONFIG OPTIONS`` reporting to the window."""
        return subprocess.Popen(
            [sys.executable, "-m", "pipeline", f"--config={config}", "--no-progress",
             f"--Pipeline.gui_address=127.0.0.1:{self.window.receiver.port}",
             f"--Pipeline.gui_server_key={self.keys / 'monitor.key'}",
             f"--Pipeline.gui_key={self.keys / 'runs' / 'screenshots.key_secret'}", *options],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def ended(self, pipeline: str) -> bool:
        """Whether a run of ``pipeline`` has ended."""
        return any(r.ended and r.header.pipeline == pipeline for r in self.window.runs.runs.values())

    def step(self, pipeline: str, name: str) -> StepProgress | None:
        """The latest progress of step ``name`` of the run of ``pipeline`` going on; None if there is none."""
        runs = [r for r in self.window.runs.runs.values() if r.header.pipeline == pipeline and not r.ended]
        view = runs[0].steps.get(name) if runs else None
        return view.progress if view else None


def finish(run: subprocess.Popen[bytes]) -> None:
    """Wait for ``run`` (killed if it is still going on)."""
    if run.poll() is None:
        run.kill()
    run.wait(TIMEOUT)


def screenshots(out: Path, events: int) -> list[Path]:
    """Make the screenshots in ``out``; return their paths."""
    app = QApplication.instance() or QApplication(["pipeline-gui"])
    theme.apply(app)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        scene = Scene(out, Path(tmp) / "keys")
        scene.save("gui-waiting.png")
        run = scene.run("configs/example.json", f"--SimulatedCamera.n_events={events}",
                        f"--JsonLinesWriter.path={Path(tmp) / 'events.jsonl'}")
        try:
            def produced(fraction: float) -> bool:
                runs = list(scene.window.runs.runs.values())
                reader = runs[0].steps.get("READER") if runs else None
                done = reader.progress.processed if reader and reader.progress else 0
                return done >= fraction * events or any(r.ended for r in runs)

            wait_until(lambda: produced(0.6), TIMEOUT, "the run to be well under way")
            scene.save("gui-running.png")
            wait_until(lambda: scene.ended("example"), TIMEOUT, "the run to finish")
            scene.save("gui.png")
        finally:
            finish(run)
        for name, count, fan in (("twelve_steps", 12, 3), ("thirty_steps", 30, 4)):
            path = Path(tmp) / f"{name}.json"
            config = long_config("STAGE", count, fan, events // 2, Path(tmp) / f"{name}.jsonl")
            path.write_text(json.dumps(config), encoding="utf-8")
            run = scene.run(str(path))
            try:
                wait_until(lambda name=name: scene.ended(name), TIMEOUT, f"the {count}-step run to finish")
                scene.save(f"gui-{count}-steps.png")
            finally:
                finish(run)
        crash(scene, Path(tmp), events)
        scene.window.close()
    return scene.saved


def crash(scene: Scene, tmp: Path, events: int) -> None:
    """Run the example with worker processes, kill one of HILLAS's once it works, and save
    ``gui-processes.png`` once the run replaced it (or ended, if it was faster)."""
    path = tmp / "processes.json"
    path.write_text(json.dumps(processes_config(events, tmp / "processes.jsonl")), encoding="utf-8")
    run = scene.run(str(path))
    try:
        def working() -> bool:
            step = scene.step("processes", "HILLAS")
            return scene.ended("processes") or (step is not None and step.processed > 0
                                                and len(step.worker_processes) == 2)

        wait_until(working, TIMEOUT, "HILLAS's worker processes to work")
        step = scene.step("processes", "HILLAS")
        if step is not None:
            # A process of the run we started, by the pid its status gave: as a crash would end it.
            os.kill(next(w.pid for w in step.worker_processes if w.kind == "process" and w.pid), signal.SIGKILL)

            def replaced() -> bool:
                now = scene.step("processes", "HILLAS")
                return scene.ended("processes") or (now is not None and now.restarts > 0
                                                    and len(now.worker_processes) == 2)

            wait_until(replaced, TIMEOUT, "the killed worker process to be replaced")
        scene.save("gui-processes.png")
        wait_until(lambda: scene.ended("processes"), TIMEOUT, "the run with worker processes to finish")
    finally:
        finish(run)


def main(argv: list[str] | None = None) -> None:
    """The command line: where to save, and how many events the example run simulates."""
    parser = argparse.ArgumentParser(prog="python -m gui.screenshots", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "images", help="folder of the PNG files")
    parser.add_argument("--events", type=int, default=4000, help="events the example run simulates")
    args = parser.parse_args(argv)
    for path in screenshots(args.out, args.events):
        print(path)


if __name__ == "__main__":
    main()
