"""The monitor's wire format, read side: multipart ``[topic, JSON]`` messages parsed into plain values.

This is the only module of the GUI that reads the topics and field names (docs/protocol.md). Anything that
does not match them raises :class:`ProtocolError`; nothing here is ever unpickled or evaluated.

Every message is bounded before the window holds it: a step list, a list of a step's worker processes
or a name (of a step, a host, a key...) longer than its cap, or an integer beyond 64 bits, makes the
message a ProtocolError (so it is dropped, and counted); a traceback or an error line longer than its
cap is shortened, since the rest of the message is sound. Counts a display adds up or compares (worker
processes' threads, their seconds of silence) are clamped to what a run can send, a negative count is
read as 0, and a rate is clamped to what the monitor shows (:func:`clamp_rate`): a peer's 1.7e308 or
5e-324 once broke the throughput plot's scale.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.console import humanize
from pipeline.errors import printable
from pipeline.execution.status import RUN_STATES, STEP_STATES
from pipeline.monitor import messages

#: The protocol versions this monitor reads.
SUPPORTED_VERSIONS = frozenset({1})
#: Topics of the messages a run publishes (the first frame), as the publisher names them.
GRAPH, STATUS, ERROR, FINISH = (topic.encode() for topic in messages.TOPICS)
TOPICS = (GRAPH, STATUS, ERROR, FINISH)
#: A run in one of these states has ended.
ENDED_STATES = ("finished", "failed", "interrupted")
#: Steps a run may have (in a graph, a status or a report), as the run's side knows it.
MAX_STEPS = messages.MAX_STEPS
#: Characters in a name (of a step, class, module, pipeline, host or run id) or a state, at most.
MAX_NAME = messages.MAX_NAME
#: Characters of a traceback kept (its start and its end); a run sends at most 32,000.
MAX_TRACEBACK = 16_000
#: Characters of an error's line kept.
MAX_ERROR_LINE = 1_000
#: Worker processes a step may list (its own and remote ones); a step of 1000 processes is a big cluster.
MAX_WORKER_PROCESSES = 1000
#: Where a worker process runs: started by the run, or joined from another host.
WORKER_KINDS = ("process", "remote")
#: A worker process's threads are shown as at most this many (a run's threads are bounded by its config).
MAX_THREADS = 10_000
#: Seconds of a worker process's silence kept (a day: the run declares it dead long before).
MAX_SILENCE = 86_400.0
#: The frames of every message: its topic and its JSON.
FRAMES = 2
#: Integers beyond 64 bits are no count or time a run sends.
_INT_LIMIT = 2**63
#: Digits of the longest integer within 64 bits.
_INT_DIGITS = len(str(_INT_LIMIT))


def clamp_rate(value: float) -> float:
    """A rate (messages per second) as the monitor keeps it: within 0 to humanize.MAX_RATE, a subnormal one 0."""
    # A subnormal rate is no rate a run measures, and arithmetic on it underflows to 0 (log10(0) raised).
    return 0.0 if value < sys.float_info.min else min(value, humanize.MAX_RATE)


class ProtocolError(ValueError):
    """A message that is not a monitor message of a supported protocol version."""


@dataclass(frozen=True)
class Header:
    """What every message carries: which run sent it, from where, and when."""

    protocol: int
    run_id: str
    pipeline: str
    host: str
    pid: int
    time: float  # the sender's clock, seconds since the epoch


@dataclass(frozen=True)
class StepInfo:
    """One step of the run's graph."""

    name: str
    class_name: str
    module: str
    next_steps: tuple[str, ...]
    workers: int
    queue_limit: int  # -1: unbounded
    kind: str  # producer, stager or consumer
    on_error: str = "stop"  # stop: its first failed message stops the run


@dataclass(frozen=True)
class GraphMessage:
    """The run's steps and their connections."""

    header: Header
    steps: tuple[StepInfo, ...]


