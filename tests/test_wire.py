"""The engine's wire format (pipeline/engine/wire.py): packets and results come out of their frames
as they went in, on both sides of the inline-body boundary, after a split, after a real ZeroMQ hop,
and with their buffers lent by handle (engine.handles)."""

from __future__ import annotations

import re
import tracemalloc
from array import array
from itertools import pairwise

import pytest
import zmq
from hypothesis import example, given, settings
from hypothesis import strategies as st

from pipeline.engine import sockets as transport
from pipeline.engine.flow import window_limit
from pipeline.engine.handles import Handles
from pipeline.engine.wire import (
    FATAL_RUN,
    HEADER,
    INLINE_BODY_BYTES,
    MAX_REASON_CHARS,
    MAX_RUNNING,
    UNORDERED_ANSWERS,
    Answer,
    Failure,
    Kind,
    Loss,
    Packet,
    WireError,
    check_from_worker,
    control_frames,
    failed_frames,
    header_of,
    lost_frames,
    most_answers,
    packet_from_frames,
    parse_failed,
    parse_hello,
    parse_lost,
    parse_ping,
    parse_result,
    parse_skip,
    parse_tally,
    ping_frames,
    plain_result,
    skip_frames,
    tally_frames,
)
from pipeline.execution.executor import UNORDERED, Outcome
from pipeline.failures.describe import MAX_ERROR_CHARS
from pipeline.message import OUT_OF_BAND_BYTES, Encoded
from tests.wire_helpers import as_received, result_frames, unordered_result

#: One message as plain bytes: its in-band pickle and its out-of-band buffers.
Plain = tuple[bytes, list[bytes]]

