"""A remote worker on this host, for pipeline-bench: the stage served by one ``pipeline-worker`` process over
CurveZMQ on loopback TCP, so that what remote work adds to each message (the run's door, encryption, the
network stack, a worker process) is measured beside the other designs. The worker's start and its joining are
part of the run's time, as a worker process's start is in the other engine rows.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zmq

from pipeline.auth.keys import generate_key_pair, key_paths
from pipeline.bench.baselines import BaselineError


def free_port() -> int:
    """A loopback port nothing listens on."""
    context = zmq.Context()
    probe = context.socket(zmq.PULL)
    try:
        return probe.bind_to_random_port("tcp://127.0.0.1")
    finally:
        probe.close(0)
        context.term()


#: Seconds the worker has to leave once the run has ended (it leaves as soon as the run tells it).
WORKER_EXIT_SECONDS = 30.0


@contextlib.contextmanager
def remote_worker(step: str) -> Iterator[dict[str, Any]]:
    """Start ``pipeline-worker`` for ``step`` on loopback; yield the run's Pipeline settings that let it in.

    After the run, the worker must have left with exit status 0, else the run is broken (BaselineError says why).
    """
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as directory:
        keys = Path(directory)
        generate_key_pair(keys, "server")
        generate_key_pair(keys / "workers", "worker")
        address = f"tcp://127.0.0.1:{free_port()}"
        errors = keys / "worker.err"
        with errors.open("wb") as stderr:
            worker = subprocess.Popen(
                [sys.executable, "-m", "pipeline.cli.worker", f"--connect={address}",
                 f"--server-key={key_paths(keys, 'server')[0]}", f"--key={key_paths(keys / 'workers', 'worker')[1]}",
                 f"--step={step}", "--threads=1"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        try:
            yield {"listen": address, "server_key": str(key_paths(keys, "server")[1]),
                   "authorized_keys": str(keys / "workers")}
            status = worker.wait(WORKER_EXIT_SECONDS)
        except subprocess.TimeoutExpired:
            status = None
        finally:
            if worker.poll() is None:
                worker.kill()
            worker.wait()
        if status != 0:
            said = errors.read_text(errors="replace").strip()[-600:]
            raise BaselineError(f"the remote worker ended with {status}: {said}")
