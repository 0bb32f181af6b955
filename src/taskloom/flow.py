"""Flows: tasks and the dependencies between them.

::

    with Flow("etl") as flow:
        n = Parameter("n", default=3)
        numbers = extract(n)
        total = load(transform(numbers))

    state = flow.run(n=5)               # or flow.run(parameters={"n": 5})
    state.result[total].result

The same flow built imperatively, Prefect 1.x style (``taskloom.flow_edit`` holds the graph
edits: ``chain``, ``copy``, ``replace``, ``update``, ``validate``)::

    flow = Flow("etl", executor=LokyExecutor(max_workers=2))
    n = Parameter("n", default=3)
    extract.bind(n, flow=flow)
    transform.set_upstream(extract, key="numbers", flow=flow)
    load.set_upstream(transform, key="rows", flow=flow)

A flow only describes work; ``flow.run`` hands it to the scheduler (``taskloom.runner``).
Every method that takes a task also takes a handle (what a call inside ``with Flow`` returns),
which is why their parameters are typed ``object`` and checked at run time.

``FlowResult``, what a run's state carries (every task's final state, by task), lives here
because it is keyed by task: ``states`` stays a leaf that knows no task.

Layers: this module is a definition, below the engine and the displays. ``Flow.run`` (a
façade over ``taskloom.runner``, as in Prefect) and ``Flow.visualize`` (over
``taskloom.visualize``) are two of the package's three sanctioned upward calls (the third
is the scheduler's progress display): each imports its module when called, never at
import time (``tests/test_layers.py`` names them). Do not add another here.
"""

from __future__ import annotations

import inspect
import logging
import weakref
from collections.abc import Iterable, KeysView, Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from os import PathLike
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from .edges import Edge, EdgeTable, Flattened, Unmapped, add_to_table, in_table
from .errors import CycleError, FlowDefinitionError
from .flow_edit import FlowEditing
from .handlers import OnFailure, StateHandler, TerminalStateHandler, check_handlers
from .logging import flow_logger
from .plan import plan
from .schedules import Schedule, check_schedule
from .schedules import run_on_schedule as _run_on_schedule  # `run`'s keyword has its name
from .states import State
from .task import (
    ParameterTask, Task, _FlowBuilder, _is_result, _nonempty_name, _tasks_in, active_flow,
    flow_block_closed, flow_block_opened, not_initialised,
)

if TYPE_CHECKING:
    from .caching import CacheStore
    from .executors.base import Executor
    from .journal import Journal, RunRecord
    from .progress import RunObserver
    from .results import Result, ResultBase

__all__ = ["CaseBlock", "Flow", "FlowResult", "ParameterSet", "active_cases"]

T = TypeVar("T")
D = TypeVar("D")


def _as_task(value: object, role: str) -> Task[Any, Any]:
    if not isinstance(value, Task):
        raise FlowDefinitionError(f"{role} must be a task, not {type(value).__name__} {value!r}")
    return value


#: Every flow alive. A task given arguments in one (``flow.arguments(t)``) and brought
#: into another by an edge would run there without them (issue 18): ``_check_edge`` looks
#: for such a flow, only for a task that is new to the flow it joins (rare: a call's own
#: copy is new, but it brings its arguments), so building pays nothing per call.
_flows: weakref.WeakSet[Flow] = weakref.WeakSet()

#: What ``arguments`` gives for a task called with none (read-only: it is shared).
_NO_ARGUMENTS: Mapping[str, Any] = MappingProxyType({})


@dataclass(eq=False)
class CaseBlock:
    """One ``with case(condition, value):`` block of a flow (``taskloom.tasks.control_flow``),
    or one branch of a ``switch``/``ifelse``: the tasks it gates run only when
    ``condition``'s result equals ``value``.

    ``compare`` is the ``CompareValue`` task that compares them (it ends ``Skipped`` on a
    mismatch); every task in ``tasks`` has an ordering edge from it. ``parent`` is the
    enclosing block of the same flow, for nested cases. ``flow.case_blocks()`` lists them::

        with Flow("f") as flow:
            with case(cond, True):
                a = work()
        [block] = flow.case_blocks()    # block.tasks == {a: None}
    """

    flow: object
    compare: Task[Any, Any]
    condition: Task[Any, Any]
    value: Any
    parent: CaseBlock | None = None
    #: The tasks gated, in the order they were added (a dict as an ordered set).
    tasks: dict[Task[Any, Any], None] = field(default_factory=dict)


#: The ``with case(...)`` blocks open now, innermost last. ``Flow._bind`` gates every task
#: it adds by the compare task of each open block of that flow.
active_cases: ContextVar[tuple[CaseBlock, ...]] = ContextVar("taskloom.active_cases", default=())


