"""The options of remote work say what they expect (issues 24.9 and 26.4): an address that is not
``tcp://HOST:PORT`` (for ``pipeline-run --Pipeline.listen`` or ``pipeline-worker --connect``), a
``heartbeat_liveness`` past its bound, or a secret key file that other users may read is one line
naming the option and exit status 2, before any socket or step; an IPv6 address works.

Real processes on loopback, keys made with pipeline.auth.keys.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
from pathlib import Path

import pytest
import zmq

from pipeline.auth.curve import secure_client
from pipeline.auth.keys import load_key_pair, load_public_key
from pipeline.config.traits import TCP_FORM, loopback_only, unresolved
from pipeline.engine import remote_agent
from pipeline.engine.remote_agent import Login
from tests.cli_helpers import run_cli, write_config
from tests.remote_helpers import BIN, STAGE, Keys, Launcher, answering, free_port, lines, servers


def one_line(result: subprocess.CompletedProcess[str], *expected: str) -> str:
    """The one stderr line of a process that exited 2, after checking that it holds each of ``expected``."""
    assert result.returncode == 2, result.stderr
    said = lines(result.stderr)
    assert len(said) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for text in expected:
        assert text in said[0], said[0]
    return said[0]


def worker_cli(launch: Launcher, *args: str) -> subprocess.CompletedProcess[str]:
    """``pipeline-worker ARGS`` with the test's keys and step."""
    return subprocess.run([str(BIN / "pipeline-worker"), f"--server-key={launch.keys.server_public}",
                           f"--key={launch.keys.secret('node7')}", f"--step={STAGE}", *args],
                          cwd=launch.directory, capture_output=True, text=True, timeout=30, check=False)


#: Addresses that are not tcp://HOST:PORT, and what the line says beside TCP_FORM.
BAD_ADDRESSES = {
    "127.0.0.1:5570": "did you mean 'tcp://127.0.0.1:5570'?",
    "garbage": "such as tcp://head:5570",
    "tcp://127.0.0.1:0": "port 0 would pick a port that no worker is told",
    "tcp://127.0.0.1:70000": "a PORT from 1 to 65535",
    "inproc://x": "remote workers connect over TCP",
    "ipc:///tmp/run": "remote workers connect over TCP",
    "tcp://-x:5570": "not a host name or address",
    "tcp://[zz]:5570": "not an IPv6 address",
}


@pytest.mark.parametrize("address", BAD_ADDRESSES)
def test_a_listen_address_that_is_not_tcp_host_port_is_one_line(launch: Launcher, address: str) -> None:
    path = write_config(launch.directory, launch.chain())
    result = run_cli(f"--config={path}", f"--Pipeline.listen={address}", *launch.keys.run_options())
    one_line(result, "pipeline-run: error: command line: --Pipeline.listen:", f"expected {TCP_FORM}",
             BAD_ADDRESSES[address])
    assert not launch.output.exists()


def test_a_listen_address_in_the_config_file_names_the_file(launch: Launcher) -> None:
    config = launch.chain()
    config["Pipeline"]["listen"] = "127.0.0.1:5570"
    path = write_config(launch.directory, config)
    one_line(run_cli(f"--config={path}", *launch.keys.run_options()),
             f"pipeline-run: error: {path}: Pipeline.listen: expected {TCP_FORM}, got '127.0.0.1:5570'")


@pytest.mark.parametrize("address", [*BAD_ADDRESSES, "tcp://*:5570"])
def test_a_connect_address_that_is_not_tcp_host_port_is_one_line(launch: Launcher, address: str) -> None:
    said = one_line(worker_cli(launch, f"--connect={address}"), "pipeline-worker: error: command line: --connect:",
                    f"expected {TCP_FORM}")
    assert BAD_ADDRESSES.get(address, "'*' is for Pipeline.listen") in said


def ipv6_loopback() -> bool:
    """Whether this host has IPv6 on its loopback (a container may not)."""
    try:
        with socket.socket(socket.AF_INET6) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 on this host's loopback")
def test_a_remote_worker_joins_over_ipv6(tmp_path: Path) -> None:
    """tcp://[::1]:PORT: the run listens on IPv6 and a worker that connects there serves every message."""
    with Launcher(tmp_path, host="[::1]") as launch:
        assert launch.address.startswith("tcp://[::1]:")
        run = launch.run(launch.chain(nb_thread=0))  # only the remote worker serves the step
        worker = launch.worker()
        assert run.wait() == 0, run.stderr
        assert worker.wait() == 0, worker.stderr
        outputs = launch.outputs()
        assert sorted(row["value"] for row in outputs) == list(range(20))
        assert servers(outputs, run) == {worker.pid}


