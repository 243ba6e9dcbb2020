"""The designs the engine is measured against, each running producer -> stage -> consumer.

Each function takes the producer's messages (an iterable), the stage (one callable per worker:
its output goes on, None is dropped) and the consumer (a callable), runs them to the end and
returns the wall time in seconds, thread (or process) start-up included as it is for the engine.
A failing callable does not hang the chain: its thread keeps draining its input and passes the
end of the stream on, and the error is raised once every thread has stopped.

Each is the version a user would write, with the library's default settings: a baseline that we
slowed down would flatter the engine (``zmq_push_pull(hwm=64)`` is such a throttled variant,
kept only to show what the old headline compared with).
"""

from __future__ import annotations

import importlib.util
import multiprocessing
import pickle
import queue
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from functools import partial
from itertools import islice
from multiprocessing.pool import IMapIterator
from typing import Any

import zmq

Stage = Callable[[Any], Any]
Sink = Callable[[Any], None]

#: The end of the stream between the threads of ``queue_threads``.
_END = object()

#: How long a baseline may run before it counts as hung.
TIMEOUT = 600.0
#: Seconds between two looks, while a baseline runs, for an error of one of its threads.
ERROR_LOOK_SECONDS = 0.05


class BaselineError(RuntimeError):
    """A baseline's callable raised, or the baseline did not end in time (or a remote worker failed)."""


class Unavailable(Exception):
    """A design that cannot run here (not installed, or not supported yet): its rows are skipped."""


def mpipe_installed() -> bool:
    """True when mpipe can be imported."""
    return importlib.util.find_spec("mpipe") is not None


def queue_threads(source: Iterable[Any], stages: Sequence[Stage], sink: Sink, maxsize: int = 64) -> float:
    """A producer thread, one thread per stage callable and a consumer thread, joined by
    ``queue.Queue(maxsize)`` passing references (no copies, no serialisation)."""
    inbox: queue.Queue[Any] = queue.Queue(maxsize)
    outbox: queue.Queue[Any] = queue.Queue(maxsize)
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            for message in source:
                inbox.put(message)
        except Exception as err:
            errors.append(err)
        finally:
            for _ in stages:
                inbox.put(_END)

    def work(stage: Stage) -> None:
        failed = False
        while (message := inbox.get()) is not _END:
            if failed:
                continue
            try:
                output = stage(message)
                if output is not None:
                    outbox.put(output)
            except Exception as err:
                errors.append(err)
                failed = True
        outbox.put(_END)

    def consume() -> None:
        ended, failed = 0, False
        while ended < len(stages):
            message = outbox.get()
            if message is _END:
                ended += 1
            elif not failed:
                try:
                    sink(message)
                except Exception as err:
                    errors.append(err)
                    failed = True

    return _run([produce, *[lambda s=s: work(s) for s in stages], consume], errors)


def zmq_push_pull(source: Iterable[Any], stage: Stage, sink: Sink, hwm: int | None = None,
                  copy: bool = False) -> float:
    """Raw pyzmq: producer, stage and consumer threads joined by inproc PUSH/PULL pairs.

    A message is a pickle (protocol 5) followed by its out-of-band buffers as frames of their
    own, sent without copying; an empty frame ends the stream. The sockets keep pyzmq's default
    options unless ``hwm`` sets a high-water mark on each (which throttles them). Messages are
    received without a copy, or with ``copy`` the plain way (``recv()`` and ``rcvmore``): which is
    faster depends on the machine and the size, so the benchmark runs both.
    """
    _recv = _recv_plain if copy else _recv_frames
    context = zmq.Context()
    name = uuid.uuid4().hex
    stage_in, sink_in = f"inproc://bench-stage-{name}", f"inproc://bench-sink-{name}"
    errors: list[BaseException] = []

    def socket(kind: int) -> zmq.Socket:
        sock = context.socket(kind)
        sock.linger = 0
        if hwm is not None:
            sock.sndhwm = sock.rcvhwm = hwm
        return sock

    def produce() -> None:
        push = socket(zmq.PUSH)
        try:
            push.connect(stage_in)
            for message in source:
                _send(push, message)
        except Exception as err:
            errors.append(err)
        finally:
            try:
                push.send(b"")
            finally:  # a socket left open would keep the context's term() waiting for ever
                push.close()

    def work() -> None:
        pull, push = socket(zmq.PULL), socket(zmq.PUSH)
        failed = False
        try:
            pull.bind(stage_in)
            push.connect(sink_in)
            while (message := _recv(pull)) is not _END:
                if failed:
                    continue
                try:
                    output = stage(message)
                    if output is not None:
                        _send(push, output)
                except Exception as err:
                    errors.append(err)
                    failed = True
            push.send(b"")
        finally:
            pull.close()
            push.close()

    def consume() -> None:
        pull = socket(zmq.PULL)
        failed = False
        try:
            pull.bind(sink_in)
            while (message := _recv(pull)) is not _END:
                if failed:
                    continue
                try:
                    sink(message)
                except Exception as err:
                    errors.append(err)
                    failed = True
        finally:
            pull.close()

    try:
        return _run([produce, work, consume], errors)
    finally:
        context.term()


def _send(sock: zmq.Socket, message: Any) -> None:
    buffers: list[pickle.PickleBuffer] = []
    inband = pickle.dumps(message, protocol=5, buffer_callback=buffers.append)
    if not buffers:
        sock.send(inband)
        return
    sock.send_multipart([inband, *(buffer.raw() for buffer in buffers)], copy=False)


def _recv_plain(sock: zmq.Socket) -> Any:
    inband = sock.recv()
    if not inband:
        return _END
    buffers = []
    while sock.rcvmore:
        buffers.append(sock.recv())
    return pickle.loads(inband, buffers=buffers)


