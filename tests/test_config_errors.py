"""Every configuration error: a ConfigError naming the file, the key and what was expected; exit code 2.

Each case is checked in-process through ``Pipeline.from_config`` (the path ``pipeline-run``
takes), and a subset again through a real ``pipeline-run`` subprocess, whose stderr must be the
same message on exactly one line.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from traitlets.config import Config
from traitlets.config.loader import KVArgParseConfigLoader

from pipeline import ConfigError, Pipeline
from pipeline.cli.run import COMMAND_LINE
from pipeline.config import MAX_DEPTH, MAX_FILE_BYTES, load_config
from tests.cli_helpers import chain_config, run_cli, write_config
from tests.config_steps import HIDDEN

#: Turns a valid config document into the one under test (a string: the file's raw text).
Change = Callable[[dict[str, Any]], Any]

STEPS = "tests.config_steps"
INVALID_JSON = '{\n  "Pipeline": {\n    "producer_conf": ,\n  }\n}\n'


def _locate(document: dict[str, Any], dotted: str) -> tuple[Any, Any]:
    """The container and the key (or list index) that a dotted path such as ``a.0.b`` names."""
    *parents, last = dotted.split(".")
    node: Any = document
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node, int(last) if isinstance(node, list) else last


def setting(dotted: str, value: Any) -> Change:
    """Set the value at a dotted path."""

    def change(document: dict[str, Any]) -> dict[str, Any]:
        node, key = _locate(document, dotted)
        node[key] = value
        return document

    return change


def resetting(dotted: str) -> Change:
    """Delete the key at a dotted path."""

    def change(document: dict[str, Any]) -> dict[str, Any]:
        node, key = _locate(document, dotted)
        del node[key]
        return document

    return change


def renaming(dotted: str, new_name: str) -> Change:
    """Rename the key at a dotted path, keeping its value."""

    def change(document: dict[str, Any]) -> dict[str, Any]:
        node, key = _locate(document, dotted)
        node[new_name] = node.pop(key)
        return document

    return change


def replacing(text: str) -> Change:
    """Write ``text`` as the whole file."""
    return lambda document: text


def stagers(*entries: tuple[str, str]) -> Change:
    """Replace the stagers by PassThrough steps given as (name, next_steps)."""
    conf = [{"name": n, "module": "algorithms.basic", "class": "PassThrough", "next_steps": s} for n, s in entries]
    return setting("Pipeline.stagers_conf", conf)


def nested(levels: int) -> list[Any]:
    """Lists nested ``levels`` deep: ``[[]]`` for 2."""
    value: list[Any] = []
    for _ in range(levels - 1):
        value = [value]
    return value


def stager_class(module: str, cls: str) -> Change:
    """Make the stager PASS an instance of ``module.cls``."""
    return setting("Pipeline.stagers_conf.0", {"name": "PASS", "module": module, "class": cls, "next_steps": "WRITE"})


def line_reader(path: str) -> Change:
    """Make the producer COUNT a LineReader of ``path``."""

    def change(document: dict[str, Any]) -> dict[str, Any]:
        document = setting(PRODUCER, {"name": "COUNT", "module": "algorithms.basic", "class": "LineReader",
                                      "next_steps": "PASS"})(document)
        del document["Counter"]
        return {**document, "LineReader": {"path": path}}

    return change


PRODUCER = "Pipeline.producer_conf"
STAGER = "Pipeline.stagers_conf[0]"
CONSUMER = "Pipeline.consumer_conf"

#: (change, the error's key, a part of its problem that says what was expected)
FILE_CASES = [
    pytest.param(replacing(INVALID_JSON), "", "invalid JSON at line 3 column 22: Expecting value", id="invalid-json"),
    # traitlets' own traits of every component: told to tag them as options, which would break the component
    pytest.param(setting("Counter", {"config": {"count": 3}}), "Counter.config", "Counter has no option 'config' "
                 "(config is a key of each step: set it in Pipeline.producer_conf)", id="config-in-a-class-section"),
    pytest.param(setting("Counter", {"count": 3, "log": "x"}), "Counter.log",
                 "Counter has no option 'log' ('log' is an attribute traitlets gives every component, not an option)",
                 id="traitlets-own-trait"),
    # a base class's section nested in its subclass's: it was told to go into the step's child_classes
    pytest.param(setting("Counter", {"Component": {"count": 3}}), "Counter.Component", "Counter has no option "
                 "'Component' (Component is a base class of Counter: its section goes at the top level of the file, "
                 "for every class built on it)", id="base-class-section-nested"),
    # the command's own class, which --help-all lists: it was told to go into a step's child_classes
    pytest.param(setting("PipelineRun", {"log_level": "INFO"}), "PipelineRun", "unknown section: PipelineRun is the "
                 "command's own class (expected its options on the command line, such as --log-level=INFO: a config "
                 "file names the pipeline's steps)", id="the-command-s-own-class"),
    pytest.param(replacing('// my pipeline\n{"version": 1}\n'), "", "invalid JSON at line 1 column 1: Expecting value "
                 "(JSON has no comments: remove the comment, or keep the note in a key of its own)", id="comment"),
    pytest.param(replacing('{"version": 1,  // the format\n "Pipeline": {}}\n'), "",
                 "invalid JSON at line 1 column 17: Expecting property name enclosed in double quotes (JSON has no "
                 "comments", id="comment-ending-a-line"),
    pytest.param(replacing('{"version": 1}  # the format\n'), "",
                 "invalid JSON at line 1 column 17: Extra data (JSON has no comments", id="comment-after-the-end"),
    pytest.param(replacing('{"version": 1,\n "Counter": {"count": 2,}}\n'), "",
                 "invalid JSON at line 2 column 25: Expecting property name enclosed in double quotes (JSON has no "
                 "trailing commas: remove the comma at line 2 column 24, before '}')", id="trailing-comma-in-object"),
    pytest.param(replacing('{"version": 1,\n "Pipeline": {"stagers_conf": [{},\n ]}}\n'), "",
                 "(JSON has no trailing commas: remove the comma at line 2 column 34, before ']')",
                 id="trailing-comma-ending-a-line-in-a-list"),
    pytest.param(replacing('{"Pipeline": {"producer_conf": "abc'), "",  # the parser's words ended on "at"
                 "invalid JSON at line 1 column 32: Unterminated string starting there", id="unterminated-string"),
    pytest.param(stager_class("tests/config_steps.py", "ThreadNamer"), f"{STAGER}.module",
                 "(expected a module's name, as import takes it, not a file's path: did you mean "
                 "'tests.config_steps'?)", id="module-as-a-path"),
    pytest.param(stager_class(".basic", "PassThrough"), f"{STAGER}.module",  # it suggested '.basic' itself
                 "(expected an absolute module name, as import takes it: a relative one has no package to be relative "
                 "to; name its package too, such as 'package.basic')", id="relative-module"),
    pytest.param(replacing("[]"), "", "expected a JSON object at the top level, got list", id="top-level-list"),
    pytest.param(  # json kept the last: a second consumer_conf hid the first, and the error named a step
        replacing('{"version": 1, "Pipeline": {"consumer_conf": {}, "consumer_conf": {}}}'), "",
        "the key 'consumer_conf' is given twice in the object of keys 'consumer_conf' (expected each key once: JSON "
        "would keep only the last)",
        id="repeated-key",
    ),
    pytest.param(  # in a config of many steps, which of them
        replacing('{"version": 1, "Pipeline": {"stagers_conf": [{"name": "PASS2", "nb_thread": 2, "nb_thread": 4}]}}'),
        "", "the key 'nb_thread' is given twice in the object named 'PASS2' (expected each key once",
        id="repeated-key-of-a-step",
    ),
    pytest.param(setting("pipeline", {"mode": "sequential"}), "pipeline",  # it listed the step classes alone
                 "unknown section: not a step class of this pipeline (did you mean 'Pipeline'?)",
                 id="pipeline-in-lowercase"),
    pytest.param(renaming("Pipeline", "pipeline"), "pipeline",  # it said the Pipeline section was missing
                 "unknown section: not a step class of this pipeline (did you mean 'Pipeline'?)",
                 id="only-pipeline-in-lowercase"),
    pytest.param(renaming("Pipeline", "Pipline"), "Pipline",
                 "unknown section: not a step class of this pipeline (did you mean 'Pipeline'?)",
                 id="pipeline-misspelt"),
    pytest.param(setting("version", 2), "version", "expected 1, got 2", id="version"),
    pytest.param(setting("version", True), "version", "expected 1, got True", id="version-true"),
    pytest.param(resetting("Pipeline"), "Pipeline", "missing section (expected producer_conf", id="no-pipeline"),
    pytest.param(renaming("Pipeline", "Flow"), "Flow", 'the section of a ctapipe flow config: rename it to "Pipeline"',
                 id="flow-section"),
    pytest.param(setting("Flow", {}), "Flow", 'rename it to "Pipeline" (this config has both: keep one)',
                 id="flow-and-pipeline"),
    pytest.param(setting("Pipeline", []), "Pipeline", "expected an object, got list", id="pipeline-not-object"),
    pytest.param(resetting(PRODUCER), PRODUCER, "missing required key", id="no-producer"),
    pytest.param(resetting(CONSUMER), CONSUMER, "missing required key", id="no-consumer"),
    pytest.param(
        renaming("Pipeline.stagers_conf", "stager_conf"),
        "Pipeline.stager_conf",
        "unknown key (did you mean 'stagers_conf'?)",
        id="pipeline-unknown-key",
    ),
    pytest.param(
        setting("Pipeline.stagers_conf", {}),
        "Pipeline.stagers_conf",
        "expected a list of steps, got dict",
        id="stagers-not-list",
    ),
    pytest.param(
        setting("Pipeline.stagers_conf.0", "PASS"),
        STAGER,
        "expected an object describing a step, got str",
        id="step-str",
    ),
    pytest.param(
        renaming("Pipeline.stagers_conf.0.next_steps", "next_step"),
        f"{STAGER}.next_step",
        "unknown key (did you mean 'next_steps'?)",
        id="next-step-typo",
    ),
    pytest.param(
        renaming("Pipeline.stagers_conf.0.nb_thread", "nb_threads"),
        f"{STAGER}.nb_threads",
        "unknown key (did you mean 'nb_thread'?)",
        id="nb-threads-typo",
    ),
    *(
        pytest.param(resetting(f"{section}.{key}"), f"{label}.{key}", "missing required key", id=f"no-{key}-{kind}")
        for key in ("name", "class", "module")
        for kind, section, label in [
            ("producer", PRODUCER, PRODUCER),
            ("stager", "Pipeline.stagers_conf.0", STAGER),
            ("consumer", CONSUMER, CONSUMER),
        ]
    ),
    pytest.param(
        setting(f"{PRODUCER}.name", " "), f"{PRODUCER}.name", "expected a step name, got ' '", id="blank-name"
    ),
    *(
        pytest.param(  # "A,B" reads as two next steps; a newline broke --graph=mermaid and the report's table; a
            # right-to-left override turned log lines around, a zero-width space made two names look alike, a name
            # of 201 characters hid the run from pipeline-gui, one of 1,001 could take no remote worker
            setting(f"{PRODUCER}.name", name), f"{PRODUCER}.name",
            "expected a step name of at most 200 characters, without commas, control, format or line-separator "
            f"characters, got {shown}", id=f"name-{label}",
        )
        for label, name, shown in (
            ("comma", "A,B", "'A,B'"), ("newline", "A\nB", "'A\\nB'"), ("tab", "A\tB", "'A\\tB'"),
            ("line-separator", "A\u2028B", "'A\\u2028B'"), ("right-to-left", "A\u202eB", "'A\\u202eB'"),
            ("zero-width-space", "A\u200bB", "'A\\u200bB'"),
            ("201-characters", "N" * 201, f"'{'N' * 27}...{'N' * 28}'"))
    ),
    pytest.param(
        setting(f"{CONSUMER}.class", 3), f"{CONSUMER}.class", "expected a non-empty string, got 3", id="class-not-str"
    ),
    pytest.param(
        setting(f"{CONSUMER}.next_steps", "PASS"),
        f"{CONSUMER}.next_steps",
        "a consumer has no next steps",
        id="consumer-next-steps",
    ),
    pytest.param(
        resetting(f"{PRODUCER}.next_steps"),
        f"{PRODUCER}.next_steps",
        "the producer must send to at least one step",
        id="producer-no-next-steps",
    ),
    pytest.param(
        setting("Pipeline.stagers_conf.0.next_steps", ["WRITE", 3]),
        f"{STAGER}.next_steps",
        "expected a comma-separated string or a list of step names, got ['WRITE', 3]",
        id="next-steps-type",
    ),
    *(
        pytest.param(
            setting("Pipeline.stagers_conf.0.nb_thread", value),
            f"{STAGER}.nb_thread",
            f"expected an integer from 0 to 256, got {value!r}",
            id=f"nb-thread-{value!r}",
        )
        for value in (-1, "2", 1.5, 2.0, True)
    ),
    pytest.param(
        setting("Pipeline.stagers_conf.0.nb_thread", 0),
        f"{STAGER}.nb_thread",
        "0 means only remote workers: expected Pipeline.listen too, for them to join",
        id="nb-thread-0",
    ),
    pytest.param(
        setting(f"{PRODUCER}.nb_thread", 2),
        f"{PRODUCER}.nb_thread",
        "a producer runs in one thread (expected 1, got 2)",
        id="producer-threads",
    ),
    *(
        pytest.param(
            setting("Pipeline.stagers_conf.0.nb_process", value),
            f"{STAGER}.nb_process",
            f"expected an integer from 0 to 256, got {value!r}",
            id=f"nb-process-{value!r}",
        )
        for value in (-1, "2", 1.5, False, None, 257, 10_000)  # 10,000: a fork storm (issue 24.7)
    ),
    *(
        pytest.param(
            setting("Pipeline.stagers_conf.0.nb_thread", value),
            f"{STAGER}.nb_thread",
            f"expected an integer from 0 to 256, got {value!r}",
            id=f"nb-thread-{value!r}",
        )
        for value in (257, 2000, 10**9)  # 2,000 ran out of open files in thousands of lines, 10**9 out of memory
    ),
    *(
        pytest.param(
            lambda document, processes=processes, threads=threads: setting(
                "Pipeline.stagers_conf.0.nb_thread", threads)(setting("Pipeline.stagers_conf.0.nb_process", processes)(
                    document)),
            f"{STAGER}.nb_thread",
            f"{processes} worker processes of {threads} threads are {processes * threads} workers (expected "
            "nb_process x nb_thread at most 256)",
            id=f"workers-{processes}x{threads}",
        )
        for processes, threads in ((256, 256), (2, 129), (129, 2))
    ),
    *(
        pytest.param(
            setting(f"Pipeline.consumer_conf.{key}", value),
            f"Pipeline.consumer_conf.{key}",
            "algorithms.basic.JsonLinesWriter runs in one worker: its instances would share one resource such as its "
            f"output file (expected nb_thread 1 and nb_process 0 or 1, got {value})",
            id=f"one-worker-{key}-{value}",
        )
        for key, value in (("nb_thread", 2), ("nb_process", 2))  # two writers replaced each other's file: half lost
    ),
    pytest.param(
        setting(PRODUCER, {"name": "COUNT", "module": "algorithms.basic", "class": "LineReader", "next_steps": "PASS",
                           "nb_process": 2}),
        f"{PRODUCER}.nb_process",
        "a producer in 2 worker processes runs 2 shards, each of which must read only its share of the input: "
        "algorithms.basic.LineReader does not say it can (expected 0 or 1, or a class with shardable = True",
        id="producer-processes-not-shardable",
    ),
    *(
        pytest.param(
            setting("Pipeline.stagers_conf.0.next_steps", value),
            f"{STAGER}.next_steps",
            "'WRITE' is named twice (expected each step once)",
            id=f"next-step-twice-{kind}",
        )
        for kind, value in (("str", "WRITE, WRITE"), ("list", ["WRITE", " WRITE "]))
    ),
    pytest.param(
        setting("Pipeline.stagers_conf.0.on_error", "ignore"),
        f"{STAGER}.on_error",
        "expected one of 'stop', 'skip', got 'ignore'",
        id="on-error",
    ),
    *(
        pytest.param(
            setting("Pipeline.stagers_conf.0.queue_limit", value),
            f"{STAGER}.queue_limit",
            f"expected an integer >= 1, or -1 for unbounded, got {value!r}",
            id=f"queue-limit-{value!r}",
        )
        for value in (0, -2, "64", 2.5, -1.0, True)
    ),
    *(
        pytest.param(
            setting("Pipeline.stagers_conf.0.ordered", value),
            f"{STAGER}.ordered",
            f"expected true or false, got {value!r}",
            id=f"ordered-{value!r}",
        )
        for value in ("yes", 1)
    ),
    pytest.param(
        stager_class("no_such_module", "PassThrough"),
        f"{STAGER}.module",
        "cannot import module 'no_such_module': ModuleNotFoundError: No module named 'no_such_module'",
        id="module-missing",
    ),
    pytest.param(
        stager_class("tests.broken_steps", "PassThrough"),
        f"{STAGER}.module",
        "cannot import module 'tests.broken_steps': ModuleNotFoundError: No module named 'no_such_dependency'",
        id="module-import-fails",
    ),
    pytest.param(
        stager_class("algorithms.basic", "PassTrough"),
        f"{STAGER}.class",
        "module 'algorithms.basic' has no class 'PassTrough' (did you mean 'PassThrough'?)",
        id="class-missing",
    ),
    pytest.param(
        stager_class(STEPS, "NotAComponent"),
        f"{STAGER}.class",
        f"{STEPS}.NotAComponent is not a pipeline.Component subclass (expected pipeline's Component as its base class: "
        "from pipeline import Component)",
        id="not-a-component",
    ),
    pytest.param(  # it failed on every message, as a NotImplementedError through the engine's frames
        stager_class("pipeline", "Component"),
        f"{STAGER}.class",
        "pipeline.Component defines no run() (expected a Component subclass with a run() for the stager's work)",
        id="no-run",
    ),
    pytest.param(setting("Pipeline.zmq_ports", [6001, 6002]), "Pipeline.zmq_ports",  # it said: unknown key
                 "a key of ctapipe's flow: remove it (steps talk over inproc:// sockets, with no TCP port)",
                 id="ctapipe-flow-ports"),
    pytest.param(setting("Pipeline.stagers_conf.0.zmq_ports", [8001]), f"{STAGER}.zmq_ports",  # it said: unknown key
                 "a key of ctapipe's flow: remove it (steps talk over inproc:// sockets, with no TCP port)",
                 id="ctapipe-flow-step-ports"),
    pytest.param(setting("Pipeline.mode", "multiprocessus"), "Pipeline.mode",  # it said: expected any of [...]
                 "ctapipe flow's 'multiprocessus' (expected 'threads' or 'sequential': a step's workers run in worker "
                 "processes with \"nb_process\" in the step)", id="ctapipe-flow-mode"),
    pytest.param(setting("Pipeline.mode", "multiprocess"), "Pipeline.mode",  # as ctapipe flow's docs spell it
                 "ctapipe flow's 'multiprocess' (expected 'threads' or 'sequential': a step's workers run in worker "
                 "processes with \"nb_process\" in the step)", id="ctapipe-flow-docs-mode"),
    pytest.param(  # a traceback of its run(), FileNotFoundError, and exit 1
        line_reader("poem.txt"),
        PRODUCER, "step 'COUNT': LineReader.path 'poem.txt' does not exist (expected a text file to read)",
        id="line-reader-without-its-file",
    ),
    pytest.param(  # traitlets took the section for an option: the setting was dropped in silence
        lambda document: {**stager_class(STEPS, "lowercase")(document), "lowercase": {"count": 2}}, "lowercase",
        "traitlets cannot configure the class 'lowercase': it takes a name that does not begin with a capital letter "
        "for an option (expected a class whose name begins with a capital letter: rename the class)",
        id="class-in-lowercase",
    ),
    pytest.param(  # the same for a name that begins with _, which traitlets takes for an option too
        lambda document: {**stager_class(STEPS, "_Underscored")(document), "_Underscored": {"count": 2}},
        "_Underscored", "traitlets cannot configure the class '_Underscored': it takes a name that does not begin "
        "with a capital letter for an option (expected a class whose name begins with a capital letter: rename the "
        "class)",
        id="class-after-an-underscore",
    ),
    pytest.param(  # every init() failed on it, in traitlets' words: "values whose keys begin with an uppercase ..."
        lambda document: {**stager_class(STEPS, "CapitalOption")(document), "CapitalOption": {"URL_count": 2}},
        "CapitalOption.URL_count", "traitlets cannot set the option 'URL_count' of CapitalOption: it takes a name "
        "that begins with a capital letter for a class (expected an option whose name begins with a lowercase letter: "
        "rename the trait)",
        id="option-capitalized",
    ),
    pytest.param(  # the loader suggested 'Factor', which no file or command line can set either
        lambda document: {**stager_class(STEPS, "CapitalOption")(document), "CapitalOption": {"factor": 2}},
        "CapitalOption.factor", "CapitalOption has no option 'factor' (its option 'Factor' begins with a capital "
        "letter, which traitlets takes for a class: no config file or command line can set it; rename the trait)",
        id="option-capitalized-asked-in-lowercase",
    ),
    *(
        pytest.param(  # log, config, parent, next_steps: a TraitError at run time, exit 1; step_name: replaced
            stager_class(STEPS, f"Hides_{name}"),
            f"{STAGER}.class",
            f"{STEPS}.Hides_{name}: the trait {name!r} takes the name of an attribute of pipeline.Component, which "
            "it would hide (expected a name Component does not use: rename the trait)",
            id=f"option-named-{name}",
        )
        for name in HIDDEN
    ),
    pytest.param(  # it failed at every message, with a TypeError of the engine's call
        stager_class(STEPS, "RunWithoutMessage"),
        f"{STAGER}.class",
        f"{STEPS}.RunWithoutMessage.run(self) cannot be called as a stager's run() (expected run(self, msg))",
        id="stager-run-without-message",
    ),
    pytest.param(
        setting(PRODUCER, {"name": "COUNT", "module": STEPS, "class": "RunWithMessage", "next_steps": "PASS"}),
        f"{PRODUCER}.class",
        f"{STEPS}.RunWithMessage.run(self, msg) cannot be called as a producer's run() (expected "
        "run(self), a generator of its messages)",
        id="producer-run-with-message",
    ),
    pytest.param(  # it failed at every message: 'int' object is not callable
        stager_class(STEPS, "RunNotAMethod"),
        f"{STAGER}.class",
        f"{STEPS}.RunNotAMethod.run is 5 (int), not a method (expected run(self, msg))",
        id="run-not-a-method",
    ),
    pytest.param(  # each message failed: cannot pickle a coroutine, and Python warned that none was awaited
        stager_class(STEPS, "AsyncRun"),
        f"{STAGER}.class",
        f"{STEPS}.AsyncRun.run() is async def: steps run without an event loop, none would await it (expected "
        "run(self, msg))",
        id="stager-run-async",
    ),
    pytest.param(
        setting(PRODUCER, {"name": "COUNT", "module": STEPS, "class": "AsyncGenerator", "next_steps": "PASS"}),
        f"{PRODUCER}.class",
        f"{STEPS}.AsyncGenerator.run() is async def: steps run without an event loop, none would await it (expected "
        "run(self), a generator of its messages)",
        id="producer-run-async-generator",
    ),
    pytest.param(
        setting("Pipeline.stagers_conf.0.name", "COUNT"),
        f"{STAGER}.name",
        f"duplicate step name 'COUNT' (also at {PRODUCER})",
        id="duplicate-name",
    ),
    pytest.param(  # two CAFÉ rows in the report, and pipeline-worker --step=CAFÉ joined one of them by the shell's é
        lambda document: setting("Pipeline.consumer_conf.name", "PASSE\u0301")(
            setting("Pipeline.stagers_conf.0.name", "PASS\u00c9")(
                setting("Pipeline.stagers_conf.0.next_steps", "PASSE\u0301")(
                    setting("Pipeline.producer_conf.next_steps", "PASS\u00c9")(document)))),
        f"{CONSUMER}.name",
        f"step name 'PASSE\\u0301' looks the same as 'PASS\\xc9' (at {STAGER}), written with other code points "
        "(expected names that look different)",
        id="names-that-look-the-same",
    ),
    pytest.param(
        setting("Pipeline.stagers_conf.0.next_steps", "WRTIE"),
        f"{STAGER}.next_steps",
        "unknown step 'WRTIE' (steps: COUNT, PASS, WRITE)",
        id="unknown-next-step",
    ),
    pytest.param(  # 'W\u0301RITE' and 'WR\xc9TE' both show as WRITE with an accent: which is which, in code points
        lambda document: setting("Pipeline.consumer_conf.name", "WR\u00c9TE")(
            setting("Pipeline.stagers_conf.0.next_steps", "WRE\u0301TE")(document)),
        f"{STAGER}.next_steps",
        "unknown step 'WRE\u0301TE' (steps: COUNT, PASS, WR\u00c9TE): step 'WR\\xc9TE' looks the same, written with "
        "other code points than 'WRE\\u0301TE'",
        id="next-step-in-another-unicode-form",
    ),
    pytest.param(
        setting("Pipeline.stagers_conf.0.next_steps", "COUNT"),
        f"{STAGER}.next_steps",
        "the producer 'COUNT' cannot be a next step",
        id="next-step-producer",
    ),
    pytest.param(
        stagers(("PASS", "BACK"), ("BACK", "PASS, WRITE")),
        f"{STAGER}.next_steps",
        "cycle: PASS -> BACK -> PASS",
        id="cycle",
    ),
    pytest.param(
        stagers(("PASS", "WRITE"), ("LOST", "WRITE")),
        "Pipeline.stagers_conf[1]",
        "step 'LOST' is not reached by any path from the producer 'COUNT'",
        id="unreachable",
    ),
    pytest.param(
        setting("Pipeline.mode", "fast"),
        "Pipeline.mode",
        "expected any of ['threads', 'sequential'], got str 'fast'",
        id="pipeline-mode",
    ),
    *(
        pytest.param(
            setting(f"Pipeline.{option}", value),
            f"Pipeline.{option}",
            f"expected a finite float (at least {low}, at most 1000000.0), got float {value!r}",
            id=f"{option}-{value!r}",
        )
        for option, low, value in (
            ("shutdown_timeout", 0.0, float("nan")),
            ("shutdown_timeout", 0.0, float("inf")),
            ("shutdown_timeout", 0.0, 1e10),
            ("graph_interval", 0.05, float("-inf")),
            ("progress_interval", 0.05, float("nan")),
        )
    ),
    pytest.param(
        setting("Pipeline.shutdown_timeout", 10**400),
        "Pipeline.shutdown_timeout",
        "expected a finite float (at least 0.0, at most 1000000.0), got int 1000",
        id="shutdown-timeout-huge-int",
    ),
    *(
        pytest.param(
            setting("Pipeline.gui_address", address), "Pipeline.gui_address",
            f"expected an address host:port or tcp://host:port (a port from 1 to 65535), got str {address!r}",
            id=f"gui-address-{address}",
        )
        for address in ("localhost:99999", "localhost:65536", "localhost:0", "tcp://[::1]:70000")
    ),
    pytest.param(
        setting("Pipeline.dead_letter", "."),
        "Pipeline.dead_letter",
        "'.' is a folder (expected the path of a file to write)",
        id="dead-letter-folder",
    ),
    pytest.param(
        setting("Pipeline.dead_letter", "no_such_folder/failed.jsonl"),
        "Pipeline.dead_letter",
        "the folder 'no_such_folder' does not exist (expected a file in an existing folder)",
        id="dead-letter-missing-folder",
    ),
    pytest.param(
        setting("Pipeline.dead_letter", "failed\0.jsonl"),
        "Pipeline.dead_letter",
        "'failed\\x00.jsonl' holds a NUL character (expected the path of a file to write)",
        id="dead-letter-nul",
    ),
    pytest.param(
        setting("Counter", {"count": nested(MAX_DEPTH)}),
        "Counter",
        f"nested too deeply (expected at most {MAX_DEPTH} levels of objects and lists)",
        id="nested-too-deeply",
    ),
    pytest.param(
        setting("Countr", {"count": 3}),
        "Countr",
        "unknown section: not a step class of this pipeline (did you mean 'Counter'?)",
        id="unknown-class-section",
    ),
    pytest.param(
        setting("Counter", 5), "Counter", "expected an object of trait values, got int", id="section-not-object"
    ),
    pytest.param(
        setting("Counter", {"count": "many"}), "Counter.count", "expected an int (at least 0), got str 'many'",
        id="trait-type"
    ),
    *(
        pytest.param(  # in containers and unions too: traitlets took [true, 2] as [1, 2]
            lambda document, section=section: {**stager_class(STEPS, "Containers")(document), "Containers": section},
            f"Containers.{next(iter(section))}", f"{expected} (a boolean for a number, or the reverse)",
            id=f"bool-in-{next(iter(section))}",
        )
        for section, expected in (
            ({"ids": [True, 2]}, "expected a list whose elements are each an int, got bool True at [0]"),
            ({"either": True}, "expected an int or a unicode string, got bool True"),
            ({"pair": [1, False]}, "expected a tuple (2 elements) whose element [1] is an int, got bool False at [1]"),
            ({"weights": {"a": True}}, "expected a dict whose values are each an int, got bool True at ['a']"),
            ({"level": True}, "expected any of [0, 1, 2], got bool True"),
            ({"switch": 1}, "expected any of [True, False, 'auto'], got int 1"),
        )
    ),
    pytest.param(  # the README says options are traits tagged config=True: one without the tag is no option
        lambda document: {**stager_class(STEPS, "Untagged")(document), "Untagged": {"factor": 3}},
        "Untagged.factor", "Untagged has no option 'factor' (its trait 'factor' is not tagged as one: declare it "
        "with .tag(config=True))", id="trait-not-tagged",
    ),
    pytest.param(  # which name of the list is wrong, and the nearest right one (ctapipe's component names too)
        lambda document: {**stager_class(STEPS, "Containers")(document), "Containers": {"kinds": ["alpha", "betta"]}},
        "Containers.kinds", "expected a list whose elements are each any of ['alpha', 'beta'], got str 'betta' at [1] "
        "(did you mean 'beta'?)", id="name-in-a-list",
    ),
    # JSON's true for a number, a number for true: traitlets took them (a count of 1, a flag set)
    pytest.param(
        setting("Counter", {"count": True}), "Counter.count", "expected an int (at least 0), got bool True",
        id="int-trait-bool",
    ),
    pytest.param(
        lambda document: {**stager_class("algorithms.camera", "TailcutsClean")(document),
                          "TailcutsClean": {"picture_threshold": False}},
        "TailcutsClean.picture_threshold", "expected a float, got bool False", id="float-trait-bool",
    ),
    pytest.param(
        lambda document: {**stager_class("algorithms.camera", "HillasParameters")(document),
                          "HillasParameters": {"keep_images": 1}},
        "HillasParameters.keep_images", "expected a boolean, got int 1", id="bool-trait-int",
    ),
    pytest.param(
        lambda document: {**stager_class("algorithms.camera", "TailcutsClean")(document),
                          "TailcutsClean": {"picture_threshold": 10**400}},
        "TailcutsClean.picture_threshold",
        "expected a float, got int 1000",
        id="float-trait-int-too-large-for-a-float",
    ),
    pytest.param(
        setting("Counter", {"cont": 3}),
        "Counter.cont",
        "Counter has no option 'cont' (did you mean 'count'?)",
        id="unknown-trait",
    ),
    pytest.param(
        setting(f"{PRODUCER}.config", 5),
        f"{PRODUCER}.config",
        "expected an object of trait values, got 5",
        id="step-config-not-object",
    ),
    pytest.param(
        setting(f"{PRODUCER}.config", {"count": "many"}),
        f"{PRODUCER}.config.count",
        "expected an int (at least 0), got str 'many'",
        id="step-config-trait-type",
    ),
    pytest.param(
        setting(f"{PRODUCER}.config", {"cont": 3}),
        f"{PRODUCER}.config.cont",
        "Counter has no option 'cont' (did you mean 'count'?)",
        id="step-config-unknown-trait",
    ),
]

#: Where Counter's option ``count`` belongs, as an error put elsewhere says it.
COUNT_HOME = ('count is an option of Counter, the class of step COUNT: set it in the "Counter" section or in the '
              '"config" key of its step')
#: Where a run key belongs, as an error says it.
MODE_HOME = 'did you mean Pipeline.mode? a run key, of the "Pipeline" section'

#: A key put where it does not belong (the README's newcomer's mistakes): (change, the error's key, the whole problem,
#: which says where the key belongs instead of listing what its place takes).
MISPLACED_CASES = [
    pytest.param(setting(f"{PRODUCER}.count", 3), f"{PRODUCER}.count", "unknown key (count is an option of the "
                 'step\'s class Counter: set it in the step\'s "config" key or in the "Counter" section)',
                 id="own-option-in-step"),
    pytest.param(setting(f"{CONSUMER}.count", 3), f"{CONSUMER}.count", f"unknown key ({COUNT_HOME})",
                 id="other-option-in-consumer"),
    pytest.param(setting("Pipeline.stagers_conf.0.path", "x"), f"{STAGER}.path", "unknown key (path is an option of "
                 'JsonLinesWriter, the class of step WRITE: set it in the "JsonLinesWriter" section or in the "config" '
                 "key of its step)", id="other-option-in-stager"),
    pytest.param(setting("Pipeline.count", 3), "Pipeline.count", f"unknown key ({COUNT_HOME})",
                 id="option-in-pipeline"),
    pytest.param(setting("Pipeline.nb_thread", 2), "Pipeline.nb_thread", "unknown key (nb_thread is a key of each "
                 "step: set it in producer_conf, each item of stagers_conf or consumer_conf)",
                 id="step-key-in-pipeline"),
    pytest.param(setting("Pipeline.mod", "sequential"), "Pipeline.mod", "unknown key (did you mean 'mode'?)",
                 id="typo-in-pipeline"),
    # spelling alone said 'gui_address' (the monitor's), and 'progress' (a bool)
    pytest.param(setting("Pipeline.listen_address", "tcp://*:5570"), "Pipeline.listen_address",
                 "unknown key (did you mean 'listen'?)", id="run-key-and-a-word-more"),
    pytest.param(setting("Pipeline.processes", 2), "Pipeline.processes", "unknown key (did you mean 'nb_process'? "
                 "nb_process is a key of each step: set it in producer_conf, each item of stagers_conf or "
                 "consumer_conf)", id="near-a-step-key-in-pipeline"),
    # A misspelt required key: its typo, not the key it misses (the check waits for the steps' classes).
    pytest.param(renaming("Pipeline.stagers_conf.0.class", "clas"), f"{STAGER}.clas",
                 "unknown key (did you mean 'class'?)", id="required-step-key-typo"),
    pytest.param(renaming(PRODUCER, "producer_cof"), "Pipeline.producer_cof",
                 "unknown key (did you mean 'producer_conf'?)", id="required-section-typo"),
    pytest.param(setting("Pipeline.speed", 2), "Pipeline.speed", "unknown key (expected producer_conf, stagers_conf, "
                 "consumer_conf or a run key: see the configuration reference)", id="no-such-key-in-pipeline"),
    pytest.param(setting("mode", "sequential"), "mode", f"unknown section: not a step class of this pipeline "
                 f"({MODE_HOME})", id="run-key-at-top-level"),
    pytest.param(setting("stagers_conf", []), "stagers_conf", "unknown section: not a step class of this pipeline (did "
                 'you mean Pipeline.stagers_conf? the steps go in the "Pipeline" section)', id="steps-at-top-level"),
    pytest.param(setting("count", 3), "count", f"unknown section: not a step class of this pipeline ({COUNT_HOME})",
                 id="option-at-top-level"),
    pytest.param(setting(f"{PRODUCER}.mode", "sequential"), f"{PRODUCER}.mode", f"unknown key ({MODE_HOME})",
                 id="run-key-in-step"),
    pytest.param(setting("Counter.JsonLinesWriter", {"path": "x"}), "Counter.JsonLinesWriter", "Counter has no option "
                 "'JsonLinesWriter' (JsonLinesWriter is the class of step WRITE: its section goes at the top level of "
                 "the file)", id="other-steps-section-inside"),
    pytest.param(setting("Counter.next_steps", "PASS"), "Counter.next_steps", "Counter has no option 'next_steps' "
                 "(next_steps is a key of each step: set it in Pipeline.producer_conf)", id="step-key-in-section"),
    pytest.param(setting("Counter.mode", "sequential"), "Counter.mode", f"Counter has no option 'mode' ({MODE_HOME})",
                 id="run-key-in-section"),
    pytest.param(setting("JsonLinesWriter.count", 3), "JsonLinesWriter.count",
                 f"JsonLinesWriter has no option 'count' ({COUNT_HOME})", id="other-option-in-section"),
    pytest.param(setting("Pipeline.stagers_conf.0.config", {"count": 3}), f"{STAGER}.config.count",
                 f"PassThrough has no option 'count' ({COUNT_HOME})", id="other-option-in-step-config"),
    pytest.param(setting("Pipeline.stagers_conf.0.config", {"queue_limit": 4}), f"{STAGER}.config.queue_limit",
                 f"PassThrough has no option 'queue_limit' (queue_limit is a key of each step: set it in {STAGER})",
                 id="step-key-in-step-config"),
    pytest.param(setting("Pipeline.stagers_conf.0.config", {"Counter": {"count": 3}}), f"{STAGER}.config.Counter",
                 "PassThrough has no option 'Counter' (Counter is the class of step COUNT: its section goes at the top "
                 "level of the file)", id="other-steps-section-in-step-config"),
]

#: (command-line arguments, the error's key, what it says was expected)
COMMAND_LINE_CASES = [
    pytest.param(
        ["--Counter.count=abc"], "--Counter.count", "expected an int (at least 0), got str 'abc'", id="cli-trait-type"
    ),
    pytest.param(
        ["--Counter.cont=3"], "--Counter.cont", "Counter has no option 'cont' (did you mean 'count'?)", id="cli-trait"
    ),
    pytest.param(["--Countr.count=3"], "--Countr", "unknown class (did you mean 'Counter'?)", id="cli-class"),
    pytest.param(["--Counter.nb_thread=2"], "--Counter.nb_thread", "Counter has no option 'nb_thread' (nb_thread is "
                 "a key of each step: set it in Pipeline.producer_conf, in the config file)", id="cli-step-key"),
    pytest.param(["--Counter.path=x"], "--Counter.path", "Counter has no option 'path' (path is an option of "
                 "JsonLinesWriter, the class of step WRITE: --JsonLinesWriter.path)", id="cli-other-steps-option"),
    pytest.param(["--Counter.mode=sequential"], "--Counter.mode", "Counter has no option 'mode' (did you mean "
                 '--Pipeline.mode? a run key, of the "Pipeline" section)', id="cli-run-key-in-class"),
    pytest.param(["--Pipeline.count=3"], "--Pipeline.count", "Pipeline has no option 'count' (count is an option of "
                 "Counter, the class of step COUNT: --Counter.count)", id="cli-option-in-pipeline"),
    pytest.param(["--Pipeline.processes=2"], "--Pipeline.processes", "Pipeline has no option 'processes' (did you "
                 "mean 'nb_process'? nb_process is a key of each step: set it in producer_conf, each item of "
                 "stagers_conf or consumer_conf, in the config file)", id="cli-near-a-step-key"),
    pytest.param(["--Pipeline.listen_address=tcp://*:5570"], "--Pipeline.listen_address", "Pipeline has no option "
                 "'listen_address' (did you mean 'listen'?)", id="cli-run-key-and-a-word-more"),
    pytest.param(
        ["--Pipeline.mode=fast"],
        "--Pipeline.mode",
        "expected any of ['threads', 'sequential'], got str 'fast'",
        id="cli-pipeline-mode",
    ),
    *(
        pytest.param(
            [f"--Pipeline.shutdown_timeout={text}"],
            "--Pipeline.shutdown_timeout",
            f"expected a finite float (at least 0.0, at most 1000000.0), got float {float(text)!r}",
            id=f"cli-shutdown-timeout-{text}",
        )
        for text in ("nan", "inf", "1e10")
    ),
    pytest.param(
        ["--Pipeline.dead_letter=."],
        "--Pipeline.dead_letter",
        "'.' is a folder (expected the path of a file to write)",
        id="cli-dead-letter-folder",
    ),
]


def write(tmp_path: Path, change: Change) -> Path:
    """Write the valid chain config, changed by ``change``, into ``tmp_path``."""
    return write_config(tmp_path, change(chain_config(str(tmp_path / "out.jsonl"))))


def command_line(argv: Sequence[str]) -> Config:
    """The overrides that traitlets reads from ``argv``, as pipeline-run passes them on."""
    return KVArgParseConfigLoader(list(argv)).load_config()


def config_error(path: Path, argv: Sequence[str] = ()) -> ConfigError:
    """The ConfigError that building the pipeline at ``path`` with ``argv`` raises."""
    with pytest.raises(ConfigError) as raised:
        Pipeline.from_config(path, command_line(argv), overrides_source=COMMAND_LINE)
    assert "\n" not in str(raised.value)
    return raised.value


def test_the_valid_config_loads(tmp_path: Path) -> None:
    """The config that every case breaks is itself valid, so each case fails for its own reason."""
    pipeline = Pipeline.from_config(write(tmp_path, lambda document: document), command_line(["--Counter.count=7"]))
    assert list(pipeline.pipeline_config.steps) == ["COUNT", "PASS", "WRITE"]
    assert pipeline.pipeline_config.config.Counter.count == 7  # read for its trait (it was kept a string)
    assert pipeline.steps is pipeline.pipeline_config  # the former name, kept for compatibility


@pytest.mark.parametrize(("change", "key", "expected"), FILE_CASES)
def test_file_error(tmp_path: Path, change: Change, key: str, expected: str) -> None:
    """A broken config file: the error names the file, the key and what was expected."""
    path = write(tmp_path, change)
    error = config_error(path)
    assert (error.source, error.key) == (str(path), key)
    assert expected in error.problem


@pytest.mark.parametrize("cls", ["StaticRun", "PartialRun", "CallableRun"])
def test_a_static_run_takes_the_message_alone(tmp_path: Path, cls: str) -> None:
    """run() as a static method, a functools.partial or a callable object has no self: the signature check of the
    step's role must not count one (a valid partial was refused, exit 2)."""
    path = write(tmp_path, stager_class(STEPS, cls))
    report = Pipeline.from_config(path, command_line(["--Counter.count=3", "--Pipeline.mode=sequential"])).run()
    assert report.exit_status == 0 and report["PASS"].processed == 3, report.table()


