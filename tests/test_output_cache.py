"""Output caching: cache_for, validators, keys, and the stores (API.md, "Cache validators",
"Output cache store")."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from taskloom import Flow, Parameter, cache_validators, signals, task
from taskloom.caching import CacheStore, MemoryCacheStore, SQLiteCacheStore
from taskloom.executors import Executor
from taskloom.states import Cached, Failed, Skipped, State, Success, TriggerFailed

from . import _cache_processes as procs
from ._helpers import kind, lines, record

ROOT = Path(__file__).resolve().parents[1]
HOUR = dt.timedelta(hours=1)


def computed(log: str) -> int:
    """Record a computation; return how many there have been (identifies the computing run)."""
    record(log, "computed")
    return len(lines(log))


@task(cache_for=HOUR)
def expensive(log: str) -> int:
    return computed(log)


@task
def plus_one(x: int) -> int:
    return x + 1


def run_kinds(
    flow: Flow,
    target: object,
    executor: Executor,
    runs: list[dict[str, Any]],
    store: CacheStore | None,
) -> tuple[list[str], list[object]]:
    """Run the flow once per parameter dict; the target's state kinds and results."""
    kinds: list[str] = []
    results: list[object] = []
    for parameters in runs:
        state = flow.run(parameters=parameters, executor=executor, cache_store=store)
        got = state.result[target]
        kinds.append(kind(got))
        results.append(got.result)
    return kinds, results


# -- Success on the run that computes, Cached on the run that reuses ----------------------------


