"""The decision of one task: run it, or what state it ends in without running.

Once every upstream task of a task is finished, the scheduler decides it (``decide``):

1. skip propagation: with ``skip_on_upstream_skip`` (the default), a skipped upstream task
   skips it (``Skipped``), unless an upstream task failed;
2. its trigger (``taskloom.triggers``), given the upstream states by edge: True runs it,
   False (or ``TRIGGERFAIL``) ends it ``TriggerFailed``, another signal ends it in that
   signal's state (``manual_only`` raises ``PAUSE``), and anything else is an error of the
   trigger, reported as ``TriggerFailed``.

Then, in the scheduler, the output cache may still end it ``Cached`` (``caching.lookup``).
The decision is a function of the task and its upstream states only (and whether the task
is being resumed), so it can be checked on its own: ``tests/test_follow_on.py`` checks that
a worker running a chain of follow-ons (``attempt.follows``) decides as this does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from .context import context as _user_context
from .signals import TaskloomSignal
from .states import PLAIN_SUCCESS, Mapped, Skipped, State, Success, TriggerFailed
from .triggers import all_successful

if TYPE_CHECKING:
    from .edges import Edge
    from .task import Task

__all__ = ["PLAIN_SUCCESS", "SKIP_MESSAGE", "decide", "propagated_skip", "runs_by_default"]

SKIP_MESSAGE = (
    "Upstream task was skipped; if this was not the intended behavior, "
    "consider changing `skip_on_upstream_skip=False` for this task."
)


def runs_by_default(task: Task[Any, Any], upstream_states: Iterable[State[Any]]) -> bool:
    """Whether ``decide`` says "run" for ``task`` without calling anything: its trigger is
    the default ``all_successful`` and every upstream state is in ``PLAIN_SUCCESS`` (then
    skip propagation finds no skip, and the trigger passes, resumed or not). False means
    only "ask ``decide``". The scheduler's shortcut for the common case.

    >>> from taskloom import task
    >>> runs_by_default(task(lambda: 1), [Success(result=1)])
    True
    >>> runs_by_default(task(lambda: 1), [Skipped()])
    False
    """
    if task.trigger is not all_successful:
        return False
    for state in upstream_states:
        if type(state) not in PLAIN_SUCCESS:
            return False
    return True


def decide(
    task: Task[Any, Any], upstream_states: Mapping[Edge, State[Any]], *, resume: bool = False
) -> State[Any] | None:
    """What becomes of ``task`` once its upstream tasks are finished: None to run it, or
    the state it ends in without running.

    First skip propagation (with ``skip_on_upstream_skip``, a skipped upstream task skips
    it, unless one failed), then its trigger (``resume``: as for a resumed task, with
    ``context.resume`` set). A function of its arguments only; the output cache is looked
    up afterwards, by the scheduler.
    """
    skipped = propagated_skip(task, upstream_states)
    if skipped is not None:
        return skipped
    if resume:
        with _user_context(resume=True, task_name=task.name):
            return _check_trigger(task, upstream_states)
    return _check_trigger(task, upstream_states)


def propagated_skip(
    task: Task[Any, Any], upstream_states: Mapping[Edge, State[Any]]
) -> State[Any] | None:
    """Skip propagation: with ``skip_on_upstream_skip``, ``Skipped`` when an upstream task
    was skipped and none failed; else None. A mapped upstream task reached through an
    unmapped edge (a reduce) counts child by child."""
    if not task.skip_on_upstream_skip:
        return None
    skipped = failed = False
    for edge, state in upstream_states.items():
        if isinstance(state, Mapped) and not edge.mapped:
            states: Iterable[State[Any]] = state.map_states
            if PLAIN_SUCCESS.issuperset(map(type, states)):  # (no call a child: most maps)
                continue
        else:
            states = (state,)
        for s in states:
            if s.is_skipped():
                skipped = True
            elif s.is_failed():
                failed = True
    if skipped and not failed:
        return Skipped(SKIP_MESSAGE)
    return None


def _check_trigger(task: Task[Any, Any], upstream_states: Mapping[Edge, State[Any]]) -> State[Any] | None:
    """None when the trigger passes, else the state the task ends in."""
    try:
        # `object`: a trigger of untyped code may return anything, and "yes" must not pass.
        passed: object = task.trigger(upstream_states)
    except TaskloomSignal as signal:
        return signal.to_state()
    except Exception as error:
        return TriggerFailed(f"Unexpected error while checking task trigger: {error!r}", error)
    if passed is True:
        return None
    if passed is False:
        return TriggerFailed("Trigger failed")
    name = getattr(task.trigger, "__name__", repr(task.trigger))
    return TriggerFailed(
        f"Trigger {name!r} of task {task.name!r} returned {passed!r} "
        f"({type(passed).__name__}), not a bool: a trigger must return True or False"
    )
