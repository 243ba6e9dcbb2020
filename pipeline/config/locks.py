"""Whether another process holds the lock of a file that a run writes, and which process: the dead-letter file,
JsonLinesWriter's output and HDF5 files take a ``flock`` (HDF5 1.10+ does, by default), so a second run on the same
file is told in one line before it starts (HDF5 itself truncates the file before it finds the lock, then prints pages
of diagnostics); two runs writing one file at once mixed their lines, each saying it wrote them all.

An output whose trait is tagged ``locked=True`` (JsonLinesWriter's) is *claimed* by the run's process before any
step runs (``claim``, held until ``release``): a probe before the run and a lock taken in the step's init() let two
runs started together both pass the probe, and the loser failed in init() (exit 1, a traceback) instead of being
refused in one line (exit 2). The step's ``open_locked`` then shares the claim's lock (a worker process: finds it
held by its run's process, ``serve_run``). An output tagged ``locked="record"`` is one whose writer takes a flock of its
own (WriteParameters's HDF5 file): its claim is a record lock of the open file (``F_OFD_SETLK``), which a flock does
not meet, so that HDF5, which empties the file before it finds another's lock, opens it only once the run holds it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
import threading

#: The outputs this process claimed for runs under way: their real paths, each with the descriptor holding its lock and
#: whether the claim created the file.
_claims: dict[str, tuple[int, bool]] = {}
_claims_lock = threading.Lock()  # runs of several threads claim at once
#: struct flock of an exclusive lock of a whole file, for fcntl.F_OFD_SETLK (l_pid 0, as it must be).
_WHOLE_FILE = struct.pack("hhqqi4x", fcntl.F_WRLCK, os.SEEK_SET, 0, 0, 0)
#: The process of the run this process works for, if it is a worker process of that run (serve_run).
_run_pid: int | None = None
#: This process's descriptors that hold a run's lock (an output's claim and its writer's copy, a dead-letter file, a
#: replay's hold), each with its file's (device, inode): a forked child (the zygote of worker processes) closes its
#: copies, since a lock belongs to the open file, which every copy keeps open, and a child that outlived the run would
#: keep the file locked against the next.
_lock_fds: dict[int, tuple[int, int]] = {}


def keep_from_children(fd: int) -> int:
    """Have a forked child close its copy of ``fd``, which holds a run's lock; returns ``fd``."""
    status = os.fstat(fd)
    _lock_fds[fd] = status.st_dev, status.st_ino
    return fd


def close_lock_fd(fd: int) -> None:
    """Close ``fd``, which ``keep_from_children`` noted."""
    _lock_fds.pop(fd, None)
    os.close(fd)


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
    with _claims_lock:
        claimed = _claims.get(os.path.realpath(path))
        # The claim's own open file: its lock stays with the writer's descriptor once the run released its claim.
        fd = os.dup(claimed[0]) if claimed is not None else os.open(path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC,
                                                                    0o666)
    _lock_for_run(fd, path, setting, (os.getpid(), _run_pid))
    os.ftruncate(fd, 0)
    return keep_from_children(fd)


def _lock_for_run(fd: int, path: str, setting: str, ours: tuple[int | None, ...], record: bool = False) -> None:
    """Lock ``fd``, the file ``path`` open, for this run: a ValueError naming ``setting``, ``fd`` closed, if a process
    other than ``ours`` holds its lock. With ``record`` (its writer takes a flock of its own, as HDF5 does: this
    process's flock on another open file would refuse it), the lock is a record lock of the open file, which a flock
    does not meet, and a flock that another process holds refuses it too."""
    try:
        if record:
            fcntl.fcntl(fd, fcntl.F_OFD_SETLK, _WHOLE_FILE)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if record:
            fcntl.flock(fd, fcntl.LOCK_UN)  # the writer's to take
    except (BlockingIOError, PermissionError):  # a record lock held elsewhere may say EACCES
        if lock_holder(os.fstat(fd)) not in ours:
            problem = in_use_words(fd)
            os.close(fd)
            raise ValueError(_in_use_problem(path, setting, problem)) from None
    except OSError:  # a file system without locks (ENOLCK): two runs cannot be told apart there
        pass


def claim(path: str, setting: str, record: bool = False) -> str:
    """Lock the output file ``path`` for a run of this process until ``release`` of the real path it returns, before
    any step runs (created if absent, its content left until the step writes it): a ValueError naming ``setting``, in
    the words of ``open_locked``, if a run of another process holds it or a run of this process claimed it.
    ``record``: its writer takes a flock of its own (``_lock_for_run``)."""
    real = os.path.realpath(path)
    with _claims_lock:
        if real in _claims:
            problem = f"in use by another run of this process (pid {os.getpid()})"
            raise ValueError(_in_use_problem(path, setting, problem))
        try:
            fd, created = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666), True
        except FileExistsError:
            fd, created = os.open(path, os.O_WRONLY | os.O_CLOEXEC), False
        _lock_for_run(fd, path, setting, (os.getpid(),), record)  # this process's: an earlier run stopped by Ctrl+C
        _claims[real] = keep_from_children(fd), created
    return real  # a relative path is one no more once the working directory is gone


def release(real: str, unmade: bool = False) -> None:
    """Let go of the claim of the file whose real path ``claim`` returned (the lock stays with a step's descriptor
    still open, ``open_locked``); with ``unmade`` (the run was refused before any step ran), remove the file if the
    claim created it and it is empty."""
    with _claims_lock:
        fd, created = _claims.pop(real, (None, False))
    if fd is None:
        return
    if unmade and created and os.fstat(fd).st_size == 0:
        with contextlib.suppress(OSError):
            os.unlink(real)
    close_lock_fd(fd)


def serve_run(pid: int) -> None:
    """Make this process a worker process of the run of process ``pid``: that run's claims are its own."""
    global _run_pid
    _run_pid = pid


def _close_lock_fds_in_child() -> None:
    """A forked child lets go of its copies of the descriptors that hold a run's lock (``_lock_fds``), claims too."""
    global _claims_lock
    _claims_lock = threading.Lock()  # the parent's may have been held by a thread the child has not
    _claims.clear()
    for fd, file in _lock_fds.items():
        with contextlib.suppress(OSError):
            status = os.fstat(fd)
            if (status.st_dev, status.st_ino) == file:  # else a step closed it itself and its number went elsewhere
                os.close(fd)
    _lock_fds.clear()


os.register_at_fork(after_in_child=_close_lock_fds_in_child)


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
