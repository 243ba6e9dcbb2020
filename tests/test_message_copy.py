"""A message copied for a step of the same thread is what unpickling it would give (pipeline.message.copy_message).

The sequential mode and fused steps hand messages that hold numpy arrays on as copies instead of pickles; a step
must not be able to tell the difference: the same types and values, an object met twice still one object, a small
array its own to change (or read-only for good if the sender's was), a large one a read-only view of the sender's
memory, and nothing the receiver changes reaches the sender or the copy kept for a dead letter. What is not copied
goes pickled. What a step's run() returned is copied once (adopt_message): the sender's object is kept for the dead
letter, and the first receiver's copy made at once; each further receiver gets a copy of its own.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import subprocess
import sys
import weakref
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline.message import (
    COPY_SCAN,
    MAX_BUFFERS,
    MAX_COPY_DEPTH,
    OUT_OF_BAND_BYTES,
    Copied,
    Encoded,
    MessageError,
    adopt_message,
    copy_message,
    decode,
    encode,
)
from tests.failure_helpers import REPO

SMALL = 64  # elements of a small array
LARGE = OUT_OF_BAND_BYTES // 8 + 1  # float64 elements of an array that travels out of band


def unpickled(message: Any) -> Any:
    """What a step receives from a step of another thread."""
    sent = encode(message)
    return decode(sent.inband, sent.buffers)


#: The two ways a message that holds arrays goes to a step of the same thread: sent (yielded, send_msg) or returned.
SENDERS = pytest.mark.parametrize("send", [copy_message, adopt_message], ids=["sent", "returned"])


def received(message: Any, send: Any = copy_message) -> Any:
    """What a step receives from a step of its own thread (a message that holds arrays: copied)."""
    sent = send(message)
    assert isinstance(sent, Copied)
    return sent.open()


def with_an_array(message: Any) -> list[Any]:
    """``message`` in a list led by an array: a message copy_message copies, whatever ``message`` holds."""
    return [np.zeros(1), message]


def can_be_made_writeable(array: np.ndarray) -> bool:
    """Whether a receiver could turn a read-only array writeable again."""
    try:
        array.flags.writeable = True
    except ValueError:
        return False
    return True


def same(left: Any, right: Any, seen: dict[int, int]) -> None:
    """``left`` and ``right`` are alike to a step's eyes: types, values, array flags, and which objects are one."""
    assert type(left) is type(right)
    if isinstance(left, (dict, list, tuple, set, frozenset, bytearray, np.ndarray)):
        if id(left) in seen:
            assert seen[id(left)] == id(right)  # an object met twice is one on both sides
            return
        seen[id(left)] = id(right)
    if type(left) is dict:
        assert list(left) == list(right)
        for key in left:
            same(left[key], right[key], seen)
    elif type(left) in (list, tuple):
        assert len(left) == len(right)
        for a, b in zip(left, right, strict=True):
            same(a, b, seen)
    elif type(left) is np.ndarray:
        assert (left.dtype, left.shape, left.strides) == (right.dtype, right.shape, right.strides)
        assert (left.flags.writeable, left.flags.owndata) == (right.flags.writeable, right.flags.owndata)
        assert type(left.base) is type(right.base)
        np.testing.assert_array_equal(left, right)
        if not left.flags.writeable:
            assert can_be_made_writeable(left.copy()) and not can_be_made_writeable(right)
            assert not can_be_made_writeable(left)
    else:
        assert left == right or repr(left) == repr(right)  # NaN is not equal to itself


arrays = st.one_of(
    hnp.arrays(st.sampled_from([np.float32, np.float64, np.int16, np.uint8, np.bool_, np.complex64, ">f4"]),
               hnp.array_shapes(min_dims=0, max_dims=3, max_side=6)),
    st.sampled_from([np.zeros(LARGE), np.arange(LARGE, dtype=np.int64).reshape(LARGE // 1, 1)]).map(np.copy),
)
atoms = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.complex_numbers(), st.text(max_size=8),
                  st.binary(max_size=8), st.just(np.float64(1.5)), st.just(np.int32(3)), st.just(np.bool_(True)))
keys = st.one_of(st.text(max_size=4), st.integers(), st.tuples(st.integers(), st.text(max_size=2)))


def containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=4),
                     st.tuples(children, children), st.binary(max_size=8).map(bytearray))


