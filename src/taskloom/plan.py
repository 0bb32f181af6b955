"""A flow compiled for running: tasks by index, with their edges and arguments resolved.

The scheduler works on indexes, not on ``Task`` objects and ``Edge`` sets: for each task,
its upstream and downstream task numbers, which argument each upstream result feeds, its
constant arguments, and arguments that are collections holding tasks (rebuilt with the
results at run time). A plan is kept per flow and reused until the flow changes
(``Flow.version``).

The plan is the one place that answers questions about the graph, by index:

- ``Plan.order()``: a topological order (``Flow.sorted_tasks``, the critical path);
- ``Plan.downstream_closure(starts)``: the tasks that follow some tasks (what a run with
  ``start_tasks`` may run, what a resume runs again, what the journal keeps for it);
- ``Plan.upstream_lists()``: the upstream task numbers of each task (the report).

A task's number is its position in ``flow.tasks``, which is also its position in a run's
states and in the run journal.

A plan of a million tasks is kept compact: a node's sequences are tuples (the shared ``()``
for none, one tuple for equal ones: the inputs of a reduce share its number as their
``downstream``), a node without constants shares one empty mapping, and ``in_edges`` is an
``EdgesIn`` (its edges and their upstream numbers as two tuples, not a pair per edge), a
node of a task that does not map has no slots for mapping (``MappedNode`` has them), and
the plan keeps no dict of each task's number (``Plan.numbers`` looks tasks up). It is
compiled with the garbage collector off (``taskloom._collector``).

Follow-ons: ``Node.followable`` marks a task that a worker may run as a member of a group
(see "Follow-ons" in ``taskloom.runner``): right after its upstream tasks, where they ran,
in the same round trip. It must only be set where the worker's rule (every upstream task
``attempt.follows``) gives the scheduler's decision (``decide.decide``);
``tests/test_follow_on.py`` checks that for every trigger, skip setting, cache setting and
pair of upstream states.

``plan`` takes the flow as a duck (its tasks, edges, arguments and version) and imports
nothing from ``flow``, so that ``Flow`` can use the plan (``sorted_tasks``).
"""

from __future__ import annotations

import itertools
import weakref
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

from ._collector import collector_off
from .edges import Edge
from .task import _SHARED, ParameterTask, Task, _tasks_in, options_stamp, persists_by_itself
from .tasks.secrets import Secret
from .triggers import all_successful

if TYPE_CHECKING:
    from .flow import Flow

__all__ = ["EdgesIn", "MappedNode", "Node", "Plan", "plan", "rebuild"]


class EdgesIn(Sequence[tuple[Edge, int]]):
    """A node's ``in_edges``: each edge into the task with its upstream task's number, as
    pairs, kept as two tuples (a reduce of 10,000 inputs holds no 10,000 pairs; the numbers
    are the node's ``upstream`` tuple itself when each upstream task has one edge)."""

    __slots__ = ("edges", "numbers")

    def __init__(self, edges: tuple[Edge, ...], numbers: tuple[int, ...]) -> None:
        self.edges = edges
        self.numbers = numbers

    def __iter__(self) -> Iterator[tuple[Edge, int]]:
        return zip(self.edges, self.numbers)

    def __len__(self) -> int:
        return len(self.edges)

    @overload
    def __getitem__(self, i: int) -> tuple[Edge, int]: ...

    @overload
    def __getitem__(self, i: slice) -> Sequence[tuple[Edge, int]]: ...

    def __getitem__(self, i: int | slice) -> tuple[Edge, int] | Sequence[tuple[Edge, int]]:
        if isinstance(i, slice):
            return list(zip(self.edges[i], self.numbers[i]))
        return self.edges[i], self.numbers[i]

    def __repr__(self) -> str:
        return f"EdgesIn({list(self)!r})"


#: The constants of a node that has none: one dict shared by them all (typed read-only;
#: a plain dict, not a ``MappingProxyType``, because a follow-on's constants are pickled).
_NO_CONSTANTS: Mapping[str, Any] = {}


