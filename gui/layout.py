"""Where each step's box goes: columns by the longest path from the producer, rows in config order,
and columns cut into bands stacked top to bottom when they do not fit the width. Linear time: each
step and each edge is looked at a bounded number of times, whatever a peer sends."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence


def columns(next_steps: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Each step's column: the length of the longest path to it from a step nothing sends to.

    ``next_steps`` maps every step (in config order) to the steps it sends to. A next step that is
    not a key is ignored; so is an edge that would close a cycle (a valid run has none).
    """
    incoming = {name: 0 for name in next_steps}
    for targets in next_steps.values():
        for target in targets:
            if target in incoming:
                incoming[target] += 1
    column = {name: 0 for name in next_steps}
    ready = deque(name for name, count in incoming.items() if count == 0)
    while ready:
        name = ready.popleft()
        for target in next_steps[name]:
            if target not in incoming:
                continue
            column[target] = max(column[target], column[name] + 1)
            incoming[target] -= 1
            if incoming[target] == 0:
                ready.append(target)
    return column


def grid(next_steps: Mapping[str, Sequence[str]]) -> dict[str, tuple[int, int]]:
    """Each step's (column, row); rows count from 0 in each column, in config order."""
    cells: dict[str, tuple[int, int]] = {}
    used: dict[int, int] = {}
    for name, col in columns(next_steps).items():
        cells[name] = (col, used.get(col, 0))
        used[col] = used.get(col, 0) + 1
    return cells


def bands(cells: Mapping[str, tuple[int, int]], per_band: int) -> dict[str, tuple[int, int, int]]:
    """Each step's (band, column in its band, row): the columns cut into bands of ``per_band``
    columns, read like lines of text, so that a long chain wraps instead of shrinking."""
    per_band = max(1, per_band)
    return {name: (col // per_band, col % per_band, row) for name, (col, row) in cells.items()}


def band_rows(placed: Mapping[str, tuple[int, int, int]]) -> dict[int, int]:
    """The rows of each band: its tallest column's."""
    rows: dict[int, int] = {}
    for band, _, row in placed.values():
        rows[band] = max(rows.get(band, 0), row + 1)
    return rows
