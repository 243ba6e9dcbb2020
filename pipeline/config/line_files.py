"""Files of whole lines: each line appended with one write, and the file cut back to its last whole line when a write
fails, so that a reader never finds half a line at its end after a full disk or a file size limit.

A kill (``kill -9``, the OOM killer) as a large line is written can still leave half of it: the kernel ends a write
early for a fatal signal, at a page boundary, and no code of the killed process runs after. One write a line keeps
that to the last line of the file, which a reader of such a file may take for cut (a dead-letter replay does).
"""

from __future__ import annotations

import contextlib
import os


class LineFile:
    """Appends whole lines to the file open for writing as ``fd`` (empty, or at the end of its last whole line)."""

    def __init__(self, fd: int, path: str) -> None:
        """``path``: the file's name, as an error names it."""
        self.fd = fd
        self.path = path
        self.size = os.lseek(fd, 0, os.SEEK_CUR)  # the end of the last whole line: where a line cut short is cut off

    def append(self, line: bytes) -> None:
        """Append ``line`` (which ends in a newline) whole; if the file refuses it (a full disk, a file size limit), an
        OSError naming the file, once the part that went in is cut off."""
        data = memoryview(line)
        written = 0
        try:
            while written < len(data):  # os.write may take part of it (near a file size limit)
                written += os.write(self.fd, data[written:])
        except OSError as err:
            # If even the cut fails, the error says why the file ends as it does; the next line goes where this began.
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.size)
                os.lseek(self.fd, self.size, os.SEEK_SET)
            raise OSError(err.errno, err.strerror, self.path) from None
        self.size += len(data)
