"""``LokyExecutor`` seen from outside: a flow run in a child interpreter that is interrupted
or killed, and task code that only exists in that interpreter's ``__main__``.

Each test writes a script to ``tmp_path`` and runs it with ``sys.executable`` in a session
of its own (so a signal to its process group never reaches pytest). Its output goes to
files, not pipes: a leaked worker would keep a pipe open. Every process a test starts,
directly or through the flow, is killed by PID in a ``finally``, so a failing test leaks
nothing. See the reliability catalogue, sections 2.3, 7.3 and 8.D.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped, unused-ignore]
import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(60)]

#: How long the parent may take to exit after the signal.
EXIT_WITHIN = 5.0
#: How long its workers and their children may outlive it.
ORPHANS_GONE_WITHIN = 3.0
#: After SIGKILL of the parent (the workers' watchdog polls every 0.5 s).
ORPHANS_GONE_AFTER_SIGKILL = 5.0

LONG_FLOW = textwrap.dedent(
    """
    import os
    import subprocess
    import sys
    import time
    from pathlib import Path

    from taskloom import Flow, task
    from taskloom.executors import LokyExecutor

    FOLDER = Path(sys.argv[1])


    def long_task(label: str) -> int:
        grandchild = subprocess.Popen(["sleep", "300"])
        tmp = FOLDER / f"{label}.tmp"
        tmp.write_text(f"{os.getpid()} {grandchild.pid}")
        os.replace(tmp, FOLDER / f"{label}.pids")  # appears whole
        time.sleep(300)
        return 0


    if __name__ == "__main__":
        with Flow("long") as flow:
            task(name="long_a")(long_task)("a")
            task(name="long_b")(long_task)("b")
        state = flow.run(executor=LokyExecutor(max_workers=2))
        print("finished", type(state).__name__, flush=True)
    """
)


def alive(process: Any) -> bool:
    """Whether a ``psutil.Process`` still runs (a zombie, dead but not reaped, does not)."""
    try:
        return bool(process.is_running() and process.status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def wait_gone(processes: list[Any], within: float) -> list[Any]:
    """Poll until none of ``processes`` runs or ``within`` seconds pass; the survivors."""
    deadline = time.monotonic() + within
    while True:
        survivors = [p for p in processes if alive(p)]
        if not survivors or time.monotonic() >= deadline:
            return survivors
        time.sleep(0.05)


def describe(processes: list[Any]) -> str:
    found = []
    for p in processes:
        try:
            found.append(f"{p.pid} {' '.join(p.cmdline())[:120]!r}")
        except psutil.Error:
            found.append(str(p.pid))
    return "; ".join(found)


class Child:
    """A script run in its own session, with everything it started tracked by PID."""

    def __init__(self, folder: Path, source: str) -> None:
        self.folder = folder
        script = folder / "script.py"
        script.write_text(source, encoding="utf-8")
        self.out = folder / "stdout.txt"
        self.err = folder / "stderr.txt"
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.popen = subprocess.Popen(
                [sys.executable, str(script), str(folder)],
                cwd=folder,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
            )
        self.process = psutil.Process(self.popen.pid)
        self.tracked: list[Any] = []

    def track(self, pids: Iterator[int] | list[int]) -> None:
        for pid in pids:
            try:
                self.tracked.append(psutil.Process(pid))
            except psutil.NoSuchProcess:
                pass

    def track_descendants(self) -> list[Any]:
        """Every process the script has started so far (workers, their children, loky's
        resource tracker); tracked for the final clean-up."""
        descendants: list[Any] = self.process.children(recursive=True)
        self.tracked.extend(descendants)
        return descendants

    def output(self) -> str:
        return (
            f"exit code {self.popen.returncode}\n"
            f"--- stdout\n{self.out.read_text(errors='replace')}"
            f"--- stderr\n{self.err.read_text(errors='replace')[-3000:]}"
        )

    def kill_everything(self) -> None:
        """Kill by PID what is left of the script and what it started (never by name)."""
        for p in [self.process, *self.tracked]:
            try:
                if p.is_running():
                    p.kill()
            except psutil.Error:
                pass
        try:
            self.popen.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover
            pass


@pytest.fixture
def child_factory(tmp_path: Path) -> Iterator[Any]:
    children: list[Child] = []

    def start(source: str) -> Child:
        child = Child(tmp_path, source)
        children.append(child)
        return child

    try:
        yield start
    finally:
        for child in children:
            child.kill_everything()


def wait_for_tasks(child: Child, labels: list[str], within: float = 30.0) -> list[int]:
    """Poll (with a deadline) until every long task has written its worker's and its
    grandchild's PIDs; return them all."""
    deadline = time.monotonic() + within
    files = [child.folder / f"{label}.pids" for label in labels]
    while not all(f.exists() for f in files):
        if child.popen.poll() is not None:
            pytest.fail(f"the script ended before its tasks started\n{child.output()}")
        if time.monotonic() >= deadline:
            pytest.fail(f"the tasks did not start within {within} s\n{child.output()}")
        time.sleep(0.05)
    pids = [int(pid) for f in files for pid in f.read_text().split()]
    child.track(pids)
    return pids


