"""How one message is serialised: a protocol-5 pickle with its large buffers out of band.

Buffers of at least ``OUT_OF_BAND_BYTES`` (numpy arrays, bytes, bytearray, memoryview) are not
copied into the pickle: they travel as buffers of their own (ZeroMQ frames, see engine.wire), sent
without copying between threads. A receiver gets them **read-only**: a numpy array it receives
has ``writeable=False``, so no step can change the data of another (copy it to change it). numpy
pickles its subclasses (astropy's Quantity, numpy.ma.MaskedArray) inside the pickle: a receiver
gets a writable copy of those.

A message that goes to a step of the same thread (the sequential mode; fused steps in a worker
process, engine.fusion) need not be serialised at all: ``copy_message`` copies a message that holds
numpy arrays as a pickle and its unpickling would, several times faster (numpy's pickling of an
array is slow), and pickles the others (the C pickler copies plain dicts and lists faster than
Python code can) and what it cannot copy so.
"""

from __future__ import annotations

import copyreg
import io
import mmap
import pickle
import pickletools
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import NoneType
from typing import Any

from pipeline.console.humanize import error_text

#: Buffers at least this large travel as frames of their own instead of inside the pickle.
OUT_OF_BAND_BYTES = 64 * 1024

#: Most out-of-band buffers one message may have (the wire counts them in a uint16).
MAX_BUFFERS = 0xFFFF

Buffer = Any  # a bytes-like object: PickleBuffer, zmq.Frame, memoryview


class MessageError(TypeError):
    """A message that cannot be serialised: names its type and why."""


class UnreadableMessage(MessageError):
    """A message its receiver could not unpickle (its class's or a function's code that the pickle names raised, or
    is missing there): says what the unpickling raised, which is its cause."""


@dataclass(slots=True)
class Encoded:
    """One serialised message: its in-band pickle and its out-of-band buffers."""

    inband: bytes
    buffers: list[Buffer]

    @property
    def nbytes(self) -> int:
        """The message's size: its pickle and its buffers."""
        if not self.buffers:  # most messages: a len() only
            return len(self.inband)
        return len(self.inband) + sum(memoryview(b).nbytes for b in self.buffers)

    def open(self) -> Any:
        """The message, unpickled afresh."""
        return decode(self.inband, self.buffers)

    def encoded(self) -> Encoded:
        """The message as it was sent: itself."""
        return self


@dataclass(slots=True)
class Copied:
    """A message for a step of the same thread: ``kept`` is a private copy of what was sent (copy_message), which
    no step runs; each step that runs the message gets a copy of its own, and a dead letter the pickle of ``kept``."""

    kept: Any
    nbytes: int  # about its pickled size: its arrays', strings' and bytes' lengths, 8 or 16 bytes for anything else
    #: The first receiver's copy when it was made as the message was sent (adopt_message); None once taken.
    ready: Any = None

    def open(self) -> Any:
        """A copy of the message of the receiver's own."""
        ready = self.ready
        if ready is not None:
            self.ready = None
            return ready
        return _Copier(receiving=True).copy(self.kept)

    def encoded(self) -> Encoded:
        """The message as it was sent, pickled (for a dead letter)."""
        return encode(self.kept)


@dataclass(frozen=True)
class Resume:
    """A message sent again to its step after ``delivered`` of its outputs already went on (a replay of a dead
    letter whose run() failed half-way): the step runs ``message``, and its first ``delivered`` outputs are
    dropped, since the next steps have them (the step must yield the same outputs in the same order again)."""

    message: Any
    delivered: int

    def __reduce__(self) -> tuple[Any, tuple[int, Any]]:
        """Pickled as ``_resumed(delivered, message)``: the count comes first, where ``resumed`` reads it."""
        return _resumed, (self.delivered, self.message)


def _resumed(delivered: int, message: Any) -> Resume:
    """The Resume that ``Resume.__reduce__`` pickled."""
    return Resume(message, delivered)


#: Bytes of a pickle that hold a Resume's count (its protocol, frame, the global ``_resumed``, the count).
_RESUME_HEAD_BYTES = 96