PATTERN = bytes(range(251)) * (2 * INLINE_BODY_BYTES // 251 + 2)  # a prime period: shifted bytes show

#: In-band sizes around the boundary where a packet's body stops riding in its header frame.
BODY_SIZES = st.one_of(st.integers(0, 300), st.sampled_from(
    [INLINE_BODY_BYTES // 2, INLINE_BODY_BYTES - 1, INLINE_BODY_BYTES, INLINE_BODY_BYTES + 1]))
BUFFER_SIZES = st.sampled_from([0, 1, 100, OUT_OF_BAND_BYTES, OUT_OF_BAND_BYTES + 7])


def pattern(offset: int, size: int) -> bytes:
    """``size`` bytes whose content depends on ``offset``: a message swapped or cut at the wrong byte shows."""
    return PATTERN[offset:offset + size]


@st.composite
def plain_messages(draw: st.DrawFn) -> Plain:
    """One message: an in-band part and 0 to 3 buffers, each with its own content."""
    inband = pattern(draw(st.integers(0, 250)), draw(BODY_SIZES))
    buffers = [pattern(draw(st.integers(0, 250)), size) for size in draw(st.lists(BUFFER_SIZES, max_size=3))]
    return inband, buffers


MESSAGES = st.lists(plain_messages(), max_size=6)


def encoded(message: Plain) -> Encoded:
    """The message as the encoder makes it: its buffers are views of memory the sender owns."""
    inband, buffers = message
    return Encoded(inband, [memoryview(bytearray(b)) for b in buffers])


def packet_of(messages: list[Plain], first_seq: int = 0) -> Packet:
    """A packet as a sender builds it."""
    packet = Packet(first_seq=first_seq)
    for message in messages:
        packet.add(encoded(message))
    return packet


def contents(packet: Packet) -> list[tuple[int, bytes, list[bytes]]]:
    """Each message of ``packet`` as (sequence number, in-band bytes, buffer bytes)."""
    return [(seq, bytes(inband), [bytes(memoryview(b)) for b in buffers])
            for seq, inband, buffers in packet.messages()]


def numbered(messages: list[Plain], first_seq: int) -> list[tuple[int, bytes, list[bytes]]]:
    return [(first_seq + i, inband, buffers) for i, (inband, buffers) in enumerate(messages)]


@settings(max_examples=80, deadline=None)
@given(MESSAGES, st.integers(0, 2**63), st.sampled_from([Kind.DATA, Kind.WORK]), st.booleans())
def test_a_packet_comes_out_of_its_frames_as_it_went_in(messages: list[Plain], first_seq: int, kind: Kind,
                                                        by_handle: bool) -> None:
    handles = Handles() if by_handle else None
    packet = packet_of(messages, first_seq)
    frames = packet.frames(kind, handles=handles)
    assert header_of(frames[0]) == (kind, first_seq)
    inline = sum(len(inband) for inband, _ in messages) < INLINE_BODY_BYTES
    buffers = sum(len(buffers) for _, buffers in messages)
    assert len(frames) == (1 if inline else 2) + (min(buffers, 1) if by_handle else buffers)
    received = packet_from_frames(as_received(frames), handles=handles)
    assert len(received) == len(messages)
    assert contents(received) == numbered(messages, first_seq)
    assert received.nbytes == packet.nbytes == sum(len(i) + sum(map(len, b)) for i, b in messages)
    assert not handles, "a buffer stayed lent after its packet was received"


@settings(max_examples=60, deadline=None)
@given(MESSAGES, st.integers(0, 3 * OUT_OF_BAND_BYTES))
def test_the_leading_messages_within_a_size_are_the_most_that_fit(messages: list[Plain], limit: int) -> None:
    packet = packet_of(messages)
    sizes = [len(inband) + sum(map(len, buffers)) for inband, buffers in messages]
    count = packet.leading_within(limit)
    if not messages:
        assert count == 0
        return
    assert 1 <= count <= len(messages)
    assert count == 1 or sum(sizes[:count]) <= limit
    assert count == len(messages) or sum(sizes[:count + 1]) > limit


def test_buffers_lent_by_handle_are_the_senders_memory_taken_once() -> None:
    handles = Handles()
    sent = [memoryview(bytearray(b"a" * 10)), memoryview(bytearray(b"b" * 20))]
    frame = handles.lend(sent)
    assert len(handles) == 2
    taken = handles.take(frame)
    assert [b.obj for b in taken] == [b.obj for b in sent]  # the same memory: nothing copied
    assert not handles
    with pytest.raises(KeyError):
        handles.take(frame)


def test_a_packet_by_handle_is_refused_without_the_runs_handles() -> None:
    # What a worker process or a remote peer sends is read without handles: a number from it means nothing here.
    handles = Handles()
    frames = packet_of([(b"x", [pattern(1, OUT_OF_BAND_BYTES)])]).frames(Kind.DATA, handles=handles)
    with pytest.raises(WireError):
        packet_from_frames(as_received(frames))
    assert len(handles) == 1  # nothing was taken


@settings(max_examples=60, deadline=None)
@given(MESSAGES, st.data(), st.booleans())
def test_a_split_packet_keeps_every_message_once_and_in_order(messages: list[Plain], data: st.DataObject,
                                                              received: bool) -> None:
    # A router splits packets as received; a sender's own packets (one part per message) split too.
    packet = packet_of(messages, 7)
    if received:
        packet = packet_from_frames(as_received(packet.frames(Kind.DATA)))
    cut = data.draw(st.integers(0, len(messages)), label="cut")
    head, tail = packet.split(cut)
    expected = numbered(messages, 7)
    assert (contents(head), contents(tail)) == (expected[:cut], expected[cut:])
    assert (head.first_seq, tail.first_seq) == (7, 7 + cut)
    assert head.nbytes + tail.nbytes == packet.nbytes
    for half in (head, tail):  # each half goes on to a worker as a packet of its own
        assert contents(packet_from_frames(as_received(half.frames(Kind.WORK)))) == contents(half)


@pytest.mark.parametrize("body", [100, INLINE_BODY_BYTES - 1, INLINE_BODY_BYTES, 3 * INLINE_BODY_BYTES])
def test_a_packet_crosses_a_real_socket_intact(body: int) -> None:
    messages = [(pattern(1, body // 2), []), (pattern(2, body - body // 2), [pattern(3, OUT_OF_BAND_BYTES), b"x"]),
                (b"", [pattern(4, 2 * OUT_OF_BAND_BYTES)])]
    with zmq.Context() as context:
        sender, receiver = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
        try:
            for socket in (sender, receiver):
                socket.linger = 0
                socket.rcvtimeo = 5000
            receiver.bind("inproc://wire-test")
            sender.connect("inproc://wire-test")
            transport.send(sender, packet_of(messages, 42).frames(Kind.DATA))
            received = transport.recv(receiver)
        finally:
            sender.close()
            receiver.close()
    assert contents(packet_from_frames(received)) == numbered(messages, 42)


def test_control_frames_carry_their_kind_and_value() -> None:
    for kind in (Kind.END, Kind.FINISH, Kind.JOIN, Kind.READY, Kind.FINISHED):
        [frame] = control_frames(kind, 12345)
        assert header_of(frame) == (kind, 12345)


SEQS = st.one_of(st.integers(0, 2**63), st.just(UNORDERED))
OUTPUTS = st.lists(st.tuples(plain_messages(), st.one_of(st.none(), st.integers(0, 7))), max_size=3)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(SEQS, OUTPUTS), max_size=5), st.booleans())
def test_a_result_comes_out_of_its_frames_as_it_went_in(inputs: list[tuple[int, list]], by_handle: bool) -> None:
    handles = Handles() if by_handle else None
    frames = result_frames([Answer(seq, [(encoded(m), target) for m, target in outputs]) for seq, outputs in inputs],
                           handles)
    assert header_of(frames[0]) == (Kind.RESULT, len(inputs))
    parsed = parse_result(as_received(frames), handles)
    assert not handles
    assert [(seq, [((bytes(m.inband), [bytes(memoryview(b)) for b in m.buffers]), target) for m, target in outputs])
            for seq, outputs in ((answer.seq, answer.outputs) for answer in parsed)] == inputs


OUTCOMES = st.sampled_from([Outcome.DONE, Outcome.DONE, Outcome.DONE, Outcome.PARTIAL, Outcome.FAILED])
PLAIN_OUTPUTS = st.lists(st.tuples(st.one_of(plain_messages(), st.tuples(st.binary(max_size=40), st.just([]))),
                                   st.one_of(st.none(), st.none(), st.integers(0, 3))), max_size=4)


#: How an input's sequence number follows the one before it in a RESULT: mostly the next one.
SEQ_STEPS = st.sampled_from([1, 1, 1, 1, 0, 2, -1, UNORDERED])


def sequence_numbers(first: int, steps: list[int]) -> list[int]:
    """Each input's number: ``first`` for the first, then each ``step`` after the one before (UNORDERED: an output
    of init() or finish()), within uint64."""
    seqs: list[int] = []
    last = first
    for step in steps:
        if step == UNORDERED:
            seqs.append(UNORDERED)
            continue
        last = (last + step) % UNORDERED if seqs else last
        seqs.append(last)
    return seqs


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.integers(0, 2**63), st.just(UNORDERED - 3)),  # near the end of uint64 too
       st.lists(st.tuples(SEQ_STEPS, PLAIN_OUTPUTS, OUTCOMES, st.floats(0, 100, width=32)), max_size=6))
@example(7, [(1, [((b"a", []), None)], Outcome.DONE, 0.5), (1, [], Outcome.DONE, 2.0),
             (1, [((b"b", []), None), ((b"", []), None)], Outcome.DONE, 0.0)])  # plain
@example(UNORDERED - 1, [(1, [], Outcome.DONE, 0.0), (UNORDERED, [], Outcome.DONE, 0.0)])  # then init()'s: not plain
def test_a_result_is_plain_when_its_inputs_are_done_and_its_outputs_go_everywhere_without_buffers(
        first: int, inputs: list[tuple[int, list, Outcome, float]]) -> None:
    """A plain RESULT's outputs go on as the packet they came in (engine.router): the same messages, in the same
    order, as parse_result gives; any other RESULT is parsed as before."""
    seqs = sequence_numbers(first, [step for step, _, _, _ in inputs])
    answers = [Answer(seq, [(encoded(m), target) for m, target in outputs] if outcome is not Outcome.FAILED else [],
                      outcome, seconds if outcome is not Outcome.PARTIAL else len(outputs))
               for seq, (_, outputs, outcome, seconds) in zip(seqs, inputs, strict=True)]
    frames = as_received(result_frames(answers))
    plain = plain_result(frames)
    one_after_another = all(b.seq == a.seq + 1 for a, b in pairwise(answers))
    expected = one_after_another and all(a.outcome is Outcome.DONE and a.seq != UNORDERED
                                         and all(target is None and not m.buffers for m, target in a.outputs)
                                         for a in answers)
    assert (plain is not None) == expected
    if plain is not None:
        parsed = parse_result(frames)
        assert list(plain.seqs) == [a.seq for a in parsed]
        assert list(plain.seconds) == [a.seconds for a in parsed]
        assert [bytes(inband) for _, inband, _ in plain.outputs.messages()] == [
            bytes(m.inband) for a in parsed for m, _ in a.outputs]
        assert plain.outputs.nbytes == sum(len(m.inband) for a in parsed for m, _ in a.outputs)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**63), st.sampled_from(["run()", FATAL_RUN, "init()", "finish()", "not run"]), st.text(),
       st.text(), st.integers(0, 5), st.none() | st.tuples(st.binary(), st.lists(st.binary(), max_size=3)),
       st.integers(0, 2**64 - 1))
