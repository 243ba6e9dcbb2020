"""A remote worker on this host, for pipeline-bench: the stage served by one ``pipeline-worker`` process over
CurveZMQ on loopback TCP, so that what remote work adds to each message (the run's door, encryption, the
network stack, a worker process) is measured beside the other designs. The worker's start and its joining are
part of the run's time, as a worker process's start is in the other engine rows.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zmq

from pipeline.auth.keys import generate_key_pair, key_paths
from pipeline.bench.baselines import BaselineError
from pipeline.bench.interpreter import python
from pipeline.pipeline import Pipeline


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


class LoopbackWorker:
    """A ``pipeline-worker`` process serving one step of a run on loopback, and the run's settings that let it in.

    A worker that fails ends the run it serves at once (:meth:`watch`): else the run waited out its worker_timeout
    (60 s) for a worker that would never join, deaf to the bench's Ctrl+C during the warm-up.
    """

    def __init__(self, process: subprocess.Popen[bytes], settings: dict[str, Any]) -> None:
        self.process = process
        self.settings = settings
        self._watcher: threading.Thread | None = None

    def watch(self, pipeline: Pipeline) -> None:
        """From now on, the worker's failure stops ``pipeline``'s run (its exit status 0 is its leaving at the end)."""
        pipeline.expect_signals()  # a worker that fails before the run has started stops it too
        self._watcher = threading.Thread(target=self._stop_on_failure, args=(pipeline,), name="bench-worker-watch",
                                         daemon=True)
        self._watcher.start()

    def _stop_on_failure(self, pipeline: Pipeline) -> None:
        """Wait for the worker's exit; stop the run if it failed."""
        if self.process.wait() != 0:
            pipeline.interrupt(signal.SIGTERM)

    def end(self, seconds: float) -> int | None:
        """Wait ``seconds`` for the worker to leave, then kill it; its exit status, None if it had to be killed."""
        try:
            status: int | None = self.process.wait(seconds)
        except subprocess.TimeoutExpired:
            status = None
        finally:
            if self.process.poll() is None:
                self.process.kill()
            self.process.wait()
            if self._watcher is not None:
                self._watcher.join()
        return status


def last_line(path: Path) -> str:
    """The last line a process wrote to the file ``path`` (its error, as a rule), or a word saying it wrote none."""
    lines = path.read_text(errors="replace").strip().splitlines()
    return lines[-1][-600:] if lines else "(it wrote nothing to stderr)"


@contextlib.contextmanager
def remote_worker(step: str) -> Iterator[LoopbackWorker]:
    """Start ``pipeline-worker`` for ``step`` on loopback; yield it, with the run's Pipeline settings that let it in.

    After the run, the worker must have left with exit status 0, else the run is broken: BaselineError gives its
    status and the last line of its stderr, in place of what its absence did to the run.
    """
    with tempfile.TemporaryDirectory(prefix="pipeline-bench-") as directory:
        keys = Path(directory)
        generate_key_pair(keys, "server")
        generate_key_pair(keys / "workers", "worker")
        address = f"tcp://127.0.0.1:{free_port()}"
        errors = keys / "worker.err"
        with errors.open("wb") as stderr:  # in a directory of its own: the current one may hold a pipeline.py
            process = subprocess.Popen(
                python("-m", "pipeline.cli.worker", f"--connect={address}",
                       f"--server-key={key_paths(keys, 'server')[0]}",
                       f"--key={key_paths(keys / 'workers', 'worker')[1]}", f"--step={step}", "--threads=1"),
                cwd=directory, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
        worker = LoopbackWorker(process, {"listen": address, "server_key": str(key_paths(keys, "server")[1]),
                                          "authorized_keys": str(keys / "workers")})
        try:
            yield worker
        except BaseException as err:
            gone = process.poll()  # its status if it ended before the run did
            worker.end(0)
            if isinstance(err, Exception) and gone not in (None, 0):  # the run broke because the worker did
                raise BaselineError(f"the remote worker ended with {gone}: {last_line(errors)}") from err
            raise
        status = worker.end(WORKER_EXIT_SECONDS)
        if status != 0:
            raise BaselineError(f"the remote worker ended with {status}: {last_line(errors)}")
