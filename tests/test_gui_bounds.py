"""The monitor stays light and bounded: an idle window repaints nothing and uses almost no CPU; malformed,
huge and churning messages (fuzzed, and through a real socket) leave it within its caps, its memory
bounded and its event loop responsive; any pipeline from 3 to 50 steps reads well."""

from __future__ import annotations

import itertools
import json
import logging
import os
import select
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PySide6.QtCore import QEvent, QTimer
from PySide6.QtWidgets import QApplication, QGraphicsTextItem, QWidget

from gui import receiver, theme
from gui.model import FIRST_ERRORS, LAST_ERRORS, MAX_CLOSED, MAX_POINTS, MAX_RUNS
from gui.protocol import MAX_NAME, MAX_STEPS, MAX_TRACEBACK, StatusMessage, parse
from gui.widgets.graph import MAX_ARROWS, MIN_FONT_PT, MIN_SCALE, SMALLEST_FONT_PT
from gui.widgets.plot import MAX_TICKS, time_step
from gui.widgets.run_view import RunView
from gui.window import REDRAW_MS, MainWindow
from pipeline import Pipeline, auth
from pipeline.auth.curve import HANDSHAKE_SECONDS
from pipeline.config.traits import MAX_STEP_NAME_CHARS
from pipeline.console import humanize
from pipeline.engine.wire import MAX_REASON_CHARS
from pipeline.monitor import credentials
from pipeline.monitor.publisher import HANDSHAKE_WAIT_MS
from tests.bare_flood import CONNECTIONS, bare_flood
from tests.cli_helpers import ROOT
from tests.gui_helpers import Sender, load_recording, with_run_id
from tests.monitor_steps import gate
from tests.qt_helpers import WAIT_MS, PaintCounter, run_loop_for_ticks

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

def test_an_idle_window_repaints_nothing_and_uses_no_cpu(qtbot, window: MainWindow) -> None:
    stream = load_recording()
    with Sender(window) as sender:
        sender.send(qtbot, stream)
        sender.send(qtbot, with_run_id(stream, "b" * 32))
        qtbot.waitUntil(lambda: len(window.runs) == 2 and all(r.ended for r in window.runs.runs.values()),
                        timeout=WAIT_MS)
    run_loop_for_ticks(window, 5)  # the last redraws of what arrived
    counter = PaintCounter()
    QApplication.instance().installEventFilter(counter)
    try:
        cpu = time.process_time()
        seconds = run_loop_for_ticks(window, 1000 // REDRAW_MS * 2)  # two seconds of redraw ticks
        cpu = time.process_time() - cpu
        idle_paints = counter.paints
        window.on_message(parse(with_run_id(stream[:1], "c" * 32)[0]))  # a control: a new run does repaint
        run_loop_for_ticks(window, 2)
    finally:
        QApplication.instance().removeEventFilter(counter)
    assert idle_paints == 0
    assert counter.paints > 0
    assert cpu / seconds < 0.02, f"{cpu:.3f} s of CPU in {seconds:.1f} idle seconds"


# --------------------------------------------------------------------------- fuzzing

_BASES = {topic: json.loads(body) for topic, body in reversed(load_recording())}
_NUMBERS = st.one_of(st.integers(min_value=-(2**70), max_value=2**70), st.floats(allow_nan=False),
                     st.just(10**400), st.just(-1))
_JUNK = st.recursive(
    st.one_of(st.none(), st.booleans(), _NUMBERS, st.text(max_size=30)),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
_NAMES = st.one_of(st.sampled_from(["READER", "CALIB", "WRITER"]), st.text(min_size=1, max_size=12),
                   st.text(min_size=190, max_size=260))


@st.composite
def messages(draw: Any) -> list[bytes]:
    """A message as a hostile or broken peer might send it: a real one, mutated."""
    topic = draw(st.sampled_from(sorted(_BASES)))
    document = json.loads(json.dumps(_BASES[topic]))
    document["run_id"] = draw(st.sampled_from(["r1", "r2"]) | st.text(min_size=1, max_size=40))
    if "steps" in document and isinstance(document["steps"], list) and draw(st.booleans()):
        template = document["steps"][0]
        count = draw(st.integers(0, MAX_STEPS + 60))
        document["steps"] = [{**template, "name": f"{draw(_NAMES)}{i}", "next_steps": []} for i in range(count)]
    if topic == b"error" and draw(st.booleans()):
        document["traceback"] = "x" * draw(st.integers(0, 200_000))
    for _ in range(draw(st.integers(0, 3))):
        document[draw(st.sampled_from(sorted(document)))] = draw(_JUNK)
    if draw(st.integers(0, 9)) == 0:
        return [topic, draw(st.binary(max_size=200))]
    return [topic, json.dumps(document).encode()]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                HealthCheck.too_slow, HealthCheck.data_too_large])
