"""What the status stream costs: ``python -m pipeline.bench.overhead [--count=N] [--repeat=R]``.

Runs pipeline-bench's W1 workload (tiny dicts: producer -> pass-through stager -> consumer, in
the threaded engine) with ``--Pipeline.gui=False``, with the stream on and no GUI listening, and
with the stream on and a subscriber reading every message; the runs are interleaved so that a
noisy spell spreads over all three. Prints each median in messages per second and its ratio to
the run without the stream (the progress display is off in all three).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Sequence
from typing import Any

import zmq

from pipeline.bench.arguments import positive
from pipeline.bench.loopback import free_port
from pipeline.bench.workloads import tiny_config
from pipeline.console.arguments import ArgumentParser
from pipeline.pipeline import Pipeline

OFF, UNHEARD, HEARD = "stream off", "stream on, no GUI listening", "stream on, a subscriber reading"

#: Seconds the subscriber's thread may take to bind, or to stop once asked.
THREAD_SECONDS = 10.0


class Subscriber:
    """A SUB socket on a free loopback port, read in its own thread until ``close()``."""

    def __init__(self) -> None:
        self.received = 0
        self._stop = threading.Event()
        self._bound = threading.Event()
        self.port = 0
        self._thread = threading.Thread(target=self._read, name="overhead-subscriber")
        self._thread.start()
        if not self._bound.wait(THREAD_SECONDS) or not self.port:
            self.close()
            raise RuntimeError("the subscriber could not bind a loopback port")

    def _read(self) -> None:
        context = zmq.Context()
        sub = context.socket(zmq.SUB)
        try:
            sub.linger = 0
            sub.subscribe(b"")
            self.port = sub.bind_to_random_port("tcp://127.0.0.1")
            self._bound.set()
            while not self._stop.is_set():
                if sub.poll(100):
                    sub.recv_multipart()
                    self.received += 1
        finally:
            self._bound.set()
            sub.close()
            context.term()

    def close(self) -> None:
        """Stop reading and close the socket."""
        self._stop.set()
        self._thread.join(THREAD_SECONDS)


def throughput(count: int, settings: dict[str, Any]) -> float:
    """Messages per second of one W1 run with these Pipeline settings."""
    pipeline = Pipeline.from_config(tiny_config(count), {"Pipeline": {"progress": False, **settings}})
    start = time.perf_counter()
    report = pipeline.run()
    seconds = time.perf_counter() - start
    if report.exit_status != 0 or report["C"].processed != count:
        raise RuntimeError(f"the W1 run failed:\n{report.table()}")
    return count / seconds


def measure(count: int, repeat: int) -> tuple[dict[str, list[float]], int]:
    """Interleaved runs of the three cases: messages per second of each run, by case, and the
    number of messages the subscriber received."""
    subscriber = Subscriber()
    try:
        # In clear: the subscriber is a plain SUB socket, as a user's script would be.
        cases = {OFF: {"gui": False}, UNHEARD: {"gui_address": f"127.0.0.1:{free_port()}", "gui_plaintext": True},
                 HEARD: {"gui_address": f"127.0.0.1:{subscriber.port}", "gui_plaintext": True}}
        throughput(min(count, 2000), cases[OFF])  # warm up: imports and first-run costs
        samples: dict[str, list[float]] = {case: [] for case in cases}
        for _ in range(repeat):
            for case, settings in cases.items():
                samples[case].append(throughput(count, settings))
    finally:
        subscriber.close()
    return samples, subscriber.received


def main(argv: Sequence[str] | None = None) -> None:
    """Measure and print the table."""
    cli = ArgumentParser(prog="python -m pipeline.bench.overhead", description=__doc__.split("\n")[0])
    cli.add_argument("--count", type=positive, default=100_000, help="messages per run (default 100000)")
    cli.add_argument("--repeat", type=positive, default=5, help="runs of each case (default 5)")
    args = cli.parse_args(argv)
    samples, received = measure(args.count, args.repeat)
    base = statistics.median(samples[OFF])
    print(f"W1, {args.count:,} tiny dicts, threads, median of {args.repeat} runs")
    for case, values in samples.items():
        median = statistics.median(values)
        print(f"{case:<32} {median:>10,.0f} msg/s  {median / base:6.3f}")
    print(f"the subscriber received {received} messages of the stream")


if __name__ == "__main__":
    main()
