"""Edges: the dependencies between tasks in a flow, and how a ``.map`` call reads its arguments.

An edge runs from an upstream task to a downstream task. A *data* edge has a ``key``: the
name of the downstream task's parameter that receives the upstream task's result. An edge
without a key only orders the two tasks (``upstream_tasks=[...]``). A *mapped* edge feeds
each child of a mapped task one element of the upstream result (``t.map(xs)``); a
*flattened* one maps over the concatenation of a list of lists (``t.map(flatten(xss))``).

In a ``.map`` call every argument is mapped over unless wrapped in ``unmapped(...)``::

    add.map([1, 2, 3], unmapped(10))         # [11, 12, 13]
    inc.map(flatten([[1, 2], [3]]))          # [2, 3, 4]

A flow keeps each task's edges in an ``EdgeTable`` (``add_to_table``, ``in_table``): the
edge itself for a task with one, so that a flow of a million tasks holds no container per
task.
"""

from __future__ import annotations

import keyword
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeAlias, TypeVar

from .errors import CycleError, FlowDefinitionError

if TYPE_CHECKING:
    from .task import Task

__all__ = ["Edge", "Flattened", "Unmapped", "flatten", "unmapped"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Edge:
    """A dependency of ``downstream_task`` on ``upstream_task``.

    Attributes:
        upstream_task: the task that runs first.
        downstream_task: the task that waits for it.
        key: the downstream parameter that receives the upstream result, or None for an
            ordering-only edge.
        mapped: each child of the (mapped) downstream task gets one element of the
            upstream result, or the upstream child of its own index.
        flattened: the upstream result is a list of lists, mapped over as one list.

    Raises:
        CycleError: the two tasks are the same task.
        FlowDefinitionError: ``key`` is not a Python identifier (it names a keyword
            argument of the downstream task's ``run``).
    """

    upstream_task: Task[Any, Any]
    downstream_task: Task[Any, Any]
    key: str | None = None
    mapped: bool = False
    flattened: bool = False

    def __post_init__(self) -> None:
        # Checked here, as Prefect 1.x's Edge does, so that no way of adding an edge can
        # build a graph that only fails once it runs.
        if self.upstream_task is self.downstream_task:
            raise CycleError(
                f"task {self.upstream_task.name!r} cannot depend on itself "
                "(an edge from a task to itself)"
            )
        key: object = self.key  # object: untyped callers pass anything
        if key is not None and not (
            isinstance(key, str) and key.isidentifier() and not keyword.iskeyword(key)
        ):
            raise FlowDefinitionError(
                f"edge {self.upstream_task.name!r} -> {self.downstream_task.name!r}: key "
                f"{key!r} is not a Python identifier; a key names the keyword argument of "
                f"{self.downstream_task.name!r}'s run() that receives the upstream result"
            )

    def __repr__(self) -> str:
        key = f", key={self.key!r}" if self.key is not None else ""
        how = ", mapped" if self.mapped else ""
        how += ", flattened" if self.flattened else ""
        return f"Edge({self.upstream_task.name!r} -> {self.downstream_task.name!r}{key}{how})"


#: A flow's edges into (or out of) each task, in the order they were added: the edge itself
#: when a task has one (most tasks of a large flow: a list per task would cost more than
#: its edge), a list when it has more; a task with none is not a key.
EdgeTable: TypeAlias = "dict[Task[Any, Any], Edge | list[Edge]]"


def add_to_table(table: EdgeTable, task: Task[Any, Any], edge: Edge) -> None:
    """Record ``edge`` as one of ``task``'s in ``table`` (after those it has)."""
    had = table.get(task)
    if had is None:
        table[task] = edge
    elif isinstance(had, Edge):
        table[task] = [had, edge]
    else:
        had.append(edge)


def in_table(table: EdgeTable, task: Task[Any, Any]) -> Sequence[Edge]:
    """``task``'s edges in ``table``, in the order they were added (none for a task that
    is not a key)."""
    had = table.get(task)
    if had is None:
        return ()
    return (had,) if isinstance(had, Edge) else had


class Unmapped(Generic[T]):
    """An argument of a ``.map`` call passed whole to every child (see ``unmapped``)."""

    __slots__ = ("value",)

    def __init__(self, value: T) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"unmapped({self.value!r})"


def unmapped(value: T) -> Unmapped[T]:
    """In ``t.map(...)``: pass ``value`` (a task or a constant) whole to every child.

    >>> unmapped(10)
    unmapped(10)
    """
    return Unmapped(value)


class Flattened:
    """An argument of a ``.map`` call mapped over as one concatenated list (see ``flatten``)."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"flatten({self.value!r})"


if TYPE_CHECKING:
    # For the type checker, flatten reads as the list it stands for, so a mapped parameter
    # is checked against the inner element type.
    def flatten(value: Iterable[Iterable[T]]) -> list[T]:
        """In ``t.map(...)``: map over the concatenation of a list of lists."""
        ...

else:

    def flatten(value):
        """In ``t.map(...)``: map over the concatenation of a list of lists (a task's
        result, a mapped task's children's results, or a constant).

        >>> flatten([[1, 2], [3]])
        flatten([[1, 2], [3]])
        """
        return Flattened(value)
