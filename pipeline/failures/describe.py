"""How a failure is told: an exception as one line, its kind and its traceback, wherever it was raised."""

from __future__ import annotations

import traceback

from pipeline.console.humanize import error_text, shorten, utf8_text

#: Characters of an error's line or traceback kept (its start and its end), wherever it was raised: a step's
#: ValueError("x" * 1_100_000) was carried whole into its log lines, its dead letter, the monitor's error and a
#: worker process's FAILED, and a remote peer's FAILED texts were kept at 4 MB each. 64 KiB still holds a
#: thousand-frame traceback.
MAX_ERROR_CHARS = 64 * 1024
#: Characters of an error a run's summary quotes (its first failure, each step's first error): for people, who have
#: the whole of it (to MAX_ERROR_CHARS) in the log line above and in the dead letters.
SUMMARY_ERROR_CHARS = 1000


def summary_error(line: str, limit: int = SUMMARY_ERROR_CHARS) -> str:
    """An error's line as a run's summary (or a monitor) quotes it: within ``limit`` characters, on one line (a
    message's own line breaks become spaces)."""
    return shorten(" ".join(line.splitlines()), limit, " ")


class RemoteError(Exception):
    """An exception raised in a worker process, carried as text: its one-line form and its traceback."""

    def __init__(self, line: str, traceback: str) -> None:
        super().__init__(line)
        self.remote_traceback = traceback


def failure_line(error: BaseException) -> str:
    """One line describing an exception: its type and message (to MAX_ERROR_CHARS), each lone surrogate written as
    repr writes it (utf8_text: a file's name that is not UTF-8 reads the same in every mode, and can be sent)."""
    if isinstance(error, RemoteError):
        return str(error)  # read to MAX_ERROR_CHARS (engine.wire.parse_failed)
    return shorten(utf8_text(f"{type(error).__name__}: {error_text(error)}"), MAX_ERROR_CHARS, " ")


def message_words(seq: int | None) -> str:
    """How a failure names its message: ``message 17``, its number at the step; one of no number (``seq`` None, in a
    step fused after another: what an init() or a finish() sent, which no input led to) says so."""
    return f"message {seq}" if seq is not None else "a message that an init() or a finish() sent"


def failure_of_run(line: str, fatal: bool) -> str:
    """A failed message's error as its step's first error: a ``fatal`` one failed the step, in its run()."""
    return f"run(): {line}" if fatal else line


def error_kind(error: BaseException) -> str:
    """The name of an exception's type (for a RemoteError, of the exception raised in the worker process)."""
    if isinstance(error, RemoteError):
        return str(error).split(":", 1)[0]
    return type(error).__name__


def traceback_text(error: BaseException) -> str:
    """The traceback of an exception, where it was raised (in a worker process for a RemoteError), to
    MAX_ERROR_CHARS, as failure_line writes a lone surrogate."""
    if isinstance(error, RemoteError):
        return error.remote_traceback  # read to MAX_ERROR_CHARS (engine.wire.parse_failed)
    return shorten(utf8_text("".join(traceback.format_exception(error))), MAX_ERROR_CHARS)
