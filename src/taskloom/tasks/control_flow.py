"""Control flow: branches built on skips, as in Prefect Core 1.x.

``with case(task, value):`` gates the tasks created in the block: they run only when
``task``'s result equals ``value``, else they end ``Skipped`` (and so do the tasks downstream
of them, by skip propagation). ``merge`` joins branches again::

    with Flow("branches") as flow:
        cond = check()
        with case(cond, True):
            yes = action_if_true()
        with case(cond, False):
            no = action_if_false()
        result = merge(yes, no)          # the result of the branch that ran

How: ``case`` adds a ``CompareValue`` task, bound to ``task``, that raises ``SKIP`` on a
mismatch; every task created in the block gets an ordering edge from it (from each enclosing
block's, when cases nest). ``switch`` and ``ifelse`` add the same compare tasks in front of
tasks that exist already. ``merge`` is a task with ``skip_on_upstream_skip=False`` and the
``not_all_skipped`` trigger that returns its first input that is not None.

Where this differs from Prefect 1.4.1: every task in a block is gated directly (Prefect
gates only those with no upstream task in the block), and a ``merge`` or ``FilterTask``
created in a block is skipped when the block's comparison fails, even though it does not
skip on a skipped upstream (in Prefect it ran anyway: issue #12749).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from contextvars import Token
from types import TracebackType
from typing import Any, TypeVar, overload

from .. import signals
from ..edges import Edge
from ..errors import FlowDefinitionError
from ..flow import CaseBlock, Flow, active_cases
from ..states import State
from ..task import Task, active_flow, task
from ..triggers import Trigger, all_finished, not_all_skipped, states_of

__all__ = ["CompareValue", "FilterTask", "Merge", "case", "ifelse", "merge", "switch"]

A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
D = TypeVar("D")
E = TypeVar("E")
T = TypeVar("T")


class CompareValue(Task[[Any], None]):
    """Raises ``SKIP`` unless its input equals ``value``: the gate of a ``case`` block.

    ``case``, ``switch`` and ``ifelse`` add it; tasks behind it are skipped on a mismatch.

    >>> CompareValue(3).run(3)            # equal: nothing happens
    """

    def __init__(self, value: Any, name: str | None = None, **options: Any) -> None:
        super().__init__(name if name is not None else f'CompareValue: "{value}"', **options)
        self.value = value

    def run(self, value: Any) -> None:
        """Raise ``signals.SKIP`` if ``value`` differs from the value compared with."""
        if value != self.value:
            raise signals.SKIP(f'Provided value "{value}" did not match "{self.value}"')


def _is_gate(edge: Edge) -> bool:
    return edge.key is None and isinstance(edge.upstream_task, CompareValue)


class CaseGated:
    """A trigger for tasks that do not skip on a skipped upstream (``merge``,
    ``FilterTask``) but must still honour the ``case`` blocks they were created in: skipped
    when a compare task in front of them (an ordering edge from a ``CompareValue``) was
    skipped, else ``trigger`` decides on the other upstream states.

    >>> gated = CaseGated(not_all_skipped)
    """

    def __init__(self, trigger: Trigger) -> None:
        self.trigger = trigger
        self.__name__ = getattr(trigger, "__name__", type(trigger).__name__)

    def __call__(self, upstream_states: Mapping[Edge, State[Any]], /) -> bool:
        gates = {e: s for e, s in upstream_states.items() if _is_gate(e)}
        if any(s.is_skipped() for s in states_of(gates)):
            raise signals.SKIP("The case this task is in was not taken", result=None)
        return self.trigger({e: s for e, s in upstream_states.items() if e not in gates})


class case:
    """``with case(task, value):``: the tasks created in the block run only when ``task``'s
    result equals ``value`` (``==``); otherwise they end ``Skipped``, and so do the tasks
    downstream of them (join branches with ``merge``). Blocks nest: a task in both runs only
    when both match. A task in the block is gated even when its arguments come from outside;
    a mapped task in the block is gated as a whole (an unmapped edge). Inside ``apply_map``
    the comparison is mapped too, so each child takes its own branch.

    >>> with Flow("f") as flow:                      # doctest: +SKIP
    ...     cond = coin_flip()
    ...     with case(cond, "heads"):
    ...         celebrate()

    Raises:
        FlowDefinitionError: outside ``with Flow(...)``, or ``task`` is not a task of that
            flow (checked when the block is entered, before anything runs).
    """

    def __init__(self, task: object, value: object) -> None:
        self.task = task
        self.value = value
        self.compare: CompareValue | None = None
        self._tokens: list[Token[tuple[CaseBlock, ...]]] = []

    def __enter__(self) -> case:
        flow = active_flow.get()
        if not isinstance(flow, Flow):
            raise FlowDefinitionError(
                f"case({self.task!r}, {self.value!r}) was entered outside a flow; "
                "use it inside `with Flow(...)`"
            )
        condition = self.task
        if not isinstance(condition, Task):
            raise FlowDefinitionError(
                f"Flow {flow.name!r}: case() needs a task of the flow to compare, not "
                f"{type(condition).__name__} {condition!r}"
            )
        if condition not in flow.tasks:
            raise FlowDefinitionError(
                f"Flow {flow.name!r}: case() on task {condition.name!r}, which is not in this "
                "flow; call the task inside `with Flow(...)` first and pass the handle"
            )
        block = _add_compare(flow, condition, self.value)
        assert isinstance(block.compare, CompareValue)
        self.compare = block.compare
        self._tokens.append(active_cases.set((*active_cases.get(), block)))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        active_cases.reset(self._tokens.pop())


def _add_compare(
    flow: Flow, condition: Task[Any, Any], value: object, tasks: Iterable[Task[Any, Any]] = ()
) -> CaseBlock:
    """Add a ``CompareValue`` of ``condition`` with ``value`` to ``flow``, and record its
    block (inside the innermost open block of ``flow``, if any) gating ``tasks``."""
    compare = CompareValue(value, name=f"case({value})")
    flow.add_task(compare)
    parent = next((b for b in reversed(active_cases.get()) if b.flow is flow), None)
    block = CaseBlock(flow, compare, condition, value, parent, dict.fromkeys(tasks))
    # Recorded before it is bound: the flow does not gate a block's own compare task (the
    # tasks it gates are gated by the enclosing blocks already).
    flow.add_case_block(block)
    flow._bind(compare, {"value": condition}, ())
    return block


class Merge(Task[..., Any]):
    """The task ``merge`` adds: returns its first input (``task1``, ``task2``, ... in
    order) that is not None, skipping ``SKIP`` results; ``Skipped`` when all are skipped.

    >>> Merge().run(task1=None, task2=2)
    2
    """

    def __init__(self, name: str | None = None, **options: Any) -> None:
        options.setdefault("skip_on_upstream_skip", False)
        options.setdefault("trigger", CaseGated(not_all_skipped))
        super().__init__(name if name is not None else "Merge", **options)

    def run(self, **task_results: Any) -> Any:
        """The first result, in argument order, that is not None (nor a ``SKIP``)."""
        ordered = sorted(task_results.items(), key=lambda kv: _key_order(kv[0]))
        return next(
            (v for _, v in ordered if v is not None and not isinstance(v, signals.SKIP)), None
        )


def _key_order(key: str) -> tuple[int, str]:
    digits = key.removeprefix("task")
    return (int(digits), key) if digits.isdigit() else (0, key)


@overload
def merge(a: A, /) -> A: ...
@overload
def merge(a: A, b: B, /) -> A | B: ...
@overload
def merge(a: A, b: B, c: C, /) -> A | B | C: ...
@overload
def merge(a: A, b: B, c: C, d: D, /) -> A | B | C | D: ...
@overload
def merge(a: A, b: B, c: C, d: D, e: E, /) -> A | B | C | D | E: ...
@overload
def merge(a: T, b: T, c: T, d: T, e: T, f: T, /, *more: T) -> T: ...
def merge(*tasks: Any) -> Any:
    """Join branches: a task whose result is that of the first of ``tasks`` that was not
    skipped (the first result that is not None, in argument order). When every branch was
    skipped it ends ``Skipped`` (a skipped terminal task counts as a success for the flow).
    For the type checker ``merge(a, b)`` reads as ``A | B``.

    >>> with Flow("f") as flow:                      # doctest: +SKIP
    ...     with case(cond, True):
    ...         a = left()
    ...     with case(cond, False):
    ...         b = right()
    ...     joined = merge(a, b)

    Raises:
        FlowDefinitionError: no task given, or outside ``with Flow(...)``.
    """
    flow = active_flow.get()
    if not tasks:
        where = f"Flow {flow.name!r}: " if flow is not None else ""
        raise FlowDefinitionError(f"{where}merge() needs at least one task to merge")
    if flow is None:
        raise FlowDefinitionError("merge(...) was called outside a flow; call it inside `with Flow(...)`")
    return Merge()(**{f"task{i}": t for i, t in enumerate(tasks, start=1)})


def switch(condition: T, cases: Mapping[T, object]) -> None:
    """Run at most one of several existing tasks: ``cases[v]`` runs only when
    ``condition``'s result equals ``v``; every other one (and what depends on it) ends
    ``Skipped``. A ``CompareValue`` task per entry gates its task (as ``case`` does).

    >>> with Flow("f") as flow:                      # doctest: +SKIP
    ...     kind = classify()
    ...     a, b, c = small(), medium(), large()
    ...     switch(kind, {"s": a, "m": b, "l": c})

    Raises:
        FlowDefinitionError: outside a flow, an empty ``cases``, or a condition or case
            task that is not a task of the flow (before anything runs).
    """
    flow = active_flow.get()
    if not isinstance(flow, Flow):
        raise FlowDefinitionError("switch(...) was called outside a flow; call it inside `with Flow(...)`")
    cond: object = condition
    if not isinstance(cond, Task) or cond not in flow.tasks:
        what = repr(cond.name) if isinstance(cond, Task) else f"{type(cond).__name__} {cond!r}"
        raise FlowDefinitionError(
            f"Flow {flow.name!r}: switch() needs a task of this flow as its condition, not {what}"
        )
    if not cases:
        raise FlowDefinitionError(
            f"Flow {flow.name!r}: switch({cond.name}, {{}}) has no cases; give a dict of "
            "value -> task"
        )
    for value, branch in cases.items():
        if not isinstance(branch, Task) or branch not in flow.tasks:
            what = repr(branch.name) if isinstance(branch, Task) else f"{type(branch).__name__} {branch!r}"
            raise FlowDefinitionError(
                f"Flow {flow.name!r}: switch() on {cond.name!r}: the case {value!r} must be a task "
                f"of this flow, not {what}"
            )
    for value, branch in cases.items():
        assert isinstance(branch, Task)
        block = _add_compare(flow, cond, value, [branch])
        flow.add_edge(block.compare, branch)


@task(name="as_bool")
def _as_bool(x: object) -> bool:
    return bool(x)


def ifelse(condition: object, true_task: object, false_task: object) -> None:
    """``true_task`` runs when ``bool(condition's result)`` is true, ``false_task`` when it
    is false; the other ends ``Skipped`` (a ``switch`` on an ``as_bool`` task). Either may
    be None for no branch.

    >>> with Flow("f") as flow:                      # doctest: +SKIP
    ...     ifelse(is_weekday(), go_to_work(), sleep_in())

    Raises:
        FlowDefinitionError: as ``switch``.
    """
    flow = active_flow.get()
    if not isinstance(flow, Flow):
        raise FlowDefinitionError("ifelse(...) was called outside a flow; call it inside `with Flow(...)`")
    branches = {v: t for v, t in ((True, true_task), (False, false_task)) if t is not None}
    if not isinstance(condition, Task) or condition not in flow.tasks:
        what = repr(condition.name) if isinstance(condition, Task) else f"{type(condition).__name__} {condition!r}"
        raise FlowDefinitionError(
            f"Flow {flow.name!r}: ifelse() needs a task of this flow as its condition, not {what}"
        )
    if branches:
        switch(_as_bool(condition), branches)


def _keep(result: object) -> bool:
    return result is not None and not isinstance(result, BaseException)


class FilterTask(Task[[list[Any]], list[Any]]):
    """Called on a mapped task's result, keeps the children's results that pass
    ``filter_func``; by default it drops those of failed children (their exceptions),
    skipped children and None. It runs whatever the children did (trigger
    ``all_finished``, ``skip_on_upstream_skip=False``).

    >>> FilterTask().run([1, None, ValueError("x"), 3])
    [1, 3]
    >>> FilterTask(filter_func=lambda r: r > 1).run([1, 2, 3])
    [2, 3]
    """

    def __init__(
        self, filter_func: Callable[[Any], bool] | None = None, name: str | None = None, **options: Any
    ) -> None:
        options.setdefault("skip_on_upstream_skip", False)
        options.setdefault("trigger", CaseGated(all_finished))
        super().__init__(name, **options)
        self.filter_func: Callable[[Any], bool] = filter_func if filter_func is not None else _keep

    def run(self, task_results: list[Any]) -> list[Any]:
        """The results that pass ``filter_func``."""
        return [r for r in task_results if self.filter_func(r)]
