"""The trait types of JSON values (pipeline/traits.py) and the step keys declared with them (pipeline/stepkeys.py)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from traitlets import HasTraits, TraitError

from pipeline.config.stepkeys import KEY_TRAITS, REQUIRED_STEP_KEYS, STEP_KEYS, StepKeys, role_problem, step_key_traits
from pipeline.config.traits import (
    MAX_SECONDS,
    FiniteFloat,
    JsonBool,
    JsonInt,
    OutputFile,
    QueueLimit,
    Seconds,
    StepNames,
    ValueProblem,
    shown,
)


class Holder(HasTraits):
    """One trait of each type, as a config's values would set them."""

    count = JsonInt(1, min=1)
    bounded = JsonInt(5, min=0, max=10)
    anything = JsonInt(0)
    limit = QueueLimit(256)
    flag = JsonBool(False)
    names = StepNames()
    ratio = FiniteFloat(1.0)
    timeout = Seconds(10.0, min=0.0)
    output = OutputFile("")


def problem(trait: str, value: Any) -> str:
    """The problem that setting ``value`` on ``trait`` of a Holder states."""
    with pytest.raises(ValueProblem) as raised:
        setattr(Holder(), trait, value)
    return str(raised.value)


@pytest.mark.parametrize("value", [True, False, 1.0, 1.5, "1", None, [1]])
def test_json_int_refuses_what_json_does_not_call_an_integer(value: Any) -> None:
    """Booleans and floats, even 1.0, are not integers in a config (traitlets' Int takes them)."""
    assert problem("count", value) == f"expected an integer >= 1, got {value!r}"


@pytest.mark.parametrize(("trait", "value", "expected"), [
    ("count", 0, "an integer >= 1"),
    ("bounded", 11, "an integer from 0 to 10"),
    ("bounded", -1, "an integer from 0 to 10"),
    ("anything", "x", "an integer"),
])
def test_json_int_bounds_are_in_its_words(trait: str, value: Any, expected: str) -> None:
    """What an integer option expected names its bounds."""
    assert problem(trait, value) == f"expected {expected}, got {value!r}"


def test_json_int_keeps_integers_within_bounds() -> None:
    holder = Holder(count=7, bounded=10, anything=-3)
    assert (holder.count, holder.bounded, holder.anything) == (7, 10, -3)


@pytest.mark.parametrize("value", [-1, 1, 1000])
def test_queue_limit_takes_minus_one_for_unbounded(value: int) -> None:
    assert Holder(limit=value).limit == value


@pytest.mark.parametrize("value", [0, -2, -1.0, True, "-1"])
def test_queue_limit_refuses_other_values(value: Any) -> None:
    assert problem("limit", value) == f"expected an integer >= 1, or -1 for unbounded, got {value!r}"


@pytest.mark.parametrize("value", [0, 1, "true", None])
def test_json_bool_takes_only_true_and_false(value: Any) -> None:
    assert problem("flag", value) == f"expected true or false, got {value!r}"
    assert Holder(flag=True).flag is True


@pytest.mark.parametrize(("value", "names"), [
    ("A", ("A",)),
    ("A, B", ("A", "B")),
    (" A ,B,", ("A", "B")),
    ("", ()),
    (["A", " B "], ("A", "B")),
    ([], ()),
])
def test_step_names_from_a_string_or_a_list(value: Any, names: tuple[str, ...]) -> None:
    """A comma-separated string or a list; blanks stripped, empty parts of a string left out."""
    assert Holder(names=value).names == names


@pytest.mark.parametrize("value", [["A", ""], ["A", 3], 3, {"A": 1}, None])
def test_step_names_refuse_other_shapes(value: Any) -> None:
    assert problem("names", value) == f"expected a comma-separated string or a list of step names, got {value!r}"


@pytest.mark.parametrize("value", ["W, W", "A, W,W", ["W", " W"]])
def test_step_names_refuse_a_name_given_twice(value: Any) -> None:
    """A step named twice would get every message twice."""
    assert problem("names", value) == "'W' is named twice (expected each step once)"


@given(st.lists(st.text(alphabet="ABCxyz_-.0123456789 ", min_size=1).filter(str.strip), unique_by=str.strip))
def test_step_names_as_string_and_as_list_agree(names: list[str]) -> None:
    """The two spellings of the same names give the same tuple."""
    expected = tuple(name.strip() for name in names)
    assert Holder(names=", ".join(names)).names == expected
    assert Holder(names=names).names == expected


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_finite_float_refuses_nan_and_infinities(value: float) -> None:
    with pytest.raises(TraitError):
        Holder(ratio=value)
    assert Holder(ratio=-2.5).ratio == -2.5


