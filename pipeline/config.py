"""Load a pipeline configuration (the ctapipe JSON format) and validate all of it before a run."""

from __future__ import annotations

import difflib
import importlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from traitlets import HasTraits, TraitError
from traitlets.config import Config, Configurable
from traitlets.config.loader import DeferredConfigString, LazyConfigValue

from .component import Component
from .deadletter import DeadLetterReplay, failed_steps
from .errors import ConfigError
from .graph import check_graph, reachable

#: A step's queue holds this many messages unless its config says otherwise (-1: unbounded).
DEFAULT_QUEUE_LIMIT = 256

STEP_KEYS = ("name", "class", "module", "next_steps", "nb_thread", "queue_limit", "ordered", "on_error", "config")
#: What a step does when its run() raises: stop the run (drain, finish, exit 1) or skip the message.
ON_ERROR = ("stop", "skip")
REQUIRED_STEP_KEYS = ("name", "class", "module")
SECTIONS = ("producer_conf", "stagers_conf", "consumer_conf")
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
    queue_limit: int = DEFAULT_QUEUE_LIMIT
    ordered: bool = False
    on_error: str = "stop"
    traits: Mapping[str, Any] = field(default_factory=dict)
    key: str = ""  # where the step stands in the config file, for messages

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
        """Every step after all the steps that send to it (the producer first)."""
        order: list[StepConfig] = []
        placed: set[str] = set()
        pending = list(self.steps.values())
        while pending:
            for step in pending:
                if all(up in placed for up in self.upstream(step.name)):
                    order.append(step)
                    placed.add(step.name)
                    pending.remove(step)
                    break
        return order

    def for_replay(self, path: str) -> PipelineConfig:
        """This pipeline fed from a dead-letter file: each message goes again to the step where it failed.

        The producer is replaced by the replay; only the failed steps and the steps after them run.
        """
        targets = failed_steps(path)
        for name in targets:
            if name not in self.steps or name == self.producer.name:
                raise ConfigError(path, "step", f"{name!r} is not a stager or consumer of {self.source}")
        keep = set().union(*(reachable(self.steps, name) for name in targets))
        replay = StepConfig(
            name=self.producer.name, kind="producer", cls=DeadLetterReplay, module=DeadLetterReplay.__module__,
            next_steps=tuple(targets), traits={"path": path}, key="--replay",
        )
        steps = {replay.name: replay, **{n: s for n, s in self.steps.items() if n in keep}}
        return PipelineConfig(self.source, steps, self.config, self.overrides, self.title)

    def make_component(self, name: str) -> Component:
        """A new instance of step ``name``'s class, configured for that step."""
        step = self.steps[name]
        config = Config(self.config)
        if step.traits:
            config[step.class_name] = Config({**config.get(step.class_name, {}), **step.traits})
            config.merge(self.overrides)
        return step.cls(config=config, step_name=step.name, next_steps=step.next_steps)


def load_config(
    source: str | Path | Mapping[str, Any],
    overrides: Config | None = None,
    settings: Iterable[type[Configurable]] = (),
    name: str = "",
) -> PipelineConfig:
    """Read and validate a config; ``overrides`` (command-line traits) win over the file.

    ``settings`` are the framework's own configurable classes (such as ``Pipeline``): their
    traits may stand in the ``Pipeline`` section and their sections on the command line.
    ``name`` names the pipeline (in the monitor, the progress display and graph exports).
    """
    if isinstance(source, Mapping):
        where, document = DICT_SOURCE, dict(source)
    elif isinstance(source, (str, Path)):
        where, document = str(source), _read_json(Path(source))
    else:
        raise ConfigError(repr(source), "", "expected a config file path or a dict")
    config = _Validator(where, list(settings)).validate(document, overrides or Config())
    config.title = name
    return config


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(str(path), "", f"cannot read the config file: {err.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            str(path), "", f"invalid JSON at line {err.lineno} column {err.colno}: {err.msg}"
        ) from None


def suggest(word: str, choices: Iterable[str]) -> str:
    """' (did you mean X?)' for the nearest of ``choices``, else the list of valid choices."""
    choices = sorted(choices)
    near = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    if near:
        return f" (did you mean {near[0]!r}?)"
    return f" (expected one of: {', '.join(choices)})" if choices else ""


