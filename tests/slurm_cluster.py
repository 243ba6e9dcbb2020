"""A real single-node SLURM cluster for the tests: munged, slurmctld on a "login" host, slurmd on a "compute" host.

The hosts are network namespaces (pipeline.bench.netns): the login node at 169.254.78.1, the
compute node ``cn1`` at 169.254.78.11 with 2 CPUs, and a user's desktop (no part of SLURM) at
169.254.78.12, for the monitor. What runs on the login node (the run, sbatch, scancel) reaches the
others only over that network, as on a real cluster; the file system is shared, as a cluster's home
directories are. Every daemon is a child of the test process, its
config, state and logs in one temporary directory; :meth:`SlurmCluster.close` cancels the jobs,
stops the daemons by pid and removes the namespaces (with whatever SLURM started in them).

Debian's ``slurm-wlm`` and ``munge`` packages provide the daemons (``.ci/run`` installs them as root);
:func:`unavailable` says why a cluster cannot be started here, and the tests skip with that reason.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from pipeline.bench import netns

#: The daemons and client commands the cluster needs, by the Debian package that has them.
PROGRAMS = {"munged": "munge", "slurmctld": "slurmctld", "slurmd": "slurmd", "sbatch": "slurm-client",
            "scontrol": "slurm-client", "sinfo": "slurm-client"}
#: The compute node's name and CPUs (config_overrides lets a 1-core machine claim 2).
NODE, CPUS = "cn1", 2
#: Seconds the cluster may take to show its node idle (slurmd registers within a second or two).
START_SECONDS = 30.0
#: Seconds a SLURM client command may take.
CLIENT_SECONDS = 15.0
#: Seconds the daemons get to stop on SIGTERM before SIGKILL.
STOP_SECONDS = 10.0
#: The states of a job that has ended (scontrol's JobState).
ENDED = {"COMPLETED", "CANCELLED", "FAILED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "OUT_OF_MEMORY", "BOOT_FAIL",
         "DEADLINE"}
#: How often a wait asks the cluster again.
POLL_SECONDS = 0.1

#: slurm.conf, its paths in the cluster's directory. proctrack/linuxproc and task/none need no
#: cgroups of their own; KillWait=5 bounds how long a cancelled job's processes may linger;
#: MinJobAge=5 keeps "sbatch --wait" polling every 2 s (it backs off up to MinJobAge / 2).
SLURM_CONF = """\
ClusterName=zptest
SlurmctldHost={controller}({login})
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={dir}/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation={dir}/state
SlurmdSpoolDir={dir}/spool
SlurmctldPidFile={dir}/slurmctld.pid
SlurmdPidFile={dir}/slurmd.pid
SlurmctldLogFile={dir}/slurmctld.log
SlurmdLogFile={dir}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
MpiDefault=none
SwitchType=switch/none
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=5
MinJobAge=5
MailProg=/bin/true
NodeName={node} NodeAddr={node_address} CPUs={cpus} State=UNKNOWN
PartitionName=batch Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def unavailable() -> str | None:
    """Why a SLURM cluster cannot be started here; None if it can be tried."""
    missing = sorted({package for program, package in PROGRAMS.items() if shutil.which(program) is None})
    if missing:
        return f"SLURM is not installed (apt-get install slurm-wlm munge: missing {', '.join(missing)})"
    return netns.unavailable()


class ClusterError(RuntimeError):
    """The cluster did not start, or a client command failed: the message holds the daemons' words."""


