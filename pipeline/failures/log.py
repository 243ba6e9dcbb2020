"""How much of each failure the log shows, so that one bug never floods it.

The first failure of each (step, exception type) is logged with its traceback. Later ones of the
same kind are logged as one line each, at most LINES_PER_WINDOW in WINDOW_SECONDS; past that they
are only counted, and the count is logged as ``... and 996 more ValueError in STAGE`` when the
window ends (with the next failure of that kind) or when the run ends. The GUI and the dead-letter
file are not limited: they get every failure in full.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

#: One-line reports of the same (step, exception type) per window: enough to see that the failures
#: go on and on which messages, few enough that the first traceback stays on the screen.
LINES_PER_WINDOW = 3
#: Seconds of a window; a run that keeps failing logs at most LINES_PER_WINDOW + 1 lines per kind in each.
WINDOW_SECONDS = 10.0

#: How to log one failure.
TRACEBACK = "traceback"  # the first of its kind: one line and the traceback
LINE = "line"  # one line
COUNT = "count"  # nothing now: counted, and reported in a later "... and N more" line


@dataclass
class _Kind:
    """The log's state for one (step, exception type)."""

    window_start: float
    lines: int = 0  # one-line reports in the current window
    unreported: int = 0  # failures counted since the last line about this kind


class FailureLog:
    """Decides, failure by failure, what the log shows (not thread-safe: the caller holds a lock)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, lines_per_window: int = LINES_PER_WINDOW,
                 window: float = WINDOW_SECONDS) -> None:
        self.clock = clock
        self.lines_per_window = lines_per_window
        self.window = window
        self._kinds: dict[tuple[str, str], _Kind] = {}

    def classify(self, step: str, kind: str) -> tuple[str, int]:
        """How to log a failure of exception type ``kind`` in ``step`` (TRACEBACK, LINE or COUNT), and
        how many earlier ones were only counted and must be reported first (their window ended)."""
        now = self.clock()
        state = self._kinds.get((step, kind))
        if state is None:
            self._kinds[step, kind] = _Kind(now)
            return TRACEBACK, 0
        earlier = 0
        if now - state.window_start >= self.window:
            earlier, state.unreported = state.unreported, 0
            state.window_start, state.lines = now, 0
        if state.lines < self.lines_per_window:
            state.lines += 1
            return LINE, earlier
        state.unreported += 1
        return COUNT, earlier

    def unreported(self) -> list[tuple[str, str, int]]:
        """Each (step, kind, count) of failures counted but not yet reported; they count as reported now."""
        found = [(step, kind, state.unreported) for (step, kind), state in self._kinds.items() if state.unreported]
        for state in self._kinds.values():
            state.unreported = 0
        return found


class ThrottledLog:
    """Lines about events of many kinds, per key (a step, a peer's key) and kind: the first few of each in every window
    of time, then only counted, the count said at the end of the window or at close() (one authorized peer sending
    20,000 HELLOs made 19,988 lines of errors, issue 24.10; a poison message a worker process death a second, 170,000
    over a night). The decision is FailureLog's; ``more`` words a count, from ``count``, ``kind`` and ``key``."""

    def __init__(self, logger: logging.Logger, more: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.more = more
        self.decide = FailureLog(clock)
        self.levels: dict[str, int] = {}  # the level of each kind's lines, for its count at the end

    def say(self, level: int, key: str, kind: str, text: str, *args: object) -> None:
        """Log ``text % args`` at ``level`` unless too many lines of ``kind`` about ``key`` came lately."""
        self.levels[kind] = level
        how, earlier = self.decide.classify(key, kind)
        if earlier:
            self.logger.log(level, self.more, {"count": earlier, "kind": kind, "key": key})
        if how != COUNT:
            self.logger.log(level, text, *args)

    def close(self) -> None:
        """Say what was only counted."""
        for key, kind, count in self.decide.unreported():
            self.logger.log(self.levels[kind], self.more, {"count": count, "kind": kind, "key": key})


def count_line(step: str, kind: str, count: int) -> str:
    """The line that reports failures counted without a line of their own."""
    return f"... and {count} more {kind} in {step}"
