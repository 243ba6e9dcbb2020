"""Watching a run of another host, as the docs and the waiting page tell it: their steps run on loopback,
with two users (the monitor's and the run's, each with a home and an XDG_CONFIG_HOME of their own, so
that neither side can fall back on the other's own key pair), verbatim but for hosts and paths.

The monitor runs in this process (offscreen) from the documented command line, parsed by pipeline-gui
itself; ``pipeline-keys`` and ``pipeline-run`` run as subprocesses in the home of their user; ``scp`` and
``mkdir`` are done as files are copied between the two homes.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gui.app import PipeGui
from gui.instructions import KeyFiles, Step, waiting_steps
from gui.window import MainWindow
from tests.cli_helpers import ROOT
from tests.doc_helpers import fenced_blocks

# Read when pytest-qt makes the QApplication, after collection: the tests need no display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

#: Seconds a documented command may take; milliseconds a wait on the window may take.
COMMAND_SECONDS, WAIT_MS = 60, 30_000
#: The FAQ's section with the recipe.
RECIPE_HEADING = "### How do I watch a run from another machine?"


class Users:
    """Two users of this host, each with a home (a copy of configs/ in it) and a private config directory."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root = root
        self.monkeypatch = monkeypatch
        self.windows: list[MainWindow] = []

    def home(self, host: str) -> Path:
        """The home of the user on ``host``, made on first use."""
        home = self.root / host
        if not home.exists():
            (home / ".config").mkdir(parents=True)
            shutil.copytree(ROOT / "configs", home / "configs")
        return home

    def env(self, host: str) -> dict[str, str]:
        return {**os.environ, "XDG_CONFIG_HOME": str(self.home(host) / ".config"), "PYTHONPATH": str(ROOT)}

    def path(self, host: str, argument: str) -> Path:
        """A path as ``scp`` reads it: ``HOST:PATH`` in HOST's home, else in ``host``'s home."""
        where, colon, path = argument.partition(":")
        return self.home(where) / path if colon else self.home(host) / argument

    def run(self, qtbot: Any, host: str, words: list[str]) -> str:
        """``pipeline-keys`` or ``pipeline-run`` as ``host``'s user, in its home; its stderr.

        The window's event loop goes on meanwhile, as a monitor's does: a SUB socket sends its subscription
        only when its own thread touches it, so a monitor whose loop stood still would hear nothing."""
        module = {"pipeline-keys": "pipeline.cli.keys", "pipeline-run": "pipeline"}[words[0]]
        log = self.root / f"{host}-stderr.txt"
        with log.open("w", encoding="utf-8") as stderr:
            process = subprocess.Popen([sys.executable, "-m", module, *words[1:]], cwd=self.home(host),
                                       env=self.env(host), stdout=subprocess.DEVNULL, stderr=stderr)
            try:
                qtbot.waitUntil(lambda: process.poll() is not None, timeout=COMMAND_SECONDS * 1000)
            finally:
                if process.poll() is None:
                    process.kill()
                process.wait(COMMAND_SECONDS)
        said = log.read_text(encoding="utf-8")
        assert process.returncode == 0, f"{host}: {shlex.join(words)} exited {process.returncode}:\n{said}"
        return said

    def copy(self, host: str, source: str, target: str) -> None:
        """``scp SOURCE TARGET`` run on ``host``."""
        destination = self.path(host, target)
        shutil.copy(self.path(host, source), destination / Path(source).name if target.endswith("/") else destination)

    def monitor(self, qtbot: Any, host: str, words: list[str], port: int = 0) -> MainWindow:
        """``pipeline-gui ARGS`` as ``host``'s user: parsed by pipeline-gui, its window opened here on loopback."""
        self.monkeypatch.chdir(self.home(host))
        self.monkeypatch.setenv("XDG_CONFIG_HOME", str(self.home(host) / ".config"))
        app = PipeGui()
        app.initialize(words[1:])
        security = app.security()
        key_files = KeyFiles.of(app.server_key, app.authorized_keys) if security else None
        window = MainWindow("127.0.0.1", port, security, key_files=key_files)  # the host: loopback, not 0.0.0.0
        qtbot.addWidget(window)
        window.show()
        self.windows.append(window)
        return window


@pytest.fixture
def users(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Users]:
    made = Users(tmp_path, monkeypatch)
    yield made
    for window in made.windows:
        window.shutdown()


def recipe() -> list[tuple[str, list[str]]]:
    """The FAQ's commands, each with the host it runs on (from the ``# on HOST`` comment above it)."""
    faq = ROOT / "docs" / "faq.md"
    start = faq.read_text(encoding="utf-8").splitlines().index(RECIPE_HEADING) + 1
    block = next(b for b in fenced_blocks(faq) if b.line > start and b.language == "sh")
    commands, host = [], ""
    for line in block.text.replace("\\\n", " ").splitlines():
        if on := re.match(r"# on (\w+)", line):
            host = on.group(1)
        elif line.strip():
            commands.append((host, shlex.split(line)))
    return commands


def reported(qtbot: Any, window: MainWindow, key: str) -> None:
    """Wait until a run that proved ``key`` finished in ``window``, with nothing refused."""
    # A status that says "finished" may come before the finish message, which holds the exit status.
    qtbot.waitUntil(lambda: any(r.ended and r.exit_status is not None for r in window.runs.runs.values()),
                    timeout=WAIT_MS)
    (run,) = window.runs.runs.values()
    assert (run.state, run.exit_status, run.peer) == ("finished", 0, key)
    assert window.receiver.refused == 0


