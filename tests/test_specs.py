"""pipeline.engine.specs: what a worker process is given of the run's options, and what is refused before it goes."""

from __future__ import annotations

import pickle
import sys
import types
from typing import Any

import pytest

from pipeline.config.loader import load_config
from pipeline.config.model import PipelineConfig
from pipeline.config.options import RunOptions
from pipeline.engine.specs import spec_for, unimportable, unsendable
from pipeline.errors import ConfigError

#: Why worker processes start afresh, as the door says it of remote workers.
REMOTE = "they start on their own host"


class _Script:
    """Stands for a class of the running script (put there by the fixture ``script``)."""


_Script.__module__ = "__main__"


@pytest.fixture(autouse=True)
def script(monkeypatch: pytest.MonkeyPatch) -> None:
    """_Script, a class of the running script."""
    monkeypatch.setattr(sys.modules["__main__"], "_Script", _Script, raising=False)


def _config(given: dict[str, Any]) -> PipelineConfig:
    """A producer, a stager S of worker processes (Applies), a consumer C in threads (AppliesToo)."""
    return load_config({"version": 1, "Pipeline": {
        "producer_conf": {"name": "P", "module": "algorithms.basic", "class": "Counter", "next_steps": "S"},
        "stagers_conf": [{"name": "S", "module": "tests.start_steps", "class": "Applies", "nb_process": 1,
                          "next_steps": "C"}],
        "consumer_conf": {"name": "C", "module": "tests.start_steps", "class": "AppliesToo"}}}, given)


def _control() -> Any:
    return types.SimpleNamespace(options=RunOptions())


def test_an_option_of_another_steps_class_that_cannot_go_is_left_out() -> None:
    """A lambda given to the consumer in threads stays out of the stage's spec, which pickles; the rest goes."""
    spec = spec_for(_config({"AppliesToo": {"fn": lambda n: n}, "Applies": {"fn": abs}}), "S", "", _control(),
                    afresh=REMOTE)
    sent = pickle.loads(pickle.dumps(spec))
    assert dict(sent.config.overrides["AppliesToo"]) == {}
    assert sent.config.overrides["Applies"]["fn"] is abs
    kept = spec_for(_config({"AppliesToo": {"fn": len}}), "S", "", _control())
    assert kept.config.overrides["AppliesToo"]["fn"] is len


@pytest.mark.parametrize(("value", "afresh", "said"), [
    (lambda n: n, "", "pickle cannot copy it (PicklingError: "),
    ([1, {"deep": lambda n: n}], "", "pickle cannot copy it (PicklingError: "),
    (_Script, REMOTE, f"it refers to the running script (__main__), which worker processes that start afresh cannot "
                      f"import ({REMOTE})"),
    ([_Script], REMOTE, "it refers to the running script (__main__)"),
])
def test_an_option_of_the_steps_own_class_that_cannot_go_is_refused_naming_it(value: Any, afresh: str,
                                                                                said: str) -> None:
    with pytest.raises(ConfigError) as refused:
        spec_for(_config({"Applies": {"fn": value}}), "S", "", _control(), afresh=afresh)
    assert str(refused.value).startswith(f"command line: --Applies.fn: cannot be given to the worker processes of "
                                         f"step S: {said}")


def test_a_class_of_the_script_goes_to_a_worker_process_forked_from_it() -> None:
    """A fork has the script: only a process that starts afresh cannot import it."""
    assert unsendable([_Script], "") is None
    assert unsendable([_Script], REMOTE) is not None


def test_a_module_made_in_memory_cannot_be_imported_afresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(__import__("sys").modules, "made_here", types.ModuleType("made_here"))
    assert unimportable("made_here") == "module made_here, made in memory"
    assert unimportable("__main__") == "the running script (__main__)"
    assert unimportable("algorithms.basic") is None
    assert unimportable("not_imported_yet") is None  # a worker process says itself if it cannot import it
