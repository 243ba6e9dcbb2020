"""Flow-control limits of the threaded engine, and the memory bound they give.

Per step T with queue limit Q (bounded), W workers and U upstream senders, the messages held
for T at any time are at most::

    Q                     in T's router queue (it reads input only while queued + B <= Q)
  + W * K                 at T's workers: each holds at most K = window_limit(Q) messages, the one in
                          progress and those prefetched (K is 1 + PREFETCH, or Q when Q is smaller)
  + U * 2 * B             in transit: each sender's pipe to T holds at most two packets

where B = batch_limit(Q) is the largest packet a sender sends to T, and the senders are the
producer, every worker of each upstream step, but only the router of an upstream ordered step
(it sends for all its workers). Each sender also holds at most B - 1 outputs per next step that
it has not yet sent. A prefetched packet is only sent to a worker holding less than
PREFETCH_BYTES, and a packet handed to a worker holds at most PREFETCH_BYTES (or one message), so a
worker holds less than twice PREFETCH_BYTES plus one message; and a router reads no input while
its queue holds QUEUE_BYTES, so large messages fill far fewer than Q places. A worker asks to hold
what keeps it busy for its prefetch time (PREFETCH_SECONDS in the run's process, longer in a worker
process, where each round trip costs more), never more than K: the router holds every worker to K,
whatever it asks. An ordered step's router holds back the results of at most W * K inputs that
finished out of order, and stops there
or once the outputs it holds back reach HELD_BACK_BYTES: past either it hands out no more work
until the late one is done (what its workers already hold still comes back, so the bytes held
back are at most HELD_BACK_BYTES plus the outputs of those inputs).

A thread also holds the outputs of the input its step's code is processing, until that code returns
or they reach OUTPUT_CHUNK_BYTES or OUTPUT_CHUNK_COUNT: then they are handed on at once, as a chunk, while
the code goes on (a stager that yields a file's worth of events holds one chunk, not the file). A chunk
to a step's router waits for the router to take it on (MORE) before the next leaves, so a worker holds
at most two chunks and its router one; an ordered step's router holds back the chunks of an input that
is not yet in turn up to HELD_BACK_BYTES, past which their worker waits (unless the input in turn is
back in the queue after a worker died: then it takes them all rather than wait for ever).

A worker that returns its outputs to its router (an ordered step's, or any in a worker process) sends them in
RESULTs; one whose outputs outnumber the inputs it answers (a step that fans out) holds at most B outputs beyond
its last input's, and the worker sends at most FANOUT_CREDIT such RESULTs that its router has not yet sent on
(the router says MORE for each): W * FANOUT_CREDIT * B more messages for such a step. The inputs it holds
bound the outputs of its other RESULTs, and no RESULT holds more than MAX_RESULT_OUTPUTS (a chunk's worth).
That is for inputs that each make at most B outputs: a RESULT holds all the outputs of its last input (up to a
chunk), so a step whose inputs each make up to F > B adds W * (FANOUT_CREDIT + 1) * (F - B), which
message_bound cannot know (F is the step's code's); steps fused after it make their outputs in the same RESULT,
so F is then what one input makes through the whole group (the product of their fan-outs). A queue_limit of 4
after a step in one worker process whose inputs make 20 outputs each: 30 by message_bound, 84 with this term,
77 alive at most, measured.
An ordered step's held-back inputs count one message each: one that fans out holds back all their outputs,
within HELD_BACK_BYTES.

A producer in N worker processes (engine.shards) holds, per shard, at most (SHARD_CREDIT + 1) * MAX_BATCH
messages it produced that its router has not sent on: its outlet's batch, and SHARD_CREDIT batches sent to
the router, which says MORE for each once it has sent it on (in sockets, in the kernel's socket buffers
between the processes, or being read). With steps fused after the producer, a batch's last message may
add all that the fused steps made of it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pipeline.config.model import PipelineConfig, StepConfig

#: Most messages in one packet. Each packet costs some thread wake-ups and ZeroMQ calls whatever it holds: with 128
#: (and the queue limit 256) tiny messages through a worker process ran about 15% slower than with 256, between
#: threads about 4%; 512 gained nothing more (docs/performance.md, "Big packets").
MAX_BATCH = 256
#: A packet is sent once its messages reach this many bytes. Between threads its buffers are lent,
#: not copied, so a packet's bytes cost nothing; its wake-ups do (at 4 MiB, 1 MiB arrays went
#: about 4 to a packet and W2 ran ~20% slower).
MAX_BATCH_BYTES = 16 * 1024 * 1024
#: Most messages a worker holds beyond the one in progress (their bytes are capped by PREFETCH_BYTES): two packets
#: of MAX_BATCH, one worked on while the next is on its way.
PREFETCH = 512
#: A router reads no more input while its queue holds this many bytes (whatever its queue_limit).
QUEUE_BYTES = 64 * 1024 * 1024
#: A worker already holding this many bytes of work is sent no more until it is idle, and no packet
#: handed to a worker holds more (unless it is one message).
PREFETCH_BYTES = 4 * 1024 * 1024
#: A worker asks for enough messages to keep it busy this long (its window adapts to run() time).
PREFETCH_SECONDS = 0.001
#: The same for a worker in another process, where each round trip to its router costs two process switches
#: and some tens of microseconds of CPU on each side, and where its answers wait for the end of their packet
#: (Outlet.max_delay) rather than going one by one. At 1 ms a worker of 1 ms messages asked for 2, and a
#: stage in 2 worker processes spent more CPU moving camera events than working on them; at 50 ms packets
#: of about 20 events ran 1.4x the plain loop (docs/performance.md); 100 ms ran no faster.
PREFETCH_SECONDS_OUTSIDE = 0.05
#: A committed output waits at most this long for more to batch with it.
MAX_DELAY_SECONDS = 0.001
#: The same for a producer's messages (a fast one's: a slow one sends each at once, SLOW_SOURCE_SECONDS).
#: Its batches set the size of every packet after it: at 1 ms a camera source of 0.2 ms an event sent
#: packets of 6, at 10 ms of 26, and the stage after it ran 1.4x the plain loop instead of 1.1x.
SOURCE_MAX_DELAY_SECONDS = 0.01
#: A producer's first message goes at once, and each batch after it waits this long more than twice the last
#: batch's wait, up to SOURCE_MAX_DELAY_SECONDS (0, 0.5, 1.5, 3.5, 7.5, 10 ms): the workers, idle at the start,
#: get work at once instead of after a full batch (with 10 ms from the first batch on, the second of two worker
#: processes of camera events waited about 10 ms for its first event; now about 5).
SOURCE_DELAY_STEP_SECONDS = 0.0005
#: How often the Flusher looks for outputs that wait while their thread is in the step's code. Each
#: look takes the GIL: at 5 ms it cost 10% of W1's throughput, at 20 ms it costs none measurable.
FLUSH_TICK_SECONDS = 0.02
#: An ordered step's router hands out no more work while it holds back this many bytes of outputs.
HELD_BACK_BYTES = 64 * 1024 * 1024
#: What a held-back output costs beyond its pickle, counted with it against HELD_BACK_BYTES: its Encoded, its
#: pickle's bytes object and list of buffers, the tuple naming its target (217 bytes for an int's, measured with
#: tracemalloc). Counted by their pickles alone, an ordered step's tiny outputs held back behind one slow input
#: took 1 GiB with 2 workers, 1.8 GiB with 4, while HELD_BACK_BYTES said 64 MiB.
HELD_MESSAGE_BYTES = 256
#: A producer whose generator took longer than this to yield sends each message at once; a faster
#: one batches (each output still goes within MAX_DELAY_SECONDS). Sending a packet wakes two or three
#: threads (some tens of microseconds on a loaded 2-core machine): at 0.5 ms per message that costs
#: under ~10%, at 0.1 ms (a 1 MiB array being filled) it cost W2 a quarter of its throughput.
SLOW_SOURCE_SECONDS = 0.0005
#: ZeroMQ high-water mark of every data pipe: a pipe holds at most two packets.
PIPE_HWM = 1
#: The outputs of one call of a step's code (one input's run(), init(), finish()) are handed on at once, as a
#: chunk, once they reach this many bytes, while the code goes on: one packet's worth (MAX_BATCH_BYTES). Held
#: until the end, 1,500 outputs of 1 MiB of one input took 1,568 MiB (issue 24.6).
OUTPUT_CHUNK_BYTES = MAX_BATCH_BYTES
#: The same in outputs, for many small ones (each costs some hundred bytes of Python objects beyond its pickle).
OUTPUT_CHUNK_COUNT = 4096
#: Most outputs in one RESULT: a chunk's worth. A chunk holds at most OUTPUT_CHUNK_COUNT, what other threads send
#: during a call included (execution.executor cuts it), and a worker sends the answers it holds before one that
#: would take them past it (engine.outlets.ToRouter): a helper thread's million send_msg() during one call went on
#: as one RESULT of a million, gigabytes of Python objects in the run's router and the next step's queue. So a remote
#: worker's RESULT of more is refused on its header (wire.check_from_worker): a peer's of 100,000,000 empty outputs
#: is an 800 MB header, under the 1 GiB frame cap.
MAX_RESULT_OUTPUTS = OUTPUT_CHUNK_COUNT


def batch_limit(queue_limit: int) -> int:
    """The largest packet sent to a step with this queue limit (-1: unbounded)."""
    if queue_limit < 0:
        return MAX_BATCH
    return max(1, min(MAX_BATCH, queue_limit // 2))


def window_limit(queue_limit: int) -> int:
    """Most messages one worker of a step with this queue limit holds (-1: unbounded): a user who sets a
    small queue limit wants a handful of messages in flight, not hundreds prefetched."""
    if queue_limit < 0:
        return 1 + PREFETCH
    return max(2, min(1 + PREFETCH, queue_limit))


def window_for(mean_seconds: float, limit: int, prefetch_seconds: float = PREFETCH_SECONDS) -> int:
    """How many messages a worker asks to hold, given its recent mean time per message: enough for
    ``prefetch_seconds`` of work, between 2 and ``limit`` (window_limit of its step)."""
    if mean_seconds <= 0:
        return limit
    return max(2, min(limit, 1 + int(prefetch_seconds / mean_seconds)))


#: The window a worker joins with: its first messages tell how long its run() takes.
FIRST_WINDOW = 2
#: Weight of the newest packet in a worker's running mean of seconds per message.
SMOOTHING = 0.2


class Prefetch:
    """A worker's window as it goes (adaptive prefetch): ``window_for`` its running mean time per message."""

    def __init__(self, queue_limit: int, prefetch_seconds: float = PREFETCH_SECONDS) -> None:
        self.limit = window_limit(queue_limit)
        self.prefetch_seconds = prefetch_seconds
        self.mean = 0.0  # seconds per message (0: none run yet)

    def after(self, messages: int, seconds: float) -> int:
        """The window to ask for after a packet of ``messages`` whose run() calls took ``seconds`` in all."""
        elapsed = seconds / messages
        self.mean = elapsed if not self.mean else self.mean + SMOOTHING * (elapsed - self.mean)
        return window_for(self.mean, self.limit, self.prefetch_seconds)


