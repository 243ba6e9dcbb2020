"""pipeline.auth.keys: key files (pyzmq's format, secret 0600, never overwritten) and a CURVE server that lets
in only the allowed keys, names each peer by the key its handshake proved, and fails closed; its ZAP handler, which
ends with its context."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
import zmq.auth
from zmq.utils.monitor import recv_monitor_message

from pipeline import auth
from pipeline.auth.events import SocketEvents
from pipeline.auth.zap import ALLOWED, FAILED, REFUSED, TRY_LATER, ZAP_ENDPOINT, ZAP_VERSION, ZapHandler, answer
from pipeline.errors import ConfigError
from tests.bare_flood import bare_flood
from tests.cli_helpers import ROOT

#: Seconds any wait on a socket may take.
TIMEOUT = 10.0
#: What a client's handshake ends in: success, or one of the failures.
ENDINGS = {zmq.EVENT_HANDSHAKE_SUCCEEDED, zmq.EVENT_HANDSHAKE_FAILED_AUTH, zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL,
           zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL}


def test_generate_writes_a_pair_in_pyzmqs_format_with_a_private_secret(tmp_path: Path) -> None:
    public, secret = auth.generate_key_pair(tmp_path / "keys" / "new", "node7")
    assert (public.name, secret.name) == ("node7.key", "node7.key_secret")
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE(public.stat().st_mode) & 0o077 == 0o044  # the public key is for others to read
    assert stat.S_IMODE(public.parent.stat().st_mode) == 0o700  # the directory it made
    pair = auth.load_key_pair(secret)
    assert zmq.auth.load_certificate(public) == (pair.public, None)  # pyzmq reads it
    assert zmq.auth.load_certificate(secret) == (pair.public, pair.secret)
    assert pair.name == "node7" and auth.load_public_key(public) == auth.KeyPair(pair.public, None, "node7")
    assert sorted(p.name for p in public.parent.iterdir()) == ["node7.key", "node7.key_secret"]  # no scratch left


@pytest.mark.parametrize("existing", ["x.key", "x.key_secret"])
def test_generate_refuses_to_overwrite(tmp_path: Path, existing: str) -> None:
    (tmp_path / existing).write_text("mine")
    with pytest.raises(ConfigError, match="exists: a key is never overwritten"):
        auth.generate_key_pair(tmp_path, "x")
    assert [p.name for p in tmp_path.iterdir()] == [existing]
    assert (tmp_path / existing).read_text() == "mine"


@pytest.mark.parametrize("name", ["", "../x", "a/b", ".hidden", "a b"])
def test_a_key_name_is_a_plain_file_name(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match="expected a key name"):
        auth.generate_key_pair(tmp_path, name)


def test_loading_names_the_file_and_what_was_expected(tmp_path: Path) -> None:
    public, _ = auth.generate_key_pair(tmp_path, "a")
    with pytest.raises(ConfigError, match=r"a\.key: --opt: no secret key in this file"):
        auth.load_key_pair(public, "--opt")
    with pytest.raises(ConfigError, match=r"missing\.key: no such file: expected a key file"):
        auth.load_public_key(tmp_path / "missing.key")
    (tmp_path / "junk.key").write_text("hello\n")
    with pytest.raises(ConfigError, match=r"junk\.key: not a CURVE key file"):
        auth.load_public_key(tmp_path / "junk.key")
    with pytest.raises(ConfigError, match="not a directory"):
        auth.authorized_keys(tmp_path / "nowhere")


def test_authorized_keys_are_the_public_key_files_of_a_directory(tmp_path: Path) -> None:
    one, _ = auth.generate_key_pair(tmp_path, "one")
    two, _ = auth.generate_key_pair(tmp_path, "two")
    (tmp_path / "notes.txt").write_text("not a key")
    keys = auth.authorized_keys(tmp_path)
    assert keys == {auth.load_public_key(one).public: "one", auth.load_public_key(two).public: "two"}


@pytest.mark.parametrize("open_to", ["directory", "key"])
@pytest.mark.parametrize("mode", [0o777, 0o775, 0o757])
def test_authorized_keys_that_others_may_write_are_refused(tmp_path: Path, open_to: str, mode: int) -> None:
    """Any user could add their own key to a folder others may write (or write theirs into a key file), and be let in:
    they were taken, where ssh refuses such an authorized_keys."""
    folder = tmp_path / "authorized"
    folder.mkdir(mode=0o755)
    public, _ = auth.generate_key_pair(folder, "node7")
    opened = folder if open_to == "directory" else public
    opened.chmod(mode if open_to == "directory" else mode & 0o666)
    with pytest.raises(ConfigError) as raised:
        auth.authorized_keys(folder, "--authorized-keys")
    assert str(raised.value) == (
        f"{opened}: --authorized-keys: writable by other users (mode {stat.S_IMODE(opened.stat().st_mode):04o}): any "
        f"of them could add a key and be let in (expected only its owner to write it: chmod go-w {opened})")
    opened.chmod(0o755 if open_to == "directory" else 0o644)
    assert list(auth.authorized_keys(folder).values()) == ["node7"]


def test_the_private_directory_is_made_0700(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert auth.private_dir() == tmp_path / "config" / "zmq-pipeline"
    assert auth.own_key_pair() is None
    pair = auth.ensure_own_key_pair()
    assert pair is not None and pair.name == "monitor"
    assert stat.S_IMODE(auth.private_dir().stat().st_mode) == 0o700
    assert stat.S_IMODE((auth.private_dir() / "monitor.key_secret").stat().st_mode) == 0o600
    assert auth.own_key_pair() == pair  # read again, not made again
    os.chmod(auth.private_dir(), 0o755)
    auth.ensure_private_dir()
    assert stat.S_IMODE(auth.private_dir().stat().st_mode) == 0o700


# --------------------------------------------------------------------------- the server


class Server:
    """A SUB socket bound on a loopback port behind a CurveServer; it records each message's sender."""

    def __init__(self, own: auth.KeyPair, allowed: dict[bytes, str], handler: bool = True) -> None:
        self.context = zmq.Context()
        self.curve = auth.CurveServer(self.context, auth.ServerKeys(own, allowed)) if handler else None
        self.socket = self.context.socket(zmq.SUB)
        self.socket.linger = 0
        self.socket.subscribe(b"")
        if self.curve is not None:
            self.curve.secure(self.socket)
        else:  # the options of a server whose handler is missing
            auth.CurveServer.secure(_Unstarted(own), self.socket)
        self.port = self.socket.bind_to_random_port("tcp://127.0.0.1")
        self.address = f"tcp://127.0.0.1:{self.port}"

    def receive(self) -> list[tuple[bytes, str | None]]:
        """What arrived until now: (body, the sender's key name)."""
        got = []
        while self.socket.poll(0):
            frames = self.socket.recv_multipart(copy=False)
            got.append((frames[-1].bytes, self.curve.peer(frames[0]) if self.curve else None))
        return got

    def close(self) -> None:
        self.socket.close()
        if self.curve is not None:
            self.curve.close()
        self.context.term()


