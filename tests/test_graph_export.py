"""Graph export: ``pipeline-run --graph=mermaid|dot`` prints the graph and exits without running."""

from __future__ import annotations

import html
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from pipeline.config import DEFAULT_QUEUE_LIMIT, PipelineConfig, load_config
from pipeline.monitor import render_graph
from pipeline.monitor.graph_export import settings_line

from .cli_helpers import ROOT, chain_config, run_cli, write_config

ROUTING = "configs/routing.json"
DOT = shutil.which("dot")

# A Mermaid node: an id, an opening bracket pair, a quoted label without raw quotes, the closing pair.
_MERMAID_NODE = re.compile(r'    (s\d+)(\(\[|\[\(|\[)"([^"]*)"(\]\)|\)\]|\])')
_MERMAID_EDGE = re.compile(r"    (s\d+) --> (s\d+)")
_DOT_NODE = re.compile(r'    (s\d+) \[label="((?:[^"\\]|\\.)*)", shape=(house|box|cylinder)\];')
_DOT_EDGE = re.compile(r"    (s\d+) -> (s\d+);")


def edges(config: PipelineConfig) -> set[tuple[str, str]]:
    return {(step.name, target) for step in config.steps.values() for target in step.next_steps}


def parse_mermaid(text: str) -> tuple[dict[str, list[str]], set[tuple[str, str]]]:
    """The labels (split at <br/>) by node id, and the edges: every line must be a node or an edge."""
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    nodes: dict[str, list[str]] = {}
    links: set[tuple[str, str]] = set()
    for line in lines[1:]:
        node, edge = _MERMAID_NODE.fullmatch(line), _MERMAID_EDGE.fullmatch(line)
        assert node or edge, f"not a node or an edge: {line!r}"
        if node:
            opening, closing = node.group(2), node.group(4)
            assert (opening, closing) in {("([", "])"), ("[", "]"), ("[(", ")]")}, line
            assert node.group(1) not in nodes, f"node defined twice: {line!r}"
            nodes[node.group(1)] = node.group(3).split("<br/>")
        else:
            assert edge is not None
            assert {edge.group(1), edge.group(2)} <= nodes.keys(), f"edge before its nodes: {line!r}"
            links.add((edge.group(1), edge.group(2)))
    return nodes, links


def parse_dot(text: str) -> tuple[dict[str, list[str]], set[tuple[str, str]]]:
    """The structural check of a DOT graph, for when Graphviz is not installed."""
    lines = text.splitlines()
    assert re.fullmatch(r'digraph "(?:[^"\\]|\\.)*" \{', lines[0]) and lines[-1] == "}"
    assert lines[1:3] == ["    rankdir=LR;", '    node [fontname="Helvetica", fontsize=11];']
    nodes: dict[str, list[str]] = {}
    links: set[tuple[str, str]] = set()
    for line in lines[3:-1]:
        node, edge = _DOT_NODE.fullmatch(line), _DOT_EDGE.fullmatch(line)
        assert node or edge, f"not a node or an edge: {line!r}"
        if node:
            label = node.group(2).replace('\\"', '"').replace("\\\\", "\\")
            nodes[node.group(1)] = [html.unescape(part) for part in label.split("\\n")]  # as Graphviz reads it
        else:
            assert edge is not None
            links.add((edge.group(1), edge.group(2)))
    return nodes, links


def check(config: PipelineConfig, nodes: dict[str, list[str]], links: set[tuple[str, str]]) -> None:
    """The parsed graph holds each step (name, class, settings) once and exactly the config's edges."""
    names = {node_id: label[0] for node_id, label in nodes.items()}
    assert sorted(names.values()) == sorted(config.steps)
    for label in nodes.values():
        step = config.steps[label[0]]
        assert label[1:] == [step.class_name, settings_line(step)]
    assert {(names[a], names[b]) for a, b in links} == edges(config)


def test_mermaid_of_the_routing_config() -> None:
    config = load_config(ROOT / ROUTING)
    nodes, links = parse_mermaid(render_graph(config, "mermaid"))
    check(config, nodes, links)
    labels = {label[0]: label for label in nodes.values()}
    assert labels["MST_HILLAS"] == ["MST_HILLAS", "HillasParameters", f"2 workers, queue {DEFAULT_QUEUE_LIMIT}"]
    assert labels["READER"] == ["READER", "SimulatedCamera", "producer"]


def test_dot_of_the_routing_config() -> None:
    config = load_config(ROOT / ROUTING)
    text = render_graph(config, "dot")
    check(config, *parse_dot(text))
    if DOT:
        parsed = subprocess.run([DOT, "-Tcanon"], input=text, capture_output=True, text=True, timeout=30, check=False)
        assert parsed.returncode == 0 and parsed.stderr == "", parsed.stderr
        assert all(f"{node} -> {target}" in parsed.stdout for node, target in _DOT_EDGE.findall(text))


