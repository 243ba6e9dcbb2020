"""The packets a step's outputs travel in to a next step (engine.outlets): the outputs of a worker process's RESULT,
queued as the packet they came in, go in the very packets they would go in one by one."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
import zmq
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline.engine import outlets
from pipeline.engine.handles import Handles
from pipeline.engine.outlets import _Outbox
from pipeline.engine.wire import Answer, Packet, packet_from_frames, plain_result
from pipeline.message import Encoded
from tests.wire_helpers import as_received, result_frames

#: A small MAX_BATCH_BYTES for these tests, so that messages of some bytes reach it.
BATCH_BYTES = 100
#: A new inproc address for each outbox (an address just unbound may not be free again yet).
ADDRESSES = itertools.count()


@pytest.fixture(scope="module")
def context() -> Iterator[zmq.Context]:
    """One ZeroMQ context for the module's sockets, and a small MAX_BATCH_BYTES (the same for every example)."""
    made = zmq.Context()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(outlets, "MAX_BATCH_BYTES", BATCH_BYTES)
        yield made
    made.term()


def sent(context: zmq.Context, limit: int, before: list[bytes], fill: object) -> list[list[bytes]]:
    """The packets an outbox of ``limit`` sends, as lists of in-band messages, when it holds ``before`` one by one
    and is then given what ``fill`` queues, then flushed."""
    address = f"inproc://outbox-{next(ADDRESSES)}"
    pull = context.socket(zmq.PULL)
    push = context.socket(zmq.PUSH)
    push.sndhwm = 0  # the test reads only at the end
    try:
        pull.bind(address)
        push.connect(address)
        box = _Outbox(push, limit, Handles())
        for message in before:
            box.add(Encoded(message, []))
        fill(box)  # type: ignore[operator]
        box.flush()
        packets = []
        while pull.poll(0):
            packet = packet_from_frames(pull.recv_multipart(copy=False))
            packets.append([bytes(inband) for _, inband, _ in packet.messages()])
        return packets
    finally:
        push.close(linger=0)
        pull.close(linger=0)


def as_a_result(messages: list[bytes]) -> Packet:
    """``messages`` as the outputs of a worker process's RESULT, each for every next step."""
    frames = result_frames([Answer(seq, [(Encoded(message, []), None)]) for seq, message in enumerate(messages)])
    plain = plain_result(as_received(frames))
    assert plain is not None
    return plain.outputs


MESSAGES = st.lists(st.integers(0, 60).map(lambda size: bytes(range(size))), max_size=20)


@settings(max_examples=300, deadline=None)
@given(st.integers(1, 6), MESSAGES.map(lambda messages: messages[:4]), MESSAGES)
@example(6, [], [b"x" * 60, b"y" * 60, b"z" * 10])  # the second reaches BATCH_BYTES: it goes with the first
@example(6, [b"w" * 90], [b"x" * 20, b"y" * 5])  # the first reaches it, after what the outbox held
@example(2, [b"w"], [b"x", b"y", b"z", b"v"])  # the limit, reached after what it held, then again
def test_a_packet_of_outputs_goes_in_the_packets_its_messages_would_go_in_one_by_one(
        context: zmq.Context, limit: int, before: list[bytes], messages: list[bytes]) -> None:
    def one_by_one(box: _Outbox) -> None:
        for message in messages:
            box.add(Encoded(message, []))

    def as_a_packet(box: _Outbox) -> None:
        box.add_packet(as_a_result(messages))

    expected = sent(context, limit, before, one_by_one)
    assert sent(context, limit, before, as_a_packet) == expected
    assert [m for packet in expected for m in packet] == before + messages
    assert all(len(packet) <= limit for packet in expected)


def test_outboxes_given_the_same_packet_each_keep_their_own(context: zmq.Context) -> None:
    """A RESULT's outputs for every next step go to each step's outbox: what one outbox queues next must not reach
    another (each keeps its own copy of the packet's counts, never the packet)."""
    result = as_a_result([b"to every step"])
    first, second = [], []

    def queue_then(more: list[bytes], into: list) -> object:
        def fill(box: _Outbox) -> None:
            box.add_packet(result)
            into.append(box.packet)
            for message in more:
                box.add(Encoded(message, []))
        return fill

    assert sent(context, 4, [], queue_then([b"to the first step only"], first)) == [
        [b"to every step", b"to the first step only"]]
    assert sent(context, 4, [], queue_then([], second)) == [[b"to every step"]]
    assert first[0] is not second[0] and first[0] is not result
    assert len(result) == 1
