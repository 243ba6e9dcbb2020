"""Fuzzing config documents: whatever the file holds, pipeline-run exits 0, 1 or 2, never with a traceback.

Hypothesis builds documents of three kinds: a valid config with some values replaced, removed
or renamed (values of every JSON type, NaN and infinities included); any JSON value; and the
text of a config cut short or with bytes spliced in. Each runs in-process through
``PipelineRun.execute`` (the path of ``pipeline-run``'s main), in a directory of its own; a few
fixed documents of the same kinds run through the real command too.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from pipeline.cli.run import PipelineRun
from tests.cli_helpers import run_cli

#: Short words that configs hold: step, class and module names, choices, and near misses of each.
#: Strings come from here or from a small alphabet, so that no fuzzed module name imports a module
#: with side effects (such as ``this`` or ``antigravity``).
WORDS = [
    "COUNT", "PASS", "WRITE", "X", "COUNT, PASS", "PASS, PASS", "Counter", "PassThrough", "Printer", "Countr",
    "NotAComponent", "algorithms.basic", "tests.config_steps", "no_such_module", "stop", "skip", "threads",
    "sequential", "localhost:1", "", " ", ".", "out/x.jsonl",
]
TEXT = st.sampled_from(WORDS) | st.text(alphabet="ab ,._-1\0é", max_size=6)
#: Numbers stay small: a count of 2**70 would be a valid config that runs for ever, and so would one of 6.4e16 (a
#: float that holds an integer is one; an example of 43 million messages ran in-process for ten minutes and more).
SCALARS = (st.none() | st.booleans() | st.integers(-3, 8) | st.floats(-8, 8)
           | st.sampled_from([math.nan, math.inf, -math.inf]) | TEXT)
#: Keys that configs hold, at every level, besides new ones.
KEYS = [
    "version", "Pipeline", "producer_conf", "stagers_conf", "consumer_conf", "name", "class", "module",
    "next_steps", "nb_thread", "nb_process", "queue_limit", "ordered", "on_error", "config", "mode",
    "max_failures", "allow_failures", "dead_letter", "shutdown_timeout", "graph_interval", "progress_interval",
    "gui_address", "keep_freed_memory", "Counter", "Printer", "PassThrough", "count", "start", "prefix",
]
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS) | TEXT, inner, max_size=3),
    max_leaves=6,
)

#: Where a change may hit a valid config: each a path of keys and list indexes.
PATHS = [
    ("version",), ("Pipeline",), ("Counter",), ("Counter", "count"), ("Counter", "start"), ("Printer", "prefix"),
    *(("Pipeline", key) for key in ("producer_conf", "stagers_conf", "consumer_conf", "mode", "max_failures",
                                    "allow_failures", "dead_letter", "shutdown_timeout", "graph_interval",
                                    "progress_interval", "gui_address", "keep_freed_memory")),
    *((*step, key) for step in (("Pipeline", "producer_conf"), ("Pipeline", "stagers_conf", 0),
                                ("Pipeline", "consumer_conf"))
      for key in ("name", "class", "module", "next_steps", "nb_thread", "nb_process", "queue_limit", "ordered",
                  "on_error", "config")),
]
DELETE, RENAME = object(), object()
CHANGES = st.lists(
    st.tuples(st.sampled_from(PATHS), st.sampled_from([DELETE, RENAME]) | VALUES, st.sampled_from(KEYS) | TEXT),
    min_size=1, max_size=3,
)


def base_config() -> dict[str, Any]:
    """A valid config of steps without side effects beyond stdout: COUNT -> PASS -> PRINT."""
    return {
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "COUNT", "module": "algorithms.basic", "class": "Counter", "next_steps": "PASS"},
            "stagers_conf": [{"name": "PASS", "module": "algorithms.basic", "class": "PassThrough", "nb_thread": 2,
                              "next_steps": "PRINT"}],
            "consumer_conf": {"name": "PRINT", "module": "algorithms.basic", "class": "Printer"},
        },
        "Counter": {"count": 3},
    }


def changed(changes: list[tuple[tuple[Any, ...], Any, str]]) -> dict[str, Any]:
    """The base config with each change applied where its path still leads somewhere."""
    document = base_config()
    for path, value, new_key in changes:
        node: Any = document
        for part in path[:-1]:
            if not _holds(node, part):
                break
            node = node[part]
        else:
            last = path[-1]
            if isinstance(node, dict) and value is DELETE:
                node.pop(last, None)
            elif isinstance(node, dict) and value is RENAME and last in node:
                node[new_key] = node.pop(last)
            elif value not in (DELETE, RENAME) and (isinstance(node, dict) or _holds(node, last)):
                node[last] = value
    return document


def _holds(node: Any, part: str | int) -> bool:
    """Whether ``node`` has the key or the index ``part``."""
    if isinstance(node, list):
        return isinstance(part, int) and part < len(node)
    return isinstance(node, dict) and part in node


def as_text(document: Any) -> bytes:
    """A document as a config file holds it (NaN and infinities as Python's JSON writes them)."""
    return json.dumps(document).encode("utf-8")


DOCUMENTS = (
    CHANGES.map(changed).map(as_text)
    | VALUES.map(as_text)
    | st.tuples(CHANGES.map(changed).map(as_text), st.integers(0, 400), st.binary(max_size=8), st.booleans()).map(
        lambda cut: cut[0][: cut[1]] + cut[2] + (cut[0][cut[1]:] if cut[3] else b"")
    )
)


@contextmanager
def isolated() -> Iterator[tuple[Path, io.StringIO, io.StringIO]]:
    """A directory of its own as the working directory, stdout and stderr captured, logging restored after."""
    loggers = [logging.getLogger(name) for name in ("pipeline", PipelineRun.__name__)]
    saved = [(logger.handlers[:], logger.level, logger.propagate) for logger in loggers]
    previous = os.getcwd()
    out, err = io.StringIO(), io.StringIO()
    with tempfile.TemporaryDirectory() as directory:
        os.chdir(directory)
        try:
            with redirect_stdout(out), redirect_stderr(err):
                yield Path(directory), out, err
        finally:
            os.chdir(previous)
            for logger, (handlers, level, propagate) in zip(loggers, saved, strict=True):
                logger.handlers[:] = handlers
                logger.setLevel(level)
                logger.propagate = propagate


def assert_clean_exit(status: int, stderr: str) -> None:
    """Exit 0, 1 or 2; no traceback; a configuration error on exactly one line."""
    assert status in (0, 1, 2), stderr
    assert "Traceback" not in stderr, stderr
    if status == 2:
        assert stderr.startswith("pipeline-run: error: ") and stderr.count("\n") == 1, stderr


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(DOCUMENTS)
def test_any_config_document_exits_0_1_or_2_without_a_traceback(data: bytes) -> None:
    """In-process, as pipeline-run's main runs it."""
    with isolated() as (directory, _, err):
        (directory / "fuzz.json").write_bytes(data)
        status = PipelineRun().execute(["--config=fuzz.json", "--no-progress", "--Pipeline.gui=False"])
    event(f"exit {status}")
    assert_clean_exit(status, err.getvalue())


#: Fixed documents of the kinds the fuzz test makes, for the real command.
CLI_DOCUMENTS = [
    pytest.param(as_text(changed([(("Pipeline", "shutdown_timeout"), float("nan"), "")])), id="nan"),
    pytest.param(as_text(changed([(("Pipeline", "stagers_conf", 0, "nb_thread"), [{"a": None}], "")])), id="list"),
    pytest.param(as_text(changed([(("Pipeline", "consumer_conf"), RENAME, "consumer")])), id="renamed"),
    pytest.param(as_text(base_config())[:57] + b"\xff\x00", id="cut-with-bytes"),
    pytest.param(as_text([None, {"Pipeline": 2**70}]), id="any-json"),
]


@pytest.mark.parametrize("data", CLI_DOCUMENTS)
def test_pipeline_run_exits_2_with_one_line(tmp_path: Path, data: bytes) -> None:
    """The real command, as a subprocess: exit 2, one line on stderr, nothing on stdout."""
    path = tmp_path / "fuzz.json"
    path.write_bytes(data)
    result = run_cli(f"--config={path}", "--no-progress", "--Pipeline.gui=False")
    assert_clean_exit(result.returncode, result.stderr)
    assert (result.returncode, result.stdout) == (2, "")


def test_the_fuzzed_base_config_runs() -> None:
    """The config that the changes start from is valid, so they explore near valid documents."""
    with isolated() as (directory, out, err):
        (directory / "base.json").write_bytes(as_text(base_config()))
        status = PipelineRun().execute(["--config=base.json", "--no-progress", "--Pipeline.gui=False"])
    assert status == 0, err.getvalue()
    assert sorted(out.getvalue().split()) == ["0", "1", "2"]
