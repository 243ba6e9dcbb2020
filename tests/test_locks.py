"""pipeline.config.locks: a file that another process holds locked (as HDF5 and the dead-letter file lock theirs) is
told with that process's pid, by a probe that neither creates nor truncates the file."""

from __future__ import annotations

import fcntl
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from algorithms.basic import JsonLinesWriter
from pipeline import Pipeline
from pipeline.config.locks import claim, in_use, open_locked, release
from pipeline.errors import ConfigError
from pipeline.failures.deadletter import DeadLetterWriter, hold
from pipeline.failures.deadletter import release as release_replay
from tests.cli_helpers import chain_config, read_lines, write_config
from tests.failure_helpers import pipeline_run
from tests.process_helpers import REPO, wait_for

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


@pytest.mark.parametrize("mode", ["threads", "sequential"])
def test_a_json_lines_output_taken_after_its_check_is_refused_in_one_line_as_the_run_starts(tmp_path: Path,
                                                                                              mode: str) -> None:
    """Runs started together all passed the check before any took the file: the losers failed in init() (exit 1, a
    traceback); the run claims its output before any step runs, so a loser is refused as a config (exit 2)."""
    out = tmp_path / "out.jsonl"
    out.write_text('"rows of the other run"\n', encoding="utf-8")
    pipeline = Pipeline.from_config(chain_config(str(out)), {"Pipeline": {"mode": mode}})
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as holder:
        try:
            assert holder.stdout.readline() == "ready\n"
            with pytest.raises(ConfigError) as refused:
                pipeline.run()
        finally:
            holder.stdin.close()
            assert holder.wait(timeout=30) == 0
    assert str(refused.value) == (
        f"<config>: Pipeline.consumer_conf: step 'WRITE': JsonLinesWriter.path {str(out)!r} is in use by "
        f"another run (pid {holder.pid}) (expected an output file of its own for each run)")
    assert out.read_text(encoding="utf-8") == '"rows of the other run"\n'
    assert pipeline.run().exit_status == 0  # the claim was let go with the run: the next one writes the file
    assert sorted(read_lines(out)) == [0, 1, 2, 3, 4]


def test_a_json_lines_writer_in_a_worker_process_writes_the_file_its_run_claimed(tmp_path: Path) -> None:
    """The run's process holds the claim; its worker process writes the file under it, and a run after it may too."""
    out = tmp_path / "out.jsonl"
    config = chain_config(str(out))
    config["Pipeline"]["consumer_conf"]["nb_process"] = 1
    for _ in range(2):
        assert Pipeline.from_config(config).run().exit_status == 0
        assert sorted(read_lines(out)) == [0, 1, 2, 3, 4]


def test_identical_runs_started_together_leave_one_writer_and_refuse_the_others_in_one_line(tmp_path: Path) -> None:
    """Four pipeline-run of one config at once: one writes the file (held up until the others ended), each other
    exits 2 with the one-line refusal naming it, and the file holds the winner's lines only."""
    out, gate = tmp_path / "out.jsonl", tmp_path / "gate"
    document = chain_config(str(out))
    document["Pipeline"]["stagers_conf"][0].update(module="tests.failure_steps", **{"class": "Hangs"})
    document["Hangs"] = {"at": 0, "marker": str(tmp_path / "hanging"), "gate": str(gate)}
    config = write_config(tmp_path, document)
    command = [sys.executable, "-m", "pipeline", f"--config={config}", "--no-progress"]
    environment = {**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)}
    runs = [subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
            for _ in range(4)]
    try:
        wait_for(lambda: sum(run.poll() is not None for run in runs) == 3, 45, "three runs refused")
    finally:
        gate.touch()  # the winner goes on
        errors = [run.communicate(timeout=45)[1] for run in runs]
    assert sorted(run.returncode for run in runs) == [0, 2, 2, 2]
    winner = next(run for run in runs if run.returncode == 0)
    refusal = (f"pipeline-run: error: {config}: Pipeline.consumer_conf: step 'WRITE': JsonLinesWriter.path "
               f"{str(out)!r} is in use by another run (pid {winner.pid}) (expected an output file of its own for each "
               "run)\n")
    assert [error for run, error in zip(runs, errors, strict=True) if run is not winner] == [refusal] * 3
    assert sorted(read_lines(out)) == [0, 1, 2, 3, 4]


def test_a_json_lines_output_that_a_run_of_this_process_writes_is_refused_to_a_second_run(tmp_path: Path) -> None:
    """Two Pipelines of one config run from threads of one process: the second is refused as it starts (the first's
    file was taken over by it before, as an earlier stopped run's would be, and both wrote it)."""
    out, gate = tmp_path / "out.jsonl", tmp_path / "gate"
    document = chain_config(str(out))
    document["Pipeline"]["stagers_conf"][0].update(module="tests.failure_steps", **{"class": "Hangs"})
    document["Hangs"] = {"at": 0, "marker": str(tmp_path / "hanging"), "gate": str(gate)}
    reports = []
    first = threading.Thread(target=lambda: reports.append(Pipeline.from_config(document).run()))
    first.start()
    try:
        wait_for((tmp_path / "hanging").exists, 30, "the first run under way")
        with pytest.raises(ConfigError, match=re.escape(f"JsonLinesWriter.path {str(out)!r} is in use by another "
                                                        f"run of this process (pid {os.getpid()})")):
            Pipeline.from_config(document).run()
    finally:
        gate.touch()
        first.join(timeout=30)
    assert [report.exit_status for report in reports] == [0]
    assert sorted(read_lines(out)) == [0, 1, 2, 3, 4]


