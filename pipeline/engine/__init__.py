"""The threaded ZeroMQ engine."""

from typing import Any

__all__ = ["ThreadedRunner"]


def __getattr__(name: str) -> Any:
    # The runner imports every thread of the engine: a worker process, which needs a few of them,
    # does not pay for it.
    if name == "ThreadedRunner":
        from pipeline.engine.runner import ThreadedRunner

        return ThreadedRunner
    raise AttributeError(name)
