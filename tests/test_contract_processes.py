"""The worker contract in a step whose workers are processes (nb_process): the same promises as in
threads mode, checked with the steps of tests/test_contract.py (their consumer runs in the run's process)."""

from __future__ import annotations

import pytest

from tests.contract_helpers import new_tag, received, step
from tests.contract_steps import SENT
from tests.engine_helpers import chain, run

#: A stager in one worker process.
IN_A_PROCESS = {"nb_process": 1}


def test_a_receiver_in_a_process_cannot_change_what_the_sender_holds() -> None:
    tag = new_tag()
    n = 4
    report = run(chain(step("P", "Arrays", ["W"]), [step("W", "WriteInPlace", ["C"], **IN_A_PROCESS)],
                       step("C", "Record"), Arrays={"tag": tag, "count": n}, Record={"tag": tag}))
    assert report.exit_status == 0, report.table()
    seen = sorted(received(tag), key=lambda r: r["i"])
    assert [r["i"] for r in seen] == list(range(n))
    for record in seen:
        assert record["big_error"] is not None and "read-only" in record["big_error"]
        assert record["big_seen"] == 0.0 and record["small_seen"] == 1.0
        assert record["masked_seen"] == 1.0  # a numpy subclass travels in the pickle: a writable copy
    for message in SENT.pop(tag):
        assert not message["big"].any() and not message["small"].any() and not message["masked"].any()


@pytest.mark.parametrize("kind,why", [
    ("buffers", "has 70000 buffers of 65536 bytes or more; at most 65535 can travel"),
    ("ctypes", "cannot be rebuilt by a receiver"),
    ("empty", "an empty memoryview of format 'd' and shape (0, 5) cannot be rebuilt by a receiver"),
])
def test_a_message_a_process_cannot_send_fails_alone(kind: str, why: str) -> None:
    tag = new_tag()
    n = 40
    report = run(chain(step("P", "Numbers", ["S"]),
                       [step("S", "BadOutput", ["C"], on_error="skip", config={"bad_on": 5, "kind": kind},
                             **IN_A_PROCESS)],
                       step("C", "Record"), Numbers={"count": n}, Record={"tag": tag}))
    assert report.exit_status == 1
    assert sorted(received(tag)) == [i for i in range(n) if i != 5]
    assert (report["S"].received, report["S"].processed, report["S"].failed) == (n, n - 1, 1)
    first_error = report.steps["S"].first_error or ""
    assert first_error.startswith("MessageError: ") and why in first_error, first_error
    assert report.unprocessed == 0


@pytest.mark.parametrize("where,said", [("init", "init(): "), ("run", ""), ("finish", "finish(): ")])
@pytest.mark.parametrize("mode", ["sequential", "threads", "processes"])
def test_a_failure_naming_a_file_whose_name_is_not_utf8_is_told_alike_in_every_mode(mode: str, where: str,
                                                                                  said: str) -> None:
    """A step's error quoting a name as os.fsdecode() gives it (a lone surrogate) stopped every worker process that
    told it (an internal error: UnicodeEncodeError), the step lost its workers and the error was never said."""
    tag = new_tag()
    n = 10
    extra = {"nb_process": 1} if mode == "processes" else {}
    report = run(chain(step("P", "Numbers", ["S"]),
                       [step("S", "MissesAFile", ["C"], on_error="skip", config={"where": where}, **extra)],
                       step("C", "Record"), Numbers={"count": n}, Record={"tag": tag}),
                 "threads" if mode == "processes" else mode)
    assert report.exit_status == 1, report.table()
    first_error = report.steps["S"].first_error or ""
    assert first_error == f"{said}FileNotFoundError: missing input file caf\\udce9.txt", report.table()
    assert report.unprocessed == 0 and "internal error" not in report.table()
    if where == "run":
        assert sorted(received(tag)) == [i for i in range(n) if i != 3]
        assert (report["S"].processed, report["S"].failed) == (n - 1, 1)


@pytest.mark.parametrize("what,line", [("SystemExit", "run(): SystemExit: 0"),
                                       ("KeyboardInterrupt", "run(): KeyboardInterrupt: ")])
def test_system_exit_in_a_process_fails_the_step(what: str, line: str) -> None:
    tag = new_tag()
    report = run(chain(step("P", "Numbers", ["S"]),
                       [step("S", "Raises", ["C"], config={"at": 3, "what": what}, **IN_A_PROCESS)],
                       step("C", "Record"), Numbers={"count": 10}, Record={"tag": tag}))
    assert report.exit_status == 1
    assert report.steps["S"].fatal and line in (report.steps["S"].first_error or ""), report.table()
    received(tag)


def test_a_generators_return_value_is_not_sent_and_a_warning_says_so(capfd: pytest.CaptureFixture[str]) -> None:
    """It was dropped without a word; the worker process says it."""
    tag = new_tag()
    report = run(chain(step("P", "Numbers", ["S"]), [step("S", "YieldsAndReturns", ["C"], **IN_A_PROCESS)],
                       step("C", "Record"), Numbers={"count": 5}, Record={"tag": tag}))
    assert report.exit_status == 0, report.table()
    assert sorted(map(str, received(tag))) == sorted(map(str, [*range(5), "finish"]))
    said = [line for line in capfd.readouterr().err.splitlines() if "is a generator that returned" in line]
    assert len(said) == 1 and said[0].endswith(
        "step S: its run() is a generator that returned a tuple: not sent (a generator's return value is no output: "
        "yield it to send it); said once a worker"), said
