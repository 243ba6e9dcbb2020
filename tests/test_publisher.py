"""The run's side of the status stream: status only to a monitor that proves its key (no key, no status,
said once), in clear only when asked, named runs, and a publisher that subscriptions cannot grow."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from zmq.utils.monitor import recv_monitor_message

from pipeline import Pipeline, auth
from pipeline.errors import ConfigError
from pipeline.monitor import credentials
from pipeline.monitor import monitor as monitor_module
from pipeline.monitor.messages import GRAPH, Envelope, decode
from pipeline.monitor.publisher import Publisher
from tests.cli_helpers import ROOT, chain_config, run_cli, write_config
from tests.monitor_steps import gate
from tests.remote_helpers import free_port

#: Seconds any wait may take.
WAIT = 20.0


class Listener:
    """A SUB socket bound on a loopback port (a CURVE server if given keys) that watches its handshakes."""

    def __init__(self, own: auth.KeyPair | None = None, allowed: dict[bytes, str] | None = None) -> None:
        self.context = zmq.Context()
        self.curve = auth.CurveServer(self.context, auth.ServerKeys(own, allowed or {})) if own else None
        self.socket = self.context.socket(zmq.SUB)
        self.socket.linger = 0
        self.socket.subscribe(b"")
        if self.curve is not None:
            self.curve.secure(self.socket)
        self.events = self.socket.get_monitor_socket()
        self.port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.address = f"127.0.0.1:{self.port}"

    def read(self) -> list[tuple[str, str | None]]:
        """The topics of the messages waiting, each with its sender's key name."""
        got = []
        while self.socket.poll(0):
            frames = self.socket.recv_multipart(copy=False)
            got.append((frames[0].bytes.decode(), self.curve.peer(frames[0]) if self.curve else None))
        return got

    def wait_for_a_message(self) -> None:
        """Wait until a message waits to be read."""
        assert self.socket.poll(int(WAIT * 1000)), f"no message within {WAIT} s"

    def read_until_finish(self) -> list[tuple[str, str | None]]:
        """Messages until the run's finish; fail after WAIT seconds."""
        got: list[tuple[str, str | None]] = []
        deadline = time.monotonic() + WAIT
        while not any(topic == "finish" for topic, _ in got):
            assert time.monotonic() < deadline, f"no finish within {WAIT} s: {got}"
            if self.socket.poll(200):
                got += self.read()
        return got

    def refused_handshake(self) -> int:
        """The first handshake failure this listener saw (waits for it)."""
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            if self.events.poll(100):
                event = recv_monitor_message(self.events)["event"]
                if event in (zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL,
                             zmq.EVENT_HANDSHAKE_FAILED_AUTH):
                    return event
        raise AssertionError("no handshake failed")

    def close(self) -> None:
        self.socket.disable_monitor()
        self.events.close(0)
        self.socket.close()
        if self.curve is not None:
            self.curve.close()
        self.context.term()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private config directory of this test alone, and no reason said yet in this process."""
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setattr(credentials, "_SAID", set())
    return tmp_path


@pytest.fixture
def listeners() -> Iterator[Any]:
    made: list[Listener] = []

    def make(*args: Any) -> Listener:
        made.append(Listener(*args))
        return made[-1]

    yield make
    for listener in made:
        listener.close()


def run_chain(home: Path, **settings: Any) -> Any:
    """Run the chain config in this process with these Pipeline settings; its report."""
    pipeline = Pipeline.from_config(chain_config(str(home / "out.jsonl")),
                                    {"Pipeline": {"progress": False, **settings}})
    return pipeline.run()


class GatedRun:
    """A run in a thread whose producer waits after its first message until ``finish()``: the test
    sees the connection made (or refused) while the run goes on."""

    def __init__(self, **settings: Any) -> None:
        self.tag = uuid.uuid4().hex
        document = {"Pipeline": {
            "producer_conf": {"name": "SOURCE", "module": "tests.monitor_steps", "class": "GatedCounter",
                              "next_steps": "SINK"},
            "consumer_conf": {"name": "SINK", "module": "algorithms.basic", "class": "PassThrough"}},
            "GatedCounter": {"count": 3, "before": 1, "tag": self.tag}}
        self.pipeline = Pipeline.from_config(document, {"Pipeline": {"progress": False, **settings}})
        self.report: Any = None
        self.thread = threading.Thread(target=self._run, name="gated-run")
        self.thread.start()
        assert gate(self.tag)[0].wait(WAIT), "the producer did not reach its gate"

    def _run(self) -> None:
        self.report = self.pipeline.run()

    def finish(self) -> Any:
        """Open the gate and wait for the run's end; its report."""
        gate(self.tag)[1].set()
        self.thread.join(WAIT)
        assert not self.thread.is_alive(), "the run did not end"
        return self.report