class _Unstarted:
    """Just the key pair, to set a server's options without starting a handler."""

    def __init__(self, own: auth.KeyPair) -> None:
        self.own = own


class Client:
    """A PUB socket that connects to a server, watching its own handshake."""

    def __init__(self, address: str, own: auth.KeyPair | None, server_key: bytes | None) -> None:
        self.context = zmq.Context()
        self.socket = self.context.socket(zmq.PUB)
        self.socket.linger = 0
        if own is not None and server_key is not None:
            auth.secure_client(self.socket, own, server_key)
        self.events = self.socket.get_monitor_socket()
        self.socket.connect(address)

    def handshake(self) -> int:
        """How the first handshake ended (a zmq.EVENT_HANDSHAKE_* value)."""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            if self.events.poll(100):
                event = recv_monitor_message(self.events)["event"]
                if event in ENDINGS:
                    return event
        raise AssertionError("no handshake ended within the timeout")

    def close(self) -> None:
        self.socket.disable_monitor()
        self.events.close(0)
        self.socket.close()
        self.context.term()


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, auth.KeyPair]:
    pairs = {}
    for name in ("server", "worker", "stranger"):
        _, secret = auth.generate_key_pair(tmp_path, name)
        pairs[name] = auth.load_key_pair(secret)
    return pairs


