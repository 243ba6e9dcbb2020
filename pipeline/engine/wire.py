"""The engine's wire format: every frame that travels between a run's threads and worker processes.

Every ZeroMQ message of the engine starts with one header frame::

    HEADER    kind (Kind), flags, count n, value          struct "<BBxxIQ"

A *packet* (DATA, WORK, RESULT) carries n messages. Its header frame goes on with n uint32 in-band
pickle lengths, n uint16 out-of-band buffer counts and, for RESULT only, n uint16 targets; then,
when the INLINE flag is set, the body. Then::

    frame 1  body     the n in-band pickles (protocol 5), concatenated (absent when inline)
    then     buffers  every message's out-of-band buffers, in message order

Between threads of the run's own process, the BY_HANDLE flag replaces the buffer frames by one
frame of uint64 numbers, each a buffer lent to the run's ``Handles`` (engine.handles): no frame to
free through pyzmq's garbage collector. Worker processes and remote workers never send nor get it.
Between the run's process and a worker process of the same host, the IN_RING flag replaces them by
one frame of (position, length) uint64 pairs, each a buffer copied into the sender's shared-memory
ring (engine.rings); remote workers never send nor get it. A worker process sends it only after a WORK
with the RINGS_READY flag, which says that its router has mapped its rings.

A body under ``INLINE_BODY_BYTES`` rides in the header frame: every frame is a ZeroMQ call that
releases and retakes the GIL, and for small messages those calls are most of a packet's cost.
``value`` is the sequence number of the first message of a DATA or WORK packet.

A RESULT packet holds the outputs of one or more inputs of a worker that returns its outputs to
its router (an ordered step's worker): ``value`` is how many inputs it answers, and a last frame
lists them in order, as columns (``RESULT_INPUT_BYTES`` per input): their sequence numbers, numbers of
outputs, seconds and outcomes.
An input whose outputs outgrow a chunk (execution.executor) is answered PARTIAL first, one RESULT
per chunk, each waiting for the router's MORE; a message sent again after a worker that handed some
of its outputs on died comes after a SKIP saying how many. A RESULT holds at most MAX_RESULT_OUTPUTS
(engine.flow) outputs, a chunk's worth, whatever the inputs it answers.

A control message (END, FINISH, JOIN, READY, FINISHED) is the header alone: END's value is how
many messages the sender sent; JOIN's and READY's value is how many messages the worker asks to
hold, and JOIN's count the process id of the worker's process. Routers split and join packets
using the header alone; they never unpickle a payload.

Workers in other processes also send FAILED (a message's or init()/finish()'s error, as text:
the run logs it, counts it and writes the dead letter), and talk to the run's worker host:
HELLO (a new process asks what to run; the host answers SPEC), PING and PONG (heartbeats both
ways) and HALT (the step stopped after a failure). The host tells a step's router LOST when one
of its worker processes died.
"""

from __future__ import annotations

import struct
from array import array
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any, cast

from pipeline.console.humanize import cut_note, shorten, utf8_bytes
from pipeline.engine.flow import MAX_RESULT_OUTPUTS, window_limit
from pipeline.engine.handles import Handles
from pipeline.engine.rings import Ring, Taken
from pipeline.execution.executor import UNORDERED, Outcome
from pipeline.failures.describe import MAX_ERROR_CHARS
from pipeline.message import Buffer, Encoded


class Kind(IntEnum):
    """What a frame set is: the first byte of its header."""

    DATA = 1  # sender -> step router: messages
    END = 2  # sender -> step router: end of stream; value = messages sent
    WORK = 3  # router -> worker: messages to process
    FINISH = 4  # router -> worker: every message is processed, run finish() and stop
    JOIN = 5  # worker -> router: initialised; value = messages it asks to hold (0: its init() failed); count: its pid
    READY = 6  # worker -> router: finished its oldest packet; value = messages it asks to hold
    FINISHED = 7  # worker -> router: ran finish() and sent its end of stream
    RESULT = 8  # worker -> router: the outputs of inputs it processed, to be sent on by the router
    FAILED = 9  # worker process -> router: an error (value: the input's sequence number, or UNORDERED)
    HELLO = 10  # worker process -> host: what shall I run? (value: its slot; a remote one's: its pid, count:
    #              its threads, then a frame naming the step)
    SPEC = 11  # host -> worker process: the step to run, its configuration and where its router is
    PING = 12  # worker process -> host: alive (value: the process's slot)
    PONG = 13  # host -> worker process: the run is alive
    HALT = 14  # host -> worker process: the step stopped after a failure; start no further message
    LOST = 15  # host -> router: a worker process died (value: its slot)
    ADDED = 16  # host -> router: a worker process joins the step (value: its slot; count: its threads)
    REFUSE = 17  # door -> remote worker: it cannot join (a frame says why)
    LEFT = 18  # remote worker -> door: one of its worker processes ended (value: its slot; then reason, running)
    MORE = 19  # router -> worker: the chunk of outputs it returned went on: it may send the next (flow control)
    SKIP = 20  # router -> worker: message ``value``, in its next WORK, had ``count`` outputs delivered already
    TALLY = 21  # worker process -> router: the figures of the fused steps after its step (engine.fusion)
    BYE = 22  # router -> worker outside the run: its FINISHED was read, so was all it sent before: it may end
    DROPPED = 23  # door -> remote worker: the run took its worker process ``value`` for dead (a frame says why)


