"""The ``pipeline-worker`` command: join a step of a run on another host, authenticated with CURVE keys.

    pipeline-worker --connect=tcp://head:5570 --server-key=keys/server.key \\
        --key=keys/workers/node7.key_secret --step=HILLAS [--threads=N | --processes=N]

It connects out (only the run's host needs an open port), proves its key, receives the step's
module, class and configuration from the run (the code must be installed here), and starts its
worker processes, which serve the step's messages with the same worker loop as a local worker
process, until the run's end of stream; then it exits 0. This process keeps them (heartbeats with
the run, engine.remote_agent). See docs/cluster.md.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, ClassVar, NoReturn

from traitlets import Int, Unicode, default

from pipeline.auth.keys import load_key_pair, load_public_key
from pipeline.cli.application import COMMAND_LINE, DEBUG_FLAG, StrictApplication
from pipeline.cli.launch import launch
from pipeline.config.traits import StepName, ValueProblem, check_tcp_address, tcp_host, unresolved
from pipeline.console.end_of_output import console_script
from pipeline.console.humanize import quoted
from pipeline.engine.limits import FILES_PER_WORKER_PROCESS, files_short_of
from pipeline.engine.remote_agent import Login, serve_remote
from pipeline.engine.worker_process import line_by_line
from pipeline.errors import ConfigError


class PipelineWorker(StrictApplication):
    """Serve a step of a pipeline run on another host."""

    name = "pipeline-worker"
    description = (
        "Join a step of a pipeline run that listens for remote workers (Pipeline.listen), proving this "
        "host's key (--key) and checking the run's (--server-key). The step's module must be importable here."
    )
    examples = """
pipeline-worker --connect=tcp://head:5570 --server-key=keys/server.key --key=keys/workers/node7.key_secret --step=HILLAS
pipeline-worker --connect=tcp://head:5570 --server-key=keys/server.key --key=keys/node7.key_secret --step=HILLAS \\
    --processes=8
"""

    connect = Unicode("", help="The run's listen address with the run's host, tcp://HOST:PORT, e.g. tcp://head:5570 "
                      "or tcp://[2001:db8::1]:5570 (required).").tag(config=True)
    server_key = Unicode("", help="The run's public key file (server.key) (required).").tag(config=True)
    key = Unicode("", help="This worker's secret key file (NAME.key_secret) (required).").tag(config=True)
    step = Unicode("", help="The name of the step to serve (required).").tag(config=True)
    threads = Int(1, min=1, max=256, help="Worker threads in each worker process.").tag(config=True)
    processes = Int(1, min=1, max=1024, help="Worker processes on this host, each joining the step.").tag(
        config=True)

    aliases: ClassVar[dict[str, str]] = {
        "connect": "PipelineWorker.connect",
        "server-key": "PipelineWorker.server_key",
        "key": "PipelineWorker.key",
        "step": "PipelineWorker.step",
        "threads": "PipelineWorker.threads",
        "processes": "PipelineWorker.processes",
        "log-level": "Application.log_level",
    }
    flags: ClassVar[dict[str, tuple[dict[str, Any], str]]] = {**DEBUG_FLAG}
    #: The engine's log lines (the keeper's, the zygote's) go to stderr as this command's: they came bare, through
    #: logging's last resort, where each other line of pipeline-worker starts with its name.
    package_loggers = ("pipeline",)
    # --Pipeline.heartbeat_interval or --Counter.count here would look as if it applied.
    other_classes_note = "a worker takes the run's and its step's settings from the run: give them to pipeline-run"

    @default("log_format")
    def _log_format_default(self) -> str:
        return f"{self.name}: %(levelname)s %(name)s: %(message)s"

    def initialize(self, argv: Sequence[str] | None = None) -> None:
        """Read the command line; a ConfigError for a missing option or a key that cannot be read."""
        self.parse_strictly(argv)
        for option in ("connect", "server_key", "key", "step"):
            if not getattr(self, option):
                raise ConfigError(COMMAND_LINE, f"--{option.replace('_', '-')}", "missing required option")
        try:
            check_tcp_address(self.connect, listening=False)
        except ValueProblem as err:
            raise ConfigError(COMMAND_LINE, "--connect", str(err)) from None
        try:  # a name no step of a run has (a byte that is not UTF-8) crashed the greeting that carries it
            step = StepName().validate(self, self.step)
        except ValueProblem as err:
            raise ConfigError(COMMAND_LINE, "--step", str(err)) from None
        host = tcp_host(self.connect)
        why = unresolved(host)
        if why is not None:  # libzmq would try it for HELLO_TIMEOUT_SECONDS, then say no run answered
            raise ConfigError(COMMAND_LINE, "--connect", f"the run's host {quoted(host)} is not known ({why})")
        self.login = Login(step, self.threads, load_key_pair(self.key, "--key"),
                           load_public_key(self.server_key, "--server-key"), os.path.abspath(self.key),
                           os.path.abspath(self.server_key))

    def start(self) -> None:
        """Join the step with --processes worker processes and keep them until the run's end of stream."""
        line_by_line()
        # Far below, its first socket failed (a traceback), or libzmq only retried and it said that no run answered.
        short = files_short_of(FILES_PER_WORKER_PROCESS)
        if short is not None:
            print(f"{self.name}: error: {short}", file=sys.stderr, flush=True)
            self.exit_status = 1
            return
        self.exit_status = serve_remote(self.connect, self.login, self.processes)


@console_script
def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``pipeline-worker`` console script."""
    # As pipeline-run does: a step module may live where the command runs.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    PipelineWorker.launch_instance(argv)


if __name__ == "__main__":
    launch(__name__, "pipeline-worker")  # as the console script: a Ctrl+C as it starts or ends is one line

