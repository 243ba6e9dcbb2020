"""End-to-end semantics of the Component API, in every mode.

Each test builds a real pipeline from a dict config whose steps live in tests/semantic_steps.py,
runs it in the sequential runner and in the threaded ZeroMQ engine, and checks what the
collecting steps wrote and the run report. Outputs are compared as multisets (sorted lists)
unless the step is ``"ordered": true``; a collecting step writes a finish line last, so every
test also checks that nothing reached a step after its finish().
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest

from tests.semantic_helpers import (
    assert_ok,
    check_counts,
    collector,
    multiset,
    numbers,
    pipeline_config,
    read,
    run,
    step,
)
from tests.semantic_steps import describe, make_payload

MODES = ["sequential", "threads"]

pytestmark = pytest.mark.parametrize("mode", MODES)


# Expected outputs of each stager class for one input, as the API defines them.
OUTPUTS: dict[str, Callable[[int], list[Any]]] = {
    "Scale": lambda n: [2 * n],
    "KeepEven": lambda n: [n] if n % 2 == 0 else [],
    "Repeat": lambda n: [[n, k] for k in range(3)],
    "SendMany": lambda n: [[n, k] for k in range(3)],
}


def expected_outputs(cls: str, inputs: Iterable[int]) -> list[Any]:
    return multiset(out for n in inputs for out in OUTPUTS[cls](n))


# --------------------------------------------------------------------------- a stager's outputs


@pytest.mark.parametrize("cls", ["Scale", "KeepEven", "Repeat", "SendMany"])
def test_stager_outputs(mode: str, tmp_path: Path, cls: str) -> None:
    """Return value sent on; None filters; a generator's values and each send_msg() are all sent."""
    n = 20
    config = pipeline_config(
        step("P", "Numbers", "S"), [step("S", cls, "C")], collector(tmp_path, "C"), **numbers(n)
    )
    report = run(config, mode)
    assert multiset(read(tmp_path, "C")) == expected_outputs(cls, range(n))
    assert_ok(report)
    check_counts(report, config)
    outputs = len(expected_outputs(cls, range(n)))
    assert (report["S"].received, report["S"].processed, report["S"].emitted) == (n, n, outputs)
    assert report["C"].received == outputs


def test_filter_counts_processed_not_emitted(mode: str, tmp_path: Path) -> None:
    """A filtered message is processed (not failed) and sends nothing."""
    config = pipeline_config(
        step("P", "Numbers", "F"), [step("F", "KeepEven", "C")], collector(tmp_path, "C"), **numbers(11)
    )
    report = run(config, mode)
    assert sorted(read(tmp_path, "C")) == [0, 2, 4, 6, 8, 10]
    assert_ok(report)
    check_counts(report, config)
    counts = report["F"]
    assert (counts.received, counts.processed, counts.emitted, counts.failed) == (11, 11, 6, 0)


def test_producer_yielding_none_sends_nothing(mode: str, tmp_path: Path) -> None:
    """A producer's yielded None is skipped: not sent, not counted as emitted."""
    config = pipeline_config(
        step("P", "Numbers", "S"),
        [step("S", "Scale", "C")],
        collector(tmp_path, "C"),
        **numbers(10, yield_none=True),
    )
    report = run(config, mode)
    assert sorted(read(tmp_path, "C")) == [2 * n for n in range(10)]
    assert_ok(report)
    check_counts(report, config)
    assert report["P"].emitted == 10
    assert report["S"].received == 10


# --------------------------------------------------------------------------- routing and graph shapes


def test_send_msg_to_named_step_goes_there_only(mode: str, tmp_path: Path) -> None:
    """send_msg(msg, NAME) reaches that next step only, and counts one delivery."""
    config = pipeline_config(
        step("P", "Numbers", "R"),
        [
            step("R", "Route", "EVEN,ODD"),
            collector(tmp_path, "EVEN", "CollectAndReturn"),  # a stager sink
        ],
        collector(tmp_path, "ODD"),
        **numbers(20),
    )
    report = run(config, mode)
    assert sorted(read(tmp_path, "EVEN")) == list(range(0, 20, 2))
    assert sorted(read(tmp_path, "ODD")) == list(range(1, 20, 2))
    assert_ok(report)
    check_counts(report, config, broadcast=False)
    assert report["R"].emitted == 20
    assert (report["EVEN"].received, report["ODD"].received) == (10, 10)


