"""The command line of every Python process the bench starts: this interpreter, blind to the current directory."""

from __future__ import annotations

import sys

#: ``-P`` (Python 3.11+): the child's sys.path does not start with the current directory, whose ``pipeline.py`` (a
#: user's script) shadowed the package: ``python -m pipeline.cli.worker`` died of "'pipeline' is not a package".
SAFE_PATH = ("-P",) if sys.version_info >= (3, 11) else ()


def python(*args: str) -> list[str]:
    """``python ARGS`` for subprocess, run with this interpreter and without the current directory on sys.path."""
    return [sys.executable, *SAFE_PATH, *args]
