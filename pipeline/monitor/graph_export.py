"""A pipeline's graph as Mermaid or Graphviz DOT text: steps, classes, workers, queue limits (or the step a step runs
fused after: engine.fusion), edges.

``pipeline-run --config=x.json --graph=mermaid`` (or ``--graph=dot``) prints it without running.
Nodes get generated ids (``s0``, ``s1``, ...) so that any step name is safe; the name, class and
settings are in the quoted label. Shapes tell the kinds apart: the producer is a stadium (Mermaid)
or a house (DOT), the consumer a cylinder, stagers boxes.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipeline.config.model import PipelineConfig, StepConfig

#: The formats --graph accepts.
GRAPH_FORMATS = ("mermaid", "dot")

# Mermaid node shapes by kind: opening and closing brackets around the quoted label.
_MERMAID_SHAPES = {"producer": ("([", "])"), "stager": ("[", "]"), "consumer": ("[(", ")]")}
_DOT_SHAPES = {"producer": "house", "stager": "box", "consumer": "cylinder"}


def render_graph(config: PipelineConfig, fmt: str, fused: Mapping[str, str] | None = None) -> str:
    """The graph of ``config`` in ``fmt`` ("mermaid" or "dot"); ``fused``: each step that runs fused after others, and
    its group's first step."""
    if fmt == "mermaid":
        return mermaid(config, fused or {})
    if fmt == "dot":
        return dot(config, fused or {})
    raise ValueError(f"unknown graph format {fmt!r} (expected one of: {', '.join(GRAPH_FORMATS)})")


def settings_line(step: StepConfig, fused_after: str = "") -> str:
    """A step's settings that matter to the flow: workers, queue limit (none for a step ``fused_after`` another, which
    runs in that one's worker processes), ordered, on_error=skip."""
    if step.kind == "producer":  # in worker processes, one shard each (engine.shards)
        parts = [f"producer in {_plural(step.nb_process, 'process', 'es')}" if step.nb_process else "producer"]
    else:
        workers = _plural(step.nb_thread, "worker")
        if step.nb_process:
            workers = f"{_plural(step.nb_process, 'process', 'es')} of {_plural(step.nb_thread, 'thread')}"
        elif not step.nb_thread:
            workers = "remote workers"
        queue = "queue unbounded" if step.queue_limit < 0 else f"queue {step.queue_limit}"
        parts = [workers, f"fused after {fused_after}" if fused_after else queue]
    if step.ordered:
        parts.append("ordered")
    if step.on_error == "skip":
        parts.append("on_error skip")
    return ", ".join(parts)


def mermaid(config: PipelineConfig, fused: Mapping[str, str]) -> str:
    """A Mermaid flowchart, left to right."""
    ids = _node_ids(config)
    lines = ["flowchart LR", *(f"    %% {note}" for note in _notes(config))]
    for step in config.steps.values():
        settings = settings_line(step, fused.get(step.name, ""))
        label = "<br/>".join(_mermaid_text(part) for part in (step.name, step.class_name, settings))
        opening, closing = _MERMAID_SHAPES[step.kind]
        lines.append(f'    {ids[step.name]}{opening}"{label}"{closing}')
    lines += [f"    {ids[step.name]} --> {ids[target]}" for step in config.steps.values() for target in step.next_steps]
    return "\n".join(lines)


def dot(config: PipelineConfig, fused: Mapping[str, str]) -> str:
    """A Graphviz digraph, left to right."""
    ids = _node_ids(config)
    lines = [f"digraph {_dot_string(config.name)} {{", "    rankdir=LR;",
             '    node [fontname="Helvetica", fontsize=11];', *(f"    // {note}" for note in _notes(config))]
    for step in config.steps.values():
        label = _dot_string("\n".join((step.name, step.class_name, settings_line(step, fused.get(step.name, "")))))
        lines.append(f"    {ids[step.name]} [label={label}, shape={_DOT_SHAPES[step.kind]}];")
    lines += [f"    {ids[step.name]} -> {ids[target]};" for step in config.steps.values() for target in step.next_steps]
    lines.append("}")
    return "\n".join(lines)


def _notes(config: PipelineConfig) -> list[str]:
    """Comment lines about the graph: how it was made when the config did not draw it."""
    if config.linear:
        return ["no step has next_steps in the config: the steps run as a linear chain in list order"]
    return []


def _node_ids(config: PipelineConfig) -> dict[str, str]:
    return {name: f"s{i}" for i, name in enumerate(config.steps)}


def _mermaid_text(text: str) -> str:
    """Text for a quoted Mermaid label: quotes and markup characters as entity codes."""
    return "".join(f"#{ord(char)};" if char in '"#<>&' else char for char in text)


def _dot_string(text: str) -> str:
    """A quoted DOT string (newlines as the centred line break ``\\n``; ``&`` as ``&amp;``: Graphviz reads a label's
    character entities, so a step named ``a&amp;b`` was drawn ``a&b``)."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("&", "&amp;")
    return f'"{escaped}"'


def _plural(count: int, noun: str, ending: str = "s") -> str:
    """'1 worker', '2 workers'."""
    return f"{count} {noun}" + (ending if count != 1 else "")
