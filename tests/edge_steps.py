"""Steps for tests/test_engine_edges.py: a finish() that yields many outputs, a stager that names one of its next
steps, consumers that record, sleep on or fail on finish()'s outputs, and a shardable producer slow between yields.

finish()'s outputs are the numbers from 1000 up, so a consumer tells them from the inputs (0, 1, 2, ...).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from traitlets import Float, Int, Unicode

from pipeline import Component

#: finish()'s outputs start here; the inputs stay below.
FINISH_FIRST = 1000


class FinishMany(Component):
    """Stager: passes each input on; its finish() yields ``many`` outputs, FINISH_FIRST and up."""

    many = Int(5000, help="Outputs of finish().").tag(config=True)

    def run(self, i: int) -> int:
        """The input itself."""
        return i

    def finish(self) -> Iterator[int]:
        """``many`` outputs."""
        yield from range(FINISH_FIRST, FINISH_FIRST + self.many)


class Pass(Component):
    """Stager: passes each input on."""

    def run(self, i: int) -> int:
        """The input itself."""
        return i


class ToD(Component):
    """Stager with next steps C and D: sends each input to D only, by name."""

    def run(self, i: int) -> None:
        """Send the input to D."""
        self.send_msg(i, "D")


class Record(Component):
    """Consumer: appends "STEP value" for each message to ``path`` in its finish() (a line each)."""

    path = Unicode(help="The file of records.").tag(config=True)
    sleep = Float(0.0, help="Seconds to sleep on each of finish()'s outputs.").tag(config=True)
    fail = Int(0, help="1: raise ValueError on each of finish()'s outputs.").tag(config=True)

    def init(self) -> None:
        """Nothing received yet."""
        self.got: list[int] = []

    def run(self, i: int) -> None:
        """Record one message (sleep on, or fail on, finish()'s outputs if told to)."""
        if i >= FINISH_FIRST:
            if self.fail:
                raise ValueError(f"bad {i}")
            time.sleep(self.sleep)
        self.got.append(i)

    def finish(self) -> None:
        """Write what came."""
        with open(self.path, "a", encoding="utf-8") as records:
            records.write("".join(f"{self.step_name} {i}\n" for i in self.got))


class SlowShards(Component):
    """Shardable producer: each shard yields shard * 100 + k for k in 0, 1, 2, ``pause`` seconds apart."""

    shardable = True
    pause = Float(2.0, help="Seconds between two yields.").tag(config=True)

    def run(self) -> Iterator[int]:
        """The shard's three numbers."""
        for k in range(3):
            if k:
                time.sleep(self.pause)
            yield self.shard * 100 + k


def records(path: Path) -> list[str]:
    """The records written to ``path``, sorted (none if it was never written)."""
    return sorted(path.read_text(encoding="utf-8").splitlines()) if path.exists() else []
