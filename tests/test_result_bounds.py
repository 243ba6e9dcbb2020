"""How many outputs one RESULT holds (engine.flow.MAX_RESULT_OUTPUTS): at most a chunk's worth from an honest worker,
whatever threads of its step send, and a remote peer's RESULT of more is refused on its header.

A thread a step starts may send_msg() any number of outputs during one call: they went on at the call's end as one
answer, and a helper's million made one RESULT of a million. A peer could send such a RESULT too (a million empty
outputs is an 8 MB header, far under the 1 GiB frame cap), and the run made Python objects for each, gigabytes.
"""

from __future__ import annotations

import itertools
import json
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from traitlets import Bool, Int, Unicode

from pipeline import Component, Pipeline
from pipeline.config import load_config
from pipeline.engine.flow import MAX_RESULT_OUTPUTS
from pipeline.engine.outlets import ToRouter
from pipeline.engine.wire import Kind, WireError, check_from_worker, parse_result
from pipeline.execution import executor
from pipeline.execution.executor import CHUNK_COUNT, UNORDERED, Discard, Outputs, StepExecutor
from pipeline.failures.policy import FailurePolicy
from pipeline.message import Encoded, decode, encode
from tests.remote_helpers import Launcher
from tests.remote_steps import WAIT_SECONDS
from tests.wire_helpers import empty_outputs_result

#: Outputs a helper thread sends during one call: several chunks' worth.
HELPER_OUTPUTS = 20_000
#: A new inproc address for each outlet (an address just unbound may not be free again yet).
ADDRESSES = itertools.count()


def test_a_result_holds_at_most_a_chunks_worth_of_outputs() -> None:
    """The router refuses what the executor never makes: the two sides hold one number (execution sits below
    engine, and keeps its own copy)."""
    assert MAX_RESULT_OUTPUTS == executor.CHUNK_COUNT


def test_a_result_of_more_outputs_than_a_chunk_is_refused_on_its_header_alone() -> None:
    """A peer's RESULT of 1,000,000 empty outputs (an 8 MB header) is refused before any object is made per
    output; one of a chunk's worth passes."""
    assert check_from_worker(empty_outputs_result(MAX_RESULT_OUTPUTS), 1, 64) is Kind.RESULT
    bomb = empty_outputs_result(1_000_000)
    tracemalloc.start()
    try:
        with pytest.raises(WireError, match=f"^a RESULT of 1000000 outputs, more than the {MAX_RESULT_OUTPUTS} a "
                                            "worker sends in one$"):
            check_from_worker(bomb, 1, 64)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 10, peak  # not a copy of its header, nor an object per output


# --------------------------------------------------------------------------- the executor's chunks


class Recorded(Discard):
    """A sink that keeps what it is given: ("chunk" or "commit", input, the values), in order."""

    def __init__(self) -> None:
        super().__init__()
        self.given: list[tuple[str, int, list[Any]]] = []

    def commit(self, seq: int, outputs: Outputs, seconds: float = 0.0) -> None:
        """Keep the committed values."""
        self.given.append(("commit", seq, _values(outputs)))

    def partial(self, seq: int, outputs: Outputs) -> None:
        """Keep the chunk's values."""
        self.given.append(("chunk", seq, _values(outputs)))


def _values(outputs: Outputs) -> list[Any]:
    """The values of encoded outputs."""
    return [decode(message.inband, message.buffers) for message, _ in outputs if isinstance(message, Encoded)]


