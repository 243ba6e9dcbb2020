"""Steps and messages for the tests of what users see: logs that flood stderr, pickles that say when
they are loaded (run in pipeline-run subprocesses)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from traitlets import Int

from pipeline import Component


class Chatty(Component):
    """Passes messages on, logging ``kib`` KiB of warnings for each; prints "flooded" to stdout once it
    has logged ``flood_kib`` KiB (more than a pipe holds), and "finished" when its finish() runs."""

    kib = Int(1, help="KiB logged per message.").tag(config=True)
    flood_kib = Int(256, help="KiB logged before saying so on stdout.").tag(config=True)

    def init(self) -> None:
        """Nothing logged yet."""
        self.logged = 0

    def run(self, msg: Any) -> Any:
        """Log, say when the stderr pipe must be full, pass the message on."""
        self.log.warning("message %s: %s", msg, "x" * (1024 * self.kib))
        self.logged += self.kib
        if self.logged >= self.flood_kib > self.logged - self.kib:
            print("flooded", flush=True)
        return msg

    def finish(self) -> None:
        """Say that finish() ran."""
        print("finished", flush=True)


def tripped(path: str, value: int) -> int:
    """Unpickling a Tripwire: note it in ``path``, become ``value``."""
    with open(path, "a", encoding="utf-8") as log:
        log.write("loaded\n")
    return value


class Tripwire:
    """A message whose unpickling appends a line to a file (and gives back an int)."""

    def __init__(self, path: Path, value: int) -> None:
        self.path = str(path)
        self.value = value

    def __reduce__(self) -> tuple[Any, ...]:
        return tripped, (self.path, self.value)


class Alive(int):
    """An int message that counts its instances alive in this process (``alive``), and the most alive at once
    (``peak``): what a replay holds unpickled."""

    alive = 0
    peak = 0

    def __new__(cls, value: int) -> Alive:
        made = super().__new__(cls, value)
        Alive.alive += 1
        Alive.peak = max(Alive.peak, Alive.alive)
        return made

    def __del__(self) -> None:
        Alive.alive -= 1

    def __reduce__(self) -> tuple[Any, ...]:
        return Alive, (int(self),)
