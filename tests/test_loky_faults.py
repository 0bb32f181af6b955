"""Fault containment of ``LokyExecutor``, on a real loky pool (no mocks).

A task that kills its worker, that cannot be pickled, that times out in C code, fails
alone: the tasks around it end ``Success``, the flow run returns its states and the pool
serves the next run. See the reliability catalogue, sections 8.A-8.C.

The tasks are module-level functions: cloudpickle sends them by reference and the workers
import ``tests.test_loky_faults`` (loky gives them the parent's ``sys.path``).
Tests that interrupt or kill the parent process are in ``test_loky_process.py``.
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped, unused-ignore]
import pytest

from taskloom import Flow, task
from taskloom.executors import LocalExecutor, LokyExecutor
from taskloom.states import Failed, Success, TimedOut

from ._faults import started_sleeper, wait_for_a_file, wait_gone
from ._helpers import kind, lines, record

pytestmark = pytest.mark.timeout(60)

WORKERS = 2


# -- tasks (module level, so the workers import them by reference) ----------------------------


@task
def pid_of_worker() -> int:
    return os.getpid()


@task
def rendezvous(folder: str, count: int) -> int:
    """Wait (at most 10 s) until ``count`` runs of this task are running at once: their
    PIDs are then ``count`` different workers. Returns this worker's PID."""
    pid = os.getpid()
    Path(folder, str(pid)).touch()
    deadline = time.monotonic() + 10.0
    while len(os.listdir(folder)) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return pid


@task
def sleeper(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


@task
def sigkill_self(folder: str) -> int:
    wait_for_a_file(folder)  # a sleeper has started: it is in flight when this worker dies
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


@task
def segfault(folder: str) -> int:
    wait_for_a_file(folder)
    return len(ctypes.string_at(0))


@task
def takes_anything(value: object) -> str:
    return type(value).__name__


@task
def returns_lock() -> threading.Lock:
    return threading.Lock()


def _numbers() -> Iterator[int]:
    yield 1


@task
def returns_generator() -> Iterator[int]:
    return _numbers()


class NeedsArgsError(Exception):
    """An exception whose ``__init__`` needs two arguments: it pickles, but does not unpickle."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"code={code} detail={detail}")
        self.code = code
        self.detail = detail


class HoldsLockError(Exception):
    """An exception with an attribute that cannot be pickled."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.lock = threading.Lock()


@task
def raises_needs_args() -> int:
    raise NeedsArgsError(500, "boom")


@task
def raises_holds_lock() -> int:
    raise HoldsLockError("holding a lock")


@task(timeout=0.5)
def sleeps_past_timeout() -> int:
    time.sleep(10)
    return 0


@task(timeout=0.5)
def c_loop_past_timeout(path: str) -> int:
    record(path, str(os.getpid()))
    # One C call (sum over a range): no bytecode boundary, so SIGALRM's Python handler
    # never runs; only killing the worker stops it. Takes tens of seconds otherwise.
    return sum(range(3 * 10**9))


@task
def logs_twice() -> int:
    logger = logging.getLogger("user")
    logger.warning("hello %s", 1)
    logger.warning("hello %s", 2)
    return os.getpid()


@task
def writes(path: str) -> str:
    record(path, "ran")
    return "ran"


# -- helpers -----------------------------------------------------------------------------------


def worker_pids(tmp_path: Path, label: str) -> set[int]:
    """The PIDs of the pool's workers, from a run where each of them runs a task at once."""
    folder = tmp_path / f"rendezvous-{label}"
    folder.mkdir()
    with Flow(f"pids-{label}") as flow:
        for _ in range(WORKERS):
            rendezvous(str(folder), WORKERS)
    state = flow.run(executor=LokyExecutor(max_workers=WORKERS))
    assert state.is_successful(), state.result
    pids = {s.result for s in state.result.values()}
    assert len(pids) == WORKERS, pids
    return pids


def assert_pool_works() -> None:
    """A run on a new ``LokyExecutor`` succeeds (the pool recovered or was never broken)."""
    with Flow("after") as flow:
        a = pid_of_worker()
        b = sleeper(0.01)
    state = flow.run(executor=LokyExecutor(max_workers=WORKERS))
    assert kind(state) == "Success", state.result
    assert kind(state.result[a]) == "Success" and kind(state.result[b]) == "Success"
    assert isinstance(state.result[a].result, int) and state.result[a].result != os.getpid()


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie, dead but not reaped, is not)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