def test_a_failure_comes_out_of_its_frames_as_it_went_in(seq: int, what: str, error: str, traceback: str,
                                                          member: int, message: Plain | None, delivered: int) -> None:
    encoded = Encoded(message[0], message[1]) if message is not None else None
    failure = Failure(seq, what, error, traceback, member, encoded, delivered)
    frames = [bytes(frame) for frame in failed_frames(failure)]
    assert parse_failed(frames) == failure
    assert parse_failed(frames).fatal is (what == FATAL_RUN)  # its step fails and halts
    if member == 0 and message is None:  # a step's own failure, as a remote worker may send it too
        assert check_from_worker(frames, 1, 64) is Kind.FAILED


def test_a_remote_worker_cannot_send_a_fused_steps_failure_or_tally() -> None:
    fused = [bytes(frame) for frame in failed_frames(Failure(3, "run()", "E", "", 1, Encoded(b"x", [])))]
    with pytest.raises(WireError):
        check_from_worker(fused, 1, 64)
    with pytest.raises(WireError):
        check_from_worker(tally_frames([(1, 1, 0, 1, 0.5, 0.5)]), 1, 64)


@given(st.lists(st.tuples(*[st.integers(0, 2**64 - 1)] * 4, *[st.floats(allow_nan=False)] * 2), max_size=5))
def test_a_tally_comes_out_of_its_frames_as_it_went_in(records: list[tuple[int, int, int, int, float, float]]) -> None:
    assert parse_tally(tally_frames(records)) == records


