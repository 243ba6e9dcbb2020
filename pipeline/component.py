"""The base class of every pipeline step: subclass it and write init(), run() and finish()."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from traitlets.config import Configurable, LoggingConfigurable

from pipeline.errors import RoutingError, ShardUnknown

#: Signature of the callable a runner installs to carry a step's outputs on.
Emitter = Callable[[Any, "str | None"], None]


class Component(LoggingConfigurable):
    """A pipeline step: a producer, a stager or a consumer.

    Options are traits tagged ``config=True``; ``init()`` sees their configured values.
    A producer's ``run()`` is a generator. A stager's ``run(msg)`` returns its output, returns
    ``None`` to filter, yields several outputs, or calls ``send_msg``. A consumer's ``run(msg)``
    takes messages and sends nothing.

    A producer that knows how many messages it will yield says so with ``__length_hint__()``
    (PEP 424), computed from its options: the progress display then shows a total and an ETA.
    A producer whose input splits (many files, a range) sets ``shardable``: with ``nb_process``
    N it runs in N worker processes, and each ``run()`` yields only shard ``self.shard`` of
    ``self.n_shards``. A step whose instances would share one resource (a file each replaces) sets
    ``one_worker``: it then runs in one worker.

    A step that builds configurable objects of its own (ctapipe's components, say) creates them
    with ``parent=self`` and lists their classes in ``child_classes``: the config file may then
    set their options too. ``check()`` finds, before the run, the errors only its code can see. A file the
    step reads is named by an ``InputFile`` option, or else by ``input_files()``: the run refuses to write it.
    """

    #: The traitlets Configurable classes this step creates with ``parent=self``, a tuple: the config may
    #: hold a section for each of them, for each configurable base class they have, and for the classes
    #: listed in their own ``child_classes``.
    child_classes: ClassVar[Sequence[type[Configurable]]] = ()

    #: A producer that yields only its share of the input in each run(), shard ``self.shard`` of
    #: ``self.n_shards``: it may run in several worker processes (``nb_process``), one shard each.
    shardable: ClassVar[bool] = False

    #: A step whose instances would share one resource, such as a file each opens for writing: it runs in one
    #: worker (``nb_thread`` 1, ``nb_process`` 0 or 1, no remote workers), or two instances would write over each
    #: other's output. The config is refused otherwise.
    one_worker: ClassVar[bool] = False

    def __init__(self, step_name: str = "", next_steps: Sequence[str] = (), **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.step_name = step_name or type(self).__name__
        self.next_steps: tuple[str, ...] = tuple(next_steps)
        self.log = logging.getLogger(f"pipeline.step.{self.step_name}")
        self._emit: Emitter | None = None
        #: The share of the input run() yields (shard, n_shards): (0, 1) unless the producer runs in shards, whose
        #: runner sets it for each run() and unsets it (None) outside them (set_share).
        self._share: tuple[int, int] | None = (0, 1)

    @property
    def shard(self) -> int:
        """Which share of the input this run() yields: 0 to ``n_shards`` - 1 (0 unless the producer is sharded)."""
        return self._current_share("shard")[0]

    @shard.setter
    def shard(self, value: int) -> None:
        """Set the share a test of a shardable producer runs (a run sets it itself)."""
        self._share = (value, self._share[1] if self._share is not None else 1)

    @property
    def n_shards(self) -> int:
        """Into how many shares the input is split (1 unless the producer is sharded)."""
        return self._current_share("n_shards")[1]

    @n_shards.setter
    def n_shards(self, value: int) -> None:
        """Set into how many shares a test of a shardable producer splits the input (a run sets it itself)."""
        self._share = (self._share[0] if self._share is not None else 0, value)

    def _current_share(self, name: str) -> tuple[int, int]:
        """The share of the run() running; ShardUnknown outside a sharded producer's run()."""
        share = self._share
        if share is None:
            raise ShardUnknown(f"step {self.step_name!r} read self.{name} outside run(): a producer in shards is "
                               "told its shard for each run(), while its init() and finish() run once for "
                               "whichever shards follow")
        return share

    def init(self) -> None:
        """Prepare the step before its first message (open files, load tables)."""

    def run(self, msg: Any = None) -> Any:
        """Process one message (a producer: generate every message)."""
        raise NotImplementedError(f"{type(self).__name__} must define run()")

    def finish(self) -> None:
        """Release what init() took, after the last message; it may still call send_msg()."""

    def check(self) -> None:
        """Raise, once before the run, what init() would fail on (a missing file, a bad child option)."""

    def input_files(self) -> Sequence[str]:
        """The files this step reads that its options name otherwise than as InputFile options (a library's own
        option, such as ctapipe's ``EventSource.input_url``): no file the run writes may be one of them."""
        return ()

    def __length_hint__(self) -> int:
        """A producer's number of messages, from its options before init() (NotImplemented: unknown)."""
        return NotImplemented

    def send_msg(self, msg: Any, next_step: str | None = None) -> None:
        """Send ``msg`` to every next step, or to the next step named ``next_step`` only."""
        if not self.next_steps:
            raise RoutingError(f"step {self.step_name!r} has no next steps to send to")
        if next_step is not None and next_step not in self.next_steps:
            raise RoutingError(
                f"step {self.step_name!r} cannot send to {next_step!r}: "
                f"its next steps are {', '.join(self.next_steps)}"
            )
        if self._emit is None:
            raise RoutingError(f"step {self.step_name!r} is not running: send_msg() is for init/run/finish")
        self._emit(msg, next_step)


def set_share(component: Component, share: tuple[int, int] | None) -> None:
    """Tell a producer in shards which one its next run() yields, (shard, n_shards); None between them."""
    component._share = share


@functools.cache
def reserved_names() -> frozenset[str]:
    """The names a step's trait may not take: Component's attributes and methods and those each instance gets."""
    return frozenset(dir(Component)) | frozenset(vars(Component()))
