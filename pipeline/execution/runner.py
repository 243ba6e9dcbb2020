"""The interface every runner offers: what ``Pipeline`` and the monitor may ask of a run in any mode."""

from __future__ import annotations

from typing import Protocol

from pipeline.execution.report import RunReport
from pipeline.execution.status import RunStatus
from pipeline.failures.policy import FailurePolicy


class Runner(Protocol):
    """Runs one pipeline once; the monitor reads its ``snapshot()`` from another thread while it runs."""

    policy: FailurePolicy

    def run(self) -> RunReport:
        """Run to the end of the stream; the report holds the counts, the times and the exit status."""
        ...

    def stop(self, signal: int | None = None) -> None:
        """Stop taking input; what is in flight drains (``signal``: the one that asked, for the exit status)."""
        ...

    def abort(self) -> None:
        """Stop at once, leaving busy steps behind."""
        ...

    def discard(self) -> None:
        """Give back what it still holds once it ran, or could not (its monitor could not start); once is enough."""
        ...

    def snapshot(self) -> RunStatus:
        """The run now: plain values, read without locks."""
        ...

    def busy(self) -> list[str]:
        """The steps and workers inside their code now, in words."""
        ...

    def report_now(self) -> RunReport:
        """The report as the run stands, from another thread: a running run's (its busy workers named, its messages
        in flight not taken for lost); pipeline-run's last resort makes it a given-up one (report.given_up)."""
        ...
