"""The wire format: how messages become ZeroMQ frames and back, large buffers out of band.

A *packet* carries one or more messages between two threads as one multipart ZeroMQ message::

    frame 0  header   struct HEADER (kind, INLINE flag, message count n, first sequence number),
                      then n uint32 in-band pickle lengths, then n uint16 out-of-band counts,
                      then, when the INLINE flag is set, the body
    frame 1  body     the n in-band pickles (protocol 5), concatenated (absent when inline)
    then     buffers  every message's out-of-band buffers, in message order

A body under ``INLINE_BODY_BYTES`` rides in the header frame: every frame is a ZeroMQ call that
releases and retakes the GIL, and for small messages those calls are most of a packet's cost.

Routers split and join packets using the header alone; they never unpickle a payload.
Buffers of at least ``OUT_OF_BAND_BYTES`` (numpy arrays, bytes, bytearray, memoryview) travel as
frames of their own, sent with ``copy=False`` so that between threads they are never copied.
"""

from __future__ import annotations

import io
import pickle
import struct
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Buffers at least this large travel as frames of their own instead of inside the pickle.
OUT_OF_BAND_BYTES = 64 * 1024

#: Packet kinds (the first header byte).
DATA = 1  # messages from a sender to a step's router
END = 2  # a sender's end of stream; first_seq holds how many messages it sent
WORK = 3  # messages from a router to one of its workers
FINISH = 4  # router to worker: every message is processed, run finish() and stop

HEADER = struct.Struct("<BBxxIQ")  # kind, flags, message count, first sequence number (or END's count)
#: The header flag saying that the body follows the header in frame 0.
INLINE = 1
#: A body smaller than this is copied into the header frame; a larger one is a frame of its own.
INLINE_BODY_BYTES = 64 * 1024

Buffer = Any  # a bytes-like object: PickleBuffer, zmq.Frame, memoryview


class MessageError(TypeError):
    """A message that cannot be serialised: names its type and why."""


@dataclass(slots=True)
class Encoded:
    """One serialised message: its in-band pickle and its out-of-band buffers."""

    inband: bytes
    buffers: list[Buffer]

    def copies(self, n: int) -> list[Encoded]:
        """``n`` deliveries of this message; all but the first own copies of its buffers.

        Out-of-band buffers are shared memory, so two steps that each got the same one would
        see each other's in-place changes.
        """
        copies = [self]
        for _ in range(n - 1):
            copies.append(Encoded(self.inband, [bytearray(memoryview(b)) for b in self.buffers]))
        return copies


def encode(obj: Any) -> Encoded:
    """Pickle ``obj`` (protocol 5), moving large buffers out of band."""
    buffers: list[Buffer] = []

    def keep_small_inband(buffer: pickle.PickleBuffer) -> bool:
        if buffer.raw().nbytes < OUT_OF_BAND_BYTES:
            return True
        buffers.append(buffer)
        return False

    try:
        try:
            inband = pickle.dumps(obj, protocol=5, buffer_callback=keep_small_inband)
        except TypeError:  # such as a memoryview, which only our reduction can pickle
            buffers.clear()
            inband = _dump(_FastPickler, obj, keep_small_inband)
        if len(inband) >= OUT_OF_BAND_BYTES and _holds_large_bytes(obj):
            # The C pickler writes bytes and bytearray in-band before any hook sees them; the
            # Python one asks reducer_override first.
            buffers.clear()
            inband = _dump(_BytesPickler, obj, keep_small_inband)
    except Exception as err:
        raise MessageError(f"cannot pickle a message of type {type(obj).__name__}: {err}") from err
    return Encoded(inband, buffers)


def _dump(pickler: type, obj: Any, buffer_callback: Any) -> bytes:
    stream = io.BytesIO()
    pickler(stream, protocol=5, buffer_callback=buffer_callback).dump(obj)
    return stream.getvalue()


def decode(inband: Buffer, buffers: Sequence[Buffer] = ()) -> Any:
    """The object that ``encode`` serialised."""
    return pickle.loads(inband, buffers=buffers)


def _holds_large_bytes(obj: Any) -> bool:
    values = obj.values() if isinstance(obj, dict) else obj if isinstance(obj, (list, tuple)) else (obj,)
    return any(type(v) in (bytes, bytearray) and len(v) >= OUT_OF_BAND_BYTES for v in values)


def _memoryview_from(buffer: Buffer, fmt: str, shape: tuple[int, ...]) -> memoryview:
    return memoryview(buffer).cast("B").cast(fmt, shape)


def _reduce_buffer(obj: Any) -> Any:
    """Reductions that let bytearray and memoryview travel out of band; NotImplemented otherwise."""
    kind = type(obj)
    if kind is bytearray and len(obj) >= OUT_OF_BAND_BYTES:
        return bytearray, (pickle.PickleBuffer(obj),)
    if kind is memoryview:
        if obj.c_contiguous and obj.nbytes >= OUT_OF_BAND_BYTES:
            return _memoryview_from, (pickle.PickleBuffer(obj), obj.format, obj.shape)
        return _memoryview_from, (obj.tobytes(), obj.format, obj.shape)
    return NotImplemented


