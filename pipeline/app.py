"""The ``pipeline-run`` command: run a pipeline from its JSON config, with command-line overrides."""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, NoReturn

from traitlets import Enum, Unicode
from traitlets.config import Config, Configurable, boolean_flag

from .cli import COMMAND_LINE, StrictApplication
from .config import load_config
from .errors import ConfigError
from .monitor import GRAPH_FORMATS, render_graph
from .pipeline import Pipeline
from .signals import SignalGuard


class PipelineRun(StrictApplication):
    """Run a pipeline described by a JSON config file."""

    name = "pipeline-run"
    description = (
        "Run a pipeline described by a JSON config file. Any option of a step class can be set with "
        "--ClassName.trait=value; --help-all --config=FILE lists the options of that config's steps."
    )
    examples = """
pipeline-run --config=configs/chain.json
pipeline-run --config=configs/chain.json --Counter.count=50 --Pipeline.mode=sequential
pipeline-run --help-all --config=configs/chain.json
pipeline-run --config=configs/routing.json --graph=mermaid
"""

    config_file = Unicode("", help="The pipeline's JSON config file (required).").tag(config=True)
    replay = Unicode(
        "", help="A dead-letter file (--Pipeline.dead_letter) whose messages are sent again to the steps that failed."
    ).tag(config=True)
    graph = Enum(
        GRAPH_FORMATS, default_value=None, allow_none=True,
        help="Print the pipeline's graph in this format (mermaid or dot) and exit without running it.",
    ).tag(config=True)

    classes: ClassVar[list[type[Configurable]]] = [Pipeline]
    aliases: ClassVar[dict[str, str]] = {
        "config": "PipelineRun.config_file",
        "replay": "PipelineRun.replay",
        "graph": "PipelineRun.graph",
        "log-level": "Application.log_level",
    }
    flags: ClassVar[dict[str, tuple[dict[str, Any], str]]] = {
        "debug": (
            {"Application": {"log_level": logging.DEBUG}},
            "Log at DEBUG level, and show the traceback of a configuration error.",
        ),
        **boolean_flag("progress", "Pipeline.progress", "Show progress on stderr while running (the default).",
                       "Show no progress while running (the summary table is still printed)."),
    }

    #: The exit status of the last run (DESIGN.md §5).
    exit_status = 0

    package_loggers = ("pipeline",)

    def get_default_logging_config(self) -> dict[str, Any]:
        """The framework's ``pipeline.*`` loggers, and progress lines at INFO whatever the log level."""
        config = super().get_default_logging_config()
        # Progress lines (stderr not a terminal) show at the default log level; --no-progress turns them off.
        config["handlers"]["progress"] = {**config["handlers"]["console"], "level": "INFO"}
        config["loggers"]["pipeline.progress"] = {"level": "INFO", "handlers": ["progress"], "propagate": False}
        return config

    def initialize(self, argv: Sequence[str] | None = None) -> None:
        """Read the command line; raise a ConfigError for any option or value that cannot work."""
        self.parse_strictly(argv)
        if not self.config_file:
            raise ConfigError(COMMAND_LINE, "--config", "missing: the pipeline's JSON config file (--config=FILE)")

    def emit_help(self, classes: bool = False) -> Iterator[str]:
        """traitlets' help; with --help-all, also the options of the steps that --config names."""
        path = config_argument(self.argv)
        if classes and path is not None:
            self.classes = [*self.classes, *step_classes(path)]
        yield from super().emit_help(classes)
        if classes and path is None:
            yield "The options of a pipeline's steps are listed when its config is given too:"
            yield f"    {self.name} --help-all --config=FILE"

    def step_overrides(self) -> Config:
        """The command line's settings for the pipeline and its steps: all but this application's own."""
        own = {cls.__name__ for cls in type(self).__mro__}
        return Config({section: values for section, values in self.cli_config.items() if section not in own})

    def start(self) -> None:
        """Run the pipeline, print its summary to stderr and keep its exit status (or print its graph)."""
        pipeline = Pipeline.from_config(self.config_file, self.step_overrides(), replay=self.replay or None)
        if "keep_freed_memory" not in pipeline.config.get("Pipeline", {}):
            pipeline.keep_freed_memory = True  # this command owns its process (the Python API's default is off)
        if self.graph:
            print(render_graph(pipeline.pipeline_config, self.graph))
            return
        with SignalGuard(pipeline, pipeline.shutdown_timeout):
            report = pipeline.run()
        # stderr: a consumer such as Printer owns stdout.
        print(report.table(), file=sys.stderr)
        self.exit_status = report.exit_status

    def execute(self, argv: Sequence[str] | None = None) -> int:
        """Initialize from ``argv`` and run; return the exit status (--help exits with SystemExit, as in traitlets)."""
        try:
            self.initialize(argv)
            self.start()
        except ConfigError as err:
            self.log.debug("configuration error", exc_info=True)
            print(f"{self.name}: error: {err}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            print(f"{self.name}: interrupted", file=sys.stderr)
            return 128 + signal.SIGINT
        return self.exit_status

    @classmethod
    def launch_instance(cls, argv: Sequence[str] | None = None, **kwargs: Any) -> NoReturn:
        """Run the command line ``argv`` (default: ``sys.argv``) and exit with its status."""
        sys.exit(cls.instance(**kwargs).execute(argv))


def config_argument(argv: Sequence[str]) -> str | None:
    """The file that ``--config=FILE`` or ``--config FILE`` names in ``argv``, read before traitlets parses it."""
    found = None
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            found = arg.removeprefix("--config=")
        elif arg == "--config" and i + 1 < len(argv):
            found = argv[i + 1]
    return found


def step_classes(path: str) -> list[type[Configurable]]:
    """The classes of the steps of the config at ``path``, in config order, each once."""
    steps = load_config(path, settings=[Pipeline]).steps.values()
    return list(dict.fromkeys(step.cls for step in steps))


def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``pipeline-run`` console script."""
    # As `python -m` does: configs may name step modules that live where the command runs.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    PipelineRun.launch_instance(argv)
