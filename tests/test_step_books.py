"""The small books a step's state keeps (engine.tallies, engine.held_failures), without a socket.

A fused chain's figures count once the answers sent after their TALLY are read, and a failure a
worker process reported counts once its covering answer is read: a process that dies between the two
has its messages run again, so neither may count before.
"""

from __future__ import annotations

from pipeline.engine.held_failures import WHOLE, HeldFailures
from pipeline.engine.tallies import Tallies

WORKER, OTHER = b"P0-0", b"P1-0"


def test_a_tally_counts_only_once_its_answers_come() -> None:
    tallies = Tallies(members=2)
    assert tallies.expect(WORKER, [(3, 3, 0, 5, 0.5, 0.2), (5, 4, 1, 4, 1.0, 0.3), (4, 4, 0, 4, 0.1, 0.1)])
    assert tallies.members[0].counts().received == 0 and tallies.emitted_to_members == 0
    assert tallies.take(WORKER)
    assert tallies.emitted_to_members == 5
    assert (tallies.members[0].counts().processed, tallies.members[0].counts().failed) == (4, 1)
    assert tallies.members[1].busy_time == 0.1 and tallies.members[0].max_time == 0.3
    assert not tallies.take(WORKER)  # taken once


def test_a_later_tally_replaces_the_workers_totals_and_workers_add_up() -> None:
    tallies = Tallies(members=1)
    for worker, record in ((WORKER, (1, 1, 0, 1, 0.1, 0.1)), (WORKER, (2, 2, 0, 2, 0.2, 0.1)),
                           (OTHER, (1, 1, 0, 1, 0.3, 0.3))):
        tallies.expect(worker, [record, record])
        tallies.take(worker)
    assert tallies.members[0].counts().received == 3  # a worker's TALLY holds its totals, not what is new
    assert round(tallies.members[0].busy_time, 6) == 0.5 and tallies.members[0].max_time == 0.3


def test_a_tally_of_a_worker_that_died_first_never_counts() -> None:
    tallies = Tallies(members=1)
    tallies.expect(WORKER, [(1, 1, 0, 1, 0.1, 0.1)] * 2)
    tallies.forget(WORKER)
    assert not tallies.take(WORKER) and tallies.members[0].counts().received == 0


def test_a_tally_of_another_number_of_steps_is_refused() -> None:
    tallies = Tallies(members=1)
    assert not tallies.expect(WORKER, [(1, 1, 0, 1, 0.1, 0.1)] * 3)
    assert not tallies.take(WORKER)
    assert Tallies(members=0).emitted_to_members == 0


def test_held_failures_count_once_covered_and_in_the_order_held() -> None:
    counted: list[str] = []
    held = HeldFailures()
    assert not held
    held.hold(WORKER, 7, WHOLE, lambda: counted.append("7"))
    held.hold(WORKER, 9, WHOLE, lambda: counted.append("9"))
    held.hold(OTHER, 7, WHOLE, lambda: counted.append("other 7"))
    assert held.holds(WORKER, 7) and not held.holds(WORKER, 8) and not held.holds(WORKER, 7, 0)
    held.release(WORKER, lambda answer, _place: answer == 7)
    assert counted == ["7"] and held.holds(WORKER, 9) and not held.holds(WORKER, 7)
    held.release(WORKER, lambda answer, _place: True)
    assert counted == ["7", "9"] and held  # the other worker's still waits
    held.forget(OTHER)
    held.release(OTHER, lambda answer, _place: True)
    assert counted == ["7", "9"] and not held


def test_a_shards_failures_are_keyed_by_their_place() -> None:
    counted: list[int] = []
    held = HeldFailures()
    for place in (2, 5):
        held.hold(WORKER, 0, place, lambda place=place: counted.append(place))
    assert held.holds(WORKER, 0, 5) and not held.holds(WORKER, 0)
    held.release(WORKER, lambda shard, place: shard == 0 and place < 4)  # a chunk covering the shard's first 4
    assert counted == [2] and held.holds(WORKER, 0, 5)