def resumed(message: Encoded) -> int:
    """The outputs an earlier run delivered, if ``message`` is the pickle of a Resume (0 if it is not), read from the
    pickle's first opcodes: a run's router, which never unpickles a payload, logs the total a replay skips."""
    head = bytes(memoryview(message.inband)[:_RESUME_HEAD_BYTES])
    names: list[str] = []
    try:
        for opcode, argument, _ in pickletools.genops(head):
            if opcode.name in ("PROTO", "FRAME", "MEMOIZE"):
                continue
            if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE") and len(names) < 2:
                names.append(argument)
            elif opcode.name == "STACK_GLOBAL" and names == [__name__, _resumed.__name__]:
                names.append("")  # the count comes next
            elif opcode.name in ("BININT1", "BININT2", "BININT", "LONG1") and len(names) == 3:
                return argument
            else:
                return 0
    except ValueError:  # a pickle shorter than its head: no Resume's
        pass
    return 0


def encode(obj: Any) -> Encoded:
    """Pickle ``obj`` (protocol 5), moving large buffers out of band."""
    dumper = _dumper()
    try:
        pickler = None
        try:
            inband = dumper.dump(obj)
        except TypeError:  # such as a memoryview, which only our reduction can pickle
            pickler = _FastPickler
            inband = dumper.dump(obj, pickler)
        if len(inband) >= OUT_OF_BAND_BYTES and (wrapped := _bytes_out_of_band(obj)) is not None:
            inband = dumper.dump(wrapped, pickler)
        buffers = dumper.take()
        dumper.busy = False  # last: a dumper left by any exception stays busy, and is never used again
    except Exception as err:
        dumper.drop()
        raise MessageError(f"cannot pickle a message of type {type(obj).__name__}: {error_text(err)}") from err
    if len(buffers) > MAX_BUFFERS:
        count = len(buffers)
        buffers.clear()  # as _Dumper.drop does
        raise MessageError(f"a message of type {type(obj).__name__} has {count} buffers of "
                           f"{OUT_OF_BAND_BYTES} bytes or more; at most {MAX_BUFFERS} can travel")
    return Encoded(inband, buffers)


#: A pickle longer than this may have memoised hundreds of objects: its pickler's memo then starts again at its
#: smallest (clear_memo() keeps a table's size, and walks all of it on every later message).
SMALL_PICKLE_BYTES = 256


class _Dumper:
    """Pickles the messages of one thread with one pickler, kept from message to message (making a pickler costs
    about as much as pickling a small dict), and collects each message's large buffers. It is ``busy`` from
    ``_dumper()`` until its message is taken: a message whose own pickling encodes another (its ``__reduce__``, a
    signal handler, a finalizer the garbage collector runs) gets a dumper of its own, and so does every message after
    an exception (a signal handler's KeyboardInterrupt too) left one busy with half a message in its memo.

    The kept pickler writes each pickle whole to ``written`` (its file's ``write`` is the list's append): no stream
    to read back, rewind and truncate per message. A pickle holding large bytes may come in several writes."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.buffers: list[Buffer] = []
        self.pickler = _Pickler(_Writer(self.written.append), protocol=5, buffer_callback=self.keep_small_inband)
        self.busy = False

    def keep_small_inband(self, buffer: pickle.PickleBuffer) -> bool:
        """The pickler's buffer_callback: a small buffer stays in the pickle, a large one goes out of band."""
        if buffer.raw().nbytes < OUT_OF_BAND_BYTES:
            return True
        self.buffers.append(buffer)
        return False

    def dump(self, obj: Any, pickler: type | None = None) -> bytes:
        """The pickle of ``obj``, by the kept pickler or a new one of class ``pickler``; its large buffers only are
        in ``buffers`` after it (those of an earlier try go)."""
        self.buffers.clear()
        if pickler is not None:
            stream = io.BytesIO()
            pickler(stream, protocol=5, buffer_callback=self.keep_small_inband).dump(obj)
            return stream.getvalue()
        written = self.written
        kept = self.pickler
        try:
            kept.dump(obj)
        except BaseException:
            written.clear()  # what it wrote before it failed
            kept.memo = {}
            raise
        if len(written) == 1:
            inband = written.pop()
        else:
            inband = b"".join(written)
            written.clear()
        # The memo holds every object pickled: none outlives its message here, nor does a large table.
        if len(inband) > SMALL_PICKLE_BYTES:
            kept.memo = {}
        else:
            kept.clear_memo()
        return inband

    def take(self) -> list[Buffer]:
        """The large buffers of the message just pickled, which are the caller's now."""
        buffers, self.buffers = self.buffers, []
        return buffers

    def drop(self) -> None:
        """Forget a failed message: its buffers go now (a PickleBuffer over a memoryview left in the error's reference
        cycle can crash the garbage collector, which clears the memoryview while it is still exported). The dumper
        stays busy: the thread makes a new one for its next message."""
        self.buffers.clear()


