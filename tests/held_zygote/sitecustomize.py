"""Imported as it starts by each Python process whose path holds this directory: a test's ``pipeline-worker`` and the
processes it starts, or a zygote a test spawns. The zygote (engine.zygote) then starts slowly, as on a host slow to
import: with ``HELD_ZYGOTE`` (a file name) in its environment, it writes its pid to ``HELD_ZYGOTE.waiting``, then
waits (bounded) for the file ``HELD_ZYGOTE``, so that the test catches pipeline-worker while it starts its first worker
process; with ``SLOW_ZYGOTE`` (seconds), it takes that long (tests/test_remote.py, tests/test_worker_start.py)."""

from __future__ import annotations

import contextlib
import os
import time
from pathlib import Path

_GATE = os.environ.get("HELD_ZYGOTE")
_SLOW = float(os.environ.get("SLOW_ZYGOTE", "0"))
if (_GATE or _SLOW) and "pipeline.engine.zygote" in Path("/proc/self/cmdline").read_text(errors="replace"):
    time.sleep(_SLOW)  # the slowness itself, which nothing but time can show
    if _GATE:
        from tests.remote_steps import wait_for  # here: the other processes of the test import nothing more

        Path(f"{_GATE}.waiting").write_text(str(os.getpid()))
        with contextlib.suppress(TimeoutError):  # pipeline-worker kills it first; it must never outlive the test
            wait_for(Path(_GATE).exists, f"the file {_GATE}")
