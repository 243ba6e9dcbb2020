"""Where a run with worker processes puts its private directory of ipc sockets: in TMPDIR, or in a short directory
when TMPDIR's path leaves no room for a socket's (107 bytes), and one line, exit 2, when no directory can hold it."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pipeline.cli.run import PipelineRun
from pipeline.engine import addresses, process_keeper
from pipeline.engine.board import BusyBoard
from tests.cli_helpers import ROOT, chain_config, read_lines, write_config

#: A short directory that no host has.
MISSING_BASE = "/nonexistent/pipeline-tests"


def in_processes(tmp_path: Path) -> Path:
    """COUNT -> PASS (in a worker process) -> WRITE, into tmp_path/out.jsonl."""
    document = chain_config(str(tmp_path / "out.jsonl"))
    document["Pipeline"]["stagers_conf"][0]["nb_process"] = 1
    return write_config(tmp_path, document)


def test_a_run_with_worker_processes_works_under_a_long_tmpdir(tmp_path: Path) -> None:
    """A TMPDIR of 71 characters and more (a SLURM job's) failed every such run: an internal error, a ZMQError
    traceback (ipc path ... is longer than 107 characters), exit 1."""
    long = tmp_path / ("x" * max(0, 110 - len(str(tmp_path))))
    long.mkdir()
    result = subprocess.run([sys.executable, "-m", "pipeline", f"--config={in_processes(tmp_path)}", "--no-progress"],
                            cwd=ROOT, capture_output=True, text=True, timeout=30,
                            env={**os.environ, "TMPDIR": str(long), "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert sorted(read_lines(tmp_path / "out.jsonl")) == list(range(5))
    assert "Traceback" not in result.stderr


def test_a_run_with_worker_processes_works_under_a_tmpdir_whose_name_is_not_utf8(tmp_path: Path) -> None:
    """A TMPDIR named in bytes that are not UTF-8: its sockets' endpoints, text that ZeroMQ takes in UTF-8, stopped
    the step's router on an internal error (UnicodeEncodeError), a traceback, exit 1. Another directory serves."""
    odd = os.path.join(os.fsencode(tmp_path), b"\xff")
    os.mkdir(odd)
    result = subprocess.run([sys.executable, "-m", "pipeline", f"--config={in_processes(tmp_path)}", "--no-progress"],
                            cwd=ROOT, capture_output=True, text=True, timeout=30,
                            env={**os.environ, "TMPDIR": os.fsdecode(odd), "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert sorted(read_lines(tmp_path / "out.jsonl")) == list(range(5))
    assert os.listdir(odd) == []


@pytest.mark.parametrize("usable_tmpdir", [True, False], ids=["too-long", "none"])
def test_no_room_for_the_ipc_sockets_is_one_line_and_exit_2(app: PipelineRun, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture, usable_tmpdir: bool) -> None:
    """A temporary directory too long and no short one that can be written, or none at all (TMPDIR=/nonexistent,
    /tmp read-only): a raw traceback (from sweep_stale_dirs, or of the router), exit 1."""
    long = tmp_path / ("x" * max(0, 110 - len(str(tmp_path))))
    long.mkdir()
    if usable_tmpdir:
        monkeypatch.setattr(tempfile, "tempdir", str(long))
    else:
        def none_usable() -> str:
            raise FileNotFoundError(2, "No usable temporary directory found in ['/nonexistent', '/tmp']")

        monkeypatch.setenv("TMPDIR", "/nonexistent")
        monkeypatch.setattr(tempfile, "gettempdir", none_usable)
    # A short base that is missing: one under tmp_path may be too long itself (pytest's numbered folders grow).
    monkeypatch.setattr(addresses, "SHORT_BASES", (MISSING_BASE,))
    assert app.execute([f"--config={in_processes(tmp_path)}", "--no-progress"]) == 2
    err = capsys.readouterr().err
    refused = f"{long} is too long" if usable_tmpdir else "/nonexistent cannot be written"
    assert err == (f"pipeline-run: error: TMPDIR: no room for a private directory of ipc sockets ({refused}; "
                   f"{MISSING_BASE} cannot be written): expected a writable directory whose path is at most "
                   f"{75 - len(str(os.getpid()))} bytes long\n")  # 107, less "/pipeline-PID-", 8 random, "/", 12
    assert not (tmp_path / "out.jsonl").exists()  # before any step ran


@pytest.mark.timeout(30)
@pytest.mark.parametrize("error", [errno.ENOSPC, errno.EMFILE], ids=["full", "no-descriptor"])
def test_no_room_for_a_worker_processs_files_is_one_line_and_exit_2(app: PipelineRun, tmp_path: Path, error: int,
                                                                    monkeypatch: pytest.MonkeyPatch,
                                                                    capsys: pytest.CaptureFixture) -> None:
    """A TMPDIR with a few pages free: its first busy board failed, a CRITICAL internal error of the supervisor with a
    traceback, a wait of shutdown_timeout for the process already started, exit 1."""
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temporary))
    real_board = process_keeper.BusyBoard

    def second_refused(path: Path, threads: int, create: bool = False) -> BusyBoard:
        if Path(path).name == "busy-1":
            raise OSError(error, os.strerror(error))
        return real_board(path, threads, create)

    monkeypatch.setattr(process_keeper, "BusyBoard", second_refused)
    config = chain_config(str(tmp_path / "out.jsonl"))
    config["Pipeline"]["stagers_conf"][0]["nb_process"] = 2
    argv = [f"--config={write_config(tmp_path, config)}", "--no-progress", "--Pipeline.shutdown_timeout=60"]
    assert app.execute(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("pipeline-run: error: TMPDIR: cannot write ") and err.count("\n") == 1, err
    assert f"/busy-1, a file of a worker process: {os.strerror(error)}: expected a temporary directory " in err
    assert not (tmp_path / "out.jsonl").exists()  # before any step ran
    assert list(temporary.iterdir()) == []  # the private directory is gone


@pytest.mark.timeout(60)
def test_no_room_for_a_replacement_s_files_is_said_in_the_death_s_line(app: PipelineRun, tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """A worker process died, and its replacement's files found no room: an internal error of the supervisor (its
    thread stopped, the run's report said "internal error in supervisor"). The death's line says none replaces it and
    why; the step, left with no workers, stops the run, and what was sent is counted."""
    real_board = process_keeper.BusyBoard

    def replacement_refused(path: Path, threads: int, create: bool = False) -> BusyBoard:
        if Path(path).name == "busy-1":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_board(path, threads, create)

    monkeypatch.setattr(process_keeper, "BusyBoard", replacement_refused)
    config = chain_config(str(tmp_path / "out.jsonl"))
    config["Pipeline"]["stagers_conf"][0].update({"module": "tests.process_steps", "class": "Trigger",
                                                  "nb_process": 1})
    config["Trigger"] = {"at": 2, "action": "kill", "marker": str(tmp_path / "killed")}
    argv = [f"--config={write_config(tmp_path, config)}", "--no-progress"]
    assert app.execute(argv) == 1
    err = capsys.readouterr().err
    assert "internal error" not in err, err
    assert "died: killed by signal SIGKILL; none replaces it: TMPDIR: cannot write " in err, err


def owned_dir(base: Path, name: str, owner: str | None) -> Path:
    """A directory ``name`` in ``base`` with a file of the user's, and OWNER_FILE saying ``owner`` if given."""
    made = base / name
    made.mkdir(mode=0o700)
    (made / "summary.txt").write_text("the user's own\n", encoding="utf-8")
    if owner is not None:
        (made / addresses.OWNER_FILE).write_text(owner, encoding="ascii")
    return made


def test_only_a_private_directory_whose_owner_has_ended_is_swept(short_tmp: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's own pipeline-2024-results (the "pid" 2024 not running) was removed with its contents as the next run
    started; a directory of another pid namespace (a container sharing /tmp) was taken for a dead run's. Now only a
    directory the framework made, of this namespace, whose process ended (or whose pid a new process took), goes."""
    monkeypatch.setattr(tempfile, "tempdir", str(short_tmp))
    monkeypatch.setattr(addresses, "SHORT_BASES", ())
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True, timeout=30).stdout.strip()
    mine = addresses.owner_line(os.getpid())
    pid, start, namespace = mine.split()
    kept = [owned_dir(short_tmp, "pipeline-2024-results", None),  # the user's
            owned_dir(short_tmp, f"pipeline-{dead}-abcdefgh", None),  # named as ours, but not made by the framework
            owned_dir(short_tmp, f"pipeline-{dead}-elsewher", f"{dead} 12 pid:[1]\n"),  # another pid namespace
            owned_dir(short_tmp, f"pipeline-{pid}-livelive", mine)]  # a live one
    swept = [owned_dir(short_tmp, f"pipeline-{dead}-deaddead", f"{dead} {start} {namespace}\n"),
             owned_dir(short_tmp, f"pipeline-worker-{pid}-reusedpi", f"{pid} {int(start) - 1} {namespace}\n")]
    assert addresses.sweep_stale_dirs() == len(swept)
    assert [made.exists() for made in kept + swept] == [True] * len(kept) + [False] * len(swept)
    assert (kept[0] / "summary.txt").read_text(encoding="utf-8") == "the user's own\n"


def test_a_run_with_worker_processes_leaves_a_users_directory_of_a_like_name(tmp_path: Path, short_tmp: Path) -> None:
    """The run sweeps as it starts: the user's pipeline-2024-results is still there, with its file, afterwards."""
    users = owned_dir(short_tmp, "pipeline-2024-results", None)
    result = subprocess.run([sys.executable, "-m", "pipeline", f"--config={in_processes(tmp_path)}", "--no-progress"],
                            cwd=ROOT, capture_output=True, text=True, timeout=30,
                            env={**os.environ, "TMPDIR": str(short_tmp), "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert (users / "summary.txt").read_text(encoding="utf-8") == "the user's own\n"
    assert [path.name for path in short_tmp.iterdir()] == [users.name]  # the run's own is gone
