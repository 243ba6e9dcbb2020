"""What the monitor shows of a step's workers: threads, worker processes and remote workers (``2p+1r``),
messages redelivered and processes restarted, and on hover each worker process with its liveness.

Everything a peer names (a host, a key) is HTML-escaped here: the hover texts are rich text.
"""

from __future__ import annotations

from html import escape

from pipeline.console import humanize
from pipeline.monitor.workers import WorkerMix, heartbeat, is_late, troubles, worker_mix

from .. import theme
from ..model import StepView
from ..protocol import WorkerProcessInfo

#: Worker processes listed in a hover text at most; the others are counted.
MAX_LISTED = 12
#: The mark of a step whose worker processes died: its messages went round again.
MARK = "\u21bb"


def mix(view: StepView) -> WorkerMix | None:
    """Where the step's workers run now; None before its first status."""
    progress = view.progress
    if progress is None:
        return None
    remote_only = view.info is not None and view.info.workers == 0  # the graph's workers: its config's own
    return worker_mix(progress.workers, progress.processes, progress.worker_processes, remote_only)


def has_processes(view: StepView) -> bool:
    """Whether the step has (or had) worker processes, or lost messages to one: the displays then say more."""
    shown = mix(view)
    progress = view.progress
    return (shown is not None and not shown.plain) or (progress is not None and (
        progress.redelivered > 0 or progress.restarts > 0))


def mix_text(view: StepView) -> str:
    """``2p+1r``; "" while every worker is a thread of the run."""
    shown = mix(view)
    return "" if shown is None or shown.plain else str(shown)


def late(view: StepView) -> bool:
    """Whether one of the step's worker processes is late with its heartbeat."""
    return view.progress is not None and any(is_late(w.silent) for w in view.progress.worker_processes)


def trouble_text(view: StepView) -> str:
    """``3 redelivered, 1 restart``; "" when neither happened."""
    progress = view.progress
    return "" if progress is None else troubles(progress.redelivered, progress.restarts, humanize.count)


def marks(view: StepView) -> list[str]:
    """The graph box's mark, longest first (it shows the first that fits); [] when nothing happened."""
    progress = view.progress
    text = trouble_text(view)
    if progress is None or not text:
        return []
    short = f"{MARK} {humanize.count(progress.redelivered)}" if progress.redelivered > 0 else MARK
    return [f"{MARK} {text}", short, MARK]


def hover(view: StepView) -> str:
    """The rich text (an HTML fragment) shown on hover: the mix in words, redeliveries and restarts, and each worker
    process (kind, pid, host and key of a remote one, threads, heartbeat: amber when late)."""
    shown, progress = mix(view), view.progress
    if shown is None or progress is None:
        return ""
    lines = [f"<b>{escape(view.name)}</b>: {escape(_in_words(shown))}"]
    if trouble := trouble_text(view):
        lines.append(f"<span style='color: {theme.STATE_COLOURS['draining'].name()}'>{escape(trouble)}</span>"
                     " (messages delivered again after their worker process died; processes started to replace"
                     " dead ones)")
    listed = progress.worker_processes[:MAX_LISTED]
    if listed:
        lines.append("<table cellspacing='0' cellpadding='2'>" + "".join(_row(w) for w in listed) + "</table>")
    if len(progress.worker_processes) > len(listed):
        lines.append(f"and {humanize.count(len(progress.worker_processes) - len(listed))} more")
    return "<br>".join(lines)


def _in_words(shown: WorkerMix) -> str:
    """``2 threads of the run, 2 worker processes, 1 remote worker``."""
    parts = [_plural(shown.threads, "thread") + " of the run"] if shown.threads else []
    if shown.processes or shown.in_processes:
        parts.append(_plural(shown.processes, "worker process", "worker processes"))
    if shown.remote:
        parts.append(_plural(shown.remote, "remote worker"))
    return ", ".join(parts) or "no worker now"


def _row(worker: WorkerProcessInfo) -> str:
    """One worker process as a table row; its heartbeat in amber when late."""
    where = f"{worker.key} on {worker.host}" if worker.kind == "remote" else "this host"
    beat = escape(heartbeat(worker.silent))
    if is_late(worker.silent):
        beat = f"<span style='color: {theme.STATE_COLOURS['draining'].name()}'><b>{beat}</b></span>"
    pid = "pid ?" if worker.pid is None else f"pid {worker.pid}"
    cells = (worker.kind, escape(where), pid, _plural(worker.threads, "thread"), beat)
    return "<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>"


def _plural(count: int, noun: str, plural: str | None = None) -> str:
    """``1 thread``, ``2 threads``."""
    return f"{humanize.count(count)} {noun if count == 1 else plural or noun + 's'}"