def sender_count(config: PipelineConfig, step: StepConfig, remote: bool = False) -> int:
    """How many threads send to ``step``: the producer; each worker thread (of the run's process) of an
    upstream unordered step; and the router of each upstream step whose workers return their outputs
    to it: an ordered step, a step with worker processes, or any step when remote workers may join."""
    total = 0
    for up in (config.steps[name] for name in config.upstream(step.name)):
        if up.kind == "producer":
            total += 1
            continue
        returned = up.ordered or up.nb_process > 0
        total += (0 if returned else up.nb_thread) + (1 if returned or remote else 0)
    return total


def held_back_limit(workers: int, queue_limit: int) -> int:
    """Most inputs whose outputs an ordered step's router holds back, waiting for an earlier one, with
    ``workers`` workers (those of the config, and the remote ones that joined)."""
    return max(1, workers) * window_limit(queue_limit)


#: Batches of a producer shard's messages sent to its router and not yet sent on (MORE) before the shard's
#: generator waits (engine.shards). Not the sockets' high-water marks: those count ZeroMQ's messages, and the
#: kernel's buffers between two processes held some 5,000 of a shard's small ones ahead of a slow consumer.
SHARD_CREDIT = 2
#: RESULTs that fan out (``fans_out``) a worker sends that its router has not yet sent on (MORE) before the worker
#: waits. Without it a worker process ran its whole window and its outputs waited in the sockets: two of them,
#: each input making 50 outputs, had 24,000 messages alive where message_bound said 4,094.
FANOUT_CREDIT = 2


