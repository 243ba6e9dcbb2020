"""The exit status a SystemExit gives the process, as the interpreter reads its code (the standard library alone: the
console scripts' entry point reads it before anything else is imported)."""

from __future__ import annotations


def status_of(exit_: SystemExit) -> int:
    """The exit status that ``exit_`` gives the process: 0 for no code, the code if it is a number, else 1 (a message,
    which the interpreter prints)."""
    if exit_.code is None:
        return 0
    return exit_.code if isinstance(exit_.code, int) else 1
