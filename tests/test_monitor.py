"""The monitor: its JSON status stream read by a real SUB socket, its progress display and log
lines, and the summary table (docs/protocol.md)."""

from __future__ import annotations

import io
import json
import logging
import re
import signal
import sys
import threading
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from rich.console import Console

from gui.protocol import parse
from pipeline import ConfigError, Pipeline
from pipeline.cli.run import PipelineRun
from pipeline.config import DEFAULT_QUEUE_LIMIT, load_config
from pipeline.execution.report import RunReport, StepCounts, StepReport
from pipeline.execution.sequential import SequentialRunner
from pipeline.execution.status import RunStatus, StepStatus
from pipeline.failures.policy import ErrorEvent
from pipeline.monitor import monitor as monitor_module
from pipeline.monitor.messages import MAX_STEPS, TRACEBACK_CHARS, encode
from pipeline.monitor.monitor import Monitor, MonitorSettings, Rates, make_progress
from pipeline.monitor.progress import LogProgress, progress_line
from pipeline.monitor.publisher import endpoint
from pipeline.monitor.terminal import TerminalProgress

from .cli_helpers import ROOT, chain_config, write_config
from .monitor_helpers import VALIDATOR, WAIT, Subscriber, document, gated_run, has, of
from .monitor_steps import gate
from .pty_helpers import run_on_terminal
from .remote_helpers import free_port

MODES = ["threads", "sequential"]

#: The graph that document() describes.
GRAPH = [
    {"name": "SOURCE", "class": "GatedCounter", "module": "tests.monitor_steps", "kind": "producer",
     "next_steps": ["STAGE"], "workers": 1, "queue_limit": DEFAULT_QUEUE_LIMIT},
    {"name": "STAGE", "class": "FailEvery", "module": "tests.failure_steps", "kind": "stager",
     "next_steps": ["SINK"], "workers": 2, "queue_limit": 8},
    {"name": "SINK", "class": "PassThrough", "module": "algorithms.basic", "kind": "consumer",
     "next_steps": [], "workers": 1, "queue_limit": DEFAULT_QUEUE_LIMIT},
]


@pytest.fixture
def subscriber() -> Iterator[Subscriber]:
    sub = Subscriber()
    yield sub
    sub.close()


class Background:
    """``pipeline.run()`` in a thread (the test reads the stream meanwhile)."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.report: RunReport | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, args=(pipeline,), name="test-run")
        self.thread.start()

    def _run(self, pipeline: Pipeline) -> None:
        try:
            self.report = pipeline.run()
        except BaseException as err:
            self.error = err

    def result(self) -> RunReport:
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the run did not end"
        if self.error is not None:
            raise self.error
        assert self.report is not None
        return self.report


def graph_steps(message: dict[str, Any]) -> list[dict[str, Any]]:
    keys = ("name", "class", "module", "kind", "next_steps", "workers", "queue_limit")
    return [{key: step[key] for key in keys} for step in message["steps"]]


def final_counts(report: RunReport) -> dict[str, list[int]]:
    return {name: [c.received, c.processed, c.emitted, c.failed] for name, c in
            ((name, report[name]) for name in report.steps)}


def status_counts(message: dict[str, Any]) -> dict[str, list[int]]:
    return {s["name"]: [s["received"], s["processed"], s["emitted"], s["failed"]] for s in message["steps"]}


def failed_values(count: int, every: int) -> set[str]:
    return {f"ValueError: bad message {n}" for n in range(0, count, every)}


# -- the stream, read by a real subscriber ---------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_stream_matches_the_run(subscriber: Subscriber, mode: str) -> None:
    """Every message validates; the graph matches the config; the last status and the finish
    report match the run's counts; each injected failure arrives with its traceback."""
    tag = uuid.uuid4().hex
    pipeline = Pipeline.from_config(document(tag), {"Pipeline": {
        "mode": mode, "gui_address": subscriber.address, "gui_plaintext": True, "progress": False,
        "allow_failures": True}})
    run = Background(pipeline)
    # Subscribed, and the producer waits at its gate: the rest of the run is seen whole.
    subscriber.receive_until(lambda received: any(m["state"] == "running" for m in of(received, "status")))
    gate(tag)[1].set()
    messages = subscriber.receive_until(has("finish"))
    report = run.result()

    assert report.exit_status == 0 and report["STAGE"].failed == 6
    assert messages[-1][0] == "finish"
    envelope = {(m["run_id"], m["pipeline"], m["config"], m["pid"], m["protocol"]) for _, m in messages}
    assert len(envelope) == 1
    serials = [m["serial"] for _, m in messages]
    assert serials == list(range(serials[0], serials[0] + len(serials)))  # nothing lost once subscribed

    for graph in of(messages, "graph"):
        assert graph_steps(graph) == GRAPH

    statuses = of(messages, "status")
    assert statuses[-1]["state"] == "finished"
    assert "running" in {s["state"] for s in statuses}
    assert status_counts(statuses[-1]) == final_counts(report)
    assert all(step["rate"] >= 0 and step["mean_time"] >= 0 for s in statuses for step in s["steps"])
    assert [s["elapsed"] for s in statuses] == sorted(s["elapsed"] for s in statuses)

    finish = of(messages, "finish")[0]
    assert finish["exit_status"] == 0 and finish["state"] == "finished"
    assert finish["report"] == json.loads(json.dumps(report.as_dict()))
    assert {name: list(step["counts"].values()) for name, step in finish["report"]["steps"].items()} \
        == final_counts(report)

    errors = of(messages, "error")
    assert {e["error"] for e in errors} == failed_values(30, 5)
    assert len(errors) == 6
    for error in errors:
        assert error["step"] == "STAGE" and error["worker"] in (0, 1) and isinstance(error["seq"], int)
        assert error["traceback"].startswith("Traceback (most recent call last):")
        assert 'raise ValueError(f"bad message {msg}")' in error["traceback"]
        assert error["traceback"].rstrip().endswith(error["error"])


