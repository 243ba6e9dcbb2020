"""Fused steps (engine.fusion): consecutive steps of the same worker processes run one after the other in
one process, and still give the sequential run's outputs, counts, errors and dead letters, step by step.

Which steps fuse is pure (``fused_groups``); the rest runs real worker processes.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from traitlets import Unicode

from pipeline import Component
from pipeline.config import load_config
from pipeline.config.options import RunOptions
from pipeline.engine import ThreadedRunner
from pipeline.engine.fusion import Chain, fused_groups
from pipeline.engine.worker_process import ProcessWorkerThread
from pipeline.execution.executor import CHUNK_COUNT, Outputs, StepExecutor
from pipeline.failures.deadletter import load_messages
from pipeline.failures.policy import FailurePolicy
from pipeline.message import Encoded, decode, encode
from tests.failure_helpers import report_row
from tests.process_helpers import lines, pids, report_line, run_to_end, written
from tests.semantic_helpers import (
    assert_ok,
    check_counts,
    collector,
    counts,
    numbers,
    pipeline_config,
    read,
    run,
    run_checked_in_each_mode,
    step,
)

PROCESS_STEPS = "tests.process_steps"
FAILURE_STEPS = "tests.failure_steps"

pytestmark = pytest.mark.timeout(60)


# --------------------------------------------------------------------------- which steps fuse


def linear(*stagers: dict[str, Any], consumer: dict[str, Any] | None = None) -> dict:
    """P -> the stagers in turn -> C; each entry's name and next step filled in."""
    names = [entry["name"] for entry in stagers] + ["C"]
    entries = [{**step(entry["name"], "PassThrough", names[i + 1]), **entry} for i, entry in enumerate(stagers)]
    return pipeline_config(step("P", "Numbers", names[0]), entries, {**step("C", "Collect"), **(consumer or {})},
                           **numbers(3))


def groups(document: dict, enabled: bool = True) -> dict[str, tuple[str, ...]]:
    """The fused groups of a config document."""
    return fused_groups(load_config(document, check=False), enabled)


def test_a_chain_of_the_same_worker_processes_fuses_into_one_group() -> None:
    document = linear({"name": "A", "nb_process": 2}, {"name": "B", "nb_process": 2},
                      consumer={"nb_process": 2})
    assert groups(document) == {"A": ("A", "B", "C")}
    assert groups(document, enabled=False) == {}


@pytest.mark.parametrize(("a", "b"), [
    ({"nb_process": 2}, {"nb_process": 1}),  # another number of processes
    ({"nb_process": 2}, {"nb_process": 2, "nb_thread": 2}),  # another number of threads
    ({"nb_process": 2}, {"nb_thread": 2}),  # threads of the run's process
    ({"nb_process": 2, "ordered": True}, {"nb_process": 2}),  # an ordered step keeps its own router
    ({"nb_process": 2}, {"nb_process": 2, "ordered": True}),
])
def test_steps_that_differ_do_not_fuse(a: dict, b: dict) -> None:
    assert groups(linear({"name": "A", **a}, {"name": "B", **b})) == {}


def test_a_fan_out_or_a_fan_in_does_not_fuse() -> None:
    fan_out = pipeline_config(step("P", "Numbers", "A"),
                              [step("A", "PassThrough", "B,C", nb_process=2), step("B", "PassThrough", "C",
                                                                                   nb_process=2)],
                              step("C", "Collect", nb_process=2), **numbers(3))
    assert groups(fan_out) == {}  # A sends to two steps; C receives from two
    fan_in = pipeline_config(step("P", "Numbers", "A,B"),
                             [step("A", "PassThrough", "B", nb_process=2), step("B", "PassThrough", "C",
                                                                                nb_process=2)],
                             step("C", "Collect", nb_process=2), **numbers(3))
    assert groups(fan_in) == {"B": ("B", "C")}  # B receives from the producer too; B -> C fuses


# --------------------------------------------------------------------------- how a group runs each message