class _Writer:
    """A pickler's file whose ``write`` is a given callable (a list's append)."""

    __slots__ = ("write",)

    def __init__(self, write: Callable[[bytes], Any]) -> None:
        self.write = write


#: Each thread's _Dumper.
_THREAD = threading.local()


def _dumper() -> _Dumper:
    """The calling thread's dumper, now busy; a new one, the thread's from then on, if it is busy (a message whose
    pickling encodes another, or one an exception left half-way)."""
    dumper = getattr(_THREAD, "dumper", None)
    if dumper is None or dumper.busy:
        dumper = _THREAD.dumper = _Dumper()
    dumper.busy = True
    return dumper


def decode(inband: Buffer, buffers: Sequence[Buffer] = ()) -> Any:
    """The object that ``encode`` serialised, its out-of-band buffers read-only."""
    if not buffers:  # most small messages: no list to make
        return pickle.loads(inband)
    return pickle.loads(inband, buffers=[memoryview(b).toreadonly() for b in buffers])


def copy_message(obj: Any) -> Copied | Encoded:
    """What a step sends to a step of the same thread: a copy of ``obj`` if it holds numpy arrays (it is one, or
    one of its first COPY_SCAN values is one), else its pickle, as when it holds other kinds of objects than the
    ones copied here (then the receiver unpickles it, as from any other sender).

    The copy is what unpickling ``encode(obj)`` would give: new dicts, lists, tuples and bytearrays; the same
    immutable numbers, strings and bytes; a numpy array of numbers (C-contiguous, not a subclass) copied if it is
    smaller than OUT_OF_BAND_BYTES (over a bytearray, or bytes if the sender's is read-only) and at least that large a
    read-only view of the sender's memory; an object met twice copied once. Anything else (an instance of a class, a
    dict subclass, a set, whose copy of a copy would iterate in another order than an unpickled one, a memoryview, an
    array of objects or of strings, a tuple that holds itself, containers nested deeper than MAX_COPY_DEPTH, more
    large buffers than a pickle may carry) makes the whole message go pickled.
    """
    return _copied(obj, adopted=False)


def adopt_message(obj: Any) -> Copied | Encoded:
    """What a step's run() returned to a step of the same thread that runs it before the sender's code runs again (the
    sequential mode and fused steps, depth first): as copy_message, but with one copy instead of two. The first
    receiver's copy is made now, and the sender's object itself is kept for a dead letter: the sender's code, which
    alone holds it, does not run again until every receiver of the message is done with it, and a dead letter is
    pickled as its receiver fails."""
    return _copied(obj, adopted=True)


def _copied(obj: Any, adopted: bool) -> Copied | Encoded:
    """copy_message, or with ``adopted`` adopt_message."""
    if not _holds_arrays(obj, _NDARRAY or _array_type()):
        return encode(obj)
    copier = _Copier(receiving=adopted)
    try:
        copy = copier.copy(obj)
    except (_NotCopied, RecursionError):  # RecursionError: called near the limit already
        return encode(obj)
    if copier.buffers > MAX_BUFFERS:  # the pickle of a dead letter could not carry it: refused as encode refuses it
        return encode(obj)
    return Copied(obj, copier.nbytes, copy) if adopted else Copied(copy, copier.nbytes)


#: How many values of a dict, list or tuple copy_message looks at for a numpy array (a long list of numbers is
#: not scanned to its end).
COPY_SCAN = 32

#: Containers nested deeper than this go pickled: a copy must never be deeper than its dead letter's pickle (and the
#: receiver's copy of it) can go within Python's recursion limit, wherever the step runs.
MAX_COPY_DEPTH = 100

#: numpy's array type, once numpy is imported (see _array_type).
_NDARRAY: type | None = None


def _array_type() -> type | None:
    """numpy's array type; None while numpy is not imported (no message can hold an array then). Once it is, the
    picklers reduce its arrays with _reduce_array."""
    global _NDARRAY
    if _NDARRAY is None and "numpy" in sys.modules:
        _DISPATCH[sys.modules["numpy"].ndarray] = _reduce_array
        _NDARRAY = sys.modules["numpy"].ndarray
    return _NDARRAY


