"""Dead letters: failed messages written to a JSON-lines file, to inspect and to replay.

Each line is one failed message::

    {"step": "CALIB", "worker": 1, "seq": 17, "time": 1763780000.0,
     "error": "ValueError: ...", "traceback": "Traceback ...",
     "pickle": "<base64 of the protocol-5 pickle>", "buffers": ["<base64>", ...]}

and, for a message whose run() failed after some of its outputs went on (in chunks, see
execution.executor), ``"delivered": N``: its replay drops the first N outputs the step makes again.

The file is created readable by its owner only (0600): it holds the messages themselves.

``pipeline-run --replay FILE --config x.json`` sends each message again to the step that failed.
Reading the file for the replay's graph (``read_records``) never unpickles; the messages are
unpickled once, by ``load_messages``, when the replay is about to run, so that a record that cannot
be loaded (its class renamed, its module gone) is a ConfigError before any step runs.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import errno
import json
import os
import stat
import sys
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from traitlets import Unicode

from pipeline.component import Component
from pipeline.config.graph import reachable
from pipeline.config.model import PipelineConfig, StepConfig
from pipeline.errors import ConfigError
from pipeline.failures.describe import failure_line, traceback_text
from pipeline.message import Encoded, Resume, decode

#: The key that names the dead-letter file in ConfigErrors.
OPTION = "Pipeline.dead_letter"


class DeadLetterWriter:
    """Appends failed messages to a JSON-lines file (created empty, mode 0600, when the run starts)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.records = 0  # records written so far
        # Emptied only once it is known to be a regular file that can be made private: a device (/dev/null), a FIFO
        # (O_NONBLOCK: opening one waits for a reader) or another user's file is refused as it was, its mode unchanged.
        not_regular = ConfigError(path, OPTION, "not a regular file (expected a file to write the failed messages to)")
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK, 0o600)
        except OSError as err:
            if err.errno == errno.ENXIO:  # a FIFO without a reader
                raise not_regular from None
            raise ConfigError(path, OPTION, f"cannot create the dead-letter file: {err.strerror}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise not_regular
            os.fchmod(fd, 0o600)  # O_CREAT's mode applies only to a new file: the records hold the messages
            os.ftruncate(fd, 0)
        except OSError as err:
            os.close(fd)
            raise ConfigError(path, OPTION, f"cannot make the dead-letter file private (mode 0600): {err.strerror}"
                              ) from None
        except ConfigError:
            os.close(fd)
            raise
        self._file: TextIO = os.fdopen(fd, "w", encoding="utf-8")

    def write(self, step: str, worker: int, seq: int | None, error: BaseException, message: Encoded | None,
              delivered: int = 0) -> None:
        """Record one failed message (``message`` None: a failure with no input, such as a producer's), of whose
        outputs ``delivered`` went on before it failed."""
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
        if delivered:
            record["delivered"] = delivered
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        self.records += 1

    def close(self) -> None:
        """Close the file."""
        self._file.close()


def _b64(buffer: Any) -> str:
    return base64.b64encode(memoryview(buffer)).decode("ascii")


@dataclass(frozen=True)
class DeadLetter:
    """One replayable record, still pickled."""

    line: int  # its line in the file, from 1
    step: str
    pickle: bytes
    buffers: list[bytes]
    delivered: int = 0  # its outputs that went on before it failed (its replay skips them)


def read_records(path: str) -> list[DeadLetter]:
    """The replayable records of a dead-letter file, checked but not unpickled (records without a
    message, such as a producer's failure, are left out); a ConfigError names the file and line."""
    try:
        # Looked at before it is opened: /dev/zero has no end, and opening a FIFO waits for a writer.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ConfigError(path, "", "not a regular file (expected the JSON lines that --Pipeline.dead_letter "
                                        "writes)")
        with open(path, "rb") as file:
            lines = file.read().splitlines()
    except OSError as err:
        raise ConfigError(path, "", f"cannot read the dead-letter file: {err.strerror}") from None
    records = []
    for number, line in enumerate(lines, 1):
        if line.strip():
            record = _parse(path, number, line)
            if record is not None:
                records.append(record)
    if not records:
        what = "is empty" if not any(line.strip() for line in lines) else "has no record with a message"
        raise ConfigError(path, "", f"nothing to replay: the file {what} (expected the JSON lines that "
                                    "--Pipeline.dead_letter writes)")
    return records


def _parse(path: str, number: int, line: bytes) -> DeadLetter | None:
    """One line as a record; None for a record without a message."""
    where = f"line {number}"
    try:
        record = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(path, where, "not a dead-letter record: not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise ConfigError(path, where, f"not a dead-letter record: invalid JSON at column {err.colno}: "
                                       f"{err.msg}") from None
    except ValueError:  # json.loads's int() refuses an integer of more digits than this
        raise ConfigError(path, where, f"not a dead-letter record: an integer of more than "
                                       f"{sys.get_int_max_str_digits()} digits") from None
    if not isinstance(record, dict):
        raise ConfigError(path, where, f"not a dead-letter record: expected a JSON object, got "
                                       f"{type(record).__name__}")
    if "pickle" not in record:
        return None
    step = record.get("step")
    if not isinstance(step, str) or not step:
        raise ConfigError(path, f"{where}: step", f"expected the name of the step that failed, got {step!r}")
    buffers = record.get("buffers", [])
    if not isinstance(buffers, list):
        raise ConfigError(path, f"{where}: buffers", f"expected a list of base64 strings, got {buffers!r:.40}")
    delivered = record.get("delivered", 0)
    if type(delivered) is not int or delivered < 0:
        raise ConfigError(path, f"{where}: delivered", f"expected a count of outputs (an integer >= 0), got "
                                                       f"{delivered!r:.40}")
    return DeadLetter(number, step, _unb64(path, f"{where}: pickle", record["pickle"]),
                      [_unb64(path, f"{where}: buffers[{i}]", b) for i, b in enumerate(buffers)], delivered)


