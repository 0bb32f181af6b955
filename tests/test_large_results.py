"""Large results: what a run hands back of them, on every executor, and where loky keeps
them (shared memory, until the caller reads them).

A result of ``loky.SHARE_THRESHOLD`` bytes or more travels between loky's workers through
a file in ``/dev/shm``; the final state of its task reads it only when the caller reads
``result`` (``states.fetched_on_read``). To the caller it is a ``Success`` like any other.
"""

from __future__ import annotations

import glob
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from taskloom import Flow, task
from taskloom.executors import Executor, LocalExecutor, LokyExecutor
from taskloom.executors.loky import SHARE_THRESHOLD
from taskloom.states import Mapped, State, Success, loaded

SIZE = SHARE_THRESHOLD + 5
SHM = "/dev/shm"
needs_shm = pytest.mark.skipif(not os.path.isdir(SHM), reason="no /dev/shm on this system")


@task
def make(byte: int) -> bytes:
    return bytes([byte]) * SIZE


@task
def make_array(byte: int) -> bytearray:
    return bytearray([byte]) * SIZE


@task
def length(data: bytes) -> int:
    return len(data) + data[-1]


@task
def lengths(parts: list[bytes]) -> list[int]:
    return [len(part) for part in parts]


def own_files() -> list[str]:
    """The shared-memory files of this process's workers."""
    return glob.glob(f"{SHM}/taskloom-{os.getpid()}-*")


def test_a_large_result_reads_as_any_success_does(executor: Executor) -> None:
    with Flow("large") as flow:
        data, array = make(7), make_array(8)
        used = length(data)
    state = flow.run(executor=executor, journal=False)
    assert state.is_successful(), state.result
    assert state.result[used].result == SIZE + 7
    final, final_array = state.result[data], state.result[array]
    assert type(final) is Success and {Success: "ok"}[type(final)] == "ok"
    assert repr(final) == '<Success: "Task run succeeded.">'
    assert final.result == bytes([7]) * SIZE
    assert type(final_array.result) is bytearray and final_array.result == bytearray([8]) * SIZE
    assert final == Success(result=bytes([7]) * SIZE) and Success(result=bytes([7]) * SIZE) == final
    assert final != Success(result=b"other")
    copy = pickle.loads(pickle.dumps(final))
    assert type(copy) is Success and copy.result == final.result
    plain = loaded(final)
    assert type(plain) is Success and plain.result is final.result
    assert final.replace(message="m").result is final.result
    assert final.replace(result=b"x").result == b"x"


def test_a_large_result_seeds_a_later_run(executor: Executor) -> None:
    """A state from a run whose value was never read seeds the next run (``task_states``):
    the task does not run again, and what uses it gets the value."""
    with Flow("large-seed") as flow:
        data = make(3)
        used = length(data)
    first = flow.run(executor=executor, journal=False)
    again = flow.run(
        executor=executor, journal=False, task_states={data: first.result[data]}
    )
    assert again.is_successful(), again.result
    assert again.result[used].result == SIZE + 3
    assert again.result[data].result == bytes([3]) * SIZE


def test_a_mapped_task_of_large_results_holds_their_values(executor: Executor) -> None:
    """Its result and its children's states hold the values, not handles to files its
    run deleted."""
    with Flow("large-map") as flow:
        parts = make.map([1, 2, 3])
        sizes = lengths(parts)
    state = flow.run(executor=executor, journal=False)
    assert state.is_successful(), state.result
    assert state.result[sizes].result == [SIZE] * 3
    mapped = state.result[parts]
    assert isinstance(mapped, Mapped)
    assert mapped.result == [bytes([n]) * SIZE for n in (1, 2, 3)]
    assert [child.result for child in mapped.map_states] == mapped.result


def report_sizes(task: object, old: State[Any], new: State[Any]) -> None:
    if isinstance(new, Mapped):
        sizes_seen.append(sum(len(part) for part in new.result or []))


sizes_seen: list[int] = []


def relabel(task: object, old: State[Any], new: State[Any]) -> State[Any] | None:
    if isinstance(new, Mapped):  # (a map over nothing: no children, no result)
        return Mapped(f"{new.n_map_states} parts made", map_states=new.map_states)
    return None


def test_a_mapped_tasks_state_handlers_see_the_values(executor: Executor) -> None:
    """A mapped task's handlers get its children's values (not handles to where a worker
    left them), and a handler's ``Mapped`` of no children ends the run as it should."""
    sizes_seen.clear()
    with Flow("large-map-handlers") as flow:
        made = make.copy(state_handlers=[report_sizes]).map([1, 2])
        none = make.copy(state_handlers=[relabel]).map([])
    state = flow.run(executor=executor, journal=False)
    assert state.is_successful(), state.result
    assert sizes_seen == [2 * SIZE]
    assert state.result[made].result == [bytes([1]) * SIZE, bytes([2]) * SIZE]
    assert state.result[none].message == "0 parts made"


