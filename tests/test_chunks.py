"""A step that makes many large outputs of one input (issue 24.6): memory stays within the documented caps in
every mode, and a failure or a worker's death half-way neither loses nor duplicates an output.

A stager makes 300 arrays of 1 MiB from one input (tests/chunk_steps.py). Its outputs are handed on in chunks of
OUTPUT_CHUNK_BYTES (16 of them) while its run() goes on; held until run() returned, they had all been alive at
once. The gauge counts the outputs alive (made and not yet consumed) across processes, without psutil.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline import Pipeline
from pipeline.config import load_config
from pipeline.engine.flow import (
    FANOUT_CREDIT,
    HELD_BACK_BYTES,
    OUTPUT_CHUNK_BYTES,
    OUTPUT_CHUNK_COUNT,
    batch_limit,
    held_back_limit,
    message_bound,
    window_limit,
)
from pipeline.execution import executor
from tests.chunk_steps import VALUES
from tests.remote_helpers import Launcher

# The tests of this file take more than 10 s in all: `pytest -m "not slow"` leaves them out.
pytestmark = [pytest.mark.timeout(60), pytest.mark.slow]

STEPS = "tests.chunk_steps"
#: Outputs of the one input (300 MiB), and of each output chunk (16).
PER = 300
CHUNK = OUTPUT_CHUNK_BYTES // (VALUES * 8)
#: The consumer's queue limit: small, so that the outputs wait in the stager (the bound is about that).
Q = 4

#: The stager's place in each mode: its keys (under "TALLY": the consumer's), and the run's mode.
MODES: dict[str, tuple[dict[str, Any], str]] = {
    "sequential": ({}, "sequential"),
    "threads": ({"nb_thread": 1}, "threads"),
    "threads-ordered": ({"nb_thread": 2, "ordered": True}, "threads"),
    "processes": ({"nb_process": 1}, "threads"),
    "processes-ordered": ({"nb_process": 2, "ordered": True}, "threads"),
    # The consumer in the same worker processes: fused, each chunk goes through it in the stager's process.
    "processes-fused": ({"nb_process": 2, "TALLY": {"nb_process": 2}}, "threads"),
}


def test_the_executor_chunks_as_the_flow_limits_say() -> None:
    """execution sits below engine: it keeps its own copy of the chunk limits, which must be engine.flow's."""
    assert (executor.CHUNK_BYTES, executor.CHUNK_COUNT) == (OUTPUT_CHUNK_BYTES, OUTPUT_CHUNK_COUNT)


def document(tmp: Path, stage: dict[str, Any], inputs: int = 1, **explode: Any) -> dict[str, Any]:
    """IN (Inputs) -> EXPLODE (``per`` outputs of 1 MiB per input) -> TALLY (queue_limit Q), with a gauge in tmp."""
    gauge = tmp / "gauge"
    gauge.mkdir(exist_ok=True)
    stage = dict(stage)
    tally = stage.pop("TALLY", {})
    return {
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "IN", "module": STEPS, "class": "Inputs", "next_steps": "EXPLODE"},
            "stagers_conf": [{"name": "EXPLODE", "module": STEPS, "class": "Explode", "next_steps": "TALLY",
                              **stage}],
            "consumer_conf": {"name": "TALLY", "module": STEPS, "class": "Tally", "queue_limit": Q,
                              **tally},
        },
        "Inputs": {"count": inputs},
        "Explode": {"per": PER, "gauge": str(gauge), "marker": str(tmp / "killed"), **explode},
        "Tally": {"path": str(tmp / "values"), "gauge": str(gauge)},
    }


def run(doc: dict[str, Any], mode: str, replay: str | None = None, **pipeline: Any) -> Any:
    """Run ``doc`` in ``mode`` (fast heartbeats: a death is seen within a second) and return the report."""
    overrides = {"Pipeline": {"mode": mode, "heartbeat_interval": 0.2, "gui": False, **pipeline}}
    return Pipeline.from_config(doc, overrides, replay=replay).run()


def values(tmp: Path) -> list[int]:
    """The values TALLY received, in order."""
    return [int(line) for line in (tmp / "values").read_text(encoding="utf-8").split()]


def peak(tmp: Path) -> int:
    """The most outputs alive at once, as the stager's workers saw it."""
    return max(int(line) for line in (tmp / "gauge" / "peaks").read_text(encoding="utf-8").split())


def expected(inputs: int) -> list[int]:
    """Every output of ``inputs`` inputs, in order."""
    return [int(i * 1e6 + k) for i in range(inputs) for k in range(PER)]


def each_once(tmp: Path, inputs: int, ordered: bool) -> bool:
    """Whether TALLY received every output of ``inputs`` inputs once (in order, if ``ordered``; an unordered step's
    workers interleave theirs, each in its own order)."""
    got = values(tmp)
    return got == expected(inputs) if ordered else sorted(got) == expected(inputs)


