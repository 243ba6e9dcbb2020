"""What init() sends reaches the next steps, however much it sends and however long it takes, in every kind of
worker whose outputs go back to its router (an ordered step's threads, worker processes, fused steps, a producer's
shards): a worker joins its step only once its init() has returned, and what its init() sent may come first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.remote_helpers import Launcher
from tests.semantic_helpers import assert_ok, collector, pipeline_config, read, run, step

PROCESS_STEPS = "tests.process_steps"

pytestmark = pytest.mark.timeout(60)


def stager(name: str, next_step: str, **keys: Any) -> dict[str, Any]:
    """An InitSends step."""
    return {**step(name, "InitSends", next_step, **keys), "module": PROCESS_STEPS}


@pytest.mark.parametrize("keys", [{"nb_thread": 2, "ordered": True}, {"nb_process": 1}, {"nb_process": 2}],
                         ids=["ordered-threads", "one-process", "two-processes"])
def test_a_chunks_worth_of_init_messages_goes_on(tmp_path: Path, keys: dict[str, Any]) -> None:
    """Past 4,096 outputs a chunk goes to the router at once and waits for its MORE, before the worker joined."""
    config = pipeline_config(step("P", "Counter", "S", module="algorithms.basic"), [stager("S", "C", **keys)],
                             collector(tmp_path, "C"), Counter={"count": 10}, InitSends={"many": 5000})
    report = run(config, "threads")
    assert_ok(report)
    workers = keys.get("nb_process", 1) * keys.get("nb_thread", 1)
    assert sorted(read(tmp_path, "C"), key=str) == sorted([*range(10), *["init"] * 5000 * workers], key=str)


def test_what_a_fused_steps_init_sent_goes_on_while_the_first_steps_init_is_slow(tmp_path: Path) -> None:
    """A fused group's steps start last first: what B's init() sends waits while A's init() runs, and the run's
    flusher sends it on then, before the process's threads joined."""
    config = pipeline_config(step("P", "Counter", "A", module="algorithms.basic"),
                             [stager("A", "B", nb_process=2, config={"pause": 0.3}),
                              stager("B", "C", nb_process=2, config={"many": 1})],
                             collector(tmp_path, "C"), Counter={"count": 10})
    report = run(config, "threads")
    assert_ok(report)
    assert sorted(read(tmp_path, "C"), key=str) == sorted([*range(10), "init", "init"], key=str)
    assert report["B"].emitted == 12


@pytest.mark.parametrize("fused", [False, True])
def test_a_chunks_worth_of_a_shards_init_messages_goes_on(tmp_path: Path, fused: bool) -> None:
    stages = [{**step("S", "Scale", "C", nb_process=2), "module": "tests.semantic_steps"}] if fused else []
    config = pipeline_config({**step("P", "Shards", "S" if fused else "C", nb_process=2), "module": PROCESS_STEPS},
                             stages, collector(tmp_path, "C"), Shards={"count": 10, "greeting": 5000})
    report = run(config, "threads")
    assert_ok(report)
    scale = 2 if fused else 1
    greetings = [scale * (-1 - k) for k in range(5000)] * 2
    assert sorted(read(tmp_path, "C")) == sorted([*(scale * n for n in range(10)), *greetings])


def test_a_chunks_worth_of_a_remote_workers_init_messages_goes_on(tmp_path: Path) -> None:
    """The run's door relays a remote thread's RESULT before its JOIN too: its init()'s chunk waits for a MORE."""
    with Launcher(tmp_path) as launch:
        config = pipeline_config(step("P", "Counter", "S", module="algorithms.basic"), [stager("S", "C", nb_thread=0)],
                                 collector(tmp_path, "C"), Counter={"count": 10}, InitSends={"many": 5000})
        run_ = launch.run(config)
        worker = launch.worker(step="S")
        assert run_.wait() == 0, run_.stderr
        assert worker.wait() == 0, worker.stderr
    assert sorted(read(tmp_path, "C"), key=str) == sorted([*range(10), *["init"] * 5000], key=str)