def test_a_byte_order_mark_before_the_json_is_read_past(tmp_path: Path) -> None:
    """Some Windows editors write one; json refused it, with its own advice to decode as utf-8-sig."""
    path = tmp_path / "bom.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(chain_config(str(tmp_path / "out.jsonl"))).encode())
    assert list(load_config(path).steps) == ["COUNT", "PASS", "WRITE"]


@pytest.mark.parametrize(("source", "problem"), [
    ("  \n" + json.dumps(chain_config()), "expected a config file path or a dict, got JSON text (give "
     "json.loads(text), or the path of a file holding it)"),
    (json.dumps(chain_config()).encode(), "expected a config file path or a dict, got bytes"),
    ("x" * 5000, "cannot read the config file: File name too long"),
], ids=["json-text", "bytes", "long-text"])
def test_a_source_that_is_no_path_is_one_short_line(source: str | bytes, problem: str) -> None:
    """JSON text given as the path: the error was 'cannot read the config file: No such file or directory', after
    the whole JSON as the file's name."""
    with pytest.raises(ConfigError) as raised:
        Pipeline.from_config(source)  # type: ignore[arg-type]
    assert raised.value.problem == problem
    assert len(str(raised.value)) < len(problem) + 80, str(raised.value)


def test_unreadable_file(tmp_path: Path) -> None:
    """A config file that does not exist."""
    path = tmp_path / "missing.json"
    error = config_error(path)
    assert (error.source, error.key) == (str(path), "")
    assert error.problem == "cannot read the config file: No such file or directory"