class Node:
    """A task compiled for running: its place in the graph, by index.

    Its sequences are tuples (the shared ``()`` when empty) and ``constants`` a shared
    empty mapping when it has none: a plan of a million tasks holds no empty container.
    What only a mapped task has (``mapped``, ``childwise``, ``chainable``) is held by a
    ``MappedNode``; a node of a task that does not map reads the defaults from the class
    (three slots fewer: 96 bytes a node, not 128).
    """

    __slots__ = ("constants", "direct", "downstream", "followable", "in_edges", "nested", "task",
                 "upstream")

    #: For a mapped task (``t.map``): its mapped arguments (key -> whether flattened).
    mapped: Mapping[str, bool] | None = None
    #: For a mapped task: the mapped upstream tasks it maps over child by child (every
    #: edge from them mapped, none flattened), so it may map as soon as they have mapped.
    childwise: frozenset[int] = frozenset()
    #: For a mapped task: whether its children may run as follow-ons of the children they
    #: map over (the rule of ``followable``, but for the one-upstream condition, which the
    #: scheduler checks child by child).
    chainable: bool = False

    def __init__(
        self,
        task: Task[Any, Any],
        in_edges: Sequence[tuple[Edge, int]] = (),
        upstream: tuple[int, ...] = (),
        downstream: tuple[int, ...] = (),
        direct: tuple[tuple[str, int], ...] = (),
        constants: Mapping[str, Any] = _NO_CONSTANTS,
        nested: tuple[tuple[str, Any], ...] = (),
        followable: bool = False,
    ) -> None:
        self.task = task
        self.in_edges = in_edges
        self.upstream = upstream
        self.downstream = downstream
        self.direct = direct
        self.constants = constants
        self.nested = nested
        #: Whether this task may run as a member of a group of follow-ons
        #: (``_decided_as_followable``).
        self.followable = followable

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.task!r}, upstream={self.upstream!r}, downstream={self.downstream!r})"


class MappedNode(Node):
    """The node of a mapped task (``t.map``): a ``Node`` with ``mapped``, ``childwise`` and
    ``chainable`` of its own."""

    __slots__ = ("chainable", "childwise", "mapped")

    def __init__(self, node: Node, mapped: Mapping[str, bool]) -> None:
        super().__init__(
            node.task, node.in_edges, node.upstream, node.downstream, node.direct,
            node.constants, node.nested, node.followable,
        )  # fmt: skip
        self.mapped: Mapping[str, bool] | None = mapped
        self.childwise: frozenset[int] = frozenset()
        self.chainable: bool = False


@dataclass(slots=True, eq=False)
class Plan:
    """A flow compiled for running (see the module docstring).

    Attributes:
        nodes: every task, by number (``flow.tasks`` order), with its edges by number.

    A plan keeps no dict of each task's number (80 bytes a task): only a run's start
    (seeded states, start tasks) and end (reference tasks) look tasks up, a few at once,
    in one pass over the nodes (``numbers``).
    """

    nodes: list[Node]
    #: Each task's name as people see it (journal, progress, report, pictures): its own
    #: name, numbered in flow order where copies of one task share it (``parse[0]``,
    #: ``parse[1]``, ...), so that 200 calls of ``parse`` are 200 names.
    names: list[str] = field(default_factory=list)
    #: The tasks whose own options make them persist (``task.persists_by_itself``): what
    #: a run checks before it starts (``checkpoint.prepare_run``), unless the flow has a
    #: ``result``, which makes every task persist.
    persisting: tuple[int, ...] = ()
    #: Whether a task has an output cache (``cache_for``): the run then opens the cache.
    caching: bool = False
    #: The ``Secret`` tasks, by number: a run reads their values before any task runs
    #: (``_run_args.run_context``), without a pass over every task.
    secrets: tuple[int, ...] = ()

    def numbers(self, tasks: Iterable[object]) -> dict[Task[Any, Any], int]:
        """The number of each of ``tasks`` that is in the plan, by task (one pass over the
        nodes, ended once all are found; from the last, as the tasks looked up most, the
        reference tasks, are by default the terminal ones, which a flow mostly adds last)."""
        wanted = set(tasks)
        found: dict[Task[Any, Any], int] = {}
        if not wanted:
            return found
        nodes = self.nodes
        for i in range(len(nodes) - 1, -1, -1):
            task = nodes[i].task
            if task in wanted:
                found[task] = i
                if len(found) == len(wanted):
                    break
        return found

    def number(self, task: Task[Any, Any]) -> int:
        """The number of ``task``; KeyError if it is not in the plan."""
        return self.numbers((task,))[task]

    def order(self) -> list[int]:
        """Every task number, each after all of its upstream tasks (ties in flow order,
        depth first: a task's downstream tasks follow it as soon as they are free)."""
        nodes = self.nodes
        waiting = [len(node.upstream) for node in nodes]
        ready = [i for i, count in enumerate(waiting) if count == 0]
        ready.reverse()  # a stack: pop() takes the first
        order: list[int] = []
        while ready:
            i = ready.pop()
            order.append(i)
            released = []
            for d in nodes[i].downstream:
                waiting[d] -= 1
                if waiting[d] == 0:
                    released.append(d)
            ready.extend(reversed(released))
        return order

    def downstream_closure(self, starts: Iterable[int], into: list[bool] | None = None) -> list[bool]:
        """For each task number, whether it is one of ``starts`` or downstream of one;
        ``into``: a closure found before, extended in place (what it holds is not walked
        again)."""
        nodes = self.nodes
        inside = [False] * len(nodes) if into is None else into
        stack = list(starts)
        while stack:
            i = stack.pop()
            if not inside[i]:
                inside[i] = True
                stack.extend(nodes[i].downstream)
        return inside

    def upstream_lists(self) -> list[list[int]]:
        """For each task number, the numbers of the tasks it depends on directly."""
        return [list(node.upstream) for node in self.nodes]


