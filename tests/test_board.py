"""A worker process's busy board (pipeline.engine.board): what one mapping writes, another of the same file reads."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.engine.board import BusyBoard, HaltedSteps
from pipeline.execution.executor import FINISHING


def test_the_parent_reads_the_messages_the_childs_threads_mark(tmp_path: Path) -> None:
    parent = BusyBoard(tmp_path / "board", 3, create=True)
    child = BusyBoard(tmp_path / "board", 3)
    assert parent.running() == []
    child.mark(0, 7)
    child.mark(2, 2**64 - 3)  # any uint64, the largest too
    assert parent.running() == [7, 2**64 - 3]
    child.mark(0, None)
    child.mark(1, FINISHING)
    assert parent.running() == [FINISHING, 2**64 - 3]
    child.close()
    parent.close()


def test_a_halt_flag_is_per_step_and_the_childs_threads_see_it(tmp_path: Path) -> None:
    parent = BusyBoard(tmp_path / "board", 1, create=True)
    child = BusyBoard(tmp_path / "board", 1)
    halted = HaltedSteps(("A", "B", "C"), child)
    assert "B" not in halted and not child.halted(1)
    parent.halt(1)
    parent.halt(1)  # twice: still one flag
    assert "B" in halted and "A" not in halted and "C" not in halted
    assert child.halted(1) and not child.halted(0) and not child.halted(2)
    halted.add("A")  # a failure of the process's own (on_error stop)
    assert "A" in halted
    child.mark(0, 3)
    assert parent.running() == [3]  # the flags' word is not a thread's
    child.close()
    parent.close()


def test_a_board_read_after_it_was_unmapped_raises_value_error(tmp_path: Path) -> None:
    board = BusyBoard(tmp_path / "board", 2, create=True)
    board.close()
    with pytest.raises(ValueError):
        board.running()
    with pytest.raises(ValueError):
        board.halted()
