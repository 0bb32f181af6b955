"""Type tests: user-written plug-ins against taskloom's Protocols. Only type-checked.

Triggers, cache validators, executors and cache stores are Protocols: any object of the
right shape works, no base class needed. ``assert_type`` lines and plain assignments must be
accepted; a line ending in ``# type: ignore[code]`` must be rejected with that code.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from typing import Any, assert_type

from taskloom import Edge, Flow, cache_validators, task, triggers
from taskloom.caching import CacheStore, MemoryCacheStore, SQLiteCacheStore
from taskloom.executors import (
    DaskExecutor,
    Executor,
    ExecutorRun,
    LocalExecutor,
    LokyExecutor,
    TaskResult,
    TaskRun,
)
from taskloom.executors.base import Timings
from taskloom.flow import FlowResult
from taskloom.states import Cached, State
from taskloom.triggers import Trigger

# -- triggers --------------------------------------------------------------------------------


def half_successful(upstream_states: Mapping[Edge, State[Any]]) -> bool:
    states = list(upstream_states.values())
    return 2 * sum(s.is_successful() for s in states) >= len(states)


class AtLeast:
    """A trigger object with configuration."""

    def __init__(self, count: int) -> None:
        self.count = count

    def __call__(self, upstream_states: Mapping[Edge, State[Any]], /) -> bool:
        return sum(s.is_successful() for s in upstream_states.values()) >= self.count


def counts_states(states: Sequence[State[Any]]) -> bool:
    return bool(states)


def says_yes(upstream_states: Mapping[Edge, State[Any]]) -> str:
    return "yes"


trigger: Trigger = half_successful
trigger = AtLeast(2)
trigger = triggers.all_successful
trigger = triggers.some_failed(at_most=0.5)
trigger = lambda upstream_states: True
trigger = counts_states  # type: ignore[assignment]  # takes a sequence, not the mapping
trigger = says_yes  # type: ignore[assignment]  # returns a str, not a bool
assert_type(trigger({}), bool)

# -- cache validators ------------------------------------------------------------------------


def same_day(
    state: Cached[Any], inputs: Mapping[str, Any], parameters: Mapping[str, Any]
) -> bool:
    expiration = state.cached_result_expiration
    return expiration is not None and parameters.get("day") == expiration.date()


def inputs_only(state: Cached[Any], inputs: Mapping[str, Any]) -> bool:
    return bool(inputs)


validator: cache_validators.CacheValidator = same_day
validator = cache_validators.all_inputs
validator = cache_validators.partial_parameters_only(validate_on=["day"])
validator = inputs_only  # type: ignore[assignment]  # missing the parameters argument


@task(trigger=AtLeast(1), cache_for=timedelta(days=1), cache_validator=same_day)
def daily(day: str) -> str:
    return day


@task(trigger=counts_states)  # type: ignore[call-overload, untyped-decorator]
def wrong_trigger(day: str) -> str:
    return day


# -- executors -------------------------------------------------------------------------------


class InlineExecutor:
    """Runs every submitted task run at once, in order (a minimal test double)."""

    def begin(self, run_context: Mapping[str, Any]) -> InlineRun:
        return InlineRun(run_context)


class InlineRun:
    runs_chains = True

    def __init__(self, run_context: Mapping[str, Any]) -> None:
        self._done: list[TaskResult] = []
        self._context = run_context

    def timings(self) -> Timings | None:
        return None

    def submit(self, runs: Sequence[TaskRun]) -> None:
        from taskloom.attempt import run_chain

        for run in runs:
            self._done.extend(run_chain(run, self._context, "inline"))

    def collect(self, timeout: float | None) -> list[TaskResult]:
        done, self._done = self._done, []
        return done

    def end(self) -> None:
        self._done.clear()


class NoCollect:
    runs_chains = False

    def submit(self, runs: Sequence[TaskRun]) -> None: ...
    def end(self) -> None: ...


class WrongCollect(NoCollect):
    def collect(self, timeout: float | None) -> list[State[Any]]:
        return []


class BeginsNoCollect:
    def begin(self, run_context: Mapping[str, Any]) -> NoCollect:
        return NoCollect()


class BeginsWrongCollect:
    def begin(self, run_context: Mapping[str, Any]) -> WrongCollect:
        return WrongCollect()


class BeginsNothing:
    """0.1's contract: begin() returned nothing and the executor kept the run itself."""

    def begin(self, run_context: Mapping[str, Any]) -> None: ...


executor: Executor = InlineExecutor()
executor = LocalExecutor()
executor = LokyExecutor(max_workers=2)
executor = DaskExecutor()
executor = BeginsNoCollect()  # type: ignore[assignment]  # collect() is missing
executor = BeginsWrongCollect()  # type: ignore[assignment]  # collect() returns bare states
executor = BeginsNothing()  # type: ignore[assignment]  # begin() must return the run
run: ExecutorRun = InlineRun({})

# -- cache stores ----------------------------------------------------------------------------


class DictStore:
    def __init__(self) -> None:
        self._entries: dict[str, list[Cached[Any]]] = {}

    def get(self, key: str) -> list[Cached[Any]]:
        return list(self._entries.get(key, []))

    def put(self, key: str, state: Cached[Any]) -> None:
        self._entries.setdefault(key, []).insert(0, state)

    def keys(self) -> list[str]:
        return list(self._entries)

    def clear(self, key: str | None = None) -> None:
        if key is None:
            self._entries.clear()
        else:
            self._entries.pop(key, None)


class ClearAllOnly(DictStore):
    def clear(self) -> None:  # type: ignore[override]
        super().clear()


store: CacheStore = DictStore()
store = MemoryCacheStore()
store = SQLiteCacheStore("cache.sqlite3")
store = ClearAllOnly()  # type: ignore[assignment]  # clear() takes no key

# -- all of them in one run ------------------------------------------------------------------

with Flow("plug-ins") as flow:
    daily("monday")

assert_type(flow.run(executor=InlineExecutor(), cache_store=DictStore()), State[FlowResult])
flow.run(executor=NoCollect())  # type: ignore[arg-type]
flow.run(cache_store=ClearAllOnly())  # type: ignore[arg-type]
