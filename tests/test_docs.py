"""The documentation is true: its examples run and print what it says, and its links lead somewhere.

Markers in the Markdown files are HTML comments, invisible once rendered. Each one applies to the
fenced block that follows it:

``<!-- file: NAME -->``
    The block is written to NAME in the example directory (a shell script too: a later command runs it).
``<!-- run -->`` (or ``<!-- run: any-order -->``, or ``<!-- run: needs MODULE -->``)
    The ``console`` block is run (with ``needs``, only where MODULE can be imported: an optional
    extra's examples run in CI's environment that has it). Each ``$ COMMAND`` line runs in the example
    directory and its
    output (stdout and stderr together, as a terminal shows them) must match the lines under it:
    a line ``...`` matches any number of lines, ``...`` inside a line matches any text. With
    ``any-order`` the lines may come in any order. ``$ echo $?`` shows the exit status of the
    command before it; a command not followed by it must exit 0. The times in a run's summary
    (its wall time, and each step's MEAN_MS, MAX_MS and MSG/S) vary from run to run: they are
    compared as placeholders, every other figure exactly. A command line ending in ``\\`` goes on
    on the next line. ``$ COMMAND &`` starts COMMAND in the background (it shows nothing there);
    ``$ wait`` waits for it and shows what it printed, and its exit status is COMMAND's.
``<!-- run: slurm -->``
    The same, on the login node of a real SLURM cluster (tests/slurm_cluster.py), where the commands
    may also be ``sbatch``, ``squeue``, ``scontrol``, ``scancel`` and ``sinfo``: the host names of
    the docs (``login1``, ``cn1``) stand for the cluster's nodes in the commands, the files and the
    output. Such blocks run in test_slurm_recipes_run_as_documented (with the rest of their
    document), which skips, saying why, where no cluster can be started.
``<!-- output-of: COMMAND -->``
    The block is what COMMAND prints (matched as above), and COMMAND exits 0.
``<!-- same-as: PATH -->``
    The block shows the repository's file PATH (JSON blocks compare as JSON).
``<!-- no-run: REASON -->``
    A command-line block that is not run, and why.

Every ``console``/``sh`` block carries one of these markers, so no command example goes untested;
every ``python`` block compiles and every ``json`` block parses.

The blocks of one document run in document order in one directory holding a copy of ``configs/``,
as a reader following the document would. Commands may be ``pipeline-run`` (run as the console
script runs: the working directory is not on the Python path unless ``PYTHONPATH`` says so),
``pipeline-keys``, ``pipeline-worker`` and ``python``, each optionally preceded by ``NAME=value`` environment settings.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.doc_helpers import ROOT, Block, Example, console_commands, fenced_blocks

if TYPE_CHECKING:
    from tests.slurm_cluster import SlurmCluster

# The tests of this file take more than 10 s in all: `pytest -m "not slow"` leaves them out.
pytestmark = pytest.mark.slow

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
#: Blocks whose language makes them commands: each must be run or say why it is not.
COMMAND_LANGUAGES = {"console", "sh", "shell", "bash"}


# --------------------------------------------------------------------------- output matching


#: The lines of the summary table that hold times: the wall time, the header, a row per step.
_WALL_TIME = re.compile(r"wall time [\d.]+ s, run (\w+)")
_HEADER = re.compile(r"STEP +RECEIVED +PROCESSED +EMITTED +FAILED +MEAN_MS +MAX_MS +MSG/S")
_STEP_ROW = re.compile(r"(\S+(?: +\d+){4})(?: +(?:[\d.]+|-)){2} +\d+")


def without_times(line: str) -> str:
    """``line`` with the times of a summary table replaced by placeholders, and its spacing made single."""
    if wall := _WALL_TIME.fullmatch(line):
        return f"wall time <s> s, run {wall.group(1)}"
    if _HEADER.fullmatch(line):
        return " ".join(line.split())
    if row := _STEP_ROW.fullmatch(line):
        return " ".join(row.group(1).split()) + " <times>"
    return line


def _line_pattern(expected: str) -> re.Pattern[str]:
    return re.compile(".*".join(re.escape(part) for part in expected.split("...")))


def output_matches(expected: list[str], actual: list[str], any_order: bool = False) -> bool:
    """Whether ``actual`` lines match ``expected`` (``...`` as described in the module docstring)."""
    expected = [without_times(line.rstrip()) for line in expected]
    actual = [without_times(line.rstrip()) for line in actual]
    if any_order:
        return sorted(expected) == sorted(actual)
    reached = {0}  # how many actual lines the expected lines so far can have matched
    for pattern in expected:
        if pattern == "...":
            reached = set(range(min(reached), len(actual) + 1))
            continue
        regex = _line_pattern(pattern)
        reached = {j + 1 for j in reached if j < len(actual) and regex.fullmatch(actual[j])}
        if not reached:
            return False
    return len(actual) in reached


@pytest.mark.parametrize(
    ("expected", "actual", "result"),
    [
        (["a", "b"], ["a", "b"], True),
        (["a"], ["a", "b"], False),
        (["a", "...", "d"], ["a", "b", "c", "d"], True),
        (["a", "...", "d"], ["a", "d"], True),
        (["...", "c"], ["a", "b", "c"], True),
        (["... ERROR x: ...: boom"], ["12:00 ERROR x: step 3: boom"], True),
        (["total: 1"], ["total: 12"], False),
        (["b", "a"], ["a", "b"], False),
    ],
)
def test_output_matching(expected: list[str], actual: list[str], result: bool) -> None:
    """The matcher itself: whole lines, ``...`` lines and ``...`` inside a line."""
    assert output_matches(expected, actual) is result


def test_summary_times_are_placeholders() -> None:
    """Two runs' summaries match whatever their times; a different count does not."""
    shown = ["wall time 0.03 s, run finished", "STEP   RECEIVED  PROCESSED  EMITTED  FAILED  MEAN_MS  MAX_MS  MSG/S",
             "LINES         0          4        4       0    0.118   0.465    159", "WORDS  1  1  1  0  -  -  0"]
    printed = ["wall time 1.50 s, run finished", "STEP   RECEIVED  PROCESSED  EMITTED  FAILED  MEAN_MS  MAX_MS   MSG/S",
               "LINES         0          4        4       0     12.5    1234  100000", "WORDS  1  1  1  0  -  -  7"]
    assert output_matches(shown, printed)
    assert not output_matches(shown, [*printed[:2], printed[2].replace("4        4", "4        5"), printed[3]])
    assert not output_matches(shown, ["wall time 0.03 s, run failed", *printed[1:]])