@pytest.mark.parametrize("mode", MODES)
def test_a_run_stopped_by_a_signal_says_why_in_its_finish(subscriber: Subscriber, mode: str) -> None:
    """A run stopped by Ctrl+C sent its finish with stop_reason null: the monitor's header could not say why it
    stopped early, as docs/gui.md says it does."""
    tag = uuid.uuid4().hex
    pipeline = Pipeline.from_config(document(tag, count=30, before=2), {"Pipeline": {
        "mode": mode, "gui_address": subscriber.address, "gui_plaintext": True, "progress": False}})
    run = Background(pipeline)
    assert gate(tag)[0].wait(WAIT), "the producer did not reach its gate"
    pipeline.interrupt(signal.SIGINT)
    gate(tag)[1].set()
    finish = of(subscriber.receive_until(has("finish")), "finish")[0]
    report = run.result()
    assert finish["exit_status"] == report.exit_status == 130
    assert finish["report"]["stop_reason"] == report.stop_reason == "SIGINT: stopped by the user (Ctrl+C)"
    assert "stopped: SIGINT: stopped by the user (Ctrl+C)" in report.table()


@pytest.mark.parametrize("mode", MODES)
def test_an_error_of_several_lines_is_sent_on_one(subscriber: Subscriber, mode: str) -> None:
    """protocol.md: an error's ``error`` is one line (its schema says so too); one whose message had line breaks went
    as it was, which the schema refuses."""
    tag = uuid.uuid4().hex
    doc = document(tag, count=3)
    doc["GatedCounter"]["fail"] = "the source went\naway\r\nfor good"
    pipeline = Pipeline.from_config(doc, {"Pipeline": {"mode": mode, "gui_address": subscriber.address,
                                                       "gui_plaintext": True, "progress": False}})
    run = Background(pipeline)
    subscriber.receive_until(lambda received: any(m["state"] == "running" for m in of(received, "status")))
    gate(tag)[1].set()
    messages = subscriber.receive_until(has("finish"))  # each checked against the schema as it came
    assert run.result().exit_status == 1
    errors = {e["step"]: e for e in of(messages, "error")}
    assert errors["SOURCE"]["error"] == "run(): RuntimeError: the source went away for good"


