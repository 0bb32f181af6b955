"""The run context (API.md, "Context")."""

from __future__ import annotations

import contextvars
import datetime as dt
import pickle
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import cloudpickle
import pytest

import taskloom
from taskloom import Flow, Parameter, task
from taskloom.executors import Executor
from taskloom.states import Success

CTX = taskloom.context  # a module-level alias

RUN_KEYS = (
    "flow_name",
    "flow_run_id",
    "task_name",
    "task_run_id",
    "task_run_count",
    "parameters",
    "scheduled_start_time",
    "date",
    "today",
    "yesterday",
    "tomorrow",
)


def snapshot_fn(upstream: object = None) -> dict[str, Any]:
    """The run keys as this task sees them, read through attribute and item access."""
    ctx = taskloom.context
    seen = {key: ctx[key] for key in RUN_KEYS}
    assert all(getattr(ctx, key) == seen[key] for key in RUN_KEYS)
    return seen


snapshot = task(snapshot_fn)


@task
def read_key(key: str, upstream: object = None) -> object:
    return taskloom.context.get(key, "<missing>")


def test_run_keys_inside_tasks(executor: Executor) -> None:
    with Flow("ctx-keys") as flow:
        n = Parameter("n", default=3)
        Parameter("m", default="x")
        first = task(name="first")(snapshot_fn)(n)
        second = task(name="second")(snapshot_fn)(first)
    before = dt.datetime.now(dt.timezone.utc)
    state = flow.run(parameters={"m": "given"}, executor=executor)
    after = dt.datetime.now(dt.timezone.utc)
    assert state.is_successful(), state.result
    a: dict[str, Any] = state.result[first].result
    b: dict[str, Any] = state.result[second].result

    for seen, name in ((a, "first"), (b, "second")):
        assert seen["flow_name"] == "ctx-keys"
        assert seen["task_name"] == name
        assert seen["task_run_count"] == 1
        assert seen["parameters"] == {"n": 3, "m": "given"}
        scheduled = seen["scheduled_start_time"]
        assert isinstance(scheduled, dt.datetime)
        assert before - dt.timedelta(seconds=1) <= scheduled <= after + dt.timedelta(seconds=1)
        date = seen["date"]
        assert isinstance(date, dt.datetime)
        day = date.date()
        assert seen["today"] == day.isoformat()
        assert seen["yesterday"] == (day - dt.timedelta(days=1)).isoformat()
        assert seen["tomorrow"] == (day + dt.timedelta(days=1)).isoformat()
    assert a["flow_run_id"] and a["flow_run_id"] == b["flow_run_id"]
    assert a["task_run_id"] and b["task_run_id"] and a["task_run_id"] != b["task_run_id"]


def test_flow_run_id_changes_between_runs(executor: Executor) -> None:
    with Flow("ctx-ids") as flow:
        t = snapshot()
    one = flow.run(executor=executor).result[t].result
    two = flow.run(executor=executor).result[t].result
    assert one["flow_run_id"] != two["flow_run_id"]
    assert one["task_run_id"] != two["task_run_id"]


def test_date_keys_follow_a_given_date(executor: Executor) -> None:
    with Flow("ctx-date") as flow:
        t = snapshot()
    state = flow.run(context={"date": "2020-02-29T10:00"}, executor=executor)
    seen = state.result[t].result
    assert isinstance(seen["date"], dt.datetime)
    assert seen["date"].date() == dt.date(2020, 2, 29)
    assert seen["today"] == "2020-02-29"
    assert seen["yesterday"] == "2020-02-28"
    assert seen["tomorrow"] == "2020-03-01"


def test_flow_run_context_reaches_tasks_unchanged(executor: Executor) -> None:
    value = {"when": dt.datetime(2021, 5, 6, tzinfo=dt.timezone.utc), "items": (1, "two", 3.0)}
    with Flow("ctx-run") as flow:
        t = read_key("payload")
    state = flow.run(context={"payload": value}, executor=executor)
    assert state.result[t].result == value
    assert "payload" not in taskloom.context


def test_with_context_overlays_values_for_the_block(executor: Executor) -> None:
    with Flow("ctx-with") as flow:
        t = read_key("key")
    assert taskloom.context.get("key") is None
    with taskloom.context(key="abc") as ctx:
        assert ctx is taskloom.context
        assert taskloom.context.key == "abc"
        assert taskloom.context["key"] == "abc"
        assert "key" in taskloom.context
        state = flow.run(executor=executor)
        with taskloom.context(key="inner"):
            assert taskloom.context.key == "inner"
        assert taskloom.context.key == "abc"
    assert state.result[t].result == "abc"
    assert taskloom.context.get("key") is None
    assert taskloom.context.get("key", "fallback") == "fallback"
    with pytest.raises(KeyError):
        taskloom.context["key"]
    with pytest.raises(AttributeError):
        taskloom.context.key


def test_run_context_wins_over_an_enclosing_overlay(executor: Executor) -> None:
    with Flow("ctx-both") as flow:
        a = read_key("key")
        b = read_key("other")
    with taskloom.context(key="outer", other="kept"):
        state = flow.run(context={"key": "run"}, executor=executor)
    assert state.result[a].result == "run"
    assert state.result[b].result == "kept"


@task
def write_context() -> str:
    taskloom.context["leaked"] = "yes"
    taskloom.context.also_leaked = "yes"
    return str(taskloom.context.get("leaked"))


