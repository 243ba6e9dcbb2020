"""The pure parts of the engine, without threads: the router's worker choice (WorkerPool), the
ordered step's Results, and the memory bound that flow.message_bound() computes."""

from __future__ import annotations

import time
import tracemalloc
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.config import load_config
from pipeline.engine.flow import (
    FANOUT_CREDIT,
    HELD_MESSAGE_BYTES,
    PREFETCH,
    PREFETCH_BYTES,
    SOURCE_MAX_DELAY_SECONDS,
    message_bound,
)
from pipeline.engine.outlets import Outlet
from pipeline.engine.pool import WorkerPool
from pipeline.engine.results import Results
from pipeline.engine.wire import Answer, Packet, parse_result
from pipeline.execution.executor import UNORDERED
from pipeline.message import Encoded, encode
from tests.wire_helpers import as_received, result_frames

# --------------------------------------------------------------------------- WorkerPool: least recently used first


def hand_out(pool: WorkerPool, count: int, nbytes: int = 100) -> list[bytes]:
    """The workers chosen for ``count`` one-message packets, in order."""
    chosen = []
    for _ in range(count):
        worker = pool.choose()
        assert worker is not None
        packet = Packet()
        packet.add(Encoded(b"x" * nbytes, []))
        pool.sent(worker, packet)
        chosen.append(worker)
    return chosen


def test_the_worker_idle_longest_gets_work_first() -> None:
    pool = WorkerPool()
    for worker in (b"A", b"B", b"C"):
        pool.join(worker, 1)
    assert hand_out(pool, 3) == [b"A", b"B", b"C"]  # in the order they joined
    assert pool.choose() is None and pool.busy() == 3
    for worker in (b"C", b"A", b"B"):  # they finish in this order...
        pool.done(worker, 1)
    assert hand_out(pool, 3) == [b"C", b"A", b"B"]  # ...so C has waited longest, then A, then B


def test_a_worker_that_just_got_work_goes_to_the_back_of_the_line() -> None:
    pool = WorkerPool()
    pool.join(b"A", 4)
    pool.join(b"B", 4)
    assert hand_out(pool, 4) == [b"A", b"B", b"A", b"B"]  # room left, but the other has waited longer
    assert (pool.room(b"A"), pool.room(b"B")) == (2, 2)


def test_a_worker_holding_prefetch_bytes_gets_no_more_until_it_is_idle() -> None:
    pool = WorkerPool()
    pool.join(b"A", 10)
    pool.join(b"B", 10)
    assert hand_out(pool, 1, nbytes=PREFETCH_BYTES) == [b"A"]
    assert hand_out(pool, 2) == [b"B", b"B"]  # A has room for 9 more messages, but not for more bytes
    pool.done(b"A", 10)
    assert hand_out(pool, 2) == [b"B", b"A"]  # A is back, behind B who waited longer


def test_at_the_end_what_is_left_is_shared_in_proportion_to_the_windows() -> None:
    pool = WorkerPool()
    pool.join(b"A", 100)  # fast: asks for 100
    pool.join(b"B", 10)  # ten times slower
    pool.join(b"C", 0)  # its init() failed
    assert pool.share_out(40) == (b"A", 37)  # 40 * 100 / 110, rounded up (B's share: 4)
    assert hand_out(pool, 30) == [b"A", b"B"] * 10 + [b"A"] * 10  # B is full at 10
    assert pool.share_out(10) == (b"A", 17)  # A's share of the 40 left is still 37: it holds 20
    even = WorkerPool()
    even.join(b"A", 10)
    even.join(b"B", 10)
    hand_out(even, 10)
    assert even.share_out(0) is None  # each holds its share (5 of 10)
    assert even.share_out(1) == (b"A", 1)  # rounded up: one more is somebody's


def test_a_shrunken_window_takes_a_worker_out_of_the_line() -> None:
    pool = WorkerPool()
    pool.join(b"A", 4)
    pool.join(b"B", 4)
    hand_out(pool, 4)
    pool.done(b"A", 1)  # A finished one packet and now asks to hold 1 message: it holds 1 already
    assert pool.choose() == b"B"
    assert pool.room(b"A") == 0


def packet_of(first_seq: int, count: int) -> Packet:
    """A packet of ``count`` one-byte messages numbered from ``first_seq``."""
    packet = Packet()
    for _ in range(count):
        packet.add(Encoded(b"x", []))
    packet.first_seq = first_seq
    return packet


