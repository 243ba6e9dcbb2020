"""Exceptions that the framework raises to its users."""

from pipeline.console.humanize import cut_short, shorten


class PipelineError(Exception):
    """Base class of every error the framework raises on purpose."""


#: The source that ConfigErrors about the command line name.
COMMAND_LINE = "command line"


def printable(text: str, keep: str = "") -> str:
    """``text`` with each character that is not printable (a terminal escape, a line break) and not in ``keep``
    written as repr writes it (``\\x1b``, ``\\n``): a file name or a config key reaches the terminal as text, never
    as a command to it."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() or char in keep else char.encode("unicode_escape").decode("ascii")
                   for char in text)


def option_key(source: str, key: str) -> str:
    """``key`` as the user wrote it in ``source``: ``--key`` on the command line, ``key`` elsewhere."""
    return f"--{key}" if source == COMMAND_LINE else key


#: The longest problem a ConfigError's line shows whole: the names it quotes are cut already (cut_short); this bounds
#: whatever else a problem may carry from elsewhere (an exception's message, a list of choices).
MAX_PROBLEM_SHOWN = 1000
#: The longest file name a ConfigError's line shows whole: a path is what finds the file again, so it is cut later
#: than a name (a text of 100,000 characters given as a config file's path is some other text).
MAX_PATH_SHOWN = 1000


class ConfigError(PipelineError):
    """A configuration that cannot run: the message names the file, the key and what was expected, in one short line
    of printable text. Its parts may come from a file name, a config key or a command line, so each is cut in its
    middle: the file past MAX_PATH_SHOWN characters, the key past humanize.MAX_QUOTED_CHARS, the problem past
    MAX_PROBLEM_SHOWN (a 100,000-character key made a line of 100,000)."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        # Made printable first: a cut part stays cut, where an escape (\x1b) is up to 10 characters for one.
        where = shorten(printable(source), MAX_PATH_SHOWN, " ") + (f": {cut_short(printable(key))}" if key else "")
        super().__init__(f"{where}: {shorten(printable(problem), MAX_PROBLEM_SHOWN, ' ')}")


class LimitError(PipelineError):
    """A limit of the machine (the hard limit of open files) below what a run needs, found before anything of it
    started: the message names the limit, what the run needs, and how to raise it."""


class RoutingError(PipelineError):
    """A step sent a message to a step that is not one of its next steps."""


class StepFailed(PipelineError):
    """A step that could not start or go on: its init() returned False, or a send from one of its threads
    came when none of its code was running."""


class ShardUnknown(PipelineError):
    """A producer in shards read ``self.shard`` or ``self.n_shards`` outside run(), where no shard is running."""


class WorkerDied(PipelineError):
    """A message was running in a worker process that died, and in as many as max_redeliveries."""
