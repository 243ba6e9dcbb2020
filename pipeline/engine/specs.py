"""What a worker process is given: its spec, with the run's options its steps need, checked before it goes.

A spec travels pickled (a file a local worker process reads, a frame a remote worker receives) and is unpickled by a
process that imports every class and function it names. An option's value that pickle cannot copy (a lambda, a
closure, an open file), or that names a class or function of a module a process started afresh cannot import (the
running script, ``__main__``; a module made in memory, as a notebook may make one), fails there: each worker process
died in turn with a traceback, or the run stopped on an internal error. Such a value of a step in worker processes is
refused before the run starts, in one line naming the option (a remote worker asking for the step is refused with that
line); the options of the other steps' classes are left out of the spec when they could not go (a lambda given to a
step in threads, beside a step in worker processes, which never reads it).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import pickle
import sys
import types
from collections.abc import Mapping
from typing import Any

from traitlets.config import Config

from pipeline.config.model import PipelineConfig
from pipeline.engine.control import RunControl
from pipeline.engine.worker_process import Spec
from pipeline.errors import ConfigError


def spec_for(config: PipelineConfig, name: str, work: str, control: RunControl, members: tuple[str, ...] = (),
             afresh: str = "") -> Spec:
    """What a worker process of step ``name`` (and of the fused steps ``members`` after it) runs, its router at ``work``
    (the door's for a remote one); ``afresh``: why the process does not start as a fork of this one ("": it does).
    Classes go by name: the worker process imports them. A ConfigError naming the step or option that the process
    could not be given."""
    own = (name, *members)
    steps = {each: dataclasses.replace(config.steps[each], cls=None) for each in own}
    for each in own:
        step = config.steps[each]
        if afresh and (where := unimportable(step.module)) is not None:
            raise ConfigError(config.source, step.key, f"step {each}: its class {step.class_name} is defined in "
                              f"{where}, which worker processes that start afresh cannot import ({afresh}): define it "
                              "in a module, or run the step in threads")
        for option, value in step.traits.items():
            if (problem := unsendable(value, afresh)) is not None:
                raise ConfigError(config.source, f"{step.key}.config.{option}", _given_problem(name, problem))
    read = {klass.__name__ for each in own for klass in config.steps[each].cls.__mro__}
    others = {step.class_name for step in config.steps.values()} - read
    options = control.options
    sent = dataclasses.replace(config, steps=steps, config=_sendable(config, config.config, name, others, afresh),
                               overrides=_sendable(config, config.overrides, name, others, afresh))
    return Spec(sent, name, config.steps[name].module, config.steps[name].import_name, work,
                options.heartbeat_interval, options.heartbeat_liveness,
                logging.getLogger("pipeline").getEffectiveLevel(), members,
                {each: config.steps[each].import_name for each in members}, options.keep_freed_memory,
                options.allow_failures)


def _sendable(config: PipelineConfig, sections: Config, name: str, others: set[str], afresh: str) -> Config:
    """``sections`` (the config's, or its overrides) without the options of ``others`` (classes of other steps only)
    that could not go; a ConfigError naming the first option of any other section that could not."""
    kept = Config()
    for section, settings in sections.items():
        if not isinstance(settings, Mapping):
            kept[section] = settings
            continue
        kept[section] = Config()
        for option, value in settings.items():
            problem = unsendable(value, afresh)
            if problem is None:
                kept[section][option] = value
            elif section not in others:
                raise ConfigError(*config.setting_source(section, option), _given_problem(name, problem))
    return kept


def _given_problem(name: str, problem: str) -> str:
    return (f"cannot be given to the worker processes of step {name}: {problem} (expected a value pickle can copy, of "
            "a class or function defined at the top of a module; or run the step in threads)")


class _Referrer(pickle.Pickler):
    """A pickler that notes the module of each class and function it pickles by name."""

    def __init__(self) -> None:
        super().__init__(io.BytesIO(), protocol=pickle.HIGHEST_PROTOCOL)
        self.modules: set[str] = set()

    def reducer_override(self, obj: Any) -> Any:
        """Note where a class or function comes from; pickle it as pickle would."""
        if isinstance(obj, type | types.FunctionType | types.BuiltinFunctionType):
            self.modules.add(getattr(obj, "__module__", None) or "")
        return NotImplemented


def unsendable(value: Any, afresh: str) -> str | None:
    """Why a worker process cannot be given ``value`` (``afresh``: why it does not start as a fork of this process, ""
    if it does); None if it can."""
    referrer = _Referrer()
    try:
        referrer.dump(value)
    except Exception as err:  # pickle raises what the object's own __reduce__ raises
        return f"pickle cannot copy it ({type(err).__name__}: {err})"
    for module in sorted(referrer.modules) if afresh else ():
        if (where := unimportable(module)) is not None:
            return f"it refers to {where}, which worker processes that start afresh cannot import ({afresh})"
    return None


def unimportable(module: str) -> str | None:
    """Where ``module`` is, in words, if a process started afresh cannot import it as this one did: the running script,
    or a module made in memory (no file behind it); None if it can."""
    if module == "__main__":
        return "the running script (__main__)"
    found = sys.modules.get(module)
    if found is not None and getattr(found, "__spec__", None) is None:
        return f"module {module}, made in memory"
    return None
