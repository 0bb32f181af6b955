"""The dispatcher shared by ``LokyExecutor`` and ``DaskExecutor`` (``executors._dispatch``).

Its bookkeeping is tested as pure functions (batch sizes, runs that travel alone, the
requeue of suspects, the record of what runs share workers); its culprit rule on both
back ends, with a task that really kills its worker. The tasks are module-level, so the
workers import them by reference.
"""

from __future__ import annotations

import gc
import os
import signal
import subprocess
from collections import deque
from pathlib import Path
from typing import Any

import pytest

from taskloom import Flow, Task, task
from taskloom.attempt import FollowOn, TaskRun
from taskloom.executors import Executor, LokyExecutor
from taskloom.executors._dispatch import MAX_BATCH, Workers, alone, requeue, take_batch
from taskloom.states import Failed, Success

from ._faults import started_sleeper, wait_for_a_file, wait_gone
from ._helpers import kind, run_records
from .test_dask import inc, sleeper

LONG = 0.005


def noop() -> None:
    return None


SHORT = task(name="short")(noop)
SLOW = task(name="slow")(noop)
NEW = task(name="new")(noop)
TIMED = task(name="timed", timeout=5)(noop)
DURATIONS = {"short": 0.0001, "slow": 0.5, "timed": 0.0001}


def runs(t: Task[Any, Any], n: int, first_key: int = 0) -> list[TaskRun]:
    return [TaskRun(first_key + i, t, {}) for i in range(n)]


def sizes(pending: deque[TaskRun], free: int) -> list[int]:
    """The sizes of the batches ``take_batch`` makes of ``pending``, one free slot fewer
    after each (as slots fill up), back to ``free`` once none is left."""
    found = []
    left = free
    while pending:
        found.append(len(take_batch(pending, left, DURATIONS, LONG)))
        left = left - 1 or free
    return found


# -- batching ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("waiting", "free", "expected"),
    [
        (1, 4, [1]),
        (3, 4, [1, 1, 1]),  # fewer runs than free slots: one each, none waits on another
        (8, 2, [4, 4]),  # shared among the free slots
        (9, 2, [5, 4]),
        (10, 4, [3, 3, 2, 2]),
        (2000, 1, [MAX_BATCH, MAX_BATCH, MAX_BATCH, 2000 - 3 * MAX_BATCH]),
    ],
)
def test_a_batch_shares_what_waits_among_the_free_slots(
    waiting: int, free: int, expected: list[int]
) -> None:
    assert sizes(deque(runs(SHORT, waiting)), free) == expected


def test_runs_that_travel_alone() -> None:
    [short], [slow], [new], [timed] = (runs(t, 1) for t in (SHORT, SLOW, NEW, TIMED))
    assert not alone(short, DURATIONS, LONG)
    assert alone(slow, DURATIONS, LONG)  # seen to take longer than long_task
    assert alone(new, DURATIONS, LONG)  # never timed: its first run measures it
    assert alone(timed, DURATIONS, LONG)  # a timeout: the worker's alarm is per run
    # One that travels alone ends the batch before it, and goes in a batch of its own.
    pending = deque(runs(SHORT, 2) + runs(SLOW, 1, 2) + runs(SHORT, 2, 3))
    batches = [[r.key for r in take_batch(pending, 1, DURATIONS, LONG)] for _ in range(3)]
    assert batches == [[0, 1], [2], [3, 4]]


def test_a_run_whose_group_is_expected_to_be_long_travels_alone() -> None:
    """A group holds its worker for its members too: a run whose group is expected to take
    longer than ``long_task`` in all goes in a batch of its own (untimed members, links of
    a chain, count for nothing)."""
    [head] = runs(SHORT, 1)
    member = FollowOn(1, SHORT, {}, ((None, 0),))
    head.then = (member,) * 10  # 11 x 0.1 ms: short
    assert not alone(head, DURATIONS, LONG)
    head.then = (member,) * 60  # 61 x 0.1 ms: longer than LONG (5 ms)
    assert alone(head, DURATIONS, LONG)
    head.then = (FollowOn(1, NEW, {}, ((None, 0),)),) * 60  # never timed: a chain's links
    assert not alone(head, DURATIONS, LONG)


def test_requeue_puts_suspects_first_in_order_without_their_follow_ons() -> None:
    queue = deque(runs(SHORT, 2, 10))
    suspects = runs(SHORT, 3)
    suspects[1].then = (FollowOn(5, SHORT, {}, ((None, 1),)),)
    requeue(queue, suspects)
    assert [r.key for r in queue] == [0, 1, 2, 10, 11]
    assert all(r.then == () for r in queue)  # the scheduler decides those again


# -- what runs on the same workers share --------------------------------------------------------