def _expected(trait: Any) -> str:
    """What a trait accepts, with its bounds (trait.info() leaves them out)."""
    limits = (("at least", getattr(trait, "min", None)), ("at most", getattr(trait, "max", None)))
    bounds = [f"{word} {limit}" for word, limit in limits if limit is not None and abs(limit) != float("inf")]
    return trait.info() + (f" ({', '.join(bounds)})" if bounds else "")


def _type_name(value: Any) -> str:
    return type(value).__name__


class _Validator:
    """Walks a config document once, raising the first problem as a ConfigError."""

    def __init__(self, source: str, settings: list[type[Configurable]]) -> None:
        self.source = source
        self.settings = {cls.__name__: cls for cls in settings}

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.source, key, problem)

    def validate(self, document: Any, overrides: Config) -> PipelineConfig:
        if not isinstance(document, dict):
            raise self.error("", f"expected a JSON object at the top level, got {_type_name(document)}")
        if "version" in document and document["version"] != 1:
            raise self.error("version", f"expected 1, got {document['version']!r}")
        if "Pipeline" not in document:
            raise self.error("Pipeline", "missing section (expected producer_conf, stagers_conf, consumer_conf)")
        section = document["Pipeline"]
        if not isinstance(section, dict):
            raise self.error("Pipeline", f"expected an object, got {_type_name(section)}")
        steps = self.steps(section)
        check_graph(self.source, steps)
        config = Config()
        settings_traits = {k: v for k, v in section.items() if k not in SECTIONS}
        if settings_traits:
            # steps() let through only the traits of the settings classes, so "Pipeline" is one of them
            config["Pipeline"] = self.section("Pipeline", self.settings["Pipeline"], settings_traits)
        classes = self.configurable_classes(steps)
        for key, values in document.items():
            if key in ("version", "Pipeline"):
                continue
            if key not in classes:
                raise self.error(key, "unknown section: not a step class of this pipeline" + suggest(key, classes))
            if not isinstance(values, dict):
                raise self.error(key, f"expected an object of trait values, got {_type_name(values)}")
            config[key] = self.section(key, classes[key], values)
        for step in steps.values():
            self.section(f"{step.key}.config", step.cls, step.traits)
        self.overrides(overrides, classes)
        config.merge(overrides)
        return PipelineConfig(self.source, steps, config, overrides)

    def steps(self, section: dict[str, Any]) -> dict[str, StepConfig]:
        allowed = set(SECTIONS) | {
            name for cls in self.settings.values() for name in cls.class_traits(config=True)
        }
        for key in section:
            if key not in allowed:
                raise self.error(f"Pipeline.{key}", "unknown key" + suggest(key, allowed))
        for required in ("producer_conf", "consumer_conf"):
            if required not in section:
                raise self.error(f"Pipeline.{required}", "missing required key")
        stagers = section.get("stagers_conf", [])
        if not isinstance(stagers, list):
            raise self.error("Pipeline.stagers_conf", f"expected a list of steps, got {_type_name(stagers)}")
        entries = [("producer", "Pipeline.producer_conf", section["producer_conf"])]
        entries += [("stager", f"Pipeline.stagers_conf[{i}]", s) for i, s in enumerate(stagers)]
        entries.append(("consumer", "Pipeline.consumer_conf", section["consumer_conf"]))
        steps: dict[str, StepConfig] = {}
        for kind, key, entry in entries:
            step = self.step(kind, key, entry)
            if step.name in steps:
                raise self.error(f"{key}.name", f"duplicate step name {step.name!r} (also at {steps[step.name].key})")
            steps[step.name] = step
        return steps

    def step(self, kind: str, key: str, entry: Any) -> StepConfig:
        if not isinstance(entry, dict):
            raise self.error(key, f"expected an object describing a step, got {_type_name(entry)}")
        for name in entry:
            if name not in STEP_KEYS:
                raise self.error(f"{key}.{name}", "unknown key" + suggest(name, STEP_KEYS))
        for name in REQUIRED_STEP_KEYS:
            if name not in entry:
                raise self.error(f"{key}.{name}", "missing required key")
            if not isinstance(entry[name], str) or not entry[name].strip():
                raise self.error(f"{key}.{name}", f"expected a non-empty string, got {entry[name]!r}")
        next_steps = self.next_steps(f"{key}.next_steps", entry.get("next_steps", []))
        if kind == "consumer" and next_steps:
            raise self.error(f"{key}.next_steps", "a consumer has no next steps (expected none)")
        if kind == "producer" and not next_steps:
            raise self.error(f"{key}.next_steps", "missing: the producer must send to at least one step")
        nb_thread = entry.get("nb_thread", 1)
        if not _is_int(nb_thread) or nb_thread < 1:
            raise self.error(f"{key}.nb_thread", f"expected an integer >= 1, got {nb_thread!r}")
        if kind == "producer" and nb_thread != 1:
            raise self.error(f"{key}.nb_thread", f"a producer runs in one thread (expected 1, got {nb_thread!r})")
        queue_limit = entry.get("queue_limit", DEFAULT_QUEUE_LIMIT)
        if not _is_int(queue_limit) or (queue_limit < 1 and queue_limit != -1):
            raise self.error(
                f"{key}.queue_limit", f"expected an integer >= 1, or -1 for unbounded, got {queue_limit!r}"
            )
        ordered = entry.get("ordered", False)
        if not isinstance(ordered, bool):
            raise self.error(f"{key}.ordered", f"expected true or false, got {ordered!r}")
        on_error = entry.get("on_error", "stop")
        if on_error not in ON_ERROR:
            raise self.error(f"{key}.on_error", f"expected one of {', '.join(map(repr, ON_ERROR))}, got {on_error!r}")
        traits = entry.get("config", {})
        if not isinstance(traits, dict):
            raise self.error(f"{key}.config", f"expected an object of trait values, got {_type_name(traits)}")
        return StepConfig(
            name=entry["name"],
            kind=kind,
            cls=self.component_class(key, entry["module"], entry["class"]),
            module=entry["module"],
            next_steps=next_steps,
            nb_thread=nb_thread,
            queue_limit=queue_limit,
            ordered=ordered,
            on_error=on_error,
            traits=traits,
            key=key,
        )

    def next_steps(self, key: str, value: Any) -> tuple[str, ...]:
        if isinstance(value, str):
            names = [part.strip() for part in value.split(",")]
            return tuple(n for n in names if n)
        if isinstance(value, list) and all(isinstance(n, str) and n.strip() for n in value):
            return tuple(n.strip() for n in value)
        raise self.error(key, f"expected a comma-separated string or a list of step names, got {value!r}")

    def component_class(self, key: str, module_name: str, class_name: str) -> type[Component]:
        try:
            module = importlib.import_module(module_name)
        except Exception as err:  # an ImportError, or any error the module raises while importing
            raise self.error(
                f"{key}.module", f"cannot import module {module_name!r}: {type(err).__name__}: {err}"
            ) from None
        cls = getattr(module, class_name, None)
        if cls is None:
            components = [
                n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, Component)
            ]
            raise self.error(
                f"{key}.class", f"module {module_name!r} has no class {class_name!r}" + suggest(class_name, components)
            )
        if not (isinstance(cls, type) and issubclass(cls, Component)):
            raise self.error(f"{key}.class", f"{module_name}.{class_name} is not a pipeline.Component subclass")
        return cls

    def configurable_classes(self, steps: dict[str, StepConfig]) -> dict[str, type[Configurable]]:
        """Sections the file may hold: each step class and its configurable bases."""
        classes: dict[str, type[Configurable]] = {}
        for step in steps.values():
            for base in step.cls.__mro__:
                if isinstance(base, type) and issubclass(base, Component):
                    classes.setdefault(base.__name__, base)
        return classes

    def section(
        self, key: str, cls: type[Configurable], values: Mapping[str, Any], source: str | None = None
    ) -> Config:
        """Check each trait value of a section against ``cls``; ``source`` names where they came from."""
        source = source or self.source
        traits = cls.class_traits(config=True)
        for name, value in values.items():
            if name not in traits:
                raise ConfigError(
                    source, f"{key}.{name}", f"{cls.__name__} has no option {name!r}" + suggest(name, traits)
                )
            trait = traits[name]
            if isinstance(value, LazyConfigValue):
                continue
            if isinstance(value, DeferredConfigString):
                value = value.get_value(trait)
            try:
                trait.validate(_PROBE, value)
            except TraitError:
                raise ConfigError(
                    source, f"{key}.{name}", f"expected {_expected(trait)}, got {_type_name(value)} {value!r}"
                ) from None
        return Config(values)

    def overrides(self, overrides: Config, classes: dict[str, type[Configurable]]) -> None:
        known = {**classes, **self.settings}
        for section, values in overrides.items():
            if section not in known:
                raise ConfigError("command line", f"--{section}", "unknown class" + suggest(section, known))
            self.section(f"--{section}", known[section], values, source="command line")


#: Container traits validate their elements against an instance; any HasTraits will do.
_PROBE = HasTraits()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
