"""The threaded ZeroMQ engine."""

from pipeline.engine.runner import ThreadedRunner

__all__ = ["ThreadedRunner"]
