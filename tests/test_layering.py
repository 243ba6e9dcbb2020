"""The layers hold: each part of the framework (pipeline/) imports only the parts below it, no modules
import each other in a circle, each part imports on its own, the framework never imports the demo steps
(algorithms/), and only the benchmark (pipeline/bench/), which sits on top, imports the benchmark.

Imports made only for type checkers count too: a reader follows them like any other.

In tests/, no module imports a test module: what several test modules share lives in helper modules
(tests/*_helpers.py) and their fixtures in tests/conftest.py, so importing one test module never runs
another's code or hands its fixtures on."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
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


#: The framework's parts from the bottom up: a module may import its own part and the parts below.
LAYERS = (
    ("pipeline.errors", "pipeline.console"),
    ("pipeline.component", "pipeline.message", "pipeline.auth"),
    ("pipeline.config",),
    ("pipeline.failures",),
    ("pipeline.execution",),
    ("pipeline.engine",),
    ("pipeline.monitor",),
    ("pipeline.pipeline",),
    ("pipeline.cli",),
    ("pipeline.bench",),
    ("pipeline", "pipeline.__main__"),
)


def part_of(module: str) -> str:
    """The part of the framework that ``module`` belongs to (the package itself for its __init__)."""
    return module if module in ("pipeline", "pipeline.__main__") else ".".join(module.split(".")[:2])


def layer_of(module: str) -> int:
    """The index in LAYERS of ``module``'s part."""
    part = part_of(module)
    return next(i for i, parts in enumerate(LAYERS) if part in parts)


def module_edges() -> dict[str, set[str]]:
    """Each framework module and the framework modules it imports (``from P import M`` counts M, not P)."""
    found = framework_imports()
    edges = {}
    for module, names in found.items():
        targets = set()
        for name in names:
            if name in found and not any(other.startswith(name + ".") and other in found for other in names):
                targets.add(name)
            elif name not in found and name.rpartition(".")[0] in found and name.startswith("pipeline"):
                # ``from P import Y`` where Y is no module: the import is of P.
                parent = name.rpartition(".")[0]
                if not any(other.startswith(parent + ".") and other in found for other in names):
                    targets.add(parent)
        edges[module] = targets - {module}
    return edges


def test_every_part_has_a_layer() -> None:
    assert {module for module in framework_imports() if not any(part_of(module) in parts for parts in LAYERS)} == set()


def test_no_module_imports_a_part_above_its_own() -> None:
    upward = {module: sorted(target for target in targets if layer_of(target) > layer_of(module))
              for module, targets in module_edges().items()}
    assert {module: targets for module, targets in upward.items() if targets} == {}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm, iteratively)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_cycles_are_found() -> None:
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_modules_import_each_other_in_a_circle() -> None:
    assert cycles(module_edges()) == []


@pytest.mark.parametrize("part", sorted({part for parts in LAYERS for part in parts} - {"pipeline.__main__"}))
def test_each_part_imports_on_its_own(part: str) -> None:
    result = subprocess.run([sys.executable, "-c", f"import {part}"], cwd=ROOT, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr


def imported_test_modules(source: str, module: str, is_package: bool = False) -> set[str]:
    """The test modules (``tests.test_*``) that the code of ``module``, a module of tests/, imports."""
    return {name for name in imports(source, module, is_package) if re.fullmatch(r"tests\.test_\w+", name)}


@pytest.mark.parametrize(("source", "expected"), [
    ("from tests.test_engine import chain", {"tests.test_engine"}),
    ("import tests.test_engine", {"tests.test_engine"}),
    ("from tests import test_engine", {"tests.test_engine"}),
    ("from .test_engine import chain as engine_chain", {"tests.test_engine"}),
    ("def f():\n    from . import test_docs\n", {"tests.test_docs"}),
    ("from tests.engine_helpers import chain\nfrom tests import engine_steps\nfrom .cli_helpers import ROOT", set()),
])
def test_imports_of_test_modules_are_found(source: str, expected: set[str]) -> None:
    assert imported_test_modules(source, "tests.test_x") == expected


def test_no_test_module_imports_another() -> None:
    """Nor does a helper module: only pytest imports a test module."""
    offenders = {}
    for path in sorted((ROOT / "tests").rglob("*.py")):
        module, is_package = module_of(path)
        found = imported_test_modules(path.read_text(encoding="utf-8"), module, is_package) - {module}
        if found:
            offenders[module] = sorted(found)
    assert offenders == {}