@pytest.mark.parametrize("liveness", ["0", "101", "1e22", "10000000000000000000000"])
def test_heartbeat_liveness_has_bounds(liveness: str) -> None:
    result = run_cli("--config=configs/chain.json", f"--Pipeline.heartbeat_liveness={liveness}")
    one_line(result, "--Pipeline.heartbeat_liveness:", "at least 1, at most 100")


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_secret_key_file_others_may_read_is_refused(launch: Launcher, mode: int) -> None:
    """As ssh refuses such a private key: for the worker's --key and the run's server_key alike."""
    key = launch.keys.secret("node7")
    os.chmod(key, mode)
    one_line(worker_cli(launch, f"--connect={launch.address}"), f"pipeline-worker: error: {key}: --key:",
             f"(mode {mode:04o})", f"chmod 600 {key}")
    server = launch.keys.server_secret
    os.chmod(server, mode)
    path = write_config(launch.directory, launch.chain())
    one_line(run_cli(f"--config={path}", f"--Pipeline.listen={launch.address}", *launch.keys.run_options()),
             f"pipeline-run: error: {server}: Pipeline.server_key:", f"chmod 600 {server}")
    assert not launch.output.exists()


@pytest.mark.parametrize(("option", "path", "said"), [
    ("--key", ".", "is a folder"), ("--server-key", ".", "is a folder"),
    ("--key", "/dev/null", "is not a regular file"), ("--server-key", "/dev/null", "is not a regular file"),
    ("--key", "nowhere.key_secret", "no such file"),
])
def test_a_key_path_that_is_no_key_file_says_what_it_is(launch: Launcher, option: str, path: str, said: str) -> None:
    """A folder or a device given as a key file was said to be no such file."""
    one_line(worker_cli(launch, f"--connect={launch.address}", f"{option}={path}"),
             f"pipeline-worker: error: {path}: {option}: {said}: expected a key file made by pipeline-keys")


@pytest.mark.parametrize(("option", "said"), [
    ("--threads=0", "pipeline-worker: error: command line: --threads: expected at least 1, got 0"),
    ("--processes=x", "pipeline-worker: error: command line: --processes: expected an int"),
])
def test_a_bad_number_for_pipeline_worker_names_its_option(launch: Launcher, option: str, said: str) -> None:
    """traitlets' own words named a trait of a PipelineWorker instance, not the option typed."""
    one_line(worker_cli(launch, option), said)


#: A host name under the TLD reserved never to resolve (RFC 2606).
UNKNOWN_HOST = "nosuchhost.invalid"


def resolver_says_unknown() -> bool:
    """Whether this host's resolver says at once that UNKNOWN_HOST is not known (one with no name server may only say
    that it cannot tell now)."""
    return unresolved(UNKNOWN_HOST) is not None


@pytest.mark.skipif(not resolver_says_unknown(), reason="this host's resolver cannot tell that a name is unknown")
def test_a_host_that_is_not_known_is_one_line_at_once(launch: Launcher) -> None:
    """libzmq tried such a host for the 30 s a worker waits, then 'no answer from the run'; a run listening on one
    said 'No such device'."""
    address = f"tcp://{UNKNOWN_HOST}:5570"
    one_line(worker_cli(launch, f"--connect={address}"),
             f"pipeline-worker: error: command line: --connect: the run's host '{UNKNOWN_HOST}' is not known")
    path = write_config(launch.directory, launch.chain())
    one_line(run_cli(f"--config={path}", f"--Pipeline.listen={address}", *launch.keys.run_options()),
             f"pipeline-run: error: command line: --Pipeline.listen: cannot listen on {address}: '{UNKNOWN_HOST}' is "
             "neither a network interface nor a host name that is known")
    assert not launch.output.exists()


def test_a_connect_to_a_zeromq_service_without_curve_says_it_is_no_run(launch: Launcher) -> None:
    """A plain ZeroMQ socket (another service's, on a mistyped port) was taken for a run that refused our key."""
    with zmq.Context() as context, context.socket(zmq.ROUTER) as service:
        port = service.bind_to_random_port("tcp://127.0.0.1")
        result = worker_cli(launch, f"--connect=tcp://127.0.0.1:{port}")
    assert result.returncode == 1, result.stderr
    assert lines(result.stderr) == ["pipeline-worker: error: what listens there is no run: it does not use CurveZMQ "
                                    "(is that port the run's Pipeline.listen, and not another service's?)"]