def test_a_tally_whose_records_do_not_match_its_count_is_refused() -> None:
    header, data = tally_frames([(1, 2, 3, 4, 0.5, 0.25), (5, 6, 7, 8, 1.0, 1.0)])
    for frames in ([header, data[:-1]], [header], [header, data + b"\0"]):
        with pytest.raises(WireError):
            parse_tally(frames)


def test_a_chunk_with_outputs_passes_the_check_of_what_a_worker_sends_and_a_failure_with_outputs_does_not() -> None:
    outputs = [(Encoded(b"x", []), None)]
    partial = result_frames([Answer(3, outputs, Outcome.PARTIAL), Answer(3, outputs, Outcome.DONE)])
    assert check_from_worker(as_received(partial), 1, 64) is Kind.RESULT
    with pytest.raises(WireError, match="impossible answer"):
        check_from_worker(as_received(result_frames([Answer(3, outputs, Outcome.FAILED)])), 1, 64)


def test_a_chunk_says_how_many_outputs_of_its_step_it_stands_for_and_a_remote_one_cannot_lie() -> None:
    outputs = [(Encoded(b"x", []), None)]
    fused = result_frames([Answer(3, outputs, Outcome.PARTIAL, 0.0, 16), Answer(4, [], Outcome.PARTIAL, 0.0, 9)])
    assert [(a.seq, len(a.outputs), a.made) for a in parse_result(as_received(fused))] == [(3, 1, 16), (4, 0, 9)]
    plain = result_frames([Answer(3, outputs, Outcome.PARTIAL)])
    assert parse_result(as_received(plain))[0].made == 1
    with pytest.raises(WireError, match="impossible answer"):
        check_from_worker(as_received(fused), 1, 64)  # fused steps never run in a remote worker


