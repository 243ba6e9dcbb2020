"""pipeline.config.locks: a file that another process holds locked (as HDF5 and the dead-letter file lock theirs) is
told with that process's pid, by a probe that neither creates nor truncates the file."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from algorithms.basic import JsonLinesWriter
from pipeline.config.locks import in_use
from tests.cli_helpers import chain_config, write_config
from tests.failure_helpers import pipeline_run

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


def test_a_json_lines_output_that_another_run_writes_is_refused_before_the_run(tmp_path: Path) -> None:
    """Two runs writing one JsonLinesWriter file at once mixed their lines, each saying it wrote them all (exit 0)."""
    out = tmp_path / "out.jsonl"
    out.write_text('"rows of the other run"\n', encoding="utf-8")
    writing = os.open(out, os.O_WRONLY | os.O_APPEND)  # as the run that writes it holds it
    try:
        fcntl.flock(writing, fcntl.LOCK_EX)
        result = pipeline_run(write_config(tmp_path, chain_config(str(out))), "--no-progress")
    finally:
        os.close(writing)
    assert (result.returncode, result.stderr) == (
        2, f"pipeline-run: error: {tmp_path / 'pipeline.json'}: Pipeline.consumer_conf: step 'WRITE': "
           f"JsonLinesWriter.path {str(out)!r} is in use by another run (pid {os.getpid()}) (expected an output file "
           "of its own for each run)\n")
    assert out.read_text(encoding="utf-8") == '"rows of the other run"\n'


def test_a_json_lines_writer_that_finds_its_file_taken_since_its_check_leaves_it_whole(tmp_path: Path) -> None:
    """A run that checked its output before a run of another process took it fails in init(), the other's lines kept;
    an earlier writer of this process that was never finished (a run stopped by Ctrl+C) is taken over."""
    out = tmp_path / "out.jsonl"
    out.write_text("rows\n", encoding="utf-8")
    writer = JsonLinesWriter(path=str(out))
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as holder:
        try:
            assert holder.stdout.readline() == "ready\n"
            with pytest.raises(ValueError, match=re.escape(f"JsonLinesWriter.path {str(out)!r} is in use by another "
                                                           f"run (pid {holder.pid})")):
                writer.init()
        finally:
            holder.stdin.close()
            assert holder.wait(timeout=30) == 0
    assert out.read_text(encoding="utf-8") == "rows\n"
    stopped = JsonLinesWriter(path=str(out))
    stopped.init()
    stopped.run(1)  # and never finished
    writer.check()
    writer.init()
    writer.run(2)
    writer.finish()
    stopped.finish()  # as the garbage collector closes it, in the end
    assert out.read_text(encoding="utf-8") == "2\n"