class Noted(Component):
    """Notes each call in ``calls`` (its label, its number) and returns the number."""

    label = Unicode("").tag(config=True)

    def init(self) -> None:
        """Nothing noted yet."""
        self.calls: list[tuple[str, int]] = CALLS

    def run(self, msg: int) -> int:
        """Note the call; pass the number on."""
        self.calls.append((self.label, msg))
        return msg


CALLS: list[tuple[str, int]] = []


class Answers:
    """Stands for a worker process's outlet: the answers a Chain gives, in order."""

    oldest = 0.0

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.given: list[tuple[int, list[Any]]] = []

    def commit(self, seq: int, outputs: Outputs, seconds: float = 0.0) -> None:
        self.given.append((seq, [decode(m.inband, m.buffers) for m, _ in outputs if isinstance(m, Encoded)]))

    def partial(self, seq: int, outputs: Outputs, made: int | None = None) -> None:
        """A chunk of an answer: not kept."""

    def flush_if_due(self) -> None:
        """Nothing waits here."""


def chain_of_three(*classes: type[Component]) -> tuple[StepExecutor, Answers]:
    """A group A -> B -> D of steps of ``classes`` (Noted by default) on a stand-in outlet."""
    document = linear({"name": "A"}, {"name": "B"}, {"name": "D"})
    config = load_config(document)
    policy = FailurePolicy(0, "", lambda reason: None)
    executors = [StepExecutor(config.steps[name], 0, policy) for name in ("A", "B", "D")]
    answers = Answers()
    answers.lock.acquire()  # the worker thread holds its outlet's lock but while the step's code runs
    executors[0].sink = Chain(answers, executors)  # type: ignore[arg-type]
    kinds = classes or (Noted, Noted, Noted)
    for executor, kind in reversed(list(zip(executors, kinds, strict=True))):
        executor.start(lambda kind=kind, label=executor.step.name: kind(label=label) if kind is Noted else kind())
    answers.given.clear()  # what init() sent (nothing here)
    CALLS.clear()
    return executors[0], answers


def packet(*numbers: int) -> list[tuple[int, bytes, list]]:
    """Messages as a worker's first step receives them: (sequence number, pickle, buffers)."""
    return [(n, encode(n).inband, encode(n).buffers) for n in numbers]


def test_each_output_goes_through_every_fused_step_before_the_next_and_each_input_is_answered_at_once() -> None:
    first, answers = chain_of_three()
    first.run(packet(0, 1, 2))
    assert CALLS == [("A", 0), ("B", 0), ("D", 0), ("A", 1), ("B", 1), ("D", 1), ("A", 2), ("B", 2), ("D", 2)]
    assert answers.given == [(0, [0]), (1, [1]), (2, [2])]


class Spin(Component):
    """Passes each message on after about 5 µs of CPU."""

    def run(self, msg: int) -> int:
        """Spin, then pass the message on."""
        end = time.perf_counter() + 5e-6
        while time.perf_counter() < end:
            pass
        return msg


class Fan(Component):
    """Yields CHUNK_COUNT + 10 numbers for each message: a chunk of them goes through the fused steps mid-call."""

    def run(self, msg: int) -> Iterator[int]:
        """The numbers."""
        yield from range(CHUNK_COUNT + 10)


@pytest.mark.parametrize("first_step", [Noted, Fan])
def test_a_fused_workers_time_per_input_is_its_whole_groups_counted_once(first_step: type[Component]) -> None:
    # A worker process asks for enough inputs to keep it busy PREFETCH_SECONDS_OUTSIDE: timed by its first step
    # alone, three fused camera steps asked for windows three times too long, and waited for packets the bytes cap
    # never made; a chunk of the first step's outputs, which runs through the fused steps during its call, counts
    # once (a review found it counted twice).
    first, _ = chain_of_three(first_step, Spin, Spin)
    start = time.perf_counter()
    first.run(packet(0, 1, 2))
    wall = time.perf_counter() - start
    chain: Chain = first.sink  # type: ignore[assignment]
    group = ProcessWorkerThread.busy_time.fget(SimpleNamespace(executor=first, chain=chain))  # type: ignore[attr-defined]
    members = sum(executor.busy_time for executor in chain.executors[1:])
    assert 0 < members <= group and first.busy_time <= group <= wall * 1.01