def test_a_worker_is_held_to_the_inputs_of_its_oldest_packet() -> None:
    """What a worker outside the run may answer, say READY for, and leaves behind when it dies."""
    pool = WorkerPool()
    pool.join(b"p0.0", 10)
    assert not pool.next_seqs(b"p0.0", 1) and not pool.finished_oldest(b"p0.0", answered=True)
    pool.sent(b"p0.0", packet_of(10, 3))
    pool.sent(b"p0.0", packet_of(13, 2))
    assert list(pool.next_seqs(b"p0.0", 5)) == [10, 11, 12]  # never beyond the oldest packet
    pool.answered(b"p0.0")
    assert list(pool.next_seqs(b"p0.0", 5)) == [11, 12]
    assert not pool.finished_oldest(b"p0.0", answered=True)  # a READY now would drop 11 and 12
    assert pool.finished_oldest(b"p0.0", answered=False)  # a thread of the run answers nothing
    left = pool.lose(b"p0.0")
    assert [(p.first_seq, len(p)) for p in left] == [(11, 2), (13, 2)]  # the answered one is not redelivered


# --------------------------------------------------------------------------- Reorderer


def released(release: list[tuple[int, list[tuple[Encoded, str | None]]]]) -> list[tuple[int, list]]:
    """What Results released, with each message's in-band bytes."""
    return [(seq, [(bytes(message.inband), target) for message, target in outputs]) for seq, outputs in release]


def result(*inputs: tuple[int, list[tuple[bytes, int | None]]]) -> list[Answer]:
    """A worker's RESULT as the router parses it: for each input, its outputs and their target indices."""
    answers = [Answer(seq, [(Encoded(body, []), target) for body, target in outputs]) for seq, outputs in inputs]
    return parse_result(as_received(result_frames(answers)))


def test_ordered_results_releases_outputs_in_input_order() -> None:
    reorderer = Results(("X", "Y"), ordered=True)
    assert reorderer.add(result((2, [(b"two", None)]), (1, []))) == []
    assert sorted(reorderer.held) == [1, 2] and reorderer.held_bytes == 3 + HELD_MESSAGE_BYTES
    # init() and finish() outputs keep no order
    assert released(reorderer.add(result((UNORDERED, [(b"init", 1)])))) == [(UNORDERED, [(b"init", "Y")])]
    assert released(reorderer.add(result((0, [(b"zero", 0), (b"zero-all", None)])))) == [
        (0, [(b"zero", "X"), (b"zero-all", None)]), (1, []), (2, [(b"two", None)])]
    assert (reorderer.held, reorderer.held_bytes, reorderer.next_seq) == ({}, 0, 3)


def test_an_input_that_failed_for_good_releases_what_waited_for_it() -> None:
    reorderer = Results(("X",), ordered=True)
    assert reorderer.add(result((1, [(b"one", None)]), (3, [(b"three", None)]))) == []
    assert released(reorderer.skip(0)) == [(1, [(b"one", None)])]  # 0 died with its workers: 2 is next
    assert released(reorderer.skip(2)) == [(3, [(b"three", None)])]
    assert reorderer.skip(5) == [] and released(reorderer.add(result((4, [])))) == [(4, [])]
    assert released(reorderer.add(result((6, [(b"six", None)])))) == [(6, [(b"six", None)])]  # 5 was skipped early


@st.composite
def shuffled_results(draw: st.DrawFn) -> list[list[int]]:
    """The inputs 0..n-1 in a random order, cut into RESULT packets of random sizes."""
    order = draw(st.permutations(range(draw(st.integers(0, 30)))))
    cuts = sorted(draw(st.lists(st.integers(0, len(order)), max_size=6)))
    return [list(order[a:b]) for a, b in zip([0, *cuts], [*cuts, len(order)], strict=True)]


@settings(max_examples=60, deadline=None)
@given(shuffled_results())
def test_ordered_results_holds_back_exactly_what_is_early(packets: list[list[int]]) -> None:
    reorderer = Results(("X",), ordered=True)
    arrived: set[int] = set()
    committed: list[int] = []
    for packet in packets:
        committed += [seq for seq, _ in reorderer.add(result(*[(seq, [(b"o" * (seq % 3), None)] * (seq % 2))
                                                               for seq in packet]))]
        arrived.update(packet)
        released = 0
        while released in arrived:
            released += 1
        assert committed == list(range(released))
        assert sorted(reorderer.held) == sorted(arrived - set(range(released)))
        assert reorderer.held_bytes == sum((seq % 3 + HELD_MESSAGE_BYTES) * (seq % 2) for seq in reorderer.held)


def test_tiny_held_back_outputs_count_what_they_take_not_their_pickles_alone() -> None:
    # Counted by their 5-byte pickles, an ordered step's ints held back behind one slow input took 1 GiB where
    # HELD_BACK_BYTES said 64 MiB.
    count = 20_000
    tracemalloc.start()
    try:
        reorderer = Results(("X",), ordered=True)
        reorderer.add([Answer(1, [(encode(number), None) for number in range(count)])])
        taken, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    pickles = sum(len(encode(number).inband) for number in range(count))
    assert taken <= reorderer.held_bytes == pickles + count * HELD_MESSAGE_BYTES


