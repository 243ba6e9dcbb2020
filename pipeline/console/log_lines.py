"""Log lines for people at a terminal: what a step, a file's name or a peer put in a line reaches it as text."""

from __future__ import annotations

import logging

from traitlets.config.application import LevelFormatter

from pipeline.errors import printable

#: The control characters a log line keeps: its traceback's line breaks and indents.
KEPT = "\n\t"


def terminal_text(text: str) -> str:
    """``text`` with each character that is neither printable, a line break nor a tab written as repr writes it
    (``\\x1b``): lines for people that quote an error's text, which quotes a step's data."""
    return printable(text, KEPT)


class EscapingFormatter(logging.Formatter):
    """A formatter whose lines have each character that is neither printable, a line break nor a tab written as repr
    writes it (``\\x1b``): an error's text, which quotes a step's data, can neither clear the screen nor set its
    title, nor rewrite a line (``\\r``)."""

    def format(self, record: logging.LogRecord) -> str:
        """The record's line, escaped."""
        return terminal_text(super().format(record))


class ConsoleFormatter(EscapingFormatter, LevelFormatter):
    """The commands' stderr formatter: traitlets' own (its ``highlevel`` prefix), escaped."""