def test_output_matching_in_any_order() -> None:
    """With any-order, the same lines in another order match, and only those."""
    assert output_matches(["b", "a"], ["a", "b"], any_order=True)
    assert not output_matches(["a", "a"], ["a", "b"], any_order=True)


# --------------------------------------------------------------------------- running commands


def check_output(block: Block, command: str, expected: list[str], actual: list[str], any_order: bool) -> None:
    """Fail with both texts unless ``actual`` matches what the document shows."""
    if not output_matches(expected, actual, any_order):
        raise AssertionError(
            f"{block.where}: `{command}` printed:\n" + "\n".join(actual) + "\n\nbut the document shows:\n"
            + "\n".join(expected)
        )


def run_console_block(example: Example, block: Block) -> None:
    """Run each command of a marked console block and compare its output and exit status."""
    needs = block.argument.removeprefix("needs ") if block.argument.startswith("needs ") else None
    if needs is not None and importlib.util.find_spec(needs) is None:
        return  # an optional extra's example: CI runs it in the environment that has the extra
    any_order = block.argument == "any-order"
    commands = console_commands(block.text)
    for i, (command, expected) in enumerate(commands):
        if command == "echo $?":
            assert expected == [str(example.last_status)], (
                f"{block.where}: the exit status was {example.last_status}, the document shows {expected}"
            )
            continue
        if command.endswith("&"):
            assert not expected, f"{block.where}: a command started with & shows nothing (`wait` shows its output)"
            example.start(command[:-1].rstrip())
            continue
        status, actual = example.wait() if command == "wait" else example.run(command)
        check_output(block, command, [example.substitute(line) for line in expected], actual, any_order)
        shown = i + 1 < len(commands) and commands[i + 1][0] == "echo $?"
        assert shown or status == 0, f"{block.where}: `{command}` exited {status}:\n" + "\n".join(actual)
        example.last_status = status


