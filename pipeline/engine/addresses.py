"""Where each step's router listens, unique per run so that runs in one process never meet; and the
run's private directory for its ipc endpoints, named after the run's process so that one a killed run
left behind can be told from a live run's and swept.

An ipc endpoint's path must fit in a Unix socket's address (107 bytes on Linux): the private directory goes in
the temporary directory (TMPDIR's), unless its path is too long for that (a SLURM job's may be 70 characters and
more) or it has none that can be written; then in the first of SHORT_BASES that can.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import tempfile
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import zmq

from pipeline.config.traits import unencodable
from pipeline.errors import ConfigError

#: The private directories of runs (and of pipeline-worker) start with this, then their process id and "-".
PRIVATE_PREFIX = "pipeline-"
#: Where a private directory goes when the temporary directory leaves no room for its ipc endpoints' paths, or has
#: none that can be written: short directories of every Linux host.
SHORT_BASES = ("/tmp", "/dev/shm", "/var/tmp")
#: An ipc endpoint's name in a private directory, at its longest (``Addresses.outside``: 12 hex digits).
LONGEST_ENDPOINT = 12
#: The characters that ``tempfile.mkdtemp`` adds after a private directory's prefix.
RANDOM_CHARS = 8
#: The file in a private directory that says whose it is: the owner's pid, when that process started, and its pid
#: namespace. Only a directory holding it is ever swept: a user's own ``pipeline-2024-results`` was removed with its
#: contents when the next run started (its "pid" 2024 was not running), and a run in another pid namespace sharing
#: /tmp (a container) took a live run's directory for a dead one's.
OWNER_FILE = ".owner"


@dataclass(frozen=True)
class Addresses:
    """The endpoints of one run: inproc between its threads, ipc to its worker processes.

    The ipc endpoints live in ``ipc_dir``, a directory only the run's user can enter (0700), so
    only that user's processes can connect to them.
    """

    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    ipc_dir: str = ""

    def inbox(self, step: str) -> str:
        """Where senders push messages for ``step``."""
        return f"inproc://{self.run_id}/{step}/in"

    def work(self, step: str) -> str:
        """Where ``step``'s workers ask its router for work."""
        return f"inproc://{self.run_id}/{step}/work"

    def notices(self, step: str) -> str:
        """Where ``step``'s router hears that one of its worker processes died."""
        return f"inproc://{self.run_id}/{step}/notices"

    def outside(self, step: str) -> str:
        """Where ``step``'s worker processes ask its router for work (ipc: short paths, not step names)."""
        return f"ipc://{self.ipc_dir}/{uuid.uuid5(uuid.NAMESPACE_OID, step).hex[:12]}"

    def host(self) -> str:
        """Where worker processes ask what to run, and exchange heartbeats with the run."""
        return f"ipc://{self.ipc_dir}/host"


def private_dir(role: str = "") -> str:
    """A new directory that only the user can enter (0700), named after this process (``role``: a word after the
    prefix, such as "worker"), where its ipc endpoints' paths fit; a killed process's is swept by the next one
    (``sweep_stale_dirs``). A ConfigError if no directory of ``bases()`` can hold it."""
    sweep_stale_dirs()
    prefix = f"{PRIVATE_PREFIX}{role + '-' if role else ''}{os.getpid()}-"
    # The endpoint's path: the base, "/", the prefix, the random characters, "/", the endpoint's name.
    room = zmq.IPC_PATH_MAX_LEN - len(prefix) - RANDOM_CHARS - LONGEST_ENDPOINT - 2
    refused = []
    for base in bases():
        if len(os.fsencode(base)) > room:
            refused.append(f"{base} is too long")
        elif unencodable(base) is not None:  # an endpoint is text, which ZeroMQ takes in UTF-8
            refused.append(f"{base!r} is not UTF-8")
        elif not os.access(base, os.W_OK | os.X_OK):
            refused.append(f"{base} cannot be written")
        else:
            try:
                made = tempfile.mkdtemp(prefix=prefix, dir=base)
                Path(made, OWNER_FILE).write_text(owner_line(os.getpid()), encoding="ascii")
                return made
            except OSError as err:
                refused.append(f"{base} cannot be written ({err.strerror or err})")
    raise ConfigError("TMPDIR", "", f"no room for a private directory of ipc sockets ({'; '.join(refused)}): "
                      f"expected a writable directory whose path is at most {room} bytes long")


