"""A producer in worker processes (``nb_process`` N on the producer): each process yields one shard of the input.

Reading is often as slow as the work (decoding, decompressing): one producer thread would starve the
steps after it. A ``shardable`` producer runs in N worker processes instead, each of its ``run()``
calls yielding only shard ``self.shard`` of ``self.n_shards`` (every n-th number, its files of many).

The producer's router holds the shards as its queue: once every step is ready, the runner sends it one
message per shard (its number) and the end of them. A worker process takes one shard at a time (a
window of one); its thread sets the component's ``shard`` and ``n_shards`` and runs the generator; its
messages go back to the router in batches, as chunks of the shard's answer, and the router sends them
on; the shard's own answer comes when its generator ends. So the end of stream is the router's, after
every shard's last message, and backpressure reaches the generator by credit: a shard sends at most
``flow.SHARD_CREDIT`` RESULTs (of MAX_BATCH messages at most) that its router has not answered with a MORE,
which it does once it has sent them on. With steps fused after the producer (engine.fusion), each
message goes through them in its shard's process first, and what goes back is what the last of them
made of it, in a chunk that stands for that one message of the producer.

Exactly once through a killed worker process: the router counts what it sent on of each shard (with fused
steps, the producer's messages whose outputs through them went on); a shard started again in another process
skips that many messages first. This holds for a producer that yields the same messages in the same order
for the same shard, as reading files does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from pipeline.engine.outlets import ToRouter
from pipeline.engine.wire import Packet
from pipeline.errors import WorkerDied
from pipeline.execution.executor import UNORDERED, Outcome, Outputs, StepExecutor
from pipeline.message import Encoded, decode, encode

if TYPE_CHECKING:
    from pipeline.engine.fusion import Chain


@dataclass(frozen=True)
class ShardWork:
    """What a worker process is told to produce: shard ``shard`` of ``count``, skipping its first ``skip``
    messages (sent on from a process that died). With fused steps after the producer, ``poison`` holds the
    positions in the shard of the messages that were running when max_redeliveries processes died: each goes to the
    dead letters of the first fused step instead of through it."""

    shard: int
    count: int
    skip: int = 0
    poison: frozenset[int] = frozenset()


#: A shard's message on a worker process's busy board (engine.board): the shard's number in the low bits, the
#: message's position in the shard above them, so that a process's death names the message it was running.
POSITION_SHIFT = 32


def board_mark(shard: int, position: int) -> int:
    """What the busy board says while message ``position`` of ``shard`` is made, or runs through fused steps."""
    return shard | position << POSITION_SHIFT


def read_mark(mark: int) -> tuple[int, int]:
    """(shard, position) of a busy board's mark."""
    return mark & ((1 << POSITION_SHIFT) - 1), mark >> POSITION_SHIFT


def shard_seed(count: int) -> Packet:
    """The producer router's input: one message per shard, numbered from 0 (the shard is the sequence number)."""
    packet = Packet()
    for shard in range(count):
        packet.add(encode(ShardWork(shard, count)))
    return packet


def read_work(inband: memoryview | bytes, buffers: list) -> ShardWork:
    """The ShardWork of a WORK message (from the run's own router: a worker process trusts it)."""
    work = decode(inband, buffers)
    if not isinstance(work, ShardWork):
        raise TypeError(f"a producer's worker process was sent {type(work).__name__}, not a shard")
    return work


