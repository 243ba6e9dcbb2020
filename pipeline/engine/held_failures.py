"""Failures that a worker outside the run reported, each held until the answer that covers it comes.

A worker process says a message failed, then answers it, on the same socket. Counted at once, a
failure whose process died before its answer came would count twice: the message runs again and
fails again (two dead letters; max_failures reached by one). So a failure is held, keyed by the
input whose answer covers it (a fused step's message by its chain's input; after a producer, by
the shard and the place of the message in it), and counted once that answer has been read.
"""

from __future__ import annotations

from collections.abc import Callable

#: A held failure's place for one that is a whole input's (not a message at a place in a shard).
WHOLE = -1


class HeldFailures:
    """Per worker, the failures it reported whose covering answer has not come yet, and how to count each."""

    def __init__(self) -> None:
        self._held: dict[bytes, list[tuple[int, int, Callable[[], None]]]] = {}

    def __bool__(self) -> bool:
        """Whether any worker has a failure held."""
        return bool(self._held)

    def hold(self, worker: bytes, answer: int, place: int, count: Callable[[], None]) -> None:
        """Hold a failure of ``worker`` that ``count`` counts once the answer ``answer`` (at ``place``) comes."""
        self._held.setdefault(worker, []).append((answer, place, count))

    def holds(self, worker: bytes, answer: int, place: int = WHOLE) -> bool:
        """Whether ``worker`` already has a failure held for ``answer`` at ``place`` (a peer may say anything twice)."""
        return any(entry[:2] == (answer, place) for entry in self._held.get(worker, ()))

    def release(self, worker: bytes, covered: Callable[[int, int], bool]) -> None:
        """Count the failures of ``worker`` whose answer is now ``covered``; keep the others."""
        held = self._held.get(worker)
        if not held:
            return
        kept = []
        for answer, place, count in held:
            if covered(answer, place):
                count()
            else:
                kept.append((answer, place, count))
        if kept:
            self._held[worker] = kept
        else:  # none held: its plain RESULTs may be forwarded again
            del self._held[worker]

    def forget(self, worker: bytes) -> None:
        """Drop ``worker``'s held failures: its process died, its inputs run again (and fail again)."""
        self._held.pop(worker, None)