def test_a_run_reports_to_the_users_own_monitor_under_its_key(home: Path, listeners) -> None:
    own = auth.ensure_own_key_pair()
    monitor = listeners(own, {own.public: "monitor"})
    run = GatedRun(gui_address=monitor.address)
    monitor.wait_for_a_message()
    assert run.finish().exit_status == 0
    received = monitor.read_until_finish()
    assert {topic for topic, _ in received} == {"graph", "status", "finish"}
    assert {name for _, name in received} == {"monitor"}  # the key that the handshake proved


def test_across_hosts_the_keys_are_named(home: Path, listeners) -> None:
    auth.generate_key_pair(home / "keys", "desk")
    auth.generate_key_pair(home / "keys" / "nodes", "node7")
    monitor = listeners(auth.load_key_pair(home / "keys" / "desk.key_secret"),
                        auth.authorized_keys(home / "keys" / "nodes"))
    run = GatedRun(gui_address=monitor.address, gui_server_key=str(home / "keys" / "desk.key"),
                   gui_key=str(home / "keys" / "nodes" / "node7.key_secret"))
    monitor.wait_for_a_message()
    assert run.finish().exit_status == 0
    assert {name for _, name in monitor.read_until_finish()} == {"node7"}


class Said(logging.Handler):
    """The monitor's warnings, as they come from the run's threads; ``first`` is set by the first."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []
        self.first = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())
        self.first.set()


@pytest.fixture
def said() -> Iterator[Said]:
    handler = Said()
    logger = logging.getLogger("pipeline.monitor")
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)


def refused_run(listener: Listener, said: Said, refusals: int = 1, **settings: Any) -> list[str]:
    """Run against ``listener``, which refuses the run's handshake ``refusals`` times at least while the
    run goes on (the run connects again after some refusals); what the run said."""
    run = GatedRun(gui_address=listener.address, **settings)
    for _ in range(refusals):
        listener.refused_handshake()
    assert said.first.wait(WAIT), "the run said nothing"
    assert run.finish().exit_status == 0
    assert listener.read() == []
    return said.lines


def test_a_plaintext_listener_gets_nothing_from_a_keyed_run_which_says_why_once(home: Path, listeners,
                                                                                said: Said) -> None:
    auth.ensure_own_key_pair()
    squatter = listeners()  # bound at the run's address, without the monitor's key
    (line,) = refused_run(squatter, said)
    # Which side sees the mismatch of mechanisms first is a race: when the listener does, the run sees it hang
    # up, which another monitor does too; the line then names both, each with its fix.
    assert line.startswith(f"the run's status is not heard at {squatter.address}: ")
    assert "takes no keys (pipeline-gui --plaintext" in line and "set Pipeline.gui_plaintext=True" in line


def test_a_plaintext_run_against_a_keyed_monitor_says_why_once(home: Path, listeners, said: Said) -> None:
    own = auth.ensure_own_key_pair()
    monitor = listeners(own, {own.public: "monitor"})
    (line,) = refused_run(monitor, said, gui_plaintext=True)
    # Which side sees the mismatch first is a race: when the monitor does, the run sees it hang up, as a full one does.
    assert line.removesuffix(f"; {credentials.FULL}") == (
        f"the run's status is not heard at {monitor.address}: the monitor there takes only runs that prove a key, "
        "and this run sends in clear (Pipeline.gui_plaintext=True): drop that option, or start the monitor with "
        "--plaintext")


def test_a_run_holding_another_monitors_key_says_why_once(home: Path, listeners, said: Said) -> None:
    own = auth.ensure_own_key_pair()
    monitor = listeners(own, {own.public: "monitor"})  # the user's own monitor
    auth.generate_key_pair(home / "keys", "desk")
    auth.generate_key_pair(home / "keys", "node7")
    desk = str(home / "keys" / "desk.key")  # the run trusts another monitor's key
    node7 = str(home / "keys" / "node7.key_secret")
    assert refused_run(monitor, said, refusals=3, gui_server_key=desk, gui_key=node7) == [
        f"the run's status is not heard at {monitor.address}: the listener there hung up: either it does not hold "
        f"the secret of the monitor key this run trusts ({desk}), being another monitor (another user's, or one "
        "started with --server-key): set Pipeline.gui_server_key to its public .key file, and Pipeline.gui_key to a "
        "key pair that it lets in; or it takes no keys (pipeline-gui --plaintext): set Pipeline.gui_plaintext=True; "
        f"{credentials.FULL}"]


def test_a_run_whose_key_the_monitor_refuses_says_why_once(home: Path, listeners, said: Said) -> None:
    desk = auth.load_key_pair(auth.generate_key_pair(home / "keys", "desk")[1])
    monitor = listeners(desk, {desk.public: "desk"})  # node7.key is not among its authorized keys
    node7 = str(auth.generate_key_pair(home / "keys", "node7")[1])
    assert refused_run(monitor, said, gui_server_key=str(home / "keys" / "desk.key"), gui_key=node7) == [
        f"the run's status is not heard at {monitor.address}: the monitor there refused this run's key ({node7}): "
        "put its public .key file in the monitor's --authorized-keys directory and restart the monitor, or set "
        "Pipeline.gui_key to a key pair that it lets in"]


def test_a_short_run_refused_says_why_in_one_line_on_stderr(home: Path, listeners) -> None:
    """The run ends before its first look at the socket's events: its end waits for the handshake."""
    own = auth.ensure_own_key_pair()
    monitor = listeners(own, {own.public: "monitor"})
    path = write_config(home, chain_config(str(home / "out.jsonl")))
    result = run_cli(f"--config={path}", "--no-progress", f"--Pipeline.gui_address={monitor.address}",
                     "--Pipeline.gui_plaintext=True")
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "not heard" in line]
    assert len(said) == 1, result.stderr
    assert said[0].removesuffix(f"; {credentials.FULL}").endswith(
        f"the run's status is not heard at {monitor.address}: the monitor there takes only runs that prove a key, "
        "and this run sends in clear (Pipeline.gui_plaintext=True): drop that option, or start the monitor with "
        "--plaintext")