def first_fails(tmp_path: Path, on_error: str, count: int) -> dict:
    """P -> FAIL (fails on multiples of 5: the group's FIRST step) -> S -> C, the stagers fused in 2 processes."""
    return pipeline_config(
        step("P", "Numbers", "FAIL"),
        [{**step("FAIL", "FailEvery", "S", nb_process=2, on_error=on_error), "module": FAILURE_STEPS},
         step("S", "Scale", "C", nb_process=2, config={"factor": 1})],
        collector(tmp_path, "C"), **numbers(count), FailEvery={"every": 5})


@pytest.mark.parametrize("mode", ["sequential", "threads"])
def test_the_first_fused_step_failing_amid_its_packet_fails_those_messages_alone(tmp_path: Path, mode: str) -> None:
    # The router takes a worker's answers in the order of its inputs: a failure must not overtake the answers of the
    # inputs before it (a chain that held them broke the run this way).
    report, dead = run_keeping_dead_letters(first_fails(tmp_path, "skip", 30), mode, tmp_path)
    assert sorted(read(tmp_path, "C")) == [n for n in range(30) if n % 5]
    assert counts(report)["FAIL"] == (30, 24, 24, 6)
    assert sorted(load_messages(str(dead))) == [("FAIL", n) for n in range(0, 30, 5)]


@pytest.mark.parametrize("mode", ["sequential", "threads"])
def test_on_error_stop_in_the_first_fused_step_loses_nothing(tmp_path: Path, mode: str) -> None:
    report, dead = run_keeping_dead_letters(first_fails(tmp_path, "stop", 400), mode, tmp_path)
    assert report.exit_status == 1
    received, processed, _, failed = counts(report)["FAIL"]
    records = [json.loads(line) for line in lines(dead)]
    not_run = [record for record in records if record["error"].startswith("NotRun")]
    assert 1 <= failed <= 2 and len(records) - len(not_run) == failed
    assert processed == counts(report)["S"][0] == len(read(tmp_path, "C"))
    assert processed + failed + len(not_run) == received


@pytest.mark.parametrize("mode", ["sequential", "threads"])
def test_a_chunk_of_the_first_fused_step_amid_its_packet_goes_on(tmp_path: Path, mode: str) -> None:
    # Message 7 makes 5,000 outputs: they go on in chunks while its call goes on, after the answers before them.
    document = pipeline_config(
        step("P", "Numbers", "G"),
        [{**step("G", "ManyFor", "S", nb_process=2), "module": FAILURE_STEPS},
         step("S", "PassThrough", "C", nb_process=2)],
        collector(tmp_path, "C"), **numbers(40), ManyFor={"at": 7, "many": 5000})
    report = run(document, mode, {"Pipeline": {"mode": mode}})
    assert report.exit_status == 0
    assert len(read(tmp_path, "C")) == 39 + 5000
    assert counts(report)["G"] == (40, 40, 5039, 0)
    assert counts(report)["S"] == (5039, 5039, 5039, 0)


# --------------------------------------------------------------------------- the same results


def features(tmp: Path, count: int = 60) -> dict:
    """A fused chain of every kind of step: returns, a filter, a generator with many outputs per input and a
    consumer, all in the same 2 worker processes."""
    return pipeline_config(
        step("P", "Numbers", "S"),
        [step("S", "Scale", "F", nb_process=2, config={"factor": 3}),
         step("F", "KeepEven", "R", nb_process=2),
         step("R", "Repeat", "C", nb_process=2, config={"copies": 3})],
        collector(tmp, "C", nb_process=2),
        **numbers(count),
    )


