"""The ``pipeline-run`` command: run a pipeline from its JSON config, with command-line overrides."""

from __future__ import annotations

import logging
import os
import select
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import suppress
from typing import Any, ClassVar, NoReturn

from traitlets import Unicode
from traitlets.config import Application, Config, Configurable, boolean_flag

from pipeline.cli.application import COMMAND_LINE, StrictApplication, named_levels
from pipeline.cli.launch import INTERRUPTED, exit_on_signals
from pipeline.cli.signals import SignalGuard
from pipeline.config.loader import child_classes, load_config
from pipeline.console import lent_signals
from pipeline.console.end_of_output import OUTPUT_EXIT_SECONDS, console_script, flush_output
from pipeline.console.humanize import counted
from pipeline.console.log_lines import terminal_text
from pipeline.console.stderr import shared as shared_stderr
from pipeline.engine.control import EngineThread
from pipeline.engine.limits import out_of_threads, out_of_threads_line
from pipeline.errors import ConfigError, LimitError
from pipeline.monitor import GRAPH_FORMATS, render_graph
from pipeline.pipeline import Pipeline

#: Seconds the command waits at its end for stderr to take its last lines (the report): past that
#: nobody reads it, and the process exits without them.
STDERR_EXIT_SECONDS = 2.0

#: Seconds the interpreter's exit may wait for what a step left running (its threads, the helper processes its
#: atexit hooks join) before the command ends anyway, with the report's status: a thread pool's idle threads end at
#: once, a thread that waits for ever never does.
EXIT_GRACE_SECONDS = 2.0
#: Threads left running that the last line names (the rest are counted).
SHOWN_THREADS = 3

