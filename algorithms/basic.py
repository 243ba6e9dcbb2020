"""General steps: a counting producer, file readers, a pass-through, a printer and a JSON-lines writer."""

from __future__ import annotations

import glob
import json
import os
import sys
from collections.abc import Iterator
from typing import Any

from traitlets import Bool, Int, Unicode

from pipeline import Component
from pipeline.config.line_files import LineFile
from pipeline.config.locks import close_lock_fd, open_locked
from pipeline.config.traits import InputFile, OutputFile


class Counter(Component):
    """Producer: yields the integers start, start+1, … (count of them); in shards, every n_shards-th."""

    shardable = True
    start = Int(0, help="The first number.").tag(config=True)
    count = Int(10, min=0, help="How many numbers to yield.").tag(config=True)

    def run(self) -> Iterator[int]:
        """Yield each number of this shard."""
        yield from range(self.start + self.shard, self.start + self.count, self.n_shards)

    def __length_hint__(self) -> int:
        """How many numbers it yields (the progress display's total)."""
        return self.count


def text_lines(path: str) -> Iterator[str]:
    """Each line of the UTF-8 text file ``path``, without its line ending (\\n or \\r\\n); a byte order mark, which
    some Windows editors write first, is not part of the first line. A line that is not UTF-8 is a ValueError naming
    the file and the line (a bare UnicodeDecodeError named neither)."""
    with open(path, "rb") as lines:
        for number, line in enumerate(lines, start=1):
            try:
                text = line.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(f"{path}: line {number} is not UTF-8 text (byte {err.start + 1} of the line: "
                                 f"{err.reason})") from None
            yield text.rstrip("\r\n")


class LineReader(Component):
    """Producer: yields each line of a text file, without its line ending."""

    path = InputFile(help="The file to read.").tag(config=True)
    skip_blank = Bool(False, help="Do not yield empty lines.").tag(config=True)

    def check(self) -> None:
        """Refuse, before the run, a path that is no file to read (missing, a folder, unreadable); a pipe or a
        terminal (``/dev/stdin``) is read as a file is."""
        problem = ("is a folder" if os.path.isdir(self.path) else "does not exist" if not os.path.exists(self.path)
                   else "cannot be read" if not os.access(self.path, os.R_OK) else None)
        if problem is not None:
            raise ValueError(f"LineReader.path {self.path!r} {problem} (expected a text file to read)")

    def run(self) -> Iterator[str]:
        """Yield each line."""
        for line in text_lines(self.path):
            if line or not self.skip_blank:
                yield line


class FileLines(Component):
    """Producer: yields {"file", "line", "text"} for each line of each file that ``pattern`` matches, in the
    files' sorted order. Shardable: shard k of n reads every n-th of those files, from the k-th."""

    shardable = True
    pattern = Unicode(help="A glob pattern of the files to read, such as night*.txt, relative to the "
                      "directory the run starts in (a double asterisk reaches into subfolders).").tag(config=True)

    def files(self) -> list[str]:
        """Every file the pattern matches, sorted."""
        return sorted(path for path in glob.glob(self.pattern, recursive=True) if not os.path.isdir(path))

    def check(self) -> None:
        """Refuse, before the run, a pattern that matches no file."""
        if not self.files():
            raise ValueError(f"FileLines.pattern {self.pattern!r} matches no file")

    def run(self) -> Iterator[dict[str, Any]]:
        """Yield each line of this shard's files."""
        for path in self.files()[self.shard::self.n_shards]:
            for number, line in enumerate(text_lines(path), start=1):
                yield {"file": path, "line": number, "text": line}


class PassThrough(Component):
    """Stager: sends every message on unchanged."""

    def run(self, msg: Any) -> Any:
        """Return the message."""
        return msg


class Printer(Component):
    """Consumer: prints each message on its own line."""

    prefix = Unicode("", help="Text printed before each message.").tag(config=True)

    def run(self, msg: Any) -> None:
        """Print the message: one write of the whole line, so that lines of several workers never mix."""
        sys.stdout.write(f"{self.prefix}{msg}\n")
        sys.stdout.flush()


class JsonLinesWriter(Component):
    """Consumer: writes each message as one line of JSON, in one worker (it replaces its file)."""

    one_worker = True

    # locked: the run claims it before any step runs (config.locks), so that of two runs on it one is refused.
    path = OutputFile("output.jsonl", help="The file to write (replaced if it exists).").tag(config=True, locked=True)

    def check(self) -> None:
        """Refuse, before the run, an empty path (OutputFile refuses a folder, or a file in a folder that is not); a
        file that another run writes is refused as the run starts (its claim, config.locks)."""
        if not self.path:
            raise ValueError("JsonLinesWriter.path is empty (expected the path of a file to write)")

    def init(self) -> None:
        """Open the file, locked for this run (another run's, writing it too, mixed their lines), a line written as it
        comes: what was written survives a run stopped at once (cli.md)."""
        self._lines = LineFile(open_locked(self.path, "JsonLinesWriter.path"), self.path)  # closed in finish()

    def run(self, msg: Any) -> None:
        """Write one line, whole: a file that refuses it (a full disk) keeps its lines before it, and the message
        fails."""
        self._lines.append((json.dumps(msg, default=_jsonable) + "\n").encode("utf-8"))

    def finish(self) -> None:
        """Close the file."""
        close_lock_fd(self._lines.fd)


def _jsonable(value: Any) -> Any:
    """JSON for the numpy values and other objects json does not know."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"cannot write a {type(value).__name__} as JSON")