@dataclass(frozen=True)
class WorkerProcessInfo:
    """One worker process of a step: the run's own (``process``) or joined from another host (``remote``)."""

    slot: int  # its number in the run
    kind: str  # one of WORKER_KINDS
    pid: int | None  # its process id on its host
    host: str  # where a remote worker connected from ("" for the run's own)
    key: str  # the name of the key a remote worker proved ("" for the run's own)
    threads: int  # 1 to MAX_THREADS
    silent: float  # seconds since its last heartbeat, 0 to MAX_SILENCE


@dataclass(frozen=True)
class StepProgress:
    """One step now (the fields with defaults are absent from older runs' statuses)."""

    name: str
    state: str
    queue: int
    queue_limit: int
    busy: int
    workers: int
    received: int
    processed: int
    emitted: int
    failed: int
    rate: float | None  # messages per second, as the publisher measured it; None: not sent
    mean_time: float  # seconds per message in run()
    processes: int = 0  # worker processes its config asks for (nb_process; 0: threads of the run)
    redelivered: int = 0  # messages delivered again after their worker process died
    restarts: int = 0  # worker processes started to replace dead ones
    worker_processes: tuple[WorkerProcessInfo, ...] = ()  # its live worker processes, local and remote
    total: int | None = None  # the messages it will process in all, if known (the producer's declared length)


@dataclass(frozen=True)
class StatusMessage:
    """The run now."""

    header: Header
    state: str
    elapsed: float
    steps: tuple[StepProgress, ...]
    dropped: int  # messages the sender dropped because this monitor did not keep up


@dataclass(frozen=True)
class ErrorMessage:
    """One failure in a step."""

    header: Header
    step: str
    worker: int
    seq: int | None  # None: init(), finish() or the producer's generator
    error: str
    traceback: str


@dataclass(frozen=True)
class FinalCounts:
    """One step's counts at the end of the run."""

    name: str
    received: int
    processed: int
    emitted: int
    failed: int
    first_error: str | None
    mean_time: float  # seconds per message in run()
    redelivered: int = 0  # messages delivered again after their worker process died
    restarts: int = 0  # worker processes started to replace dead ones


@dataclass(frozen=True)
class FinishMessage:
    """The run's final report."""

    header: Header
    state: str  # finished, failed or interrupted
    exit_status: int
    elapsed: float | None  # the run's wall time, seconds
    steps: tuple[FinalCounts, ...]
    stop_reason: str | None


Message = GraphMessage | StatusMessage | ErrorMessage | FinishMessage


def parse(frames: Sequence[bytes]) -> Message:
    """The message that ``frames`` (``[topic, JSON]``) hold; a ProtocolError if they hold none."""
    if len(frames) != FRAMES:
        raise ProtocolError(f"expected {FRAMES} frames (topic, JSON), got {len(frames)}")
    topic, body = frames
    topic = bytes(topic)
    if topic not in TOPICS:
        raise ProtocolError(f"unknown topic {topic[:40]!r}")
    try:
        document = json.loads(body, parse_int=_integer)
    except (ValueError, RecursionError) as err:  # ValueError: whatever json refuses (bytes, syntax, a number)
        raise ProtocolError(f"{topic.decode()}: not JSON: {err}") from err
    fields = _Fields(document, topic.decode())
    header = _header(fields)
    if fields.get("topic", str) != topic.decode():
        raise ProtocolError(f"{topic.decode()}: the JSON's topic is {document['topic']!r}")
    return _PARSERS[topic](header, fields)


def _integer(digits: str) -> int:
    """An integer of the JSON (json.loads's parse_int). One with more digits than 64 bits hold reads as the first
    integer beyond them, which its field refuses by name: int() raises a plain ValueError past 4,300 digits."""
    if len(digits.lstrip("-")) > _INT_DIGITS:
        return -_INT_LIMIT - 1 if digits.startswith("-") else _INT_LIMIT
    return int(digits)


