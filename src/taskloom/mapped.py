"""The rules of a mapped task (``t.map(...)``) at run time, as pure functions.

A mapped task is not run itself: once what it maps over is known, it becomes *children*,
one per element, each a full task run (its own trigger, retries, cache, signals and
``context.map_index``); it ends ``Mapped`` when they have all finished. The scheduler
(``taskloom.runner``) does the bookkeeping; this module decides:

- ``parent_decision``: whether the mapped task maps at all. As in Prefect 1.x its trigger
  is not checked (each child checks its own): a skipped upstream task skips it (unless one
  failed: failure outranks skip, as for any task), and it fails (``"No upstream states can
  be mapped over."``) when nothing it maps over succeeded. Something else it maps over (a
  constant, a task that succeeded) gives its children; an upstream task it maps over
  that failed gives each child its state (``TriggerFailed`` by the default trigger; an
  ``all_finished`` child runs, given None), as in Prefect 1.x;
- ``elements``: the elements one argument maps over (a generator is read once, in order;
  ``flatten`` concatenates), or why it cannot be mapped over; ``flattened_children``: the
  same over a mapped task's children, where a child that did not succeed (or returned no
  sequence) is one element, and keeps its state for the child downstream;
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
from .states import Failed, Mapped, State, Success

if TYPE_CHECKING:
    from .edges import Edge
    from .task import Task

__all__ = [
    "NOT_MAPPABLE", "Unmappable", "child_name", "elements", "flattened_children", "mapped_state",
    "parent_decision", "unfinished_children",
]

NOT_MAPPABLE = "No upstream states can be mapped over."
MAPPING_MESSAGE = "Ready to proceed with mapping."


class Unmappable(Exception):
    """A value a mapped task cannot map over; the message names the argument and type."""


def parent_decision(
    task: Task[Any, Any], upstream_states: Mapping[Edge, State[Any]], maps_over_more: bool
) -> State[Any] | None:
    """What becomes of a mapped task before it maps: None to map, or the state it ends in.

    ``upstream_states`` are those of its upstream tasks that are finished (a mapped task
    it maps over child by child may still be running: its children decide for themselves).
    A mapped upstream reached through an unmapped edge counts child by child.
    ``maps_over_more``: it also maps over what is not among them (a constant, a value
    built of tasks' results, a mapped task still running), which always gives children.
    """
    skipped = propagated_skip(task, upstream_states)
    if skipped is not None:
        return skipped
    if maps_over_more:
        return None
    failed: State[Any] | None = None
    for edge, state in upstream_states.items():
        if edge.mapped:
            if state.is_successful():
                # (an ordering edge gives children only from a mapped task's children)
                if edge.key is not None or isinstance(state, Mapped):
                    return None
            else:
                failed = failed or state
    return None if failed is None else Failed(NOT_MAPPABLE, failed.result)


def flattened_children(state: Mapped[Any]) -> tuple[list[Any], list[State[Any]]]:
    """What ``flatten`` over a mapped task gives the mapped task after it: the elements of
    its children's results, one after the other, and for each the state its child sees
    upstream. A child that did not succeed, or whose result is not a sequence (nor
    iterable), is one element: its result (a failure's exception, as without ``flatten``),
    with its own state (a child after a failed one ends ``TriggerFailed``, after a skipped
    one ``Skipped``; an ``all_finished`` one runs, given the exception)."""
    items: list[Any] = []
    states: list[State[Any]] = []
    for child in state.map_states:
        result = child.result
        if child.is_successful() and not child.is_skipped() and isinstance(result, Iterable):
            elements = list(result)  # (as ``elements``: a string gives its letters)
            items.extend(elements)
            states.extend(Success(result=element) for element in elements)
            continue
        items.append(result)
        states.append(child)
    return items, states


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