def bases() -> list[str]:
    """Where private directories go, in order: the temporary directory (TMPDIR's, unless none can be written), then
    SHORT_BASES."""
    try:
        temporary = [tempfile.gettempdir()]
    except FileNotFoundError:  # none of TMPDIR, /tmp, /var/tmp... can be written
        temporary = [os.environ["TMPDIR"]] if os.environ.get("TMPDIR") else []
    return list(dict.fromkeys([*temporary, *SHORT_BASES]))


def owner_line(pid: int) -> str:
    """What OWNER_FILE says of process ``pid``: "PID START NAMESPACE"."""
    return f"{pid} {_start_time(pid)} {_pid_namespace(pid)}\n"


def _start_time(pid: int) -> str:
    """When process ``pid`` started, in clock ticks since boot ("-" where it cannot be read)."""
    fields = proc_stat(pid)
    return fields[19] if fields is not None and len(fields) > 19 else "-"


def _pid_namespace(pid: int) -> str:
    """The pid namespace of process ``pid`` ("-" where it cannot be read)."""
    try:
        return os.readlink(f"/proc/{pid}/ns/pid")
    except OSError:
        return "-"


def owner_gone(directory: Path, namespace: str) -> bool:
    """Whether ``directory`` is a private directory of the user's whose owner has ended: its OWNER_FILE (the user's
    own file, not a link) names a process of pid namespace ``namespace`` (this process's) that no longer runs, or a
    new process under its pid. One without that file, or of another namespace (whose pids this one cannot see), is
    not judged: False. OSError if it cannot be looked at."""
    owner = directory / OWNER_FILE
    if not owned(directory, stat.S_ISDIR) or not owned(owner, stat.S_ISREG):
        return False
    said = owner.read_text(encoding="ascii", errors="replace").split()
    if len(said) != 3 or not said[0].isdigit() or said[2] != namespace:
        return False
    pid, start = int(said[0]), said[1]
    return _start_time(pid) != start or not process_alive(pid)


def sweep_stale_dirs() -> int:
    """Remove the private directories of the user's runs whose process is gone (killed with SIGKILL, it could
    not remove its own); how many were removed. Another user's, a live process's, or one the framework did not make
    (no OWNER_FILE) are left alone."""
    removed, namespace = 0, _pid_namespace(os.getpid())
    for path in (path for base in bases() for path in Path(base).glob(f"{PRIVATE_PREFIX}*")):
        with contextlib.suppress(OSError):  # gone meanwhile, or not ours to look at
            if owner_gone(path, namespace):
                shutil.rmtree(path)
                removed += 1
    return removed


def owned(path: Path, is_kind: Callable[[int], bool]) -> bool:
    """Whether ``path`` itself (a link not followed: anyone's, to one of ours) is of this user and of the kind that
    ``is_kind`` (``stat.S_ISDIR``, ``stat.S_ISREG``) tells from its mode; OSError if it cannot be looked at."""
    status = path.lstat()
    return is_kind(status.st_mode) and status.st_uid == os.getuid()


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (one of another user counts: not ours to judge) and has not ended: a process
    killed and not yet reaped by its parent (a zombie, on Linux) is gone, whatever ``kill(pid, 0)`` says."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    fields = proc_stat(pid)
    if fields is None:
        return True  # no /proc (macOS), or gone meanwhile: kill() said it was there
    return fields[0] not in ("Z", "X")


def is_stopped(pid: int) -> bool:
    """Whether process ``pid`` is stopped (SIGSTOP, or a debugger's stop), from /proc; False where it cannot tell."""
    fields = proc_stat(pid)
    return fields is not None and fields[0] in ("T", "t")


def proc_stat(pid: int) -> list[str] | None:
    """The fields of ``/proc/PID/stat`` after the process's name: its state first (``R``, ``S``, ``T``, ``Z``...), the
    exit status it ended with last; None where there are none to read (gone, or no /proc)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    return text.rsplit(")", 1)[-1].split() or None
