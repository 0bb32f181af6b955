"""States: the hierarchy, the predicates, equality and pickling (API.md, "States")."""

from __future__ import annotations

import datetime as dt
import pickle
from typing import Any

import cloudpickle
import pytest

from taskloom.states import (
    Cached,
    Failed,
    Finished,
    Paused,
    Pending,
    Resume,
    Retrying,
    Running,
    Scheduled,
    Skipped,
    State,
    Success,
    TimedOut,
    TriggerFailed,
)

ALL_STATES: list[type[State[Any]]] = [
    State,
    Pending,
    Scheduled,
    Retrying,
    Paused,
    Resume,
    Running,
    Finished,
    Success,
    Cached,
    Skipped,
    Failed,
    TriggerFailed,
    TimedOut,
]

PARENT: dict[type[State[Any]], type[State[Any]]] = {
    Pending: State,
    Scheduled: Pending,
    Retrying: Scheduled,
    Paused: Scheduled,
    Resume: Scheduled,
    Running: State,
    Finished: State,
    Success: Finished,
    Cached: Success,
    Skipped: Success,
    Failed: Finished,
    TriggerFailed: Failed,
    TimedOut: Failed,
}


def _ancestors(cls: type[State[Any]]) -> set[type[State[Any]]]:
    found = {cls}
    while cls in PARENT:
        cls = PARENT[cls]
        found.add(cls)
    return found


@pytest.mark.parametrize("cls", ALL_STATES, ids=lambda c: c.__name__)
def test_hierarchy_matches_prefect_core(cls: type[State[Any]]) -> None:
    """issubclass(cls, other) holds exactly for the ancestors in Prefect Core's tree."""
    for other in ALL_STATES:
        assert issubclass(cls, other) is (other in _ancestors(cls)), (cls, other)


# predicate -> the classes for which it is true (every other class: false)
TRUE_FOR: dict[str, set[type[State[Any]]]] = {
    "is_pending": {Pending, Scheduled, Retrying, Paused, Resume},
    "is_running": {Running},
    "is_finished": {Finished, Success, Cached, Skipped, Failed, TriggerFailed, TimedOut},
    "is_successful": {Success, Cached, Skipped},
    "is_failed": {Failed, TriggerFailed, TimedOut},
    "is_skipped": {Skipped},
    "is_cached": {Cached},
    "is_retrying": {Retrying},
    "is_paused": {Paused},
}


@pytest.mark.parametrize("predicate", list(TRUE_FOR))
@pytest.mark.parametrize("cls", ALL_STATES, ids=lambda c: c.__name__)
def test_predicates(cls: type[State[Any]], predicate: str) -> None:
    state = cls()
    answer = getattr(state, predicate)()
    assert answer is (cls in TRUE_FOR[predicate]), f"{cls.__name__}().{predicate}()"


@pytest.mark.parametrize("cls", ALL_STATES, ids=lambda c: c.__name__)
def test_every_state_has_message_result_and_cached_inputs(cls: type[State[Any]]) -> None:
    bare = cls()
    assert bare.message is None
    assert bare.result is None
    assert not bare.cached_inputs
    full = cls("why", 7, cached_inputs={"x": 1})
    assert full.message == "why"
    assert full.result == 7
    assert full.cached_inputs == {"x": 1}


def test_equality_is_by_type_and_result_not_message() -> None:
    assert Success(result=1) == Success(result=1, message="other words")
    assert Success("a", 1) == Success("b", 1)
    assert Success(result=1) != Success(result=2)
    assert Failed(result=1) != Success(result=1)
    # A subclass is not equal to its parent, in either direction.
    assert Success(result=1) != Cached(result=1)
    assert Cached(result=1) != Success(result=1)
    assert Failed() != TriggerFailed()
    assert Pending() == Pending()
    assert Pending() != Scheduled()
    assert Success(result=[1, 2]) == Success(result=[1, 2])
    assert Success(result=1) != 1


def test_states_hash_by_identity_so_equal_states_are_distinct_keys() -> None:
    a, b = Success(result=1), Success(result=1)
    assert a == b
    assert len({a, b}) == 2
    assert {a: "a", b: "b"}[a] == "a"


def _roundtrips(state: State[Any]) -> list[State[Any]]:
    return [pickle.loads(pickle.dumps(state)), cloudpickle.loads(cloudpickle.dumps(state))]


@pytest.mark.parametrize("cls", ALL_STATES, ids=lambda c: c.__name__)
def test_every_state_pickles(cls: type[State[Any]]) -> None:
    state = cls("msg", {"value": [1, 2]}, cached_inputs={"x": (1, "a")})
    for copy in _roundtrips(state):
        assert type(copy) is cls
        assert copy == state
        assert copy.message == "msg"
        assert copy.result == {"value": [1, 2]}
        assert copy.cached_inputs == {"x": (1, "a")}


def test_pickling_keeps_the_extra_fields() -> None:
    when = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)
    retrying = Retrying("again", start_time=when, run_count=3, cached_inputs={"x": 2})
    paused = Paused("wait", cached_inputs={"y": 5})
    cached = Cached(
        "hit",
        42,
        cached_result_expiration=when,
        hashed_inputs={"x": "abc"},
        cached_parameters={"p": 1},
    )
    for copy in _roundtrips(retrying):
        assert isinstance(copy, Retrying)
        assert copy.start_time == when and copy.run_count == 3
        assert copy.cached_inputs == {"x": 2}
    for copy in _roundtrips(paused):
        assert isinstance(copy, Paused)
        assert copy.cached_inputs == {"y": 5}
    for copy in _roundtrips(cached):
        assert isinstance(copy, Cached)
        assert copy.result == 42
        assert copy.cached_result_expiration == when
        assert copy.hashed_inputs == {"x": "abc"}
        assert copy.cached_parameters == {"p": 1}


def test_a_failed_state_holding_an_exception_pickles() -> None:
    state = Failed("Error during execution of task: ValueError('boom')", ValueError("boom"))
    for copy in _roundtrips(state):
        assert isinstance(copy, Failed)
        assert isinstance(copy.result, ValueError)
        assert copy.result.args == ("boom",)
