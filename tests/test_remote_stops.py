"""A run of the Python API that listens for remote workers, stopped mid-stream with a remote worker joined: by Ctrl+C
(KeyboardInterrupt out of ``run()``), by ``interrupt()`` whose drain outlasts shutdown_timeout, or at once (a second
interrupt). Whichever way, it leaves nothing behind in the caller's process: no thread, no socket on its port, no
traceback on stderr, and the caller's logging as it was.

A real ``pipeline-worker`` joins the step; it blocks in its first message (role ``remote-blocking``), so the run
cannot drain: the stop ends in an abort, which terminates the run's context under its ZAP handler.
"""

from __future__ import annotations

import _thread
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from pipeline import Pipeline
from tests.remote_helpers import CONSUMER, STAGE, Launcher
from tests.remote_steps import markers, wait_for

# The tests of this file take more than 10 s in all: `pytest -m "not slow"` leaves them out.
pytestmark = pytest.mark.slow

#: The values the producer would send: far more than the run gets through before it is stopped.
COUNT = 10_000


@pytest.fixture
def asyncio_level() -> Iterator[int]:
    """The caller's own level for the asyncio logger (INFO), set for the test and put back after it."""
    logger = logging.getLogger("asyncio")
    before = logger.level
    logger.setLevel(logging.INFO)
    yield logging.INFO
    logger.setLevel(before)


def ctrl_c(pipeline: Pipeline) -> None:
    """Ctrl+C as the run's caller gets it: KeyboardInterrupt in the main thread."""
    _thread.interrupt_main()


def interrupt(pipeline: Pipeline) -> None:
    """One interrupt(): the run drains, and gives up on its busy remote worker after shutdown_timeout."""
    pipeline.interrupt(signal.SIGINT)


def stop_at_once(pipeline: Pipeline) -> None:
    """A second interrupt(): the run stops at once."""
    pipeline.interrupt(signal.SIGINT)
    pipeline.interrupt(signal.SIGINT)


@pytest.mark.timeout(90)
@pytest.mark.parametrize("stop", [ctrl_c, interrupt, stop_at_once], ids=["ctrl-c", "interrupt", "at-once"])
def test_a_run_stopped_with_a_remote_worker_leaves_nothing_behind(
        launch: Launcher, asyncio_level: int, capfd: pytest.CaptureFixture[str],
        stop: Callable[[Pipeline], None]) -> None:
    # Threads of earlier tests (or of pyzmq) are none of this run's.
    before = set(threading.enumerate())
    config = launch.chain(nb_thread=0, count=COUNT)
    # A consumer that opens no file: an aborted run never calls finish(), and a file left open warns at its collection.
    config["Pipeline"]["consumer_conf"] = {"name": CONSUMER, "module": "algorithms.basic", "class": "PassThrough"}
    del config["JsonLinesWriter"]
    pipeline = Pipeline.from_config(config, {"Pipeline": {
        "listen": launch.address, "server_key": str(launch.keys.server_secret),
        "authorized_keys": str(launch.keys.authorized), "shutdown_timeout": 0.5, "progress": False, "gui": False}})
    launch.worker(role="remote-blocking")

    def stop_once_busy() -> None:
        """Stop the run once the remote worker is in its first message (and even if it never gets there)."""
        try:
            wait_for(lambda: markers(launch.gate, "busy"), "the remote worker to be in its first message")
        finally:
            stop(pipeline)

    stopper = threading.Thread(target=stop_once_busy, name="test-stopper")
    stopper.start()
    try:
        report = pipeline.run()
    except KeyboardInterrupt:
        report = None
    stopper.join(30)

    assert (report is None) == (stop is ctrl_c)
    if report is not None:
        assert report.exit_status == 130, report.table()
    left = [thread.name for thread in threading.enumerate() if thread not in before]
    assert left == [], f"threads left behind: {left}"
    # The port is free at once, for a new run (libzmq binds its listener with SO_REUSEADDR, as here).
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", launch.port))
        again.listen()
    assert logging.getLogger("asyncio").level == asyncio_level
    stderr = capfd.readouterr().err
    assert "Exception in callback" not in stderr and "Traceback" not in stderr, stderr[:3000]
    assert markers(launch.gate, "busy"), f"the remote worker never joined {STAGE}; its stderr:\n" + "".join(
        proc.stderr for proc in launch.processes)
