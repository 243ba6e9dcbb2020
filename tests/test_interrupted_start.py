"""Ctrl+C landing while a run starts (the Python API): whatever thread it interrupts in its start(), the run raises
KeyboardInterrupt and leaves no thread, process or socket behind, and the next run works."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
import zmq

from pipeline import Pipeline
from pipeline.config import load_config
from pipeline.config.options import RunOptions
from pipeline.engine import zygote
from pipeline.engine.router import Router
from pipeline.engine.runner import ThreadedRunner
from tests.cli_helpers import chain_config, read_lines

#: Seconds any wait of these tests may take.
WAIT = 10.0


def children() -> set[int]:
    """The pids of this process's children (a thread that ends between the listing and the read has none)."""
    pids: set[int] = set()
    for task in Path("/proc/self/task").iterdir():
        with contextlib.suppress(FileNotFoundError):
            pids.update(int(pid) for pid in (task / "children").read_text().split())
    return pids


def interrupt_as_it_starts(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Ctrl+C lands in the start() of the thread named ``name``, once that thread runs (as in the wait at the end of
    Thread.start())."""
    real = threading.Thread.start

    def start(thread: threading.Thread) -> None:
        real(thread)
        if thread.name == name:
            raise KeyboardInterrupt

    monkeypatch.setattr(threading.Thread, "start", start)


def config(tmp_path: Path, processes: int) -> dict[str, Any]:
    """COUNT -> PASS (2 threads, or in ``processes`` worker processes) -> WRITE, showing progress (the monitor's
    thread runs)."""
    document = chain_config(str(tmp_path / "out.jsonl"))
    if processes:
        document["Pipeline"]["stagers_conf"][0]["nb_process"] = processes
    document["Pipeline"]["progress"] = True
    return document


@pytest.mark.parametrize(("mode", "processes", "thread"), [
    ("sequential", 0, "monitor"),
    ("threads", 0, "monitor"),
    ("threads", 0, "flusher"),
    ("threads", 0, "router-PASS"),
    ("threads", 0, "PASS#1"),
    ("threads", 1, "flusher"),
    ("threads", 1, "supervisor"),
])
def test_ctrl_c_as_a_thread_of_the_run_starts_leaves_nothing_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                    mode: str, processes: int, thread: str) -> None:
    """The monitor's thread went on publishing a dead run as "starting"; the flusher, and the zygote of the worker
    processes, were left behind."""
    threads, processes_before = set(threading.enumerate()), children()
    with monkeypatch.context() as patch:
        interrupt_as_it_starts(patch, thread)
        with pytest.raises(KeyboardInterrupt):
            Pipeline.from_config(config(tmp_path, processes), {"Pipeline": {"mode": mode}}).run()
    assert [t.name for t in set(threading.enumerate()) - threads if t.is_alive()] == []
    assert children() - processes_before == set()
    report = Pipeline.from_config(config(tmp_path, processes), {"Pipeline": {"mode": mode}}).run()
    assert report.exit_status == 0
    assert sorted(read_lines(tmp_path / "out.jsonl")) == list(range(5))  # PASS has two workers


def test_ctrl_c_while_the_zygote_has_not_answered_leaves_nothing_behind(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch,
                                                                       caplog: pytest.LogCaptureFixture) -> None:
    """The supervisor waited for the zygote's answer to its first fork (seconds, under load) without looking at the
    run's abort: the run said it left its thread behind, which then outlived run() raising KeyboardInterrupt."""
    threads, processes_before = set(threading.enumerate()), children()
    with monkeypatch.context() as patch, caplog.at_level(logging.WARNING, logger="pipeline"):
        # The zygote, forked from this process with the patch, never starts serving.
        patch.setattr(zygote, "release_freed_memory", threading.Event().wait)
        pipeline = Pipeline.from_config(config(tmp_path, 1), {"Pipeline": {"mode": "threads"}})
        interrupt_as_it_starts(patch, "supervisor")
        with pytest.raises(KeyboardInterrupt):
            pipeline.run()
    assert [record.getMessage() for record in caplog.records] == []
    assert [t.name for t in set(threading.enumerate()) - threads if t.is_alive()] == []
    assert children() - processes_before == set()


def test_a_router_whose_context_is_terminated_as_it_starts_stops_quietly(caplog: pytest.LogCaptureFixture) -> None:
    """Ctrl+C in the runner's start: the context was terminated before a router asked it for its sockets, and the
    router logged a CRITICAL internal error (ZMQError: Context was terminated)."""
    runner = ThreadedRunner(load_config(chain_config()), RunOptions())
    step = runner.config.steps["PASS"]
    context = zmq.Context()
    held = context.socket(zmq.PULL)  # the context's termination waits for it
    terminating = threading.Event()

    def hold() -> None:
        with pytest.raises(zmq.ContextTerminated):
            held.recv()  # returns as the termination starts
        terminating.set()

    holder = threading.Thread(target=hold)
    holder.start()
    terminator = threading.Thread(target=context.term)
    terminator.start()
    assert terminating.wait(WAIT)
    with caplog.at_level(logging.DEBUG, logger="pipeline"):
        for router in (Router(context, runner.control, runner.config, step, runner.addresses),):
            router.start()
            router.join(WAIT)
        held.close()
        terminator.join(WAIT)
        late = Router(context, runner.control, runner.config, step, runner.addresses)  # once it was terminated
        late.start()
        late.join(WAIT)
    holder.join(WAIT)
    assert (router.crash, late.crash, router.is_alive(), late.is_alive(), terminator.is_alive()) == (
        None, None, False, False, False)
    assert [record.getMessage() for record in caplog.records] == []


def test_a_router_refused_one_of_its_sockets_leaves_none_open(caplog: pytest.LogCaptureFixture) -> None:
    """It opened its three sockets before the try that closes them: those opened before the one refused were left
    open, and the context's termination waited for them for ever."""
    runner = ThreadedRunner(load_config(chain_config()), RunOptions())
    context = zmq.Context()
    context.max_sockets = 2
    router = Router(context, runner.control, runner.config, runner.config.steps["PASS"], runner.addresses)
    with caplog.at_level(logging.CRITICAL, logger="pipeline"):
        router.start()
        router.join(WAIT)
    assert isinstance(router.crash, zmq.ZMQError)  # an internal error of the run: too many sockets
    terminator = threading.Thread(target=context.term)
    terminator.start()
    terminator.join(WAIT)
    assert not terminator.is_alive()


@pytest.mark.parametrize("number", [999, 0, -5, 2.0, "2"])
def test_interrupt_with_what_is_no_signal_is_refused(tmp_path: Path, number: Any) -> None:
    """interrupt(999) stopped the run as "signal 999", exit status 1127 (which sys.exit() makes 103); 0 and -5 gave
    128 and 123. A run interrupted with a real one stops as it says."""
    pipeline = Pipeline.from_config(chain_config(str(tmp_path / "out.jsonl")))
    pipeline.expect_signals()
    with pytest.raises(ValueError, match=r"expected the number of a signal, such as signal\.SIGINT \(2\)"):
        pipeline.interrupt(number)
    pipeline.interrupt(signal.SIGTERM)
    assert pipeline.run().exit_status == 128 + signal.SIGTERM
