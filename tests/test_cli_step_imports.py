"""A step module that fails to import names the file and line where it failed (issue 26.5): one line
and exit status 2 from ``pipeline-run`` and from ``pipeline-worker`` on another host, and with
``--debug`` the module's own traceback above it.

Real subprocesses, in a directory holding the step modules (``pipeline-run`` imports from its
working directory, as ``python -m`` does).
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline import ConfigError, Pipeline
from pipeline.config.loader import load_config
from pipeline.console.humanize import failure_place
from pipeline.engine.worker_process import LoadError, Spec, load_step
from tests.cli_helpers import ROOT, chain_config
from tests.remote_helpers import BIN, STAGE, Launcher, lines, wait_during
from tests.remote_steps import marker_pids

#: Step modules whose import fails, each with the place the one line names and the failure it gives.
BROKEN = {
    "raises": ({"zdiv.py": '"""A step module."""\n\nRATE = 1/0\n'},
               "(zdiv.py, line 3)", "ZeroDivisionError: division by zero"),
    "missing-package-two-files-down": ({"mysteps.py": "from helpers import io  # noqa: F401\n",
                                        "helpers/__init__.py": "",
                                        "helpers/io.py": "import os\nimport nosuchpkg  # noqa: F401\n"},
                                       f"({Path('helpers', 'io.py')}, line 2)",
                                       "ModuleNotFoundError: No module named 'nosuchpkg'"),
    "raises-in-a-library": ({"loadnp.py": 'import numpy as np\n\nTABLE = np.load("missing.npy")\n'},
                            "(loadnp.py, line 3)", "FileNotFoundError: [Errno 2] No such file or directory: "
                            "'missing.npy'"),  # it named numpy's own line, in site-packages
    "syntax": ({"badsyntax.py": "def f(:\n    pass\n"}, "(badsyntax.py, line 1)", "SyntaxError"),
    "exits": ({"bye.py": '"""A script more than a module."""\nimport sys\n\nsys.exit("bye from module")\n'},
              "(bye.py, line 4)", "SystemExit: bye from module"),  # it was the run's whole output, exit status 1
    "base-exception": ({"based.py": "class Stop(BaseException):\n    pass\n\n\nraise Stop('not an Exception')\n"},
                       "(based.py, line 5)", "Stop: not an Exception"),  # it was a raw traceback
}


def write_files(directory: Path, files: dict[str, str]) -> str:
    """Write ``files`` (paths relative to ``directory``); the module name of the first one."""
    for name, text in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_text(text, encoding="utf-8")
    return next(iter(files)).removesuffix(".py")


def run_in(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``pipeline-run ARGS`` in ``directory`` (with this checkout on the path)."""
    return subprocess.run([sys.executable, "-m", "pipeline", *args], cwd=directory, capture_output=True, text=True,
                          timeout=30, check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})


def printer_config(directory: Path, module: str) -> Path:
    """COUNT -> PRINT, PRINT's class in ``module``."""
    path = directory / "broken.json"
    path.write_text(json.dumps({"version": 1, "Pipeline": {
        "producer_conf": {"name": "COUNT", "module": "algorithms.basic", "class": "Counter", "next_steps": "PRINT"},
        "consumer_conf": {"name": "PRINT", "module": module, "class": "Printer"},
    }}), encoding="utf-8")
    return path


@pytest.mark.parametrize("case", BROKEN)
def test_a_step_module_that_fails_to_import_names_its_file_and_line(tmp_path: Path, case: str) -> None:
    files, place, failure = BROKEN[case]
    module = write_files(tmp_path, files)
    printer_config(tmp_path, module)
    result = run_in(tmp_path, "--config=broken.json")
    assert result.returncode == 2, result.stderr
    assert lines(result.stderr) == [result.stderr.rstrip("\n")], result.stderr
    assert result.stderr.startswith(f"pipeline-run: error: broken.json: Pipeline.consumer_conf.module: cannot "
                                    f"import module {module!r}: {failure}")
    assert place in result.stderr