@pytest.mark.parametrize("cls", ["Scale", "Repeat", "SendMany"])
def test_broadcast_fan_out_reaches_every_next_step(mode: str, tmp_path: Path, cls: str) -> None:
    """Without a step name, each output goes to every next step: emitted counts each delivery."""
    n = 15
    config = pipeline_config(
        step("P", "Numbers", "S"),
        [step("S", cls, "X,Y"), collector(tmp_path, "X", "CollectAndReturn")],
        collector(tmp_path, "Y"),
        **numbers(n),
    )
    report = run(config, mode)
    expected = expected_outputs(cls, range(n))
    assert multiset(read(tmp_path, "X")) == expected
    assert multiset(read(tmp_path, "Y")) == expected
    assert_ok(report)
    check_counts(report, config)
    assert report["S"].emitted == 2 * len(expected)
    assert report["X"].received == report["Y"].received == len(expected)


def test_fan_in_consumer_gets_the_union(mode: str, tmp_path: Path) -> None:
    """Two branches into one consumer: it receives every message of both."""
    n = 30
    config = pipeline_config(
        step("P", "Numbers", "R"),
        [
            step("R", "Route", "EVEN,ODD"),
            step("EVEN", "Scale", "C", config={"factor": 10}),
            step("ODD", "Scale", "C", config={"factor": 100}),
        ],
        collector(tmp_path, "C"),
        **numbers(n),
    )
    report = run(config, mode)
    expected = [10 * k for k in range(0, n, 2)] + [100 * k for k in range(1, n, 2)]
    assert sorted(read(tmp_path, "C")) == sorted(expected)
    assert_ok(report)
    check_counts(report, config, broadcast=False)
    assert report["C"].received == report["EVEN"].emitted + report["ODD"].emitted == n


@pytest.mark.parametrize("queue_limit", [64, 1])
def test_diamond(mode: str, tmp_path: Path, queue_limit: int) -> None:
    """Fan-out to two branches, fan-in at a join: the join sees both branches, nothing is lost or stuck."""
    n = 200
    config = pipeline_config(
        step("P", "Numbers", "A,B"),
        [
            step("A", "Scale", "J", config={"factor": 2}, queue_limit=queue_limit),
            step("B", "Scale", "J", config={"factor": 3}, queue_limit=queue_limit, nb_thread=2),
            step("J", "PassThrough", "C", queue_limit=queue_limit),
        ],
        collector(tmp_path, "C", queue_limit=queue_limit),
        **numbers(n),
    )
    report = run(config, mode)
    assert sorted(read(tmp_path, "C")) == sorted([2 * k for k in range(n)] + [3 * k for k in range(n)])
    assert_ok(report)
    check_counts(report, config)
    assert report["P"].emitted == 2 * n
    assert report["J"].received == 2 * n


def test_send_msg_to_unknown_step_fails_that_message(mode: str, tmp_path: Path) -> None:
    """A wrong step name is an error naming the step and its next steps; that message counts as failed.

    The bad message is the last one, so every other message was processed before it whatever the
    run does after a failure (go on, or stop taking input and drain).
    """
    n = 10
    config = pipeline_config(
        step("P", "Numbers", "BAD"),
        [step("BAD", "BadRoute", "OUT_A,OUT_B"), collector(tmp_path, "OUT_A", "CollectAndReturn")],
        collector(tmp_path, "OUT_B"),
        **numbers(n),
        BadRoute={"bad_on": n - 1, "bad_target": "NOWHERE"},
    )
    report = run(config, mode)
    survivors = list(range(n - 1))
    assert sorted(read(tmp_path, "OUT_A")) == survivors
    assert sorted(read(tmp_path, "OUT_B")) == survivors
    assert report.exit_status == 1
    bad = report["BAD"]
    assert (bad.received, bad.processed, bad.failed, bad.emitted) == (n, n - 1, 1, 2 * (n - 1))
    error = report.steps["BAD"].first_error
    assert error is not None
    for word in ("RoutingError", "BAD", "NOWHERE", "OUT_A", "OUT_B"):
        assert word in error, f"{word!r} not in first error {error!r}"
    for name in ("P", "OUT_A", "OUT_B"):
        assert report[name].failed == 0
        assert report.steps[name].first_error is None
    check_counts(report, config)


