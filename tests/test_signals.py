"""Signals: raised at any depth, through ``except Exception``, they set the task's state."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest

import taskloom
from taskloom import Flow, signals, task
from taskloom.executors import Executor
from taskloom.states import Failed, Paused, Skipped, State, Success, TriggerFailed

from ._helpers import kind, lines, record

SIGNALS: list[type[signals.TaskloomSignal]] = [
    signals.SUCCESS,
    signals.FAIL,
    signals.RETRY,
    signals.SKIP,
    signals.PAUSE,
    signals.TRIGGERFAIL,
]


@pytest.mark.parametrize("signal", SIGNALS, ids=lambda s: s.__name__)
def test_signals_are_base_exceptions_not_exceptions(signal: type[BaseException]) -> None:
    assert issubclass(signal, BaseException)
    assert not issubclass(signal, Exception)


def test_signal_message_is_the_first_argument_and_result_is_optional() -> None:
    fail = signals.FAIL("went wrong")
    assert fail.message == "went wrong"
    skip = signals.SKIP("nothing to do", result=42)
    assert skip.message == "nothing to do"
    assert skip.result == 42


# -- raised two calls deep, inside the task's own `try/except Exception` ----------------------


def _raise(name: str) -> None:
    if name == "SUCCESS":
        raise signals.SUCCESS("early success", result=5)
    if name == "FAIL":
        raise signals.FAIL("custom fail")
    if name == "SKIP":
        raise signals.SKIP("deep skip")
    if name == "PAUSE":
        raise signals.PAUSE("deep pause")
    if name == "TRIGGERFAIL":
        raise signals.TRIGGERFAIL("deep triggerfail")
    if name == "RETRY":
        if taskloom.context.task_run_count == 1:
            raise signals.RETRY("deep retry")
        return
    raise AssertionError(name)


def _helper(name: str) -> None:
    _raise(name)


@task
def signalling(name: str) -> object:
    try:
        _helper(name)
    except Exception:  # must not swallow a signal
        return "swallowed"
    return f"returned on attempt {taskloom.context.task_run_count}"


@task
def follow(x: object) -> object:
    return x


@pytest.mark.parametrize(
    ("name", "expected", "message"),
    [
        ("SUCCESS", Success, "early success"),
        ("FAIL", Failed, "custom fail"),
        ("SKIP", Skipped, "deep skip"),
        ("PAUSE", Paused, "deep pause"),
        ("TRIGGERFAIL", TriggerFailed, "deep triggerfail"),
    ],
)
def test_signal_raised_at_depth_through_except_exception(
    name: str, expected: type[State[Any]], message: str, executor: Executor
) -> None:
    with Flow(f"deep-{name}") as flow:
        t = signalling(name)
    state = flow.run(executor=executor)
    got = state.result[t]
    assert type(got) is expected, f"{name} gave {kind(got)}: {got.message!r}"
    assert got.message == message
    assert got.result != "swallowed"


def test_retry_raised_at_depth_through_except_exception(executor: Executor) -> None:
    with Flow("deep-retry") as flow:
        t = signalling("RETRY")
    state = flow.run(executor=executor)
    assert type(state.result[t]) is Success
    assert state.result[t].result == "returned on attempt 2"


def test_success_result_goes_downstream(executor: Executor) -> None:
    with Flow("success-result") as flow:
        t = signalling("SUCCESS")
        d = follow(t)
    state = flow.run(executor=executor)
    assert state.result[t].result == 5
    assert type(state.result[d]) is Success
    assert state.result[d].result == 5
    assert state.is_successful()


@task
def succeed_bare() -> int:
    raise signals.SUCCESS("done early")


def test_success_without_result_hands_down_the_signal(executor: Executor) -> None:
    """Prefect Core: without result=, the state's result is the signal itself."""
    with Flow("success-bare") as flow:
        t = succeed_bare()
        d = follow(t)
    state = flow.run(executor=executor)
    assert type(state.result[t]) is Success
    assert isinstance(state.result[t].result, signals.SUCCESS)
    assert isinstance(state.result[d].result, signals.SUCCESS)


def test_fail_fails_downstream_and_the_flow(executor: Executor) -> None:
    with Flow("fail-down") as flow:
        t = signalling("FAIL")
        d = follow(t)
    state = flow.run(executor=executor)
    assert type(state.result[t]) is Failed
    assert type(state.result[d]) is TriggerFailed
    assert type(state) is Failed


def test_skip_propagates_down_a_chain_and_the_flow_succeeds(executor: Executor) -> None:
    with Flow("skip-chain") as flow:
        t = signalling("SKIP")
        d = follow(t)
        after = follow(d)
    state = flow.run(executor=executor)
    assert [kind(state.result[x]) for x in (t, d, after)] == ["Skipped"] * 3
    assert type(state) is Success


@task
def skip_with(value: int) -> int:
    raise signals.SKIP("nothing to do", result=value)


@task
def skip_bare() -> int:
    raise signals.SKIP("nothing to do")


@task(skip_on_upstream_skip=False)
def receive(x: object) -> object:
    return x


def test_skip_result_goes_to_a_task_that_does_not_skip(executor: Executor) -> None:
    with Flow("skip-result") as flow:
        t = skip_with(42)
        d = receive(t)
    state = flow.run(executor=executor)
    assert type(state.result[t]) is Skipped
    assert state.result[t].result == 42
    assert type(state.result[d]) is Success
    assert state.result[d].result == 42


def test_skip_without_result_hands_down_the_signal(executor: Executor) -> None:
    """Prefect Core: a non-skipping downstream task receives the SKIP object itself."""
    with Flow("skip-bare") as flow:
        t = skip_bare()
        d = receive(t)
    state = flow.run(executor=executor)
    assert type(state.result[t]) is Skipped
    assert isinstance(state.result[d].result, signals.SKIP)


@task(max_retries=2, retry_delay=dt.timedelta(0))
def always_fail_signal(log: str) -> int:
    record(log, str(taskloom.context.task_run_count))
    raise signals.FAIL("always")


def test_fail_goes_through_retries(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "attempts")
    with Flow("fail-retries") as flow:
        t = always_fail_signal(log)
    state = flow.run(executor=executor)
    assert type(state.result[t]) is Failed
    assert state.result[t].message == "always"
    assert lines(log) == ["1", "2", "3"]


@task(max_retries=1, retry_delay=dt.timedelta(0))
def retry_three_times(log: str) -> int:
    count: int = taskloom.context.task_run_count
    record(log, str(count))
    if count <= 3:
        raise signals.RETRY(f"retry {count}")
    return count


def test_retry_signal_retries_beyond_max_retries(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "attempts")
    with Flow("retry-beyond") as flow:
        t = retry_three_times(log)
    state = flow.run(executor=executor)
    assert type(state.result[t]) is Success
    assert state.result[t].result == 4
    assert lines(log) == ["1", "2", "3", "4"]


@pytest.mark.parametrize("signal", SIGNALS, ids=lambda s: s.__name__)
def test_run_outside_a_flow_raises_the_signal(signal: type[signals.TaskloomSignal]) -> None:
    @task
    def raiser() -> None:
        raise signal("outside")

    with pytest.raises(signal, match="outside"):
        raiser.run()
