"""A producer in worker processes (engine.shards): each process yields its shard of the input, and the run
gives the sequential run's messages, each exactly once, even when a shard's process is killed."""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import load_config
from pipeline.config.options import RunOptions
from pipeline.engine import ThreadedRunner
from pipeline.engine.flow import message_bound
from pipeline.engine.fusion import fused_groups
from pipeline.engine.shards import ShardBook, ShardWork, board_mark, read_mark, read_work
from pipeline.engine.wire import Packet
from pipeline.failures.deadletter import load_messages
from pipeline.message import encode
from tests.cli_helpers import write_config
from tests.engine_steps import Stuck
from tests.failure_helpers import report_row
from tests.process_helpers import finish_run, lines, pids, run_to_end, start_run, wait_for, written
from tests.remote_helpers import PRODUCER, Launcher
from tests.semantic_helpers import assert_ok, check_counts, collector, counts, pipeline_config, read, run, step

PROCESS_STEPS = "tests.process_steps"

pytestmark = pytest.mark.timeout(60)


def shards_config(tmp: Path, processes: int = 2, count: int = 1000, **shards: Any) -> dict:
    """P (Shards, in ``processes`` worker processes) -> S (Scale) -> C (Collect)."""
    return pipeline_config(
        {**step("P", "Shards", "S", nb_process=processes), "module": PROCESS_STEPS},
        [step("S", "Scale", "C", nb_thread=2)],
        collector(tmp, "C"),
        Shards={"count": count, **shards},
    )


@pytest.mark.parametrize("processes", [0, 2], ids=["one producer", "in shards"])
@pytest.mark.parametrize("mode", ["sequential", "threads"])
def test_a_producer_whose_generator_raises_says_it_stopped_the_run_in_every_mode(tmp_path: Path, mode: str,
                                                                                  processes: int) -> None:
    """The report's stop reason names the producer's error whether it runs alone or in shards, in every mode: only the
    engine's shards said it (the others ended early with no stopped: line)."""
    report = run(shards_config(tmp_path, processes, count=20, at=7, action="raise", once=False), mode)
    assert report.exit_status == 1
    assert report.stop_reason == "step P raised ValueError: bad number 7 in run()"
    assert report["P"].first_error is not None and report["P"].first_error.endswith("ValueError: bad number 7")


@pytest.mark.parametrize("processes", [1, 3])
def test_shards_give_the_sequential_messages_and_counts(tmp_path: Path, processes: int) -> None:
    outcomes = {}
    for mode in ("sequential", "threads"):
        (tmp_path / mode).mkdir()
        config = shards_config(tmp_path / mode, processes)
        report = run(config, mode)
        assert_ok(report)
        check_counts(report, config)
        outcomes[mode] = (sorted(read(tmp_path / mode, "C")), counts(report), report["P"].shards)
    assert outcomes["threads"] == outcomes["sequential"]
    values, _, shards = outcomes["threads"]
    assert values == [2 * n for n in range(1000)]
    assert shards == [len(range(shard, 1000, processes)) for shard in range(processes)]


def test_the_report_says_what_each_shard_produced(tmp_path: Path) -> None:
    path = write_config(tmp_path, shards_config(tmp_path, 2, count=11))
    result = run_to_end(path)
    assert result.returncode == 0, result.stderr
    assert "P: messages per shard: 6, 5" in result.stderr.splitlines()
    assert report_row(result.stderr, "P") == [0, 11, 11, 0]


def test_a_shards_report_gives_its_longest_yield_and_the_monitor_shows_it_running(tmp_path: Path) -> None:
    config = load_config(shards_config(tmp_path, 2, count=40, delay=0.01))
    runner = ThreadedRunner(config, RunOptions())
    states: list[str] = []
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.005):
            states.append({s.name: s.state for s in runner.snapshot().steps}["P"])

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        report = runner.run()
    finally:
        done.set()
        watcher.join(10)
    assert report.exit_status == 0
    assert report["P"].max_time >= 0.01  # each yield sleeps 10 ms
    assert report["P"].max_time >= report["P"].busy_time / report["P"].processed
    assert "running" in states and "draining" not in states  # its shards run until they end


