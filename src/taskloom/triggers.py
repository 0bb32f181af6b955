"""Triggers: whether a task runs, decided from the states of its upstream tasks.

A trigger is any callable ``(upstream_states: Mapping[Edge, State]) -> bool`` (see
``Trigger``). The engine calls it once every upstream task is finished, in the parent
process. Returning False, or raising ``signals.TRIGGERFAIL``, ends the task
``TriggerFailed``; raising another signal sets that state (``manual_only`` raises
``PAUSE``). Returning anything but a bool is an error of the trigger, reported as
``TriggerFailed``.

A state that reaches a task through two edges counts once. A mapped upstream task counts
child by child: its ``Mapped`` state (a ``Success``) stands for its children's states, and
every trigger here looks at those (``states_of`` gives them to triggers of your own).

    @task(trigger=triggers.any_failed)
    def alert() -> None: ...

    @task(trigger=triggers.some_successful(at_least=0.5))
    def quorum() -> None: ...
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from . import signals
from .context import current as _current_context
from .edges import Edge
from .states import PLAIN_SUCCESS, Mapped, State

__all__ = [
    "Trigger",
    "all_failed",
    "all_finished",
    "all_successful",
    "always_run",
    "any_failed",
    "any_successful",
    "manual_only",
    "not_all_skipped",
    "some_failed",
    "some_successful",
    "states_of",
]


class Trigger(Protocol):
    """What a trigger is: a callable of the upstream states that returns a bool."""

    def __call__(self, upstream_states: Mapping[Edge, State[Any]], /) -> bool: ...


def states_of(upstream_states: Mapping[Edge, State[Any]], /) -> list[State[Any]]:
    """The distinct upstream states, each ``Mapped`` one replaced by its children's states.

    States hash by identity: one upstream reached through two edges counts once.
    """
    found: dict[State[Any], None] = {}
    for state in upstream_states.values():
        if isinstance(state, Mapped):
            found.update(dict.fromkeys(state.map_states))
        else:
            found[state] = None
    return list(found)


def _fail(name: str, why: str) -> signals.TRIGGERFAIL:
    return signals.TRIGGERFAIL(f'Trigger was "{name}" but {why}.')


def all_successful(upstream_states: Mapping[Edge, State[Any]], /) -> bool:
    """Run when every upstream task succeeded (``Skipped`` and ``Cached`` count). The default."""
    states = states_of(upstream_states)
    if PLAIN_SUCCESS.issuperset(map(type, states)):  # (no call a state: a map's children)
        return True
    for state in states:
        if not state.is_successful():
            raise _fail("all_successful", "some of the upstream tasks failed")
    return True


def all_failed(upstream_states: Mapping[Edge, State[Any]], /) -> bool:
    """Run when every upstream task failed (``TriggerFailed`` and ``TimedOut`` count)."""
    if all(state.is_failed() for state in states_of(upstream_states)):
        return True
    raise _fail("all_failed", "some of the upstream tasks succeeded")


def any_successful(upstream_states: Mapping[Edge, State[Any]], /) -> bool:
    """Run when at least one upstream task succeeded, or there are none."""
    states = states_of(upstream_states)
    if not states or any(s.is_successful() for s in states):
        return True
    raise _fail("any_successful", "none of the upstream tasks succeeded")


def any_failed(upstream_states: Mapping[Edge, State[Any]], /) -> bool:
    """Run when at least one upstream task failed, or there are none."""
    states = states_of(upstream_states)
    if not states or any(s.is_failed() for s in states):
        return True
    raise _fail("any_failed", "none of the upstream tasks failed")


def all_finished(upstream_states: Mapping[Edge, State[Any]], /) -> bool:
    """Run whatever the upstream tasks did, once they are finished (cleanup tasks)."""
    if all(state.is_finished() for state in states_of(upstream_states)):
        return True
    raise _fail("all_finished", "some of the upstream tasks were not finished")


#: Same as ``all_finished``.
always_run = all_finished


def manual_only(upstream_states: Mapping[Edge, State[Any]], /) -> bool:
    """Pause the task until a person resumes it, whatever its upstream tasks did.

    The task ends ``Paused`` with its inputs stored on the state. Resume it with a
    ``Resume`` state (see ``Flow.run``); a resumed task passes this trigger.
    """
    if _current_context().get("resume"):
        return True
    raise signals.PAUSE('Trigger function is "manual_only"')


def not_all_skipped(upstream_states: Mapping[Edge, State[Any]], /) -> bool:
    """Run when every upstream task succeeded and not all of them were skipped.

    When all were skipped (or there are none) the task is skipped too. Pair it with
    ``skip_on_upstream_skip=False``, or a skipped upstream skips the task before the
    trigger runs.
    """
    distinct = states_of(upstream_states)
    if all(state.is_skipped() for state in distinct):
        raise signals.SKIP("All upstreams were skipped", result=None)
    if all(state.is_successful() for state in distinct):
        return True
    raise _fail("not_all_skipped", "some of the upstream tasks failed")


def _check_bound(name: str, label: str, bound: object) -> float | None:
    """``bound`` if it makes sense as a count or a fraction, else ValueError naming it."""
    if bound is None:
        return None
    if isinstance(bound, bool) or not isinstance(bound, (int, float)):
        raise ValueError(
            f"{name}({label}={bound!r}): a bound is a number, a count (2) or a fraction "
            f"of the upstream tasks (0.5), not a {type(bound).__name__}"
        )
    if not math.isfinite(bound) or bound < 0:
        raise ValueError(f"{name}({label}={bound!r}): a bound must be a count or a fraction >= 0")
    if bound >= 1 and bound != int(bound):
        raise ValueError(
            f"{name}({label}={bound!r}): a bound below 1 is a fraction of the upstream tasks, "
            "one of 1 or more a count of them, so it must be a whole number"
        )
    return bound


def _threshold(
    name: str,
    predicate: Callable[[State[Any]], bool],
    at_least: float | None,
    at_most: float | None,
) -> Trigger:
    low = _check_bound(name, "at_least", at_least)
    high = _check_bound(name, "at_most", at_most)
    # A fraction and a count can only be compared against a number of upstream tasks.
    if low is not None and high is not None and (low < 1) == (high < 1) and low > high:
        raise ValueError(
            f"{name}(at_least={at_least!r}, at_most={at_most!r}): at_least is above at_most, "
            "so the trigger could never pass"
        )

    def trigger(upstream_states: Mapping[Edge, State[Any]], /) -> bool:
        distinct = states_of(upstream_states)
        if not distinct:  # as Prefect 1.4.1: no upstream state, nothing to count
            return True
        total = len(distinct)
        hits = sum(1 for state in distinct if predicate(state))

        def limit(bound: float | None, default: float) -> float:
            if bound is None:
                return default
            return bound * total if bound < 1 else bound

        if limit(low, 0) <= hits <= limit(high, total):
            return True
        raise _fail(name, "thresholds were not met")

    trigger.__name__ = trigger.__qualname__ = name
    return trigger


def some_successful(at_least: float | None = None, at_most: float | None = None) -> Trigger:
    """Run when the number of successful upstream tasks is within the bounds.

    A bound below 1 is a fraction of the upstream tasks: ``some_successful(at_least=0.5)``
    needs half of them; one of 1 or more is a count. Bounds are inclusive. With no
    upstream task the trigger passes (as in Prefect 1.4.1).

    Raises:
        ValueError: a bound that makes no sense (negative, not a number, a count that is
            not whole such as 1.5, ``at_least`` above ``at_most``), when the trigger is built.
    """
    return _threshold("some_successful", State.is_successful, at_least, at_most)


def some_failed(at_least: float | None = None, at_most: float | None = None) -> Trigger:
    """Run when the number of failed upstream tasks is within the bounds (see ``some_successful``)."""
    return _threshold("some_failed", State.is_failed, at_least, at_most)