@pytest.mark.parametrize("mode", MODES)
def test_a_producer_error_fails_the_run(subscriber: Subscriber, mode: str) -> None:
    """A lifecycle error (here the producer's) arrives without a message number; the run ends failed."""
    tag = uuid.uuid4().hex
    doc = document(tag, count=3)
    doc["GatedCounter"]["fail"] = "the source went away"
    pipeline = Pipeline.from_config(doc, {"Pipeline": {"mode": mode, "gui_address": subscriber.address,
                                                       "gui_plaintext": True,
                                                       "progress": False}})
    run = Background(pipeline)
    subscriber.receive_until(lambda received: any(m["state"] == "running" for m in of(received, "status")))
    gate(tag)[1].set()
    messages = subscriber.receive_until(has("finish"))
    report = run.result()
    errors = {e["step"]: e for e in of(messages, "error")}
    assert errors["SOURCE"]["seq"] is None and errors["SOURCE"]["worker"] == 0
    assert errors["SOURCE"]["error"] == "run(): RuntimeError: the source went away"
    assert "in run\n    raise RuntimeError(self.fail)" in errors["SOURCE"]["traceback"]
    finish = of(messages, "finish")[0]
    assert finish["exit_status"] == report.exit_status == 1
    assert finish["state"] == of(messages, "status")[-1]["state"] == "failed"
    assert finish["report"]["steps"]["SOURCE"]["fatal"] is True


@pytest.mark.parametrize("mode", MODES)
def test_a_late_subscriber_gets_the_graph(mode: str) -> None:
    """A GUI that binds after the run started receives the graph, sent again every graph_interval."""
    tag = uuid.uuid4().hex
    port = free_port()
    pipeline = Pipeline.from_config(document(tag, count=10, before=3), {"Pipeline": {
        "mode": mode, "gui_address": f"127.0.0.1:{port}", "gui_plaintext": True, "graph_interval": 0.2,
        "progress": False,
        "allow_failures": True}})
    run = Background(pipeline)
    reached, opened = gate(tag)
    try:
        assert reached.wait(WAIT), "the producer did not reach its gate"
        late = Subscriber(port)  # the run has produced 3 messages by now
        try:
            # More than one graph: sent again on a timer, not only when a subscriber subscribes.
            messages = late.receive_until(has("graph", 3))
            assert all(graph_steps(graph) == GRAPH for graph in of(messages, "graph"))
            late.receive_until(lambda received: any(
                m["state"] == "running" and m["steps"][0]["processed"] == 3 for m in of(received, "status")))
            opened.set()
            messages = late.receive_until(has("finish"))
        finally:
            late.close()
    finally:
        opened.set()
    report = run.result()
    assert of(messages, "finish")[0]["report"]["steps"]["SINK"]["counts"]["processed"] == report["SINK"].processed


def test_pipeline_run_subprocess_streams_logs_progress_and_prints_the_summary(
        subscriber: Subscriber, tmp_path: Path) -> None:
    """A real pipeline-run: the stream, progress log lines (stderr is a pipe) and the summary table."""
    path = write_config(tmp_path, document("stdin", count=40, before=5, every=10, producer="StdinGatedCounter"))
    run = gated_run(path, subscriber, lambda status: status["state"] == "running", " INFO pipeline.progress: ")
    returncode, stdout, stderr, messages, _ = run
    assert returncode == 0, "".join(stderr)
    assert stdout == ""

    graph = of(messages, "graph")[0]
    assert graph["pipeline"] == "pipeline" and graph["config"] == str(path)
    assert [step["class"] for step in graph["steps"]] == ["StdinGatedCounter", "FailEvery", "PassThrough"]
    finish = of(messages, "finish")[0]
    counts = {name: step["counts"] for name, step in finish["report"]["steps"].items()}
    assert counts["STAGE"] == {"received": 40, "processed": 36, "emitted": 36, "failed": 4}
    assert status_counts(of(messages, "status")[-1]) == {n: list(c.values()) for n, c in counts.items()}
    assert {e["error"] for e in of(messages, "error")} == failed_values(40, 10)

    progress = [line for line in stderr if " INFO pipeline.progress: " in line]
    step = r"(\w+) processed=\d+ failed=\d+ queue=(-|\d+/\d+) busy=\d+/\d+ rate=\d+\.\d/s"
    for line in progress:
        match = re.fullmatch(r".* INFO pipeline\.progress: (starting|running|draining) \d+\.\d s: (.*)\n", line)
        assert match, line
        steps = [re.fullmatch(step, part) for part in match.group(2).split(" | ")]
        assert [s.group(1) if s else None for s in steps] == ["SOURCE", "STAGE", "SINK"], line

    header = next(i for i, line in enumerate(stderr) if line.startswith("STEP "))
    summary = [line.rstrip("\n") for line in stderr[header - 1:]]
    assert re.fullmatch(r"wall time \d+\.\d\d s, run finished", summary[0])
    assert summary[1].split() == ["STEP", "RECEIVED", "PROCESSED", "EMITTED", "FAILED", "MEAN_MS", "MAX_MS", "MSG/S"]
    for line, (name, c) in zip(summary[2:5], counts.items(), strict=True):
        assert line.split()[:5] == [name, *map(str, (c["received"], c["processed"], c["emitted"], c["failed"]))]
    assert summary[5:] == ["STAGE: first error: ValueError: bad message 0", "exit status 0"]


