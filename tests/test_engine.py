"""The threaded engine: same results as the sequential runner, exact drain, bounded memory, clean exit."""

from __future__ import annotations

import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, ClassVar

import pytest
import zmq
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

import pipeline.engine.runner as runner_module
import pipeline.engine.step_threads as step_threads
from pipeline import Pipeline
from pipeline.config import load_config
from pipeline.config.options import RunOptions
from pipeline.engine import ThreadedRunner
from pipeline.engine.flow import MAX_BATCH_BYTES, PREFETCH_BYTES, QUEUE_BYTES, message_bound
from pipeline.message import OUT_OF_BAND_BYTES
from tests.engine_helpers import chain, end_or_stop, run, step
from tests.engine_steps import COLLECTED, GAUGES

# The tests of this file take more than 10 s in all: `pytest -m "not slow"` leaves them out.
pytestmark = pytest.mark.slow


@pytest.mark.parametrize("on_error", ["skip", "stop"])
def test_no_buffer_stays_lent_between_threads_after_a_run(on_error: str) -> None:
    """Buffers cross the run's threads by handle (engine.handles): whatever becomes of each message
    (processed, filtered, failed, ordered, or not run once a step stops), none is left lent."""
    tag = uuid.uuid4().hex
    n = 300
    document = chain(step("P", "Arrays", ["S"]),
                     [step("S", "PickyDouble", ["O"], nb_thread=2, on_error=on_error),
                      step("O", "Double", ["C"], nb_thread=2, ordered=True)],
                     step("C", "ArraySummer"), Arrays={"count": n, "size": 16384}, ArraySummer={"tag": tag})
    runner = ThreadedRunner(load_config(document), RunOptions())
    report = runner.run()
    assert report.exit_status == 1  # messages failed
    if on_error == "skip":
        assert sorted(COLLECTED[tag]) == [4.0 * i for i in range(n) if i % 5 and i % 7 != 3]
        assert report["S"].failed == len([i for i in range(n) if i % 7 == 3])
    else:
        assert report["S"].failed >= 1
    assert len(runner.control.handles) == 0


