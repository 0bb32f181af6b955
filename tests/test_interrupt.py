"""An interrupted run is recorded as such in the journal, with what finished."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, TypeVar

import pytest

from taskloom import Task, task, triggers
from taskloom.journal import Journal
from taskloom.states import TriggerFailed

from ._cli import interrupt, spawned

SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    from taskloom import Flow, task

    @task
    def quick() -> int:
        return 1

    @task
    def other() -> int:
        return 2

    @task
    def slow(x: int, y: int, flag: str) -> int:
        if Path(flag).exists():  # resumed: finish at once
            return x + y
        Path(flag).write_text(str(os.getpid()))
        time.sleep(60)
        return x + y

    with Flow("interrupted") as flow:  # two upstreams: slow is not chained to one
        slow(quick(), other(), sys.argv[1])

    if __name__ == "__main__":
        if sys.argv[2:] == ["dask"]:  # a local cluster of its own
            from taskloom.executors import DaskExecutor

            flow.run(executor=DaskExecutor(n_workers=1, threads_per_worker=1))
        else:
            flow.run()
    """
)


@task
def start() -> str:
    return "started"


@task
def source() -> int:
    return 5


#: What the tasks below ran, in order: cleared before each test (``_ran``).
RAN: list[str] = []


@pytest.fixture(autouse=True)
def _ran() -> None:
    RAN.clear()


@task
def double(x: int) -> int:
    RAN.append("double")
    return 2 * x


@task(trigger=triggers.all_failed)
def on_failure(x: int) -> int:
    RAN.append("on_failure")
    return 0


@task(trigger=triggers.all_finished)
def tally(x: object) -> str:
    RAN.append("tally")
    return repr(x)


@task
def lock() -> object:
    """A result that cannot be pickled: the journal does not store it."""
    RAN.append("lock")
    return threading.Lock()


T = TypeVar("T")


def fails_once(name: str, value: T) -> Task[[], T]:
    """A task ``name`` that fails the first time it runs in a test (``RAN`` counts it)
    and returns ``value`` after."""

    def body() -> T:
        RAN.append(name)
        if RAN.count(name) == 1:
            raise ValueError("the first time")
        return value

    return task(name=name)(body)