messages = st.recursive(st.one_of(atoms, arrays), containers, max_leaves=12)


@SENDERS
@settings(max_examples=300, deadline=None)
@given(message=messages, read_only=st.booleans())
def test_a_copy_is_what_unpickling_gives(send: Any, message: Any, read_only: bool) -> None:
    for array in _arrays(message):
        array.flags.writeable = not read_only
    same(unpickled(with_an_array(message)), received(with_an_array(message), send), {})


@SENDERS
@settings(max_examples=100, deadline=None)
@given(message=messages)
def test_what_a_receiver_changes_reaches_neither_the_sender_nor_the_dead_letter(send: Any, message: Any) -> None:
    message = with_an_array(message)
    sent = send(message)
    assert isinstance(sent, Copied)
    before = unpickled(message)
    mine = sent.open()
    _scribble(mine)
    same(before, unpickled(message), {})  # the sender's message
    same(before, unpickled(sent.kept), {})  # what a dead letter holds
    kept = sent.encoded()
    same(before, decode(kept.inband, kept.buffers), {})
    other = sent.open()  # a second next step's (fan-out in the sequential mode): its own, as sent
    assert other is not mine
    same(before, other, {})


def test_a_returned_message_is_kept_as_the_sender_returned_it_and_copied_once_for_its_first_receiver() -> None:
    message = {"n": 1, "small": np.arange(SMALL)}
    sent = adopt_message(message)
    assert isinstance(sent, Copied) and sent.kept is message
    first = sent.open()
    assert first is not message and first["small"] is not message["small"]
    assert sent.open() is not first


def _arrays(message: Any) -> list[np.ndarray]:
    if type(message) is np.ndarray:
        return [message]
    if type(message) is dict:
        message = list(message.values())
    if type(message) in (list, tuple):
        return [array for item in message for array in _arrays(item)]
    return []


def _scribble(message: Any) -> None:
    """Change whatever a receiver may change in place."""
    if type(message) is dict:
        for value in message.values():
            _scribble(value)
        message["scribbled"] = True
    elif type(message) is list:
        for value in message:
            _scribble(value)
        message.append("scribbled")
    elif type(message) is tuple:
        for value in message:
            _scribble(value)
    elif type(message) in (set, bytearray):
        message.clear()
    elif type(message) is np.ndarray and message.flags.writeable and message.size:
        message.flat[0] = 0 if message.flat[0] else 1


def test_objects_met_twice_stay_one_object_and_a_list_may_hold_itself() -> None:
    small, large = np.arange(SMALL), np.zeros(LARGE)
    cycle: list[Any] = [small]
    cycle.append(cycle)
    message = {"a": small, "b": small, "c": large, "d": large, "cycle": cycle}
    copy = received(message)
    assert copy["a"] is copy["b"] and copy["c"] is copy["d"] and copy["cycle"][1] is copy["cycle"]
    assert copy["cycle"][0] is copy["a"] and copy["a"] is not small
    same(unpickled(message), copy, {})


def test_a_large_array_is_a_read_only_view_of_the_senders_memory_and_a_small_one_a_copy() -> None:
    large, small = np.zeros(LARGE), np.zeros(SMALL)
    copy = received({"large": large, "small": small})
    assert np.shares_memory(copy["large"], large) and not np.shares_memory(copy["small"], small)
    with pytest.raises(ValueError, match="read-only"):
        copy["large"][0] = 1.0
    copy["small"][0] = 1.0
    assert small[0] == 0.0


@dataclasses.dataclass
class Point:
    x: int


