"""The ``pipeline-gui`` command: its options, its errors (exit 2), and a real process that starts,
listens, reads the socket and stops on a signal."""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq

from gui.app import PipeGui, binding_problem
from tests.bare_flood import bare_flood
from tests.cli_helpers import ROOT

# Read when pytest-qt makes the QApplication, after collection: the tests need no display.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

#: Seconds any wait on the subprocess may take.
TIMEOUT = 20.0


class Monitor:
    """``python -m gui ARGS`` offscreen, with its stderr read line by line, each wait bounded."""

    def __init__(self, *args: str) -> None:
        # faulthandler: a process that outlives its wait is sent SIGABRT, and says where each thread was.
        env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "PYTHONFAULTHANDLER": "1"}
        self.process = subprocess.Popen([sys.executable, "-m", "gui", *args], cwd=ROOT, env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.process.stderr, selectors.EVENT_READ)
        self.text = ""

    def wait_for(self, pattern: str, timeout: float = TIMEOUT) -> re.Match[str]:
        """The first match of ``pattern`` in the process's stderr, read until it appears."""
        deadline = time.monotonic() + timeout
        while not (found := re.search(pattern, self.text)):
            left = deadline - time.monotonic()
            if left <= 0 or (self.process.poll() is not None and not self.selector.select(0)):
                raise AssertionError(f"{pattern!r} not in the monitor's stderr:\n{self.text}")
            if self.selector.select(min(left, 0.2)):
                chunk = os.read(self.process.stderr.fileno(), 65536)
                self.text += chunk.decode(errors="replace")
        return found

    def stop(self, signum: int) -> int:
        """Send ``signum`` and return the exit status; fail with where its threads were if it outlives TIMEOUT."""
        self.process.send_signal(signum)
        try:
            return self.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.send_signal(signal.SIGABRT)
            self.process.wait(TIMEOUT)
            self.text += self.process.stderr.read().decode(errors="replace")
            raise AssertionError(f"not gone {TIMEOUT:g} s after signal {signum}; its stderr:\n{self.text}") from None

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(TIMEOUT)
        self.selector.close()
        self.process.stderr.close()


@pytest.fixture
def monitor() -> Iterator[Monitor]:
    started: list[Monitor] = []

    def start(*args: str) -> Monitor:
        started.append(Monitor(*args))
        return started[-1]

    yield start  # type: ignore[misc]
    for process in started:
        process.close()


def test_the_options_have_defaults_and_help() -> None:
    app = PipeGui()
    app.initialize([])
    assert (app.host, app.port) == ("127.0.0.1", 5565)
    app = PipeGui()
    app.initialize(["--host=0.0.0.0", "--PipeGui.port=0"])
    assert (app.host, app.port) == ("0.0.0.0", 0)


def test_help_lists_the_options(capsys) -> None:
    with pytest.raises(SystemExit) as stop:
        PipeGui().execute(["--help"])
    assert stop.value.code == 0
    help_text = capsys.readouterr().out
    assert "--port" in help_text and "--host" in help_text and "0.0.0.0" in help_text


@pytest.mark.parametrize(
    ("argv", "problem"),
    [(["--prot=6000"], "unknown option (did you mean '--port'?)"), (["--port=70000"], "70000"),
     (["--port=many"], "many"), (["extra"], "unexpected argument"),
     (["--PipeGui.prot=1"], "--PipeGui.prot: PipeGui has no option 'prot' (did you mean 'port'?)"),
     (["--PipeGUI.port=1"], "--PipeGUI: unknown class (did you mean 'PipeGui'?)")],
)
def test_a_bad_command_line_exits_2(capsys, argv: list[str], problem: str) -> None:
    assert PipeGui().execute(argv) == 2
    error = capsys.readouterr().err
    assert error.startswith("pipeline-gui: error: ")
    assert problem in error


@pytest.mark.parametrize(
    ("host", "said"),
    [("", "--host: empty: expected an address or a network interface of this host, such as 127.0.0.1 (this host "
          "only) or 0.0.0.0 (every host)"),
     ("256.1.1.1", "--host: '256.1.1.1' is not an address or a network interface of this host (expected one, "),
     ("203.0.113.77", "--host: cannot bind '203.0.113.77': Cannot assign requested address (expected an address or "
                      "a network interface of this host")],  # TEST-NET-3: for documentation, no host's address
)
def test_a_host_that_cannot_be_bound_exits_2_before_any_key_is_written(tmp_path, monkeypatch, capsys, host: str,
                                                                        said: str) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # a user who never started the monitor
    assert PipeGui().execute([f"--host={host}"]) == 2
    assert capsys.readouterr().err.startswith(f"pipeline-gui: error: command line: {said}")
    assert list(tmp_path.iterdir()) == []


