"""One executor serves several flow runs at once, from several threads.

``Executor.begin`` gives each flow run its own ``ExecutorRun``: nothing of one run (its
queues, batches in flight, results, deferred values) may reach another, though they
share the executor and, on loky and Dask, its workers. Runs on every executor of the
conformance matrix (``executor`` fixture); the tasks are module-level so the workers
import them by reference.
"""

from __future__ import annotations

import datetime as dt
import glob
import os
import threading
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped, unused-ignore]
import pytest

import taskloom
from taskloom import Flow, Task, task
from taskloom.flow import FlowResult
from taskloom.executors import Executor
from taskloom.states import Failed, State, Success

from ._helpers import as_task, kind

pytestmark = pytest.mark.timeout(120)

RUNS = 8
#: How long the runs may take together before the test calls it a hang.
WITHIN = 90.0


@task
def square(x: int) -> int:
    return x * x


@task
def total(values: list[int]) -> int:
    return sum(values)


@task(max_retries=1, retry_delay=dt.timedelta(0))
def fails_once(x: int) -> tuple[int, int]:
    attempt: int = taskloom.context.task_run_count
    if attempt == 1:
        raise ValueError(f"first attempt of {x}")
    return x, attempt


@task
def fails(x: int) -> int:
    raise ValueError(f"bad {x}")


@task
def plus_one(x: int) -> int:
    return x + 1


def build(i: int) -> tuple[Flow, dict[Task[Any, Any], tuple[str, object]]]:
    """Flow ``i``: a fan-out of squares and their sum (values of this flow alone), and
    either a task that fails once then succeeds on its retry, or one that fails with a
    task downstream of it. Returns the flow and each task's expected (state, result)."""
    expected: dict[Task[Any, Any], tuple[str, object]] = {}
    with Flow(f"concurrent-{i}") as flow:
        squares = []
        for j in range(5):
            x = 100 * i + j
            squares.append(square(x))
            expected[as_task(squares[-1])] = ("Success", x * x)
        summed = total(squares)
        expected[as_task(summed)] = ("Success", sum((100 * i + j) ** 2 for j in range(5)))
        if i % 2 == 0:
            retried = fails_once(summed)
            expected[as_task(retried)] = ("Success", (expected[as_task(summed)][1], 2))
        else:
            failed = fails(i)
            after = plus_one(failed)
            expected[as_task(failed)] = ("Failed", None)
            expected[as_task(after)] = ("TriggerFailed", None)
    return flow, expected


def run_all_at_once(
    executor: Executor, flows: list[Flow]
) -> list[State[FlowResult] | BaseException]:
    """Run each flow in a thread of its own, all started together, on ``executor``."""
    outcomes: list[State[FlowResult] | BaseException | None] = [None] * len(flows)
    start = threading.Barrier(len(flows))

    def run(i: int) -> None:
        try:
            start.wait(timeout=30)
            outcomes[i] = flows[i].run(executor=executor, journal=False)
        except BaseException as error:  # handed to the test below
            outcomes[i] = error

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(flows))]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + WITHIN
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    hung = [i for i, thread in enumerate(threads) if thread.is_alive()]
    if hung:
        pytest.fail(f"flow runs {hung} did not finish within {WITHIN} s")
    done: list[State[FlowResult] | BaseException] = []
    for outcome in outcomes:
        assert outcome is not None
        done.append(outcome)
    return done


def test_runs_from_several_threads_get_their_own_results(executor: Executor) -> None:
    flows_expected = [build(i) for i in range(RUNS)]
    outcomes = run_all_at_once(executor, [flow for flow, _ in flows_expected])
    problems = []
    for i, ((flow, expected), outcome) in enumerate(zip(flows_expected, outcomes)):
        if isinstance(outcome, BaseException):
            problems.append(f"run {i} raised {outcome!r}")
            continue
        assert set(outcome.result) == set(flow.tasks)
        for t, (state_name, value) in expected.items():
            got = outcome.result[t]
            if kind(got) != state_name or (state_name == "Success" and got.result != value):
                problems.append(f"run {i} {t.name}: {got!r}, expected {state_name} {value!r}")
        wanted = Success if i % 2 == 0 else Failed
        if type(outcome) is not wanted:
            problems.append(f"run {i}: flow ended {outcome!r}")
    assert not problems, "\n".join(problems)


