"""How one step turns a run() or finish() result into outputs: the semantics every runner shares."""

from __future__ import annotations

import inspect
from typing import Any

from .component import Component, Emitter


def send_outputs(result: Any, emit: Emitter | None) -> None:
    """Send what run() or finish() returned: a value, nothing (None), or each value a generator yields.

    A sink (``emit`` is None) still runs its generator to the end; its values go nowhere.
    """
    if result is None:
        return
    if inspect.isgenerator(result):
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


def failure_line(error: BaseException) -> str:
    """One line describing an exception: its type and message."""
    return f"{type(error).__name__}: {error}"
