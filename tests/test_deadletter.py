"""Dead letters: private files, said in the summary, pickles loaded only by a replay that runs them
and once, and records that cannot be replayed refused before any step runs (exit 2, file and line)."""

from __future__ import annotations

import base64
import errno
import fcntl
import itertools
import json
import os
import pickle
import resource
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline import Pipeline
from pipeline.errors import ConfigError
from pipeline.execution.status import declared_totals
from pipeline.failures.deadletter import (
    KEPT_MESSAGES,
    DeadLetterWriter,
    Replay,
    hold,
    load_messages,
    load_replays,
    preload,
    read_records,
    release,
)
from pipeline.message import Resume
from tests.failure_helpers import REPO, config, pipeline_run, report_row, written
from tests.output_steps import Alive, Tripwire


def record(message: Any = None, step: str = "STAGE", pickled: bytes | None = None, **fields: Any) -> str:
    """One dead-letter line holding ``message`` (or the raw ``pickled`` bytes)."""
    data = pickle.dumps(message, protocol=5) if pickled is None else pickled
    return json.dumps({"step": step, "worker": 0, "seq": 0, "error": "ValueError: x", "traceback": "",
                       "pickle": base64.b64encode(data).decode(), "buffers": [], **fields})


def dead_letters(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "dead.jsonl"
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_the_file_is_private_even_if_it_existed(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    path.write_text("old\n", encoding="utf-8")
    path.chmod(0o644)
    writer = DeadLetterWriter(str(path))
    writer.close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and path.read_text(encoding="utf-8") == ""


@pytest.mark.parametrize("where", ["directory", "missing folder"])
def test_a_dead_letter_path_that_cannot_be_created_is_a_config_error(tmp_path: Path, where: str) -> None:
    target = tmp_path if where == "directory" else tmp_path / "missing" / "dead.jsonl"
    path = config(tmp_path, {"class": "FailEvery"}, Counter={"count": 3})
    result = pipeline_run(path, f"--Pipeline.dead_letter={target}")
    assert result.returncode == 2
    problem = ("is a folder (expected the path of a file to write)" if where == "directory"
               else "does not exist (expected a file in an existing folder)")
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pipeline-run: error: command line: --Pipeline.dead_letter: ")
    assert lines[0].endswith(problem)
    assert not (tmp_path / "out.jsonl").exists()  # no step ran


def test_reading_records_never_unpickles(tmp_path: Path) -> None:
    marker = tmp_path / "loaded.txt"
    path = dead_letters(tmp_path, record(Tripwire(marker, 7)), json.dumps({"step": "COUNT", "error": "x"}),
                        "", record(Tripwire(marker, 8), step="OTHER"))
    records = read_records(str(path))
    assert [(r.line, r.step) for r in records] == [(1, "STAGE"), (4, "OTHER")]  # one without a message is not replayed
    assert not marker.exists()
    assert load_messages(str(path)) == [("STAGE", 7), ("OTHER", 8)]
    assert marker.read_text(encoding="utf-8") == "loaded\nloaded\n"


@pytest.mark.parametrize(("lines", "where", "problem"), [
    ([], "", "nothing to replay: the file is empty"),
    ([json.dumps({"step": "COUNT", "error": "x"})], "", "nothing to replay: the file has no record with a message"),
    ([record(1), "{not json"], "line 2", "not a dead-letter record: invalid JSON at column 2"),
    ([record(1), "[1, 2]"], "line 2", "not a dead-letter record: expected a JSON object, got list"),
    ([record(1, pickle="@@@")], "line 1: pickle", "expected base64 text"),
    ([record(1, pickle=5)], "line 1: pickle", "expected base64 text: got int"),
    ([record(1, step="")], "line 1: step", "expected the name of the step that failed, got ''"),
    ([json.dumps({"step": "COUNT", "error": 3})], "line 1: error", "expected the line of the error, got 3"),
    ([record(1, buffers="x")], "line 1: buffers", "expected a list of base64 strings"),
    ([record(1, delivered=-3)], "line 1: delivered", "expected a count of outputs (an integer >= 0), got -3"),
    ([record(1, delivered="5")], "line 1: delivered", "expected a count of outputs (an integer >= 0), got '5'"),
])
def test_records_that_cannot_be_read(tmp_path: Path, lines: list[str], where: str, problem: str) -> None:
    path = dead_letters(tmp_path, *lines)
    with pytest.raises(ConfigError) as raised:
        read_records(str(path))
    assert raised.value.source == str(path) and raised.value.key == where
    assert raised.value.problem.startswith(problem)


def test_a_non_utf8_line(tmp_path: Path) -> None:
    path = tmp_path / "dead.jsonl"
    path.write_bytes(record(1).encode() + b"\n\xff\xfe\n")
    with pytest.raises(ConfigError, match=r"line 2: not a dead-letter record: not UTF-8 text"):
        read_records(str(path))


def replayable(tmp_path: Path) -> Path:
    """The producer -> STAGE (FailEvery, fixed) -> WRITER config of test_failures."""
    return config(tmp_path, {"class": "FailEvery", "on_error": "skip"}, Counter={"count": 5})


#: Pickles of a class that was renamed, and of a class whose module is gone (protocol 2 opcodes).
RENAMED = b"\x80\x02ctests.output_steps\nRenamedAway\n)\x81."
MODULE_GONE = b"\x80\x02cno_such_module_anywhere\nEvent\n)\x81."
#: A pickle whose loading calls sys.exit("bye"), as a message's module that exits as it is imported does.
EXITS = b"csys\nexit\n(S'bye'\ntR."


@pytest.mark.parametrize("step", ["GONE", "COUNT"])
def test_a_replay_into_a_step_the_config_has_not_exits_2(tmp_path: Path, step: str) -> None:
    """Dead letters of another pipeline, or of its producer, which a replay replaces: one line naming the record's line,
    before any step runs."""
    path = dead_letters(tmp_path, record(1), record(2, step=step))
    config_path = replayable(tmp_path)
    result = pipeline_run(config_path, f"--replay={path}")
    assert (result.returncode, result.stderr) == (
        2, f"pipeline-run: error: {path}: line 2: step: {step!r} is not a stager or consumer of {config_path}\n")
    assert not (tmp_path / "out.jsonl").exists()


def test_a_dead_letter_path_that_is_no_regular_file_is_a_config_error(tmp_path: Path) -> None:
    """A FIFO (opening it would wait for a reader) or a device (/dev/null: the file is replaced and made private, so
    root's run made /dev/null 0600): exit 2, one line, before any step runs, the path left as it was."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o644)
    path = config(tmp_path, {"class": "FailEvery"}, Counter={"count": 3})
    result = pipeline_run(path, f"--Pipeline.dead_letter={fifo}")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("pipeline-run: error: command line: --Pipeline.dead_letter: '")
    assert result.stderr.endswith("fifo' is not a regular file (expected the path of a file to write)\n")
    assert stat.S_IMODE(fifo.stat().st_mode) == 0o644
    assert not (tmp_path / "out.jsonl").exists()  # no step ran


def test_the_writer_leaves_alone_what_became_no_regular_file(tmp_path: Path) -> None:
    """Made a FIFO after the options were checked: the writer neither waits for a reader nor changes its mode."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo, 0o644)
    with pytest.raises(ConfigError, match="not a regular file"):
        DeadLetterWriter(str(fifo))
    assert stat.S_IMODE(fifo.stat().st_mode) == 0o644


def test_a_file_that_cannot_be_made_private_is_refused_and_kept(tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """Another user's file that the run may write but not chmod (here: fchmod refused): a one-line error, and the
    file's records are not emptied first."""
    path = tmp_path / "shared.jsonl"
    path.write_text("someone's records\n", encoding="utf-8")

    def refused(fd: int, mode: int) -> None:
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(os, "fchmod", refused)
    with pytest.raises(ConfigError) as error:
        DeadLetterWriter(str(path))
    assert str(error.value) == (f"{path}: Pipeline.dead_letter: cannot make the dead-letter file private (mode 0600): "
                                "Operation not permitted")
    assert path.read_text(encoding="utf-8") == "someone's records\n"


@pytest.mark.parametrize(("lines", "message"), [
    ([record(1), record(pickled=RENAMED)], "line 2: cannot unpickle the message that failed in step STAGE: "
                                           "AttributeError: Can't get attribute 'RenamedAway'"),
    ([record(pickled=MODULE_GONE)], "line 1: cannot unpickle the message that failed in step STAGE: "
                                    "ModuleNotFoundError: No module named 'no_such_module_anywhere'"),
    ([record(pickled=EXITS)], "line 1: cannot unpickle the message that failed in step STAGE: SystemExit: bye"),
    ([record(1), "garbage"], "line 2: not a dead-letter record: invalid JSON at column 1: Expecting value"),
    ([record(1), '{"seq": ' + "9" * 5000 + "}"], "line 2: not a dead-letter record: an integer of more than 4300 "
                                                "digits"),  # int() raised a plain ValueError: a traceback, exit 1
    ([record(1, pickle="not base64!")], "line 1: pickle: expected base64 text"),
    ([], "nothing to replay: the file is empty"),
    # A record pasted twice by hand would be replayed twice: no run writes a line twice.
    ([record(1), record(2), record(1)], "line 3: the record of line 1 again (expected each failed message once"),
])
def test_a_replay_that_cannot_load_its_records_exits_2_before_any_step_runs(
        tmp_path: Path, lines: list[str], message: str) -> None:
    path = dead_letters(tmp_path, *lines)
    result = pipeline_run(replayable(tmp_path), f"--replay={path}")
    assert result.returncode == 2
    assert result.stderr.startswith(f"pipeline-run: error: {path}: {message}")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out.jsonl").exists()  # no step ran: the writer's init() would have made it


@pytest.mark.parametrize("where", ["/dev/zero", "fifo"])
def test_a_replay_of_what_is_no_regular_file_exits_2_at_once(tmp_path: Path, where: str) -> None:
    """/dev/zero grew the run's memory without end, deaf to Ctrl+C; a FIFO would wait for a writer."""
    if where == "fifo":
        where = str(tmp_path / "fifo")
        os.mkfifo(where)
    result = pipeline_run(replayable(tmp_path), f"--replay={where}")
    assert (result.returncode, result.stderr) == (2, f"pipeline-run: error: {where}: not a regular file (expected "
                                                     "the JSON lines that --Pipeline.dead_letter writes)\n")


def test_graph_of_a_replay_loads_no_pickle_and_a_replay_loads_each_once(tmp_path: Path) -> None:
    marker = tmp_path / "loaded.txt"
    path = dead_letters(tmp_path, record(Tripwire(marker, 3)), record(Tripwire(marker, 6)))
    graph = pipeline_run(replayable(tmp_path), f"--replay={path}", "--graph=dot")
    assert graph.returncode == 0 and graph.stdout.startswith("digraph")
    assert not marker.exists()
    for mode in ("threads", "sequential"):
        marker.unlink(missing_ok=True)
        replay = pipeline_run(replayable(tmp_path), f"--replay={path}", f"--Pipeline.mode={mode}")
        assert replay.returncode == 0, replay.stderr
        assert marker.read_text(encoding="utf-8") == "loaded\nloaded\n"  # each message unpickled once
        assert sorted(written(tmp_path)[:-1]) == [3, 6]


@pytest.mark.parametrize("mode", ["threads", "sequential"])
def test_a_replay_holds_a_bounded_number_of_messages_however_long_its_file(tmp_path: Path, mode: str) -> None:
    """A replay unpickled every message of its file before the run and held them all (400 records of 256 KiB arrays:
    147 MB; 800: 249 MB): it keeps the first KEPT_MESSAGES, and unpickles the others again as it sends them."""
    count = 20 * KEPT_MESSAGES
    path = dead_letters(tmp_path, *(record(Alive(number)) for number in range(count)))
    Alive.peak = Alive.alive
    pipeline = Pipeline.from_config(replayable(tmp_path), {"Pipeline": {"gui": False, "progress": False,
                                                                        "mode": mode}}, replay=str(path))
    report = pipeline.run()
    assert report.exit_status == 0 and report["STAGE"].processed == count, report.table()
    assert sorted(written(tmp_path)[:-1]) == list(range(count))
    # Besides those kept: the one being sent, and those in flight (queues hold them pickled, not alive).
    assert Alive.peak <= KEPT_MESSAGES + 16, Alive.peak


def test_a_file_that_changes_during_its_replay_is_refused(tmp_path: Path) -> None:
    """The file is read again as its messages are sent: a run writing it meanwhile is one line, not other messages."""
    path = dead_letters(tmp_path, *(record(number) for number in range(2 * KEPT_MESSAGES)))
    replay = Replay(str(path))
    with path.open("a", encoding="utf-8") as file:
        file.write(record(-1) + "\n")
    messages = replay.messages()
    assert [message for _, message in itertools.islice(messages, KEPT_MESSAGES)] == list(range(KEPT_MESSAGES))
    with pytest.raises(ConfigError, match="changed since the replay read it"):
        next(messages)


@pytest.mark.parametrize("mode", ["threads", "sequential"])
def test_the_summary_says_how_many_records_were_written_and_where(tmp_path: Path, mode: str) -> None:
    dead = tmp_path / "dead.jsonl"
    path = config(tmp_path, {"class": "FailEvery", "on_error": "skip"}, Counter={"count": 10},
                  FailEvery={"every": 4})
    result = pipeline_run(path, f"--Pipeline.mode={mode}", f"--Pipeline.dead_letter={dead}")
    assert result.returncode == 1
    assert f"dead letters: 3 records written to {dead}\n" in result.stderr
    assert stat.S_IMODE(dead.stat().st_mode) == 0o600
    ok = pipeline_run(path, f"--Pipeline.mode={mode}", f"--Pipeline.dead_letter={dead}", "--FailEvery.every=0")
    assert ok.returncode == 0 and f"dead letters: 0 records written to {dead}\n" in ok.stderr
    assert report_row(ok.stderr, "STAGE") == [10, 10, 10, 0]


def test_a_preloaded_replay_declares_its_length(tmp_path: Path) -> None:
    path = dead_letters(tmp_path, record(1), record(2), record(3))
    pipeline = Pipeline.from_config(replayable(tmp_path), {"Pipeline": {"gui": False, "progress": False}},
                                    replay=str(path))
    assert declared_totals(pipeline.steps) == {}  # not loaded yet: unknown
    preload(str(path))
    assert declared_totals(pipeline.steps) == {"COUNT": 3}
    report = pipeline.run()  # the replay takes the preloaded messages
    assert report.exit_status == 0 and report["STAGE"].processed == 3


def test_a_message_some_of_whose_outputs_went_on_is_replayed_to_skip_them(tmp_path: Path) -> None:
    """A record with "delivered" (its run() failed after chunks of its outputs went on) is replayed as a Resume;
    one that failed again in a replay adds what went on in each run."""
    path = dead_letters(tmp_path, record(7, delivered=32), record(Resume(8, 16), delivered=48), record(9))
    assert load_replays(str(path)) == [("STAGE", Resume(7, 32)), ("STAGE", Resume(8, 64)), ("STAGE", 9)]
    assert load_messages(str(path)) == [("STAGE", 7), ("STAGE", 8), ("STAGE", 9)]


@pytest.mark.parametrize(("mode", "stage"), [("sequential", {}), ("threads", {"nb_thread": 1}),
                                           ("threads", {"nb_process": 1})], ids=["sequential", "threads", "processes"])
def test_a_replay_that_makes_fewer_outputs_than_went_on_says_so(tmp_path: Path, mode: str,
                                                                 stage: dict[str, Any]) -> None:
    """A record (edited by hand) saying that more outputs went on than its step makes again: the replay drops what it
    makes, as delivered, and says that none went on, in every mode."""
    path = config(tmp_path, {"class": "FailEvery", **stage}, Counter={"count": 1})
    dead = dead_letters(tmp_path, record(7, delivered=10**30), record(8))
    result = pipeline_run(path, f"--replay={dead}", f"--Pipeline.mode={mode}")
    assert result.returncode == 0, result.stderr
    assert f"step STAGE: message 0 made 1 output when it ran again, fewer than the {10**30} that had gone on " \
           "before: none went on again" in result.stderr
    assert "message 1 made" not in result.stderr
    assert written(tmp_path) == [8, {"finished": True}]


@pytest.mark.parametrize("mode", ["threads", "sequential"])
def test_a_replay_stopped_midway_into_its_own_file_keeps_what_it_did_not_send(tmp_path: Path, mode: str) -> None:
    """Ctrl+C stops a replay's producer: what it did not send was neither processed nor written anywhere, and with
    --Pipeline.dead_letter naming the replayed file (emptied as the run starts) it was gone (15,391 of 20,000)."""
    count = 5000
    path = dead_letters(tmp_path, *(record(number) for number in range(count)))
    stopping = config(tmp_path, {"class": "SignalSelf", "nb_thread": 1}, SignalSelf={"at": 20, "delay": 0.0005})
    stopped = pipeline_run(stopping, f"--replay={path}", f"--Pipeline.dead_letter={path}", f"--Pipeline.mode={mode}")
    assert stopped.returncode == 130, stopped.stderr
    done = [value for value in written(tmp_path) if value != {"finished": True}]
    left = [message for _, message in load_messages(str(path))]
    assert 20 < len(done) < count and f"dead letters: {len(left)} records written to {path}\n" in stopped.stderr
    assert sorted(done + left) == list(range(count))  # each message processed, or kept to replay: once
    assert not Path(f"{path}.replacing").exists()  # nothing was lost in flight: the records replaced the file
    (tmp_path / "out.jsonl").unlink()
    rest = pipeline_run(stopping, f"--replay={path}", "--SignalSelf.at=-1", f"--Pipeline.mode={mode}")
    assert rest.returncode == 0, rest.stderr
    assert sorted(done + written(tmp_path)[:-1]) == list(range(count))


def test_a_replay_from_python_into_its_own_file_replays_every_record(tmp_path: Path) -> None:
    """pipeline-run read the file before the run emptied it; the Python API let the run empty it first: nothing was
    replayed, and the records were gone."""
    path = dead_letters(tmp_path, *(record(number) for number in range(50)))
    pipeline = Pipeline.from_config(replayable(tmp_path), {"Pipeline": {"gui": False, "progress": False,
                                                                        "dead_letter": str(path)}}, replay=str(path))
    report = pipeline.run()
    assert report.exit_status == 0 and report["STAGE"].processed == 50, report.table()
    assert sorted(written(tmp_path)[:-1]) == list(range(50)) and path.read_text(encoding="utf-8") == ""


def limited_run(path: Path, limit: int, *options: str) -> subprocess.CompletedProcess:
    """pipeline-run as pipeline_run does, in a process whose files may not grow past ``limit`` bytes (the
    dead-letter file's write fails with EFBIG, as on a full disk with ENOSPC)."""
    def limit_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-m", "pipeline", f"--config={path}", *options], cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, capture_output=True, text=True, timeout=60,
                          preexec_fn=limit_files)


@pytest.mark.parametrize(("mode", "workers"), [("threads", {"nb_thread": 2}), ("sequential", {}),
                                               ("threads", {"nb_process": 2})],
                         ids=["threads", "sequential", "processes"])
def test_a_dead_letter_file_that_takes_no_more_loses_records_not_the_run(tmp_path: Path, mode: str,
                                                                          workers: dict[str, int]) -> None:
    """The write's OSError crashed a step's thread (an internal error, the messages after it never counted) and was then
    taken for stdout's ('cannot write to stdout'). Now: one line naming the file, every message counted, the file cut
    back to whole records (it replays), the report says how many records were lost, and they fail the run."""
    dead = tmp_path / "dead.jsonl"
    path = config(tmp_path, {"class": "FailEvery", "on_error": "skip", **workers}, Counter={"count": 60},
                  FailEvery={"every": 3})
    result = limited_run(path, 2000, f"--Pipeline.mode={mode}", f"--Pipeline.dead_letter={dead}",
                         "--Pipeline.allow_failures=True")
    assert result.returncode == 1, result.stderr
    assert "internal error" not in result.stderr and "stdout" not in result.stderr
    said = [line for line in result.stderr.splitlines() if "cannot write to the dead-letter file" in line]
    assert len(said) == 1 and said[0].endswith(f"{dead}: cannot write to the dead-letter file: File too large (the "
                                               "failed messages from here on are counted, not recorded)")
    assert report_row(result.stderr, "STAGE") == [60, 40, 40, 20] and report_row(result.stderr, "WRITER")[1] == 40
    records = read_records(str(dead))
    assert 0 < len(records) < 20 and dead.read_bytes().endswith(b"}\n")
    assert (f"dead letters: {len(records)} records written to {dead}; {20 - len(records)} could not be written: "
            "File too large\n") in result.stderr


def test_a_dead_letter_file_in_use_by_another_run_is_refused_before_anything_runs(tmp_path: Path) -> None:
    """Both runs emptied the file and wrote at their own offsets over each other's records: now the second is one line
    naming the file and the run that has it, exit 2, and the first's records are kept."""
    dead = tmp_path / "dead.jsonl"
    first = DeadLetterWriter(str(dead))  # as the run that has the file holds it
    try:
        first.write("STAGE", 0, 7, ValueError("bad"), None)
        kept = dead.read_bytes()
        path = config(tmp_path, {"class": "FailEvery", "on_error": "skip"}, Counter={"count": 6},
                      FailEvery={"every": 2})
        result = pipeline_run(path, f"--Pipeline.dead_letter={dead}")
        assert (result.returncode, result.stderr) == (
            2, f"pipeline-run: error: command line: --Pipeline.dead_letter: {str(dead)!r}: in use by another run (pid "
               f"{os.getpid()}) (expected a dead-letter file of its own for each run)\n")
        assert dead.read_bytes() == kept and not (tmp_path / "out.jsonl").exists()
    finally:
        first.close()
    again = pipeline_run(path, f"--Pipeline.dead_letter={dead}")  # the file is free again once that run ended
    assert again.returncode == 1 and len(read_records(str(dead))) == 3, again.stderr


@pytest.mark.parametrize("written", ["records", "none yet"])
@pytest.mark.parametrize("into", ["itself", "another file"])
def test_a_file_that_a_run_still_writes_is_not_replayed(tmp_path: Path, into: str, written: str) -> None:
    """Replayed while its run went on writing it, its records so far ran, then the file was replaced under that run
    (into itself: the records the run wrote after were lost in silence) or refused midway (exit 1 or 2, its first
    messages run, and run again by the next replay): now one line, exit 2, before any step runs. One that run had
    written nothing to yet said "nothing to replay: the file is empty"."""
    dead = dead_letters(tmp_path, *([record(2), record(4), record(5)] if written == "records" else []))
    kept = dead.read_bytes()
    writing = os.open(dead, os.O_WRONLY | os.O_APPEND)  # as the run that still writes it holds it
    try:
        fcntl.flock(writing, fcntl.LOCK_EX)
        target = dead if into == "itself" else tmp_path / "again.jsonl"
        result = pipeline_run(replayable(tmp_path), f"--replay={dead}", f"--Pipeline.dead_letter={target}",
                              "--FailEvery.every=2")
    finally:
        os.close(writing)
    assert (result.returncode, result.stderr) == (
        2, f"pipeline-run: error: {dead}: in use by another run (pid {os.getpid()}) (expected a dead-letter file that "
           "no run writes while it is replayed: replay it once that run has ended)\n")
    assert dead.read_bytes() == kept and not (tmp_path / "out.jsonl").exists()


def test_no_run_starts_to_write_a_file_under_replay_and_the_replay_lets_it_go_at_its_end(tmp_path: Path) -> None:
    """A run given the file a replay reads (into itself: the replay's records then took its place, and the run's
    records were lost) is refused as for a file another run writes; once the replay ended, the file is free."""
    dead = dead_letters(tmp_path, record(2), record(4), record(5))
    path = config(tmp_path, {"class": "FailEvery", "on_error": "skip"}, Counter={"count": 6}, FailEvery={"every": 2})
    hold(str(dead))  # as a replay of it holds it for its run
    try:
        result = pipeline_run(path, f"--Pipeline.dead_letter={dead}")
    finally:
        release(str(dead))
    assert (result.returncode, result.stderr) == (
        2, f"pipeline-run: error: command line: --Pipeline.dead_letter: {str(dead)!r}: in use by another run (pid "
           f"{os.getpid()}) (expected a dead-letter file of its own for each run)\n")
    report = Pipeline.from_config(str(replayable(tmp_path)), {"Pipeline": {"dead_letter": str(dead)}},
                                  replay=str(dead)).run()
    assert report.steps["STAGE"].counts.received == 3
    DeadLetterWriter(str(dead)).close()  # free: a writer takes it

    """The file is read before it is locked and emptied: the messages that fail again are its new records."""
    dead = dead_letters(tmp_path, record(2), record(4), record(5))
    result = pipeline_run(replayable(tmp_path), f"--replay={dead}", f"--Pipeline.dead_letter={dead}",
                          "--FailEvery.every=2")
    assert result.returncode == 1 and report_row(result.stderr, "STAGE") == [3, 1, 1, 2], result.stderr
    assert [(r.line, r.step) for r in read_records(str(dead))] == [(1, "STAGE"), (2, "STAGE")]


#: The record of a producer's value that could not be pickled: a failure with no message to replay.
PRODUCERS = json.dumps({"step": "COUNT", "worker": 0, "seq": 2, "error": "MessageError: cannot pickle",
                        "traceback": ""})


@pytest.mark.parametrize("into", ["itself", "another file", "no file"])
@pytest.mark.parametrize("mode", ["threads", "sequential"])
def test_a_replay_keeps_the_records_it_cannot_replay(tmp_path: Path, mode: str, into: str) -> None:
    """A producer's value that could not be pickled leaves a record with no message: a replay rewriting that file
    wrote only the other steps' records, and said nothing of the one it dropped, the only trace of that failure; into
    another file, it was left out of the file that follows the failures on, in silence; without a dead-letter file it
    vanished, exit status 0. The failure is left: the summary says so, and the exit status is 1."""
    path = dead_letters(tmp_path, PRODUCERS, record(1), record(2))
    target = path if into == "itself" else tmp_path / "again.jsonl"
    written_to = [] if into == "no file" else [f"--Pipeline.dead_letter={target}"]
    result = pipeline_run(replayable(tmp_path), f"--replay={path}", *written_to, f"--Pipeline.mode={mode}")
    assert result.returncode == 1, result.stderr
    assert sorted(written(tmp_path)[:-1]) == [1, 2]
    assert (f"not replayed: 1 record with no message to send: COUNT 1 MessageError (the first, line 1 of {path}: "
            "step COUNT: MessageError: cannot pickle)\n") in result.stderr
    if written_to:
        assert target.read_text(encoding="utf-8") == PRODUCERS + "\n"
        assert (f"dead letters: 1 record written to {target} (1 record of the replayed file kept as it was: no "
                "message to replay)\n") in result.stderr


def test_records_a_replay_cannot_replay_are_allowed_as_failed_messages_are(tmp_path: Path) -> None:
    """With allow_failures, the failures a replay leaves are said and allowed: exit status 0."""
    path = dead_letters(tmp_path, PRODUCERS, record(1), PRODUCERS.replace('"seq": 2', '"seq": 3'))
    result = pipeline_run(replayable(tmp_path), f"--replay={path}", "--Pipeline.allow_failures=True")
    assert result.returncode == 0, result.stderr
    assert written(tmp_path)[:-1] == [1]
    assert "not replayed: 2 records with no message to send: COUNT 2 MessageError (the first, line 1 " in result.stderr


@pytest.mark.parametrize("line", ['{"a": 1}', '{"step": "COUNT"}', '{"error": "ValueError: x"}'])
def test_a_line_that_is_no_record_is_refused_before_any_step_runs(tmp_path: Path, line: str) -> None:
    """A foreign line was taken for a record with no message: kept, or dropped in silence."""
    path = dead_letters(tmp_path, record(1), line)
    result = pipeline_run(replayable(tmp_path), f"--replay={path}")
    missing = ", ".join(f"no {key}" for key in ("step", "error") if key not in json.loads(line))
    assert (result.returncode, result.stderr) == (
        2, f"pipeline-run: error: {path}: line 2: not a dead-letter record: {missing} (expected the fields that "
           "every record has: the step that failed and its error)\n")
    assert not (tmp_path / "out.jsonl").exists()


def test_the_file_a_killed_replay_left_beside_its_own_is_removed_by_the_next_run(tmp_path: Path) -> None:
    """kill -9 of a replay into its own file left FILE.replacing (0600) for good: the next run that reads or writes
    FILE removes it once no run holds its lock, and leaves one that a replay under way writes."""
    path = dead_letters(tmp_path, record(1))
    stale = Path(f"{path}.replacing")
    stale.touch(mode=0o600)
    holding = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_EX); "
               "print('locked', flush=True); sys.stdin.read()")
    with subprocess.Popen([sys.executable, "-c", holding, str(stale)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as holder:  # a replay under way, as far as its lock says
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        held = pipeline_run(replayable(tmp_path), f"--replay={path}", f"--Pipeline.dead_letter={tmp_path / 'a.jsonl'}")
        holder.communicate("", timeout=30)
    assert held.returncode == 0 and stale.exists(), held.stderr
    for options in ([f"--replay={path}", f"--Pipeline.dead_letter={tmp_path / 'b.jsonl'}"],  # a replay of FILE
                    [f"--Pipeline.dead_letter={path}"]):  # a run writing FILE
        stale.touch(mode=0o600)
        result = pipeline_run(replayable(tmp_path), *options)
        assert result.returncode == 0, result.stderr
        assert not stale.exists()
        assert f"{stale}: removed: a replay into {path} that was killed left it (that file was left as it was)" in (
            result.stderr)


def test_a_replay_into_its_own_file_is_refused_while_another_replay_reads_that_file(tmp_path: Path) -> None:
    """Two replays of one file, one writing its dead letters over it: the other found its file replaced under it (it
    ended with an error line, or its unsent messages were gone). The one that rewrites the file holds it alone: started
    while another replay reads it, it is refused in one line, exit 2, the file as it was."""
    path = Path(dead_letters(tmp_path, record(1)))
    before = path.read_bytes()
    reading = ("import fcntl, os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); fcntl.flock(fd, fcntl.LOCK_SH); "
               "print('locked', flush=True); sys.stdin.read()")
    with subprocess.Popen([sys.executable, "-c", reading, str(path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          text=True) as holder:  # a replay under way that reads the file, as far as its lock says
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        result = pipeline_run(replayable(tmp_path), f"--replay={path}", f"--Pipeline.dead_letter={path}")
        elsewhere = f"--Pipeline.dead_letter={tmp_path / 'b.jsonl'}"
        beside = pipeline_run(replayable(tmp_path), f"--replay={path}", elsewhere)
        holder.communicate("", timeout=30)
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert f"in use by another run (pid {holder.pid}) (expected a dead-letter file that no other run reads or writes " \
           "while a replay writes its dead letters over it: replay it once that run has ended)" in result.stderr
    assert path.read_bytes() == before
    assert beside.returncode == 0, beside.stderr  # two replays that only read it may run together


def test_a_forked_child_does_not_keep_the_file_locked(tmp_path: Path) -> None:
    """The zygote of worker processes forks from the run's process: its copy of the file kept the lock, against the
    next run, for as long as it (or a worker left behind) lived."""
    dead = tmp_path / "dead.jsonl"
    writer = DeadLetterWriter(str(dead))
    child_reads, parent_writes = os.pipe()
    parent_reads, child_writes = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child says it runs (its fork hooks have), then lives until the parent closes its pipe's end
        os.close(parent_writes)
        os.write(child_writes, b"r")
        os.read(child_reads, 1)
        os._exit(0)
    os.close(child_reads)
    os.close(child_writes)
    try:
        assert os.read(parent_reads, 1) == b"r"  # an empty read if the child died: it cannot wait forever
        writer.close()
        DeadLetterWriter(str(dead)).close()  # while the child lives
    finally:
        os.close(parent_writes)
        os.close(parent_reads)
        os.waitpid(pid, 0)


def test_a_file_system_without_locks_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where flock fails (ENOLCK), two runs could not be kept apart: refused in one line, the file left as it was."""
    path = tmp_path / "dead.jsonl"
    path.write_text("records\n", encoding="utf-8")

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(ConfigError) as error:
        DeadLetterWriter(str(path), ("command line", "--Pipeline.dead_letter"))
    assert str(error.value) == (f"command line: --Pipeline.dead_letter: {str(path)!r}: cannot lock the dead-letter "
                                "file: No locks available")
    assert path.read_text(encoding="utf-8") == "records\n"


@pytest.mark.parametrize("where", ["command line", "config"])
def test_a_dead_letter_file_that_cannot_be_opened_names_where_its_path_was_given(tmp_path: Path, where: str) -> None:
    """The error named the path where the others name the setting's source: ``/proc/self/status: Pipeline...``."""
    path = config(tmp_path, {"class": "FailEvery"}, Counter={"count": 3})
    target = "/proc/self/status"  # a regular file that cannot be made private
    if where == "config":
        document = json.loads(path.read_text(encoding="utf-8"))
        document["Pipeline"]["dead_letter"] = target
        path.write_text(json.dumps(document), encoding="utf-8")
        result, named = pipeline_run(path), f"{path}: Pipeline.dead_letter"
    else:
        result, named = pipeline_run(path, f"--Pipeline.dead_letter={target}"), "command line: --Pipeline.dead_letter"
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"pipeline-run: error: {named}: '{target}': cannot make the dead-letter file "
                                    "private (mode 0600): ")


def test_a_deeply_nested_line_is_not_a_record(tmp_path: Path) -> None:
    """json.loads raised RecursionError: a traceback and exit 1."""
    path = dead_letters(tmp_path, record(1), "[" * 100_000)
    result = pipeline_run(replayable(tmp_path), f"--replay={path}")
    assert (result.returncode, result.stderr) == (2, f"pipeline-run: error: {path}: line 2: not a dead-letter record: "
                                                     "nested too deeply (expected a JSON object of strings, numbers "
                                                     "and a list of strings)\n")


def test_a_replay_into_its_own_file_stopped_at_once_leaves_it_as_it_was(tmp_path: Path) -> None:
    """Stopped at once (a step stuck past shutdown_timeout), a run keeps no record of what it had in flight: with
    its dead letters written over the replayed file, those messages were nowhere (2,081 of 3,000)."""
    count = 3000
    path = dead_letters(tmp_path, *(record(number) for number in range(count)))
    original = path.read_bytes()
    stuck = config(tmp_path, {"class": "SignalSelf", "nb_thread": 2},
                   SignalSelf={"at": 20, "delay": 0.0005, "block": 1})
    stopped = pipeline_run(stuck, f"--replay={path}", f"--Pipeline.dead_letter={path}",
                           "--Pipeline.shutdown_timeout=0.5")
    assert stopped.returncode == 130, stopped.stderr
    assert (f"{path} is left as it was, to replay all its messages again (the run stopped with messages in flight; "
            "the messages this run processed run again)") in stopped.stderr.splitlines()
    assert path.read_bytes() == original and not Path(f"{path}.replacing").exists()
    again = pipeline_run(stuck, f"--replay={path}", f"--Pipeline.dead_letter={path}", "--SignalSelf.at=-1")
    assert again.returncode == 0 and path.read_bytes() == b"", again.stderr  # replayed whole, into its own file


def test_a_replay_into_its_own_file_that_cannot_write_every_record_leaves_it_as_it_was(tmp_path: Path) -> None:
    """A file size limit cut the records off: the replayed file was emptied and 40 messages were nowhere."""
    path = dead_letters(tmp_path, *(record(number) for number in range(300)))
    original = path.read_bytes()
    failing = config(tmp_path, {"class": "FailEvery", "on_error": "skip"}, FailEvery={"every": 1})
    limited = (f"import resource, runpy, sys; resource.setrlimit(resource.RLIMIT_FSIZE, ({len(original) // 4}, "
               "resource.RLIM_INFINITY)); sys.argv[0] = 'pipeline-run'; "
               "runpy.run_module('pipeline', run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", limited, f"--config={failing}", f"--replay={path}",
                             f"--Pipeline.dead_letter={path}", "--no-progress"], cwd=REPO, capture_output=True,
                            text=True, timeout=30, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 1, result.stderr
    assert (f"{path} is left as it was, to replay all its messages again (not every record was written; the messages "
            "this run processed run again)") in result.stderr.splitlines(), result.stderr
    assert path.read_bytes() == original and not Path(f"{path}.replacing").exists()


@pytest.mark.parametrize(("mode", "stage"), [("sequential", {}), ("threads", {"nb_process": 1})],
                         ids=["sequential", "processes"])
def test_a_failure_in_a_replay_of_a_replay_logs_every_output_a_next_replay_skips(
        tmp_path: Path, mode: str, stage: dict[str, Any]) -> None:
    """Input 0 makes 10,000 outputs: it fails at output 5000 (a chunk of 4096 went on), and in its replay at 9000 (4096
    more). That line said `(4096 of its outputs had gone on: ...)`, while its record (a Resume of 4096, and "delivered":
    4096) has the next replay skip 8192."""
    document = {"version": 1, "Pipeline": {
        "producer_conf": {"name": "COUNT", "module": "algorithms.basic", "class": "Counter", "next_steps": "EXPLODE"},
        "stagers_conf": [{"name": "EXPLODE", "module": "tests.chunk_steps", "class": "Explode", "on_error": "skip",
                          "next_steps": "TALLY", **stage}],
        "consumer_conf": {"name": "TALLY", "module": "tests.chunk_steps", "class": "Tally"}},
        "Counter": {"count": 1}, "Explode": {"per": 10000, "values": 1}, "Tally": {"path": str(tmp_path / "values")}}
    path = tmp_path / "pipeline.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    failed = pipeline_run(path, f"--Pipeline.mode={mode}", f"--Pipeline.dead_letter={first}", "--Explode.fail_at=5000")
    assert failed.returncode == 1 and "(4096 of its outputs had gone on: a replay skips them)" in failed.stderr
    again = pipeline_run(path, f"--Pipeline.mode={mode}", f"--replay={first}", f"--Pipeline.dead_letter={second}",
                         "--Explode.fail_at=9000")
    assert again.returncode == 1
    assert "(8192 of its outputs had gone on, 4096 in this run: a replay skips them)" in again.stderr, again.stderr
    done = pipeline_run(path, f"--Pipeline.mode={mode}", f"--replay={second}")
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "values").read_text(encoding="utf-8").split() == [str(k) for k in range(10000)]


def test_an_empty_replay_path_from_the_python_api_says_it_is_missing(tmp_path: Path) -> None:
    """It said ": cannot read the dead-letter file: No such file or directory", naming nothing."""
    with pytest.raises(ConfigError) as raised:
        Pipeline.from_config(str(replayable(tmp_path)), replay="")
    assert str(raised.value) == "Pipeline.from_config: replay: missing: the dead-letter file to replay"


@pytest.mark.parametrize("into", ["itself", "no file"])
@pytest.mark.parametrize("mode", ["threads", "sequential"])
def test_a_replay_leaves_out_the_last_record_that_a_killed_run_cut(tmp_path: Path, mode: str, into: str) -> None:
    """A run killed (kill -9, the OOM killer) as it wrote a large record left half of it at the end of its file, and
    the replay refused the whole file (exit 2), its whole records with it. Now they replay; the cut one is one warning
    line, and the summary counts it as not replayed (exit 1); a replay into the file does not copy it."""
    path = dead_letters(tmp_path, record(1), record(2))
    with path.open("a", encoding="utf-8") as file:
        file.write(record(3)[:60])  # as a write ended early by a fatal signal leaves it: no newline
    written_to = [f"--Pipeline.dead_letter={path}"] if into == "itself" else []
    result = pipeline_run(replayable(tmp_path), f"--replay={path}", *written_to, f"--Pipeline.mode={mode}")
    assert result.returncode == 1, result.stderr
    assert sorted(written(tmp_path)[:-1]) == [1, 2]
    warned = [line for line in result.stderr.splitlines() if "cut" in line]
    assert warned == [
        f"{result.stderr.split(' WARNING ')[0]} WARNING pipeline.failures: {path}: line 3: the last record was cut "
        "(its run was killed as it wrote it): not replayed",
        f"not replayed: 1 record cut (its run was killed as it wrote it): line 3 of {path}"]
    if written_to:
        assert path.read_text(encoding="utf-8") == ""  # the replayed records ran; the cut one is not copied


def test_a_line_cut_short_before_the_last_is_refused(tmp_path: Path) -> None:
    """Only the last line can be a record its run was killed writing (each run writes its file afresh): one before it
    cut short is a damaged file, refused before any step runs, its JSON error said whole (it ended on a dangling
    "starting at")."""
    path = dead_letters(tmp_path, record(1), record(2)[:60], record(3))
    result = pipeline_run(replayable(tmp_path), f"--replay={path}")
    assert (result.returncode, result.stderr) == (
        2, f"pipeline-run: error: {path}: line 2: not a dead-letter record: invalid JSON at column 51: Unterminated "
           "string starting there\n")
    assert not (tmp_path / "out.jsonl").exists()


def test_a_json_lines_writer_that_its_file_refuses_keeps_whole_lines(tmp_path: Path) -> None:
    """On a full disk (here a file size limit) the writer left half a line at the end of its file: now each line goes
    whole or not at all, and the messages it could not write fail, naming the file."""
    path = config(tmp_path, {"class": "PassThrough", "module": "algorithms.basic"}, Counter={"count": 60})
    result = limited_run(path, 100)  # lines 0..35 take 98 bytes: line 36 would end past the limit
    assert result.returncode == 1, result.stderr
    assert (tmp_path / "out.jsonl").read_text(encoding="utf-8") == "".join(f"{n}\n" for n in range(36))
    assert report_row(result.stderr, "WRITER") == [60, 36, 0, 1]  # its first failure stops the step (on_error)
    assert f"OSError: [Errno 27] File too large: '{tmp_path / 'out.jsonl'}'" in result.stderr


@pytest.mark.parametrize("mode", ["threads", "sequential"])
def test_a_replay_that_sent_every_message_ends_with_its_report_whatever_became_of_its_file(tmp_path: Path,
                                                                                            mode: str) -> None:
    """Another replay of the file, into itself, put its records in its place while this one ran: this one, which had
    sent every message, read it again at its end for those it had not sent, and ended with only "changed since the
    replay read it" (exit 2, no report)."""
    path = dead_letters(tmp_path, *(record(number) for number in range(10)))
    stage = config(tmp_path, {"class": "ReplacesFile", "nb_thread": 1}, ReplacesFile={"at": -1, "path": str(path),
                                                                                       "delay": 0})
    again = tmp_path / "again.jsonl"
    result = pipeline_run(stage, f"--replay={path}", f"--Pipeline.dead_letter={again}", f"--Pipeline.mode={mode}")
    assert result.returncode == 0, result.stderr
    assert f"dead letters: 0 records written to {again}\n" in result.stderr
    assert report_row(result.stderr, "STAGE") == [10, 10, 10, 0]
    assert "error" not in result.stderr


@pytest.mark.parametrize("mode", ["threads", "sequential"])
def test_a_replay_stopped_after_its_file_was_replaced_says_so_in_its_report(tmp_path: Path, mode: str) -> None:
    """A replay stopped midway (Ctrl+C) cannot read the messages it did not send from a file that another replay
    replaced since: its report counts them as dead letters that could not be written, where the run ended
    with only that file's error line."""
    count = 5000
    path = dead_letters(tmp_path, *(record(number) for number in range(count)))
    stage = config(tmp_path, {"class": "ReplacesFile", "nb_thread": 1}, ReplacesFile={"at": 20, "path": str(path),
                                                                                       "delay": 0.0005})
    again = tmp_path / "again.jsonl"
    result = pipeline_run(stage, f"--replay={path}", f"--Pipeline.dead_letter={again}", f"--Pipeline.mode={mode}")
    assert result.returncode == 130, result.stderr  # interrupted: its report says so, and that messages are gone
    processed = report_row(result.stderr, "STAGE")[1]
    assert 20 < processed < count, result.stderr
    assert (f"dead letters: 0 records written to {again}; {count - processed} could not be written: the messages not "
            f"sent are gone: {path}: changed since the replay read it") in result.stderr, result.stderr
