"""python -m pipeline.bench.thread_cpu: where the microseconds go, per thread, for W1 and for W7's events."""

from __future__ import annotations

import pytest

from pipeline.bench import thread_cpu

pytestmark = pytest.mark.timeout(120)


def test_w1_names_the_engine_threads_of_the_run(capsys: pytest.CaptureFixture[str]) -> None:
    # Threads are read every SAMPLE_SECONDS while they run: a run of some tenths of a second, even on a loaded
    # machine where one look over /proc takes a while (3,000 messages, some 50 ms, had ended before the first).
    thread_cpu.main(["--count", "30000"])
    out = capsys.readouterr().out
    assert out.startswith("W1: ") and "  run: " in out
    # The stage and the sink have one worker each: their routers run them (no S#0 or C#0 thread).
    for thread in ("P#0", "router-S", "router-C"):
        assert f"    {thread} " in out, out
    assert "    S#0 " not in out and "    C#0 " not in out, out


def test_events_count_the_worker_processes_and_the_plain_loop(capsys: pytest.CaptureFixture[str]) -> None:
    thread_cpu.main(["--events", "--count", "60"])
    out = capsys.readouterr().out
    assert out.startswith("W7 one step: ") and "the plain loop" in out
    assert out.count("  process ") >= 2, out  # the two worker processes (and the zygote)
