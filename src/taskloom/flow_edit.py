"""Editing a flow's graph as a whole, Prefect 1.x style: ``chain``, ``copy``, ``replace``,
``update`` and ``validate``.

``Flow`` inherits these from ``FlowEditing``, a mixin that declares, as annotations, the
bookkeeping of ``Flow`` it reads and writes (its tasks, edges, each task's arguments and
mapped arguments, parameters by name, reference tasks and case blocks) and, for the type
checker only, the ``Flow`` methods it calls. It imports nothing from ``flow`` at run time
(``flow`` imports it).

Every edit keeps the bookkeeping consistent (what ``plan`` compiles): a task's arguments
and its keyed edges agree, each task's upstream and downstream edges are in the edge
tables (``edges.EdgeTable``: a task without any is not a key there, one without arguments
has no entry in ``_arguments``), and ``version`` changes so the compiled plan is rebuilt. ``validate`` checks exactly that, and
what a run would trip over (an argument its ``run`` does not take, or one it needs and
lacks)::

    flow.chain(extract, transform, load)        # extract -> transform -> load
    nightly = flow.copy()                       # an independent graph of the same tasks
    nightly.replace(extract, extract_yesterday) # its edges and arguments move to the new task
    nightly.validate()
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, cast

from .edges import Edge, EdgeTable, add_to_table, in_table
from .errors import CycleError, FlowDefinitionError
from .plan import plan
from .task import ParameterTask, Task, _tasks_in

if TYPE_CHECKING:
    from typing import Self

    from .flow import CaseBlock, Flow, ParameterSet

__all__ = ["FlowEditing"]


def _swapped(value: Any, old: Task[Any, Any], new: Task[Any, Any]) -> Any:
    """An argument with ``old`` replaced by ``new``, also inside collections (the ones
    ``_tasks_in`` looks into)."""
    if value is old:
        return new
    if isinstance(value, (list, tuple, set, frozenset)):
        return type(value)(_swapped(v, old, new) for v in value)
    if isinstance(value, dict):
        return {k: _swapped(v, old, new) for k, v in value.items()}
    return value


def _copied_table(table: EdgeTable) -> EdgeTable:
    """An edge table whose lists the original does not share (edges are immutable)."""
    return {t: had if isinstance(had, Edge) else list(had) for t, had in table.items()}


def _as_task(value: object, role: str) -> Task[Any, Any]:
    if not isinstance(value, Task):
        raise FlowDefinitionError(f"{role} must be a task, not {type(value).__name__} {value!r}")
    return value


def _unfilled(task: Task[Any, Any], given: Mapping[str, Any]) -> tuple[list[str], list[str]]:
    """The arguments ``task``'s ``run`` does not take, and those it needs and lacks."""
    try:
        parameters = task.signature().parameters
    except (TypeError, ValueError):  # a run() inspect cannot read: nothing to check
        return [], []
    open_ended = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    unknown = [] if open_ended else [k for k in given if k not in parameters]
    needed = [
        name
        for name, p in parameters.items()
        if p.default is inspect.Parameter.empty
        and p.kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        and name not in given
    ]
    return unknown, needed


