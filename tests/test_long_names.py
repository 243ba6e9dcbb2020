"""Output meant for people stays short, whatever part of the input is long: a config key, an option's name, a file's
path, a step, class or module name quoted in the problem, a suggestion. Each is cut in its middle, as values already
were, so that both its ends stay readable; a short error is left exactly as it was. A 100,000-character key made a
100,000-character line (200,000 where the name was quoted twice: in the key and in the problem)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pipeline.bench.app import main as bench_main
from pipeline.cli.keys import PipelineKeys
from pipeline.cli.run import PipelineRun
from pipeline.cli.worker import PipelineWorker
from pipeline.console.humanize import MAX_QUOTED_CHARS, cut_short, quoted, suggest
from pipeline.errors import MAX_PATH_SHOWN, MAX_PROBLEM_SHOWN, ConfigError
from tests.cli_helpers import ROOT, chain_config, run_cli, write_config

#: A name far longer than any line: the tester's 100,000 characters.
LONG = 100_000
#: The longest error line allowed: "COMMAND: error: ", the file (cut to MAX_PATH_SHOWN), the key (to MAX_QUOTED_CHARS)
#: and the problem (its quoted names cut to MAX_QUOTED_CHARS, the whole to MAX_PROBLEM_SHOWN).
MOST = MAX_PATH_SHOWN + MAX_QUOTED_CHARS + MAX_PROBLEM_SHOWN + 40


def long_name(first: str = "k") -> str:
    """A name of LONG characters whose two ends can be told from its middle and from each other."""
    return f"{first}head" + "m" * (LONG - 10) + "tail1"


def check_line(stderr: str, command: str, name: str, wording: str) -> None:
    """``stderr`` is one short error line of ``command`` that shows ``name``'s two ends and ``wording`` whole."""
    assert stderr.endswith("\n") and stderr.count("\n") == 1, stderr[:300]
    line = stderr[:-1]
    assert line.startswith(f"{command}: error: ")
    assert len(line) <= MOST, f"{len(line)} characters: {line[:300]}"
    assert name[:5] in line and name[-5:] in line and "characters cut ...]" in line
    assert wording in line


def with_key(document: dict[str, Any], where: Callable[[dict[str, Any]], dict[str, Any]], key: str,
             value: Any = 1) -> dict[str, Any]:
    """``document`` with ``key`` set to ``value`` in the object ``where`` picks out of it."""
    where(document)[key] = value
    return document


#: Config files with a long name somewhere: what to change, and words of the problem that must stay whole.
CONFIG_CASES = {
    "top-level key": (lambda name, doc: with_key(doc, lambda d: d, name), "unknown section"),
    "run key": (lambda name, doc: with_key(doc, lambda d: d["Pipeline"], name), "unknown key"),
    "step key": (lambda name, doc: with_key(doc, lambda d: d["Pipeline"]["stagers_conf"][0], name),
                 "unknown key (expected one of: class, config,"),
    "option of a step's class": (lambda name, doc: with_key(doc, lambda d: d["Counter"], name),
                                 "Counter has no option"),
    "option in a step's config": (lambda name, doc: with_key(doc, lambda d: d["Pipeline"]["stagers_conf"][0],
                                                              "config", {name: 1}), "PassThrough has no option"),
    "next step": (lambda name, doc: with_key(doc, lambda d: d["Pipeline"]["stagers_conf"][0], "next_steps", name),
                  "(steps: COUNT, PASS, WRITE)"),
    "class": (lambda name, doc: with_key(doc, lambda d: d["Pipeline"]["stagers_conf"][0], "class", "P" + name),
              "(expected one of: Component, Counter,"),
    "module": (lambda name, doc: with_key(doc, lambda d: d["Pipeline"]["stagers_conf"][0], "module", name),
               "ModuleNotFoundError: No module named"),
}


@pytest.mark.parametrize("case", sorted(CONFIG_CASES))
def test_a_long_name_in_a_config_file_is_cut_in_a_short_line(tmp_path: Path, app: PipelineRun, capsys,
                                                              case: str) -> None:
    change, wording = CONFIG_CASES[case]
    name = long_name()
    config = write_config(tmp_path, change(name, chain_config(str(tmp_path / "out.jsonl"))))
    assert app.execute([f"--config={config}", "--no-progress"]) == 2
    check_line(capsys.readouterr().err, "pipeline-run", name, wording)


#: Command-line options with a long name: the option, given the long name, and words that must stay whole.
OPTION_CASES = {
    "unknown option": (lambda name: f"--{name}=1", "unknown option (expected one of: --config,"),
    "option of a step's class": (lambda name: f"--Counter.{name}=1", "Counter has no option"),
    "run option": (lambda name: f"--Pipeline.{name}=1", "Pipeline has no option"),
    "unknown class": (lambda name: f"--K{name}.x=1", "unknown class"),
    "class in lowercase": (lambda name: f"--{name}.x=1", "is not a class name (class names begin with a capital"),
    "option in capitals": (lambda name: f"--Counter.K{name}=1", "is not an option name"),
    "dashed option": (lambda name: f"--Counter-{name}=1", "unknown option (did you mean '--Counter."),
    "bare argument": (lambda name: name, "unexpected argument"),
}


@pytest.mark.parametrize("case", sorted(OPTION_CASES))
def test_a_long_option_name_is_cut_in_a_short_line(app: PipelineRun, capsys, case: str) -> None:
    option, wording = OPTION_CASES[case]
    name = long_name()
    assert app.execute(["--config=configs/chain.json", option(name)]) == 2
    check_line(capsys.readouterr().err, "pipeline-run", name, wording)