@dataclass
class ShardBook:
    """What the producer's router knows of its shards: the messages of each it sent on, and which of them the worker
    processes that died were running."""

    count: int
    sent: list[int] = field(default_factory=list)
    #: Per (shard, position): how many worker processes died running that message.
    deaths: dict[tuple[int, int], int] = field(default_factory=dict)
    #: Per shard: the positions of its messages that killed ``poison_after`` processes each (ShardWork.poison): a
    #: second one must not make the first run again (it killed a third process, taken for the producer's fault).
    poison: dict[int, set[int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sent = [0] * self.count

    def died(self, shard: int, position: int, poison_after: int) -> int:
        """A worker process died running message ``position`` of ``shard``: how many have died running it so far (at
        ``poison_after`` it is poison)."""
        deaths = self.deaths[shard, position] = self.deaths.get((shard, position), 0) + 1
        if deaths == poison_after:
            self.poison.setdefault(shard, set()).add(position)
        return deaths

    def covers(self, shard: int, position: int) -> bool:
        """Whether what went on of ``shard`` stands for its message ``position`` (a failure there counts now)."""
        return self.sent[shard] > position

    def again(self, packet: Packet) -> Packet:
        """``packet``'s shards, to start again in another worker process: each skips what was sent on, and says which
        of its messages is poison, if one is."""
        made = Packet()
        made.first_seq = packet.first_seq
        for seq, _, _ in packet.messages():
            made.add(encode(ShardWork(seq, self.count, self.sent[seq], frozenset(self.poison.get(seq, ())))))
        return made


class ShardSink:
    """The sink of a producer's shard in a worker process: each yield's messages go to the router as a chunk of
    the shard (a PARTIAL answer of its sequence number, which the router counts as the shard's), the first
    ``skip`` dropped; what init() and finish() send goes as an answer to no input, which is no shard's (a process
    that takes over another's shard has sent its own init()'s messages already, or sends them apart). With fused
    steps after the producer (``chain``), each message goes through them first, the busy board naming it, and the
    chunk stands for the messages, whatever the fused steps made of them."""

    answers_router = True
    adopts = False  # a producer's messages are yielded, not returned

    def __init__(self, outlet: ToRouter, producer: StepExecutor, chain: Chain | None = None) -> None:
        self.outlet = outlet
        self.producer = producer  # its busy board mark names the shard's message being made or run
        self.chain = chain
        self.copies = chain is not None  # the messages go through the fused steps, in this thread
        self.lock = outlet.lock
        self.shard = UNORDERED  # the sequence number of the shard running (UNORDERED: none)
        self.skip = 0
        self.poison: frozenset[int] = frozenset()  # the positions of the messages to send to the dead letters
        self.position = 0  # the shard's messages made so far in this process (those sent on before included)
        self._pending: Outputs = []

    @property
    def oldest(self) -> float:
        """When the oldest unsent answer was committed."""
        return self.outlet.oldest

    def start(self, work: ShardWork) -> None:
        """A shard starts (``work`` says which, and what of it went on from a process that died)."""
        self.shard, self.skip, self.poison, self.position = work.shard, work.skip, work.poison, 0

    def commit(self, seq: int, outputs: Outputs, seconds: float = 0.0) -> None:
        """A yield's messages (they go with its seconds, which come next), or init()'s / finish()'s."""
        if seq == UNORDERED:
            (self.chain or self.outlet).commit(seq, outputs, seconds)
            return
        self._pending = outputs

    def partial(self, seq: int, outputs: Outputs) -> None:
        """A chunk's worth of one yield's messages (a large message), or of init()'s or finish()'s (no shard's):
        they go to the router now."""
        if self.shard != UNORDERED:
            self._hand_on(outputs)
            return
        flowed = outputs if self.chain is None else self.chain.flow(0, UNORDERED, outputs)
        self.outlet.chunk(UNORDERED, flowed, len(outputs))

    def produced(self, seconds: float) -> None:
        """The generator took ``seconds`` for the messages just committed: they go to the router."""
        if self._pending:
            self._hand_on(self._pending)
            self._pending = []
        self.outlet.produced(seconds)

    def unsendable(self, made: int) -> int | None:
        """A value of the shard that cannot be pickled: its place, taken as a message of the shard that went on (a
        chunk that stands for it and holds nothing), so that a process taking the shard over skips it; None if one
        that died did so already. Its failure goes by its place (``board_mark``), and counts once the router has that
        chunk."""
        place = self.position
        self.position += 1
        if place < self.skip:
            return None
        self.outlet.chunk(self.shard, [], 1)
        self._mark(self.position)
        return board_mark(self.shard, place)

    def _hand_on(self, outputs: Outputs) -> None:
        """The shard's next messages: those sent on before dropped, the poison one to the dead letters, the others
        through the fused steps one at a time, and each one's outputs to the router as a chunk standing for it (so
        that the router's packets, cut at MAX_BATCH messages, bound what a shard holds, flow.message_bound)."""
        chain = self.chain
        for position, output in enumerate(outputs, start=self.position):
            if position < self.skip:
                continue
            if chain is None:
                flowed = [output]
            elif position in self.poison:
                self._dead_letter(chain, position, output[0].encoded())
                flowed = []
            else:
                self._mark(position)
                flowed = chain.flow(0, board_mark(self.shard, position), [output])
            self.outlet.chunk(self.shard, flowed, 1)
        self.position += len(outputs)
        # The generator makes the next one now: a death from here on is blamed on that message of the shard, so that
        # deaths at two of its messages are not taken for one message's (max_redeliveries counts per message).
        self._mark(self.position)

    def _mark(self, position: int) -> None:
        """Say on the busy board which message of the shard the process makes or runs."""
        producer = self.producer
        if producer.mark is not None:
            producer.mark(producer.worker, board_mark(self.shard, position))

    def _dead_letter(self, chain: Chain, position: int, message: Encoded) -> None:
        """The message that was running when max_redeliveries worker processes died: to the dead letters of the first
        fused step (as a failure of its run(), counted there) instead of through it; the chunk stands for it too."""
        producer, first = chain.executors[:2]
        producer.counts.emitted += 1
        first.counts.received += 1
        first.counts.failed += 1
        error = WorkerDied(f"message {position} of shard {self.shard} was running in worker processes that died, "
                           "as many as max_redeliveries")
        first.policy.message_failed(first.step, first.worker, board_mark(self.shard, position), error, message)

    def failed(self, seq: int, outcome: Outcome = Outcome.FAILED, seconds: float = 0.0) -> None:
        """Answer the shard ``seq`` (its generator ended, ``outcome`` says how, after ``seconds`` in it in all)."""
        self.shard = UNORDERED
        self.outlet.failed(seq, outcome, seconds)

    def flush_if_due(self) -> None:
        """Send the answers that have waited long enough."""
        self.outlet.flush_if_due()