def test_a_bad_host_writes_no_key_as_a_process(tmp_path) -> None:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path)}
    env.pop("XDG_CONFIG_HOME", None)
    result = subprocess.run([sys.executable, "-m", "gui", "--host="], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 2
    assert result.stderr == ("pipeline-gui: error: command line: --host: empty: expected an address or a network "
                             "interface of this host, such as 127.0.0.1 (this host only) or 0.0.0.0 (every host)\n")
    assert list(tmp_path.iterdir()) == []


def test_a_port_in_use_exits_2(qapp, capsys) -> None:
    context = zmq.Context()
    taken = context.socket(zmq.SUB)
    taken.linger = 0
    try:
        port = taken.bind_to_random_port("tcp://127.0.0.1")
        assert PipeGui().execute([f"--port={port}"]) == 2
    finally:
        taken.close()
        context.term()
    said = capsys.readouterr().err
    assert f"command line: --port: cannot bind tcp://127.0.0.1:{port}: Address already in use" in said


def test_it_listens_reads_and_stops_on_ctrl_c(monitor) -> None:
    gui = monitor("--port=0", "--plaintext")
    port = int(gui.wait_for(r"listening on tcp://127\.0\.0\.1:(\d+), waiting for a pipeline").group(1))
    context = zmq.Context()
    sender = context.socket(zmq.PUB)
    sender.linger = 0
    try:
        sender.connect(f"tcp://127.0.0.1:{port}")
        deadline = time.monotonic() + TIMEOUT
        while "ignored a message" not in gui.text and time.monotonic() < deadline:
            sender.send_multipart([b"status", b"not json"])  # dropped until the monitor's subscription arrives
            gui.text += "" if not gui.selector.select(0.1) else os.read(gui.process.stderr.fileno(), 65536).decode()
    finally:
        sender.close()
        context.term()
    assert "ignored a message: status: not JSON" in gui.text
    assert gui.stop(signal.SIGINT) == 128 + signal.SIGINT


def test_it_stops_on_sigterm(monitor) -> None:
    gui = monitor("--port=0")
    gui.wait_for("waiting for a pipeline")
    assert gui.stop(signal.SIGTERM) == 128 + signal.SIGTERM


def test_it_stops_on_sigterm_after_a_flood_of_bare_connections(monitor) -> None:
    """2,500 bare TCP connections that send nothing, dropped at once: the monitor's socket events, read in the
    window's turns, filled their queue; libzmq's I/O thread waited to hand on the next, and SIGTERM's close waited
    for it for ever (only SIGKILL ended the process)."""
    gui = monitor("--port=0")
    port = int(gui.wait_for(r"listening on tcp://127\.0\.0\.1:(\d+), waiting for a pipeline").group(1))
    with bare_flood(port):
        pass
    assert gui.stop(signal.SIGTERM) == 128 + signal.SIGTERM


def test_it_closes_cleanly_on_sighup(monitor) -> None:
    """A closed terminal (SIGHUP) closes the window as SIGTERM does: its default action killed it (rc -1)."""
    gui = monitor("--port=0")
    gui.wait_for("waiting for a pipeline")
    assert gui.stop(signal.SIGHUP) == 128 + signal.SIGHUP


def test_a_broken_binding_is_named() -> None:
    assert "6.12.0" in binding_problem((6, 12, 0), (3, 11))
    assert binding_problem((6, 12, 0), (3, 12)) == ""
    assert binding_problem((6, 11, 3), (3, 11)) == ""


@pytest.mark.skipif(sys.version_info >= (3, 12), reason="None is immortal from Python 3.12")
def test_the_installed_qt_binding_keeps_none_alive(qapp) -> None:
    """A binding that drops a reference to None on each call returning nothing would crash the monitor."""
    from PySide6.QtWidgets import QLabel

    label = QLabel()
    before = sys.getrefcount(None)
    for _ in range(1000):
        label.setText("x")
    assert sys.getrefcount(None) >= before - 10


def test_without_a_display_it_says_what_is_missing_in_one_line() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    result = subprocess.run([sys.executable, "-m", "gui", "--port=0"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 2
    assert result.stderr == ("pipeline-gui: error: display: no display: DISPLAY is not set (start pipeline-gui in a "
                             "desktop session, or run offscreen with QT_QPA_PLATFORM=offscreen)\n")


@pytest.mark.parametrize(("platform", "said"), [
    ("bogus", "display: QT_QPA_PLATFORM=bogus: Qt has no platform plugin 'bogus' (it has "),
    ("wayland", "display: no display: QT_QPA_PLATFORM=wayland but WAYLAND_DISPLAY is not set (start pipeline-gui in a "
                "Wayland session, or run offscreen with QT_QPA_PLATFORM=offscreen)"),
])
def test_a_platform_qt_cannot_start_is_said_in_one_line(tmp_path: Path, platform: str, said: str) -> None:
    """Qt aborted the whole process (exit 134) with its own lines for a plugin it lacks or a Wayland with no display."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    env.update(QT_QPA_PLATFORM=platform, XDG_CONFIG_HOME=str(tmp_path))
    result = subprocess.run([sys.executable, "-m", "gui", "--port=0"], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=TIMEOUT, check=False)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"pipeline-gui: error: {said}") and result.stderr.count("\n") == 1


def test_one_platform_qt_can_start_is_enough() -> None:
    from gui.display import display_problem

    shipped = {"xcb", "wayland", "offscreen"}.copy
    assert display_problem({"QT_QPA_PLATFORM": "bogus;offscreen"}, "linux", lambda library: True, shipped) == ""
    assert display_problem({"QT_QPA_PLATFORM": "wayland"}, "linux", lambda library: True, shipped).startswith(
        "no display: QT_QPA_PLATFORM=wayland but WAYLAND_DISPLAY is not set")
    assert display_problem({"QT_QPA_PLATFORM": "wayland", "WAYLAND_DISPLAY": "wayland-0"}, "linux",
                           lambda library: True, shipped) == ""
    assert display_problem({"QT_QPA_PLATFORM": "xcb:nograb", "DISPLAY": ":0"}, "linux", lambda library: True,
                           shipped) == ""


def test_missing_x11_libraries_are_named_by_their_packages() -> None:
    from gui.display import display_problem

    present = {"libxcb-icccm.so.4": False, "libxcb-keysyms.so.1": False}
    problem = display_problem({"DISPLAY": ":0"}, "linux", lambda library: present.get(library, True))
    assert problem == ("Qt's X11 plugin needs libraries that are missing: apt-get install libxcb-icccm4 "
                       "libxcb-keysyms1 (or run offscreen with QT_QPA_PLATFORM=offscreen)")
    assert display_problem({"DISPLAY": ":0"}, "linux", lambda library: True) == ""
    assert display_problem({"QT_QPA_PLATFORM": "offscreen"}, "linux", lambda library: False) == ""
    assert display_problem({"WAYLAND_DISPLAY": "wayland-0"}, "linux", lambda library: False) == ""
    assert display_problem({}, "darwin", lambda library: False) == ""


def test_by_default_it_makes_the_users_key_pair_and_says_where_once(monitor, tmp_path, monkeypatch) -> None:
    from pipeline import auth

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # a user who never started the monitor
    first = monitor("--port=0")
    first.wait_for("waiting for a pipeline")
    assert auth.own_key_pair() is not None  # made on the first start, in the (test's) private directory
    assert oct(auth.private_dir().stat().st_mode & 0o777) == "0o700"
    public, secret = auth.key_paths(auth.private_dir(), "monitor")
    said = [line for line in first.text.splitlines() if "key pair" in line]
    assert said == [f"pipeline-gui: made this user's monitor key pair: {public} (public) and {secret} (secret, mode "
                    f"0600); this user's runs on this host read it; a run on another host needs {public} as "
                    "--Pipeline.gui_server_key (docs/gui.md, keys and privacy)"]
    assert first.stop(signal.SIGTERM) == 128 + signal.SIGTERM
    second = monitor("--port=0")
    second.wait_for("waiting for a pipeline")
    assert "key pair" not in second.text  # the next start finds it: said once


def test_a_bad_key_file_exits_2(capsys, tmp_path) -> None:
    assert PipeGui().execute([f"--server-key={tmp_path / 'none.key_secret'}"]) == 2
    assert capsys.readouterr().err == (f"pipeline-gui: error: {tmp_path / 'none.key_secret'}: --server-key: no such "
                                       "file: expected a key file made by pipeline-keys\n")
    assert PipeGui().execute(["--plaintext", "--authorized-keys=keys"]) == 2
    assert "--plaintext: uses no keys" in capsys.readouterr().err