class Woken:
    """A run's wake-up, counting its calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


def test_a_batch_is_alone_only_if_nothing_else_was_out_while_it_was() -> None:
    workers = Workers()
    first = workers.claim(solo=False)
    assert workers.release(first)  # the only one out, from start to end
    a = workers.claim(solo=False)
    b = workers.claim(solo=False)  # sent while a was out
    assert not workers.release(a) and not workers.release(b)
    c = workers.claim(solo=False)
    d = workers.claim(solo=False)
    assert not workers.release(d)  # c was out when d was sent
    assert not workers.release(c)  # d was sent while c was out


def test_a_suspect_waits_for_the_workers_and_holds_back_other_runs() -> None:
    workers = Workers()
    suspect_run, other_run = Woken(), Woken()
    out = workers.claim(solo=False)  # another run's batch is out
    assert not workers.admit(suspect_run, solo=True)  # waits for it
    assert not workers.admit(other_run, solo=False)  # and nothing new goes meanwhile
    assert workers.release(out) is True and suspect_run.calls == 1  # woken: its turn
    assert workers.admit(suspect_run, solo=True)
    ticket = workers.claim(solo=True)
    assert not workers.admit(other_run, solo=False)
    assert workers.release(ticket)  # it was alone: a death now is its own
    assert other_run.calls == 1  # woken: the workers are free again
    assert workers.admit(other_run, solo=False)


def test_a_run_that_leaves_lets_the_others_on() -> None:
    workers = Workers()
    suspect_run, other_run = Woken(), Woken()
    out = workers.claim(solo=False)
    assert not workers.admit(suspect_run, solo=True)
    assert not workers.admit(other_run, solo=False)
    workers.leave(suspect_run)  # interrupted before its suspect went
    assert other_run.calls == 1 and workers.admit(other_run, solo=False)
    workers.release(out)
    assert suspect_run.calls == 0


# -- the culprit rule, on both back ends --------------------------------------------------------


@task
def exit_3(folder: str) -> int:
    wait_for_a_file(folder)  # a sleeper has started: it is in flight when this worker dies
    os._exit(3)


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_a_task_that_kills_its_worker_is_the_only_culprit(
    pool_executor: Executor, tmp_path: Path
) -> None:
    """It ends Failed with a message naming it and the cause; the tasks in flight with it
    (which ran again, one at a time, to find it) and what follows them end Success; the
    run returns, and the executor serves the next one."""
    on_loky = isinstance(pool_executor, LokyExecutor)
    folder = str(tmp_path / "started")
    os.mkdir(folder)
    with Flow("worker-death") as flow:
        crash = exit_3(folder)
        slow = started_sleeper(folder, 0.5)
        quick = started_sleeper(folder, 0.3)
        after = inc(slow)
    state = flow.run(executor=pool_executor)

    states = state.result
    assert set(states) == set(flow.tasks)  # the run returned every task's state
    failed = states[crash]
    assert isinstance(failed, Failed), failed
    message = failed.message or ""
    assert "exit_3" in message, message
    assert ("EXIT(3)" if on_loky else "killed the Dask worker") in message, message
    assert [kind(states[x]) for x in (slow, quick, after)] == ["Success"] * 3
    assert states[after].result == states[slow].result + 1
    assert kind(state) == "Failed"  # the flow's state says a reference task failed

    with Flow("after") as next_flow:
        worker_pid = sleeper(0.01)
    again = next_flow.run(executor=pool_executor)
    assert isinstance(again.result[worker_pid], Success), again.result[worker_pid]
    assert again.result[worker_pid].result != os.getpid()


# -- what a task started dies with its worker, on both back ends -------------------------------


@task
def starts_sleep_then_dies(path: str) -> int:
    """Start ``sleep 300``, and a shell with a ``sleep 300`` of its own, note their PIDs,
    then kill this worker (SIGKILL): they are left without it."""
    child = subprocess.Popen(["sleep", "300"])
    shell = subprocess.Popen(["sh", "-c", "sleep 300 & echo $!; wait"], stdout=subprocess.PIPE)
    assert shell.stdout is not None
    with open(path, "w", encoding="utf-8") as noted:
        noted.write(f"{child.pid} {shell.pid} {int(shell.stdout.readline())}")
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


@pytest.mark.slow
@pytest.mark.timeout(90)
def test_the_processes_a_task_started_die_with_its_crashed_worker(
    pool_executor: Executor, tmp_path: Path
) -> None:
    path = tmp_path / "pids"
    with Flow("orphans") as flow:
        crash = starts_sleep_then_dies(str(path))
    before = run_records()
    state = flow.run(executor=pool_executor)
    assert isinstance(state.result[crash], Failed), state.result[crash]
    del state
    gc.collect()
    # The broken pool keeps its error: it must not keep the run that received it, too.
    assert [o for i, o in run_records().items() if i not in before] == []
    pids = [int(pid) for pid in path.read_text().split()]
    assert len(pids) == 3
    for pid in pids:  # a child, a shell, and the shell's own child
        wait_gone(pid, timeout=20)
