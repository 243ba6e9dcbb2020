"""The monitor's wire parser, its per-run model, its graph layout and its number formats (no Qt)."""

from __future__ import annotations

import json

import pytest

from gui.layout import columns, grid
from gui.model import History, RunModel, Runs
from gui.protocol import (
    ErrorMessage,
    FinishMessage,
    GraphMessage,
    ProtocolError,
    StatusMessage,
    parse,
)
from pipeline.console import humanize
from tests.gui_helpers import FINAL_COUNTS, load_recording


def frames(kind: str, **fields: object) -> list[bytes]:
    """A message as a run sends it: the envelope, then ``fields``."""
    body = {"protocol": 1, "topic": kind, "run_id": "a" * 32, "pipeline": "demo", "config": "demo.json",
            "host": "node", "pid": 42, "time": 1.0, "seq": 1, **fields}
    return [kind.encode(), json.dumps(body).encode()]


def with_number(field: str, digits: str) -> list[bytes]:
    """A status whose ``field`` is the JSON number ``digits`` (json.dumps writes no integer of over 4,300 digits)."""
    topic, body = frames("status", **{"state": "running", "elapsed": 1.0, "dropped": 0, "steps": [], field: 0})
    return [topic, body.replace(f'"{field}": 0'.encode(), f'"{field}": {digits}'.encode())]


def step_status(name: str, processed: int, rate: float | None = 1.0, state: str = "running") -> dict:
    values = {"name": name, "state": state, "queue": 1, "queue_limit": 64, "busy": 1, "workers": 2,
              "received": processed, "processed": processed, "emitted": processed, "failed": 0,
              "mean_time": 0.001}
    if rate is not None:
        values["rate"] = rate
    return values


def graph_frames(*edges: tuple[str, list[str]]) -> list[bytes]:
    steps = [{"name": name, "class": f"{name.title()}Step", "module": "m", "kind": "stager", "next_steps": targets,
              "workers": 2, "queue_limit": 64} for name, targets in edges]
    return frames("graph", steps=steps)


def recorded_run(stream: list[list[bytes]]) -> RunModel:
    runs = Runs()
    for message in stream:
        runs.apply(parse(message))
    assert len(runs) == 1
    return next(iter(runs.runs.values()))


# The parser.

def test_every_recorded_message_parses() -> None:
    kinds = [type(parse(message)) for message in load_recording()]
    assert kinds[-1] is FinishMessage
    assert {GraphMessage, StatusMessage, ErrorMessage} <= set(kinds)


def test_fields_a_reader_does_not_know_are_ignored() -> None:
    message = parse(frames("error", step="S", worker=1, seq=None, error="E: x", traceback="tb", later_field=[1]))
    assert isinstance(message, ErrorMessage)
    assert (message.step, message.worker, message.seq) == ("S", 1, None)


@pytest.mark.parametrize(
    ("message", "problem"),
    [
        ([b"status"], "expected 2 frames"),
        ([b"status", b"{}", b"extra"], "expected 2 frames"),
        ([b"weather", b"{}"], "unknown topic"),
        ([b"status", b"\xff\xfe not utf-8"], "not JSON"),
        ([b"status", b"{not json"], "not JSON"),
        ([b"status", b"[1, 2]"], "expected a JSON object"),
        (frames("status", state="running", elapsed=1.0, dropped=0), "steps: expected a list"),
        (frames("status", state="exploding", elapsed=1.0, dropped=0, steps=[]), "not one of"),
        (frames("status", state="running", elapsed="soon", dropped=0, steps=[]), "expected float"),
        (frames("status", state="running", elapsed=1.0, dropped=0, steps=[{"name": "S"}]), "state: missing"),
        (frames("error", step="S", worker=True, seq=1, error="E", traceback="tb"), "expected int"),
        (frames("graph", protocol=2, steps=[]), "unsupported protocol version 2"),
        (frames("graph", protocol="1", steps=[]), "protocol: expected int"),
        (frames("graph", run_id=None, steps=[]), "run_id: missing"),
        (frames("graph", topic="status", steps=[]), "the JSON's topic"),
        (frames("graph", steps=[{"name": "S", "class": "C", "module": "m", "kind": "stager", "next_steps": "T",
                                 "workers": 1, "queue_limit": 64}]), "list of strings"),
        (frames("finish", state="finished", exit_status=0, report={"steps": []}), "expected an object"),
        (frames("status", state="running", elapsed=float("nan"), dropped=0, steps=[]), "not a finite number"),
        ([b"status", b"[" * 100_000], "not JSON"),
        (with_number("pid", "9" * 5000), "status.pid: an integer beyond 64 bits"),  # int() refuses over 4,300 digits
        (with_number("elapsed", "-" + "9" * 5000), "status.elapsed: a number beyond 64 bits"),
    ],
)
def test_a_malformed_message_is_a_protocol_error(message: list[bytes], problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem):
        parse(message)


