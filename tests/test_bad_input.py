"""Bad input is refused early, with a message that names the culprit."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

from taskloom import Flow, Task, task
from taskloom.errors import TaskDefinitionError
from taskloom.executors import Executor
from taskloom.states import Resume, Success

from ._helpers import lines, record


def work(x: int) -> int:
    return x


class Worker(Task[[int], int]):
    def run(self, x: int) -> int:
        return x


# -- at construction -------------------------------------------------------------------------------


def test_max_retries_without_retry_delay() -> None:
    with pytest.raises(ValueError, match="fetch_data") as raised:
        task(name="fetch_data", max_retries=2)(work)
    assert "retry_delay" in str(raised.value)
    with pytest.raises(ValueError, match="worker_task") as raised:
        Worker(name="worker_task", max_retries=1)
    assert "retry_delay" in str(raised.value)
    # with a delay it is fine
    assert task(name="ok", max_retries=2, retry_delay=dt.timedelta(0))(work).max_retries == 2


def test_negative_cache_for() -> None:
    with pytest.raises(ValueError, match="cached_work") as raised:
        task(name="cached_work", cache_for=dt.timedelta(seconds=-1))(work)
    assert "cache_for" in str(raised.value)
    with pytest.raises(ValueError, match="worker_task"):
        Worker(name="worker_task", cache_for=dt.timedelta(hours=-2))


@pytest.mark.parametrize("value", [60, 1.5, "1h"], ids=["int", "float", "str"])
def test_cache_for_that_is_not_a_timedelta(value: object) -> None:
    bad: Any = value
    with pytest.raises((TypeError, ValueError), match="cached_work") as raised:
        task(name="cached_work", cache_for=bad)(work)
    assert "cache_for" in str(raised.value)


@pytest.mark.parametrize("value", ["all_successful", 3, True], ids=["str", "int", "bool"])
def test_non_callable_trigger(value: object) -> None:
    bad: Any = value
    with pytest.raises(ValueError, match="guarded") as raised:
        task(name="guarded", trigger=bad)(work)
    assert "trigger" in str(raised.value)
    with pytest.raises(ValueError, match="worker_task"):
        Worker(name="worker_task", trigger=bad)


@pytest.mark.parametrize("value", ["all_inputs", 0], ids=["str", "int"])
def test_non_callable_cache_validator(value: object) -> None:
    bad: Any = value
    with pytest.raises(ValueError, match="validated") as raised:
        task(name="validated", cache_for=dt.timedelta(hours=1), cache_validator=bad)(work)
    assert "cache_validator" in str(raised.value)


# -- at run time, before any task runs -------------------------------------------------------------


@task
def side_effect(path: str) -> int:
    record(path, "ran")
    return 1


@task
def consume(x: int) -> int:
    return x + 1


def test_a_start_task_not_in_the_flow(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    with Flow("start-stray") as flow:
        consume(side_effect(log))
    stray = Worker(name="stray_start_task")
    with pytest.raises(ValueError, match="stray_start_task"):
        flow.run(task_states={}, start_tasks=[stray], executor=executor)
    assert lines(log) == []


def test_an_unknown_task_in_task_states(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    with Flow("states-stray") as flow:
        consume(side_effect(log))
    stray = Worker(name="stray_seeded_task")
    with pytest.raises(ValueError, match="stray_seeded_task"):
        flow.run(task_states={stray: Success(result=1)}, executor=executor)
    assert lines(log) == []


def test_a_task_of_another_flow_in_task_states(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    with Flow("one"):
        elsewhere = task(name="in_the_other_flow")(work)(1)
    with Flow("two") as flow:
        consume(side_effect(log))
    with pytest.raises(ValueError, match="in_the_other_flow"):
        flow.run(task_states={elsewhere: Success(result=1)}, executor=executor)
    assert lines(log) == []


def test_a_start_task_without_stored_inputs_is_named(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    with Flow("start-no-inputs") as flow:
        needs_input = task(name="needs_input")(work)(side_effect(log))
    with pytest.raises(ValueError, match="needs_input"):
        flow.run(task_states={needs_input: Resume()}, start_tasks=[needs_input], executor=executor)
    assert lines(log) == []


# -- a parameter value that cannot reach a worker process ---------------------------------------


@task
def takes_handle(handle: object, path: str) -> str:
    record(path, "ran")
    return type(handle).__name__


def test_an_unpicklable_parameter_is_named_with_the_task_that_takes_it(
    tmp_path: Path, pool_executor: Executor
) -> None:
    import threading

    from taskloom import Parameter

    path = str(tmp_path / "ran")
    with Flow("bad-parameter") as flow:
        handle = Parameter("handle", default=None)
        takes_handle(handle, path)
    with pytest.raises(ValueError) as raised:
        flow.run(parameters={"handle": threading.Lock()}, executor=pool_executor)
    message = str(raised.value)
    assert "parameter 'handle'" in message and "lock" in message, message
    assert "task 'takes_handle' (input 'handle')" in message, message
    assert "'parameters'" not in message, message
    assert lines(path) == []  # refused before any task ran


class ForgotSuper(Task[Any, Any]):
    """A Prefect 1.x mistake: an ``__init__`` that never calls ``Task.__init__``."""

    def __init__(self, factor: int) -> None:
        self.factor = factor

    def run(self, x: int) -> int:
        return x * self.factor


@pytest.mark.parametrize("how", ["called in a flow block", "add_task"])
def test_a_task_subclass_that_forgot_super_init_is_named(how: str) -> None:
    """Not an ``AttributeError`` from inside the engine: the class and the fix."""
    with pytest.raises(TaskDefinitionError, match=r"ForgotSuper\.__init__ did not call super\(\)"):
        if how == "add_task":
            Flow("forgot-super").add_task(ForgotSuper(3))
        else:
            with Flow("forgot-super"):
                ForgotSuper(3)(2)
