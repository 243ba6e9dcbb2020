"""Classes a step builds with ``parent=self`` (Component.child_classes, as ctapipe's components
are) take their options from the same config, checked like a step's; Component.check() stops a
config that cannot run before anything runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline import ConfigError, Pipeline
from tests.cli_helpers import run_cli, write_config

MODULE = "tests.child_steps"

#: Where CLEAN runs: the run's threads, one thread, or a worker process (the config crosses to it).
MODES = [
    pytest.param({"Pipeline": {"mode": "sequential"}}, {}, id="sequential"),
    pytest.param({}, {}, id="threads"),
    pytest.param({}, {"nb_process": 1}, id="worker-process"),
]


def config(tmp_path: Path, clean: dict[str, Any] | None = None, **sections: Any) -> dict[str, Any]:
    """NUMBERS (3 numbers) -> CLEAN (the step with a child) -> WRITE (to tmp_path/out.jsonl)."""
    return {
        "version": 1,
        "Pipeline": {
            "producer_conf": {"name": "NUMBERS", "module": "algorithms.basic", "class": "Counter",
                              "next_steps": "CLEAN"},
            "stagers_conf": [{"name": "CLEAN", "module": MODULE, "class": "Clean", "next_steps": "WRITE",
                              **(clean or {})}],
            "consumer_conf": {"name": "WRITE", "module": MODULE, "class": "Write"},
        },
        "Counter": {"count": 3},
        "Write": {"path": str(tmp_path / "out.jsonl")},
        **sections,
    }


def outputs(tmp_path: Path) -> set[tuple[float, int]]:
    """The (threshold, min_neighbors) pairs that CLEAN's children had."""
    lines = (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert sorted(json.loads(line)["n"] for line in lines) == [0, 1, 2]
    return {(json.loads(line)["threshold"], json.loads(line)["min_neighbors"]) for line in lines}


@pytest.mark.parametrize(("overrides", "clean"), MODES)
def test_a_child_takes_its_options_from_the_config(tmp_path: Path, overrides: dict, clean: dict) -> None:
    """A section for the child's class and one for its base class both reach the child, in every mode."""
    document = config(tmp_path, clean, StrictCleaner={"min_neighbors": 3}, Cleaner={"threshold": 7.5})
    report = Pipeline.from_config(document, overrides).run()
    assert report.exit_status == 0
    assert outputs(tmp_path) == {(7.5, 3)}


def test_a_section_nested_in_the_step_sets_that_steps_child_only(tmp_path: Path) -> None:
    """As in ctapipe's configs, a class section nested in the step's (or in its config key) is for its children."""
    step_config = {"config": {"StrictCleaner": {"min_neighbors": 4}}}
    nested = config(tmp_path, step_config, Clean={"Cleaner": {"threshold": 1.0}})
    assert Pipeline.from_config(nested).run().exit_status == 0
    assert outputs(tmp_path) == {(1.0, 4)}


@pytest.mark.parametrize(("overrides", "extra"), MODES)
def test_a_section_in_the_steps_own_reaches_a_grandchild_of_that_step_only(tmp_path: Path, overrides: dict,
                                                                          extra: dict) -> None:
    """ctapipe.md: a section nested in a step's class section or config key sets the components of that step only,
    its cleaner built by its ImageProcessor too (traitlets applies Process.StrictCleaner only to a cleaner whose
    parent is a Process: it was taken and did nothing)."""
    document = config(tmp_path, {"class": "Process", "config": {"StrictCleaner": {"threshold": 6.0}}, **extra},
                      StrictCleaner={"threshold": 9.0, "min_neighbors": 1})
    document["Pipeline"]["stagers_conf"].append({"name": "OTHER", "module": MODULE, "class": "Process",
                                                 "next_steps": "WRITE", **extra})
    document["Pipeline"]["producer_conf"]["next_steps"] = "CLEAN,OTHER"
    assert Pipeline.from_config(document, overrides).run().exit_status == 0
    lines = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted((row["threshold"], row["min_neighbors"]) for row in lines) == [(6.0, 1)] * 3 + [(9.0, 1)] * 3


@pytest.mark.parametrize(("overrides", "extra"), MODES)
@pytest.mark.parametrize(("sections", "step", "expected"), [
    ({"Process": {"StrictCleaner": {"threshold": 10.0, "min_neighbors": 4},
                  "Processor": {"StrictCleaner": {"threshold": 5.0}}}}, {}, {(5.0, 4)}),
    ({"Process": {"Processor": {"StrictCleaner": {"threshold": 5.0}}}},
     {"config": {"StrictCleaner": {"threshold": 10.0, "min_neighbors": 4}}}, {(5.0, 4)}),
])
def test_within_a_steps_own_section_the_more_particular_wins(tmp_path: Path, sections: dict, step: dict,
                                                              expected: set, overrides: dict, extra: dict) -> None:
    """Process.Processor.StrictCleaner names the cleaners of the step's processors: it wins over the step's
    Process.StrictCleaner (which was merged over it), and takes the options it does not set from it."""
    document = config(tmp_path, {"class": "Process", **step, **extra}, **sections)
    assert Pipeline.from_config(document, overrides).run().exit_status == 0
    assert outputs(tmp_path) == expected


@pytest.mark.parametrize(("overrides", "extra"), MODES)
@pytest.mark.parametrize(("sections", "expected"), [
    ({"Process": {"StrictCleaner": {"threshold": 7.0}}}, {(7.0, 1)}),
    ({"Process": {"StrictCleaner": {"threshold": 7.0, "min_neighbors": 3}},
      "SubProcess": {"StrictCleaner": {"threshold": 8.0}}}, {(8.0, 3)}),
])
def test_a_section_nested_in_a_base_classs_reaches_the_steps_components(tmp_path: Path, sections: dict,
                                                                         expected: set, overrides: dict,
                                                                         extra: dict) -> None:
    """ctapipe.md's EventInput section is for both its steps: a cleaner section nested in it was taken, and set
    nothing on a step's cleaners built by its image processor. The step's own class's section wins over it."""
    document = config(tmp_path, {"class": "SubProcess", **extra}, StrictCleaner={"threshold": 9.0, "min_neighbors": 1},
                      **sections)
    assert Pipeline.from_config(document, overrides).run().exit_status == 0
    assert outputs(tmp_path) == expected


def test_a_steps_config_key_merges_into_its_class_section_at_every_depth(tmp_path: Path) -> None:
    """configuration.md's order: the step's config key over its class section, option by option (a nested section in
    the key replaced the class section's whole, back to the defaults)."""
    document = config(tmp_path, {"class": "Process", "config": {"Processor": {"StrictCleaner": {"threshold": 5.0}}}},
                      Process={"Processor": {"StrictCleaner": {"threshold": 7.0, "min_neighbors": 3}}})
    assert Pipeline.from_config(document).run().exit_status == 0
    assert outputs(tmp_path) == {(5.0, 3)}


def test_the_command_line_wins_over_a_section_nested_for_a_parent(tmp_path: Path) -> None:
    """configuration.md: the command line wins over the file; traitlets let the file's Processor.StrictCleaner (more
    particular) win over --StrictCleaner.threshold, which then did nothing, as ctapipe.md's own example."""
    step = {"class": "Process", "config": {"StrictCleaner": {"threshold": 6.0}}}
    path = write_config(tmp_path, config(tmp_path, step, Processor={"StrictCleaner": {"threshold": 3.0,
                                                                                       "min_neighbors": 3}}))
    result = run_cli(f"--config={path}", "--StrictCleaner.threshold=8", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert outputs(tmp_path) == {(8.0, 3)}


def test_the_command_line_sets_a_childs_option(tmp_path: Path) -> None:
    """--StrictCleaner.min_neighbors=5 wins over the file, as for a step's option."""
    path = write_config(tmp_path, config(tmp_path, StrictCleaner={"min_neighbors": 3}))
    result = run_cli(f"--config={path}", "--StrictCleaner.min_neighbors=5", "--no-progress")
    assert result.returncode == 0, result.stderr
    assert outputs(tmp_path) == {(5.0, 5)}


QUALIFIED = "tests.child_steps.StrictCleaner"


@pytest.mark.parametrize(
    ("sections", "key", "problem"),
    [
        pytest.param({"StrictCleaner": {"min_neigbors": 3}}, "StrictCleaner.min_neigbors",
                     f"StrictCleaner has no option 'min_neigbors' ({QUALIFIED}, of step CLEAN) "
                     "(did you mean 'min_neighbors'?)", id="unknown-option"),
        pytest.param({"StrictCleaner": {"min_neighbors": -1}}, "StrictCleaner.min_neighbors",
                     f"expected an int (at least 0), got int -1 ({QUALIFIED}, of step CLEAN)", id="bad-value"),
        pytest.param({"Clean": {"StrictCleaner": {"threshold": "high"}}}, "Clean.StrictCleaner.threshold",
                     f"expected a float, got str 'high' ({QUALIFIED}, of step CLEAN)", id="nested-bad-value"),
        pytest.param({"Clean": {"Processor": {"threshold": 1.0}}}, "Clean.Processor",
                     "Clean has no option 'Processor' (a section for a class "
                     "its step builds: that class must be in the step's child_classes)", id="child-class-not-listed"),
        # A misspelt class nested in a section: it said "that class must be in the step's child_classes", with no word
        # on the name, where the same typo at the top level had "did you mean".
        pytest.param({"Clean": {"StrictCleanr": {"threshold": 2.0}}}, "Clean.StrictCleanr",
                     "Clean has no option 'StrictCleanr' (did you mean 'StrictCleaner'?)", id="nested-class-misspelt"),
        # Another step's class, whose objects never have a parent: the setting did nothing, silently.
        pytest.param({"Counter": {"Write": {"path": "elsewhere.jsonl"}}}, "Counter.Write",
                     "Counter has no option 'Write' (Write is the class of step WRITE: its section goes at the top "
                     "level of the file)", id="another-steps-class"),
        pytest.param({"Write": {"StrictCleaner": {"threshold": 2.0}}}, "Write.StrictCleaner",
                     "Write has no option 'StrictCleaner' (StrictCleaner is a class that step CLEAN builds: its "
                     "section goes at the top level of the file)", id="another-steps-child"),
        pytest.param({"Write": {"min_neighbors": 3}}, "Write.min_neighbors",
                     "Write has no option 'min_neighbors' (min_neighbors is an option of StrictCleaner, a class that "
                     'step CLEAN builds: set it in the "StrictCleaner" section)', id="another-steps-childs-option"),
        # A section it could take, with a value no section can be: not "remove it", but the top level's line.
        pytest.param({"Clean": {"StrictCleaner": None}}, "Clean.StrictCleaner",
                     "expected an object of trait values, got NoneType", id="nested-null"),
        pytest.param({"Clean": {"StrictCleaner": []}}, "Clean.StrictCleaner",
                     "expected an object of trait values, got list", id="nested-list"),
        # A class that the step module holds and Process lists, but no step of this pipeline does: it said
        # "not a step class of this pipeline", or suggested a class of another name.
        pytest.param({"Processor": {}}, "Processor",
                     "unknown section: tests.child_steps.Processor is in no step's child_classes (expected the class "
                     "in the child_classes of the step that builds it)", id="child-class-listed-by-no-step"),
        pytest.param({"Cleanr": {}}, "Cleanr",
                     "unknown section: not a step class of this pipeline (did you mean 'Cleaner'?)",
                     id="unknown-class"),
    ],
)
def test_a_bad_child_option_is_one_line_naming_the_class_and_the_step(
    tmp_path: Path, sections: dict, key: str, problem: str
) -> None:
    """pipeline-run exits 2 before any step runs; the line names the child's class and its step."""
    path = write_config(tmp_path, config(tmp_path, **sections))
    with pytest.raises(ConfigError) as raised:
        Pipeline.from_config(path)
    assert (raised.value.key, raised.value.problem) == (key, problem)
    result = run_cli(f"--config={path}")
    assert (result.returncode, result.stderr) == (2, f"pipeline-run: error: {raised.value}\n")
    assert not (tmp_path / "out.jsonl").exists()  # WRITE's init() never ran


@pytest.mark.parametrize(("cls", "got"), [
    ("CommaLess", "child_classes: expected a tuple of Configurable classes, got the class "
                  "tests.child_steps.StrictCleaner (a tuple of one class needs its comma: (StrictCleaner,))"),
    ("AnInstance", "child_classes: expected a tuple of Configurable classes, got a StrictCleaner object (expected "
                   "its class, not an instance: StrictCleaner)"),
    ("AText", "child_classes: expected a tuple of Configurable classes, got str 'x' at [1]"),
    ("ATrait", "child_classes: expected a tuple of Configurable classes, got a trait List (child_classes is "
               "Component's own attribute: rename the trait)"),
], ids=["comma-less", "instance", "text", "trait"])
def test_child_classes_that_are_no_tuple_of_classes_are_one_line(tmp_path: Path, cls: str, got: str) -> None:
    """``child_classes = (Cleaner)`` (a one-item tuple without its comma), an instance, a text or a trait of that
    name crashed pipeline-run with a traceback and exit 1 ('MetaHasTraits' object is not iterable): one line, exit 2."""
    path = write_config(tmp_path, config(tmp_path, {"class": cls}))
    result = run_cli(f"--config={path}")
    assert (result.returncode, result.stderr) == (
        2, f"pipeline-run: error: {path}: Pipeline.stagers_conf[0].class: {MODULE}.{cls}.{got}\n")


def test_the_child_classes_of_a_child_are_checked_and_configurable(tmp_path: Path) -> None:
    """A child's own child_classes are checked as the step's are, and the classes they list take their sections."""
    path = write_config(tmp_path, config(tmp_path, {"class": "BuildCommaLess"}))
    result = run_cli(f"--config={path}")
    assert (result.returncode, result.stderr) == (
        2, f"pipeline-run: error: {path}: Pipeline.stagers_conf[0].class: {MODULE}.CommaLessBuilder.child_classes: "
           f"expected a tuple of Configurable classes, got the class {MODULE}.StrictCleaner (a tuple of one class "
           "needs its comma: (StrictCleaner,))\n")
    document = config(tmp_path, {"class": "Build"}, StrictCleaner={"min_neighbors": 5})
    assert Pipeline.from_config(document).run().exit_status == 0
    assert outputs(tmp_path) == {(5.0, 5)}


@pytest.mark.parametrize(
    ("clean", "overrides", "where"),
    [
        pytest.param({"config": {"StrictCleaner": 5}}, None, "{path}: Pipeline.stagers_conf[0].config.StrictCleaner",
                     id="config-key"),
        pytest.param({}, {"Clean": {"StrictCleaner": "5"}}, "overrides: Clean.StrictCleaner", id="overrides"),
    ],
)
def test_a_child_section_given_a_value_that_is_no_object_is_said_so(tmp_path: Path, clean: dict,
                                                                     overrides: dict | None, where: str) -> None:
    """The step's config key and Pipeline.from_config's overrides say it as a file's section does (the overrides
    raised traitlets' own ValueError)."""
    path = write_config(tmp_path, config(tmp_path, clean))
    with pytest.raises(ConfigError) as raised:
        Pipeline.from_config(path, overrides)
    wrong = "int" if overrides is None else "str"
    assert str(raised.value) == f"{where.format(path=path)}: expected an object of trait values, got {wrong}"


def test_the_command_line_names_a_child_class_that_no_step_lists(tmp_path: Path) -> None:
    """--Processor.x on the command line gets the file's words for the class (it said: unknown class)."""
    result = run_cli(f"--config={write_config(tmp_path, config(tmp_path))}", "--Processor.threshold=1")
    assert (result.returncode, result.stderr) == (2, "pipeline-run: error: command line: --Processor: unknown class: "
                                                  "tests.child_steps.Processor is in no step's child_classes "
                                                  "(expected the class in the child_classes of the step that builds "
                                                  "it)\n")
    assert not (tmp_path / "out.jsonl").exists()


def test_check_stops_the_run_before_anything_runs(tmp_path: Path) -> None:
    """A producer whose check() raises: exit 2, one line naming the step, and no step started."""
    document = config(tmp_path)
    document["Pipeline"]["producer_conf"] = {"name": "TABLE", "module": MODULE, "class": "ReadTable",
                                             "next_steps": "CLEAN", "config": {"path": "missing.txt"}}
    del document["Counter"]
    path = write_config(tmp_path, document)
    result = run_cli(f"--config={path}")
    assert result.returncode == 2
    assert result.stderr == (f"pipeline-run: error: {path}: Pipeline.producer_conf: "
                             "step 'TABLE': no such file 'missing.txt' to read\n")
    assert not (tmp_path / "out.jsonl").exists()
    result = run_cli(f"--config={path}", "--ReadTable.exit_code=4")  # it exited 4, saying nothing
    assert result.returncode == 2
    assert result.stderr.startswith(f"pipeline-run: error: {path}: Pipeline.producer_conf: step 'TABLE': check() "
                                    "raised SystemExit: 4 (tests/child_steps.py, line ")
    assert len(result.stderr.splitlines()) == 1
    (tmp_path / "table.txt").write_text("a\nb\n", encoding="utf-8")
    result = run_cli(f"--config={path}", f"--ReadTable.path={tmp_path / 'table.txt'}", "--no-progress")
    assert result.returncode == 0, result.stderr