HEADER = struct.Struct("<BBxxIQ")  # kind, flags, count, value
#: The version of these frames, which a HELLO and its SPEC carry in their flags byte: a remote worker and a run of
#: other versions refuse each other with a message rather than misread each other's frames. Raised with every
#: change of a frame's layout (2: a RESULT's table of inputs in columns; 3: a SPEC's slot token; 4: DROPPED).
WIRE_VERSION = 4
#: The header flag saying that the body follows the header in frame 0.
INLINE = 1
#: The header flag saying that one frame of buffer numbers replaces the buffer frames (engine.handles).
BY_HANDLE = 2
#: The header flag saying that one frame of ring records replaces the buffer frames (engine.rings).
IN_RING = 4
#: The header flag of a WORK whose router has mapped the receiving thread's rings: from then on the thread may
#: return buffers in its ring (until then its router might not be able to read them: it maps rings when it
#: first hands a thread work, and goes by frames if it cannot).
RINGS_READY = 8
#: A body smaller than this is copied into the header frame; a larger one is a frame of its own.
INLINE_BODY_BYTES = 64 * 1024
#: A RESULT's table of the inputs it answers is four columns of n values each: their sequence numbers (uint64), how
#: many outputs each has (uint32), the seconds each one's run() took (float32; a PARTIAL: how many outputs of the
#: step's code it stands for, exact in a float32 far past OUTPUT_CHUNK_COUNT) and their Outcomes (uint8). Columns,
#: so that a router reads each in one call: an input of tiny messages costs it no Python step.
RESULT_INPUT_BYTES = 8 + 4 + 4 + 1


def _result_table(table: bytes, inputs: int) -> tuple[array, array, array, bytes]:
    """The columns of a RESULT's table of ``inputs`` inputs: sequence numbers, output counts, seconds, outcomes."""
    if len(table) != inputs * RESULT_INPUT_BYTES:
        raise WireError("a RESULT whose input table does not match its count")
    seqs, counts, seconds = array("Q"), array("I"), array("f")
    seqs.frombytes(table[:8 * inputs])
    counts.frombytes(table[8 * inputs:12 * inputs])
    seconds.frombytes(table[12 * inputs:16 * inputs])
    return seqs, counts, seconds, table[16 * inputs:]


#: The target of an output sent to every next step.
EVERY_NEXT_STEP = 0xFFFF
#: The longest text (a reason, a step name) a peer's frame is read to.
MAX_REASON_CHARS = 1000
#: The most messages a PING, LOST or LEFT is read to say a worker process runs: one per worker thread, of which a
#: process has at most 256 (config.stepkeys.MAX_WORKERS, engine.door.MAX_REMOTE_THREADS).
MAX_RUNNING = 256