def _holds_arrays(obj: Any, ndarray: type | None) -> bool:
    """Whether ``obj`` is a numpy array, or a dict, list or tuple with one among its first COPY_SCAN values."""
    kind = type(obj)
    if kind is ndarray:
        return True
    if kind is dict:
        values: Any = obj.values()
    elif kind is list or kind is tuple:
        values = obj
    else:
        return False
    # On every output to a step of the same thread: a plain loop costs less than any() over islice().
    left = COPY_SCAN
    for value in values:
        if type(value) is ndarray:
            return True
        left -= 1
        if not left:
            return False
    return False


class _NotCopied(Exception):
    """The message holds an object that copy_message leaves to pickle."""


#: Immutable objects a copy shares: the same object is what unpickling would give, to anyone's eyes. Strings and
#: bytes are counted by their length, the others as 8 bytes.
_FIXED = frozenset({int, float, complex, bool, NoneType})
_SHARED = _FIXED | {str, bytes}
#: What marks a tuple being copied: met again inside itself, it is left to pickle (which rebuilds such a cycle).
_IN_PROGRESS = object()
#: The kinds of numpy array copied (bool, signed and unsigned integers, floating point, complex).
_ARRAY_KINDS = frozenset("biufc")
#: Dates and durations: sent as their bytes too (numpy's own pickle sends them in band, so they arrived writable,
#: and a buffer cannot take their dtype).
_DATE_KINDS = frozenset("Mm")


class _Copier:
    """One copy of one message: the objects copied so far (by id, so an object met twice is copied once), and the
    bytes they hold."""

    __slots__ = ("buffers", "depth", "memo", "nbytes", "receiving")

    def __init__(self, receiving: bool) -> None:
        #: Whether the copy is a step's (the arrays made as unpickling makes them), or the one kept for a dead letter
        #: (which only has to pickle as the sender's message would: no step sees it).
        self.receiving = receiving
        self.memo: dict[int, Any] = {}
        self.nbytes = 0
        self.buffers = 0  # arrays, bytes and bytearrays of OUT_OF_BAND_BYTES or more: a pickle's buffers at most
        self.depth = 0  # containers being copied, one inside the other

    def copy(self, obj: Any) -> Any:
        """A copy of ``obj`` as copy_message describes it; _NotCopied for what it leaves to pickle."""
        kind = type(obj)
        if kind in _SHARED:
            if kind is str or kind is bytes:
                self._sized(kind, len(obj))
            else:
                self.nbytes += 8
            return obj
        memo = self.memo
        done = memo.get(id(obj))
        if done is not None:
            if done is _IN_PROGRESS:
                raise _NotCopied
            return done
        if kind is _NDARRAY:
            new = memo[id(obj)] = self._array(obj)
            return new
        if kind is bytearray:
            new = memo[id(obj)] = bytearray(obj)
            self._sized(kind, len(obj))
            return new
        if kind is not dict and kind is not list and kind is not tuple:
            return self._number(obj, kind)
        self.depth += 1
        if self.depth > MAX_COPY_DEPTH:
            raise _NotCopied
        copy = self.copy
        # Containers take their shared items as they are, without a call each: most of a message's items are.
        if kind is dict:
            new = {}
            memo[id(obj)] = new
            self.nbytes += 16 * len(obj)
            for key, value in obj.items():
                kind = type(value)
                if kind is str or kind is bytes:
                    self._sized(kind, len(value))
                elif kind not in _FIXED:
                    value = copy(value)
                new[key if type(key) in _SHARED else copy(key)] = value
        elif kind is list:
            new = memo[id(obj)] = []
            new.extend([item if type(item) in _FIXED else copy(item) for item in obj])
            self.nbytes += 8 * len(obj)
        else:
            memo[id(obj)] = _IN_PROGRESS
            new = memo[id(obj)] = tuple([item if type(item) in _FIXED else copy(item) for item in obj])
            self.nbytes += 8 * len(obj)
        self.depth -= 1
        return new

    def _sized(self, kind: type, length: int) -> None:
        """Count a string, bytes or bytearray of ``length`` bytes (large bytes and bytearrays may go out of band)."""
        self.nbytes += length
        if length >= OUT_OF_BAND_BYTES and kind is not str:
            self.buffers += 1

    def _number(self, obj: Any, kind: type) -> Any:
        """A numpy number: shared (immutable); _NotCopied for any other object."""
        numpy = sys.modules.get("numpy")
        if numpy is None or kind.__module__ != "numpy" or not isinstance(obj, (numpy.number, numpy.bool_)):
            raise _NotCopied
        self.nbytes += 8
        return obj

    def _array(self, obj: Any) -> Any:
        """A numpy array of numbers (see copy_message); _NotCopied for another kind, or one not C-contiguous."""
        if obj.dtype.kind not in _ARRAY_KINDS:
            raise _NotCopied
        view = memoryview(obj)  # its checks and its bytes at the cost of one object (obj.flags makes one too)
        if not view.c_contiguous:
            raise _NotCopied
        nbytes = view.nbytes
        self.nbytes += nbytes
        if nbytes >= OUT_OF_BAND_BYTES:  # out of band: the sender's memory, which a step gets read-only, as from decode
            self.buffers += 1
            if not self.receiving:
                # Pickled by reference, as encode would (a view of a much larger block as a copy, as encode sends it).
                return obj.copy() if obj.base is not None and pins_more(obj) else obj
            return _frombuffer(view.toreadonly(), obj.dtype).reshape(obj.shape)
        if not self.receiving:
            kept = obj.copy()
            if view.readonly:  # pickled as bytes: read-only for good once unpickled
                kept.flags.writeable = False
            return kept
        # In band, as unpickling makes it: over a bytearray of its own, or over bytes (read-only for good) if the
        # sender's was read-only. Not bytearray(obj): to it, a 0-d array of integers is a length.
        return _frombuffer(view.tobytes() if view.readonly else bytearray(view), obj.dtype).reshape(obj.shape)