def _recv_frames(sock: zmq.Socket) -> Any:
    # Frames not copied, and Frame.more instead of asking RCVMORE.
    frame = sock.recv(copy=False)
    if not len(frame):
        return _END
    buffers = []
    last = frame
    while last.more:
        last = sock.recv(copy=False)
        buffers.append(last.buffer)
    return pickle.loads(frame.buffer, buffers=buffers)


def mpipe_ordered(source: Iterable[Any], stages: Sequence[Stage], sink: Sink) -> float:
    """mpipe: the first stage callable in an ``OrderedStage`` of one worker process per stage
    callable; producer and consumer threads here."""
    if not mpipe_installed():
        raise Unavailable("not installed (pip install mpipe)")
    import mpipe

    errors: list[BaseException] = []
    start = time.perf_counter()
    pipe = mpipe.Pipeline(mpipe.OrderedStage(stages[0], len(stages)))  # forks before any thread of ours starts

    def produce() -> None:
        try:
            for message in source:
                pipe.put(message)
        except Exception as err:
            errors.append(err)
        finally:
            pipe.put(None)

    def consume() -> None:
        try:
            for result in pipe.results():
                sink(result)
        except Exception as err:
            errors.append(err)

    return _run([produce, consume], errors, start)


def pool_chunksize(count: int, workers: int) -> int:
    """The chunk size for ``count`` messages on ``workers`` processes: about four chunks per worker,
    the rule ``Pool.map`` applies by default (``imap``'s default of 1 pays a round trip per message)."""
    return max(1, -(-count // (4 * workers)))


def process_pool(source: Iterable[Any], work: Stage, workers: int, sink: Sink, chunksize: int) -> float:
    """multiprocessing: ``work`` (picklable) in a ``Pool`` of ``workers`` processes, fed by
    ``imap`` in chunks of ``chunksize`` messages; the consumer in this thread; until the pool has exited.

    The chunks are made here, as ``imap(work, source, chunksize)`` makes them, because the iterator
    that ``imap`` returns for a chunk size above 1 cannot wait with a timeout.
    """
    start = time.perf_counter()
    # The platform's default start method, as a user's Pool has (fork on Linux before Python 3.14): spawned processes,
    # which import the step's modules anew, ran W7's 600 events at about half the rate of forked ones.
    with multiprocessing.Pool(workers, initializer=pool_worker_signals) as pool:
        try:
            _drain(pool.imap(partial(apply_each, work), _chunks(source, chunksize)), sink)
        except multiprocessing.TimeoutError:
            raise BaselineError(f"a baseline did not end within {TIMEOUT:.0f} s") from None
        except Exception as err:
            raise BaselineError(f"a baseline step failed: {type(err).__name__}: {err}") from err
        pool.close()
        pool.join()
    return time.perf_counter() - start


def pool_worker_signals() -> None:
    """In a pool's process: Ctrl+C is its parent's to handle, and ``terminate()``'s SIGTERM ends it at once, as a
    user's Pool sets it up for a clean stop.

    Forked, a pool's process has its parent's handlers (the bench's workload process raises KeyboardInterrupt for
    both): each of them printed a ``Process ForkPoolWorker-1:`` traceback when the bench was stopped.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def apply_each(work: Stage, chunk: list[Any]) -> list[Any]:
    """``work`` on each message of a chunk, in a pool's process."""
    return [work(message) for message in chunk]


def _chunks(source: Iterable[Any], size: int) -> Iterator[list[Any]]:
    """The messages of ``source`` in lists of ``size`` (the last one shorter)."""
    iterator = iter(source)
    while chunk := list(islice(iterator, size)):
        yield chunk


def _drain(results: IMapIterator, sink: Sink) -> None:
    """Pass each result of each chunk to ``sink``, waiting at most TIMEOUT for each chunk."""
    while True:
        try:
            chunk = results.next(TIMEOUT)
        except StopIteration:
            return
        for result in chunk:
            if result is not None:
                sink(result)


def _ending_with_the_bench(target: Callable[[], None], errors: list[BaseException]) -> Callable[[], None]:
    """``target``, which ends in silence when the bench is stopped under it (a Ctrl+C terminates the context its
    sockets belong to: ContextTerminated printed a thread's traceback beside the bench's one line), and whose error
    outside a step's code (a MemoryError in a receive, under ``ulimit -v``) goes to ``errors``, not to stderr."""

    def run() -> None:
        try:
            target()
        except zmq.ContextTerminated:
            pass
        except BaseException as err:
            errors.append(err)

    return run


def _run(targets: Sequence[Callable[[], None]], errors: list[BaseException], start: float | None = None) -> float:
    """Run each target in a thread; the wall time since ``start`` (default: now) until all ended.

    Raise the first error of a target as soon as there is one (the others may wait for ever for what it would have
    sent: the caller's end stops them, or leaves them, daemons), or BaselineError if one still runs after TIMEOUT.
    """
    threads = [threading.Thread(target=_ending_with_the_bench(t, errors), name=f"bench-{i}", daemon=True)
               for i, t in enumerate(targets)]
    start = time.perf_counter() if start is None else start
    for thread in threads:
        thread.start()
    deadline = start + TIMEOUT
    for thread in threads:
        while thread.is_alive() and not errors and time.perf_counter() < deadline:
            thread.join(ERROR_LOOK_SECONDS)
    elapsed = time.perf_counter() - start
    if errors:
        raise BaselineError(f"a baseline step failed: {type(errors[0]).__name__}: {errors[0]}") from errors[0]
    if any(thread.is_alive() for thread in threads):
        raise BaselineError(f"a baseline did not end within {TIMEOUT:.0f} s")
    return elapsed