@pytest.mark.slow
@pytest.mark.timeout(60)
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_run_is_recorded_with_what_finished(tmp_path: Path, signum: int) -> None:
    """Ctrl-C, or SIGTERM, while a task runs on LocalExecutor (in the scheduler's own
    thread): the run is recorded as interrupted, and its resume runs only what did not
    finish."""
    home = tmp_path / "home"
    flag = tmp_path / "started"
    script = tmp_path / "flow.py"
    script.write_text(SCRIPT)
    with spawned([str(script), str(flag)], home) as child:
        deadline = time.monotonic() + 30
        while not flag.exists():  # wait until the slow task runs
            assert child.poll() is None and time.monotonic() < deadline, "flow never started"
            time.sleep(0.02)
        if signum == signal.SIGINT:
            _, err = interrupt(child)
            assert "KeyboardInterrupt" in err
        else:
            child.send_signal(signum)
            _, err = child.communicate(timeout=20)
            assert child.returncode == 128 + signum, err
    os.environ["TASKLOOM_HOME"] = str(home)  # the autouse fixture restores it
    journal = Journal()
    [run] = journal.runs()
    assert run.state == "Failed"
    assert run.message is not None and "interrupted" in run.message
    recorded = {t.name: t for t in journal.load(run.run_id).tasks}
    assert {n: t.state for n, t in recorded.items()} == {
        "quick": "Success", "other": "Success", "slow": "Failed"
    }
    assert recorded["slow"].inputs == {"x": 1, "y": 2, "flag": str(flag)}

    # Resumed in a new process: the interrupted task runs again with its stored inputs,
    # and the finished ones do not run again.
    resumed = subprocess.run(
        [sys.executable, "-m", "taskloom", "resume", run.run_id, "--flow", f"{script}:flow",
         "--executor", "local", "--no-progress"],
        env={**os.environ, "TASKLOOM_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert re.search(r"^slow\s+Success\s+1\b", resumed.stdout, re.M), resumed.stdout
    assert re.search(r"^quick\s+Success\s+0\b", resumed.stdout, re.M), resumed.stdout


def test_resume_runs_tasks_the_run_never_reached_from_stored_results(taskloom_home: Path) -> None:
    from taskloom import Flow
    from taskloom.resume import resume
    from taskloom.states import Pending, Success

    @task
    def double(x: int, extra: int) -> int:
        return 2 * x + extra

    with Flow("partial") as flow:
        s = start()
        c = source()
        d = double(c, extra=1)
    # A partial run: only `start` runs; `source` is given as done, `double` is never reached.
    first = flow.run(task_states={c: Success(result=5)}, start_tasks=[s])
    assert isinstance(first.result[d], Pending)
    assert first.run_id is not None
    again = resume(first.run_id, flow=flow)
    assert again.is_successful(), again.result
    assert again.result[d].result == 11  # from the stored result of `source`, and the constant
    assert Journal().load(str(again.run_id)).tasks[0].attempts == 0  # `start` did not run again


def test_resume_checks_the_trigger_of_a_task_the_run_never_reached(taskloom_home: Path) -> None:
    """A task the run never reached starts from stored results only if its trigger lets
    it: ``manual_only`` pauses it (a later resume runs it), ``all_failed`` after a success
    ends it ``TriggerFailed``, and so the task after it; the others start as before."""
    from taskloom import Flow
    from taskloom.resume import resume
    from taskloom.states import Paused, Pending, Success

    @task(trigger=triggers.manual_only)
    def gate(x: int) -> int:
        RAN.append("gate")
        return 2 * x

    @task
    def report(x: int) -> int:
        RAN.append("report")
        return x

    with Flow("never-reached") as flow:
        s = start()
        c = source()
        g, k, d = gate(c), on_failure(c), double(c)
        r = report(k)
    first = flow.run(task_states={c: Success(result=5)}, start_tasks=[s])
    assert all(isinstance(first.result[t], Pending) for t in (g, k, d, r))
    assert first.run_id is not None
    again = resume(first.run_id, flow=flow)
    assert isinstance(again.result[g], Paused), again.result[g]
    assert again.result[g].cached_inputs == {"x": 5}
    assert isinstance(again.result[k], TriggerFailed), again.result[k]
    assert isinstance(again.result[r], TriggerFailed), again.result[r]  # as decided after k
    assert again.result[d].result == 10
    assert RAN == ["double"]
    assert again.run_id is not None
    approved = resume(again.run_id, flow=flow)  # the paused task runs, from its inputs
    assert approved.result[g].result == 10 and RAN == ["double", "gate"]


def test_resume_runs_a_never_reached_task_after_tasks_that_did_not_succeed(taskloom_home: Path) -> None:
    """A task the run never reached whose trigger lets it run after an upstream task that
    did not succeed runs in the resume, as in a whole run, beside the resume's other start
    tasks: an ``all_finished`` cleanup only ordered after a task recorded
    ``TriggerFailed`` (no result needed), and one fed by a task the resume itself decided
    ``TriggerFailed`` (fed that state's result). Both were left ``Pending``."""
    from taskloom import Flow
    from taskloom.resume import resume
    from taskloom.states import Success, TriggerFailed

    @task(trigger=triggers.all_finished)
    def cleanup() -> None:
        RAN.append("cleanup")

    with Flow("after-no-success") as flow:
        s, c, c2 = start(), source(), source()
        d = double(c2)
        t = tally(on_failure(c2))
        k = cleanup()
        flow.set_dependencies(k, upstream_tasks=[c])
    whole = flow.run(task_states={c: TriggerFailed("not this time")})
    assert sorted(RAN) == ["cleanup", "double", "tally"]
    RAN.clear()
    first = flow.run(task_states={c: TriggerFailed("not this time"), c2: Success(result=5)}, start_tasks=[s])
    assert first.run_id is not None
    again = resume(first.run_id, flow=flow)
    assert sorted(RAN) == ["cleanup", "double", "tally"], again.result
    assert again.result[d].result == 10
    assert again.result[t].result == whole.result[t].result  # the TriggerFailed's result
    assert again.result[k].is_successful()


def test_resume_feeds_a_never_reached_task_what_a_whole_run_would(taskloom_home: Path) -> None:
    """A never-reached task fed by upstream tasks the run recorded ``TriggerFailed`` or
    ``Skipped`` (their recorded results), or by a list of results beside an ordering edge
    from such a task, runs in the resume as in a whole run seeded the same way. Each was
    left ``Pending`` (a recorded task that did not succeed fed nothing; a list argument
    counted the ordering edge as one)."""
    from taskloom import Flow
    from taskloom.resume import resume
    from taskloom.states import Skipped, State, Success, TriggerFailed

    @task(skip_on_upstream_skip=False)
    def noskip(x: object) -> str:
        return repr(x)

    @task(trigger=triggers.all_finished)
    def total(xs: list[int]) -> int:
        return sum(xs)

    with Flow("fed-by-no-success") as flow:
        s, c, c2, c3, a, b = start(), source(), source(), source(), source(), source()
        d = double(c2)  # another start task of the resume
        t, n, o = tally(c), noskip(c3), total([a, b])
        flow.set_dependencies(o, upstream_tasks=[c])
    seeds: dict[object, State[Any]] = {
        c: TriggerFailed("no"), c2: Success(result=5), c3: Skipped("skip"),
        a: Success(result=1), b: Success(result=2),
    }
    whole = flow.run(task_states=seeds, journal=False)
    first = flow.run(task_states=seeds, start_tasks=[s])
    assert first.run_id is not None
    again = resume(first.run_id, flow=flow)
    for x in (d, t, n, o):
        assert again.result[x].is_successful(), (x, again.result[x])
        assert again.result[x].result == whole.result[x].result, x
    assert again.result[o].result == 3


def test_resume_runs_again_a_success_whose_result_it_needs_and_the_run_did_not_store(
    taskloom_home: Path,
) -> None:
    """A result that could not be pickled is not stored: a resume that runs a task taking
    it (again after a failure, or never reached before) runs its producer again, and the
    task gets the real value, where it got None; a task that took it and succeeded keeps
    its outcome (it does not run again). A resume that leaves such a task waiting (behind
    a paused one) keeps no result for the producer, so the resume after it runs the
    producer again too."""
    from taskloom import Flow
    from taskloom.journal import Journal
    from taskloom.resume import resume
    from taskloom.states import Failed

    @task
    def kind_of(v: object) -> str:
        return type(v).__name__

    @task
    def noted(v: object) -> str:
        RAN.append("noted")
        return type(v).__name__

    @task(trigger=triggers.manual_only)
    def gate() -> int:
        return 1

    @task
    def late(v: object, g: int) -> str:
        return type(v).__name__

    with Flow("unstored") as flow:
        s, x = start(), lock()
        k = kind_of(x)
        flow.set_dependencies(k, upstream_tasks=[s])  # fails first: reruns after s
        w = late(x, gate())
        noted(x)
    first = flow.run(task_states={s: Failed("not yet")})
    assert first.run_id is not None and sorted(RAN) == ["lock", "noted"]
    RAN.remove("noted")
    assert not {t.name: t for t in Journal().load(first.run_id).tasks}["lock"].has_result
    again = resume(first.run_id, flow=flow, tasks=["start"])  # s, then k; gate stays paused
    assert again.result[k].result == "lock" and RAN == ["lock", "lock"], again.result[k]
    assert again.run_id is not None
    kept = {t.name: t for t in Journal().load(again.run_id).tasks}
    assert kept["lock"].state == "Success" and not kept["lock"].has_result, kept["lock"]
    approved = resume(again.run_id, flow=flow)  # gate runs, then w, after lock again
    assert approved.result[w].result == "lock", approved.result[w]
    assert RAN == ["lock", "lock", "lock"]


def test_resume_runs_a_failed_or_paused_task_whose_inputs_were_not_stored(taskloom_home: Path) -> None:
    """A failed task (and a paused one) whose inputs could not be pickled, so were not
    stored, runs again in the resume from its upstream tasks' results, those not stored
    made again first: it was not resumed at all (the failed one), or refused as a start
    task without its inputs (the paused one). What its failure ended ``TriggerFailed``
    runs after it (it kept its recorded state)."""
    from taskloom import Flow
    from taskloom.resume import resume

    @task
    def pair(v: object) -> tuple[object, str]:
        RAN.append("pair")
        return v, "held"

    @task
    def flaky(p: tuple[object, str]) -> str:
        RAN.append("flaky")
        if RAN.count("flaky") == 1:
            raise ValueError("the first time")
        return type(p[0]).__name__

    @task(trigger=triggers.manual_only)
    def gate(v: object) -> str:
        return type(v).__name__

    @task
    def shout(name: str) -> str:
        RAN.append("shout")
        return name.upper()

    with Flow("inputs-not-stored") as flow:
        x = lock()
        f = flaky(pair(x))
        d = shout(f)
        g = gate(x)
    first = flow.run()  # flaky fails, gate pauses
    assert first.result[f].is_failed() and first.run_id is not None
    assert isinstance(first.result[d], TriggerFailed)
    again = resume(first.run_id, flow=flow)
    assert again.is_successful(), again.result
    assert (again.result[f].result, again.result[g].result) == ("lock", "lock")
    assert again.result[d].result == "LOCK"
    assert RAN == ["lock", "pair", "flaky", "lock", "pair", "flaky", "shout"]


def test_resume_maps_a_task_whose_upstream_failed_after_it_runs_again(taskloom_home: Path) -> None:
    """A mapped task over a task that failed ended ``Failed`` without running ("No
    upstream states can be mapped over"), with no inputs: the resume runs what it maps
    over again, then maps it, also when that task was itself blocked by a failed task
    whose inputs were not stored. Before, the resume was refused (a start task without
    its inputs), or fed it the failure's result."""
    from taskloom import Flow
    from taskloom.resume import resume

    listed = fails_once("listed", [1, 2])

    @task
    def after_lock(v: object) -> int:
        RAN.append("after_lock")
        if RAN.count("after_lock") == 1:
            raise ValueError("the first time")
        return 3

    @task
    def upto(n: int) -> list[int]:
        return list(range(n))

    with Flow("map-after-failure") as flow:
        direct = double.map(listed())
        through = double.map(upto(after_lock(lock())))
    first = flow.run()
    assert first.run_id is not None
    assert first.result[direct].message == first.result[through].message == (
        "No upstream states can be mapped over."
    )
    again = resume(first.run_id, flow=flow)
    assert again.is_successful(), again.result
    assert again.result[direct].result == [2, 4]
    assert again.result[through].result == [0, 2, 4]
    assert sorted(RAN) == sorted(["listed", "after_lock", "lock"] * 2 + ["double"] * 5)


def test_resume_maps_again_a_task_that_took_a_failed_task_whole(taskloom_home: Path) -> None:
    """A mapped task took a task that failed whole (``unmapped``): its children ended
    ``TriggerFailed``. The resume runs the failed task again, then maps the task again,
    as a whole run would. Before, it kept the children's recorded ``TriggerFailed``."""
    from taskloom import Flow, unmapped
    from taskloom.resume import resume

    factor = fails_once("factor", 3)

    @task
    def times(a: int, k: int) -> int:
        RAN.append("times")
        return a * k

    with Flow("unmapped-failed") as flow:
        total = tally(times.map([1, 2], unmapped(factor())))
    first = flow.run()
    assert first.run_id is not None and RAN == ["factor", "tally"]
    again = resume(first.run_id, flow=flow)
    assert again.is_successful(), again.result
    assert again.result[total].result == "[3, 6]"
    assert RAN == ["factor", "tally", "factor", "times", "times", "tally"]


def test_resume_decides_a_failed_task_after_one_that_runs_again_from_its_new_result(
    taskloom_home: Path,
) -> None:
    """An ``all_finished`` task ran after a failure, on the failure's result, and failed
    too; both run again in the resume. The ``all_finished`` task waits for the other and is
    fed its new result, as in a whole run, not the failure its stored inputs hold."""
    from taskloom import Flow
    from taskloom.resume import resume

    flaky_source = fails_once("source", 1)

    @task(trigger=triggers.all_finished)
    def describe(x: object) -> str:
        RAN.append("describe")
        if RAN.count("describe") == 1:
            raise ValueError("the first time too")
        return repr(x)

    with Flow("after-a-failure") as flow:
        described = describe(flaky_source())
    first = flow.run()
    assert first.run_id is not None and first.result[described].is_failed()
    again = resume(first.run_id, flow=flow)
    assert again.is_successful(), again.result
    assert again.result[described].result == "1"
    assert RAN == ["source", "describe", "source", "describe"]


def test_a_never_reached_task_waits_for_a_success_run_again_before_it(taskloom_home: Path) -> None:
    """A task the run never reached, only ordered after a success whose result was not
    stored and that runs again (another task needs it), is decided after it, as in a whole
    run: when it fails now, the task ends ``TriggerFailed``. It was decided from the
    success's recorded state, and ran before it."""
    from taskloom import Flow
    from taskloom.resume import resume
    from taskloom.states import Success, TriggerFailed

    @task
    def lock_once() -> object:
        RAN.append("lock_once")
        raise ValueError("fails when run again")

    @task
    def ordered() -> str:
        RAN.append("ordered")
        return "ran"

    with Flow("after-rerun") as flow:
        s, x = start(), lock_once()
        k = tally(x)  # needs x's result: x runs again (and tally after it, finished)
        o = ordered()
        flow.set_dependencies(o, upstream_tasks=[x])
    first = flow.run(task_states={x: Success(result=threading.Lock())}, start_tasks=[s])
    assert first.run_id is not None
    again = resume(first.run_id, flow=flow)
    assert RAN == ["lock_once", "tally"], RAN
    assert again.result[x].is_failed()
    assert isinstance(again.result[o], TriggerFailed), again.result[o]
    assert "fails when run again" in str(again.result[k].result)


def test_resume_maps_again_a_mapped_task_whose_results_it_needs_and_the_run_did_not_store(
    taskloom_home: Path,
) -> None:
    """A mapped task whose children's results could not be stored maps again when a task
    that runs in the resume takes its results: the reduce gets locks, where it got Nones."""
    from taskloom import Flow
    from taskloom.resume import resume
    from taskloom.states import Failed

    @task
    def locked(i: int) -> object:
        RAN.append("locked")
        return threading.Lock()

    @task
    def kinds(xs: list[object]) -> list[str]:
        return [type(x).__name__ for x in xs]

    with Flow("remap") as flow:
        s = start()
        m = locked.map([1, 2, 3])
        k = kinds(m)
        flow.set_dependencies(k, upstream_tasks=[s])  # fails first: runs again after s
    first = flow.run(task_states={s: Failed("not yet")})
    assert first.run_id is not None and RAN == ["locked"] * 3
    again = resume(first.run_id, flow=flow)
    assert again.result[k].result == ["lock"] * 3, again.result[k]
    assert RAN == ["locked"] * 6


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_ctrl_c_on_dask_leaves_no_process_and_records_the_run_interrupted(tmp_path: Path) -> None:
    """Ctrl-C (SIGINT to the whole process group, as a terminal sends it) while a task runs
    on the local Dask cluster the run started: the run is journaled as interrupted with
    what finished, and every process it started (scheduler side, nanny, worker) is gone."""
    pytest.importorskip("distributed")
    import psutil  # type: ignore[import-untyped, unused-ignore]

    from ._faults import wait_gone

    home = tmp_path / "home"
    flag = tmp_path / "started"
    script = tmp_path / "flow.py"
    script.write_text(SCRIPT)
    child = subprocess.Popen(
        [sys.executable, str(script), str(flag), "dask"],
        env={**os.environ, "TASKLOOM_HOME": str(home)},
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal job
    )
    try:
        deadline = time.monotonic() + 60
        while not flag.exists() or not flag.read_text():  # wait until the slow task runs
            assert child.poll() is None and time.monotonic() < deadline, "flow never started"
            time.sleep(0.02)
        started = [p.pid for p in psutil.Process(child.pid).children(recursive=True)]
        worker_pid = int(flag.read_text())
        assert worker_pid in started  # the task runs in a process of the run's cluster
        os.killpg(child.pid, signal.SIGINT)
        _, err = child.communicate(timeout=60)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
    assert "KeyboardInterrupt" in err, err[-2000:]
    for pid in started:
        wait_gone(pid, timeout=30)
    os.environ["TASKLOOM_HOME"] = str(home)  # the autouse fixture restores it
    journal = Journal()
    [run] = journal.runs()
    assert run.state == "Failed"
    assert run.message is not None and "interrupted" in run.message
    recorded = {t.name: t.state for t in journal.load(run.run_id).tasks}
    assert recorded == {"quick": "Success", "other": "Success", "slow": "Failed"}


def test_a_programs_own_sigterm_handler_is_kept_during_a_run(taskloom_home: Path) -> None:
    """taskloom turns SIGTERM into an interrupt of the run only where it would kill the
    process: a handler the program set stays in place while a run goes (here a task sends
    SIGTERM to its own process, on LocalExecutor), and so does SIGTERM ignored."""
    from taskloom import Flow
    from taskloom.executors import LocalExecutor

    assert threading.current_thread() is threading.main_thread()  # (signals: only there)
    caught: list[int] = []

    @task
    def terminate_me() -> int:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0)  # the handler runs in this thread, between two bytecodes
        return 1

    with Flow("own-handler") as flow:
        terminate_me()
    for handler in (lambda signum, frame: caught.append(signum), signal.SIG_IGN):
        previous = signal.signal(signal.SIGTERM, handler)
        try:
            state = flow.run(executor=LocalExecutor())
            assert signal.getsignal(signal.SIGTERM) is handler
        finally:
            signal.signal(signal.SIGTERM, previous)
        assert state.is_successful(), state.result
    assert caught == [signal.SIGTERM]
