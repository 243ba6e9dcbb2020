"""The monitor's wire format, read side: multipart ``[topic, JSON]`` messages parsed into plain values.

This is the only module of the GUI that reads the topics and field names (docs/protocol.md). Anything that
does not match them raises :class:`ProtocolError`; nothing here is ever unpickled or evaluated.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipeline.monitor import messages
from pipeline.status import RUN_STATES, STEP_STATES

#: The protocol versions this monitor reads.
SUPPORTED_VERSIONS = frozenset({1})
#: Topics of the messages a run publishes (the first frame), as the publisher names them.
GRAPH, STATUS, ERROR, FINISH = (topic.encode() for topic in messages.TOPICS)
TOPICS = (GRAPH, STATUS, ERROR, FINISH)
#: A run in one of these states has ended.
ENDED_STATES = ("finished", "failed", "interrupted")


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


@dataclass(frozen=True)
class GraphMessage:
    """The run's steps and their connections."""

    header: Header
    steps: tuple[StepInfo, ...]


@dataclass(frozen=True)
class StepProgress:
    """One step now."""

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
    if len(frames) != 2:
        raise ProtocolError(f"expected 2 frames (topic, JSON), got {len(frames)}")
    topic, body = frames
    topic = bytes(topic)
    if topic not in TOPICS:
        raise ProtocolError(f"unknown topic {topic[:40]!r}")
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise ProtocolError(f"{topic.decode()}: not JSON: {err}") from err
    fields = _Fields(document, topic.decode())
    header = _header(fields)
    if fields.get("topic", str) != topic.decode():
        raise ProtocolError(f"{topic.decode()}: the JSON's topic is {document['topic']!r}")
    return _PARSERS[topic](header, fields)


def _header(fields: _Fields) -> Header:
    version = fields.get("protocol", int)
    if version not in SUPPORTED_VERSIONS:
        raise ProtocolError(f"unsupported protocol version {version} (this monitor reads {sorted(SUPPORTED_VERSIONS)})")
    return Header(version, fields.get("run_id", str), fields.get("pipeline", str), fields.get("host", str),
                  fields.get("pid", int), fields.get("time", float))


def _graph(header: Header, fields: _Fields) -> GraphMessage:
    steps = []
    for step in fields.items("steps"):
        steps.append(StepInfo(step.get("name", str), step.get("class", str), step.get("module", str),
                              tuple(step.strings("next_steps")), step.get("workers", int),
                              step.get("queue_limit", int), step.get("kind", str)))
    return GraphMessage(header, tuple(steps))


def _status(header: Header, fields: _Fields) -> StatusMessage:
    steps = []
    for step in fields.items("steps"):
        steps.append(StepProgress(
            step.get("name", str), step.choice("state", STEP_STATES), step.get("queue", int),
            step.get("queue_limit", int, default=0), step.get("busy", int), step.get("workers", int),
            step.get("received", int), step.get("processed", int), step.get("emitted", int), step.get("failed", int),
            step.get("rate", float, default=None), step.get("mean_time", float),
        ))
    return StatusMessage(header, fields.choice("state", RUN_STATES), fields.get("elapsed", float), tuple(steps),
                         fields.get("dropped", int, default=0))


def _error(header: Header, fields: _Fields) -> ErrorMessage:
    return ErrorMessage(header, fields.get("step", str), fields.get("worker", int),
                        fields.get("seq", int, default=None), fields.get("error", str), fields.get("traceback", str))


def _finish(header: Header, fields: _Fields) -> FinishMessage:
    report = fields.section("report")
    steps = []
    for name, step in report.mapping("steps"):
        counts = step.section("counts")
        steps.append(FinalCounts(name, counts.get("received", int), counts.get("processed", int),
                                 counts.get("emitted", int), counts.get("failed", int),
                                 step.get("first_error", str, default=None), step.get("mean_time", float, default=0.0)))
    return FinishMessage(header, fields.choice("state", ENDED_STATES), fields.get("exit_status", int),
                         report.get("wall_time", float, default=None), tuple(steps),
                         report.get("stop_reason", str, default=None))


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
            value = float(value)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ProtocolError(f"{self.path}.{key}: expected {kind.__name__}, got {value!r:.60}")
        if kind is float and not math.isfinite(value):
            raise ProtocolError(f"{self.path}.{key}: not a finite number")
        return value

    def choice(self, key: str, allowed: Sequence[str]) -> str:
        """A string among ``allowed``."""
        value = self.get(key, str)
        if value not in allowed:
            raise ProtocolError(f"{self.path}.{key}: {value!r} is not one of {', '.join(allowed)}")
        return value

    def strings(self, key: str) -> list[str]:
        """A list of strings."""
        values = self.document.get(key)
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise ProtocolError(f"{self.path}.{key}: expected a list of strings")
        return values

    def section(self, key: str) -> _Fields:
        """A nested object."""
        return _Fields(self.document.get(key), f"{self.path}.{key}")

    def items(self, key: str) -> list[_Fields]:
        """A list of objects."""
        values = self.document.get(key)
        if not isinstance(values, list):
            raise ProtocolError(f"{self.path}.{key}: expected a list")
        return [_Fields(value, f"{self.path}.{key}[{i}]") for i, value in enumerate(values)]

    def mapping(self, key: str) -> list[tuple[str, _Fields]]:
        """An object of objects, as (key, value) pairs in order."""
        values = self.document.get(key)
        if not isinstance(values, Mapping):
            raise ProtocolError(f"{self.path}.{key}: expected an object")
        return [(name, _Fields(value, f"{self.path}.{key}.{name}")) for name, value in values.items()]