@pytest.fixture
def server(keys: dict[str, auth.KeyPair]) -> Iterator[Server]:
    server = Server(keys["server"], {keys["worker"].public: "worker"})
    yield server
    server.close()


def exchange(server: Server, client: Client, until: float = TIMEOUT) -> list[tuple[bytes, str | None]]:
    """Send until the server has received something (a PUB drops what it sends before the subscription arrives)."""
    deadline = time.monotonic() + until
    while time.monotonic() < deadline:
        client.socket.send_multipart([b"topic", b"hello"])
        if server.socket.poll(20):
            return server.receive()
    return []


def test_an_allowed_key_gets_in_and_is_named_by_its_handshake(server: Server, keys) -> None:
    client = Client(server.address, keys["worker"], keys["server"].public)
    try:
        assert client.handshake() == zmq.EVENT_HANDSHAKE_SUCCEEDED
        received = exchange(server, client)
    finally:
        client.close()
    assert received and all(item == (b"hello", "worker") for item in received)
    assert server.curve.refused == 0


def refused_handshake(server: Server, own: auth.KeyPair | None, server_key: bytes | None) -> int:
    """How the handshake of a client with ``own`` keys, expecting ``server_key``, ended; it then sends
    a message, of which the server must receive nothing."""
    client = Client(server.address, own, server_key)
    try:
        ending = client.handshake()
        client.socket.send_multipart([b"topic", b"hello"])
    finally:
        client.close()
    assert server.receive() == []
    return ending


def test_an_unknown_key_is_refused(server: Server, keys) -> None:
    assert refused_handshake(server, keys["stranger"], keys["server"].public) == zmq.EVENT_HANDSHAKE_FAILED_AUTH
    assert server.curve.refused >= 1


def test_a_client_expecting_another_server_key_never_talks_to_this_server(server: Server, keys) -> None:
    assert refused_handshake(server, keys["worker"], keys["stranger"].public) != zmq.EVENT_HANDSHAKE_SUCCEEDED


def test_a_plaintext_peer_is_refused(server: Server) -> None:
    assert refused_handshake(server, None, None) != zmq.EVENT_HANDSHAKE_SUCCEEDED


def test_without_its_handler_a_server_fails_closed(keys) -> None:
    """ZAP_ENFORCE_DOMAIN: no handler means no entry, not everyone's entry."""
    server = Server(keys["server"], {}, handler=False)
    try:
        assert refused_handshake(server, keys["worker"], keys["server"].public) != zmq.EVENT_HANDSHAKE_SUCCEEDED
    finally:
        server.close()


def test_a_client_needs_its_secret_key(keys) -> None:
    context = zmq.Context()
    socket = context.socket(zmq.PUB)
    try:
        with pytest.raises(ValueError, match="no secret key"):
            auth.secure_client(socket, auth.KeyPair(keys["worker"].public, None, "worker"), keys["server"].public)
    finally:
        socket.close(0)
        context.term()


# --------------------------------------------------------------------------- the ZAP handler

def zap_request(mechanism: bytes = b"CURVE", version: bytes = ZAP_VERSION) -> list[bytes]:
    """A ZAP request as libzmq sends it (RFC 27): version, id, domain, address, routing id, mechanism, key."""
    return [version, b"7", auth.ZAP_DOMAIN.encode(), b"127.0.0.1", b"", mechanism, b"k" * 32]


@pytest.mark.parametrize(("request_frames", "user", "admitted", "status"), [
    (zap_request(), b"them", True, ALLOWED),
    (zap_request(), None, True, REFUSED),
    (zap_request(), b"them", False, TRY_LATER),
    (zap_request(version=b"2.0"), b"them", True, REFUSED),
    (zap_request()[:5], b"them", True, REFUSED),
], ids=["let-in", "refused", "not-admitted", "other-version", "short"])
def test_a_zap_request_is_answered_for_its_id(request_frames: list[bytes], user: bytes | None, admitted: bool,
                                              status: bytes) -> None:
    reply = answer(request_frames, lambda request: user, lambda: admitted)
    assert reply[:3] == [ZAP_VERSION, b"7", status]
    assert reply[4] == (user if status == ALLOWED else b"")