def interrupt_and_check(child: Child, send: Any, *, gone_within: float) -> None:
    """Wait for the long tasks, ``send`` a signal, then check that the parent exits and
    that no worker, grandchild or other descendant of it is left."""
    recorded = wait_for_tasks(child, ["a", "b"])
    workers = set(recorded[0::2])
    assert len(workers) == 2, recorded  # two workers, one long task each
    descendants = child.track_descendants()
    assert set(recorded) <= {p.pid for p in descendants}, (recorded, describe(descendants))

    send()
    exited_at = time.monotonic()
    try:
        child.popen.wait(timeout=EXIT_WITHIN)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the parent did not exit within {EXIT_WITHIN} s of the signal")
    assert "finished" not in child.out.read_text(), child.output()

    tracked = [p for p in child.tracked if p.pid in recorded]
    survivors = wait_gone(tracked, gone_within - (time.monotonic() - exited_at))
    assert not survivors, (
        f"workers / grandchildren still alive {gone_within} s after the parent died: "
        f"{describe(survivors)}\n{child.output()}"
    )
    others = wait_gone(descendants, 1.0)
    assert not others, f"other descendants still alive: {describe(others)}\n{child.output()}"


# -- 4. interrupts and termination of the parent ------------------------------------------------


def test_sigint_to_parent_only_stops_workers_and_grandchildren(child_factory: Any) -> None:
    child = child_factory(LONG_FLOW)
    interrupt_and_check(
        child, lambda: os.kill(child.popen.pid, signal.SIGINT), gone_within=ORPHANS_GONE_WITHIN
    )
    assert child.popen.returncode != 0
    assert "KeyboardInterrupt" in child.err.read_text(), child.output()


def test_sigterm_to_parent_stops_workers_and_grandchildren(child_factory: Any) -> None:
    child = child_factory(LONG_FLOW)
    interrupt_and_check(
        child, lambda: os.kill(child.popen.pid, signal.SIGTERM), gone_within=ORPHANS_GONE_WITHIN
    )
    assert child.popen.returncode in (128 + signal.SIGTERM, -signal.SIGTERM), child.output()


def test_sigint_to_process_group_stops_everything(child_factory: Any) -> None:
    child = child_factory(LONG_FLOW)
    # the script leads its own session and process group (start_new_session=True)
    assert os.getpgid(child.popen.pid) == child.popen.pid != os.getpgid(0)
    interrupt_and_check(
        child, lambda: os.killpg(child.popen.pid, signal.SIGINT), gone_within=ORPHANS_GONE_WITHIN
    )
    assert child.popen.returncode != 0


def test_sigkill_of_parent_leaves_no_orphans(child_factory: Any) -> None:
    child = child_factory(LONG_FLOW)
    interrupt_and_check(
        child,
        lambda: os.kill(child.popen.pid, signal.SIGKILL),
        gone_within=ORPHANS_GONE_AFTER_SIGKILL,
    )
    assert child.popen.returncode == -signal.SIGKILL


# -- 5. task code defined in __main__, as closures and as lambdas ------------------------------

MAIN_TASKS = textwrap.dedent(
    """
    import os

    from taskloom import Flow, task
    from taskloom.executors import LokyExecutor


    @task
    def source() -> int:
        return 5


    def square(x: int) -> tuple[int, int]:
        return x * x, os.getpid()


    def make_adder(n: int):
        def add(x: int) -> tuple[int, int]:
            return x + n, os.getpid()
        return add


    if __name__ == "__main__":
        with Flow("main-tasks") as flow:
            five = source()
            task(name="square")(square)(five)
            task(name="add_3")(make_adder(3))(five)
            task(name="double")(lambda x: (x * 2, os.getpid()))(five)
            task(name="plain_lambda")(lambda: "lambda ran")()
        state = flow.run(executor=LokyExecutor(max_workers=2))
        for t, s in sorted(state.result.items(), key=lambda item: item[0].name):
            value = s.result
            if isinstance(value, tuple):
                value, pid = value
                value = f"{value} in-worker={pid != os.getpid()}"
            print(t.name, type(s).__name__, value, flush=True)
        print("flow", type(state).__name__, flush=True)
    """
)