def test_a_fused_chain_gives_the_sequential_outputs_and_counts_of_each_step(tmp_path: Path) -> None:
    outcomes = {mode: (sorted(map(json.dumps, read(tmp_path / mode, "C", 1 if mode == "sequential" else 2))),
                       counts(report)) for mode, report in run_checked_in_each_mode(tmp_path, features).items()}
    assert groups(features(tmp_path)) == {"S": ("S", "F", "R", "C")}
    assert outcomes["threads"] == outcomes["sequential"]
    assert outcomes["threads"][1]["R"] == (30, 30, 90, 0)  # each step its own figures


def test_the_monitor_shows_each_fused_step_as_its_own_row(tmp_path: Path) -> None:
    runner = ThreadedRunner(load_config(features(tmp_path)), RunOptions())
    report = runner.run()
    assert_ok(report)
    rows = {row.name: row for row in runner.snapshot().steps}
    for name in ("S", "F", "R", "C"):
        row = rows[name]
        assert row.state == "finished", (name, row.state)
        assert (row.counts.received, row.counts.processed, row.counts.emitted, row.counts.failed) == counts(
            report)[name]
    assert rows["F"].counts.emitted == 30 and rows["R"].busy_time > 0


def test_what_finish_sends_goes_through_the_fused_steps_after_it(tmp_path: Path) -> None:
    config = pipeline_config(
        step("P", "Numbers", "SUM"),
        [step("SUM", "Summer", "R", nb_process=2, config={"how": "yield"}),
         step("R", "Repeat", "C", nb_process=2, config={"copies": 3})],
        collector(tmp_path, "C", nb_process=2),
        **numbers(50),
    )
    report = run(config, "threads")
    assert_ok(report)
    check_counts(report, config, broadcast=False)
    received = read(tmp_path, "C", workers=2)
    partial_sums = sorted(total for total, copy in received if copy == 0)
    assert len(partial_sums) == 2 and sum(partial_sums) == sum(range(50))  # one per worker process
    assert sorted(received) == sorted([total, k] for total in partial_sums for k in range(3))
    assert (report["R"].received, report["R"].emitted, report["C"].received) == (2, 6, 6)


def test_a_fused_step_failing_on_what_a_finish_sent_names_no_marker_and_its_dead_letters_replay(
        tmp_path: Path) -> None:
    """SUM's finish() sends its sum (0: no input) to FAIL, fused after it, which fails on it and stops the run: the
    report and the dead letters said "message 18446744073709551615" (the marker of no input) for it."""
    document = pipeline_config(
        step("P", "Numbers", "SUM"),
        [step("SUM", "Summer", "FAIL", nb_process=2, config={"how": "yield"}),
         {**step("FAIL", "FailEvery", "C", nb_process=2, on_error="stop"), "module": FAILURE_STEPS}],
        collector(tmp_path, "C"),
        **numbers(0), FailEvery={"every": 1})
    dead = tmp_path / "dead.jsonl"
    report = run(document, "threads", {"Pipeline": {"dead_letter": str(dead)}})
    assert report.exit_status == 1
    assert report.stop_reason == "step FAIL failed on a message that an init() or a finish() sent (on_error=stop)"
    assert str(2**64 - 1) not in report.table() + dead.read_text(encoding="utf-8")
    records = [json.loads(line) for line in lines(dead)]
    assert [(r["step"], r["seq"]) for r in records] == [("FAIL", None)] * 2  # failed, or not run once it stopped
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    replay = run_to_end(path, f"--replay={dead}", "--FailEvery.every=0")
    assert replay.returncode == 0, replay.stderr
    assert read(tmp_path, "C", workers=2) == [0, 0]  # each worker process's sum, once (C ran in both runs)


