"""The follow-on rule: where a worker decides a chain link, it decides as the scheduler would.

A task the plan marks ``followable`` may be run by a worker right after its upstream task,
in the same round trip (``TaskRun.then``). The worker then runs it iff the upstream task
ended in a state that ``attempt.follows``; the scheduler would run it iff ``decide.decide``
(skip propagation, then the trigger) says "run" (None). The two must agree for every task
the plan marks followable, whatever its trigger, skip setting and cache, and whatever
finished state its upstream task ended in. Checked here against the real functions, for
every combination: a new trigger, state class or plan rule is covered without a change.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections.abc import Callable
from typing import Any

import pytest

from taskloom import Flow, Task, task, triggers
from taskloom.attempt import follows
from taskloom.plan import Plan, plan
from taskloom.decide import decide
from taskloom.states import Failed, Finished, State, Success, all_classes
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
    return compiled, down, compiled.index[down]


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
