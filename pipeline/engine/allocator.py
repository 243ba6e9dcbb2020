"""Keep freed buffers for reuse: a large array freed in one thread and allocated again in another
must not cost a fresh mmap and hundreds of page faults each time.

glibc's malloc serves allocations above a threshold (128 KiB at first) with mmap and returns them
to the system when freed; then every new 1 MiB array page-faults again, which costs more than the
work on it. ``mallopt`` raises that threshold and keeps up to TRIM_BYTES of freed memory.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger("pipeline.engine")

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_BYTES = 32 * 1024 * 1024  # glibc's largest allowed threshold on 64-bit systems
TRIM_BYTES = 128 * 1024 * 1024


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to serve buffers up to 32 MiB from its heap and keep 128 MiB freed for reuse.

    Returns False (and changes nothing) where the C library has no mallopt, such as on macOS.
    """
    try:
        # The process's own symbols, libc's among them: ctypes.util.find_library runs ldconfig in a subprocess,
        # a fork of this process: 1.0-1.4 ms of each worker process's start (0.01 ms this way).
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    done = bool(mallopt(M_MMAP_THRESHOLD, MMAP_BYTES)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_BYTES))
    if not done:
        log.debug("mallopt refused the memory settings; large buffers are page-faulted afresh")
    return done
