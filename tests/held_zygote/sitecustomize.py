"""Imported as it starts by each Python process whose path holds this directory: a test's ``pipeline-worker`` and
the processes it starts. With ``HELD_ZYGOTE`` (a file name) in its environment, the zygote (engine.zygote) touches
``HELD_ZYGOTE.waiting``, then waits (bounded) for the file ``HELD_ZYGOTE``: so the test catches pipeline-worker
while it starts its first worker process, as on a host slow to import (tests/test_remote.py)."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

_GATE = os.environ.get("HELD_ZYGOTE")
if _GATE and "pipeline.engine.zygote" in Path("/proc/self/cmdline").read_text(errors="replace"):
    from tests.remote_steps import wait_for  # here: the other processes of the test import nothing more

    Path(f"{_GATE}.waiting").touch()
    with contextlib.suppress(TimeoutError):  # pipeline-worker kills it first; it must never outlive the test
        wait_for(Path(_GATE).exists, f"the file {_GATE}")