class HelperThenOwn(Component):
    """In each of its calls named by ``where``, a thread it starts sends HELPER_OUTPUTS numbers, then the call itself
    yields ``own`` more: the helper's come with the call's first chunk (``own`` of CHUNK_COUNT), or at its end. With
    ``fail``, its run() raises after that."""

    where = Unicode("run", help="init, run or finish.").tag(config=True)
    own = Int(0, help="Outputs the call yields after its helper's.").tag(config=True)
    fail = Bool(False, help="run() raises after its outputs.").tag(config=True)

    def _call(self) -> Iterator[int]:
        helper = threading.Thread(target=self._help)
        helper.start()
        helper.join(WAIT_SECONDS)
        yield from range(HELPER_OUTPUTS, HELPER_OUTPUTS + self.own)

    def _help(self) -> None:
        for k in range(HELPER_OUTPUTS):
            self.send_msg(k)

    def init(self) -> Iterator[int]:
        """The helper's sends, if ``where`` is init."""
        if self.where == "init":
            yield from self._call()

    def run(self, msg: Any) -> Iterator[int]:
        """The helper's sends, if ``where`` is run; then raise, with ``fail``."""
        if self.where == "run":
            yield from self._call()
        if self.fail:
            raise ValueError("after the helper's sends")

    def finish(self) -> Iterator[int]:
        """The helper's sends, if ``where`` is finish."""
        if self.where == "finish":
            yield from self._call()


def stager(**options: Any) -> tuple[StepExecutor, Recorded]:
    """An executor of HelperThenOwn (of ``options``) as a stager's worker, on a recording sink, started."""
    config = load_config({"version": 1, "Pipeline": {
        "producer_conf": {"name": "P", "module": "tests.chunk_steps", "class": "Inputs", "next_steps": "S"},
        "stagers_conf": [{"name": "S", "module": "tests.chunk_steps", "class": "HelperSends", "next_steps": "C"}],
        "consumer_conf": {"name": "C", "module": "tests.chunk_steps", "class": "Tally"}}})
    worker = StepExecutor(config.steps["S"], 0, FailurePolicy(0, "", lambda reason: None))
    sink = worker.sink = Recorded()
    assert worker.start(lambda: HelperThenOwn(step_name="S", next_steps=["C"], **options))
    return worker, sink


@pytest.mark.parametrize("where", ["init", "run", "finish"])
@pytest.mark.parametrize("own", [0, CHUNK_COUNT])
def test_what_other_threads_send_during_a_call_goes_on_in_chunks(where: str, own: int) -> None:
    """20,000 outputs sent by a helper thread during one call of init(), run() or finish() come in chunks of at most
    CHUNK_COUNT, in order, the call's end committing the last: at its end (``own`` 0), or with the chunk its own
    yields make (they went on as one chunk of 20,000, or one answer)."""
    worker, sink = stager(where=where, own=own)
    worker.run(INPUT)
    worker.finish()
    seq = 7 if where == "run" else UNORDERED
    given = [entry for entry in sink.given if entry[2] or entry[0] == "chunk"]
    assert all(len(values) <= CHUNK_COUNT for _, _, values in given), [(k, len(v)) for k, _, v in given]
    assert {(kind, number) for kind, number, _ in given[:-1]} == {("chunk", seq)}
    assert given[-1][:2] == ("commit", seq)
    assert [value for _, _, values in given for value in values] == list(range(HELPER_OUTPUTS + own))
    assert worker.counts.processed == 1 and worker.counts.failed == 0


#: One input, number 7, as a worker receives it: (sequence number, pickle, buffers).
INPUT = [(7, encode(0).inband, encode(0).buffers)]


def test_a_failed_calls_outputs_from_other_threads_are_dropped_not_handed_on() -> None:
    """A run() that raises after its helper sent 20,000 (no chunk cut while it ran) delivers none of them: its
    outputs not yet handed on are dropped, however many."""
    worker, sink = stager(fail=True)
    worker.run(INPUT)
    assert [entry for entry in sink.given if entry[1] == 7] == []
    assert worker.counts.failed == 1


# --------------------------------------------------------------------------- a worker's RESULTs


@pytest.fixture
def pair() -> Iterator[tuple[zmq.Socket, zmq.Socket]]:
    """Two connected PAIR sockets on inproc: a worker's end and its router's."""
    context = zmq.Context()
    address = f"inproc://router-{next(ADDRESSES)}"
    router, worker = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
    try:
        router.bind(address)
        worker.connect(address)
        yield worker, router
    finally:
        worker.close(linger=0)
        router.close(linger=0)
        context.term()