@given(batch=st.lists(messages(), min_size=1, max_size=30))
def test_fuzzed_messages_leave_the_window_within_its_caps(window: MainWindow, batch: list[list[bytes]]) -> None:
    for frames in batch:
        window.receiver.handle(frames, None)
    start = time.monotonic()
    window.redraw()
    assert time.monotonic() - start < 2.0
    runs = window.runs
    assert len(runs) <= MAX_RUNS and len(runs.closed) <= MAX_CLOSED
    assert set(window.views) == set(runs.runs)
    for run in runs.runs.values():
        assert len(run.steps) <= MAX_STEPS
        assert len(run.errors) <= FIRST_ERRORS + LAST_ERRORS
        assert all(len(error.traceback) <= MAX_TRACEBACK for error in run.errors)
        assert all(len(history.times) <= MAX_POINTS for history in run.history.values())


# --------------------------------------------------------------------------- churn through a socket


def _rss() -> int:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def churn() -> list[list[bytes]]:
    """What froze or grew the window before it had caps: fake runs, step-name churn, huge numbers."""
    graph, status = _BASES[b"graph"], _BASES[b"status"]
    out = []
    for i in range(3000):  # fake runs, each with its own id
        out.append([b"graph", json.dumps({**graph, "run_id": f"fake{i}"}).encode()])
    steps = status["steps"]
    for i in range(300):  # a run whose steps get new names in every status
        names = [{**steps[0], "name": f"S{i}-{j}"} for j in range(150)]
        out.append([b"status", json.dumps({**status, "run_id": "churn", "steps": names}).encode()])
    out.append([b"status", json.dumps({**status, "run_id": "big", "steps": [{**steps[0], "processed": 10**30}]})
                .encode()])
    error = _BASES[b"error"]
    for i in range(200):  # big tracebacks
        out.append([b"error", json.dumps({**error, "run_id": f"fake{i % 3}", "traceback": "t" * 500_000}).encode()])
    return out


def test_churn_through_a_socket_keeps_the_window_responsive_and_bounded(qtbot, window: MainWindow) -> None:
    longest = [0.0]
    last = [time.monotonic()]

    def beat() -> None:
        now = time.monotonic()
        longest[0] = max(longest[0], now - last[0])
        last[0] = now

    heart = QTimer(interval=10)
    heart.timeout.connect(beat)
    flood = churn()
    before = _rss()
    with Sender(window) as sender:
        sender.send(qtbot, flood[:1])
        heart.start()
        last[0] = time.monotonic()
        sender.send(qtbot, flood)
        qtbot.waitUntil(lambda: window.receiver.count + window.receiver.ignored >= len(flood), timeout=WAIT_MS * 3)
    heart.stop()
    grown = _rss() - before
    assert len(window.runs) <= MAX_RUNS
    # A quadratic layout froze it for 20-80 s; 2 s leaves room for a machine busy with other tests.
    assert longest[0] < 2.0, f"the event loop stalled for {longest[0]:.2f} s"
    assert grown < 200 * 2**20, f"the window grew by {grown / 2**20:.0f} MiB"
    assert window.receiver.ignored > 0  # the messages over a cap were dropped and counted


