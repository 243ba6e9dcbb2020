"""How one message is serialised: a protocol-5 pickle with its large buffers out of band.

Buffers of at least ``OUT_OF_BAND_BYTES`` (numpy arrays, bytes, bytearray, memoryview) are not
copied into the pickle: they travel as buffers of their own (ZeroMQ frames, see engine.wire), sent
without copying between threads. A receiver gets them **read-only**: a numpy array it receives
has ``writeable=False``, so no step can change the data of another (copy it to change it).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Buffers at least this large travel as frames of their own instead of inside the pickle.
OUT_OF_BAND_BYTES = 64 * 1024

#: Most out-of-band buffers one message may have (the wire counts them in a uint16).
MAX_BUFFERS = 0xFFFF

Buffer = Any  # a bytes-like object: PickleBuffer, zmq.Frame, memoryview


class MessageError(TypeError):
    """A message that cannot be serialised: names its type and why."""


@dataclass(slots=True)
class Encoded:
    """One serialised message: its in-band pickle and its out-of-band buffers."""

    inband: bytes
    buffers: list[Buffer]

    @property
    def nbytes(self) -> int:
        """The message's size: its pickle and its buffers."""
        return len(self.inband) + sum(memoryview(b).nbytes for b in self.buffers)


@dataclass(frozen=True)
class Resume:
    """A message sent again to its step after ``delivered`` of its outputs already went on (a replay of a dead
    letter whose run() failed half-way): the step runs ``message``, and its first ``delivered`` outputs are
    dropped, since the next steps have them (the step must yield the same outputs in the same order again)."""

    message: Any
    delivered: int


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
        # The buffers go now: a PickleBuffer over a memoryview left in the error's reference cycle can crash
        # the garbage collector (it clears the memoryview while it is still exported).
        buffers.clear()
        raise MessageError(f"cannot pickle a message of type {type(obj).__name__}: {err}") from err
    if len(buffers) > MAX_BUFFERS:
        count = len(buffers)
        buffers.clear()  # as above
        raise MessageError(f"a message of type {type(obj).__name__} has {count} buffers of "
                           f"{OUT_OF_BAND_BYTES} bytes or more; at most {MAX_BUFFERS} can travel")
    return Encoded(inband, buffers)


def _dump(pickler: type, obj: Any, buffer_callback: Any) -> bytes:
    stream = io.BytesIO()
    pickler(stream, protocol=5, buffer_callback=buffer_callback).dump(obj)
    return stream.getvalue()


def decode(inband: Buffer, buffers: Sequence[Buffer] = ()) -> Any:
    """The object that ``encode`` serialised, its out-of-band buffers read-only."""
    if not buffers:  # most small messages: no list to make
        return pickle.loads(inband)
    return pickle.loads(inband, buffers=[memoryview(b).toreadonly() for b in buffers])


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
        _check_rebuildable(obj)
        if obj.c_contiguous and obj.nbytes >= OUT_OF_BAND_BYTES:
            return _memoryview_from, (pickle.PickleBuffer(obj), obj.format, obj.shape)
        return _memoryview_from, (obj.tobytes(), obj.format, obj.shape)
    return NotImplemented


def _check_rebuildable(view: memoryview) -> None:
    """Raise if the receiver could not cast the bytes back to ``view``'s format and shape."""
    try:
        memoryview(bytes(view.itemsize)).cast("B").cast(view.format)
    except (TypeError, ValueError) as err:
        raise MessageError(f"a memoryview of format {view.format!r} cannot be rebuilt by a receiver: {err}") from None


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
