"""Groups of follow-ons (generalised chain fusion), on every executor.

A run carries the tasks downstream of it whose upstream tasks are finished or in its group
(see "Follow-ons" in ``taskloom.runner``); on a pool (loky, Dask) a group that branches
forms only once its tasks have been timed, so each flow here runs a first time to be
timed. A member runs where its group's run ran, and starts the moment the task before it in the
group finished: the journal shows both (``worker``, ``started``). ``LocalExecutor`` and ``ThreadExecutor``
give no timings: there these flows are not fused, and must end the same.

Task names are unique to this module: the durations the dispatcher keeps are by task name,
per process, and another module's task of the same name could be slow.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from taskloom import Flow, Parameter, task
from taskloom.executors import Executor, LocalExecutor
from taskloom.journal import Journal, TaskRecord
from taskloom.states import State


@task(name="fuse-source")
def source() -> int:
    return 2


@task(name="fuse-left")
def left(x: int) -> int:
    return x + 1


@task(name="fuse-right")
def right(x: int) -> int:
    return x * 10


@task(name="fuse-join")
def join(a: int, b: int) -> int:
    return a + b


@task(name="fuse-total")
def total(xs: list[int]) -> int:
    return sum(xs)


@task(name="fuse-boom")
def boom(x: int) -> int:
    raise ValueError(f"boom on {x}")


@task(name="fuse-flaky", max_retries=1, retry_delay=timedelta(0))
def flaky(x: int, folder: str) -> int:
    """Fails on its first attempt in ``folder``, succeeds on the next. The first attempt
    lasts 2 ms: runs queued within a millisecond share one queue time (``runner``), and a
    retry handed over sooner than that would read as queued with its group."""
    marker = Path(folder, "failed-once")
    if not marker.exists():
        marker.touch()
        time.sleep(0.002)
        raise RuntimeError("first attempt fails")
    return x + 100


FUSES = ("loky", "dask")  # the executors that time tasks (``ExecutorRun.timings``)


def _name(executor: Executor) -> str:
    return type(executor).__name__.removesuffix("Executor").lower()


def _records(run_id: str | None) -> dict[str, TaskRecord]:
    assert run_id is not None
    return {t.name: t for t in Journal().load(run_id).tasks}


def _fused(records: dict[str, TaskRecord], head: str, members: list[str]) -> bool:
    """Whether ``members`` ran in ``head``'s group: on its worker, each starting the moment
    the task before it in the group finished (a worker times a member from there)."""
    worker = records[head].worker
    ends = {r.finished for r in records.values() if r.finished is not None}
    return all(records[m].worker == worker and records[m].started in ends for m in members)


def _queued_with(records: dict[str, TaskRecord], head: str, member: str) -> bool:
    """Whether ``member`` was handed over with ``head`` (queued with it) and ran on its
    worker (for a member that follows a task retried since, whose times are the retry's)."""
    first, then = records[head], records[member]
    return then.queued == first.queued and then.worker == first.worker


def _runs_until_fused(
    flow: Flow, executor: Executor, head: str, members: list[str], **parameters: Any
) -> list[tuple[State[Any], dict[str, TaskRecord]]]:
    """Runs of ``flow``: a first one (its tasks get timed), then more until one fused
    ``members`` into ``head``'s group (at most 4: a busy machine may time a task as long
    once); each run's state and journal records."""
    runs = []
    for _ in range(5):
        state = flow.run(executor=executor, parameters=dict(parameters))
        records = _records(state.run_id)
        runs.append((state, records))
        if len(runs) > 1 and _fused(records, head, members):
            break
    return runs


def test_a_diamond_runs_as_one_group_with_results_and_states_right(executor: Executor) -> None:
    with Flow("fuse-diamond") as flow:
        s = source()
        a, b = left(s), right(s)
        j = join(a, b)
        t = total([a, b, j])
    expected = {s: 2, a: 3, b: 20, j: 23, t: 46}
    members = ["fuse-left", "fuse-right", "fuse-join", "fuse-total"]
    runs = _runs_until_fused(flow, executor, "fuse-source", members)
    for state, records in runs:
        assert state.is_successful(), state.result
        assert {k: v.result for k, v in state.result.items()} == expected
        assert {r.state for r in records.values()} == {"Success"}
        assert all(r.attempts == 1 for r in records.values()), records
    if _name(executor) in FUSES:
        assert _fused(runs[-1][1], "fuse-source", members), runs[-1][1]
    else:  # no timings: a group that branches never forms
        assert not any(_fused(records, "fuse-source", members) for _, records in runs[1:])


def test_a_member_after_a_failed_source_ends_trigger_failed_as_unfused(executor: Executor) -> None:
    with Flow("fuse-failed-source") as flow:
        s = source()
        bad, good = boom(s), left(s)
        j = join(bad, good)
    unfused = flow.run(executor=LocalExecutor())
    runs = _runs_until_fused(flow, executor, "fuse-source", ["fuse-boom", "fuse-left"])
    for state, records in runs:
        assert state.is_failed()
        for name, t in {"source": s, "boom": bad, "left": good, "join": j}.items():
            got, want = state.result[t], unfused.result[t]
            assert (type(got), got.message) == (type(want), want.message), name
        assert records["fuse-join"].state == "TriggerFailed"
        assert records["fuse-join"].worker is None  # decided in the parent: it never ran
    if _name(executor) in FUSES:
        assert _fused(runs[-1][1], "fuse-source", ["fuse-boom", "fuse-left"]), runs[-1][1]


class Needy:
    """Pickles, but does not unpickle (``__init__`` needs an argument pickle does not give)."""

    def __init__(self, x: int) -> None:
        self.x = x

    def __reduce__(self) -> tuple[type[Needy], tuple[()]]:
        return (Needy, ())


@task(name="fuse-unsendable")
def unsendable(kind: str) -> object:
    return threading.Lock() if kind == "lock" else Needy(1)


@task(name="fuse-unsendable-user")
def unsendable_user(value: object, folder: str) -> str:
    Path(folder, "user-ran").touch()
    return type(value).__name__


@pytest.mark.parametrize("kind", ["lock", "needy"])
def test_a_member_that_ran_from_a_result_that_cannot_reach_the_parent_fails(
    executor: Executor, tmp_path: Path, kind: str
) -> None:
    """On a pool, a result that cannot be pickled (or unpickled) fails its task, and the
    members of its group that ran from it in the worker fail too: the parent never sees
    the value they ran from (ungrouped, it would not have run them). The flow fails."""
    with Flow("fuse-unsendable") as flow:
        made = unsendable(kind)
        used = unsendable_user(made, str(tmp_path))
        after = unsendable_user(used, str(tmp_path))
    state = flow.run(executor=executor)
    if _name(executor) not in FUSES:  # in one process, any object is a value like another
        assert state.is_successful(), state.result
        assert state.result[used].result == {"lock": "lock", "needy": "Needy"}[kind]
        return
    assert state.is_failed()
    failed = state.result[made]
    assert type(failed).__name__ == "Failed", failed
    assert "'fuse-unsendable' returned a" in (failed.message or "")
    assert Path(tmp_path, "user-ran").exists()  # the member ran in the worker, grouped
    dropped = "ran in the worker process from the result of 'fuse-unsendable', which cannot"
    for member in (used, after):  # the one after the member too: it ran from its result
        got = state.result[member]
        assert type(got).__name__ == "Failed" and dropped in (got.message or ""), got


def test_a_member_with_retries_is_retried_by_the_scheduler(
    executor: Executor, tmp_path: Path
) -> None:
    with Flow("fuse-retries") as flow:
        folder = Parameter("folder", type=str)
        s = source()
        f = flaky(s, folder)
        a, b = left(f), right(s)
    runs: list[tuple[State[Any], dict[str, TaskRecord]]] = []
    for k in range(5):
        run_folder = tmp_path / f"run{k}"
        run_folder.mkdir()
        state = flow.run(executor=executor, parameters={"folder": str(run_folder)})
        records = _records(state.run_id)
        runs.append((state, records))
        assert state.is_successful(), state.result
        assert state.result[f].result == 102 and state.result[a].result == 103
        assert state.result[b].result == 20
        assert records["fuse-flaky"].attempts == 2 and records["fuse-left"].attempts == 1
        if k and _queued_with(records, "fuse-source", "fuse-right"):
            break
    records = runs[-1][1]
    if _name(executor) in FUSES:
        # the first attempt ran in the group; its retry was handed over on its own, later
        assert _queued_with(records, "fuse-source", "fuse-right"), records
        flaky_queued, source_queued = records["fuse-flaky"].queued, records["fuse-source"].queued
        assert flaky_queued is not None and source_queued is not None
        assert flaky_queued > source_queued


@task(name="fuse-cell")
def cell() -> int:
    return 1


@task(name="fuse-combine")
def combine(a: int, b: int) -> int:
    return a + b


def test_a_grid_pulls_the_ready_runs_its_rows_need_into_one_group(executor: Executor) -> None:
    """Each task of row 1 takes two tasks of row 0, all ready at once: on a pool, the run
    of the first takes the others in as members (they were handed over together anyway),
    and the rows below follow in the same group."""
    width = 4
    with Flow("fuse-grid") as flow:
        rows = [[cell() for _ in range(width)]]
        for _ in range(2):
            above = rows[-1]
            rows.append([combine(above[c], above[(c + 1) % width]) for c in range(width)])
    runs = []
    for _ in range(5):
        state = flow.run(executor=executor)
        assert state.is_successful(), state.result
        assert [state.result[t].result for t in rows[-1]] == [4] * width
        assert state.run_id is not None
        records = {t.index: t for t in Journal().load(state.run_id).tasks}
        assert all(r.attempts == 1 and r.state == "Success" for r in records.values())
        ends = {r.finished for r in records.values()}
        workers = {r.worker for r in records.values()}
        # tasks that did not start as another ended: one per group (its run), one worker
        heads = sum(r.started not in ends for r in records.values())
        runs.append((heads, len(workers)))
        if len(runs) > 1 and runs[-1] == (1, 1):
            break
    if _name(executor) in FUSES:
        assert runs[-1] == (1, 1), runs  # one hand-over, one worker
    else:
        assert all(h > 1 for h, _ in runs), runs
