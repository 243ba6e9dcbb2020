"""Load a pipeline configuration (the ctapipe JSON format) and validate all of it before a run."""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import importlib
import inspect
import json
import logging
import math
import os
import re
import sys
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from traitlets import Bool, Dict, Enum, Float, HasTraits, Int, List, Set, TraitError, TraitType, Tuple, Union
from traitlets.config import Application, Config, Configurable, LoggingConfigurable
from traitlets.config.loader import DeferredConfigList, DeferredConfigString, LazyConfigValue

from pipeline.component import Component, reserved_names
from pipeline.config.ctapipe_flow import FLOW_PORTS_EDIT, FLOW_PORTS_KEY, FLOW_SECTION, FLOW_SECTION_EDIT, flow_leftover
from pipeline.config.graph import as_shown, check_graph, path_text
from pipeline.config.imports import hidden_file, import_problem, module_file, not_imported_from
from pipeline.config.misplaced import PIPELINE, SECTIONS, Home, belongs, section_place, subclasses
from pipeline.config.model import DICT_SOURCE, PipelineConfig, StepConfig
from pipeline.config.stepkeys import REQUIRED_STEP_KEYS, STEP_KEYS, StepKeys, role_problem, workers_problem
from pipeline.config.traits import ValueProblem, check_encodable, names_a_class, shown
from pipeline.console.humanize import error_text, failure_place, nearest, quoted, suggest
from pipeline.errors import COMMAND_LINE, ConfigError, option_key

log = logging.getLogger("pipeline.config")

#: How deeply a config may nest objects and lists. Ours nest 5 deep; traitlets merges and copies
#: configs recursively, so a document nested near Python's recursion limit (1000) would crash it.
MAX_DEPTH = 32


#: Where those of ``Pipeline.from_config(source, overrides)`` come from.
OVERRIDES_ARGUMENT = "overrides"


def load_config(
    source: str | Path | Mapping[str, Any],
    overrides: Mapping[str, Any] | None = None,
    settings: Iterable[type[Configurable]] = (),
    name: str = "",
    check: bool = True,
    overrides_source: str = COMMAND_LINE,
) -> PipelineConfig:
    """Read and validate a config; ``overrides`` (command-line traits, or sections of trait values) win over the file.

    ``overrides_source`` names where the overrides come from in an error: the command line
    (``command line: --Counter.count: ...``), or ``Pipeline.from_config``'s argument.

    ``settings`` are the framework's own configurable classes (such as ``Pipeline``): their
    traits may stand in the ``Pipeline`` section and their sections on the command line.
    ``name`` names the pipeline (in the monitor, the progress display and graph exports).
    With ``check``, each step that defines ``Component.check()`` runs it on an instance of its own.
    """
    if isinstance(source, Mapping):
        where, document = DICT_SOURCE, dict(source)
        _check_text_keys(where, document)  # JSON's keys are text already
    elif isinstance(source, str) and source.lstrip().startswith("{"):  # read as a file's name, it echoed it all
        raise ConfigError(shown(source), "", "expected a config file path or a dict, got JSON text (give "
                          "json.loads(text), or the path of a file holding it)")
    elif isinstance(source, (str, Path)):
        where, document = str(source), _read_json(Path(source))
    else:
        raise ConfigError(shown(source), "", f"expected a config file path or a dict, got {_type_name(source)}")
    if not isinstance(overrides, Mapping | None):
        raise ConfigError(overrides_source, "", "expected an object of sections {class: {option: value}}, got "
                          f"{type(overrides).__name__}")
    _check_text_keys(overrides_source, overrides or {})
    given = overrides if isinstance(overrides, Config) else Config(overrides or {})
    config = _Validator(where, list(settings), overrides_source).validate(document, given)
    config.title = name
    if check:
        check_steps(config)
    return config


def check_steps(config: PipelineConfig) -> None:
    """Run each step's own ``check()`` (files it reads, components it builds) before anything runs."""
    for step in config.steps.values():
        if step.cls.check is Component.check:
            continue  # nothing to check: spare building an instance
        try:
            config.make_component(step.name).check()
        except (ConfigError, KeyboardInterrupt):
            raise
        except Exception as err:  # whatever the step's code or a library under it raises
            raise step_refused(config, step, error_text(err) or type(err).__name__) from err
        except BaseException as err:  # a sys.exit() in check() (a library's own command-line checks): said, exit 2
            raise step_refused(config, step, f"check() raised {type(err).__name__}: {error_text(err)}"
                                             f"{failure_place(err)}") from err


def step_refused(config: PipelineConfig, step: StepConfig, problem: str) -> ConfigError:
    """The ConfigError of ``step`` that cannot run for ``problem``, naming where its setting was given."""
    return ConfigError(*config.named_setting(problem, step.key), f"step {step.name!r}: {problem}")


#: The largest config file read: a config is a few KiB; a path such as /dev/zero must not fill the memory.
MAX_FILE_BYTES = 16 * 1024 * 1024


#: The longest config file name an error shows as a path (PATH_MAX on Linux): longer, it is some other text, cut.
MAX_NAME_SHOWN = 4096


def _read_json(path: Path) -> Any:
    source = str(path)
    try:
        # O_NONBLOCK: a FIFO opened waits for a writer, for ever if none comes; open, it reads as empty without one
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        os.set_blocking(fd, True)  # a pipe with a writer (--config=<(...)) is read as it comes
        with open(fd, "rb") as file:
            data = file.read(MAX_FILE_BYTES + 1)
    except OSError as err:  # a text that is no file's name (too long, a line break) is cut: an error is one line
        shown_source = source if len(source) <= MAX_NAME_SHOWN and "\n" not in source else shown(source)
        raise ConfigError(shown_source, "", f"cannot read the config file: {err.strerror or err}") from None
    except ValueError:  # os.open's for a NUL or a lone surrogate (Pipeline.from_config's, not a command line's)
        raise ConfigError(shown(source), "", "cannot read the config file: no file name holds a NUL character or a "
                          "lone surrogate (expected a file's path)") from None
    if len(data) > MAX_FILE_BYTES:
        raise ConfigError(source, "", f"larger than {MAX_FILE_BYTES // 2**20} MiB (expected a JSON config file)")
    if not data:
        raise ConfigError(source, "", "empty (expected a JSON config file)")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise ConfigError(
            source, "", f"not UTF-8 text: byte 0x{data[err.start]:02x} at offset {err.start} (expected JSON text)"
        ) from None
    try:
        # A byte order mark, which some Windows editors write, is not JSON but says nothing either.
        return json.loads(text.removeprefix("\ufeff"), parse_int=_integer, object_pairs_hook=_object)
    except _RepeatedKey as repeated:
        raise ConfigError(source, "", f"the key {quoted(repeated.key)} is given twice in {repeated.place} (expected "
                          "each key once: JSON would keep only the last)") from None
    except _LongInteger as long:
        invalid = json.JSONDecodeError(long.problem, text, text.find(long.digits))
    except json.JSONDecodeError as err:
        invalid = err
    except RecursionError:
        raise ConfigError(
            source, "", f"invalid JSON: nested too deeply (expected at most {MAX_DEPTH} levels)"
        ) from None
    raise ConfigError(source, "", f"invalid JSON at line {invalid.lineno} column {invalid.colno}: "
                                  f"{_json_problem(invalid)}")


