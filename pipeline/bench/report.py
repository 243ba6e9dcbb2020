"""Benchmark results: rows of samples per design, the targets, and their table and JSON forms."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from typing import Any

#: The row that every other row of a case is compared with.
ENGINE = "engine threads"

#: Row statuses: measured and checked, not run (a baseline that is not installed), or a failed check.
OK, SKIPPED, BROKEN = "ok", "skipped", "broken"


@dataclass
class Row:
    """One design's samples of one quantity (one sample per repeat)."""

    design: str
    samples: list[float] = field(default_factory=list)
    status: str = OK
    note: str = ""

    def add(self, value: float) -> None:
        """Keep one checked sample."""
        self.samples.append(value)

    def fail(self, problem: str) -> None:
        """Mark the row broken: a run's output did not check, so none of its figures count."""
        self.status, self.note = BROKEN, problem

    @property
    def median(self) -> float | None:
        """The median sample; None for a row without figures."""
        return statistics.median(self.samples) if self.status == OK and self.samples else None

    @property
    def spread(self) -> tuple[float, float] | None:
        """The smallest and largest sample; None for a row without figures."""
        return (min(self.samples), max(self.samples)) if self.median is not None else None


@dataclass
class Case:
    """One measured quantity of a workload (such as "msg/s" or "p99 µs"), for several designs."""

    label: str
    unit: str
    higher_is_better: bool
    rows: list[Row] = field(default_factory=list)

    def row(self, design: str) -> Row:
        """The row of ``design``, made on first use."""
        for row in self.rows:
            if row.design == design:
                return row
        self.rows.append(Row(design))
        return self.rows[-1]

    def ratio(self, design: str) -> float | None:
        """The engine's median divided by the median of ``design``."""
        engine, other = self.row(ENGINE).median, self.row(design).median
        if engine is None or not other:
            return None
        return engine / other


@dataclass
class Target:
    """A goal of the issue: ``value`` at least (or at most) ``limit``."""

    text: str
    value: float | None
    limit: float
    at_least: bool = True

    @property
    def met(self) -> bool | None:
        """Whether the goal is met; None when there is no figure to judge."""
        if self.value is None:
            return None
        return self.value >= self.limit if self.at_least else self.value <= self.limit


@dataclass
class Workload:
    """One workload's cases, targets and notes."""

    key: str
    title: str
    cases: list[Case] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def case(self, label: str, unit: str, higher_is_better: bool) -> Case:
        """The case named ``label``, made on first use."""
        for case in self.cases:
            if case.label == label:
                return case
        self.cases.append(Case(label, unit, higher_is_better))
        return self.cases[-1]

    @property
    def verified(self) -> bool:
        """True when no row of the workload failed its check."""
        return all(row.status != BROKEN for case in self.cases for row in case.rows)


def number(value: float | None) -> str:
    """A figure with three significant digits at least, and thousands separators."""
    if value is None or not math.isfinite(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"


def mark(met: bool | None) -> str:
    """The pass/miss mark of a target."""
    return {True: "met", False: "MISSED", None: "no figure"}[met]


def table(header: dict[str, Any], workloads: list[Workload]) -> str:
    """The plain-text report: the machine, then per workload its rows, ratios and targets."""
    lines = [
        f"pipeline-bench: {header['summary']}",
        f"note: {header['noise']}",
        "engine/this: the engine threads median divided by this row's median; spread: the fastest and "
        "slowest of the repeats",
        "",
    ]
    for workload in workloads:
        lines.append(f"{workload.key}  {workload.title}")
        rows = [("", "design", "median", "spread (min..max)", "engine/this", "")]
        for case in workload.cases:
            better = "higher" if case.higher_is_better else "lower"
            label = f"{case.label} [{case.unit}, {better} is better]"
            for row in case.rows:
                rows.append((label, row.design, *_figures(case, row)))
                label = ""
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            lines.append(("    " + "  ".join(_align(row, widths))).rstrip())
        for target in workload.targets:
            lines.append(f"    target: {target.text}: {number(target.value)}  {mark(target.met)}")
        lines += [f"    note: {note}" for note in workload.notes]
        lines.append("")
    missed = [f"{w.key} {t.text}" for w in workloads for t in w.targets if t.met is not True]
    lines.append("targets: all met" if not missed else "targets not met: " + "; ".join(missed))
    return "\n".join(lines)


def _align(row: tuple[str, ...], widths: list[int]) -> list[str]:
    """Names and notes left-aligned, figures right-aligned."""
    figures = range(2, 5)
    return [c.rjust(w) if i in figures else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]


def _figures(case: Case, row: Row) -> tuple[str, str, str, str]:
    """The median, spread, engine ratio and note cells of a row."""
    if row.status != OK:
        return (row.status.upper(), "", "", row.note)
    low, high = row.spread or (None, None)
    ratio = case.ratio(row.design) if row.design != ENGINE else None
    return (number(row.median), f"{number(low)}..{number(high)}", "" if ratio is None else f"{ratio:.2f}x", "")


def as_json(header: dict[str, Any], workloads: list[Workload]) -> dict[str, Any]:
    """The report as JSON-ready data: every sample, median, spread, ratio and target."""
    return {
        "machine": header,
        "workloads": {w.key: _workload_json(w) for w in workloads},
        "targets_met": all(t.met for w in workloads for t in w.targets),
        "verified": all(w.verified for w in workloads),
    }


def _workload_json(workload: Workload) -> dict[str, Any]:
    return {
        "title": workload.title,
        "verified": workload.verified,
        "cases": [
            {
                "label": case.label,
                "unit": case.unit,
                "higher_is_better": case.higher_is_better,
                "rows": [
                    {
                        "design": row.design,
                        "status": row.status,
                        "note": row.note,
                        "samples": row.samples,
                        "median": row.median,
                        "min": row.spread[0] if row.spread else None,
                        "max": row.spread[1] if row.spread else None,
                        "engine_ratio": case.ratio(row.design) if row.design != ENGINE else None,
                    }
                    for row in case.rows
                ],
            }
            for case in workload.cases
        ],
        "targets": [
            {"text": t.text, "value": t.value, "limit": t.limit, "at_least": t.at_least, "met": t.met}
            for t in workload.targets
        ],
        "notes": workload.notes,
    }
