"""The layers hold: the framework (pipeline/) never imports the demo steps (algorithms/), and only
the benchmark (pipeline/bench/), which sits on top of the framework, imports the benchmark."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.cli_helpers import ROOT

#: The framework's package: what users install and import.
FRAMEWORK = ROOT / "pipeline"


def module_of(path: Path) -> tuple[str, bool]:
    """The dotted name of the module in ``path`` (relative to the repository root) and whether it is a package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def imports(source: str, module: str, is_package: bool = False) -> set[str]:
    """The absolute names that the code of ``module`` imports, relative imports resolved; for
    ``from X import Y`` both X and X.Y (Y may be a module)."""
    package = module.split(".") if is_package else module.split(".")[:-1]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            anchor = package[: len(package) - node.level + 1] if node.level else []
            base = ".".join([*anchor, *([node.module] if node.module else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def framework_imports() -> dict[str, set[str]]:
    """Every module of pipeline/ and what it imports."""
    found = {}
    for path in sorted(FRAMEWORK.rglob("*.py")):
        module, is_package = module_of(path)
        found[module] = imports(path.read_text(encoding="utf-8"), module, is_package)
    return found


def within(name: str, package: str) -> bool:
    """True when ``name`` is ``package`` or one of its modules."""
    return name == package or name.startswith(package + ".")


@pytest.mark.parametrize(("source", "module", "is_package", "expected"), [
    ("import algorithms.basic", "pipeline.x", False, {"algorithms.basic"}),
    ("from algorithms import basic", "pipeline.x", False, {"algorithms", "algorithms.basic"}),
    ("from ..bench import workloads", "pipeline.monitor.overhead", False,
     {"pipeline.bench", "pipeline.bench.workloads"}),
    ("from . import steps", "pipeline.bench", True, {"pipeline.bench", "pipeline.bench.steps"}),
    ("from .steps import Tally", "pipeline.bench.workloads", False, {"pipeline.bench.steps",
                                                                      "pipeline.bench.steps.Tally"}),
    ("def f():\n    from .. import bench\n", "pipeline.monitor.x", False, {"pipeline", "pipeline.bench"}),
])
def test_imports_are_resolved_to_absolute_names(source: str, module: str, is_package: bool,
                                                expected: set[str]) -> None:
    assert imports(source, module, is_package) == expected


def test_the_walk_sees_the_whole_framework() -> None:
    found = framework_imports()
    assert {"pipeline", "pipeline.engine.router", "pipeline.monitor", "pipeline.bench.workloads"} <= set(found)
    assert "pipeline.pipeline" in found["pipeline.bench.workloads"]


def test_no_framework_module_imports_the_demo_steps() -> None:
    offenders = {module: sorted(n for n in names if within(n, "algorithms"))
                 for module, names in framework_imports().items()}
    assert {module: names for module, names in offenders.items() if names} == {}


def test_only_the_benchmark_imports_the_benchmark() -> None:
    """In particular the monitor does not: its overhead script lives with the benchmark."""
    offenders = {module: sorted(n for n in names if within(n, "pipeline.bench"))
                 for module, names in framework_imports().items() if not within(module, "pipeline.bench")}
    assert {module: names for module, names in offenders.items() if names} == {}