@dataclass
class Packet:
    """Several encoded messages sharing one header, body and list of buffer frames."""

    lengths: array = field(default_factory=lambda: array("I"))
    oob_counts: array = field(default_factory=lambda: array("H"))
    parts: list[Buffer] = field(default_factory=list)  # the body, whole or as one part per message
    #: memoryviews, or zmq.Frames as received, or buffers still in a ring (read once, in order: engine.rings.Taken)
    buffers: Sequence[Buffer] | Taken = field(default_factory=list)
    first_seq: int = 0
    nbytes: int = 0
    rings_ready: bool = False  # received with RINGS_READY

    def __len__(self) -> int:
        return len(self.lengths)

    def add(self, message: Encoded) -> None:
        """Append one encoded message (``encode`` refused any with more than MAX_BUFFERS buffers)."""
        inband, buffers = message.inband, message.buffers
        size = len(inband)
        self.lengths.append(size)
        self.oob_counts.append(len(buffers))
        self.parts.append(inband)
        if buffers:
            held = cast(list[Buffer], self.buffers)  # a packet being built holds a list
            for buffer in buffers:
                view = memoryview(buffer)
                held.append(view)
                size += view.nbytes
        self.nbytes += size

    def frames(self, kind: Kind, extra: bytes = b"", value: int | None = None,
               handles: Handles | None = None, ring: Ring | None = None) -> list[Buffer]:
        """The multipart frames of this packet as ``kind``; ``extra`` goes after the buffer counts.

        With ``handles`` (a receiver in the run's process) the buffers are lent to it, not framed.
        """
        inline = sum(self.lengths) < INLINE_BODY_BYTES
        buffers: Sequence[Buffer] = self.buffers
        flags = INLINE if inline else 0
        if handles is not None and buffers:
            buffers = [handles.lend(buffers)]
            flags |= BY_HANDLE
        elif ring is not None:
            flags |= RINGS_READY
            records = ring.put(buffers) if buffers else None
            if records is not None:  # else none, or the ring is full: the buffers go as frames
                buffers = [records]
                flags |= IN_RING
        head = (HEADER.pack(kind, flags, len(self.lengths), self.first_seq if value is None else value),
                self.lengths.tobytes(), self.oob_counts.tobytes(), extra)
        if inline:
            return [b"".join((*head, *self.parts)), *buffers]
        body = self.parts[0] if len(self.parts) == 1 else b"".join(self.parts)
        return [b"".join(head), body, *buffers]

    def body(self) -> memoryview:
        """The in-band pickles of all its messages, one after the other (joined once if it holds several parts)."""
        return memoryview(self.parts[0] if len(self.parts) == 1 else b"".join(self.parts))

    def leading_within(self, nbytes: int) -> int:
        """How many of the first messages fit in ``nbytes`` together (at least one)."""
        total = 0
        nbuf = 0
        for i, (length, count) in enumerate(zip(self.lengths, self.oob_counts, strict=True)):
            total += length + sum(memoryview(b).nbytes for b in self.buffers[nbuf:nbuf + count])
            if total > nbytes:
                return max(1, i)
            nbuf += count
        return len(self)

    @staticmethod
    def concat(packets: Sequence[Packet]) -> Packet:
        """One packet of consecutive ``packets`` (each numbered where the one before ends), without copying."""
        if len(packets) == 1:
            return packets[0]
        lengths, oob_counts = array("I"), array("H")
        parts: list[Buffer] = []
        buffers: list[Buffer] = []
        for packet in packets:
            lengths.extend(packet.lengths)
            oob_counts.extend(packet.oob_counts)
            parts.extend(packet.parts)
            buffers.extend(packet.buffers)
        return Packet(lengths, oob_counts, parts, buffers, packets[0].first_seq, sum(p.nbytes for p in packets))

    def receipt(self) -> Packet:
        """This packet's counts, sequence numbers and size without its messages."""
        return Packet(self.lengths, self.oob_counts, [], [], self.first_seq, self.nbytes)

    def split(self, count: int) -> tuple[Packet, Packet]:
        """The first ``count`` messages and the rest, without copying any buffer."""
        body = self.body()
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
        body = self.body()
        buffers = self.buffers
        offset = 0
        nbuf = 0
        for seq, length, count in zip(range(self.first_seq, self.first_seq + len(self.lengths)), self.lengths,
                                      self.oob_counts, strict=True):
            # A new list each: a receiver may keep it (a dead letter's).
            yield seq, body[offset:offset + length], buffers[nbuf:nbuf + count] if count else []
            offset += length
            nbuf += count

    def encoded(self) -> Iterator[Encoded]:
        """Each message as an Encoded, its buffers by reference."""
        for _, inband, buffers in self.messages():
            yield Encoded(inband, buffers)


def packet_from_frames(frames: Sequence[Any], extra_per_message: int = 0, handles: Handles | None = None,
                       ring: Ring | None = None) -> Packet:
    """Rebuild a packet from received zmq.Frame objects (skipping ``extra_per_message`` header bytes each).

    The frames are kept as they are: forwarding a zmq.Frame only adds a reference to its memory.
    Buffers sent by handle are taken from ``handles``; without it (a sender outside the run's
    process) such a packet is a WireError.
    """
    header = frames[0].bytes
    _, flags, n, first_seq = HEADER.unpack_from(header)
    lengths = array("I")
    lengths.frombytes(header[HEADER.size:HEADER.size + 4 * n])
    oob_counts = array("H")
    oob_counts.frombytes(header[HEADER.size + 4 * n:HEADER.size + 6 * n])
    if flags & INLINE:
        body: Buffer = memoryview(header)[HEADER.size + (6 + extra_per_message) * n:]
        rest = frames[1:]
    else:
        body = frames[1]
        rest = frames[2:]
    if ring is not None and not flags & IN_RING:
        ring.reclaim()  # what its receiver gave back is free for the next packet, though this one came as frames
    if flags & IN_RING:
        if ring is None or len(rest) != 1:
            raise WireError("buffers in a ring from a sender that has none with this receiver")
        try:
            taken = ring.take(rest[0])  # lent in place as each message is read
        except ValueError as err:
            raise WireError(str(err)) from None
        return Packet(lengths, oob_counts, [body], taken, first_seq, len(body) + taken.nbytes,
                      rings_ready=bool(flags & RINGS_READY))
    elif not flags & BY_HANDLE:
        buffers = list(rest)
        nbytes = len(body) + sum(len(f) for f in buffers)
    elif handles is None or len(rest) != 1:
        raise WireError("buffers by handle from outside the run's process")
    else:
        buffers = handles.take(rest[0])
        nbytes = len(body) + sum(memoryview(b).nbytes for b in buffers)
    return Packet(lengths, oob_counts, [body], buffers, first_seq, nbytes, rings_ready=bool(flags & RINGS_READY))


def header_of(frame: Any) -> tuple[Kind, int]:
    """(kind, value) of a frame set's first frame."""
    kind, _, _, value = HEADER.unpack_from(frame)
    return Kind(kind), value


def control_frames(kind: Kind, value: int = 0) -> list[bytes]:
    """The one frame of a message without payload: END, FINISH, READY, FINISHED, MORE or BYE (a JOIN: join_frames)."""
    return [HEADER.pack(kind, 0, 0, value)]