def test_a_user_without_keys_who_names_the_default_address_is_told_once(home: Path) -> None:
    path = write_config(home, chain_config(str(home / "out.jsonl")))
    result = run_cli(f"--config={path}", "--no-progress", "--Pipeline.gui_address=localhost:5565")
    assert result.returncode == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "not published" in line]
    assert len(said) == 1, result.stderr
    assert said[0].endswith(credentials.no_key_reason("", ""))


def test_an_impostor_key_gets_nothing(home: Path, listeners) -> None:
    own = auth.ensure_own_key_pair()
    _, secret = auth.generate_key_pair(home / "keys", "impostor")
    impostor = auth.load_key_pair(secret)
    squatter = listeners(impostor, {own.public: "monitor"})  # lets the run in, but holds the wrong secret
    run = GatedRun(gui_address=squatter.address)
    assert squatter.refused_handshake()
    assert run.finish().exit_status == 0
    assert squatter.read() == []


def test_plaintext_when_asked(home: Path, listeners) -> None:
    script = listeners()
    run = GatedRun(gui_address=script.address, gui_plaintext=True)
    script.wait_for_a_message()
    assert run.finish().exit_status == 0
    assert {topic for topic, _ in script.read_until_finish()} == {"graph", "status", "finish"}


def test_no_key_no_status_said_once(home: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("no socket without a key")

    monkeypatch.setattr(monitor_module, "Publisher", refuse)
    with caplog.at_level(logging.DEBUG, logger="pipeline.monitor"):
        assert run_chain(home, gui_address="127.0.0.1:1").exit_status == 0
        assert run_chain(home, gui_address="127.0.0.1:1").exit_status == 0
    lines = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "pipeline.monitor"]
    assert lines == [(logging.WARNING, credentials.no_key_reason("", ""))]
    assert "Pipeline.gui_plaintext=True publishes it unencrypted" in lines[0][1]


