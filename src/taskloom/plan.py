"""A flow compiled for running: tasks by index, with their edges and arguments resolved.

The scheduler works on indexes, not on ``Task`` objects and ``Edge`` sets: for each task,
its upstream and downstream task numbers, which argument each upstream result feeds, its
constant arguments, and arguments that are collections holding tasks (rebuilt with the
results at run time). A plan is kept per flow and reused until the flow changes
(``Flow.version``).
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .edges import Edge
from .flow import Flow, _tasks_in
from .task import ParameterTask, Task
from .triggers import all_successful

__all__ = ["Node", "plan", "rebuild"]


@dataclass(slots=True)
class Node:
    """A task compiled for running: its place in the graph, by index."""

    task: Task[Any, Any]
    in_edges: list[tuple[Edge, int]] = field(default_factory=list)
    upstream: list[int] = field(default_factory=list)
    downstream: list[int] = field(default_factory=list)
    direct: list[tuple[str, int]] = field(default_factory=list)
    constants: dict[str, Any] = field(default_factory=dict)
    nested: list[tuple[str, Any]] = field(default_factory=list)
    #: Whether this task may run as a follow-on of its sole upstream task.
    followable: bool = False


_plans: weakref.WeakKeyDictionary[Flow, tuple[int, list[Node], dict[Task[Any, Any], int]]] = (
    weakref.WeakKeyDictionary()
)


def plan(flow: Flow) -> tuple[list[Node], dict[Task[Any, Any], int]]:
    """The flow compiled for running, reused while the flow does not change."""
    cached = _plans.get(flow)
    if cached is not None and cached[0] == flow.version:
        return cached[1], cached[2]
    version = flow.version
    nodes, index = _compile(flow)
    _plans[flow] = (version, nodes, index)
    return nodes, index


def _compile(flow: Flow) -> tuple[list[Node], dict[Task[Any, Any], int]]:
    index = {t: i for i, t in enumerate(flow.tasks)}
    nodes = [Node(t) for t in index]
    upstream: list[dict[int, None]] = [{} for _ in nodes]
    for edge in flow.edges:
        up, down = index[edge.upstream_task], index[edge.downstream_task]
        nodes[down].in_edges.append((edge, up))
        upstream[down][up] = None
    for down, ups in enumerate(upstream):
        nodes[down].upstream = list(ups)
        for up in ups:
            nodes[up].downstream.append(down)
    for t, i in index.items():
        node = nodes[i]
        for key, value in flow.arguments(t).items():
            if isinstance(value, Task):
                node.direct.append((key, index[value]))
            elif any(True for _ in _tasks_in(value)):
                node.nested.append((key, value))
            else:
                node.constants[key] = value
        task = node.task
        node.followable = (
            len(node.upstream) == 1
            and not node.nested
            and len(node.direct) <= 1
            and task.trigger is all_successful
            and task.cache_for is None
            and not isinstance(task, ParameterTask)
        )
    return nodes, index


def rebuild(value: Any, results: Mapping[Task[Any, Any], Any]) -> Any:
    """An argument with each task in it replaced by that task's result."""
    if isinstance(value, Task):
        return results[value]
    if isinstance(value, (list, tuple, set, frozenset)):
        return type(value)(rebuild(v, results) for v in value)
    if isinstance(value, dict):
        return {k: rebuild(v, results) for k, v in value.items()}
    return value