@pytest.mark.parametrize(("argv", "key", "expected"), COMMAND_LINE_CASES)
def test_command_line_error(tmp_path: Path, argv: list[str], key: str, expected: str) -> None:
    """A bad --Class.trait=value: the error names the command line, the option and what was expected."""
    error = config_error(write(tmp_path, lambda document: document), argv)
    assert (error.source, error.key) == (COMMAND_LINE, key)
    assert error.problem == expected


@pytest.mark.parametrize(("option", "value", "expected"), [
    ("tags", [1, 2], "expected a list whose elements are each a unicode string, got int 1 at [0]"),
    ("ids", [1, "a"], "expected a list whose elements are each an int, got str 'a' at [1]"),
    ("pair", [1, "x"], "expected a tuple (2 elements) whose element [1] is an int, got str 'x' at [1]"),
    ("weights", {"a": "x"}, "expected a dict whose values are each an int, got str 'x' at ['a']"),
    ("groups", [[1], [2, "a"]], "expected a list whose elements are each an int, got str 'a' at [1][1]"),
    ("names", ["a", 1], "expected a set whose elements are each a unicode string, got int 1 at [1]"),
    ("sizes", [1], "expected a list (at least 2 elements), got list [1]"),
])
def test_a_container_option_names_the_element_it_refuses(tmp_path: Path, option: str, value: Any,
                                                         expected: str) -> None:
    """``List(Unicode())`` given [1, 2] said "expected a list, got list [1, 2]": the element refused, where it stands
    and what it should be, from the file and from the command line alike."""
    given = stager_class(STEPS, "Containers")
    error = config_error(write(tmp_path, lambda document: {**given(document), "Containers": {option: value}}))
    assert (error.key, error.problem) == (f"Containers.{option}", expected)
    error = config_error(write(tmp_path, given), [f"--Containers.{option}={value!r}"])
    assert (error.source, error.key, error.problem) == (COMMAND_LINE, f"--Containers.{option}", expected)