#: How a comment starts in the config languages JSON is confused with (JavaScript, JSON5, YAML, Python).
_COMMENTS = ("//", "/*", "#")


def json_words(error: json.JSONDecodeError) -> str:
    """The JSON parser's words for ``error``, finished where they end on "at" ("Unterminated string starting at"):
    whoever says them says the place before them."""
    return error.msg.removesuffix(" at") + (" there" if error.msg.endswith(" at") else "")


def _json_problem(error: json.JSONDecodeError) -> str:
    """The JSON parser's words for ``error``, finished where they end on "at" (the place is said before them), and
    with a word on comments where the line holds one (JSON has none; editors' configs often do)."""
    problem = json_words(error)
    # The parser stops where the comment starts, or on the next line's key after a comment ending the line.
    line = error.doc.split("\n")[error.lineno - 1]
    if error.doc[error.pos:].lstrip().startswith(_COMMENTS) or line.lstrip().startswith(_COMMENTS):
        problem += " (JSON has no comments: remove the comment, or keep the note in a key of its own)"
    comma = _trailing_comma(error.doc, error.pos)
    if comma is not None:
        line = error.doc.count("\n", 0, comma) + 1
        column = comma - error.doc.rfind("\n", 0, comma)
        closing = error.doc[comma + 1:].lstrip()[0]
        problem += (f" (JSON has no trailing commas: remove the comma at line {line} column {column}, "
                    f"before {closing!r})")
    return problem


def _trailing_comma(doc: str, pos: int) -> int | None:
    """Where the comma is that ends an object or a list of ``doc`` before its '}' or ']', if the parser stopped at
    one or the other (Python before 3.13 stops at the bracket, later ones at the comma); None otherwise."""
    comma = pos if doc[pos:pos + 1] == "," else len(doc[:pos].rstrip()) - 1
    if comma < 0 or doc[comma] != "," or not doc[comma + 1:].lstrip().startswith(("}", "]")):
        return None
    return comma


class _LongInteger(Exception):
    """An integer of a JSON text with more digits than ``int()`` converts (``sys.get_int_max_str_digits()``)."""

    def __init__(self, digits: str) -> None:
        super().__init__(digits)
        self.digits = digits
        length = len(digits.lstrip("-"))
        self.problem = f"an integer of {length} digits (expected at most {sys.get_int_max_str_digits()})"


