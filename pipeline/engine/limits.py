"""The limits of a process that the engine raises for what it opens: open files, for its sockets and connections."""

from __future__ import annotations

import resource

#: Open files a worker process asks for per worker thread: its sockets (to its router, and ZeroMQ's mailbox of
#: each), its rings' files and connections; 64 threads a process ran out of the usual soft limit of 256.
FILES_PER_WORKER_THREAD = 8
#: Open files a worker process asks for beyond its threads': its ZeroMQ context, its board, stdio, its imports'.
FILES_PER_WORKER_PROCESS = 64


def allow_open_files(needed: int) -> None:
    """Raise this process's soft limit of open files towards ``needed`` (never above the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed if hard == resource.RLIM_INFINITY else min(needed, hard),
                                                    hard))
