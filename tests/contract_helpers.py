"""Steps of tests/contract_steps.py in engine configs, and what a run's Record consumer got, for the contract tests."""

from __future__ import annotations

import uuid
from typing import Any

from tests.contract_steps import RECEIVED
from tests.engine_helpers import step as engine_step

#: The module of the steps these configs name.
STEPS = "tests.contract_steps"


def step(name: str, cls: str, next_steps: list[str] | None = None, **extra: Any) -> dict[str, Any]:
    """A step entry whose class lives in tests/contract_steps.py (unless ``module`` says otherwise)."""
    return engine_step(name, cls, next_steps, **{"module": STEPS, **extra})


def new_tag() -> str:
    """A tag that keeps one run's shared state apart from every other run's."""
    return uuid.uuid4().hex


def received(tag: str) -> list[Any]:
    """What the Record consumer of run ``tag`` got; checks its finish() came last."""
    got = RECEIVED.pop(tag)
    assert got[-1] == "finished" and got.count("finished") == 1, got
    return got[:-1]
