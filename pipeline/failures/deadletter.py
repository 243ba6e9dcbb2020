"""Dead letters: failed messages written to a JSON-lines file, to inspect and to replay.

Each line is one failed message::

    {"step": "CALIB", "worker": 1, "seq": 17, "time": 1763780000.0,
     "error": "ValueError: ...", "traceback": "Traceback ...",
     "pickle": "<base64 of the protocol-5 pickle>", "buffers": ["<base64>", ...]}

and, for a message whose run() failed after some of its outputs went on (in chunks, see
execution.executor), ``"delivered": N``: its replay drops the first N outputs the step makes again. A record of a
failure with no input (a producer's value that could not be pickled) has no ``pickle``: its replay cannot send it, and
says so (NotReplayed). Every record has its ``step`` and ``error``: a line without them is no record, refused. The
last line, with no newline, may be half a record, whose run was killed as it wrote it (config.line_files): it is not
replayed, and NotReplayed says so and counts it; a line cut short before it is refused.

The file is created readable by its owner only (0600): it holds the messages themselves.

``pipeline-run --replay FILE --config x.json`` sends each message again to the step that failed.
Reading the file for the replay's graph (``records``) never unpickles. A ``Replay`` unpickles every message when
the replay is about to run, so that a record that cannot be loaded (its class renamed, its module gone) is a
ConfigError before any step runs; it keeps the first (KEPT_MESSAGES, KEPT_BYTES) and reads and unpickles the others
again as it sends them, so that it holds a bounded number of messages however long the file.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import json
import logging
import os
import stat
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from traitlets import Unicode

from pipeline.component import Component
from pipeline.config.graph import reachable
from pipeline.config.line_files import LineFile
from pipeline.config.loader import json_words
from pipeline.config.locks import close_lock_fd, in_use_words, keep_from_children
from pipeline.config.model import PipelineConfig, StepConfig
from pipeline.config.traits import shown
from pipeline.console.humanize import counted, quoted
from pipeline.errors import ConfigError
from pipeline.failures.describe import failure_line, summary_error, traceback_text
from pipeline.message import Encoded, Resume, decode

#: The key that names the dead-letter file in ConfigErrors.
OPTION = "Pipeline.dead_letter"

log = logging.getLogger("pipeline.failures")


class DeadLetterWriter:
    """Appends failed messages to a JSON-lines file (created empty, mode 0600, when the run starts), which it locks
    against other runs for as long as it is open.

    A write the file refuses (a full disk, a file size limit) does not fail the run: it is logged once, the part of
    the record that went in is cut off, so that the file ends with a whole record, and the records from then on are
    counted in ``lost`` without being written (the run's report says how many, and its exit status is 1).
    """

    def __init__(self, path: str, setting: tuple[str, str] = ("", OPTION), replayed: str | None = None) -> None:
        """``setting``: where the path was given, as a ConfigError names it (the config file or the command line, and
        the key). ``replayed``: the dead-letter file the run replays, whose records with no message to replay are
        written first, as they were (the replay cannot send them, and they are the only trace of those failures).
        If that is ``path`` itself, it must stay as it is until the run has lost nothing (a run stopped at once
        keeps no record of what it had in flight): the records go to ``path`` + REPLACING_SUFFIX, which ``settle``
        makes the file, or removes."""
        self.path = path
        replaced = writes_over(replayed, path)
        self._replacing = path + REPLACING_SUFFIX if replaced else None
        self.records = 0  # records written so far
        self.lost = 0  # records that could not be written (after ``error``)
        self.error: str | None = None  # why the first record that could not be written was not
        source, key = setting
        opened = self._replacing or path

        def refused(problem: str) -> ConfigError:
            return ConfigError(source or opened, key, f"{quoted(opened)}: {problem}" if source else problem)

        # Emptied only once it is known to be a regular file that no other run writes and that can be made private: a
        # device (/dev/null), a FIFO (O_NONBLOCK: opening one waits for a reader), a file of a run under way or
        # another user's file is refused as it was, its records and its mode unchanged.
        not_regular = refused("not a regular file (expected a file to write the failed messages to)")
        try:
            fd = os.open(opened, os.O_WRONLY | os.O_CREAT | os.O_NONBLOCK, 0o600)
        except OSError as err:
            if err.errno == errno.ENXIO:  # a FIFO without a reader
                raise not_regular from None
            raise refused(f"cannot create the dead-letter file: {err.strerror}") from None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise not_regular
            _lock(fd, refused)
            os.fchmod(fd, 0o600)  # O_CREAT's mode applies only to a new file: the records hold the messages
            os.ftruncate(fd, 0)
        except OSError as err:
            os.close(fd)
            raise refused(f"cannot make the dead-letter file private (mode 0600): {err.strerror}") from None
        except ConfigError:
            os.close(fd)
            raise
        self._fd = keep_from_children(fd)
        self._lines = LineFile(fd, opened)  # a record cut short by a write the file refuses is cut off
        if not replaced:  # a replay into this file reuses it
            sweep_stale(path)
        self.kept = NotReplayed()  # records of the replayed file with no message to replay, copied first
        if replayed is not None:
            self._keep_unreplayable(replayed, refused)

    def _keep_unreplayable(self, replayed: str, refused: Callable[[str], ConfigError]) -> None:
        """Copy the records of the replayed file that have no message to replay (a failure with no input, such as a
        producer's value that could not be pickled) into the file that replaces it: they are the only trace of those
        failures, which the replay cannot send again."""
        try:
            self.kept = NotReplayed.read(replayed, self._put)
        except ConfigError as err:
            self.close()
            raise refused(f"cannot copy the records with no message to replay: {err}") from None

    def write(self, step: str, worker: int, seq: int | None, error: BaseException, message: Encoded | None,
              delivered: int = 0) -> None:
        """Record one failed message (``message`` None: a failure with no input, such as a producer's), of whose
        outputs ``delivered`` went on before it failed; once a write has failed, only count it as lost."""
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
        self._put((json.dumps(record) + "\n").encode("utf-8"))

    def _put(self, line: bytes) -> None:
        """Append one whole record; once a write has failed, only count it as lost."""
        if self.error is not None:
            self.lost += 1
            return
        try:
            self._lines.append(line)  # a replay takes a file that ends in half a record for one its run was killed in
        except OSError as err:
            self.lost += 1
            self.error = err.strerror or str(err)
            log.error("%s: cannot write to the dead-letter file: %s (the failed messages from here on are counted, "
                      "not recorded)", self.path, self.error)
            return
        self.records += 1

    def close(self) -> None:
        """Close the file (which lets another run write it)."""
        close_lock_fd(self._fd)

    def settle(self, lost_in_flight: bool) -> str | None:
        """Once closed: the records written beside the replayed file (``replaced``) replace it if the run lost no
        message, in flight or unwritten; else they are dropped and it stays as it was, which a line for the run's
        summary says (None: nothing to say)."""
        if self._replacing is None:
            return None
        if not lost_in_flight and not self.lost:
            try:
                os.replace(self._replacing, self.path)
                return None
            except OSError as err:
                problem = f"cannot put this run's dead letters in its place: {err.strerror}"
        else:
            problem = "the run stopped with messages in flight" if lost_in_flight else "not every record was written"
        with contextlib.suppress(OSError):
            os.unlink(self._replacing)
        return (f"{self.path} is left as it was, to replay all its messages again ({problem}; the messages this run "
                "processed run again)")


def _lock(fd: int, refused: Callable[[str], ConfigError]) -> None:
    """Lock the dead-letter file ``fd`` for this run; a ConfigError (from ``refused``) if another run holds it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise refused(f"{in_use_words(fd)} (expected a dead-letter file of its own for each run)") from None
    except OSError as err:  # a file system without locks (ENOLCK): two runs could not be told apart
        raise refused(f"cannot lock the dead-letter file: {err.strerror}") from None


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

    @property
    def encoded(self) -> Encoded:
        """Its message as it was recorded, still pickled (to record it again)."""
        return Encoded(self.pickle, self.buffers)


def read_records(path: str) -> list[DeadLetter]:
    """The replayable records of a dead-letter file, checked but not unpickled (records without a
    message, such as a producer's failure, are left out); a ConfigError names the file and line."""
    return list(records(path))


def records(path: str, identity: tuple[int, ...] | None = None) -> Iterator[DeadLetter]:
    """``read_records`` a record at a time, so that one is held, not the file; with ``identity`` (``_identity`` of
    the file when it was checked), a ConfigError if the file changed since."""
    found = False
    blank = True  # no line but blank ones so far
    # A line's digest -> its number: the same record twice (a file edited by hand, or joined with itself) would be
    # replayed twice; no run writes one line twice (each names its time).
    seen: dict[bytes, int] = {}
    try:
        # Looked at before it is opened: /dev/zero has no end, and opening a FIFO waits for a writer.
        if not stat.S_ISREG(os.stat(path).st_mode):
            raise ConfigError(path, "", "not a regular file (expected the JSON lines that --Pipeline.dead_letter "
                                        "writes)")
        with open(path, "rb") as file:
            if identity is not None and _identity(os.fstat(file.fileno())) != identity:
                raise ConfigError(path, "", "changed since the replay read it (expected a dead-letter file that no "
                                            "run writes while it is replayed)")
            # A line at a time: what is held beside the record is one line, not the whole file and its lines again.
            for number, line in enumerate(file, 1):
                if line.strip():
                    blank = False
                    digest = hashlib.blake2b(line.strip(), digest_size=16).digest()
                    if (first := seen.setdefault(digest, number)) != number:
                        raise ConfigError(path, f"line {number}", f"the record of line {first} again (expected each "
                                                                  "failed message once: it would be replayed twice)")
                    try:
                        record = _parse(path, number, line)
                    except CutRecord:  # NotReplayed.read says so and counts it, once for the run
                        continue
                    if record is not None:
                        found = True
                        yield record
    except OSError as err:
        raise ConfigError(path, "", f"cannot read the dead-letter file: {err.strerror}") from None
    if not found:
        what = "is empty" if blank else "has no record with a message"
        raise ConfigError(path, "", f"nothing to replay: the file {what} (expected the JSON lines that "
                                    "--Pipeline.dead_letter writes)")


def _identity(status: os.stat_result) -> tuple[int, ...]:
    """What changes when a file is replaced or written: its inode, size and time of change."""
    return status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns


#: What a replay says of the last line of its file when it is half a record (line_files: a write cut by a kill).
CUT = "the last record was cut (its run was killed as it wrote it): not replayed"


class CutRecord(ConfigError):
    """The last line of a dead-letter file, with no newline, is half a record: not replayed, but the records before it
    are (a line cut short before the last is a file damaged otherwise, which a replay refuses)."""


def _load_line(path: str, where: str, line: bytes) -> dict[str, Any]:
    """One line as a JSON object; a ConfigError naming the file and ``where`` if it is none (a CutRecord if it is the
    last line, cut short)."""
    try:
        # Without its newline: in the string a cut line leaves open, it was "Invalid control character".
        record = json.loads(line.decode("utf-8").rstrip("\n"))
    except UnicodeDecodeError:
        raise ConfigError(path, where, "not a dead-letter record: not UTF-8 text") from None
    except json.JSONDecodeError as err:
        if not line.endswith(b"\n"):  # the last line: a record cut short, as a run killed writing it leaves it
            raise CutRecord(path, where, CUT) from None
        raise ConfigError(path, where, f"not a dead-letter record: invalid JSON at column {err.colno}: "
                                       f"{json_words(err)}") from None
    except RecursionError:  # json.loads recurses once per level of nesting: '[' * 100000 is no record
        raise ConfigError(path, where, "not a dead-letter record: nested too deeply (expected a JSON object of "
                                       "strings, numbers and a list of strings)") from None
    except ValueError:  # json.loads's int() refuses an integer of more digits than this
        raise ConfigError(path, where, f"not a dead-letter record: an integer of more than "
                                       f"{sys.get_int_max_str_digits()} digits") from None
    if not isinstance(record, dict):
        raise ConfigError(path, where, f"not a dead-letter record: expected a JSON object, got "
                                       f"{type(record).__name__}")
    return record


#: The fields that every record has, whatever failed: a line without them is none (a foreign line such as {"a": 1} was
#: taken for a failure with no message, kept or dropped as one).
RECORD_FIELDS = ("step", "error")


def _load_record(path: str, number: int, line: bytes) -> dict[str, Any]:
    """Line ``number`` as a dead-letter record: a JSON object naming the step that failed and its error; a ConfigError
    naming the file and the line if it is none."""
    where = f"line {number}"
    record = _load_line(path, where, line)
    missing = [key for key in RECORD_FIELDS if key not in record]
    if missing:
        raise ConfigError(path, where, f"not a dead-letter record: no {', no '.join(missing)} (expected the fields "
                                       "that every record has: the step that failed and its error)")
    step = record["step"]
    if not isinstance(step, str) or not step:
        raise ConfigError(path, f"{where}: step", f"expected the name of the step that failed, got {shown(step)}")
    if not isinstance(record["error"], str):
        raise ConfigError(path, f"{where}: error", f"expected the line of the error, got {shown(record['error'])}")
    return record


class NotReplayed:
    """The records of a replayed file with no message to send (failures with no input, such as a producer's value that
    could not be pickled): failures that the replay leaves as they were, as its summary and exit status say."""

    def __init__(self, path: str = "") -> None:
        self.path = path
        self.count = 0  # records with no message (each is copied as it was to the run's dead-letter file, if any)
        self.by_step: dict[str, Counter[str]] = {}  # per step, per exception type
        self.first: str | None = None  # the line and the error of the first
        self.cut: int | None = None  # the line of the last record, if its run was killed as it wrote it (not copied)

    @classmethod
    def read(cls, path: str, keep: Callable[[bytes], None] | None = None) -> NotReplayed:
        """Those of the dead-letter file ``path``; ``keep`` is given each one's line, as it is."""
        found = cls(path)
        try:
            with open(path, "rb") as file:
                for number, line in enumerate(file, 1):
                    try:
                        record = _load_record(path, number, line) if line.strip() else None
                    except CutRecord as cut:
                        log.warning("%s", cut)
                        found.cut = number
                        continue
                    if record is None or "pickle" in record:
                        continue
                    found._add(number, record)
                    if keep is not None:
                        keep(line if line.endswith(b"\n") else line + b"\n")
        except OSError as err:
            raise ConfigError(path, "", f"cannot read the dead-letter file: {err.strerror}") from None
        return found

    def _add(self, number: int, record: dict[str, Any]) -> None:
        """Count ``record``, of line ``number``."""
        self.count += 1
        self.by_step.setdefault(record["step"], Counter())[record["error"].split(":", 1)[0]] += 1
        self.first = self.first or f"line {number} of {self.path}: step {record['step']}: {record['error']}"

    @property
    def failed(self) -> int:
        """The records not replayed, the cut one too: failures that the run's exit status counts."""
        return self.count + (self.cut is not None)

    def summary(self) -> str:
        """The run's summary's line about them (once there are some)."""
        steps = "; ".join(f"{step} " + ", ".join(f"{count} {kind}" for kind, count in kinds.most_common())
                          for step, kinds in self.by_step.items())
        parts = [f"{counted(self.count, 'record')} with no message to send: {steps} (the first, {self.first})"
                 ] if self.count else []
        if self.cut is not None:
            parts.append(f"1 record cut (its run was killed as it wrote it): line {self.cut} of {self.path}")
        return summary_error("not replayed: " + "; ".join(parts))


def _parse(path: str, number: int, line: bytes) -> DeadLetter | None:
    """One line as a record; None for a record without a message."""
    where = f"line {number}"
    record = _load_record(path, number, line)
    if "pickle" not in record:
        return None
    step = record["step"]
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


def load_messages(path: str) -> list[tuple[str, Any]]:
    """Unpickle every replayable message of a dead-letter file, as (step name, message); a ConfigError
    names the file and the line of the first that cannot be (its class renamed, its module gone)."""
    return [(step, message.message if isinstance(message, Resume) else message)
            for step, message in load_replays(path)]


def load_replays(path: str) -> list[tuple[str, Any]]:
    """As ``load_messages``, but a message some of whose outputs went on before it failed comes as a Resume
    saying how many (all the runs it failed in together): what a replay sends."""
    return [(record.step, _replayed(path, record)) for record in records(path)]


def _replayed(path: str, record: DeadLetter) -> Any:
    """The message of ``record`` as its replay sends it (a Resume if some of its outputs went on); a ConfigError
    names the file and line if it cannot be unpickled."""
    try:
        message = decode(record.pickle, record.buffers)
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # unpickling runs the message's own code (its module's sys.exit() too)
        raise ConfigError(path, f"line {record.line}", f"cannot unpickle the message that failed in step "
                                                       f"{record.step}: {failure_line(err)}") from None
    if isinstance(message, Resume):  # failed again in a replay: what went on in each run adds up
        return Resume(message.message, message.delivered + record.delivered)
    return Resume(message, record.delivered) if record.delivered else message


#: Messages that a replay keeps unpickled from its check, before the run, until it sends them; the others it unpickles
#: again as it sends them. So a small file is unpickled once, and a replay holds a bounded number of messages at once
#: however long its file: these, and what the engine holds in flight (faq.md, "How much memory does a run take?").
KEPT_MESSAGES = 64
#: Bytes of pickles (buffers included) past which a replay keeps no more messages from its check: large arrays.
KEPT_BYTES = 16 * 1024 * 1024


class Replay:
    """A dead-letter file to replay: checked whole before the run (every record read and unpickled, so that one that
    cannot be is a ConfigError before any step runs), then sent a record at a time, read again from the file."""

    def __init__(self, path: str) -> None:
        """Check every record of ``path``, keeping the first messages (KEPT_MESSAGES, KEPT_BYTES)."""
        self.path = path
        self.count = 0  # its messages
        self.sent = 0  # those taken from ``messages()`` so far
        sweep_stale(path)
        self._kept: deque[tuple[str, Any]] = deque()  # the first messages, unpickled by the check, not sent yet
        try:
            self._identity = _identity(os.stat(path))
        except OSError:
            self._identity = None  # records() says why it cannot be read
        held = 0
        for record in records(path):
            message = _replayed(path, record)
            held += len(record.pickle) + sum(len(buffer) for buffer in record.buffers)
            if len(self._kept) == self.count and self.count < KEPT_MESSAGES and held <= KEPT_BYTES:
                self._kept.append((record.step, message))
            self.count += 1

    def messages(self) -> Iterator[tuple[str, Any]]:
        """Each message to send, as (step, message), in the file's order; ``sent`` counts it once taken."""
        while self._kept:
            self.sent += 1
            yield self._kept.popleft()
        for record in self.records(self.sent):
            self.sent += 1
            yield record.step, _replayed(self.path, record)

    def records(self, start: int = 0) -> Iterator[DeadLetter]:
        """Its records from the ``start``-th on (from 0), read again; a ConfigError if the file changed since. None
        past its last: the file is not read again (another replay may have replaced it since, which failed a replay
        that had sent every message)."""
        if start >= self.count:
            return
        for index, record in enumerate(records(self.path, self._identity)):
            if index >= start:
                yield record


# Replays checked ahead of the run, by path: the replay producer takes them (the first messages unpickled once).
_preloaded: dict[str, Replay] = {}
_preloaded_lock = threading.Lock()


# The dead-letter files that runs of this process replay, each held by a shared flock until its run ends.
_held: dict[str, int] = {}


def preload(path: str, rewrites: bool = False) -> None:
    """Hold ``path`` for the run and check its messages now, before the run, for the replay producer to send (the run
    lets it go at its end: ``release``); ``rewrites``: the run's dead letters replace the file (``writes_over``)."""
    hold(path, rewrites)
    try:
        replay = Replay(path)
    except BaseException:
        release(path)
        raise
    with _preloaded_lock:
        _preloaded[path] = replay


def hold(path: str, rewrites: bool = False) -> None:
    """Take a shared flock on the dead-letter file ``path`` for the replay, or with ``rewrites`` (its dead letters will
    replace the file) an exclusive one: a ConfigError if a run is writing it (its records so far would run, and those
    it writes after be lost or run twice), or, rewriting, if another replay reads it (which then failed at its end, the
    file replaced under it; or replaced it under this one); no run starts to write it (each takes its file's lock
    alone) until ``release``. A file that cannot be opened is left to the replay to name."""
    fd = _replay_lock(path, rewrites)
    if fd is None:
        return
    release(path)  # held already by a run of this process that did not release it: one hold a path
    _held[path] = keep_from_children(fd)


def check_not_written(path: str) -> None:
    """A ConfigError if a run is writing the dead-letter file ``path`` now, said before its records are read (a file
    that run had not written to yet said "nothing to replay: the file is empty")."""
    fd = _replay_lock(path)
    if fd is not None:
        os.close(fd)


def _replay_lock(path: str, exclusive: bool = False) -> int | None:
    """An open descriptor of ``path`` holding a shared flock (``exclusive``: an exclusive one); None if the file cannot
    be opened or locked (left to the replay to name: a file system without locks is checked for changes instead); a
    ConfigError if a run writes it (or, ``exclusive``, replays it)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # O_NONBLOCK: a FIFO would wait for a writer
    except OSError:
        return None
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        words = in_use_words(fd)
        os.close(fd)
        expected = ("a dead-letter file that no other run reads or writes while a replay writes its dead letters over "
                    "it" if exclusive else "a dead-letter file that no run writes while it is replayed")
        raise ConfigError(path, "", f"{words} (expected {expected}: replay it once that run has ended)") from None
    except OSError:  # a file system without locks (ENOLCK): the replay checks that the file did not change
        os.close(fd)
        return None
    return fd


def release(path: str) -> None:
    """Let go of the dead-letter file ``path`` that ``hold`` took for a replay (nothing if none)."""
    fd = _held.pop(path, None)
    if fd is not None:
        close_lock_fd(fd)


class DeadLetterReplay(Component):
    """Producer: sends each message of a dead-letter file again to the step where it failed.

    It sends the messages of the Replay that ``preload`` checked (``Pipeline.run()`` preloads it before any step
    starts, and before the run's own dead-letter file, which may be the same, is emptied), or else checks the file
    when it starts.
    """

    path = Unicode(help="The dead-letter file to replay.").tag(config=True)
    _replay: Replay | None = None  # once run() began: the file being sent

    def run(self) -> Iterator[None]:
        """Send every recorded message to its step."""
        self._replay = self._take()
        messages = self._replay.messages()
        try:
            for step, message in messages:  # sent with this yield's outputs: a stop comes after them
                self.send_msg(message, step)
                yield None
        finally:
            messages.close()  # the file it reads, now

    def unsent(self) -> Iterator[DeadLetter]:
        """The records of the messages it has not sent: all of them if run() never began."""
        if self._replay is None:
            self._replay = self._take()
        return self._replay.records(self._replay.sent)

    def unsent_count(self) -> int:
        """How many messages it has not sent (once ``unsent`` or run() took its file)."""
        return self._replay.count - self._replay.sent if self._replay is not None else 0

    def _take(self) -> Replay:
        with _preloaded_lock:
            replay = _preloaded.pop(self.path, None)
        return Replay(self.path) if replay is None else replay

    def __length_hint__(self) -> int:
        """The number of messages to replay, once preloaded (the progress display's total)."""
        with _preloaded_lock:
            replay = _preloaded.get(self.path)
        return NotImplemented if replay is None else replay.count


#: Where a replay writes the dead letters that go to the file it replays, until the run has lost nothing in flight.
REPLACING_SUFFIX = ".replacing"


def sweep_stale(path: str) -> None:
    """Remove ``path`` + REPLACING_SUFFIX if a replay into ``path`` that was killed (kill -9: no cleanup runs) left it:
    no run holds its lock. It held the records of a run that did not end, and ``path`` was left as it was."""
    stale = path + REPLACING_SUFFIX
    try:
        fd = os.open(stale, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
    except OSError:  # none, or a symbolic link: not one a replay made
        return
    try:
        status = os.fstat(fd)
        if stat.S_ISREG(status.st_mode) and status.st_uid == os.geteuid():
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError: a replay under way writes it
            os.unlink(stale)
            log.warning("%s: removed: a replay into %s that was killed left it (that file was left as it was)",
                        stale, path)
    except OSError:
        pass  # held by a run under way, or not ours to remove: left as it is
    finally:
        os.close(fd)


def writes_over(replayed: str | None, dead_letter: str) -> bool:
    """Whether a run that replays ``replayed`` writes its dead letters into that very file."""
    try:
        return replayed is not None and bool(dead_letter) and os.path.samefile(replayed, dead_letter)
    except OSError:  # a dead-letter file not made yet: not the replayed one
        return False


def replay_path(config: PipelineConfig) -> str | None:
    """The dead-letter file that ``config``'s producer replays (None: it replays none)."""
    producer = config.producer
    return producer.traits["path"] if producer.cls is DeadLetterReplay else None


def replay_config(config: PipelineConfig, path: str) -> PipelineConfig:
    """``config`` fed from the dead-letter file ``path``: each message goes again to the step where it failed.

    The producer is replaced by the replay; only the failed steps and the steps after them run.
    """
    check_not_written(path)
    targets: dict[str, None] = {}  # in order of first appearance
    for record in records(path):
        if record.step not in config.steps or record.step == config.producer.name:
            raise ConfigError(path, f"line {record.line}: step",
                              f"{quoted(record.step)} is not a stager or consumer of {config.source}")
        targets[record.step] = None
    keep = set().union(*(reachable(config.steps, name) for name in targets))
    replay = StepConfig(
        name=config.producer.name, kind="producer", cls=DeadLetterReplay, module=DeadLetterReplay.__module__,
        next_steps=tuple(targets), traits={"path": path}, key="--replay",
    )
    steps = {replay.name: replay, **{n: s for n, s in config.steps.items() if n in keep}}
    return dataclasses.replace(config, steps=steps)