def join_frames(window: int, pid: int) -> list[bytes]:
    """A JOIN (worker -> router): the worker, of process ``pid``, is initialised and asks to hold ``window`` messages
    (0: its init() failed). The header alone: HEADER (JOIN, count: pid, value: window). The door names a remote worker
    process by that pid: its HELLO comes from its pipeline-worker, before the process exists. A worker that says no
    pid (0, as a worker before this field did) keeps the layout, so WIRE_VERSION is unchanged."""
    return [HEADER.pack(Kind.JOIN, 0, pid, window)]


def joined_pid(frames: Sequence[Any]) -> int:
    """The process id a JOIN says its worker runs in (0: it does not say)."""
    return HEADER.unpack_from(frames[0])[2]


def skip_frames(seq: int, delivered: int) -> list[bytes]:
    """A SKIP (router -> worker, before the WORK that holds message ``seq``): ``delivered`` of its outputs went
    on from a worker that died running it; the worker drops as many of those its run() makes again."""
    return [HEADER.pack(Kind.SKIP, 0, delivered, seq)]


def parse_skip(frames: Sequence[Any]) -> tuple[int, int]:
    """(message, outputs delivered already) of a SKIP."""
    _, _, delivered, seq = HEADER.unpack_from(frames[0])
    return seq, delivered


#: The outputs of one input in a RESULT: each message and its next step's index (None: every next step).
ResultOutputs = Sequence[tuple[Encoded, "int | None"]]


@dataclass(slots=True)
class Answer:
    """One input answered in a RESULT."""

    seq: int
    outputs: ResultOutputs
    outcome: Outcome = Outcome.DONE
    seconds: float = 0.0
    #: A PARTIAL's: how many outputs of the step's code the chunk stands for (None: as many as it holds); the
    #: fused steps after the step may have made more or fewer of them (engine.fusion).
    made: int | None = None

    @property
    def stands_for(self) -> int:
        """How many outputs of the step's code a PARTIAL stands for."""
        return len(self.outputs) if self.made is None else self.made


class ResultPacket:
    """A RESULT being built, one input's answer after another: their outputs, the outputs' targets and the table of
    the inputs. A worker adds each answer as it comes (no object per answer)."""

    __slots__ = ("counts", "outcomes", "outputs", "seconds", "seqs", "targets")

    def __init__(self) -> None:
        self.outputs = Packet()
        self.targets = array("H")
        # The table's columns (RESULT_INPUT_BYTES).
        self.seqs = array("Q")
        self.counts = array("I")
        self.seconds = array("f")
        self.outcomes = bytearray()

    def __len__(self) -> int:
        """How many inputs it answers."""
        return len(self.seqs)

    def answer(self, seq: int, outputs: Sequence[tuple[Encoded, Any]], outcome: Outcome = Outcome.DONE,
               seconds: float = 0.0, made: int | None = None, index: dict[str, int] | None = None) -> None:
        """Answer input ``seq``: its outputs, each with its target (None: every next step), a number of the step's
        next steps, or with ``index`` a name it numbers; what became of it and the seconds its run() took; a
        PARTIAL's ``made`` (Answer.made)."""
        if outcome is Outcome.PARTIAL:
            seconds = len(outputs) if made is None else made
        self.seqs.append(seq)
        self.counts.append(len(outputs))
        self.seconds.append(seconds)
        self.outcomes.append(outcome)
        add = self.outputs.add
        targets = self.targets
        for message, target in outputs:
            add(message)
            targets.append(EVERY_NEXT_STEP if target is None else target if index is None else index[target])

    def deliveries(self, next_steps: int) -> int:
        """The deliveries its outputs make, for a step of ``next_steps`` next steps (report.StepCounts.emitted)."""
        return deliveries(self.targets, next_steps)

    def frames(self, handles: Handles | None = None, ring: Ring | None = None) -> list[Buffer]:
        """Its frames (the buffers lent to ``handles`` when the router is in the same process, or put in ``ring``)."""
        table = b"".join((self.seqs.tobytes(), self.counts.tobytes(), self.seconds.tobytes(), self.outcomes))
        return [*self.outputs.frames(Kind.RESULT, self.targets.tobytes(), value=len(self.seqs), handles=handles,
                                     ring=ring), table]


#: Each Outcome at its value's index: a RESULT's outcome byte looked up for each input, faster than Outcome(byte).
_OUTCOMES = tuple(sorted(Outcome, key=int))


def parse_result(frames: Sequence[Any], handles: Handles | None = None, ring: Ring | None = None) -> list[Answer]:
    """The inputs a RESULT packet answers, in the order the worker processed them (buffers sent by
    handle are taken from ``handles``, those in a ring from ``ring``)."""
    *packet_frames, table_frame = frames
    header = packet_frames[0].bytes
    _, _, n, inputs = HEADER.unpack_from(header)
    targets = array("H")
    targets.frombytes(header[HEADER.size + 6 * n:HEADER.size + 8 * n])
    messages = packet_from_frames(packet_frames, 2, handles, ring).encoded()
    outputs = [(message, None if target == EVERY_NEXT_STEP else target)
               for message, target in zip(messages, targets, strict=True)]
    result = []
    start = 0
    for seq, count, seconds, outcome in zip(*_result_table(table_frame.bytes, inputs), strict=True):
        if outcome == Outcome.PARTIAL:
            result.append(Answer(seq, outputs[start:start + count], Outcome.PARTIAL, 0.0, int(seconds)))
        else:
            result.append(Answer(seq, outputs[start:start + count], _OUTCOMES[outcome], seconds))
        start += count
    return result


