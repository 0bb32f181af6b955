"""Mapping in the scheduler: the bookkeeping of a mapped task's children during a run.
It is the other half of the scheduler (``runner._Scheduler`` is a ``_Mapping``), moved out
of ``runner``, which keeps the loop; ``taskloom.mapped`` keeps the pure rules.

Mapping. A mapped task (``t.map``; its rules are pure functions in ``taskloom.mapped``) is
not run: once what it maps over is known it *maps* (``_map``), and its children get slots
numbered after the flow's tasks, with their own traces (``name[i]``), ``waiting`` counts
and follow-ons, and an ``_Expansion`` each mapped task shares with its children: what
every child takes, what each takes by index, and where each child finds its upstream
states (``sources``). The scheduler's per-slot lists (``runner``'s docstring) cover
children too, and these are kept for them:

``task_of[s]``, ``parent[s]``, ``map_index[s]``
    the task a slot runs, and for a child its mapped task's number and its index (-1 and
    None for the flow's own tasks).
``expansions[i]``
    mapped task ``i`` once it has mapped; it finishes ``Mapped`` when its last child does.
``dependents[s]``
    the children waiting for child ``s`` (child ``k`` of a map over a map waits only for
    child ``k`` upstream: no barrier between the maps).

A mapped task maps as soon as its upstream tasks are finished, or, for a mapped task it
maps over child by child (``Node.childwise``), have mapped. Child ``k`` of such a map is
a follow-on of child ``k`` upstream (``_child_chain_after``) under the same rule as any
follow-on, checked child by child (``_follows_child``). A run resumed with a ``Mapped``
state some of whose children did not finish well maps again, keeps the finished children
and runs the others.

How the two talk. ``_Mapping`` is a mixin: it declares, as annotations, the scheduler's
attributes it reads and writes, and, for the type checker only, the scheduler's methods it
calls (``_settle``, ``_finish``, ``_handled``, ``_mapped``, ``_release``, ``_start_inputs``,
``_cached_or_run``, ``_task_run``). The scheduler calls into it only where a slot maps or
is a child: ``_map`` (a node with ``mapped``), and for a slot past the flow's tasks
``_decide_child``, ``_child_chain_after``, ``_child_inputs_of`` and ``_finish_child``. So a
flow that does not map pays nothing for it: the per-task path is the same attribute reads
and checks as before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from . import triggers
from ._run_args import RunArgs
from .attempt import FollowOn, TaskRun, follows
from .decide import decide
from .executors.base import resolve_deferred
from .mapped import (
    NOT_MAPPABLE, Unmappable, child_name, elements, flattened_children, parent_decision,
)
from .plan import Node, rebuild
from .recording import TaskLog
from .states import Failed, Finished, Mapped, Paused, Pending, Resume, Running, State, Success
from .task import Task
from .trace import ChildTrace, TaskTrace

if TYPE_CHECKING:
    from .progress import RunObserver
    from .runner import Resumed

#: The message of a task's or child's state until it runs (``Pending``).
NOT_RUN_MESSAGE = "Task not run."


def _children_of(state: State[Any]) -> list[State[Any]]:
    return state.map_states if isinstance(state, Mapped) else [state]


#: Where a child of a mapped task finds the state an upstream edge gives it (its trigger's
#: view): the upstream task's child of the same index, still running or not (``_LIVE``,
#: with that task's number); a finished mapped task's child (``_CHILD``, with its children's
#: states); an element it maps over (``_ELEMENT``, with the elements); or the whole upstream
#: task (``_WHOLE``, with its number).
_LIVE, _CHILD, _ELEMENT, _WHOLE = range(4)


@dataclass(slots=True)
class _Expansion:
    """A mapped task once it has mapped: its children's slots and where their inputs and
    upstream states come from (what all children share, and what each takes by index)."""

    slots: list[int]
    shared: dict[str, Any] = field(default_factory=dict)
    by_index: dict[str, Sequence[Any]] = field(default_factory=dict)
    live: list[tuple[str, int]] = field(default_factory=list)
    sources: list[tuple[Any, int, Any]] = field(default_factory=list)
    left: int = 0
    #: Whether every child sees upstream states of the same classes (none is the child of
    #: a mapped task) and the trigger is one of taskloom's, which look at classes only: then
    #: the first child's decision is every child's (``same``: () to run, else its state).
    uniform: bool = False
    same: tuple[State[Any], ...] | None = None
    #: The map indexes of children a resume lets through (given ``Resume``).
    resumed: set[int] = field(default_factory=set)
    #: Whether each child left runs, with nothing to decide (``_decide_child``'s most
    #: common case, first): ``same`` is to run, no child is resumed, no output cache.
    runs: bool = False

class _Mapping:
    """The mapping half of ``runner._Scheduler``: see the module docstring."""

    # The scheduler's attributes this half uses (set in ``_Scheduler.__init__``).
    nodes: Sequence[Node]
    args: RunArgs
    observer: RunObserver | None
    traces: list[TaskTrace]
    finished: bytearray
    waiting: list[int]
    runnable: bytearray
    ready: list[int]
    claimed: set[int]
    task_of: list[Task[Any, Any]]
    parent: list[int]
    map_index: list[int | None]
    expansions: dict[int, _Expansion]
    dependents: dict[int, list[int]]
    task_log: TaskLog | None
    resumed: Resumed | None

    if TYPE_CHECKING:  # the scheduler's methods this half calls (``runner._Scheduler``)

        def _settle(self, i: int, state: State[Any]) -> None: ...

        def _finish(self, i: int, state: State[Any]) -> None: ...

        def _handled(
            self, i: int, new: State[Any], old: State[Any] | None = None
        ) -> State[Any]: ...

        def _mapped(self, i: int, exp: _Expansion) -> State[Any]: ...

        def _release(self, d: int) -> None: ...

        def _start_inputs(self, i: int, seeded: State[Any] | None) -> dict[str, Any]: ...

        def _cached_or_run(
            self, i: int, inputs: dict[str, Any], resume: bool, seeded: State[Any] | None
        ) -> TaskRun | None: ...

        def _task_run(self, i: int, inputs: dict[str, Any], resume: bool) -> TaskRun: ...

    def _map(self, i: int) -> None:
        """Turn mapped task ``i`` into its children (see ``taskloom.mapped``), or end it."""
        node, traces, nodes = self.nodes[i], self.traces, self.nodes
        task = node.task
        assert node.mapped is not None
        live = {j for j in node.childwise if j in self.expansions}
        direct = dict(node.direct)
        decided = parent_decision(
            task, {edge: traces[j].state for edge, j in node.in_edges if j not in live},
            bool(live) or any(key not in direct for key in node.mapped),
        )
        if decided is not None:
            self._settle(i, self._handled(i, decided))
            return
        stored = self._start_inputs(i, self.args.seeded.get(i)) if i in self.args.starts else None
        exp = _Expansion([])
        widths: list[int] = []
        results = {nodes[j].task: traces[j].state.result for j in node.upstream}
        #: Over a mapped task, flattened: the state each child sees upstream, by argument.
        seen: dict[str, list[State[Any]]] = {}
        try:
            for key, flattened in node.mapped.items():
                j = direct.get(key, -1)
                if j in live:
                    exp.live.append((key, j))
                    widths.append(len(self.expansions[j].slots))
                    continue
                state = traces[j].state if j >= 0 else None
                if stored is not None and key in stored:
                    value = stored[key]
                elif state is not None and not state.is_successful():
                    exp.shared[key] = None  # no elements: each child sees its state (below)
                    continue
                elif isinstance(state, Mapped) and flattened:
                    exp.by_index[key], seen[key] = flattened_children(state)
                    widths.append(len(seen[key]))
                    continue
                elif isinstance(state, Mapped) and not flattened:
                    value = state.result
                elif state is not None:
                    value = resolve_deferred(state.result)
                elif key in node.constants:
                    value = node.constants[key]
                else:
                    value = rebuild(dict(node.nested)[key], results)
                items = elements(task.name, key, value, flattened)
                exp.by_index[key] = items
                widths.append(len(items))
        except Unmappable as error:
            self._settle(i, self._handled(i, Failed(str(error), TypeError(str(error)))))
            return
        for key, value in node.constants.items():
            if key not in node.mapped:
                exp.shared[key] = value
        for key, j in node.direct:
            if key not in node.mapped:
                exp.shared[key] = traces[j].state.result
        for key, value in node.nested:
            if key not in node.mapped:
                exp.shared[key] = rebuild(value, results)
        if stored is not None:
            exp.shared.update((k, v) for k, v in stored.items() if k not in node.mapped)
        for edge, j in node.in_edges:
            state = traces[j].state
            if j in live and edge.mapped:
                exp.sources.append((edge, _LIVE, j))
                widths.append(len(self.expansions[j].slots))  # an ordering edge counts too
            elif edge.mapped and isinstance(state, Mapped) and not edge.flattened:
                exp.sources.append((edge, _CHILD, state.map_states))
                widths.append(len(state.map_states))
            elif edge.key in seen:
                exp.sources.append((edge, _CHILD, seen[edge.key]))
            elif edge.mapped and edge.key in exp.by_index:
                exp.sources.append((edge, _ELEMENT, exp.by_index[edge.key]))
            else:  # unmapped, or a mapped upstream task that failed: each child sees it whole
                exp.sources.append((edge, _WHOLE, j))
        exp.uniform = (
            getattr(task.trigger, "__module__", None) == triggers.__name__
            and all(kind in (_ELEMENT, _WHOLE) for _, kind, _ in exp.sources)
        )
        if not widths:  # nothing it maps over gives elements (ordering edges to plain tasks)
            failed = Failed(NOT_MAPPABLE, ValueError(NOT_MAPPABLE))
            self._settle(i, self._handled(i, failed))
            return
        self._add_children(i, exp, min(widths))

    def _add_children(self, i: int, exp: _Expansion, n: int) -> None:
        """Make the ``n`` children of mapped task ``i``; ready those whose upstream
        children are done. Mapped tasks that map over ``i`` child by child may map now."""
        traces, task = self.traces, self.nodes[i].task
        start = len(traces)
        exp.slots = list(range(start, start + n))
        exp.left = n
        self.expansions[i] = exp
        self.traces[i].state = Running(f"Mapped over {n} children.")
        not_run = Pending(NOT_RUN_MESSAGE)
        name = traces[i].name
        # (A list, not a generator: a generator resumes a frame for every child.)
        traces.extend([ChildTrace(child_name(name, k), not_run, i, k) for k in range(n)])
        self.finished.extend([False] * n)
        self.runnable.extend([True] * n)
        self.task_of.extend([task] * n)
        self.parent.extend([i] * n)
        self.map_index.extend(range(n))
        kept = self.args.seeded.get(i)
        if isinstance(kept, Mapped) and len(kept.map_states) == n:
            # A resumed mapped task: children that finished keep their states; those given
            # ``Resume`` are decided as resumed tasks (``manual_only`` lets them through),
            # and are noted so (a resume of this run, killed, keeps their permission).
            for k, (slot, state) in enumerate(zip(exp.slots, kept.map_states)):
                if isinstance(state, Finished) and not type(state).runs_again:
                    traces[slot].state = state
                    self.finished[slot] = True
                    exp.left -= 1
                elif isinstance(state, Resume):
                    traces[slot].state = state
                    exp.resumed.add(k)
                elif self.resumed is not None and (i, k) in self.resumed.held_children:
                    traces[slot].state = state  # paused, and left so (``Resumed.held``)
                    self.runnable[slot] = False
        if self.task_log is not None:  # a killed run then still knows it had n children
            for slot in exp.slots:  # (once their states are set: the writer reads them)
                self.task_log.note(slot)
        waiting = self.waiting
        ready = self.ready
        ups = [self.expansions[j].slots for edge, kind, j in exp.sources if kind == _LIVE]
        for k, slot in enumerate(exp.slots):
            count = 0
            for up_slots in ups:
                up = up_slots[k]
                if not self.finished[up]:
                    count += 1
                    self.dependents.setdefault(up, []).append(slot)
            waiting.append(count)
            if count == 0 and not self.finished[slot] and self.runnable[slot]:
                ready.append(slot)
        if self.observer is not None:  # children count as tasks: tell of each as it appears
            for slot in exp.slots:
                self.observer.task_changed(slot, traces[slot].name, not_run)
        for d in self.nodes[i].downstream:
            if i in self.nodes[d].childwise:
                self._release(d)
        if exp.left == 0:
            self._finish(i, self._mapped(i, exp))

    def _decide_child(self, slot: int) -> TaskRun | None:
        """Decide child ``slot`` of a mapped task, as any task from its own upstream states."""
        parent, k = self.parent[slot], self.map_index[slot]
        assert k is not None
        exp = self.expansions[parent]
        if exp.runs:
            return self._task_run(slot, self._child_inputs(exp, k), False)
        traces = self.traces
        task = self.task_of[slot]
        resume = isinstance(self.args.seeded.get(parent), Resume) or k in exp.resumed
        decided: State[Any] | None
        if exp.same is not None and not resume:  # decided once for all (_Expansion.same)
            # A copy each: states count by identity in triggers (one per child).
            decided = exp.same[0].replace() if exp.same else None
        else:
            upstream: dict[Any, State[Any]] = {}
            for edge, kind, source in exp.sources:
                if kind == _LIVE:
                    upstream[edge] = traces[self.expansions[source].slots[k]].state
                elif kind == _CHILD:
                    upstream[edge] = source[k]
                elif kind == _ELEMENT:
                    upstream[edge] = Success(result=source[k])
                else:
                    upstream[edge] = traces[source].state
            decided = decide(task, upstream, resume=resume)
            if exp.uniform and not resume:
                exp.same = (decided,) if decided is not None else ()
                # (``resume`` is False: the mapped task is not resumed, nor child ``k``.)
                exp.runs = decided is None and not exp.resumed and task.cache_for is None
        inputs = self._child_inputs(exp, k)
        if decided is not None:
            if isinstance(decided, Paused):
                decided = decided.replace(cached_inputs=inputs)
            self._settle(slot, self._handled(slot, decided))
            return None
        if task.cache_for is None:  # _cached_or_run's own first check: a frame less a child
            return self._task_run(slot, inputs, resume)
        return self._cached_or_run(slot, inputs, resume, None)

    def _child_inputs(self, exp: _Expansion, k: int) -> dict[str, Any]:
        inputs = dict(exp.shared)
        for key, items in exp.by_index.items():
            inputs[key] = items[k]
        traces = self.traces
        for key, j in exp.live:
            inputs[key] = traces[self.expansions[j].slots[k]].state.result
        return inputs

    def _child_inputs_of(self, slot: int) -> dict[str, Any]:
        """The inputs of child ``slot``, from its upstream states now."""
        k = self.map_index[slot]
        assert k is not None
        return self._child_inputs(self.expansions[self.parent[slot]], k)

    def _finish_child(self, slot: int) -> None:
        """Child ``slot`` has finished: release its dependents, then finish its mapped
        task if it was the last child."""
        for d in self.dependents.pop(slot, ()):
            self._release(d)
        parent = self.parent[slot]
        exp = self.expansions[parent]
        exp.left -= 1
        if exp.left == 0:
            self._finish(parent, self._mapped(parent, exp))

    def _child_chain_after(self, slot: int) -> tuple[FollowOn, ...]:
        """The follow-ons of child run ``slot``: child ``k`` of the mapped task that maps
        over its mapped task child by child, and so on, while each is the only child
        waiting for the one before and would be decided exactly as a followable task
        (see ``_follows_child``)."""
        chain: list[FollowOn] = []
        while len(chain) < 10_000:
            after = self.dependents.get(slot)
            if after is None or len(after) != 1:
                break
            d = after[0]
            link = self._follows_child(d, slot)
            if link is None:
                break
            self.claimed.add(d)
            chain.append(link)
            slot = d
        return tuple(chain)

    def _follows_child(self, d: int, before: int) -> FollowOn | None:
        """Child ``d`` as a follow-on of child ``before``, when the worker's rule
        (``attempt.follows``) is the scheduler's decision for it: its task is followable
        but for being mapped, ``before``'s is its one upstream still to finish, and every
        other upstream state it sees is a success that ``follows``."""
        parent, k = self.parent[d], self.map_index[d]
        exp, node = self.expansions[parent], self.nodes[self.parent[d]]
        if (
            k is None
            or self.finished[d]
            or self.traces[d].attempts
            or d in self.claimed
            or self.waiting[d] != 1
            or not node.chainable
        ):
            return None
        live = [(edge, j) for edge, kind, j in exp.sources if kind == _LIVE]
        if len(live) != 1 or self.expansions[live[0][1]].slots[k] != before:
            return None
        for edge, kind, source in exp.sources:
            if kind == _CHILD and not follows(source[k]):
                return None
            if kind == _WHOLE and not all(follows(s) for s in _children_of(self.traces[source].state)):
                return None
        inputs = dict(exp.shared)
        for key, items in exp.by_index.items():
            inputs[key] = items[k]
        return FollowOn(d, self.task_of[d], inputs, ((live[0][0].key, before),), k)