@pytest.mark.parametrize(("processes", "mode"), [(2, "threads"), (1, "threads"), (2, "sequential")])
def test_a_producer_in_shards_that_reads_its_shard_in_init_fails_in_one_line(tmp_path: Path, processes: int,
                                                                            mode: str) -> None:
    """init() runs once for whichever shards follow: a shard chosen there would be 0 of 1 in every process, and
    every number would come once per shard."""
    config = shards_config(tmp_path, processes, count=10)
    config["Pipeline"]["producer_conf"]["class"] = "ShardsChosenInInit"
    config["ShardsChosenInInit"] = config.pop("Shards")
    report = run(config, mode)
    assert report.exit_status == 1
    assert report["P"].first_error == (
        "init(): ShardUnknown: step 'P' read self.shard outside run(): a producer in shards is told its shard for "
        "each run(), while its init() and finish() run once for whichever shards follow")
    assert report["C"].processed == 0


def test_a_producer_not_in_shards_reads_the_one_shard_in_init(tmp_path: Path) -> None:
    config = shards_config(tmp_path, 0, count=10)
    config["Pipeline"]["producer_conf"]["class"] = "ShardsChosenInInit"
    config["ShardsChosenInInit"] = config.pop("Shards")
    report = run(config, "threads")
    assert_ok(report)
    assert sorted(read(tmp_path, "C")) == [2 * n for n in range(10)]


def chain_file(tmp: Path, count: int, ordered: bool = False, **shards: Any) -> Path:
    """COUNT (Shards in 2 worker processes, ``ordered`` or not) -> WRITER (MarkedWriter into tmp/out.jsonl)."""
    document = {
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "COUNT", "module": PROCESS_STEPS, "class": "Shards", "next_steps": "WRITER",
                              "nb_process": 2, "ordered": ordered},
            "consumer_conf": {"name": "WRITER", "module": "tests.failure_steps", "class": "MarkedWriter"},
        },
        "Shards": {"count": count, **shards},
        "MarkedWriter": {"path": str(tmp / "out.jsonl")},
    }
    return write_config(tmp, document)


def test_a_killed_shard_process_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "killed"
    path = chain_file(tmp_path, 3000, at=1501, marker=str(marker))
    result = run_to_end(path, "--Pipeline.heartbeat_interval=0.2", "--Pipeline.heartbeat_liveness=3")
    assert result.returncode == 0, result.stderr
    assert pids(marker)  # it did kill its process
    assert sorted(written(tmp_path)) == list(range(3000))  # what the dead process had sent on is not sent again
    assert report_row(result.stderr, "COUNT") == [0, 3000, 3000, 0]
    assert "COUNT: 1 shard started again, 1 worker process replaced" in result.stderr.splitlines()
    assert "COUNT: messages per shard: 1500, 1500" in result.stderr.splitlines()


def test_a_killed_shard_process_that_none_replaces_is_not_said_to_start_again(tmp_path: Path) -> None:
    """A shard fused with a one_worker consumer in one worker process: once it is killed none replaces it, and the
    report said "COUNT: 1 shard started again" all the same."""
    marker = tmp_path / "killed"
    document = {
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "COUNT", "module": PROCESS_STEPS, "class": "Shards", "next_steps": "WRITER",
                              "nb_process": 1},
            "consumer_conf": {"name": "WRITER", "module": PROCESS_STEPS, "class": "OneWorkerValues", "nb_process": 1},
        },
        "Shards": {"count": 100, "at": 50, "marker": str(marker)},
        "OneWorkerValues": {"path": str(tmp_path / "values.jsonl")},
    }
    result = run_to_end(write_config(tmp_path, document), "--Pipeline.heartbeat_interval=0.2",
                        "--Pipeline.heartbeat_liveness=3")
    assert result.returncode == 1, result.stderr
    assert pids(marker)  # it did kill its process
    assert "none replaces it: step WRITER runs in one worker (its class says one_worker)" in result.stderr
    assert "fused: COUNT -> WRITER (each message through all of them in one worker process)" in result.stderr
    assert "started again" not in result.stderr and "replaced" not in result.stderr


