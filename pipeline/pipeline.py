"""The Python API: build a pipeline from a config and run it."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from traitlets import Bool, Enum, Float, Int, Unicode
from traitlets.config import Config, Configurable

from .config import PipelineConfig, load_config
from .monitor import Address, Monitor, MonitorSettings
from .monitor.monitor import DEFAULT_GUI_ADDRESS
from .options import RunOptions
from .report import RunReport


class Pipeline(Configurable):
    """A validated pipeline, ready to run in the chosen mode."""

    mode = Enum(
        ["threads", "sequential"],
        default_value="threads",
        help="How to run the steps: 'threads' (the ZeroMQ engine) or 'sequential' (one thread, for debugging).",
    ).tag(config=True)
    max_failures = Int(0, min=0, help="Stop the run once this many messages failed in all (0: no limit).").tag(
        config=True
    )
    allow_failures = Bool(
        False, help="Exit 0 although messages failed in steps with on_error=skip (init/finish errors still fail)."
    ).tag(config=True)
    dead_letter = Unicode(
        "", help="Write every failed message to this JSON-lines file, to inspect it or --replay it."
    ).tag(config=True)
    shutdown_timeout = Float(
        10.0, min=0.0, help="Seconds a run stopped by a signal may take to drain before busy threads are left behind."
    ).tag(config=True)
    keep_freed_memory = Bool(
        True, help="Tune glibc malloc so that freed large buffers are reused instead of page-faulted afresh "
        "(threads mode; process-wide)."
    ).tag(config=True)
    gui = Bool(True, help="Publish the run's status to gui_address (a JSON stream, docs/protocol.md).").tag(
        config=True
    )
    gui_address = Address(
        DEFAULT_GUI_ADDRESS, help="host:port of the monitor GUI (pipeline-gui binds it; a run connects, never waits)."
    ).tag(config=True)
    gui_plaintext = Bool(
        False, help="Publish the status in clear to whoever listens at gui_address, instead of only to a monitor "
        "that proves its key (for a trusted single-user host or a simple subscriber script)."
    ).tag(config=True)
    gui_server_key = Unicode(
        "", help="The monitor's public key file (.key): status goes only to the holder of its secret "
        "(default: the user's own monitor key, made by pipeline-gui in ~/.config/zmq-pipeline)."
    ).tag(config=True)
    gui_key = Unicode(
        "", help="This run's key pair file (.key_secret), which the monitor must authorize "
        "(default: the user's own monitor key pair)."
    ).tag(config=True)
    graph_interval = Float(
        2.0, min=0.05, help="Seconds between two sends of the graph, for a GUI that connects during the run."
    ).tag(config=True)
    progress = Bool(
        True, help="Show progress on stderr: a live table on a terminal, else a log line every progress_interval s."
    ).tag(config=True)
    progress_interval = Float(
        5.0, min=0.05, help="Seconds between two progress log lines when stderr is not a terminal."
    ).tag(config=True)

    def __init__(self, steps: PipelineConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.steps = steps
        self._runner: Any = None
        self._interrupts = 0

    @classmethod
    def from_config(cls, source: str | Path | Mapping[str, Any], overrides: Config | Mapping | None = None,
                    replay: str | None = None, name: str = "") -> Pipeline:
        """Load and validate ``source`` (a JSON file or a dict); ``overrides`` win over its values.

        ``name`` names the run in the monitor (default: the file's stem; for a dict, its first and last steps).

        With ``replay``, the producer is replaced by the messages of that dead-letter file, each sent
        again to the step where it failed.
        """
        overrides = overrides if isinstance(overrides, Config) else Config(overrides or {})
        steps = load_config(source, overrides, settings=[cls], name=name)
        if replay is not None:
            steps = steps.for_replay(replay)
        return cls(steps, config=steps.config)

    def options(self) -> RunOptions:
        """The failure and shutdown settings of a run."""
        return RunOptions(self.max_failures, self.allow_failures, self.dead_letter, self.shutdown_timeout,
                          self.keep_freed_memory)

    def monitor_settings(self) -> MonitorSettings:
        """What the monitor publishes and shows during a run."""
        return MonitorSettings(gui=self.gui, gui_address=self.gui_address, gui_plaintext=self.gui_plaintext,
                               gui_server_key=self.gui_server_key, gui_key=self.gui_key,
                               graph_interval=self.graph_interval, progress=self.progress,
                               progress_interval=self.progress_interval)

    def run(self) -> RunReport:
        """Run to the end of the stream, watched by the monitor; return per-step counts and times."""
        if self.mode == "sequential":
            from .sequential import SequentialRunner

            self._runner = SequentialRunner(self.steps, self.options())
        else:
            from .engine import ThreadedRunner

            self._runner = ThreadedRunner(self.steps, self.options())
        try:
            with Monitor(self.steps, self._runner, self.monitor_settings()) as monitor:
                return monitor.close(self._runner.run())
        finally:
            self._runner = None

    def interrupt(self, signal: int) -> None:
        """A signal arrived (from any thread): the first stops the producer and drains what is in
        flight; the second stops at once, leaving busy threads behind."""
        self._interrupts += 1
        runner = self._runner
        if runner is None:
            return
        if self._interrupts == 1:
            runner.stop(signal)
        else:
            runner.abort()

    def busy(self) -> list[str]:
        """The steps and workers inside their code now (to name them if the run must be abandoned)."""
        runner = self._runner
        return runner.busy() if runner is not None else []