@pytest.mark.parametrize("option", ["anything", "either_any"])
@pytest.mark.parametrize("value", [3, "text", [1, "a"], {"k": 2.5}])
def test_an_option_that_takes_anything_takes_any_value(tmp_path: Path, option: str, value: Any) -> None:
    """A traitlets ``Any`` option (alone or in a union) crashed pipeline-run with "AttributeError: 'Any' object has
    no attribute 'validate'"."""
    given = stager_class(STEPS, "Containers")
    path = write(tmp_path, lambda document: {**given(document), "Containers": {option: value}})
    assert Pipeline.from_config(path).pipeline_config.config.Containers[option] == value


@pytest.mark.parametrize(("option", "expected"), [
    ("download", "a unicode string"),
    ("download_or_count", "an int or a unicode string"),
])
def test_an_option_whose_trait_raises_another_error_is_one_line(tmp_path: Path, option: str, expected: str) -> None:
    """A library trait that raises more than traitlets' errors while it validates (ctapipe's Path downloads a URL, and
    requests raised ConnectionError): ~60 lines of traceback, exit 1. Now one line naming the option, what it expected
    and the error, from the file and from the command line alike."""
    url = "http://127.0.0.1:9/gamma.simtel.zst"
    problem = f"expected {expected}, got str {url!r} (ConnectionError: cannot download {url}: no network)"
    given = stager_class(STEPS, "Containers")
    error = config_error(write(tmp_path, lambda document: {**given(document), "Containers": {option: url}}))
    assert (error.key, error.problem) == (f"Containers.{option}", problem)
    error = config_error(write(tmp_path, given), [f"--Containers.{option}={url}"])
    assert (error.source, error.key, error.problem) == (COMMAND_LINE, f"--Containers.{option}", problem)


