"""A remote worker on a second "host": two network namespaces joined by a veth pair (issue 14).

The run listens in one namespace and the worker connects from the other, over link-local addresses
(169.254.77.0/30) that exist only inside the namespaces this test makes and deletes; the host's own
network is never touched. Skipped, with the reason, where namespaces cannot be made (not root, no
``ip``, a container without the right to).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.remote_helpers import Launcher, duplicates, servers, wait_during
from tests.remote_steps import marker_pids

#: The run's and the worker's address on the veth pair.
HEAD_ADDRESS, NODE_ADDRESS = "169.254.77.1", "169.254.77.2"
#: Seconds any ``ip`` command may take.
IP_SECONDS = 10


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``ip ARGS``; its output as text (not checked)."""
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=IP_SECONDS, check=False)


def _must(*args: str) -> None:
    done = ip(*args)
    if done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")


@pytest.fixture
def namespaces() -> Iterator[tuple[str, str]]:
    """Two network namespaces (head, node) joined by a veth pair; deleted at the end, whatever happened."""
    if shutil.which("ip") is None:
        pytest.skip("needs iproute2's ip command")
    if os.geteuid() != 0:
        pytest.skip("needs root to make network namespaces")
    tag = os.getpid() % 100_000  # unique among the tests running on this machine now
    head, node = f"zp-head-{tag}", f"zp-node-{tag}"
    made: list[str] = []
    try:
        for name in (head, node):
            done = ip("netns", "add", name)
            if done.returncode != 0:
                pytest.skip(f"cannot make a network namespace here: {done.stderr.strip()}")
            made.append(name)
        _must("link", "add", f"zph{tag}", "netns", head, "type", "veth", "peer", "name", f"zpn{tag}", "netns", node)
        for name, device, address in ((head, f"zph{tag}", HEAD_ADDRESS), (node, f"zpn{tag}", NODE_ADDRESS)):
            _must("-n", name, "address", "add", f"{address}/30", "dev", device)
            _must("-n", name, "link", "set", device, "up")
            _must("-n", name, "link", "set", "lo", "up")
        yield head, node
    finally:
        for name in made:  # deleting a namespace deletes the veth end inside it
            ip("netns", "delete", name)


def test_a_worker_on_a_second_host_joins_the_run(namespaces: tuple[str, str], tmp_path: Path) -> None:
    head, node = namespaces
    with Launcher(tmp_path, host=HEAD_ADDRESS) as launch:  # its processes end before the namespaces go
        run = launch.run(launch.chain(nb_thread=1, workers=2), prefix=("ip", "netns", "exec", head))
        wait_during(run, lambda: run.pid in marker_pids(launch.gate, "ran"), "the run's own worker to start")
        worker = launch.worker(prefix=("ip", "netns", "exec", node))
        assert run.wait() == 0, run.stderr
        assert worker.wait() == 0, worker.stderr
    outputs = launch.outputs()
    assert not duplicates(outputs)
    assert sorted(row["value"] for row in outputs) == list(range(20))
    assert servers(outputs, run) == {run.pid, worker.pid}
