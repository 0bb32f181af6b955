"""States: the hierarchy, the predicates, equality and pickling (API.md, "States")."""

from __future__ import annotations

import datetime as dt
import pickle
import threading
from typing import Any

import cloudpickle
import pytest

from taskloom import Flow, task, triggers
from taskloom.executors import Executor
from taskloom.resume import resume
from taskloom.states import (
    Cached,
    Failed,
    Finished,
    Mapped,
    Paused,
    Pending,
    Resume,
    Retrying,
    Running,
    Scheduled,
    Skipped,
    StandInError,
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


# -- repr and context (Prefect's) ----------------------------------------------------------------


@pytest.mark.parametrize("cls", ALL_STATES, ids=lambda c: c.__name__)
def test_repr_is_prefects_and_never_shows_the_result(cls: type[State[Any]]) -> None:
    assert repr(cls("Task run succeeded.", {"secret": "hunter2"})) == f'<{cls.__name__}: "Task run succeeded.">'
    assert repr(cls(result="hunter2")) == f"<{cls.__name__}>"


@pytest.mark.parametrize("cls", ALL_STATES, ids=lambda c: c.__name__)
def test_every_state_keeps_a_context(cls: type[State[Any]]) -> None:
    assert cls().context == {}
    state = cls("msg", 1, context={"tags": ["db"], "task_run_count": 2})
    assert state.context == {"tags": ["db"], "task_run_count": 2}
    for copy in _roundtrips(state):
        assert copy.context == {"tags": ["db"], "task_run_count": 2}
    changed = state.replace(context={"task_run_name": "load-users"})
    assert changed.context == {"task_run_name": "load-users"}
    assert state.context["tags"] == ["db"]  # a copy was changed, not the state
    assert state == cls("other", 1)  # the context does not count for equality, as in Prefect
    with pytest.raises(TypeError):
        state.context["tags"] = []  # type: ignore[index]  # read-only is the test


def test_a_state_pickled_before_it_had_a_context_still_loads() -> None:
    # the cache store keeps pickled Cached states: one written by an older taskloom has
    # every value but the context
    cached = Cached("hit", 42, hashed_inputs={"x": "abc"})
    older = cached.__getstate__()[:-1]
    loaded = Cached.__new__(Cached)
    loaded.__setstate__(older)
    assert loaded.context == {} and loaded.result == 42 and loaded.hashed_inputs == {"x": "abc"}


# -- exceptions that cannot be pickled ------------------------------------------------------------


class HoldsLock(Exception):
    """Cannot be pickled: a lock among its attributes."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.lock = threading.Lock()


# (An exception whose ``__init__`` unpickling cannot call is another such case, but not
# once Dask distributed is imported: it patches exception pickling, so no test uses one.)
def test_a_state_whose_exception_cannot_be_pickled_still_pickles() -> None:
    error = HoldsLock("holding a lock")
    failed = Failed(f"Error during execution of task: {error!r}", error, cached_inputs={"e": error})
    mapped = Mapped("Ready to proceed with mapping.", [1, error], map_states=[Success(result=1), failed])
    for copy in [*_roundtrips(failed), *_roundtrips(mapped)]:
        stand = copy.result if isinstance(copy, Failed) else copy.result[1]
        assert isinstance(stand, StandInError) and isinstance(stand, Exception)
        assert stand.type_name == f"{__name__}.{type(error).__qualname__}"
        assert stand.original_repr == repr(error)
        assert stand.text == str(error)
        assert stand.reason  # why it could not be pickled
    assert failed.result is error  # the state itself is unchanged
    copy = pickle.loads(pickle.dumps(failed))
    assert isinstance(copy.cached_inputs, dict) and isinstance(copy.cached_inputs["e"], StandInError)
    assert copy.message == failed.message


@task
def raises_unpicklable(code: int) -> int:
    raise HoldsLock(f"holding a lock {code}")


@task(trigger=triggers.manual_only)
def report_error(error: object) -> str:
    return f"{type(error).__name__}: {getattr(error, 'original_repr', repr(error))}"


def test_an_unpicklable_exception_on_every_executor_and_a_resume_from_the_journal(
    executor: Executor,
) -> None:
    with Flow("unpicklable-exception") as flow:
        failing = raises_unpicklable(7)
        waiting = report_error(failing)  # paused, its input the exception: journaled
    state = flow.run(executor=executor)
    assert isinstance(state, Paused), state
    failed = state.result[failing]
    assert isinstance(failed, Failed) and "HoldsLock" in str(failed.message)
    copy = pickle.loads(pickle.dumps(failed))  # a process executor's state, or the local one's
    assert getattr(copy.result, "original_repr", None) == "HoldsLock('holding a lock 7')"
    assert getattr(copy.result, "type_name", "").endswith("HoldsLock")

    resumed = resume(state.run_id or "", flow=flow, executor=executor)
    # It waits for the failed task, which runs again (as in a whole run), and is fed the
    # exception of that attempt: from a worker process a RemoteTaskError with its repr.
    assert str(resumed.result[waiting].result).endswith(": HoldsLock('holding a lock 7')")
    assert isinstance(resumed.result[failing], Failed)  # it ran again, and failed again