def fans_out(outputs: int, inputs: int) -> bool:
    """Whether a RESULT of ``outputs`` outputs answering ``inputs`` inputs takes one of its worker's FANOUT_CREDIT
    (the router answers it with a MORE once it has sent it on): more outputs than the inputs that bound them."""
    return outputs > inputs


def message_bound(config: PipelineConfig) -> int | None:
    """Most messages alive in a threaded run of ``config`` (None when a queue is unbounded).

    Remote workers, who may join at any time, are not counted: each adds what one worker holds.
    """
    total = 0
    for step in config.steps.values():
        fanout = sum(batch_limit(config.steps[t].queue_limit) - 1 for t in step.next_steps)
        returned = step.ordered or step.nb_process > 0
        total += (1 if returned else step.nb_thread) * fanout  # outputs each sender holds before sending
        if step.kind == "producer":
            # In worker processes, each shard's batches wait in its outlet and on their way to its router.
            total += step.nb_process * (SHARD_CREDIT + 1) * MAX_BATCH
            continue
        if step.queue_limit < 0:
            return None
        senders = sender_count(config, step)
        workers = step.workers
        total += (step.queue_limit + workers * window_limit(step.queue_limit)
                  + senders * 2 * batch_limit(step.queue_limit))
        if step.ordered:
            total += held_back_limit(workers, step.queue_limit)
        if returned and step.next_steps:
            total += workers * FANOUT_CREDIT * batch_limit(step.queue_limit)
    return total