# -- a crash in one run, on workers another run shares ----------------------------------------


@task
def started(path: str) -> str:
    Path(path).touch()
    time.sleep(0.3)  # the work: still running when the other run's task kills its worker
    return "done"


@task
def exits_once_started(path: str) -> int:
    """Kill this worker once the other run's task has started (waiting at most 5 s)."""
    deadline = time.monotonic() + 5
    while not Path(path).exists() and time.monotonic() < deadline:
        time.sleep(0.01)  # another process's file: nothing to wait on but the file system
    os._exit(3)


@pytest.mark.slow
def test_a_crash_is_blamed_on_its_culprit_not_on_another_run(
    pool_executor: Executor, tmp_path: Path
) -> None:
    """Two runs on one pool: a task of one kills its worker while a task of the other
    runs. On loky the whole pool breaks, so both runs lose a batch; on Dask only what was
    on that worker. Either way only the culprit ends Failed, in its own run."""
    flag = str(tmp_path / "started")
    with Flow("bystander") as bystander:
        running = started(flag)
    with Flow("crasher") as crasher:
        culprit = exits_once_started(flag)
        side = [square(n) for n in range(3)]
    bystanding, crashing = run_all_at_once(pool_executor, [bystander, crasher])
    assert not isinstance(bystanding, BaseException), bystanding
    assert not isinstance(crashing, BaseException), crashing
    assert isinstance(bystanding.result[running], Success), bystanding.result[running]
    failed = crashing.result[culprit]
    assert isinstance(failed, Failed), failed
    assert "exits_once_started" in (failed.message or "") and "killed" in (failed.message or "")
    assert [crashing.result[s].result for s in side] == [0, 1, 4]


# -- an interrupted run, on a pool another run uses ------------------------------------------


@task
def big_once_released(started: str, release: str) -> bytes:
    """Say which worker runs it, wait (at most 30 s) for ``release``, return 2 MiB."""
    Path(started).write_text(str(os.getpid()))
    deadline = time.monotonic() + 30
    while not Path(release).exists() and time.monotonic() < deadline:
        time.sleep(0.01)  # the test's file: nothing to wait on but the file system
    return b"\x07" * (2 << 20)


@task
def worker_pid() -> int:
    return os.getpid()


def wait_until(condition: Any, within: float = 30.0) -> bool:
    """Poll ``condition()`` (a file system state another process makes) every 10 ms until
    it is true or ``within`` seconds passed."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.slow
@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm on this system")
def test_an_interrupted_run_leaves_a_pool_another_run_uses(tmp_path: Path) -> None:
    """Ending a run with a batch out stops the pool only if no other run uses it. Here
    another does: the pool stays, the body already running finishes, and the large
    result it leaves in shared memory is deleted, since no run will take it."""
    from taskloom.attempt import TaskRun
    from taskloom.executors import LokyExecutor

    started, release = tmp_path / "started", tmp_path / "release"
    executor = LokyExecutor(max_workers=2)
    other = executor.begin({"flow_run_id": "other"})
    interrupted = executor.begin({"flow_run_id": "interrupted"})
    try:
        inputs = {"started": str(started), "release": str(release)}
        interrupted.submit([TaskRun(0, big_once_released, inputs)])
        assert wait_until(lambda: started.exists() and started.read_text())
        busy_worker = int(started.read_text())
        interrupted.end()  # as after Ctrl-C: its run is still out
        release.touch()
        other.submit([TaskRun(0, worker_pid, {})])
        [result] = other.collect(30)
        assert isinstance(result.state, Success), result.state
        assert wait_until(lambda: not glob.glob(f"/dev/shm/taskloom-{os.getpid()}-*"))
        assert psutil.pid_exists(busy_worker)  # the pool was not shut down
    finally:
        release.touch()
        other.end()