def test_a_fused_step_failing_on_what_an_init_sent_counts_it_and_writes_its_dead_letter(tmp_path: Path) -> None:
    """SEND's init() sends "init" twice in each of its worker processes, before they join; FAIL, fused after it, fails
    on each: its failures were ignored ("a failure of fused step FAIL without its message"), but for the report's."""
    document = pipeline_config(
        step("P", "Numbers", "SEND"),
        [{**step("SEND", "InitSends", "FAIL", nb_process=2, config={"many": 2}), "module": PROCESS_STEPS},
         {**step("FAIL", "FailEvery", "C", nb_process=2, on_error="skip"), "module": FAILURE_STEPS}],
        collector(tmp_path, "C"),
        **numbers(3), FailEvery={"every": 1000})  # the number 0 fails, and "init" % 1000 raises
    dead = tmp_path / "dead.jsonl"
    report = run(document, "threads", {"Pipeline": {"dead_letter": str(dead)}})
    assert report.exit_status == 1
    assert report["FAIL"].failed == 5
    assert sorted(map(str, load_messages(str(dead)))) == sorted(map(str, [("FAIL", 0)] + [("FAIL", "init")] * 4))


def failing_chain(tmp: Path, on_error: str, count: int = 30) -> dict:
    """P -> S (Scale by 1) -> FAIL (FailEvery 5, ``on_error``) -> C, all in the same 2 worker processes."""
    return pipeline_config(
        step("P", "Numbers", "S"),
        [step("S", "Scale", "FAIL", nb_process=2, config={"factor": 1}),
         {**step("FAIL", "FailEvery", "C", nb_process=2, on_error=on_error), "module": FAILURE_STEPS}],
        collector(tmp, "C", nb_process=2),
        **numbers(count), FailEvery={"every": 5},
    )


def test_a_failure_in_a_fused_step_is_its_own_with_its_message_as_dead_letter(tmp_path: Path) -> None:
    outcomes = {}
    for mode in ("sequential", "threads"):
        (tmp_path / mode).mkdir()
        dead = tmp_path / mode / "dead.jsonl"
        report = run(failing_chain(tmp_path / mode, "skip"), mode, {"Pipeline": {"mode": mode,
                                                                                 "dead_letter": str(dead)}})
        assert report.exit_status == 1
        assert report["S"].first_error is None
        assert report["FAIL"].first_error is not None and report["FAIL"].first_error.startswith("ValueError: bad")
        records = [json.loads(line) for line in lines(dead)]
        assert {r["step"] for r in records} == {"FAIL"}
        workers = 1 if mode == "sequential" else 2
        outcomes[mode] = (sorted(read(tmp_path / mode, "C", workers)), counts(report),
                          sorted(load_messages(str(dead))))
    assert outcomes["threads"] == outcomes["sequential"]
    assert outcomes["threads"][2] == [("FAIL", n) for n in range(0, 30, 5)]


def run_keeping_dead_letters(document: dict, mode: str, tmp_path: Path) -> tuple[Any, Path]:
    """Run ``document`` in ``mode`` with its dead letters in tmp_path: the report, and the dead letters' file."""
    dead = tmp_path / "dead.jsonl"
    return run(document, mode, {"Pipeline": {"mode": mode, "dead_letter": str(dead)}}), dead


@pytest.mark.parametrize("mode", ["sequential", "threads"])
def test_a_fused_step_that_changes_its_message_changes_neither_the_senders_nor_its_dead_letter(
        tmp_path: Path, mode: str) -> None:
    # Between fused steps (and every step of the sequential mode) a message is copied, not pickled: the receiver's
    # changes must reach neither what the sender keeps nor the dead letter of the message it then fails on.
    document = pipeline_config(
        step("P", "Numbers", "M"),
        [{**step("M", "MakesArrays", "F", nb_process=2), "module": FAILURE_STEPS},
         {**step("F", "ChangesThenFails", "C", nb_process=2, on_error="skip"), "module": FAILURE_STEPS}],
        collector(tmp_path, "C"), **numbers(40))
    report, dead = run_keeping_dead_letters(document, mode, tmp_path)
    assert report.exit_status == 1
    assert (report["F"].received, report["F"].failed, report["C"].received) == (40, 8, 32)
    outputs = sorted(read(tmp_path, "C"), key=lambda out: out["n"])
    assert [out["n"] for out in outputs] == [n for n in range(40) if n % 5]
    assert all(out["earlier_intact"] and out["big_read_only"] for out in outputs), outputs
    letters = sorted(load_messages(str(dead)), key=lambda letter: letter[1]["n"])
    assert [(name, message["n"]) for name, message in letters] == [("F", n) for n in range(0, 40, 5)]
    for _, message in letters:  # as M returned it, before F changed it
        assert set(message) == {"n", "small", "big", "earlier_intact"}
        assert not message["small"].any() and not message["big"].any()


