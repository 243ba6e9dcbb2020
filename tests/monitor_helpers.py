"""The monitor tests' gated runs, and a real SUB socket that reads their stream and checks each message."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import zmq

from pipeline.monitor.messages import decode, schema
from tests.cli_helpers import ROOT

#: Checks a message against the stream's JSON schema (docs/protocol.md).
VALIDATOR = jsonschema.Draft202012Validator(schema())
#: Seconds any wait of the monitor tests may take before it fails.
WAIT = 20.0


def document(tag: str, count: int = 30, before: int = 0, every: int = 5,
             producer: str = "GatedCounter") -> dict[str, Any]:
    """SOURCE (a gated counter) -> STAGE (fails on multiples of ``every``, skips them) -> SINK."""
    return {
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "SOURCE", "module": "tests.monitor_steps", "class": producer,
                              "next_steps": "STAGE"},
            "stagers_conf": [{"name": "STAGE", "module": "tests.failure_steps", "class": "FailEvery", "nb_thread": 2,
                              "queue_limit": 8, "on_error": "skip", "next_steps": "SINK"}],
            "consumer_conf": {"name": "SINK", "module": "algorithms.basic", "class": "PassThrough"},
        },
        producer: {"count": count, "before": before, "tag": tag},
        "FailEvery": {"every": every},
    }


#: The messages a Subscriber read: topic and JSON of each.
Received = list[tuple[str, dict[str, Any]]]


def _no_constant(name: str) -> Any:
    raise AssertionError(f"JSON with {name}")


def checked(frames: list[bytes]) -> tuple[str, dict[str, Any]]:
    """The topic and JSON of a message, once it is valid: two frames, valid JSON (no NaN), the schema."""
    assert len(frames) == 2
    json.loads(frames[1], parse_constant=_no_constant)
    topic, message = decode(frames)
    VALIDATOR.validate(message)
    assert message["topic"] == topic
    return topic, message


class Subscriber:
    """A SUB socket bound on a loopback port, as the GUI binds it; it checks every message it reads."""

    def __init__(self, port: int | None = None) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.SUB)
        self.socket.linger = 0
        self.socket.subscribe(b"")
        if port is None:
            self.port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        else:
            self.socket.bind(f"tcp://127.0.0.1:{port}")
            self.port = port
        self.messages: Received = []

    @property
    def address(self) -> str:
        """Where a run publishes to reach it: ``127.0.0.1:PORT``."""
        return f"127.0.0.1:{self.port}"

    def receive_until(self, done: Callable[[Received], bool], timeout: float = WAIT) -> Received:
        """Read messages until ``done(messages)``; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while not done(self.messages):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"timed out; received {[topic for topic, _ in self.messages]}")
            if self.socket.poll(int(min(remaining, 0.5) * 1000)):
                self.messages.append(checked(self.socket.recv_multipart()))
        return self.messages

    def close(self) -> None:
        """Close the socket and its context."""
        self.socket.close()
        self.context.term()


def has(topic: str, count: int = 1) -> Callable[[Received], bool]:
    """A condition for Subscriber.receive_until: ``count`` messages of ``topic`` were read."""
    return lambda messages: sum(t == topic for t, _ in messages) >= count


def of(messages: Received, topic: str) -> list[dict[str, Any]]:
    """The JSON of the messages of ``topic``, in the order they came."""
    return [message for t, message in messages if t == topic]


def gated_run(path: Path, subscriber: Subscriber, ready: Callable[[dict], bool],
              mark: str) -> tuple[int, str, list[str], list, int]:
    """Run pipeline-run on ``path`` (a StdinGatedCounter config) publishing to ``subscriber``; open its gate
    once a status is ``ready`` and a stderr line holds ``mark``; its exit status, stdout, stderr lines and
    the messages published, and its pid."""
    child = subprocess.Popen(
        [sys.executable, "-m", "pipeline", f"--config={path}", f"--Pipeline.gui_address={subscriber.address}",
         "--Pipeline.gui_plaintext=True", "--Pipeline.progress_interval=0.1", "--Pipeline.allow_failures=True"],
        cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue[str | None] = queue.Queue()
    reader = threading.Thread(target=lambda: [*map(lines.put, child.stderr), lines.put(None)])  # type: ignore[arg-type]
    reader.start()
    stderr: list[str] = []
    try:
        subscriber.receive_until(lambda received: any(ready(m) for m in of(received, "status")))
        deadline = time.monotonic() + WAIT
        while not any(mark in line for line in stderr):
            line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            assert line is not None, "pipeline-run ended early:\n" + "".join(stderr)
            stderr.append(line)
        assert child.stdin is not None
        child.stdin.write("go\n")
        child.stdin.close()
        messages = subscriber.receive_until(has("finish"))
        child.wait(WAIT)
    finally:
        child.kill()
        reader.join(WAIT)
        child.wait(WAIT)
    assert child.stdout is not None
    stdout = child.stdout.read()
    child.stdout.close()
    child.stderr.close()  # type: ignore[union-attr]
    while (line := lines.get(timeout=WAIT)) is not None:
        stderr.append(line)
    return child.returncode, stdout, stderr, messages, child.pid
