"""Start a run that listens for remote workers, and ``pipeline-worker`` processes, for the tests of remote workers.

Every process is a real subprocess on loopback (or in network namespaces), with its output in
files; a :class:`Launcher` kills whatever is still running when its test ends, by process id.
"""

from __future__ import annotations

import contextlib
import os
import socket
import socketserver
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.auth.keys import generate_key_pair, key_paths
from tests.cli_helpers import ROOT, read_lines, write_config
from tests.remote_steps import ROLE, WAIT_SECONDS, wait_for

#: The console scripts of this checkout's environment.
BIN = Path(sys.executable).parent
#: Longest a run or a worker of these tests may take (each takes seconds).
PROCESS_SECONDS = 40.0
#: The worker keys the run accepts, and one it does not.
AUTHORIZED = ("node7", "intruder", "accomplice")
STRANGER = "stranger"
#: The step names of :func:`chain_config`.
PRODUCER, STAGE, CONSUMER = "NUMS", "TAG", "WRITE"
#: Fast death detection: 5 missed beats of 0.2 s.
FAST_HEARTBEAT = "--Pipeline.heartbeat_interval=0.2"


#: The loopback hosts a Launcher listens on with a free port: IPv4's and IPv6's (written as in an address).
LOOPBACKS = {"127.0.0.1": socket.AF_INET, "[::1]": socket.AF_INET6}


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that nothing listens on now (the kernel's pick for port 0) on a loopback host of LOOPBACKS."""
    with socket.socket(LOOPBACKS[host], socket.SOCK_STREAM) as probe:
        probe.bind((host.strip("[]"), 0))
        return probe.getsockname()[1]


@dataclass(frozen=True)
class Keys:
    """The key files of a test, made with pipeline.auth.keys in ``directory``."""

    directory: Path

    @classmethod
    def make(cls, directory: Path) -> Keys:
        """The server's pair, the authorized workers' pairs (their public keys in authorized/), a stranger's pair."""
        generate_key_pair(directory, "server")
        for name in (*AUTHORIZED, STRANGER):
            generate_key_pair(directory / "workers", name)
        (directory / "authorized").mkdir()
        for name in AUTHORIZED:
            public = key_paths(directory / "workers", name)[0]
            (directory / "authorized" / public.name).write_bytes(public.read_bytes())
        return cls(directory)

    @property
    def server_secret(self) -> Path:
        """The run's secret key file."""
        return key_paths(self.directory, "server")[1]

    @property
    def server_public(self) -> Path:
        """The run's public key file (what workers get as --server-key)."""
        return key_paths(self.directory, "server")[0]

    @property
    def authorized(self) -> Path:
        """The run's authorized_keys directory."""
        return self.directory / "authorized"

    def secret(self, name: str) -> Path:
        """Worker ``name``'s secret key file."""
        return key_paths(self.directory / "workers", name)[1]

    def public(self, name: str) -> Path:
        """Worker ``name``'s public key file."""
        return key_paths(self.directory / "workers", name)[0]

    def run_options(self) -> list[str]:
        """The run's key options."""
        return [f"--Pipeline.server_key={self.server_secret}", f"--Pipeline.authorized_keys={self.authorized}"]


@dataclass
class Proc:
    """A subprocess of a test, its stdout and stderr in files."""

    name: str
    popen: subprocess.Popen[bytes]
    out: Path
    err: Path

    @property
    def pid(self) -> int:
        """Its process id."""
        return self.popen.pid

    @property
    def stdout(self) -> str:
        """What it wrote to stdout so far."""
        return self.out.read_text(encoding="utf-8", errors="replace")

    @property
    def stderr(self) -> str:
        """What it wrote to stderr so far."""
        return self.err.read_text(encoding="utf-8", errors="replace")

    def wait(self, timeout: float = PROCESS_SECONDS) -> int:
        """Its exit status; an AssertionError with its stderr if it is still running after ``timeout`` s."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()
            raise AssertionError(f"{self.name} still running after {timeout:g} s; its stderr:\n{self.stderr}") from None


class Launcher:
    """Starts the processes of one test (a run listening on a free loopback port, workers) and ends them."""

    def __init__(self, directory: Path, host: str = "127.0.0.1") -> None:
        self.directory = directory
        self.keys = Keys.make(directory / "keys")
        self.host = host
        self.port = free_port(host) if host in LOOPBACKS else 5570
        self.gate = directory / "gate"
        self.gate.mkdir()
        self.sink_gate = directory / "sink-go"  # a file of its own: Tagged's gate, a folder, would open it at once
        self.output = directory / "out.jsonl"
        self.hold = directory / "go"
        self.processes: list[Proc] = []

    @property
    def address(self) -> str:
        """Where the run listens."""
        return f"tcp://{self.host}:{self.port}"

    def start(self, name: str, command: Sequence[str | Path], cwd: Path = ROOT,
              env: Mapping[str, str] | None = None) -> Proc:
        """Start ``command``; its output goes to files named after ``name``."""
        out, err = self.directory / f"{name}.out", self.directory / f"{name}.err"
        with out.open("wb") as stdout, err.open("wb") as stderr:
            popen = subprocess.Popen([str(part) for part in command], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                                     stdout=stdout, stderr=stderr)
        proc = Proc(name, popen, out, err)
        self.processes.append(proc)
        return proc

    def run(self, config: dict[str, Any], *options: str, cwd: Path = ROOT, env: Mapping[str, str] | None = None,
            prefix: Sequence[str] = ()) -> Proc:
        """``pipeline-run`` of ``config``, listening at :attr:`address` with the test's keys."""
        path = write_config(self.directory, config)
        return self.start("run", [*prefix, sys.executable, "-m", "pipeline", f"--config={path}",
                                  f"--Pipeline.listen={self.address}", *self.keys.run_options(), FAST_HEARTBEAT,
                                  *options], cwd=cwd, env=env)

    def worker(self, *options: str, key: str = "node7", server_key: Path | None = None, step: str = STAGE,
               role: str = "remote", name: str = "worker", cwd: Path = ROOT, env: Mapping[str, str] | None = None,
               prefix: Sequence[str] = ()) -> Proc:
        """``pipeline-worker`` joining ``step`` of the run with key ``key``, told that the run's key is
        ``server_key`` (default: the right one), in the role ``role`` (remote_steps.ROLE)."""
        command = [*prefix, BIN / "pipeline-worker", f"--connect={self.address}",
                   f"--server-key={server_key or self.keys.server_public}", f"--key={self.keys.secret(key)}",
                   f"--step={step}", *options]
        return self.start(name, command, cwd=cwd, env={**(os.environ if env is None else env), ROLE: role})

    def gated_chain(self, nb_thread: int) -> dict[str, Any]:
        """The chain with a GatedSink for consumer, whose finish() waits for the file :attr:`sink_gate`."""
        config = self.chain(nb_thread=nb_thread)
        config["Pipeline"]["consumer_conf"] = {"name": CONSUMER, "module": "tests.remote_steps", "class": "GatedSink"}
        del config["JsonLinesWriter"]
        config["GatedSink"] = {"gate": str(self.sink_gate)}
        return config

    def chain(self, nb_thread: int = 1, count: int = 20, workers: int = 0, hold: bool = False) -> dict[str, Any]:
        """NUMS (Numbers) -> TAG (Tagged, ``nb_thread`` local workers) -> WRITE (JsonLinesWriter to :attr:`output`).

        ``workers``: TAG's barrier (every worker starts one message before any goes on);
        ``hold``: NUMS waits half-way for the file :attr:`hold`.
        """
        return {
            "version": 1,
            "Pipeline": {
                "producer_conf": {"name": PRODUCER, "module": "tests.remote_steps", "class": "Numbers",
                                  "next_steps": STAGE},
                "stagers_conf": [{"name": STAGE, "module": "tests.remote_steps", "class": "Tagged",
                                  "nb_thread": nb_thread, "next_steps": CONSUMER}],
                "consumer_conf": {"name": CONSUMER, "module": "algorithms.basic", "class": "JsonLinesWriter"},
            },
            "Numbers": {"count": count, "hold": str(self.hold) if hold else ""},
            "Tagged": {"gate": str(self.gate), "workers": workers},
            "JsonLinesWriter": {"path": str(self.output)},
        }

    def outputs(self) -> list[dict[str, int]]:
        """What the run wrote: one {"value", "pid"} per message of TAG."""
        return read_lines(self.output) if self.output.exists() else []

    def close(self) -> None:
        """Kill every process still running (by its own id) and reap it."""
        for proc in self.processes:
            if proc.popen.poll() is None:
                proc.popen.kill()
            proc.popen.wait()

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def wait_during(proc: Proc, condition: Callable[[], Any], what: str, timeout: float = WAIT_SECONDS) -> Any:
    """``condition()`` once true, while ``proc`` runs; an AssertionError with its stderr if it ends first or
    the wait times out."""
    def check() -> Any:
        if result := condition():
            return result
        if proc.popen.poll() is not None:
            raise AssertionError(f"{proc.name} exited with status {proc.popen.returncode} before {what}; its "
                                 f"stderr:\n{proc.stderr}")
        return None

    try:
        return wait_for(check, what, timeout)
    except TimeoutError as err:
        raise AssertionError(f"{err}; the stderr of {proc.name}:\n{proc.stderr}") from None


def servers(outputs: list[dict[str, int]], run: Proc) -> set[int]:
    """Who ran each output: the run itself (its own worker threads), or the pipeline-worker whose worker process
    ran it (the parent of that process)."""
    return {row["pid"] if row["pid"] == run.pid else row["keeper"] for row in outputs}


def duplicates(outputs: list[dict[str, int]]) -> list[int]:
    """The values that arrived more than once (empty when every value came once)."""
    return sorted(value for value, times in Counter(row["value"] for row in outputs).items() if times > 1)


def lines(text: str) -> list[str]:
    """The non-empty lines of ``text``."""
    return [line for line in text.splitlines() if line.strip()]


@contextlib.contextmanager
def answering(answer: bytes) -> Iterator[int]:
    """A TCP server on loopback that reads what each connection sends first, answers ``answer`` and closes it; its
    port."""

    class Answer(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.recv(1024)
            self.request.sendall(answer)

    with socketserver.TCPServer(("127.0.0.1", 0), Answer) as server:
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            yield server.server_address[1]
        finally:
            server.shutdown()
            thread.join(timeout=10)
    assert not thread.is_alive()
