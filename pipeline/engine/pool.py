"""A router's view of its workers: each one's credit window and the least-recently-used order."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from .flow import PREFETCH_BYTES


@dataclass
class _Worker:
    window: int = 0  # messages it asked to hold
    in_flight: deque[tuple[int, int]] = field(default_factory=deque)  # (messages, bytes) per packet sent
    held: int = 0
    held_bytes: int = 0

    def can_take(self) -> bool:
        return self.held < self.window and (self.held == 0 or self.held_bytes < PREFETCH_BYTES)


class WorkerPool:
    """Which worker gets the next packet: the one that has waited longest with room for work."""

    def __init__(self) -> None:
        self.workers: dict[bytes, _Worker] = {}
        self.waiting: deque[bytes] = deque()  # workers with room, least recently used first

    def join(self, worker: bytes, window: int) -> None:
        """A worker announced itself, asking to hold ``window`` messages."""
        self.workers[worker] = _Worker(window)
        self._maybe_wait(worker)

    def done(self, worker: bytes, window: int) -> None:
        """A worker finished its oldest packet and now asks to hold ``window`` messages."""
        state = self.workers[worker]
        messages, nbytes = state.in_flight.popleft()
        state.held -= messages
        state.held_bytes -= nbytes
        state.window = window
        self._maybe_wait(worker)

    def choose(self) -> bytes | None:
        """The least recently used worker with room for work, or None."""
        return self.waiting[0] if self.waiting else None

    def room(self, worker: bytes) -> int:
        """How many more messages ``worker`` asked for."""
        state = self.workers[worker]
        return state.window - state.held

    def window(self, worker: bytes) -> int:
        """How many messages ``worker`` asked to hold in all."""
        return self.workers[worker].window

    def sent(self, worker: bytes, messages: int, nbytes: int) -> None:
        """Record a packet handed to ``worker``; it becomes the most recently used."""
        state = self.workers[worker]
        state.in_flight.append((messages, nbytes))
        state.held += messages
        state.held_bytes += nbytes
        self.waiting.remove(worker)  # it goes to the back of the line if it still has room
        self._maybe_wait(worker)

    def busy(self) -> int:
        """How many workers hold work now."""
        return sum(1 for state in self.workers.values() if state.held)

    def _maybe_wait(self, worker: bytes) -> None:
        """Keep ``worker`` in the waiting line exactly while it has room (a window can shrink)."""
        waiting = worker in self.waiting
        if self.workers[worker].can_take():
            if not waiting:
                self.waiting.append(worker)
        elif waiting:
            self.waiting.remove(worker)