# -- 1. a worker that dies fails only its own task ---------------------------------------------
# (os._exit, on loky and on Dask, is in test_dispatch.py; here, the signals loky names)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("crasher", "cause"),
    [(sigkill_self, "SIGKILL(-9)"), (segfault, "SIGSEGV(-11)")],
    ids=["sigkill", "segfault"],
)
def test_worker_death_fails_only_its_task(crasher: Any, cause: str, tmp_path: Path) -> None:
    folder = str(tmp_path / "started")
    os.mkdir(folder)
    with Flow("worker-death") as flow:
        crash = crasher(folder)
        slow = started_sleeper(folder, 0.5)
        quick = started_sleeper(folder, 0.3)
    state = flow.run(executor=LokyExecutor(max_workers=WORKERS))

    states = state.result
    assert set(states) == set(flow.tasks)  # the run returned every task's state
    assert isinstance(states[crash], Failed), states[crash]
    message = states[crash].message or ""
    assert crasher.name in message and cause in message, message
    assert isinstance(states[slow], Success), states[slow]
    assert isinstance(states[quick], Success), states[quick]
    assert kind(state) == "Failed"
    # The two in flight when the worker died ran again once each, after the culprit ran
    # alone (in flight beside it, they would have kept it from being judged, run after run).
    assert len(os.listdir(folder)) <= 4, sorted(os.listdir(folder))
    assert_pool_works()


# -- 2. what cannot be pickled fails only its task; the pool stays up ---------------------------


def test_unpicklable_input_result_and_exceptions_fail_only_their_tasks(tmp_path: Path) -> None:
    before = worker_pids(tmp_path, "before")
    with Flow("unpicklable") as flow:
        lock_input = takes_anything(threading.Lock())
        lock_result = returns_lock()
        generator_result = returns_generator()
        needs_args = raises_needs_args()
        holds_lock = raises_holds_lock()
        sibling = pid_of_worker()
    state = flow.run(executor=LokyExecutor(max_workers=WORKERS))
    states = state.result
    assert set(states) == set(flow.tasks)
    assert kind(state) == "Failed"

    # the sibling ran on the same pool
    assert isinstance(states[sibling], Success), states[sibling]
    assert states[sibling].result in before

    expected = {
        lock_input: ("takes_anything", "lock"),
        lock_result: ("returns_lock", "lock"),
        generator_result: ("returns_generator", "generator"),
        needs_args: ("raises_needs_args", None),
        holds_lock: ("raises_holds_lock", None),
    }
    problems = []
    for handle, (name, type_name) in expected.items():
        got = states[handle]
        message = got.message or ""
        if not isinstance(got, Failed):
            problems.append(f"{name}: {kind(got)} {message!r}")
        elif name not in message or (type_name is not None and type_name not in message):
            problems.append(f"{name}: message {message!r} lacks {name!r} / {type_name!r}")
    # the exceptions keep their type name and text
    for handle, (type_name, text) in {
        needs_args: ("NeedsArgsError", "code=500 detail=boom"),
        holds_lock: ("HoldsLockError", "holding a lock"),
    }.items():
        error = states[handle].result
        if type_name not in repr(error) and type_name not in getattr(error, "type_name", ""):
            problems.append(f"{type_name}: result {error!r} lost the type name")
        if text not in str(error):
            problems.append(f"{type_name}: result {error!r} lost the text {text!r}")
    assert not problems, "\n".join(problems)

    # the pool was never broken: the same workers serve the next run
    assert worker_pids(tmp_path, "after") == before


# -- 3. timeouts stop the task, also in C code ------------------------------------------------


def test_timeout_interrupts_sleep(tmp_path: Path) -> None:
    before = worker_pids(tmp_path, "before")  # also warms the pool up
    with Flow("timeout-sleep") as flow:
        stuck = sleeps_past_timeout()
    state = flow.run(executor=LokyExecutor(max_workers=WORKERS))
    assert isinstance(state.result[stuck], TimedOut), state.result[stuck]
    # SIGALRM stopped it in the worker (the hard kill would say "stopped by killing its
    # worker"), and the pool was not killed
    assert str(state.result[stuck].result) == "timed out after 0.5 s", state.result[stuck].result
    assert worker_pids(tmp_path, "after") == before


@pytest.mark.slow
def test_timeout_kills_a_task_stuck_in_c_code(tmp_path: Path) -> None:
    path = str(tmp_path / "ran.txt")
    stuck_pid_file = str(tmp_path / "stuck.pid")
    with Flow("timeout-c-loop") as flow:
        stuck = c_loop_past_timeout(stuck_pid_file)
        independent = sleeper(0.3)
        also = writes(path)
    state = flow.run(executor=LokyExecutor(max_workers=WORKERS))
    assert isinstance(state.result[stuck], TimedOut), state.result[stuck]
    # stopped by the hard kill, not by SIGALRM (C code never lets its handler run)
    assert str(state.result[stuck].result) == "stopped by killing its worker", state.result[stuck]
    assert isinstance(state.result[independent], Success), state.result[independent]
    assert isinstance(state.result[also], Success), state.result[also]
    assert lines(path)  # it ran (maybe twice: bystanders of a killed pool may re-run)
    # stopped for real: the worker that was stuck in C is gone (killed with its pool)
    [stuck_pid] = map(int, lines(stuck_pid_file))
    assert not alive(stuck_pid), f"worker {stuck_pid} still runs the timed-out task"
    assert_pool_works()