class Flow(FlowEditing):
    """A named graph of tasks.

    Args:
        name: the flow's name; also part of the default cache key of its tasks.
        executor: where ``flow.run()`` runs tasks when it is not given one (the
            ``executor`` attribute, which may also be set later); None: ``LocalExecutor()``.
        tasks: tasks to add at once.
        edges: edges to add (``Edge(upstream, downstream, key=...)``), after ``tasks``.
        reference_tasks: the tasks whose states decide the flow's state (default: the
            terminal tasks); see ``set_reference_tasks``.
        state_handlers: callables ``fn(flow, old_state, new_state)`` called, in the calling
            process, when the run starts (``Scheduled`` -> ``Running``) and ends
            (``Running`` -> its final state); one may return a replacement for the final
            state (a replacement of ``Running`` is ignored).
        on_failure: ``fn(flow, state)``, called once when a run ends failed.
        terminal_state_handler: ``fn(flow, state, reference_task_states)``, which may
            return a replacement for the final state before the state handlers see it.
        schedule: when ``flow.run()`` runs the flow (``taskloom.schedules``): at each due
            time, until the schedule ends or Ctrl-C; ``None`` (default): once, at once.
        result: where its tasks persist their results when they have no ``result=`` of
            their own (``taskloom.results``): every task of the flow then writes its
            successful result (unless ``checkpoint=False``).

    Raises:
        FlowDefinitionError: for a handler that is not callable or cannot take its
            arguments, naming the flow and the handler; an executor that is not one; an
            edge or reference task that cannot be added (see ``add_edge``).
        ScheduleError: for a ``schedule`` that is not one (it has no ``next``).

    Built imperatively, as Prefect 1.x flows often are::

        flow = Flow("etl", executor=LokyExecutor(max_workers=2),
                    tasks=[extract, load], edges=[Edge(extract, load, key="rows")])
    """

    def __init__(
        self,
        name: str,
        *,
        executor: Executor | None = None,
        tasks: Iterable[object] = (),
        edges: Iterable[Edge] = (),
        reference_tasks: Iterable[object] = (),
        state_handlers: Iterable[StateHandler] | None = None,
        on_failure: OnFailure | None = None,
        terminal_state_handler: TerminalStateHandler | None = None,
        schedule: Schedule | None = None,
        result: Result | ResultBase | None = None,
    ) -> None:
        self.name = _nonempty_name(name, "Flow")
        self.schedule: Schedule | None = (
            None if schedule is None else check_schedule(schedule, f"Flow {self.name!r}")
        )
        if result is not None and not _is_result(result):
            raise FlowDefinitionError(
                f"Flow {self.name!r}: result must be a Result (exists, read, write and "
                f"location), e.g. taskloom.results.LocalResult(dir=...), not {result!r}"
            )
        #: The default ``result=`` of its tasks (``taskloom.results``).
        self.result: Result | ResultBase | None = result
        self.state_handlers: list[StateHandler] = check_handlers(
            f"Flow {self.name!r}", FlowDefinitionError, state_handlers, on_failure,
            terminal_state_handler,
        )
        self.on_failure: OnFailure | None = on_failure
        self.terminal_state_handler: TerminalStateHandler | None = terminal_state_handler
        # Dicts as ordered sets: iteration follows insertion, so runs are reproducible.
        self._tasks: dict[Task[Any, Any], None] = {}
        self._edges: dict[Edge, None] = {}
        # A flow may hold a million tasks, most with one edge and no arguments: only a task
        # that has some is a key here (``EdgeTable``), so a task costs no empty containers.
        self._upstream: EdgeTable = {}
        self._downstream: EdgeTable = {}
        self._arguments: dict[Task[Any, Any], dict[str, Any]] = {}
        #: Mapped tasks: each mapped argument's key, and whether it is flattened.
        self._mapped: dict[Task[Any, Any], dict[str, bool]] = {}
        self._parameters: dict[str, ParameterTask] = {}
        #: The slugs (``slugs``), kept without a string per task: the tasks with a slug of
        #: their own, by slug, and for each generated prefix (``<name>-<sorted tags>``)
        #: the task given each number (``numbered[prefix][n - 1]``: ``<prefix>-<n>``; None
        #: where the number went to no task, or to one no longer in the flow).
        self._own_slugs: dict[str, Task[Any, Any]] = {}
        self._numbered: dict[str, list[Task[Any, Any] | None]] = {}
        self._slug_index: tuple[int, dict[Task[Any, Any], str]] | None = None
        #: ``terminal_tasks``, with the version they were found at.
        self._terminal: tuple[int, list[Task[Any, Any]]] | None = None
        self._reference_tasks: dict[Task[Any, Any], None] = {}
        self._tokens: list[Token[_FlowBuilder | None]] = []
        #: The case blocks (``taskloom.tasks.control_flow``), by compare task.
        self._cases: dict[Task[Any, Any], CaseBlock] = {}
        #: Bumped by every change to the graph, so its compiled plan (``taskloom.plan``) is
        #: reused until it changes.
        self.version = 0
        #: Where the flow can be loaded from again (``path/to/file.py:name`` or
        #: ``package.module:name``), recorded in the run journal for ``taskloom resume``.
        #: The command line sets it; a library user may too.
        self.source: str | None = None
        _flows.add(self)
        self.executor = executor
        for t in tasks:
            self.add_task(t)
        for edge in edges:
            if not isinstance(edge, Edge):
                raise FlowDefinitionError(
                    f"Flow {self.name!r}: edges must hold Edge objects, not "
                    f"{type(edge).__name__} {edge!r}"
                )
            self.add_edge(
                edge.upstream_task, edge.downstream_task, edge.key, edge.mapped, edge.flattened
            )
        if reference_tasks:
            self.set_reference_tasks(reference_tasks)

    @property
    def executor(self) -> Executor | None:
        """Where ``flow.run()`` runs tasks when it is not given an executor (None:
        ``LocalExecutor()``, in this process). Settable, as in Prefect 1.x::

            flow.executor = LokyExecutor(max_workers=2)
            flow.run()                      # tasks run in the loky workers
        """
        return self._executor

    @executor.setter
    def executor(self, value: Executor | None) -> None:
        # Checked here, not when a run starts, so the line that set it is the one named.
        if value is not None and not callable(getattr(value, "begin", None)):
            raise FlowDefinitionError(
                f"Flow {self.name!r}: executor must be a taskloom executor (LocalExecutor(), "
                f"LokyExecutor(...), DaskExecutor(...), from taskloom.executors) or None, "
                f"not {type(value).__name__} {value!r}"
            )
        self._executor = value

    @property
    def logger(self) -> logging.Logger:
        """The flow's logger, ``taskloom.flow.<name>`` (``taskloom.logging``); during a run
        outside any task, ``taskloom.context.logger`` is the same."""
        return flow_logger(self.name)

    # -- building -------------------------------------------------------------------------

    def __enter__(self) -> Flow:
        self._tokens.append(active_flow.set(self))
        flow_block_opened()  # a task's unknown attribute explains handles, until __exit__
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        active_flow.reset(self._tokens.pop())
        flow_block_closed()

    def add_task(self, task: object) -> Task[Any, Any]:
        """Add a task (if it is not in the flow yet) and return it."""
        t = _as_task(task, f"Flow {self.name!r}: add_task's argument")
        if t in self._tasks:
            return t
        if "name" not in t.__dict__:  # (its __init__ never ran Task's: every read would fail)
            raise not_initialised(t)
        if isinstance(t, ParameterTask):
            other = self._parameters.get(t.name)
            if other is not None and other is not t:
                raise FlowDefinitionError(
                    f"Flow {self.name!r} already has a parameter named {t.name!r}; "
                    "parameter names must be unique"
                )
            self._parameters[t.name] = t
        self._add_slug(t)
        self.version += 1
        self._tasks[t] = None
        return t

    def _add_slug(self, task: Task[Any, Any]) -> None:
        """Give ``task`` its slug in this flow: its own, which must be unique here, or
        ``<name>-<sorted tags>-<n>`` (Prefect's), the next number of that prefix that is no
        task's own slug. (Two generated slugs never collide: ``<n>`` is digits, so the last
        ``-`` of a generated slug tells its prefix.)"""
        slug = task.__dict__.get("slug")
        if slug is not None:
            if slug in self._own_slugs or self._numbered_task(slug) is not None:
                raise FlowDefinitionError(
                    f"Flow {self.name!r}: task {task.name!r} has the slug {slug!r}, which "
                    "another task of the flow has; slugs must be unique within a flow "
                    "(a task called in a flow is a copy, with the slug '<slug>-copy')"
                )
            self._own_slugs[slug] = task
            return
        prefix = "-".join([task.name, *sorted(task.tags)]) if task.tags else task.name
        numbered = self._numbered.get(prefix)
        if numbered is None:
            numbered = self._numbered[prefix] = []
        while f"{prefix}-{len(numbered) + 1}" in self._own_slugs:
            numbered.append(None)
        numbered.append(task)

    def _numbered_task(self, slug: str) -> Task[Any, Any] | None:
        """The task whose generated slug is ``slug``, if any."""
        prefix, _, number = slug.rpartition("-")
        numbered = self._numbered.get(prefix)
        if numbered is None or not (number.isascii() and number.isdigit()):
            return None
        n = int(number)
        if str(n) != number or not 1 <= n <= len(numbered):
            return None
        return numbered[n - 1]

    def _swap_slug(self, old: Task[Any, Any], new: Task[Any, Any]) -> None:
        """``new`` takes ``old``'s place among the slugs (``flow.replace``); ``old``'s slug
        stays if ``new``'s is taken."""
        slug = self.slugs[old]
        if self._own_slugs.get(slug) is old:
            del self._own_slugs[slug]
            try:
                self._add_slug(new)
            except FlowDefinitionError:
                self._own_slugs[slug] = old
                raise
            return
        numbered = self._numbered[slug.rpartition("-")[0]]
        n = numbered.index(old)
        numbered[n] = None
        try:
            self._add_slug(new)
        except FlowDefinitionError:
            numbered[n] = old
            raise

    @property
    def slugs(self) -> Mapping[Task[Any, Any], str]:
        """Every task's slug, its id in this flow: its own ``slug``, or one the flow made,
        ``<name>-<sorted tags>-<n>`` (as in Prefect).

        Made when asked (and kept until the flow changes): a flow stores no slug string
        for a task whose slug it generated."""
        index = self._slug_index
        if index is not None and index[0] == self.version:
            return index[1]
        found = {t: slug for slug, t in self._own_slugs.items()}
        for prefix, numbered in self._numbered.items():
            for n, t in enumerate(numbered, 1):
                if t is not None:
                    found[t] = f"{prefix}-{n}"
        slugs = {t: found[t] for t in self._tasks}
        self._slug_index = (self.version, slugs)
        return slugs

    def add_edge(
        self,
        upstream: object,
        downstream: object,
        key: str | None = None,
        mapped: bool = False,
        flattened: bool = False,
    ) -> Edge:
        """Make ``downstream`` depend on ``upstream``; with ``key``, receive its result as that argument.

        With ``mapped``, ``downstream`` is mapped over the upstream result (one child per
        element, as ``t.map`` does); with ``flattened`` too, over a list of lists as one list.

        Raises:
            CycleError: the edge would close a cycle (the message lists the tasks on it),
                or joins a task to itself.
            FlowDefinitionError: ``key`` is not a parameter of ``downstream``, is taken, or is
                not an identifier; ``downstream`` is a ``Parameter`` (it has no upstream
                tasks); a task called in another flow (with its arguments there) would join
                this one without them; ``flattened`` without ``mapped``.
        """
        up = _as_task(upstream, f"Flow {self.name!r}: add_edge's upstream")
        down = _as_task(downstream, f"Flow {self.name!r}: add_edge's downstream")
        if flattened and not mapped:
            raise FlowDefinitionError(
                f"Flow {self.name!r}: edge {up.name!r} -> {down.name!r} is flattened but not "
                "mapped; flattening only means something for a mapped edge (mapped=True)"
            )
        if key is not None:
            self._check_key(down, key)
            if key in self._arguments.get(down, {}):
                raise FlowDefinitionError(
                    f"Flow {self.name!r}: task {down.name!r} already has an argument {key!r}"
                )
        edge = self._add_edge(up, down, key, mapped, flattened)
        if mapped:
            self.version += 1
            spec = self._mapped.setdefault(down, {})
            if key is not None:
                spec[key] = flattened
        if key is not None:
            self.version += 1
            self._arguments.setdefault(down, {})[key] = up
        return edge

    def _add_edge(
        self,
        up: Task[Any, Any],
        down: Task[Any, Any],
        key: str | None,
        mapped: bool = False,
        flattened: bool = False,
        checked: bool = False,
    ) -> Edge:
        """Add the edge (``checked``: ``_check_edge`` passed already)."""
        edge = Edge(up, down, key, mapped, flattened)  # checks the key, and up is not down
        if edge in self._edges:
            return edge
        if not checked:
            self._check_edge(up, down)
        self.add_task(up)
        self.add_task(down)
        self._check_acyclic(up, down)
        self.version += 1
        self._edges[edge] = None
        add_to_table(self._upstream, down, edge)
        add_to_table(self._downstream, up, edge)
        return edge

    def _check_edge(self, up: Task[Any, Any], down: Task[Any, Any], binding: bool = False) -> None:
        """What an edge ``up -> down`` must satisfy besides being acyclic: a Parameter has no
        upstream tasks, and a task called in another flow does not join this one without
        the arguments it was given there (``binding``: ``down`` is being given its own)."""
        if up is down:
            raise CycleError(f"Flow {self.name!r}: task {up.name!r} cannot depend on itself")
        if isinstance(down, ParameterTask):
            raise FlowDefinitionError(
                f"Flow {self.name!r}: parameter {down.name!r} cannot depend on task "
                f"{up.name!r}: a Parameter takes its value from flow.run and has no upstream "
                "tasks (make the task depend on the parameter instead)"
            )
        for t in (up,) if binding else (up, down):
            if t not in self._tasks:
                self._check_not_bound_elsewhere(t, up, down)

    def _check_not_bound_elsewhere(
        self, task: Task[Any, Any], up: Task[Any, Any], down: Task[Any, Any]
    ) -> None:
        other = next((f.name for f in _flows if f is not self and f._arguments.get(task)), None)
        if other is None:
            return
        raise FlowDefinitionError(
            f"Flow {self.name!r}: the edge {up.name!r} -> {down.name!r} would bring in task "
            f"{task.name!r}, which was called in flow {other!r}: its arguments were given "
            f"there, so in flow {self.name!r} it would run without them. Call the task inside "
            f"`with Flow({self.name!r})` (or bind it with flow=...), or bring flow {other!r}'s "
            f"tasks in with their arguments: flow.update(other_flow)"
        )

    def _check_key(self, task: Task[Any, Any], key: str) -> None:
        parameters = task.signature().parameters
        if key in parameters or any(
            p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()
        ):
            return
        raise FlowDefinitionError(
            f"Flow {self.name!r}: task {task.name!r} has no argument {key!r} "
            f"(it takes {', '.join(parameters) or 'none'})"
        )

    def _check_acyclic(self, up: Task[Any, Any], down: Task[Any, Any]) -> None:
        if up is down:
            raise CycleError(f"Flow {self.name!r}: task {up.name!r} cannot depend on itself")
        # The common case, a freshly called task or a root, cannot close a cycle.
        downstream = self._downstream
        if down not in downstream or up not in self._upstream:
            return
        # Is `up` reachable from `down`? Then up -> down closes a cycle.
        parents: dict[Task[Any, Any], Task[Any, Any] | None] = {down: None}
        stack = [down]
        while stack:
            node = stack.pop()
            for edge in in_table(downstream, node):
                nxt = edge.downstream_task
                if nxt in parents:
                    continue
                parents[nxt] = node
                if nxt is up:
                    path: list[Task[Any, Any]] = []
                    at: Task[Any, Any] | None = up
                    while at is not None:
                        path.append(at)
                        at = parents[at]
                    names = " -> ".join(t.name for t in reversed(path))
                    raise CycleError(
                        f"Flow {self.name!r}: the edge {up.name!r} -> {down.name!r} would "
                        f"close a cycle: {names} -> {down.name}"
                    )
                stack.append(nxt)

    def set_dependencies(
        self,
        task: object,
        upstream_tasks: Iterable[object] | None = (),
        downstream_tasks: Iterable[object] | None = (),
        keyword_tasks: Mapping[str, object] | None = None,
        mapped: bool = False,
    ) -> None:
        """Add ``task`` with ordering edges from ``upstream_tasks`` and to ``downstream_tasks``,
        and its arguments from ``keyword_tasks`` (argument name -> a task, whose result it
        receives, or a constant).

        With ``mapped``, ``task`` is mapped over its upstream and keyword tasks (each not
        wrapped in ``unmapped(...)``), as ``t.map`` does.

        Raises:
            FlowDefinitionError: a keyword that is not an argument of ``task``'s ``run``, or
                one it already has; an edge ``add_edge`` refuses.
        """
        t = _as_task(task, f"Flow {self.name!r}: set_dependencies' task")
        arguments = dict(keyword_tasks or {})
        for key in arguments:
            self._check_key(t, key)
        downs = [_as_task(d, f"{t.name!r}: a downstream task") for d in downstream_tasks or ()]
        for down in downs:  # before anything changes, as _bind_arguments checks its own
            self._check_edge(t, down)
        self._bind_arguments(t, arguments, upstream_tasks or (), mapped)
        for down in downs:
            self._add_edge(t, down, None, checked=True)

    def _bind(
        self,
        task: Task[Any, Any],
        arguments: Mapping[str, Any],
        upstream_tasks: Iterable[object],
        mapped: bool = False,
    ) -> None:
        """Add a called task: each argument is a task (data edge), a constant, or a
        collection holding tasks (an edge from each, the collection rebuilt at run time).

        With ``mapped`` (``t.map(...)``) every argument and upstream task is mapped over,
        unless wrapped in ``unmapped(...)``; ``flatten(...)`` maps over a list of lists.
        The task is gated by the open ``case`` blocks of this flow."""
        self._bind_arguments(task, arguments, upstream_tasks, mapped)
        self._gate(task)

    def _registered(self) -> None:
        """Count this flow among the flows alive (``copy`` makes one without ``__init__``)."""
        _flows.add(self)

    def _bind_arguments(
        self,
        task: Task[Any, Any],
        arguments: Mapping[str, Any],
        upstream_tasks: Iterable[object],
        mapped: bool = False,
    ) -> None:
        """``_bind`` without the case gating: what ``set_dependencies`` does too."""
        taken = self._arguments.get(task)
        if taken and not taken.keys().isdisjoint(arguments):
            twice = ", ".join(sorted(taken.keys() & arguments.keys()))
            raise FlowDefinitionError(
                f"Flow {self.name!r}: task {task.name!r} already has argument(s) {twice} in "
                "this flow; to use the task again with other arguments, call it (each call "
                "adds a copy) instead of binding it a second time"
            )
        values: dict[str, Any] = {}
        spec: dict[str, bool] = {}
        for key, value in arguments.items():
            if isinstance(value, (Unmapped, Flattened)) and not mapped:
                word = "unmapped" if isinstance(value, Unmapped) else "flatten"
                raise FlowDefinitionError(
                    f"Flow {self.name!r}: task {task.name!r} got {word}(...) as argument "
                    f"{key!r} in a plain call; {word} only means something in a .map(...) call "
                    f"({task.name}.map(...))"
                )
            if isinstance(value, Unmapped):
                value = value.value
            elif mapped:
                flattened = isinstance(value, Flattened)
                if flattened:
                    value = value.value
                spec[key] = flattened
            values[key] = value
        upstream_tasks = list(upstream_tasks)
        if mapped and not spec and all(isinstance(e, Unmapped) for e in upstream_tasks):
            raise FlowDefinitionError(
                f"Flow {self.name!r}: {task.name}.map(...) has nothing to map over: every "
                "argument is unmapped(...); pass at least one iterable (or call the task plainly)"
            )
        # Every edge into the task, checked before anything changes: a refused edge leaves
        # the flow as it was (a cycle is still found only as its edge is added). A task
        # given arguments here may have been given others in another flow.
        wiring: list[tuple[Task[Any, Any], str | None, bool, bool]] = []
        for key, value in values.items():
            direct = isinstance(value, Task)
            for up in _tasks_in(value):
                # Tasks nested in a collection feed it whole; the rebuilt collection is
                # what is mapped over.
                wiring.append((up, key, direct and key in spec, direct and spec.get(key, False)))
        for entry in upstream_tasks:
            order_mapped = mapped and not isinstance(entry, Unmapped)
            if isinstance(entry, Unmapped):
                entry = entry.value
            up = _as_task(entry, f"{task.name!r}: an upstream_tasks entry")
            wiring.append((up, None, order_mapped, False))
        binding = bool(values)
        refused = isinstance(task, ParameterTask)
        tasks = self._tasks
        for up, *_ in wiring:
            if refused or up is task or up not in tasks:  # else nothing to check (the common case)
                self._check_edge(up, task, binding)
        self.add_task(task)
        self.version += 1
        if values:
            self._arguments.setdefault(task, {}).update(values)
        if mapped:
            self._mapped.setdefault(task, {}).update(spec)
        for up, edge_key, edge_mapped, flattened in wiring:
            self._add_edge(up, task, edge_key, edge_mapped, flattened, checked=True)

    def _gate(self, task: Task[Any, Any]) -> None:
        """The case hook: a task added inside ``with case(...)`` blocks of this flow depends
        on each block's compare task (an unmapped ordering edge, also for a mapped task), so
        it is skipped when a comparison fails. Compare tasks themselves are not gated."""
        if task in self._cases:
            return
        for block in active_cases.get():
            if block.flow is self:
                self._add_edge(block.compare, task, None)
                block.tasks[task] = None

    def add_case_block(self, block: CaseBlock) -> None:
        """Record a case block (``case``, ``switch`` and ``ifelse`` do); its compare task
        must be in the flow. ``visualize`` draws each block as a box around its tasks."""
        if block.compare not in self._tasks:
            raise FlowDefinitionError(
                f"Flow {self.name!r}: case block's compare task {block.compare.name!r} "
                "is not in the flow"
            )
        self._cases[block.compare] = block

    def case_blocks(self) -> list[CaseBlock]:
        """The flow's case blocks (``with case(...)``, ``switch``, ``ifelse``), in the order
        they were opened; each lists the tasks it gates."""
        return list(self._cases.values())

    def mapped_arguments(self, task: object) -> Mapping[str, bool] | None:
        """For a task added with ``.map``: its mapped arguments (key -> whether flattened);
        None for a task that is not mapped."""
        return self._mapped.get(_as_task(task, "mapped_arguments' task"))

    # -- reading ------------------------------------------------------------------------------

    @property
    def tasks(self) -> KeysView[Task[Any, Any]]:
        """Every task, in the order they were added (a set-like view)."""
        return self._tasks.keys()

    @property
    def edges(self) -> KeysView[Edge]:
        """Every edge, in the order they were added (a set-like view)."""
        return self._edges.keys()

    def arguments(self, task: object) -> Mapping[str, Any]:
        """The arguments ``task`` was called with: tasks, constants, or collections of both."""
        t = _as_task(task, "arguments' task")
        given = self._arguments.get(t)
        if given is not None:
            return given
        if t not in self._tasks:
            raise KeyError(t)
        return _NO_ARGUMENTS

    def _known(self, task: Task[Any, Any]) -> Task[Any, Any]:
        """``task``, which must be in the flow (a KeyError otherwise, as a dict lookup)."""
        if task not in self._tasks:
            raise KeyError(task)
        return task

    def parameters(self) -> ParameterSet:
        """The flow's ``Parameter`` tasks: a set, as Prefect 1.x's ``flow.parameters()`` is,
        that also finds one by name (``ParameterSet``).

        >>> with Flow("etl") as flow:
        ...     rows = Parameter("rows", default=100)
        ...     load(rows)
        >>> {p.name: p.default for p in flow.parameters()}
        {'rows': 100}
        >>> flow.parameters()["rows"] is rows, "rows" in flow.parameters().by_name()
        (True, True)
        """
        return ParameterSet(self._parameters)

    def edges_to(self, task: object) -> list[Edge]:
        """The edges into ``task``."""
        return list(in_table(self._upstream, self._known(_as_task(task, "edges_to's task"))))

    def edges_from(self, task: object) -> list[Edge]:
        """The edges out of ``task``."""
        return list(in_table(self._downstream, self._known(_as_task(task, "edges_from's task"))))

    def upstream_tasks(self, task: object) -> list[Task[Any, Any]]:
        """The tasks ``task`` depends on directly."""
        return list(dict.fromkeys(e.upstream_task for e in self.edges_to(task)))

    def downstream_tasks(self, task: object) -> list[Task[Any, Any]]:
        """The tasks that depend directly on ``task``."""
        return list(dict.fromkeys(e.downstream_task for e in self.edges_from(task)))

    def root_tasks(self) -> list[Task[Any, Any]]:
        """Tasks with no upstream tasks."""
        return [t for t in self._tasks if t not in self._upstream]

    def terminal_tasks(self) -> list[Task[Any, Any]]:
        """Tasks with no downstream tasks."""
        # Kept until the flow changes: a run reads them (its reference tasks by default),
        # and a pass over a large flow's tasks costs more than the rest of its end.
        known = self._terminal
        if known is None or known[0] != self.version:
            known = self._terminal = (
                self.version, [t for t in self._tasks if t not in self._downstream]
            )
        return list(known[1])

    def reference_tasks(self) -> list[Task[Any, Any]]:
        """The tasks whose states decide the flow's state (default: the terminal tasks)."""
        return list(self._reference_tasks) or self.terminal_tasks()

    def set_reference_tasks(self, tasks: Iterable[object]) -> None:
        """Make these tasks (all in the flow) decide the flow's state."""
        chosen = [_as_task(t, "a reference task") for t in tasks]
        for t in chosen:
            if t not in self._tasks:
                raise FlowDefinitionError(
                    f"Flow {self.name!r}: reference task {t.name!r} is not in the flow"
                )
        self._reference_tasks = dict.fromkeys(chosen)

    def get_tasks(
        self, name: str | None = None, tags: Iterable[str] = (), slug: str | None = None
    ) -> list[Task[Any, Any]]:
        """The tasks with this name and this slug (if given) and all these tags."""
        wanted = set(tags)
        return [
            t
            for t in self._tasks
            if (name is None or t.name == name)
            and wanted <= t.tags
            and (slug is None or self.slugs[t] == slug)
        ]

    def sorted_tasks(self) -> list[Task[Any, Any]]:
        """Every task, each after all of its upstream tasks (ties in insertion order)."""
        compiled = plan(self)
        return [compiled.nodes[i].task for i in compiled.order()]

    def __repr__(self) -> str:
        return f"<Flow {self.name!r}: {len(self._tasks)} tasks>"

    def visualize(
        self,
        flow_state: State[Any] | RunRecord | None = None,
        filename: str | PathLike[str] | None = None,
        format: Literal["dot", "mermaid", "svg", "png", "pdf"] | None = None,
    ) -> str | bytes:
        """The flow as a picture: DOT or Mermaid text, or SVG, PNG or PDF drawn by Graphviz;
        with a run (``flow.run``'s state or a journal ``RunRecord``), tasks coloured by
        their final state. Written to ``filename`` when given; ``format`` defaults to its
        suffix's, else ``"dot"``. See ``taskloom.visualize.render``.
        """
        from . import visualize

        return visualize.render(self, flow_state, filename, format=format)

    # -- running ------------------------------------------------------------------------------

    def run(
        self,
        parameters: Mapping[str, Any] | None = None,
        *,
        executor: Executor | None = None,
        context: Mapping[str, Any] | None = None,
        task_states: Mapping[object, State[Any]] | None = None,
        start_tasks: Iterable[object] | None = None,
        cache_store: CacheStore | None = None,
        journal: Journal | bool = True,
        progress: RunObserver | bool = False,
        run_on_schedule: bool = True,
        **parameter_values: Any,
    ) -> State[FlowResult]:
        """Run the flow and return its final state; on a flow with a ``schedule``, run it
        at each due time and return the last run's final state.

        Parameters are given by name, in ``parameters`` or as keywords (Prefect 1.x style);
        ``flow.run(n=5)`` is ``flow.run(parameters={"n": 5})``. The run options below are
        never parameters: a parameter named like one (``context``, ``executor``, ...) is
        given in ``parameters`` (``flow.run(parameters={"context": "prod"})``).

        Args:
            parameters: values for the flow's parameters, by name.
            executor: where tasks run (default: ``flow.executor``, and when that is None,
                ``LocalExecutor()``, in this process).
            context: values for ``taskloom.context`` during this run.
            task_states: states to start from: a finished state is kept and the task is not
                run again; a ``Resume`` state lets a paused task through.
            start_tasks: tasks to treat as roots: their trigger is not checked, their
                upstream tasks are not run, and their inputs come from their state's
                ``cached_inputs``. Only they and the tasks downstream of them run.
            cache_store: where output caching keeps results (default: a ``SQLiteCacheStore``
                under ``TASKLOOM_HOME`` or the user's cache directory).
            journal: where the run is recorded (default: the run journal under
                ``TASKLOOM_HOME``, see ``taskloom.journal``); ``False`` records nothing.
            progress: ``True`` shows progress on stderr (live with rich on a terminal, plain
                lines otherwise: ``progress.default_progress``); or any ``RunObserver`` to be
                told as tasks change state.
            run_on_schedule: with a ``schedule`` on the flow, wait for each due time and run
                then (each run with its own run id and journal entry, ``scheduled_start_time``
                in its context the due time), until the schedule has no due time left, as
                Prefect 1.x does; Ctrl-C while waiting raises ``KeyboardInterrupt`` (the runs
                done are journaled). ``False``: run once, now. Ignored without a schedule.
            parameter_values: more parameter values, by name.

        Returns:
            ``Success`` when every reference task succeeded, ``Failed`` when one failed,
            ``Paused`` when tasks wait to be resumed. Its ``result`` maps every task to its
            final state: ``state.result[task].result`` is that task's result; its
            ``run_id`` names the run in the journal.

        Raises:
            FlowDefinitionError: (a ``ValueError``) for an unknown or missing parameter (a
                keyword that is neither a parameter nor a run option is named, with both
                lists), one given both ways, a ``start_tasks`` or ``task_states`` entry that
                is not in the flow, before any task runs; a run started inside the flow's
                own ``with Flow(...)`` block.
            UnsafeHomeError: the taskloom home belongs to another user or others may write
                to it (checked before any task runs).
            ScheduleError: (a ``ValueError``) the flow's schedule has no due time after now,
                before any waiting.
        """
        from .runner import check_run, run_flow

        if active_flow.get() is self:
            raise FlowDefinitionError(
                f"Flow {self.name!r}: flow.run() was called inside the flow's own "
                f"`with Flow(...)` block; build the flow first, then run it after the block"
            )
        values = _parameter_values(self, parameters or {}, parameter_values)
        context, task_states = context or {}, task_states or {}

        def once(extra: Mapping[str, Any]) -> State[FlowResult]:
            return run_flow(
                self,
                parameters=values,
                executor=executor,
                context={**context, **extra},
                task_states=task_states,
                start_tasks=start_tasks,
                cache_store=cache_store,
                journal=journal,
                progress=progress,
            )

        if self.schedule is None or not run_on_schedule:
            return once({})
        # What a run would refuse is refused now, not after waiting for the first due time.
        check_run(self, parameters=values, context=context, task_states=task_states,
                  start_tasks=start_tasks)
        return _run_on_schedule(
            self.schedule,
            lambda due: once({"scheduled_start_time": due}),
            owner=f"Flow {self.name!r}",
            logger=self.logger,
        )