class SlurmCluster:
    """The cluster: start with :meth:`start`, run SLURM commands on the login node, :meth:`close` at the end."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.network = netns.Network("slurm", hosts=2, net=78)
        self.login, self.node, self.desk = self.network.head, *self.network.hosts
        self.daemons: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.conf = directory / "slurm.conf"

    @property
    def env(self) -> dict[str, str]:
        """The environment of a command on the cluster: SLURM_CONF, and this checkout's console scripts
        first on PATH (sbatch passes the environment on to the job, so the job finds them too)."""
        path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
        return {**os.environ, "SLURM_CONF": str(self.conf), "PATH": path}

    @property
    def hosts(self) -> dict[str, str]:
        """The host names of the docs, and the addresses that stand for them here."""
        return {"login1": self.login.address, NODE: self.node.address, "mydesktop": self.desk.address}

    def start(self) -> SlurmCluster:
        """Make the network, start munged, slurmctld and slurmd, and wait until the node is idle."""
        self.network.__enter__()
        (self.directory / "state").mkdir()
        (self.directory / "spool").mkdir()
        key = self.directory / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        self.conf.write_text(SLURM_CONF.format(
            controller=socket.gethostname().split(".")[0], login=self.login.address, dir=self.directory,
            node=NODE, node_address=self.node.address, cpus=CPUS), encoding="utf-8")
        # --force: munged wants every directory above its socket open to all; root reads it anyway.
        self._daemon("munged", self.login, "munged", "--foreground", "--force",
                     f"--socket={self.directory}/munge.socket", f"--key-file={key}",
                     f"--pid-file={self.directory}/munged.pid", f"--seed-file={self.directory}/munged.seed",
                     f"--log-file={self.directory}/munged.log")
        self._wait(lambda: (self.directory / "munge.socket").exists(), "munged's socket")
        self._daemon("slurmctld", self.login, "slurmctld", "-D", "-c", "-f", str(self.conf))
        self._daemon("slurmd", self.node, "slurmd", "-D", "-f", str(self.conf), "-N", NODE)
        self._wait(lambda: self.node_state() == "idle", f"node {NODE} to be idle")
        return self

    def _daemon(self, name: str, host: netns.Host, *argv: str) -> None:
        log = (self.directory / f"{name}.out").open("wb")
        with log:
            popen = subprocess.Popen(host.command(argv), stdin=subprocess.DEVNULL, stdout=log,
                                     stderr=subprocess.STDOUT, env=self.env)
        self.daemons.append((name, popen))

    def _wait(self, condition: Callable[[], object], what: str, timeout: float = START_SECONDS) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            for name, popen in self.daemons:
                if popen.poll() is not None:
                    raise ClusterError(f"{name} exited with status {popen.returncode} while waiting for {what}:\n"
                                       + self.logs(name))
            if time.monotonic() > deadline:
                raise ClusterError(f"waited {timeout:g} s for {what}:\n" + self.logs())
            time.sleep(POLL_SECONDS)

    def logs(self, *names: str) -> str:
        """The last lines the daemons wrote (all of them unless named)."""
        texts = []
        for name, _ in self.daemons:
            if names and name not in names:
                continue
            for path in (self.directory / f"{name}.out", self.directory / f"{name}.log"):
                if path.exists():
                    tail = path.read_text(errors="replace").splitlines()[-15:]
                    texts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(texts)

    def command(self, argv: Sequence[str]) -> list[str]:
        """``argv`` run on the login node."""
        return self.login.command(argv)

    def client(self, *argv: str, env: Mapping[str, str] | None = None) -> str:
        """Run a SLURM client command on the login node; its stdout, or a ClusterError with its stderr."""
        done = subprocess.run(self.command(argv), capture_output=True, text=True, timeout=CLIENT_SECONDS,
                              env=dict(env or self.env), check=False)
        if done.returncode != 0:
            raise ClusterError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
        return done.stdout

    def node_state(self) -> str:
        """The compute node's state as sinfo says it (``idle``, ``alloc``, ``unk*``...); "" if sinfo cannot say."""
        try:
            return self.client("sinfo", "--noheader", "--nodes", NODE, "--format=%t").strip()
        except (ClusterError, subprocess.TimeoutExpired):
            return ""

    def job_state(self, job: int) -> str:
        """A job's JobState (``PENDING``, ``RUNNING``, ``COMPLETED``, ``CANCELLED``...), from scontrol."""
        shown = self.client("scontrol", "show", "job", str(job))
        found = re.search(r"\bJobState=(\S+)", shown)
        if found is None:
            raise ClusterError(f"scontrol show job {job} says no JobState:\n{shown}")
        return found.group(1)

    def final_state(self, job: int, timeout: float) -> str:
        """The job's state once it has ended (COMPLETED, CANCELLED, FAILED...); a ClusterError if it has not
        within ``timeout`` s. Call it while the job runs: its record goes MinJobAge seconds after it ends."""
        deadline = time.monotonic() + timeout
        while (state := self.job_state(job)) not in ENDED:
            if time.monotonic() > deadline:
                raise ClusterError(f"job {job} is still {state} after {timeout:g} s")
            time.sleep(POLL_SECONDS)
        return state

    def jobs(self) -> list[int]:
        """The jobs not yet ended (pending, running or completing)."""
        return [int(job) for job in self.client("squeue", "--noheader", "--format=%A").split()]

    def cancel_all(self, timeout: float = STOP_SECONDS + 10) -> None:
        """Cancel every job left and wait until none is left (KillWait bounds it)."""
        if self.daemons and self.jobs():
            self.client("scancel", *map(str, self.jobs()))
            self._wait(lambda: not self.jobs(), "the cancelled jobs to end", timeout)

    def close(self) -> None:
        """Cancel the jobs, stop the daemons by pid (slurmd and slurmctld, then munged), remove the namespaces."""
        try:
            if all(popen.poll() is None for _, popen in self.daemons):
                self.cancel_all()
        except (ClusterError, subprocess.TimeoutExpired):
            pass  # the namespaces' removal below kills whatever the jobs left
        finally:
            for _, popen in reversed(self.daemons):
                _stop(popen)
            self.network.close()


def _stop(popen: subprocess.Popen[bytes]) -> None:
    """SIGTERM, a bounded wait, then SIGKILL."""
    if popen.poll() is None:
        popen.send_signal(signal.SIGTERM)
        try:
            popen.wait(STOP_SECONDS)
            return
        except subprocess.TimeoutExpired:
            popen.kill()
    popen.wait()
