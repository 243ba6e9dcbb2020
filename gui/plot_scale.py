"""The throughput plot's scale and its overlapping lines, as pure functions (no Qt), tested on numbers.

Scale. A producer fills the queues at start-up as fast as it can (thousands of messages a second for a
moment), then runs at the pace of the slowest step (tens a second): scaled to its start-up, the real
rates lie flat on the axis. So the rate axis fits what is readable (:func:`readable_top`): the points
of the first STARTUP_SECONDS do not set it once later points exist (the rates there are measured over a
window that still holds the start-up), nor do a step's short spikes far above its own usual rates
(beyond Tukey's far-out fence of its points); the latest rate of every step always fits. What is above
the axis is drawn at its top, and the plot says how high it went.

Overlap. Steps with equal rates (a chain of one-in, one-out steps) draw one line over another, and only
the last one drawn shows. :func:`overlap_groups` finds the lines that lie on one another; the plot draws
each of a group with dashes that take turns, so that every line shows its colour along the others.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

#: Seconds from the start of a run whose rates do not set the scale once later ones exist: the rate is
#: measured over the last 2 s, which still hold the producer's start-up burst for a moment after it.
STARTUP_SECONDS = 3.0
#: Tukey's far-out fence: a step's points above Q3 + FENCE * IQR of its own points are spikes.
FENCE = 3.0
#: A fence never closer than this many times a step's third quartile (steady rates have an IQR near 0).
MIN_FENCE_RATIO = 1.5
#: Two lines lie on one another when at least this share of their points are this close (pixels).
OVERLAP_SHARE, OVERLAP_PIXELS = 0.5, 3.0

Series = tuple[Sequence[float], Sequence[float]]  # a step's (times, rates)


def readable_top(series: Sequence[Series]) -> float:
    """The highest rate the axis must show for ``series`` (one per visible step); 0.0 with no points."""
    top = 0.0
    for times, rates in series:
        if not rates:
            continue
        settled = [rate for time, rate in zip(times, rates, strict=True) if time >= STARTUP_SECONDS]
        points = settled or list(rates)
        fence = _fence(points)
        kept = max((rate for rate in points if rate <= fence), default=0.0)
        top = max(top, kept, rates[-1])  # the step's rate now always fits
    return top


def _fence(points: Sequence[float]) -> float:
    """The rate above which a point of ``points`` is a spike."""
    if len(points) < 4:
        return max(points)
    q1, _, q3 = statistics.quantiles(points, n=4)
    return max(q3 + FENCE * (q3 - q1), MIN_FENCE_RATIO * q3)


def overlap_groups(lines: Sequence[Sequence[float]], pixels: float = OVERLAP_PIXELS) -> list[tuple[int, int]]:
    """For each line (its points' vertical positions, in pixels, the newest last), its rank in the group of
    lines that lie on one another and the group's size: ``(0, 1)`` for a line alone.

    Lines are compared over the points they both have, newest first (a step that joined late has fewer).
    """
    parent = list(range(len(lines)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, first in enumerate(lines):
        for j in range(i + 1, len(lines)):
            common = min(len(first), len(lines[j]))
            if not common:
                continue
            close = sum(abs(a - b) <= pixels for a, b in zip(reversed(first), reversed(lines[j]), strict=False))
            if close >= OVERLAP_SHARE * common:
                parent[root(j)] = root(i)
    members: dict[int, list[int]] = {}
    for i in range(len(lines)):
        members.setdefault(root(i), []).append(i)
    placed = [(0, 1)] * len(lines)
    for group in members.values():
        for rank, i in enumerate(group):
            placed[i] = (rank, len(group))
    return placed