#: What may be alive besides the chunks, for TALLY (queue limit Q, one worker, one sender): its queue, what its
#: worker holds, two packets in the pipe to it and what the sender holds unsent (flow.py's bound for one step).
FOR_TALLY = Q + window_limit(Q) + 2 * batch_limit(Q) + batch_limit(Q)


@pytest.mark.parametrize("mode", MODES)
def test_many_large_outputs_of_one_input_stay_within_the_bound(tmp_path: Path, mode: str) -> None:
    """300 outputs of 1 MiB from one input: at most two chunks (the one being made, the one on its way: a worker
    in another process waits for its router's MORE) and what the consumer's limits allow are alive at once."""
    stage, how = MODES[mode]
    report = run(document(tmp_path, stage), how)
    assert report.exit_status == 0
    assert values(tmp_path) == expected(1)
    assert report["EXPLODE"].emitted == PER and report["TALLY"].processed == PER
    assert peak(tmp_path) <= 2 * CHUNK + FOR_TALLY + 1 < PER // 4, peak(tmp_path)


@pytest.mark.parametrize("stage", [{"nb_process": 1}, {"nb_process": 2}, {"nb_thread": 2, "ordered": True},
                                   {"nb_process": 2, "ordered": True}])
def test_a_step_whose_every_input_fans_out_stays_within_the_bound(tmp_path: Path, stage: dict[str, Any]) -> None:
    """400 inputs of 100 small outputs each, to a slower consumer: a worker that returns its outputs to its router
    (one in a worker process; an ordered step's) runs ahead only by FANOUT_CREDIT RESULTs of them, not by its whole
    window (two worker processes had 5,188 outputs alive here, where the bound says 3,340). An ordered step's router
    also holds back the outputs of inputs that finished before an earlier one: message_bound counts one message
    for each such input (flow.held_back_limit), the step holds back all their outputs (within HELD_BACK_BYTES)."""
    per = 100
    doc = document(tmp_path, stage, inputs=400, per=per, values=16)
    report = run(doc, "threads")
    assert report.exit_status == 0
    made = [int(i * 1e6 + k) for i in range(400) for k in range(per)]
    assert (values(tmp_path) if stage.get("ordered") else sorted(values(tmp_path))) == made
    config = load_config(doc)
    bound = message_bound(config)
    assert bound is not None and bound < len(made) // 4  # the bound means something for this run
    step = config.steps["EXPLODE"]
    held_back = held_back_limit(step.workers, step.queue_limit) * (per - 1) if step.ordered else 0
    assert peak(tmp_path) <= bound + held_back, (peak(tmp_path), bound)


@pytest.mark.parametrize("stage", [{"nb_process": 1, "queue_limit": Q}, {"nb_process": 2, "queue_limit": Q},
                                   {"nb_process": 2, "queue_limit": Q, "TALLY": {"nb_process": 2}}],
                         ids=["one-process", "two-processes", "fused"])
def test_a_fan_out_past_a_packet_in_worker_processes_stays_within_the_bound_and_its_documented_term(
        tmp_path: Path, stage: dict[str, Any]) -> None:
    """Inputs of 20 outputs each before a queue_limit of 4 (packets of 2): a RESULT holds all of an input's, which
    message_bound counts as a packet; flow.py's docstring adds W * (FANOUT_CREDIT + 1) * (F - B) (a tester saw 77
    alive where the bound said 30). The fused consumer makes no outputs: its group's F is still 20."""
    per = 20
    doc = document(tmp_path, stage, inputs=60, per=per, values=16)
    report = run(doc, "threads")
    assert report.exit_status == 0
    assert sorted(values(tmp_path)) == [int(i * 1e6 + k) for i in range(60) for k in range(per)]
    config = load_config(doc)
    step = config.steps["EXPLODE"]
    bound = message_bound(config)
    assert bound is not None
    term = step.workers * (FANOUT_CREDIT + 1) * (per - batch_limit(Q))
    assert peak(tmp_path) <= bound + term, (peak(tmp_path), bound, term)


@pytest.mark.parametrize("mode", ["threads-ordered", "processes-ordered"])
def test_an_ordered_step_holds_back_the_chunks_of_a_later_input_within_held_back_bytes(tmp_path: Path,
                                                                                        mode: str) -> None:
    """Two inputs on two workers of an ordered step: the second's chunks wait for the first's end, at most
    HELD_BACK_BYTES of them held by the router (then their worker waits), and all come out in order."""
    stage, how = MODES[mode]
    report = run(document(tmp_path, stage, inputs=2), how)
    assert report.exit_status == 0
    assert values(tmp_path) == expected(2)
    held_back = HELD_BACK_BYTES // (VALUES * 8)
    assert peak(tmp_path) <= held_back + 4 * CHUNK + FOR_TALLY + 1 < 2 * PER, peak(tmp_path)