@task(timeout=30)
def make_in_a_worker(byte: int) -> bytes:
    return bytes([byte]) * SIZE


def test_local_hard_timeouts_give_a_task_here_the_value_made_in_the_worker() -> None:
    """``LocalExecutor(hard_timeouts=True)``: a task with a timeout runs in a worker
    process, where its large result stays in shared memory; the task after it, run in
    this process, gets the value."""
    with Flow("hard-timeouts-large") as flow:
        used = length(make_in_a_worker(4))
    state = flow.run(executor=LocalExecutor(hard_timeouts=True), journal=False)
    assert state.is_successful(), state.result
    assert state.result[used].result == SIZE + 4


@needs_shm
def test_loky_keeps_a_large_result_in_shared_memory_until_it_is_read() -> None:
    with Flow("large-kept") as flow:
        data = make(5)
        length(data)
    state = flow.run(executor=LokyExecutor(max_workers=2), journal=False)
    assert state.is_successful(), state.result
    assert len(own_files()) == 1  # the run ended; its value was not read yet
    final = state.result[data]
    value = final.result
    assert value == bytes([5]) * SIZE
    assert own_files() == []  # read once, into this process
    assert final.result is value


@needs_shm
def test_loky_deletes_an_unread_large_result_with_its_state() -> None:
    with Flow("large-dropped") as flow:
        make(6)
    state = flow.run(executor=LokyExecutor(max_workers=2), journal=False)
    assert state.is_successful(), state.result
    assert len(own_files()) == 1
    del state  # (no collection of cycles: the file goes with the last reference)
    assert own_files() == []


EXIT_SCRIPT = textwrap.dedent(
    """
    import os, subprocess, sys
    from taskloom import Flow, task
    from taskloom.executors import LokyExecutor

    @task
    def make() -> bytes:
        return b"x" * (2 << 20)

    @task
    def tunables() -> list[str]:
        started = subprocess.run(
            [sys.executable, "-c", "import os; print(os.environ.get('GLIBC_TUNABLES', ''))"],
            capture_output=True, text=True, check=True,
        )
        # What glibc read when the worker started (its environment then), and what a
        # process it starts gets.
        try:
            with open("/proc/self/environ", "rb") as environ:
                at_start = dict(
                    entry.decode().partition("=")[::2] for entry in environ.read().split(b"\\0") if entry
                )
        except OSError:  # (no /proc)
            at_start = {}
        return [at_start.get("GLIBC_TUNABLES", ""), started.stdout.strip()]

    with Flow("exit") as flow:
        data = make()
        seen = tunables()
    state = flow.run(executor=LokyExecutor(max_workers=1))
    assert state.is_successful(), state.result
    in_task, in_its_child = state.result[seen].result
    print(in_task)
    print("child", in_its_child)
    print(os.getpid(), file=sys.stderr)
    kept = state.result[data]  # never read: the interpreter's exit deletes its file
    """
)


def run_script(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "exit_flow.py"
    script.write_text(EXIT_SCRIPT)
    return subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "TASKLOOM_HOME": str(tmp_path / "home"), **env},
        capture_output=True, text=True, timeout=60,
    )


@needs_shm
def test_a_process_that_exits_with_an_unread_large_result_leaves_no_file(tmp_path: Path) -> None:
    done = run_script(tmp_path)
    assert done.returncode == 0, done.stderr
    pid = int(done.stderr.split()[-1])
    assert glob.glob(f"{SHM}/taskloom-{pid}-*") == []


@needs_shm
@pytest.mark.skipif(not os.path.exists("/proc/self/ns/pid"), reason="no PID namespaces here")
def test_a_new_pool_deletes_the_files_of_processes_gone(tmp_path: Path) -> None:
    """A process killed before its run ended left its large results in shared memory
    (memory until the machine restarts): the next pool to start deletes them, and only
    those of processes gone."""
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    dead_pid = int(gone.stdout)
    space = os.stat("/proc/self/ns/pid").st_ino
    left = Path(SHM, f"taskloom-{dead_pid}-{dead_pid + 1}-{space}-12345")
    live = Path(SHM, f"taskloom-{os.getpid()}-{os.getpid()}-{space}-12345")  # a live process's
    # A process of another PID namespace (a container sharing /dev/shm) numbers apart: a
    # PID no process has here may be one that runs there.
    elsewhere = Path(SHM, f"taskloom-{dead_pid}-{dead_pid + 1}-{space + 1}-12345")
    for path, text in ((left, b"left behind"), (live, b"in use"), (elsewhere, b"theirs")):
        path.write_bytes(text)
    try:
        done = run_script(tmp_path)  # a new process: its first run starts a pool
        assert done.returncode == 0, done.stderr
        assert not left.exists()
        assert live.exists() and elsewhere.exists()
    finally:
        for path in (left, live, elsewhere):
            path.unlink(missing_ok=True)


