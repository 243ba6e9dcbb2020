"""Large buffers between the run's process and its worker processes on the same host, through shared memory.

Sent as ZeroMQ frames over ``ipc://``, a buffer is copied by the kernel twice, by two I/O threads,
and the zero-copy send costs pyzmq a wake-up of its garbage-collector thread: most of the CPU a worker
process costs its run for an event of real size (docs/performance.md). Here the sender copies each
buffer into a ring of shared memory and sends only where it lies; the receiver reads it there, in
place, and says how far it is done with the ring. Each worker thread of a worker process has two
rings: one the router writes and the thread reads (its WORK), one the thread writes and the router
reads (its RESULT); a ring has one writer and one reader (single producer, single consumer), so it
needs no lock.

A ring is a file in ``/dev/shm`` (tmpfs), private to the user (0600), of RING_BYTES of data after a
header of two uint64 cursors in the host's byte order (both ends are on one host)::

    word 0   written: bytes ever written (the writer's cursor; every record ends at or before it)
    word 1   read:    bytes ever read (the reader's cursor; the writer reuses up to it)

Each cursor is written and read whole, as one aligned 8-byte word (an item of a memoryview of the header),
never through ``struct``: ``struct.pack_into`` writes a word in pieces, and a reader in the other process
saw it 0 in the middle of a write (measured: 4% of reads while it was written in a loop), which made a
record just written look unwritten and the packet it came in unreadable.

A buffer's record is (position, length): ``position`` counts bytes since the ring was made, so the
data lie at ``position % RING_BYTES``. A buffer never wraps around the end of the ring: the writer
skips what is left there, and the reader's cursor jumps over it when it passes the record after. The
data are in the ring before the ZeroMQ message that carries their records is sent, and the reader
reads them after it received that message: the message orders them. When a packet's buffers do not
fit in the free space, they go as ZeroMQ frames instead: a ring never makes a sender wait.

The receiver **lends** each buffer where it lies (``Ring.read``): a read-only view of the ring, from
which the message is unpickled, so that an array a step receives is the ring's memory, not a copy of
it. Its space is free again once nothing refers to it any more (the view's owner is watched with a
weak reference) and every buffer read before it is free too: the reader's cursor moves past buffers
in the order they came. A step that keeps what it received (an array in a list) keeps the ring's
space from that buffer on until it lets go, and meanwhile what the writer cannot fit goes as frames;
nothing is ever written over a buffer still referred to. A buffer larger than LEND_MAX_BYTES is
copied out instead, its space free at once. A message's buffers are lent when its message is read
(``Taken``), not when its packet comes. Remote workers never get a ring (their host is another);
what they send in a ring is refused (engine.wire).

The ring of a worker thread's answers, which the thread writes, takes shared memory as its traffic first
needs it: its file has the ring's size, but only what its writer **reserved** (``posix_fallocate``,
RESERVE_STEP_BYTES at a time, as its cursor first gets there) holds memory, and the writer writes nowhere
else, so that a full ``/dev/shm`` (64 MiB in a default Docker container) sends a buffer as frames instead
of killing the process (tmpfs sends SIGBUS to a writer of memory it cannot have). It is made with its first
step reserved, so that shared memory missing or full fails the ring at once (the thread then exchanges
frames), and it never takes more unless the answers carry buffers of 64 KiB or more (smaller ones travel in
the message's pickle). The ring of work is reserved whole as the worker process makes it: its writer, the
router, would have to keep a file open to grow it, one more per worker thread in the run's process, where a
run of 256 local worker threads then passed the usual limit of 1,024 open files (docs/performance.md). Each
worker process makes its threads' rings as it starts, before it asks for work, and its router maps them when
it first hands it work.

Rings are named after the run's process id. The router removes their files as soon as it has mapped them:
the memory lasts while either end maps it, and goes with the last, however the processes end (a run
killed with SIGKILL leaves nothing), and the run's end pays no 32 MiB of pages per worker process to free.
Until then, they are removed when their worker process ends and at the run's end; when the run's process
is killed, its zygote (engine.zygote) removes them as it leaves, and rings that outlived both are swept
at the start of the next run of the same user (``sweep_stale``).
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
import stat
import weakref
from array import array
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pipeline.engine.addresses import owned, process_alive
from pipeline.message import Buffer

log = logging.getLogger("pipeline.engine")

#: Where rings are made: the host's shared-memory file system.
SHM_DIR = Path("/dev/shm")
#: Bytes of data in each ring: enough for what a worker may hold (twice PREFETCH_BYTES and one message).
RING_BYTES = 16 * 1024 * 1024
#: Bytes of a ring's data its writer reserves at a time, as its buffers first need them (a ring is made with one).
RESERVE_STEP_BYTES = 1024 * 1024
#: The ring files of a run start with this, then the run's process id.
PREFIX = "pipeline-ring-"

#: The header takes a page, so that the data start aligned.
_HEADER_BYTES = mmap.PAGESIZE
#: A record: a buffer's position and length.
RECORD = "Q"
#: Where a buffer may start: a cache line. An array read in place from an address that is not a multiple of its
#: item size takes numpy's slower loops (``(x * 2).sum()`` over 145 KB of float64: 12.6 us misaligned, 8.1 aligned).
ALIGNMENT = 64
#: Buffers up to this size are lent in place; larger ones are copied out as they are read, their space free at once:
#: a buffer lent is held while its step runs, and beside one that takes a large part of the ring the next does not
#: fit (a 16 MiB array takes all of it) and goes as frames.
LEND_MAX_BYTES = RING_BYTES // 8


class Ring:
    """One mapped ring; this side either writes it or reads it, never both. A ring made by its writer (``grows``:
    the ring of answers) grows as its writer needs; one made by its reader (the ring of work, which the router
    writes) is reserved whole as it is made, since its writer would have to keep a file open to grow it, one per
    worker thread of the run."""

    def __init__(self, path: str | Path, create: bool = False, grows: bool = False) -> None:
        self.path = Path(path)
        size = _HEADER_BYTES + RING_BYTES
        grows = create and grows  # only its maker, which writes it, can grow it
        if create:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.ftruncate(fd, size)  # the whole ring, holding no memory yet
                # Its first step, or all of it, or fail now.
                os.posix_fallocate(fd, 0, _HEADER_BYTES + RESERVE_STEP_BYTES if grows else size)
                self.map = mmap.mmap(fd, size)
            except BaseException:
                os.close(fd)
                self.path.unlink(missing_ok=True)
                raise
        else:
            fd = os.open(self.path, os.O_RDWR | os.O_NOFOLLOW)
            try:
                _check_made_here(fd, size)
                self.map = mmap.mmap(fd, size)
            except BaseException:
                os.close(fd)
                raise
        # The writer of a ring that grows keeps its file open to reserve more of it (once unlinked, its name is gone).
        self._fd: int | None = fd if grows else None
        if not grows:
            os.close(fd)
        #: Bytes of data held in memory, from the start (the writer's to know).
        self.reserved = RESERVE_STEP_BYTES if grows else RING_BYTES
        self.data = memoryview(self.map)[_HEADER_BYTES:]
        self._words = memoryview(self.map)[:16].cast("Q")  # the cursors, each read and written whole
        self._written = self._words[0] if not create else 0  # the writer's cursor, kept here too
        # The reader's buffers lent and not yet taken back by its cursor, in the order they were lent: each a
        # list [its end, given back]; the flag is set by whichever thread drops the last reference to it, the
        # deque is changed by the reading thread only.
        self._lent: deque[list] = deque()

    def cursors(self) -> tuple[int, int]:
        """The two cursors as the header holds them now: (written, read)."""
        words = self._words
        return words[0], words[1]

    def put(self, buffers: Sequence[Buffer]) -> bytes | None:
        """Copy ``buffers`` in; the frame of their records (position, length, uint64 each), or None when they
        do not all fit in the free space (nothing is written then)."""
        written = self._written
        read = self._words[1]
        records = array(RECORD)
        places = []
        for buffer in buffers:
            view = memoryview(buffer).cast("B")
            length = view.nbytes
            if length > RING_BYTES:  # never fits, however free the ring is
                return None
            written += -written % ALIGNMENT
            offset = written % RING_BYTES
            end = offset + length
            if end > RING_BYTES or (end > self.reserved and not self._reserve(end)):
                # No wrapping: the record starts at the ring's start (where a ring that can reserve no more ends).
                written += RING_BYTES - offset
                offset = 0
            # The skipped end of a lap counts as unread until the reader passes the record after it; but where the
            # reader has given every record back and none of this put's is placed yet, the whole ring is free.
            if ((written + length - read > RING_BYTES and (places or read != self._written))
                    or (length > self.reserved and not self._reserve(length))):
                return None
            places.append((offset, view))
            records.append(written)
            records.append(length)
            written += length
        data = self.data
        for offset, view in places:
            data[offset:offset + view.nbytes] = view
        self._written = written
        self._words[0] = written  # after the data: the message that follows orders them
        return records.tobytes()

    def _reserve(self, end: int) -> bool:
        """Reserve the ring's data up to ``end`` (in RESERVE_STEP_BYTES, at most RING_BYTES); False, and from then on,
        where shared memory is full: the ring then ends where its reservation does."""
        wanted = min(RING_BYTES, -(-end // RESERVE_STEP_BYTES) * RESERVE_STEP_BYTES)
        while self.reserved < wanted:  # a step at a time: where shared memory runs out, the ring keeps all it got
            if self._fd is None:
                return False
            try:
                os.posix_fallocate(self._fd, _HEADER_BYTES + self.reserved, RESERVE_STEP_BYTES)
            except OSError as err:  # full: what is reserved is what the ring has, its other buffers go as frames
                log.debug("a shared-memory ring stays at %d bytes: %s", self.reserved, err)
                os.close(self._fd)
                self._fd = None
                return False
            self.reserved += RESERVE_STEP_BYTES
        return True

    def take(self, frame: Buffer) -> Taken:
        """The buffers whose records ``frame`` holds, to be lent in order; a ValueError if a record is not one a
        writer of this ring could have made."""
        self.reclaim()  # a record read already is one before the cursor: refused
        records = array(RECORD)
        records.frombytes(bytes(frame))
        written, read = self.cursors()
        places = []
        for i in range(0, len(records), 2):
            position, length = records[i], records[i + 1]
            if position < read or position + length > written or position % RING_BYTES + length > RING_BYTES:
                raise ValueError(f"a ring record ({position}, {length}) outside what was written and not yet read")
            places.append((position, length))
            read = position + length
        return Taken(self, places)

    def read(self, position: int, length: int) -> Buffer:
        """The buffer at ``position`` (a record ``take`` checked): lent in place, or copied out if it is larger
        than LEND_MAX_BYTES. Its space, and any skipped before it, is free again once it is given back (a copy's at
        once; a view's once nothing refers to it or to what was made of it, an array unpickled from it) and the
        buffers read before it are free too."""
        if length > LEND_MAX_BYTES:
            offset = position % RING_BYTES
            copy = bytes(self.data[offset:offset + length])  # bytearray() copies 3-4 times slower
            self._lent.append([position + length, True, None])
            self.reclaim()  # its space is free now, for the next packet to come in the ring
            return copy
        self.reclaim()  # what the step gave back since the last read
        # The view's owner is an array of the ring's bytes: every view or array made from it refers to it, so it
        # dies with the last of them (a memoryview would not do: views made from a view share its exporter).
        owner = _bytes_of(self.map, _HEADER_BYTES + position % RING_BYTES, length)
        lease = [position + length, False, None]
        lease[2] = weakref.ref(owner, lambda _, lease=lease: lease.__setitem__(1, True))
        self._lent.append(lease)
        return memoryview(owner).toreadonly()

    def reclaim(self) -> None:
        """Move the reader's cursor past the buffers given back, in the order they were read, so that the writer
        may use their space again (the reading thread's own: only it changes the deque). Each buffer read and each
        packet taken does it; so must a packet that came as frames (engine.wire), or a ring the writer once found
        full would stay full."""
        lent = self._lent
        end = None
        while lent and lent[0][1]:
            end = lent.popleft()[0]
        if end is not None:
            self._words[1] = end

    def close(self) -> None:
        """Unmap the ring; while buffers lent from it are still referred to, the mapping lasts until they go."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.data.release()
        self._words.release()
        with contextlib.suppress(BufferError):  # what was lent keeps the map, which unmaps itself after them
            self.map.close()


def _bytes_of(mapped: mmap.mmap, offset: int, length: int) -> Any:
    """An array of the ``length`` bytes of ``mapped`` at ``offset``, without copying them."""
    import numpy  # here: only a run with worker processes lends from a ring, and numpy takes 0.1 s to import

    return numpy.frombuffer(mapped, numpy.uint8, length, offset)


def _check_made_here(fd: int, size: int) -> None:
    """Refuse (PermissionError) a file that its name alone does not make a ring of this user's run: one of
    another user, open to others, or not of a ring's size (anyone can list /dev/shm and create a file there)."""
    info = os.fstat(fd)
    if (not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) != 0o600
            or info.st_size != size):
        raise PermissionError(errno.EPERM, "not a ring this user made")


class Taken:
    """The buffers of one received packet, still in the ring: each is lent (or copied out, if large) when read, and
    they are read once, in order, by slices (as ``Packet.messages`` reads them), since the ring's cursor goes past
    buffers in the order they were read. Only a packet's receiver reads them: it is not a sequence to split or
    join."""

    def __init__(self, ring: Ring, places: list[tuple[int, int]]) -> None:
        self._ring = ring
        self._places = places  # (position, length) of each buffer
        self._next = 0  # the first not yet read
        self.nbytes = sum(length for _, length in places)

    def __len__(self) -> int:
        return len(self._places)

    def __getitem__(self, index: slice) -> list[bytes]:
        start, stop, step = index.indices(len(self._places))
        if step != 1 or (start < stop and start != self._next):
            raise ValueError(f"ring buffers are read once and in order: {index} asked, buffer {self._next} next")
        self._next = max(self._next, stop)
        return [self._ring.read(position, length) for position, length in self._places[start:stop]]


def ring_paths(run_pid: int, run_id: str, slot: int, thread: int) -> tuple[Path, Path]:
    """The two rings of thread ``thread`` of worker process ``slot``: (to the worker, from the worker)."""
    stem = SHM_DIR / f"{PREFIX}{run_pid}-{run_id}-{slot}-{thread}"
    return stem.with_name(stem.name + "-in"), stem.with_name(stem.name + "-out")


def make_rings(run_pid: int, run_id: str, slot: int, thread: int) -> tuple[Ring, Ring] | None:
    """Make and map the rings of thread ``thread`` of worker process ``slot`` (to it, from it); None, and none
    left, where shared memory is missing or full: the thread then exchanges frames."""
    try:
        return map_pair(ring_paths(run_pid, run_id, slot, thread), create=True)
    except OSError as err:  # full or missing (ENOSPC, ENOENT), refused (EACCES, EPERM), not tmpfs, taken (EEXIST)
        log.debug("no shared-memory rings for thread %d of worker process %d: %s", thread, slot, err)
        return None


def map_pair(paths: tuple[Path, Path], create: bool) -> tuple[Ring, Ring]:
    """A worker thread's two rings (to it, from it), both or neither (OSError, none left open, none left made):
    made by its worker process (``create``), which writes the second, or mapped by its router, which writes the
    first."""
    mapped: list[Ring] = []
    try:
        for number, path in enumerate(paths):
            mapped.append(Ring(path, create=create, grows=number == 1))
    except OSError:
        for ring in mapped:
            ring.close()
            if create:
                ring.path.unlink(missing_ok=True)
        raise
    return mapped[0], mapped[1]


def remove_rings(run_pid: int, run_id: str, slot: int | None = None) -> None:
    """Remove the rings of worker process ``slot`` of a run (all of them without ``slot``)."""
    pattern = f"{PREFIX}{run_pid}-{run_id}-" + ("*" if slot is None else f"{slot}-*")
    for path in SHM_DIR.glob(pattern):
        with contextlib.suppress(OSError):
            path.unlink()


def sweep_stale() -> None:
    """Remove the rings of runs whose process is gone (killed before it could remove them)."""
    if not SHM_DIR.is_dir():
        return
    for path in SHM_DIR.glob(f"{PREFIX}*"):
        pid = path.name[len(PREFIX):].split("-", 1)[0]
        # Anyone can make a file there, a dangling link or one gone meanwhile too: only our own files, not followed.
        with contextlib.suppress(OSError):
            if pid.isdigit() and not process_alive(int(pid)) and owned(path, stat.S_ISREG):
                path.unlink()