@pytest.mark.parametrize("mode", ["sequential", "threads"])
def test_an_ordered_producer_in_shards_sends_shard_after_shard(tmp_path: Path, mode: str) -> None:
    # Shard 1 runs as fast as shard 0: unordered, their messages interleave (hundreds of switches)
    path = chain_file(tmp_path, 3000, ordered=True)
    result = run_to_end(path, f"--Pipeline.mode={mode}")
    assert result.returncode == 0, result.stderr
    assert written(tmp_path) == [*range(0, 3000, 2), *range(1, 3000, 2)]


@pytest.mark.parametrize("at", [1500, 1501], ids=["shard-in-turn", "shard-held-back"])
def test_an_ordered_producer_in_shards_keeps_its_order_through_a_killed_process(tmp_path: Path, at: int) -> None:
    marker = tmp_path / "killed"
    path = chain_file(tmp_path, 3000, ordered=True, at=at, marker=str(marker))
    result = run_to_end(path, "--Pipeline.heartbeat_interval=0.2", "--Pipeline.heartbeat_liveness=3")
    assert result.returncode == 0, result.stderr
    assert pids(marker)  # the shard's process did die in its middle
    assert written(tmp_path) == [*range(0, 3000, 2), *range(1, 3000, 2)]
    assert "COUNT: 1 shard started again, 1 worker process replaced" in result.stderr.splitlines()


def test_a_shard_whose_processes_die_at_two_of_its_messages_goes_on(tmp_path: Path) -> None:
    """max_redeliveries counts the deaths at one message (configuration.md): two at two messages of one shard failed
    the producer, its shard's later messages never made (with steps fused after it they were counted per message)."""
    marker = tmp_path / "killed"
    path = chain_file(tmp_path, 3000, at=1001, then_at=2001, marker=str(marker))
    result = run_to_end(path, "--Pipeline.heartbeat_interval=0.2", "--Pipeline.heartbeat_liveness=3")
    assert result.returncode == 0, result.stderr
    assert pids(marker) and pids(Path(f"{marker}-then"))  # both killed their process
    assert sorted(written(tmp_path)) == list(range(3000))
    assert report_row(result.stderr, "COUNT") == [0, 3000, 3000, 0]


def test_what_init_sends_is_no_shards_and_the_process_taking_over_a_shard_skips_only_its_messages(
        tmp_path: Path) -> None:
    """init() sends 2 messages in each worker process (3 of them: one is killed and replaced): they are no shard's,
    so whichever process takes over the killed one's shard skips exactly the shard's messages that went on (had
    init()'s counted as the shard's, it would have skipped two of the shard's numbers)."""
    marker = tmp_path / "killed"
    path = chain_file(tmp_path, 3000, at=1501, marker=str(marker), greeting=2)
    result = run_to_end(path, "--Pipeline.heartbeat_interval=0.2", "--Pipeline.heartbeat_liveness=3")
    assert result.returncode == 0, result.stderr
    assert pids(marker)
    got = written(tmp_path)
    assert sorted(value for value in got if value >= 0) == list(range(3000))
    assert sorted(value for value in got if value < 0) == [-2, -2, -2, -1, -1, -1]  # each process's init()
    assert "COUNT: messages per shard: 1500, 1500" in result.stderr.splitlines()
    assert report_row(result.stderr, "COUNT") == [0, 3000, 3006, 0]  # processed: yielded, as in every mode


def test_an_error_in_a_shard_stops_the_run_in_one_line(tmp_path: Path) -> None:
    path = chain_file(tmp_path, 100_000, at=51, action="raise", marker=str(tmp_path / "raised"), delay=0.0005)
    result = run_to_end(path)
    assert result.returncode == 1
    assert "COUNT: first error: run() of shard 1: ValueError: bad number 51" in result.stderr.splitlines()
    assert result.stderr.count("Traceback") == 1  # the first traceback in full, no more
    values = written(tmp_path)  # drained and finished: what the shards sent before is all there, once
    assert len(values) == len(set(values)) == report_row(result.stderr, "COUNT")[1] < 100_000


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_stops_every_shard_and_drains(tmp_path: Path, sig: signal.Signals, status: int) -> None:
    path = chain_file(tmp_path, 1_000_000, delay=0.0002)
    run = start_run(path)
    try:
        wait_for(lambda: len(lines(tmp_path / "out.jsonl")) >= 200, 15, "the shards' first messages")
        os.kill(run.pid, sig)
    finally:
        result = finish_run(run, 20)
    assert result.returncode == status, result.stderr
    values = written(tmp_path)
    assert len(values) == len(set(values)) == report_row(result.stderr, "COUNT")[1] < 1_000_000
    assert "Traceback" not in result.stderr