@pytest.mark.parametrize("mode", ["sequential", "threads"])
def test_a_dead_letter_is_what_its_sender_returned_though_the_sender_refills_that_object_for_the_next(
        tmp_path: Path, mode: str) -> None:
    # What a step returns reaches the next step of its thread copied once: the sender's object itself is kept for
    # the dead letter, which holds because each message goes through every step after it (fused, or in the
    # sequential mode) before its sender runs again (two messages from one input too).
    document = pipeline_config(
        step("P", "Numbers", "SPLIT"),
        [{**step("SPLIT", "SplitsInTwo", "REUSE", nb_process=2), "module": FAILURE_STEPS},
         {**step("REUSE", "ReusesItsOutput", "F", nb_process=2), "module": FAILURE_STEPS},
         {**step("F", "FailsOnMultiples", "C", nb_process=2, on_error="skip"), "module": FAILURE_STEPS}],
        collector(tmp_path, "C"), **numbers(20))
    report, dead = run_keeping_dead_letters(document, mode, tmp_path)
    assert report.exit_status == 1
    assert (report["F"].received, report["F"].failed, report["C"].received) == (40, 8, 32)
    assert sorted(read(tmp_path, "C")) == [n for n in range(40) if n % 5]
    letters = sorted((message["n"], message["small"].tolist()) for _, message in load_messages(str(dead)))
    assert letters == [(n, [n] * 4) for n in range(0, 40, 5)]


@pytest.mark.parametrize("mode", ["sequential", "threads"])
def test_a_message_too_deep_to_pickle_fails_its_sender_as_between_processes(tmp_path: Path, mode: str) -> None:
    # A copy must not carry what a pickle could not: the dead letter of the next step's failure is a pickle. Such a
    # message once crashed the sequential run and killed the fused worker processes.
    document = pipeline_config(
        step("P", "Numbers", "D"),
        [{**step("D", "DeepOutput", "F", nb_process=2, on_error="skip"), "module": FAILURE_STEPS},
         {**step("F", "FailEvery", "C", nb_process=2, on_error="skip"), "module": FAILURE_STEPS}],
        collector(tmp_path, "C"), **numbers(6), FailEvery={"every": 1})
    report, dead = run_keeping_dead_letters(document, mode, tmp_path)
    assert report.exit_status == 1
    assert (report["D"].received, report["D"].failed, report["F"].received) == (6, 6, 0), report.table()
    assert (report["D"].first_error or "").startswith("MessageError: cannot pickle a message of type dict")
    assert [name for name, _ in load_messages(str(dead))] == ["D"] * 6


def test_dead_letters_of_a_fused_step_replay_into_that_step(tmp_path: Path) -> None:
    dead = tmp_path / "dead.jsonl"
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(failing_chain(tmp_path, "skip")), encoding="utf-8")
    first = run_to_end(path, f"--Pipeline.dead_letter={dead}")
    assert first.returncode == 1, first.stderr
    assert report_row(first.stderr, "FAIL") == [30, 24, 24, 6]
    replay = run_to_end(path, f"--replay={dead}", "--FailEvery.every=0")
    assert replay.returncode == 0, replay.stderr
    assert report_row(replay.stderr, "FAIL") == [6, 6, 6, 0]
    assert sorted(v for v in read(tmp_path, "C", workers=4) if isinstance(v, int)) == list(range(30))