#: Each flow's plan, with the flow's version and the tasks' options stamp it was made under.
_plans: weakref.WeakKeyDictionary[Flow, tuple[int, int, Plan]] = weakref.WeakKeyDictionary()


def plan(flow: Flow) -> Plan:
    """The flow compiled for running, reused while the flow does not change. A change
    to a task's options that the plan reads (``task._PLANNED_OPTIONS``: ``t.trigger =
    ...`` after a run) is read again (``_mark_options``)."""
    stamp = options_stamp()  # read first: a change made while marking is seen next time
    cached = _plans.get(flow)
    if cached is not None and cached[0] == flow.version:
        compiled = cached[2]
        if cached[1] != stamp:
            _mark_options(compiled)
            _plans[flow] = (cached[0], stamp, compiled)
        return compiled
    version = flow.version
    with collector_off():  # at a million tasks, 3.2 µs a task to compile with it, 2.0 without
        compiled = _compile(flow)
    _plans[flow] = (version, stamp, compiled)
    return compiled


def _compile(flow: Flow) -> Plan:
    index = {t: i for i, t in enumerate(flow.tasks)}
    nodes = [Node(t) for t in index]
    # Gathered here, by task number, only for the tasks that have some; each node gets
    # tuples once all are in.
    in_edges: dict[int, tuple[list[Edge], list[int]]] = {}
    for edge in flow.edges:
        up, down = index[edge.upstream_task], index[edge.downstream_task]
        gathered = in_edges.get(down)
        if gathered is None:
            in_edges[down] = ([edge], [up])
        else:
            gathered[0].append(edge)
            gathered[1].append(up)
    downstream: dict[int, list[int]] = {}
    # Equal tuples of task numbers are one tuple: the thousands of tasks gathered by one
    # reduce share its number as their downstream, those fed by one task its number.
    shared: dict[tuple[int, ...], tuple[int, ...]] = {}
    for down in sorted(in_edges):  # downstream lists in task order, as a walk by task gives
        edges, numbers = in_edges[down]
        node = nodes[down]
        ups = tuple(dict.fromkeys(numbers))
        node.upstream = ups = shared.setdefault(ups, ups)
        node.in_edges = EdgesIn(tuple(edges), ups if len(ups) == len(numbers) else tuple(numbers))
        for up in ups:
            downs = downstream.get(up)
            if downs is None:
                downstream[up] = [down]
            else:
                downs.append(down)
    del in_edges
    for up, downs in downstream.items():
        as_tuple = tuple(downs)
        nodes[up].downstream = shared.setdefault(as_tuple, as_tuple)
    del downstream, shared
    for t, i in index.items():
        node = nodes[i]
        arguments = flow.arguments(t)
        if arguments:
            _compile_arguments(node, arguments, index)
        mapped = flow.mapped_arguments(t)
        if mapped is not None:
            nodes[i] = MappedNode(node, mapped)
    for node in nodes:
        if isinstance(node, MappedNode):
            node.childwise = frozenset(
                u for u in node.upstream
                if nodes[u].mapped is not None
                and all(e.mapped and not e.flattened for e, j in node.in_edges if j == u)
            )
    compiled = Plan(nodes)
    compiled.secrets = tuple(i for i, t in enumerate(index) if isinstance(t, Secret))
    _mark_options(compiled)
    return compiled


