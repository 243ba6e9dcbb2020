"""The files a run writes, checked against one another and against the files it reads, before anything runs.

Two steps of one class share its section's options: two ``JsonLinesWriter`` steps wrote one file, each replacing
the other's lines (half the records lost, exit 0). A step's output, or the dead-letter file, that is the run's own
config file, a step's input (an InputFile option, or a file its ``input_files()`` names: ctapipe's
``EventSource.input_url``) or the file a replay reads emptied it as the run started. Each is a ConfigError naming
where the second path was set. A file is the same as another if their paths resolve to one
(symbolic links followed) or name one file already (hard links).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from traitlets import Unicode

from pipeline.component import Component
from pipeline.config.loader import step_refused
from pipeline.config.locks import claim, release
from pipeline.config.model import DICT_SOURCE, PipelineConfig, StepConfig
from pipeline.config.traits import InputFile, OutputFile, shown
from pipeline.errors import ConfigError


@dataclass(frozen=True)
class FileUse:
    """A file the run writes or reads, and where its path was given."""

    path: str
    what: str  # how a problem names its use: "step WRITE's output", "the dead-letter file"
    source: str  # where it was given, as a ConfigError names it
    key: str


def check_written_files(config: PipelineConfig, dead_letter: str, dead_letter_setting: tuple[str, str],
                        replayed: str | None) -> None:
    """A ConfigError if a file the run writes (a step's output, the dead-letter file) is written by another of its
    steps too, or is its config file or a step's input, or (for a step's output) the dead-letter file that it
    replays: the dead-letter file may be the replayed one (its records are kept, cli.md)."""
    outputs = list(step_files(config, OutputFile, "output"))
    written = outputs + ([FileUse(dead_letter, "the dead-letter file", *dead_letter_setting)] if dead_letter else [])
    read = [*step_files(config, InputFile, "input"), *other_inputs(config)]
    if config.source != DICT_SOURCE:
        read.append(FileUse(config.source, "the run's config file", config.source, ""))
    replay = [FileUse(replayed, "the dead-letter file this run replays", "", "")] if replayed is not None else []
    for index, use in enumerate(written):
        for other in written[:index] + read + (replay if use in outputs else []):
            if _same_file(use.path, other.path):
                raise ConfigError(use.source, use.key, f"{shown(use.path)} is also {other.what} (expected a file "
                                                       "that nothing else of the run writes or reads)")


def step_files(config: PipelineConfig, kind: type[Unicode], use: str) -> Iterator[FileUse]:
    """Each file that a step's options of trait type ``kind`` name, as its ``use`` ("output", "input"); the steps'
    classes that have none are not built."""
    for step, name, path in _step_paths(config, kind):
        yield FileUse(path, f"step {step.name}'s {use}", *config.setting_source(step.class_name, name))


def claim_outputs(config: PipelineConfig) -> list[str]:
    """Claim each step's output whose OutputFile trait is tagged ``locked`` (config.locks.claim), before any step
    runs; the real paths claimed, to ``release``. A ConfigError, in the words of a step's check(), if a run writes one:
    the claims made before it are let go."""
    claimed: list[str] = []
    try:
        for step, name, path in _step_paths(config, OutputFile, locked=lambda tag: bool(tag)):
            try:
                record = step.cls.class_traits()[name].metadata["locked"] == "record"
                claimed.append(claim(path, f"{step.class_name}.{name}", record))
            except ValueError as err:
                raise step_refused(config, step, str(err)) from None
    except BaseException:
        release_outputs(claimed)
        raise
    return claimed


def release_outputs(claimed: list[str], unmade: bool = False) -> None:
    """Let go of the outputs ``claim_outputs`` claimed, once the run ended; with ``unmade`` (it was refused before any
    step ran), an empty one that the claim created goes."""
    for real in claimed:
        release(real, unmade)


def _step_paths(config: PipelineConfig, kind: type[Unicode], **metadata: Any) -> Iterator[tuple[StepConfig, str, str]]:
    """Each step, option name and path (not empty) of its options of trait type ``kind`` (tagged with ``metadata``);
    the steps' classes that have none are not built."""
    for step in config.steps.values():
        names = [name for name, trait in step.cls.class_traits(config=True, **metadata).items()
                 if isinstance(trait, kind)]
        if not names:
            continue
        component = config.make_component(step.name)
        for name in names:
            if path := getattr(component, name):
                yield step, name, path


def other_inputs(config: PipelineConfig) -> Iterator[FileUse]:
    """Each file that a step's ``input_files()`` names (an input a library's option names); the steps' classes that
    do not define it are not built."""
    for step in config.steps.values():
        if step.cls.input_files is not Component.input_files:
            for path in config.make_component(step.name).input_files():
                if path:
                    yield FileUse(path, f"step {step.name}'s input", config.source, step.key)


def _same_file(one: str, other: str) -> bool:
    """Whether two paths name one file, now or once written."""
    if os.path.realpath(one) == os.path.realpath(other):
        return True
    try:
        return os.path.samefile(one, other)
    except OSError:  # one does not exist yet: not linked to the other
        return False