def test_a_run_that_never_met_a_monitor_stays_quiet(home: Path, caplog) -> None:
    with caplog.at_level(logging.DEBUG, logger="pipeline.monitor"):
        assert run_chain(home).exit_status == 0
    assert [r.getMessage() for r in caplog.records if r.name == "pipeline.monitor"] == []


def test_half_the_keys_is_no_key(home: Path) -> None:
    auth.generate_key_pair(home / "keys", "desk")
    assert credentials.run_credentials(str(home / "keys" / "desk.key"), "") is None
    assert "set Pipeline.gui_key" in credentials.no_key_reason("desk.key", "")
    assert "set Pipeline.gui_server_key" in credentials.no_key_reason("", "node.key_secret")


def test_a_bad_key_file_exits_2_naming_it(home: Path) -> None:
    path = write_config(home, chain_config(str(home / "out.jsonl")))
    result = run_cli(f"--config={path}", f"--Pipeline.gui_key={home / 'nope.key_secret'}", "--no-progress")
    assert result.returncode == 2
    assert result.stderr == (f"pipeline-run: error: {home / 'nope.key_secret'}: Pipeline.gui_key: no such file: "
                             "expected a key file made by pipeline-keys\n")
    auth.generate_key_pair(home, "half")
    with pytest.raises(ConfigError, match=r"half\.key: Pipeline\.gui_key: no secret key in this file"):
        run_chain(home, gui_key=str(home / "half.key"))


def test_a_dict_config_is_named_by_its_steps_or_by_the_caller(home: Path) -> None:
    config = chain_config(str(home / "out.jsonl"))
    assert Pipeline.from_config(config).steps.name == "COUNT \u2192 WRITE"
    named = Pipeline.from_config(config, name="nightly calibration")
    assert named.steps.name == Envelope.for_run(named.steps).pipeline == "nightly calibration"
    assert Pipeline.from_config(ROOT / "configs" / "chain.json").steps.name == "chain"


FLOOD = """
import sys, zmq
context = zmq.Context()
xsub = context.socket(zmq.XSUB)
xsub.linger = 0
xsub.sndhwm = 0
xsub.bind(sys.argv[1])
for i in range(int(sys.argv[2])):
    xsub.send(b"\\x01" + b"%08d" % i + b"x" * 200)
xsub.send(b"\\x01" + b"y" * 100_000)  # longer than a subscription may be: the run drops this peer
print("sent", flush=True)
sys.stdin.read()
"""