def run_document(doc: Path, directory: Path, cluster: SlurmCluster | None = None) -> int:
    """Run the marked blocks of ``doc`` in order in ``directory`` (the ``run: slurm`` ones only on
    ``cluster``); how many commands ran."""
    shutil.copytree(ROOT / "configs", directory / "configs")
    example = Example(directory, cluster=cluster)
    try:
        return _run_blocks(doc, example)
    except AssertionError as err:
        raise AssertionError(f"{err}{example.diagnostics()}") from None
    finally:
        example.close()


def _run_blocks(doc: Path, example: Example) -> int:
    directory = example.directory
    ran = 0
    for block in fenced_blocks(doc):
        if block.marker == "file":
            path = directory / block.argument
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(example.substitute(block.text), encoding="utf-8")
        elif block.marker == "run" and (block.argument != "slurm" or example.cluster is not None):
            run_console_block(example, block)
            ran += 1
        elif block.marker == "same-as":
            shown, real = block.text, (ROOT / block.argument).read_text(encoding="utf-8")
            if block.language == "json":
                shown, real = json.loads(shown), json.loads(real)
            assert shown == real, f"{block.where}: the block differs from {block.argument}"
        elif block.marker == "output-of":
            status, actual = example.run(block.argument)
            check_output(block, block.argument, block.text.splitlines(), actual, any_order=False)
            assert status == 0, f"{block.where}: `{block.argument}` exited {status}"
            ran += 1
    return ran


# --------------------------------------------------------------------------- the tests


#: Seconds that the examples of a document may take, where the suite's 60 per test is too few:
#: ctapipe's examples import ctapipe in each worker process.
SLOW_DOCS = {"ctapipe.md": 300}


def timed(docs: list[Path]) -> list[Any]:
    """The documents as test parameters, each slow one with its own timeout."""
    return [pytest.param(doc, marks=pytest.mark.timeout(SLOW_DOCS[doc.name])) if doc.name in SLOW_DOCS else doc
            for doc in docs]


@pytest.mark.parametrize("doc", timed(DOCS), ids=lambda doc: str(doc.relative_to(ROOT)))
def test_examples_run_as_documented(doc: Path, tmp_path: Path) -> None:
    """Every file, command and output that a document marks as runnable is true of the code."""
    run_document(doc, tmp_path)


#: The documents with blocks that run on a SLURM cluster.
SLURM_DOCS = [doc for doc in DOCS if any(block.argument == "slurm" for block in fenced_blocks(doc))]


@pytest.mark.parametrize("doc", SLURM_DOCS, ids=lambda doc: str(doc.relative_to(ROOT)))
def test_slurm_recipes_run_as_documented(doc: Path, slurm: SlurmCluster, tmp_path: Path) -> None:
    """The blocks marked ``run: slurm`` (and the rest of their document) run on a real SLURM cluster."""
    assert run_document(doc, tmp_path, slurm) > 0


def test_the_tutorial_is_mostly_runnable() -> None:
    """The tutorial's commands are checked, not merely shown (a guard against losing the markers)."""
    blocks = fenced_blocks(ROOT / "docs" / "tutorial.md")
    assert sum(block.marker == "run" for block in blocks) >= 8
    assert {"wordsteps.py", "words.json"} <= {block.argument for block in blocks if block.marker == "file"}


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: str(doc.relative_to(ROOT)))
def test_every_block_is_checked(doc: Path) -> None:
    """Commands are run or say why not; Python compiles; JSON parses."""
    for block in fenced_blocks(doc):
        if block.language in COMMAND_LANGUAGES:
            assert block.marker in ("run", "no-run", "file"), (
                f"{block.where}: a {block.language} block needs a run marker (or a file marker, for a script)")
            if block.marker == "no-run":
                assert block.argument, f"{block.where}: say why the block is not run"
        elif block.language == "python":
            compile(block.text, block.where, "exec")
        elif block.language == "json":
            json.loads(block.text)
        if block.marker == "run":
            assert block.language == "console", f"{block.where}: only console blocks run"


def _readme_block(first_line: str | None = None, file: str | None = None) -> str:
    for block in fenced_blocks(ROOT / "README.md"):
        if first_line is not None and block.text.startswith(first_line + "\n"):
            return block.text
        if file is not None and block.marker == "file" and block.argument == file:
            return block.text
    raise AssertionError(f"README.md has no block {first_line or file!r}")


