"""Whether another process holds the lock of a file that a run writes, and which process: the dead-letter file,
JsonLinesWriter's output and HDF5 files take a ``flock`` (HDF5 1.10+ does, by default), so a second run on the same
file is told in one line before it starts (HDF5 itself truncates the file before it finds the lock, then prints pages
of diagnostics); two runs writing one file at once mixed their lines, each saying it wrote them all."""

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


def refuse_in_use(path: str, setting: str) -> None:
    """A ValueError naming ``setting`` (the option that gave ``path``) if a run of another process holds the lock of
    the output file ``path`` (``_ours``)."""
    problem = in_use(path)
    if problem is not None and not _ours(path):
        raise ValueError(_in_use_problem(path, setting, problem))


def open_locked(path: str, setting: str) -> int:
    """The file ``path``, opened to be written afresh (created, or emptied) once this run holds its lock: a ValueError
    naming ``setting`` if a run of another process holds it (its content left as it was; ``_ours``). The lock goes
    with the descriptor."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = lock_holder(os.fstat(fd))
        if holder != os.getpid():
            problem = in_use_words(fd)
            os.close(fd)
            raise ValueError(_in_use_problem(path, setting, problem)) from None
    except OSError:  # a file system without locks (ENOLCK): two runs cannot be told apart there
        pass
    os.ftruncate(fd, 0)
    return fd


def _ours(path: str) -> bool:
    """Whether this process holds the lock of ``path``: an earlier run of it that was stopped before its writer's
    finish() closed the file (a Ctrl+C in a notebook, whose traceback keeps the writer), which the next run of the
    process may take over; two runs of one process at once on one file are not told apart from it."""
    with contextlib.suppress(OSError):
        return lock_holder(os.stat(path)) == os.getpid()
    return False


def _in_use_problem(path: str, setting: str, problem: str) -> str:
    return f"{setting} {path!r} is {problem} (expected an output file of its own for each run)"


def lock_holder(status: os.stat_result) -> int | None:
    """The process that holds the flock of the file of ``status``, as Linux's /proc/locks says; None if unknown."""
    inode = f"{os.major(status.st_dev):02x}:{os.minor(status.st_dev):02x}:{status.st_ino}"
    with contextlib.suppress(OSError), open("/proc/locks", encoding="ascii") as locks:
        for line in locks:  # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; a waiter's has "->" after "1:"
            fields = line.split()
            if fields[1:2] == ["FLOCK"] and fields[5:6] == [inode]:
                return int(fields[4])
    return None
