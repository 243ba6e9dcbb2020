"""The Python API: build a pipeline from a config and run it."""

from __future__ import annotations

import signal
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from traitlets import Bool, Enum, Int, Unicode
from traitlets.config import Config, Configurable

from pipeline.config.listen import remote_keys
from pipeline.config.loader import OVERRIDES_ARGUMENT, load_config
from pipeline.config.model import PipelineConfig
from pipeline.config.options import RunOptions, settings_from
from pipeline.config.outputs import check_written_files, claim_outputs, release_outputs
from pipeline.config.traits import ListenAddress, OutputFile, Seconds
from pipeline.errors import ConfigError
from pipeline.execution.report import RunReport
from pipeline.execution.runner import Runner
from pipeline.failures.deadletter import preload, release, replay_config, replay_path, writes_over
from pipeline.monitor import Address, Monitor, MonitorSettings
from pipeline.monitor.monitor import DEFAULT_GUI_ADDRESS

#: The signals of this platform, by number (a run stopped by one exits with 128 + its number).
_SIGNAL_NUMBERS = frozenset(signal.valid_signals())

#: Most heartbeats a run or a worker process may miss before the other is taken for dead or gone: past a
#: hundred, silence would hardly be noticed at all (1e22 was accepted), and heartbeat_interval says the
#: same more plainly.
MAX_HEARTBEAT_LIVENESS = 100


