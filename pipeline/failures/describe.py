"""How a failure is told: an exception as one line, its kind and its traceback, wherever it was raised."""

from __future__ import annotations

import importlib
import traceback
from pathlib import Path


class RemoteError(Exception):
    """An exception raised in a worker process, carried as text: its one-line form and its traceback."""

    def __init__(self, line: str, traceback: str) -> None:
        super().__init__(line)
        self.remote_traceback = traceback


def failure_line(error: BaseException) -> str:
    """One line describing an exception: its type and message."""
    if isinstance(error, RemoteError):
        return str(error)
    return f"{type(error).__name__}: {error}"


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


def failure_place(error: BaseException) -> str:
    """`` (FILE, line N)``: where the import that raised ``error`` failed; "" when no such line is known.

    That is the deepest frame of the traceback outside the import machinery: the line of the step's
    module that raised (``RATE = 1/0``), or the import, maybe files further down, of a module that is
    missing. A SyntaxError's message names its file and line already; a step module that is not
    found at all has no such line.
    """
    if isinstance(error, SyntaxError):
        return ""
    # The first frame is the caller's, which tried the import.
    frames = [frame for frame in traceback.extract_tb(error.__traceback__)[1:] if not _machinery(frame.filename)]
    return f" ({_shown_path(frames[-1].filename)}, line {frames[-1].lineno})" if frames else ""


def _machinery(filename: str) -> bool:
    """Whether ``filename`` is Python's import machinery (frozen, or importlib's own files)."""
    return filename.startswith("<") or Path(filename).parent == Path(importlib.__file__).parent


def _shown_path(filename: str) -> str:
    """A file's path as the user would type it: relative to the working directory when it lies below it."""
    try:
        return str(Path(filename).relative_to(Path.cwd()))
    except ValueError:
        return filename
