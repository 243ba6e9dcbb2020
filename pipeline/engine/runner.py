"""The threaded ZeroMQ engine: a router thread per step and worker threads, in one process."""

from __future__ import annotations

import logging
import threading

import zmq

from ..config import PipelineConfig
from ..report import RunReport, StepReport
from .addresses import Addresses
from .control import BOUND, ENDED, INIT_DONE, EngineThread, RunControl
from .router import Router
from .worker import ProducerThread, StepThread, WorkerThread

log = logging.getLogger("pipeline.engine")


class ThreadedRunner:
    """Runs a pipeline with one router thread per step and ``nb_thread`` worker threads per step."""

    def __init__(self, config: PipelineConfig, shutdown_timeout: float = 10.0) -> None:
        self.config = config
        self.shutdown_timeout = shutdown_timeout
        self.addresses = Addresses()
        self.control = RunControl()
        self.routers: dict[str, Router] = {}
        self.threads: dict[str, list[StepThread]] = {}
        self.crashed: list[EngineThread] = []

    def run(self) -> RunReport:
        """Start every thread, let the producer go once every init() succeeded, wait for the end."""
        context = zmq.Context()
        try:
            self._start_routers(context)
            self._start_steps(context)
            self._wait_for_end()
        finally:
            if self.crashed or self._alive():
                self._abort(context)
            else:
                context.term()
        return self._report()

    def _all_threads(self) -> list[EngineThread]:
        return [*self.routers.values(), *(t for ts in self.threads.values() for t in ts)]

    def _alive(self) -> list[EngineThread]:
        return [t for t in self._all_threads() if t.is_alive()]

    def _next_event(self, kind: str) -> EngineThread | None:
        """The thread of the next event of ``kind``; None once a thread crashed."""
        while not self.crashed:
            event, thread = self.control.events.get()
            if event == ENDED and thread.crash is not None:
                self.crashed.append(thread)
            elif event == kind:
                return thread
        return None

    def _start_routers(self, context: zmq.Context) -> None:
        for step in self.config.steps.values():
            if step.kind != "producer":
                self.routers[step.name] = Router(context, self.control, self.config, step, self.addresses)
        for router in self.routers.values():
            router.start()
        for _ in self.routers:
            if self._next_event(BOUND) is None:
                return

    def _start_steps(self, context: zmq.Context) -> None:
        if self.crashed:
            return
        for step in self.config.steps.values():
            if step.kind == "producer":
                threads: list[StepThread] = [ProducerThread(context, self.control, self.config, step,
                                                            self.addresses, 0)]
            else:
                threads = [WorkerThread(context, self.control, self.config, step, self.addresses, i)
                           for i in range(step.nb_thread)]
            self.threads[step.name] = threads
            for thread in threads:
                thread.start()
        inits_ok = True
        for _ in range(sum(len(ts) for ts in self.threads.values())):
            thread = self._next_event(INIT_DONE)
            if thread is None:
                return
            inits_ok = inits_ok and isinstance(thread, StepThread) and thread.init_ok
        if not inits_ok:
            self.control.stopping.set()  # an init() failed: the producer does not start
        self.control.go.set()

    def _wait_for_end(self) -> None:
        while self._alive() and not self.crashed:
            self._next_event(ENDED)

    def _abort(self, context: zmq.Context) -> None:
        """Stop every thread: terminating the context ends their blocking socket calls."""
        self.control.abort()
        terminator = threading.Thread(target=context.term, name="context-term", daemon=True)
        terminator.start()
        terminator.join(self.shutdown_timeout)
        for thread in self._alive():
            thread.join(0.1)
        stuck = [t.name for t in self._alive()]
        if stuck:
            log.critical("threads still busy after %.1f s, left behind: %s", self.shutdown_timeout, ", ".join(stuck))

    def _report(self) -> RunReport:
        reports: dict[str, StepReport] = {}
        failed = bool(self.crashed)
        for name in self.config.steps:
            report = StepReport(name)
            for thread in self.threads.get(name, []):
                report.counts += thread.counts
            if name in self.routers:
                report.counts += self.routers[name].counts
                report.first_error = report.first_error or thread.first_error
            for thread in [*self.threads.get(name, []), self.routers.get(name)]:
                if thread is not None and thread.crash is not None and report.first_error is None:
                    report.first_error = f"internal error in {thread.name}: {thread.crash!r}"
            failed = failed or bool(report.first_error or report.counts.failed)
            reports[name] = report
        return RunReport(reports, exit_status=1 if failed else 0)