@task(timeout=1)
def c_loop_one_second(path: str) -> int:
    record(path, str(os.getpid()))
    return sum(range(4 * 10**10))  # one C call: SIGALRM's handler never runs; minutes


@task
def pid_here() -> int:
    return os.getpid()


@pytest.mark.slow
def test_local_hard_timeouts_stop_c_code_in_a_worker_process(tmp_path: Path) -> None:
    """``LocalExecutor(hard_timeouts=True)``: the task with a timeout runs in a worker
    process, which is killed when C code ignores the timeout; the other task runs in the
    calling process, as without the option."""
    path = str(tmp_path / "pid")
    with Flow("local-hard-timeout") as flow:
        stuck = c_loop_one_second(path)
        here = pid_here()
    state = flow.run(executor=LocalExecutor(hard_timeouts=True))
    assert isinstance(state.result[stuck], TimedOut), state.result[stuck]
    assert state.result[here].result == os.getpid()
    [stuck_pid] = map(int, lines(path))
    assert stuck_pid != os.getpid()
    wait_gone(stuck_pid)
    # the option's pool serves the next run
    with Flow("local-hard-timeout-after") as after:
        quick = task(timeout=5)(lambda: os.getpid())()
    state = after.run(executor=LocalExecutor(hard_timeouts=True))
    assert state.is_successful(), state.result
    assert state.result[quick].result != os.getpid()


def test_hard_timeouts_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="hard_timeouts"):
        LocalExecutor(hard_timeouts="yes")  # type: ignore[arg-type]  # the wrong type is the test


# -- 6. logs from workers reach the parent's handlers -----------------------------------------


# -- 7. the pool is reused across runs ---------------------------------------------------------


def test_pool_is_reused_across_runs(tmp_path: Path) -> None:
    first = worker_pids(tmp_path, "first")
    second = worker_pids(tmp_path, "second")
    assert first == second


# -- 8. bad configuration is refused early -------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "shown"), [(0, "0"), ("2", "'2'"), (-1, "-1"), (1.5, "1.5")], ids=["0", "str", "neg", "float"]
)
def test_max_workers_must_be_a_whole_number(value: object, shown: str) -> None:
    bad: Any = value
    with pytest.raises(ValueError, match="max_workers") as raised:
        LokyExecutor(max_workers=bad)
    assert shown in str(raised.value)


def test_unpicklable_context_value_is_refused_before_any_task(tmp_path: Path) -> None:
    path = str(tmp_path / "ran.txt")
    with Flow("bad-context") as flow:
        writes(path)
    with pytest.raises(ValueError, match="'lock'"):
        flow.run(context={"lock": threading.Lock()}, executor=LokyExecutor(max_workers=WORKERS))
    assert lines(path) == []
    # the same flow runs with a picklable context
    state = flow.run(context={"lock": "fine"}, executor=LokyExecutor(max_workers=WORKERS))
    assert state.is_successful(), state.result
    assert lines(path) == ["ran"]


@task
def big_bytes() -> bytes:
    return b"\x07" * (2 << 20)


@task
def returns_lock_quickly() -> object:
    return threading.Lock()


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm on this system")
def test_shared_memory_files_are_removed_even_when_a_batch_mate_cannot_travel() -> None:
    with Flow("shm-cleanup") as flow:
        for _ in range(4):
            big_bytes()
            returns_lock_quickly()
    executor = LokyExecutor(max_workers=2)
    for _ in range(3):  # later runs batch these tasks together (their durations are known)
        state = flow.run(executor=executor, journal=False)
        results = [s for t, s in state.result.items() if t.name == "big_bytes"]
        assert all(s.result == b"\x07" * (2 << 20) for s in results)
    assert glob.glob(f"/dev/shm/taskloom-{os.getpid()}-*") == []


@task
def fails_on(data: bytes) -> int:
    raise ValueError(f"cannot use {len(data)} bytes")


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="no /dev/shm on this system")
def test_the_journal_keeps_a_failed_tasks_large_input_itself_not_a_handle() -> None:
    from taskloom.journal import Journal

    with Flow("journal-large-input") as flow:
        fails_on(big_bytes())
    state = flow.run(executor=LokyExecutor(max_workers=2))
    assert state.is_failed() and state.run_id is not None
    [stored] = [t for t in Journal().load(state.run_id).tasks if t.name == "fails_on"]
    assert stored.inputs is not None
    assert stored.inputs["data"] == b"\x07" * (2 << 20)  # the value, usable after the run


