"""pipeline.config.locks: a file that another process holds locked (as HDF5 and the dead-letter file lock theirs) is
told with that process's pid, by a probe that neither creates nor truncates the file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pipeline.config.locks import in_use

#: A process that holds an exclusive flock on argv[1] until its stdin closes, as HDF5 holds a file it writes.
HOLDER = """
import fcntl, sys
with open(sys.argv[1], "ab") as held:
    fcntl.flock(held, fcntl.LOCK_EX)
    print("ready", flush=True)
    sys.stdin.read()
"""


def test_a_file_another_process_holds_is_in_use_with_its_pid(tmp_path: Path) -> None:
    """The probe names the holder, leaves the file as it was, and finds it free once the holder let it go."""
    path = tmp_path / "out.h5"
    path.write_bytes(b"rows")
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as holder:
        try:
            assert holder.stdout.readline() == "ready\n"
            assert in_use(str(path)) == f"in use by another run (pid {holder.pid})"
        finally:
            holder.stdin.close()
            assert holder.wait(timeout=30) == 0
    assert in_use(str(path)) is None
    assert path.read_bytes() == b"rows"


def test_an_absent_file_is_free_and_not_created(tmp_path: Path) -> None:
    """Nothing to say of a file that a run will create."""
    assert in_use(str(tmp_path / "new.h5")) is None
    assert list(tmp_path.iterdir()) == []