@pytest.mark.parametrize("case", ["raises", "missing-package-two-files-down"])
def test_debug_shows_the_modules_own_traceback(tmp_path: Path, case: str) -> None:
    files, place, _ = BROKEN[case]
    module = write_files(tmp_path, files)
    printer_config(tmp_path, module)
    result = run_in(tmp_path, "--config=broken.json", "--debug")
    assert result.returncode == 2, result.stderr
    failed_file = place.strip("()").split(",")[0]
    assert f'{tmp_path / failed_file}", line {place.rstrip(")").rsplit(" ", 1)[1]}, in <module>' in result.stderr
    assert result.stderr.splitlines()[-1].startswith("pipeline-run: error: broken.json: ")


def test_a_step_module_that_parses_the_command_line_as_it_is_imported_names_its_own_line(tmp_path: Path) -> None:
    """argparse prints its usage, then exits: the last line says the module's import exited, at the module's line
    (not argparse's own), so that it does not read as pipeline-run's usage error."""
    module = write_files(tmp_path, {"script_like.py": "import argparse\n\nparser = argparse.ArgumentParser()\n"
                                                      "parser.add_argument('--input')\nARGS = parser.parse_args()\n"})
    printer_config(tmp_path, module)
    result = run_in(tmp_path, "--config=broken.json")
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines()[-1] == ("pipeline-run: error: broken.json: Pipeline.consumer_conf.module: "
                                              "cannot import module 'script_like': SystemExit: 2 (script_like.py, "
                                              "line 5)")


def test_a_step_module_that_is_not_there_names_no_line(tmp_path: Path) -> None:
    printer_config(tmp_path, "nosuchmodule")
    result = run_in(tmp_path, "--config=broken.json")
    assert result.returncode == 2
    assert result.stderr == ("pipeline-run: error: broken.json: Pipeline.consumer_conf.module: cannot import module "
                             "'nosuchmodule': ModuleNotFoundError: No module named 'nosuchmodule'\n")


def test_a_folder_hidden_by_an_installed_package_of_its_name_is_said(tmp_path: Path) -> None:
    """The FAQ's ctapipe/ folder where ctapipe is installed: "No module named 'ctapipe.pipeline'" said nothing of
    why (here with traitlets, which is always installed)."""
    write_files(tmp_path, {"traitlets/mysteps.py": "from algorithms.basic import Printer\n"})
    printer_config(tmp_path, "traitlets.mysteps")
    result = run_in(tmp_path, "--config=broken.json")
    assert result.returncode == 2
    last = result.stderr.splitlines()[-1]
    assert last.startswith("pipeline-run: error: broken.json: Pipeline.consumer_conf.module: cannot import module "
                           "'traitlets.mysteps': ModuleNotFoundError: No module named 'traitlets.mysteps' (the "
                           "installed package 'traitlets', "), last
    assert last.endswith("hides the folder traitlets/ here: name the folder otherwise)"), last