class _FastPickler(pickle.Pickler):
    """The C pickler, with memoryview out of band."""

    def reducer_override(self, obj: Any) -> Any:
        return _reduce_buffer(obj)


class _BytesPickler(pickle._Pickler):  # type: ignore[name-defined]
    """The pure-Python pickler, which also lets large bytes and bytearray travel out of band."""

    def reducer_override(self, obj: Any) -> Any:
        if type(obj) is bytes and len(obj) >= OUT_OF_BAND_BYTES:
            return bytes, (pickle.PickleBuffer(obj),)
        return _reduce_buffer(obj)


@dataclass
class Packet:
    """Several encoded messages sharing one header, body and list of buffer frames."""

    lengths: array = field(default_factory=lambda: array("I"))
    oob_counts: array = field(default_factory=lambda: array("H"))
    parts: list[Buffer] = field(default_factory=list)  # the body, whole or as one part per message
    buffers: list[Buffer] = field(default_factory=list)  # memoryviews, or zmq.Frames as received
    first_seq: int = 0
    nbytes: int = 0

    def __len__(self) -> int:
        return len(self.lengths)

    def add(self, message: Encoded) -> None:
        """Append one encoded message."""
        self.lengths.append(len(message.inband))
        self.oob_counts.append(len(message.buffers))
        self.parts.append(message.inband)
        self.nbytes += len(message.inband)
        for buffer in message.buffers:
            view = memoryview(buffer)
            self.buffers.append(view)
            self.nbytes += view.nbytes

    def frames(self, kind: int) -> list[Buffer]:
        """The multipart frames of this packet, as ``kind``."""
        inline = sum(self.lengths) < INLINE_BODY_BYTES
        head = (HEADER.pack(kind, INLINE if inline else 0, len(self.lengths), self.first_seq),
                self.lengths.tobytes(), self.oob_counts.tobytes())
        if inline:
            return [b"".join((*head, *self.parts)), *self.buffers]
        body = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        return [b"".join(head), body, *self.buffers]

    def split(self, count: int) -> tuple[Packet, Packet]:
        """The first ``count`` messages and the rest, without copying any buffer."""
        body = memoryview(self.parts[0] if len(self.parts) == 1 else b"".join(self.parts))
        cut = sum(self.lengths[:count])
        nbuf = sum(self.oob_counts[:count])
        head_bytes = cut + sum(memoryview(b).nbytes for b in self.buffers[:nbuf])
        head = Packet(self.lengths[:count], self.oob_counts[:count], [body[:cut]], self.buffers[:nbuf],
                      self.first_seq, head_bytes)
        tail = Packet(self.lengths[count:], self.oob_counts[count:], [body[cut:]], self.buffers[nbuf:],
                      self.first_seq + count, self.nbytes - head_bytes)
        return head, tail

    def messages(self) -> Iterator[tuple[int, Buffer, list[Buffer]]]:
        """Each message as (sequence number, in-band pickle, out-of-band buffers)."""
        body = memoryview(self.parts[0] if len(self.parts) == 1 else b"".join(self.parts))
        offset = 0
        nbuf = 0
        for i, (length, count) in enumerate(zip(self.lengths, self.oob_counts, strict=True)):
            yield self.first_seq + i, body[offset:offset + length], self.buffers[nbuf:nbuf + count]
            offset += length
            nbuf += count


def packet_from_frames(frames: Sequence[Any]) -> Packet:
    """Rebuild a packet from received zmq.Frame objects.

    The frames are kept as they are: forwarding a zmq.Frame only adds a reference to its memory.
    """
    header = frames[0].bytes
    _, flags, n, first_seq = HEADER.unpack_from(header)
    lengths = array("I")
    lengths.frombytes(header[HEADER.size:HEADER.size + 4 * n])
    oob_counts = array("H")
    oob_counts.frombytes(header[HEADER.size + 4 * n:HEADER.size + 6 * n])
    if flags & INLINE:
        body: Buffer = memoryview(header)[HEADER.size + 6 * n:]
        buffers = list(frames[1:])
    else:
        body = frames[1]
        buffers = list(frames[2:])
    nbytes = len(body) + sum(len(f) for f in buffers)
    return Packet(lengths, oob_counts, [body], buffers, first_seq, nbytes)


def header_of(frame: Any) -> tuple[int, int]:
    """(kind, first sequence number) of a packet's first frame: END's count is in the second."""
    kind, _, _, value = HEADER.unpack_from(frame)
    return kind, value


def control_frames(kind: int, value: int = 0) -> list[bytes]:
    """The one frame of a packet without messages: END (``value`` messages were sent) or FINISH."""
    return [HEADER.pack(kind, 0, 0, value)]
