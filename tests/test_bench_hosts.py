"""Hosts as network namespaces (pipeline/bench/netns.py) and the measure of throughput with 1 and 2 remote
worker hosts (``python -m pipeline.bench.hosts``, docs/performance.md).

Skipped, with the reason, where namespaces cannot be made (not root, no iproute2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from pipeline.bench import hosts, netns
from tests.remote_steps import wait_for


@pytest.fixture
def namespaces_possible() -> None:
    """Skip where namespaces cannot be made."""
    reason = netns.unavailable()
    if reason:
        pytest.skip(reason)


def namespaces() -> set[str]:
    """The network namespaces of the machine now."""
    return {line.split()[0] for line in netns.ip("netns", "list").stdout.splitlines() if line.strip()}


def stop(bench: subprocess.Popen[str]) -> None:
    """End the measure by its pid if it still runs (SIGTERM: it removes its namespaces), and remove what it left."""
    if bench.poll() is None:
        bench.terminate()
        try:
            bench.wait(netns.REAP_SECONDS + 5)
        except subprocess.TimeoutExpired:
            bench.kill()
            bench.wait()
    left = sorted(name for name in namespaces() if name.startswith(f"zp-bench-{bench.pid}-"))
    netns.remove([netns.Host(name, "") for name in left])


@pytest.mark.usefixtures("namespaces_possible")
def test_a_network_goes_with_what_runs_in_it_even_after_a_failure() -> None:
    network = netns.Network("t", hosts=1, net=80)
    with pytest.raises(RuntimeError, match="the test failed"), network:
        host = network.hosts[0]
        assert {network.head.namespace, host.namespace} <= namespaces()
        ping = subprocess.run(host.command([sys.executable, "-c", "import socket; s = socket.create_connection("
                                            f"('{network.head.address}', 9), 5)"]), capture_output=True, text=True,
                              timeout=10, check=False)
        assert "Connection refused" in ping.stderr  # the head answers over the link (nothing listens on port 9)
        left = subprocess.Popen(host.command(["sleep", "60"]))
        wait_for(lambda: left.pid in host.pids(), "the process to be in the namespace")
        raise RuntimeError("the test failed")
    assert left.wait(10) == -9  # killed by its pid
    assert not {network.head.namespace, host.namespace} & namespaces()


@pytest.mark.slow
@pytest.mark.usefixtures("namespaces_possible")
def test_the_hosts_measure_runs_and_checks_every_run() -> None:
    bench = subprocess.Popen([sys.executable, "-m", "pipeline.bench.hosts", "--repeat=1", "--messages=40", "--json"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = bench.communicate(timeout=90)
    finally:
        stop(bench)
    assert bench.returncode == 0, err
    result = json.loads(out)
    assert [len(result["hosts"][n]["samples"]) for n in ("1", "2")] == [1, 1]
    assert result["ratio"]["samples"] == [result["hosts"]["2"]["samples"][0] / result["hosts"]["1"]["samples"][0]]
    assert result["target"]["text"] == "2 hosts / 1 host >= 1.8x"
    assert not any(name.startswith(f"zp-bench-{bench.pid}-") for name in namespaces())  # its namespaces are gone
    assert hosts.table(result).splitlines()[-1].startswith("2 hosts / 1 host, per pair of runs: min ")


def test_without_root_the_measure_says_why_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(SystemExit) as exited:
        hosts.main(["--repeat=1"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == "pipeline-bench hosts: needs root to make network namespaces\n"