def _play_runs(qtbot, window: MainWindow, count: int) -> None:
    """Send ``count`` runs of the recording, each under a run id of its own and from a connection of its own (as
    runs one after another do), and wait until the window took in each one's end."""
    stream = load_recording()
    for _ in range(count):
        run_id = uuid.uuid4().hex
        with Sender(window) as sender:
            sender.send(qtbot, with_run_id(stream, run_id))
            qtbot.waitUntil(lambda run_id=run_id: run_id in window.runs.runs and window.runs[run_id].ended,
                            timeout=WAIT_MS)


def _widgets_once_closed_tabs_are_gone(qtbot, window: MainWindow) -> int:
    """The window's live widgets, once the views of the tabs closed are deleted (deleteLater)."""
    QApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete.value)
    qtbot.waitUntil(lambda: len(window.findChildren(RunView)) == window.tabs.count(), timeout=WAIT_MS)
    return len(window.findChildren(QWidget))


def test_a_night_of_short_runs_leaves_as_many_widgets_as_the_tabs_kept(qtbot, window: MainWindow) -> None:
    # Each tab opened left a widget behind (Qt's close button, hidden by ours): a window seeing short runs all night
    # grew by about 11 KiB a run, for good.
    _play_runs(qtbot, window, MAX_RUNS)
    full = _widgets_once_closed_tabs_are_gone(qtbot, window)
    _play_runs(qtbot, window, MAX_RUNS)
    assert window.tabs.count() == MAX_RUNS
    left = _widgets_once_closed_tabs_are_gone(qtbot, window) - full
    assert left == 0, f"{left} widgets left behind by {MAX_RUNS} runs whose tabs closed"


# --------------------------------------------------------------------------- a flood of connections


@pytest.mark.parametrize("mode", ["plaintext", "curve"])
def test_a_flood_of_big_messages_from_several_connections_leaves_the_window_bounded(request, qtbot,
                                                                                    mode: str) -> None:
    # libzmq queued 1,000 messages per connection for reading: a GiB of 1 MiB messages each, which came faster
    # than the window parses them.
    window = request.getfixturevalue("window" if mode == "plaintext" else "secure_window")
    before = _rss()
    flood = subprocess.Popen([sys.executable, "-m", "tests.flood_peer", window.address, "3", "3",
                              *(["curve"] if mode == "curve" else [])],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                             cwd=Path(__file__).parent.parent)
    grown = 0

    def flooded() -> bool:
        nonlocal grown
        grown = max(grown, _rss() - before)
        return bool(select.select([flood.stdout], [], [], 0)[0])

    try:
        qtbot.waitUntil(flooded, timeout=WAIT_MS)  # the window reads (and parses) all along, as it would
        sent = int(flood.stdout.readline())
    finally:
        flood.kill()
        flood.communicate(timeout=WAIT_MS / 1000)
    assert sent > 0
    assert window.receiver.count + window.receiver.ignored > 0  # the flood was heard
    bound = 3 * (receiver.RECEIVE_HWM + 1) * receiver.MAX_FRAME_SIZE
    assert grown < bound + 32 * 2**20, f"the window grew by {grown / 2**20:.0f} MiB for 3 connections"


def _peer(context: zmq.Context, address: str, curve: bool) -> zmq.Socket:
    """A run's socket to the monitor at ``address`` (with the user's own key pair if ``curve``)."""
    socket = context.socket(zmq.PUB)
    socket.linger = 0
    if curve:
        own = auth.ensure_own_key_pair()
        auth.secure_client(socket, own, own.public)
    socket.connect(address)
    return socket


