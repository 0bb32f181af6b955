"""LOOP, ENDRUN and VALIDATIONFAIL (API.md Part 2, "Looping, ending a run, validation";
Prefect scenarios G44-G47), on every executor."""

from __future__ import annotations

import datetime as dt
import functools
import io
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

import taskloom
from taskloom import Flow, Task, signals, task
from taskloom.errors import TaskDefinitionError
from taskloom.executors import Executor, LocalExecutor
from taskloom.handlers import StateHandler
from taskloom.journal import default_journal
from taskloom.logging import basic_config, get_logger
from taskloom.states import (
    Cancelled, Failed, Finished, Looped, Retrying, Success, State, TriggerFailed, ValidationFailed,
    by_name,
)

from ._helpers import as_task, in_process, lines, record


def _seen() -> str:
    ctx = taskloom.context
    count = ctx.get("task_loop_count", "absent")
    result = ctx.get("task_loop_result", "absent")
    return f"{count},{result},{ctx.get('task_run_count')}"


@task
def loop_to_three(log: str | None) -> int:
    if log is not None:
        record(log, _seen())
    so_far: int = taskloom.context.get("task_loop_result", 0)
    if so_far < 3:
        raise signals.LOOP(message=f"at {so_far}", result=so_far + 1)
    return so_far


@task
def plus_ten(x: int) -> int:
    return x + 10


def test_loop_until_a_result(tmp_path: Path, executor: Executor) -> None:
    # G44, with task_loop_count 1 on the first pass (API.md; Prefect leaves it unset).
    log = str(tmp_path / "passes")
    with Flow("loop") as flow:
        t = loop_to_three(log)
        d = plus_ten(t)
    state = flow.run(executor=executor)
    assert type(state.result[t]) is Success and state.result[t].result == 3
    assert state.result[d].result == 13
    assert lines(log) == ["1,absent,1", "2,1,1", "3,2,1", "4,3,1"]


def note_looped(log: str, task: object, old: State[Any], new: State[Any]) -> None:
    if isinstance(new, Looped):
        record(log, str(new.message))


def loop_to(n: int) -> int:
    """Loops (``LOOP`` with no message) until its loop result is ``n``."""
    so_far: int = taskloom.context.get("task_loop_result", 0)
    if so_far < n:
        raise signals.LOOP(result=so_far + 1)
    return so_far


def test_a_loop_without_a_message_reads_task_is_looping(tmp_path: Path, executor: Executor) -> None:
    """As in Prefect 1.x, ``raise LOOP(result=...)`` gives a ``Looped`` state whose message
    is ``Task is looping (N)``, N the pass that looped; a message given is kept."""
    log = str(tmp_path / "looped")

    handlers: list[StateHandler] = [functools.partial(note_looped, log)]
    quiet = task(name="quiet-loop", state_handlers=handlers)(loop_to)
    with Flow("loop-message") as flow:
        t = quiet(2)
        loud = loop_to_three(None)
    loud_task = as_task(loud)
    loud_task.state_handlers = handlers
    state = flow.run(executor=executor)
    assert state.result[t].result == 2
    assert sorted(lines(log)) == sorted(
        ["Task is looping (1)", "Task is looping (2)", "at 0", "at 1", "at 2"]
    )


def note_change(log: str, task: object, old: State[Any], new: State[Any]) -> None:
    record(log, f"{type(old).__name__}:{old.message} -> {type(new).__name__}")


def test_a_loops_handlers_see_each_pass_start_from_pending_as_in_prefect(
    tmp_path: Path, executor: Executor
) -> None:
    """Prefect 1.x runs a looped task's next pass from ``Pending("Looping task (on loop
    index N)")``: its handlers see ``Running -> Looped``, then ``Pending -> Running``,
    never ``Looped -> Running``."""
    log = str(tmp_path / "changes")

    looping = task(name="watched-loop", state_handlers=[functools.partial(note_change, log)])(loop_to)
    with Flow("loop-handlers") as flow:
        t = looping(2)
    state = flow.run(executor=executor)
    assert state.result[t].result == 2
    assert lines(log) == [
        "Pending:Task not run. -> Running",
        "Running:Starting task run. -> Looped",
        "Pending:Looping task (on loop index 1) -> Running",
        "Running:Starting task run. -> Looped",
        "Pending:Looping task (on loop index 2) -> Running",
        "Running:Starting task run. -> Success",
    ]