def _frombuffer(data: Any, dtype: Any) -> Any:
    """numpy.frombuffer (numpy is loaded: an array is being copied)."""
    return sys.modules["numpy"].frombuffer(data, dtype)


class _OutOfBand:
    """A large bytes or bytearray, pickled out of band by the C pickler, which writes bytes and bytearray in band
    before any hook of its sees them (the pure-Python pickler, which asks a hook first, was ten times slower for the
    whole message, and failed on nesting that the C one pickles)."""

    __slots__ = ("data",)

    def __init__(self, data: bytes | bytearray) -> None:
        self.data = data

    def __reduce__(self) -> Any:
        return type(self.data), (pickle.PickleBuffer(self.data),)


def _large_bytes(value: Any) -> bool:
    return type(value) in (bytes, bytearray) and len(value) >= OUT_OF_BAND_BYTES


def _bytes_out_of_band(obj: Any) -> Any:
    """``obj`` with each bytes or bytearray of OUT_OF_BAND_BYTES or more at its top level (``obj`` itself, or a value
    of a dict, list or tuple, not of a subclass's, whose type a copy would change) wrapped to go out of band; None if
    it has none."""
    kind = type(obj)
    if kind is dict:
        values = obj.values()
    elif kind in (list, tuple):
        values = obj
    else:
        return _OutOfBand(obj) if _large_bytes(obj) else None
    if not any(_large_bytes(value) for value in values):
        return None
    if kind is dict:
        return {key: _OutOfBand(value) if _large_bytes(value) else value for key, value in obj.items()}
    return kind(_OutOfBand(value) if _large_bytes(value) else value for value in obj)


def _memoryview_from(buffer: Buffer, fmt: str, shape: tuple[int, ...]) -> memoryview:
    view = memoryview(buffer)
    if view.format == fmt and view.shape == shape:  # bytes as they came (cast refuses an empty view)
        return view
    return view.cast("B").cast(fmt, shape)


def _reduce_buffer(obj: Any) -> Any:
    """Reductions that let bytearray and memoryview travel out of band; NotImplemented otherwise."""
    kind = type(obj)
    if kind is bytearray and len(obj) >= OUT_OF_BAND_BYTES:
        return bytearray, (pickle.PickleBuffer(obj),)
    if kind is memoryview:
        _check_rebuildable(obj)
        if obj.c_contiguous and obj.nbytes >= OUT_OF_BAND_BYTES:
            # A slice of a much larger buffer goes as a copy of its bytes, which alone a queue then holds.
            return _memoryview_from, (bytearray(obj) if pins_more(obj) else pickle.PickleBuffer(obj), obj.format,
                                      obj.shape)
        return _memoryview_from, (obj.tobytes(), obj.format, obj.shape)
    return NotImplemented


def _check_rebuildable(view: memoryview) -> None:
    """Raise if the receiver could not cast the bytes back to ``view``'s format and shape."""
    try:
        memoryview(bytes(view.itemsize)).cast("B").cast(view.format)
    except (TypeError, ValueError) as err:
        raise MessageError(f"a memoryview of format {view.format!r} cannot be rebuilt by a receiver: {err}") from None
    if 0 in view.shape and (view.format, view.ndim) != ("B", 1):  # Python casts no view with a 0 in its shape
        raise MessageError(f"an empty memoryview of format {view.format!r} and shape {view.shape} cannot be rebuilt "
                           "by a receiver (an empty one of bytes, format 'B', can: memoryview(b''))")