class _RepeatedKey(Exception):
    """A key given twice in one object of a JSON text."""

    def __init__(self, key: str, pairs: list[tuple[str, Any]]) -> None:
        super().__init__(key)
        self.key = key
        self.pairs = pairs

    @property
    def place(self) -> str:
        """Which object, for its error (the parse knows no line): a step's by its name, another by its keys."""
        name = next((value for key, value in self.pairs if key == "name" and isinstance(value, str)), None)
        if name is not None:
            return f"the object named {quoted(name)}"
        keys = list(dict.fromkeys(key for key, _ in self.pairs))
        return f"the object of keys {', '.join(map(quoted, keys[:6]))}{', ...' if len(keys) > 6 else ''}"


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object of a JSON text (json.loads's object_pairs_hook); a key given twice stops the parse, where json would
    keep the last in silence (a second ``consumer_conf`` hid the first)."""
    document: dict[str, Any] = {}
    for key, value in pairs:
        if key in document:
            raise _RepeatedKey(key, pairs)
        document[key] = value
    return document


def _integer(digits: str) -> int:
    """An integer of a JSON text (json.loads's parse_int); one too long for ``int()`` stops the parse."""
    try:
        return int(digits)
    except ValueError:  # the digits are those of a JSON number: only their count can be wrong
        raise _LongInteger(digits) from None


def _too_deep(document: dict[str, Any]) -> str | None:
    """The top-level key under which ``document`` nests deeper than MAX_DEPTH, or None.

    A loop, not a recursion: the point is to refuse what would exhaust the stack.
    """
    pending: list[tuple[Any, int, str]] = [(value, 1, key) for key, value in document.items()]
    while pending:
        node, depth, key = pending.pop()
        if depth > MAX_DEPTH:
            return key
        pending += [(child, depth + 1, key) for child in _children(node)]
    return None


def _children(node: Any) -> Iterator[Any]:
    if isinstance(node, dict):
        yield from node.values()
    elif isinstance(node, list):
        yield from node


def _run_call_problem(cls: type[Component], kind: str) -> str | None:
    """Why ``cls.run`` cannot be called as a step of ``kind`` calls it (a producer ``run()``, the others ``run(msg)``),
    found before any step runs rather than as a TypeError at each message (or, async, a coroutine that no one
    awaits); None if it can, or cannot be told."""
    expected = "run(self), a generator of its messages" if kind == "producer" else "run(self, msg)"
    if not callable(cls.run):
        return f"run is {cls.run!r:.40} ({_type_name(cls.run)}), not a method (expected {expected})"
    if inspect.iscoroutinefunction(cls.run) or inspect.isasyncgenfunction(cls.run):
        return f"run() is async def: steps run without an event loop, none would await it (expected {expected})"
    try:
        signature = inspect.signature(cls.run)
    except (TypeError, ValueError):  # no signature to read (a run() written in C): as it comes
        return None
    static = inspect.getattr_static(cls, "run")
    # Only what binds an instance takes self: a function (a lambda too) or a partialmethod; not a staticmethod, a
    # classmethod (bound to the class), a functools.partial nor a callable object (a valid partial was refused).
    bound = inspect.isfunction(static) or isinstance(static, functools.partialmethod)
    arguments = (None,) * (bound + (kind != "producer"))  # self, unless static or bound to the class; the message
    try:
        signature.bind(*arguments)
    except TypeError:
        bare = signature.replace(parameters=[parameter.replace(annotation=inspect.Parameter.empty)
                                             for parameter in signature.parameters.values()],
                                 return_annotation=inspect.Signature.empty)  # as written, without its types
        return f"run{bare} cannot be called as a {kind}'s run() (expected {expected})"
    return None


def _child_classes_problem(cls: type[Configurable], name: str) -> str | None:
    """Why the ``child_classes`` of ``cls`` (named ``name``), or of a class they list, is not a tuple of Configurable
    classes, found before the loader walks them (a one-item tuple without its comma is the class itself, which no loop
    takes); None if they are."""
    for owner, children in _child_lists(cls):
        named = name if owner is cls else f"{owner.__module__}.{owner.__qualname__}"
        if not isinstance(children, tuple | list):
            hint = f" (a tuple of one class needs its comma: ({children.__name__},))" if _configurable_class(
                children) else ""
            return f"{named}.child_classes: expected a tuple of Configurable classes, got {_described(children)}{hint}"
        for i, child in enumerate(children):
            if not _configurable_class(child):
                return (f"{named}.child_classes: expected a tuple of Configurable classes, got {_described(child)} "
                        f"at [{i}]")
    return None


def child_classes(cls: type[Configurable]) -> list[type[Configurable]]:
    """The classes a step's objects build as children: its ``child_classes``, theirs, and so on, each once, in order
    (as the loader checked them)."""
    return [owner for owner, _ in _child_lists(cls)][1:]


def _child_lists(cls: type[Configurable]) -> Iterator[tuple[type[Configurable], Any]]:
    """``cls`` and each class its ``child_classes`` list (and theirs, and so on), once each in order, with what its
    own ``child_classes`` holds (checked or not: only the Configurable classes in a list or tuple are followed)."""
    seen = {cls}
    waiting = deque([cls])
    while waiting:
        owner = waiting.popleft()
        children = getattr(owner, "child_classes", ())
        yield owner, children
        for child in children if isinstance(children, tuple | list) else ():
            if _configurable_class(child) and child not in seen:
                seen.add(child)
                waiting.append(child)


def _hidden_attribute(cls: type[Component]) -> str | None:
    """The first trait of ``cls`` named as an attribute of Component (its own traits aside), or None."""
    own = Component.class_traits()
    return next((name for name, trait in cls.class_traits().items()
                 if name in reserved_names() and trait is not own.get(name)), None)


def _configurable_class(value: Any) -> bool:
    return isinstance(value, type) and issubclass(value, Configurable)


def _described(value: Any) -> str:
    """A value given where a class was expected, as an error names it."""
    if isinstance(value, type):
        return f"the class {value.__module__}.{value.__qualname__}"
    if isinstance(value, TraitType):  # a trait named child_classes hides Component's attribute
        return f"a trait {_type_name(value)} (child_classes is Component's own attribute: rename the trait)"
    if isinstance(value, Configurable):
        return f"a {_type_name(value)} object (expected its class, not an instance: {_type_name(value)})"
    return f"{_type_name(value)} {shown(value)}"


def _expected(trait: Any) -> str:
    """What a trait accepts, with its bounds (trait.info() leaves them out), and a container's length."""
    limits = (("at least", getattr(trait, "min", None)), ("at most", getattr(trait, "max", None)))
    bounds = [f"{word} {limit}" for word, limit in limits if limit is not None and abs(limit) != float("inf")]
    if isinstance(trait, List | Set):
        lengths = (("at least", trait._minlen if trait._minlen > 0 else None),
                   ("at most", trait._maxlen if trait._maxlen < sys.maxsize else None))
        bounds += [f"{word} {length} elements" for word, length in lengths if length is not None]
    elif isinstance(trait, Tuple) and trait._traits:
        bounds.append(f"{len(trait._traits)} elements")
    return trait.info() + (f" ({', '.join(bounds)})" if bounds else "")


def _element_problem(trait: Any, value: Any, where: str = "",
                     refused: Callable[[Any, Any], bool] = lambda trait, value: not _fits(trait, value)) -> str | None:
    """For a value of the right container type (traitlets' List, Set, Tuple or Dict, not a library's subclass) one of
    whose elements, keys or values the trait ``refused``: ``expected a list whose elements are each an int, got str
    'a' at [1]``, at any depth (``at [0][1]``), with the nearest choice of an enum's; None otherwise."""
    if type(trait).__module__.split(".")[0] != "traitlets":
        return None
    members: list[tuple[str, Any, Any, str]] = []  # (where, trait, value, what the trait asks of it)
    if isinstance(trait, List | Set) and isinstance(value, list | tuple | set) and trait._trait is not None:
        index = isinstance(value, list | tuple)  # a set's elements have no place to name
        members = [(f"[{i}]" if index else "", trait._trait, item, f"whose elements are each {_expected(trait._trait)}")
                   for i, item in enumerate(value)]
    elif isinstance(trait, Tuple) and isinstance(value, list | tuple) and len(value) == len(trait._traits):
        members = [(f"[{i}]", element, item, f"whose element [{i}] is {_expected(element)}")
                   for i, (element, item) in enumerate(zip(trait._traits, value, strict=True))]
    elif isinstance(trait, Dict) and isinstance(value, Mapping):
        per_key = trait._per_key_traits or {}
        for key, item in value.items():
            if trait._key_trait is not None:
                members.append((f" (the key {shown(key)})", trait._key_trait, key,
                                f"whose keys are each {_expected(trait._key_trait)}"))
            element = per_key.get(key, trait._value_trait)
            if element is not None:
                whose = f"whose value {shown(key)} is" if key in per_key else "whose values are each"
                members.append((f"[{shown(key)}]", element, item, f"{whose} {_expected(element)}"))
    for place, element, item, asked in members:
        if refused(element, item):
            inner = _element_problem(element, item, where + place, refused)
            at = f" at {where}{place}" if place.startswith("[") or where else place
            near = _did_you_mean(item, element.values or ()) if isinstance(element, Enum) and isinstance(
                item, str) else ""
            return inner or f"expected {_expected(trait)} {asked}, got {_type_name(item)} {shown(item)}{at}{near}"
    return None


def _did_you_mean(word: str, choices: Iterable[Any]) -> str:
    """`` (did you mean 'beta'?)`` for the nearest of the text ``choices``; "" if none is near."""
    near = nearest(word, [choice for choice in choices if isinstance(choice, str)])
    return "" if near is None else f" (did you mean {quoted(near)}?)"


def _type_name(value: Any) -> str:
    return type(value).__name__


class _Validator:
    """Walks a config document once, raising the first problem as a ConfigError."""

    def __init__(self, source: str, settings: list[type[Configurable]], overrides_source: str = COMMAND_LINE) -> None:
        self.source = source
        self.overrides_source = overrides_source
        self.settings = {cls.__name__: cls for cls in settings}
        self.classes: dict[str, type[Configurable]] = {}  # the sections a file may hold, by name
        self.owners: dict[str, list[str]] = {}  # for a child class (Component.child_classes): its steps
        self.built: dict[str, StepConfig] = {}  # the steps, once read

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.source, key, problem)

    def validate(self, document: Any, overrides: Config) -> PipelineConfig:
        if not isinstance(document, dict):
            raise self.error("", f"expected a JSON object at the top level, got {_type_name(document)}")
        deep = _too_deep(document)
        if deep is not None:
            raise self.error(deep, f"nested too deeply (expected at most {MAX_DEPTH} levels of objects and lists)")
        version = document.get("version", 1)
        if type(version) is not int or version != 1:
            raise self.error("version", f"expected 1, got {shown(version)}")
        if FLOW_SECTION in document:
            # Every ctapipe flow config names its section "Flow": say the one edit it needs.
            also = "" if "Pipeline" not in document else " (this config has both: keep one)"
            raise self.error(FLOW_SECTION, f"{FLOW_SECTION_EDIT}{also}")
        if "Pipeline" not in document:
            misnamed = nearest("Pipeline", [key for key in document if key != "version"])
            if misnamed is not None:  # "pipeline", "Pipline": the section is there, named otherwise
                raise self.error(misnamed, "unknown section: not a step class of this pipeline"
                                 + suggest(misnamed, ["Pipeline"]))
            raise self.error("Pipeline", "missing section (expected producer_conf, stagers_conf, consumer_conf)")
        section = document["Pipeline"]
        if not isinstance(section, dict):
            raise self.error("Pipeline", f"expected an object, got {_type_name(section)}")
        leftover = flow_leftover(section)  # the next edit a ctapipe flow config needs, said as such
        if leftover is not None:
            raise self.error(f"Pipeline.{leftover[0]}", leftover[1])
        steps, linear = self.steps(section)
        check_graph(self.source, steps)
        config = Config()
        settings_traits = {k: v for k, v in section.items() if k not in SECTIONS}
        if settings_traits:
            # steps() let through only the traits of the settings classes, so "Pipeline" is one of them
            config["Pipeline"] = self.section("Pipeline", self.settings["Pipeline"], settings_traits)
        classes = self.classes = self.configurable_classes(steps)
        for key, values in document.items():
            if key in ("version", "Pipeline"):
                continue
            if key not in classes:
                hint = self.misplaced(key, list(steps.values())) or suggest(key, [*classes, PIPELINE])
                raise self.error(key, "unknown section" + (_unlisted(key) or ": not a step class of this pipeline"
                                                           + hint))
            if not names_a_class(key):  # traitlets takes such a key for an option: the section would set nothing
                raise self.error(key, f"traitlets cannot configure the class {quoted(key)}: it takes a name that does "
                                      "not begin with a capital letter for an option (expected a class whose name "
                                      "begins with a capital letter: rename the class)")
            if not isinstance(values, dict):
                raise self.error(key, f"expected an object of trait values, got {_type_name(values)}")
            config[key] = self.section(key, classes[key], values)
        for step in steps.values():
            self.section(f"{step.key}.config", step.cls, step.traits, step=step)
        overrides = self.overrides(overrides, classes)
        config.merge(overrides)
        return PipelineConfig(self.source, steps, config, overrides, linear, overrides_source=self.overrides_source)

    def steps(self, section: dict[str, Any]) -> tuple[dict[str, StepConfig], bool]:
        """The steps of the ``Pipeline`` section, and whether they were chained in list order."""
        for required in ("producer_conf", "consumer_conf"):
            if required not in section:
                self.unknown_pipeline_key(section, [])  # a misspelt "producer_conf" is the fault to name
                raise self.error(f"Pipeline.{required}", "missing required key")
        stagers = section.get("stagers_conf", [])
        if not isinstance(stagers, list):
            raise self.error("Pipeline.stagers_conf", f"expected a list of steps, got {_type_name(stagers)}")
        entries = [("producer", "Pipeline.producer_conf", section["producer_conf"])]
        entries += [("stager", f"Pipeline.stagers_conf[{i}]", s) for i, s in enumerate(stagers)]
        entries.append(("consumer", "Pipeline.consumer_conf", section["consumer_conf"]))
        # As in the first ctapipe pipeline: without any next_steps, the steps run in list order.
        linear = not any(isinstance(entry, dict) and "next_steps" in entry for kind, _, entry in entries[:-1])
        steps: dict[str, StepConfig] = {}
        shown_as: dict[str, StepConfig] = {}  # by their names as they are shown: é of one code point or of two alike
        for kind, key, entry in entries:
            step = self.step(kind, key, entry)
            if step.name in steps:
                raise self.error(f"{key}.name", f"duplicate step name {step.name!r} (also at {steps[step.name].key})")
            alike = shown_as.setdefault(as_shown(step.name), step)
            if alike is not step:  # the report, the monitor and pipeline-worker --step could not tell them apart
                raise self.error(f"{key}.name", f"step name {step.name!a} looks the same as {alike.name!a} (at "
                                 f"{alike.key}), written with other code points (expected names that look different)")
            steps[step.name] = step
        # Said once every step's class is imported, for a step's option may be where such a key belongs.
        built = list(steps.values())
        self.unknown_pipeline_key(section, built)
        for step, (_, key, entry) in zip(built, entries, strict=True):
            self.unknown_step_key(key, entry, built, step)
        if linear:
            return self.chain(steps), True
        producer = next(iter(steps.values()))
        if not producer.next_steps:
            raise self.error(
                f"{producer.key}.next_steps",
                "missing: the producer must send to at least one step "
                "(or leave next_steps out of every step to chain the steps in list order)",
            )
        return steps, False

    def unknown_pipeline_key(self, section: dict[str, Any], steps: list[StepConfig]) -> None:
        """Refuse a key that the ``Pipeline`` section does not take, saying where it belongs among ``steps``."""
        for name in section:
            if name not in SECTIONS and name not in self.run_keys:
                hint = self.misplaced(name, steps) or self.near_step_key(name, steps, source=None)
                hint = hint or _run_key_hint(name, self.run_keys)
                raise self.error(f"{PIPELINE}.{name}", "unknown key" + hint)

    def unknown_step_key(self, key: str, entry: dict[str, Any], steps: list[StepConfig],
                         step: StepConfig | None = None) -> None:
        """Refuse a key that the step ``entry`` (at ``key``, read as ``step``) does not take, saying where it belongs
        among ``steps``."""
        for name in entry:
            if name not in STEP_KEYS:
                hint = self.misplaced(name, steps, [step] if step else []) or suggest(name, STEP_KEYS)
                raise self.error(f"{key}.{name}", "unknown key" + hint)

    def near_step_key(self, name: str, steps: Sequence[StepConfig], source: str | None) -> str:
        """For an unknown key of the run (``processes``) whose nearest among the run's keys and the steps' is a step's
        (``nb_process``): that key and where it goes (spelling among the run's keys alone said ``progress``); "" if
        another is nearer."""
        near = nearest(name, [*SECTIONS, *self.run_keys, *STEP_KEYS])
        if near not in STEP_KEYS:
            return ""
        return f" (did you mean {quoted(near)}? {self.home_of(near, steps, source=source)})"

    @property
    def run_keys(self) -> set[str]:
        """The options of the framework's settings classes, which the ``Pipeline`` section takes."""
        return {name for cls in self.settings.values() for name in cls.class_traits(config=True)}

    def misplaced(self, name: str, steps: Sequence[StepConfig], here: Sequence[StepConfig] = (),
                  source: str | None = None) -> str:
        """`` (...)``: where ``name``, found in a place of ``source`` that does not take it, belongs (home_of), as its
        error ends; "" if nowhere."""
        home = self.home_of(name, steps, here, source)
        return f" ({home})" if home else ""

    def home_of(self, name: str, steps: Sequence[StepConfig], here: Sequence[StepConfig] = (),
                source: str | None = None) -> str:
        """Where ``name``, found in a place of ``source`` that does not take it, belongs among the run keys, the step
        keys, ``steps`` and their classes: words for its error ("" if nowhere); ``here``: the steps of that place."""
        owners: dict[tuple[type[Configurable], bool], list[str]] = {}
        for step in steps:
            owners.setdefault((step.cls, False), []).append(step.name)
        for step in steps:
            for child in child_classes(step.cls):
                owners.setdefault((child, True), []).append(step.name)
        homes = [Home(cls, tuple(names), child) for (cls, child), names in owners.items()]
        return belongs(name, homes, self.run_keys, here, source or self.source, source in (None, self.source))

    def chain(self, steps: dict[str, StepConfig]) -> dict[str, StepConfig]:
        """The steps linked in config order: each one's next step is the one after it."""
        names = list(steps)
        log.info("%s: no step has next_steps: the steps run as a linear chain in list order: %s",
                 self.source, path_text(names))
        return {
            name: dataclasses.replace(step, next_steps=tuple(names[i + 1 : i + 2]))
            for i, (name, step) in enumerate(steps.items())
        }

    def step(self, kind: str, key: str, entry: Any) -> StepConfig:
        """One step's keys, checked by the traits of StepKeys and the rules of its kind."""
        if not isinstance(entry, dict):
            raise self.error(key, f"expected an object describing a step, got {_type_name(entry)}")
        if FLOW_PORTS_KEY in entry:  # a ctapipe flow step's, said as the edit it needs
            raise self.error(f"{key}.{FLOW_PORTS_KEY}", FLOW_PORTS_EDIT)
        for name in REQUIRED_STEP_KEYS:
            if name not in entry:
                self.unknown_step_key(key, entry, [])  # a misspelt "class" is the fault to name
                raise self.error(f"{key}.{name}", "missing required key")
        keys = StepKeys()
        for name, value in entry.items():
            if name not in STEP_KEYS:
                continue  # said once every step's class is known, with where the key belongs
            try:
                keys.set_key(name, value)
            except ValueProblem as err:
                raise self.error(f"{key}.{name}", str(err)) from None
        problem = role_problem(kind, keys) or workers_problem(keys)
        if problem is not None:
            raise self.error(f"{key}.{problem[0]}", problem[1])
        cls = self.component_class(key, keys.module, keys.class_)
        if cls.run is Component.run:
            raise self.error(f"{key}.class", f"{keys.module}.{keys.class_} defines no run() (expected a Component "
                             f"subclass with a run() for the {kind}'s work)")
        called = _run_call_problem(cls, kind)
        if called is not None:
            raise self.error(f"{key}.class", f"{keys.module}.{keys.class_}.{called}")
        children = _child_classes_problem(cls, f"{keys.module}.{keys.class_}")
        if children is not None:
            raise self.error(f"{key}.class", children)
        hidden = _hidden_attribute(cls)
        if hidden is not None:  # its value would replace Component's, or Component's would fail it: at run time
            raise self.error(f"{key}.class", f"{keys.module}.{keys.class_}: the trait {hidden!r} takes the name of an "
                             "attribute of pipeline.Component, which it would hide (expected a name Component does "
                             "not use: rename the trait)")
        if kind == "producer" and keys.nb_process > 1 and not cls.shardable:
            raise self.error(f"{key}.nb_process", f"a producer in {keys.nb_process} worker processes runs "
                             f"{keys.nb_process} shards, each of which must read only its share of the input: "
                             f"{keys.module}.{keys.class_} does not say it can (expected 0 or 1, or a class with "
                             "shardable = True that reads self.shard and self.n_shards)")
        if cls.one_worker and (keys.nb_thread != 1 or keys.nb_process > 1):
            blamed = "nb_thread" if keys.nb_thread != 1 else "nb_process"
            raise self.error(f"{key}.{blamed}", f"{keys.module}.{keys.class_} runs in one worker: its instances would "
                             f"share one resource such as its output file (expected nb_thread 1 and nb_process 0 or 1, "
                             f"got {keys.get_key(blamed)})")
        return StepConfig(
            name=keys.name,
            kind=kind,
            cls=cls,
            module=keys.module,
            next_steps=keys.next_steps,
            nb_thread=keys.nb_thread,
            nb_process=keys.nb_process,
            queue_limit=keys.queue_limit,
            ordered=keys.ordered,
            on_error=keys.on_error,
            traits=keys.config,
            key=key,
            attribute=keys.class_,
        )

    def component_class(self, key: str, module_name: str, class_name: str) -> type[Component]:
        try:
            module = importlib.import_module(module_name)
        except KeyboardInterrupt:
            raise
        except BaseException as err:  # an ImportError, any error the module raises while importing, its sys.exit()
            # Chained: with --debug the traceback shows the module's own frames under the error.
            raise self.error(f"{key}.module", import_problem(module_name, err) + self.beside(module_name, err)) from err
        cls = getattr(module, class_name, None)
        if cls is None:
            components = [
                n for n, v in vars(module).items() if isinstance(v, type) and issubclass(v, Component)
            ]
            raise self.error(
                f"{key}.class", f"module {quoted(module_name)} has no class {quoted(class_name)}"
                + suggest(class_name, components) + hidden_file(module_name, module)
            )
        if not (isinstance(cls, type) and issubclass(cls, Component)):
            raise self.error(f"{key}.class", f"{module_name}.{class_name} is not a pipeline.Component subclass "
                             "(expected pipeline's Component as its base class: from pipeline import Component)")
        return cls

    def beside(self, module_name: str, error: BaseException) -> str:
        """Why a step module beside the config file was not found: step modules come from sys.path, where the config's
        folder is not ("" if that is not the case)."""
        if not isinstance(error, ModuleNotFoundError) or error.name != module_name.split(".", 1)[0]:
            return ""
        folder = Path(self.source).parent if self.source != DICT_SOURCE else None
        if folder is None or folder.resolve() == Path.cwd().resolve():
            return ""
        there = module_file(module_name, folder)
        if not os.path.isfile(there):  # not pathlib's is_file(), which raises for a name too long for the system
            return ""
        return f" (there is {there} beside the config, but {not_imported_from(folder)})"

    def configurable_classes(self, steps: dict[str, StepConfig]) -> dict[str, type[Configurable]]:
        """Sections the file may hold: each step class and its configurable bases, then the classes
        that steps create as children (``Component.child_classes``) and their configurable bases."""
        self.built = steps
        classes: dict[str, type[Configurable]] = {}
        for step in steps.values():
            for base in step.cls.__mro__:
                if isinstance(base, type) and issubclass(base, Component):
                    classes.setdefault(base.__name__, base)
        for step in steps.values():
            for child in child_classes(step.cls):
                for base in child.__mro__:
                    taken = classes.get(base.__name__, base) is not base  # ctapipe's Component: ours keeps the name
                    if taken or not _library_configurable(base):
                        continue
                    classes[base.__name__] = base
                    owners = self.owners.setdefault(base.__name__, [])
                    if step.name not in owners:
                        owners.append(step.name)
        return classes

    def builds(self, outer: type[Configurable], inner: type[Configurable]) -> bool:
        """Whether a section of ``inner`` nested in one of ``outer`` can apply: traitlets applies it to the objects of
        ``inner`` whose parent is of ``outer``, so ``inner`` must be a child class of a step that is, or builds, an
        ``outer`` (another step's class there would be a setting that does nothing)."""
        steps = {step.name for step in self.built.values() if issubclass(step.cls, outer)}
        steps.update(self.owners.get(outer.__name__, ()))
        return not steps.isdisjoint(self.owners.get(inner.__name__, ()))

    def owner_note(self, cls: type[Configurable]) -> str:
        """For a child class, the words that say whose it is: " (ctapipe.io.EventSource, of step READER)"."""
        owners = self.owners.get(cls.__name__)
        if not owners or self.classes.get(cls.__name__) is not cls:
            return ""
        steps = f"step {owners[0]}" if len(owners) == 1 else f"steps {', '.join(owners)}"
        return f" ({cls.__module__}.{cls.__qualname__}, of {steps})"

    def section(
        self, key: str, cls: type[Configurable], values: Mapping[str, Any], source: str | None = None,
        step: StepConfig | None = None,
    ) -> Config:
        """Check each trait value of a section against ``cls``; ``source`` names where they came from, ``step`` the
        step whose ``config`` they are (else they are for each step of ``cls``, or that builds it)."""
        source = source or self.source
        traits = cls.class_traits(config=True)
        note = self.owner_note(cls)
        values = dict(values)  # a command line's values, read for their traits, replace its strings
        for name, value in values.items():
            if name not in traits:
                nested = self.classes.get(name)
                if nested is not None and self.builds(cls, nested):
                    # traitlets applies a class section nested in another to that class's objects
                    # whose parent is of the outer class (ctapipe's configs nest them so)
                    if not isinstance(value, dict):  # a valid section with a wrong value: said as at the top level
                        raise ConfigError(source, f"{key}.{name}",
                                          f"expected an object of trait values, got {_type_name(value)}")
                    self.section(f"{key}.{name}", nested, value, source)
                    continue
                hint = suggest(name, traits)
                steps = list(self.built.values())
                here = [step] if step else [s for s in steps if issubclass(s.cls, cls)
                                            or s.name in self.owners.get(cls.__name__, ())]
                placed = self.misplaced(name, steps, here, source)
                capital = name[:1].upper() + name[1:]
                if name in LoggingConfigurable.class_traits():  # config, parent, log: traitlets' own
                    hint = placed or (f" ({quoted(name)} is an attribute traitlets gives every component, not an "
                                      "option)")
                elif name in cls.class_traits():  # the trait is there, but not an option
                    hint = f" (its trait {quoted(name)} is not tagged as one: declare it with .tag(config=True))"
                elif capital != name and capital in traits:  # one no file or command line can set
                    hint = (f" (its option {quoted(capital)} begins with a capital letter, which traitlets takes for "
                            "a class: no config file or command line can set it; rename the trait)")
                elif placed:
                    hint = placed
                elif cls is self.settings.get("Pipeline") and (step_key := self.near_step_key(name, steps, source)):
                    hint = step_key
                elif isinstance(value, dict) and name in {base.__name__ for base in cls.__mro__[1:]}:
                    hint = (f" ({name} is a base class of {cls.__name__}: {section_place(name, source)}, for every "
                            "class built on it)")
                elif isinstance(value, dict) and names_a_class(name):  # a section for a class this step does not list
                    nested_here = [other for other, nested in self.classes.items() if self.builds(cls, nested)]
                    # a misspelt class nested here is told its name, as one at the top level is
                    hint = _did_you_mean(name, nested_here) or (
                        f" (a section for a class its step builds: that class must be in the step's "
                        f"child_classes){hint if 'did you mean' in hint else ''}")
                raise ConfigError(source, f"{key}.{name}", f"{cls.__name__} has no option {quoted(name)}{note}{hint}")
            if names_a_class(name):  # traitlets takes it for a class section: every init() would fail on it
                raise ConfigError(source, f"{key}.{name}", f"traitlets cannot set the option {quoted(name)} of "
                                  f"{cls.__name__}: it takes a name that begins with a capital letter for a class "
                                  f"(expected an option whose name begins with a lowercase letter: rename the trait)")
            trait = traits[name]
            if isinstance(value, LazyConfigValue):
                continue
            # traitlets leaves a command line's value as a string where it could not read it (a known class's option)
            if isinstance(value, DeferredConfigString | DeferredConfigList) or (
                    source == COMMAND_LINE and isinstance(value, str)):
                value = values[name] = _from_command_line(trait, value)
            if value is None and trait.allow_none:
                continue  # traitlets lets None through before validate(), which would refuse it
            if _truth_for_number(trait, value):
                if isinstance(trait, Bool | Int | Float):
                    problem = f"expected {_expected(trait)}, got {_type_name(value)} {shown(value)}"
                else:  # inside a container or a union
                    problem = (_element_problem(trait, value, refused=_truth_for_number)
                               or f"expected {_expected(trait)}, got {_type_name(value)} {shown(value)}")
                    problem += " (a boolean for a number, or the reverse)"
                raise ConfigError(source, f"{key}.{name}", f"{problem}{note}")
            try:
                if isinstance(value, str) and cls in self.settings.values():  # the run's: paths, addresses, key files
                    check_encodable(value, _expected(trait), path=True)  # os.open of '\ud800' raised, past the checks
                _validate(trait, value)
            except ValueProblem as err:
                raise ConfigError(source, f"{key}.{name}", f"{err}{note}") from None
            # OverflowError: an integer too large for a Float trait; TypeError: a library trait's validate() meeting a
            # part of another type than it handles (ctapipe's TelescopeParameter takes len() of each pattern)
            except (TraitError, OverflowError, TypeError) as err:
                inside = _element_problem(trait, value)
                if inside is not None:  # traitlets' container said "expected a list" of a list
                    raise ConfigError(source, f"{key}.{name}", f"{inside}{note}") from None
                expected = _expected(trait)
                which = _unknown_choice(err, value, expected) or _part_problem(err, value)
                raise ConfigError(source, f"{key}.{name}",
                                  f"expected {expected}, got {_type_name(value)} {shown(value)}{which}{note}") from None
        return Config(values)

    def overrides(self, overrides: Config, classes: dict[str, type[Configurable]]) -> Config:
        """The command line's values, checked; an option given more than once takes its last value."""
        known = {**classes, **self.settings}
        settled = Config()
        source = self.overrides_source
        for section, values in overrides.items():
            written = option_key(source, section)  # as the user wrote it
            if section == FLOW_SECTION:  # --Flow.mode: ctapipe flow's, said as in a file
                raise ConfigError(source, written, FLOW_SECTION_EDIT)
            if section not in known:
                raise ConfigError(source, written, "unknown class" + (_unlisted(section) or suggest(section, known)))
            if not isinstance(values, Mapping):
                raise ConfigError(source, written, f"expected an object of trait values, got {_type_name(values)}")
            values = _last_wins(values)
            leftover = flow_leftover(values) if section == "Pipeline" else None  # --Pipeline.mode=multiprocessus
            if leftover is not None:
                raise ConfigError(source, f"{written}.{leftover[0]}", leftover[1])
            settled[section] = self.section(written, known[section], values, source=source)
        return settled


def _run_key_hint(name: str, run_keys: Collection[str]) -> str:
    """For a key the ``Pipeline`` section does not take: the nearest of its keys, else what it takes, in short (its run
    keys are too many for one line)."""
    more = " or a run key: see the configuration reference" if run_keys else ""
    return _did_you_mean(name, [*SECTIONS, *run_keys]) or f" (expected {', '.join(SECTIONS)}{more})"


def _last_wins(values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` of the command line, an option given twice (``--Counter.count=5 --Counter.count=6``)
    with its last value, as in most command lines (a list or dict option too: one Python literal).

    traitlets collects the values of an option it does not know at parse time into a list, which a
    trait of one value refuses; one value in that list is read as the option given once. A dict, not a Config:
    a Config refuses a class section's non-object value with a ValueError, which section() says as a ConfigError.
    """
    settled: dict[str, Any] = {}
    for name, value in values.items():
        settled[name] = type(value)(value[-1:]) if isinstance(value, DeferredConfigList) else value
    return settled


def _check_text_keys(source: str, tree: Any) -> None:
    """A ConfigError naming ``source`` and the dict of ``tree`` (a config or overrides from Python) that has a key that
    is no string, as JSON's always are (traitlets and the suggestions raised a raw TypeError). A loop over a stack:
    any depth is read."""
    stack: list[tuple[str, Any]] = [("", tree)]
    while stack:
        path, node = stack.pop()
        if isinstance(node, Mapping):
            for key, value in node.items():
                if not isinstance(key, str):
                    raise ConfigError(source, path, f"expected text keys, as in JSON, got {type(key).__name__} {key!r}")
                stack.append((f"{path}.{key}" if path else key, value))
        elif isinstance(node, list | tuple):
            stack.extend((f"{path}[{i}]", item) for i, item in enumerate(node))


def _from_command_line(trait: Any, value: DeferredConfigString | DeferredConfigList | str) -> Any:
    """The value of a command-line option for ``trait``: a container's (list, set, tuple, dict) is one Python literal
    (``--T.ids=[1, 2]``) or one item (``--T.ids=1``), which traitlets' own conversion left a string; a scalar's is
    read by the trait; an int's may be written as a float of an integer's value (``--T.count=4e9``), as in a file."""
    if not hasattr(trait, "from_string_list"):
        if isinstance(value, DeferredConfigList):
            return value
        read = value.get_value(trait) if isinstance(value, DeferredConfigString) else value
        if isinstance(read, str) and isinstance(trait, Int):
            with contextlib.suppress(ValueError):
                number = float(read)
                if math.isfinite(number):  # the trait takes it if its value is an integer's (traitlets' Int.validate)
                    return number
        return read
    text = str(value[-1]) if isinstance(value, DeferredConfigList) else str(value)
    if text.lstrip()[:1] in ("[", "(", "{"):
        with contextlib.suppress(ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            return ast.literal_eval(text)
    try:
        return trait.from_string_list([text])
    except (TraitError, ValueError):
        return text  # refused with the others: "expected a list, got str ..."


#: The words of a ctapipe telescope pattern (["type", "*", "NAME"]) that are no name of a choice.
_PATTERN_WORDS = ("type", "id", "*")
#: Items of a value looked at for the name that is none of a trait's choices.
MAX_CHOICE_WORDS = 1000
#: How traitlets and ctapipe say which names a value may take (ctapipe's ComponentName: "Any of ['A', 'B']").
_CHOICES = re.compile(r"[Aa]ny of (\[[^\]]*\])")


def _unknown_choice(error: Exception, value: Any, expected: str) -> str:
    """``: 'X' is none of A, B (did you mean 'A'?)`` for a value, or a list or telescope pattern list holding one, that
    names none of the choices the trait's error lists (ctapipe's component names: their own error was replaced by
    "expected a TelescopePatternList, got TelescopePatternList [...]"); "" otherwise."""
    found = _CHOICES.search(" ".join(map(str, error.args)))
    if found is None or found.group(1) in expected:  # none said, or said already by what the trait expects
        return ""
    try:
        choices = ast.literal_eval(found.group(1))
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        return ""
    if not isinstance(choices, list) or not all(isinstance(choice, str) for choice in choices):
        return ""
    words: deque[Any] = deque([value])
    for _ in range(MAX_CHOICE_WORDS):  # a value from a file may hold any number of items: look at the first few
        if not words:
            break
        word = words.popleft()
        if isinstance(word, Iterable) and not isinstance(word, str | bytes | Mapping):
            words.extend(word)  # a list, or ctapipe's TelescopePatternList of [kind, pattern, name]
        elif isinstance(word, str) and word not in choices and word not in _PATTERN_WORDS:
            return f": {quoted(word)} is none of {', '.join(choices)}" + _did_you_mean(word, choices)
    return ""


def _part_problem(error: Exception, value: Any) -> str:
    """``: 'ten' is not a float`` for the part of ``value`` that a library trait's error names (ctapipe's
    TelescopeParameter checks each pattern's value with a trait of its own, whose error carries that part), or
    ``: command must be one of: 'type', 'id'`` for its sentence about a part; "" for traitlets' own sentences, about
    the whole value (they name the trait, which the message says already)."""
    args = error.args if isinstance(error, TraitError) else ()
    if len(args) == 3 and isinstance(args[1], str) and args[0] is not value:
        return f": {shown(args[0])} is not {args[1]}"
    if len(args) == 1 and isinstance(args[0], str) and "trait" not in args[0]:
        return f": {args[0]}"
    return ""


def _truth_for_number(trait: Any, value: Any) -> bool:
    """Whether ``value`` is, or holds, a boolean for a number or a number for a boolean, which traitlets takes
    (``"count": true`` as 1, ``"verbose": 1`` as true, ``"ids": [true]`` as [1]) and a JSON file means otherwise:
    in the elements of a list, set, tuple or dict option too, for a union whose every alternative misreads it, and
    for an enum whose every choice equal to it is the other kind (``true`` taken for a choice ``1``)."""
    if isinstance(trait, Bool):
        return isinstance(value, int | float) and not isinstance(value, bool)
    if isinstance(trait, Int | Float):
        return isinstance(value, bool)
    if isinstance(trait, Enum) and isinstance(value, int | float):
        equal = [choice for choice in trait.values if isinstance(choice, int | float) and choice == value]
        return bool(equal) and all(isinstance(choice, bool) != isinstance(value, bool) for choice in equal)
    if isinstance(trait, Union):
        fitting = [alternative for alternative in trait.trait_types if _fits(alternative, value)]
        return bool(fitting) and all(_truth_for_number(alternative, value) for alternative in fitting)
    if isinstance(trait, Tuple) and isinstance(value, list | tuple):
        return any(_truth_for_number(element, item) for element, item in zip(trait._traits, value, strict=False))
    if isinstance(trait, List | Set) and isinstance(value, list | tuple) and trait._trait is not None:
        return any(_truth_for_number(trait._trait, item) for item in value)
    if isinstance(trait, Dict) and isinstance(value, dict) and trait._value_trait is not None:
        return any(_truth_for_number(trait._value_trait, item) for item in value.values())
    return False


def _fits(trait: Any, value: Any) -> bool:
    """Whether ``trait`` takes ``value`` (as traitlets would, misread or not)."""
    try:
        _validate(trait, value)
    except (TraitError, ValueProblem, OverflowError, TypeError):  # TypeError: a library trait's, as section() says
        return False
    return True


#: Container traits validate their elements against an instance; any HasTraits will do.
_PROBE = HasTraits()


def _validate(trait: Any, value: Any) -> None:
    """Raise what ``trait`` says of ``value``, as traitlets would: a trait that takes anything (``Any``) has no
    ``validate``, and traitlets then takes the value as it is. Whatever else a library trait's validate() raises is
    a ValueProblem naming it: ctapipe's Path downloads a URL, and requests' ConnectionError escaped as a traceback."""
    if not hasattr(trait, "validate"):
        return
    try:
        trait.validate(_PROBE, value)
    except (TraitError, OverflowError, TypeError):  # said by the callers, with the part of the value refused
        raise
    except Exception as err:  # any library's error: requests', OSError, ValueError
        said = " ".join(error_text(err).split())  # one line, as a config error is
        raise ValueProblem(f"expected {_expected(trait)}, got {_type_name(value)} {shown(value)} "
                           f"({type(err).__name__}: {said})") from err


def _library_configurable(cls: type) -> bool:
    """Whether a base class of a child class may have a section: a Configurable that is not traitlets' own."""
    return isinstance(cls, type) and issubclass(cls, Configurable) and cls.__module__.split(".")[0] != "traitlets"


def _unlisted(name: str) -> str:
    """For a section named ``name`` that no step takes: the words naming a library class of that name, which a step's
    module or a library it imports has loaded, as one that no step lists in its child_classes; "" if none is loaded.
    A step class (pipeline's Component) is left out: its section is for a step this pipeline does not have."""
    for sub in subclasses(Configurable):
        if sub.__name__ == name and issubclass(sub, Application):  # PipelineRun: --help-all lists its options
            return (f": {name} is the command's own class (expected its options on the command line, such as "
                    "--log-level=INFO: a config file names the pipeline's steps)")
        if sub.__name__ == name and _library_configurable(sub) and not issubclass(sub, Component):
            return (f": {sub.__module__}.{sub.__qualname__} is in no step's child_classes (expected the class in "
                    "the child_classes of the step that builds it)")
    return ""