@task(max_retries=2, retry_delay=dt.timedelta(0))
def loop_fail_on_five(log: str) -> int:
    record(log, _seen())
    count: int = taskloom.context.task_loop_count
    if count == 5 and taskloom.context.task_run_count == 1:
        raise ValueError("pass 5 broke")
    if count < 7:
        raise signals.LOOP(result=f"r{count}")
    return count


def test_a_retried_loop_starts_again_at_the_failing_pass(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "passes")
    with Flow("loop-retry") as flow:
        t = loop_fail_on_five(log)
    state = flow.run(executor=executor)
    assert type(state.result[t]) is Success and state.result[t].result == 7
    assert lines(log) == [
        "1,absent,1", "2,r1,1", "3,r2,1", "4,r3,1", "5,r4,1",  # fails on pass 5
        "5,r4,2", "6,r5,2", "7,r6,2",  # the retry: pass 5 again, with pass 4's result
    ]  # fmt: skip


@task(max_loops=3)
def loop_forever() -> int:
    raise signals.LOOP(result=taskloom.context.task_loop_count)


def test_max_loops_exceeded_fails_naming_the_task_and_the_limit(executor: Executor) -> None:
    with Flow("loop-limit") as flow:
        t = loop_forever()
    state = flow.run(executor=executor)
    assert type(state.result[t]) is Failed
    message = str(state.result[t].message)
    assert "'loop_forever'" in message and "max_loops=3" in message
    assert state.is_failed()


@pytest.mark.parametrize("limit", [1, 3])
def test_a_task_runs_max_loops_passes_and_no_more(
    tmp_path: Path, executor: Executor, limit: int
) -> None:
    log = str(tmp_path / "passes")

    @task(name="loop_forever", max_loops=limit)
    def looper(log: str) -> int:
        record(log, _seen())
        raise signals.LOOP(result=taskloom.context.task_loop_count)

    with Flow("loop-limit") as flow:
        t = looper(log)
    state = flow.run(executor=executor)
    assert type(state.result[t]) is Failed
    assert f"max_loops={limit}" in str(state.result[t].message)
    assert lines(log) == ["1,absent,1", "2,1,1", "3,2,1"][:limit]


def test_a_looping_task_logs_its_start_once_an_attempt(executor: Executor) -> None:
    stream = io.StringIO()
    handler = basic_config("INFO", stream=stream)
    try:
        with Flow("loop-log") as flow:
            loop_to_three(None)
        assert flow.run(executor=executor, journal=False).is_successful()
    finally:
        get_logger().removeHandler(handler)
        get_logger().setLevel(logging.NOTSET)
    text = stream.getvalue()
    assert text.count("Task 'loop_to_three': Starting task run...") == 1
    assert text.count("Task 'loop_to_three': Finished task run") == 1


@pytest.mark.parametrize("bad", [0, -1, True, 1.5, "3"])
def test_max_loops_is_validated_naming_the_task(bad: object) -> None:
    with pytest.raises(TaskDefinitionError, match=r"'looper'.*max_loops"):
        task(name="looper", max_loops=bad)(lambda: 1)  # type: ignore[call-overload]
    with pytest.raises(TaskDefinitionError, match=r"'looper'.*max_loops"):
        Task(name="looper", max_loops=bad)  # type: ignore[arg-type]
    assert Task(name="fine").max_loops is None and Task(max_loops=2).max_loops == 2


@task
def count_down(n: int) -> str:
    done: int = taskloom.context.get("task_loop_result", 0)
    if done < n:
        raise signals.LOOP(result=done + 1)
    return f"{taskloom.context.map_index}:{done}:{taskloom.context.task_loop_count}"


def test_loop_in_a_mapped_child_loops_only_that_child(executor: Executor) -> None:
    with Flow("loop-map") as flow:
        m = count_down.map([0, 2, 1])
    state = flow.run(executor=executor)
    assert state.result[m].result == ["0:0:1", "1:2:3", "2:1:2"]


@task(max_retries=3, retry_delay=dt.timedelta(0))
def end_failed(log: str) -> int:
    record(log, "called")
    raise signals.ENDRUN(Failed("ended"))


