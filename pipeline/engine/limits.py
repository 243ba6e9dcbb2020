"""The limits of a process that the engine raises for what it opens (open files, for its sockets and connections), and
the lines that tell a user which limit a run met (open files, or threads)."""

from __future__ import annotations

import errno
import resource

#: Open files a worker process asks for per worker thread: its sockets (to its router, and ZeroMQ's mailbox of
#: each), its rings' files and connections; 64 threads a process ran out of the usual soft limit of 256.
FILES_PER_WORKER_THREAD = 8
#: Open files a worker process asks for beyond its threads': its ZeroMQ context, its board, stdio, its imports'.
FILES_PER_WORKER_PROCESS = 64
#: Open files the run's process asks for per worker thread of its worker processes: their connections to its
#: routers over ipc (measured: up to four), which are no sockets of its own; 4 processes of 64 threads on two steps
#: passed the usual soft limit of 1,024 (libzmq aborted, no report).
RUN_FILES_PER_PROCESS_THREAD = 4
#: Open files the run's process holds whatever its steps: stdio, its ZeroMQ context's own, the zygote's pipes; the
#: smallest runs ran within 19 to 25 (below that libzmq aborted them).
RUN_FILES_BASE = 32


def worker_process_files(nb_thread: int) -> int:
    """Open files a worker process of ``nb_thread`` threads asks for (and needs, at most)."""
    return FILES_PER_WORKER_PROCESS + FILES_PER_WORKER_THREAD * nb_thread


def allow_open_files(needed: int) -> None:
    """Raise this process's soft limit of open files towards ``needed`` (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed if hard == resource.RLIM_INFINITY else min(needed, hard),
                                                    hard))


def files_short_of(needed: int) -> str | None:
    """Raise this process's soft limit of open files towards ``needed``; the line for a user if it stays below (the
    hard limit is lower), else None."""
    allow_open_files(needed)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return None
    return (f"out of open files: this process may open {_words(soft)} (ulimit -n; its hard limit, ulimit -Hn, "
            f"{_words(hard)}) and needs {needed:,} at least: raise it")


def out_of_files(error: BaseException) -> bool:
    """Whether ``error`` says this process (or the system) has no file descriptor left: a socket or file not opened."""
    return getattr(error, "errno", None) in (errno.EMFILE, errno.ENFILE)


def out_of_files_line() -> str:
    """What to tell a user whose run ran out of open files: the limit it met, and how to raise it."""
    return (f"out of open files at this process's limit of {_soft(resource.RLIMIT_NOFILE)} (the run raises it itself "
            "up to the hard limit, ulimit -Hn: raise that, or run fewer threads)")


def out_of_threads(error: BaseException) -> bool:
    """Whether ``error`` says no thread could be started (the user's limit of processes and threads, or no memory)."""
    return isinstance(error, RuntimeError) and str(error) == "can't start new thread"


def out_of_threads_line() -> str:
    """What to tell a user whose run could not start a thread: the limit it met, and how to raise it. Under a limit of
    memory a thread's stack (8 MiB of address space) is refused first, though the line named only ulimit -u."""
    memory = [f"{_words(soft // 1024)} KiB of {what} ({flag})" for limit, what, flag in _MEMORY_LIMITS
              if (soft := resource.getrlimit(limit)[0]) != resource.RLIM_INFINITY]
    if memory:
        return (f"cannot start a thread at this process's limit of {' or '.join(memory)}, or this user's limit of "
                f"{_soft(resource.RLIMIT_NPROC)} processes and threads (ulimit -u): raise them, or run fewer threads "
                "and worker processes")
    return (f"cannot start a thread at this user's limit of {_soft(resource.RLIMIT_NPROC)} processes and threads "
            "(ulimit -u: raise it, or run fewer threads and worker processes)")


#: The limits of memory that refuse a thread its stack: each with what it limits and how a shell sets it.
_MEMORY_LIMITS = ((resource.RLIMIT_AS, "address space", "ulimit -v"), (resource.RLIMIT_DATA, "data", "ulimit -d"))


def limit_line(error: BaseException) -> str | None:
    """The line for a user whose run met a limit of the machine (``error``: out of open files or of threads); None
    for any other error."""
    if out_of_files(error):
        return out_of_files_line()
    if out_of_threads(error):
        return out_of_threads_line()
    return None


def _soft(limit: int) -> str:
    """This process's soft limit of resource ``limit``, in words: "1,024", or "unlimited"."""
    soft, _ = resource.getrlimit(limit)
    return _words(soft)


def _words(limit: int) -> str:
    """A limit's value in words: "1,024", or "unlimited"."""
    return "unlimited" if limit == resource.RLIM_INFINITY else f"{limit:,}"