def pins_more(view: Any) -> bool:
    """Whether ``view``, a large numpy array or memoryview, keeps alive more than twice its own bytes: a row of a
    fresh 10 MiB block held the whole block in a queue whose byte cap counted the row (a reader sending one row of
    each block it computed grew to GiBs). A file's or a ring's mapping (mmap) is no such memory: its pages are the
    file's, or bounded by the ring."""
    owner = view.obj if type(view) is memoryview else view
    while (base := getattr(owner, "base", None)) is not None:  # a numpy view's chain of bases, to the memory's owner
        owner = base
    if owner is view or isinstance(owner, mmap.mmap):
        return False
    try:
        return memoryview(owner).nbytes > 2 * view.nbytes
    except (TypeError, ValueError):  # an owner that exports no buffer, or none of its whole memory
        return False


def _reduce_array(array: Any) -> Any:
    """How the picklers reduce a numpy array of numbers or dates (C-contiguous, or made so if it has gaps): to its
    bytes (out of band when large), its dtype's string and its shape, rebuilt by one call. numpy's own reduction,
    which any other array gets, pickles the dtype as an object that its receiver builds anew; this costs each side
    about a microsecond less. A reduction registered with copyreg for numpy's arrays comes first, as it would for
    pickle.dumps."""
    registered = copyreg.dispatch_table.get(type(array))
    if registered is not None:
        return registered(array)
    if array.base is not None and array.nbytes >= OUT_OF_BAND_BYTES and pins_more(array):
        array = array.copy()  # its own bytes only, out of band as any array's
    dtype = array.dtype
    flags = array.flags
    if not (flags.c_contiguous or flags.f_contiguous or dtype.hasobject):
        # A view with gaps (a[::2]): numpy copies it in band, which the receiver got writable, unlike every other large
        # buffer. Its copy goes as a contiguous array does, out of band when large (records and dates too).
        array = array.copy()
        flags = array.flags
    if dtype.metadata is None and flags.c_contiguous:
        if dtype.kind in _ARRAY_KINDS:
            return _rebuild_array, (pickle.PickleBuffer(array), dtype.str, array.shape)
        if dtype.kind in _DATE_KINDS:
            return _rebuild_array, (pickle.PickleBuffer(array.reshape(-1).view("u1")), dtype.str, array.shape)
    return array.__reduce_ex__(5)  # numpy's own: Fortran order sent as it is, other dtypes


#: The dtypes _rebuild_array made from their strings, so that each array need not parse its own (bounded: a peer's
#: pickle names them).
_DTYPES: dict[str, Any] = {}
_DTYPES_KEPT = 256


def _rebuild_array(data: Buffer, dtype: str, shape: tuple[int, ...]) -> Any:
    """The array that _reduce_array reduced: over ``data`` as unpickling gives it (a bytearray, bytes, or a
    read-only buffer out of band), as numpy's own rebuilds it."""
    made = _DTYPES.get(dtype)
    if made is None:
        import numpy  # here: a receiver may not have imported it yet, and only a message of arrays needs it

        made = numpy.dtype(dtype)
        if len(_DTYPES) < _DTYPES_KEPT:
            _DTYPES[dtype] = made
    return _frombuffer(data, made).reshape(shape)


class _DispatchTable(dict):  # type: ignore[type-arg]
    """The picklers' reductions by type: ours (numpy arrays), then those registered with copyreg, which a pickler's
    own table would otherwise hide."""

    def __missing__(self, kind: type) -> Any:
        if kind is _array_type():  # the first array since numpy was imported: its reduction is ours from now on
            return self[kind]
        return copyreg.dispatch_table[kind]

    def get(self, kind: type, default: Any = None) -> Any:  # type: ignore[override]
        """As ``[]`` (the pure-Python pickler asks with get)."""
        try:
            return self[kind]
        except KeyError:
            return default


#: Reductions the picklers use before an object's own (filled by _array_type).
_DISPATCH = _DispatchTable()


class _Pickler(pickle.Pickler):
    """The C pickler, with numpy arrays reduced by _reduce_array."""

    dispatch_table = _DISPATCH


class _FastPickler(_Pickler):
    """The C pickler, with memoryview out of band."""

    def reducer_override(self, obj: Any) -> Any:
        return _reduce_buffer(obj)

