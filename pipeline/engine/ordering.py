"""The turn that an ordered step's workers take to emit, so outputs leave in input order."""

from __future__ import annotations

import threading


class Turn:
    """Lets the worker holding sequence number ``seq`` emit only after ``seq - 1`` has."""

    def __init__(self) -> None:
        self.next_seq = 0
        self._changed = threading.Condition()

    def wait(self, seq: int) -> None:
        """Block until it is ``seq``'s turn."""
        with self._changed:
            self._changed.wait_for(lambda: self.next_seq == seq)

    def done(self) -> None:
        """Pass the turn to the next sequence number."""
        with self._changed:
            self.next_seq += 1
            self._changed.notify_all()