@pytest.mark.parametrize("message", [
    Point(1), {"p": [Point(2)]}, collections.OrderedDict(a=1), collections.defaultdict(list), memoryview(b"abc"),
    np.arange(10)[::2], np.asfortranarray(np.ones((3, 4))), np.array(["a", "b"]), np.array([None, 1]),
    np.ma.masked_array([1, 2]), {"big": bytes(OUT_OF_BAND_BYTES)} | {"when": np.datetime64("2026-12-05")},
    {i * 8 for i in range(40)}, frozenset(range(0, 800, 32)),
], ids=["instance", "nested-instance", "ordered-dict", "defaultdict", "memoryview", "strided", "fortran", "strings",
        "objects", "masked", "datetime", "set", "frozenset"])
def test_what_is_not_copied_goes_pickled_and_arrives_as_unpickling_gives(message: Any) -> None:
    message = with_an_array(message)
    sent = copy_message(message)
    assert isinstance(sent, Encoded)
    copy, expected = sent.open()[1], unpickled(message)[1]
    assert type(copy) is type(expected)
    assert repr(copy) == repr(expected) or bytes(copy) == bytes(expected)  # a set's repr: its order too


def test_a_tuple_that_holds_itself_goes_pickled() -> None:
    inner: list[Any] = []
    outer = (inner, np.zeros(1))
    inner.append(outer)
    sent = copy_message(outer)
    assert isinstance(sent, Encoded)
    copy = sent.open()
    assert copy[0][0] is copy


@pytest.mark.parametrize("message", [
    {"i": 1, "name": "event", "values": [1.0, 2.0]}, [1, 2, 3], "text", {"nested": {"deeper": np.zeros(3)}},
    [0] * COPY_SCAN + [np.zeros(3)],
], ids=["dict", "list", "string", "array-nested", "array-late"])
def test_a_message_without_arrays_among_its_first_values_goes_pickled(message: Any) -> None:
    # The C pickler copies plain containers faster than Python code: only arrays make a copy worth it.
    sent = copy_message(message)
    assert isinstance(sent, Encoded)
    assert repr(sent.open()) == repr(unpickled(message))


@pytest.mark.parametrize("message", [np.zeros(3), {"image": np.zeros(3), "id": 1}, (1, np.zeros(3)),
                                     [0] * (COPY_SCAN - 1) + [np.zeros(3)]],
                         ids=["array", "dict", "tuple", "array-last-looked-at"])
def test_a_message_with_an_array_among_its_first_values_is_copied(message: Any) -> None:
    assert isinstance(copy_message(message), Copied)


def test_what_cannot_be_pickled_fails_as_pickling_does() -> None:
    with pytest.raises(MessageError, match="cannot pickle a message of type dict"):
        copy_message({"f": lambda: None, "array": np.zeros(3)})


def test_its_size_counts_arrays_strings_and_bytes() -> None:
    sent = copy_message({"a": np.zeros(LARGE), "s": "x" * 1000, "b": b"y" * 500, "n": 1})
    assert isinstance(sent, Copied)
    assert LARGE * 8 + 1500 <= sent.nbytes <= LARGE * 8 + 1500 + 100