def test_a_step_check_names_the_command_line_when_the_value_came_from_it(tmp_path: Path) -> None:
    """--LineReader.path=poem.tx: the error named the config file, which holds a path that exists."""
    (tmp_path / "poem.txt").write_text("one\n", encoding="utf-8")
    path = write(tmp_path, line_reader(str(tmp_path / "poem.txt")))
    error = config_error(path, [f"--LineReader.path={tmp_path / 'poem.tx'}"])
    assert (error.source, error.key) == (COMMAND_LINE, "--LineReader.path")
    assert error.problem == (f"step 'COUNT': LineReader.path {str(tmp_path / 'poem.tx')!r} does not exist (expected "
                             "a text file to read)")
    # The command line set another option: the file's path is still the file's fault.
    error = config_error(write(tmp_path, line_reader("poem.tx")), ["--LineReader.skip_blank=True"])
    assert (error.source, error.key) == (str(path), PRODUCER)


@pytest.mark.parametrize(("change", "key", "problem"), MISPLACED_CASES)
def test_a_key_in_the_wrong_place_says_where_it_belongs(tmp_path: Path, change: Change, key: str,
                                                        problem: str) -> None:
    """It listed what the wrong place takes (27 run keys, 600 characters) or that a class must be a child class."""
    error = config_error(write(tmp_path, change))
    assert (error.key, error.problem) == (key, problem)


