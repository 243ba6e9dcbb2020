"""Exceptions that the framework raises to its users."""


class PipelineError(Exception):
    """Base class of every error the framework raises on purpose."""


#: The source that ConfigErrors about the command line name.
COMMAND_LINE = "command line"


class ConfigError(PipelineError):
    """A configuration that cannot run: the message names the file, the key and what was expected."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source = source
        self.key = key
        self.problem = problem
        where = f"{source}: {key}" if key else source
        super().__init__(f"{where}: {problem}")


class RoutingError(PipelineError):
    """A step sent a message to a step that is not one of its next steps."""


class StepFailed(PipelineError):
    """A step that could not start or go on: its init() returned False, or a send from one of its threads
    came when none of its code was running."""


class ShardUnknown(PipelineError):
    """A producer in shards read ``self.shard`` or ``self.n_shards`` outside run(), where no shard is running."""


class WorkerDied(PipelineError):
    """A message was running in a worker process that died, and in as many as max_redeliveries."""
