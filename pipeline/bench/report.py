"""Benchmark results: rows of samples per design, the targets, and their table and JSON forms.

Every comparison reads one way: "engine vs this" is how many times better the engine's figure is
than the row's (above 1: the engine is better), for rates (higher is better) and for times, latencies
and memory (lower is better) alike. It is the median of the per-repeat ratios: repeats are
interleaved, so each pair was measured in the same moment of the machine.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pipeline.bench.designs import DESCRIPTIONS, ENGINE

#: Row statuses: measured and checked, not run (a design missing here), or a failed check.
OK, SKIPPED, BROKEN = "ok", "skipped", "broken"

#: A figure whose fastest and slowest repeats differ by more than this fraction of its median is
#: marked unreliable: on a shared machine a difference smaller than that between designs is noise.
WIDE_SPREAD = 0.25

#: Target verdicts.
MET, MISSED, UNCERTAIN, NO_FIGURE, NOT_JUDGED = (
    "met", "MISSED", "uncertain: the repeats fall on both sides", "no figure", "not judged (--quick sizes)"
)

LEGEND = (
    "how to read: every design runs the same steps; median and spread (fastest..slowest) are over the "
    "repeats; a figure is unreliable when its repeats differ by more than {wide:.0%} of its median; "
    '"engine vs this" is how many times better the engine threads figure (or the engine row a case names) is '
    "than the row's, whatever the unit (above 1: the engine is better; below 1: the row is better)"
)


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

    def skip(self, reason: str) -> None:
        """Mark the row skipped: its design cannot run here."""
        self.status, self.note = SKIPPED, reason

    @property
    def figures(self) -> list[float]:
        """The samples of a row that counts; none for a skipped or broken row."""
        return self.samples if self.status == OK else []

    @property
    def median(self) -> float | None:
        """The median sample; None for a row without figures."""
        return statistics.median(self.figures) if self.figures else None

    @property
    def spread(self) -> tuple[float, float] | None:
        """The smallest and largest sample; None for a row without figures."""
        return (min(self.figures), max(self.figures)) if self.figures else None

    @property
    def unreliable(self) -> bool:
        """True when the repeats differ by more than WIDE_SPREAD of the median."""
        median, spread = self.median, self.spread
        if median is None or spread is None or len(self.figures) < 2:
            return False
        return spread[1] - spread[0] > WIDE_SPREAD * abs(median)


@dataclass
class Case:
    """One measured quantity of a workload (such as "msg/s" or "p99 µs"), for several designs."""

    label: str
    unit: str
    higher_is_better: bool
    rows: list[Row] = field(default_factory=list)
    base: str = ENGINE  # the design every other row is compared with ("engine vs this")

    def row(self, design: str) -> Row:
        """The row of ``design``, made on first use."""
        for row in self.rows:
            if row.design == design:
                return row
        self.rows.append(Row(design))
        return self.rows[-1]

    def unmeasured(self, *designs: str) -> str:
        """Why a figure of ``designs`` is missing: the first of their rows skipped or broken, in its note's words; ""
        if none is."""
        for row in self.rows:
            if row.design in designs and row.status != OK:
                return f"{row.design}: {row.note}"
        return ""

    def ratios(self, design: str, base: str | None = None) -> list[float]:
        """Per repeat, how many times better ``base``'s figure (the case's base by default) is than
        ``design``'s (above 1: ``base`` is better); none unless both rows have a positive figure for
        every repeat."""
        rows = {row.design: row for row in self.rows}
        if (base or self.base) not in rows or design not in rows:
            return []
        engine, other = rows[base or self.base].figures, rows[design].figures
        if not engine or len(engine) != len(other) or min(engine + other) <= 0:
            return []
        pairs = zip(engine, other, strict=True)
        return [e / o if self.higher_is_better else o / e for e, o in pairs]

    def ratio(self, design: str) -> float | None:
        """The median of ``ratios(design)``; None without figures."""
        ratios = self.ratios(design)
        return statistics.median(ratios) if ratios else None


@dataclass
class Target:
    """A performance target: the figure, per repeat, at least (or at most) ``limit``."""

    text: str
    samples: Sequence[float]
    limit: float
    at_least: bool = True
    missing: str = ""  # why it has no samples, when a row it needs was skipped or broke (Case.unmeasured)

    @property
    def value(self) -> float | None:
        """The median of the samples; None without figures."""
        return statistics.median(self.samples) if self.samples else None

    @property
    def unjudged(self) -> bool:
        """Whether it cannot be judged: no figure, a row it needs skipped or broken (``missing`` says which)."""
        return not self.samples and bool(self.missing)

    def meets(self, value: float) -> bool:
        """Whether ``value`` reaches the target."""
        return value >= self.limit if self.at_least else value <= self.limit

    def verdict(self, judged: bool = True) -> str:
        """MET or MISSED when every repeat agrees; UNCERTAIN when they do not; NOT_JUDGED when the
        sizes cannot support a verdict (``judged`` false); NO_FIGURE without figures."""
        if not judged:
            return NOT_JUDGED
        if self.unjudged:
            return f"not judged: {self.missing}"
        if not self.samples:
            return NO_FIGURE
        sides = {self.meets(value) for value in self.samples}
        if len(sides) > 1:
            return UNCERTAIN
        return MET if sides.pop() else MISSED


@dataclass
class Workload:
    """One workload's cases, targets and notes."""

    key: str
    title: str
    cases: list[Case] = field(default_factory=list)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    failure: str = ""  # why the workload has no figures at all (its process died), or nothing

    def case(self, label: str, unit: str, higher_is_better: bool, base: str = ENGINE) -> Case:
        """The case named ``label``, made on first use."""
        for case in self.cases:
            if case.label == label:
                return case
        self.cases.append(Case(label, unit, higher_is_better, base=base))
        return self.cases[-1]

    @property
    def verified(self) -> bool:
        """True when the workload ran to its end and no row of it failed its check."""
        return not self.failure and all(row.status != BROKEN for case in self.cases for row in case.rows)