def test_writes_inside_a_task_do_not_leak(executor: Executor) -> None:
    with Flow("ctx-leak") as flow:
        w = write_context()
        r1 = read_key("leaked", w)
        r2 = read_key("also_leaked", w)
    state = flow.run(executor=executor)
    assert state.result[w].result == "yes"  # the task sees its own write
    assert state.result[r1].result == "<missing>"
    assert state.result[r2].result == "<missing>"
    assert "leaked" not in taskloom.context
    assert "also_leaked" not in taskloom.context


def first_touch(how: str) -> list[dict[str, Any]]:
    """What the task's context holds when its first use of it is ``how``."""
    ctx = taskloom.context
    seen: list[dict[str, Any]] = []
    if how == "write":
        ctx["mine"] = 1
    elif how == "delete":
        del ctx["task_tags"]
    elif how == "overlay":
        with ctx(mine=1):
            seen.append(ctx.to_dict())
    elif how == "thread":  # a copy of the task's context, read in another thread
        copied = contextvars.copy_context()
        with ThreadPoolExecutor(1) as pool:
            seen.append(pool.submit(copied.run, ctx.to_dict).result())
    seen.append(ctx.to_dict())
    return [{k: v for k, v in values.items() if k != "logger"} for values in seen]


def test_a_task_sees_its_whole_context_whatever_it_does_first(executor: Executor) -> None:
    """The engine makes a task's context at its first read (``context.Later``): a first
    write, delete, overlay or copy into a thread sees it whole, and keeps what it did."""
    hows = ("write", "delete", "overlay", "thread")
    with Flow("ctx-first-touch") as flow:
        touched = {how: task(name=f"touch-{how}")(first_touch)(how) for how in hows}
    state = flow.run(context={"user_key": "u"}, executor=executor)
    assert state.is_successful(), state.result
    seen = {how: state.result[t].result for how, t in touched.items()}
    for how, views in seen.items():
        for values in views:
            assert values["task_name"] == f"touch-{how}", (how, values)
            assert values["user_key"] == "u" and values["task_loop_count"] == 1, (how, values)
    assert seen["write"][-1]["mine"] == 1
    assert "task_tags" not in seen["delete"][-1]
    inside, after = seen["overlay"]
    assert inside["mine"] == 1 and "mine" not in after
    assert seen["thread"][0] == seen["thread"][1]


@task
def mutate_parameters(n: int) -> int:
    try:
        taskloom.context.parameters["n"] = 99  # a change to a value inside the context
    except TypeError:
        pass  # read-only values are a fine way to keep the promise
    return n


@task
def read_parameter(upstream: object) -> object:
    return taskloom.context.parameters["n"]


def test_changes_to_context_values_inside_a_task_do_not_leak(executor: Executor) -> None:
    """API.md: a task's changes never leak into other tasks or back to the caller."""
    with Flow("ctx-leak-nested") as flow:
        n = Parameter("n", default=1)
        r = read_parameter(mutate_parameters(n))
    state = flow.run(executor=executor)
    assert state.result[r].result == 1
    assert state.result[n].result == 1


def test_context_is_empty_of_run_keys_outside_a_run(executor: Executor) -> None:
    with Flow("ctx-after") as flow:
        snapshot()
    assert flow.run(executor=executor).is_successful()
    for key in RUN_KEYS:
        assert taskloom.context.get(key) is None, key


def test_context_pickles_by_reference() -> None:
    assert pickle.loads(pickle.dumps(taskloom.context)) is taskloom.context
    assert cloudpickle.loads(cloudpickle.dumps(taskloom.context)) is taskloom.context


def test_a_task_using_an_alias_of_the_context_runs(executor: Executor) -> None:
    ctx = taskloom.context  # the closure below carries the object itself

    @task
    def through_alias() -> str:
        return f"{ctx.get('flow_name')}:{ctx['task_name']}:{ctx.user_key}"

    with Flow("ctx-alias") as flow:
        t = through_alias()
    state = flow.run(context={"user_key": "v"}, executor=executor)
    assert type(state.result[t]) is Success, state.result[t].message
    assert state.result[t].result == "ctx-alias:through_alias:v"


def test_a_local_task_using_a_module_level_alias_runs(executor: Executor) -> None:
    @task
    def through_global_alias() -> str:
        return f"{CTX.flow_name}:{CTX.get('user_key')}"

    with Flow("ctx-global-alias") as flow:
        t = through_global_alias()
    state = flow.run(context={"user_key": "w"}, executor=executor)
    assert type(state.result[t]) is Success, state.result[t].message
    assert state.result[t].result == "ctx-global-alias:w"


@task(slug="named-slug")
def names_of_run() -> tuple[Any, Any, Any]:
    ctx = taskloom.context
    return ctx.flow_run_name, ctx.flow_run_id, ctx.task_slug


def test_prefects_flow_run_name_and_task_slug_are_in_the_context(executor: Executor) -> None:
    """Prefect 1.x tasks and result locations read ``flow_run_name`` and ``task_slug``."""
    with Flow("ctx-names") as flow:
        t = names_of_run()
    state = flow.run(executor=executor)
    run_name, run_id, slug = state.result[t].result
    assert run_name == run_id == state.run_id and slug == "named-slug-copy"
