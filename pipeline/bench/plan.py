"""How big each workload is (the full sizes, and a seconds-long smoke run) and how the engine's runs are set."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    """Sizes of every workload, how many times each is measured, and whether the engine's runs publish
    their status to the monitor (``pipeline-bench --gui``)."""

    repeat: int = 3
    tiny_count: int = 100_000  # W1 messages
    large_counts: tuple[tuple[int, int], ...] = ((1, 2000), (16, 200))  # W2 (MiB per array, arrays)
    parallel_count: int = 400  # W3 messages
    parallel_seconds: float = 0.005  # W3 work per message
    parallel_workers: tuple[int, ...] = (1, 2, 4)
    latency_count: int = 1500  # W4 messages
    latency_rate: float = 1000.0  # W4 messages per second
    memory_count: int = 400  # W5 messages of 1 MiB
    memory_delay: float = 0.002  # W5 consumer seconds per message
    memory_queue_limit: int = 8
    mpipe_large_mib: int = 1  # mpipe pickles in-band: it runs only the W2 case of this size
    analysis_counts: tuple[int, int] = (3000, 600)  # W7 camera events: a long run and a short one
    gui: bool = False  # off: the benchmark's runs do not show in pipeline-gui nor share the CPU with it


#: The full sizes, which the targets are stated for.
FULL = Plan()

#: A smoke run of every workload: a few seconds in all.
QUICK = Plan(
    repeat=1,
    tiny_count=5_000,
    large_counts=((1, 100), (16, 10)),
    parallel_count=40,
    latency_count=200,
    memory_count=150,
    memory_delay=0.001,
    analysis_counts=(60, 30),
)