def test_a_result_of_more_inputs_than_its_worker_may_hold_is_refused_on_its_count_alone() -> None:
    """A peer's RESULT of 5,000,000 inputs (an 85 MB frame, under the 1 GiB cap) took the run from 37 MB to 2 GB,
    input by input: a RESULT answers at most the messages its thread may hold and its init()'s and finish()'s."""
    most = most_answers(64)
    assert most == window_limit(64) + UNORDERED_ANSWERS
    assert check_from_worker(unordered_result(most), 1, 64) is Kind.RESULT
    assert most_answers(-1) == window_limit(-1) + UNORDERED_ANSWERS  # an unbounded queue: the window still is
    bomb = unordered_result(5_000_000)
    tracemalloc.start()
    try:
        with pytest.raises(WireError, match=f"a RESULT answering 5000000 inputs, more than the {most} its worker"):
            check_from_worker(bomb, 1, 64)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 64 << 10, peak  # not a copy of its 85 MB table, nor an object per input
    with pytest.raises(WireError, match="input table does not match its count"):
        check_from_worker([unordered_result(most)[0], bomb[1]], 1, 64)


def test_a_skip_says_which_message_and_how_many_of_its_outputs() -> None:
    frames = skip_frames(2**40, 144)
    assert header_of(frames[0]) == (Kind.SKIP, 2**40) and parse_skip(frames) == (2**40, 144)


def test_what_a_peer_says_in_a_frame_of_any_size_is_read_to_a_bound() -> None:
    """A PING or LEFT of 16 MiB (a peer's may be a GiB): at most MAX_RUNNING messages, not a list of millions kept
    per slot (128 MiB made 2.6 GiB of Python ints); texts to their bound, decoding no more bytes than they take."""
    huge = array("Q", range(2 * 1024 * 1024)).tobytes()
    assert parse_ping([ping_frames(3, [])[0], huge]) == list(range(MAX_RUNNING))
    loss = parse_lost([lost_frames(Loss(3, "", []))[0], b"r" * (16 << 20), huge])
    assert (loss.running, loss.reason) == (list(range(MAX_RUNNING)), "r" * MAX_REASON_CHARS)
    step, *_ = parse_hello([HEADER.pack(Kind.HELLO, 0, 1, 0), "é".encode() * (8 << 20)])
    assert step == "é" * MAX_REASON_CHARS
    assert parse_ping([ping_frames(3, [7, 8])[0], ping_frames(3, [7, 8])[1]]) == [7, 8]  # as they went in


def test_a_failures_texts_are_cut_to_max_error_chars_keeping_their_start_and_end_and_saying_so() -> None:
    """A peer's FAILED of three 4 MB texts was kept whole, 30 of them 114 MB: the error line and the traceback are
    read as a step's own are told (failures.describe), to MAX_ERROR_CHARS, whatever the frame's size."""
    frames = [bytes(frame) for frame in failed_frames(Failure(UNORDERED, "init()", "", "", 0, None))]
    frames[2] = ("E" + "\U0001F600" * 1_000_000 + "Z").encode()  # 4 MB
    frames[3] = b"T" + b"t" * (MAX_ERROR_CHARS + 1000) + b"end"  # decoded whole, then cut
    failure = parse_failed(frames)
    assert failure.error.startswith("E\U0001F600") and failure.error.endswith("\U0001F600Z")
    assert failure.traceback.startswith("Tt") and failure.traceback.endswith("tend")
    assert re.search(r"\n\[\.\.\. 3[0-9]{6} bytes cut \.\.\.\]\n", failure.error), failure.error[:100]
    assert "\n[... 1044 characters cut ...]\n" in failure.traceback
    assert all(len(text) <= MAX_ERROR_CHARS + 40 for text in (failure.error, failure.traceback))
    frames[2] = "é".encode() * MAX_ERROR_CHARS
    assert parse_failed(frames).error == "é" * MAX_ERROR_CHARS  # as it went in


def test_a_peers_huge_frame_is_read_without_a_copy_of_it() -> None:
    """What the parsers allocate for a 64 MiB frame stays far below its size: they read its start in place (they
    copied the whole frame to decode or convert it, then cut the result)."""
    frame = bytearray(b"r" * (64 << 20))
    header = HEADER.pack(Kind.HELLO, 0, 1, 0)
    parsers = [lambda: parse_ping([header, frame]), lambda: parse_hello([header, frame]),
               lambda: parse_lost([header, frame, frame]),
               lambda: parse_failed([HEADER.pack(Kind.FAILED, 0, 0, 1), frame, frame, frame])]
    for parse in parsers:
        tracemalloc.start()
        try:
            parse()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 16 << 20, peak