def test_tiny_messages_all_arrive() -> None:
    tag = uuid.uuid4().hex
    n = 100_000
    report = run(chain(step("P", "Tiny", ["S"]), [step("S", "PassThrough", ["C"], module="algorithms.basic")],
                       step("C", "Add"), Tiny={"count": n}, Add={"tag": tag}))
    assert report.exit_status == 0
    assert COLLECTED[tag] == [(n, n * (n - 1) // 2)]
    assert (report["S"].received, report["S"].processed, report["C"].received) == (n, n, n)


def test_large_arrays_arrive_intact() -> None:
    tag = uuid.uuid4().hex
    n = 2000
    report = run(chain(step("P", "Arrays", ["S"]), [step("S", "Double", ["C"])], step("C", "ArraySummer"),
                       Arrays={"count": n}, ArraySummer={"tag": tag}))
    assert report.exit_status == 0
    assert sorted(COLLECTED[tag]) == [2.0 * i for i in range(n)]


def test_diamond_with_queue_limit_one_completes() -> None:
    tag = uuid.uuid4().hex
    report = run(chain(
        step("P", "Source", ["A", "B"]),
        [step("A", "Behave", ["J"], queue_limit=1, nb_thread=2),
         step("B", "Behave", ["J"], queue_limit=1),
         step("J", "Behave", ["C"], queue_limit=1, nb_thread=3)],
        step("C", "Collect", queue_limit=1),
        Source={"count": 500}, Collect={"tag": tag}))
    assert report.exit_status == 0
    assert len(COLLECTED[tag + "C"]) == 1000
    assert Counter(path for _, path in COLLECTED[tag + "C"]) == {("A", "J"): 500, ("B", "J"): 500}


def test_ordered_step_keeps_input_order_under_random_delays() -> None:
    tag = uuid.uuid4().hex
    delays = [0.002, 0.0, 0.0005, 0.001, 0.0, 0.0015, 0.0003]
    report = run(chain(step("P", "Source", ["O"]),
                       [step("O", "Behave", ["C"], nb_thread=4, ordered=True, config={"delays": delays})],
                       step("C", "Collect"), Source={"count": 300}, Collect={"tag": tag}))
    assert report.exit_status == 0
    assert [value for value, _ in COLLECTED[tag + "C"]] == list(range(300))


@pytest.mark.parametrize("queue_limit,size", [(8, 1 << 20), (4, 100)])
def test_backpressure_bounds_messages_alive(queue_limit: int, size: int) -> None:
    tag = uuid.uuid4().hex
    document = chain(step("P", "CountedSource", ["C"]), [], step("C", "SlowCountedSink", queue_limit=queue_limit),
                     CountedSource={"count": 300, "size": size, "tag": tag},
                     SlowCountedSink={"delay": 0.001, "tag": tag})
    report = run(document)
    bound = message_bound(load_config(document))
    assert report.exit_status == 0
    assert report["C"].processed == 300
    assert bound is not None and bound < 300  # the bound means something for this run
    assert GAUGES[tag].peak <= bound


def test_what_init_sends_goes_on_before_any_input() -> None:
    # The producer yields only once the consumer got the stager's init() output.
    tag = uuid.uuid4().hex
    report = run(chain(step("P", "AfterInitOutput", ["S"]), [step("S", "SendsInInit", ["C"])],
                       step("C", "CollectInitOutput"),
                       AfterInitOutput={"tag": tag, "timeout": 10.0}, CollectInitOutput={"tag": tag}))
    assert report.exit_status == 0
    assert COLLECTED[tag] == ["from-init", True]


def test_a_queue_of_large_messages_is_bounded_by_bytes() -> None:
    # queue_limit 1000 would let 1000 MiB wait; QUEUE_BYTES stops the router at 64 MiB.
    tag = uuid.uuid4().hex
    document = chain(step("P", "CountedSource", ["C"]), [], step("C", "SlowCountedSink", queue_limit=1000),
                     CountedSource={"count": 300, "size": 1 << 20, "tag": tag},
                     SlowCountedSink={"delay": 0.002, "tag": tag})
    report = run(document)
    assert report.exit_status == 0
    assert report["C"].processed == 300
    per_packet = MAX_BATCH_BYTES >> 20
    # The queue, one packet past it, what the worker holds, two packets in the pipe, the producer's unsent ones.
    bytes_bound = (QUEUE_BYTES >> 20) + per_packet + (PREFETCH_BYTES >> 20) + 1 + 2 * per_packet + per_packet
    assert GAUGES[tag].peak <= bytes_bound < 300


def test_a_worker_is_handed_large_messages_prefetch_bytes_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # Senders batch up to MAX_BATCH_BYTES (16 MiB); a worker gets at most PREFETCH_BYTES of it at once,
    # so one worker of two cannot take a whole batch of arrays while the other waits.
    handed: list[tuple[int, int]] = []
    unpack = step_threads.packet_from_frames

    def spy(*args: Any, **kwargs: Any) -> Any:
        packet = unpack(*args, **kwargs)
        handed.append((len(packet), packet.nbytes))
        return packet

    monkeypatch.setattr(step_threads, "packet_from_frames", spy)
    tag = uuid.uuid4().hex
    report = run(chain(step("P", "Arrays", ["S"]),
                       [step("S", "PassThrough", ["C"], module="algorithms.basic", nb_thread=2)],
                       step("C", "ArraySummer"), Arrays={"count": 200, "size": 131072}, ArraySummer={"tag": tag}))
    assert report.exit_status == 0
    assert sorted(COLLECTED[tag]) == [float(i) for i in range(200)]
    assert all(count == 1 or nbytes <= PREFETCH_BYTES for count, nbytes in handed), max(handed)


@pytest.mark.parametrize("stage", [{}, {"nb_process": 1}])
def test_a_small_queue_limit_keeps_a_handful_of_messages_in_flight(stage: dict) -> None:
    """Issue 26.2: three steps with queue_limit 4, one worker each, a slow consumer: what a worker prefetches
    and what senders batch scale down with the queue limit, so the messages alive stay within the bound,
    and the bound is a handful, not the hundreds a worker's default prefetch would allow."""
    tag = uuid.uuid4().hex
    document = chain(step("P", "CountedSource", ["S1"]),
                     [step("S1", "PassThrough", ["S2"], module="algorithms.basic", queue_limit=4, **stage),
                      step("S2", "PassThrough", ["C"], module="algorithms.basic", queue_limit=4, **stage)],
                     step("C", "SlowCountedSink", queue_limit=4),
                     CountedSource={"count": 150, "size": 100, "tag": tag},
                     SlowCountedSink={"delay": 0.01, "tag": tag})
    report = run(document)
    bound = message_bound(load_config(document))
    assert report.exit_status == 0, report.table()
    assert report["C"].processed == 150
    assert bound is not None and bound < 60
    assert GAUGES[tag].peak <= bound


def test_ordered_step_holds_back_a_bounded_number_of_results() -> None:
    tag = uuid.uuid4().hex
    document = chain(step("P", "CountedSource", ["O"]),
                     [step("O", "SlowOnZero", ["C"], nb_thread=4, ordered=True, queue_limit=8)],
                     step("C", "SlowCountedSink", queue_limit=8),
                     CountedSource={"count": 3000, "size": 100, "tag": tag},
                     SlowCountedSink={"delay": 0.0, "tag": tag})
    report = run(document)
    bound = message_bound(load_config(document))
    assert report.exit_status == 0
    assert report["C"].processed == 3000
    assert bound is not None and bound < 3000
    assert GAUGES[tag].peak <= bound


class TrackingContext(zmq.Context):
    """A context that remembers every socket it made."""

    made: ClassVar[list[zmq.Socket]] = []

    def socket(self, *args: Any, **kwargs: Any) -> zmq.Socket:
        sock = super().socket(*args, **kwargs)
        TrackingContext.made.append(sock)
        return sock


def test_no_thread_or_socket_left_and_runs_repeat(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runner_module.zmq, "Context", TrackingContext)
    TrackingContext.made.clear()
    before = set(threading.enumerate())
    for _ in range(2):
        tag = uuid.uuid4().hex
        report = run(chain(step("P", "Source", ["S"]), [step("S", "Behave", ["C"], nb_thread=3)],
                           step("C", "Collect"), Source={"count": 50}, Collect={"tag": tag}))
        assert report.exit_status == 0
        assert len(COLLECTED[tag + "C"]) == 50
    assert TrackingContext.made and all(sock.closed for sock in TrackingContext.made)
    left = [t for t in set(threading.enumerate()) - before if t.name != "Garbage Collector"]
    assert left == []


def test_internal_crash_ends_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    from pipeline.engine import router

    def broken(self: Any, work: Any) -> None:
        raise RuntimeError("router bug")

    monkeypatch.setattr(router.Router, "_dispatch", broken)
    report = run(chain(step("P", "Source", ["S"]), [step("S", "Behave", ["C"])], step("C", "Collect"),
                       Collect={"tag": uuid.uuid4().hex}))
    assert report.exit_status == 1
    assert "router bug" in (report.steps["S"].first_error or "") + (report.steps["C"].first_error or "")


# Random DAGs: the threaded engine must give the sequential runner's outputs, as multisets.

BEHAVIOURS = ["pass", "filter", "expand", "route", "sum"]


@st.composite
def dag_configs(draw: st.DrawFn, processes: bool = False) -> dict[str, Any]:
    """A random DAG: stagers S0..Sn-1 in topological order, edges only forward, every step reachable.

    With ``processes``, a stager may run in worker processes (nb_process 1 or 2), beside thread steps;
    the DAG is smaller then, as each process takes a fraction of a second to start.
    """
    n = draw(st.integers(1, 3 if processes else 5))
    names = [f"S{i}" for i in range(n)]
    sinks = ["C"]
    targets: dict[str, list[str]] = {}
    for i, name in enumerate(names):
        later = names[i + 1:] + sinks
        targets[name] = draw(st.lists(st.sampled_from(later), min_size=0 if i else 1, max_size=3, unique=True))
    producer_targets = [names[0]]
    reached = {names[0]}
    for name in names:  # join any unreached stager to the producer or an earlier reached stager
        if name not in reached:
            parent = draw(st.sampled_from(["P", *sorted(r for r in reached if r in names and r < name)]))
            (producer_targets if parent == "P" else targets[parent]).append(name)
        reached.update(targets[name])
    if "C" not in reached:
        targets[names[-1]].append("C")
    stagers = []
    for name in names:
        behaviour = draw(st.sampled_from(BEHAVIOURS))
        if behaviour == "route" and not targets[name]:
            behaviour = "pass"
        delays = draw(st.lists(st.sampled_from([0.0, 0.0, 0.0005, 0.001]), max_size=3))
        announce = draw(st.booleans())
        # init() and finish() run once per worker, so a step that sums or sends from them has one
        # worker, to match the sequential run's one instance
        single = behaviour == "sum" or announce
        workers = 1 if single else draw(st.integers(1, 4))
        extra = {}
        if processes:
            nb_process = draw(st.sampled_from([0, 1] if single else [0, 1, 2]))
            extra = {"nb_process": nb_process} if nb_process else {}
            workers = 1 if single else draw(st.integers(1, 2))  # threads in each process, or of the run
        stagers.append(step(name, "Behave", targets[name] or None,
                            nb_thread=workers, **extra,
                            queue_limit=draw(st.sampled_from([1, 2, 3, 8, -1])),
                            ordered=draw(st.booleans()),
                            config={"behaviour": behaviour, "delays": delays, "announce": announce,
                                    "modulo": draw(st.integers(2, 4))}))
    return chain(step("P", "Source", producer_targets), stagers,
                 step("C", "Collect", queue_limit=draw(st.sampled_from([1, 4, 64]))),
                 Source={"count": draw(st.integers(0, 60)),
                         # a payload above OUT_OF_BAND_BYTES travels out of band: lent between threads
                         "payload": draw(st.sampled_from([0, OUT_OF_BAND_BYTES + 10]))})


def _collect(document: dict[str, Any], mode: str) -> tuple[Counter, Any]:
    """What the consumer received (as a multiset) and the report, for one run in ``mode``.

    A run that does not end within DAG_RUN_SECONDS is stopped at once and fails the example: the
    global timeout would fail it too, but hypothesis would then go on with a hung run in the background.
    """
    tag = uuid.uuid4().hex
    pipeline = Pipeline.from_config({**document, "Collect": {"tag": tag}}, {"Pipeline": {"mode": mode}})
    reports = []
    thread = threading.Thread(target=lambda: reports.append(pipeline.run()), name="dag-run")
    thread.start()
    end_or_stop(pipeline, thread)
    return Counter(COLLECTED.pop(tag + "C", [])), reports[0]


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(dag_configs())
def test_threads_match_sequential_on_random_dags(document: dict[str, Any]) -> None:
    _matches_sequential(document)


# No shrinking: each worker process takes a fraction of a second to start, a hung run DAG_RUN_SECONDS.
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(dag_configs(processes=True))
def test_process_steps_match_sequential_on_random_dags(document: dict[str, Any]) -> None:
    _matches_sequential(document)


def _matches_sequential(document: dict[str, Any]) -> None:
    """The threaded engine gives the sequential runner's outputs and counts for ``document``."""
    sequential, seq_report = _collect(document, "sequential")
    threaded, thr_report = _collect(document, "threads")
    assert threaded == sequential
    assert thr_report.exit_status == seq_report.exit_status == 0
    for name in load_config(document).steps:
        counts, expected = thr_report[name], seq_report[name]
        assert (counts.received, counts.processed, counts.emitted, counts.failed) == (
            expected.received, expected.processed, expected.emitted, 0)
    # every delivery sent was received: nothing lost, nothing duplicated
    assert sum(s.counts.emitted for s in thr_report.steps.values()) == sum(
        s.counts.received for s in thr_report.steps.values())


@pytest.mark.parametrize("mode", ["sequential", "threads"])
def test_a_chain_of_1200_stagers_runs(mode: str) -> None:
    """Longer than Python's recursion limit, and more sockets than ZeroMQ's default cap of 1023."""
    tag = uuid.uuid4().hex
    stagers = [step(f"S{i}", "PassThrough", [f"S{i + 1}"], module="algorithms.basic") for i in range(1199)]
    stagers.append(step("S1199", "PassThrough", ["C"], module="algorithms.basic"))
    report = run(chain(step("P", "Source", ["S0"]), stagers, step("C", "Collect"),
                       Source={"count": 3}, Collect={"tag": tag}), mode)
    assert report.exit_status == 0
    assert sorted(COLLECTED.pop(tag + "C")) == [(i, ()) for i in range(3)]


def test_a_crash_that_leaves_a_busy_thread_behind_does_not_blame_shutdown_timeout(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An internal error ends the run at once, leaving a thread busy in a step's code: the report said "threads left
    behind after shutdown_timeout", though no signal came and no timeout passed."""
    from pipeline.engine import router

    def broken(self: Any, work: Any) -> None:
        if self.step.name == "S" and (tmp_path / "hanging").exists():  # a result of one worker, the other's stuck
            raise RuntimeError("router bug")
        original(self, work)

    original = router.Router._read_workers
    monkeypatch.setattr(router.Router, "_read_workers", broken)
    gate = tmp_path / "gate"
    try:
        report = run(chain(step("P", "Counter", ["S"], module="algorithms.basic"),
                           [step("S", "Hangs", ["C"], module="tests.failure_steps", nb_thread=2)],
                           step("C", "Collect"), Counter={"count": 1000}, Collect={"tag": uuid.uuid4().hex},
                           Hangs={"at": 0, "marker": str(tmp_path / "hanging"), "gate": str(gate)}))
    finally:
        gate.touch()  # the thread left behind ends
    assert report.exit_status == 1
    assert report.stuck and report.stuck[0].startswith("step S worker")
    assert "shutdown_timeout" not in (report.stop_reason or "")