def _header(fields: _Fields) -> Header:
    version = fields.get("protocol", int)
    if version not in SUPPORTED_VERSIONS:
        raise ProtocolError(f"unsupported protocol version {version} (this monitor reads {sorted(SUPPORTED_VERSIONS)})")
    return Header(version, fields.name("run_id"), fields.name("pipeline"), fields.name("host"),
                  fields.get("pid", int), fields.get("time", float))


def _graph(header: Header, fields: _Fields) -> GraphMessage:
    steps = []
    for step in fields.items("steps"):
        steps.append(StepInfo(step.name("name"), step.name("class"), step.name("module"),
                              tuple(step.names("next_steps")), step.count("workers"),
                              step.get("queue_limit", int), step.name("kind"),
                              step.name("on_error", default="stop")))
    return GraphMessage(header, tuple(steps))


def _status(header: Header, fields: _Fields) -> StatusMessage:
    steps = []
    for step in fields.items("steps"):
        steps.append(StepProgress(
            step.name("name"), step.choice("state", STEP_STATES), step.count("queue"),
            step.get("queue_limit", int, default=0), step.count("busy"), step.count("workers"),
            step.count("received"), step.count("processed"), step.count("emitted"), step.count("failed"),
            _rate(step), step.get("mean_time", float),
            processes=step.count("processes", default=0), redelivered=step.count("redelivered", default=0),
            restarts=step.count("restarts", default=0), total=_total(step),
            worker_processes=tuple(_worker_process(w) for w in step.items("worker_processes", MAX_WORKER_PROCESSES,
                                                                             default=()))
        ))
    return StatusMessage(header, fields.choice("state", RUN_STATES), fields.get("elapsed", float), tuple(steps),
                         fields.count("dropped", default=0))


def _rate(fields: _Fields) -> float | None:
    """A step's rate, clamped (:func:`clamp_rate`); None if absent."""
    rate = fields.get("rate", float, default=None)
    return None if rate is None else clamp_rate(rate)


def _total(fields: _Fields) -> int | None:
    """A step's declared total; None if absent (or negative: no length a producer can declare)."""
    total = fields.get("total", int, default=None)
    return total if total is not None and total >= 0 else None


def _worker_process(fields: _Fields) -> WorkerProcessInfo:
    return WorkerProcessInfo(fields.get("slot", int), fields.choice("kind", WORKER_KINDS),
                             fields.get("pid", int, default=None), fields.name("host", default=""),
                             fields.name("key", default=""), min(max(1, fields.get("threads", int)), MAX_THREADS),
                             min(max(0.0, fields.get("silent", float)), MAX_SILENCE))


def _error(header: Header, fields: _Fields) -> ErrorMessage:
    return ErrorMessage(header, fields.name("step"), fields.get("worker", int), fields.get("seq", int, default=None),
                        fields.text("error", MAX_ERROR_LINE), fields.text("traceback", MAX_TRACEBACK))


def _finish(header: Header, fields: _Fields) -> FinishMessage:
    report = fields.section("report")
    steps = []
    for name, step in report.mapping("steps"):
        counts = step.section("counts")
        steps.append(FinalCounts(name, counts.count("received"), counts.count("processed"),
                                 counts.count("emitted"), counts.count("failed"),
                                 step.text("first_error", MAX_ERROR_LINE, default=None),
                                 step.get("mean_time", float, default=0.0), step.count("redelivered", default=0),
                                 step.count("restarts", default=0)))
    return FinishMessage(header, fields.choice("state", ENDED_STATES), fields.get("exit_status", int),
                         report.get("wall_time", float, default=None), tuple(steps),
                         report.text("stop_reason", MAX_ERROR_LINE, default=None))


_PARSERS = {GRAPH: _graph, STATUS: _status, ERROR: _error, FINISH: _finish}
_MISSING = object()


