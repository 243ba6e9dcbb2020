"""The designs that the benchmark measures: each row's name and what it is, for the report's legend."""

from __future__ import annotations

#: The row that every other row of a case is compared with.
ENGINE = "engine threads"
SEQUENTIAL = "engine sequential"
PROCESSES = "engine process workers"
REMOTE = "engine remote worker"
QUEUE = "queue.Queue threads"
ZMQ = "raw zmq PUSH/PULL"
ZMQ_PLAIN = "raw zmq PUSH/PULL, plain recv"
ZMQ_THROTTLED = "raw zmq PUSH/PULL, HWM 64"
MPIPE = "mpipe OrderedStage"
POOL = "multiprocessing Pool.imap"
LOOP = "plain loop"
PROCESSES_2 = "engine, 2 worker processes"
PROCESSES_1 = "engine, 1 worker process"
SHARDS_2 = "engine, 2 worker processes, source sharded"
THREADS_2 = "engine, 2 worker threads"
PYTHON = "python -c pass"
IMPORTS = "python, imports only"

#: What each design is, in a line: the report prints it for the designs it shows.
DESCRIPTIONS = {
    ENGINE: "this engine (Pipeline.mode threads): a router thread per step, the step's workers in threads",
    SEQUENTIAL: "this engine's sequential mode: every step in one thread, each message pickled or copied as unpickling "
                "would give it (a reference)",
    PROCESSES: "this engine with the stage's workers in processes (the step key nb_process)",
    REMOTE: "this engine with the stage served by one pipeline-worker on this host, over CurveZMQ on loopback TCP "
    "(its start and joining timed too)",
    QUEUE: "plain threads joined by queue.Queue(64) (W5: the workload's queue_limit), passing references",
    ZMQ: "plain threads joined by inproc PUSH/PULL at pyzmq's default options, pickle 5, out-of-band frames, "
    "received without a copy (recv(copy=False), Frame.more)",
    ZMQ_PLAIN: "the same received the plain way (recv(), rcvmore): faster for tiny messages on some machines",
    ZMQ_THROTTLED: "the same with a high-water mark of 64 on every socket: throttled, shown for reference only",
    MPIPE: "mpipe (when installed): the stage in forked worker processes, outputs in input order",
    POOL: "multiprocessing.Pool (the default start method), fed by imap in chunks of ceil(messages / (4 x workers))",
    LOOP: "the same step objects called in a plain Python loop, in one thread: what a user writes instead",
    PROCESSES_2: "this engine with each stage in 2 worker processes (nb_process 2)",
    PROCESSES_1: "this engine with each stage in 1 worker process (nb_process 1)",
    SHARDS_2: "the same with the source in 2 shards too (its nb_process 2): fused with the stages, each worker "
    "process makes its share of the events and analyses them, and only the results leave it",
    THREADS_2: "this engine with each stage in 2 worker threads of the run's process (nb_thread 2)",
    PYTHON: "a bare interpreter: start-up and exit",
    IMPORTS: "an interpreter importing what a pipeline-run run imports, and no more",
}

#: Designs that may be missing where the benchmark runs: their rows are skipped, with the reason.
OPTIONAL = (MPIPE, PROCESSES)