def test_a_long_config_path_is_cut_in_a_short_line(app: PipelineRun, capsys) -> None:
    # Within PATH_MAX, so the system says what is wrong with it, not that it is too long.
    path = "/nonexistent/" + "d/" * 1990 + "x.json"
    assert app.execute([f"--config={path}"]) == 2
    check_line(capsys.readouterr().err, "pipeline-run", path, "cannot read the config file: No such file")


def test_the_subprocess_says_the_testers_long_key_in_a_short_line(tmp_path: Path) -> None:
    name = long_name()
    config = write_config(tmp_path, with_key(chain_config(str(tmp_path / "out.jsonl")), lambda d: d, name))
    result = run_cli(f"--config={config}", "--no-progress")
    assert result.returncode == 2
    check_line(result.stderr, "pipeline-run", name, "unknown section")


@pytest.mark.parametrize(("args", "wording"), [
    (lambda name: ["--connect=tcp://127.0.0.1:5570", "--server-key=x", f"--key=/tmp/{name}", "--step=A"],
     "--key: cannot look the path up (File name too long)"),
    (lambda name: [f"--connect=tcp://{name}:5570", "--server-key=x", "--key=x", "--step=A"],
     "is not a host name or address"),
    (lambda name: [f"--{name}=1"], "unknown option (expected one of: --connect,"),
    (lambda name: [f"--PipelineWorker.{name}=1"], "PipelineWorker has no option"),
])
def test_pipeline_worker_says_a_long_name_in_a_short_line(capsys, args: Callable[[str], list[str]],
                                                          wording: str) -> None:
    name = long_name()
    assert PipelineWorker().execute(args(name)) == 2
    check_line(capsys.readouterr().err, "pipeline-worker", name, wording)


@pytest.mark.parametrize(("args", "wording"), [
    (lambda name: [name, "x"], "unknown command (expected one of: generate)"),
    (lambda name: ["generate", "x", f"--{name}=1"], "unknown option"),
    (lambda name: ["generate", "x", f"--dir=/nonexistent/{name}"], "cannot make the directory"),
])
def test_pipeline_keys_says_a_long_name_in_a_short_line(capsys, args: Callable[[str], list[str]],
                                                        wording: str) -> None:
    name = long_name()
    assert PipelineKeys().execute(args(name)) == 2
    check_line(capsys.readouterr().err, "pipeline-keys", name, wording)


@pytest.mark.parametrize(("option", "wording"), [
    (lambda name: f"--{name}=1", "unknown option (expected one of: --authorized-keys,"),
    (lambda name: f"--server-key=/nonexistent/{name}", "--server-key: cannot look the path up (File name too long)"),
    (lambda name: f"--authorized-keys=/nonexistent/{name}", "cannot look the path up (File name too long)"),
])
def test_pipeline_gui_says_a_long_name_in_a_short_line(tmp_path: Path, option: Callable[[str], str],
                                                       wording: str) -> None:
    name = long_name()
    # HOME in tmp_path: the monitor's own key pair, which pipeline-gui makes at its first start, is made there.
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen", "HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, "-m", "gui", option(name)], cwd=ROOT, env=env, capture_output=True,
                            text=True, timeout=30, check=False)
    assert result.returncode == 2
    error = [line for line in result.stderr.splitlines(keepends=True) if line.startswith("pipeline-gui: error: ")]
    assert len(error) == 1, result.stderr[:300]
    check_line(error[0], "pipeline-gui", name, wording)


@pytest.mark.parametrize(("args", "wording"), [
    (lambda name: [f"--{name}"], "unrecognized arguments: --KHEAD"),
    (lambda name: [f"--only={name}"], "(expected some of W1,"),
])
def test_pipeline_bench_says_a_long_name_in_a_short_line(capsys, args: Callable[[str], list[str]],
                                                         wording: str) -> None:
    name = long_name("K").upper()  # --only takes workloads in capitals
    with pytest.raises(SystemExit) as exited:
        bench_main(args(name))
    assert exited.value.code == 2
    check_line(capsys.readouterr().err, "pipeline-bench", name, wording)


@given(source=st.text(max_size=3000), key=st.text(max_size=3000), problem=st.text(max_size=3000))
def test_a_config_error_is_one_bounded_printable_line(source: str, key: str, problem: str) -> None:
    text = str(ConfigError(source, key, problem))
    assert text.isprintable()
    assert len(text) <= MAX_PATH_SHOWN + MAX_QUOTED_CHARS + MAX_PROBLEM_SHOWN + 6


@given(st.text(max_size=MAX_QUOTED_CHARS))
def test_a_name_that_fits_is_shown_and_quoted_as_it_was(name: str) -> None:
    assert cut_short(name) == name
    assert quoted(name) == repr(name)


@given(st.text(min_size=MAX_QUOTED_CHARS + 1, max_size=5000))
def test_a_longer_name_keeps_its_two_ends_and_its_length_bound(name: str) -> None:
    shown = cut_short(name)
    assert len(shown) <= MAX_QUOTED_CHARS
    assert shown.startswith(name[:30]) and shown.endswith(name[-30:])
    assert " characters cut ...] " in shown


def test_a_suggestion_and_a_list_of_choices_are_short() -> None:
    name = long_name()
    assert suggest(name[:-1], [name]) == f" (did you mean {quoted(name)}?)"
    assert len(suggest("zzz", [f"choice{i:04d}" for i in range(1000)])) < 700


def test_a_short_error_is_left_as_it_was() -> None:
    error = ConfigError("pipeline.json", "Counter.cont", "Counter has no option 'cont' (did you mean 'count'?)")
    assert str(error) == "pipeline.json: Counter.cont: Counter has no option 'cont' (did you mean 'count'?)"