def test_a_producer_that_cannot_be_sharded_is_refused_before_the_run(tmp_path: Path) -> None:
    document = json.loads(chain_file(tmp_path, 10).read_text())
    document["Pipeline"]["producer_conf"].update(module="algorithms.basic", **{"class": "LineReader"})
    path = write_config(tmp_path, document)
    result = run_to_end(path)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        f"pipeline-run: error: {path}: Pipeline.producer_conf.nb_process: a producer in 2 worker processes runs 2 "
        "shards, each of which must read only its share of the input: algorithms.basic.LineReader does not say it "
        "can (expected 0 or 1, or a class with shardable = True that reads self.shard and self.n_shards)"]
    assert not (tmp_path / "out.jsonl").exists()


def into(consumer: dict[str, Any], fused: bool, **shards: Any) -> Any:
    """P (Shards in 2 worker processes) -> S (Scale in 2 worker processes, fused with P) if ``fused`` -> ``consumer``
    (named C)."""
    stages = [step("S", "Scale", "C", nb_process=2)] if fused else []
    return load_config(pipeline_config(
        {**step("P", "Shards", "S" if fused else "C", nb_process=2), "module": PROCESS_STEPS}, stages, consumer,
        Shards={"count": 1_000_000, **shards}))


def run_watched(runner: ThreadedRunner, look: Callable[[dict[str, Any]], bool]) -> Any:
    """Run ``runner`` while a thread passes ``look`` each step's counts every 10 ms, stopping the run once it returns
    True; the report."""
    done = threading.Event()

    def watch() -> None:
        while not done.wait(0.01):
            if look({s.name: s.counts for s in runner.snapshot().steps}):
                runner.stop()
                return

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        return runner.run()
    finally:
        done.set()
        watcher.join(10)


@pytest.mark.parametrize("fused", [False, True])
def test_a_fast_producer_waits_for_a_slow_consumer(tmp_path: Path, fused: bool) -> None:
    """Backpressure reaches the shards' generators: what they produced and the consumer has not taken stays
    within the run's bound (engine.flow.message_bound), however fast they are, with a step fused after them too."""
    config = into({**step("C", "Collect"), "module": "tests.semantic_steps",
                   "config": {"path": str(tmp_path / "C.jsonl")}}, fused)
    bound = message_bound(config)
    assert bound is not None
    ahead: list[int] = []

    def look(counts: dict[str, Any]) -> bool:
        ahead.append(counts["P"].processed - counts["C"].processed)
        return counts["C"].processed >= 20_000

    report = run_watched(ThreadedRunner(config, RunOptions()), look)
    assert report["C"].processed < 1_000_000  # stopped early: the producer was held back, not done
    assert ahead and max(ahead) <= bound, (max(ahead), bound)


@pytest.mark.parametrize(("fused", "burst"), [(False, 0), (True, 0), (False, 200)])
def test_a_stop_drains_no_more_than_the_bound_of_a_fast_producer_before_a_slow_consumer(fused: bool,
                                                                                       burst: int) -> None:
    """What the shards made before a stop is all the consumer takes after it, and it is within the run's bound
    (engine.flow.message_bound): the kernel's socket buffers between the processes do not hold thousands more, nor
    do a shard's packets when each of its yields comes with hundreds of send_msg() messages."""
    config = into({**step("C", "Tally"), "module": "pipeline.bench.steps", "config": {"delay": 0.0005}}, fused,
                  burst=burst)
    bound = message_bound(config)
    assert bound is not None
    at_stop: list[int] = []

    def look(counts: dict[str, Any]) -> bool:
        if counts["C"].processed >= 500:
            at_stop.append(counts["C"].processed)
        return bool(at_stop)

    report = run_watched(ThreadedRunner(config, RunOptions()), look)
    assert at_stop, "the consumer never took 500 messages"
    assert report["C"].processed - at_stop[0] <= bound, (report["C"].processed, at_stop[0], bound)
    assert report["C"].processed == report["P"].processed  # drained: nothing made was left behind


