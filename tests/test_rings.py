"""Large buffers through shared-memory rings between the run's process and its worker processes
(engine.rings): the ring itself (records, wrap-around, a full ring, records it never wrote), and what a
user sees: arrays arrive whole and read-only, a killed worker process loses and duplicates nothing, no
ring is left behind, and a remote peer cannot send buffers "in a ring"."""

from __future__ import annotations

import errno
import json
import mmap
import os
import signal
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.engine import rings
from pipeline.engine.addresses import PRIVATE_PREFIX
from pipeline.engine.rings import RING_BYTES, Ring
from pipeline.engine.router import Router
from pipeline.engine.wire import HEADER, IN_RING, Kind, Packet, WireError, packet_from_frames, process_worker_id
from pipeline.message import Encoded
from tests.process_helpers import alive, finish_run, pids, start_run, wait_for
from tests.wire_helpers import as_received

pytestmark = pytest.mark.skipif(not rings.SHM_DIR.is_dir(), reason="no /dev/shm on this host")


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Ring, Ring]]:
    """A ring's writer side and reader side (two mappings of one file, as in two processes)."""
    path = rings.SHM_DIR / f"{rings.PREFIX}{os.getpid()}-test-{tmp_path.name}"
    writer = Ring(path, create=True, grows=True)
    reader = Ring(path)
    yield writer, reader
    writer.close()
    reader.close()
    path.unlink(missing_ok=True)