# --------------------------------------------------------------------------- message_bound, worked out by hand


def bound_of(stager: dict[str, Any], consumer_limit: int = 4) -> int | None:
    """message_bound of P -> S (the given entry) -> C (queue_limit ``consumer_limit``)."""
    steps = "tests.contract_steps"
    return message_bound(load_config({
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "P", "module": steps, "class": "Numbers", "next_steps": "S"},
            "stagers_conf": [{"name": "S", "module": "algorithms.basic", "class": "PassThrough", "next_steps": "C",
                              **stager}],
            "consumer_conf": {"name": "C", "module": steps, "class": "Record", "queue_limit": consumer_limit},
        },
    }))


def test_message_bound_of_a_small_chain() -> None:
    # Batches: B(S) = min(MAX_BATCH, 8 // 2) = 4 and B(C) = 4 // 2 = 2; windows: K(S) = 8, K(C) = 4 (the queue limits).
    # P: holds up to B(S) - 1 = 3 unsent outputs.
    # S (2 workers, Q 8, one sender: P): each worker holds up to B(C) - 1 = 1 unsent output: 2;
    #    Q + W * K(S) + U * 2 * B(S) = 8 + 2 * 8 + 1 * 2 * 4.
    # C (1 worker, Q 4, two senders: S's workers): 4 + 1 * 4 + 2 * 2 * 2.
    expected = 3 + 2 + (8 + 2 * 8 + 8) + (4 + 4 + 8)
    assert bound_of({"nb_thread": 2, "queue_limit": 8}) == expected == 53


def test_message_bound_of_a_small_ordered_chain() -> None:
    # As above, but S is ordered: its router is C's one sender (C: 4 + 4 + 1 * 2 * 2), it alone holds
    # unsent outputs (B(C) - 1 = 1; its workers send nothing themselves), and it holds back the outputs
    # of at most W * K(S) inputs.
    # Its workers return their outputs to it: each sends at most FANOUT_CREDIT RESULTs that fan out, of B(S) more.
    expected = 3 + 1 + (8 + 2 * 8 + 8 + 2 * 8 + 2 * FANOUT_CREDIT * 4) + (4 + 4 + 4)
    assert bound_of({"nb_thread": 2, "queue_limit": 8, "ordered": True}) == expected == 80


def test_message_bound_with_the_default_queue_limit() -> None:
    # Q = 512 (the default), so B = 256 and K = min(1 + PREFETCH, Q) = 512: P holds 255 unsent;
    # S: 512 + 512 + 2 * 256 and its worker 255 unsent; C: 512 + 512 + 2 * 256.
    assert PREFETCH == 512
    assert bound_of({}, consumer_limit=512) == 255 + (512 + 512 + 512) + 255 + (512 + 512 + 512) == 3582


def test_an_unbounded_queue_has_no_message_bound() -> None:
    assert bound_of({"queue_limit": -1}) is None
    assert bound_of({}, consumer_limit=-1) is None


# --------------------------------------------------------------------------- a producer's batches


class CountedFlushes(Outlet):
    """An outlet that counts its flushes."""

    def __init__(self, max_delay: float) -> None:
        super().__init__()
        self.max_delay = max_delay
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        self.oldest = 0.0


def test_a_producers_first_message_goes_at_once_and_its_batches_then_wait_longer_up_to_the_source_delay() -> None:
    outlet = CountedFlushes(0.0)
    outlet.oldest = time.monotonic()  # just committed
    outlet.produced(0.0)
    assert outlet.flushes == 1
    delays = [outlet.max_delay]
    for _ in range(6):
        outlet.oldest = time.monotonic() - 1.0  # waited long enough
        outlet.produced(0.0)
        delays.append(outlet.max_delay)
    assert delays == pytest.approx([0.0005, 0.0015, 0.0035, 0.0075, 0.01, 0.01, 0.01])
    assert outlet.flushes == 7 and SOURCE_MAX_DELAY_SECONDS == 0.01
    outlet.oldest = time.monotonic()  # not due: it waits for more
    outlet.produced(0.0)
    assert outlet.flushes == 7


def test_an_outlet_that_waits_longer_than_a_source_keeps_its_delay() -> None:
    outlet = CountedFlushes(0.05)  # a shard's, in a worker process
    outlet.oldest = time.monotonic() - 1.0
    outlet.produced(0.0)
    assert outlet.flushes == 1 and outlet.max_delay == 0.05
