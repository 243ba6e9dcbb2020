"""How one step's code turns into outputs: the semantics every runner and every kind of worker share.

A step's outputs (what ``run()`` returns or yields, what it passes to ``send_msg``) are collected
while its code runs and handed on only once that code has returned: the outputs of a message whose
``run()`` raised are dropped whole, never half sent (so a replay of it never duplicates them).
"""

from __future__ import annotations

import threading
from types import GeneratorType
from typing import Any

from pipeline.component import Component, Emitter
from pipeline.errors import RoutingError
from pipeline.message import Encoded, encode

#: The outputs of one call of a step's code: each encoded message and its target (None: every next step).
Outputs = list[tuple[Encoded, "str | None"]]


class Collector:
    """The emitter a runner installs in a Component: encodes each output and keeps it until taken.

    Only the thread that runs the step's code may send: ZeroMQ sockets belong to one thread, and
    an output sent from a thread the step started would belong to no message.
    """

    def __init__(self, step_name: str) -> None:
        self.step_name = step_name
        self.owner = threading.get_ident()
        self.pending: Outputs = []

    def claim(self) -> None:
        """Make the calling thread the one that runs the step's code."""
        self.owner = threading.get_ident()

    def __call__(self, message: Any, target: str | None) -> None:
        if threading.get_ident() != self.owner:
            raise RoutingError(
                f"step {self.step_name!r}: send_msg() called from thread {threading.current_thread().name!r}; "
                "only the thread running the step's init(), run() and finish() may send (hand results to it, "
                "for example through a queue that run() reads)"
            )
        self.add(message, target)

    def add(self, message: Any, target: str | None = None) -> None:
        """Collect an output sent by the thread that runs the step's code (the engine's own calls: not checked)."""
        self.pending.append((encode(message), target))

    def take(self) -> Outputs:
        """The outputs collected since the last take, in the order they were sent."""
        pending = self.pending
        self.pending = []
        return pending


def send_outputs(result: Any, emit: Emitter | None) -> None:
    """Send what run() or finish() returned: a value, nothing (None), or each value a generator yields.

    A sink (``emit`` is None) still runs its generator to the end; its values go nowhere.
    """
    if result is None:
        return
    if isinstance(result, GeneratorType):
        for output in result:
            if output is not None and emit is not None:
                emit(output, None)
    elif emit is not None:
        emit(result, None)


def produce(component: Component) -> Any:
    """An iterator over the producer's messages: its run() must be a generator (or an iterable)."""
    messages = component.run()
    try:
        return iter(messages)
    except TypeError:
        raise TypeError(
            f"producer {component.step_name!r}: run() must be a generator, it returned {type(messages).__name__}"
        ) from None