@pytest.mark.parametrize("raises", ["SystemExit", "KeyboardInterrupt"])
def test_a_system_exit_in_a_fused_step_is_its_failed_message_and_halts_it(tmp_path: Path, raises: str) -> None:
    """A fused step whose run() raises what is not an Exception fails its message as an Exception does (its dead
    letter, the summary's count, one log line each), and fails and halts that step (exit 1 with allow_failures):
    the replay after the fix writes every message once. It was only the step's failure, its message lost."""
    dead = tmp_path / "dead.jsonl"
    path = tmp_path / "pipeline.json"
    document = failing_chain(tmp_path, "skip")
    document["Pipeline"]["stagers_conf"][1]["class"] = "ExitEvery"
    document["ExitEvery"] = {"raises": raises}
    path.write_text(json.dumps(document), encoding="utf-8")
    first = run_to_end(path, f"--Pipeline.dead_letter={dead}", "--Pipeline.allow_failures=True")
    assert first.returncode == 1, first.stderr
    failed = report_row(first.stderr, "FAIL")[3]
    assert failed >= 1 and report_row(first.stderr, "S")[3] == 0, first.stderr
    records = [json.loads(line) for line in lines(dead)]
    assert {r["step"] for r in records} == {"FAIL"}
    assert sum(r["error"].startswith(f"{raises}: bad message") for r in records) == failed, records
    assert f"failed messages: FAIL {failed} {raises}" in first.stderr
    assert f"FAIL: first error: run(): {raises}: bad message" in first.stderr
    assert f"stopped: step FAIL raised {raises}: bad message" in first.stderr
    logged = [line for line in first.stderr.splitlines() if " ERROR pipeline.failures: step FAIL " in line]
    assert len(logged) == failed and all("run() failed on message" in line for line in logged), logged
    replay = run_to_end(path, f"--replay={dead}", "--FailEvery.every=0")
    assert replay.returncode == 0, replay.stderr
    values = [v for v in read(tmp_path, "C", workers=4) if isinstance(v, int)]
    produced = report_row(first.stderr, "P")[1]  # the run stopped: its producer may not have made them all
    assert len(values) == len(set(values)) == produced and set(values) <= set(range(30)), values


def test_on_error_stop_in_a_fused_step_stops_the_run_and_loses_nothing(tmp_path: Path) -> None:
    dead = tmp_path / "dead.jsonl"
    report = run(failing_chain(tmp_path, "stop", count=2000), "threads", {"Pipeline": {"dead_letter": str(dead)}})
    assert report.exit_status == 1
    received, processed, failed = report["FAIL"].received, report["FAIL"].processed, report["FAIL"].failed
    assert 1 <= failed <= 2  # the other process may have been in run(); no more
    records = [json.loads(line) for line in lines(dead)]
    assert sum(r["step"] == "FAIL" and r["error"].startswith("ValueError") for r in records) == failed
    # Each message S passed on was processed by FAIL, failed there, or is a dead letter (of FAIL or of S).
    not_run = [r for r in records if r["error"].startswith("NotRun")]
    assert processed + failed + len(not_run) == report["S"].received
    assert len(read(tmp_path, "C", workers=2)) == processed
    assert received <= report["S"].emitted


# --------------------------------------------------------------------------- worker processes


def chain_file(tmp: Path, b: dict[str, Any], fuse: bool = True, count: int = 300, **sections: Any) -> Path:
    """COUNT -> A (PassOn, pids to a.txt) -> B (Trigger) -> WRITER, A and B in 2 worker processes."""
    document = {
        "version": 1,
        "Pipeline": {
            "fuse": fuse,
            "producer_conf": {"name": "COUNT", "module": "algorithms.basic", "class": "Counter", "next_steps": "A"},
            "stagers_conf": [
                {"name": "A", "module": PROCESS_STEPS, "class": "PassOn", "next_steps": "B", "nb_process": 2},
                {"name": "B", "module": PROCESS_STEPS, "class": "Trigger", "next_steps": "WRITER", "nb_process": 2,
                 **b}],
            "consumer_conf": {"name": "WRITER", "module": FAILURE_STEPS, "class": "MarkedWriter"},
        },
        "Counter": {"count": count},
        "PassOn": {"pid_file": str(tmp / "a.txt")},
        "MarkedWriter": {"path": str(tmp / "out.jsonl")},
        **sections,
    }
    path = tmp / "pipeline.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


