"""How a failure is told: an exception as one line, its kind and its traceback, wherever it was raised."""

from __future__ import annotations

import traceback

from pipeline.console.humanize import error_text


class RemoteError(Exception):
    """An exception raised in a worker process, carried as text: its one-line form and its traceback."""

    def __init__(self, line: str, traceback: str) -> None:
        super().__init__(line)
        self.remote_traceback = traceback


def failure_line(error: BaseException) -> str:
    """One line describing an exception: its type and message."""
    if isinstance(error, RemoteError):
        return str(error)
    return f"{type(error).__name__}: {error_text(error)}"


def failure_of_run(line: str, fatal: bool) -> str:
    """A failed message's error as its step's first error: a ``fatal`` one failed the step, in its run()."""
    return f"run(): {line}" if fatal else line


def error_kind(error: BaseException) -> str:
    """The name of an exception's type (for a RemoteError, of the exception raised in the worker process)."""
    if isinstance(error, RemoteError):
        return str(error).split(":", 1)[0]
    return type(error).__name__


def traceback_text(error: BaseException) -> str:
    """The traceback of an exception, where it was raised (in a worker process for a RemoteError)."""
    if isinstance(error, RemoteError):
        return error.remote_traceback
    return "".join(traceback.format_exception(error))