def test_no_socket_without_gui_and_no_thread_without_either(monkeypatch: pytest.MonkeyPatch) -> None:
    """--Pipeline.gui=False opens no socket; with --no-progress too the monitor starts no thread."""
    def refuse(*args: Any) -> None:
        raise AssertionError("a publisher was made")

    monkeypatch.setattr(monitor_module, "Publisher", refuse)
    tag = uuid.uuid4().hex
    gate(tag)[1].set()
    pipeline = Pipeline.from_config(document(tag, count=5), {"Pipeline": {"gui": False, "allow_failures": True}})
    assert pipeline.run().exit_status == 0
    config = load_config(document(tag, count=5))
    runner = SequentialRunner(config)
    with Monitor(config, runner, MonitorSettings(gui=False, progress=False)) as monitor:
        report = monitor.close(runner.run())
    assert monitor._thread.ident is None and runner.policy.listeners == []
    assert report["SINK"].processed == 4 and report.wall_time > 0 and report.steps["STAGE"].busy_time > 0


def test_an_unreachable_address_costs_nothing() -> None:
    """With no GUI listening, the run neither waits nor fails: its socket closes at once."""
    tag = uuid.uuid4().hex
    gate(tag)[1].set()
    pipeline = Pipeline.from_config(document(tag, count=5), {"Pipeline": {
        "gui_address": f"127.0.0.1:{free_port()}", "gui_plaintext": True, "progress": False, "allow_failures": True}})
    start = time.monotonic()
    assert pipeline.run().exit_status == 0
    assert time.monotonic() - start < monitor_module.JOIN_SECONDS  # the monitor's thread was not given up on


