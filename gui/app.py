"""The ``pipeline-gui`` command: a window that shows the runs reporting to it, live."""

from __future__ import annotations

import errno
import signal
import sys
from collections.abc import Sequence
from types import FrameType, TracebackType
from typing import Any, ClassVar, NoReturn

import zmq
from traitlets import Bool, Int, Unicode

from pipeline import auth
from pipeline.cli.application import COMMAND_LINE, DEBUG_FLAG, StrictApplication
from pipeline.cli.signals import HANDLED
from pipeline.config.traits import ValueProblem, check_encodable, shown
from pipeline.console.end_of_output import console_script
from pipeline.errors import ConfigError

from .display import display_problem

#: Milliseconds between wake-ups of the Python interpreter inside Qt's loop, so that Ctrl+C is seen.
SIGNAL_CHECK_MS = 200


class PipeGui(StrictApplication):
    """Show the pipelines that report to this monitor: graph, progress, throughput and errors."""

    name = "pipeline-gui"
    description = (
        "A live monitor of pipeline runs. It binds a ZeroMQ SUB socket; a run started with "
        "--Pipeline.gui_address=HOST:PORT reports to it. Each run gets its own tab. Only runs that "
        "prove an allowed CURVE key are heard: by default the user's own key pair, made on the first "
        "start in ~/.config/zmq-pipeline (0700), which the user's runs read."
    )
    examples = """
pipeline-gui
pipeline-gui --port=6000
pipeline-gui --host=0.0.0.0 --server-key=keys/desk.key_secret --authorized-keys=keys/runs   # other hosts
pipeline-gui --plaintext             # anyone who reaches the port (trusted single-user host)
pipeline-run --config=configs/example.json --Pipeline.gui_address=127.0.0.1:5565
"""

    host = Unicode(
        "127.0.0.1", help="The interface to bind: 127.0.0.1 for this host only, 0.0.0.0 to accept other hosts."
    ).tag(config=True)
    port = Int(5565, min=0, max=65535, help="The TCP port to bind (0: any free port, shown in the window).").tag(
        config=True
    )
    server_key = Unicode(
        "", help="The monitor's key pair (a .key_secret file); runs need its public .key as Pipeline.gui_server_key "
        "(default: the user's own pair in ~/.config/zmq-pipeline, made on the first start)."
    ).tag(config=True)
    authorized_keys = Unicode(
        "", help="A directory of runs' public .key files to let in, besides the holders of the monitor's own pair."
    ).tag(config=True)
    plaintext = Bool(
        False, help="No CURVE: hear anyone who reaches the port (runs need Pipeline.gui_plaintext=True)."
    ).tag(config=True)

    aliases: ClassVar[dict[str, str]] = {
        "host": "PipeGui.host",
        "port": "PipeGui.port",
        "server-key": "PipeGui.server_key",
        "authorized-keys": "PipeGui.authorized_keys",
        "log-level": "Application.log_level",
    }
    flags: ClassVar[dict[str, tuple[dict[str, Any], str]]] = {
        **DEBUG_FLAG,
        "plaintext": ({"PipeGui": {"plaintext": True}}, "Hear anyone who reaches the port, without keys."),
    }

    #: The exit status of the last start(): 0, or 128 + the signal that closed the window.

    package_loggers = ("gui",)

    def initialize(self, argv: Sequence[str] | None = None) -> None:
        """Read the command line; raise a ConfigError for any option or value that cannot work (a host that cannot
        be bound too: before start() writes the user's key pair)."""
        self.parse_strictly(argv)
        if self.plaintext and (self.server_key or self.authorized_keys):
            raise ConfigError(COMMAND_LINE, "--plaintext", "uses no keys: drop --server-key and --authorized-keys")
        problem = host_problem(self.host)
        if problem:
            raise ConfigError(COMMAND_LINE, "--host", problem)

    def security(self) -> auth.ServerKeys | None:
        """The monitor's key pair and the keys it lets in; None in plaintext (ConfigError for a bad key file)."""
        if self.plaintext:
            return None
        own = auth.load_key_pair(self.server_key, "--server-key") if self.server_key else self.own_key_pair()
        allowed = {own.public: own.name}
        if self.authorized_keys:
            allowed.update(auth.authorized_keys(self.authorized_keys, "--authorized-keys"))
        return auth.ServerKeys(own, allowed)

    def own_key_pair(self) -> auth.KeyPair:
        """The user's own key pair; made on the first start, which says where (once: the next start finds it)."""
        public, secret = auth.key_paths(auth.private_dir(), auth.OWN_KEY_NAME)
        made = not secret.exists()
        own = auth.ensure_own_key_pair()
        if made:
            print(f"{self.name}: made this user's monitor key pair: {public} (public) and {secret} (secret, mode "
                  f"0600); this user's runs on this host read it; a run on another host needs {public} as "
                  "--Pipeline.gui_server_key (docs/gui.md, keys and privacy)", file=sys.stderr, flush=True)
        return own

    def start(self) -> None:
        """Open the window and run Qt's event loop until the window closes or a signal arrives."""
        try:  # only here: --help and a bad command line need no Qt
            from PySide6.QtWidgets import QApplication
        except ImportError as err:
            raise ConfigError("PySide6", "", f"not installed ({err}); pip install 'zmq-pipeline[gui]'") from err

        from . import theme
        from .instructions import KeyFiles
        from .window import MainWindow

        problem = binding_problem()
        if problem:
            self.log.warning("%s", problem)
        missing = display_problem()
        if missing:  # before Qt, which would abort the process with a misleading message
            raise ConfigError("display", "", missing)
        security = self.security()
        qt_app = QApplication.instance() or QApplication([self.name])
        theme.apply(qt_app)
        with QuitOnSignal(qt_app) as signals:
            try:
                key_files = KeyFiles.of(self.server_key, self.authorized_keys) if security else None
                window = MainWindow(self.host, self.port, security, key_files=key_files)
            except zmq.ZMQError as err:  # the host could be bound (initialize): the port is taken or not allowed
                raise ConfigError(COMMAND_LINE, "--port",
                                  f"cannot bind tcp://{self.host}:{self.port}: {zmq.strerror(err.errno)}") from err
            # The real port, when --port=0 let the system choose it.
            print(f"{self.name}: listening on {window.address}, waiting for a pipeline", file=sys.stderr, flush=True)
            window.show()
            qt_app.exec()
        window.shutdown()
        window.deleteLater()
        self.exit_status = 128 + signals.received if signals.received else 0