class Pipeline(Configurable):
    """A validated pipeline, ready to run in the chosen mode."""

    mode = Enum(
        ["threads", "sequential"],
        default_value="threads",
        help="How to run the steps: 'threads' (the ZeroMQ engine) or 'sequential' (one thread, for debugging).",
    ).tag(config=True)
    max_failures = Int(0, min=0, help="Stop the run once this many messages failed in all (0: no limit); worker "
                       "processes may fail what they already hold before they hear of it.").tag(config=True)
    allow_failures = Bool(
        False, help="Exit 0 although messages failed in steps with on_error=skip (init/finish errors still fail)."
    ).tag(config=True)
    dead_letter = OutputFile(
        "", help="Write every failed message to this JSON-lines file, to inspect it or --replay it."
    ).tag(config=True)
    shutdown_timeout = Seconds(
        10.0, min=0.0, help="Seconds a run stopped by a signal may take to drain before busy threads are left behind."
    ).tag(config=True)
    keep_freed_memory = Bool(
        False, help="Tune glibc malloc so that freed large buffers are reused instead of page-faulted afresh "
        "(threads mode). It changes malloc for the whole process, so it is off for the Python API and on "
        "for pipeline-run and pipeline-bench."
    ).tag(config=True)
    heartbeat_interval = Seconds(
        1.0, min=0.01, help="Seconds between two heartbeats of the run and its remote workers (pipeline-worker); "
        "how often the run looks at its worker processes (nb_process)."
    ).tag(config=True)
    heartbeat_liveness = Int(
        5, min=1, max=MAX_HEARTBEAT_LIVENESS, help="Heartbeats missed before a remote worker is taken for dead and "
        "its messages are redelivered (and before pipeline-worker takes its run for gone and leaves); beats a worker "
        "process may stay stopped (SIGSTOP) before it is killed. A long run(), even in a C call holding the GIL, is "
        f"no death. At most {MAX_HEARTBEAT_LIVENESS}: for a longer silence, raise heartbeat_interval."
    ).tag(config=True)
    max_redeliveries = Int(
        2, min=1, help="A message that was running in this many worker processes when they died fails (to "
        "on_error and the dead-letter file) instead of being delivered again."
    ).tag(config=True)
    max_worker_restarts = Int(
        3, min=0, help="Worker processes of a step replaced when they die; past that the step goes on with fewer."
    ).tag(config=True)
    listen = ListenAddress(
        "", help="Let remote workers join the run's steps through this address, tcp://HOST:PORT, e.g. "
        "tcp://0.0.0.0:5570 or tcp://[::]:5570 (pipeline-worker; docs/cluster.md). Needs server_key and "
        "authorized_keys: every worker authenticates."
    ).tag(config=True)
    server_key = Unicode(
        "", help="The run's secret key file (NAME.key_secret from pipeline-keys) that remote workers check "
        "with --server-key."
    ).tag(config=True)
    authorized_keys = Unicode(
        "", help="A directory of the public key files (NAME.key) of the remote workers the run lets in."
    ).tag(config=True)
    worker_timeout = Seconds(
        60.0, min=0.0, help="Seconds a step without workers (nb_thread 0, or every worker lost) waits for a "
        "remote worker to join before the run fails."
    ).tag(config=True)
    fuse = Bool(
        True, help="Run consecutive steps that have the same worker processes (nb_process, nb_thread), one sending "
        "to the other alone, fused: each message goes through them in turn in one worker process instead of "
        "crossing to another process at each step. Each step keeps its counts, errors and dead letters."
    ).tag(config=True)
    fork_workers = Bool(
        True, help="Start worker processes (nb_process) from a copy of the run's process made as the run starts: "
        "each is ready in milliseconds, with the modules the run imported. False: from a fresh interpreter that "
        "imports the framework first (about 0.15 s), for a process holding what a fork must not copy, such as an "
        "initialised GPU."
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
    graph_interval = Seconds(
        2.0, min=0.05, help="Seconds between two sends of the graph, for a GUI that connects during the run."
    ).tag(config=True)
    progress = Bool(
        True, help="Show progress on stderr: a live table on a terminal, else a log line every progress_interval s."
    ).tag(config=True)
    progress_interval = Seconds(
        5.0, min=0.05, help="Seconds between two progress log lines when stderr is not a terminal (or TERM=dumb)."
    ).tag(config=True)

    def __init__(self, pipeline_config: PipelineConfig, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.pipeline_config = pipeline_config
        self.server_keys = remote_keys(pipeline_config, self.listen, self.mode, self.server_key, self.authorized_keys)
        self._runner: Runner | None = None
        self._running = threading.Lock()  # held by a run: one at a time (two overwrote each other's runner)
        self._interrupts = 0
        self._first_signal: int | None = None  # kept for the run it stops, if it came before that run's runner
        self._armed = False  # a signal before the next run starts stops it (expect_signals)
        self.failure_summary: list[str] = []  # the last run's first failure, failures by type, dead letters

    @property
    def steps(self) -> PipelineConfig:
        """The validated config: the former name of ``pipeline_config``, kept for compatibility."""
        return self.pipeline_config

    @classmethod
    def from_config(cls, source: str | Path | Mapping[str, Any], overrides: Config | Mapping | None = None,
                    replay: str | None = None, name: str = "", *,
                    overrides_source: str = OVERRIDES_ARGUMENT) -> Pipeline:
        """Load and validate ``source`` (a JSON file's path or a dict); ``overrides`` win over its values.

        A str of JSON text is no path: it is refused in one line (``json.loads`` it to give a dict).

        ``name`` names the run in the monitor (default: the file's stem; for a dict, its first and last steps).

        With ``replay``, the producer is replaced by the messages of that dead-letter file, each sent
        again to the step where it failed.

        ``overrides_source`` names the overrides in errors: ``overrides: Counter.count: ...``, or with
        ``"command line"`` (pipeline-run's) ``command line: --Counter.count: ...``.
        """
        pipeline_config = load_config(source, overrides, settings=[cls], name=name, overrides_source=overrides_source)
        if replay is not None:
            if not replay:  # as the command line's --replay= says (it was "': cannot read the dead-letter file")
                raise ConfigError("Pipeline.from_config", "replay", "missing: the dead-letter file to replay")
            pipeline_config = replay_config(pipeline_config, replay)
        pipeline = cls(pipeline_config, config=pipeline_config.config)
        check_written_files(pipeline_config, pipeline.dead_letter,
                            pipeline_config.setting_source("Pipeline", "dead_letter"), replay_path(pipeline_config))
        return pipeline

    def options(self) -> RunOptions:
        """The failure and shutdown settings of a run."""
        return settings_from(RunOptions, self, server_keys=self.server_keys,
                             dead_letter_setting=self.pipeline_config.setting_source("Pipeline", "dead_letter"),
                             replayed=replay_path(self.pipeline_config))

    def monitor_settings(self) -> MonitorSettings:
        """What the monitor publishes and shows during a run."""
        # A monitor named in the config or on the command line is expected, even at the default address.
        named = {"gui_address", "gui_server_key", "gui_key"} & set(self.config.get("Pipeline") or {})
        return settings_from(MonitorSettings, self, monitor_named=bool(named))

    def run(self) -> RunReport:
        """Run to the end of the stream, watched by the monitor; return per-step counts and times. From any thread;
        a Pipeline runs once at a time (RuntimeError), another made of the same config runs beside it."""
        if not self._running.acquire(blocking=False):
            raise RuntimeError("this Pipeline is running already, in another thread: to run its config twice at once, "
                               "make a second one with Pipeline.from_config()")
        try:
            return self._run()
        finally:
            # A later run starts afresh: what came after this one's end stops none (a notebook's stop button pressed
            # late, a timer that fired after the end stopped the next run at once).
            self._interrupts, self._first_signal, self._armed = 0, None, False
            self._running.release()

    def expect_signals(self) -> None:
        """A signal that ``interrupt`` is given from now on stops the next run even if it comes before that run starts
        (a SignalGuard around ``run()`` arms it: a Ctrl+C between the two is not lost); otherwise a signal outside a
        run does nothing."""
        self._armed = True

    def _run(self) -> RunReport:
        runner: Runner | None = None
        report: RunReport | None = None
        replayed = replay_path(self.pipeline_config)
        if replayed is not None:  # before the run writes its dead letters, maybe to replace the replayed file
            preload(replayed, writes_over(replayed, self.options().dead_letter))
        claimed: list[str] = []
        refused = False
        try:
            runner = self._runner = self._new_runner()
            # Before any step runs (after the dead-letter file, whose refusal creates nothing): of runs started together
            # on one output, all but one are refused in one line.
            claimed = claim_outputs(self.pipeline_config)
            if self._first_signal is not None:  # it came while the run was being set up: it stops this run
                runner.stop(self._first_signal)
                if self._interrupts > 1:
                    runner.abort()
            with Monitor(self.pipeline_config, runner, self.monitor_settings()) as monitor:
                report = monitor.close(runner.run())
                return report
        except ConfigError:  # raised before any step ran (a listen address that cannot be bound, no room in TMPDIR)
            refused = True
            raise
        finally:
            if runner is not None:
                # What it still holds (its zygote), whatever stopped it before its run could give it back: a key
                # the monitor cannot read, or Ctrl+C landing between two of these lines.
                runner.discard()
                self.failure_summary = runner.policy.summary()
                # Lost in flight: messages not processed, and not recorded as not run either.
                settled = runner.policy.settle(report is None or report.unprocessed > runner.policy.not_run_count)
                if settled is not None:
                    self.failure_summary.append(settled)
            self._runner = None
            release_outputs(claimed, unmade=refused)  # a refused run leaves no output it created
            if replayed is not None:  # once its own dead letters took the file's place, if they do
                release(replayed)

    def _new_runner(self) -> Runner:
        """The runner of the configured mode."""
        if self.mode == "sequential":
            from pipeline.execution.sequential import SequentialRunner

            return SequentialRunner(self.pipeline_config, self.options())
        from pipeline.engine import ThreadedRunner

        return ThreadedRunner(self.pipeline_config, self.options())

    def interrupt(self, signal: int) -> None:
        """A signal arrived (from any thread): the first stops the producer and drains what is in
        flight; the second stops at once, leaving busy threads behind. Outside a run it does nothing, unless
        ``expect_signals`` armed it for the next run. A ValueError for a number that is no signal: the run's exit
        status is 128 + that number."""
        if not isinstance(signal, int) or signal not in _SIGNAL_NUMBERS:
            raise ValueError(f"interrupt({signal!r}): expected the number of a signal, such as signal.SIGINT (2)")
        if not self._running.locked() and not self._armed:
            return
        self._interrupts += 1
        if self._first_signal is None:
            self._first_signal = signal
        runner = self._runner
        if runner is None:
            return  # run() stops its runner as soon as it has one
        if self._interrupts == 1:
            runner.stop(signal)
        else:
            runner.abort()

    def report_now(self) -> RunReport | None:
        """The report of the run as it stands, from another thread: a running run's (its busy workers named, its
        messages in flight not taken for lost; ``report.given_up`` makes it that of a run given up on); None outside
        a run."""
        runner = self._runner
        return runner.report_now() if runner is not None else None

    def busy(self) -> list[str]:
        """The steps and workers inside their code now (to name them if the run must be abandoned)."""
        runner = self._runner
        return runner.busy() if runner is not None else []
