"""Checks on the shape of a pipeline's step graph: names, cycles and reachability."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from .config import StepConfig


def check_graph(source: str, steps: Mapping[str, StepConfig]) -> None:
    """Raise a ConfigError for an unknown next step, a cycle or a step the producer cannot reach."""
    producer = next(iter(steps.values()))
    for step in steps.values():
        for target in step.next_steps:
            if target not in steps:
                raise ConfigError(
                    source, f"{step.key}.next_steps", f"unknown step {target!r} (steps: {', '.join(steps)})"
                )
            if target == producer.name:
                raise ConfigError(source, f"{step.key}.next_steps", f"the producer {target!r} cannot be a next step")
    cycle = find_cycle(steps)
    if cycle:
        first = steps[cycle[0]]
        raise ConfigError(source, f"{first.key}.next_steps", "cycle: " + " -> ".join(cycle))
    reached = reachable(steps, producer.name)
    for step in steps.values():
        if step.name not in reached:
            raise ConfigError(
                source, step.key, f"step {step.name!r} is not reached by any path from the producer {producer.name!r}"
            )


def reachable(steps: Mapping[str, StepConfig], start: str) -> set[str]:
    """Names of the steps that some path from ``start`` reaches, ``start`` included."""
    seen = {start}
    frontier = [start]
    while frontier:
        for target in steps[frontier.pop()].next_steps:
            if target not in seen:
                seen.add(target)
                frontier.append(target)
    return seen


def find_cycle(steps: Mapping[str, StepConfig]) -> list[str]:
    """A cycle as a list of step names (first name repeated at the end), or [] if there is none."""
    state: dict[str, int] = {}  # 1: on the current path, 2: fully explored
    path: list[str] = []

    def visit(name: str) -> list[str]:
        state[name] = 1
        path.append(name)
        for target in steps[name].next_steps:
            if state.get(target) == 1:
                return [*path[path.index(target):], target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        state[name] = 2
        path.pop()
        return []

    for name in steps:
        if name not in state:
            found = visit(name)
            if found:
                return found
    return []