def deliveries(targets: array, next_steps: int) -> int:
    """The deliveries outputs of ``targets`` make: one each, and ``next_steps`` for each sent to every next step
    (counted in C: no output is looked at one by one)."""
    return len(targets) + targets.count(EVERY_NEXT_STEP) * (next_steps - 1)


def result_deliveries(header: Any, next_steps: int) -> int:
    """The deliveries the outputs of the RESULT of header frame ``header`` make, read from its targets alone."""
    view = memoryview(header)
    n = HEADER.unpack_from(view)[2]
    targets = array("H")
    targets.frombytes(view[HEADER.size + 6 * n:HEADER.size + 8 * n])
    return deliveries(targets, next_steps)


#: The target of one output sent to every next step, as a RESULT's header holds it.
_EVERY_TARGET = array("H", [EVERY_NEXT_STEP]).tobytes()


@dataclass(slots=True)
class PlainResult:
    """A RESULT whose inputs all answered DONE and whose outputs, with no out-of-band buffers, each go to every next
    step: its outputs can go on as the packet they came in (``plain_result``)."""

    outputs: Packet
    seqs: range  # the inputs it answers, in order: one after the other
    seconds: array  # the seconds each one's run() took


def plain_result(frames: Sequence[Any], ring: Ring | None = None) -> PlainResult | None:
    """The RESULT of ``frames`` as a PlainResult, or None when it is not one (``parse_result`` reads it then). Its
    worker's ring of answers, if any, takes back what its reader gave back, as for any packet (engine.rings)."""
    *packet_frames, table_frame = frames
    header = packet_frames[0].bytes
    _, flags, n, inputs = HEADER.unpack_from(header)
    if flags & (BY_HANDLE | IN_RING) or len(packet_frames) != (1 if flags & INLINE else 2):
        return None  # out-of-band buffers
    if header[HEADER.size + 6 * n:HEADER.size + 8 * n] != _EVERY_TARGET * n:
        return None
    try:
        seqs, _, seconds, outcomes = _result_table(table_frame.bytes, inputs)
    except WireError:
        return None  # parse_result says why
    if outcomes.count(Outcome.DONE) != inputs:
        return None
    first = seqs[0] if inputs else 0
    expected = range(first, first + inputs)
    if UNORDERED in expected or seqs != array("Q", expected):
        return None  # outputs of init() or finish(), or inputs not one after the other
    return PlainResult(packet_from_frames(packet_frames, 2, ring=ring), expected, seconds)


#: What a FAILED says failed when a fused step did not run a message because it had stopped.
NOT_RUN = "not run"
#: What a FAILED says failed when a value a producer yielded could not be pickled (its number: the FAILED's seq).
UNSENDABLE = "a value yielded"
#: What a FAILED says failed when run() raised what is not an Exception (a SystemExit, a KeyboardInterrupt): its
#: message failed, and its step fails and halts.
FATAL_RUN = "run(), fatal"


@dataclass(frozen=True)
class Failure:
    """What a FAILED says: the input (its sequence number at the step's router, or UNORDERED), what failed
    (run(), FATAL_RUN, init(), finish(), NOT_RUN, or UNSENDABLE), the error line and traceback, and for a fused step
    after the router's own (``member`` > 0, engine.fusion) the message it failed on."""

    seq: int
    what: str
    error: str
    traceback: str
    member: int = 0
    message: Encoded | None = None
    delivered: int = 0  # a fused step's outputs of the message that went on, in chunks, before it failed

    @property
    def fatal(self) -> bool:
        """Whether the message's failure fails its step and halts it (FATAL_RUN)."""
        return self.what == FATAL_RUN


#: After a fused step's FAILED header: how many outputs of its message went on before it failed.
DELIVERED = struct.Struct("<Q")


def failed_frames(failure: Failure) -> list[Buffer]:
    """A FAILED (worker process -> router)::

        HEADER (FAILED, count: member, value: seq) [DELIVERED] | what | error line | traceback  (UTF-8 each)
        [for a fused step's message: its in-band pickle | its out-of-band buffers...]
    """
    header = HEADER.pack(Kind.FAILED, 0, failure.member, failure.seq)
    if failure.delivered:
        header += DELIVERED.pack(failure.delivered)
    frames: list[Buffer] = [header, utf8_bytes(failure.what), utf8_bytes(failure.error), utf8_bytes(failure.traceback)]
    if failure.message is not None:
        frames += [failure.message.inband, *failure.message.buffers]
    return frames


def parse_failed(frames: Sequence[Any]) -> Failure:
    """The Failure a FAILED says."""
    _, _, member, seq = HEADER.unpack_from(frames[0])
    delivered = DELIVERED.unpack_from(frames[0], HEADER.size)[0] if len(frames[0]) >= HEADER.size + 8 else 0
    what = text_of(frames[1])
    error, traceback = failure_text(frames[2]), failure_text(frames[3])
    message = Encoded(bytes(frames[4]), [bytes(frame) for frame in frames[5:]]) if len(frames) > 4 else None
    return Failure(seq, what, error, traceback, member, message, delivered)


