"""The checks on a step graph (pipeline/graph.py) and the order of its steps, as pure functions."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st
from traitlets.config import Config

from algorithms.basic import PassThrough
from pipeline.config import PipelineConfig, StepConfig
from pipeline.config.graph import SHOWN_NAMES, find_cycle, path_text


def graph(edges: dict[str, tuple[str, ...]]) -> PipelineConfig:
    """A config of PassThrough steps with these next steps, in the order given."""
    steps = {name: StepConfig(name, "stager", PassThrough, "algorithms.basic", targets) for name, targets in
             edges.items()}
    return PipelineConfig("<test>", steps, Config())


def test_find_cycle() -> None:
    assert find_cycle(graph({"A": ("B",), "B": ("C",), "C": ()}).steps) == []
    assert find_cycle(graph({"A": ("B",), "B": ("C",), "C": ("B",)}).steps) == ["B", "C", "B"]
    assert find_cycle(graph({"A": ("A",)}).steps) == ["A", "A"]


def test_find_cycle_does_not_recurse() -> None:
    """10,000 steps in a chain, a hundred times Python's recursion limit, and a cycle at its end."""
    names = [f"S{i}" for i in range(10_000)]
    chain = {name: (after,) for name, after in pairwise(names)} | {names[-1]: ()}
    assert find_cycle(graph(chain).steps) == []
    assert find_cycle(graph({**chain, names[-1]: ("S5000",)}).steps) == [*names[5000:], "S5000"]


def test_topological_order_takes_the_first_ready_step_in_config_order() -> None:
    """A step comes after every step that sends to it; among those ready, config order decides."""
    config = graph({"P": ("D", "B"), "D": ("C",), "B": ("C",), "C": (), "E": ("B",)})
    assert [step.name for step in config.topological_order()] == ["P", "D", "E", "B", "C"]


def test_topological_order_of_a_long_chain_listed_backwards() -> None:
    """Listed last step first, a chain of 3,000 steps still comes out in chain order, quickly."""
    names = [f"S{i}" for i in range(3000)]
    edges = {name: (after,) for name, after in pairwise(names)} | {names[-1]: ()}
    backwards = graph(dict(reversed(edges.items())))
    assert [step.name for step in backwards.topological_order()] == names


@given(st.integers(1, 8).flatmap(lambda n: st.lists(
    st.lists(st.integers(0, n - 1), unique=True, max_size=n), min_size=n, max_size=n)))
def test_a_cycle_is_found_exactly_when_no_order_exists(targets: list[list[int]]) -> None:
    """Two algorithms agree: the depth-first cycle search, and the order that places a step after its senders."""
    config = graph({f"N{i}": tuple(f"N{t}" for t in ts) for i, ts in enumerate(targets)})
    cycle = find_cycle(config.steps)
    ordered = len(config.topological_order()) == len(config.steps)
    assert (cycle == []) == ordered
    if cycle:
        assert cycle[0] == cycle[-1]
        assert all(after in config.steps[before].next_steps for before, after in pairwise(cycle))


def test_path_text() -> None:
    """Short paths in full; long ones by their ends, saying how many names are left out."""
    assert path_text(["A", "B"]) == "A -> B"
    names = [str(i) for i in range(SHOWN_NAMES)]
    assert path_text(names) == " -> ".join(names)
    assert path_text([str(i) for i in range(20)]) == "0 -> 1 -> 2 -> 3 -> 4 -> ... (12 more) -> 17 -> 18 -> 19"
