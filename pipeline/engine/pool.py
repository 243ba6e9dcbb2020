"""A router's view of its workers: each one's credit window, the packets it holds and the LRU order."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from pipeline.engine.flow import PREFETCH_BYTES
from pipeline.engine.wire import Packet


@dataclass
class _Worker:
    window: int = 0  # messages it asked to hold
    in_flight: deque[Packet] = field(default_factory=deque)  # packets sent and not yet READY, oldest first
    answered: int = 0  # inputs of its oldest packet whose result came back (workers that return results)
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
        packet = state.in_flight.popleft()
        state.answered = 0
        state.held -= len(packet)
        state.held_bytes -= packet.nbytes
        state.window = window
        self._maybe_wait(worker)

    def answered(self, worker: bytes) -> tuple[Packet, int]:
        """A worker returned the result of its next input: (the packet holding it, its index there)."""
        state = self.workers[worker]
        index = state.answered
        state.answered += 1
        return state.in_flight[0], index

    def answered_many(self, worker: bytes, count: int) -> None:
        """A worker returned the results of its next ``count`` inputs (all of its oldest packet's, at most)."""
        self.workers[worker].answered += count

    def next_seqs(self, worker: bytes, count: int) -> range:
        """The sequence numbers of the next ``count`` inputs of ``worker``'s oldest packet that it has not
        answered (fewer if that packet has fewer left): a worker answers a packet's inputs before its READY."""
        state = self.workers[worker]
        if not state.in_flight:
            return range(0)
        packet = state.in_flight[0]
        first = packet.first_seq + state.answered
        return range(first, min(packet.first_seq + len(packet), first + count))

    def finished_oldest(self, worker: bytes, answered: bool) -> bool:
        """Whether ``worker`` may say READY: it holds a packet and, if it answers its inputs (``answered``),
        has answered every input of the oldest one."""
        state = self.workers[worker]
        return bool(state.in_flight) and (not answered or state.answered == len(state.in_flight[0]))

    def lose(self, worker: bytes) -> list[Packet]:
        """Forget a dead worker; return what it held and had not answered, oldest first."""
        state = self.workers.pop(worker)
        if worker in self.waiting:
            self.waiting.remove(worker)
        held = list(state.in_flight)
        if held and state.answered:
            held[0] = held[0].split(state.answered)[1]
        return [packet for packet in held if len(packet)]

    def stall(self, worker: bytes) -> None:
        """A worker that cannot be reached (its process died) gets no more work until it is lost."""
        self.workers[worker].window = 0
        if worker in self.waiting:
            self.waiting.remove(worker)

    def choose(self) -> bytes | None:
        """The least recently used worker with room for work, or None."""
        return self.waiting[0] if self.waiting else None

    def share_out(self, queued: int) -> tuple[bytes, int] | None:
        """Once no more input comes: the worker with room furthest below its share of what is left, and how many more
        messages bring it there; None when each holds its share. What is left (the ``queued`` messages and those the
        workers hold) is shared in proportion to the workers' windows, which follow their speeds: a worker that asked
        for nothing (its init() failed, or it cannot be reached) gets no share."""
        windows = sum(state.window for state in self.workers.values())
        left = queued + sum(state.held for state in self.workers.values())
        chosen: tuple[bytes, int] | None = None
        for worker in self.waiting:  # each has room: a window of at least 1, so ``windows`` is not 0
            state = self.workers[worker]
            more = -(-left * state.window // windows) - state.held
            if more > 0 and (chosen is None or more > chosen[1]):
                chosen = (worker, more)
        return chosen

    def room(self, worker: bytes) -> int:
        """How many more messages ``worker`` asked for."""
        state = self.workers[worker]
        return state.window - state.held

    def held(self, worker: bytes) -> int:
        """How many messages ``worker`` holds now."""
        return self.workers[worker].held

    def window(self, worker: bytes) -> int:
        """How many messages ``worker`` asked to hold in all."""
        return self.workers[worker].window

    def sent(self, worker: bytes, packet: Packet) -> None:
        """Record a packet handed to ``worker``; it becomes the most recently used."""
        state = self.workers[worker]
        state.in_flight.append(packet)
        state.held += len(packet)
        state.held_bytes += packet.nbytes
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
