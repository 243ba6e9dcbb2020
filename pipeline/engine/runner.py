"""The threaded ZeroMQ engine: a router thread per step and worker threads, in one process."""

from __future__ import annotations

import logging
import queue
import threading

import zmq

from ..config import PipelineConfig
from ..report import RunReport, StepReport
from .addresses import Addresses
from .ordering import Turn
from .router import Router
from .worker import ProducerThread, StepThread, WorkerThread

log = logging.getLogger("pipeline.engine")


class ThreadedRunner:
    """Runs a pipeline with one router thread per step and ``nb_thread`` worker threads per step."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config
        self.addresses = Addresses()
        self.routers: dict[str, Router] = {}
        self.threads: dict[str, list[StepThread]] = {}

    def run(self) -> RunReport:
        """Start every thread, let the producer go once every init() succeeded, wait for the end."""
        context = zmq.Context()
        go = threading.Event()
        inits: queue.Queue[StepThread] = queue.Queue()
        try:
            self._start_routers(context)
            self._start_steps(context, go, inits.put)
            started = sum(len(t) for t in self.threads.values())
            all_ok = all(inits.get().init_ok for _ in range(started))
            producer = self.threads[self.config.producer.name][0]
            assert isinstance(producer, ProducerThread)
            producer.cancelled = not all_ok
            go.set()
            for thread in [*self.routers.values(), *(t for ts in self.threads.values() for t in ts)]:
                thread.join()
        finally:
            go.set()
            context.term()
        return self._report()

    def _start_routers(self, context: zmq.Context) -> None:
        for step in self.config.steps.values():
            if step.kind == "producer":
                continue
            senders = sum(self.config.steps[up].nb_thread for up in self.config.upstream(step.name))
            router = Router(context, step, self.addresses, senders)
            router.start()
            self.routers[step.name] = router
        for router in self.routers.values():
            router.bound.wait()

    def _start_steps(self, context: zmq.Context, go: threading.Event, on_init) -> None:
        for step in self.config.steps.values():
            if step.kind == "producer":
                threads: list[StepThread] = [
                    ProducerThread(context, self.config, step, self.addresses, 0, on_init, go=go)
                ]
            else:
                turn = Turn() if step.ordered else None
                threads = [
                    WorkerThread(context, self.config, step, self.addresses, i, on_init, turn=turn)
                    for i in range(step.nb_thread)
                ]
            self.threads[step.name] = threads
            for thread in threads:
                thread.start()

    def _report(self) -> RunReport:
        reports: dict[str, StepReport] = {}
        failed = False
        for name, threads in self.threads.items():
            report = StepReport(name)
            for thread in threads:
                report.counts += thread.counts
                report.first_error = report.first_error or thread.first_error
            router = self.routers.get(name)
            if router is not None and router.error is not None and report.first_error is None:
                report.first_error = f"router: {type(router.error).__name__}: {router.error}"
            failed = failed or bool(report.first_error or report.counts.failed)
            reports[name] = report
        return RunReport(reports, exit_status=1 if failed else 0)