def test_a_service_without_curve_is_told_by_its_greeting_when_libzmq_does_not_say(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Which end of the connection reports the mechanism mismatch is a race: lost (the event never seen here), the
    worker said "authentication failed"; the greeting of what listens there tells it."""
    monkeypatch.setattr(remote_agent, "_NOT_CURVE", -1)
    monkeypatch.setattr(remote_agent, "REASON_WAIT_SECONDS", 0.2)
    keys = Keys.make(tmp_path)
    own = load_key_pair(str(keys.secret("node7")), "--key")
    login = Login(STAGE, 1, own, load_public_key(str(keys.server_public), "--server-key"), "", "")
    with contextlib.ExitStack() as stack:
        context = stack.enter_context(zmq.Context())
        service = stack.enter_context(context.socket(zmq.ROUTER))
        service.linger = 0
        port = service.bind_to_random_port("tcp://127.0.0.1")
        client = stack.enter_context(context.socket(zmq.DEALER))
        client.linger = 0
        secure_client(client, own, login.server.public)
        with pytest.raises(remote_agent.JoinError) as raised:
            remote_agent.ask_spec(client, login, remote_agent.Membership(), f"tcp://127.0.0.1:{port}")
    assert str(raised.value) == ("what listens there is no run: it does not use CurveZMQ (is that port the run's "
                                 "Pipeline.listen, and not another service's?)")
    assert raised.value.status == 1


def test_a_connect_to_a_server_of_another_protocol_says_it_is_no_run(launch: Launcher) -> None:
    """A web server on the port: libzmq's handshake fails without a reason, which read as a refused key."""
    with answering(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n") as port:
        result = worker_cli(launch, f"--connect=tcp://127.0.0.1:{port}")
    assert result.returncode == 1, result.stderr
    assert lines(result.stderr) == ["pipeline-worker: error: what listens there is no run: it does not speak ZeroMQ "
                                    "(is that port the run's Pipeline.listen, and not another service's?)"]


@pytest.mark.parametrize("listener", ["nothing", "a silent TCP server"])
def test_a_connect_where_no_run_answers_says_what_it_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                          listener: str) -> None:
    """Whether a connection was made tells a port nothing listens on from another service's port."""
    monkeypatch.setattr(remote_agent, "HELLO_TIMEOUT_SECONDS", 1.0)
    keys = Keys.make(tmp_path)
    own = load_key_pair(str(keys.secret("node7")), "--key")
    login = Login(STAGE, 1, own, load_public_key(str(keys.server_public), "--server-key"), "", "")
    with contextlib.ExitStack() as stack:
        if listener == "nothing":
            port = free_port()
        else:
            server = stack.enter_context(socket.create_server(("127.0.0.1", 0)))  # accepts, never says a word
            port = server.getsockname()[1]
        context = stack.enter_context(zmq.Context())
        client = stack.enter_context(context.socket(zmq.DEALER))
        client.linger = 0
        secure_client(client, own, login.server.public)
        client.connect(f"tcp://127.0.0.1:{port}")
        with pytest.raises(remote_agent.JoinError) as raised:
            remote_agent.ask_spec(client, login, remote_agent.Membership())
    said = str(raised.value)
    assert said.startswith("no answer from the run within 1 s: "), said
    if listener == "nothing":
        assert "nothing accepted a connection at that host and port" in said
    else:
        assert "a connection was made, but what listens there did not answer as a run does" in said


@pytest.mark.parametrize(("addresses", "said"), [
    (["127.0.1.1"], ["127.0.1.1"]),
    (["127.0.0.1", "::1"], ["127.0.0.1", "::1"]),
    (["127.0.0.1", "10.1.2.3"], []),  # another host may reach it by the second
    ([], []),
])
def test_a_listen_name_that_only_this_host_reaches_is_told(monkeypatch: pytest.MonkeyPatch, addresses: list[str],
                                                            said: list[str]) -> None:
    """A login node's own name in /etc/hosts often stands for 127.0.1.1: a run listening there waited worker_timeout
    for workers that could never reach it, and said only that none joined. The door warns as it binds."""
    def resolve(host: str, *args: object, **kwargs: object) -> list[tuple]:
        if not addresses:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, 0)) for address in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    assert loopback_only("login1") == said
    for host in ("localhost", "LOCALHOST", "node.localhost", "127.0.0.1", "::1", "*"):  # meant as they are
        assert loopback_only(host) == []
