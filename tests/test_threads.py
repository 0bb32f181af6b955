"""What is ``ThreadExecutor``'s own: threads of this process, run at once, soft timeouts,
contextvars and logs that follow each task into its thread. (The conformance suite runs
on it too: ``threads`` in ``conftest.EXECUTORS``.)"""

from __future__ import annotations

import contextvars
import gc
import logging
import os
import textwrap
import threading
from pathlib import Path

import pytest

import taskloom
from taskloom import Flow, task
from taskloom.executors import ThreadExecutor
from taskloom.journal import Journal
from taskloom.states import Failed, Success, TimedOut

from ._cli import interrupt, read_until, spawned


#: A contextvar of the caller's own, not taskloom's.
REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="unset")


def test_tasks_run_at_once_on_threads_of_this_process() -> None:
    both = threading.Barrier(2, timeout=20)  # passes only if two tasks wait at the same time

    @task
    def meet(n: int) -> tuple[int, str]:
        both.wait()
        return os.getpid(), threading.current_thread().name

    with Flow("threads-at-once") as flow:
        a, b = meet(1), meet(2)
    state = flow.run(executor=ThreadExecutor(max_workers=2))
    assert state.is_successful(), state.result
    (pid_a, name_a), (pid_b, name_b) = state.result[a].result, state.result[b].result
    assert pid_a == pid_b == os.getpid()
    assert {name_a, name_b} == {"taskloom-thread:0", "taskloom-thread:1"}
    assert state.run_id is not None
    recorded = {t.name: t.worker for t in Journal().load(state.run_id).tasks}
    assert set(recorded.values()) == {"thread:0", "thread:1"}


def test_the_callers_contextvars_and_taskloom_context_reach_each_thread() -> None:
    @task
    def seen() -> tuple[str, str, str]:
        return REQUEST_ID.get(), taskloom.context.get("tenant"), taskloom.context.task_name

    with Flow("threads-context") as flow:
        calls = [seen() for _ in range(4)]
    token = REQUEST_ID.set("r-42")
    try:
        with taskloom.context(tenant="acme"):
            state = flow.run(executor=ThreadExecutor(max_workers=2))
    finally:
        REQUEST_ID.reset(token)
    assert [state.result[c].result for c in calls] == [("r-42", "acme", "seen")] * 4


def test_a_timeout_is_soft_the_body_runs_on_and_its_thread_is_freed() -> None:
    release, body_ended = threading.Event(), threading.Event()

    @task(timeout=0.2)
    def stuck() -> str:
        release.wait(30)
        body_ended.set()
        return "late"

    @task(trigger=taskloom.triggers.always_run)
    def after() -> str:
        return threading.current_thread().name

    with Flow("threads-timeout") as flow:
        s = stuck()
        a = after()
        flow.set_dependencies(a, upstream_tasks=[s])
    try:
        # One thread: `after` runs only once `stuck`'s thread has moved on at its timeout.
        state = flow.run(executor=ThreadExecutor(max_workers=1))
        assert type(state.result[s]) is TimedOut, state.result[s]
        assert state.result[a].result == "taskloom-thread:0"
        assert not body_ended.is_set()  # still running in the background
    finally:
        release.set()
    assert body_ended.wait(30), "the timed-out body never ran on to its end"


def test_a_task_raising_system_exit_fails_alone() -> None:
    @task
    def leaves() -> None:
        raise SystemExit(3)

    @task
    def stays() -> int:
        return 1

    with Flow("threads-exit") as flow:
        gone, kept = leaves(), stays()
    state = flow.run(executor=ThreadExecutor(max_workers=2))
    assert type(state.result[gone]) is Failed
    assert "'leaves' raised SystemExit(3) in a worker thread" in str(state.result[gone].message)
    assert type(state.result[kept]) is Success


def test_the_journal_keeps_each_tasks_lines_once_when_threads_log_at_once() -> None:
    @task
    def chatty(n: int) -> int:
        logger = logging.getLogger(f"taskloom.task.chatty{n}")
        for i in range(200):
            logger.warning("task %d line %d", n, i)
        return n

    with Flow("threads-logs") as flow:
        for n in range(6):
            chatty(n)
    state = flow.run(executor=ThreadExecutor(max_workers=3))
    assert state.is_successful() and state.run_id is not None
    for record in Journal().load(state.run_id).tasks:
        assert record.logs is not None
        lines = [line for line in record.logs.splitlines() if " line " in line]
        assert len(lines) == 200, (record.name, len(lines))
        assert len(set(lines)) == 200, f"{record.name}: lines kept twice"


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "4"])
def test_a_bad_thread_count_is_named(bad: object) -> None:
    with pytest.raises(ValueError, match=rf"ThreadExecutor\(max_workers={bad!r}\)"):
        ThreadExecutor(max_workers=bad)  # type: ignore[arg-type]  # the bad input under test


def test_the_default_thread_count_suits_io_work() -> None:
    assert ThreadExecutor().max_workers == min(32, (os.cpu_count() or 1) + 4)


def test_a_dropped_executor_stops_its_threads() -> None:
    executor = ThreadExecutor(max_workers=2)

    @task
    def one() -> int:
        return 1

    with Flow("threads-stop") as flow:
        one()
    before = set(threading.enumerate())
    assert flow.run(executor=executor).is_successful()
    # The pool's threads ("taskloom-thread:N"), not the journal's writer, which ends on its own.
    threads = [t for t in set(threading.enumerate()) - before if t.name.startswith("taskloom-thread")]
    assert len(threads) == 2
    del executor  # the last reference: its finalizer tells its threads to stop
    gc.collect()  # a finished run may sit in a reference cycle that holds it
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)


INTERRUPTED = textwrap.dedent(
    """
    import threading
    from taskloom import Flow, task
    from taskloom.executors import ThreadExecutor

    @task
    def quick() -> int:
        return 1

    @task
    def blocked(x: int) -> int:
        print("started", flush=True)
        threading.Event().wait()  # never set: only the process's end stops it
        return x

    @task
    def other(x: int) -> int:
        return x

    with Flow("interrupted-threads") as flow:
        first = quick()  # two tasks after it: no chain, so it comes back on its own
        blocked(first)
        other(first)

    if __name__ == "__main__":
        flow.run(executor=ThreadExecutor(max_workers=2))
    """
)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_ctrl_c_ends_the_run_at_once_though_a_body_still_runs(tmp_path: Path) -> None:
    """A body that never returns cannot be stopped, but it does not hold the process: the
    run is journaled as interrupted and the process exits."""
    home, script = tmp_path / "home", tmp_path / "flow.py"
    script.write_text(INTERRUPTED)
    with spawned([str(script)], home) as child:
        read_until(child, lambda seen: "started\n" in seen)  # the blocked task runs
        _, err = interrupt(child)
    assert "KeyboardInterrupt" in err
    os.environ["TASKLOOM_HOME"] = str(home)  # the autouse fixture restores it
    journal = Journal()
    [run] = journal.runs()
    assert run.state == "Failed" and "interrupted" in (run.message or "")
    states = {t.name: t.state for t in journal.load(run.run_id).tasks}
    assert (states["quick"], states["blocked"]) == ("Success", "Failed"), states
