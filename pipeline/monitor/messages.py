"""The monitor's wire format, send side: multipart ``[topic, JSON]`` messages (docs/protocol.md).

This is the one module that knows the topics and the fields. JSON only, never pickle: a GUI on
another host reads the stream without trusting it. Every message carries the same envelope (the
protocol version, the run's id, the pipeline, the host, the process and the time); the bodies
are built from the run's config, its live status, its errors and its final report.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.config.model import PipelineConfig
from pipeline.console.humanize import shorten, utf8_text
from pipeline.execution.report import RunReport
from pipeline.execution.status import RunStatus
from pipeline.failures.describe import summary_error
from pipeline.failures.policy import ErrorEvent

#: The version every message carries in ``protocol``; it changes when a field changes meaning or goes.
PROTOCOL_VERSION = 1
#: Steps of a run a monitor takes, in a graph, a status or a report (pipeline-gui refuses a message of more: a run
#: of more is not shown, which its monitor says at its start); 50 is a big pipeline.
MAX_STEPS = 200
#: Characters of a name (of the pipeline, its host, a step's class or module) a monitor takes (pipeline-gui refuses a
#: message with a longer one): a longer one is sent with its middle cut. Step names are no longer (config.traits).
MAX_NAME = 200
#: The topics, the first frame of each message.
GRAPH, STATUS, ERROR, FINISH = "graph", "status", "error", "finish"
TOPICS = (GRAPH, STATUS, ERROR, FINISH)
#: Characters of a traceback sent at most (its start and its end), so that a message stays far below
#: the monitor's size limit (gui/receiver.py MAX_FRAME_SIZE) whatever a message's repr holds.
TRACEBACK_CHARS = 32_000
#: Characters of an error's one line sent at most.
ERROR_CHARS = 2_000
#: The JSON Schema of every message (the second frame).
SCHEMA_PATH = Path(__file__).with_name("protocol.schema.json")


@dataclass(frozen=True)
class Envelope:
    """What every message of one run carries."""

    run_id: str  # unique per run
    pipeline: str  # the config's name (its file's stem)
    config: str  # the config's file, or "<config>" for a config given as a dict
    host: str
    pid: int

    @classmethod
    def for_run(cls, config: PipelineConfig) -> Envelope:
        """A new envelope, with a fresh run id, for a run of ``config`` in this process."""
        return cls(uuid.uuid4().hex, name_field(config.name), config.source, name_field(socket.gethostname()),
                   os.getpid())

    def message(self, topic: str, serial: int, body: Mapping[str, Any], now: float | None = None) -> dict[str, Any]:
        """The whole message: the envelope, the topic, its number in the run ``serial`` and ``body``."""
        return {"protocol": PROTOCOL_VERSION, "topic": topic, "run_id": self.run_id, "pipeline": self.pipeline,
                "config": self.config, "host": self.host, "pid": self.pid,
                "time": time.time() if now is None else now, "serial": serial, **body}


def graph_body(config: PipelineConfig) -> dict[str, Any]:
    """The steps of the run and where each sends its outputs."""
    return {"steps": [
        {"name": step.name, "class": name_field(step.class_name), "module": name_field(step.module), "kind": step.kind,
         "next_steps": list(step.next_steps), "workers": step.workers, "queue_limit": step.queue_limit,
         "ordered": step.ordered, "on_error": step.on_error}
        for step in config.steps.values()
    ]}


def name_field(name: str) -> str:
    """``name`` as a monitor takes it: its middle cut if it is longer than MAX_NAME (a config file's stem of 210
    characters hid its run from pipeline-gui, which refused every message of it)."""
    return shorten(name, MAX_NAME, " ")


def status_body(status: RunStatus, rates: Mapping[str, float], dropped: int, state: str | None = None) -> dict:
    """The run now; ``state`` replaces the runner's own at the end (finished, failed or interrupted)."""
    steps = []
    for step in status.steps:
        values = step.as_dict()
        values["rate"] = rates.get(step.name, 0.0)
        steps.append(values)
    return {"state": state or status.state, "elapsed": status.elapsed, "dropped": dropped, "steps": steps}


def error_body(event: ErrorEvent) -> dict[str, Any]:
    """One error in a step's code, with its traceback."""
    return {"step": event.step, "worker": event.worker, "seq": event.seq,
            "error": summary_error(event.error, ERROR_CHARS), "traceback": shorten(event.traceback, TRACEBACK_CHARS)}


def finish_body(report: RunReport) -> dict[str, Any]:
    """The run's final report and exit status."""
    return {"state": report.state, "exit_status": report.exit_status, "report": report.as_dict()}


def encode(message: Mapping[str, Any]) -> list[bytes]:
    """The frames of ``message``: its topic and its JSON (NaN and infinities sent as null)."""
    return [message["topic"].encode(), json.dumps(_sendable(message), allow_nan=False,
                                                  separators=(",", ":")).encode()]


def decode(frames: Sequence[bytes]) -> tuple[str, dict[str, Any]]:
    """The topic and the JSON object of a message's frames (no check against the schema)."""
    if len(frames) != 2:
        raise ValueError(f"expected 2 frames (topic, JSON), got {len(frames)}")
    return bytes(frames[0]).decode(), json.loads(frames[1])


def schema() -> dict[str, Any]:
    """The JSON Schema of the messages."""
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


def _sendable(value: Any) -> Any:
    """``value`` with every NaN or infinite float replaced by None (JSON has no such numbers), and every lone
    surrogate of a string written out (utf8_text): JSON would send ``\\udcff`` of a config's path or an error's
    words as an escape that no valid text holds, which pipeline-gui showed cut there (Qt drops the rest)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return utf8_text(value)
    if isinstance(value, Mapping):
        return {key: _sendable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_sendable(item) for item in value]
    return value