def test_tasks_from_main_closures_and_lambdas_run_in_workers(child_factory: Any) -> None:
    child = child_factory(MAIN_TASKS)
    try:
        child.popen.wait(timeout=45)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the script did not finish within 45 s\n{child.output()}")
    assert child.popen.returncode == 0, child.output()
    assert child.out.read_text().splitlines() == [
        "add_3 Success 8 in-worker=True",
        "double Success 10 in-worker=True",
        "plain_lambda Success lambda ran",
        "source Success 5",
        "square Success 25 in-worker=True",
        "flow Success",
    ], child.output()


SELF_REFERENCING = textwrap.dedent(
    """
    from taskloom import Flow, task
    from taskloom.executors import LokyExecutor


    @task
    def transform(x: int) -> str:
        # The body refers to its own task (for its logger): pickled by value from
        # __main__, the task is part of its own function's globals.
        return f"{x * 2} {transform.logger.name}"


    if __name__ == "__main__":
        with Flow("self-referencing") as flow:
            t = transform(3)
        state = flow.run(executor=LokyExecutor(max_workers=2))
        print(type(state.result[t]).__name__, state.result[t].result, flush=True)
    """
)


def test_a_main_task_whose_body_refers_to_itself_runs_in_a_worker(child_factory: Any) -> None:
    child = child_factory(SELF_REFERENCING)
    try:
        child.popen.wait(timeout=45)
    except subprocess.TimeoutExpired:
        pytest.fail(f"the script did not finish within 45 s\n{child.output()}")
    assert child.popen.returncode == 0, child.output()
    assert child.out.read_text().splitlines() == ["Success 6 taskloom.task.transform"], child.output()


# -- the channel to the workers (``loky._Channel``): the process's life around it ------------

