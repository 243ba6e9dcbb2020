"""A validated pipeline: its steps and how they connect, as the loader (config.loader) built it."""

from __future__ import annotations

import copy
import heapq
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traitlets.config import Config

from pipeline.component import Component
from pipeline.config.stepkeys import DEFAULT_QUEUE_LIMIT
from pipeline.console.humanize import utf8_text
from pipeline.errors import COMMAND_LINE, option_key

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
    #: The name the config gives its class, that of an attribute of ``module``: not always the class's own (a class a
    #: function made, or one bound to a second name), which a worker process imports it by ("": the class's own).
    attribute: str = ""

    @property
    def workers(self) -> int:
        """How many workers the config gives the step: its threads, or its worker processes' threads
        (remote workers, who may join later, aside)."""
        return self.nb_process * self.nb_thread if self.nb_process else self.nb_thread

    @property
    def class_name(self) -> str:
        """The step's class's own name: its section in a config, as traitlets finds the options of a class."""
        return self.cls.__name__

    @property
    def import_name(self) -> str:
        """The attribute of ``module`` that is the step's class, as the config names it."""
        return self.attribute or self.cls.__name__


@dataclass
class PipelineConfig:
    """A validated pipeline: its steps in config order and the trait values for their classes."""

    source: str
    steps: dict[str, StepConfig]
    config: Config
    overrides: Config = field(default_factory=Config)  # from the command line: they win over everything
    linear: bool = False  # no step had next_steps: each sends to the next in config order
    title: str = ""  # the name given to load_config, if any
    overrides_source: str = COMMAND_LINE  # where ``overrides`` came from, as errors name it

    def setting_source(self, section: str, name: str) -> tuple[str, str]:
        """Where the setting ``section.name`` was given, as a ConfigError names it: (source, key), the overrides' if
        they set it, else the config's."""
        if name in self.overrides.get(section, {}):
            return self.overrides_source, option_key(self.overrides_source, f"{section}.{name}")
        return self.source, f"{section}.{name}"

    def named_setting(self, problem: str, key: str) -> tuple[str, str]:
        """Where the setting was given that ``problem`` (a step's check() error) names as ``Section.option``: the
        overrides' (source, key) if they set it, else the config's source and ``key``."""
        for section, options in self.overrides.items():
            for name in options if isinstance(options, Mapping) else ():
                if re.search(rf"\b{re.escape(f'{section}.{name}')}\b", problem):
                    return self.setting_source(section, name)
        return self.source, key

    @property
    def name(self) -> str:
        """The pipeline's name: the one given, else its config file's stem, else (a dict) its first and last steps; as
        text that UTF-8 encodes (the graph exports print it, and a file's name need not be UTF-8: ``b'\\xff.json'``)."""
        if self.title:
            return utf8_text(self.title)
        if self.source != DICT_SOURCE:
            return utf8_text(Path(self.source).stem)
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
        config = self.step_config(name)
        component = step.cls(config=config, step_name=step.name, next_steps=step.next_steps)
        # A constructor that takes **kwargs but calls super().__init__() without them would run with the class's
        # defaults, its config and command-line options silently ignored: a fault of the step's code, as a
        # constructor taking no keyword arguments is (a TypeError when built). What it passes on changed (a config
        # merged into another, a name of its own) is its choice: only what Component's defaults show was dropped.
        lost = [given for given, dropped in (
            ("config", any(section not in component.config for section in config)),
            ("step_name", component.step_name != step.name and component.step_name == type(component).__name__),
            ("next_steps", bool(step.next_steps) and not component.next_steps),
        ) if dropped]
        if lost:
            raise TypeError(f"{step.cls.__qualname__}.__init__() did not pass {', '.join(lost)} on to "
                            "Component.__init__(): pass **kwargs to super().__init__()")
        return component

    def step_config(self, name: str) -> Config:
        """The config of step ``name`` and of the components it makes, its own copy. From the weakest: the file's
        sections (traitlets lets one nested in a component's parent's win), the step's class section with its
        ``config`` key merged in at every depth, the command line.

        traitlets applies a section nested in another only to a component whose direct parent is of the outer class.
        So a class section in the step's own (``ProcessImages.TailcutsImageCleaner``: every cleaner of the step,
        whichever of its components made it) and a command-line section (``--TailcutsImageCleaner.x`` against the
        file's ``ImageProcessor.TailcutsImageCleaner``) are merged into every section of that class in the step's
        copy, so that each wins as said; deeper sections keep traitlets' meaning. A section of one of the step's base
        classes (``EventInput`` of ``ProcessImages``) is the step's too, as traitlets has it: the classes nested in it
        reach the step's components alike, more weakly than its own class's.
        """
        step = self.steps[name]
        config = copy.deepcopy(self.config)
        own = Config(config.get(step.class_name, {}))
        own.merge(Config(step.traits))
        own.merge(self.overrides.get(step.class_name, Config()))
        config[step.class_name] = own
        # From the weakest: the most general base class's section, ..., the step's own.
        outers = [config[base.__name__] for base in reversed(step.cls.__mro__[1:])
                  if isinstance(config.get(base.__name__), Config)] + [own]
        for weakest, outer in enumerate(outers):
            for section, values in list(outer.items()):
                if isinstance(values, Config):
                    _merge_everywhere(config, section, values, tuple(outers[weakest:]))
        return self._command_line_wins(config)

    def whole_config(self) -> Config:
        """A copy of the file's class sections in which the command line's win over those nested in others too, as in
        each step's (``step_config``): for the steps' classes run outside the pipeline (algorithms.ctapipe_loop)."""
        return self._command_line_wins(copy.deepcopy(self.config))

    def _command_line_wins(self, config: Config) -> Config:
        """``config`` with each command-line section merged into every section of its class."""
        for section, values in self.overrides.items():
            _merge_everywhere(config, section, values)
        return config


def _merge_everywhere(config: Config, name: str, values: Config, particular: tuple[Config, ...] = ()) -> None:
    """Merge ``values`` into the section ``name`` of ``config`` and into every section of that name nested in it; in
    those nested deeper in a ``particular`` section (where ``values`` come from, and those that win over it), only the
    options they do not set: ``Process.Processor.StrictCleaner`` is more particular than ``Process.StrictCleaner``,
    and wins."""
    stack: list[tuple[Config, bool]] = [(config, False)]
    config.setdefault(name, Config())
    while stack:
        node, inside = stack.pop()
        for key, value in list(node.items()):
            if isinstance(value, Config):
                if key == name and value is not values:
                    if inside:
                        _fill(value, values)
                    else:
                        value.merge(copy.deepcopy(values))
                stack.append((value, inside or any(value is section for section in particular)))


def _fill(section: Config, values: Config) -> None:
    """Set in ``section`` the options of ``values`` it does not set, at every depth."""
    for key, value in values.items():
        if isinstance(value, Config):
            inner = section.setdefault(key, Config())
            if isinstance(inner, Config):
                _fill(inner, value)
        elif key not in section:
            section[key] = copy.deepcopy(value)
