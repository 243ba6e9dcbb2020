"""The ``pipeline-bench`` command: run the workloads, print a table (or JSON) of medians and ratios."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pickle
import platform
import select
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import replace
from importlib.metadata import PackageNotFoundError, version
from typing import Any, NoReturn

import numpy as np
import zmq

from pipeline.bench import analysis, memory, startup, workloads
from pipeline.bench.arguments import positive
from pipeline.bench.plan import FULL, QUICK, Plan
from pipeline.bench.report import Workload, as_json, table
from pipeline.bench.stops import STOP, STOPS
from pipeline.cli.application import package_version
from pipeline.console.arguments import ArgumentParser
from pipeline.console.end_of_output import console_script
from pipeline.console.humanize import cut_short, quoted
from pipeline.engine.worker_process import die_with_parent

#: Seconds a workload's process has to end its runs once the bench is stopped, before it is killed.
CHILD_END_SECONDS = 10.0

#: Every workload, in the order they run.
WORKLOADS: dict[str, Callable[[Plan, workloads.Progress], Workload]] = {
    "W1": workloads.tiny,
    "W2": workloads.large,
    "W3": workloads.parallel,
    "W4": workloads.latency,
    "W5": memory.memory,
    "W6": startup.startup,
    "W7": analysis.analysis,
}

NOISE = ("a shared 2-core machine where other jobs run at the same time: figures are noisy; compare the "
         "designs measured in one invocation (interleaved repeats), not figures of different runs")


def parser() -> argparse.ArgumentParser:
    """The command line."""
    cli = ArgumentParser(
        prog="pipeline-bench",
        description="Run the engine's workloads (W1-W7) and, in the same invocation, the same work on "
                    "baselines (plain threads with queue.Queue, raw pyzmq PUSH/PULL, multiprocessing, mpipe if "
                    "installed); print medians, spreads, how the engine compares with each, and the targets.",
    )
    cli.add_argument("--repeat", type=positive, help="measure each figure N times (default 3; --quick: 1)")
    cli.add_argument("--quick", action="store_true", help="small sizes: a smoke run of some seconds")
    cli.add_argument("--json", action="store_true", help="print JSON instead of the table")
    cli.add_argument("--only", type=_workload_list, default=list(WORKLOADS),
                     help="comma-separated workloads to run, e.g. W1,W4 (default: all)")
    cli.add_argument("--gui", action="store_true",
                     help="let the engine's runs publish their status to the monitor, as pipeline-run does "
                          "(default: off, so that pipeline-gui shows none of the benchmark's runs)")
    cli.add_argument("--version", action="version", version=f"pipeline-bench {package_version()}")
    return cli


def _workload_list(text: str) -> list[str]:
    keys = [part.strip().upper() for part in text.split(",") if part.strip()]
    unknown = [k for k in keys if k not in WORKLOADS]
    if unknown or not keys:
        raise argparse.ArgumentTypeError(f"unknown workload {cut_short(', '.join(unknown)) or quoted(text)} "
                                         f"(expected some of {', '.join(WORKLOADS)})")
    return keys


def machine(plan: Plan, quick: bool) -> dict[str, Any]:
    """What the figures were measured on and with."""
    cores = os.cpu_count() or 0
    mpipe = _version("mpipe")
    info = {
        "cores": cores,
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "pyzmq": zmq.__version__,
        "libzmq": zmq.zmq_version(),
        "numpy": np.__version__,
        "mpipe": mpipe,
        "blas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
        "load_average": list(os.getloadavg()),
        "repeat": plan.repeat,
        "quick": quick,
        "gui": plan.gui,
        "noise": NOISE,
    }
    info["summary"] = (
        f"{cores} cores ({info['cpu']}), Python {info['python']}, pyzmq {info['pyzmq']} (libzmq "
        f"{info['libzmq']}), numpy {info['numpy']}, mpipe {mpipe or 'not installed'}; load average "
        f"{info['load_average'][0]:.2f}; median of {plan.repeat} run(s){' (--quick sizes)' if quick else ''}"
    )
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


def progress(line: str) -> None:
    """Progress goes to stderr; stdout has the table or the JSON alone."""
    print(line, file=sys.stderr, flush=True)


def run_apart(key: str, plan: Plan) -> Workload:
    """Workload ``key``, run in a fork of this process: each starts from the bench's own small process, not from
    what the workloads before it left behind (680 MiB after W1 to W6; a run's process that large forks and ends
    its worker processes slower, which cost W7's 600-event runs 15%: docs/performance.md)."""
    read, write = os.pipe()
    parent = os.getpid()
    # A stop waits out the fork: raised inside its handlers (logging's), it would be printed and ignored.
    signal.pthread_sigmask(signal.SIG_BLOCK, STOPS)
    try:
        pid = os.fork()
        if pid == 0:
            STOP.install()  # the child's own: its parent's stop (SIGTERM) or the group's ends its runs tidily
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, STOPS)
    if pid == 0:  # the child: run the workload, send its result, leave without the parent's exit handlers
        os.close(read)
        code = 1
        try:
            die_with_parent(parent)  # a bench killed leaves no workload measuring on
            with os.fdopen(write, "wb") as result:
                pickle.dump(WORKLOADS[key](plan, progress), result)
            code = 0
        except BaseException as error:
            if STOP.signum is not None or isinstance(error, KeyboardInterrupt):  # stopped: the parent says so
                code = 128 + (STOP.signum or signal.SIGINT)
            else:  # its traceback goes to stderr; the parent says which workload failed
                traceback.print_exc()
        finally:
            sys.stderr.flush()
            os._exit(code)
    os.close(write)
    try:
        with os.fdopen(read, "rb") as result:
            data = result.read()
    except BaseException:  # Ctrl+C in the parent: the child ends too (its runs and processes tidied), and is reaped
        _end_child(pid)
        raise
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code - 128 in STOPS:
        STOP.came(code - 128)  # the stop reached the child first: the bench was stopped, as its own would say
    if code != 0 or not data:
        return _failed(key, code)
    workload: Workload = pickle.loads(data)  # from our own child
    return workload