#: Cases that run through a real pipeline-run subprocess: (change, command-line arguments).
SUBPROCESS_CASES = [
    pytest.param(replacing(INVALID_JSON), [], id="invalid-json"),
    pytest.param(resetting("Pipeline"), [], id="no-pipeline"),
    pytest.param(renaming("Pipeline", "Flow"), [], id="flow-section"),
    pytest.param(setting("Pipeline.stagers_conf.0.nb_thread", 0), [], id="nb-thread-0"),
    pytest.param(renaming("Pipeline.stagers_conf.0.nb_thread", "nb_threads"), [], id="nb-threads-typo"),
    pytest.param(stager_class("no_such_module", "PassThrough"), [], id="module-missing"),
    pytest.param(stager_class(STEPS, "NotAComponent"), [], id="not-a-component"),
    pytest.param(stager_class(STEPS, "Hides_log"), [], id="option-named-log"),
    pytest.param(stagers(("PASS", "BACK"), ("BACK", "PASS,WRITE")), [], id="cycle"),
    pytest.param(setting("Counter", {"count": "many"}), [], id="trait-type"),
    pytest.param(lambda document: document, ["--Counter.count=abc"], id="cli-trait-type"),
    pytest.param(lambda document: document, ["--Counter.cont=3"], id="cli-trait"),
    pytest.param(setting(PRODUCER, {"name": "COUNT", "module": "algorithms.basic", "class": "LineReader",
                                    "next_steps": "PASS", "nb_process": 2}), [], id="producer-not-shardable"),
    pytest.param(setting("Pipeline.stagers_conf.0.next_steps", "WRITE, WRITE"), [], id="next-step-twice"),
    pytest.param(setting("Pipeline.shutdown_timeout", float("nan")), [], id="shutdown-timeout-nan"),
    pytest.param(setting("Pipeline.dead_letter", "no_such_folder/failed.jsonl"), [], id="dead-letter-missing-folder"),
    pytest.param(setting("Pipeline.dead_letter", "."), [], id="dead-letter-folder"),
    pytest.param(setting("Counter", {"count": nested(200)}), [], id="nested-too-deeply"),
    pytest.param(lambda document: document, ["--Pipeline.graph_interval=inf"], id="cli-graph-interval-inf"),
    pytest.param(setting(f"{PRODUCER}.count", 3), [], id="own-option-in-step"),
    pytest.param(setting("Pipeline.nb_thread", 2), [], id="step-key-in-pipeline"),
    pytest.param(setting("mode", "sequential"), [], id="run-key-at-top-level"),
    pytest.param(lambda document: document, ["--Counter.nb_thread=2"], id="cli-step-key-in-section"),
]


