"""Pictures of a flow: its tasks and the edges between them, coloured by a run's outcome.

::

    from taskloom import visualize

    print(visualize.to_mermaid(flow))                   # paste into Markdown (GitHub renders it)
    visualize.to_dot(flow, state)                       # Graphviz text, coloured by flow.run's state
    visualize.render(flow, record, filename="run.svg")  # needs `pip install graphviz` and `dot`
    flow.visualize(filename="flow.png")                 # the same, as a method

DOT and Mermaid text need nothing beyond taskloom. SVG, PNG and PDF are drawn by
Graphviz: the ``graphviz`` Python package and Graphviz's ``dot`` program.

Each task is one node, with an id from its position in ``flow.tasks`` (``t0``, ``t1``...;
copies of one task share a name, never an id) and its name as the label. Parameters are
ovals, other tasks rounded boxes. A data edge is labelled with the argument it feeds; an
ordering-only edge (``upstream_tasks=``) is dashed. A mapped task (``t.map``) is one node
with a double border and ``[mapped]`` after its name, and its mapped edges are bold;
coloured by a run, it takes the colour of its most telling child (a failed one first) and
counts its children by state. The tasks of a ``case`` block (``taskloom.tasks.control_flow``)
are drawn in a dashed box labelled ``case: <condition> == <value>``, boxes nested as the
blocks are. Given a run (the state ``flow.run``
returned, or a ``RunRecord`` from the run journal) each task is coloured by its final
state, which is also written under its name, with the attempt count when it retried.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, overload

from ._runview import TaskOutcome, colour, outcomes, tint
from .errors import TaskloomError
from .plan import plan
from .task import ParameterTask

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    from .edges import Edge
    from .flow import CaseBlock, Flow
    from .journal import RunRecord
    from .states import State
    from .task import Task

__all__ = ["FORMATS", "MissingRendererError", "render", "to_dot", "to_mermaid"]

TextFormat = Literal["dot", "mermaid", "svg"]
BinaryFormat = Literal["png", "pdf"]
Format = Literal["dot", "mermaid", "svg", "png", "pdf"]

#: The formats ``render`` writes, by file suffix.
FORMATS: dict[str, Format] = {
    ".dot": "dot",
    ".gv": "dot",
    ".mmd": "mermaid",
    ".mermaid": "mermaid",
    ".svg": "svg",
    ".png": "png",
    ".pdf": "pdf",
}

_BUCKETS = ("succeeded", "failed", "cached", "skipped", "retrying", "paused", "running", "pending")

_INSTALL = (
    "pip install graphviz, and Graphviz's `dot` program (Debian/Ubuntu: apt-get install "
    "graphviz; macOS: brew install graphviz); or use format='dot' or 'mermaid', which need "
    "nothing"
)


class MissingRendererError(TaskloomError, RuntimeError):
    """Drawing an image needs the graphviz Python package and Graphviz's ``dot`` program."""


def _label(name: str, outcome: TaskOutcome | None) -> list[str]:
    lines = [name]
    if outcome is not None:
        extra = outcome.state
        if outcome.attempts is not None and outcome.attempts > 1:
            extra += f" ({outcome.attempts} attempts)"
        lines.append(extra)
    return lines


def _dot_quote(text: str) -> str:
    """A DOT string showing ``text`` as it is (Graphviz decodes HTML entities in labels)."""
    escaped = text.replace("&", "&amp;").replace("\\", "\\\\").replace('"', '\\"')
    return '"' + escaped.replace("\n", "\\n") + '"'