def test_a_peer_s_name_in_a_protocol_error_is_text() -> None:
    """The warning on an ignored message named the step's key as the peer sent it: a terminal escape, and a line
    break that forged a log line of its own."""
    name = "\x1b[2J\nFAKE WARNING gui.receiver: forged"
    with pytest.raises(ProtocolError) as raised:
        parse(frames("finish", state="finished", exit_status=0, report={"steps": {name: 1}}))
    assert str(raised.value).startswith("finish.report.steps.\\x1b[2J\\nFAKE WARNING gui.receiver: forged: ")


# The model, fed the recorded run.

def test_the_recorded_run_ends_with_its_final_counts_and_state() -> None:
    run = recorded_run(load_recording())
    assert (run.state, run.exit_status, run.ended) == ("finished", 0, True)
    assert run.header.pipeline == "recorded"
    assert list(run.steps) == ["COUNT", "CHECK", "WRITE"]
    for name, (received, processed, emitted, failed) in FINAL_COUNTS.items():
        progress = run.steps[name].progress
        assert progress is not None
        assert (progress.received, progress.processed, progress.emitted, progress.failed) == (
            received, processed, emitted, failed)
        # A step whose messages failed ends "failed", as the run reports it, though the run finished.
        assert progress.state == ("failed" if failed else "finished")
        assert (progress.busy, progress.queue) == (0, 0)
    assert run.steps["CHECK"].first_error == "ValueError: bad message 0"
    assert run.steps["CHECK"].progress.mean_time > 0.004  # FailEvery sleeps 5 ms per message


def test_the_recorded_run_keeps_every_error_with_its_traceback() -> None:
    run = recorded_run(load_recording())
    assert run.error_count == 12
    assert sorted(error.seq for error in run.errors) == list(range(0, 600, 50))
    assert all(error.step == "CHECK" and error.error.startswith("ValueError: bad message") for error in run.errors)
    assert all("Traceback (most recent call last)" in error.traceback for error in run.errors)


def test_the_recorded_run_has_the_throughput_of_every_status() -> None:
    stream = load_recording()
    run = recorded_run(stream)
    statuses = [json.loads(body) for topic, body in stream if topic == b"status"]
    for name in FINAL_COUNTS:
        expected = [(s["elapsed"], next(step["rate"] for step in s["steps"] if step["name"] == name))
                    for s in statuses]
        assert run.history[name].points == expected
    assert max(rate for _, rate in run.history["CHECK"].points) > 100  # 2 workers of 5 ms: ~380/s


def test_a_late_graph_still_gives_the_steps_their_place() -> None:
    stream = load_recording()
    graph = next(message for message in stream if message[0] == b"graph")
    run = recorded_run([message for message in stream if message[0] != b"graph"])
    assert run.graph is None
    assert all(view.info is None for view in run.steps.values())
    run.apply(parse(graph))
    assert [info.name for info in run.graph] == ["COUNT", "CHECK", "WRITE"]
    assert run.steps["CHECK"].info.next_steps == ("WRITE",)
    assert run.steps["CHECK"].progress.processed == 588  # the counts stay


def test_the_graph_orders_the_steps_even_after_statuses() -> None:
    run = RunModel(parse(frames("status", state="running", elapsed=1.0, dropped=0, steps=[])).header)
    run.apply(parse(frames("status", state="running", elapsed=1.0, dropped=0,
                           steps=[step_status("B", 1), step_status("A", 2)])))
    run.apply(parse(graph_frames(("A", ["B"]), ("B", []))))
    assert list(run.steps) == ["A", "B"]
    assert run.steps["A"].progress.processed == 2


def test_without_a_rate_the_model_measures_it_from_the_counts() -> None:
    run = recorded_run([frames("status", state="running", elapsed=1.0, dropped=0, steps=[step_status("S", 10, None)]),
                        frames("status", state="running", elapsed=3.0, dropped=3, steps=[step_status("S", 50, None)])])
    assert run.history["S"].points == [(1.0, 0.0), (3.0, 20.0)]
    assert run.steps["S"].rate == 20.0
    assert run.dropped == 3


def test_the_progress_and_eta_come_from_the_declared_total_as_on_the_terminal() -> None:
    counting = {**step_status("COUNT", 3383, rate=1000.0), "total": 8000}
    run = recorded_run([frames("status", state="running", elapsed=4.0, dropped=0,
                               steps=[counting, step_status("WRITE", 3000, rate=1000.0)])])
    total = run.total()
    assert total is not None
    assert str(total) == "COUNT 3383/8000 (42%), ETA 5 s"  # the terminal's words, from the same code
    assert total.text(humanize.count) == "COUNT 3\u2009383/8\u2009000 (42%), ETA 5 s"
    run.apply(parse(frames("finish", state="interrupted", exit_status=130,
                           report={"wall_time": 5.0, "steps": {"COUNT": {"counts": {
                               "received": 0, "processed": 4000, "emitted": 4000, "failed": 0}}}})))
    assert str(run.total()) == "COUNT 4000/8000 (50%)"  # an ended run has no time left
    assert recorded_run(load_recording()).total() is None  # no step declared a total
    with pytest.raises(ProtocolError, match="total: expected int"):
        parse(frames("status", state="running", elapsed=1.0, dropped=0, steps=[{**counting, "total": "8000"}]))