@pytest.mark.parametrize(("change", "argv"), SUBPROCESS_CASES)
def test_pipeline_run_prints_one_line(tmp_path: Path, change: Change, argv: list[str]) -> None:
    """pipeline-run exits 2 and prints the error on one line of stderr, with no traceback."""
    path = write(tmp_path, change)
    expected = config_error(path, argv)
    result = run_cli(f"--config={path}", *argv)
    assert result.returncode == 2
    assert result.stderr == f"pipeline-run: error: {expected}\n"
    assert result.stdout == ""


def test_pipeline_run_debug_shows_the_traceback(tmp_path: Path) -> None:
    """With --debug, the same error comes after its traceback."""
    path = write(tmp_path, setting("Pipeline.stagers_conf.0.nb_thread", -1))
    result = run_cli(f"--config={path}", "--debug")
    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert result.stderr.splitlines()[-1] == (
        f"pipeline-run: error: {path}: {STAGER}.nb_thread: expected an integer from 0 to 256, got -1"
    )


#: Config files that are not JSON text: (the file's bytes, the problem the error states).
RAW_CASES = [
    pytest.param(
        b"\x89PNG\r\n\x1a\n\x00\x00", "not UTF-8 text: byte 0x89 at offset 0 (expected JSON text)", id="binary"
    ),
    pytest.param(
        '{"Counter": {"name": "caf\xe9"}}'.encode("latin-1"),
        "not UTF-8 text: byte 0xe9 at offset 25 (expected JSON text)",
        id="latin-1",
    ),
    pytest.param(
        b'{\n  "version": ' + b"9" * 5000 + b"\n}\n",
        "invalid JSON at line 2 column 14: an integer of 5000 digits (expected at most 4300)",
        id="5000-digits",
    ),
    pytest.param(b"", "empty (expected a JSON config file)", id="empty"),
    pytest.param(
        b"[" * 100_000 + b"]" * 100_000,
        f"invalid JSON: nested too deeply (expected at most {MAX_DEPTH} levels)",
        id="deep-json",
    ),
]