def _parameter_values(
    flow: Flow, parameters: Mapping[str, Any], keywords: Mapping[str, Any]
) -> Mapping[str, Any]:
    """``flow.run``'s parameters: ``parameters`` and the keywords that name parameters.

    Raises:
        FlowDefinitionError: a keyword that names no parameter (listing the parameters and
            the run options), or a parameter given in both.
    """
    if not keywords:
        return parameters
    declared = flow._parameters
    unknown = [k for k in keywords if k not in declared]
    if unknown:
        options = [
            p.name
            for p in inspect.signature(Flow.run).parameters.values()
            if p.kind is inspect.Parameter.KEYWORD_ONLY
        ]
        raise FlowDefinitionError(
            f"Flow {flow.name!r}: flow.run() got unexpected keyword argument(s) "
            f"{', '.join(unknown)}; a keyword is a parameter of the flow (its parameters: "
            f"{', '.join(sorted(declared)) or 'none'}) or a run option ({', '.join(options)})"
        )
    twice = sorted(k for k in keywords if k in parameters)
    if twice:
        raise FlowDefinitionError(
            f"Flow {flow.name!r}: parameter(s) {', '.join(twice)} given twice, in "
            "parameters={...} and as keyword(s); give each once"
        )
    return {**parameters, **keywords}