class _Fields:
    """Typed reads from one JSON object, each failure a ProtocolError naming the field's path."""

    def __init__(self, document: Any, path: str) -> None:
        if not isinstance(document, Mapping):
            raise ProtocolError(f"{path}: expected a JSON object, got {type(document).__name__}")
        self.document = document
        self.path = path

    def get(self, key: str, kind: type, default: Any = _MISSING) -> Any:
        """The value of ``key`` as ``kind`` (int, float or str); ``default`` if absent or null, when given."""
        value = self.document.get(key)
        if value is None:
            if default is _MISSING:
                raise ProtocolError(f"{self.path}.{key}: missing")
            return default
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            if not -_INT_LIMIT <= value < _INT_LIMIT:  # float() of a longer one overflows, or loses it
                raise ProtocolError(f"{self.path}.{key}: a number beyond 64 bits")
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ProtocolError(f"{self.path}.{key}: expected {kind.__name__}, got {value!r:.60}")
        if kind is float and not math.isfinite(value):
            raise ProtocolError(f"{self.path}.{key}: not a finite number")
        if kind is int and not -_INT_LIMIT <= value < _INT_LIMIT:
            raise ProtocolError(f"{self.path}.{key}: an integer beyond 64 bits")
        return value

    def count(self, key: str, default: Any = _MISSING) -> Any:
        """A count (of messages, workers...): an integer, a negative one read as 0 (no count a run sends)."""
        value = self.get(key, int, default)
        return max(0, value) if isinstance(value, int) else value

    def name(self, key: str, default: Any = _MISSING) -> Any:
        """A string of at most MAX_NAME characters."""
        value = self.get(key, str, default)
        if isinstance(value, str) and len(value) > MAX_NAME:
            raise ProtocolError(f"{self.path}.{key}: longer than {MAX_NAME} characters")
        return value

    def text(self, key: str, limit: int, default: Any = _MISSING) -> Any:
        """A string, shortened to ``limit`` characters (its start and its end)."""
        value = self.get(key, str, default)
        return humanize.shorten(value, limit) if isinstance(value, str) else value

    def choice(self, key: str, allowed: Sequence[str]) -> str:
        """A string among ``allowed``."""
        value = self.get(key, str)
        if value not in allowed:
            raise ProtocolError(f"{self.path}.{key}: {value!r} is not one of {', '.join(allowed)}")
        return value

    def names(self, key: str) -> list[str]:
        """A list of at most MAX_STEPS names."""
        values = self.document.get(key)
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ProtocolError(f"{self.path}.{key}: expected a list of strings")
        if len(values) > MAX_STEPS or any(len(v) > MAX_NAME for v in values):
            raise ProtocolError(f"{self.path}.{key}: more than {MAX_STEPS} names, or a name too long")
        return values

    def section(self, key: str) -> _Fields:
        """A nested object."""
        return _Fields(self.document.get(key), f"{self.path}.{key}")

    def items(self, key: str, limit: int = MAX_STEPS, default: Any = _MISSING) -> list[_Fields]:
        """A list of at most ``limit`` objects; ``default`` if absent or null, when given."""
        values = self.document.get(key)
        if values is None and default is not _MISSING:
            return list(default)
        if not isinstance(values, list):
            raise ProtocolError(f"{self.path}.{key}: expected a list")
        if len(values) > limit:
            raise ProtocolError(f"{self.path}.{key}: more than {limit} items")
        return [_Fields(value, f"{self.path}.{key}[{i}]") for i, value in enumerate(values)]

    def mapping(self, key: str) -> list[tuple[str, _Fields]]:
        """An object of at most MAX_STEPS objects, as (key, value) pairs in order."""
        values = self.document.get(key)
        if not isinstance(values, Mapping):
            raise ProtocolError(f"{self.path}.{key}: expected an object")
        if len(values) > MAX_STEPS or any(len(name) > MAX_NAME for name in values):
            raise ProtocolError(f"{self.path}.{key}: more than {MAX_STEPS} steps, or a name too long")
        # A peer's name, in the lines that say what was wrong: as text, never a terminal's command or a line of its own
        return [(name, _Fields(value, f"{self.path}.{key}.{printable(name)}")) for name, value in values.items()]
