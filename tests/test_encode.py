"""What encode pickles decode gives back as numpy's own pickling would (pipeline.message.encode).

encode reduces a C-contiguous numpy array of numbers to its bytes, its dtype's string and its shape (cheaper on both
sides than numpy's reduction, which pickles the dtype as an object), and pickles each thread's messages with one
pickler kept from message to message. A receiver must not be able to tell: the same dtype, shape, values and
flags as numpy's own pickle gives, every other array left to numpy, copyreg's reductions still used, nothing kept
alive by the kept pickler, and a message whose own pickling encodes another pickled right.
"""

from __future__ import annotations

import copyreg
import gc
import os
import pickle
import signal
import subprocess
import sys
import threading
import tracemalloc
import weakref
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline.message import OUT_OF_BAND_BYTES, MessageError, decode, encode
from tests.failure_helpers import REPO


def numpy_pickled(message: Any) -> Any:
    """What numpy's own pickling gives a receiver: protocol 5, large buffers out of band and read-only."""
    buffers: list[pickle.PickleBuffer] = []

    def keep_small_inband(buffer: pickle.PickleBuffer) -> bool:
        if buffer.raw().nbytes < OUT_OF_BAND_BYTES:
            return True
        buffers.append(buffer)
        return False

    inband = pickle.dumps(message, protocol=5, buffer_callback=keep_small_inband)
    return pickle.loads(inband, buffers=[memoryview(b).toreadonly() for b in buffers])


def sent(message: Any) -> Any:
    """What a step receives from encode."""
    made = encode(message)
    return decode(made.inband, made.buffers)


def assert_same_array(got: Any, expected: Any) -> None:
    assert type(got) is type(expected)
    assert got.dtype == expected.dtype and got.dtype.str == expected.dtype.str
    assert got.shape == expected.shape
    assert got.flags.writeable == expected.flags.writeable
    assert got.flags.c_contiguous == expected.flags.c_contiguous
    assert got.tobytes() == expected.tobytes()


NUMBERS = st.one_of(hnp.boolean_dtypes(), hnp.integer_dtypes(endianness="?"),
                    hnp.unsigned_integer_dtypes(endianness="?"), hnp.floating_dtypes(endianness="?"),
                    hnp.complex_number_dtypes(endianness="?"))