def _unb64(path: str, key: str, text: Any) -> bytes:
    try:
        if not isinstance(text, str):
            raise TypeError(f"got {type(text).__name__}")
        return base64.b64decode(text, validate=True)
    except (binascii.Error, TypeError) as err:
        raise ConfigError(path, key, f"expected base64 text: {err}") from None


def failed_steps(path: str) -> list[str]:
    """The steps that have replayable messages in a dead-letter file, in order of first appearance."""
    return list(dict.fromkeys(record.step for record in read_records(path)))


def load_messages(path: str) -> list[tuple[str, Any]]:
    """Unpickle every replayable message of a dead-letter file, as (step name, message); a ConfigError
    names the file and the line of the first that cannot be (its class renamed, its module gone)."""
    return [(step, message.message if isinstance(message, Resume) else message)
            for step, message in load_replays(path)]


def load_replays(path: str) -> list[tuple[str, Any]]:
    """As ``load_messages``, but a message some of whose outputs went on before it failed comes as a Resume
    saying how many (all the runs it failed in together): what a replay sends."""
    messages = []
    for record in read_records(path):
        try:
            message = decode(record.pickle, record.buffers)
        except KeyboardInterrupt:
            raise
        except BaseException as err:  # unpickling runs the message's own code (its module's sys.exit() too)
            raise ConfigError(path, f"line {record.line}", f"cannot unpickle the message that failed in step "
                                                           f"{record.step}: {failure_line(err)}") from None
        if isinstance(message, Resume):  # failed again in a replay: what went on in each run adds up
            message = Resume(message.message, message.delivered + record.delivered)
        elif record.delivered:
            message = Resume(message, record.delivered)
        messages.append((record.step, message))
    return messages


# Messages loaded ahead of a replay's run, by path: the replay producer takes them (unpickled once).
_preloaded: dict[str, list[tuple[str, Any]]] = {}
_preloaded_lock = threading.Lock()


def preload(path: str) -> None:
    """Unpickle the messages of ``path`` now, before the run, for the replay producer to send."""
    messages = load_replays(path)
    with _preloaded_lock:
        _preloaded[path] = messages


class DeadLetterReplay(Component):
    """Producer: sends each message of a dead-letter file again to the step where it failed.

    It sends the messages that ``preload`` unpickled (``Pipeline.run()`` preloads them before any step
    starts, and before the run's own dead-letter file, which may be the same, is emptied), or else
    unpickles them when it starts.
    """

    path = Unicode(help="The dead-letter file to replay.").tag(config=True)
    _unsent: deque[tuple[str, Any]] | None = None  # once run() began: the messages not sent yet, in order

    def run(self) -> Iterator[None]:
        """Send every recorded message to its step."""
        self._unsent = deque(self._messages())
        while self._unsent:
            step, message = self._unsent.popleft()  # sent with this yield's outputs: a stop comes after them
            self.send_msg(message, step)
            yield None

    def unsent(self) -> list[tuple[str, Any]]:
        """The messages it has not sent, as (step, message): all of them if run() never began."""
        return list(self._messages() if self._unsent is None else self._unsent)

    def _messages(self) -> list[tuple[str, Any]]:
        with _preloaded_lock:
            messages = _preloaded.pop(self.path, None)
        return load_replays(self.path) if messages is None else messages

    def __length_hint__(self) -> int:
        """The number of messages to replay, once preloaded (the progress display's total)."""
        with _preloaded_lock:
            messages = _preloaded.get(self.path)
        return NotImplemented if messages is None else len(messages)


def replay_path(config: PipelineConfig) -> str | None:
    """The dead-letter file that ``config``'s producer replays (None: it replays none)."""
    producer = config.producer
    return producer.traits["path"] if producer.cls is DeadLetterReplay else None


def replay_config(config: PipelineConfig, path: str) -> PipelineConfig:
    """``config`` fed from the dead-letter file ``path``: each message goes again to the step where it failed.

    The producer is replaced by the replay; only the failed steps and the steps after them run.
    """
    targets = failed_steps(path)
    for name in targets:
        if name not in config.steps or name == config.producer.name:
            raise ConfigError(path, "step", f"{name!r} is not a stager or consumer of {config.source}")
    keep = set().union(*(reachable(config.steps, name) for name in targets))
    replay = StepConfig(
        name=config.producer.name, kind="producer", cls=DeadLetterReplay, module=DeadLetterReplay.__module__,
        next_steps=tuple(targets), traits={"path": path}, key="--replay",
    )
    steps = {replay.name: replay, **{n: s for n, s in config.steps.items() if n in keep}}
    return dataclasses.replace(config, steps=steps)