def test_a_worker_process_too_says_that_an_installed_package_hides_a_folder(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker process loads its step in a folder of its own (a remote worker's host): where a folder there is
    hidden by an installed package of its name, its one line says so, as the run's own loader does."""
    write_files(tmp_path, {"traitlets/mysteps.py": "from algorithms.basic import Printer\n"})
    monkeypatch.chdir(tmp_path)
    spec = Spec(load_config(chain_config()), step="PASS", module="traitlets.mysteps", class_name="Printer", work="",
                heartbeat_interval=1.0, heartbeat_liveness=3, log_level=20)
    with pytest.raises(LoadError) as error:
        load_step(spec)
    said = str(error.value)
    assert said.startswith("step PASS: cannot load traitlets.mysteps.Printer: ModuleNotFoundError: No module named "
                           "'traitlets.mysteps' (the installed package 'traitlets', "), said
    assert said.endswith("hides the folder traitlets/ here: name the folder otherwise)"), said


def test_a_worker_process_names_the_step_modules_line_under_a_librarys(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker process (a remote worker's host) that fails to load its step names the module's line, not that of
    the library the module called, as the run's own loader does."""
    files, place, failure = BROKEN["raises-in-a-library"]
    module = write_files(tmp_path, files)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = Spec(load_config(chain_config()), step="PASS", module=module, class_name="Printer", work="",
                heartbeat_interval=1.0, heartbeat_liveness=3, log_level=20)
    with pytest.raises(LoadError) as error:
        load_step(spec)
    assert str(error.value) == f"step PASS: cannot load {module}.Printer: {failure} {place}"


def test_a_step_package_that_is_installed_names_its_own_line_under_another_packages(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A step module installed as a package (under site-packages too) names its own line, not that of the installed
    library it called."""
    installed = tmp_path / "site-packages"
    write_files(installed, {"mysteps/__init__.py": "from otherlib import read\n\nTABLE = read()\n",
                            "otherlib/__init__.py": "def read():\n    raise OSError('no table')\n"})
    monkeypatch.syspath_prepend(str(installed))
    with pytest.raises(OSError) as raised:
        importlib.import_module("mysteps")
    assert failure_place(raised.value) == f" ({installed / 'mysteps' / '__init__.py'}, line 3)"


def test_a_step_module_beside_a_config_run_from_elsewhere_says_where_modules_come_from(tmp_path: Path) -> None:
    """A newcomer runs `pipeline-run --config=ana/ana.json` from the folder above: "No module named" said no more."""
    (tmp_path / "ana").mkdir()
    write_files(tmp_path / "ana", {"mysteps.py": "from algorithms.basic import Printer\n"})
    printer_config(tmp_path / "ana", "mysteps")
    result = run_in(tmp_path, "--config=ana/broken.json")
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == (
        "pipeline-run: error: ana/broken.json: Pipeline.consumer_conf.module: cannot import module 'mysteps': "
        "ModuleNotFoundError: No module named 'mysteps' (there is ana/mysteps.py beside the config, but step modules "
        f"are imported from the working directory, {tmp_path}, and sys.path: run from ana, or add ana to PYTHONPATH)")


@pytest.mark.parametrize("where", ["absolute", "above", "absolute-here"])
def test_a_module_given_as_a_path_outside_the_run_directory_is_guessed_as_a_name(tmp_path: Path, where: str) -> None:
    """The module as a file's path, absolute or ../: the guess was 'tmp.pytest-0.ana.mysteps' or '...mysteps', names
    import cannot take. Now the file's own name, and where to run from when it is not here."""
    write_files(tmp_path, {"mysteps.py": "from algorithms.basic import Printer\n"})
    run_dir = tmp_path if where == "absolute-here" else tmp_path / "run"
    run_dir.mkdir(exist_ok=True)
    module = "../mysteps.py" if where == "above" else str(tmp_path / "mysteps.py")
    printer_config(run_dir, module)
    result = run_in(run_dir, "--config=broken.json")
    assert result.returncode == 2, result.stderr
    last = result.stderr.splitlines()[-1]
    assert lines(result.stderr) == [last], result.stderr
    if where == "absolute-here":
        assert last.endswith("not a file's path: did you mean 'mysteps'?)"), last
    else:
        parent = Path(module).parent
        assert last.endswith(f"not a file's path: did you mean 'mysteps'? step modules are imported from the working "
                             f"directory, {run_dir}, and sys.path: run from {parent}, or add {parent} to "
                             "PYTHONPATH)"), last


#: A script that runs broken.json from Python, as the README's run_squares.py does.
SCRIPT = 'from pipeline import Pipeline\n\nPipeline.from_config({config!r}).run()\n'


def run_script(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python ARGS`` in ``directory``, with this checkout on the path (and not ``directory``)."""
    return subprocess.run([sys.executable, *args], cwd=directory, capture_output=True, text=True, timeout=60,
                          check=False, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_a_script_elsewhere_says_the_working_directory_is_not_on_sys_path(tmp_path: Path) -> None:
    """The README's run_squares.py moved into scripts/: the hint was "did you mean 'mysteps'?", the very name."""
    write_files(tmp_path, {"mysteps.py": "from algorithms.basic import Printer\n",
                           "scripts/run.py": SCRIPT.format(config="broken.json")})
    printer_config(tmp_path, "mysteps")
    result = run_script(tmp_path, "scripts/run.py")
    assert (result.returncode, result.stderr.splitlines()[-1]) == (1, (
        "pipeline.errors.ConfigError: broken.json: Pipeline.consumer_conf.module: cannot import module 'mysteps': "
        f"ModuleNotFoundError: No module named 'mysteps' (mysteps.py is in the working directory, {tmp_path}, which is "
        "not on sys.path: run the script as python -m scripts.run, or add the directory to PYTHONPATH or sys.path)"))
    assert run_script(tmp_path, "-m", "scripts.run").returncode == 0  # the hint holds


def test_a_script_beside_its_folder_names_no_pipeline_run(tmp_path: Path) -> None:
    """The config as ../squares.json from scripts/: "imported from the directory pipeline-run runs in: run it from ..",
    to someone who ran a script; running it from .. would not have found the module either."""
    write_files(tmp_path, {"mysteps.py": "from algorithms.basic import Printer\n",
                           "scripts/run.py": SCRIPT.format(config="../broken.json")})
    printer_config(tmp_path, "mysteps")
    result = run_script(tmp_path / "scripts", "run.py")
    assert (result.returncode, result.stderr.splitlines()[-1]) == (1, (
        "pipeline.errors.ConfigError: ../broken.json: Pipeline.consumer_conf.module: cannot import module 'mysteps': "
        "ModuleNotFoundError: No module named 'mysteps' (there is ../mysteps.py beside the config, but .. is not on "
        "sys.path, where step modules are imported from: add it to PYTHONPATH or sys.path)"))


def test_from_config_says_the_working_directory_is_not_on_sys_path(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """In-process, as a notebook or a test calls it: Pipeline.from_config() puts nothing on sys.path."""
    write_files(tmp_path, {"offpath_steps.py": "from algorithms.basic import Printer\n"})
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [entry for entry in sys.path if entry and Path(entry).resolve() != tmp_path])
    with pytest.raises(ConfigError) as raised:
        Pipeline.from_config(printer_config(tmp_path, "offpath_steps"))
    assert raised.value.problem == (
        "cannot import module 'offpath_steps': ModuleNotFoundError: No module named 'offpath_steps' (offpath_steps.py "
        f"is in the working directory, {tmp_path}, which is not on sys.path: add the directory to PYTHONPATH or "
        "sys.path)")


def test_a_module_named_in_another_case_than_its_file_is_suggested(tmp_path: Path) -> None:
    """module "MySteps" beside mysteps.py: "No module named 'MySteps'" said no more."""
    write_files(tmp_path, {"mysteps.py": "from algorithms.basic import Printer\n"})
    printer_config(tmp_path, "MySteps")
    result = run_in(tmp_path, "--config=broken.json")
    assert (result.returncode, result.stderr.splitlines()[-1]) == (2, (
        "pipeline-run: error: broken.json: Pipeline.consumer_conf.module: cannot import module 'MySteps': "
        "ModuleNotFoundError: No module named 'MySteps' (did you mean 'mysteps'? a module's name is its file's, case "
        "and all)"))


def test_a_steps_file_named_as_an_installed_package_says_it_is_hidden(tmp_path: Path) -> None:
    """The README's steps saved as pipeline.py: "module 'pipeline' has no class" said not why."""
    write_files(tmp_path, {"pipeline.py": "from algorithms.basic import Printer\n"})
    printer_config(tmp_path, "pipeline")
    # The console script, as the README runs it (python -m pipeline would run that file itself)
    result = subprocess.run([BIN / "pipeline-run", "--config=broken.json"], cwd=tmp_path, capture_output=True,
                            text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2
    last = result.stderr.splitlines()[-1]
    assert last.startswith("pipeline-run: error: broken.json: Pipeline.consumer_conf.class: module 'pipeline' has no "
                           "class 'Printer'"), last
    assert last.endswith("hides the file pipeline.py here: rename the file)"), last


def test_a_steps_file_named_as_a_built_in_module_says_it_is_hidden(tmp_path: Path) -> None:
    """time.py, gc.py: modules built into Python have no file to name, and the hint said nothing."""
    write_files(tmp_path, {"time.py": "from algorithms.basic import Printer\n"})
    printer_config(tmp_path, "time")
    result = run_in(tmp_path, "--config=broken.json")
    assert (result.returncode, result.stderr.splitlines()[-1]) == (2, (
        "pipeline-run: error: broken.json: Pipeline.consumer_conf.class: module 'time' has no class 'Printer' "
        "(Python's built-in module 'time' hides the file time.py here: rename the file)"))


def test_a_remote_worker_names_the_file_and_line_its_import_failed(launch: Launcher, tmp_path: Path) -> None:
    """The run's host has the step's module; the worker's host has one that raises on import."""
    head, node = tmp_path / "head", tmp_path / "node"
    head.mkdir()
    node.mkdir()
    (head / "site_steps.py").write_text("from tests.remote_steps import Tagged as SiteTagged  # noqa: F401\n")
    (node / "site_steps.py").write_text('"""This host\'s copy, broken."""\nimport nosuchpkg  # noqa: F401\n')
    config = launch.chain(hold=True)
    config["Pipeline"]["stagers_conf"][0].update({"module": "site_steps", "class": "SiteTagged"})
    run = launch.run(config, cwd=head, env={**os.environ, "PYTHONPATH": str(ROOT)})
    wait_during(run, lambda: run.pid in marker_pids(launch.gate, "ran"), "the run's own worker to start a message")
    worker = launch.worker(cwd=node, env={name: value for name, value in os.environ.items() if name != "PYTHONPATH"})
    assert worker.wait() == 2, worker.stderr
    launch.hold.touch()
    assert run.wait() == 0, run.stderr
    said = lines(worker.stderr)
    assert len(said) == 1, worker.stderr
    assert "No module named 'nosuchpkg' (site_steps.py, line 2)" in said[0]
    # As cluster.md quotes it (it promised "pipeline-worker: error: step ...", without the process).
    quoted = re.search(r"`(pipeline-worker: step HILLAS worker process 0: error: step HILLAS: cannot load\s+"
                       r"mysteps\.Hillas: ModuleNotFoundError: )", (ROOT / "docs" / "cluster.md").read_text("utf-8"))
    assert quoted is not None
    # The class as the config names it (SiteTagged), which the worker imports; its own name is Tagged.
    assert said[0].startswith(" ".join(quoted.group(1).split()).replace("HILLAS", STAGE)
                              .replace("mysteps.Hillas", "site_steps.SiteTagged")), said[0]


def test_a_module_name_too_long_for_a_file_is_one_line(tmp_path: Path) -> None:
    """A step module's name of 300 characters, run from elsewhere than the config's folder: pathlib's is_file() raised
    on the file it would be (File name too long), a traceback and exit status 1."""
    (tmp_path / "ana").mkdir()
    printer_config(tmp_path / "ana", "m" * 300)
    result = run_in(tmp_path, "--config=ana/broken.json")
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("pipeline-run: error: ana/broken.json: Pipeline.consumer_conf.module: cannot "
                                    "import module 'mmm")
    assert ": ModuleNotFoundError: No module named 'mmm" in result.stderr
