"""The rules of a mapped task (``t.map(...)``) at run time, as pure functions.

A mapped task is not run itself: once what it maps over is known, it becomes *children*,
one per element, each a full task run (its own trigger, retries, cache, signals and
``context.map_index``); it ends ``Mapped`` when they have all finished. The scheduler
(``taskloom.runner``) does the bookkeeping; this module decides:

- ``parent_decision``: whether the mapped task maps at all. As in Prefect 1.x its trigger
  is not checked (each child checks its own): a skipped upstream task skips it (unless one
  failed: failure outranks skip, as for any task), and an upstream task it maps over that did
  not succeed fails it (``"No upstream states can be mapped over."``);
- ``elements``: the elements one argument maps over (a generator is read once, in order;
  ``flatten`` concatenates), or why it cannot be mapped over;
- ``child_name``: ``name[i]``, the child's name in logs, the journal and progress.

Child ``i`` gets element ``i`` of each mapped argument (the shortest argument decides how
many children there are), the whole value of each unmapped one, and, over a mapped
upstream task, that task's child ``i``: so child ``i`` downstream starts as soon as child
``i`` upstream is finished, with no barrier between the two maps.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .decide import propagated_skip
from .states import Failed, Mapped, State

if TYPE_CHECKING:
    from .edges import Edge
    from .task import Task

__all__ = [
    "NOT_MAPPABLE", "Unmappable", "child_name", "elements", "mapped_state", "parent_decision",
    "unfinished_children",
]

NOT_MAPPABLE = "No upstream states can be mapped over."
MAPPING_MESSAGE = "Ready to proceed with mapping."


class Unmappable(Exception):
    """A value a mapped task cannot map over; the message names the argument and type."""


def parent_decision(
    task: Task[Any, Any], upstream_states: Mapping[Edge, State[Any]]
) -> State[Any] | None:
    """What becomes of a mapped task before it maps: None to map, or the state it ends in.

    ``upstream_states`` are those of its upstream tasks that are finished (a mapped task
    it maps over child by child may still be running: its children decide for themselves).
    A mapped upstream reached through an unmapped edge counts child by child.
    """
    skipped = propagated_skip(task, upstream_states)
    if skipped is not None:
        return skipped
    for edge, state in upstream_states.items():
        if edge.mapped and not state.is_successful():
            return Failed(NOT_MAPPABLE, state.result)
    return None


def elements(task_name: str, key: str, value: object, flattened: bool) -> Sequence[Any]:
    """The elements argument ``key`` of ``task_name`` maps over: ``value`` itself when it is
    a sequence, else its items read once, in order; with ``flattened``, the concatenation
    of its items. Raises ``Unmappable`` naming the argument and the type."""
    items = _sequence(task_name, key, value)
    if not flattened:
        return items
    flat: list[Any] = []
    for i, item in enumerate(items):
        flat.extend(_sequence(task_name, f"{key}[{i}]", item))
    return flat


def _sequence(task_name: str, key: str, value: object) -> Sequence[Any]:
    if isinstance(value, Sequence):
        return value
    if isinstance(value, Iterable):
        return list(value)
    raise Unmappable(
        f"Task {task_name!r}: cannot map over argument {key!r}: {type(value).__qualname__} "
        f"{_short(value)} is not iterable (At least one upstream state has an unmappable result.)"
    )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def child_name(name: str, map_index: int) -> str:
    """The name of child ``map_index`` of a mapped task: ``name[3]``."""
    return f"{name}[{map_index}]"


def unfinished_children(state: State[Any]) -> bool:
    """Whether ``state`` is a ``Mapped`` state some of whose children run again (failed,
    paused, never run): given to a run (a resume), the task maps again, keeps the other
    children as they are and runs those."""
    return isinstance(state, Mapped) and any(type(s).runs_again for s in state.map_states)


def mapped_state(children: Sequence[State[Any]]) -> Mapped[list[Any]]:
    """The final state of a mapped task whose children ended in ``children``."""
    return Mapped(MAPPING_MESSAGE, [s.result for s in children], map_states=list(children))
