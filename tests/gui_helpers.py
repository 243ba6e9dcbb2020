"""A real run's monitor stream, recorded, for the GUI tests; ``python -m tests.gui_helpers`` records it again.

The recorded run: COUNT (Counter, 600 numbers) -> CHECK (FailEvery: every 50th raises, on_error=skip,
2 workers, 5 ms each) -> WRITE (JsonLinesWriter), with allow_failures, so it finishes with exit 0
after 12 errors. Each line of the recording is one message's frames: ``[topic, JSON text]``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from types import TracebackType
from typing import Any

import zmq

from gui.protocol import ProtocolError, parse
from tests.cli_helpers import ROOT

RECORDING = ROOT / "tests" / "data" / "gui_stream.ndjson"
#: The recorded run's final counts: step -> (received, processed, emitted, failed).
FINAL_COUNTS = {"COUNT": (0, 600, 600, 0), "CHECK": (600, 588, 588, 12), "WRITE": (588, 588, 0, 0)}
#: Seconds a recording may take.
RECORD_TIMEOUT = 60.0


def recorded_config(output: Path) -> dict:
    """The config of the recorded run, writing its output to ``output``."""
    return {
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "COUNT", "module": "algorithms.basic", "class": "Counter",
                              "next_steps": "CHECK"},
            "stagers_conf": [
                {"name": "CHECK", "module": "tests.failure_steps", "class": "FailEvery", "nb_thread": 2,
                 "on_error": "skip", "next_steps": "WRITE"}
            ],
            "consumer_conf": {"name": "WRITE", "module": "algorithms.basic", "class": "JsonLinesWriter"},
        },
        "Counter": {"count": 600},
        "FailEvery": {"every": 50, "delay": 0.005},
        "JsonLinesWriter": {"path": str(output)},
    }


def load_recording(path: Path = RECORDING) -> list[list[bytes]]:
    """The recorded messages, as frames."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [[frame.encode() for frame in json.loads(line)] for line in lines]


class Sender:
    """A run's side of the stream, for tests: a PUB socket connected to a monitor window.

    A PUB that connects drops what it sends until the monitor's subscription has reached it, and
    nothing tells when (an XPUB that connects reports the subscription only once it sends). So the
    first ``send`` repeats a message that a run repeats anyway (its graph, else a status) until the
    window has read one; ZeroMQ keeps the order of what follows.
    """

    def __init__(self, window: Any, timeout_ms: int = 10_000) -> None:
        self.window = window
        self.timeout_ms = timeout_ms
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.PUB)
        self.socket.linger = 1000
        self.socket.sndhwm = 0  # a test's burst is queued here, never dropped
        self.socket.connect(window.address)
        self.connected = False

    def send(self, qtbot: Any, messages: list[list[bytes]]) -> None:
        """Send ``messages``, after the first call's probes."""
        if not self.connected:
            repeatable = [m for m in messages if m[0] in (b"graph", b"status") and valid(m)]
            probe = next((m for m in repeatable if m[0] == b"graph"), repeatable[0])
            receiver = self.window.receiver
            before = receiver.count

            def delivered() -> bool:
                if receiver.count > before:
                    return True
                self.socket.send_multipart(probe)
                return False

            qtbot.waitUntil(delivered, timeout=self.timeout_ms)
            self.connected = True
        for frames in messages:
            self.socket.send_multipart(frames)

    def close(self) -> None:
        """Close the socket (its messages get a second to leave) and the context."""
        self.socket.close()
        self.context.term()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()


def valid(frames: list[bytes]) -> bool:
    """Whether the monitor reads ``frames`` as a message."""
    try:
        parse(frames)
    except ProtocolError:
        return False
    return True


def with_run_id(messages: Iterable[list[bytes]], run_id: str) -> list[list[bytes]]:
    """The messages, as if another run (``run_id``) had sent them."""
    changed = []
    for topic, body in messages:
        document = json.loads(body)
        document["run_id"] = run_id
        changed.append([topic, json.dumps(document).encode()])
    return changed


def record(path: Path = RECORDING) -> int:
    """Run the recorded pipeline against a SUB socket and write its messages to ``path``; return their number."""
    context = zmq.Context()
    sub = context.socket(zmq.SUB)
    sub.linger = 0
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    frames: list[list[bytes]] = []
    try:
        port = sub.bind_to_random_port("tcp://127.0.0.1")
        with tempfile.TemporaryDirectory() as tmp:
            config = Path(tmp) / "recorded.json"
            config.write_text(json.dumps(recorded_config(Path(tmp) / "out.jsonl")), encoding="utf-8")
            log = Path(tmp) / "stderr.txt"
            with log.open("w", encoding="utf-8") as stderr:
                run = subprocess.Popen(
                    [sys.executable, "-m", "pipeline", f"--config={config}", "--no-progress",
                     f"--Pipeline.gui_address=127.0.0.1:{port}", "--Pipeline.allow_failures=True"],
                    cwd=ROOT, stderr=stderr,
                )
                deadline = time.monotonic() + RECORD_TIMEOUT
                while time.monotonic() < deadline and not (frames and frames[-1][0] == b"finish"):
                    if sub.poll(200):
                        frames.append(sub.recv_multipart())
                status = run.wait(RECORD_TIMEOUT)
            if status != 0 or not frames or frames[-1][0] != b"finish":
                raise RuntimeError(f"the recorded run exited {status} after {len(frames)} messages:\n"
                                   + log.read_text(encoding="utf-8")[-2000:])
    finally:
        sub.close()
        context.term()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps([f.decode() for f in message]) + "\n" for message in frames), encoding="utf-8")
    return len(frames)


if __name__ == "__main__":
    print(f"{record()} messages recorded in {RECORDING}")
