"""Dead letters: failed messages written to a JSON-lines file, to inspect and to replay.

Each line is one failed message::

    {"step": "CALIB", "worker": 1, "seq": 17, "time": 1763780000.0,
     "error": "ValueError: ...", "traceback": "Traceback ...",
     "pickle": "<base64 of the protocol-5 pickle>", "buffers": ["<base64>", ...]}

``pipeline-run --replay FILE --config x.json`` sends each message again to the step that failed.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any, TextIO

from traitlets import Unicode

from .component import Component
from .errors import ConfigError
from .message import Encoded, decode
from .step import failure_line, traceback_text


class DeadLetterWriter:
    """Appends failed messages to a JSON-lines file (created empty when the run starts)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._file: TextIO = open(path, "w", encoding="utf-8")  # noqa: SIM115 (closed by close())

    def write(self, step: str, worker: int, seq: int, error: BaseException, message: Encoded | None) -> None:
        """Record one failed message (``message`` None: a failure with no input, such as a producer's)."""
        record: dict[str, Any] = {
            "step": step,
            "worker": worker,
            "seq": seq,
            "time": time.time(),
            "error": failure_line(error),
            "traceback": traceback_text(error),
        }
        if message is not None:
            record["pickle"] = _b64(message.inband)
            record["buffers"] = [_b64(buffer) for buffer in message.buffers]
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        self._file.close()


def _b64(buffer: Any) -> str:
    return base64.b64encode(memoryview(buffer)).decode("ascii")


def read_dead_letters(path: str) -> Iterator[tuple[str, Any]]:
    """Each replayable record of a dead-letter file as (step name, message)."""
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            try:
                record = json.loads(line)
                if "pickle" not in record:
                    continue  # a failure without an input message: nothing to replay
                buffers = [base64.b64decode(b) for b in record.get("buffers", [])]
                yield record["step"], decode(base64.b64decode(record["pickle"]), buffers)
            except (ValueError, KeyError, TypeError) as err:
                raise ConfigError(path, f"line {number}", f"not a dead-letter record: {err}") from None


def failed_steps(path: str) -> list[str]:
    """The steps that have replayable messages in a dead-letter file, in order of first appearance."""
    try:
        return list(dict.fromkeys(step for step, _ in read_dead_letters(path)))
    except OSError as err:
        raise ConfigError(path, "", f"cannot read the dead-letter file: {err.strerror}") from None


class DeadLetterReplay(Component):
    """Producer: sends each message of a dead-letter file again to the step where it failed."""

    path = Unicode(help="The dead-letter file to replay.").tag(config=True)

    def run(self) -> Iterator[None]:
        """Send every recorded message to its step."""
        for step, message in read_dead_letters(self.path):
            self.send_msg(message, step)
            yield None

