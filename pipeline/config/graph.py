"""Checks on the shape of a pipeline's step graph: names, cycles and reachability."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from pipeline.console.humanize import listed, quoted
from pipeline.errors import ConfigError

if TYPE_CHECKING:
    from pipeline.config.model import StepConfig


def as_shown(name: str) -> str:
    """A step's name as it looks: two names equal here look the same (``é`` written as one code point or two)."""
    return unicodedata.normalize("NFC", name)


def _looks_alike(target: str, steps: Sequence[str]) -> str:
    """For an unknown next step that one of ``steps`` looks the same as (``é`` written as one code point or two):
    which, with their code points, since the two look the same in the error."""
    same = [name for name in steps if as_shown(name) == as_shown(target)]
    return f": step {same[0]!a} looks the same, written with other code points than {target!a}" if same else ""


def check_graph(source: str, steps: Mapping[str, StepConfig]) -> None:
    """Raise a ConfigError for an unknown next step, a cycle or a step the producer cannot reach."""
    producer = next(iter(steps.values()))
    for step in steps.values():
        for target in step.next_steps:
            if target not in steps:
                raise ConfigError(
                    source, f"{step.key}.next_steps",
                    f"unknown step {quoted(target)} (steps: {listed(steps)}){_looks_alike(target, steps)}"
                )
            if target == producer.name:
                raise ConfigError(source, f"{step.key}.next_steps",
                                  f"the producer {quoted(target)} cannot be a next step")
    cycle = find_cycle(steps)
    if cycle:
        first = steps[cycle[0]]
        raise ConfigError(source, f"{first.key}.next_steps", "cycle: " + path_text(cycle))
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
    """A cycle as a list of step names (first name repeated at the end), or [] if there is none.

    A depth-first search with its own stack, not Python's: a chain of thousands of steps is valid.
    """
    done: set[str] = set()
    for root in steps:
        if root in done:
            continue
        path = [root]  # the steps on the current path, and below them the branches still to explore
        on_path = {root}
        branches = [iter(steps[root].next_steps)]
        while branches:
            target = next(branches[-1], None)
            if target is None:
                done.add(path[-1])
                on_path.discard(path.pop())
                branches.pop()
            elif target in on_path:
                return [*path[path.index(target) :], target]
            elif target not in done:
                path.append(target)
                on_path.add(target)
                branches.append(iter(steps[target].next_steps))
    return []


#: A path of more step names than this is shown by its ends, so that its message stays one short line.
SHOWN_NAMES = 8


def path_text(names: Sequence[str]) -> str:
    """Step names joined by arrows; a long path by its first and last names and how many are left out."""
    if len(names) <= SHOWN_NAMES:
        return " -> ".join(names)
    left_out = len(names) - SHOWN_NAMES
    return " -> ".join([*names[:5], f"... ({left_out} more)", *names[-3:]])