def test_a_run_given_up_after_its_shards_ended_names_what_is_still_busy(tmp_path: Path) -> None:
    """The shards' processes are gone (their boards unmapped) when the run gives up on a stuck consumer: the report
    names the consumer, and the run still ends with its report. One number per shard: what the shards' router sends
    the stuck consumer (at most a packet per shard, then its end) fits in the pipe between them whatever the timing,
    so that router ends (with ten numbers, a loaded machine's packets filled the pipe, and the router waited)."""
    Stuck.entered.clear()
    Stuck.release.clear()
    config = load_config(pipeline_config(
        {**step("P", "Shards", "C", nb_process=2), "module": PROCESS_STEPS},
        [],
        {**step("C", "Stuck"), "module": "tests.engine_steps"},
        Shards={"count": 2},
    ))
    runner = ThreadedRunner(config, RunOptions(shutdown_timeout=0.5))
    stopper = threading.Thread(target=lambda: (wait_for(Stuck.entered.is_set, 20, "the consumer to be stuck"),
                                               wait_for(lambda: not runner.supervisor.is_alive(), 20,
                                                        "the shards to end"),
                                               runner.stop(signal.SIGINT)))
    stopper.start()
    try:
        report = runner.run()
    finally:
        Stuck.release.set()  # the thread left behind ends: no later test sees it
        stopper.join(30)
    assert report.exit_status == 130
    assert report.stuck == ["step C worker 0 in run() on message 0"]
    assert report["P"].processed == 2


def test_a_remote_worker_cannot_join_a_producer_in_worker_processes(tmp_path: Path) -> None:
    with Launcher(tmp_path) as launch:
        config = launch.chain(hold=True)
        config["Pipeline"]["producer_conf"]["nb_process"] = 1
        run = launch.run(config)
        worker = launch.worker(step=PRODUCER)
        assert worker.wait() != 0
        assert f"step {PRODUCER} is the producer" in worker.stderr
        launch.hold.touch()
        assert run.wait() == 0, run.stderr
        assert sorted(row["value"] for row in launch.outputs()) == list(range(20))


# --------------------------------------------------------------------------- steps fused after the shards


def fused_file(tmp: Path, count: int, **sections: Any) -> Path:
    """COUNT (Shards) -> EVEN (KeepEven) -> B (Trigger, pids to b.txt) -> WRITER (MarkedWriter), the first three
    in the same 2 worker processes: fused."""
    document = {
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "COUNT", "module": PROCESS_STEPS, "class": "Shards", "next_steps": "EVEN",
                              "nb_process": 2},
            "stagers_conf": [
                {"name": "EVEN", "module": "tests.semantic_steps", "class": "KeepEven", "next_steps": "B",
                 "nb_process": 2},
                {"name": "B", "module": PROCESS_STEPS, "class": "Trigger", "next_steps": "WRITER", "nb_process": 2}],
            "consumer_conf": {"name": "WRITER", "module": "tests.failure_steps", "class": "MarkedWriter"},
        },
        "Shards": {"count": count},
        "Trigger": {"pid_file": str(tmp / "b.txt")},
        "MarkedWriter": {"path": str(tmp / "out.jsonl")},
        **sections,
    }
    return write_config(tmp, document)


def test_steps_of_the_same_worker_processes_fuse_after_a_sharded_producer(tmp_path: Path) -> None:
    document = json.loads(fused_file(tmp_path, 10).read_text())
    assert fused_groups(load_config(document, check=False)) == {"COUNT": ("COUNT", "EVEN", "B")}
    assert fused_groups(load_config(document, check=False), enabled=False) == {}
    document["Pipeline"]["stagers_conf"][0]["nb_process"] = 1
    assert fused_groups(load_config(document, check=False)) == {}


