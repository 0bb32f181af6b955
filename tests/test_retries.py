"""Retries, the RETRY signal, stored inputs, and timeouts (API.md, "Tasks", "Resuming, retries and input caching")."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path
from typing import Any

import pytest

import taskloom
from taskloom import Flow, signals, task
from taskloom.executors import Executor
from taskloom.states import Failed, Paused, Retrying, Skipped, Success, TimedOut, TriggerFailed

from ._helpers import kind, lines, record, stamp, stamps

NO_WAIT = dt.timedelta(0)


def _attempt(log: str, label: str) -> int:
    count: int = taskloom.context.task_run_count
    record(log, f"{label} {count}")
    return count


@task(max_retries=2, retry_delay=NO_WAIT)
def flaky(log: str, fail_times: int) -> int:
    count = _attempt(log, "flaky")
    if count <= fail_times:
        raise ValueError(f"attempt {count} failed")
    return count


@task
def after(x: int) -> int:
    return x * 10


def test_a_task_that_fails_twice_succeeds_on_its_third_attempt(
    tmp_path: Path, executor: Executor
) -> None:
    log = str(tmp_path / "log")
    with Flow("retry-ok") as flow:
        t = flaky(log, 2)
        d = after(t)
    state = flow.run(executor=executor)
    assert type(state.result[t]) is Success
    assert state.result[t].result == 3
    assert state.result[d].result == 30
    assert lines(log) == ["flaky 1", "flaky 2", "flaky 3"]
    assert type(state) is Success


def test_retries_run_out_and_the_last_failure_stays(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    with Flow("retry-out") as flow:
        t = flaky(log, 99)
        d = after(t)
    state = flow.run(executor=executor)
    final = state.result[t]
    assert type(final) is Failed
    assert isinstance(final.result, ValueError)
    assert "attempt 3 failed" in str(final.message)
    assert type(state.result[d]) is TriggerFailed
    assert lines(log) == ["flaky 1", "flaky 2", "flaky 3"]
    assert type(state) is Failed


@task
def no_retries(log: str) -> int:
    _attempt(log, "once")
    raise ValueError("no second chance")


def test_without_max_retries_a_failure_is_final(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    with Flow("no-retry") as flow:
        t = no_retries(log)
    state = flow.run(executor=executor)
    assert type(state.result[t]) is Failed
    assert lines(log) == ["once 1"]


@task
def retry_signal_once(log: str) -> str:
    count = _attempt(log, "signal")
    if count == 1:
        raise signals.RETRY("try again")
    return "second time lucky"


def test_the_retry_signal_retries_without_max_retries(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    with Flow("retry-signal") as flow:
        t = retry_signal_once(log)
    state = flow.run(executor=executor)
    assert type(state.result[t]) is Success
    assert state.result[t].result == "second time lucky"
    assert lines(log) == ["signal 1", "signal 2"]


@task
def up(log: str) -> dict[str, int]:
    record(log, "up")
    return {"value": 7}


@task(max_retries=1, retry_delay=NO_WAIT)
def flaky_down(data: dict[str, int], log: str) -> dict[str, int]:
    count = _attempt(log, "down")
    if count == 1:
        raise ValueError("first attempt fails")
    return {"received": data["value"]}


def test_a_retry_reuses_its_inputs_and_does_not_rerun_upstream(
    tmp_path: Path, executor: Executor
) -> None:
    log = str(tmp_path / "log")
    with Flow("retry-inputs") as flow:
        u = up(log)
        d = flaky_down(u, log)
    state = flow.run(executor=executor)
    assert type(state.result[d]) is Success
    assert state.result[d].result == {"received": 7}
    assert lines(log) == ["up", "down 1", "down 2"]
    assert state.result[u].result == {"value": 7}


@task(max_retries=1, retry_delay=dt.timedelta(seconds=0.5))
def flaky_with_delay(log: str) -> str:
    count: int = taskloom.context.task_run_count
    stamp(log, f"flaky {count}")
    if count == 1:
        raise ValueError("not yet")
    return "done"


@task
def independent(log: str, label: str, upstream: object = None) -> str:
    stamp(log, label)
    return label


@task
def after_first_failure(log: str, label: str) -> str:
    """Wait (at most 30 s) until ``flaky 1`` is stamped, then stamp ``label``: what runs
    after this one runs while the retry waits."""
    deadline = time.monotonic() + 30
    while not any(line.startswith("flaky 1 ") for line in lines(log)):
        if time.monotonic() > deadline:
            break
        time.sleep(0.005)  # a rendezvous with the first attempt, through the log
    stamp(log, label)
    return label


def test_a_retry_delay_does_not_block_independent_tasks(
    tmp_path: Path, executor: Executor
) -> None:
    log = str(tmp_path / "log")
    with Flow("retry-delay") as flow:
        f = flaky_with_delay(log)
        behind = independent(log, "behind flaky", f)
        o1 = after_first_failure(log, "o1")
        o2 = independent(log, "o2", o1)
        o3 = independent(log, "o3", o2)
    state = flow.run(executor=executor)
    assert type(state) is Success, {t.name: kind(s) for t, s in state.result.items()}
    assert state.result[f].result == "done"
    assert state.result[behind].result == "behind flaky"
    assert state.result[o3].result == "o3"
    times = stamps(log)
    order = sorted(times, key=times.__getitem__)
    # o1 waited for the first failure; o2 and o3 were sent after it, while the retry
    # waited its delay: they ran before the second attempt, and what follows flaky after it
    assert order == ["flaky 1", "o1", "o2", "o3", "flaky 2", "behind flaky"], order
    # the delay was respected
    assert times["flaky 2"] - times["flaky 1"] >= 0.5 - 0.02


@task
def add_one(x: int) -> int:
    return x + 1


@task
def source(log: str) -> int:
    record(log, "source ran")
    return 1


def test_a_retrying_state_s_cached_inputs_feed_the_next_run(
    tmp_path: Path, executor: Executor
) -> None:
    log = str(tmp_path / "log")
    with Flow("retry-seeded") as flow:
        s = source(log)
        t = add_one(s)
        d = after(t)
    seeds: dict[object, Any] = {t: Retrying(cached_inputs={"x": 41})}
    state = flow.run(task_states=seeds, start_tasks=[t], executor=executor)
    assert state.result[t].result == 42
    assert state.result[d].result == 420
    assert lines(log) == []  # the upstream task did not run


# -- timeouts ------------------------------------------------------------------------------------


def _slow(seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.01)  # the work being timed out, not synchronisation
    return "finished"


def _slow_noted(seconds: float, log: str) -> str:
    """``_slow``, then a line in ``log`` once the body finished."""
    _slow(seconds)
    record(log, "finished")
    return "finished"


@task
def seconds(value: float) -> float:
    return value


@pytest.mark.parametrize(
    "timeout", [0.3, dt.timedelta(milliseconds=300)], ids=["seconds", "timedelta"]
)
def test_a_task_running_past_its_timeout_ends_timedout(
    timeout: float | dt.timedelta, executor: Executor, tmp_path: Path
) -> None:
    slow = task(name="slow", timeout=timeout)(_slow_noted)
    log = str(tmp_path / "log")
    with Flow("timeout") as flow:
        t = slow(3.0, log)
        d = task(name="after")(lambda x: x)(t)
        # the same behind an upstream task (a run an executor may chain to its upstream)
        t2 = slow(seconds(3.0), log)
    state = flow.run(executor=executor)
    # the run did not wait for the bodies (on Dask they run on, in the background)
    assert lines(log) == []
    assert type(state.result[t]) is TimedOut, state.result[t]
    assert type(state.result[t2]) is TimedOut, state.result[t2]
    assert state.result[t].is_failed()
    assert type(state.result[d]) is TriggerFailed
    assert type(state) is Failed


def test_a_fast_task_with_a_timeout_succeeds(executor: Executor) -> None:
    quick = task(name="quick", timeout=0.5)(_slow)
    with Flow("no-timeout") as flow:
        t = quick(0.0)
    state = flow.run(executor=executor)
    assert type(state.result[t]) is Success
    assert state.result[t].result == "finished"


@task(timeout=0.3, max_retries=1, retry_delay=NO_WAIT)
def slow_then_fast(log: str) -> str:
    count = _attempt(log, "attempt")
    return _slow(3.0 if count == 1 else 0.0)


def test_a_timeout_counts_as_a_failure_for_retries(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    with Flow("timeout-retry") as flow:
        t = slow_then_fast(log)
    state = flow.run(executor=executor)
    assert type(state.result[t]) is Success
    assert lines(log) == ["attempt 1", "attempt 2"]


@task(max_retries=2, retry_delay=NO_WAIT)
def skips_with_retries(log: str) -> int:
    _attempt(log, "skip")
    raise signals.SKIP("not a failure")


@task(max_retries=2, retry_delay=NO_WAIT)
def pauses_with_retries(log: str) -> int:
    _attempt(log, "pause")
    raise signals.PAUSE("not a failure either")


def test_skip_and_pause_are_not_retried(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    with Flow("no-retry-signals") as flow:
        s = skips_with_retries(log)
        p = pauses_with_retries(log)
    state = flow.run(executor=executor)
    assert type(state.result[s]) is Skipped
    assert type(state.result[p]) is Paused
    assert sorted(lines(log)) == ["pause 1", "skip 1"]


# -- RETRY and PAUSE with a start time ------------------------------------------------------------


def _asks_for(log: str, label: str, seconds: float) -> dt.datetime:
    """A start time ``seconds`` from now, recorded in ``log`` as ``label`` (epoch seconds)."""
    when = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=seconds)
    record(log, f"{label} {when.timestamp():.6f}")
    return when


@task
def retry_at_a_time(log: str) -> str:
    count: int = taskloom.context.task_run_count
    stamp(log, f"retry attempt {count}")
    if count == 1:
        raise signals.RETRY("later", start_time=_asks_for(log, "retry asked", 0.3))
    return "retried"


@task
def pause_until_a_time(log: str) -> str:
    done = [line for line in lines(log) if line.startswith("pause attempt ")]
    stamp(log, f"pause attempt {len(done) + 1}")
    if not done:
        raise signals.PAUSE("until later", start_time=_asks_for(log, "pause asked", 0.3))
    return "resumed"


@task
def length(text: str) -> int:
    return len(text)


def test_retry_and_pause_with_a_start_time_run_again_then_and_not_before(
    tmp_path: Path, executor: Executor
) -> None:
    log = str(tmp_path / "log")
    with Flow("signals-start-time") as flow:
        r = retry_at_a_time(log)
        p = pause_until_a_time(log)
        d = after(length(r))
    state = flow.run(executor=executor)
    assert type(state) is Success, {t.name: kind(s) for t, s in state.result.items()}
    assert state.result[r].result == "retried"
    assert state.result[p].result == "resumed"  # a PAUSE with a start time resumes by itself
    assert state.result[d].result == 70
    times = stamps(log)
    assert set(times) == {
        "retry attempt 1", "retry asked", "retry attempt 2",
        "pause attempt 1", "pause asked", "pause attempt 2",
    }, times
    assert times["retry attempt 2"] >= times["retry asked"]  # not before the time asked for
    assert times["pause attempt 2"] >= times["pause asked"]
