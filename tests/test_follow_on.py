"""The follow-on rule: where a worker decides a member of a group, it decides as the
scheduler would.

A task the plan marks ``followable`` may be run by a worker right after its upstream tasks,
in the same round trip (``TaskRun.then``). The worker then runs it iff each of its upstream
tasks in the group ended in a state that ``attempt.follows`` (``attempt.member_inputs``);
the scheduler would run it iff ``decide.decide`` (skip propagation, then the trigger) says
"run" (None). The two must agree for every task the plan marks followable, whatever its
trigger, skip setting and cache, and whatever finished states its upstream tasks (one, or
two fed in any way) ended in. Checked here against the real functions, for every
combination: a new trigger, state class or plan rule is covered without a change.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from taskloom import Flow, Task, task, triggers
from taskloom.executors import Executor
from taskloom.attempt import FollowOn, follows, member_inputs
from taskloom.plan import Plan, plan
from taskloom.decide import PLAIN_SUCCESS, decide, runs_by_default
from taskloom.journal import default_journal
from taskloom.runner import _upstream_follows
from taskloom.states import Failed, Finished, Mapped, State, Success, all_classes
from taskloom.triggers import Trigger


def _triggers() -> list[tuple[str, Trigger]]:
    """Every trigger of ``taskloom.triggers``; the two factories with a few bounds."""
    found: list[tuple[str, Trigger]] = []
    for name in triggers.__all__:
        value = getattr(triggers, name)
        if name == "Trigger":
            continue
        if name in ("some_successful", "some_failed"):
            factory: Callable[..., Trigger] = value
            for bounds in ({"at_least": 1}, {"at_most": 0}, {"at_least": 0.5, "at_most": 1}):
                found.append((f"{name}({bounds})", factory(**bounds)))
        else:
            found.append((name, value))
    return found


def _upstream_states() -> list[tuple[str, State[Any]]]:
    """One state of every class a finished task can end in, and a success without result."""
    found: list[tuple[str, State[Any]]] = [
        (cls.__name__, cls("ended", ValueError("boom") if issubclass(cls, Failed) else 1))
        for cls in all_classes()
        if issubclass(cls, Finished) and cls is not Finished
    ]
    found.append(("Success(None)", Success("ended", None)))
    return found


TRIGGERS = _triggers()
UPSTREAM = _upstream_states()
CASES = list(
    itertools.product(
        TRIGGERS,
        [True, False],  # skip_on_upstream_skip
        [None, dt.timedelta(hours=1)],  # cache_for
        ["data", "order"],  # the upstream feeds an argument, or only orders the task
    )
)


@task
def source() -> int:
    return 1


def _chain(
    trigger: Trigger, skip: bool, cache_for: dt.timedelta | None, wiring: str
) -> tuple[Plan, Task[Any, Any], int]:
    options: dict[str, Any] = {
        "name": "down", "trigger": trigger, "skip_on_upstream_skip": skip, "cache_for": cache_for,
    }  # fmt: skip
    with Flow("chain") as flow:
        up = source()
        if wiring == "data":
            down = task(**options)(lambda x: x)(up)
        else:
            down = task(**options)(lambda: 0)()
            flow.add_edge(up, down)
    assert isinstance(down, Task)
    compiled = plan(flow)
    return compiled, down, compiled.number(down)


def test_every_trigger_of_the_module_is_covered() -> None:
    names = {name.split("(")[0] for name, _ in TRIGGERS}
    assert names == set(triggers.__all__) - {"Trigger"}


def test_every_finished_state_class_is_covered() -> None:
    finished = {cls.__name__ for cls in all_classes() if issubclass(cls, Finished)} - {"Finished"}
    assert finished <= {name for name, _ in UPSTREAM}
    assert {"Success", "Cached", "Skipped", "Failed", "TriggerFailed", "TimedOut"} <= finished


@pytest.mark.parametrize(
    ("trigger", "skip", "cache_for", "wiring"),
    [(t, s, c, w) for (_, t), s, c, w in CASES],
    ids=[f"{n}-skip={s}-cache={c is not None}-{w}" for (n, _), s, c, w in CASES],
)
def test_a_worker_decides_a_followable_task_as_the_scheduler_would(
    trigger: Trigger, skip: bool, cache_for: dt.timedelta | None, wiring: str
) -> None:
    compiled, down, i = _chain(trigger, skip, cache_for, wiring)
    node = compiled.nodes[i]
    if not node.followable:
        return
    (edge, _), = node.in_edges
    for name, upstream in UPSTREAM:
        scheduler_runs = decide(down, {edge: upstream}) is None
        assert follows(upstream) is scheduler_runs, (
            f"upstream {name}: the worker would {'run' if follows(upstream) else 'not run'} "
            f"{down.name}, the scheduler would {'run' if scheduler_runs else 'not run'} it"
        )


def test_the_plan_marks_default_tasks_followable_so_the_check_above_is_not_empty() -> None:
    followable = []
    for (name, trigger), skip, cache_for, wiring in CASES:
        compiled, _, i = _chain(trigger, skip, cache_for, wiring)
        if compiled.nodes[i].followable:
            followable.append((name, skip, cache_for, wiring))
    assert ("all_successful", True, None, "data") in followable
    assert ("all_successful", True, None, "order") in followable
    # What the plan refuses: a cache lookup, another trigger, or no skip propagation.
    assert all(name == "all_successful" and skip and cache is None for name, skip, cache, _ in followable)


# -- groups: a task of several upstream tasks ----------------------------------------------------

PAIR_CASES = list(itertools.product(TRIGGERS, [True, False], ["data", "order", "nested"]))


def _two_upstream(trigger: Trigger, skip: bool, wiring: str) -> tuple[Plan, Task[Any, Any], int]:
    """A task ``down`` of two upstream tasks: both feed arguments, one only orders it, or
    both are in one list argument (``total([a, b])``)."""
    options: dict[str, Any] = {"name": "down", "trigger": trigger, "skip_on_upstream_skip": skip}
    with Flow("pair") as flow:
        a, b = source(), source()
        if wiring == "data":
            down = task(**options)(lambda x, y: x)(a, b)
        elif wiring == "order":
            down = task(**options)(lambda x: x)(a)
            flow.add_edge(b, down)
        else:
            down = task(**options)(lambda xs: xs)([a, b])
    assert isinstance(down, Task)
    compiled = plan(flow)
    return compiled, down, compiled.number(down)


@pytest.mark.parametrize(
    ("trigger", "skip", "wiring"),
    [(t, s, w) for (_, t), s, w in PAIR_CASES],
    ids=[f"{n}-skip={s}-{w}" for (n, _), s, w in PAIR_CASES],
)
def test_a_worker_decides_a_member_of_two_sources_as_the_scheduler_would(
    trigger: Trigger, skip: bool, wiring: str
) -> None:
    """A member runs iff every source ``follows`` (``attempt.member_inputs``); the
    scheduler, given both states, must say "run" exactly then."""
    compiled, down, i = _two_upstream(trigger, skip, wiring)
    node = compiled.nodes[i]
    if not node.followable:
        return
    edges = [edge for edge, _ in node.in_edges]
    ups = [j for _, j in node.in_edges]
    assert len(set(ups)) == 2
    for (name_a, state_a), (name_b, state_b) in itertools.product(UPSTREAM, UPSTREAM):
        by_task = {ups[0]: state_a, ups[1]: state_b}
        states = {edge: by_task[j] for edge, j in zip(edges, ups)}
        scheduler_runs = decide(down, states) is None
        sources = tuple((None, j) for j in by_task)
        worker_runs = member_inputs(FollowOn(i, down, {}, sources), by_task) is not None
        assert worker_runs is scheduler_runs, (
            f"upstream {name_a}, {name_b}: the worker would {'run' if worker_runs else 'not run'} "
            f"{down.name}, the scheduler would {'run' if scheduler_runs else 'not run'} it"
        )


def test_a_finished_mapped_upstream_lets_a_member_run_as_the_scheduler_would() -> None:
    """The scheduler sends a finished upstream task's result as a constant only when it
    lets the task run: for a mapped one, when each of its children ``follows``."""
    compiled, down, i = _chain(triggers.all_successful, True, None, "data")
    (edge, _), = compiled.nodes[i].in_edges
    for (name_a, a), (name_b, b) in itertools.product(UPSTREAM, UPSTREAM):
        mapped = Mapped("children done", map_states=[a, b])
        scheduler_runs = decide(down, {edge: mapped}) is None
        assert _upstream_follows(mapped) is scheduler_runs, (name_a, name_b)


def test_the_plan_marks_tasks_of_several_inputs_followable_and_not_timed_ones() -> None:
    followable = [
        (name, wiring) for (name, trigger), skip, wiring in PAIR_CASES
        if skip and _two_upstream(trigger, skip, wiring)[0].nodes[-1].followable
    ]
    assert {w for n, w in followable if n == "all_successful"} == {"data", "order", "nested"}
    assert all(n == "all_successful" for n, _ in followable)
    with Flow("timed") as flow:
        timed = task(timeout=5)(lambda x: x)(source())
    assert not plan(flow).nodes[plan(flow).number(timed)].followable  # a member has no deadline



def test_an_option_changed_after_a_run_is_planned_for_the_next(executor: Executor) -> None:
    """The plan is compiled once per flow version, and reads tasks' options (followable,
    names): a trigger, cache, timeout or name set on a task between two runs must rule the
    next run, not the plan's memory of it (the task would go on running as a follow-on in
    the worker, or be recorded under its old name)."""

    @task
    def first() -> int:
        return 1

    @task
    def second(x: int) -> int:
        return x + 1

    with Flow("changed") as flow:
        down = second(first())
    assert isinstance(down, Task)
    assert flow.run(executor=executor).result[down].result == 2
    down.trigger = triggers.all_failed
    assert type(flow.run(executor=executor).result[down]).__name__ == "TriggerFailed"
    down.trigger = triggers.all_successful
    down.cache_for = dt.timedelta(hours=1)
    flow.run(executor=executor)
    assert type(flow.run(executor=executor).result[down]).__name__ == "Cached"
    down.cache_for = None  # a follow-on again
    assert plan(flow).nodes[plan(flow).number(down)].followable
    # A task's name is planned too: the journal (show, the report) records the new one.
    down.name = "renamed"
    state = flow.run(executor=executor)
    recorded = default_journal().load(str(state.run_id)).tasks
    assert sorted(t.name for t in recorded) == ["first", "renamed"]


@pytest.mark.parametrize(("first", "second"), list(itertools.product(UPSTREAM, UPSTREAM)), ids=str)
@pytest.mark.parametrize("skip", [True, False])
def test_the_schedulers_shortcut_runs_only_what_decide_runs(
    first: tuple[str, State[Any]], second: tuple[str, State[Any]], skip: bool
) -> None:
    """``decide.runs_by_default`` (the scheduler skips ``decide`` when it says True) says
    True only where ``decide`` runs the task, for every pair of upstream states; and for the
    plain successes it is meant for, it does say True."""
    with Flow("shortcut") as flow:
        a, b = source(), source()
        down = task(name="down", skip_on_upstream_skip=skip)(lambda x: x)(a)
        flow.add_edge(b, down)
    assert isinstance(down, Task) and isinstance(a, Task)
    states = {edge: (first[1] if edge.upstream_task is a else second[1]) for edge in flow.edges_to(down)}
    shortcut = runs_by_default(down, states.values())
    assert not shortcut or decide(down, states) is None
    assert shortcut == all(type(s) in PLAIN_SUCCESS for s in states.values())
