"""Edges: the dependencies between tasks in a flow.

An edge runs from an upstream task to a downstream task. A *data* edge has a ``key``: the
name of the downstream task's parameter that receives the upstream task's result. An edge
without a key only orders the two tasks (``upstream_tasks=[...]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .task import Task

__all__ = ["Edge"]


@dataclass(frozen=True, slots=True)
class Edge:
    """A dependency of ``downstream_task`` on ``upstream_task``.

    Attributes:
        upstream_task: the task that runs first.
        downstream_task: the task that waits for it.
        key: the downstream parameter that receives the upstream result, or None for an
            ordering-only edge.
    """

    upstream_task: Task[Any, Any]
    downstream_task: Task[Any, Any]
    key: str | None = None

    def __repr__(self) -> str:
        key = f", key={self.key!r}" if self.key is not None else ""
        return f"Edge({self.upstream_task.name!r} -> {self.downstream_task.name!r}{key})"