def failure_text(frame: Any) -> str:
    """The error line or traceback of a FAILED, to MAX_ERROR_CHARS as a step's own are (failures.describe): its
    start and its end, saying how much was cut. Only those are decoded, whatever the frame's size (a peer's 30
    FAILEDs of three 4 MB texts each were kept whole)."""
    view = memoryview(frame).cast("B")
    most = 4 * MAX_ERROR_CHARS  # the bytes of MAX_ERROR_CHARS characters at most
    if len(view) <= most:
        return shorten(bytes(view).decode(errors="replace"), MAX_ERROR_CHARS)
    keep = MAX_ERROR_CHARS // 2
    start = bytes(view[:4 * keep]).decode(errors="replace")[:keep]
    end = bytes(view[len(view) - 4 * keep:]).decode(errors="replace")[-keep:]
    cut = len(view) - len(start.encode()) - len(end.encode())  # about: a broken character re-encodes larger
    return f"{start}{cut_note(max(0, cut), 'bytes')}{end}"


#: One fused step's figures in a TALLY: received, processed, failed, emitted, busy and longest run() seconds.
TALLY_RECORD = struct.Struct("<QQQQdd")
#: A TALLY_RECORD as read: received, processed, failed, emitted, busy seconds, longest run() seconds.
Tally = tuple[int, int, int, int, float, float]


def tally_frames(figures: Sequence[Tally]) -> list[bytes]:
    """A TALLY (worker process -> router): for each fused step after the router's, in order, the figures of
    this worker thread's instance so far::

        HEADER (TALLY, count: steps) | TALLY_RECORD per step
    """
    return [HEADER.pack(Kind.TALLY, 0, len(figures), 0), b"".join(TALLY_RECORD.pack(*f) for f in figures)]


def parse_tally(frames: Sequence[Any]) -> list[Tally]:
    """The figures of a TALLY; a WireError if its frame does not hold as many records as its header says."""
    _, _, count, _ = HEADER.unpack_from(frames[0])
    data = bytes(frames[1]) if len(frames) > 1 else b""
    if len(data) != count * TALLY_RECORD.size:
        raise WireError("a TALLY whose records do not match its count")
    return list(TALLY_RECORD.iter_unpack(data))


#: How the reason of a Loss begins for a worker process that could not be started (the error follows).
NOT_STARTED = "it could not be started"


@dataclass(frozen=True)
class Loss:
    """What a LOST or LEFT says: worker process ``slot`` ended for ``reason`` while running the messages
    ``running``; ``clean``: by itself, with exit status 0 (after FINISH, its work done)."""

    slot: int
    reason: str
    running: list[int]
    clean: bool = False


def lost_frames(loss: Loss, kind: Kind = Kind.LOST) -> list[bytes]:
    """A LOST notice (supervisor or door -> router), or a LEFT (remote worker -> door)::

        HEADER (kind, count: 1 if clean, value: slot) | reason, UTF-8 | running, uint64 each
    """
    return [HEADER.pack(kind, 0, int(loss.clean), loss.slot), utf8_bytes(loss.reason),
            array("Q", loss.running).tobytes()]


def left_frames(loss: Loss) -> list[bytes]:
    """A remote worker's LEFT: one of its worker processes ended (laid out as LOST)."""
    return lost_frames(loss, Kind.LEFT)


def parse_lost(frames: Sequence[Any]) -> Loss:
    """The Loss a LOST or LEFT says; a WireError if it is not one."""
    if len(frames) != 3 or len(frames[0]) != HEADER.size:
        raise WireError("a LOST or LEFT of the wrong frames")
    _, _, clean, slot = HEADER.unpack_from(frames[0])
    return Loss(slot, text_of(frames[1]), _running(frames[2]), clean == 1)


def added_frames(slot: int, threads: int) -> list[bytes]:
    """An ADDED notice (supervisor or door -> router): worker process ``slot``, with ``threads`` worker threads,
    joins the step. The header alone: HEADER (ADDED, count: threads, value: slot)."""
    return [HEADER.pack(Kind.ADDED, 0, threads, slot)]


def parse_added(frames: Sequence[Any]) -> tuple[int, int]:
    """(slot, threads) of an ADDED notice."""
    _, _, threads, slot = HEADER.unpack_from(frames[0])
    return slot, threads


def ping_frames(slot: int, running: Sequence[int]) -> list[bytes]:
    """A PING (remote worker -> door): worker process ``slot`` is alive, running the messages ``running``::

        HEADER (PING, value: slot) | running, uint64 each
    """
    return [HEADER.pack(Kind.PING, 0, 0, slot), array("Q", running).tobytes()]


def parse_ping(frames: Sequence[Any]) -> list[int]:
    """The messages a PING says its process is running ([] if it says none, or nothing readable)."""
    if len(frames) < 2:
        return []
    return _running(frames[1])