@pytest.mark.parametrize("processes", [1, 2])
def test_steps_fused_after_shards_give_the_sequential_outputs_and_counts(tmp_path: Path, processes: int) -> None:
    """Shards -> KeepEven -> Repeat, fused, against the sequential run. Each instance's init() sends -1 and -2
    (the sequential run has one instance, the threaded run one per process): -2 goes through the fused steps."""
    def build(tmp: Path) -> dict:
        return pipeline_config(
            {**step("P", "Shards", "F", nb_process=processes), "module": PROCESS_STEPS},
            [step("F", "KeepEven", "R", nb_process=processes), step("R", "Repeat", "C", nb_process=processes)],
            collector(tmp, "C"),
            Shards={"count": 500, "greeting": 2},
            Repeat={"copies": 2},
        )

    assert fused_groups(load_config(build(tmp_path), check=False)) == {"P": ("P", "F", "R")}
    outcomes = {}
    for mode, instances in (("sequential", 1), ("threads", processes)):
        (tmp_path / mode).mkdir()
        config = build(tmp_path / mode)
        report = run(config, mode)
        assert_ok(report)
        check_counts(report, config)
        kept = 250 + instances  # the even numbers, and each instance's -2
        assert counts(report) == {"P": (0, 500, 500 + 2 * instances, 0), "F": (500 + 2 * instances,) * 2 + (kept, 0),
                                  "R": (kept, kept, 2 * kept, 0), "C": (2 * kept, 2 * kept, 0, 0)}
        outcomes[mode] = sorted(map(json.dumps, read(tmp_path / mode, "C")))
        if mode == "threads":
            assert report["P"].shards == [len(range(shard, 500, processes)) for shard in range(processes)]
    greetings = [json.dumps([-2, copy]) for copy in range(2)] * (processes - 1)
    assert outcomes["threads"] == sorted(outcomes["sequential"] + greetings)


def test_a_killed_process_of_shards_and_fused_steps_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    """The fused filter passes on half of the shard's messages: the run counts the shard's messages whose outputs
    went on, not those outputs, so the process taking over the shard skips exactly what went on before."""
    marker = tmp_path / "killed"
    path = fused_file(tmp_path, 3000, Trigger={"pid_file": str(tmp_path / "b.txt"), "at": 1500, "action": "kill",
                                                "marker": str(marker), "delay": 0.0002})
    result = run_to_end(path, "--Pipeline.heartbeat_interval=0.2", "--Pipeline.heartbeat_liveness=3")
    assert result.returncode == 0, result.stderr
    assert pids(marker)  # it did kill its process
    assert sorted(written(tmp_path)) == list(range(0, 3000, 2))  # each even number once
    assert report_row(result.stderr, "COUNT") == [0, 3000, 3000, 0]
    assert report_row(result.stderr, "EVEN") == [3000, 3000, 1500, 0]
    assert report_row(result.stderr, "B") == [1500, 1500, 1500, 0]
    assert "COUNT: messages per shard: 1500, 1500" in result.stderr.splitlines()
    assert "COUNT: 1 shard started again, 1 worker process replaced" in result.stderr.splitlines()
    assert len(pids(tmp_path / "b.txt")) == 3  # B ran in the shards' processes: two, then the replacement


def test_a_killed_shard_whose_fused_step_fans_out_counts_each_message_once(tmp_path: Path) -> None:
    """A shard's packet is cut at MAX_BATCH messages, and here each message makes 100 through the fused step: the
    figures of the fused steps sent with a packet (TALLY) are those of its messages, not of one more, so the process
    taking over the shard counts nothing twice."""
    config = pipeline_config(
        {**step("P", "Shards", "F", nb_process=2), "module": PROCESS_STEPS},
        [{**step("F", "Repeat", "C", nb_process=2), "module": "tests.semantic_steps", "config": {"copies": 100}}],
        collector(tmp_path, "C"),
        Shards={"count": 20, "at": 4, "action": "kill", "marker": str(tmp_path / "killed")})
    report = run(config, "threads")
    assert_ok(report)
    assert sorted(map(tuple, read(tmp_path, "C"))) == [(n, k) for n in range(20) for k in range(100)]
    assert (report["P"].processed, report["P"].emitted) == (20, 20)
    assert (report["F"].received, report["F"].processed, report["F"].emitted) == (20, 20, 2000)
    assert report["P"].redelivered == 1  # the shard started again


