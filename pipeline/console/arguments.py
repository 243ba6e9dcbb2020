"""argparse for the commands that use it, with an error in one line: ``pipeline-bench: error: ...``, exit status 2."""

from __future__ import annotations

import argparse
import sys
from typing import NoReturn

#: The exit status of a command line that cannot run (DESIGN.md §5).
USAGE = 2


class ArgumentParser(argparse.ArgumentParser):
    """An argparse parser whose error is one line on stderr, without the usage that argparse prints before it
    (``--help`` shows that)."""

    def error(self, message: str) -> NoReturn:
        """Say what is wrong with the command line in one line, then exit with USAGE."""
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(USAGE)
