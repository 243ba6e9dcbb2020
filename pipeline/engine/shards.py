"""A producer in worker processes (``nb_process`` N on the producer): each process yields one shard of the input.

Reading is often as slow as the work (decoding, decompressing): one producer thread would starve the
steps after it. A ``shardable`` producer runs in N worker processes instead, each of its ``run()``
calls yielding only shard ``self.shard`` of ``self.n_shards`` (every n-th number, its files of many).

The producer's router holds the shards as its queue: once every step is ready, the runner sends it one
message per shard (its number) and the end of them. A worker process takes one shard at a time (a
window of one); its thread sets the component's ``shard`` and ``n_shards`` and runs the generator; its
messages go back to the router in batches, as chunks of the shard's answer, and the router sends them
on; the shard's own answer comes when its generator ends. So the end of stream is the router's, after
every shard's last message, and backpressure reaches the generator through the worker's socket
(``flow.SHARD_HWM`` batches on each side). With steps fused after the producer (engine.fusion), each
message goes through them in its shard's process first, and what goes back is what the last of them
made of it, in a chunk that says how many of the producer's messages it stands for.

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
    messages (sent on from a process that died). With fused steps after the producer, a shard that a process died
    running goes on ``careful``ly, each message's outputs sent at once (a death then says which message it was);
    ``poison`` > 0: the message after the skipped ones was running when that many processes died, and goes to the
    dead letters of the first fused step instead of through it."""

    shard: int
    count: int
    skip: int = 0
    careful: bool = False
    poison: int = 0


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
    """What the producer's router knows of its shards: the messages of each it sent on, and where the worker
    processes that died running one were in it."""

    count: int
    sent: list[int] = field(default_factory=list)
    #: Per shard a worker process died running: the messages it had sent on then, and how many processes died
    #: with it at that same point.
    deaths: dict[int, tuple[int, int]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.sent = [0] * self.count

    def died(self, shard: int) -> int:
        """A worker process died running ``shard``: how many have died at the same message of it so far."""
        position = self.sent[shard]
        last, deaths = self.deaths.get(shard, (-1, 0))
        deaths = deaths + 1 if last == position else 1
        self.deaths[shard] = (position, deaths)
        return deaths

    def again(self, packet: Packet, poison_after: int = 0) -> Packet:
        """``packet``'s shards, to start again in another worker process: each skips what was sent on; one that
        a process died running goes on carefully, and its next message is poison once ``poison_after`` (> 0)
        processes died at it."""
        made = Packet()
        made.first_seq = packet.first_seq
        for seq, _, _ in packet.messages():
            position, deaths = self.deaths.get(seq, (-1, 0))
            poison = deaths if poison_after and deaths >= poison_after and position == self.sent[seq] else 0
            made.add(encode(ShardWork(seq, self.count, self.sent[seq], seq in self.deaths, poison)))
        return made


class ShardSink:
    """The sink of a producer's shard in a worker process: each yield's messages go to the router as a chunk of
    the shard (a PARTIAL answer of its sequence number, which the router counts as the shard's), the first
    ``skip`` dropped; what init() and finish() send goes as an answer to no input, which is no shard's (a process
    that takes over another's shard has sent its own init()'s messages already, or sends them apart). With fused
    steps after the producer (``chain``), the messages go through them first."""

    answers_router = True

    def __init__(self, outlet: ToRouter, chain: Chain | None = None) -> None:
        self.outlet = outlet
        self.chain = chain
        self.lock = outlet.lock
        self.shard = UNORDERED  # the sequence number of the shard running (UNORDERED: none)
        self.skip = 0
        self.careful = False  # each message's outputs go at once (ShardWork)
        self.poison = 0  # > 0: the message after the skipped ones goes to the dead letters (ShardWork)
        self._pending: Outputs = []

    @property
    def oldest(self) -> float:
        """When the oldest unsent answer was committed."""
        return self.outlet.oldest

    def commit(self, seq: int, outputs: Outputs, seconds: float = 0.0) -> None:
        """A yield's messages (they go with its seconds, which come next), or init()'s / finish()'s."""
        if seq == UNORDERED:
            (self.chain or self.outlet).commit(seq, outputs, seconds)
            return
        self._pending = self._unsent(outputs)

    def start(self, work: ShardWork) -> None:
        """A shard starts (``work`` says which, and what of it went on from a process that died)."""
        self.shard, self.skip, self.careful, self.poison = work.shard, work.skip, work.careful, work.poison

    def partial(self, seq: int, outputs: Outputs) -> None:
        """A chunk's worth of one yield's messages (a large message), or of init()'s or finish()'s (no shard's):
        they go to the router now."""
        if self.shard == UNORDERED:
            self._send(UNORDERED, outputs)
            return
        outputs = self._unsent(outputs)
        if outputs:
            self._send(self.shard, outputs)

    def _unsent(self, outputs: Outputs) -> Outputs:
        """``outputs`` without those the shard's dead process had sent on, nor the poison message after them."""
        if self.skip:
            dropped = min(self.skip, len(outputs))
            self.skip -= dropped
            outputs = outputs[dropped:]
        if self.poison and outputs and self.chain is not None:
            self._dead_letter(*self.chain.executors[:2], outputs[0][0])
            outputs = outputs[1:]
        return outputs

    def _dead_letter(self, producer: StepExecutor, first: StepExecutor, message: Encoded) -> None:
        """The message that was running when ``poison`` worker processes died: to the dead letters of the first fused
        step (``first``: as a failure of its run(), counted there), and counted as sent on, never to run again."""
        producer.counts.emitted += 1
        first.counts.received += 1
        first.counts.failed += 1
        error = WorkerDied(f"a message of shard {self.shard} was running in {self.poison} worker processes that died")
        first.policy.message_failed(first.step, first.worker, self.shard, error, message)
        self.poison = 0
        self.outlet.chunk(self.shard, [], 1)
        self.outlet.flush()

    def produced(self, seconds: float) -> None:
        """The generator took ``seconds`` for the messages just committed: they go to the router."""
        if self._pending:
            self._send(self.shard, self._pending)
            self._pending = []
        self.outlet.produced(seconds)

    def _send(self, seq: int, outputs: Outputs) -> None:
        """Messages to the router, as a chunk of shard ``seq`` (UNORDERED: of no shard), through the fused steps
        first, if any: the chunk then stands for these messages, whatever those steps made of them."""
        flowed = outputs if self.chain is None else self.chain.flow_midway(seq, outputs)
        self.outlet.chunk(seq, flowed, len(outputs))
        if self.careful:
            self.outlet.flush()

    def failed(self, seq: int, outcome: Outcome = Outcome.FAILED, seconds: float = 0.0) -> None:
        """Answer the shard ``seq`` (its generator ended, ``outcome`` says how, after ``seconds`` in it in all)."""
        self.shard = UNORDERED
        self.outlet.failed(seq, outcome, seconds)

    def flush_if_due(self) -> None:
        """Send the answers that have waited long enough."""
        self.outlet.flush_if_due()
