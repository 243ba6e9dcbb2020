"""Exceptions that the framework raises to its users."""


class PipelineError(Exception):
    """Base class of every error the framework raises on purpose."""


#: The source that ConfigErrors about the command line name.
COMMAND_LINE = "command line"


def printable(text: str) -> str:
    """``text`` with each character that is not printable (a terminal escape, a line break) written as repr writes
    it (``\\x1b``, ``\\n``): a file name or a config key reaches the terminal as text, never as a command to it."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else char.encode("unicode_escape").decode("ascii") for char in text)


def option_key(source: str, key: str) -> str:
    """``key`` as the user wrote it in ``source``: ``--key`` on the command line, ``key`` elsewhere."""
    return f"--{key}" if source == COMMAND_LINE else key


class ConfigError(PipelineError):
    """A configuration that cannot run: the message names the file, the key and what was expected, in one line of
    printable text (its parts may come from a file name, a config key or a command line)."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(printable(f"{where}: {problem}"))


class RoutingError(PipelineError):
    """A step sent a message to a step that is not one of its next steps."""


class StepFailed(PipelineError):
    """A step that could not start or go on: its init() returned False, or a send from one of its threads
    came when none of its code was running."""


class ShardUnknown(PipelineError):
    """A producer in shards read ``self.shard`` or ``self.n_shards`` outside run(), where no shard is running."""


class WorkerDied(PipelineError):
    """A message was running in a worker process that died, and in as many as max_redeliveries."""