def ask(context: zmq.Context, request: list[bytes]) -> list[bytes]:
    """The reply of the context's ZAP handler to ``request``, asked as libzmq does (bounded)."""
    req = context.socket(zmq.REQ)
    req.linger = 0
    req.rcvtimeo = int(TIMEOUT * 1000)
    try:
        req.connect(ZAP_ENDPOINT)
        req.send_multipart(request)
        return req.recv_multipart()
    finally:
        req.close()


def test_a_zap_check_that_raises_is_a_refusal_and_the_handler_answers_on(caplog: pytest.LogCaptureFixture) -> None:
    context = zmq.Context()
    users = iter([RuntimeError("broken on purpose"), b"them"])

    def identify(request: list[bytes]) -> bytes:
        user = next(users)
        if isinstance(user, Exception):
            raise user
        return user

    handler = ZapHandler(context, identify, None)
    handler.start()
    try:
        assert ask(context, zap_request())[2] == FAILED
        assert ask(context, zap_request())[2:5] == [ALLOWED, b"OK", b"them"]
    finally:
        handler.close()
        context.term()
    assert not handler.is_alive()
    assert "the ZAP handler failed to check a connection: refused" in caplog.text


def test_the_zap_handler_ends_with_its_context_however_it_is_terminated() -> None:
    """Its context terminated under it (a run aborted), it closes its sockets and ends: the termination returns, and
    close() after it is harmless. (pyzmq's asyncio handler spun for ever, a traceback a turn, and the termination
    never returned.)"""
    context = zmq.Context()
    handler = ZapHandler(context, lambda request: b"", None)
    handler.start()
    terminator = threading.Thread(target=context.term, name="test-term", daemon=True)
    terminator.start()
    terminator.join(TIMEOUT)
    handler.join(TIMEOUT)
    assert not terminator.is_alive() and not handler.is_alive()
    handler.close()


# --------------------------------------------------------------------------- a listening socket's events


def test_socket_events_are_read_on_past_a_count_that_fails(caplog) -> None:
    """A count that raises is logged and the reading goes on: a reader that stopped would leave libzmq's I/O thread
    waiting, once 2,000 events were unread, and every connection of the context with it."""
    context = zmq.Context()
    accepted = threading.Semaphore(0)

    def count(kind: int, value: int) -> None:
        accepted.release()
        raise ValueError("a bug in a count")

    server = context.socket(zmq.ROUTER)
    server.linger = 0
    events = SocketEvents(server, zmq.EVENT_ACCEPTED, count)
    port = server.bind_to_random_port("tcp://127.0.0.1")
    try:
        with bare_flood(port, count=2):
            assert accepted.acquire(timeout=10) and accepted.acquire(timeout=10)  # the second after the first failed
        events.close()
        assert not events.is_alive()
        assert caplog.text.count("ValueError: a bug in a count") == 2
    finally:
        server.close()
        context.term()


def test_socket_events_end_with_their_context() -> None:
    """A context terminated under the reader (a run aborted while its door owns the port) ends its thread; the owner's
    close then ends the termination."""
    context = zmq.Context()
    server = context.socket(zmq.ROUTER)
    events = SocketEvents(server, zmq.EVENT_ACCEPTED, lambda kind, value: None)
    ending = threading.Thread(target=context.term)
    ending.start()
    events.join(10)
    assert not events.is_alive()
    with pytest.raises(zmq.ContextTerminated):  # the owner's next call learns it
        server.recv(zmq.NOBLOCK)
    events.close()
    ending.join(10)
    assert not ending.is_alive()


def test_socket_events_close_while_their_queue_is_full() -> None:
    """Closing a socket whose events' queue is full, its reader stalled: ``disable_monitor()`` waited for libzmq's
    monitor lock holding the GIL, which the reader needed to make room; pipeline-gui never exited after a flood."""
    result = subprocess.run([sys.executable, "-m", "tests.events_closing"], cwd=ROOT, capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.endswith("reader alive: False\n")