def test_a_failure_in_a_step_fused_after_shards_is_its_own_with_its_message_as_dead_letter(tmp_path: Path) -> None:
    dead = tmp_path / "dead.jsonl"
    path = fused_file(tmp_path, 200)
    document = json.loads(path.read_text())
    document["Pipeline"]["stagers_conf"][1].update(module="tests.failure_steps", on_error="skip",
                                                   **{"class": "FailEvery"})
    document["FailEvery"] = {"every": 10}
    del document["Trigger"]
    document["Pipeline"]["dead_letter"] = str(dead)
    write_config(tmp_path, document)
    result = run_to_end(path)
    assert result.returncode == 1, result.stderr
    assert sorted(written(tmp_path)) == [n for n in range(0, 200, 2) if n % 10]
    assert report_row(result.stderr, "B") == [100, 80, 80, 20]
    records = [json.loads(line) for line in lines(dead)]
    assert len(records) == 20 and {record["step"] for record in records} == {"B"}
    assert sorted(load_messages(str(dead))) == [("B", n) for n in range(0, 200, 10)]


@pytest.mark.parametrize("fused", [False, True])
def test_a_chunk_worth_of_init_messages_is_no_shards(tmp_path: Path, fused: bool) -> None:
    """init() sends more than a chunk's worth (CHUNK_COUNT, 4096) in each worker process: its messages go on as
    chunks of no shard, through the fused steps if any, and count as no shard's nor as yielded."""
    greeting = 5000
    stages = [step("S", "Scale", "C", nb_process=2, config={"factor": 1})] if fused else []
    config = pipeline_config(
        {**step("P", "Shards", "S" if fused else "C", nb_process=2), "module": PROCESS_STEPS}, stages,
        collector(tmp_path, "C"), Shards={"count": 100, "greeting": greeting})
    assert bool(fused_groups(load_config(config, check=False))) is fused
    report = run(config, "threads")
    assert_ok(report)
    got = read(tmp_path, "C")
    assert sorted(value for value in got if value >= 0) == list(range(100))
    assert sorted(value for value in got if value < 0) == sorted(-1 - k for k in range(greeting) for _ in range(2))
    assert counts(report)["P"] == (0, 100, 100 + 2 * greeting, 0)
    assert report["P"].shards == [50, 50]


