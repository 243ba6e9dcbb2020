"""Progress while a run goes on: a log line every few seconds, or the terminal display.

When stderr is a terminal, the live table of ``terminal`` shows the run. Otherwise (a batch job,
a pipe) the same figures go out as one INFO line of the ``pipeline.progress`` logger every
``interval`` seconds: per step messages processed and failed, queue fill, busy workers and rate,
where its workers run when some are processes (``workers=2p+1r``, see ``workers``), and messages
redelivered and worker processes restarted when there were any; and when the producer declares how
many messages it will yield (``Component.__length_hint__``), how far it is and an estimate of the
time left (ETA).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from pipeline.config.model import PipelineConfig
from pipeline.console import humanize
from pipeline.execution.status import RunStatus, StepStatus
from pipeline.monitor.workers import WorkerMix, worker_mix

log = logging.getLogger("pipeline.progress")

class LogProgress:
    """One log line of per-step figures every ``interval`` seconds."""

    def __init__(self, config: PipelineConfig, interval: float, start: float) -> None:
        self.config = config
        self.interval = interval
        self._next = start + interval

    def update(self, status: RunStatus, rates: Mapping[str, float], now: float) -> None:
        """Log a line if ``interval`` seconds passed since the last one."""
        if now >= self._next:
            self._next = now + self.interval
            log.info("%s", progress_line(self.config, status, rates))

    def close(self) -> None:
        """Nothing to take down."""


#: Steps a progress line gives at most: a run of 200 steps wrote lines of 12 KB every few seconds.
LINE_STEPS = 10


def line_steps(steps: Sequence[StepStatus], limit: int = LINE_STEPS) -> list[StepStatus]:
    """The ``limit`` steps a progress line (or a terminal's table) gives, in the run's order: those at work (busy, or
    with a queue) first."""
    if len(steps) <= limit:
        return list(steps)
    working = [step.name for step in steps if step.busy or step.queue]
    shown = set(working[:limit])
    for step in steps:  # then the others, in order, to fill the line
        if len(shown) >= limit:
            break
        shown.add(step.name)
    return [step for step in steps if step.name in shown]


def progress_line(config: PipelineConfig, status: RunStatus, rates: Mapping[str, float]) -> str:
    """``<state> <elapsed> s[, <total>]: STEP processed=.. failed=.. queue=../.. busy=../.. rate=../s | ...``,
    a step's figures followed by ``workers=2p+1r redelivered=.. restarts=..`` when they have something to say; past
    LINE_STEPS steps, those at work, and how many more there are."""
    parts = []
    shown = line_steps(status.steps)
    for step in shown:
        c = step.counts
        parts.append(f"{step.name} processed={c.processed} failed={c.failed} queue={queue_text(config, step)} "
                     f"busy={step.busy}/{step.workers} rate={rates.get(step.name, 0.0):.1f}/s"
                     f"{_workers_fields(config, step)}")
    if len(shown) < len(status.steps):
        parts.append(f"+{len(status.steps) - len(shown)} more steps")
    total = run_total(status, rates)
    return f"{status.state} {status.elapsed:.1f} s{f', {total}' if total else ''}: " + " | ".join(parts)


def step_mix(config: PipelineConfig, step: StepStatus) -> WorkerMix:
    """Where ``step``'s workers run now (its config says whether it has remote workers only)."""
    return worker_mix(step.workers, step.processes, step.worker_processes, config.steps[step.name].workers == 0)


def _workers_fields(config: PipelineConfig, step: StepStatus) -> str:
    """`` workers=2p+1r redelivered=3 restarts=1``, each only when it says something (after the fields
    that every step has, so that a reader of those finds them where it always did)."""
    mix = step_mix(config, step)
    fields = [] if mix.plain else [f"workers={mix}"]
    fields += [f"{name}={value}" for name, value in (("redelivered", step.redelivered), ("restarts", step.restarts))
               if value]
    return "".join(f" {field}" for field in fields)


def queue_text(config: PipelineConfig, step: StepStatus, number: Callable[[int], str] = str) -> str:
    """The step's queue and its limit; "-" for the producer, which has none. ``number`` writes the
    figures (``abbreviated`` for a narrow column; by default in full)."""
    if config.steps[step.name].kind == "producer":
        return "-"
    return number(step.queue) if step.queue_limit < 0 else f"{number(step.queue)}/{number(step.queue_limit)}"


@dataclass(frozen=True)
class Total:
    """How far a step with a declared total is (the producer), and the time it has left at its rate."""

    step: str
    done: int  # messages processed or failed
    total: int
    eta: float | None  # seconds left at the recent rate; None when it is not moving or is done

    @property
    def percent(self) -> int:
        """Whole percent done, never 100 before the end."""
        return 100 if self.done >= self.total else min(99, self.done * 100 // max(self.total, 1))

    def fraction(self, number: Callable[[int], str] = str) -> str:
        """``600/1000 (60%)``, the figures written by ``number``."""
        return f"{number(self.done)}/{number(self.total)} ({self.percent}%)"

    def text(self, number: Callable[[int], str] = str) -> str:
        """``COUNT 600/1000 (60%), ETA 8 s``, the figures written by ``number``."""
        eta = f", ETA {humanize.duration(self.eta)}" if self.eta is not None else ""
        return f"{self.step} {self.fraction(number)}{eta}"

    def __str__(self) -> str:
        """``COUNT 600/1000 (60%), ETA 8 s``."""
        return self.text()


def step_total(step: str, processed: int, failed: int, total: int, rate: float) -> Total:
    """How far ``step`` is towards its declared ``total``, and its ETA at ``rate`` messages per second
    (the terminal, the log lines and the monitor all say it from here)."""
    done = processed + failed
    eta = (total - done) / rate if rate > 0 and done < total else None
    return Total(step, done, total, eta)


def run_total(status: RunStatus, rates: Mapping[str, float]) -> Total | None:
    """The first step of ``status`` with a declared total, and its ETA (none once it stopped short of it: a run
    draining after Ctrl+C said "ETA 54 h" for what its producer would never make); None if no step has one."""
    for step in status.steps:
        if step.total is not None:
            rate = rates.get(step.name, 0.0) if step.state == "running" else 0.0
            return step_total(step.name, step.counts.processed, step.counts.failed, step.total, rate)
    return None