@pytest.mark.parametrize("curve", [False, True], ids=["plaintext", "curve"])
def test_connections_beyond_the_cap_are_turned_away_and_later_ones_get_in(qtbot, monkeypatch, curve: bool) -> None:
    monkeypatch.setattr(receiver, "MAX_CONNECTIONS", 4)
    own = auth.ensure_own_key_pair()
    window = MainWindow("127.0.0.1", 0, auth.ServerKeys(own, {own.public: own.name}) if curve else None)
    qtbot.addWidget(window)
    context = zmq.Context()
    try:
        crowd = [_peer(context, window.address, curve) for _ in range(6)]
        # The two beyond the four are turned away (and try again, turned away each time while the four stay).
        qtbot.waitUntil(lambda: window.receiver.refusals.counts["too many connections"] >= 2, timeout=WAIT_MS)
        assert "too many connections" in window.receiver.refusals.text()
        for socket in crowd:
            socket.close()
        # Once the crowd closed, a run that comes gets in.
        qtbot.waitUntil(lambda: window.receiver.connections.count == 0, timeout=WAIT_MS)
        late = _peer(context, window.address, curve)
        probe = with_run_id(load_recording()[:1], "d" * 32)[0]

        def heard() -> bool:
            late.send_multipart(probe)
            return window.receiver.count > 0

        qtbot.waitUntil(heard, timeout=WAIT_MS)  # once the crowd left, a run gets in
        late.close()
    finally:
        context.destroy(linger=0)
        window.shutdown()


class GatedRun:
    """A real run in a thread, publishing to ``address`` with the user's own keys; its producer waits after its
    first message until :meth:`finish`. ``said`` holds the monitor's warnings (from the run's threads)."""

    def __init__(self, address: str) -> None:
        self.tag = uuid.uuid4().hex
        self.said: list[str] = []
        self.handler = logging.Handler(logging.WARNING)
        self.handler.emit = lambda record: self.said.append(record.getMessage())  # type: ignore[method-assign]
        logging.getLogger("pipeline.monitor").addHandler(self.handler)
        document = {"Pipeline": {
            "producer_conf": {"name": "SOURCE", "module": "tests.monitor_steps", "class": "GatedCounter",
                              "next_steps": "SINK"},
            "consumer_conf": {"name": "SINK", "module": "algorithms.basic", "class": "PassThrough"}},
            "GatedCounter": {"count": 3, "before": 1, "tag": self.tag}}
        self.pipeline = Pipeline.from_config(document, {"Pipeline": {"progress": False, "gui_address": address}})
        self.report: Any = None
        self.thread = threading.Thread(target=self._run, name="gated-run")
        self.thread.start()

    def _run(self) -> None:
        self.report = self.pipeline.run()

    def finish(self) -> Any:
        """Open the gate and wait for the run's end; its report."""
        gate(self.tag)[1].set()
        self.thread.join(WAIT_MS / 1000)
        logging.getLogger("pipeline.monitor").removeHandler(self.handler)
        assert not self.thread.is_alive(), "the run did not end"
        return self.report


def test_a_run_turned_away_by_a_full_monitor_says_so_and_gets_in_once_a_place_frees(qtbot, monkeypatch,
                                                                                    secure_window) -> None:
    """libzmq tells a client nothing of a ZAP 'try later': the monitor's handshake timeout closes the connection,
    the run says why it is not heard, connects again, and is shown once another connection closed."""
    monkeypatch.setattr(credentials, "_SAID", set())
    window = secure_window
    context = zmq.Context()
    run = None
    try:
        squatter = _peer(context, window.address, curve=True)
        qtbot.waitUntil(lambda: window.receiver.connections.count == 1, timeout=WAIT_MS)
        monkeypatch.setattr(window.receiver.connections, "limit", 1)
        run = GatedRun(window.address)
        qtbot.waitUntil(lambda: bool(run.said), timeout=WAIT_MS)  # its handshake timed out there: it says why
        assert run.said[0].endswith(f"; {credentials.FULL}")
        assert window.receiver.refusals.counts["too many connections"] >= 1
        assert not window.runs.runs
        squatter.close()
        qtbot.waitUntil(lambda: len(window.runs.runs) == 1, timeout=WAIT_MS)  # the run connected again, and got in
    finally:
        if run is not None:
            assert run.finish().exit_status == 0
        context.destroy(linger=0)