@pytest.mark.parametrize("poison", [[1500], [1500, 1502]], ids=["one", "two-in-one-shard"])
def test_a_message_that_kills_every_process_in_a_fused_step_goes_to_its_dead_letters(tmp_path: Path,
                                                                                      poison: list[int]) -> None:
    """B kills its process on message 1500 (and 1502, of the same shard) every time: the busy board names the message
    each death was running, and once max_redeliveries processes died running it, it goes to the dead letters of the
    first fused step (EVEN), as a message that kills a fused chain of stagers goes to its first step's; the run goes
    on with every other message, each once. (With two, the shard named only the last poison: the first ran again,
    killed a third process, and the whole shard failed as the producer's own fault.)"""
    dead = tmp_path / "dead.jsonl"
    path = fused_file(tmp_path, 3000, Trigger={"at": poison[0], "also": poison[1:], "action": "kill", "once": False,
                                               "delay": 0.0002})
    document = json.loads(path.read_text())
    document["Pipeline"]["stagers_conf"][0]["on_error"] = "skip"
    document["Pipeline"].update(dead_letter=str(dead), allow_failures=True)
    write_config(tmp_path, document)
    result = run_to_end(path, "--Pipeline.heartbeat_interval=0.2", "--Pipeline.heartbeat_liveness=3")
    assert result.returncode == 0, result.stderr
    assert sorted(written(tmp_path)) == [n for n in range(0, 3000, 2) if n not in poison]
    records = [json.loads(line) for line in lines(dead)]
    assert [(record["step"], record["error"].split(":")[0]) for record in records] == [("EVEN", "WorkerDied")] * len(
        poison)
    assert load_messages(str(dead)) == [("EVEN", n) for n in poison]
    assert [record["seq"] for record in records] == [n // 2 for n in poison]  # their places in shard 0
    assert report_row(result.stderr, "COUNT") == [0, 3000, 3000, 0]
    assert report_row(result.stderr, "EVEN") == [3000, 3000 - len(poison), 1500 - len(poison), len(poison)]
    assert report_row(result.stderr, "B") == [1500 - len(poison)] * 3 + [0]
    assert "COUNT: messages per shard: 1500, 1500" in result.stderr.splitlines()


def test_a_producer_that_kills_every_process_at_one_message_fails_with_steps_fused_after_it(tmp_path: Path) -> None:
    """The message is the generator's own poison: not even made, it cannot go to the dead letters; once one more
    process died at it, the producer fails as an error of its generator does."""
    path = fused_file(tmp_path, 3000, Shards={"count": 3000, "at": 1501, "action": "kill", "once": False,
                                              "delay": 0.0002})
    result = run_to_end(path, "--Pipeline.heartbeat_interval=0.2", "--Pipeline.heartbeat_liveness=3")
    assert result.returncode == 1, result.stderr
    assert "COUNT: first error: producer COUNT: shard 1 was running in 3 worker processes that died" in result.stderr
    assert report_row(result.stderr, "COUNT")[3] == 1  # FAILED: the shard, as when its generator raises
    values = written(tmp_path)  # shard 0's even numbers; shard 1's are odd, all filtered out by EVEN
    assert len(values) == len(set(values)) and all(value % 2 == 0 for value in values)


def test_the_book_counts_deaths_per_message_and_names_the_poison() -> None:
    """ShardBook alone: deaths count per message of a shard (its board mark names it), and a shard whose message
    killed as many processes as asked starts again with that message named poison."""
    book = ShardBook(2)
    assert read_mark(board_mark(1, 750)) == (1, 750)
    assert [book.died(1, 750, 2), book.died(1, 751, 2), book.died(1, 750, 2)] == [1, 1, 2]
    book.sent[1] = 740

    def works() -> list[ShardWork]:
        seed = Packet()
        for shard in range(2):
            seed.add(encode(ShardWork(shard, 2)))
        return [read_work(inband, buffers) for _, inband, buffers in book.again(seed).messages()]

    assert works() == [ShardWork(0, 2), ShardWork(1, 2, 740, poison=frozenset({750}))]
    assert book.died(1, 751, 2) == 2  # a second poison of the same shard: both named (the last alone was)
    assert works() == [ShardWork(0, 2), ShardWork(1, 2, 740, poison=frozenset({750, 751}))]
    assert book.died(1, 750, 2) == 3  # one more: the producer's own code (the router fails it)


def test_a_failure_in_a_fused_step_counts_once_though_its_process_dies_before_its_answer(tmp_path: Path) -> None:
    """EVEN's place is taken by FailEvery (every 10th fails, skipped); B kills its process once, on 1502, after
    failures of messages whose chunk had not gone yet: those run again in another process and fail again, and the
    run counts each failure once, with one dead letter, as it would unfused."""
    dead = tmp_path / "dead.jsonl"
    path = fused_file(tmp_path, 3000, Trigger={"at": 1502, "action": "kill", "marker": str(tmp_path / "killed"),
                                               "delay": 0.0002}, FailEvery={"every": 10})
    document = json.loads(path.read_text())
    document["Pipeline"]["stagers_conf"][0].update(module="tests.failure_steps", on_error="skip",
                                                   **{"class": "FailEvery"})
    document["Pipeline"].update(dead_letter=str(dead), allow_failures=True)
    write_config(tmp_path, document)
    result = run_to_end(path, "--Pipeline.heartbeat_interval=0.2", "--Pipeline.heartbeat_liveness=3")
    assert result.returncode == 0, result.stderr
    assert pids(tmp_path / "killed")  # it did kill its process
    assert sorted(written(tmp_path)) == [n for n in range(3000) if n % 10]
    assert sorted(message for _, message in load_messages(str(dead))) == list(range(0, 3000, 10))
    assert report_row(result.stderr, "COUNT") == [0, 3000, 3000, 0]
    assert report_row(result.stderr, "EVEN") == [3000, 2700, 2700, 300]
    assert report_row(result.stderr, "B") == [2700, 2700, 2700, 0]
