"""Where a key found in the wrong place of a config belongs, as the words its error adds: an option of a step's class
among the step's keys, a step key or another step's option in the ``Pipeline`` section, a run key at the top level,
a step's class section inside another's. The loader knows what each place takes; this says which other place would
take the key, so that the line points there instead of listing what the wrong place takes."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass

from traitlets.config import Configurable

from pipeline.config.model import StepConfig
from pipeline.config.stepkeys import STEP_KEYS
from pipeline.errors import COMMAND_LINE, option_key

#: The section that holds the steps and the run keys (the options of the framework's own Pipeline class).
PIPELINE = "Pipeline"
#: The keys of the ``Pipeline`` section that hold the steps.
SECTIONS = ("producer_conf", "stagers_conf", "consumer_conf")


def subclasses(cls: type) -> Iterator[type]:
    """Each subclass of ``cls`` at any depth, once (one of two bases is met twice), a user's own among them once its
    module is imported."""
    stack, seen = [cls], set()
    while stack:
        for sub in stack.pop().__subclasses__():
            if sub not in seen:
                seen.add(sub)
                stack.append(sub)
                yield sub


def section_place(name: str, source: str) -> str:
    """Where the options of class ``name`` go, in the words of ``source`` (the command line, or a file)."""
    return f"--{name}.OPTION" if source == COMMAND_LINE else "its section goes at the top level of the file"


@dataclass(frozen=True)
class Home:
    """A class that a config may have a section for, and the steps whose class it is or, for a child class
    (``Component.child_classes``), that build it."""

    cls: type[Configurable]
    steps: tuple[str, ...]  # the steps' names
    child: bool

    def role(self) -> str:
        """``the class of step STATS``, or for a child class ``a class that step CLEAN builds``."""
        steps = f"step {self.steps[0]}" if len(self.steps) == 1 else f"steps {', '.join(self.steps)}"
        return f"a class that {steps} {'builds' if len(self.steps) == 1 else 'build'}" if self.child else (
            f"the class of {steps}")


def belongs(name: str, homes: Sequence[Home], run_keys: Collection[str], here: Sequence[StepConfig] = (),
            source: str = "", in_file: bool = True) -> str:
    """Where ``name``, a key found where it does not belong, goes, in words for its error; "" if no place of this
    config takes it.

    ``here`` are the steps the place it was found in belongs to (a step's keys or ``config``, a class's section):
    an option of their own class comes first. ``source`` is where it came from, the command line or a file;
    ``in_file``: the config file itself (not its overrides), where the steps are set.
    """
    command_line = source == COMMAND_LINE
    options = [home for home in homes if name in home.cls.class_traits(config=True)]
    own = [home for home in options if not home.child and set(home.steps) & {step.name for step in here}]
    if own and not command_line:  # among a step's keys: most likely the option of the class it names
        cls = own[0].cls.__name__
        return f"{name} is an option of the step's class {cls}: set it in the step's \"config\" key or in the " \
               f"\"{cls}\" section"
    if name in SECTIONS:
        if not in_file:  # it was in the Pipeline section, of overrides: it cannot be anywhere there
            how = "on the command line" if command_line else "by overrides"
            return f"the steps are the config file's: they cannot be set {how}"
        return f"did you mean {option_key(source, f'{PIPELINE}.{name}')}? the steps go in the \"{PIPELINE}\" section"
    if name in run_keys:
        return f"did you mean {option_key(source, f'{PIPELINE}.{name}')}? a run key, of the \"{PIPELINE}\" section"
    if name in STEP_KEYS:
        steps = " and ".join(step.key for step in here) or "producer_conf, each item of stagers_conf or consumer_conf"
        return f"{name} is a key of each step: set it in {steps}{', in the config file' if command_line else ''}"
    section = next((home for home in homes if home.cls.__name__ == name), None)
    if section is not None:
        where = section_place(name, source)
        return f"{name} is {section.role()}: {where}"
    if not options:
        return ""
    who = ", and of ".join(f"{home.cls.__name__}, {home.role()}" for home in options)
    if command_line:
        return f"{name} is an option of {who}: {' or '.join(f'--{home.cls.__name__}.{name}' for home in options)}"
    if len(options) > 1:
        return f"{name} is an option of {who}: set it in the section of the class it is for"
    home = options[0]
    config = "" if home.child else f" or in the \"config\" key of its step{'s' if len(home.steps) > 1 else ''}"
    return f"{name} is an option of {who}: set it in the \"{home.cls.__name__}\" section{config}"