def test_a_short_run_turned_away_by_a_full_monitor_says_at_its_end_that_it_was_not_heard(qtbot, monkeypatch,
                                                                                       secure_window) -> None:
    """A full monitor tells a run nothing and holds its connection until its handshake times out: a run that ended
    before then said nothing at all, and nobody saw it."""
    monkeypatch.setattr(credentials, "_SAID", set())
    window = secure_window
    monkeypatch.setattr(window.receiver.connections, "limit", 0)  # full
    run = GatedRun(window.address)
    try:
        qtbot.waitUntil(lambda: window.receiver.refusals.counts["too many connections"] >= 1, timeout=WAIT_MS)
    finally:
        start = time.monotonic()
        report = run.finish()
    assert report.exit_status == 0
    assert time.monotonic() - start < 2.0  # its end waits a fraction of a second for the handshake, no more
    assert run.said == [credentials.unanswered_reason(window.address, HANDSHAKE_WAIT_MS)]
    assert not window.runs.runs


def test_idle_connections_and_unknown_keys_take_no_place_at_a_curve_monitor(qtbot, monkeypatch, tmp_path,
                                                                           secure_window) -> None:
    """A peer without an allowed key cannot keep a run out: its connections count only once a handshake succeeds."""
    monkeypatch.setattr(credentials, "_SAID", set())
    window = secure_window
    host, port = window.address.removeprefix("tcp://").split(":")
    idle = [socket.create_connection((host, int(port)), timeout=WAIT_MS / 1000)
            for _ in range(receiver.MAX_CONNECTIONS + 5)]
    stranger = auth.load_key_pair(auth.generate_key_pair(tmp_path, "stranger")[1])
    context = zmq.Context()
    strangers: list[zmq.Socket] = []
    run = None
    try:
        own = auth.ensure_own_key_pair()
        strangers += [context.socket(zmq.PUB) for _ in range(receiver.MAX_CONNECTIONS + 5)]
        for peer in strangers:
            auth.secure_client(peer, stranger, own.public)
            peer.connect(window.address)
        qtbot.waitUntil(lambda: window.receiver.refusals.counts["unknown key"] >= receiver.MAX_CONNECTIONS,
                        timeout=WAIT_MS)
        start = time.monotonic()
        run = GatedRun(window.address)
        qtbot.waitUntil(lambda: len(window.runs.runs) == 1, timeout=WAIT_MS)
        # Shown before the monitor's handshake timeout closed the idle connections: they never held a place.
        assert time.monotonic() - start < HANDSHAKE_SECONDS
        assert run.said == []
        assert window.receiver.refusals.counts["too many connections"] == 0  # strangers are refused for their key
    finally:
        if run is not None:
            assert run.finish().exit_status == 0
        for peer in strangers:
            peer.close(linger=0)
        context.term()
        for connection in idle:
            connection.close()


def test_an_admission_counts_until_its_handshake_is_seen_to_succeed_or_times_out() -> None:
    now = [0.0]
    connections = receiver.Connections(2, clock=lambda: now[0])
    assert connections.admit() and connections.admit()
    assert not connections.admit()  # both admitted, neither seen yet
    for fd in (7, 8, 9):  # two admitted, one idle
        connections.event(zmq.EVENT_ACCEPTED, fd)
    connections.event(zmq.EVENT_HANDSHAKE_SUCCEEDED, 0)
    assert connections.count == 2 and not connections.admit()  # one open, one admitted, the idle one nothing
    now[0] = HANDSHAKE_SECONDS + 1  # the other admitted handshake never succeeded: closed by now
    assert connections.admit()
    connections.event(zmq.EVENT_DISCONNECTED, 7)
    assert connections.count == 1


def test_a_message_of_many_frames_is_dropped_frame_by_frame(qtbot, window: MainWindow, caplog) -> None:
    """libzmq bounds each frame, not a message's frames: the window never takes in more than a few of them."""
    probe = next(m for m in with_run_id(load_recording(), "e" * 32) if m[0] == b"graph")
    frame = b"x" * (receiver.MAX_FRAME_SIZE - 16)
    with Sender(window) as sender:
        sender.send(qtbot, [probe])
        tracemalloc.start()
        try:
            tracemalloc.reset_peak()
            sender.send(qtbot, [[b"status", *[frame] * 40]])
            qtbot.waitUntil(lambda: window.receiver.ignored > 0, timeout=WAIT_MS)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
    assert peak < 8 * receiver.MAX_FRAME_SIZE, f"{peak / 2**20:.0f} MiB held for a message of 40 frames of 1 MiB"
    assert window.receiver.ignored == 1
    assert "ignored a message: a message of more than 2 frames" in caplog.text


