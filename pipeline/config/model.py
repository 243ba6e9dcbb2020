"""A validated pipeline: its steps and how they connect, as the loader (config.loader) built it."""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traitlets.config import Config

from pipeline.component import Component
from pipeline.config.stepkeys import DEFAULT_QUEUE_LIMIT

#: The source of a config given as a dict, in messages.
DICT_SOURCE = "<config>"


@dataclass(frozen=True)
class StepConfig:
    """One validated step: where its class lives, where its outputs go and how it runs."""

    name: str
    kind: str  # "producer", "stager" or "consumer"
    cls: type[Component]
    module: str
    next_steps: tuple[str, ...]
    nb_thread: int = 1
    nb_process: int = 0  # worker processes, each with nb_thread threads (0: threads of the run's process)
    queue_limit: int = DEFAULT_QUEUE_LIMIT
    ordered: bool = False
    on_error: str = "stop"
    traits: Mapping[str, Any] = field(default_factory=dict)
    key: str = ""  # where the step stands in the config file, for messages

    @property
    def workers(self) -> int:
        """How many workers the config gives the step: its threads, or its worker processes' threads
        (remote workers, who may join later, aside)."""
        return self.nb_process * self.nb_thread if self.nb_process else self.nb_thread

    @property
    def class_name(self) -> str:
        """The step's class name, as the config names it."""
        return self.cls.__name__


@dataclass
class PipelineConfig:
    """A validated pipeline: its steps in config order and the trait values for their classes."""

    source: str
    steps: dict[str, StepConfig]
    config: Config
    overrides: Config = field(default_factory=Config)  # from the command line: they win over everything
    linear: bool = False  # no step had next_steps: each sends to the next in config order
    title: str = ""  # the name given to load_config, if any

    @property
    def name(self) -> str:
        """The pipeline's name: the one given, else its config file's stem, else (a dict) its first and last steps."""
        if self.title:
            return self.title
        if self.source != DICT_SOURCE:
            return Path(self.source).stem
        sinks = [step.name for step in self.steps.values() if not step.next_steps]
        return f"{self.producer.name} \u2192 {', '.join(sinks)}"

    @property
    def producer(self) -> StepConfig:
        """The step that generates the messages."""
        return next(iter(self.steps.values()))

    def upstream(self, name: str) -> list[str]:
        """The steps that send to ``name``, in config order."""
        return [s.name for s in self.steps.values() if name in s.next_steps]

    def topological_order(self) -> list[StepConfig]:
        """Every step after all the steps that send to it; among the steps ready, the first in config order."""
        index = {name: i for i, name in enumerate(self.steps)}
        waiting = dict.fromkeys(self.steps, 0)  # how many senders of each step are not placed yet
        for step in self.steps.values():
            for target in step.next_steps:
                waiting[target] += 1
        ready = [index[name] for name, count in waiting.items() if count == 0]
        steps = list(self.steps.values())
        order: list[StepConfig] = []
        while ready:
            step = steps[heapq.heappop(ready)]
            order.append(step)
            for target in step.next_steps:
                waiting[target] -= 1
                if waiting[target] == 0:
                    heapq.heappush(ready, index[target])
        return order

    def make_component(self, name: str) -> Component:
        """A new instance of step ``name``'s class, configured for that step."""
        step = self.steps[name]
        config = Config(self.config)
        if step.traits:
            config[step.class_name] = Config({**config.get(step.class_name, {}), **step.traits})
            config.merge(self.overrides)
        return step.cls(config=config, step_name=step.name, next_steps=step.next_steps)