def test_a_worker_sends_the_answers_it_holds_before_one_that_would_take_them_past_a_chunks_worth(
        pair: tuple[zmq.Socket, zmq.Socket]) -> None:
    """Answers of 20 outputs (held: fewer than a RESULT that fans out waits for) then of CHUNK_COUNT went as one
    RESULT of 4,116 outputs, which the router refuses: they go as two, each within the bound, in order."""
    socket, router = pair
    config = load_config({"version": 1, "Pipeline": {
        "producer_conf": {"name": "P", "module": "tests.chunk_steps", "class": "Inputs", "next_steps": "S"},
        "stagers_conf": [{"name": "S", "module": "tests.chunk_steps", "class": "HelperSends", "next_steps": "C",
                          "queue_limit": 64}],
        "consumer_conf": {"name": "C", "module": "tests.chunk_steps", "class": "Tally"}}})
    outlet = ToRouter(socket, config.steps["S"], None)
    outlet.commit(0, [(encode(k), None) for k in range(20)])
    outlet.commit(1, [(encode(k), None) for k in range(CHUNK_COUNT)])
    outlet.flush()
    answers = []
    while router.poll(0):
        frames = router.recv_multipart(copy=False)
        assert check_from_worker(frames, 1, 64) is Kind.RESULT
        answers += [(answer.seq, len(answer.outputs)) for answer in parse_result(frames)]
    assert answers == [(0, 20), (1, CHUNK_COUNT)]


# --------------------------------------------------------------------------- runs


def helper_document(directory: Path, stage: dict[str, Any], inputs: int = 1) -> dict[str, Any]:
    """IN (``inputs`` inputs) -> S (HelperSends: each input's run() has a thread send HELPER_OUTPUTS) -> OUT, which
    writes each output on a line of ``directory``/out.jsonl."""
    return {
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "IN", "module": "tests.chunk_steps", "class": "Inputs", "next_steps": "S"},
            "stagers_conf": [{"name": "S", "module": "tests.chunk_steps", "class": "HelperSends",
                              "next_steps": "OUT", **stage}],
            "consumer_conf": {"name": "OUT", "module": "algorithms.basic", "class": "JsonLinesWriter"},
        },
        "Inputs": {"count": inputs},
        "HelperSends": {"per": HELPER_OUTPUTS},
        "JsonLinesWriter": {"path": str(directory / "out.jsonl")},
    }


def written(directory: Path) -> list[int]:
    """What OUT wrote, sorted."""
    return sorted(json.loads(line) for line in (directory / "out.jsonl").read_text(encoding="utf-8").splitlines())


@pytest.mark.slow
@pytest.mark.parametrize("stage", [{"nb_thread": 1}, {"nb_thread": 2, "ordered": True}, {"nb_process": 1}],
                         ids=["threads", "threads-ordered", "process"])
def test_outputs_a_helper_thread_sends_during_one_call_arrive_once(tmp_path: Path, stage: dict[str, Any]) -> None:
    """20,000 outputs sent by a helper thread during one run() call, in the run's threads and in a worker process:
    each arrives once, and the report counts them."""
    report = Pipeline.from_config(helper_document(tmp_path, stage, inputs=2),
                                  {"Pipeline": {"mode": "threads", "gui": False}}).run()
    assert report.exit_status == 0
    assert written(tmp_path) == list(range(2 * HELPER_OUTPUTS))
    assert report["S"].emitted == 2 * HELPER_OUTPUTS and report["OUT"].processed == 2 * HELPER_OUTPUTS


@pytest.mark.slow
def test_outputs_a_helper_thread_sends_in_a_remote_worker_arrive_once(tmp_path: Path) -> None:
    """The same through a remote pipeline-worker, the step's only worker: its RESULTs pass the door's check (one
    answer of 20,000 outputs was dropped, and the run waited for it)."""
    with Launcher(tmp_path) as launch:
        run = launch.run(helper_document(tmp_path, {"nb_thread": 0}, inputs=2))
        worker = launch.worker(step="S")
        assert run.wait() == 0, run.stderr
        assert worker.wait() == 0, worker.stderr
    assert "dropped a message" not in run.stderr
    assert written(tmp_path) == list(range(2 * HELPER_OUTPUTS))