def _failed(key: str, code: int) -> Workload:
    """Workload ``key`` whose process ended with ``code`` before sending its result: said in one line, and a workload
    without figures, so that the workloads before and after it still print (a SystemExit threw them all away)."""
    if code < 0:
        known = -code in {signum.value for signum in signal.Signals}
        why = f"its process was killed by {signal.Signals(-code).name if known else f'signal {-code}'}"
    elif code == 1:
        why = "its process failed (its traceback is above)"
    else:
        why = f"its process died: exit code {code}"
    progress(f"pipeline-bench: workload {key} failed: {why}")
    return Workload(key, "not measured", failure=why)


def _end_child(pid: int) -> None:
    """Ask the workload's process ``pid`` to end (it tidies its runs up), kill it past CHILD_END_SECONDS, reap it."""
    try:
        ended: int | None = os.pidfd_open(pid)
    except OSError:  # a kernel before 5.3: no waiting with a bound, so no asking either
        ended = None
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM if ended is not None else signal.SIGKILL)
    if ended is not None:
        if not select.select([ended], [], [], CHILD_END_SECONDS)[0]:
            os.kill(pid, signal.SIGKILL)
        os.close(ended)
    os.waitpid(pid, 0)


@console_script
def main(argv: Sequence[str] | None = None) -> NoReturn:
    """The ``pipeline-bench`` console script: exit status 0, 1 when a run's output did not check, 128 + the signal's
    number when a signal of STOPS stopped it."""
    args = parser().parse_args(argv)
    STOP.install()
    plan = QUICK if args.quick else FULL
    plan = replace(plan, repeat=args.repeat or plan.repeat, gui=args.gui)
    header = machine(plan, args.quick)
    progress(f"pipeline-bench: {header['summary']}")
    # The warm-up runs here, in the bench's process: a stop raised in its run at any bytecode broke the run's own
    # stop (tracebacks of asyncio's callbacks, of a generator); it comes once the run has ended. A stop (Stopped, or
    # Ctrl+C before STOP is installed) is one line and 128 + its signal, said by pipeline.cli.launch, wherever it comes.
    with STOP.held():
        workloads.warm_up()
    results = [run_apart(key, plan) for key in WORKLOADS if key in args.only]
    header["load_average_end"] = list(os.getloadavg())
    if args.json:
        print(json.dumps(as_json(header, results), indent=2))
    else:
        print(table(header, results))
    sys.exit(0 if all(w.verified for w in results) else 1)