def number(value: float | None) -> str:
    """A figure with three significant digits at least, and thousands separators."""
    if value is None or not math.isfinite(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}" if abs(value) >= 1 else f"{value:.3g}"


def table(header: dict[str, Any], workloads: list[Workload]) -> str:
    """The plain-text report: the machine, the designs, then per workload its rows, ratios and targets."""
    judged = not header["quick"]
    lines = [
        f"pipeline-bench: {header['summary']}",
        f"note: {header['noise']}",
        LEGEND.format(wide=WIDE_SPREAD),
        "",
        "designs:",
        *_legend(workloads),
        "",
    ]
    for workload in workloads:
        lines.append(f"{workload.key}  {workload.title}")
        if workload.failure:
            lines.append(f"    FAILED: {workload.failure}")
        rows = [("", "design", "median", "spread", "engine vs this", "")]
        for case in workload.cases:
            better = "higher" if case.higher_is_better else "lower"
            label = f"{case.label} [{case.unit}, {better} is better]"
            if case.base != ENGINE:
                label += f" (engine: {case.base})"
            for row in case.rows:
                rows.append((label, row.design, *_figures(case, row)))
                label = ""
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        for row in rows:
            lines.append(("    " + "  ".join(_align(row, widths))).rstrip())
        for target in workload.targets:
            lines.append(f"    target: {target.text}: {number(target.value)}  {target.verdict(judged)}")
        lines += [f"    note: {note}" for note in workload.notes]
        lines.append("")
    lines.append(_summary(workloads, judged))
    return "\n".join(lines)


def _legend(workloads: list[Workload]) -> list[str]:
    """One line per design shown, saying what it is."""
    shown = _shown(workloads)
    width = max((len(design) for design in shown), default=0)
    return [f"  {design.ljust(width)}  {DESCRIPTIONS.get(design, '')}".rstrip() for design in shown]


def _summary(workloads: list[Workload], judged: bool) -> str:
    """The last line: the targets missed or in doubt, or why none was judged."""
    if not judged:
        return "targets: not judged: --quick sizes are too small to support a verdict (run without --quick)"
    open_ = [f"{w.key} not measured ({w.failure})" for w in workloads if w.failure]
    open_ += [f"{w.key} {t.text} ({t.verdict()})" for w in workloads for t in w.targets
              if t.verdict() != MET and not t.unjudged]
    unjudged = [f"{w.key} {t.text} ({t.verdict()})" for w in workloads for t in w.targets if t.unjudged]
    if open_:
        return "targets not met: " + "; ".join(open_ + unjudged)
    return "targets: all met" + (f"; not judged: {'; '.join(unjudged)}" if unjudged else "")


def _align(row: tuple[str, ...], widths: list[int]) -> list[str]:
    """Names and notes left-aligned, figures right-aligned."""
    figures = range(2, 5)
    return [c.rjust(w) if i in figures else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]


def _figures(case: Case, row: Row) -> tuple[str, str, str, str]:
    """The median, spread, engine comparison and note cells of a row."""
    if row.status != OK:
        return (row.status.upper(), "", "", row.note)
    low, high = row.spread or (None, None)
    spread = f"{number(low)}..{number(high)}" if len(row.figures) > 1 else "one repeat"
    ratio = case.ratio(row.design) if row.design != case.base else None
    note = f"unreliable: the repeats differ by {(high - low) / abs(row.median):.0%}" if row.unreliable else ""
    return (number(row.median), spread, "" if ratio is None else f"{ratio:.2f}x", note)


def as_json(header: dict[str, Any], workloads: list[Workload]) -> dict[str, Any]:
    """The report as JSON-ready data: every sample, median, spread, comparison and target."""
    judged = not header["quick"]
    verdicts = [t.verdict(judged) for w in workloads for t in w.targets if not t.unjudged]  # the others said why
    return {
        "machine": header,
        "legend": LEGEND.format(wide=WIDE_SPREAD),
        "designs": {design: DESCRIPTIONS.get(design, "") for design in _shown(workloads)},
        "workloads": {w.key: _workload_json(w, judged) for w in workloads},
        "targets_met": all(v == MET for v in verdicts) if judged else None,
        "verified": all(w.verified for w in workloads),
    }


def _shown(workloads: list[Workload]) -> list[str]:
    """The designs of every row, in order of first appearance."""
    return list(dict.fromkeys(row.design for w in workloads for case in w.cases for row in case.rows))


def _workload_json(workload: Workload, judged: bool) -> dict[str, Any]:
    return {
        "title": workload.title,
        "verified": workload.verified,
        "failure": workload.failure or None,
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
                        "unreliable": row.unreliable,
                        "engine_vs_this": case.ratio(row.design) if row.design != case.base else None,
                        "compared_with": case.base,
                    }
                    for row in case.rows
                ],
            }
            for case in workload.cases
        ],
        "targets": [
            {"text": t.text, "value": t.value, "samples": list(t.samples), "limit": t.limit,
             "at_least": t.at_least, "verdict": t.verdict(judged), "missing": t.missing or None}
            for t in workload.targets
        ],
        "notes": workload.notes,
    }
