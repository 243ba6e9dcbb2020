"""argparse for the commands that use it, with an error in one short line: ``pipeline-bench: error: ...``, exit
status 2."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

from pipeline.console.humanize import shorten
from pipeline.errors import MAX_PROBLEM_SHOWN, printable

#: The exit status of a command line that cannot run (DESIGN.md §5).
USAGE = 2


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose error is one line on stderr, without the usage that argparse prints before it
    (``--help`` shows that)."""

    def error(self, message: str) -> NoReturn:
        """Say what is wrong with the command line in one short line, then exit with USAGE: argparse quotes an argument
        whole (an unknown option of 100,000 characters was a line of 100,000), so the message is cut in its middle."""
        print(f"{self.prog}: error: {shorten(printable(message), MAX_PROBLEM_SHOWN, ' ')}", file=sys.stderr)
        sys.exit(USAGE)
