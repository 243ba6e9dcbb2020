"""Network namespaces as stand-in hosts on one machine: a head and N hosts on a private link-local network.

The head's namespace holds a bridge at ``169.254.NET.1``; host ``k`` (from 1) is a namespace at
``169.254.NET.(10 + k)``, joined to the bridge by a veth pair. Link-local addresses exist only in
these namespaces, so the machine's own network is never touched, and two sets of namespaces of
the same NET cannot collide (each has its own stack). A command runs on a host with
``nsenter --net``: unlike ``ip netns exec`` it leaves the mounts alone, so ``/sys/fs/cgroup``
stays visible (slurmd needs it). Needs root and iproute2; :func:`unavailable` says why not.

Closing the network kills, by pid, every process still inside its namespaces (what SLURM or a
test started there), then deletes them: nothing is left behind even when a test fails.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass

#: Seconds any ``ip`` command may take.
IP_SECONDS = 10.0
#: Seconds the processes left in a namespace get to vanish after SIGKILL.
REAP_SECONDS = 10.0


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; its output as text (not checked)."""
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_SECONDS, check=False)


def _must(*args: str) -> str:
    done = ip(*args)
    if done.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def unavailable() -> str | None:
    """Why namespaces cannot be made here (not root, no ``ip`` or ``nsenter``); None if they can."""
    if os.geteuid() != 0:
        return "needs root to make network namespaces"
    for tool, package in (("ip", "iproute2"), ("nsenter", "util-linux")):
        if shutil.which(tool) is None:
            return f"needs {package}'s {tool} command"
    return None


@dataclass(frozen=True)
class Host:
    """A network namespace standing for a host, and its address on the network."""

    namespace: str
    address: str

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside this host's network namespace (nsenter execs it: the pid is the command's)."""
        return ["nsenter", f"--net=/run/netns/{self.namespace}", "--", *argv]

    def pids(self) -> list[int]:
        """The processes inside this host's namespace now."""
        return [int(pid) for pid in ip("netns", "pids", self.namespace).stdout.split()]


class Network:
    """A head and ``hosts`` hosts, made on entering and removed (processes included) on leaving."""

    def __init__(self, label: str, hosts: int, net: int = 77) -> None:
        tag = f"zp-{label}-{os.getpid()}"  # unique among the runs on this machine now
        self.head = Host(f"{tag}-head", f"169.254.{net}.1")
        self.hosts = [Host(f"{tag}-h{k}", f"169.254.{net}.{10 + k}") for k in range(1, hosts + 1)]
        self.made: list[Host] = []

    def __enter__(self) -> Network:
        try:
            self._make()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _make(self) -> None:
        for host in (self.head, *self.hosts):
            _must("netns", "add", host.namespace)
            self.made.append(host)
            _must("-n", host.namespace, "link", "set", "lo", "up")
        head = self.head.namespace
        _must("-n", head, "link", "add", "br0", "type", "bridge")
        _must("-n", head, "address", "add", f"{self.head.address}/24", "dev", "br0")
        _must("-n", head, "link", "set", "br0", "up")
        for k, host in enumerate(self.hosts, 1):
            # Both ends are made inside their namespaces: their names never meet the machine's own.
            _must("link", "add", f"to{k}", "netns", head, "type", "veth", "peer", "name", "eth0", "netns",
                  host.namespace)
            _must("-n", head, "link", "set", f"to{k}", "master", "br0")
            _must("-n", head, "link", "set", f"to{k}", "up")
            _must("-n", host.namespace, "address", "add", f"{host.address}/24", "dev", "eth0")
            _must("-n", host.namespace, "link", "set", "eth0", "up")

    def close(self) -> None:
        """Kill what runs inside the namespaces, by pid, then delete them (their veth ends go with them)."""
        remove(self.made)
        self.made.clear()


def remove(hosts: Sequence[Host]) -> None:
    """Kill the processes inside the namespaces of ``hosts`` by pid, wait until they are gone (bounded), delete them."""
    for host in hosts:
        for pid in host.pids():
            _kill(pid)
    deadline = time.monotonic() + REAP_SECONDS
    while any(host.pids() for host in hosts) and time.monotonic() < deadline:
        time.sleep(0.05)  # a killed process leaves its namespace when the kernel has torn it down
    for host in reversed(hosts):
        ip("netns", "delete", host.namespace)


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):  # it ended on its own meanwhile
        os.kill(pid, signal.SIGKILL)