def test_a_send_from_a_step_without_next_steps_fails_its_message(mode: str, tmp_path: Path) -> None:
    """The consumer has nowhere to send: its send_msg() raises a RoutingError, which fails that message only."""
    n = 6
    config = pipeline_config(step("P", "Numbers", "OUT"), [],
                             collector(tmp_path, "OUT", "CollectAndSend", config={"send_on": 2}, on_error="skip"),
                             **numbers(n))
    report = run(config, mode)
    assert report.exit_status == 1
    assert (report["OUT"].processed, report["OUT"].failed) == (n - 1, 1)
    assert report.steps["OUT"].first_error == "RoutingError: step 'OUT' has no next steps to send to"
    assert sorted(read(tmp_path, "OUT")) == [i for i in range(n) if i != 2]


def test_stager_without_next_steps_is_a_sink(mode: str, tmp_path: Path) -> None:
    """A stager with no next steps takes every message like a consumer; what it returns or yields goes nowhere."""
    n = 12
    config = pipeline_config(
        step("P", "Numbers", "SINK_RET,SINK_GEN,C"),
        [
            collector(tmp_path, "SINK_RET", "CollectAndReturn"),
            step("SINK_GEN", "Repeat"),
        ],
        collector(tmp_path, "C"),
        **numbers(n),
    )
    report = run(config, mode)
    assert sorted(read(tmp_path, "SINK_RET")) == list(range(n))
    assert sorted(read(tmp_path, "C")) == list(range(n))
    assert_ok(report)
    check_counts(report, config)
    for name in ("SINK_RET", "SINK_GEN"):
        counts = report[name]
        assert (counts.received, counts.processed, counts.emitted, counts.failed) == (n, n, 0, 0)


# --------------------------------------------------------------------------- finish()


@pytest.mark.parametrize("nb_thread", [1, 2])
@pytest.mark.parametrize("how", ["send", "yield"])
def test_finish_outputs_reach_the_consumer_before_it_finishes(
    mode: str, tmp_path: Path, how: str, nb_thread: int
) -> None:
    """A stager that sums in run() and emits the sum from finish(): the consumer gets it before its own finish()."""
    config = pipeline_config(
        step("P", "Numbers", "SUM"),
        [step("SUM", "Summer", "C", nb_thread=nb_thread)],
        collector(tmp_path, "C"),
        **numbers(10, start=1),
        Summer={"how": how},
    )
    report = run(config, mode)
    sums = read(tmp_path, "C")  # read() checks the sums came before C's finish line
    assert sum(sums) == 55
    assert 1 <= len(sums) <= nb_thread
    assert_ok(report)
    check_counts(report, config)
    assert (report["SUM"].received, report["SUM"].emitted) == (10, len(sums))


def test_finish_outputs_chain_through_finishing_steps(mode: str, tmp_path: Path) -> None:
    """A finish() output reaches a next step that itself emits from finish(): each step finishes after its inputs."""
    config = pipeline_config(
        step("P", "Numbers", "S1"),
        [
            step("S1", "Summer", "S2", config={"how": "send"}),
            step("S2", "Summer", "S3", config={"how": "yield"}),
            step("S3", "Summer", "C", config={"how": "send"}),
        ],
        collector(tmp_path, "C"),
        **numbers(10, start=1),
    )
    report = run(config, mode)
    assert read(tmp_path, "C") == [55]
    assert_ok(report)
    check_counts(report, config)
    assert [report[s].received for s in ("S1", "S2", "S3", "C")] == [10, 1, 1, 1]