@task(timeout=0.2)
def quick_with_timeout() -> str:
    return "ran"


@pytest.mark.slow
def test_a_task_with_a_timeout_queued_behind_another_runs_task_is_timed_from_its_start(
    tmp_path: Path,
) -> None:
    """Two runs share a one-worker pool: the task with a timeout waits for the worker
    behind the other run's long task. Its hard deadline (2 x timeout + grace) counts from
    when a worker took it, not from when it was sent: it runs, and the long task is not
    killed with the pool."""
    from taskloom.executors.loky import HARD_TIMEOUT_GRACE

    started = tmp_path / "started"
    started.mkdir()
    with Flow("long-run") as long_flow:
        long = started_sleeper(str(started), 2 * 0.2 + HARD_TIMEOUT_GRACE + 0.8)
    with Flow("queued-run") as queued_flow:
        queued = quick_with_timeout()
    executor = LokyExecutor(max_workers=1)
    runner, outcome = run_in_a_thread(long_flow, executor)
    try:
        wait_for_a_file(str(started))
        state = queued_flow.run(executor=executor, journal=False)
    finally:
        runner.join(60)
    assert isinstance(state.result[queued], Success), state.result[queued]
    assert state.result[queued].result == "ran"
    assert isinstance(outcome["state"].result[long], Success), outcome["state"].result[long]


def run_in_a_thread(flow: Flow, executor: LokyExecutor) -> tuple[threading.Thread, dict[str, Any]]:
    """A run of ``flow`` started in a thread, and where its state goes (``"state"``)."""
    outcome: dict[str, Any] = {}
    runner = threading.Thread(
        target=lambda: outcome.update(state=flow.run(executor=executor, journal=False))
    )
    runner.start()
    return runner, outcome


@pytest.mark.slow
def test_a_worker_killed_while_idle_is_no_task_s_fault() -> None:
    """A one-worker pool whose worker was killed between two runs (the machine's
    out-of-memory killer, an operator): the next run's task is not blamed for the death
    (it was sent to a worker already dead); it runs on a new pool."""
    executor = LokyExecutor(max_workers=1)
    with Flow("idle-death") as flow:
        here = pid_here()
    first = flow.run(executor=executor, journal=False)
    worker = first.result[here].result
    os.kill(worker, signal.SIGKILL)
    wait_gone(worker)
    state = flow.run(executor=executor, journal=False)
    assert isinstance(state.result[here], Success), state.result[here]
    assert state.result[here].result != worker


@pytest.mark.slow
def test_a_worker_killed_as_a_batch_is_sent_to_it_is_no_task_s_fault() -> None:
    """A one-worker pool whose worker is killed an instant before the next run sends it a
    batch, while its process still ends (a busy machine's out-of-memory killer): the
    worker never took the batch, so its task is not blamed for the death; it runs on a
    new pool. (Sent with no wait, the batch reached the dying worker in every try.)"""
    executor = LokyExecutor(max_workers=1)
    with Flow("death-at-send") as flow:
        here = pid_here()
    for _ in range(3):
        worker = flow.run(executor=executor, journal=False).result[here].result
        os.kill(worker, signal.SIGKILL)  # no wait: the next send races the worker's end
        state = flow.run(executor=executor, journal=False)
        assert isinstance(state.result[here], Success), state.result[here]
        assert state.result[here].result != worker


@task
def pid_after(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


@pytest.mark.slow
def test_a_task_running_when_another_idle_worker_dies_runs_again_and_is_not_blamed(
    tmp_path: Path,
) -> None:
    """Two workers: one runs a long task, the other, idle, is killed (the machine's
    out-of-memory killer). The pool breaks, but the long task's own worker did not die:
    it runs again on a new pool and succeeds, instead of being named the killer."""
    executor = LokyExecutor(max_workers=2)
    with Flow("both-workers") as pids_flow:
        spread = pid_after.map([0.3] * 4)
    workers = set(pids_flow.run(executor=executor, journal=False).result[spread].result)
    assert len(workers) == 2, workers
    started = tmp_path / "started"
    started.mkdir()
    with Flow("long-beside") as flow:
        long = started_sleeper(str(started), 1.0)
    runner, outcome = run_in_a_thread(flow, executor)
    try:
        wait_for_a_file(str(started))
        busy = int(next(started.iterdir()).name.split("-")[0])
        [idle] = workers - {busy}
        os.kill(idle, signal.SIGKILL)
    finally:
        runner.join(60)
    state = outcome["state"]
    assert isinstance(state.result[long], Success), state.result[long]
    assert state.result[long].result != busy  # it ran again, on the new pool