CHANNEL_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from taskloom import Flow, task
    from taskloom.executors import LokyExecutor

    def mark(what, i):
        open(os.path.join(os.environ["MARKS"], f"{what}-{i}-{os.getpid()}-{time.time_ns()}"), "w").close()

    @task
    def parent_task(i):
        mark("started", i)
        time.sleep(0.3)
        mark("parent", i)
        return ("parent", i)

    @task
    def child_task(i):
        time.sleep(0.3)
        return ("child", i)

    def flow_of(body):
        with Flow("channel") as flow:
            outs = [body(i) for i in range(4)]
        return flow, outs

    case = sys.argv[1]
    flow, outs = flow_of(parent_task)
    if case == "two-sizes":  # a second pool (loky registers its exit hook again)
        assert flow.run(executor=LokyExecutor(max_workers=1)).is_successful()
        assert flow.run(executor=LokyExecutor(max_workers=2)).is_successful()
    elif case == "fork":  # a child forked with a pool must not use the parent's workers
        assert flow.run(executor=LokyExecutor(max_workers=2)).is_successful()
        pid = os.fork()
        if pid == 0:
            try:
                flow_of(child_task)[0].run(executor=LokyExecutor(max_workers=2))
            finally:
                os._exit(0)
        state = flow.run(executor=LokyExecutor(max_workers=2))
        got = sorted(state.result[t].result for t in outs)
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        assert got == [("parent", i) for i in range(4)], got
    elif case == "thread-exit":  # the main thread returns while a run goes on in another
        import threading
        assert flow.run(executor=LokyExecutor(max_workers=2)).is_successful()  # a pool
        slow, slow_outs = flow_of(parent_task)
        runner = threading.Thread(target=slow.run, kwargs={"executor": LokyExecutor(max_workers=2)})
        runner.start()
        # Its first batches are out once two of its tasks started (a first run started
        # four): they finish before the process ends.
        deadline = time.monotonic() + 30
        while len([m for m in os.listdir(os.environ["MARKS"]) if m.startswith("started")]) < 6:
            assert time.monotonic() < deadline, "the run in a thread started no task"
            time.sleep(0.01)
    elif case == "own-loky-after":  # the caller's own loky executor, started after ours
        import loky
        assert flow.run(executor=LokyExecutor(max_workers=2)).is_successful()
        assert loky.ProcessPoolExecutor(max_workers=1).submit(abs, -3).result() == 3
    else:  # "run": one run, in whatever TMPDIR the test gives
        assert flow.run(executor=LokyExecutor(max_workers=2)).is_successful()
    print("done", flush=True)
    """
)


@pytest.mark.parametrize(
    "case", ["two-sizes", "fork", "long-tmpdir", "thread-exit", "own-loky-after"]
)
def test_the_process_ends_and_its_results_are_its_own_whatever_it_did_with_pools(
    case: str, tmp_path: Path
) -> None:
    """Two pools, a fork with a pool alive, a TMPDIR too long for a socket's path, a run
    in a thread when the main thread returns, a loky executor of the caller's started
    after taskloom's: the run succeeds with its own results (the thread's: its batches out
    finish), and the process ends (loky's exit hook waits for its workers' calls: the
    channels must close first)."""
    script = tmp_path / "channel_flow.py"
    script.write_text(CHANNEL_SCRIPT)
    marks = tmp_path / "marks"
    marks.mkdir()
    env = {**os.environ, "TASKLOOM_HOME": str(tmp_path / "home"), "MARKS": str(marks)}
    if case == "long-tmpdir":
        long = tmp_path / ("t" * 100)
        long.mkdir()
        env["TMPDIR"] = str(long)
    done = subprocess.run(
        [sys.executable, str(script), case if case != "long-tmpdir" else "run"],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0 and "done" in done.stdout, done.stderr
    if case == "thread-exit":  # the batches out when the main thread returned ran to the end
        done_marks = [p.name for p in marks.iterdir() if p.name.startswith("parent")]
        assert len(done_marks) >= 4 + 2, sorted(p.name for p in marks.iterdir())


def test_a_pools_socket_takes_only_its_own_workers() -> None:
    """On Linux a pool listens on an abstract socket, which any local process may reach:
    only a child of this process (of this user) is taken as a worker."""
    from taskloom.executors.loky import _own_worker

    if not sys.platform.startswith("linux"):
        pytest.skip("a socket file in a private folder guards it elsewhere")
    ours, theirs = socket.socketpair(socket.AF_UNIX)
    with ours, theirs:
        assert not _own_worker(ours)  # this process itself: not its own child
    with socket.socket(socket.AF_UNIX) as listener:
        address = f"\0taskloom-test-{os.getpid()}-{time.monotonic_ns()}"
        listener.bind(address)
        listener.listen(1)
        connect = f"import socket; s = socket.socket(socket.AF_UNIX); s.connect({address!r}); s.recv(1)"
        child = subprocess.Popen([sys.executable, "-c", connect])
        try:
            accepted, _ = listener.accept()
            with accepted:
                assert _own_worker(accepted)  # a child of this process
        finally:
            child.kill()
            child.wait()


#: A stand-in for a worker that starts late: it connects to the pool at ``argv[1]``, says
#: so, says its PID only once told to (a line on stdin), then reads until its connection
#: ends and says that.
LATE_WORKER = textwrap.dedent(
    """
    import os, socket, sys
    from multiprocessing.connection import Connection

    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(bytes.fromhex(sys.argv[1]))
    conn = Connection(sock.detach())
    print("connected", flush=True)
    sys.stdin.readline()
    conn.send_bytes(str(os.getpid()).encode())
    try:
        conn.recv_bytes()
    except (EOFError, OSError):
        print("ended", flush=True)
    """
)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the pool's abstract socket")
def test_a_worker_that_says_its_pid_as_the_pool_hangs_up_is_hung_up_on_too() -> None:
    """The interpreter exits (the pool hangs up) while a worker that started late is
    saying its PID: its connection is ended like the others'. Before, it was left open:
    the worker's ``_serve`` waited for a batch for ever, and loky's exit hook for that
    call, so the process never exited (seen as a flow process hung at its exit in
    ``test_a_killed_resume_resumes_from_what_the_run_before_it_kept[through-loky]``).

    The race made certain: a stand-in worker connects to a socket of the test's, the pool
    hangs up, the stand-in says its PID, and only then does the channel take the
    connection (``_accept``, as its thread does when a worker connects)."""
    from taskloom.executors.loky import _Channel

    channel = _Channel(1, set())
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    late: subprocess.Popen[str] | None = None
    try:
        listener.bind(f"\0taskloom-test-late-{os.getpid()}-{time.monotonic_ns()}")
        listener.listen(1)
        late = subprocess.Popen(
            [sys.executable, "-c", LATE_WORKER, listener.getsockname().hex()],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert late.stdout is not None and late.stdin is not None
        assert late.stdout.readline() == "connected\n"
        channel.hang_up()
        late.stdin.write("go\n")
        late.stdin.flush()
        channel._accept(listener)
        out, _ = late.communicate(timeout=30)
        assert out == "ended\n", out
    finally:
        if late is not None:
            if late.poll() is None:
                late.kill()
                late.wait()
            for pipe in (late.stdin, late.stdout):  # (a pipe left open warns in a later test)
                if pipe is not None:
                    pipe.close()
        listener.close()
        channel.executor.shutdown(wait=True, kill_workers=True)