def _compile_arguments(node: Node, arguments: Mapping[str, Any], index: Mapping[Task[Any, Any], int]) -> None:
    """Sort a task's arguments into its node's direct, nested and constant ones."""
    direct: list[tuple[str, int]] = []
    nested: list[tuple[str, Any]] = []
    constants: dict[str, Any] = {}
    for key, value in arguments.items():
        if isinstance(value, Task):
            direct.append((key, index[value]))
        elif any(True for _ in _tasks_in(value)):
            nested.append((key, value))
        else:
            constants[key] = value
    node.direct, node.nested = tuple(direct), tuple(nested)
    if constants:
        node.constants = constants


def _display_names(names: list[str]) -> list[str]:
    """``names`` with the copies of a repeated name numbered in order: ``parse[0]``, ...
    (``names`` itself when none repeats)."""
    counts = Counter(names)  # (counted in C)
    if len(counts) == len(names):
        return names
    numbering = {name: itertools.count() for name, count in counts.items() if count > 1}
    return [name if name not in numbering else f"{name}[{next(numbering[name])}]" for name in names]


def _mark_options(compiled: Plan) -> None:
    """What the plan keeps of its tasks' options (``task._PLANNED_OPTIONS``), from them
    now: each task followable (a mapped one: chainable), the tasks that persist by
    themselves, whether any caches, the names runs record. ``names`` is a new list, never
    changed in place (the journal reuses what it made of the same list)."""
    compiled.names = _display_names([node.task.name for node in compiled.nodes])
    persisting: list[int] = []
    caching = False
    # The unchanged copies of a task share one dict of options (``Task.copy``) and a class:
    # what the plan keeps of them is read once (a flow of a million calls of one task).
    read: dict[int, tuple[bool, bool, bool]] = {}
    for i, node in enumerate(compiled.nodes):
        task = node.task
        options = task.__dict__
        kept = read.get(id(options)) if _SHARED in options else None
        if kept is None:
            kept = (_decided_as_followable(task), persists_by_itself(task), task.cache_for is not None)
            if _SHARED in options:  # (the dict lives as long as the copies: its id is theirs)
                read[id(options)] = kept
        followable, persists, caches = kept
        if isinstance(node, MappedNode):
            node.chainable = followable
        else:
            node.followable = followable
        if persists:
            persisting.append(i)
        caching = caching or caches
    compiled.persisting, compiled.caching = tuple(persisting), caching


def _decided_as_followable(task: Task[Any, Any]) -> bool:
    """Whether a worker may decide this task as the scheduler would, where its upstream
    tasks ran: the default trigger and skip propagation on (so "every upstream task
    ``follows``" is the decision), no output cache (a lookup happens in the parent), not a
    parameter (parsed in the parent), no timeout (a member has no hard deadline of its own:
    the dispatcher gives one only to a run alone in its batch), and it may run again after
    a worker crash (a member lost with its worker is decided again, so its body may run
    twice: see ``Task(rerun_after_crash=...)``). How many upstream tasks it has, and how
    they feed it (an argument, a list of tasks, ordering only), does not matter: the
    scheduler sends each finished one's result, and the worker each member's."""
    return (
        task.trigger is all_successful
        and task.skip_on_upstream_skip
        and task.cache_for is None
        and task.timeout is None
        and not isinstance(task, ParameterTask)
        and getattr(task, "rerun_after_crash", True)
    )


def rebuild(value: Any, results: Mapping[Task[Any, Any], Any]) -> Any:
    """An argument with each task in it replaced by that task's result."""
    if isinstance(value, Task):
        return results[value]
    if type(value) is list:  # a reduce's list of tasks, often thousands: one comprehension
        return [results[v] if isinstance(v, Task) else rebuild(v, results) for v in value]
    if isinstance(value, (list, tuple, set, frozenset)):
        return type(value)(rebuild(v, results) for v in value)
    if isinstance(value, dict):
        return {k: rebuild(v, results) for k, v in value.items()}
    return value