class FlowEditing:
    """The graph edits of ``Flow`` (see the module docstring)."""

    if TYPE_CHECKING:
        name: str
        version: int
        _tasks: dict[Task[Any, Any], None]
        _edges: dict[Edge, None]
        _upstream: EdgeTable
        _downstream: EdgeTable
        _terminal: tuple[int, list[Task[Any, Any]]] | None
        _arguments: dict[Task[Any, Any], dict[str, Any]]
        _mapped: dict[Task[Any, Any], dict[str, bool]]
        _parameters: dict[str, ParameterTask]
        _reference_tasks: dict[Task[Any, Any], None]
        _cases: dict[Task[Any, Any], CaseBlock]
        _tokens: list[Any]
        _own_slugs: dict[str, Task[Any, Any]]
        _numbered: dict[str, list[Task[Any, Any] | None]]
        _slug_index: tuple[int, dict[Task[Any, Any], str]] | None
        state_handlers: list[Any]

        def _swap_slug(self, old: Task[Any, Any], new: Task[Any, Any]) -> None: ...

        def add_task(self, task: object) -> Task[Any, Any]: ...

        def add_edge(
            self,
            upstream: object,
            downstream: object,
            key: str | None = None,
            mapped: bool = False,
            flattened: bool = False,
        ) -> Edge: ...

        def _add_edge(
            self,
            up: Task[Any, Any],
            down: Task[Any, Any],
            key: str | None,
            mapped: bool = False,
            flattened: bool = False,
        ) -> Edge: ...

        def _registered(self) -> None: ...

        def parameters(self) -> ParameterSet: ...

        def reference_tasks(self) -> list[Task[Any, Any]]: ...

        def set_reference_tasks(self, tasks: Iterable[object]) -> None: ...

        def case_blocks(self) -> list[CaseBlock]: ...

    def chain(self, *tasks: object) -> list[Edge]:
        """Make each task depend on the one before it (ordering edges); return the edges.

        >>> flow.chain(extract, transform, load)     # doctest: +SKIP
        [Edge('extract' -> 'transform'), Edge('transform' -> 'load')]
        """
        return [self.add_edge(up, down) for up, down in zip(tasks, tasks[1:])]

    def copy(self) -> Self:
        """A copy of the flow with its own graph: tasks, edges, arguments, parameters,
        reference tasks and case blocks can change in either without the other seeing it.
        The tasks themselves, the executor and the handlers are shared (as in Prefect)."""
        new = copy.copy(self)
        new._tasks = dict(self._tasks)
        new._edges = dict(self._edges)
        new._upstream = _copied_table(self._upstream)
        new._downstream = _copied_table(self._downstream)
        new._arguments = {t: dict(arguments) for t, arguments in self._arguments.items()}
        new._mapped = {t: dict(spec) for t, spec in self._mapped.items()}
        new._parameters = dict(self._parameters)
        new._own_slugs = dict(self._own_slugs)
        new._numbered = {prefix: list(numbered) for prefix, numbered in self._numbered.items()}
        new._slug_index = None
        new._terminal = None
        new._reference_tasks = dict(self._reference_tasks)
        new._tokens = []
        new._registered()
        new.state_handlers = list(self.state_handlers)
        new._cases = {}
        new._adopt_cases(self.case_blocks())
        return new

    def _adopt_cases(self, blocks: Iterable[CaseBlock]) -> None:
        """Copies of another flow's case blocks (parents before children), as this flow's."""
        copies: dict[int, CaseBlock] = {}
        for block in blocks:
            if block.compare in self._cases:
                copies[id(block)] = self._cases[block.compare]
                continue
            parent = copies.get(id(block.parent)) if block.parent is not None else None
            mine = dataclasses.replace(block, flow=self, parent=parent, tasks=dict(block.tasks))
            copies[id(block)] = self._cases[block.compare] = mine

    def replace(self, old: object, new: object, validate: bool = True) -> None:
        """Put ``new`` in the place of ``old``: every edge of ``old`` becomes one of ``new``
        (same key, same mapping), and so do its arguments, the arguments of downstream
        tasks that received it, its place among the reference tasks and in case blocks.
        With ``validate`` (the default), ``validate()`` runs afterwards.

        Raises:
            FlowDefinitionError: ``old`` is not in the flow; ``new`` is in it already, is
                not a task, does not take an argument ``old`` was given, or is a parameter
                that would get upstream tasks or shares its name with another parameter.
        """
        o = _as_task(old, f"Flow {self.name!r}: replace's old task")
        n = _as_task(new, f"Flow {self.name!r}: replace's new task")
        if o not in self._tasks:
            raise FlowDefinitionError(f"Flow {self.name!r}: task {o.name!r} is not in the flow")
        if n is o:
            return
        if n in self._tasks:
            raise FlowDefinitionError(
                f"Flow {self.name!r}: cannot replace {o.name!r} with {n.name!r}, which is "
                "already in the flow; replace puts a task that is not in the flow in the "
                "place of one that is"
            )
        self._check_replacement(o, n)
        self._swap_slug(o, n)  # before any change: raises if n's slug is taken
        self._tasks = {(n if t is o else t): None for t in self._tasks}
        self._edges = {self._moved(e, o, n): None for e in self._edges}
        self._upstream = {}
        self._downstream = {}
        for edge in self._edges:
            add_to_table(self._upstream, edge.downstream_task, edge)
            add_to_table(self._downstream, edge.upstream_task, edge)
        arguments = self._arguments.pop(o, None)
        if arguments is not None:
            self._arguments[n] = arguments
        for down in in_table(self._downstream, n):
            task = down.downstream_task
            given = self._arguments.get(task)
            if given is not None:
                self._arguments[task] = {k: _swapped(v, o, n) for k, v in given.items()}
        if o in self._mapped:
            self._mapped[n] = self._mapped.pop(o)
        if isinstance(o, ParameterTask):
            del self._parameters[o.name]
        if isinstance(n, ParameterTask):
            self._parameters[n.name] = n
        self._reference_tasks = {(n if t is o else t): None for t in self._reference_tasks}
        for block in self._cases.values():
            block.tasks = {(n if t is o else t): None for t in block.tasks}
            block.compare = n if block.compare is o else block.compare
            block.condition = n if block.condition is o else block.condition
        self._cases = {(n if t is o else t): block for t, block in self._cases.items()}
        self.version += 1
        if validate:
            self.validate()

    def _check_replacement(self, old: Task[Any, Any], new: Task[Any, Any]) -> None:
        where = f"Flow {self.name!r}: replacing {old.name!r} with {new.name!r}"
        if isinstance(new, ParameterTask):
            if old in self._upstream:
                raise FlowDefinitionError(
                    f"{where}: a Parameter has no upstream tasks, and {old.name!r} has some"
                )
            other = self._parameters.get(new.name)
            if other is not None and other is not old:
                raise FlowDefinitionError(
                    f"{where}: the flow already has a parameter named {new.name!r}"
                )
        unknown, _ = _unfilled(new, self._arguments.get(old, {}))
        if unknown:
            raise FlowDefinitionError(
                f"{where}: {new.name!r} takes no argument(s) {', '.join(unknown)}, which "
                f"{old.name!r} was given"
            )

    @staticmethod
    def _moved(edge: Edge, old: Task[Any, Any], new: Task[Any, Any]) -> Edge:
        if edge.upstream_task is not old and edge.downstream_task is not old:
            return edge
        return dataclasses.replace(
            edge,
            upstream_task=new if edge.upstream_task is old else edge.upstream_task,
            downstream_task=new if edge.downstream_task is old else edge.downstream_task,
        )

    def update(
        self,
        other: Flow,
        merge_parameters: bool = False,
        merge_reference_tasks: bool = False,
    ) -> None:
        """Add every task and edge of ``other`` to this flow, with the arguments each task
        was given there, its case blocks and mapped tasks.

        Args:
            other: the flow whose graph joins this one (it is not changed).
            merge_parameters: a parameter of this flow that shares its name with one of
                ``other`` is replaced by ``other``'s (``replace``); without it, such a pair
                is an error.
            merge_reference_tasks: this flow's reference tasks become the union of both
                flows' (each flow's default: its terminal tasks).

        Raises:
            FlowDefinitionError: two parameters share a name (without ``merge_parameters``);
                a task has different values for one argument in the two flows; an edge of
                ``other`` closes a cycle here (``CycleError``: the tasks and edges added
                before it stay).
        """
        if not isinstance(other, FlowEditing):
            raise FlowDefinitionError(
                f"Flow {self.name!r}: update() needs a Flow, not {type(other).__name__} {other!r}"
            )
        theirs = other._parameters
        clashes = [
            (mine, theirs[name])
            for name, mine in self._parameters.items()
            if name in theirs and theirs[name] is not mine
        ]
        if clashes and not merge_parameters:
            raise FlowDefinitionError(
                f"Flow {self.name!r}: update() with flow {other.name!r}: both have a "
                f"parameter named {', '.join(sorted(repr(m.name) for m, _ in clashes))}; pass "
                "merge_parameters=True to use the other flow's"
            )
        for t, given in other._arguments.items():
            mine_given = self._arguments.get(t, {})
            for key in mine_given.keys() & given.keys():
                if mine_given[key] is not given[key]:
                    raise FlowDefinitionError(
                        f"Flow {self.name!r}: update() with flow {other.name!r}: task "
                        f"{t.name!r} has different values for argument {key!r} in the two flows"
                    )
        for mine, new in clashes:
            self.replace(mine, new, validate=False)
        references = other.reference_tasks()
        for t in other._tasks:
            self.add_task(t)
            theirs_given = other._arguments.get(t)
            if theirs_given:
                self._arguments.setdefault(t, {}).update(theirs_given)
        for t, spec in other._mapped.items():
            self._mapped.setdefault(t, {}).update(spec)
        self.version += 1
        for edge in other._edges:
            self._add_edge(
                edge.upstream_task, edge.downstream_task, edge.key, edge.mapped, edge.flattened
            )
        self._adopt_cases(other.case_blocks())
        if merge_reference_tasks:
            self.set_reference_tasks([*self.reference_tasks(), *references])

    def validate(self) -> None:
        """Check that the flow is consistent and each task can be called as wired.

        Raises:
            CycleError: the graph has a cycle (naming the tasks on it).
            FlowDefinitionError: listing every problem found, one a line: an edge or
                argument naming a task that is not in the flow, a reference task not in the
                flow, an argument a task's ``run`` does not take, or one it needs that
                nothing gives (no edge, no constant).
        """
        problems: list[str] = []
        for edge in self._edges:
            for t in (edge.upstream_task, edge.downstream_task):
                if t not in self._tasks:
                    problems.append(f"edge {edge!r}: task {t.name!r} is not in the flow")
        for t in self._reference_tasks:
            if t not in self._tasks:
                problems.append(f"reference task {t.name!r} is not in the flow")
        for t in self._tasks:
            given = self._arguments.get(t, {})
            for key, value in given.items():
                for up in _tasks_in(value):
                    if up not in self._tasks:
                        problems.append(
                            f"task {t.name!r}: argument {key!r} is task {up.name!r}, which is "
                            "not in the flow"
                        )
            unknown, needed = _unfilled(t, given)
            if unknown:
                problems.append(f"task {t.name!r} takes no argument(s) {', '.join(unknown)}")
            if needed:
                problems.append(
                    f"task {t.name!r} needs argument(s) {', '.join(needed)}, which nothing "
                    "gives it (no edge with that key, no constant)"
                )
        if problems:
            raise FlowDefinitionError(
                f"Flow {self.name!r} is not valid:\n" + "\n".join(f"  - {p}" for p in problems)
            )
        compiled = plan(cast("Flow", self))
        ordered = compiled.order()
        if len(ordered) < len(compiled.nodes):
            left = set(range(len(compiled.nodes))) - set(ordered)
            names = ", ".join(sorted(compiled.nodes[i].task.name for i in left))
            raise CycleError(f"Flow {self.name!r} has a cycle among the tasks: {names}")