@pytest.mark.parametrize("fuse", [True, False])
def test_fused_steps_share_their_worker_processes_and_fuse_off_keeps_them_apart(tmp_path: Path,
                                                                                fuse: bool) -> None:
    path = chain_file(tmp_path, {}, fuse=fuse, count=50, Trigger={"pid_file": str(tmp_path / "b.txt")})
    result = run_to_end(path)
    assert result.returncode == 0, result.stderr
    assert sorted(written(tmp_path)) == list(range(50))
    a, b = pids(tmp_path / "a.txt"), pids(tmp_path / "b.txt")
    assert len(a) == len(b) == 2
    assert (a == b) is fuse
    assert report_row(result.stderr, "A") == report_row(result.stderr, "B") == [50, 50, 50, 0]
    said = "fused: A -> B (each message through all of them in one worker process)" in result.stderr.splitlines()
    assert said is fuse  # the report says which steps ran fused


def test_a_killed_fused_process_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "killed"
    path = chain_file(tmp_path, {}, Trigger={"at": 100, "action": "kill", "marker": str(marker)})
    result = run_to_end(path, "--Pipeline.heartbeat_interval=0.2", "--Pipeline.heartbeat_liveness=3")
    assert result.returncode == 0, result.stderr
    assert sorted(written(tmp_path)) == list(range(300))  # each value exactly once, through both steps
    assert report_row(result.stderr, "A") == report_row(result.stderr, "B") == [300, 300, 300, 0]
    assert "1 worker process replaced" in report_line(result.stderr, "A")  # the group's processes are A's


def test_a_fused_step_whose_init_returns_false_fails_the_run_in_one_line(tmp_path: Path) -> None:
    path = chain_file(tmp_path, {"module": "tests.lifecycle_steps", "class": "TrueStage"},
                      TrueStage={"refuse": True})
    result = run_to_end(path)
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "init() returned False" in line]
    assert errors and all("B" in line for line in errors), result.stderr
    assert "Traceback" not in result.stderr


def test_a_fused_steps_failure_counts_once_though_its_process_dies_before_the_answer(tmp_path: Path) -> None:
    """A -> B (every 10th fails, skipped) -> K (kills its process once, on 1502), fused: the failures of B whose input
    had not been answered yet run again in another process and fail again; each counts once, one dead letter."""
    dead = tmp_path / "dead.jsonl"
    path = chain_file(tmp_path, {"module": FAILURE_STEPS, "class": "FailEvery", "next_steps": "K",
                                 "on_error": "skip"}, count=3000, FailEvery={"every": 10})
    document = json.loads(path.read_text())
    document["Pipeline"]["stagers_conf"].append(
        {"name": "K", "module": PROCESS_STEPS, "class": "Trigger", "next_steps": "WRITER", "nb_process": 2})
    document["Pipeline"].update(dead_letter=str(dead), allow_failures=True)
    document["Trigger"] = {"at": 1502, "action": "kill", "marker": str(tmp_path / "killed"), "delay": 0.0002}
    path.write_text(json.dumps(document), encoding="utf-8")
    result = run_to_end(path, "--Pipeline.heartbeat_interval=0.2", "--Pipeline.heartbeat_liveness=3")
    assert result.returncode == 0, result.stderr
    assert pids(tmp_path / "killed")
    assert sorted(written(tmp_path)) == [n for n in range(3000) if n % 10]
    assert sorted(message for _, message in load_messages(str(dead))) == list(range(0, 3000, 10))
    assert report_row(result.stderr, "A") == [3000, 3000, 3000, 0]
    assert report_row(result.stderr, "B") == [3000, 2700, 2700, 300]
    assert report_row(result.stderr, "K") == [2700, 2700, 2700, 0]