class QuitOnSignal:
    """Within ``with``, SIGINT, SIGTERM and SIGHUP quit Qt's event loop; ``received`` keeps the signal.

    Python runs a signal handler only between bytecodes, never while Qt's loop waits in C++, so a
    timer hands control back to the interpreter a few times a second.
    """

    #: pipeline-run's: a closed terminal or a dropped ssh session closes the window cleanly too (exit 129), where
    #: SIGHUP's default action killed it at once.
    SIGNALS = HANDLED

    def __init__(self, qt_app: Any) -> None:
        from PySide6.QtCore import QTimer

        self.qt_app = qt_app
        self.received: int | None = None
        self._previous: dict[int, Any] = {}
        self._timer = QTimer()
        self._timer.setInterval(SIGNAL_CHECK_MS)
        self._timer.timeout.connect(lambda: None)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        from PySide6.QtCore import QTimer

        self.received = self.received or signum
        QTimer.singleShot(0, self.qt_app.quit)  # posted: also quits a loop that has not started yet

    def __enter__(self) -> QuitOnSignal:
        self._previous = {signum: signal.signal(signum, self._handle) for signum in self.SIGNALS}
        self._timer.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self._timer.stop()
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


#: What --host takes, in every message about it.
_HOST_EXPECTED = "an address or a network interface of this host"
_HOST_EXAMPLES = "such as 127.0.0.1 (this host only) or 0.0.0.0 (every host)"


def host_problem(host: str) -> str:
    """Why the monitor cannot bind ``host`` ("" if it can), found as ZeroMQ binds it (an address, a host name or
    a network interface of this host, or '*'), on a free port: the monitor's own port is bound later."""
    if not host:
        return f"empty: expected {_HOST_EXPECTED}, {_HOST_EXAMPLES}"
    try:
        check_encodable(host, _HOST_EXPECTED)  # a command line's byte that is not UTF-8: libzmq takes UTF-8 only
    except ValueProblem as err:
        return str(err)
    context = zmq.Context()
    probe = context.socket(zmq.SUB)
    probe.linger = 0
    try:
        probe.bind(f"tcp://{host}:0")
    except zmq.ZMQError as err:
        if err.errno == errno.ENODEV:  # what libzmq says of a name it cannot read as an address or an interface
            return f"{shown(host)} is not {_HOST_EXPECTED} (expected one, {_HOST_EXAMPLES})"
        return f"cannot bind {shown(host)}: {zmq.strerror(err.errno)} (expected {_HOST_EXPECTED}, {_HOST_EXAMPLES})"
    finally:
        probe.close()
        context.term()
    return ""


def binding_problem(version: tuple[int, ...] | None = None, python: tuple[int, ...] = sys.version_info[:2]) -> str:
    """Why the installed PySide6 (or ``version``) cannot run the monitor for long; "" if it can."""
    if version is None:
        import PySide6

        version = tuple(PySide6.__version_info__[:3])
    if tuple(version[:3]) == (6, 12, 0) and tuple(python) < (3, 12):
        return ("PySide6 6.12.0 drops a reference to None on every Qt call that returns nothing: on Python "
                "before 3.12 the monitor soon crashes ('deallocating None'); install another version "
                "(pip install 'PySide6-Essentials>=6.5,!=6.12.0')")
    return ""


@console_script
def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``pipeline-gui`` console script."""
    PipeGui.launch_instance(argv)
