"""Out-of-band buffers handed between the threads of one run's process by number, not as frames.

Between threads of one process a buffer need not be a ZeroMQ frame: sending a large buffer
without copying costs pyzmq a message to its garbage-collector thread and a GIL round trip per
frame, which was most of the cost of moving 1 MiB arrays (docs/performance.md). So a sender
*lends* the buffers of a packet to the run's ``Handles`` and sends their numbers, in one frame; the
receiver *takes* them back at once, holding them from then on as it held frames. A buffer is in
the table only while its numbers travel in a ZeroMQ queue; what a run leaves in flight when it
ends goes with its ``Handles``.

Only threads of the run's own process use numbers: what goes to or comes from a worker process or a
remote worker is always real frames (a number from there is refused: engine.wire).
"""

from __future__ import annotations

import itertools
from array import array
from collections.abc import Sequence

from pipeline.message import Buffer


class Handles:
    """The buffers in transit between the threads of one run, by number."""

    def __init__(self) -> None:
        self._lent: dict[int, Buffer] = {}
        self._numbers = itertools.count(1)  # next() on a count is atomic: threads lend at once

    def __len__(self) -> int:
        return len(self._lent)

    def lend(self, buffers: Sequence[Buffer]) -> bytes:
        """Hold ``buffers`` until taken; the frame of their numbers (uint64 each, in order)."""
        numbers = array("Q", [next(self._numbers) for _ in buffers])
        self._lent.update(zip(numbers, buffers, strict=True))
        return numbers.tobytes()

    def take(self, frame: Buffer) -> list[Buffer]:
        """The buffers whose numbers ``frame`` holds, no longer held here (KeyError: a number never lent)."""
        numbers = array("Q")
        numbers.frombytes(frame)
        take = self._lent.pop
        return [take(number) for number in numbers]
