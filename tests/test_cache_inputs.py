"""What the output cache compares and stores, on every executor: inputs of every kind
(enums, datetimes, dataclasses, plain objects) compared by value, an input that cannot be
hashed, a cache validator that raises, a result that cannot be pickled."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import logging
import uuid
from collections.abc import Callable, Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from taskloom import Flow, Parameter, cache_validators, task
from taskloom.caching import CacheStore, MemoryCacheStore, SQLiteCacheStore
from taskloom.executors import Executor
from taskloom.flow import FlowResult
from taskloom.states import Cached, State

from ._helpers import kind, lines, record

HOUR = dt.timedelta(hours=1)
UTC = dt.timezone.utc


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Level(enum.IntEnum):
    LOW = 1
    HIGH = 2


@dataclasses.dataclass
class Point:
    x: int
    tags: set[str]


@dataclasses.dataclass
class OtherPoint:
    x: int
    tags: set[str]


class Box:
    """A plain object: compared through its ``__dict__``."""

    def __init__(self, size: int, contents: list[Any]) -> None:
        self.size = size
        self.contents = contents


#: For each kind of input: a value, a distinct but equal value, and values that differ.
KINDS: dict[str, tuple[Callable[[], Any], Callable[[], Any], list[Callable[[], Any]]]] = {
    "enum": (
        lambda: [Colour.RED, Level.LOW],
        lambda: [Colour("red"), Level(1)],
        [lambda: [Colour.BLUE, Level.LOW], lambda: [Colour.RED, 1], lambda: ["red", Level.LOW]],
    ),
    "datetime": (
        lambda: [dt.datetime(2024, 5, 1, 12, tzinfo=UTC), dt.date(2024, 5, 1), dt.timedelta(hours=1)],
        lambda: [dt.datetime(2024, 5, 1, 12, 0, 0, 0, UTC), dt.date(2024, 5, 1), dt.timedelta(minutes=60)],
        [
            lambda: [dt.datetime(2024, 5, 1, 12, 0, 0, 1, UTC), dt.date(2024, 5, 1), dt.timedelta(hours=1)],
            lambda: [dt.datetime(2024, 5, 1, 12), dt.date(2024, 5, 1), dt.timedelta(hours=1)],  # naive
            lambda: [dt.datetime(2024, 5, 1, 12, tzinfo=UTC), dt.date(2024, 5, 2), dt.timedelta(hours=1)],
        ],
    ),
    "dataclass": (
        lambda: Point(1, {"a", "b", "c"}),
        lambda: Point(1, {"c", "b", "a"}),
        [lambda: Point(2, {"a", "b", "c"}), lambda: Point(1, {"a"}), lambda: OtherPoint(1, {"a", "b", "c"})],
    ),
    "plain-object": (
        lambda: Box(3, [Decimal("1.10"), uuid.UUID(int=7), Path("/data/in.csv")]),
        lambda: Box(3, [Decimal("1.10"), uuid.UUID(int=7), Path("/data/in.csv")]),
        [
            lambda: Box(4, [Decimal("1.10"), uuid.UUID(int=7), Path("/data/in.csv")]),
            lambda: Box(3, [Decimal("1.1"), uuid.UUID(int=7), Path("/data/in.csv")]),
            lambda: Box(3, [Decimal("1.10"), uuid.UUID(int=8), Path("/data/in.csv")]),
        ],
    ),
}


@task
def make(kind_: str, variant: int) -> Any:
    same, equal, different = KINDS[kind_]
    return (same, equal, *different)[variant]()


@task(cache_for=HOUR, cache_validator=cache_validators.all_inputs)
def use(value: Any, log: str) -> str:
    record(log, "computed")
    return type(value).__name__


@pytest.mark.parametrize("kind_", list(KINDS))
def test_inputs_of_every_kind_are_compared_by_value(
    tmp_path: Path, executor: Executor, kind_: str
) -> None:
    """The input reaches the cached task from an upstream task (from a worker, on a pool):
    an equal value built anew hits, each value that differs misses."""
    log = str(tmp_path / "log")
    store = MemoryCacheStore()
    with Flow(f"kinds-{kind_}") as flow:
        used = use(make(kind_, Parameter("variant", type=int)), log)
    outcomes = []
    for index in range(2 + len(KINDS[kind_][2])):
        state = flow.run({"variant": index}, executor=executor, cache_store=store)
        assert state.is_successful(), state.result
        outcomes.append(kind(state.result[used]))
    assert outcomes == ["Success", "Cached"] + ["Success"] * len(KINDS[kind_][2])


def _run_twice_uncached(
    flow: Flow,
    executor: Executor,
    store: CacheStore,
    caplog: pytest.LogCaptureFixture,
    log: str,
    warning: str,
) -> list[State[FlowResult]]:
    """Run ``flow`` twice: its one cached task computes both times (nothing was stored),
    and each run logs ``warning`` (the start of the message) once, saying why."""
    with caplog.at_level(logging.WARNING, logger="taskloom.caching"):
        states = [flow.run(executor=executor, cache_store=store) for _ in range(2)]
    assert [kind(state) for state in states] == ["Success", "Success"]
    assert all(type(s).__name__ == "Success" for state in states for s in state.result.values())
    assert lines(log) == ["computed", "computed"]
    assert store.keys() == []
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2 and all(m.startswith(warning) for m in said), said
    return states


@task(cache_for=HOUR)
def apply(function: Callable[[int], int], log: str) -> int:
    record(log, "computed")
    return function(2)


def test_an_input_that_cannot_be_hashed_is_run_and_not_cached(
    tmp_path: Path, executor: Executor, caplog: pytest.LogCaptureFixture
) -> None:
    """A lambda travels to a worker (cloudpickle) but has no stable hash (plain pickle
    refuses it): the task runs, its result is not cached, and the log says why."""
    log = str(tmp_path / "log")
    store = MemoryCacheStore()
    with Flow("unhashable") as flow:
        applied = apply(lambda x: x * 21, log)
    states = _run_twice_uncached(
        flow, executor, store, caplog, log,
        "Task 'apply': result not cached, an input cannot be hashed: cannot hash a value of type function",
    )  # fmt: skip
    assert [s.result[applied].result for s in states] == [42, 42]


def _raising_validator(state: Cached[Any], inputs: Mapping[str, Any], parameters: Mapping[str, Any], /) -> bool:
    raise LookupError("the validator's own bug")


@task(cache_for=HOUR, cache_validator=_raising_validator)
def guarded(log: str) -> int:
    record(log, "computed")
    return 1


@task
def after(x: int) -> int:
    return x + 1


def test_a_cache_validator_that_raises_fails_the_task(tmp_path: Path, executor: Executor) -> None:
    """With a cached candidate, the validator is asked and raises: the task fails with
    the error (it does not run, nor is it served the candidate), and downstream tasks'
    triggers fail."""
    log = str(tmp_path / "log")
    store = MemoryCacheStore()
    with Flow("raising-validator") as flow:
        g = guarded(log)
        a = after(g)
    first = flow.run(executor=executor, cache_store=store)
    assert kind(first.result[g]) == "Success"  # no candidate yet: the validator is not asked
    second = flow.run(executor=executor, cache_store=store)
    failed = second.result[g]
    assert kind(failed) == "Failed" and kind(second) == "Failed"
    assert str(failed.message) == (
        "Unexpected error while checking the cache validator: LookupError(\"the validator's own bug\")"
    )
    error: object = failed.result  # a Failed state's result is the error it carries
    assert isinstance(error, LookupError)
    assert kind(second.result[a]) == "TriggerFailed"
    assert lines(log) == ["computed"]


@task(cache_for=HOUR)
def make_function(log: str) -> Callable[[int], int]:
    record(log, "computed")
    return lambda x: x + 1


def test_a_result_that_cannot_be_pickled_is_not_cached(
    tmp_path: Path, executor: Executor, caplog: pytest.LogCaptureFixture
) -> None:
    """A lambda comes back from a worker (cloudpickle) but the store keeps only what the
    standard pickle takes: logged, not cached, computed again on the next run."""
    log = str(tmp_path / "log")
    store = SQLiteCacheStore(tmp_path / "cache.sqlite")
    with Flow("unpicklable") as flow:
        made = make_function(log)
    states = _run_twice_uncached(
        flow, executor, store, caplog, log,
        "result for 'unpicklable/make_function' not cached: function cannot be stored with pickle",
    )  # fmt: skip
    assert states[1].result[made].result(1) == 2
    store.close()