class ParameterSet(frozenset[ParameterTask]):
    """A flow's parameters (``Flow.parameters``): the set of its ``Parameter`` tasks, as in
    Prefect 1.x, so ``for p in flow.parameters()`` gives the tasks; also looked up by name:
    ``flow.parameters()["n"]``, ``.get("n")``, ``.by_name()`` (a read-only mapping: ``"n" in
    flow.parameters().by_name()`` is what ``mypy --strict`` accepts, as it takes a set of
    tasks to hold no string). A snapshot: a parameter the flow gets later is not in it; a
    set operation (``|``, ``copy()``) gives a plain ``frozenset``."""

    __slots__ = ("_by_name",)
    _by_name: Mapping[str, ParameterTask]

    def __new__(cls, by_name: Mapping[str, ParameterTask]) -> ParameterSet:
        made = super().__new__(cls, by_name.values())
        made._by_name = MappingProxyType(dict(by_name))
        return made

    def __getitem__(self, name: str) -> ParameterTask:
        try:
            return self._by_name[name]
        except KeyError:
            known = ", ".join(map(repr, self._by_name)) or "none"
            raise KeyError(f"the flow has no parameter {name!r} (its parameters: {known})") from None

    def get(self, name: str, default: ParameterTask | None = None) -> ParameterTask | None:
        """The parameter called ``name``, or ``default``."""
        return self._by_name.get(name, default)

    def by_name(self) -> Mapping[str, ParameterTask]:
        """The parameters by name (read-only), in the order the flow got them."""
        return self._by_name

    def __contains__(self, item: object) -> bool:
        if isinstance(item, str):
            return item in self._by_name
        return super().__contains__(item)

    # Its own, so that mypy takes it to compare with a set of tasks (as a frozenset does).
    def __eq__(self, other: object) -> bool:
        return frozenset.__eq__(self, other)

    __hash__ = frozenset.__hash__

    def __reduce__(self) -> tuple[type[ParameterSet], tuple[dict[str, ParameterTask]]]:
        return type(self), (dict(self._by_name),)


class FlowResult(dict["Task[Any, Any]", State[Any]]):
    """The result of a flow run's state: every task's final state, by task.

    Indexing with a handle gives a state typed with that task's result::

        with Flow("f") as flow:
            total = add(1, 2)          # reads as `int`
        state = flow.run()
        state.result[total].result     # an `int` for the type checker too
    """

    __slots__ = ()

    if TYPE_CHECKING:

        @overload
        def __getitem__(self, key: Task[Any, T]) -> State[T]: ...

        @overload
        def __getitem__(self, key: T) -> State[T]: ...

        def __getitem__(self, key: object) -> State[Any]: ...

        # `get` reads handles the same way (dict's own `get` would refuse a handle typed `R`).
        @overload
        def get(self, key: Task[Any, T], default: None = None, /) -> State[T] | None: ...

        @overload
        def get(self, key: T, default: None = None, /) -> State[T] | None: ...

        @overload
        def get(self, key: Task[Any, T], default: State[T] | D, /) -> State[T] | D: ...

        @overload
        def get(self, key: T, default: State[T] | D, /) -> State[T] | D: ...

        def get(self, key: object, default: object = None, /) -> object: ...
