"""A live view of a run, read by the monitor while the run goes on: plain values, no locks.

Counters are plain integers that each thread increments on its own; a reader sums them. A read
may be a message behind, never torn (integer reads are atomic under the GIL).
"""

from __future__ import annotations

import logging
import operator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from pipeline.component import Component
from pipeline.execution.report import StepFigures
from pipeline.failures.describe import failure_line

if TYPE_CHECKING:
    from pipeline.config.model import PipelineConfig

log = logging.getLogger("pipeline.status")

#: Step states, in the order a step goes through them ("failed" replaces "finished" after an error).
STEP_STATES = ("waiting", "running", "draining", "finished", "failed")
#: Run states.
RUN_STATES = ("starting", "running", "draining", "finished", "failed", "interrupted")


@dataclass(frozen=True)
class WorkerProcessStatus:
    """One worker process of a step: started by the run (``process``) or joined from another host (``remote``)."""

    slot: int  # its number in the run
    kind: str  # "process" or "remote"
    pid: int | None  # its process id, on its host
    host: str  # where it connected from ("" for the run's own processes)
    key: str  # the name of the key it proved ("" for the run's own processes)
    threads: int
    silent: float  # seconds since its last heartbeat


@dataclass
class StepStatus(StepFigures):
    """One step now."""

    state: str = "waiting"
    queue: int = 0  # messages in the step's router queue
    queue_limit: int = 0  # -1: unbounded
    busy: int = 0  # workers inside run() now
    workers: int = 1
    processes: int = 0  # worker processes (nb_process; 0: its workers are threads of the run)
    total: int | None = None  # messages the step will process in all, if known (the producer's declared length)
    worker_processes: list[WorkerProcessStatus] = field(default_factory=list)  # its live worker processes

    def as_dict(self) -> dict:
        """A JSON-ready form."""
        values = asdict(self)
        values.update(values.pop("counts"))
        values["mean_time"] = self.mean_time
        return values


@dataclass
class RunStatus:
    """The whole run now."""

    state: str
    elapsed: float
    steps: list[StepStatus]


def declared_totals(config: PipelineConfig) -> dict[str, int]:
    """The steps whose number of messages is known before the run: the producer, if its class has a
    ``__length_hint__`` (see Component) that gives it from the step's options."""
    producer = config.producer.name
    if config.steps[producer].cls.__length_hint__ is Component.__length_hint__:
        return {}  # it does not say, and its constructor (the step's code) is not run for nothing
    try:
        component = config.make_component(producer)
    except KeyboardInterrupt:
        raise
    except BaseException:  # the step's constructor: its start, which builds one too, fails and says why
        return {}
    try:
        total = operator.length_hint(component, -1)
    except KeyboardInterrupt:
        raise
    except BaseException as err:  # the hook is the step's code (a SystemExit too): a bug in it costs the display its
        # total, said in one line (None, -1, a float, a text, an integer past sys.maxsize); its traceback with --debug
        log.warning("step %s: __length_hint__() failed; no total shown (%s)", producer, failure_line(err))
        log.debug("step %s: __length_hint__() failed", producer, exc_info=True)
        return {}
    return {producer: total} if total >= 0 else {}
