"""Where each step's box goes: columns by the longest path from the producer, rows in config order."""

from __future__ import annotations

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
    ready = [name for name, count in incoming.items() if count == 0]
    while ready:
        name = ready.pop(0)
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