def to_dot(
    flow: Flow,
    flow_state: State[Any] | RunRecord | None = None,
    *,
    direction: Literal["TB", "LR"] = "TB",
) -> str:
    """The flow as Graphviz DOT text; with a run, tasks coloured by their final state.

    Raises:
        ValueError: ``flow_state`` is a ``RunRecord`` of another flow.
    """
    found = outcomes(flow, flow_state) if flow_state is not None else None
    index = {t: i for i, t in enumerate(flow.tasks)}
    shown = plan(flow).names
    title = _title(flow, flow_state)
    lines = [
        f"digraph {_dot_quote(flow.name)} {{",
        f"  graph [rankdir={direction}, label={_dot_quote(title)}, labelloc=t, fontname=\"Helvetica\", "
        "fontsize=14, nodesep=0.35, ranksep=0.45];",
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=11, '
        'fillcolor="#f4f5f7", color="#5b6170", penwidth=1.2];',
        '  edge [fontname="Helvetica", fontsize=9, color="#6b7280", fontcolor="#374151", arrowsize=0.7];',
    ]
    nodes: dict[Task[Any, Any], str] = {}
    for t, i in index.items():
        outcome = found[i] if found is not None else None
        attributes = [f"label={_dot_quote(chr(10).join(_label(_name(flow, t, shown[i]), outcome)))}"]
        if isinstance(t, ParameterTask):
            attributes.append("shape=ellipse")
        if flow.mapped_arguments(t) is not None:
            attributes.append("peripheries=2")
        if outcome is not None:
            strong = colour(outcome.bucket)
            attributes += [f'fillcolor="{tint(strong)}"', f'color="{strong}"', "penwidth=2"]
            if outcome.attempts is not None and outcome.attempts > 1:
                attributes.append('style="rounded,filled,bold"')
            if outcome.message:
                attributes.append(f"tooltip={_dot_quote(outcome.message[:300])}")
        nodes[t] = f"t{i} [{', '.join(attributes)}];"
    lines += _placed(flow, nodes, _dot_cluster, "  ")
    for edge in flow.edges:
        up, down = index[edge.upstream_task], index[edge.downstream_task]
        bold = ", penwidth=2" if edge.mapped else ""
        if edge.key is None:
            lines.append(f"  t{up} -> t{down} [style=dashed{bold}];")
        else:
            lines.append(f"  t{up} -> t{down} [label={_dot_quote(_edge_label(edge))}{bold}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _case_title(block: CaseBlock) -> str:
    return f"case: {block.condition.name} == {block.value!r}"


def _placed(
    flow: Flow,
    nodes: Mapping[Task[Any, Any], str],
    cluster: Callable[[int, CaseBlock], tuple[str, str]],
    indent: str,
) -> list[str]:
    """The node lines, each task's inside the box of the innermost case block gating it
    (a block's compare task in its parent's box); boxes nest as the blocks do.
    ``cluster(n, block)`` gives the lines opening and closing block ``n``'s box."""
    blocks = flow.case_blocks()
    if not blocks:
        return [indent + line for line in nodes.values()]
    depth: dict[CaseBlock, int] = {}
    for block in blocks:  # a parent is recorded before its children
        depth[block] = depth[block.parent] + 1 if block.parent in depth else 0
    home: dict[Task[Any, Any], CaseBlock] = {}
    for block in blocks:
        for t in block.tasks:
            if t in nodes and (t not in home or depth[block] > depth[home[t]]):
                home[t] = block
        if block.parent is not None and block.compare not in home:
            home[block.compare] = block.parent
    children: dict[CaseBlock | None, list[CaseBlock]] = {}
    for block in blocks:
        children.setdefault(block.parent if block.parent in depth else None, []).append(block)
    number = {block: n for n, block in enumerate(blocks)}
    out: list[str] = []

    def emit(block: CaseBlock | None, pad: str) -> None:
        out.extend(pad + line for t, line in nodes.items() if home.get(t) is block)
        for child in children.get(block, []):
            opening, closing = cluster(number[child], child)
            out.append(pad + opening)
            emit(child, pad + "  ")
            out.append(pad + closing)

    emit(None, indent)
    return out


def _dot_cluster(n: int, block: CaseBlock) -> tuple[str, str]:
    title = _dot_quote(_case_title(block))
    return (
        f'subgraph cluster_case{n} {{ label={title}; style="rounded,dashed"; '
        'color="#9ca3af"; fontname="Helvetica"; fontsize=10;',
        "}",
    )


def _mermaid_cluster(n: int, block: CaseBlock) -> tuple[str, str]:
    return f'subgraph case{n}["{_mermaid_text(_case_title(block))}"]', "end"


def _name(flow: Flow, task: Task[Any, Any], shown: str) -> str:
    """A task's name as drawn (``shown``: copies numbered, ``plan.Plan.names``); a mapped
    task's says so."""
    return f"{shown} [mapped]" if flow.mapped_arguments(task) is not None else shown


def _edge_label(edge: Edge) -> str:
    assert edge.key is not None
    if edge.flattened:
        return f"{edge.key} (flattened)"
    return f"{edge.key} (mapped)" if edge.mapped else edge.key


def _title(flow: Flow, flow_state: State[Any] | RunRecord | None) -> str:
    from .journal import RunRecord

    if flow_state is None:
        return flow.name
    if isinstance(flow_state, RunRecord):
        return f"{flow.name}\nrun {flow_state.run_id}: {flow_state.state}"
    run_id = getattr(flow_state, "run_id", None)
    name = type(flow_state).__name__
    return f"{flow.name}\nrun {run_id}: {name}" if run_id else f"{flow.name}\n{name}"


def _mermaid_text(text: str) -> str:
    """Text safe inside a quoted Mermaid label. Mermaid draws labels as HTML, so HTML's
    named entities work; its own ``#code;`` escapes are mangled by some versions, so no
    ``#`` is left to start one."""
    out = text.replace("&", "&amp;")
    for char, code in (('"', "&quot;"), ("<", "&lt;"), (">", "&gt;"), ("#", "&num;")):
        out = out.replace(char, code)
    return out.replace("\n", " ")


def to_mermaid(
    flow: Flow,
    flow_state: State[Any] | RunRecord | None = None,
    *,
    direction: Literal["TD", "LR"] = "TD",
) -> str:
    """The flow as a Mermaid flowchart (GitHub and many wikis draw it from a
    ```` ```mermaid ```` block); with a run, tasks coloured by their final state.

    Raises:
        ValueError: ``flow_state`` is a ``RunRecord`` of another flow.
    """
    found = outcomes(flow, flow_state) if flow_state is not None else None
    index = {t: i for i, t in enumerate(flow.tasks)}
    shown = plan(flow).names
    lines = [f"flowchart {direction}"]
    classes: dict[str, list[str]] = {}
    nodes: dict[Task[Any, Any], str] = {}
    for t, i in index.items():
        outcome = found[i] if found is not None else None
        label = "<br/>".join(_mermaid_text(line) for line in _label(_name(flow, t, shown[i]), outcome))
        if isinstance(t, ParameterTask):
            nodes[t] = f't{i}(["{label}"])'
        elif flow.mapped_arguments(t) is not None:
            nodes[t] = f't{i}[["{label}"]]'
        else:
            nodes[t] = f't{i}["{label}"]'
        if outcome is not None:
            classes.setdefault(outcome.bucket, []).append(f"t{i}")
    lines += _placed(flow, nodes, _mermaid_cluster, "    ")
    for edge in flow.edges:
        up, down = index[edge.upstream_task], index[edge.downstream_task]
        if edge.key is None:
            lines.append(f"    t{up} -.-> t{down}")
        else:
            arrow = "==>" if edge.mapped else "-->"
            lines.append(f'    t{up} {arrow}|"{_mermaid_text(_edge_label(edge))}"| t{down}')
    for bucket in _BUCKETS:
        if bucket in classes:
            strong = colour(bucket)
            lines.append(f"    classDef {bucket} fill:{tint(strong)},stroke:{strong},stroke-width:2px,color:#111")
            lines.append(f"    class {','.join(classes[bucket])} {bucket}")
    return "\n".join(lines) + "\n"


def _pipe(dot: str, format: str) -> bytes:
    try:
        import graphviz
    except ImportError:
        raise MissingRendererError(
            f"drawing a flow as {format.upper()} needs the graphviz Python package: {_INSTALL}"
        ) from None
    try:
        return graphviz.Source(dot).pipe(format=format)
    except graphviz.ExecutableNotFound:
        raise MissingRendererError(
            f"drawing a flow as {format.upper()} needs Graphviz's `dot` program on PATH: {_INSTALL}"
        ) from None


@overload
def render(
    flow: Flow,
    flow_state: State[Any] | RunRecord | None = ...,
    filename: str | os.PathLike[str] | None = ...,
    *,
    format: TextFormat,
) -> str: ...
@overload
def render(
    flow: Flow,
    flow_state: State[Any] | RunRecord | None = ...,
    filename: str | os.PathLike[str] | None = ...,
    *,
    format: BinaryFormat,
) -> bytes: ...
@overload
def render(
    flow: Flow,
    flow_state: State[Any] | RunRecord | None = ...,
    filename: str | os.PathLike[str] | None = ...,
    *,
    format: None = ...,
) -> str | bytes: ...
def render(
    flow: Flow,
    flow_state: State[Any] | RunRecord | None = None,
    filename: str | os.PathLike[str] | None = None,
    *,
    format: Format | None = None,
) -> str | bytes:
    """The flow as ``format`` (text for dot, mermaid and svg; bytes for png and pdf),
    written to ``filename`` too when given.

    ``format`` defaults to the one of ``filename``'s suffix (``.dot``/``.gv``,
    ``.mmd``/``.mermaid``, ``.svg``, ``.png``, ``.pdf``), else ``"dot"``.

    Raises:
        MissingRendererError: svg, png or pdf without the graphviz package or ``dot``.
        ValueError: an unknown format or suffix, or a ``RunRecord`` of another flow.
    """
    if format is None:
        if filename is None:
            format = "dot"
        else:
            suffix = Path(filename).suffix.lower()
            if suffix not in FORMATS:
                raise ValueError(
                    f"cannot tell the format from {str(filename)!r}: give format= or use one of "
                    f"{', '.join(FORMATS)}"
                )
            format = FORMATS[suffix]
    if format not in FORMATS.values():
        raise ValueError(f"unknown format {format!r}: use one of dot, mermaid, svg, png, pdf")
    content: str | bytes
    if format == "mermaid":
        content = to_mermaid(flow, flow_state)
    else:
        content = to_dot(flow, flow_state)
        if format == "svg":
            content = _pipe(content, "svg").decode("utf-8")
        elif format != "dot":
            content = _pipe(content, format)
    if filename is not None:
        path = Path(filename)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return content
