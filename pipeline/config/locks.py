"""Whether another process holds the lock of a file that a run writes, and which process: the dead-letter file and
HDF5 files take a ``flock`` (HDF5 1.10+ does, by default), so a second run on the same file is told in one line
before it starts (HDF5 itself truncates the file before it finds the lock, then prints pages of diagnostics)."""

from __future__ import annotations

import contextlib
import fcntl
import os


def in_use_words(fd: int) -> str:
    """What to say of the file open as ``fd`` that another process holds locked: "in use by another run (pid N)"."""
    holder = lock_holder(os.fstat(fd))
    return f"in use by another run{f' (pid {holder})' if holder else ''}"


def in_use(path: str) -> str | None:
    """``in_use_words`` for the file ``path`` if another process holds a lock on it, probed with a non-blocking
    exclusive flock on a read-only descriptor (the file neither created nor truncated); None if it is free, absent or
    cannot be opened (writing it will say why)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # O_NONBLOCK: a FIFO would wait for a writer
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released when fd closes
    except BlockingIOError:
        return in_use_words(fd)
    except OSError:  # a file system without locks (ENOLCK): nothing to tell
        return None
    finally:
        os.close(fd)
    return None


def lock_holder(status: os.stat_result) -> int | None:
    """The process that holds the flock of the file of ``status``, as Linux's /proc/locks says; None if unknown."""
    inode = f"{os.major(status.st_dev):02x}:{os.minor(status.st_dev):02x}:{status.st_ino}"
    with contextlib.suppress(OSError), open("/proc/locks", encoding="ascii") as locks:
        for line in locks:  # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; a waiter's has "->" after "1:"
            fields = line.split()
            if fields[1:2] == ["FLOCK"] and fields[5:6] == [inode]:
                return int(fields[4])
    return None