def test_the_faq_recipe_runs_with_two_users_keys(qtbot, users: Users) -> None:
    window: MainWindow | None = None
    steps = recipe()
    assert [words[0] for _, words in steps] == ["pipeline-keys", "mkdir", "pipeline-keys", "scp", "scp",
                                                "pipeline-gui", "pipeline-run"]
    for host, words in steps:
        if words[0] == "mkdir":
            assert words[1:3] == ["-m", "700"], words  # whatever the user's umask: others may not add a key
            users.path(host, words[3]).mkdir(mode=0o700)
        elif words[0] == "scp":
            users.copy(host, words[1], words[2])
        elif words[0] == "pipeline-gui":
            window = users.monitor(qtbot, host, words)
        else:
            assert window is not None or words[0] == "pipeline-keys", "the recipe runs a pipeline before the monitor"
            if window is not None:  # the monitor's host, by its name and its port, is this loopback window
                words = [word.replace("desk:5565", f"127.0.0.1:{window.receiver.port}") for word in words]
            said = users.run(qtbot, host, words)
            assert "not heard" not in said and "not published" not in said, said
    assert window is not None
    reported(qtbot, window, "node7")
    # Which key went where: each secret stayed with its user; each side holds the other's public key.
    secrets = {host: sorted(p.name for p in users.home(host).rglob("*.key_secret")) for host in ("desk", "node7")}
    assert secrets == {"desk": ["desk.key_secret"], "node7": ["node7.key_secret"]}
    assert (users.home("desk") / "monitor-keys" / "runs" / "node7.key").is_file()
    assert (users.home("node7") / "run-keys" / "desk.key").is_file()


def test_the_waiting_pages_steps_let_a_run_of_another_user_report(qtbot, users: Users) -> None:
    users.run(qtbot, "desk", ["pipeline-keys", "generate", "desk", "--dir=keys"])
    users.home("desk").joinpath("keys", "runs").mkdir()
    command = ["pipeline-gui", "--server-key=keys/desk.key_secret", "--authorized-keys=keys/runs"]
    window = users.monitor(qtbot, "desk", command)
    port, steps = window.receiver.port, window.waiting.steps
    texts = [step.text for step in steps]
    # 1. on the run's host, make its key pair
    users.run(qtbot, "node7", shlex.split(steps[1].command.replace("NAME", "node7")))
    # 2. copy keys/NAME.key into the directory named, and restart the monitor (on the same port)
    into = re.fullmatch(r"2\. copy keys/NAME\.key into (\S+), and restart this monitor", texts[2])
    assert into is not None, texts
    shutil.copy(users.home("node7") / "keys" / "node7.key", into.group(1))
    window.shutdown()
    window = users.monitor(qtbot, "desk", command, port)
    assert window.waiting.steps == steps
    # 3. copy the monitor's public key to the run's host
    public = re.fullmatch(r"3\. copy (\S+) to the run's host, into keys/", texts[3])
    assert public is not None, texts
    shutil.copy(public.group(1), users.home("node7") / "keys")
    # 4. start the run
    run = steps[4].command.replace("NAME", "node7").replace("FILE", "configs/chain.json")
    said = users.run(qtbot, "node7", [*shlex.split(run), "--no-progress", "--JsonLinesWriter.path=chain.jsonl"])
    assert "not heard" not in said, said
    reported(qtbot, window, "node7")


def test_the_waiting_page_says_what_each_kind_of_monitor_needs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "desk")
    own = KeyFiles("/home/u/.config/zmq-pipeline/monitor.key")
    assert waiting_steps("127.0.0.1", 6000, None) == [
        Step("to watch a run, start it with",
             "pipeline-run --config=FILE --Pipeline.gui_address=127.0.0.1:6000 --Pipeline.gui_plaintext=True")]
    # The user's own pair on this host, at the default address: the run needs nothing.
    alone = waiting_steps("127.0.0.1", 5565, own)
    assert alone[0] == Step("a run of this user on this host reports here as it is:", "pipeline-run --config=FILE")
    assert "--host=0.0.0.0 --authorized-keys=DIR" in alone[1].text and len(alone) == 2
    assert waiting_steps("127.0.0.1", 6000, own)[0].command == (
        "pipeline-run --config=FILE --Pipeline.gui_address=127.0.0.1:6000")
    # On every interface without --authorized-keys: the key steps, starting with the missing option.
    shared = waiting_steps("0.0.0.0", 5565, own)
    assert shared[0].command == "pipeline-run --config=FILE"
    assert shared[3].text == "2. copy keys/NAME.key into a directory DIR, and restart this monitor with " \
                             "--authorized-keys=DIR"
    assert shared[4].text == "3. copy /home/u/.config/zmq-pipeline/monitor.key to the run's host, into keys/"
    assert shared[5].command == ("pipeline-run --config=FILE --Pipeline.gui_address=desk:5565 "
                                 "--Pipeline.gui_server_key=keys/monitor.key --Pipeline.gui_key=keys/NAME.key_secret")
    # Another pair than the user's own: even this user's runs need the key options.
    assert KeyFiles.of("keys/desk.key_secret", "keys/runs") == KeyFiles(
        os.path.abspath("keys/desk.key"), os.path.abspath("keys/runs"), own=False)
    assert waiting_steps("127.0.0.1", 5565, KeyFiles("/k/desk.key", "/k/runs", own=False))[0].text.startswith(
        "a run of another host or user needs")