#: Help for traitlets' logging_config, in place of its forty lines repeated for each application class.
_LOGGING_CONFIG_HELP = ("A logging.config dictionary merged over the default stderr handler, e.g. to add a log "
                        "file (see the logging_config option of traitlets' Application).")


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
    # None when not given: given empty (--replay=$UNSET in a script) is an error, not a run of the whole pipeline.
    replay = Unicode(
        None, allow_none=True,
        help="A dead-letter file (--Pipeline.dead_letter) whose messages are sent again to the steps that failed."
    ).tag(config=True)
    graph = Unicode(
        None, allow_none=True,
        help=f"Print the pipeline's graph in this format ({' or '.join(GRAPH_FORMATS)}) and exit without running it."
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
    #: The process exits after the run (launch_instance): signals that come once the run returned are ignored.
    process_ends = False

    package_loggers = ("pipeline",)
    other_classes_later = True  # the pipeline's and its steps' classes: the config loader checks them

    def get_default_logging_config(self) -> dict[str, Any]:
        """The framework's ``pipeline.*`` loggers, and progress lines at INFO whatever the log level;
        all through the stderr writer, so that a stderr nobody reads never blocks a step's thread."""
        config = super().get_default_logging_config()
        config["handlers"]["console"]["stream"] = shared_stderr()
        # Progress lines (stderr not a terminal) show at the default log level; --no-progress turns them off.
        config["handlers"]["progress"] = {**config["handlers"]["console"], "level": "INFO"}
        config["loggers"]["pipeline.progress"] = {"level": "INFO", "handlers": ["progress"], "propagate": False}
        return config

    def initialize(self, argv: Sequence[str] | None = None) -> None:
        """Read the command line; raise a ConfigError for any option or value that cannot work."""
        self.parse_strictly(argv)
        if not self.config_file:
            raise ConfigError(COMMAND_LINE, "--config", "missing: the pipeline's JSON config file (--config=FILE)")
        if self.replay == "":
            raise ConfigError(COMMAND_LINE, "--replay", "missing: the dead-letter file to replay (--replay=FILE)")
        if self.graph is not None and self.graph not in GRAPH_FORMATS:
            raise ConfigError(COMMAND_LINE, "--graph",
                              f"unknown format {self.graph!r} (expected one of: {', '.join(GRAPH_FORMATS)})")

    def argument_hint(self, argument: str) -> str:
        """A config file given without ``--config=``: say how to give it."""
        return f"; did you mean --config={argument}?" if argument.endswith(".json") or os.path.isfile(argument) else ""

    def emit_help(self, classes: bool = False) -> Iterator[str]:
        """traitlets' help; with --help-all, the options of the steps that --config names, then the
        pipeline's, then this command's own, each once."""
        if not classes:
            yield from super().emit_help(classes)
            return
        path = config_argument(self.argv)
        yield from self.emit_description()
        if path is not None:
            steps = [text for cls in step_classes(path) if cls.class_traits(config=True)
                     for text in (cls.class_get_help(), "")]
            yield from _section(f"Options of the steps of {path}", steps)
        yield from _section("Options of the run", [Pipeline.class_get_help(), ""])
        yield from _section("Options of the command", [*self.emit_flag_help(), *self.emit_alias_help(),
                                                       *self.own_trait_help(), ""])
        yield from self.emit_examples()
        if path is None:
            yield "The options of a pipeline's steps are listed when its config is given too:"
            yield f"    {self.name} --help-all --config=FILE"

    def own_trait_help(self) -> Iterator[str]:
        """The logging and config options of traitlets' Application, once (every subclass repeats them)."""
        for name, trait in sorted(Application.class_own_traits(config=True).items()):
            helptext = _LOGGING_CONFIG_HELP if name == "logging_config" else None
            yield "\n".join(named_levels(Application.class_get_trait_help(trait, self, helptext=helptext).splitlines()))

    def step_overrides(self) -> Config:
        """The command line's settings for the pipeline and its steps: all but this application's own."""
        own = self.option_classes()
        return Config({section: values for section, values in self.cli_config.items() if section not in own})

    def start_show_config(self) -> None:
        """``--Application.show_config``: traitlets' display of the settings, once the config and the command line are
        checked as a run checks them (an unknown class, a bad value, a missing file exited 0): the config file's with
        the command line's over them, read as the run reads them (it showed the command line's alone, as strings)."""
        pipeline = Pipeline.from_config(self.config_file, self.step_overrides(), replay=self.replay,
                                        overrides_source=COMMAND_LINE)
        shown = Config(self.config)
        shown.merge(pipeline.config)
        self.config = shown
        super().start_show_config()

    def start(self) -> None:
        """Run the pipeline, print its summary to stderr and keep its exit status (or print its graph)."""
        pipeline = Pipeline.from_config(self.config_file, self.step_overrides(), replay=self.replay,
                                        overrides_source=COMMAND_LINE)
        if "keep_freed_memory" not in pipeline.config.get("Pipeline", {}):
            pipeline.keep_freed_memory = True  # this command owns its process (the Python API's default is off)
        if self.graph is not None:
            from pipeline.engine.fusion import fused_after, fused_groups  # as Pipeline.run imports the engine

            groups = fused_groups(pipeline.pipeline_config, pipeline.fuse and not pipeline.listen)
            print(render_graph(pipeline.pipeline_config, self.graph, fused_after(groups)))
            return
        with SignalGuard(pipeline, pipeline.shutdown_timeout, process_ends=self.process_ends):
            report = pipeline.run()
        # stderr: a consumer such as Printer owns stdout.
        shared_stderr().write(terminal_text("\n".join([*pipeline.failure_summary, report.table()])) + "\n")
        self.exit_status = report.exit_status

    def execute(self, argv: Sequence[str] | None = None) -> int:
        """Initialize from ``argv`` and run; return the exit status (--help exits with SystemExit, as in traitlets)."""
        try:
            self.initialize(argv)
            self.start()
        except ConfigError as err:
            self.log.debug("configuration error", exc_info=True)
            shared_stderr().write(f"{self.name}: error: {err}\n")
            return 2
        except LimitError as err:  # as a run that met the limit as it went (configuration.md)
            shared_stderr().write(f"{self.name}: error: {err}\n")
            return 1
        except RuntimeError as err:  # a thread outside the engine's (the monitor's, the terminal table's) not started
            if not out_of_threads(err):
                raise
            shared_stderr().write(f"{self.name}: error: {out_of_threads_line()}\n")
            return 1
        except KeyboardInterrupt:
            shared_stderr().write(f"{self.name}: interrupted\n")
            return INTERRUPTED
        return self.exit_status

    @classmethod
    def launch_instance(cls, argv: Sequence[str] | None = None, **kwargs: Any) -> NoReturn:
        """Run the command line ``argv`` (default: ``sys.argv``) and exit with its status."""
        app = cls.instance(**kwargs)
        app.process_ends = True
        status = app.execute(argv)
        # The report is out: a signal now (ignored since the run returned) ends the process at once with its status,
        # were it waiting on a stdout or stderr that nobody reads.
        exit_on_signals(status)
        drained = shared_stderr().drain(STDERR_EXIT_SECONDS)  # a bounded wait, in which a signal's handler runs
        # Before any flush of stdout: a thread left behind blocked in a write that nobody reads holds stdout's lock,
        # and the main thread waiting for that lock runs no signal handler; this thread ends the process all the same.
        bounded = _bound_exit(cls.name, status)
        with suppress(OSError):
            sys.stdout.flush()
        if not drained or (not bounded and left_behind()):
            # stderr is blocked (the interpreter's own exit would wait for it, or abort), or no thread bounds the exit's
            # wait for the threads left running: leave now, stdout written.
            os._exit(status)
        # The interpreter's exit waits for the threads a step left running and runs the atexit hooks (a thread pool's,
        # multiprocessing's join of the helpers it started, the step's own): what ends within EXIT_GRACE_SECONDS ends
        # as it would, what does not is left. pipeline.cli.launch ignores signals once those hooks have run.
        sys.exit(status)


def _bound_exit(command: str, status: int) -> bool:
    """Start the thread that ends the process with ``status`` at a signal, or EXIT_GRACE_SECONDS from now; whether it
    started (not at the user's limit of threads)."""
    read_fd, write_fd = os.pipe()
    try:
        threading.Thread(target=_exit_anyway, args=(command, status, read_fd), name="exit-grace", daemon=True).start()
    except RuntimeError as err:
        os.close(read_fd)
        os.close(write_fd)
        if not out_of_threads(err):
            raise
        return False
    os.set_blocking(write_fd, False)
    # Written by the C handler of a signal whatever the main thread waits for (exit_on_signals set the handlers).
    lent_signals.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    return True


def _exit_anyway(command: str, status: int, wakeup_fd: int) -> None:
    """End the process with ``status`` at a signal (its byte on ``wakeup_fd``), or if the interpreter's exit has not
    ended it within EXIT_GRACE_SECONDS, saying what a step left running: a thread that never ends (the exit would wait
    for ever), a helper process not joined, a thread that holds stdout in a write that nobody reads."""
    deadline = time.monotonic() + EXIT_GRACE_SECONDS
    while select.select([wakeup_fd], [], [], max(0.0, deadline - time.monotonic()))[0]:
        if set(os.read(wakeup_fd, 64)) & set(lent_signals.HANDLED):  # not a signal a step set a handler of its own for
            os._exit(status)
    left = left_behind()
    named = ", ".join(left[:SHOWN_THREADS]) + (f" and {len(left) - SHOWN_THREADS} more"
                                               if len(left) > SHOWN_THREADS else "")
    if left:
        what = f"{counted(len(left), 'thread')} a step left running ({named})"
    elif any(isinstance(thread, EngineThread) for thread in threading.enumerate()):
        what = "the workers left behind, still busy (named above)"  # one may hold stdout, in a write nobody reads
    else:
        what = "what a step left running (a helper process, or an atexit hook)"
    shared_stderr().write_nowait(f"{command}: exiting without waiting for {what}\n")
    shared_stderr().drain(STDERR_EXIT_SECONDS)
    flush_output(OUTPUT_EXIT_SECONDS)
    os._exit(status)


def left_behind() -> list[str]:
    """The names of the threads, but daemons and the engine's own, still running beside the main one: the interpreter's
    exit would wait for them, for ever if they never end (a step's code started them and did not join them)."""
    return [thread.name for thread in threading.enumerate()
            if thread is not threading.main_thread() and not thread.daemon and not isinstance(thread, EngineThread)]


def _section(title: str, lines: Sequence[str]) -> Iterator[str]:
    """A titled part of --help-all."""
    yield title
    yield "=" * len(title)
    yield from lines


def config_argument(argv: Sequence[str]) -> str | None:
    """The file that the last ``--config=FILE``, ``--config FILE`` or their full name (``--PipelineRun.config_file``)
    names in ``argv``, read before traitlets parses it: the one the run would read."""
    full = "PipelineRun.config_file"
    forms = {f"--{full}", *(f"--{alias}" for alias, target in PipelineRun.aliases.items() if target == full)}
    found = None
    for i, arg in enumerate(argv):
        name, equals, value = arg.partition("=")
        if name in forms and equals:
            found = value
        elif name in forms and i + 1 < len(argv):
            found = argv[i + 1]
    return found


def step_classes(path: str) -> list[type[Configurable]]:
    """The classes of the steps of the config at ``path`` and of their children, in config order, each once."""
    steps = load_config(path, settings=[Pipeline], check=False).steps.values()  # help needs no input file
    return list(dict.fromkeys(cls for step in steps for cls in (step.cls, *child_classes(step.cls))))


@console_script
def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``pipeline-run`` console script."""
    # As `python -m` does: configs may name step modules that live where the command runs.
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    PipelineRun.launch_instance(argv)