SHAPES = st.one_of(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=6),
                   st.just((OUT_OF_BAND_BYTES // 2 + 1,)))  # 2 bytes or more an element: out of band


@settings(max_examples=150, deadline=None)
@given(array=hnp.arrays(NUMBERS, SHAPES), read_only=st.booleans())
def test_an_array_of_numbers_arrives_as_numpys_own_pickle_gives_it(array: Any, read_only: bool) -> None:
    array.flags.writeable = not read_only
    message = {"array": array, "same": array, "n": 3}
    got, expected = sent(message), numpy_pickled(message)
    assert_same_array(got["array"], expected["array"])
    assert got["same"] is got["array"]  # an array met twice is one object, as unpickling makes it
    assert got["n"] == 3


@pytest.mark.parametrize("array", [
    np.asfortranarray(np.arange(12.0).reshape(3, 4)),
    np.arange(16.0).reshape(4, 4)[:, ::2],
    np.zeros(3, dtype=[("a", "<f4"), ("b", ">i2")]),
    np.array([1, "a", None], dtype=object),
    np.array(["ab", "c"]),
    np.array(["2020-01-01", "2021-06-30"], dtype="datetime64[D]"),
    np.zeros(4, dtype=np.dtype("f4", metadata={"unit": "pe"})),
], ids=["fortran", "strided", "structured", "objects", "strings", "dates", "metadata"])
def test_any_other_array_is_left_to_numpys_own_pickling(array: Any) -> None:
    got, expected = sent(array), numpy_pickled(array)
    assert got.dtype == expected.dtype and got.dtype.metadata == expected.dtype.metadata
    assert got.shape == expected.shape and got.flags.f_contiguous == expected.flags.f_contiguous
    assert got.tolist() == expected.tolist()


@pytest.mark.parametrize("view", ["every other", "reversed", "a column", "records", "dates"])
def test_a_large_view_with_gaps_arrives_read_only_as_every_large_buffer(view: str) -> None:
    """components.md: received buffers are read-only. numpy copies such a view in band, which arrived writable."""
    whole = np.arange(200_000, dtype=np.float64).reshape(1000, 200)
    records = np.zeros(100_000, dtype=[("a", "<f8"), ("b", "<i4")])
    records["a"] = np.arange(100_000)
    array = {"every other": whole.ravel()[::2], "reversed": whole.ravel()[::-1], "a column": whole[:, 3:150],
             "records": records[::2], "dates": np.arange(200_000).astype("datetime64[s]")[::2]}[view]
    got = sent({"a": array})["a"]
    assert not got.flags.writeable
    assert got.dtype == array.dtype and got.shape == array.shape and np.array_equal(got, array)


class Tagged(np.ndarray):
    """A subclass of numpy's array: numpy's own reduction keeps its class."""


class Kept:
    """An object a message holds."""


def test_a_subclass_of_array_keeps_its_class() -> None:
    array = np.arange(5.0).view(Tagged)
    got = sent({"a": array})["a"]
    assert type(got) is Tagged and got.tolist() == array.tolist()


class Scaled:
    def __init__(self, value: int) -> None:
        self.value = value


def test_reductions_registered_with_copyreg_are_still_used() -> None:
    copyreg.pickle(Scaled, lambda obj: (Scaled, (obj.value * 10,)))
    try:
        assert sent({"x": Scaled(2)})["x"].value == 20
    finally:
        del copyreg.dispatch_table[Scaled]


class EncodesAnother:
    """An object whose own pickling encodes another message (in the same thread, while encode runs)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __reduce__(self) -> Any:
        made = encode(self.inner)
        return decode, (made.inband, made.buffers)


def test_a_message_whose_pickling_encodes_another_is_pickled_right() -> None:
    array = np.arange(10, dtype=np.int16)
    got = sent({"outer": EncodesAnother({"inner": array}), "after": array})
    assert got["outer"]["inner"].tolist() == array.tolist()
    assert got["after"].tolist() == array.tolist()


@pytest.mark.parametrize("large", [
    memoryview(bytearray(OUT_OF_BAND_BYTES)),  # the C pickler refuses a memoryview: another pickler pickles it
    b"x" * OUT_OF_BAND_BYTES,  # bytes and bytearray go out of band through the pure-Python pickler
    bytearray(OUT_OF_BAND_BYTES),
], ids=["memoryview", "bytes", "bytearray"])
def test_a_message_pickled_by_another_pickler_keeps_its_buffers_when_its_pickling_encodes_another(large: Any) -> None:
    got = sent([large, EncodesAnother({"inner": 1})])
    assert bytes(got[0]) == bytes(large)
    assert got[1] == {"inner": 1}


def test_a_signal_handler_that_encodes_while_a_message_is_pickled_leaves_that_message_whole() -> None:
    encoded: list[Any] = []

    class RaisesASignal:
        def __reduce__(self) -> Any:
            os.kill(os.getpid(), signal.SIGUSR1)  # its handler runs at the next bytecode boundary, mid-pickle
            sum(range(100))
            return dict, ()

    previous = signal.signal(signal.SIGUSR1, lambda *_: encoded.append(encode({"tick": 1})))
    try:
        got = sent([memoryview(bytearray(OUT_OF_BAND_BYTES)), RaisesASignal()])
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert len(encoded) == 1
    assert len(got[0]) == OUT_OF_BAND_BYTES and got[1] == {}


def test_a_message_of_many_objects_leaves_no_memory_with_its_thread() -> None:
    kept: list[int] = []

    def work() -> None:
        encode({"warm": "up"})  # the thread's pickler exists before the measure
        many = [str(i) for i in range(300_000)]
        gc.collect()
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            encode(many)
            encode({"small": 1})
            gc.collect()
            kept.append(tracemalloc.get_traced_memory()[0] - before)
        finally:
            tracemalloc.stop()

    thread = threading.Thread(target=work)
    thread.start()
    thread.join(timeout=60)
    assert not thread.is_alive()
    assert kept and kept[0] < 256 * 1024, f"{kept[0] / 2**20:.1f} MiB kept after the message was encoded"


def test_a_reduction_registered_with_copyreg_for_arrays_comes_first() -> None:
    copyreg.pickle(np.ndarray, lambda array: (list, (array.tolist(),)))
    try:
        assert sent({"a": np.arange(3)})["a"] == [0, 1, 2]
    finally:
        del copyreg.dispatch_table[np.ndarray]
    assert isinstance(sent({"a": np.arange(3)})["a"], np.ndarray)


def test_nothing_stays_alive_after_its_message_was_encoded() -> None:
    obj = Kept()
    alive = weakref.ref(obj)
    encode({"obj": obj, "array": np.ones(OUT_OF_BAND_BYTES)})
    del obj
    gc.collect()
    assert alive() is None


def test_a_message_that_fails_leaves_the_next_one_pickled_right() -> None:
    with pytest.raises(MessageError, match="cannot pickle"):
        encode({"a": np.ones(3), "f": lambda: 1})
    assert sent({"a": np.arange(3.0)})["a"].tolist() == [0.0, 1.0, 2.0]


@pytest.mark.parametrize("then", [memoryview(b"abc"), lambda: 1])
def test_a_pickling_that_fails_after_a_large_string_was_written_leaves_the_next_message_whole(then: Any) -> None:
    """The C pickler writes a large in-band string out before it meets what it cannot pickle (a memoryview: the
    message is pickled again another way; a lambda: it fails): none of it may lead the next message's pickle."""
    message = {"text": "x" * (4 * OUT_OF_BAND_BYTES), "then": then}
    if isinstance(then, memoryview):
        assert bytes(sent(message)["then"]) == b"abc"
    else:
        with pytest.raises(MessageError, match="cannot pickle"):
            encode(message)
    assert encode({"n": 1}).inband == pickle.dumps({"n": 1}, protocol=5)


@pytest.mark.parametrize("size", [OUT_OF_BAND_BYTES - 1, 4 * OUT_OF_BAND_BYTES])
def test_a_message_pickled_in_several_writes_arrives_whole(size: int) -> None:
    message = {"text": "é" * size, "list": ["y" * size, 3], "n": 7}
    assert sent(message) == message
    assert encode({"n": 2}).inband == pickle.dumps({"n": 2}, protocol=5)


def test_arrays_take_the_engines_reduction_when_numpy_is_imported_after_the_first_message() -> None:
    script = (
        "import sys; from pipeline.message import encode, decode\n"
        "encode({'n': 1})\n"
        "assert 'numpy' not in sys.modules\n"
        "import numpy as np\n"
        "made = encode({'a': np.arange(6, dtype='<i2').reshape(2, 3)})\n"
        "assert b'_rebuild_array' in made.inband, made.inband\n"
        "assert decode(made.inband, made.buffers)['a'].tolist() == [[0, 1, 2], [3, 4, 5]]\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


#: A thread whose encode() a signal handler's exception interrupts, at any point, 50,000 times a second, until a
#: thousand encodes ended and a thousand were interrupted (a loaded machine ended 475 in two seconds; 40 s at most):
#: every message it does encode must decode to itself (an interrupted one left the kept pickler's memo or
#: its list half-used, and a later message decoded to an earlier one or not at all).
INTERRUPTED_ENCODES = """
import signal, sys, time
from pipeline.message import decode, encode

class Interrupt(BaseException):
    pass

armed = False

def interrupt(signum, frame):
    if armed:
        raise Interrupt

signal.signal(signal.SIGALRM, interrupt)
signal.setitimer(signal.ITIMER_REAL, 0.00002, 0.00002)
done = interrupted = 0
deadline = time.monotonic() + 40
while (done <= 1000 or interrupted <= 1000) and time.monotonic() < deadline:
    message = {"i": done + interrupted, "pad": "x" * (interrupted % 300)}
    try:
        armed = True
        made = encode(message)
        armed = False
    except Interrupt:
        armed = False
        interrupted += 1
        continue
    assert decode(made.inband, made.buffers) == message, (message, made.inband)
    done += 1
signal.setitimer(signal.ITIMER_REAL, 0, 0)
assert done > 1000 and interrupted > 1000, (done, interrupted)
"""


def test_an_encode_interrupted_anywhere_leaves_the_next_messages_whole() -> None:
    result = subprocess.run([sys.executable, "-c", INTERRUPTED_ENCODES], cwd=REPO, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]


def test_threads_encode_at_once_each_their_own_messages() -> None:
    results: dict[int, bool] = {}

    def encode_many(number: int) -> None:
        array = np.full(100, number, dtype=np.int32)
        results[number] = all(sent({"n": number, "a": array})["a"][0] == number for _ in range(500))

    threads = [threading.Thread(target=encode_many, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert results == {0: True, 1: True, 2: True, 3: True}


def test_a_receiver_that_never_imported_numpy_rebuilds_the_arrays() -> None:
    made = encode({"a": np.arange(4, dtype=">i4").reshape(2, 2), "big": np.ones(OUT_OF_BAND_BYTES)})
    assert len(made.buffers) == 1
    code = ("import sys, pickle\n"
            "from pipeline.message import decode\n"
            "assert 'numpy' not in sys.modules\n"
            "inband, big = pickle.loads(sys.stdin.buffer.read())\n"
            "got = decode(inband, [big])\n"
            "print(got['a'].tolist(), got['a'].dtype.str, got['big'].sum(), got['big'].flags.writeable)\n")
    payload = pickle.dumps((made.inband, bytes(made.buffers[0])))
    result = subprocess.run([sys.executable, "-c", code], input=payload, capture_output=True, timeout=60,
                            cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().split() == ["[[0,", "1],", "[2,", "3]]", ">i4", str(float(OUT_OF_BAND_BYTES)),
                                              "False"]