def test_a_message_of_many_frames_is_let_go_a_turn_at_a_time(qtbot, window: MainWindow,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """One message of 4 million frames held the window's event loop for 5 s: its frames are let go a few
    milliseconds a turn (one frame a turn here), the window draws between, and what came after it is read."""
    monkeypatch.setattr(receiver, "BATCH_SECONDS", -1.0)  # each turn's deadline passed: one frame a turn, on any clock
    turns: list[float] = []
    let_go = window.receiver._discard
    monkeypatch.setattr(window.receiver, "_discard", lambda deadline: turns.append(deadline) or let_go(deadline))
    run = with_run_id(load_recording(), "f" * 32)
    probe = next(m for m in run if m[0] == b"graph")
    after = next(m for m in run if m[0] == b"status")
    statuses: list[Any] = []  # the probe is a graph (sent until the window read one: late ones may follow)
    window.receiver.received.connect(lambda message, _: statuses.append(message) if isinstance(
        message, StatusMessage) else None)
    with Sender(window) as sender:
        sender.send(qtbot, [probe])
        sender.send(qtbot, [[b"status", *[b"x"] * 300], after])
        qtbot.waitUntil(lambda: bool(statuses), timeout=WAIT_MS)
    assert window.receiver.ignored == 1
    assert len(turns) >= 298  # a turn of the event loop for each frame past the first 3: the window was never held


# --------------------------------------------------------------------------- any size reads well


def chain(count: int, fan: int = 1) -> list[bytes]:
    """A graph message of ``count`` steps in a chain, with a fan-out and fan-in of ``fan`` in the middle."""
    names = [f"STEP{i:02d}" for i in range(count)]
    edges: dict[str, list[str]] = {name: [nxt] for name, nxt in itertools.pairwise(names)}
    edges[names[-1]] = []
    if fan > 1:
        middle = count // 2
        branches = [f"BRANCH{j}" for j in range(fan)]
        edges[names[middle]] = branches
        for branch in branches:
            edges[branch] = [names[middle + 1]]
    graph = _BASES[b"graph"]
    template = graph["steps"][1]
    steps = [{**template, "name": name, "next_steps": targets} for name, targets in edges.items()]
    return [b"graph", json.dumps({**graph, "run_id": f"size{count}-{fan}", "steps": steps}).encode()]


@pytest.mark.parametrize(("count", "fan"), [(3, 1), (12, 1), (30, 3), (50, 6)])
def test_any_pipeline_size_reads_well(window: MainWindow, count: int, fan: int) -> None:
    window.resize(1440, 900)
    message = chain(count, fan)
    window.receiver.handle(message, None)
    run = window.runs[json.loads(message[1])["run_id"]]
    for step, status in enumerate(_BASES[b"status"]["steps"][:1] * 2):  # two statuses: a history to plot
        body = {**_BASES[b"status"], "run_id": run.run_id, "elapsed": 1.0 + step,
                "steps": [{**status, "name": name} for name in run.steps]}
        window.receiver.handle([b"status", json.dumps(body).encode()], None)
    window.tabs.setCurrentWidget(window.view(run.run_id))
    window.redraw()
    view = window.view(run.run_id)
    graph = view.graph
    assert len(graph.boxes) == len(run.steps) == count + (fan if fan > 1 else 0)
    assert graph.scale_shown() >= MIN_SCALE
    assert SMALLEST_FONT_PT * graph.scale_shown() >= MIN_FONT_PT - 1e-9
    assert view.legend.entries() == list(run.steps)  # every step has its entry
    colours = {(c.name(), dash) for c, dash in view.plot.styles.values()}
    assert len(colours) == len(run.steps)  # and its own look
    assert not graph.grab().isNull()


def graph_message(run_id: str, edges: dict[str, list[str]]) -> list[bytes]:
    """A graph message of the steps ``edges`` maps to their next steps."""
    graph = _BASES[b"graph"]
    template = graph["steps"][1]
    steps = [{**template, "name": name, "next_steps": targets} for name, targets in edges.items()]
    return [b"graph", json.dumps({**graph, "run_id": run_id, "steps": steps}).encode()]


def shown_graph(window: MainWindow, message: list[bytes]) -> Any:
    """The graph view of the run of ``message``, handed to the window, shown and redrawn."""
    window.resize(1440, 900)
    window.receiver.handle(message, None)
    view = window.view(json.loads(message[1])["run_id"])
    window.tabs.setCurrentWidget(view)
    window.redraw()
    return view.graph


def test_a_graph_of_every_connection_draws_a_bounded_scene_and_says_what_it_leaves_out(window: MainWindow) -> None:
    """200 steps each sending to the 199 others, within the protocol's caps: one item per arrow took gigabytes and
    froze the window for minutes. At most MAX_ARROWS are drawn, as one item, and a note says how many are not."""
    names = [f"S{i}" for i in range(MAX_STEPS)]
    message = graph_message("dense", {name: [other for other in names if other != name] for name in names})
    assert len(message[1]) < 1024 * 1024  # within the message size cap
    graph = shown_graph(window, message)
    connections = MAX_STEPS * (MAX_STEPS - 1)
    assert len(graph.boxes) == MAX_STEPS
    assert len(graph.edges) == MAX_ARROWS and graph.undrawn == connections - MAX_ARROWS
    items = graph.scene().items()
    assert len(items) <= MAX_STEPS + 2  # the boxes, the arrows, the note
    notes = [item.toPlainText() for item in items if isinstance(item, QGraphicsTextItem)]
    drawn = humanize.count(MAX_ARROWS)
    assert notes == [f"{drawn} of {humanize.count(connections)} connections drawn (at most {drawn} are)"]
    assert not graph.grab().isNull()


def test_a_next_step_named_twice_is_one_arrow_and_a_plain_graph_has_no_note(window: MainWindow) -> None:
    graph = shown_graph(window, graph_message("twice", {"A": ["B", "B", "C"], "B": ["C", "C"], "C": []}))
    assert graph.edges == [("A", "B"), ("A", "C"), ("B", "C")]
    assert graph.undrawn == 0
    assert not [item for item in graph.scene().items() if isinstance(item, QGraphicsTextItem)]


def test_a_steps_colour_is_tied_to_its_name() -> None:
    # crc32, not hash(): the same in every process, so on every run and host
    assert theme.series_styles(["WRITER"])["WRITER"][0].name() == theme.SERIES_COLOURS[
        __import__("zlib").crc32(b"WRITER") % len(theme.SERIES_COLOURS)].name()
    assert theme.series_styles(["A", "B", "WRITER"]) == theme.series_styles(["WRITER", "B", "A"])  # any order
    styles = theme.series_styles(f"S{i}" for i in range(60))
    assert len({(c.name(), dash) for c, dash in styles.values()}) == 60


def test_the_layout_takes_linear_time() -> None:
    from gui.layout import bands, grid

    for count in (2_000, 40_000):
        steps = {f"S{i}": [f"S{i + 1}"] for i in range(count - 1)} | {f"S{count - 1}": []}
        start = time.perf_counter()
        bands(grid(steps), 6)
        seconds = time.perf_counter() - start
        assert seconds < 2.0, f"{count} steps took {seconds:.2f} s"


@pytest.mark.parametrize("elapsed", [1e9, 1e12, 1e300, 1.7e308])
def test_a_run_whose_elapsed_time_is_huge_draws_a_handful_of_ticks(window: MainWindow, elapsed: float) -> None:
    """A status's elapsed time is what a peer says: 1e300 s made the time axis tick for ever (the window froze at
    100% CPU, deaf to SIGTERM), 1e9 s took a second a repaint."""
    message = chain(3)
    window.receiver.handle(message, None)
    run = window.runs[json.loads(message[1])["run_id"]]
    for at in (1.0, elapsed):
        body = {**_BASES[b"status"], "run_id": run.run_id, "elapsed": at,
                "steps": [{**_BASES[b"status"]["steps"][0], "name": name} for name in run.steps]}
        window.receiver.handle([b"status", json.dumps(body).encode()], None)
    window.tabs.setCurrentWidget(window.view(run.run_id))
    window.redraw()
    assert not window.view(run.run_id).plot.grab().isNull()
    step = time_step(elapsed)
    assert 1 <= elapsed / step <= MAX_TICKS


def test_the_time_axis_steps_are_round_at_any_span() -> None:
    assert [time_step(span) for span in (4, 50, 600, 200_000)] == [1, 10, 120, 43200]
    assert [time_step(span) / 43200 for span in (10**6, 10**7)] == [5, 50]


def test_every_step_name_a_config_takes_is_one_the_monitor_and_a_remote_worker_s_hello_take() -> None:
    """A name of 201 characters hid its run from the monitor; one of 1,001 could take no remote worker."""
    assert MAX_STEP_NAME_CHARS <= MAX_NAME and MAX_STEP_NAME_CHARS <= MAX_REASON_CHARS


def _open_files() -> int:
    """The file descriptors this process holds now."""
    return len(os.listdir("/proc/self/fd"))


def test_a_flood_of_bare_connections_leaves_runs_heard_and_the_window_closing_at_once(qtbot, tmp_path,
                                                                                     secure_window) -> None:
    """A peer with no key opens 2,500 bare TCP connections that send nothing, while the window is busy (its event loop
    does not turn). Each is one event of the socket's monitor: read in the window's turns, they filled its queue and
    libzmq's I/O thread waited for ever to hand on the next one; no run was heard, the flood's files were kept, and the
    window's close waited for the same lock for ever (SIGTERM ignored). Here the listener takes them all, a run is
    heard, their files are let go once they close, and the window closes at once."""
    window = secure_window
    before = _open_files()
    with bare_flood(window.receiver.port) as flood:
        assert len(flood) == CONNECTIONS, "the monitor stopped accepting connections"
        run = subprocess.Popen([sys.executable, "-m", "pipeline", "--config=configs/chain.json", "--no-progress",
                                f"--JsonLinesWriter.path={tmp_path / 'c.jsonl'}",
                                f"--Pipeline.gui_address={window.address}"],
                               cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            qtbot.waitUntil(lambda: any(run.ended for run in window.runs.runs.values()), timeout=WAIT_MS)
        finally:
            _, said = run.communicate(timeout=WAIT_MS / 1000)
        assert run.returncode == 0, said
        assert "not heard" not in said, said
    qtbot.waitUntil(lambda: _open_files() < before + 50, timeout=WAIT_MS)  # the flood's ends, closed by the window
    start = time.monotonic()
    window.shutdown()
    assert time.monotonic() - start < 1.0


def test_the_guide_gives_the_caps_the_code_has() -> None:
    """docs/gui.md said a connection was refused beyond 20 (the runs kept, MAX_RUNS) where the receiver holds 64."""
    guide = (ROOT / "docs" / "gui.md").read_text(encoding="utf-8")
    caps = {
        f"a connection beyond the {receiver.MAX_CONNECTIONS} the monitor holds at once": "the refusals' table",
        f"| connections at once | {receiver.MAX_CONNECTIONS} past their handshake (more than the {MAX_RUNS} runs":
            "the caps' table",
        f"Past {receiver.MAX_CONNECTIONS}, a connection is refused": "the caps' table",
        f"| runs kept | {MAX_RUNS}: ": "the caps' table",
        f"| a traceback shown | {MAX_TRACEBACK:,} characters": "the caps' table",
        f"at most {receiver.BATCH} messages or {receiver.BATCH_SECONDS * 1000:g} ms at a time": "reading",
        f"at most {1000 // REDRAW_MS} times a": "reading",
    }
    assert [where for text, where in caps.items() if text not in guide] == []