def awkward_config() -> dict[str, Any]:
    """Step names with quotes, markup and backslashes; an unbounded, ordered, skipping step."""
    document = chain_config()
    document["Pipeline"]["producer_conf"].update(name='COUNT "A"', next_steps='PASS <b>#1</b> \\ x')
    document["Pipeline"]["stagers_conf"][0].update(name='PASS <b>#1</b> \\ x', next_steps="W&amp;W", queue_limit=-1,
                                                   ordered=True, on_error="skip")
    document["Pipeline"]["consumer_conf"]["name"] = "W&amp;W"  # Graphviz read the entity: it drew W&W
    return document


@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
def test_any_step_name_is_escaped(fmt: str) -> None:
    config = load_config(awkward_config())
    text = render_graph(config, fmt)
    if fmt == "mermaid":
        nodes, links = parse_mermaid(text)
        decoded = {node: [re.sub(r"#(\d+);", lambda m: chr(int(m.group(1))), part) for part in label]
                   for node, label in nodes.items()}
        check(config, decoded, links)
    else:
        check(config, *parse_dot(text))
        if DOT:
            parsed = subprocess.run([DOT, "-Tcanon"], input=text, capture_output=True, text=True, timeout=30,
                                    check=False)
            assert parsed.returncode == 0, parsed.stderr
    assert "2 workers, queue unbounded, ordered, on_error skip" in text


@pytest.mark.parametrize("fmt", ["mermaid", "dot"])
def test_pipeline_run_prints_the_graph_without_running(tmp_path: Path, fmt: str) -> None:
    output = tmp_path / "out.jsonl"
    path = write_config(tmp_path, chain_config(str(output)))
    result = run_cli(f"--config={path}", f"--graph={fmt}")
    assert result.returncode == 0, result.stderr
    assert result.stdout == render_graph(load_config(path), fmt) + "\n"
    assert result.stderr == ""
    assert not output.exists()  # nothing ran: the consumer's init() would have made the file


@pytest.mark.parametrize(("fmt", "args", "fused"), [("mermaid", [], True), ("dot", [], True),
                                                     ("mermaid", ["--Pipeline.fuse=false"], False)])
def test_the_graph_says_which_steps_run_fused(tmp_path: Path, fmt: str, args: list[str], fused: bool) -> None:
    document = chain_config(str(tmp_path / "out.jsonl"))
    stagers = document["Pipeline"]["stagers_conf"] = [
        {"name": "A", "module": "pipeline.bench.steps", "class": "PassThrough", "nb_process": 2, "next_steps": "B"},
        {"name": "B", "module": "pipeline.bench.steps", "class": "PassThrough", "nb_process": 2,
         "next_steps": document["Pipeline"]["consumer_conf"]["name"]}]
    document["Pipeline"]["producer_conf"]["next_steps"] = stagers[0]["name"]
    result = run_cli(f"--config={write_config(tmp_path, document)}", f"--graph={fmt}", *args)
    assert result.returncode == 0, result.stderr
    assert ("2 processes of 1 thread, fused after A" in result.stdout) is fused
    assert result.stdout.count("2 processes of 1 thread, queue 512") == (1 if fused else 2)


def test_a_sharded_producer_shows_its_processes(tmp_path: Path) -> None:
    """The steps fused after it said "3 processes of 1 thread, fused after GEN", the producer only "producer"."""
    document = chain_config(str(tmp_path / "out.jsonl"))
    document["Pipeline"]["producer_conf"]["nb_process"] = 3
    result = run_cli(f"--config={write_config(tmp_path, document)}", "--graph=dot")
    assert result.returncode == 0, result.stderr
    assert "\\nproducer in 3 processes" in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["--graph=svg"], "--graph: unknown format 'svg' (expected one of: mermaid, dot)"),
    (["--Counter.cont=3", "--graph=dot"], "--Counter.cont: Counter has no option 'cont'"),
])
def test_graph_with_a_bad_option_exits_2(args: list[str], message: str) -> None:
    result = run_cli("--config=configs/chain.json", *args)
    assert result.returncode == 2
    assert message in result.stderr and result.stdout == ""


def test_the_docs_show_the_routing_graph() -> None:
    """docs/graph.md holds the Mermaid graph that pipeline-run prints for configs/routing.json."""
    text = (ROOT / "docs" / "graph.md").read_text(encoding="utf-8")
    block = f"```mermaid\n{render_graph(load_config(ROOT / ROUTING), 'mermaid')}\n```"
    assert block in text
