"""``DaskExecutor`` on a real Dask cluster (loopback only, no mocks).

The engine's behaviour on Dask is the conformance suite (the ``executor`` fixture runs
every flow test on local, loky and Dask); this file covers what is Dask's own: the optional
dependency, the cluster's life cycle, a worker that dies, large results kept on the
cluster, and what reaches task code and the parent's logs.

The tasks are module-level functions: Dask workers import ``tests.test_dask`` (the
LocalCluster gives them the parent's ``sys.path``).
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped, unused-ignore]
import pytest

import taskloom
from taskloom import Flow, Parameter, task
from taskloom.executors import DaskExecutor
from taskloom.executors.dask import INSTALL_HINT, DaskResult, close_clients
from taskloom.states import Failed, State, Success

from ._faults import started_sleeper, wait_for_a_file, wait_gone
from ._helpers import as_task, kind, lines, record

pytestmark = pytest.mark.timeout(90)

ROOT = Path(__file__).resolve().parent.parent


# -- tasks (module level, so the workers import them by reference) ----------------------------


@task
def peek(n: int) -> dict[str, Any]:
    names = ("task_name", "flow_name", "flow_run_id", "task_run_count", "key", "parameters")
    seen = {name: taskloom.context.get(name) for name in names}
    seen["parameters"] = dict(seen["parameters"])
    seen["pid"] = os.getpid()
    seen["ppid"] = os.getppid()
    seen["n"] = n
    return seen


@task
def logs_twice() -> int:
    logging.getLogger("user").warning("hello %d", 1)
    logging.getLogger("user").warning("hello %d", 2)
    return os.getpid()


@task
def pid_of_worker() -> tuple[int, int]:
    return os.getpid(), os.getppid()


@task
def sleeper(seconds: float) -> int:
    time.sleep(seconds)
    return os.getpid()


@task
def inc(x: int) -> int:
    return x + 1


@task
def sigkill_self(folder: str) -> int:
    wait_for_a_file(folder)  # a sleeper has started: it is in flight when this worker dies
    os.kill(os.getpid(), signal.SIGKILL)
    return 0


@task
def returns_lock() -> threading.Lock:
    return threading.Lock()


class Big:
    """A large value (``sizeof`` reads its payload) that records each unpickling:
    the process and time, one line in the file at ``path``."""

    def __init__(self, path: str, data: bytes) -> None:
        self.path = path
        self.data = data

    def __sizeof__(self) -> int:
        return len(self.data) + 64

    def __reduce__(self) -> tuple[Any, ...]:
        return (_load_big, (self.path, self.data))


def _load_big(path: str, data: bytes) -> Big:
    record(path, f"{os.getpid()} {time.time():.6f}")
    return Big(path, data)


@task
def make_big(path: str, nbytes: int) -> Big:
    return Big(path, b"\x07" * nbytes)


@task
def consume(big: Big, path: str) -> int:
    size = len(big.data)
    record(path, f"{time.time():.6f}")  # when this consumer finished with the value
    return size


class BigWithLock:
    """A large value (by ``sizeof``) that cannot be pickled."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __sizeof__(self) -> int:
        return 2 * 2**20


@task
def returns_big_lock() -> BigWithLock:
    return BigWithLock()


@task
def total(sizes: list[int]) -> int:
    return sum(sizes)


class Watcher:
    """A ``RunObserver`` that keeps the type of each finished task's result as the
    scheduler holds it during the run."""

    def __init__(self) -> None:
        self.result_types: dict[str, list[type]] = {}

    def run_started(self, flow_name: str, run_id: str, total: int) -> None:
        pass

    def task_changed(self, key: int, task_name: str, state: State[Any]) -> None:
        if state.is_finished():
            self.result_types.setdefault(task_name, []).append(type(state._result))

    def run_finished(self, state: State[Any]) -> None:
        pass


def children() -> dict[int, str]:
    """This process's live descendants, by PID, with their command lines."""
    found = {}
    for child in psutil.Process().children(recursive=True):
        try:
            if child.status() != psutil.STATUS_ZOMBIE:
                found[child.pid] = " ".join(child.cmdline())
        except psutil.NoSuchProcess:
            continue
    return found


def alive(pid: int) -> bool:
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


# -- 1. the optional dependency ----------------------------------------------------------------