def test_producer_finish_sends_after_its_messages(mode: str, tmp_path: Path) -> None:
    """The producer's finish() may send_msg(): it reaches the consumer like the generated messages."""
    config = pipeline_config(
        step("P", "Numbers", "S"),
        [step("S", "Scale", "C")],
        collector(tmp_path, "C"),
        **numbers(5, final=100),
    )
    report = run(config, mode)
    assert sorted(read(tmp_path, "C")) == [0, 2, 4, 6, 8, 200]
    assert_ok(report)
    check_counts(report, config)
    assert report["P"].emitted == 6


@pytest.mark.timeout(15)
def test_finish_output_to_a_step_whose_init_failed_ends_the_run(mode: str, tmp_path: Path) -> None:
    """A consumer's init() fails and an upstream finish() still emits to it: the run ends with status 1.

    The failure is the consumer's; the summing step did nothing wrong and reports no error.
    """
    config = pipeline_config(
        step("P", "Numbers", "SUM"),
        [step("SUM", "Summer", "C")],
        step("C", "Collect", config={"path": str(tmp_path / "missing-dir" / "C.jsonl")}),
        **numbers(5),
    )
    report = run(config, mode)
    assert report.exit_status == 1
    assert "FileNotFoundError" in (report.steps["C"].first_error or "")
    assert report.steps["SUM"].first_error is None, report.table()
    counts = report["SUM"]
    assert counts.processed + counts.failed == counts.received, counts
    assert report["C"].received == counts.emitted  # they reached C, which could process none of them
    assert report["C"].processed + report["C"].failed == 0
    assert report.unprocessed == counts.emitted


# --------------------------------------------------------------------------- configuration


def test_traits_reach_init_with_per_step_overrides(mode: str, tmp_path: Path) -> None:
    """init() sees configured traits: the class section, and a step's own "config" for that step only."""
    n = 8
    config = pipeline_config(
        step("P", "Numbers", "W"),
        [
            step("W", "Wrap", "L1"),
            step("L1", "Label", "L2"),
            step("L2", "Label", "L3", config={"label": "own"}),
            step("L3", "Label", "C", config={"factor": 9}, nb_thread=2),
        ],
        collector(tmp_path, "C"),
        **numbers(n, start=100),
        Label={"label": "cls", "factor": 7},
    )
    report = run(config, mode)
    expected = [[k, "L1:cls:7", "L2:own:7", "L3:cls:9"] for k in range(100, 100 + n)]
    assert multiset(read(tmp_path, "C")) == multiset(expected)
    assert_ok(report)
    check_counts(report, config)


def test_overrides_reach_init(mode: str, tmp_path: Path) -> None:
    """from_config overrides (the command line) win over the file's class section, as init() sees it."""
    config = pipeline_config(
        step("P", "Numbers", "W"),
        [step("W", "Wrap", "L1"), step("L1", "Label", "C")],
        collector(tmp_path, "C"),
        **numbers(3),
        Label={"label": "file", "factor": 1},
    )
    report = run(config, mode, {"Label": {"factor": 4}, "Numbers": {"count": 5}})
    assert multiset(read(tmp_path, "C")) == multiset([[k, "L1:file:4"] for k in range(5)])
    assert_ok(report)
    check_counts(report, config)


# --------------------------------------------------------------------------- parallel and ordered steps


@pytest.mark.parametrize("cls", ["Scale", "KeepEven", "Repeat", "SendMany"])
def test_three_workers_give_the_same_outputs(mode: str, tmp_path: Path, cls: str) -> None:
    """nb_thread=3 on a stager: the same multiset of outputs as one worker."""
    n = 300
    config = pipeline_config(
        step("P", "Numbers", "S"),
        [step("S", cls, "C", nb_thread=3)],
        collector(tmp_path, "C"),
        **numbers(n),
    )
    report = run(config, mode)
    assert multiset(read(tmp_path, "C")) == expected_outputs(cls, range(n))
    assert_ok(report)
    check_counts(report, config)
    assert report["S"].received == n