def _running(frame: Any) -> list[int]:
    """The messages a frame of uint64s says a worker process is running: at most MAX_RUNNING, whatever its size (a
    peer's PING of 128 MiB made a list of 16 million ints, 2.6 GiB kept per slot)."""
    data = memoryview(frame).cast("B")[:MAX_RUNNING * 8]
    running = array("Q")
    running.frombytes(data[:len(data) - len(data) % running.itemsize])
    return running.tolist()


def hello_frames(step: str, threads: int, pid: int) -> list[bytes]:
    """A HELLO (remote worker -> door): a process of ``threads`` worker threads asks to join ``step``::

        HEADER (HELLO, flags: WIRE_VERSION, count: threads, value: its pid on its host) | step name, UTF-8
    """
    return [HEADER.pack(Kind.HELLO, WIRE_VERSION, threads, pid), utf8_bytes(step)]


def parse_hello(frames: Sequence[Any]) -> tuple[str, int, int, int]:
    """(step, threads, pid, the worker's WIRE_VERSION) of a HELLO (a step of "" when it names none)."""
    _, version, threads, pid = HEADER.unpack_from(frames[0])
    step = text_of(frames[1]) if len(frames) > 1 else ""
    return step, threads, pid, version


def spec_frames(slot: int, spec: bytes, token: bytes) -> list[bytes]:
    """A SPEC (door -> remote worker): its slot, the step's Spec pickled (the worker proved the run's key) and the
    slot's token, which ends its threads' routing ids (SLOT_TOKEN)::

        HEADER (SPEC, flags: WIRE_VERSION, value: slot) | pickle | token
    """
    return [HEADER.pack(Kind.SPEC, WIRE_VERSION, 0, slot), spec, token]


def parse_spec(frames: Sequence[Any]) -> tuple[int, bytes, int, bytes]:
    """(slot, the pickled Spec, the run's WIRE_VERSION, the slot's token) of a SPEC."""
    _, version, _, slot = HEADER.unpack_from(frames[0])
    return slot, bytes(frames[1]), version, bytes(frames[2]) if len(frames) > 2 else b""


def version_mismatch(theirs: int, who: str) -> str | None:
    """What to say when a peer (``who``: "the worker", "the run") speaks another WIRE_VERSION; None if it does not."""
    if theirs == WIRE_VERSION:
        return None
    return (f"{who} speaks version {theirs} of the engine's frames and this one {WIRE_VERSION}: run the same "
            "zmq-pipeline on every host")


#: A REFUSE's value when the step has no more work (its stream ended, or the run is stopping): the worker has nothing
#: to do, which is no error (a job of workers started as a run ends is no failed job).
REFUSED_ENDING = 1


def refuse_frames(why: str, ending: bool = False) -> list[bytes]:
    """A REFUSE (door -> remote worker): it cannot join, and why; ``ending``: for the step has no more work.
    HEADER (REFUSE, value: REFUSED_ENDING or 0) | why, UTF-8."""
    return [HEADER.pack(Kind.REFUSE, 0, 0, REFUSED_ENDING if ending else 0), utf8_bytes(why)]


def parse_refuse(frames: Sequence[Any]) -> str:
    """Why a REFUSE refused (or a DROPPED dropped)."""
    return text_of(frames[1]) if len(frames) > 1 else ""


def dropped_frames(slot: int, why: str) -> list[bytes]:
    """A DROPPED (door -> remote worker): the run took its worker process ``slot`` for dead, and why.
    HEADER (DROPPED, value: slot) | why, UTF-8."""
    return [HEADER.pack(Kind.DROPPED, 0, 0, slot), utf8_bytes(why)]


def text_of(frame: Any, most: int = MAX_REASON_CHARS) -> str:
    """The text of a frame, UTF-8, to its first ``most`` characters: only as many bytes as they can take are
    decoded, whatever the frame's size (a peer's frame may hold up to a GiB)."""
    return bytes(memoryview(frame).cast("B")[:4 * most]).decode(errors="replace")[:most]


#: The routing id of a worker thread in another process starts with this byte (then "slot.thread");
#: the run's own worker threads take RunControl.thread_prefix.
PROCESS_WORKER = b"p"
#: What ends a remote worker thread's routing id at the door: this byte, then its slot's token (the SPEC's). A peer
#: sets its own routing id and a ROUTER ignores a second peer of an id it has (no ROUTER_HANDOVER): another key that
#: took ``p<slot>.<thread>`` first left that slot's threads unheard, and the run waited for them while they lived.
SLOT_TOKEN = b":"


def process_worker_id(slot: int, thread: int, token: bytes = b"") -> bytes:
    """The routing id of thread ``thread`` of worker process ``slot`` (a remote one's ends with its slot's token)."""
    return b"%s%d.%d%s" % (PROCESS_WORKER, slot, thread, SLOT_TOKEN + token if token else b"")


def parse_worker_id(worker: bytes) -> tuple[int, int] | None:
    """(slot, thread) of the routing id of a worker process's thread; None if it is not one."""
    if worker[:1] != PROCESS_WORKER:
        return None
    slot, dot, thread = worker[1:].partition(b".")
    if not (dot and slot.isdigit() and thread.isdigit()):
        return None
    return int(slot), int(thread)


