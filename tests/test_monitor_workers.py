"""A real pipeline-run with ``nb_process: 2``: its status stream lists the step's worker processes (valid
against the schema), the monitor reads them, and its progress log lines say where the workers run."""

from __future__ import annotations

import json
import os
from pathlib import Path

from gui.model import Runs
from gui.protocol import parse
from gui.widgets import workers
from tests.cli_helpers import write_config
from tests.monitor_helpers import WAIT, Subscriber, document, gated_run, of


def test_a_run_with_worker_processes_publishes_them(tmp_path: Path) -> None:
    config = document("stdin", count=40, before=5, every=10, producer="StdinGatedCounter")
    config["Pipeline"]["stagers_conf"][0].update(nb_process=2, nb_thread=1)
    path = write_config(tmp_path, config)
    subscriber = Subscriber()
    try:
        # The producer waits at its gate until both worker processes are up and heartbeating.
        returncode, _, stderr, messages, run_pid = gated_run(
            path, subscriber, lambda status: status["state"] == "running" and
            len(status["steps"][1]["worker_processes"]) == 2, " workers=2p")
    finally:
        subscriber.close()
    assert returncode == 0, "".join(stderr)

    # Every message was checked against the schema as it arrived (Subscriber.receive_until).
    live = next(m["steps"][1] for m in of(messages, "status") if len(m["steps"][1]["worker_processes"]) == 2)
    assert (live["name"], live["processes"], live["workers"], live["redelivered"], live["restarts"]) == \
        ("STAGE", 2, 2, 0, 0)
    listed = live["worker_processes"]
    assert [(w["kind"], w["host"], w["key"], w["threads"]) for w in listed] == [("process", "", "", 1)] * 2
    pids = {w["pid"] for w in listed}
    assert len(pids) == 2 and run_pid not in pids and os.getpid() not in pids
    assert all(0 <= w["silent"] < WAIT for w in listed)
    assert all(step["worker_processes"] == [] for m in of(messages, "status") for step in m["steps"]
               if step["name"] != "STAGE")

    # The monitor reads the stream as sent, and shows the two processes.
    runs = Runs()
    shown = []
    for topic, message in messages:
        run = runs.apply(parse([topic.encode(), json.dumps(message).encode()]))
        if run is not None and topic == "status":
            shown.append(workers.mix_text(run.steps["STAGE"]))
    assert "2p" in shown
    assert workers.mix_text(next(iter(runs.runs.values())).steps["STAGE"]) == "0p"  # ended: none live

    progress = [line for line in stderr if " INFO pipeline.progress: " in line]
    assert any(" | STAGE processed=" in line and "/s workers=2p | SINK " in line for line in progress), progress