def test_buffers_come_out_as_they_went_in_and_free_their_space(pair: tuple[Ring, Ring]) -> None:
    writer, reader = pair
    buffers = [b"a" * 100, bytes(range(256)) * 4, b""]
    records = writer.put(buffers)
    assert records is not None
    assert reader.take(records)[:] == buffers
    # What was read is free again: the ring never fills with what its reader took.
    for _ in range(40):
        records = writer.put([b"x" * (RING_BYTES // 8)])
        assert records is not None
        reader.take(records)[:]


def test_the_other_process_never_sees_a_cursor_half_written(tmp_path: Path) -> None:
    """A writer in another process publishes its cursor with every put; read meanwhile, the cursor only ever grows
    (written through ``struct`` it read 0 in the middle of a write, and a record just written looked unwritten)."""
    path = rings.SHM_DIR / f"{rings.PREFIX}{os.getpid()}-test-{tmp_path.name}"
    reader = Ring(path, create=True)
    writer = ("import sys\nfrom pipeline.engine.rings import Ring\nring = Ring(sys.argv[1])\n"
              "while ring.put([b'x' * 64]) is not None:\n    pass\n")
    try:
        child = subprocess.Popen([sys.executable, "-c", writer, str(path)])
        seen = [0]
        while child.poll() is None:
            written, _ = reader.cursors()
            assert written >= seen[-1], f"the cursor went from {seen[-1]} back to {written}"
            if written != seen[-1]:
                seen.append(written)
        assert child.wait(timeout=60) == 0
        assert reader.cursors()[0] == RING_BYTES  # full: 64-byte buffers fill it exactly
        assert len(seen) > 10  # read while the writer was at work
    finally:
        reader.close()
        path.unlink(missing_ok=True)


def test_a_full_ring_refuses_and_writes_nothing(pair: tuple[Ring, Ring]) -> None:
    writer, reader = pair
    first = writer.put([b"1" * (RING_BYTES // 2)])
    assert writer.put([b"2" * (RING_BYTES // 2 + 1)]) is None  # would overwrite what is not yet read
    assert first is not None and [b[:1] for b in reader.take(first)[:]] == [b"1"]
    # Read (copied out, so given back at once), the whole ring is free again: the next buffer, too large for the
    # rest of the ring (a buffer never wraps), goes at its start; beside it, the rest of the ring has no room for it.
    records = writer.put([b"2" * (RING_BYTES // 2 + 1)])
    assert records is not None and array("Q", records)[0] % RING_BYTES == 0
    assert writer.put([b"3" * (RING_BYTES // 2)]) is None


@pytest.fixture
def lend_all(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lend buffers of any size (a quarter of the ring is larger than LEND_MAX_BYTES)."""
    monkeypatch.setattr(rings, "LEND_MAX_BYTES", RING_BYTES)


def test_buffers_are_lent_in_place_once_and_in_order_and_free_once_dropped(pair: tuple[Ring, Ring],
                                                                           lend_all: None) -> None:
    """A packet's buffers stay in the ring until its messages are read, one by one: each read lends a read-only
    view of the ring; its space is free again once nothing refers to it (nor to an array made of it) and every
    buffer lent before it is free too; reading one again, or out of order, is refused."""
    writer, reader = pair
    quarter = RING_BYTES // 4
    records = writer.put([b"1" * quarter, b"2" * quarter])  # the ring's first half
    assert records is not None
    taken = reader.take(records)
    assert len(taken) == 2 and taken.nbytes == 2 * quarter
    assert writer.put([b"x" * (2 * quarter + 1)]) is None  # nothing read yet: nothing freed
    first = taken[:1]
    assert first == [b"1" * quarter] and first[0].readonly
    assert writer.put([b"3" * (2 * quarter)]) is not None  # the second half
    assert writer.put([b"4" * quarter]) is None  # the first quarter: its buffer is still referred to
    del first
    reader.reclaim()  # as the reader does when it reads on
    assert writer.put([b"4" * quarter]) is not None  # the first quarter, given back
    with pytest.raises(ValueError, match="once and in order"):
        taken[:1]
    [second] = taken[1:]
    array = np.frombuffer(second, np.uint8)  # an array made of the view keeps its space too
    assert not array.flags.writeable
    del second
    reader.reclaim()
    assert writer.put([b"5" * quarter]) is None
    del array
    reader.reclaim()
    assert writer.put([b"5" * quarter]) is not None


def test_a_buffer_given_back_early_waits_for_those_lent_before_it(pair: tuple[Ring, Ring], lend_all: None) -> None:
    writer, reader = pair
    quarter = RING_BYTES // 4
    records = writer.put([b"1" * quarter, b"2" * quarter])
    assert records is not None
    first, second = reader.take(records)[:]
    del second
    reader.reclaim()
    assert writer.put([b"3" * (2 * quarter)]) is not None  # the second half, never written
    assert writer.put([b"4" * quarter]) is None  # the second quarter is free, but the first is not
    assert first == b"1" * quarter
    del first
    reader.reclaim()
    assert writer.put([b"4" * (2 * quarter)]) is not None  # both quarters, given back in turn


def test_a_ring_found_full_is_used_again_once_its_reader_lets_go(pair: tuple[Ring, Ring]) -> None:
    """While the reader keeps what it read, the writer finds the ring full and sends frames; once the reader lets
    go, reading a packet that came as frames moves its cursor too, and the next packet goes in the ring again."""
    writer, reader = pair

    def send(value: int) -> tuple[bool, list]:
        packet = Packet()
        packet.add(Encoded(b"p", [bytes([value]) * (1 << 20)]))
        frames = packet.frames(Kind.WORK, ring=writer)
        in_ring = bool(HEADER.unpack_from(frames[0])[1] & IN_RING)
        [(_, _, buffers)] = packet_from_frames(as_received(frames), ring=reader).messages()
        return in_ring, buffers

    kept = [send(value) for value in range(24)]  # 1 MiB each: the ring holds 16
    assert [in_ring for in_ring, _ in kept] == [True] * 16 + [False] * 8
    assert all(bytes(buffers[0]) == bytes([value]) * (1 << 20) for value, (_, buffers) in enumerate(kept))
    kept.clear()
    assert send(24)[0] is False  # the writer still sees the ring full: this one comes as frames
    assert send(25)[0] is True  # reading it gave the ring back


def test_every_buffer_starts_on_a_cache_line_so_arrays_read_in_place_are_aligned(pair: tuple[Ring, Ring]) -> None:
    writer, reader = pair
    records = writer.put([b"odd", np.arange(1000, dtype=np.float64)])
    assert records is not None
    positions = np.frombuffer(records, np.uint64)[::2]
    assert all(int(position) % rings.ALIGNMENT == 0 for position in positions)
    _, floats = reader.take(records)[:]
    array = np.frombuffer(floats, np.float64)
    assert array.flags.aligned and array[999] == 999.0


def test_a_buffer_larger_than_what_is_lent_is_copied_out_and_free_at_once(pair: tuple[Ring, Ring]) -> None:
    writer, reader = pair
    size = rings.LEND_MAX_BYTES + rings.ALIGNMENT
    records = writer.put([b"1" * size])
    assert records is not None
    [copy] = reader.take(records)[:]
    assert type(copy) is bytes and copy == b"1" * size
    reader.reclaim()
    assert writer.put([b"2" * (RING_BYTES - size)]) is not None  # the rest of the ring
    assert writer.put([b"3" * size]) is not None  # where the copy was: free, though the copy is still held
    assert copy == b"1" * size


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(rings.LEND_MAX_BYTES // 2, 2 * rings.LEND_MAX_BYTES), st.booleans()),
                min_size=20, max_size=40))
def test_what_a_reader_keeps_is_never_written_over(steps: list[tuple[int, bool]]) -> None:
    """Buffers kept (a step that keeps what it receives) hold their space however much is written after them, lent
    or copied out: the ring refuses what would not fit beside them, and once they are dropped it is free again."""
    path = rings.SHM_DIR / f"{rings.PREFIX}{os.getpid()}-hypothesis-kept"
    writer, reader = Ring(path, create=True, grows=True), Ring(path)
    try:
        kept = []
        for number, (size, keep) in enumerate(steps):
            records = writer.put([bytes([number % 256]) * size])
            if records is None:  # the ring refused: only what is kept (and all written after it) can fill it
                assert kept
                continue
            [view] = reader.take(records)[:]
            if keep:
                kept.append((view, number % 256))
            del view
        assert all(view == bytes([fill]) * len(view) for view, fill in kept)
        kept.clear()
        reader.reclaim()
        assert writer.put([b"x" * (RING_BYTES // 2)]) is not None
    finally:
        writer.close()
        reader.close()
        path.unlink()


def allocated(path: Path) -> int:
    """The bytes of shared memory a ring's file holds."""
    return os.stat(path).st_blocks * 512


def test_a_ring_takes_shared_memory_only_as_its_buffers_need_it(pair: tuple[Ring, Ring]) -> None:
    """Made, a ring holds its first step; written, what its writer's cursor has reached; however much goes
    through, never more than the ring."""
    writer, reader = pair
    step = rings.RESERVE_STEP_BYTES
    assert allocated(writer.path) <= mmap.PAGESIZE + step
    size = step // 3
    for number in range(7):  # 7/3 of a step
        [out] = reader.take(writer.put([bytes([number]) * size]))[:]
        assert out == bytes([number]) * size
        del out
    assert mmap.PAGESIZE + 2 * step < allocated(writer.path) <= mmap.PAGESIZE + 3 * step
    size = 3 * step + 1000
    for number in range(12):  # through the whole ring, twice
        records = writer.put([bytes([number]) * size])
        assert records is not None
        [out] = reader.take(records)[:]
        assert out == bytes([number]) * size
        del out
    assert allocated(writer.path) <= mmap.PAGESIZE + RING_BYTES


def test_a_ring_that_can_reserve_no_more_goes_round_what_it_has(pair: tuple[Ring, Ring],
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """Shared memory full after a ring was made: what fits in the ring's first step goes there, each buffer at its
    start again once the reader is done with it; what does not fit is refused (it goes as frames), nothing is
    written over what the reader holds, and no process dies of writing where there is no memory (SIGBUS)."""
    writer, reader = pair

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    step = rings.RESERVE_STEP_BYTES
    assert writer.put([b"x" * (step + 1)]) is None  # larger than all the ring has
    held = reader.take(writer.put([b"a" * (step // 2)]))[:]
    [out] = reader.take(writer.put([b"b" * (step // 2)]))[:]  # the rest of the first step
    del out  # given back, but after what the reader still holds: the ring's cursor waits for that
    assert writer.put([b"c" * 1000]) is None  # its start again? the reader holds it; past it? no memory there
    assert held == [b"a" * (step // 2)]
    del held
    reader.reclaim()
    for number in range(10):  # given back: the first step is all the ring, round and round (as a buffer given back
        # frees its space once the reader reads the next, two go in the step at a time)
        records = writer.put([bytes([number]) * (step // 3)])
        assert records is not None, number
        assert reader.take(records)[:] == [bytes([number]) * (step // 3)]
    assert allocated(writer.path) <= mmap.PAGESIZE + step


def test_a_ring_that_can_reserve_no_more_takes_what_fits_once_its_reader_gave_all_back(
        pair: tuple[Ring, Ring], monkeypatch: pytest.MonkeyPatch) -> None:
    """A buffer that fits in what the ring has goes there once the reader has given every buffer back, even where
    the writer's cursor stands past the ring's start (its lap's end is skipped)."""
    writer, reader = pair
    step = rings.RESERVE_STEP_BYTES

    def full(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", full)
    for number in range(5):
        for size in (3 * step // 10, 8 * step // 10):
            [out] = reader.take(writer.put([bytes([number]) * size]))[:]
            assert out == bytes([number]) * size
            del out
            reader.reclaim()


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_a_ring_whose_shared_memory_runs_out_at_any_moment_writes_only_where_it_reserved(data: st.DataObject) -> None:
    """Reservations fail from any moment on (a /dev/shm that fills up): every write lands in memory reserved before
    it (elsewhere tmpfs kills the writer with SIGBUS) and over nothing unread or held, and every buffer reads back
    as written, kept ones unchanged."""
    path = rings.SHM_DIR / f"{rings.PREFIX}{os.getpid()}-hypothesis-full"
    fails_after = data.draw(st.integers(0, 20), label="reservations that succeed")
    reserved = [0]  # bytes of the file reserved from its start
    real = os.posix_fallocate

    def fallocate(fd: int, offset: int, length: int) -> None:
        if reserved[0] and fails_after < offset // rings.RESERVE_STEP_BYTES:
            raise OSError(errno.ENOSPC, "No space left on device")
        assert offset <= reserved[0]  # no hole is left unreserved before a reservation
        real(fd, offset, length)
        reserved[0] = max(reserved[0], offset + length)

    live: list[tuple[int, int]] = []  # where the buffers put and not given back lie in the ring's data

    class Guarded:
        """The writer's view of the ring's data, checking each write."""

        def __init__(self, data: memoryview) -> None:
            self.data = data

        def __setitem__(self, where: slice, value: memoryview) -> None:
            if where.stop > where.start:
                assert mmap.PAGESIZE + where.stop <= reserved[0], "a write where nothing was reserved"
                assert all(where.stop <= start or stop <= where.start or start == stop  # an empty one holds nothing
                           for start, stop in live), "over a live buffer"
            self.data[where] = value

        def release(self) -> None:
            self.data.release()

    os.posix_fallocate = fallocate
    try:
        writer, reader = Ring(path, create=True, grows=True), Ring(path)
        writer.data = Guarded(writer.data)  # type: ignore[assignment]
        kept: list[tuple[memoryview, bytes, tuple[int, int]]] = []
        for number in range(data.draw(st.integers(1, 30), label="puts")):
            sizes = data.draw(st.lists(st.sampled_from([0, 1, 65, 100_000, rings.RESERVE_STEP_BYTES - 1,
                                                        rings.RESERVE_STEP_BYTES + 1, 3 * rings.RESERVE_STEP_BYTES,
                                                        RING_BYTES // 2]), min_size=1, max_size=3), label="sizes")
            buffers = [bytes([(number + i) % 256]) * size for i, size in enumerate(sizes)]
            records = writer.put(buffers)
            if records is None:
                continue
            places = array("Q", records)
            spans = [(places[i] % RING_BYTES, places[i] % RING_BYTES + places[i + 1]) for i in range(0, len(places), 2)]
            live.extend(spans)
            out = reader.take(records)[:]
            assert out == buffers
            for view, buffer, span in zip(out, buffers, spans, strict=True):
                if len(buffer) <= rings.LEND_MAX_BYTES and data.draw(st.booleans(), label="kept"):
                    kept.append((view, buffer, span))
                else:
                    live.remove(span)
            del out, view
            while kept and data.draw(st.booleans(), label="given back"):
                view, buffer, span = kept.pop(0)
                assert view == buffer
                live.remove(span)
                del view
        assert all(view == buffer for view, buffer, _ in kept)
        kept.clear()
        writer.close()
        reader.close()
    finally:
        os.posix_fallocate = real
        path.unlink(missing_ok=True)


def test_the_ring_of_work_is_reserved_whole_and_its_router_keeps_no_file_open() -> None:
    """The ring a worker thread's answers go in grows as they need it; the ring of its work is reserved whole as
    its worker process makes it, so that its writer, the router, holds no file open to grow it: a run's process
    with hundreds of local worker threads stays within the usual limit of 1,024 open files."""
    paths = rings.ring_paths(os.getpid(), "whole", 3, 0)
    made = rings.make_rings(os.getpid(), "whole", 3, 0)
    assert made is not None
    try:
        assert allocated(paths[0]) == mmap.PAGESIZE + RING_BYTES  # the ring of work
        assert allocated(paths[1]) == mmap.PAGESIZE + rings.RESERVE_STEP_BYTES  # the ring of answers
        before = len(os.listdir("/proc/self/fd"))
        to_it, from_it = rings.map_pair(paths, create=False)
        assert len(os.listdir("/proc/self/fd")) - before <= 2  # at most one per mapping, which keeps its own
        assert to_it.put([b"w" * (RING_BYTES // 2)]) is not None  # no reservation needed: it has all its memory
        to_it.close()
        from_it.close()
    finally:
        for ring in made:
            ring.close()
        rings.remove_rings(os.getpid(), "whole")


def test_a_worker_process_gone_as_its_router_maps_its_rings_leaves_no_file_open(tmp_path: Path) -> None:
    """The worker process died as its router first handed it work: its ring to the router is gone, the one to it is
    still there. The router goes without rings, and keeps no file of them open (with the memory it would hold)."""
    to_it, _ = rings.ring_paths(os.getpid(), "gone", 7, 0)
    Ring(to_it, create=True).close()
    router = SimpleNamespace(step=SimpleNamespace(nb_process=1), addresses=SimpleNamespace(run_id="gone"))
    before = sorted(os.listdir("/proc/self/fd"))
    try:
        assert Router._open_rings(router, process_worker_id(7, 0)) == (None, None)  # type: ignore[arg-type]
        assert sorted(os.listdir("/proc/self/fd")) == before
    finally:
        to_it.unlink(missing_ok=True)


def test_a_buffer_never_wraps_around_the_end(pair: tuple[Ring, Ring]) -> None:
    writer, reader = pair
    size = RING_BYTES // 3
    for round_ in range(10):  # three per lap: each lap leaves a tail that the next record skips
        records = writer.put([bytes([round_]) * size])
        assert records is not None
        [out] = reader.take(records)[:]
        assert out == bytes([round_]) * size


@settings(max_examples=60, deadline=None)
@given(st.lists(st.lists(st.one_of(st.integers(0, RING_BYTES // 4), st.sampled_from([RING_BYTES, RING_BYTES + 1])),
                         min_size=1, max_size=4), max_size=30))
def test_any_sizes_in_any_numbers_come_out_whole(packets: list[list[int]]) -> None:
    path = rings.SHM_DIR / f"{rings.PREFIX}{os.getpid()}-hypothesis"
    writer, reader = Ring(path, create=True, grows=True), Ring(path)
    try:
        for number, sizes in enumerate(packets):
            buffers = [bytes([(number + i) % 256]) * size for i, size in enumerate(sizes)]
            records = writer.put(buffers)
            if records is None:  # the packet goes as frames, which makes the reader give back what it let go of
                reader.reclaim()
                records = writer.put(buffers)
            if records is None:  # the ring refused: too much at once for what is free
                assert sum(sizes) > RING_BYTES // 2
                continue
            assert reader.take(records)[:] == buffers
    finally:
        writer.close()
        reader.close()
        path.unlink()


@pytest.mark.parametrize("grows", [False, True], ids=["ring-of-work", "ring-of-answers"])
@pytest.mark.parametrize("before", [0, RING_BYTES // 3], ids=["empty", "after-traffic"])
def test_a_buffer_larger_than_the_whole_ring_is_refused_and_the_ring_goes_on(grows: bool, before: int) -> None:
    path = rings.SHM_DIR / f"{rings.PREFIX}{os.getpid()}-too-large"
    writer, reader = Ring(path, create=True, grows=grows), Ring(path)
    try:
        if before:
            records = writer.put([b"a" * before])
            assert records is not None
            assert reader.take(records)[:] == [b"a" * before]  # read, then dropped: all given back
        for size in (RING_BYTES + 1, 2 * RING_BYTES):
            assert writer.put([b"x" * size]) is None
            assert writer.put([b"y" * 10, b"x" * size]) is None
        records = writer.put([b"z" * RING_BYTES])
        assert records is not None  # the whole ring, once its reader gave all back
        assert reader.take(records)[:] == [b"z" * RING_BYTES]
    finally:
        writer.close()
        reader.close()
        path.unlink()


def test_a_record_never_written_is_refused(pair: tuple[Ring, Ring]) -> None:
    writer, reader = pair
    records = writer.put([b"x" * 10])
    assert records is not None
    reader.take(records)[:]
    with pytest.raises(ValueError, match="outside what was written"):
        reader.take(records)  # already read
    packet = Packet()
    packet.add(Encoded(b"p", [b"y" * 70_000]))
    frames = packet.frames(Kind.WORK, ring=writer)
    with pytest.raises(WireError, match="a sender that has none"):
        packet_from_frames(as_received(frames))  # a receiver without that ring


# --------------------------------------------------------------------------- end to end


STEPS = "tests.process_steps"


def arrays_chain(tmp: Path, count: int, stage: dict, trigger: dict | None = None, producer: dict | None = None,
                 values: int = 131072) -> Path:
    """ARRAYS (float64 arrays of ``values`` values, 1 MiB by default, value i) -> STAGE (worker processes,
    DoubleOrAct) -> WRITER (sums)."""
    document = {
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "ARRAYS", "module": STEPS, "class": "BigArrays", "next_steps": "STAGE",
                              **(producer or {})},
            "stagers_conf": [{"name": "STAGE", "module": STEPS, "class": "DoubleArray", "next_steps": "WRITER",
                              **stage}],
            "consumer_conf": {"name": "WRITER", "module": STEPS, "class": "ArraySums"},
        },
        "BigArrays": {"count": count, "values": values},
        "DoubleArray": trigger or {},
        "ArraySums": {"path": str(tmp / "sums.jsonl")},
    }
    path = tmp / "arrays.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return path


def sums(tmp: Path) -> list[float]:
    """What ArraySums wrote: each output array's first value (each arrived read-only, every value the same)."""
    rows = [json.loads(line) for line in (tmp / "sums.jsonl").read_text().splitlines()]
    assert all(row["read_only"] and row["whole"] for row in rows)
    return sorted(row["value"] for row in rows)


def test_arrays_through_worker_processes_arrive_whole_and_read_only(tmp_path: Path) -> None:
    result = finish_run(start_run(arrays_chain(tmp_path, 60, {"nb_process": 2})), 60)
    assert result.returncode == 0, result.stderr
    assert sums(tmp_path) == [2.0 * i for i in range(60)]


@pytest.mark.parametrize("producer", [{}, {"nb_process": 2}], ids=["producer-in-run", "producer-sharded"])
def test_arrays_larger_than_a_ring_go_to_and_from_worker_processes_whole(tmp_path: Path, producer: dict) -> None:
    """An array larger than a whole ring goes as frames, into a worker process and out of it, and from a producer's
    shard (it failed to fit, and the ring's copy raised)."""
    values = RING_BYTES // 8 + 4096
    path = arrays_chain(tmp_path, 3, {"nb_process": 1}, producer=producer, values=values)
    result = finish_run(start_run(path), 60)
    assert result.returncode == 0, result.stderr
    assert sums(tmp_path) == [0.0, 2.0, 4.0]
    rows = [json.loads(line) for line in (tmp_path / "sums.jsonl").read_text().splitlines()]
    assert {row["size"] for row in rows} == {values}


def test_arrays_kept_by_the_steps_that_received_them_never_change(tmp_path: Path) -> None:
    """The stage (a worker process) keeps every array it receives, lent from its ring, and the sink keeps every
    array it receives from the stage's ring, while four times what a ring holds goes through: none is written
    over (the rings refuse what would not fit beside them, which then goes as frames), and every array arrives."""
    count = 4 * RING_BYTES // (1024 * 1024)
    path = arrays_chain(tmp_path, count, {"nb_process": 1}, {"keep": True})
    document = json.loads(path.read_text())
    document["ArraySums"]["keep"] = True
    path.write_text(json.dumps(document))
    result = finish_run(start_run(path), 60)
    assert result.returncode == 0, result.stderr
    assert sums(tmp_path) == [2.0 * i for i in range(count)]
    assert json.loads((tmp_path / "sums.jsonl.kept").read_text()) == {"kept": count, "damaged": 0}


def test_a_worker_process_whose_shared_memory_fills_up_sends_every_array_once(tmp_path: Path) -> None:
    """The worker process's rings were made, then shared memory fills up: its answers go round the part of its ring
    it has, or as frames, and every array arrives once, whole."""
    result = finish_run(start_run(arrays_chain(tmp_path, 40, {"nb_process": 1}, {"shm_full": True})), 60)
    assert result.returncode == 0, result.stderr
    assert sums(tmp_path) == [2.0 * i for i in range(40)]


def test_a_worker_process_whose_rings_its_router_cannot_map_exchanges_frames(tmp_path: Path) -> None:
    """The worker process makes its rings, but they are gone before its router maps them: the router sends work
    as frames and says nothing of rings, so the worker answers in frames too, and every array arrives once."""
    result = finish_run(start_run(arrays_chain(tmp_path, 20, {"nb_process": 1}, {"unlink_rings": True})), 60)
    assert result.returncode == 0, result.stderr
    assert sums(tmp_path) == [2.0 * i for i in range(20)]
    assert "ignored" not in result.stderr and "died" not in result.stderr


def test_no_ring_where_shared_memory_refuses_one(pair: tuple[Ring, Ring], monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever refuses a ring (a full or missing /dev/shm, a file system without posix_fallocate, a name taken),
    the worker thread goes without one, and leaves no file behind."""
    run_id = f"refused{os.getpid()}"
    assert rings.make_rings(1, run_id, 0, 0) is not None  # made: 1 is no run, but the name is free
    assert rings.make_rings(1, run_id, 0, 0) is None  # EEXIST: taken
    rings.remove_rings(1, run_id)

    def unsupported(fd: int, offset: int, size: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    assert rings.make_rings(1, run_id, 0, 0) is None
    assert not list(rings.SHM_DIR.glob(f"{rings.PREFIX}1-{run_id}-*"))


@pytest.mark.parametrize("flaw", ["open to others", "short", "a symbolic link"])
def test_a_ring_file_its_user_did_not_make_is_refused(tmp_path: Path, flaw: str) -> None:
    """Anyone can list /dev/shm and create a file there: a router maps a ring only if it is this user's, 0600 and
    of a ring's size (and not through a symbolic link); else the worker thread's buffers go as frames."""
    path = rings.SHM_DIR / f"{rings.PREFIX}{os.getpid()}-flawed-{tmp_path.name}"
    made = Ring(path, create=True)
    made.close()
    target = path.with_name(path.name + "-target")
    try:
        if flaw == "open to others":
            path.chmod(0o666)
        elif flaw == "short":
            os.truncate(path, 4096)
        else:
            path.rename(target)
            path.symlink_to(target)
        with pytest.raises(OSError):
            Ring(path)
    finally:
        path.unlink(missing_ok=True)
        target.unlink(missing_ok=True)


def test_a_killed_worker_process_loses_and_duplicates_no_array(tmp_path: Path) -> None:
    marker = tmp_path / "holding"
    path = arrays_chain(tmp_path, 200, {"nb_process": 2},
                        {"at": 50, "action": "hold", "marker": str(marker)})
    run = start_run(path, "--Pipeline.heartbeat_interval=0.2")
    try:
        wait_for(lambda: bool(pids(marker)), 20, "a worker process to take array 50")
        victim = pids(marker).pop()
        os.kill(victim, signal.SIGKILL)
        wait_for(lambda: not alive(victim), 10, "the worker process to die")
    finally:
        result = finish_run(run, 60)
    assert result.returncode == 0, result.stderr
    assert sums(tmp_path) == [2.0 * i for i in range(200)]  # each once
    assert "delivered again" in result.stderr


def test_each_worker_process_maps_its_rings_and_a_killed_run_leaves_none(tmp_path: Path, short_tmp: Path) -> None:
    """The arrays go through rings (the worker process holding one maps its rings), whose files the router removed
    once both ends had mapped them; killed (SIGKILL, the OOM killer), the run leaves no ring (16 MiB each, 64 MiB
    for two worker processes: all of a container's default /dev/shm) and no private directory (its zygote
    removes it as it leaves)."""
    marker = tmp_path / "holding"
    run = start_run(arrays_chain(tmp_path, 100, {"nb_process": 2}, {"at": 5, "action": "hold",
                                                                      "marker": str(marker)}),
                    env={"TMPDIR": str(short_tmp)})
    try:
        wait_for(lambda: bool(pids(marker)), 20, "a worker process to take array 5")
        holding = pids(marker).pop()
        mapped = [line for line in Path(f"/proc/{holding}/maps").read_text().splitlines()
                  if f"{rings.PREFIX}{run.pid}-" in line]
        assert len(mapped) == 2 and all(line.endswith("(deleted)") for line in mapped), mapped
        os.kill(run.pid, signal.SIGKILL)
        run.wait(10)
    finally:
        finish_run(run, 20)
    wait_for(lambda: not list(rings.SHM_DIR.glob(f"{rings.PREFIX}{run.pid}-*")) and not list(short_tmp.iterdir()),
             10, "the killed run's rings and private directory to be removed")


@pytest.mark.parametrize("delay", [0.0, 0.005, 0.02, 0.05, 0.1])
def test_a_run_killed_as_it_starts_its_worker_processes_leaves_nothing(tmp_path: Path, short_tmp: Path,
                                                                       delay: float) -> None:
    """Killed (SIGKILL) ``delay`` seconds after its zygote appeared: before it named its private directory to the
    zygote, while the worker processes make their rings. The zygote ends them, then removes it all, and leaves
    quietly (it left rings and directories behind in 18 of 30 such runs, and printed ECONNRESET tracebacks)."""
    run = start_run(arrays_chain(tmp_path, 100, {"nb_process": 4, "nb_thread": 2}), env={"TMPDIR": str(short_tmp)})
    children = Path(f"/proc/{run.pid}/task/{run.pid}/children")
    try:
        wait_for(lambda: bool(children.read_text().split()), 20, "the run's zygote")
        zygote = int(children.read_text().split()[0])
        time.sleep(delay)  # where the kill falls: fault injection, not synchronisation
        os.kill(run.pid, signal.SIGKILL)
        run.wait(10)
    finally:
        result = finish_run(run, 20)
    wait_for(lambda: not Path(f"/proc/{zygote}").exists() or Path(f"/proc/{zygote}/stat").read_text().split()[2]
             == "Z", 10, "the zygote to leave")
    assert not list(rings.SHM_DIR.glob(f"{rings.PREFIX}{run.pid}-*"))
    assert not list(short_tmp.iterdir())
    assert "Traceback" not in result.stderr


def test_rings_that_a_dead_run_left_are_swept_by_the_next_run(tmp_path: Path) -> None:
    """Rings whose run and zygote were both killed before the router mapped them stay behind: the user's next run
    removes them as it starts (only those of processes that are gone)."""
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True, timeout=30)
    stale = rings.SHM_DIR / f"{rings.PREFIX}{int(ended.stdout)}-0123456789ab-0-0-in"
    alive_run = rings.SHM_DIR / f"{rings.PREFIX}{os.getpid()}-0123456789ab-0-0-in"  # this process is alive
    stale.write_bytes(b"left by a killed run")
    alive_run.write_bytes(b"a live run's")
    try:
        result = finish_run(start_run(arrays_chain(tmp_path, 4, {"nb_process": 1})), 60)
        assert result.returncode == 0, result.stderr
        assert not stale.exists()
        assert alive_run.exists()
    finally:
        stale.unlink(missing_ok=True)
        alive_run.unlink(missing_ok=True)


def test_a_link_that_anyone_put_among_the_rings_stops_no_run(tmp_path: Path) -> None:
    """/dev/shm is open to every user: a dangling link named as a dead run's ring made every run of worker
    processes fail (its sweep followed the link), and one to a folder or file is never followed or removed; the
    same for the links among the runs' private folders."""
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True, timeout=30)
    dead = int(ended.stdout)
    target = tmp_path / "kept"
    target.mkdir()
    (target / "file").write_text("mine")
    links = [(rings.SHM_DIR / f"{rings.PREFIX}{dead}-0123456789ab-0-0-in", tmp_path / "nothing-there"),
             (rings.SHM_DIR / f"{rings.PREFIX}{dead}-0123456789ab-0-0-out", target / "file"),
             (Path(tempfile.gettempdir()) / f"{PRIVATE_PREFIX}{dead}-link", target)]
    for link, to in links:
        link.symlink_to(to)
    try:
        result = finish_run(start_run(arrays_chain(tmp_path, 4, {"nb_process": 1})), 60)
        assert result.returncode == 0, result.stderr
        assert all(link.is_symlink() for link, _ in links)
        assert (target / "file").read_text() == "mine"
    finally:
        for link, _ in links:
            link.unlink(missing_ok=True)