def test_a_status_after_the_finish_does_not_revive_the_run() -> None:
    stream = load_recording()
    late = frames("status", state="running", elapsed=99.0, dropped=0, steps=[step_status("CHECK", 1)])
    late[1] = late[1].replace(b'"' + b"a" * 32 + b'"', json.dumps(json.loads(stream[0][1])["run_id"]).encode())
    run = recorded_run([*stream, late])
    assert run.state == "finished"
    assert run.steps["CHECK"].progress.processed == 588


def test_runs_are_kept_apart_by_run_id_and_a_closed_run_stays_closed() -> None:
    runs = Runs()
    first = runs.apply(parse(graph_frames(("A", []))))
    second_frames = graph_frames(("B", []))
    second_frames[1] = second_frames[1].replace(b"a" * 32, b"b" * 32)
    second = runs.apply(parse(second_frames))
    assert first is not second
    assert len(runs) == 2
    runs.close(first.run_id)
    assert runs.apply(parse(graph_frames(("A", [])))) is None
    assert list(runs.runs) == [second.run_id]


def test_the_silence_since_the_last_message_is_measured_on_the_model_clock() -> None:
    now = [100.0]
    runs = Runs(clock=lambda: now[0])
    run = runs.apply(parse(frames("status", state="running", elapsed=5.0, dropped=0, steps=[])))
    now[0] += 12
    assert run.seconds_since_message() == 12
    assert run.live_elapsed() == 17


def test_a_history_stays_bounded_and_spans_the_whole_run() -> None:
    history = History(capacity=100)
    for second in range(10_000):
        history.add(float(second), 1.0)
    assert len(history.points) < 100
    assert history.points[0][0] == 0.0
    assert history.points[-1][0] > 9_000
    history.add(5.0, 1.0)  # back in time: ignored
    assert history.points[-1][0] > 9_000


# The layout and the number formats.

def test_columns_follow_the_longest_path_from_the_producer() -> None:
    diamond = {"SRC": ["A", "B"], "A": ["C"], "B": ["SINK"], "C": ["SINK"], "SINK": []}
    assert columns(diamond) == {"SRC": 0, "A": 1, "B": 1, "C": 2, "SINK": 3}
    assert grid(diamond) == {"SRC": (0, 0), "A": (1, 0), "B": (1, 1), "C": (2, 0), "SINK": (3, 0)}


def test_columns_ignore_unknown_targets_and_cycles() -> None:
    assert columns({"A": ["B", "ghost"], "B": ["A"]}) == {"A": 0, "B": 0}


@pytest.mark.parametrize(
    ("value", "text"),
    [(humanize.count(1234567), "1\u2009234\u2009567"), (humanize.rate(0), "0"), (humanize.rate(8.46), "8.5/s"),
     (humanize.rate(1234.4), "1234/s"), (humanize.rate(25_300), "25.3k/s"), (humanize.seconds(0), "—"),
     (humanize.seconds(2e-7), "<1 µs"),
     (humanize.seconds(85e-6), "85 µs"), (humanize.seconds(0.0032), "3.2 ms"), (humanize.seconds(1.5), "1.50 s"),
     (humanize.duration(12.7), "13 s"), (humanize.duration(245), "4 min 05 s"),
     (humanize.duration(7620), "2 h 07 min")],
)
def test_numbers_read_at_a_glance(value: str, text: str) -> None:
    assert value == text


@pytest.mark.parametrize(("sent", "kept"), [(5e-324, 0.0), (1e-310, 0.0), (1.7e308, humanize.MAX_RATE),
                                            (-3.0, 0.0), (12.5, 12.5)])
def test_a_rate_a_peer_sends_is_kept_within_what_the_monitor_shows(sent: float, kept: float) -> None:
    """A rate of 5e-324 or 1.7e308 once broke the throughput plot on every paint."""
    run = recorded_run([frames("status", state="running", elapsed=1.0, dropped=0, steps=[step_status("S", 1, sent)])])
    assert run.steps["S"].rate == kept
    assert run.history["S"].points == [(1.0, kept)]


def test_a_rate_measured_over_a_tiny_time_step_is_clamped() -> None:
    run = recorded_run([frames("status", state="running", elapsed=1.0, dropped=0, steps=[step_status("S", 0, None)]),
                        frames("status", state="running", elapsed=1.0 + 1e-15, dropped=0,
                               steps=[step_status("S", 2**62, None)])])
    assert run.steps["S"].rate == humanize.MAX_RATE