@pytest.mark.parametrize("value", [math.nan, math.inf, MAX_SECONDS * 2, 10**400, -1.0])
def test_seconds_refuse_what_no_wait_can_take(value: Any) -> None:
    """Beyond MAX_SECONDS a thread's wait overflows; an integer too large for a float is refused, not raised."""
    with pytest.raises(TraitError):
        Holder(timeout=value)
    assert Holder(timeout=MAX_SECONDS).timeout == MAX_SECONDS
    assert Seconds(1.0, min=0.0).max == MAX_SECONDS


def test_output_file(tmp_path: Path) -> None:
    """A file to write: nothing, or a path that is not a folder, in a folder that exists."""
    assert Holder(output="").output == ""
    assert Holder(output=str(tmp_path / "new.jsonl")).output == str(tmp_path / "new.jsonl")
    assert problem("output", str(tmp_path)) == f"{str(tmp_path)!r} is a folder (expected the path of a file to write)"
    missing = tmp_path / "missing"
    assert problem("output", str(missing / "x.jsonl")) == (
        f"the folder {str(missing)!r} does not exist (expected a file in an existing folder)"
    )
    assert problem("output", "a\0b") == "'a\\x00b' holds a NUL character (expected the path of a file to write)"


def test_an_output_file_that_open_would_refuse_is_refused_before_the_run(tmp_path: Path) -> None:
    """Paths that passed the check and failed the step's init() once the run had started (a traceback, exit 1)."""
    long_name = str(tmp_path / ("p" * 300))
    assert problem("output", long_name).endswith(": File name too long (expected the path of a file to write)")
    assert problem("output", "\ud800") == ("expected the path of a file to write, got '\\ud800' ('\\ud800' is a lone "
                                          "surrogate, which neither a file name nor UTF-8 text can hold)")
    (tmp_path / "c.json").write_text("{}", encoding="utf-8")
    assert problem("output", str(tmp_path / "c.json" / "x")) == (
        f"{shown(str(tmp_path / 'c.json'))} is not a folder (expected the path of a file to write in a folder)")
    assert problem("output", "/dev/null") == "'/dev/null' is not a regular file (expected the path of a file to write)"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write in any folder")
def test_an_output_file_in_a_folder_the_run_may_not_write_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    (folder / "old.jsonl").write_text("", encoding="utf-8")
    (folder / "old.jsonl").chmod(0o400)
    folder.chmod(0o500)
    try:
        assert problem("output", str(folder / "new.jsonl")) == (
            f"no file may be created in the folder {shown(str(folder))} (expected the path of a file to write)")
        assert problem("output", str(folder / "old.jsonl")) == (
            f"{shown(str(folder / 'old.jsonl'))} may not be written (expected the path of a file to write)")
    finally:
        folder.chmod(0o700)


def test_shown_values_stay_short() -> None:
    """An error message shows a value by a short repr, even a huge string or an integer too long to print."""
    assert shown("many") == "'many'"
    assert len(shown("x" * 100_000)) < 80
    assert len(shown(list(range(10_000)))) < 80
    assert shown(10**5000) == "an int too long to show"


def test_the_step_keys_in_declaration_order() -> None:
    """The keys as a config spells them (``class``, not the trait's ``class_``), in the reference's order."""
    assert STEP_KEYS == ("name", "class", "module", "next_steps", "nb_thread", "nb_process", "queue_limit",
                         "ordered", "on_error", "config")
    assert REQUIRED_STEP_KEYS == ("name", "class", "module")
    assert KEY_TRAITS["class"] == "class_"
    assert all(trait.help for trait in step_key_traits().values())


def test_step_keys_defaults() -> None:
    keys = StepKeys()
    defaults = {key: keys.get_key(key) for key in STEP_KEYS if key not in REQUIRED_STEP_KEYS}
    assert defaults == {"next_steps": (), "nb_thread": 1, "nb_process": 0, "queue_limit": 512, "ordered": False,
                        "on_error": "stop", "config": {}}


def test_set_key_strips_names() -> None:
    keys = StepKeys()
    keys.set_key("class", " Counter ")
    keys.set_key("name", "COUNT\t")
    assert (keys.get_key("class"), keys.name) == ("Counter", "COUNT")


@pytest.mark.parametrize(("kind", "key", "value", "expected"), [
    ("producer", "nb_thread", 2, "a producer runs in one thread (expected 1, got 2)"),
    ("consumer", "next_steps", "A", "a consumer has no next steps (expected none)"),
])
def test_role_problems(kind: str, key: str, value: Any, expected: str) -> None:
    """What the producer and the consumer may not set, and what a stager may."""
    keys = StepKeys()
    keys.set_key(key, value)
    assert role_problem(kind, keys) == (key, expected)
    assert role_problem("stager", keys) is None