def slot_of(worker: bytes) -> int | None:
    """The worker process of a routing id (None: not the id of a worker process's thread)."""
    parsed = parse_worker_id(worker)
    return parsed[0] if parsed is not None else None


class WireError(ValueError):
    """Frames that are not what their header says: from a peer outside the run, dropped, never parsed further."""


#: What a worker thread may send its router, and how many frames each kind has (None: a RESULT's many).
_FROM_WORKER = {Kind.JOIN: 1, Kind.READY: 1, Kind.FINISHED: 1, Kind.FAILED: 4, Kind.RESULT: None}
# (A remote worker runs one step, never fused ones: no TALLY, and a FAILED of its own step, member 0.)


def check_from_worker(frames: Sequence[Any], next_steps: int, queue_limit: int) -> Kind:
    """The kind of a message a worker in another process sent its router, once every frame is checked to
    be what the header says (a RESULT: its lengths, buffers, targets and input table); WireError otherwise.

    What passes can be parsed without error and forwarded without surprise; ``next_steps`` is how many
    next steps the worker's step has (the targets a RESULT may name), ``queue_limit`` its queue limit (which
    bounds the inputs a RESULT may answer: ``most_answers``); a RESULT holds at most MAX_RESULT_OUTPUTS outputs.
    """
    if not frames or len(frames[0]) < HEADER.size:
        raise WireError("a header frame shorter than a header")
    kind_byte, flags, n, value = HEADER.unpack_from(frames[0])
    try:
        kind = Kind(kind_byte)
    except ValueError:
        raise WireError(f"unknown kind {kind_byte}") from None
    if kind not in _FROM_WORKER:
        raise WireError(f"a {kind.name} is not for a router")
    expected = _FROM_WORKER[kind]
    if expected is not None:
        if len(frames) != expected or (expected == 1 and len(frames[0]) != HEADER.size):
            raise WireError(f"a {kind.name} of {len(frames)} frames")
        if kind is Kind.FAILED and n != 0:
            raise WireError("a FAILED of a fused step, which no remote worker runs")
        return kind
    _check_result(frames, flags, n, value, next_steps, most_answers(queue_limit))
    return kind


#: Answers of no input (UNORDERED) in a RESULT of a remote worker's thread, beyond the inputs it holds: what its
#: step's init() sent, and what its finish() sent (each one answer, or chunks of one, PARTIAL: one a RESULT).
UNORDERED_ANSWERS = 2


def most_answers(queue_limit: int) -> int:
    """Most inputs a RESULT of a remote worker's thread answers, for a step of ``queue_limit``: the messages its
    router lets it hold (flow.window_limit) and UNORDERED_ANSWERS. A peer's RESULT of 5,000,000 inputs (an 85 MB
    frame) took the run from 37 MB to 2 GB, and seconds of its door's and router's time, input by input."""
    return window_limit(queue_limit) + UNORDERED_ANSWERS


def _check_result(frames: Sequence[Any], flags: int, n: int, inputs: int, next_steps: int, most: int) -> None:
    # The inputs and outputs first, on the header alone: none is looked at one by one past what a worker sends.
    if inputs > most:
        raise WireError(f"a RESULT answering {inputs} inputs, more than the {most} its worker may")
    if n > MAX_RESULT_OUTPUTS:
        raise WireError(f"a RESULT of {n} outputs, more than the {MAX_RESULT_OUTPUTS} a worker sends in one")
    if len(frames) < 2 or len(frames[-1]) != inputs * RESULT_INPUT_BYTES:
        raise WireError("a RESULT whose input table does not match its count")
    header = bytes(frames[0])
    fixed = HEADER.size + 8 * n
    if len(header) < fixed:
        raise WireError("a RESULT header shorter than its counts say")
    lengths, oob_counts, targets = array("I"), array("H"), array("H")
    lengths.frombytes(header[HEADER.size:HEADER.size + 4 * n])
    oob_counts.frombytes(header[HEADER.size + 4 * n:HEADER.size + 6 * n])
    targets.frombytes(header[HEADER.size + 6 * n:fixed])
    body = len(header) - fixed if flags & INLINE else len(frames[1])
    buffer_frames = len(frames) - (2 if flags & INLINE else 3)
    if flags & ~INLINE or sum(lengths) != body or sum(oob_counts) != buffer_frames:
        raise WireError("a RESULT whose lengths or buffer counts do not match its frames")
    if not set(targets) <= {*range(next_steps), EVERY_NEXT_STEP}:  # in C: a peer's RESULT may name millions
        raise WireError("a RESULT naming a next step its step does not have")
    answered = 0
    for seq, count, seconds, outcome in zip(*_result_table(bytes(frames[-1]), inputs), strict=True):
        if (outcome not in Outcome._value2member_map_ or not 0 <= seconds < 1e9
                or (count and outcome not in (Outcome.DONE, Outcome.PARTIAL))
                or (outcome == Outcome.PARTIAL and seconds != count)):  # fused steps are never remote
            raise WireError(f"a RESULT with an impossible answer for input {seq}")
        answered += count
    if answered != n:
        raise WireError("a RESULT whose answers do not add up to its outputs")
