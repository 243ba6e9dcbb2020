"""The ``pipeline-keys`` command: ``pipeline-keys generate NAME --dir=DIR`` makes a CURVE key pair."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any, ClassVar, NoReturn

from traitlets import Unicode

from pipeline.auth.keys import check_key_name, generate_key_pair
from pipeline.cli.application import COMMAND_LINE, DEBUG_FLAG, StrictApplication
from pipeline.cli.launch import launch
from pipeline.console.end_of_output import console_script
from pipeline.errors import ConfigError

#: The commands, each with what it does.
COMMANDS = {"generate": "write DIR/NAME.key (public) and DIR/NAME.key_secret (secret, mode 0600)"}


class PipelineKeys(StrictApplication):
    """Make the CURVE key pairs that remote workers and the monitor authenticate with."""

    name = "pipeline-keys"
    description = (
        "pipeline-keys generate NAME --dir=DIR writes DIR/NAME.key (the public key, to give to the peers "
        "that must recognise NAME) and DIR/NAME.key_secret (the secret key, mode 0600, to keep), in "
        "pyzmq's certificate format. DIR is made if missing; an existing key is never overwritten."
    )
    examples = """
pipeline-keys generate server --dir=keys
pipeline-keys generate node7 --dir=keys/workers
"""

    dir = Unicode(".", help="The directory of the key files (made, mode 0700, if missing).").tag(config=True)

    aliases: ClassVar[dict[str, str]] = {"dir": "PipelineKeys.dir", "log-level": "Application.log_level"}
    flags: ClassVar[dict[str, tuple[dict[str, Any], str]]] = {**DEBUG_FLAG}

    def initialize(self, argv: Sequence[str] | None = None) -> None:
        """Read ``COMMAND NAME`` (the leading words) and the options; a ConfigError for anything else."""
        argv = list(sys.argv[1:] if argv is None else argv)
        count = next((i for i, arg in enumerate(argv) if arg.startswith("-")), len(argv))
        self.words = argv[:count]
        self.parse_strictly(argv[count:])
        if not self.words:
            raise ConfigError(COMMAND_LINE, "", "missing command: expected 'generate NAME --dir=DIR' (see --help)")
        command, *names = self.words
        if command not in COMMANDS:
            raise ConfigError(COMMAND_LINE, command, f"unknown command (expected one of: {', '.join(COMMANDS)})")
        if len(names) != 1:
            raise ConfigError(COMMAND_LINE, command, f"expected one key NAME, got {len(names)}")
        check_key_name(names[0])

    def start(self) -> None:
        """Write the key pair and say where."""
        public, secret = generate_key_pair(self.dir, self.words[1])
        print(f"{self.name}: wrote {public} (public) and {secret} (secret, mode 0600)")


@console_script
def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``pipeline-keys`` console script."""
    PipelineKeys.launch_instance(argv)


if __name__ == "__main__":
    launch(__name__, "pipeline-keys")  # as the console script: a Ctrl+C as it starts or ends is one line