def test_endrun_failed_skips_retries(tmp_path: Path, executor: Executor) -> None:
    # G45
    log = str(tmp_path / "calls")
    with Flow("endrun-failed") as flow:
        t = end_failed(log)
    state = flow.run(executor=executor)
    assert type(state.result[t]) is Failed and state.result[t].message == "ended"
    assert state.result[t].result is None
    assert lines(log) == ["called"]
    assert state.is_failed()


@task(cache_for=dt.timedelta(hours=1))
def end_ok() -> int:
    raise signals.ENDRUN(Success("ended ok", result=7))


def test_endrun_success_feeds_downstream_and_is_not_cached(executor: Executor) -> None:
    # G46
    with Flow("endrun-ok") as flow:
        t = end_ok()
        d = plus_ten(t)
    state = flow.run(executor=executor)
    assert type(state.result[t]) is Success and state.result[t].message == "ended ok"
    assert state.result[t].result == 7
    assert state.result[d].result == 17
    again = flow.run(executor=executor)
    assert type(again.result[t]) is Success  # not Cached: ENDRUN skips the output cache


@task(max_retries=1, retry_delay=dt.timedelta(0))
def end_with_junk() -> int:
    raise signals.ENDRUN(42)  # type: ignore[arg-type]


def test_endrun_of_something_not_a_state_fails_naming_task_and_type(executor: Executor) -> None:
    with Flow("endrun-junk") as flow:
        t = end_with_junk()
    state = flow.run(executor=executor)
    assert type(state.result[t]) is Failed
    message = str(state.result[t].message)
    assert "'end_with_junk'" in message and "int" in message


@task
def invalid() -> int:
    raise signals.VALIDATIONFAIL("bad data")


@task
def trigger_fail() -> int:
    raise signals.TRIGGERFAIL("nope")


def test_validationfail_and_triggerfail_inside_tasks(executor: Executor) -> None:
    # G47
    with Flow("validation") as flow:
        v = invalid()
        tf = trigger_fail()
    state = flow.run(executor=executor)
    assert type(state.result[v]) is ValidationFailed and state.result[v].message == "bad data"
    assert state.result[v].is_failed()
    assert type(state.result[tf]) is TriggerFailed
    assert state.is_failed()


def test_a_validationfailed_task_is_journaled_and_reloaded() -> None:
    with Flow("validation-journal") as flow:
        invalid()
    state = flow.run(executor=LocalExecutor())
    assert state.run_id is not None
    [row] = default_journal().load(state.run_id).tasks
    assert row.state == ValidationFailed.__name__ and row.message == "bad data"
    assert by_name(row.state) is ValidationFailed


class _Unpicklable:
    def __init__(self) -> None:
        self.lock = threading.Lock()


@task(max_retries=1, retry_delay=dt.timedelta(0))
def loop_unpicklable(fail: bool) -> int:
    count: int = taskloom.context.task_loop_count
    if count == 1:
        raise signals.LOOP(result=_Unpicklable())  # a lock: cannot be pickled
    if fail and taskloom.context.task_run_count == 1:
        raise ValueError("pass 2 broke")
    return count


def test_an_unpicklable_loop_result_fails_only_when_it_must_travel(executor: Executor) -> None:
    with Flow("loop-unpicklable") as flow:
        ok = loop_unpicklable(False)
        carried = loop_unpicklable(True)
    state = flow.run(executor=executor)
    assert state.result[ok].result == 2  # the result never left the worker
    if in_process(executor):
        assert state.result[carried].result == 2  # nothing travels
        return
    failed = state.result[carried]
    assert type(failed) is Failed
    message = str(failed.message)
    assert "'loop_unpicklable'" in message and "LOOP" in message and "pickled" in message


def test_looped_and_cancelled_classify_through_their_class() -> None:
    assert issubclass(Looped, Finished) and issubclass(Cancelled, Finished)
    assert not issubclass(Cancelled, (Success, Failed))
    assert issubclass(ValidationFailed, Failed)
    for cls in (Looped, Cancelled, ValidationFailed):
        assert by_name(cls.__name__) is cls
        assert cls.runs_again and cls.keeps_inputs
    assert Looped("again", 1, loop_count=2).is_looped()
    retry: State[Any] = Retrying(loop_count=5, loop_result="r4")
    assert retry.replace().loop_count == 5  # type: ignore[attr-defined]