def test_subscriptions_cannot_grow_the_run(tmp_path: Path) -> None:
    """A peer bound at the run's address floods it with distinct subscriptions: the run reads a
    bounded number per look and drops the connection, with all it subscribed; its memory stays put."""
    context = zmq.Context()
    probe = context.socket(zmq.PULL)
    port = probe.bind_to_random_port("tcp://127.0.0.1")
    probe.close(0)
    context.term()
    count = 200_000  # 40 MB of subscriptions, sent again each time the run connects
    flood = subprocess.Popen([sys.executable, "-c", FLOOD, f"tcp://127.0.0.1:{port}", str(count)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    publisher = Publisher(f"127.0.0.1:{port}", Envelope("r", "p", "c", "h", 1), None)
    try:
        before = _rss()
        deadline = time.monotonic() + WAIT
        while publisher.resets < 50 and time.monotonic() < deadline:
            publisher.new_subscribers()
        grown = _rss() - before
        assert publisher.resets >= 50
        # Kept, 50 floods would be 2 GB of subscriptions; with one subscription queued at a time the run grew by
        # 13 MiB at most (its socket buffers), with 16 by up to 340 MiB.
        assert grown < 32 * 2**20, f"the run grew by {grown / 2**20:.1f} MiB"
    finally:
        publisher.close(0)
        flood.stdin.close()  # type: ignore[union-attr]
        flood.wait(WAIT)
        flood.stdout.close()  # type: ignore[union-attr]


def _rss() -> int:
    with open(f"/proc/{os.getpid()}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class ThreadListener:
    """A plaintext SUB socket owned by a thread of its own, which reads (and so subscribes) as a monitor's
    event loop does, every tenth of a second, until stopped; ``received`` holds the frames of each message read,
    ``finished`` is set by a finish. ``rcvhwm``: its queue, small as the window's (2), or libzmq's default."""

    def __init__(self, rcvhwm: int = 1000) -> None:
        self.received: list[list[bytes]] = []
        self.rcvhwm = rcvhwm
        self.bound = threading.Event()
        self.finished = threading.Event()
        self.stop = threading.Event()
        self.port = 0
        self.thread = threading.Thread(target=self._listen, name="listener")
        self.thread.start()
        assert self.bound.wait(WAIT)

    @property
    def topics(self) -> list[str]:
        """The topic of each message read."""
        return [frames[0].decode() for frames in self.received]

    def _listen(self) -> None:
        context = zmq.Context()
        socket = context.socket(zmq.SUB)
        socket.linger = 0
        socket.rcvhwm = self.rcvhwm
        socket.subscribe(b"")
        try:
            self.port = socket.bind_to_random_port("tcp://127.0.0.1")
            self.bound.set()
            while not self.stop.is_set():
                if socket.poll(100):
                    self.received.append(socket.recv_multipart())
                    if self.received[-1][0] == b"finish":
                        self.finished.set()
        finally:
            socket.close()
            context.term()

    def close(self) -> list[str]:
        """Stop reading; the topics read."""
        self.stop.set()
        self.thread.join(WAIT)
        return self.topics


def test_the_end_of_a_short_run_waits_for_its_monitor_to_subscribe() -> None:
    """A SUB socket subscribes only when its own thread touches it: a run that ends right after connecting
    waits (half a second at most) for the subscription, so that its last messages reach the monitor."""
    listener = ThreadListener()
    try:
        publisher = Publisher(f"127.0.0.1:{listener.port}", Envelope("r" * 32, "p", "c", "h", 1), None)
        try:
            deadline = time.monotonic() + WAIT
            while not publisher.connected and time.monotonic() < deadline:  # as a run that connected earlier
                publisher.refusals()
                listener.thread.join(0.01)
            publisher.settle(int(WAIT * 1000))
            assert publisher.subscribed
            publisher.publish("finish", {})
        finally:
            publisher.close()
        listener.finished.wait(WAIT)  # bounded: the listener's thread reads on meanwhile
    finally:
        topics = listener.close()
    assert topics == ["finish"]


def test_a_run_that_ends_before_its_connection_is_made_still_waits_for_its_monitor() -> None:
    """On a busy host a short run ended while its connection to a listening monitor was still in progress: it did
    not wait, and the monitor never showed it (3 runs in 17). Now it learns first whether the connection is made."""
    listener = ThreadListener()
    try:
        publisher = Publisher(f"127.0.0.1:{listener.port}", Envelope("r" * 32, "p", "c", "h", 1), None)
        try:
            publisher.settle(int(WAIT * 1000))  # at once: libzmq's I/O thread has not made the connection yet
            assert publisher.subscribed
            publisher.publish("finish", {})
        finally:
            publisher.close()
        listener.finished.wait(WAIT)  # bounded: the listener's thread reads on meanwhile
    finally:
        topics = listener.close()
    assert topics == ["finish"]


def test_with_nobody_listening_the_end_of_a_run_does_not_wait(tmp_path: Path) -> None:
    context = zmq.Context()
    probe = context.socket(zmq.PULL)
    port = probe.bind_to_random_port("tcp://127.0.0.1")
    probe.close(0)
    context.term()
    publisher = Publisher(f"127.0.0.1:{port}", Envelope("r" * 32, "p", "c", "h", 1), None)
    try:
        start = time.monotonic()
        publisher.settle(int(WAIT * 1000))  # at once, as a run of one message: the connection is refused first
        assert time.monotonic() - start < WAIT / 4  # no connection was made: nothing to wait for
        assert not publisher.subscribed and not publisher.connected
    finally:
        publisher.close(0)


def test_the_end_of_a_run_reaches_its_monitor_after_a_burst_of_errors(tmp_path: Path) -> None:
    """A burst of errors filled the run's queue: the last status and the finish were dropped (a finished run shown
    as running for ever; 2 runs in 4 here), and the drops never counted. Now the errors beyond the queue's room are
    the ones dropped, counted in the last status, and the status and the finish wait (a bounded time) for room."""
    document = {"version": 1, "Pipeline": {
        "producer_conf": {"name": "SOURCE", "module": "algorithms.basic", "class": "Counter", "next_steps": "FAIL"},
        "stagers_conf": [
            {"name": "FAIL", "module": "tests.failure_steps", "class": "FailEvery", "next_steps": "A",
             "on_error": "skip"},
            {"name": "A", "module": "algorithms.basic", "class": "PassThrough", "next_steps": "B"},
            {"name": "B", "module": "algorithms.basic", "class": "PassThrough", "next_steps": "SINK"}],
        "consumer_conf": {"name": "SINK", "module": "algorithms.basic", "class": "PassThrough"}},
        "Counter": {"count": 2000}, "FailEvery": {"every": 7}}
    config = write_config(tmp_path, document)
    for _ in range(3):
        listener = ThreadListener(rcvhwm=2)
        try:
            result = run_cli(f"--config={config}", f"--Pipeline.gui_address=127.0.0.1:{listener.port}",
                             "--Pipeline.gui_plaintext=True", "--Pipeline.allow_failures=True", "--no-progress")
            assert result.returncode == 0, result.stderr
            assert listener.finished.wait(WAIT), "the finish never came"
        finally:
            listener.close()
        messages = [decode(frames) for frames in listener.received]
        topics = [topic for topic, _ in messages]
        assert topics[-2:] == ["status", "finish"]
        last = messages[-2][1]
        assert last["state"] == "finished"
        failed = sum(step["failed"] for step in last["steps"])
        assert failed == 2000 // 7 + 1
        assert topics.count("error") + last["dropped"] >= failed  # every error heard, or counted as dropped


def test_a_monitor_restarted_again_and_again_is_heard_each_time(home: Path) -> None:
    """Each monitor started anew at the run's address subscribes once: the run counted them all as one connection's,
    and at the fifth it warned that the peer subscribed too often and dropped the connection."""
    port = free_port()
    publisher = Publisher(f"127.0.0.1:{port}", Envelope("r", "p", "c", "h", 1), None)
    try:
        for restart in range(8):
            with zmq.Context() as context, context.socket(zmq.SUB) as monitor:
                monitor.linger = 0
                monitor.subscribe(b"")
                monitor.bind(f"tcp://127.0.0.1:{port}")
                deadline = time.monotonic() + WAIT
                heard: list[int] = []
                while not heard:  # as the run's monitor does: send, then look for subscribers (a send lets libzmq
                    # take in what the connection sent)
                    assert time.monotonic() < deadline, f"monitor {restart} heard nothing"
                    publisher.publish(GRAPH, {"restart": restart})
                    publisher.new_subscribers()
                    if monitor.poll(100):
                        heard.append(decode(monitor.recv_multipart())[1]["restart"])
                assert heard == [restart]
        assert publisher.resets == 0
    finally:
        publisher.close(0)