def test_loky_workers_back_large_allocations_with_huge_pages_unless_told_not_to(
    tmp_path: Path,
) -> None:
    """On Linux with glibc 2.35 or newer (and huge pages on request), loky's workers start
    with ``glibc.malloc.hugetlb=1``; a ``GLIBC_TUNABLES`` that sets it wins."""
    libc = (os.confstr("CS_GNU_LIBC_VERSION") or "").split()
    thp = Path("/sys/kernel/mm/transparent_hugepage/enabled")
    supported = (
        sys.platform.startswith("linux") and len(libc) == 2 and libc[0] == "glibc"
        and tuple(int(p) for p in libc[1].split(".")[:2]) >= (2, 35)
        and thp.exists() and "[never]" not in thp.read_text()
    )
    # What a task sees, then what a process it starts sees (the parent's environment).
    default = run_script(tmp_path)
    assert default.returncode == 0, default.stderr
    assert default.stdout.split("\n")[:2] == ["glibc.malloc.hugetlb=1" if supported else "", "child "]
    mine = run_script(tmp_path, GLIBC_TUNABLES="glibc.malloc.hugetlb=0")
    assert mine.returncode == 0, mine.stderr
    assert mine.stdout.split("\n")[:2] == ["glibc.malloc.hugetlb=0", "child glibc.malloc.hugetlb=0"]
    other = run_script(tmp_path, GLIBC_TUNABLES="glibc.malloc.tcache_count=0")
    assert other.returncode == 0, other.stderr
    # (glibc cuts the string it parsed at its first tunable, in place: the rest is not
    # to be seen there)
    in_task, in_its_child = other.stdout.split("\n")[:2]
    assert in_task.startswith("glibc.malloc.tcache_count=0")
    assert in_its_child == "child glibc.malloc.tcache_count=0"


FORK_SCRIPT = textwrap.dedent(
    """
    import multiprocessing, os
    from taskloom import Flow, task
    from taskloom.executors import LokyExecutor

    @task
    def make() -> bytes:
        return b"y" * (2 << 20)

    with Flow("fork") as flow:
        data = make()
    state = flow.run(executor=LokyExecutor(max_workers=1))

    def child_reads(ready):
        ready.wait(30)  # the parent has read it
        return len(state.result[data].result)

    if __name__ == "__main__":
        context = multiprocessing.get_context("fork")
        ready = context.Manager().Event()
        with context.Pool(1) as pool:
            child = pool.apply_async(child_reads, (ready,))
            print(len(state.result[data].result))
            ready.set()
            print(child.get(timeout=30))
    """
)


@needs_shm
def test_a_child_forked_after_a_run_reads_a_large_result_the_parent_read(tmp_path: Path) -> None:
    script = tmp_path / "fork_flow.py"
    script.write_text(FORK_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script)],
        env={**os.environ, "TASKLOOM_HOME": str(tmp_path / "home")},
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(2 << 20)] * 2, done.stderr