def test_a_run_with_no_monitor_keeps_none_of_its_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no monitor key there is no publisher: 60 errors of 1 MB texts were all kept (120 MB here; 400 MB with a
    peer's 4 MB texts) for a monitor that would never send them."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no key: the status stream is not published
    count, chars = 60, 1_000_000
    pipeline = Pipeline.from_config({"version": 1, "Pipeline": {
        "producer_conf": {"name": "P", "module": "algorithms.basic", "class": "Counter", "next_steps": "FAIL"},
        "consumer_conf": {"name": "FAIL", "module": "tests.failure_steps", "class": "FailsWithLongText",
                          "on_error": "skip"},
        "gui": True, "progress": False, "allow_failures": True},
        "Counter": {"count": count}, "FailsWithLongText": {"chars": chars}})
    tracemalloc.start()
    try:
        report = pipeline.run()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert report["FAIL"].failed == count
    assert peak < count * chars  # a few errors at once in flight, not every one kept


def test_errors_waiting_are_bounded_in_bytes_and_those_dropped_counted() -> None:
    """Each error waits cut as it is sent, and the oldest are dropped past the bound: counted, then no more."""
    pending = monitor_module.PendingErrors(max_bytes=1_000_000)
    for seq in range(100):
        pending.add(ErrorEvent("S", 0, seq, "ValueError: " + "\U0001F600" * 1_000_000, "x" * 4_000_000))
    bodies, dropped = pending.take()
    assert bodies and all(len(body["traceback"]) <= TRACEBACK_CHARS for body in bodies)
    assert [body["seq"] for body in bodies] == list(range(100 - len(bodies), 100))  # the newest kept
    assert dropped == 100 - len(bodies)
    assert pending.take() == ([], 0)
    pending.close()
    pending.add(ErrorEvent("S", 0, 0, "ValueError: late", ""))
    assert pending.take() == ([], 0)  # nothing publishes them any more


def test_a_run_of_more_steps_than_the_monitor_takes_says_so(caplog: pytest.LogCaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """pipeline-gui refused every message of a run of 202 steps, and the run said nothing; then it said so, and still
    sent every message."""
    def refuse(*args: Any) -> None:
        raise AssertionError("a publisher was made")

    monkeypatch.setattr(monitor_module, "Publisher", refuse)
    stagers = [{"name": f"S{i}", "module": "algorithms.basic", "class": "PassThrough", "next_steps": f"S{i + 1}"}
               for i in range(MAX_STEPS)]
    stagers[-1]["next_steps"] = "W"
    pipeline = Pipeline.from_config({"version": 1, "Pipeline": {
        "producer_conf": {"name": "P", "module": "algorithms.basic", "class": "Counter", "next_steps": "S0"},
        "stagers_conf": stagers, "consumer_conf": {"name": "W", "module": "algorithms.basic", "class": "PassThrough"},
        "gui_address": f"127.0.0.1:{free_port()}", "gui_plaintext": True, "progress": False}, "Counter": {"count": 3}})
    with caplog.at_level(logging.WARNING, logger="pipeline.monitor"):
        assert pipeline.run().exit_status == 0
    assert [r.getMessage() for r in caplog.records if "pipeline-gui shows" in r.getMessage()] == [
        f"pipeline-gui shows runs of at most {MAX_STEPS} steps: this run's {MAX_STEPS + 2} are not shown there (the "
        "progress display and the report show them)"]


def test_a_run_whose_name_is_longer_than_the_monitor_takes_is_shown_with_its_middle_cut(
        subscriber: Subscriber, tmp_path: Path) -> None:
    """A config file's stem of 210 characters: pipeline-gui refused every message of its run (a name of more than 200),
    and neither side said it to the user."""
    tag = uuid.uuid4().hex
    gate(tag)[1].set()
    path = tmp_path / f"{'a' * 105}{'z' * 105}.json"
    path.write_text(json.dumps(document(tag, count=5)), encoding="utf-8")
    pipeline = Pipeline.from_config(str(path), {"Pipeline": {
        "gui_address": subscriber.address, "gui_plaintext": True, "progress": False, "allow_failures": True}})
    run = Background(pipeline)
    messages = subscriber.receive_until(has("finish"))
    assert run.result().exit_status == 0
    for topic, message in messages:
        shown = parse([topic.encode(), json.dumps(message).encode()])  # as pipeline-gui reads it
        assert shown.header.pipeline.startswith("a" * 80) and shown.header.pipeline.endswith("z" * 80)


# -- settings -------------------------------------------------------------------------------


@pytest.mark.parametrize("address", ["localhost:5565", "tcp://127.0.0.1:5565", "[::1]:5565", "gui.example.org:1"])
def test_gui_address_accepts_host_port(address: str) -> None:
    pipeline = Pipeline.from_config(document("x"), {"Pipeline": {"gui_address": address}})
    assert endpoint(pipeline.gui_address) == (address if address.startswith("tcp://") else f"tcp://{address}")


@pytest.mark.parametrize("address", ["localhost", "tcp://localhost", "*:5565", "ipc:///tmp/x", "host:port", ""])
def test_gui_address_rejects_others(address: str) -> None:
    with pytest.raises(ConfigError, match="gui_address"):
        Pipeline.from_config(document("x"), {"Pipeline": {"gui_address": address}})


@pytest.mark.parametrize(("flag", "value"), [("--progress", True), ("--no-progress", False)])
def test_progress_flags(tmp_path: Path, flag: str, value: bool) -> None:
    app = PipelineRun()
    app.initialize([f"--config={write_config(tmp_path, document('x'))}", flag])
    assert Pipeline.from_config(app.config_file, app.step_overrides()).progress is value


# -- pieces ---------------------------------------------------------------------------------


def status(state: str = "running", processed: int = 7, queue: int = 3) -> RunStatus:
    return RunStatus(state, 2.5, [
        StepStatus("SOURCE", state="running", workers=1,
                   counts=StepCounts(processed=processed + 2, emitted=processed + 2)),
        StepStatus("STAGE", state="running", queue=queue, queue_limit=8, busy=1, workers=2,
                   counts=StepCounts(processed + 1, processed, processed, 1)),
        StepStatus("SINK", state="waiting", queue=0, queue_limit=-1, counts=StepCounts()),
    ])


def test_progress_line() -> None:
    config = load_config(document("x"))
    assert progress_line(config, status(), {"SOURCE": 4.0, "STAGE": 3.25}) == (
        "running 2.5 s: SOURCE processed=9 failed=0 queue=- busy=0/1 rate=4.0/s | "
        "STAGE processed=7 failed=1 queue=3/8 busy=1/2 rate=3.2/s | "
        "SINK processed=0 failed=0 queue=0 busy=0/1 rate=0.0/s"
    )


def test_log_progress_every_interval(caplog: pytest.LogCaptureFixture) -> None:
    config = load_config(document("x"))
    progress = LogProgress(config, interval=5.0, start=100.0)
    with caplog.at_level(logging.INFO, logger="pipeline.progress"):
        for now in (100.0, 104.9, 105.0, 107.0, 109.9, 110.0):
            progress.update(status(processed=int(now)), {}, now)
    assert [r.getMessage().split(" | ")[1] for r in caplog.records] == [
        "STAGE processed=105 failed=1 queue=3/8 busy=1/2 rate=0.0/s",
        "STAGE processed=110 failed=1 queue=3/8 busy=1/2 rate=0.0/s",
    ]


def test_terminal_progress_redraws_in_place() -> None:
    config = load_config(document("x"))
    out = io.StringIO()
    display = TerminalProgress(config, Console(file=out, force_terminal=True, width=100, color_system=None))
    display.update(status(processed=11), {"STAGE": 12.5}, 0.0)
    display.update(status(processed=22), {}, 0.1)  # too soon: not drawn
    display.update(status(processed=33), {}, 0.3)
    display.close()
    text = out.getvalue()
    assert "PROCESSED" in text and "12.5" in text and "3/8" in text and "1/2" in text
    assert " 11 " in text and " 33 " in text and " 22 " not in text
    assert "\x1b[1;" in text and text.endswith("\x1b[J\x1b[r\x1b8")  # drawn below a scrolling region; at the end
    # erased and the whole terminal given back


def test_make_progress_follows_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    config = load_config(document("x"))
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    assert isinstance(make_progress(config, 5.0, 0.0), LogProgress)
    monkeypatch.setattr(sys, "stderr", Terminal())
    display = make_progress(config, 5.0, 0.0)
    display.close()
    assert isinstance(display, TerminalProgress)


def test_of_two_runs_of_one_process_on_a_terminal_one_draws_its_table(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two Pipeline.run()s in threads of one process drew their tables in the same last lines, over each other in
    turns: the later run shows its progress in log lines, and a run after the first one's end draws its table."""
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    config = load_config(document("x"))
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.setattr(sys, "stderr", Terminal())
    first, second = make_progress(config, 5.0, 0.0), make_progress(config, 5.0, 0.0)
    first.close()
    third = make_progress(config, 5.0, 0.0)
    third.close()
    assert [type(display) for display in (first, second, third)] == [TerminalProgress, LogProgress, TerminalProgress]


def test_a_stderr_without_isatty_gets_the_progress_log_lines(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    """A notebook's stand-in for sys.stderr may have write() and flush() only: a traceback, and no progress shown."""
    class Writer:
        def __init__(self) -> None:
            self.text = ""

        def write(self, text: str) -> int:
            self.text += text
            return len(text)

        def flush(self) -> None:
            pass

    writer = Writer()
    monkeypatch.setattr(sys, "stderr", writer)
    report = Pipeline.from_config(chain_config(str(tmp_path / "out.jsonl")), {"Pipeline": {"gui": False}}).run()
    assert report.exit_status == 0
    assert "Traceback" not in writer.text
    assert not [record for record in caplog.records if "progress" in record.getMessage()], caplog.text


def test_a_dumb_terminal_gets_the_progress_log_lines(tmp_path: Path) -> None:
    """On TERM=dumb rich's live table draws nothing: a run on such a terminal showed no progress at all."""
    config = write_config(tmp_path, {"version": 1, "Pipeline": {
        "producer_conf": {"name": "COUNT", "module": "algorithms.basic", "class": "Counter", "next_steps": "SLOW"},
        "consumer_conf": {"name": "SLOW", "module": "tests.failure_steps", "class": "FailEvery"}},
        "Counter": {"count": 20}, "FailEvery": {"delay": 0.05}})
    run = run_on_terminal(f"--config={config}", "--Pipeline.gui=False", "--Pipeline.progress_interval=0.2",
                          term="dumb")
    text = run.output.decode()
    assert run.returncode == 0, text
    assert "INFO pipeline.progress: " in text and "SLOW processed=" in text
    assert "\x1b[" not in text  # no escape sequence: a dumb terminal prints them as they are


def test_monitor_drives_the_terminal_display(monkeypatch: pytest.MonkeyPatch) -> None:
    """The monitor's thread draws the display while the run goes on and takes it down at the end."""
    tag = uuid.uuid4().hex
    config = load_config(document(tag, count=5))
    reached, opened = gate(tag)
    drawn = threading.Event()
    original = TerminalProgress.update

    def update(self: TerminalProgress, *args: Any) -> None:
        original(self, *args)
        if reached.is_set():
            drawn.set()

    monkeypatch.setattr(TerminalProgress, "update", update)
    opener = threading.Thread(target=lambda: drawn.wait(WAIT) and opened.set())
    opener.start()
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=100, color_system=None)
    runner = SequentialRunner(config)
    with Monitor(config, runner, MonitorSettings(progress=True), console=console) as monitor:
        report = monitor.close(runner.run())
    opener.join(WAIT)
    assert drawn.is_set() and report["SINK"].processed == 4
    text = out.getvalue()
    assert all(name in text for name in ("SOURCE", "STAGE", "SINK", "PROCESSED", "RATE/S"))
    assert text.endswith("\x1b[J\x1b[r\x1b8")  # transient: erased before the summary, the whole terminal given back


def test_rates_over_a_recent_window() -> None:
    rates = Rates()
    assert rates.add(status(processed=0), 10.0)["STAGE"] == 0.0
    assert rates.add(status(processed=50), 10.5)["STAGE"] == 100.0
    assert rates.add(status(processed=100), 11.0)["STAGE"] == 100.0
    assert rates.add(status(processed=100), 14.0)["STAGE"] == 0.0  # the old samples left the window


def test_json_has_no_nan_or_infinity() -> None:
    frames = encode({"topic": "status", "values": [float("nan"), 1.5, {"x": float("inf")}]})
    assert frames[0] == b"status"
    assert json.loads(frames[1]) == {"topic": "status", "values": [None, 1.5, {"x": None}]}


def test_summary_table() -> None:
    steps = {
        "READ": StepReport("READ", StepCounts(0, 1000, 1000, 0), busy_time=0.05, max_time=0.002),
        "CALIBRATE": StepReport("CALIBRATE", StepCounts(1000, 998, 998, 2), first_error="ValueError: bad",
                                busy_time=12.5, max_time=0.25),
        "WRITE": StepReport("WRITE", StepCounts(998, 0, 0, 0)),
    }
    report = RunReport(steps, exit_status=1, stop_reason="too many", wall_time=4.0)
    assert report.table() == "\n".join([
        "wall time 4.00 s, run failed",
        "STEP       RECEIVED  PROCESSED  EMITTED  FAILED  MEAN_MS  MAX_MS  MSG/S",
        "READ              0       1000     1000       0    0.050    2.00    250",
        "CALIBRATE      1000        998      998       2     12.5     250    250",
        "WRITE           998          0        0       0        -       -      0",
        "CALIBRATE: first error: ValueError: bad",
        "stopped: too many",
        "998 messages were sent but never processed",
        "exit status 1",
    ])
    assert [RunReport({}, status).state for status in (0, 1, 2, 130, 143)] == \
        ["finished", "failed", "failed", "interrupted", "interrupted"]


def test_the_summary_table_lines_up_wide_characters() -> None:
    """A step named in CJK, or with an emoji, takes two columns a character: padded by characters, its row stood
    out of the table by as many columns."""
    steps = {name: StepReport(name, StepCounts(5, 5, 5, 0)) for name in ("READ", "日本語", "🚀")}
    lines = RunReport(steps, wall_time=1.0).table().splitlines()[1:5]
    assert {cell_len(line) for line in lines} == {cell_len(lines[0])}
    assert [cell_len(line.split("  ")[0]) for line in lines[1:]] == [4, 6, 2]


def test_the_protocol_doc_examples_are_valid_messages() -> None:
    """Each JSON example of docs/protocol.md is a valid message, one per topic."""
    text = (ROOT / "docs" / "protocol.md").read_text(encoding="utf-8")
    examples = [json.loads(block) for block in re.findall(r"```json\n(.*?)```", text, re.DOTALL)]
    for example in examples:
        VALIDATOR.validate(example)
    assert [example["topic"] for example in examples] == ["graph", "status", "error", "finish"]
