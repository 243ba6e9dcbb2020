"""Worker processes and remote workers in the monitor: parsed within caps whatever a peer sends, shown
in the table (BUSY, WORKERS ``2p+1r``, REDELIVERED), in the graph's boxes (the mix, a mark when worker
processes died) and on hover (each worker process with its pid, host, key, threads and heartbeat)."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QApplication

from gui import theme
from gui.model import Runs, StepView
from gui.protocol import (
    MAX_NAME,
    MAX_SILENCE,
    MAX_THREADS,
    MAX_WORKER_PROCESSES,
    WORKER_KINDS,
    ProtocolError,
    StatusMessage,
    WorkerProcessInfo,
    parse,
)
from gui.widgets import workers
from gui.widgets.graph import StepBox
from gui.widgets.run_view import PLOT_MIN
from gui.widgets.table import COLUMNS, PROCESS_COLUMNS
from gui.window import MainWindow
from tests.gui_helpers import load_recording
from tests.qt_helpers import PaintCounter, run_loop_for_ticks

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

RUN_ID = "c" * 32
LOCAL = [{"slot": 0, "kind": "process", "pid": 1234, "host": "", "key": "", "threads": 1, "silent": 0.3},
         {"slot": 1, "kind": "process", "pid": 1240, "host": "", "key": "", "threads": 1, "silent": 2.7}]
REMOTE = {"slot": 2, "kind": "remote", "pid": 77, "host": "10.0.0.7", "key": "node7", "threads": 2, "silent": 0.1}


def frames(topic: str, **fields: Any) -> list[bytes]:
    body = {"protocol": 1, "topic": topic, "run_id": RUN_ID, "pipeline": "cluster", "config": "cluster.json",
            "host": "head", "pid": 42, "time": 1.0, "serial": 1, **fields}
    return [topic.encode(), json.dumps(body).encode()]


def status_step(name: str, workers: int = 1, **extra: Any) -> dict[str, Any]:
    return {"name": name, "state": "running", "queue": 3, "queue_limit": 64, "busy": 1, "workers": workers,
            "received": 100, "processed": 90, "emitted": 90, "failed": 0, "rate": 10.0, "mean_time": 0.01, **extra}


def hillas(**extra: Any) -> dict[str, Any]:
    """HILLAS: nb_process 2, and a remote worker of 2 threads joined; worker process 1240 is late."""
    values = {"processes": 2, "redelivered": 3, "restarts": 1, "worker_processes": [*LOCAL, REMOTE]}
    return status_step("HILLAS", workers=4, **{**values, **extra})


def run_messages(*, finish: bool = False, hillas_workers: int = 2) -> list[list[bytes]]:
    """READ (threads) -> HILLAS (2 worker processes and a remote worker; its config's ``hillas_workers``) -> WRITE;
    finished if asked."""
    graph = [{"name": name, "class": name.title(), "module": "steps", "kind": kind, "next_steps": targets,
              "workers": count, "queue_limit": 64}
             for name, kind, targets, count in (("READ", "producer", ["HILLAS"], 1),
                                                ("HILLAS", "stager", ["WRITE"], hillas_workers),
                                                ("WRITE", "consumer", [], 1))]
    messages = [frames("graph", steps=graph),
                frames("status", state="running", elapsed=2.0, dropped=0,
                       steps=[status_step("READ"), hillas(), status_step("WRITE")])]
    if finish:
        report_steps = {name: {"name": name, "counts": {"received": 100, "processed": 100, "emitted": 100, "failed": 0},
                               "first_error": None, "fatal": False, "busy_time": 1.0, "max_time": 0.1,
                               "mean_time": 0.01, "redelivered": 5 if name == "HILLAS" else 0,
                               "restarts": 2 if name == "HILLAS" else 0}
                        for name in ("READ", "HILLAS", "WRITE")}
        messages.append(frames("finish", state="finished", exit_status=0, report={
            "exit_status": 0, "state": "finished", "stop_reason": None, "stuck": [], "unprocessed": 0,
            "wall_time": 3.0, "steps": report_steps}))
    return messages


def parsed_hillas(**extra: Any) -> Any:
    message = parse(frames("status", state="running", elapsed=1.0, dropped=0, steps=[hillas(**extra)]))
    assert isinstance(message, StatusMessage)
    return message.steps[0]


# -- parsing -------------------------------------------------------------------------------


def test_a_status_with_worker_processes_parses() -> None:
    step = parsed_hillas()
    assert (step.processes, step.redelivered, step.restarts) == (2, 3, 1)
    assert step.worker_processes == (WorkerProcessInfo(0, "process", 1234, "", "", 1, 0.3),
                                     WorkerProcessInfo(1, "process", 1240, "", "", 1, 2.7),
                                     WorkerProcessInfo(2, "remote", 77, "10.0.0.7", "node7", 2, 0.1))


def test_an_older_runs_status_without_them_still_parses() -> None:
    statuses = [parse(m) for m in load_recording() if m[0] == b"status"]
    assert statuses and all(isinstance(s, StatusMessage) for s in statuses)
    for step in (step for status in statuses for step in status.steps):  # type: ignore[union-attr]
        assert (step.processes, step.redelivered, step.restarts, step.worker_processes) == (0, 0, 0, ())
    bare = {key: value for key, value in hillas().items()
            if key not in ("processes", "redelivered", "restarts", "worker_processes")}
    message = parse(frames("status", state="running", elapsed=1.0, dropped=0, steps=[bare]))
    assert message.steps[0].worker_processes == ()  # type: ignore[union-attr]
    assert parsed_hillas(worker_processes=None).worker_processes == ()  # null: none listed


@pytest.mark.parametrize(("extra", "problem"), [
    ({"worker_processes": {"slot": 0}}, "worker_processes: expected a list"),
    ({"worker_processes": ["process"]}, "worker_processes[0]: expected a JSON object"),
    ({"worker_processes": [{**REMOTE, "kind": "thread"}]}, "kind: 'thread' is not one of process, remote"),
    ({"worker_processes": [{**REMOTE, "host": "h" * (MAX_NAME + 1)}]}, f"host: longer than {MAX_NAME} characters"),
    ({"worker_processes": [{**REMOTE, "key": "k" * (MAX_NAME + 1)}]}, f"key: longer than {MAX_NAME} characters"),
    ({"worker_processes": [{**REMOTE, "pid": "77"}]}, "pid: expected int"),
    ({"worker_processes": [{**REMOTE, "pid": 2**70}]}, "pid: an integer beyond 64 bits"),
    ({"worker_processes": [{**REMOTE, "silent": "late"}]}, "silent: expected float"),
    ({"worker_processes": [{key: v for key, v in REMOTE.items() if key != "threads"}]}, "threads: missing"),
    ({"worker_processes": [REMOTE] * (MAX_WORKER_PROCESSES + 1)}, f"more than {MAX_WORKER_PROCESSES} items"),
    ({"redelivered": 2**64}, "redelivered: an integer beyond 64 bits"),
    ({"restarts": True}, "restarts: expected int"),
])
def test_a_hostile_worker_list_is_a_protocol_error(extra: dict[str, Any], problem: str) -> None:
    with pytest.raises(ProtocolError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        parsed_hillas(**extra)


def test_numbers_a_display_adds_up_are_clamped() -> None:
    hostile = [{**REMOTE, "threads": 10**15, "silent": 1e300}, {**REMOTE, "threads": -4, "silent": -2.0}]
    first, second = parsed_hillas(worker_processes=hostile).worker_processes
    assert (first.threads, first.silent) == (MAX_THREADS, MAX_SILENCE)
    assert (second.threads, second.silent) == (1, 0.0)


_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
                    st.text(max_size=MAX_NAME + 20), st.lists(st.integers(), max_size=2))


@settings(max_examples=150, deadline=None)
@given(entries=st.lists(st.fixed_dictionaries({}, optional={
    "slot": _VALUES, "kind": st.sampled_from([*WORKER_KINDS, "thread"]) | _VALUES, "pid": _VALUES, "host": _VALUES,
    "key": _VALUES, "threads": _VALUES, "silent": _VALUES}), max_size=5))
def test_fuzzed_worker_lists_parse_within_their_caps_or_not_at_all(entries: list[dict[str, Any]]) -> None:
    try:
        step = parsed_hillas(worker_processes=entries)
    except ProtocolError:
        return
    for worker in step.worker_processes:
        assert worker.kind in WORKER_KINDS and len(worker.host) <= MAX_NAME and len(worker.key) <= MAX_NAME
        assert 1 <= worker.threads <= MAX_THREADS and 0.0 <= worker.silent <= MAX_SILENCE
        assert worker.pid is None or abs(worker.pid) < 2**63
    hover = workers.hover(StepView("HILLAS", progress=step))  # made of what it holds, escaped
    assert "<script" not in hover and hover.count("<tr>") == len(step.worker_processes)


# -- the model -----------------------------------------------------------------------------


def test_the_finish_takes_the_reports_counts_and_ends_the_worker_processes() -> None:
    runs = Runs()
    for message in run_messages(finish=True)[:-1]:
        runs.apply(parse(message))
    view = runs[RUN_ID].steps["HILLAS"]
    assert workers.mix_text(view) == "2p+1r" and workers.late(view)
    runs.apply(parse(run_messages(finish=True)[-1]))
    progress = view.progress
    assert progress is not None and progress.worker_processes == ()
    assert (progress.redelivered, progress.restarts) == (5, 2)
    assert workers.mix_text(view) == "0p" and not workers.late(view)  # its config had worker processes
    assert workers.marks(view)[0] == "\u21bb 5 redelivered, 2 restarts"


def test_a_step_of_remote_workers_only_has_no_thread_of_the_run_after_the_finish() -> None:
    # Found from the desktop (tests/test_slurm.py): the finish ended the remote workers but kept their
    # threads in the step's count of workers, so a step served only by a SLURM job read "2t" afterwards.
    # Then it read "0" where a step of worker processes reads "0p": now "0r".
    messages = run_messages(finish=True, hillas_workers=0)  # nb_thread 0: remote workers only
    messages[1] = frames("status", state="running", elapsed=2.0, dropped=0, steps=[
        status_step("READ"), status_step("HILLAS", workers=2, processes=0, worker_processes=[REMOTE]),
        status_step("WRITE")])
    runs = Runs()
    for message in messages[:-1]:
        runs.apply(parse(message))
    view = runs[RUN_ID].steps["HILLAS"]
    assert workers.mix_text(view) == "1r"
    runs.apply(parse(messages[-1]))
    shown = workers.mix(view)
    assert shown is not None and (shown.threads, shown.remote) == (0, 0)
    assert workers.mix_text(view) == "0r"


# -- the window ----------------------------------------------------------------------------


def shown_run(window: MainWindow, messages: list[list[bytes]]) -> Any:
    for message in messages:
        window.receiver.handle(message, None)
    window.redraw()
    return window.view(RUN_ID)


def test_the_table_shows_the_mix_the_redeliveries_and_each_worker_process_on_hover(window: MainWindow) -> None:
    view = shown_run(window, run_messages())
    model = view.table.steps
    rows = [dict(zip(COLUMNS, [model.index(r, c).data() for c in range(len(COLUMNS))], strict=True))
            for r in range(model.rowCount())]
    assert [(row["BUSY"], row["WORKERS"], row["REDELIVERED"]) for row in rows] == [
        ("1/1", "1t", "0"), ("1/4", "2p+1r", "3"), ("1/1", "1t", "0")]
    assert not any(view.table.isColumnHidden(COLUMNS.index(name)) for name in PROCESS_COLUMNS)
    amber = theme.STATE_COLOURS["draining"]
    for name in ("WORKERS", "REDELIVERED"):  # a late heartbeat and a restart; a redelivery
        assert model.index(1, COLUMNS.index(name)).data(Qt.ItemDataRole.ForegroundRole) == amber
        assert model.index(0, COLUMNS.index(name)).data(Qt.ItemDataRole.ForegroundRole) == theme.TEXT
    hover = model.index(1, COLUMNS.index("WORKERS")).data(Qt.ItemDataRole.ToolTipRole)
    assert hover.startswith("<qt><b>HILLAS</b>: 2 worker processes, 1 remote worker<br>")
    assert "3 redelivered, 1 restart" in hover
    rows_shown = hover.split("<tr>")[1:]
    assert "<td>process</td><td>this host</td><td>pid 1234</td><td>1 thread</td><td>heartbeat 0.3 s ago</td>" \
        in rows_shown[0]
    assert f"<span style='color: {amber.name()}'><b>heartbeat 2.7 s ago</b></span>" in rows_shown[1]  # late
    assert "<td>remote</td><td>node7 on 10.0.0.7</td><td>pid 77</td><td>2 threads</td>" in rows_shown[2]
    assert model.index(0, COLUMNS.index("WORKERS")).data(Qt.ItemDataRole.ToolTipRole) is None  # threads: no list


def test_a_run_of_threads_keeps_its_narrow_table(window: MainWindow) -> None:
    stream = load_recording()
    for message in stream:
        window.receiver.handle(message, None)
    window.redraw()
    table = window.view(json.loads(stream[0][1])["run_id"]).table
    assert all(table.isColumnHidden(COLUMNS.index(name)) for name in PROCESS_COLUMNS)


def test_the_graph_box_shows_the_mix_a_mark_and_the_workers_on_hover(window: MainWindow) -> None:
    view = shown_run(window, run_messages())
    box = view.graph.boxes["HILLAS"]
    assert (box.mix, box.late, box.marks) == ("2p+1r", True, ["\u21bb 3 redelivered, 1 restart", "\u21bb 3", "\u21bb"])
    assert box.toolTip().startswith("<qt>HILLAS: steps.Hillas<br><b>HILLAS</b>: 2 worker processes")
    assert "node7 on 10.0.0.7" in box.toolTip()
    plain = view.graph.boxes["READ"]
    assert (plain.mix, plain.marks, plain.toolTip()) == ("", [], "<qt>READ: steps.Read</qt>")
    assert not view.graph.grab().isNull()


def test_the_workers_line_gives_up_the_mix_before_the_mark() -> None:
    box = StepBox(Runs().apply(parse(run_messages()[1])).steps["HILLAS"])  # type: ignore[union-attr]
    width = len  # one pixel a character
    assert box.workers_line("1/4", 100, width) == ("1/4 · 2p+1r", "\u21bb 3 redelivered, 1 restart")
    assert box.workers_line("1/4", 20, width) == ("1/4 · 2p+1r", "\u21bb 3")
    assert box.workers_line("1/4", 12, width) == ("2p+1r", "\u21bb 3")
    assert box.workers_line("1/4", 6, width) == ("", "\u21bb 3")
    assert box.workers_line("1/4", 1, width) == ("", "\u21bb")  # the mark, whatever the room


def test_names_a_peer_sends_are_shown_as_text_never_as_markup(window: MainWindow) -> None:
    messages = run_messages()
    body = json.loads(messages[1][1])
    body["steps"][1]["worker_processes"] = [{**REMOTE, "key": "<img src='x'>", "host": "<b>h</b>"}]
    messages[1] = [b"status", json.dumps(body).encode()]
    view = shown_run(window, messages)
    hover = view.table.steps.index(1, COLUMNS.index("WORKERS")).data(Qt.ItemDataRole.ToolTipRole)
    assert "&lt;img src=&#x27;x&#x27;&gt; on &lt;b&gt;h&lt;/b&gt;" in hover and "<img" not in hover
    assert "<img" not in view.graph.boxes["HILLAS"].toolTip()


def test_an_idle_window_with_a_finished_run_of_processes_repaints_nothing(window: MainWindow) -> None:
    shown_run(window, run_messages(finish=True))
    run_loop_for_ticks(window, 3)
    counter = PaintCounter()
    QApplication.instance().installEventFilter(counter)
    try:
        run_loop_for_ticks(window, 20)
    finally:
        QApplication.instance().removeEventFilter(counter)
    assert counter.paints == 0


def test_the_table_takes_the_width_its_process_columns_need_from_the_plot(qtbot: Any, window: MainWindow) -> None:
    window.resize(1200, 900)  # the table's columns do not fit its share of the width
    view = shown_run(window, run_messages())
    qtbot.waitUntil(lambda: view.middle.width() > 0, timeout=10_000)
    view.size_panels()  # as a redraw or a resize does
    table, plot, _ = view.middle.sizes()
    # All it needs, or all the plot can give (the widths depend on the style the tests run under).
    assert table >= min(view.table.content_width(), table + plot - PLOT_MIN) and plot >= PLOT_MIN
