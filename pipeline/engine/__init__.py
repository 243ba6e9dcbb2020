"""The threaded ZeroMQ engine."""

from .runner import ThreadedRunner

__all__ = ["ThreadedRunner"]
