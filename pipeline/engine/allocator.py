"""Keep freed buffers for reuse: a large array freed in one thread and allocated again in another
must not cost a fresh mmap and hundreds of page faults each time.

glibc's malloc serves allocations above a threshold (128 KiB at first) with mmap and returns them
to the system when freed; then every new 1 MiB array page-faults again, which costs more than the
work on it. ``mallopt`` raises that threshold and keeps up to TRIM_BYTES of freed memory.

What is kept must not pile up: glibc gives threads arenas of their own (up to eight a core), which the
threads of a later run take over in another order, so that a process running pipeline after pipeline kept
each run's memory in flight in another arena until all held some: ARENAS bounds them. And what is kept must
not be copied: the zygote gives back what malloc can give back as it starts (``release_freed_memory``).
"""

from __future__ import annotations

import ctypes
import logging
from collections.abc import Callable

log = logging.getLogger("pipeline.engine")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8
MMAP_BYTES = 32 * 1024 * 1024  # glibc's largest allowed threshold on 64-bit systems
TRIM_BYTES = 128 * 1024 * 1024
#: Most malloc arenas: the main one and one more, so that a thread allocating outside the GIL (ZeroMQ's I/O
#: threads) seldom waits for one Python code holds. Python code allocates holding the GIL, so its threads gain
#: nothing from more; with glibc's default (8 a core) a process that ran pipelines of camera events one after
#: another held 96, 141, ..., 324 MiB after each of its first six runs, and its 600-event runs went from 1.24x
#: the plain loop to 1.07x as each fork copied the page tables of it all (docs/performance.md). glibc fixes its
#: limit once a process has more than eight arenas: set later, it changes nothing.
ARENAS = 2


def _glibc(function: str) -> Callable[..., int] | None:
    """The C library's ``function`` where it has one (glibc's malloc functions: macOS's C library has none), from
    the process's own symbols: ``ctypes.util.find_library`` runs ldconfig in a subprocess, a fork of this process,
    1.0-1.4 ms of each worker process's start (0.01 ms this way)."""
    try:
        return getattr(ctypes.CDLL(None), function)
    except (OSError, AttributeError):
        return None


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to serve buffers up to 32 MiB from its heap, keep 128 MiB freed for reuse, and use at
    most ARENAS arenas.

    Returns False where the C library has no mallopt (and nothing changes), such as on macOS, or where it
    refused one of the settings (the others hold).
    """
    mallopt = _glibc("mallopt")
    if mallopt is None:
        return False
    done = all([mallopt(option, value) for option, value in  # each, whether or not one before it was refused
                ((M_MMAP_THRESHOLD, MMAP_BYTES), (M_TRIM_THRESHOLD, TRIM_BYTES), (M_ARENA_MAX, ARENAS))])
    if not done:
        log.debug("mallopt refused the memory settings; large buffers are page-faulted afresh")
    return done


def release_freed_memory() -> None:
    """Give the system back the freed memory malloc keeps (``malloc_trim``), where the C library can: all the main
    arena's, and the whole free pages inside the others (their free end stays: glibc gives it back only as they
    shrink, which TRIM_BYTES, larger than such an arena, keeps them from doing).

    The zygote does it as it starts: it shares its parent's pages until one of them writes, and the parent's
    freed memory is what the parent reuses first, so that each of its reuses would copy a page the zygote
    kept for nothing, and each worker process forked from the zygote would copy their page tables too.
    """
    malloc_trim = _glibc("malloc_trim")
    if malloc_trim is not None:
        malloc_trim(0)
