"""The HTML documentation builds with Sphinx without a warning, and its reference parts follow the code.

``python -m sphinx -W -b html docs OUT`` builds every page of docs/ (MyST Markdown), the API
reference from the docstrings (autodoc) and the options of the step classes from their traits
and the step keys from their traits (the ``config-traits`` directive of docs/_ext/traitref.py).
The hand-written table of the ``Pipeline`` section in docs/configuration.md is checked against the
code here too, since GitHub readers see it.
"""

from __future__ import annotations

import html
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from traitlets.config import Configurable

import algorithms.basic
import algorithms.camera
from pipeline import Pipeline
from pipeline.config.stepkeys import step_key_traits

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def page_text(path: Path) -> str:
    """The text of an HTML page, without its tags, with its whitespace made single."""
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", path.read_text(encoding="utf-8"), flags=re.S)
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", body)).split())


def shown_help(text: str) -> str:
    """A help text as the page shows it: on one line, without the double backquotes of code."""
    return " ".join(text.replace("``", "").split())


def config_options(module) -> list[tuple[type, str, str]]:
    """(class, option, help) for every config trait that the classes of ``module`` define.

    The help is as the page shows it: on one line, without the double backquotes of code.
    """
    classes = [c for c in vars(module).values()
               if isinstance(c, type) and issubclass(c, Configurable) and c.__module__ == module.__name__]
    return [(cls, name, shown_help(trait.help))
            for cls in classes for name, trait in cls.class_own_traits(config=True).items()]


@pytest.mark.slow
def test_the_documentation_builds_without_warnings(tmp_path: Path) -> None:
    """Every page builds with warnings as errors; the API and option pages hold what the code defines."""
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    out = tmp_path / "html"
    result = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html", "-d", str(tmp_path / "doctrees"),
         str(DOCS), str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=50, check=False,
    )
    assert result.returncode == 0, f"sphinx-build failed:\n{result.stdout}\n{result.stderr}"

    built = {path.stem for path in out.glob("*.html")}
    assert {page.stem for page in DOCS.glob("*.md")} <= built

    api = page_text(out / "api.html")
    for name in ("pipeline.Component", "send_msg", "pipeline.Pipeline", "from_config", "load_config",
                 "PipelineConfig", "StepConfig", "RunReport", "StepReport", "StepCounts", "ConfigError",
                 "RoutingError", "message_bound", "DeadLetterWriter", "render_graph"):
        assert name in api, f"api.html does not document {name}"
    # The options of Pipeline, generated from its traits: each with its help text.
    for name, trait in Pipeline.class_own_traits(config=True).items():
        assert name in api and " ".join(trait.help.split()) in api, f"api.html lacks the option Pipeline.{name}"

    configuration = page_text(out / "configuration.html")
    assert "queue_limit" in configuration
    for cls, name, help_text in config_options(algorithms.basic) + config_options(algorithms.camera):
        assert cls.__name__ in configuration and name in configuration, f"no option {cls.__name__}.{name}"
        assert help_text in configuration, f"no help text for {cls.__name__}.{name}"
    assert 'id="options-simulatedcamera"' in (out / "configuration.html").read_text(encoding="utf-8")
    assert "n_events integer >= 0 1000 How many events to simulate." in configuration
    # The step keys, generated from the traits of StepKeys: by the names a config gives them, with their help
    # (compared without spaces: the page has a space on each side of the code in a help text).
    packed = "".join(configuration.split())
    for key, trait in step_key_traits().items():
        assert key in configuration, f"no step key {key}"
        assert "".join(shown_help(trait.help).split()) in packed, f"no help text for the step key {key}"
    assert "class non-empty string required" in configuration
    assert "queue_limit integer >= 1, or -1 for unbounded 512" in configuration


def _table(section: str) -> dict[str, list[str]]:
    """The rows of the first table under the heading ``section`` of configuration.md, by their first cell."""
    lines = (DOCS / "configuration.md").read_text(encoding="utf-8").split(f"\n{section}\n", 1)[1].splitlines()
    first = next(i for i, line in enumerate(lines) if line.startswith("|"))
    table = []
    for line in lines[first:]:
        if not line.startswith("|"):
            break
        table.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return {row[0].strip("`"): row for row in table[2:]}  # past the header and its rule


def test_the_configuration_table_matches_the_code() -> None:
    """configuration.md lists every Pipeline option, with the defaults of the code."""
    pipeline_rows = _table("## The `Pipeline` section")
    options = Pipeline.class_own_traits(config=True)
    assert set(pipeline_rows) == {"producer_conf", "stagers_conf", "consumer_conf", *options}
    for name, trait in options.items():
        assert pipeline_rows[name][2] == f"`{json.dumps(trait.default_value)}`", f"default of Pipeline.{name}"


def test_importing_the_documented_modules_starts_nothing() -> None:
    """autodoc imports the modules of the API reference and the option tables: that starts no thread."""
    modules = ["pipeline", "pipeline.config", "pipeline.config.stepkeys", "pipeline.execution.report",
               "pipeline.errors", "pipeline.engine.flow", "pipeline.failures.deadletter", "pipeline.monitor",
               "algorithms.basic", "algorithms.camera"]
    code = (
        "import importlib, threading\n"
        f"for name in {modules!r}: importlib.import_module(name)\n"
        "import pipeline; pipeline.Pipeline\n"
        "print(threading.active_count())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["1"]