def test_a_run_refused_for_its_output_lets_its_dead_letter_file_go(tmp_path: Path) -> None:
    """The run's dead-letter file is taken before its outputs are claimed: a run refused for its output leaves it free
    for the next run."""
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    overrides = {"Pipeline": {"dead_letter": str(dead)}}
    with subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as holder:
        try:
            assert holder.stdout.readline() == "ready\n"
            with pytest.raises(ConfigError, match="is in use by another run"):
                Pipeline.from_config(chain_config(str(out)), overrides).run()
        finally:
            holder.stdin.close()
            assert holder.wait(timeout=30) == 0
    assert in_use(str(dead)) is None
    assert Pipeline.from_config(chain_config(str(out)), overrides).run().exit_status == 0


def test_a_forked_child_keeps_no_run_file_locked_and_no_other_file_closed(tmp_path: Path) -> None:
    """A child forked while a run holds its files (the zygote of worker processes; two runs of one process) lets go of
    its copies of every lock: an output's claim, its writer's file, the dead-letter file, a replay's hold. A file the
    step's own code closed, whose descriptor number then went to another file, stays open in the child."""
    claimed, written, dead, replayed = (tmp_path / name for name in ("claimed.jsonl", "out.jsonl", "dead.jsonl",
                                                                     "replayed.jsonl"))
    replayed.write_text("", encoding="utf-8")
    real = claim(str(claimed), "JsonLinesWriter.path")
    writer = JsonLinesWriter(path=str(written))
    writer.init()
    letters = DeadLetterWriter(str(dead))
    hold(str(replayed))
    closed_by_step = open_locked(str(tmp_path / "own.jsonl"), "Own.path")
    os.close(closed_by_step)
    other = os.open(tmp_path / "other.txt", os.O_WRONLY | os.O_CREAT)
    assert other == closed_by_step  # the lowest free number
    go, went = os.pipe()
    started, starts = os.pipe()
    child = os.fork()
    if child == 0:  # the child (its fork hooks have run): waits for the parent, says whether the other file is open
        try:
            os.close(went)
            os.close(started)
            os.write(starts, b"!")
            os.read(go, 1)
            os.fstat(other)
            os._exit(0)
        except BaseException:
            os._exit(1)
    try:
        os.close(go)
        os.close(starts)
        assert os.read(started, 1) == b"!"
        os.close(started)
        release(real)
        writer.finish()
        letters.close()
        release_replay(str(replayed))
        for path in (claimed, written, dead):  # each free for another run while the child lives
            assert in_use(str(path)) is None, path
        with open(replayed, "rb") as replay:  # free to be written over: nobody holds it, not even shared
            fcntl.flock(replay, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(went)
        _, status = os.waitpid(child, 0)
        os.close(other)
    assert os.waitstatus_to_exitcode(status) == 0


#: A run whose stage removes the run's working directory at its first message, its output and dead-letter file given
#: as relative paths there. argv: the mode ("threads", "sequential" or "processes"). Prints the exit status and counts.
CWD_GONE = """
import os, shutil, sys
from pipeline import Component, Pipeline

class RemovesTheFolder(Component):
    def run(self, n):
        if n == 0:
            shutil.rmtree(os.environ["RUN_DIR"])
        return n

mode = sys.argv[1]
stager = {"name": "S", "module": "__main__", "class": "RemovesTheFolder", "next_steps": "W"}
if mode == "processes":
    stager["nb_process"] = 1
document = {"version": 1, "Pipeline": {
    "gui": False, "progress": False, "mode": "sequential" if mode == "sequential" else "threads",
    "dead_letter": "dead.jsonl",
    "producer_conf": {"name": "P", "module": "algorithms.basic", "class": "Counter", "next_steps": "S"},
    "stagers_conf": [stager],
    "consumer_conf": {"name": "W", "module": "algorithms.basic", "class": "JsonLinesWriter"}},
    "Counter": {"count": 50}, "JsonLinesWriter": {"path": "out.jsonl"}}
report = Pipeline.from_config(document).run()
print(report.exit_status, report["W"].received)
"""


@pytest.mark.parametrize("mode", ["threads", "sequential", "processes"])
def test_a_run_whose_working_directory_is_removed_ends_with_its_report(tmp_path: Path, mode: str) -> None:
    """The run's end let go of its relative output by its path, which needs the working directory: a raw traceback
    (FileNotFoundError from os.path.realpath), no report, exit 1. The file is written to its end all the same."""
    folder = tmp_path / "run"
    folder.mkdir()
    done = subprocess.run([sys.executable, "-c", CWD_GONE, mode], cwd=folder, capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PYTHONPATH": str(REPO), "RUN_DIR": str(folder)})
    assert done.stdout.splitlines() == ["0 50"], done.stderr
    assert "Traceback" not in done.stderr
    assert not folder.exists()