@pytest.mark.parametrize("how", ["return", "yield", "send"])
def test_ordered_stager_keeps_input_order(mode: str, tmp_path: Path, how: str) -> None:
    """An ordered stager with 4 workers and random 0-2 ms of work per message emits in input order."""
    n = 200
    config = pipeline_config(
        step("P", "Numbers", "S"),
        [step("S", "Jitter", "C", nb_thread=4, ordered=True)],
        collector(tmp_path, "C"),
        **numbers(n),
        Jitter={"max_ms": 2, "how": how},
    )
    report = run(config, mode)
    expected: list[Any] = list(range(n)) if how == "return" else [[k, j] for k in range(n) for j in (0, 1)]
    received = read(tmp_path, "C")
    assert multiset(received) == multiset(expected)
    assert received == expected, "ordered step's outputs arrived out of order"
    assert_ok(report)
    check_counts(report, config)


# --------------------------------------------------------------------------- message contents


@pytest.mark.parametrize("first", ["MUT", "LOOK"])
@pytest.mark.parametrize("size", [100, 20_000], ids=["small", "out_of_band"])
def test_fan_out_branches_are_isolated(mode: str, tmp_path: Path, size: int, first: str) -> None:
    """A branch that changes its received dict and numpy array in place does not change the other branch's copy."""
    n = 10
    order = "MUT,LOOK" if first == "MUT" else "LOOK,MUT"
    config = pipeline_config(
        step("P", "Records", order),
        [step("MUT", "Mutate", "C"), step("LOOK", "Look", "C")],
        collector(tmp_path, "C"),
        Records={"count": n, "size": size},
    )
    report = run(config, mode)
    views = read(tmp_path, "C")
    look = multiset(v for v in views if v["branch"] == "LOOK")
    mut = multiset(v for v in views if v["branch"] == "MUT")
    assert look == multiset(
        {"branch": "LOOK", "i": i, "i_seen": i, "tags": ["P"], "min": float(i), "max": float(i), "size": size}
        for i in range(n)
    )
    assert mut == multiset(
        {"branch": "MUT", "i": -1, "i_seen": i, "tags": ["P", "MUT"], "min": -3.0, "max": -3.0, "size": size}
        for i in range(n)
    )
    assert_ok(report)
    check_counts(report, config)


PAYLOAD_CASES = [
    ("ndarray", 2 * 1024 * 1024),
    ("bytes", 100_000),
    ("bytes", 64 * 1024),
    ("bytearray", 100_000),
    ("memoryview", 100_000),
    ("memoryview_f8", 100_000),
]


@pytest.mark.parametrize("wrap", [False, True], ids=["bare", "in_dict"])
@pytest.mark.parametrize(("kind", "nbytes"), PAYLOAD_CASES, ids=[f"{k}-{b}" for k, b in PAYLOAD_CASES])
def test_large_payloads_arrive_intact(mode: str, tmp_path: Path, kind: str, nbytes: int, wrap: bool) -> None:
    """Large arrays and byte buffers keep their type, shape and every byte, through a stager and a fan-out."""
    count = 3
    config = pipeline_config(
        step("P", "Payloads", "PASS"),
        [step("PASS", "PassThrough", "DA,DB"), collector(tmp_path, "DA", "Digest")],
        collector(tmp_path, "DB", "Digest"),
        Payloads={"kind": kind, "count": count, "nbytes": nbytes, "wrap": wrap},
    )
    report = run(config, mode)
    expected = []
    for i in range(count):
        info = describe(make_payload(kind, i, nbytes))
        expected.append({"i": i, **info} if wrap else info)
    assert info["nbytes"] == nbytes
    assert multiset(read(tmp_path, "DA")) == multiset(expected)
    assert multiset(read(tmp_path, "DB")) == multiset(expected)
    assert_ok(report)
    check_counts(report, config)