DEATH_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, threading, time
    from taskloom import Flow, task
    from taskloom.executors import LokyExecutor

    STARTED = sys.argv[1]

    @task
    def pid_after(i: int) -> int:
        time.sleep(0.3)
        return os.getpid()

    @task
    def big_after(seconds: float) -> bytes:
        open(os.path.join(STARTED, f"{os.getpid()}-{time.monotonic_ns()}"), "w").close()
        time.sleep(seconds)
        return b"z" * (2 << 20)

    executor = LokyExecutor(max_workers=2)
    with Flow("pids") as pids_flow:
        spread = pid_after.map([0, 1, 2, 3])
    with Flow("large-beside-a-death") as flow:
        made = big_after(1.0)
    print(os.getpid(), flush=True)
    for attempt in range(3):
        workers = set(pids_flow.run(executor=executor, journal=False).result[spread].result)
        for name in os.listdir(STARTED):
            os.unlink(os.path.join(STARTED, name))
        outcome = {}
        runner = threading.Thread(target=lambda: outcome.update(state=flow.run(executor=executor, journal=False)))
        runner.start()
        while not os.listdir(STARTED):
            time.sleep(0.005)
        busy = int(os.listdir(STARTED)[0].split("-")[0])
        time.sleep(0.95)  # the large result is being made, written, sent back...
        for pid in workers - {busy}:
            os.kill(pid, signal.SIGKILL)  # ... when the other worker dies
        runner.join(60)
        assert len(outcome["state"].result[made].result) == 2 << 20
    """
)


@pytest.mark.slow
@needs_shm
def test_a_large_result_lost_with_its_pool_leaves_no_file(tmp_path: Path) -> None:
    """A large result written to shared memory by a batch whose reply never came (the
    pool broke: another worker died) is deleted with the pool, not left until the
    machine restarts."""
    script = tmp_path / "death_flow.py"
    script.write_text(DEATH_SCRIPT)
    started = tmp_path / "started"
    started.mkdir()
    done = subprocess.run(
        [sys.executable, str(script), str(started)],
        env={**os.environ, "TASKLOOM_HOME": str(tmp_path / "home")},
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    pid = int(done.stdout.split()[0])
    assert glob.glob(f"{SHM}/taskloom-{pid}-*") == []


KILLED_SCRIPT = textwrap.dedent(
    """
    import os, sys
    from taskloom import Flow, task
    from taskloom.executors import LokyExecutor

    @task
    def make() -> bytes:
        return b"k" * (2 << 20)

    with Flow("killed") as flow:
        data = make()
    state = flow.run(executor=LokyExecutor(max_workers=1))
    kept = state.result[data]  # never read: its file stays until the process is killed
    print(os.getpid(), flush=True)
    sys.stdin.read()  # until the test kills it
    """
)


@pytest.mark.parametrize("how", ["SIGKILL", "SIGTERM"])
@needs_shm
def test_a_process_killed_with_an_unread_large_result_leaves_no_file(
    tmp_path: Path, how: str
) -> None:
    """A process killed (no time to delete its files) while its final state held a large
    result unread: the worker that made it deletes its file once it sees its parent gone,
    not the next pool to start (perhaps never)."""
    import signal
    import time

    script = tmp_path / "killed_flow.py"
    script.write_text(KILLED_SCRIPT)
    with subprocess.Popen(
        [sys.executable, str(script)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        env={**os.environ, "TASKLOOM_HOME": str(tmp_path / "home")}, text=True,
    ) as process:
        try:
            assert process.stdout is not None
            pid = int(process.stdout.readline())
            assert len(glob.glob(f"{SHM}/taskloom-{pid}-*")) == 1
            process.send_signal(getattr(signal, how))
            process.wait(30)
        finally:
            process.kill()
    # The worker checks on its parent twice a second: wait for it to act.
    deadline = time.monotonic() + 30
    while glob.glob(f"{SHM}/taskloom-{pid}-*") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert glob.glob(f"{SHM}/taskloom-{pid}-*") == []


ORPHAN_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys, time
    from taskloom import Flow, task
    from taskloom.executors import LokyExecutor

    @task
    def made_as_its_parent_dies() -> bytes:
        parent = os.getppid()
        data = b"o" * (2 << 20)
        with open(sys.argv[1], "w") as out:
            out.write(str(os.getpid()))
        os.kill(parent, signal.SIGKILL)
        while os.getppid() == parent:  # the value is made once it has another parent
            time.sleep(0.001)
        return data

    with Flow("orphan") as flow:
        made_as_its_parent_dies()
    flow.run(executor=LokyExecutor(max_workers=1))
    """
)


@needs_shm
def test_a_large_result_made_after_the_parent_died_is_not_left_behind(tmp_path: Path) -> None:
    """A worker that finishes a large result once its parent is gone names its file for
    that parent (not for the process it was handed to), so the file goes with the worker,
    or with the next pool's sweep; never kept for good as a live process's."""
    import time

    script = tmp_path / "orphan_flow.py"
    script.write_text(ORPHAN_SCRIPT)
    pid_file = tmp_path / "worker"
    done = subprocess.run(
        [sys.executable, str(script), str(pid_file)],
        env={**os.environ, "TASKLOOM_HOME": str(tmp_path / "home")},
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == -9, done.stderr
    worker = pid_file.read_text()

    def left() -> list[str]:
        return [name for name in os.listdir(SHM)
                if name.startswith("taskloom-") and name.split("-")[2:3] == [worker]]

    deadline = time.monotonic() + 10  # the worker sees its parent gone within 0.5 s
    while (left() or os.path.exists(f"/proc/{worker}")) and time.monotonic() < deadline:
        time.sleep(0.05)
    if left():  # the worker wrote it after its last look: the sweep's, as the parent is gone
        with Flow("sweep") as flow:
            make(1)
        flow.run(executor=LokyExecutor(max_workers=1))
    assert left() == []