def test_memory_store_success_then_cached(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    with Flow("memory") as flow:
        e = expensive(log)
        d = plus_one(e)
    store = MemoryCacheStore()
    first = flow.run(executor=executor, cache_store=store)
    assert type(first.result[e]) is Success
    assert first.result[e].result == 1
    second = flow.run(executor=executor, cache_store=store)
    hit = second.result[e]
    assert type(hit) is Cached
    assert hit.is_cached() and hit.is_successful()
    assert hit.result == 1
    assert second.result[d].result == 2  # downstream receives the cached value
    assert type(second) is Success
    assert lines(log) == ["computed"]
    # another store knows nothing of it
    third = flow.run(executor=executor, cache_store=MemoryCacheStore())
    assert type(third.result[e]) is Success
    assert third.result[e].result == 2


def test_the_default_store_persists_under_taskloom_home(
    tmp_path: Path, taskloom_home: Path, executor: Executor
) -> None:
    log = str(tmp_path / "log")
    with Flow("default-store") as flow:
        e = expensive(log)
    first = flow.run(executor=executor)
    assert type(first.result[e]) is Success
    second = flow.run(executor=executor)
    assert type(second.result[e]) is Cached
    assert second.result[e].result == 1
    assert lines(log) == ["computed"]
    assert taskloom_home.is_dir() and any(taskloom_home.iterdir())
    assert SQLiteCacheStore().keys(), "the default store is a SQLiteCacheStore in TASKLOOM_HOME"


def test_an_explicit_sqlite_store(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    path = tmp_path / "elsewhere" / "cache.sqlite"
    with Flow("explicit-sqlite") as flow:
        e = expensive(log)
    assert type(flow.run(executor=executor, cache_store=SQLiteCacheStore(path)).result[e]) is Success
    again = flow.run(executor=executor, cache_store=SQLiteCacheStore(path))
    assert type(again.result[e]) is Cached
    # the default store (another file) has nothing for it
    assert type(flow.run(executor=executor).result[e]) is Success
    assert lines(log) == ["computed", "computed"]


def test_a_result_expires_after_cache_for(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    cache_for = dt.timedelta(milliseconds=250)
    short = task(name="short", cache_for=cache_for)(computed)
    with Flow("expiry") as flow:
        s = short(log)
    store = MemoryCacheStore()
    before = dt.datetime.now(dt.timezone.utc)
    first = flow.run(executor=executor, cache_store=store)
    after = dt.datetime.now(dt.timezone.utc)
    assert type(first.result[s]) is Success
    [key] = store.keys()
    [entry] = store.get(key)
    assert entry.result == 1
    expiration = entry.cached_result_expiration
    assert expiration is not None
    assert before + cache_for <= expiration <= after + cache_for
    # Wait for the wall clock to pass the expiration (this is the behaviour under test,
    # not a synchronisation between workers).
    time.sleep(max(0.0, (expiration - dt.datetime.now(dt.timezone.utc)).total_seconds()) + 0.02)
    assert store.get(key) == []
    second = flow.run(executor=executor, cache_store=store)
    assert type(second.result[s]) is Success
    assert second.result[s].result == 2


# -- validators -----------------------------------------------------------------------------------


def test_never_use_always_recomputes(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    never = task(name="never", cache_for=HOUR, cache_validator=cache_validators.never_use)(computed)
    with Flow("never") as flow:
        n = never(log)
    kinds, results = run_kinds(flow, n, executor, [{}, {}, {}], MemoryCacheStore())
    assert kinds == ["Success"] * 3
    assert results == [1, 2, 3]


def scaled(log: str, x: int, y: int = 0) -> int:
    record(log, f"computed {x} {y}")
    return x * 10 + y


def validated_flow(log: str, validator: cache_validators.CacheValidator | None) -> tuple[Flow, int]:
    t = task(name="scaled", cache_for=HOUR, cache_validator=validator)(scaled)
    with Flow("validators") as flow:
        x = Parameter("x", default=1)
        y = Parameter("y", default=0)
        out = t(log, x, y)
    return flow, out


def test_duration_only_ignores_inputs(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    flow, out = validated_flow(log, None)  # the default validator
    kinds, results = run_kinds(flow, out, executor, [{"x": 1}, {"x": 2}], MemoryCacheStore())
    assert kinds == ["Success", "Cached"]
    assert results == [10, 10]
    assert lines(log) == ["computed 1 0"]


def test_all_inputs(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    flow, out = validated_flow(log, cache_validators.all_inputs)
    runs = [{"x": 1}, {"x": 1}, {"x": 2}, {"x": 1}, {"x": 2, "y": 1}]
    kinds, results = run_kinds(flow, out, executor, runs, MemoryCacheStore())
    assert kinds == ["Success", "Cached", "Success", "Cached", "Success"]
    assert results == [10, 10, 20, 10, 21]
    assert lines(log) == ["computed 1 0", "computed 2 0", "computed 2 1"]


def test_all_parameters(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    t = task(name="by_params", cache_for=HOUR, cache_validator=cache_validators.all_parameters)(scaled)
    with Flow("all-parameters") as flow:
        a = Parameter("a", default=1)
        Parameter("b", default=0)  # not an input of the task, but a parameter of the run
        out = t(log, a)
    runs = [{"a": 1}, {"a": 1}, {"a": 1, "b": 5}, {"a": 1}, {"a": 1, "b": 0}]
    kinds, results = run_kinds(flow, out, executor, runs, MemoryCacheStore())
    assert kinds == ["Success", "Cached", "Success", "Cached", "Cached"]
    assert results == [10, 10, 10, 10, 10]
    assert len(lines(log)) == 2


def test_partial_parameters_only(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    flow, out = validated_flow(log, cache_validators.partial_parameters_only(validate_on=["x"]))
    runs = [{"x": 1, "y": 1}, {"x": 1, "y": 2}, {"x": 2, "y": 2}]
    kinds, results = run_kinds(flow, out, executor, runs, MemoryCacheStore())
    assert kinds == ["Success", "Cached", "Success"]
    assert results == [11, 11, 22]


def test_partial_inputs_only(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    t = task(
        name="partial_inputs",
        cache_for=HOUR,
        cache_validator=cache_validators.partial_inputs_only(validate_on=["x"]),
    )(scaled)
    with Flow("partial-inputs") as flow:
        # inputs that are not parameters: computed upstream from them
        x = plus_one(Parameter("px", default=0))
        y = plus_one(Parameter("py", default=0))
        out = t(log, x, y)
    runs = [{"px": 0, "py": 0}, {"px": 0, "py": 1}, {"px": 1, "py": 1}]
    kinds, results = run_kinds(flow, out, executor, runs, MemoryCacheStore())
    assert kinds == ["Success", "Cached", "Success"]
    assert results == [11, 11, 22]


def reuse_when_told(state: Cached[Any], inputs: Mapping[str, Any], parameters: Mapping[str, Any], /) -> bool:
    """A custom validator: the cached result must match this run's input, and the run must allow reuse."""
    return bool(parameters["reuse"]) and state.result == inputs["x"] * 10


def test_a_custom_validator_gets_the_state_inputs_and_parameters(
    tmp_path: Path, executor: Executor
) -> None:
    log = str(tmp_path / "log")
    t = task(name="custom", cache_for=HOUR, cache_validator=reuse_when_told)(scaled)
    with Flow("custom-validator") as flow:
        x = Parameter("x", default=1)
        Parameter("reuse", default=True)
        out = t(log, x)
    runs = [{"x": 1}, {"x": 1}, {"x": 2}, {"x": 1}, {"x": 1, "reuse": False}]
    kinds, results = run_kinds(flow, out, executor, runs, MemoryCacheStore())
    assert kinds == ["Success", "Cached", "Success", "Cached", "Success"]
    assert results == [10, 10, 20, 10, 10]


# -- cache keys -----------------------------------------------------------------------------------


def test_tasks_sharing_a_cache_key_share_results(tmp_path: Path, executor: Executor) -> None:
    log_a, log_b = str(tmp_path / "a"), str(tmp_path / "b")
    producer_a = task(name="producer_a", cache_for=HOUR, cache_key="shared-key")(computed)
    producer_b = task(name="producer_b", cache_for=HOUR, cache_key="shared-key")(computed)
    with Flow("flow-a") as flow_a:
        a = producer_a(log_a)
    with Flow("flow-b") as flow_b:
        b = producer_b(log_b)
    store = MemoryCacheStore()
    assert type(flow_a.run(executor=executor, cache_store=store).result[a]) is Success
    got = flow_b.run(executor=executor, cache_store=store).result[b]
    assert type(got) is Cached
    assert got.result == 1
    assert lines(log_b) == []


def test_the_default_key_is_the_flow_name_and_task_name(
    tmp_path: Path, executor: Executor
) -> None:
    log = str(tmp_path / "log")
    store = MemoryCacheStore()

    def build(flow_name: str) -> tuple[Flow, int]:
        with Flow(flow_name) as flow:
            e = expensive(log)
        return flow, e

    first, e1 = build("first-flow")
    other, e2 = build("other-flow")
    same_name, e3 = build("first-flow")
    assert type(first.run(executor=executor, cache_store=store).result[e1]) is Success
    # the same task name in a flow with another name does not share the entry ...
    assert type(other.run(executor=executor, cache_store=store).result[e2]) is Success
    # ... a flow with the same name does
    got = same_name.run(executor=executor, cache_store=store).result[e3]
    assert type(got) is Cached
    assert got.result == 1
    assert len(lines(log)) == 2


# -- what is not cached, and what a cache does not bypass -----------------------------------------


@task(cache_for=HOUR)
def cached_skip(log: str) -> int:
    record(log, "ran")
    raise signals.SKIP("skip me")


@task(cache_for=HOUR)
def cached_failure(log: str) -> int:
    record(log, "ran")
    raise ValueError("fails")


@pytest.mark.parametrize(
    ("fn", "expected"), [(cached_skip, Skipped), (cached_failure, Failed)], ids=["skip", "fail"]
)
def test_skipped_and_failed_runs_are_not_cached(
    fn: Any, expected: type[State[Any]], tmp_path: Path, executor: Executor
) -> None:
    log = str(tmp_path / "log")
    with Flow("not-cached") as flow:
        t = fn(log)
    store = MemoryCacheStore()
    for _ in range(2):
        assert type(flow.run(executor=executor, cache_store=store).result[t]) is expected
    assert lines(log) == ["ran", "ran"]


@task
def maybe_fail(fail: bool) -> int:
    if fail:
        raise ValueError("upstream failed")
    return 1


def test_a_cache_hit_does_not_bypass_the_trigger(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    t = task(name="downstream_cached", cache_for=HOUR)(scaled)
    with Flow("cache-trigger") as flow:
        m = maybe_fail(Parameter("fail", default=False))
        out = t(log, m)
    store = MemoryCacheStore()
    assert type(flow.run(executor=executor, cache_store=store).result[out]) is Success
    state = flow.run(parameters={"fail": True}, executor=executor, cache_store=store)
    assert type(state.result[out]) is TriggerFailed
    assert type(state) is Failed
    assert type(flow.run(executor=executor, cache_store=store).result[out]) is Cached


# -- across processes --------------------------------------------------------------------------------


def run_python(code: str, *args: str, hash_seed: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)  # carries this test's TASKLOOM_HOME
    if hash_seed is not None:
        env["PYTHONHASHSEED"] = hash_seed
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done


SUMMARY = "from tests._cache_processes import summary_main; summary_main()"


def test_a_result_cached_by_one_process_is_found_by_another(
    tmp_path: Path, executor: Executor
) -> None:
    """The inputs are a set and a dict whose iteration orders follow PYTHONHASHSEED, so the
    all_inputs check also proves the input hash is the same in every process."""
    log = str(tmp_path / "log")
    flow, total = procs.summary_flow(log)
    first = flow.run(executor=executor)
    assert type(first.result[total]) is Success
    expected = first.result[total].result

    outputs = [json.loads(run_python(SUMMARY, log, hash_seed=seed).stdout) for seed in ("1", "2")]
    # the premise: the two processes iterate the same set in different orders
    assert outputs[0]["order"] != outputs[1]["order"]
    for out in outputs:
        assert out["state"] == "Cached", out
        assert out["result"] == expected
    assert lines(log) == ["computed"]


def test_concurrent_writers_leave_a_readable_store(tmp_path: Path, executor: Executor) -> None:
    n = 30
    code = "from tests._cache_processes import writer_main; writer_main()"
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", code, tag, str(n)],
            cwd=ROOT,
            env=dict(os.environ),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for tag in ("w1", "w2")
    ]
    try:
        for w in writers:  # both are ready: release them together
            assert w.stdout is not None and w.stderr is not None
            line = w.stdout.readline()
            assert line.strip() == "ready", w.stderr.read() if w.poll() is not None else line
        for w in writers:
            assert w.stdin is not None
            w.stdin.write("go\n")
            w.stdin.flush()
        outcomes = [w.communicate(timeout=60) for w in writers]
    finally:
        for w in writers:
            if w.poll() is None:
                w.kill()
                w.wait()
    for w, (out, err) in zip(writers, outcomes):
        assert w.returncode == 0, err
        assert out.strip() == "done", (out, err)
        assert "not cached" not in err and "unreadable" not in err, err

    written = {f"{tag}-{i}" for tag in ("w1", "w2") for i in range(n)}
    entries = SQLiteCacheStore().get(procs.CONCURRENT_KEY)
    assert entries, "no entry survived"
    assert all(isinstance(e, Cached) for e in entries)
    results = {e.result for e in entries}
    assert results <= written
    # each writer's last (newest) result survived
    assert {f"w1-{n - 1}", f"w2-{n - 1}"} <= results, results

    log = str(tmp_path / "log")
    reader = task(name="reader", cache_for=HOUR, cache_key=procs.CONCURRENT_KEY)(computed)
    with Flow("reader") as flow:
        r = reader(log)
    got = flow.run(executor=executor).result[r]
    assert type(got) is Cached, got
    assert got.result in written
    assert lines(log) == []