@pytest.mark.parametrize(("data", "problem"), RAW_CASES)
def test_a_file_that_is_not_json_text(tmp_path: Path, data: bytes, problem: str) -> None:
    """Bytes that are not UTF-8, or JSON that Python cannot read: one line, and exit 2 from pipeline-run."""
    path = tmp_path / "pipeline.json"
    path.write_bytes(data)
    error = config_error(path)
    assert (error.source, error.key, error.problem) == (str(path), "", problem)
    result = run_cli(f"--config={path}")
    assert (result.returncode, result.stderr, result.stdout) == (2, f"pipeline-run: error: {error}\n", "")


def test_a_fifo_that_nothing_writes_to_is_empty(tmp_path: Path) -> None:
    """A named pipe that no process writes to: opening it waited for a writer for ever, and the run with it."""
    path = tmp_path / "pipeline.json"
    os.mkfifo(path)
    result = run_cli(f"--config={path}")
    assert (result.returncode, result.stderr) == (2, f"pipeline-run: error: {path}: empty (expected a JSON config "
                                                     "file)\n")


def test_a_file_too_large_to_be_a_config(tmp_path: Path) -> None:
    """A file of more than 16 MiB is refused before it is read (a path such as /dev/zero would never end)."""
    path = tmp_path / "huge.json"
    with path.open("wb") as file:
        file.truncate(MAX_FILE_BYTES + 1)  # sparse: no need to write the bytes
    error = config_error(path)
    assert (error.key, error.problem) == ("", "larger than 16 MiB (expected a JSON config file)")


def long_chain(stagers: int, last: str = "WRITE") -> Change:
    """The chain COUNT -> S0 -> S1 -> ... -> WRITE with ``stagers`` stagers; the last one sends to ``last``."""
    names = [f"S{i}" for i in range(stagers)]
    conf = [
        {"name": name, "module": "algorithms.basic", "class": "PassThrough", "next_steps": after}
        for name, after in zip(names, [*names[1:], last], strict=True)
    ]

    def change(document: dict[str, Any]) -> dict[str, Any]:
        document["Pipeline"]["producer_conf"]["next_steps"] = "S0"
        document["Pipeline"]["stagers_conf"] = conf
        return document

    return change


def test_a_chain_of_1200_stagers_is_valid(tmp_path: Path) -> None:
    """No check of the graph recurses: a chain deeper than Python's recursion limit loads, in order."""
    path = write(tmp_path, long_chain(1200))
    config = load_config(path)
    assert [step.name for step in config.topological_order()] == ["COUNT", *(f"S{i}" for i in range(1200)), "WRITE"]
    result = run_cli(f"--config={path}", "--graph=dot")
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(" -> ") == 1201


def test_a_cycle_through_1200_stagers_is_one_short_line(tmp_path: Path) -> None:
    """The cycle check finds the cycle without recursing, and names its ends rather than 1,200 steps."""
    path = write(tmp_path, long_chain(1200, last="S0"))
    error = config_error(path)
    assert error.key == f"{STAGER}.next_steps"
    assert error.problem == "cycle: S0 -> S1 -> S2 -> S3 -> S4 -> ... (1193 more) -> S1198 -> S1199 -> S0"
    result = run_cli(f"--config={path}")
    assert (result.returncode, result.stderr) == (2, f"pipeline-run: error: {error}\n")


@pytest.mark.parametrize(("overrides", "key", "expected"), [
    ({"Counter": {"count": "x"}}, "Counter.count", "expected an int (at least 0), got str 'x'"),
    (Config({"Counter": {"count": "x"}}), "Counter.count", "expected an int (at least 0), got str 'x'"),
    ({"Countr": {"count": 2}}, "Countr", "unknown class (did you mean 'Counter'?)"),
    ({"Counter": 5}, "Counter", "expected an object of trait values, got int"),  # was a raw AttributeError
    (["Counter"], "", "expected an object of sections {class: {option: value}}, got list"),  # a raw ValueError
    ({1: {}}, "", "expected text keys, as in JSON, got int 1"),  # raw TypeErrors from traitlets
    ({"Counter": {1: 2}}, "Counter", "expected text keys, as in JSON, got int 1"),
    ({"Flow": {"mode": "sequential"}}, "Flow", 'the section of a ctapipe flow config: rename it to "Pipeline"'),
    ({"Pipeline": {"mode": "multiprocessus"}}, "Pipeline.mode", "ctapipe flow's 'multiprocessus' (expected 'threads' "
     'or \'sequential\': a step\'s workers run in worker processes with "nb_process" in the step)'),
])
def test_overrides_of_the_python_api_are_named_as_such(overrides: Any, key: str, expected: str) -> None:
    """Pipeline.from_config's overrides: a ConfigError whose source is "overrides", not the command line, which the
    program may not have."""
    with pytest.raises(ConfigError) as caught:
        Pipeline.from_config(str(Path(__file__).parent.parent / "configs" / "chain.json"), overrides)
    assert (caught.value.source, caught.value.key, caught.value.problem) == ("overrides", key, expected)


@pytest.mark.parametrize(("argv", "key", "expected"), [
    (["--Containers.ids=[1, 2]"], "ids", [1, 2]),
    (["--Containers.ids=7"], "ids", [7]),
    (["--Containers.ids=[1]", "--Containers.ids=[3, 4]"], "ids", [3, 4]),  # given twice: the last
    (["--Containers.pair=(5, 6)"], "pair", (5, 6)),
    (['--Containers.weights={"a": 2}'], "weights", {"a": 2}),
])
def test_a_container_option_on_the_command_line_is_a_python_literal(tmp_path: Path, argv: list[str], key: str,
                                                                   expected: Any) -> None:
    """As cli.md says (they were refused: "expected a list, got str '[1, 2]'"), and the step gets the value."""
    path = write(tmp_path, stager_class(STEPS, "Containers"))
    pipeline = Pipeline.from_config(path, command_line(argv), overrides_source=COMMAND_LINE)
    assert pipeline.pipeline_config.config["Containers"][key] == expected
    component = pipeline.pipeline_config.make_component("PASS")
    assert getattr(component, key) == expected


@pytest.mark.parametrize(("key", "value"), [("level", 1), ("level", 0), ("switch", True), ("switch", False),
                                            ("switch", "auto")])
def test_an_enum_takes_its_own_choices(tmp_path: Path, key: str, value: Any) -> None:
    """The choice itself, of its own kind, still goes (a boolean for a number is refused above)."""
    path = write(tmp_path, lambda document: {**stager_class(STEPS, "Containers")(document), "Containers": {key: value}})
    component = Pipeline.from_config(path).pipeline_config.make_component("PASS")
    assert getattr(component, key) == value and type(getattr(component, key)) is type(value)


def test_a_config_from_python_with_a_key_that_is_no_text_is_a_config_error() -> None:
    """A dict source may have keys JSON cannot: one line naming where (it was a raw TypeError from the suggestions)."""
    document = chain_config()
    document["Pipeline"]["producer_conf"][3] = "x"
    with pytest.raises(ConfigError) as caught:
        load_config(document)
    assert (caught.value.source, caught.value.key, caught.value.problem) == (
        "<config>", "Pipeline.producer_conf", "expected text keys, as in JSON, got int 3")


def test_a_numpy_integer_in_a_config_from_python_is_the_integer_it_holds() -> None:
    """``"nb_thread": np.int64(2)`` was refused: "expected an integer from 0 to 256, got np.int64(2)"."""
    np = pytest.importorskip("numpy")
    document = chain_config()
    document["Pipeline"]["stagers_conf"][0].update(nb_thread=np.int64(2), queue_limit=np.int32(-1))
    step = load_config(document).steps["PASS"]
    assert (step.nb_thread, type(step.nb_thread), step.queue_limit) == (2, int, -1)
    document["Pipeline"]["stagers_conf"][0]["nb_thread"] = np.int64(300)
    with pytest.raises(ConfigError, match=r"nb_thread: expected an integer from 0 to 256, got np.int64\(300\)"):
        load_config(document)