@pytest.mark.parametrize("mode", MODES)
def test_a_failure_half_way_records_what_went_on_and_its_replay_sends_the_rest(tmp_path: Path, mode: str) -> None:
    """run() raises at output 150 of 300: the 144 outputs of the 9 chunks handed on stay delivered, the dead letter
    says so, the log says so, and the replay, the step fixed, sends the other 156: each output once."""
    stage, how = MODES[mode]
    dead = tmp_path / "dead.jsonl"
    doc = document(tmp_path, stage, fail_at=150)
    report = run(doc, how, dead_letter=str(dead))
    assert report.exit_status == 1
    delivered = 150 // CHUNK * CHUNK
    assert values(tmp_path) == expected(1)[:delivered]
    [record] = [json.loads(line) for line in dead.read_text(encoding="utf-8").splitlines()]
    assert (record["step"], record["delivered"]) == ("EXPLODE", delivered)
    assert run(document(tmp_path, stage), how, replay=str(dead)).exit_status == 0
    assert values(tmp_path) == expected(1)


@pytest.mark.parametrize("mode", ["processes", "processes-ordered", "processes-fused"])
def test_a_worker_process_that_dies_half_way_is_replaced_and_nothing_is_lost_or_sent_twice(tmp_path: Path,
                                                                                            mode: str) -> None:
    """The process making the outputs of input 0 dies at output 150: the 144 handed on stay delivered, the input
    goes to another process with a SKIP of 144, which drops as many of its outputs: each output once, in order."""
    stage, how = MODES[mode]
    report = run(document(tmp_path, stage, inputs=3, kill_at=150), how)
    assert report.exit_status == 0
    assert (tmp_path / "killed").exists()
    assert each_once(tmp_path, 3, ordered=bool(stage.get("ordered")))
    assert report["EXPLODE"].emitted == 3 * PER and report["EXPLODE"].redelivered >= 1
    assert report["TALLY"].processed == 3 * PER


@pytest.mark.parametrize("kill", [False, True], ids=["bound", "death"])
def test_a_remote_worker_chunks_its_outputs_and_its_death_half_way_loses_nothing(tmp_path: Path, kill: bool) -> None:
    """The same through the run's door: a pipeline-worker with two processes makes the outputs of two inputs within
    the bound; or the one making input 0's dies at output 150, and the other takes the input again after a SKIP.
    (The gauge counts the outputs the second attempt makes and drops, so the bound is checked without a death.)"""
    with Launcher(tmp_path) as launch:
        proc = launch.run(document(tmp_path, {"nb_thread": 0}, inputs=2, kill_at=150 if kill else -1))
        worker = launch.worker("--processes=2", step="EXPLODE")
        assert proc.wait() == 0, proc.stderr
        assert worker.wait() == (1 if kill else 0), worker.stderr  # a worker process killed fails pipeline-worker
    assert each_once(tmp_path, 2, ordered=False)
    if kill:
        assert (tmp_path / "killed").exists() and "delivered again" in proc.stderr
        assert "killed by signal SIGKILL" in worker.stderr
    else:
        assert peak(tmp_path) <= 4 * CHUNK + FOR_TALLY + 1, peak(tmp_path)  # two processes, two chunks each


def test_a_remote_worker_whose_every_input_fans_out_gets_its_mores_and_ends(tmp_path: Path) -> None:
    """The fan-out credit through the run's door: each RESULT of many outputs waits for its MORE, relayed to the
    remote worker, and at its end it waits for those it is owed, then leaves (exit 0): every output once."""
    with Launcher(tmp_path) as launch:
        proc = launch.run(document(tmp_path, {"nb_thread": 0}, inputs=200, per=50, values=16))
        worker = launch.worker("--processes=2", step="EXPLODE")
        assert proc.wait() == 0, proc.stderr
        assert worker.wait() == 0, worker.stderr
    assert sorted(values(tmp_path)) == [int(i * 1e6 + k) for i in range(200) for k in range(50)]


@pytest.mark.parametrize("mode", ["sequential", "threads", "processes"])
def test_a_producers_messages_each_a_chunks_worth_go_on(tmp_path: Path, mode: str) -> None:
    """A producer's message as large as a chunk (16 MiB) is handed on as soon as it is made, from inside the
    producer's step: nothing waits for a lock its own thread holds (pipeline-bench's 16 MiB arrays hung so)."""
    stage, how = MODES[mode]
    doc = document(tmp_path, stage, inputs=3, per=2)
    doc["Pipeline"]["producer_conf"]["class"] = "BigInputs"
    report = run(doc, how)
    assert report.exit_status == 0 and report["IN"].processed == 3
    got = values(tmp_path)
    assert sorted(got) == [int(i * 1e6 + k) for i in range(3) for k in range(2)], got