def test_without_numpy_imported_a_message_goes_pickled_and_numpy_stays_unimported() -> None:
    script = ("import sys\n"
              "from pipeline.message import Encoded, copy_message\n"
              "assert isinstance(copy_message({'values': [1.0, 2.0], 'name': 'x'}), Encoded)\n"
              "print('numpy' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(REPO)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("make", [
    lambda depth: _nested(depth, lambda inner: {"deeper": inner}),
    lambda depth: _nested(depth, lambda inner: [inner]),
    lambda depth: _nested(depth, lambda inner: (inner, 1)),
], ids=["dicts", "lists", "tuples"])
@pytest.mark.parametrize("depth", [MAX_COPY_DEPTH - 2, MAX_COPY_DEPTH, 600, 5000])
def test_a_message_nested_deeper_than_a_copy_goes_pickled_or_fails_as_pickling_does(make: Any, depth: int) -> None:
    # A copy accepted must pickle into its dead letter wherever the step runs: no deeper than MAX_COPY_DEPTH.
    message = {"array": np.zeros(1), "nested": make(depth)}
    try:
        expected: Any = unpickled(message)
    except MessageError as err:
        expected = err
    try:
        sent = copy_message(message)
    except MessageError as err:
        assert isinstance(expected, MessageError) and str(err) == str(expected)
        return
    assert not isinstance(expected, MessageError)
    assert isinstance(sent, Copied if depth + 2 <= MAX_COPY_DEPTH else Encoded)
    kept = sent.encoded()
    assert repr(decode(kept.inband, kept.buffers)) == repr(sent.open()) == repr(expected)


def _nested(depth: int, wrap: Any) -> Any:
    inner: Any = 0
    for _ in range(depth):
        inner = wrap(inner)
    return inner


def test_more_large_buffers_than_a_pickle_carries_fail_as_pickling_does() -> None:
    # Views of one array: no memory to speak of, one buffer each once pickled.
    whole = np.zeros(OUT_OF_BAND_BYTES + MAX_BUFFERS + 1, dtype=np.uint8)
    message = [np.zeros(1)] + [whole[i:i + OUT_OF_BAND_BYTES] for i in range(MAX_BUFFERS + 1)]
    with pytest.raises(MessageError, match="buffers of 65536 bytes or more"):
        encode(message)
    with pytest.raises(MessageError, match="buffers of 65536 bytes or more"):
        copy_message(message)


@pytest.mark.parametrize("send", [encode, copy_message], ids=["encode", "copy_message"])
@pytest.mark.parametrize("view", [lambda block: block[0],
                                  lambda block: memoryview(block.reshape(-1).view("u1"))[:8 * LARGE]],
                         ids=["row", "memoryview"])
def test_a_large_view_of_a_much_larger_block_does_not_keep_the_block(send: Any, view: Any) -> None:
    """A row of a fresh 10 MiB block went by reference: the queued message kept the whole block alive while the
    queue's byte cap counted the row (a reader sending one row per block grew to GiBs in threads and processes)."""
    block = np.ones((160, 8192))
    block[0] = 7.0
    sent = view(block)
    expected = np.asarray(sent).copy()
    freed = weakref.ref(block)
    message = send(sent)
    del block, sent
    assert freed() is None  # the message holds the row's bytes alone
    got = message.open() if isinstance(message, Copied) else decode(message.inband, message.buffers)
    assert np.array_equal(np.asarray(got), expected)


def test_a_large_view_of_a_block_of_its_size_goes_by_reference() -> None:
    """A view of its whole block (a reshape, a view of another dtype) is no copy: it holds nothing more."""
    block = np.ones((160, 8192))
    message = encode(block.reshape(-1))
    [buffer] = message.buffers
    assert np.shares_memory(np.frombuffer(buffer, np.uint8), block)


def test_a_message_with_large_bytes_pickles_what_the_c_pickler_pickles() -> None:
    """A large bytes at a message's top level switched the whole message to the pure-Python pickler: ten times slower,
    and a nesting the C pickler takes (400 levels) failed, 'maximum recursion depth exceeded'."""
    raw = bytes(OUT_OF_BAND_BYTES)
    tree: dict[str, Any] = {}
    leaf = tree
    for _ in range(400):
        leaf["tree"] = leaf = {}
    for message in ({"raw": raw, "tree": tree}, [raw, memoryview(bytearray(OUT_OF_BAND_BYTES)), tree], raw):
        sent = encode(message)
        assert len(sent.buffers) == (2 if isinstance(message, list) else 1)  # the bytes (and the memoryview) apart
        got = decode(sent.inband, sent.buffers)
        assert got == message and type(got) is type(message)
