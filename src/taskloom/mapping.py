"""``apply_map``: map a function that builds several tasks, as ``t.map`` maps one task.

``apply_map(fn, xs, unmapped(y))`` calls ``fn`` once, at build time, with stand-ins for its
arguments, in a scratch flow; every task ``fn`` creates that depends on a mapped argument
(directly or through another such task) is then added to the flow being built as a mapped
task, wired child by child, and the others as plain tasks::

    def pipeline(x: int, scale: int) -> int:
        return store(double(x), scale)

    with Flow("etl") as flow:
        results = apply_map(pipeline, [1, 2, 3], unmapped(10))   # store is mapped: 3 children

``double`` and ``store`` run three times each, ``store[i]`` right after ``double[i]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from .edges import Flattened, Unmapped
from .errors import FlowDefinitionError
from .flow import CaseBlock, Flow, active_cases
from .task import Task, _tasks_in, active_flow

__all__ = ["apply_map"]

R = TypeVar("R")


class _Argument(Task[[], Any]):
    """Stands for one argument of ``apply_map`` while ``fn`` builds its tasks."""

    def __init__(self, position: str, value: Any, flattened: bool) -> None:
        super().__init__(name=f"apply_map argument {position}")
        self.value = value
        self.flattened = flattened


def apply_map(fn: Callable[..., R], *args: Any, flow: Flow | None = None, **kwargs: Any) -> list[R]:
    """Map ``fn``, a function that creates tasks, over its arguments: every argument is
    mapped over unless wrapped in ``unmapped(...)`` (``flatten(...)`` maps over a list of
    lists). Returns what ``fn`` returned: its handle, now that of a mapped task, which
    reads as ``list[R]`` (where ``fn`` returns several handles, a tuple of them, each
    is a mapped task's handle at run time; the type checker cannot say that).

    Raises ``FlowDefinitionError`` outside ``with Flow(...)`` (unless ``flow=`` is given),
    or when nothing is mapped over.
    """
    target = flow if flow is not None else active_flow.get()
    name = getattr(fn, "__name__", repr(fn))
    if not isinstance(target, Flow):
        raise FlowDefinitionError(
            f"apply_map({name}, ...) was called outside a flow; call it inside `with Flow(...)` "
            "or pass flow=..."
        )
    stand_ins: dict[str, Any] = {}

    def stand_in(position: str, value: Any) -> Any:
        if isinstance(value, Unmapped):
            if isinstance(value.value, Task) and value.value in target.tasks:
                scratch.add_task(value.value)  # so fn may use it as a case's condition
            return value.value
        flattened = isinstance(value, Flattened)
        argument = _Argument(position, value.value if flattened else value, flattened)
        scratch.add_task(argument)  # in the scratch flow, as `case` wants its condition
        stand_ins[position] = argument
        return argument

    scratch = Flow(f"apply_map({name})")
    with scratch:
        placed_args = [stand_in(str(i), a) for i, a in enumerate(args)]
        placed_kwargs = {k: stand_in(k, v) for k, v in kwargs.items()}
        if not stand_ins:
            raise FlowDefinitionError(
                f"apply_map({name}, ...) has nothing to map over: every argument is "
                "unmapped(...); pass at least one iterable (or call the function plainly)"
            )
        returned = fn(*placed_args, **placed_kwargs)
    _graft(scratch, target, name)
    return returned  # type: ignore[return-value]  # the handle of a mapped task: see above


def _graft(scratch: Flow, target: Flow, name: str) -> None:
    """Add the tasks ``fn`` created in ``scratch`` to ``target``: mapped where they depend
    on a mapped argument, child by child on each other."""
    # `case` blocks fn opened: recorded in the target before their tasks are added to it, so
    # the target knows their compare tasks (never gated by a block of its own) and which
    # tasks each gates. A top-level one nests in the block apply_map was called in, if any.
    existing = set(target.tasks)
    outer = next((b for b in reversed(active_cases.get()) if b.flow is target), None)
    copies: dict[CaseBlock, CaseBlock] = {}
    for block in scratch.case_blocks():
        parent = copies[block.parent] if block.parent is not None else outer
        condition = block.condition
        if isinstance(condition, _Argument) and isinstance(condition.value, Task):
            condition = condition.value  # what the compare task is mapped over
        copies[block] = CaseBlock(
            target,
            block.compare,
            condition,
            block.value,
            parent,
            {t: None for t in block.tasks if not isinstance(t, _Argument)},
        )
        target.add_task(block.compare)
        target.add_case_block(copies[block])
    mapped: set[Task[Any, Any]] = set()
    for t in scratch.sorted_tasks():
        if isinstance(t, _Argument) or t in existing:
            continue  # a stand-in, or a task of the flow that fn used as it is
        ups = scratch.upstream_tasks(t)
        if any(isinstance(u, _Argument) or u in mapped for u in ups):
            mapped.add(t)
    for t in scratch.sorted_tasks():
        if isinstance(t, _Argument) or t in existing:
            continue
        arguments: dict[str, Any] = {}
        for key, value in scratch.arguments(t).items():
            if isinstance(value, _Argument):
                arguments[key] = Flattened(value.value) if value.flattened else value.value
            elif isinstance(value, Task) and value in mapped:
                arguments[key] = value
            elif any(isinstance(u, _Argument) for u in _tasks_in(value)):
                raise FlowDefinitionError(
                    f"apply_map({name}, ...): task {t.name!r} takes a mapped argument inside "
                    f"a collection (argument {key!r}); pass it as an argument of its own"
                )
            elif t in mapped:
                arguments[key] = Unmapped(value)
            else:
                arguments[key] = value
        ordering: list[object] = []
        for edge in scratch.edges_to(t):
            u = edge.upstream_task
            if edge.key is not None or isinstance(u, _Argument):
                continue
            ordering.append(u if (t in mapped and u in mapped) or t not in mapped else Unmapped(u))
        target._bind(t, arguments, ordering, mapped=t in mapped)
