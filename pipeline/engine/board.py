"""A worker process's busy board: a small memory-mapped file that it shares with the process that started it.

The worker process's threads mark there the message each one is running; its parent (the run's
supervisor, or ``pipeline-worker`` on a remote host) reads it without the child's help, so it
knows which message a process was running when it died (only that message counts the death
against it, even though answers travel in batches), and it sets the board's halt flag when the
step stopped after a failure, which the threads read before each message. Neither side needs the
other's GIL: a process inside a long C call is still read and still told.

Layout, uint64 words in the host's byte order (both ends are on one host)::

    word 0        halt flags, one bit per step the process runs (bit i: its i-th step, engine.fusion)
    word 1 + t    the message thread t is running (UNORDERED: none; FINISHING: its finish())
"""

from __future__ import annotations

import mmap
import struct
from pathlib import Path

from pipeline.execution.executor import UNORDERED

_WORD = struct.Struct("=Q")


class BusyBoard:
    """The mapped board of one worker process (``threads`` worker threads)."""

    def __init__(self, path: str | Path, threads: int, create: bool = False) -> None:
        size = _WORD.size * (1 + threads)
        if create:
            with open(path, "wb") as file:
                file.write(_WORD.pack(0) + _WORD.pack(UNORDERED) * threads)
        with open(path, "r+b") as file:
            self.map = mmap.mmap(file.fileno(), size)
        #: The board's words: each thread marks its own twice a message, and an item of a memoryview costs a
        #: fraction of a struct call.
        self.words = memoryview(self.map).cast("Q")
        self.threads = threads

    def mark(self, thread: int, seq: int | None) -> None:
        """Thread ``thread`` starts message ``seq`` (None: it finished it)."""
        self.words[1 + thread] = UNORDERED if seq is None else seq

    def running(self) -> list[int]:
        """The messages the process's threads are running now."""
        return [seq for seq in self.words.tolist()[1:] if seq != UNORDERED]

    def halt(self, step: int = 0) -> None:
        """Tell the process's threads to start no further message of its ``step``-th step."""
        self.words[0] |= 1 << step

    def halted(self, step: int = 0) -> bool:
        """Whether the process was told to start no further message of its ``step``-th step."""
        return bool(self.words[0] >> step & 1)

    def close(self) -> None:
        """Unmap the board (reading it then raises ValueError)."""
        self.words.release()
        self.map.close()


class HaltedSteps(set):
    """The steps a worker process's threads start no further message of: those its own failures halted
    (on_error=stop, a set as in the run's policy) and those whose flag its parent set on the board."""

    def __init__(self, steps: tuple[str, ...], board: BusyBoard | None) -> None:
        super().__init__()
        self.steps = steps
        self.board = board

    def __contains__(self, step: object) -> bool:
        # Asked before every message: the board's word, 0 until a step is halted, answers the common case.
        board = self.board
        if board is not None and board.words[0] and step in self.steps and board.halted(self.steps.index(step)):
            return True
        return super().__contains__(step)