def test_without_distributed_the_error_names_the_extra() -> None:
    code = (
        "import sys\n"
        "sys.modules['distributed'] = None  # as if it were not installed\n"
        "import taskloom\n"
        "from taskloom.executors import DaskExecutor\n"
        "assert 'dask' not in sys.modules, 'importing taskloom imported dask'\n"
        "try:\n"
        "    DaskExecutor()\n"
        "except ImportError as error:\n"
        "    print(error)\n"
        "else:\n"
        "    raise SystemExit('no error')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
    assert "DaskExecutor needs Dask distributed" in done.stdout
    assert INSTALL_HINT in done.stdout
    # taskloom is on no package index: the hint installs the extra from the clone.
    assert 'pip install -e ".[dask]"' in done.stdout


def test_an_address_with_cluster_options_is_an_error() -> None:
    pytest.importorskip("distributed")
    with pytest.raises(ValueError, match="n_workers"):
        DaskExecutor("tcp://127.0.0.1:8786", n_workers=2)


# -- 2. what reaches task code and the parent --------------------------------------------------


def test_context_and_parameters_reach_dask_tasks(dask_cluster: str) -> None:
    with Flow("dask-context") as flow:
        n = Parameter("n", default=1)
        t = peek(n)
    state = flow.run(
        parameters={"n": 7}, context={"key": "abc"}, executor=DaskExecutor(address=dask_cluster)
    )
    assert state.is_successful(), state.result
    seen = state.result[t].result
    assert seen["task_name"] == "peek"
    assert seen["flow_name"] == "dask-context"
    assert seen["task_run_count"] == 1
    assert seen["key"] == "abc"
    assert seen["parameters"] == {"n": 7}
    assert seen["n"] == 7
    assert isinstance(seen["flow_run_id"], str) and seen["flow_run_id"]
    assert seen["pid"] != os.getpid()  # it ran in a Dask worker process
    assert "key" not in taskloom.context  # nothing leaked back


def test_an_unpicklable_result_fails_only_its_task(dask_cluster: str) -> None:
    with Flow("dask-unpicklable") as flow:
        bad = returns_lock()
        good = inc(1)
    state = flow.run(executor=DaskExecutor(address=dask_cluster))
    assert isinstance(state.result[bad], Failed), state.result[bad]
    assert "cannot be pickled" in (state.result[bad].message or "")
    assert "returns_lock" in (state.result[bad].message or "")
    assert state.result[good] == Success(result=2)


# -- 3. large results stay on the cluster ------------------------------------------------------


def test_a_large_result_stays_on_the_cluster_until_the_end(
    dask_cluster: str, tmp_path: Path
) -> None:
    """The parent never holds the 2 MiB value while the run needs it only on workers: the
    scheduler's state for it holds a ``DaskResult``, the consumers get it worker-side, and
    the parent unpickles it only for the final states, after every consumer finished."""
    loads, ends = str(tmp_path / "loads"), str(tmp_path / "ends")
    with Flow("dask-large") as flow:
        big = make_big(loads, 2 * 2**20)
        sizes = [consume(big, ends) for _ in range(3)]
        summed = total(sizes)
    watcher = Watcher()
    state = flow.run(executor=DaskExecutor(address=dask_cluster), progress=watcher)
    assert state.is_successful(), state.result
    assert state.result[summed].result == 3 * 2 * 2**20
    assert watcher.result_types["make_big"] == [DaskResult]  # during the run
    consumed = [t for name, types in watcher.result_types.items() if name.startswith("consume[") for t in types]
    assert len(consumed) == 3 and set(consumed) == {int}  # small results: plain values (copies numbered)
    final = state.result[as_task(big)].result
    assert isinstance(final, Big) and len(final.data) == 2 * 2**20  # resolved at the end
    consumers_done = max(float(line) for line in lines(ends))
    in_parent = [float(t) for pid, t in (line.split() for line in lines(loads))
                 if int(pid) == os.getpid()]
    assert in_parent, "the final state should hold the value itself"
    assert min(in_parent) > consumers_done, (in_parent, consumers_done)


def test_a_large_unpicklable_result_fails_only_its_task(dask_cluster: str) -> None:
    """Checked before it is left on the worker: it could move neither to another worker
    nor to the parent, so it fails its own task now, as on loky."""
    with Flow("dask-large-unpicklable") as flow:
        bad = returns_big_lock()
        good = inc(1)
    state = flow.run(executor=DaskExecutor(address=dask_cluster))
    assert isinstance(state.result[bad], Failed), state.result[bad]
    assert "cannot be pickled" in (state.result[bad].message or "")
    assert state.result[good] == Success(result=2)


# -- 4. the cluster's life cycle ---------------------------------------------------------------


def test_address_mode_leaves_the_cluster_running(dask_cluster: str) -> None:
    distributed = pytest.importorskip("distributed")
    with Flow("dask-address") as flow:
        t = pid_of_worker()
    first = flow.run(executor=DaskExecutor(address=dask_cluster))
    assert first.is_successful(), first.result
    worker_pid, _ = first.result[t].result
    assert alive(worker_pid)
    # A new executor (and any other client) still finds the same cluster and workers.
    second = flow.run(executor=DaskExecutor(address=dask_cluster))
    assert second.is_successful(), second.result
    with distributed.Client(dask_cluster, set_as_default=False) as client:
        assert len(client.nthreads()) == 2
        assert client.submit(sum, [1, 2], pure=False).result() == 3
    assert alive(worker_pid)


def test_no_address_starts_a_local_cluster_and_closes_it() -> None:
    before = children()
    executor = DaskExecutor(n_workers=2, threads_per_worker=1)
    with Flow("dask-local") as flow:
        t = pid_of_worker()
    state = flow.run(executor=executor)
    assert state.is_successful(), state.result
    worker_pid, worker_parent = state.result[t].result
    assert worker_pid != os.getpid() and worker_parent == os.getpid()  # our own cluster
    assert executor.client is None  # released with the run
    deadline = time.monotonic() + 10
    while alive(worker_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(worker_pid), "the local cluster's worker outlived the run"
    # Nothing else is left but multiprocessing's resource tracker (one per process, shared).
    left = {pid: cmd for pid, cmd in children().items()
            if pid not in before and "resource_tracker" not in cmd}
    assert not left, left


# -- 5. a worker that dies ---------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("killer", [sigkill_self], ids=["sigkill"])
def test_a_killed_worker_fails_only_its_task(killer: Any, tmp_path: Path) -> None:
    """A task that kills its worker ends Failed with a message naming it; the tasks in
    flight with it, and what follows them, end Success; the run returns. (On a cluster
    this executor starts; os._exit on a shared one, and on loky: test_dispatch.py.)"""
    # A cluster of its own: the shared one's workers are restarted by the nanny, but the
    # tests after this one should not wait for that.
    executor = DaskExecutor(n_workers=2, threads_per_worker=1)
    folder = str(tmp_path / "started")
    os.mkdir(folder)
    with Flow("dask-kill") as flow:
        k = killer(folder)
        a = started_sleeper(folder, 0.5)
        b = started_sleeper(folder, 0.5)
        after = inc(a)
    state = flow.run(executor=executor)
    failed = state.result[k]
    assert isinstance(failed, Failed), failed
    assert killer.name in (failed.message or "")
    assert "killed the Dask worker" in (failed.message or "")
    assert [kind(state.result[x]) for x in (a, b, after)] == ["Success"] * 3
    assert state.result[after].result == state.result[a].result + 1
    assert state.is_failed()  # the flow's state says a reference task failed


# -- 6. a cluster with no workers --------------------------------------------------------------


def test_a_cluster_without_workers_fails_the_run_naming_the_scheduler(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    from taskloom.executors.dask import NoWorkersError

    path = str(tmp_path / "ran")
    with Flow("dask-no-workers") as flow:
        record_and_return(path)
    with distributed.LocalCluster(
        n_workers=0, host="127.0.0.1", dashboard_address="127.0.0.1:0"
    ) as cluster:
        address = cluster.scheduler_address
        executor = DaskExecutor(address=address, worker_wait=0.5)
        with pytest.raises(NoWorkersError) as raised:
            flow.run(executor=executor)
        message = str(raised.value)
        assert address in message and "no workers" in message, message
        assert "worker_wait" in message, message
        assert executor.client is None  # the run released what it started
        close_clients()  # before its scheduler goes
    assert lines(path) == []


@task
def record_and_return(path: str) -> str:
    record(path, "ran")
    return "ran"


def test_worker_wait_and_grace_must_be_seconds() -> None:
    pytest.importorskip("distributed")
    with pytest.raises(ValueError, match="worker_wait"):
        DaskExecutor(worker_wait=-1)
    with pytest.raises(ValueError, match="hard_timeout_grace"):
        DaskExecutor(hard_timeout_grace="5")  # type: ignore[arg-type]  # the wrong type is the test


# -- 7. a task that outlives its timeout does not keep its worker -------------------------------


@task(timeout=0.5)
def hangs_in_python(path: str) -> int:
    record(path, str(os.getpid()))
    time.sleep(300)  # past its timeout, in its thread: nothing in Python can stop it
    return 0


@task(timeout=0.5)
def hangs_in_c(path: str) -> int:
    record(path, str(os.getpid()))
    return sum(range(4 * 10**10))  # one C call holding the GIL: minutes


@pytest.mark.slow
@pytest.mark.parametrize("hang", [hangs_in_python, hangs_in_c], ids=["python", "c-code"])
def test_a_hung_task_gets_its_worker_restarted_and_the_next_run_its_slot(
    hang: Any, tmp_path: Path
) -> None:
    """One worker with one thread: the hung task ends TimedOut, its worker process is
    replaced through the nanny (the body does not run on), and the next run gets the
    worker's slot."""
    distributed = pytest.importorskip("distributed")
    path = str(tmp_path / "pid")
    with Flow("dask-hung") as hung:
        stuck = hang(path)
    with Flow("dask-after-hung") as after:
        t = pid_of_worker()
    with distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address="127.0.0.1:0", scheduler_kwargs={"allowed_failures": 0},
    ) as cluster:
        executor = DaskExecutor(address=cluster.scheduler_address, hard_timeout_grace=1.0)
        try:
            state = hung.run(executor=executor)
            assert kind(state.result[stuck]) == "TimedOut", state.result[stuck]
            [hung_pid] = map(int, lines(path))
            wait_gone(hung_pid)
            state = after.run(executor=executor)
            assert state.is_successful(), state.result
            new_pid, _ = state.result[t].result
            assert new_pid != hung_pid and alive(new_pid)
            assert lines(path) == [str(hung_pid)]  # the hung task was not run again
        finally:
            close_clients()


# -- 8. a large result lost with its worker is made again ---------------------------------------


@task
def make_big_counted(runs: str, nbytes: int) -> bytes:
    record(runs, str(os.getpid()))  # each time the body runs, and where
    return b"\x07" * nbytes


@task
def wait_for_file(path: str) -> str:
    deadline = time.monotonic() + 60
    while not os.path.exists(path) and time.monotonic() < deadline:
        time.sleep(0.01)  # a rendezvous with the test, which writes the file
    return path


@task
def size_of(data: bytes, gate: str) -> int:
    return len(data)


class KillHolder:
    """A ``RunObserver``: once ``make_big_counted`` finished, wait until its value is on a
    worker, kill that worker's process (SIGKILL) and wait until it is gone, then write
    ``gate`` (the consumers wait for it)."""

    def __init__(self, address: str, gate: str) -> None:
        self.address = address
        self.gate = gate
        self.killed: list[int] = []

    def run_started(self, flow_name: str, run_id: str, total: int) -> None:
        pass

    def task_changed(self, key: int, task_name: str, state: State[Any]) -> None:
        if task_name != "make_big_counted" or not state.is_successful():
            return
        import distributed

        held = state._result
        assert isinstance(held, DaskResult) and held.future is not None, held
        held.future.result(timeout=60)  # on its worker now
        with distributed.Client(self.address, set_as_default=False) as client:
            future: distributed.Future[bytes] = distributed.Future(held.future.key, client)
            [holder] = client.who_has([future])[future.key]
            pid = client.run(os.getpid, workers=[holder])[holder]
        os.kill(pid, signal.SIGKILL)
        wait_gone(pid)
        self.killed.append(pid)
        Path(self.gate).touch()

    def run_finished(self, state: State[Any]) -> None:
        pass


@pytest.mark.slow
def test_a_large_result_lost_with_its_worker_is_made_again(tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    runs, gate = str(tmp_path / "runs"), str(tmp_path / "gate")
    nbytes = 2 * 2**20
    with Flow("dask-large-lost") as flow:
        big = make_big_counted(runs, nbytes)
        opened = wait_for_file(gate)
        sizes = [size_of(big, opened) for _ in range(2)]
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
        dashboard_address="127.0.0.1:0", scheduler_kwargs={"allowed_failures": 0},
    ) as cluster:
        observer = KillHolder(cluster.scheduler_address, gate)
        try:
            state = flow.run(executor=DaskExecutor(address=cluster.scheduler_address), progress=observer)
        finally:
            close_clients()
    assert [kind(state.result[s]) for s in sizes] == ["Success", "Success"], state.result
    assert [state.result[s].result for s in sizes] == [nbytes, nbytes]
    assert state.result[big].result == b"\x07" * nbytes
    [killed] = observer.killed
    made = [int(pid) for pid in lines(runs)]
    assert len(made) == 2 and made[0] == killed and made[1] != killed, (made, killed)