def test_readme_minimal_pipeline_runs(tmp_path: Path) -> None:
    """The README's two-step pipeline, saved as a user would, runs with python -m pipeline."""
    (tmp_path / "mysteps.py").write_text(_readme_block(first_line="# mysteps.py"), encoding="utf-8")
    config = _readme_block(file="squares.json")
    assert json.loads(config)["Pipeline"]["producer_conf"]["module"] == "mysteps"
    (tmp_path / "squares.json").write_text(config, encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    result = subprocess.run(
        [sys.executable, "-m", "pipeline", "--config=squares.json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "got 0\ngot 1\ngot 4\ngot 9\n"
    # The report's SHOW row starts with its RECEIVED, PROCESSED, EMITTED and FAILED counts.
    assert re.search(r"^SHOW +4 +4 +0 +0\b", result.stderr, re.MULTILINE), result.stderr
    assert result.stderr.endswith("exit status 0\n")


# --------------------------------------------------------------------------- links

_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_INLINE_CODE = re.compile(r"`+[^`]*`+")


def _text_lines(doc: Path) -> list[str]:
    """The lines of ``doc`` outside its fenced blocks."""
    lines = doc.read_text(encoding="utf-8").splitlines()
    fenced: set[int] = set()
    for block in fenced_blocks(doc):
        fenced.update(range(block.line, block.line + block.text.count("\n") + 2))  # the fences too
    return [line for number, line in enumerate(lines, 1) if number not in fenced]


def anchors(doc: Path) -> set[str]:
    """The anchors of ``doc``'s headings, as GitHub makes them (lower case, punctuation dropped, '-' for ' ')."""
    found: set[str] = set()
    for line in _text_lines(doc):
        heading = re.match(r"#{1,6}\s+(.*?)\s*#*$", line)
        if heading:
            found.add(re.sub(r"[^\w\- ]", "", heading.group(1).lower()).replace(" ", "-"))
    return found


def relative_links(doc: Path) -> list[str]:
    """The targets of ``doc``'s links (outside code) that are not web addresses."""
    prose = _INLINE_CODE.sub("", "\n".join(_text_lines(doc)))
    return [t for t in _LINK.findall(prose) if not re.match(r"[a-z][a-z0-9+.-]*:", t)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda doc: str(doc.relative_to(ROOT)))
def test_relative_links_lead_to_existing_files(doc: Path) -> None:
    """Each relative link names a file of the repository, and its #anchor a heading of that file."""
    for target in relative_links(doc):
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        assert file.exists(), f"{doc.relative_to(ROOT)}: link to a missing file: {target}"
        assert ROOT in file.parents or file == ROOT, f"{doc.relative_to(ROOT)}: link outside the repository: {target}"
        if anchor and file.suffix == ".md":
            assert anchor in anchors(file), f"{doc.relative_to(ROOT)}: no heading for #{anchor} in {path or doc.name}"


def test_the_docs_link_to_each_other() -> None:
    """The README and the index reach every page of docs/."""
    pages = {doc.name for doc in DOCS if doc.parent.name == "docs"}
    for index in (ROOT / "README.md", ROOT / "docs" / "index.md"):
        linked = {Path(target.partition("#")[0]).name for target in relative_links(index)}
        assert pages - {"index.md"} <= linked, f"{index.name} does not link to {pages - {'index.md'} - linked}"


# --------------------------------------------------------------------------- exit statuses

def _section(doc: Path, heading: str) -> str:
    """The text of ``doc`` under ``heading`` (a whole heading line), up to the next heading."""
    text = doc.read_text(encoding="utf-8")
    start = text.index(f"\n{heading}\n") + len(heading) + 2
    end = re.search(r"^#{1,6} ", text[start:], re.MULTILINE)
    return text[start:start + end.start()] if end else text[start:]


def test_the_faq_names_every_exit_status_of_the_cli_table() -> None:
    """The FAQ's list of exit statuses left out 129 (SIGHUP), which the table in cli.md gives."""
    table = set(re.findall(r"^\| (\d+) \|", _section(ROOT / "docs" / "cli.md", "## Exit status"), re.MULTILINE))
    faq = set(re.findall(r"\b(\d+): ", _section(ROOT / "docs" / "faq.md", "### What do the exit statuses mean?")))
    assert table and faq == table
