"""Imported at the start of every Python process whose path holds this directory (a test puts it in PYTHONPATH):
with ``PIPELINE_TEST_FAIL_STARTS=1`` in the environment, no worker process can be started, as under a process
limit (EAGAIN): ``os.fork`` fails (in the zygote) and so does ``subprocess.Popen`` of a worker process."""

from __future__ import annotations

import errno
import os
import subprocess
from typing import Any

#: What the command line of a worker process started from scratch holds (engine.process_keeper.WORKER_MAIN).
WORKER_MAIN = "pipeline.engine.worker_process import main"


def _refuse(*args: Any, **kwargs: Any) -> int:
    raise OSError(errno.EAGAIN, os.strerror(errno.EAGAIN))


class _NoWorkerPopen(subprocess.Popen):
    """Popen that refuses to start a worker process (the zygote and anything else start as usual)."""

    def __init__(self, args: Any, *more: Any, **kwargs: Any) -> None:
        if any(WORKER_MAIN in str(arg) for arg in (args if isinstance(args, list | tuple) else [args])):
            _refuse()
        super().__init__(args, *more, **kwargs)


if os.environ.get("PIPELINE_TEST_FAIL_STARTS") == "1":
    os.fork = _refuse
    subprocess.Popen = _NoWorkerPopen  # type: ignore[misc]
