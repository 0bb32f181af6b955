"""The flow's final state (API.md, "Flows": reference tasks, terminal tasks, task_states)."""

from __future__ import annotations

from pathlib import Path

from taskloom import Flow, signals, task, triggers
from taskloom.executors import Executor
from taskloom.states import Failed, Skipped, Success, TriggerFailed

from ._helpers import as_task, lines, record


@task
def ok() -> int:
    return 1


@task
def boom(x: int = 0) -> int:
    raise ValueError("boom")


@task
def skip() -> int:
    raise signals.SKIP("nothing to do")


def inc_fn(x: int) -> int:
    return x + 1


inc = task(name="inc")(inc_fn)


def describe(x: object) -> str:
    return type(x).__name__


@task(trigger=triggers.always_run)
def cleanup(log: str, upstream: object = None) -> str:
    record(log, "cleanup")
    return "cleaned"


@task
def logged(log: str, value: int) -> int:
    record(log, f"logged {value}")
    return value


def test_all_terminal_tasks_successful_gives_success(executor: Executor) -> None:
    with Flow("ok") as flow:
        a = ok()
        b = inc(a)
        c = inc(b)
    state = flow.run(executor=executor)
    assert type(state) is Success
    assert state.is_successful() and state.is_finished()
    assert set(state.result) == {as_task(a), as_task(b), as_task(c)}
    assert state.result[c].result == 3


def test_a_failed_terminal_task_fails_the_flow(executor: Executor) -> None:
    with Flow("fail") as flow:
        a = ok()
        b = boom(a)
        inc(a)
    state = flow.run(executor=executor)
    assert type(state) is Failed
    assert type(state.result[b]) is Failed


def test_failure_propagates_as_triggerfailed_to_the_terminal_task(executor: Executor) -> None:
    with Flow("fail-chain") as flow:
        b = boom()
        c = inc(b)
        d = inc(c)
    state = flow.run(executor=executor)
    assert type(state.result[c]) is TriggerFailed
    assert type(state.result[d]) is TriggerFailed
    assert type(state) is Failed


def test_reference_tasks_decide(executor: Executor) -> None:
    with Flow("reference") as flow:
        a = ok()
        b = boom(a)
    flow.set_reference_tasks([a])
    assert type(flow.run(executor=executor)) is Success
    flow.set_reference_tasks([b])
    assert type(flow.run(executor=executor)) is Failed
    flow.set_reference_tasks([a, b])
    assert type(flow.run(executor=executor)) is Failed


def test_a_failed_non_terminal_task_does_not_fail_the_flow(executor: Executor) -> None:
    with Flow("non-terminal") as flow:
        b = boom()
        c = task(name="tolerant", trigger=triggers.any_failed)(describe)(b)
    state = flow.run(executor=executor)
    assert type(state.result[b]) is Failed
    assert type(state.result[c]) is Success
    assert state.result[c].result == "ValueError"  # a failed upstream hands on its error
    assert type(state) is Success


def test_an_always_run_cleanup_masks_failures(tmp_path: Path, executor: Executor) -> None:
    """Prefect Core: a cleanup task with always_run as the only terminal task masks every
    upstream failure; make the failing task a reference task to see it."""
    log = str(tmp_path / "log")
    with Flow("cleanup") as flow:
        b = boom(ok())
        c = cleanup(log, b)
    state = flow.run(executor=executor)
    assert type(state.result[b]) is Failed
    assert state.result[c].result == "cleaned"
    assert type(state) is Success
    assert lines(log) == ["cleanup"]
    flow.set_reference_tasks([b, c])
    assert type(flow.run(executor=executor)) is Failed


def test_skipped_terminal_tasks_count_as_successful(executor: Executor) -> None:
    with Flow("skipped") as flow:
        s = skip()
        t = inc(s)
    state = flow.run(executor=executor)
    assert type(state.result[t]) is Skipped
    assert type(state) is Success


def test_an_empty_flow_succeeds(executor: Executor) -> None:
    state = Flow("empty").run(executor=executor)
    assert type(state) is Success
    assert dict(state.result) == {}


def test_a_seeded_finished_state_is_kept_and_not_run(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    with Flow("seeded") as flow:
        up = logged(log, 1)
        down = inc(up)
    state = flow.run(task_states={up: Success(result=41)}, executor=executor)
    assert state.result[up].result == 41
    assert state.result[down].result == 42
    assert lines(log) == []
    state = flow.run(task_states={up: Failed("preset")}, executor=executor)
    assert type(state.result[up]) is Failed and state.result[up].message == "preset"
    assert type(state.result[down]) is TriggerFailed
    assert type(state) is Failed
    assert lines(log) == []


def test_flow_run_without_an_executor_runs_in_this_process(tmp_path: Path) -> None:
    # The default executor is what this test is about, so it takes no executor fixture.
    log = str(tmp_path / "log")
    with Flow("default-executor") as flow:
        t = logged(log, 3)
    state = flow.run()
    assert type(state) is Success
    assert state.result[t].result == 3
    assert lines(log) == ["logged 3"]
