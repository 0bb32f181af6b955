"""Nothing lost: a run killed with SIGKILL keeps what finished, reads as ``Crashed`` and
resumes without running it again; a chain interrupted in its second link keeps the first;
a task that must not run twice is not run again after its worker dies.

Every test runs real processes: the flow in a subprocess killed with a real signal, the
CLI in another, and counts each task body's executions by the files it leaves."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from taskloom import Flow, Parameter, task, triggers
from taskloom.executors import Executor, LocalExecutor
from taskloom.journal import NOT_RECORDED, Journal, RunRecord, TaskRecord
from taskloom.states import Crashed, Failed, Pending, Running, Success
from taskloom.tasks.secrets import PrefectSecret
from taskloom.trace import Stored

from ._cli import describe, execute, query, taskloom, write_flow

#: What each flow file below starts with: ``mark(name)`` leaves a file ``NAME.PID.NS`` in
#: ``OUT`` (one per execution of a task body: ``_bodies`` counts them).
_HEAD = """
import sys
from pathlib import Path

def mark(name: str) -> None:
    Path(OUT, f"{name}.{os.getpid()}.{time.monotonic_ns()}").touch()
"""

#: Tasks several flows below share: ``x`` returns 5; ``hold`` waits for the file
#: ``resuming`` in ``OUT`` (the run is killed while it waits).
_X = """
@task
def x() -> int:
    mark("x")
    return 5
"""
_HOLD = """
@task
def hold() -> int:
    mark("hold")
    while not Path(OUT, "resuming").exists():
        time.sleep(0.01)
    return 1
"""

#: ... and ends with: run ``flow`` on the executor named by the first argument (``dask``:
#: on the cluster at the second).
_MAIN = """
if __name__ == "__main__":
    from taskloom.executors import DaskExecutor, LocalExecutor, LokyExecutor, ThreadExecutor
    kind = sys.argv[1]
    if kind == "loky":
        chosen = LokyExecutor(max_workers=2)
    elif kind == "threads":
        chosen = ThreadExecutor(max_workers=2)
    elif kind == "dask":
        chosen = DaskExecutor(address=sys.argv[2])
    else:
        chosen = LocalExecutor()
    flow.run(executor=chosen)
"""

#: A flow whose ``hold`` task waits for the file ``resuming`` in ``OUT``: the run is
#: killed while it waits. Each body leaves a file ``NAME.PID.NS`` in ``OUT``.
CRASHY = _HEAD + """
@task
def first(i: int) -> int:
    mark(f"first{i}")
    return i

@task
def hold(values: list[int]) -> int:
    mark("hold")
    while not Path(OUT, "resuming").exists():
        time.sleep(0.01)
    return sum(values)

@task(skip_on_upstream_skip=False)  # decided in the parent: never a follow-on of hold
def last(total: int, one: int) -> int:
    mark("last")
    return total + one

with Flow("crashy") as flow:
    firsts = [first(i) for i in range(4)]
    last(hold(firsts), firsts[0])
""" + _MAIN


def _bodies(out: Path) -> Counter[str]:
    """How many times each task body ran: one file per execution, named after the task."""
    return Counter(p.name.split(".")[0] for p in out.iterdir() if p.name.count(".") == 2)


def _start(script: Path, home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(script), *args],
        env={**os.environ, "TASKLOOM_HOME": str(home)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _launch(
    body: str, kind: str, tmp_path: Path, home: Path, request: pytest.FixtureRequest
) -> tuple[Path, Path, subprocess.Popen[str]]:
    """Write the flow file ``body`` and start it on executor ``kind``: the file, its
    ``OUT`` folder and the process."""
    out = tmp_path / "out"
    out.mkdir()
    script = write_flow(tmp_path / "flow_under_test.py", body, OUT=str(out))
    extra = [request.getfixturevalue("dask_cluster")] if kind == "dask" else []
    # (Run after the reaper.) Killing the flow's process does not stop a task of its still
    # waiting for "resuming" in the session's Dask cluster: one left there by a failed test
    # held a worker thread, and every later Dask test of the session timed out waiting.
    request.addfinalizer(lambda: (out / "resuming").touch())
    child = _start(script, home, kind, *extra)
    _reaped(child, request)
    return script, out, child


def _reaped(child: subprocess.Popen[str], request: pytest.FixtureRequest) -> None:
    """Kill ``child`` when the test ends, if it still runs: a test that fails before its
    kill must not leave its flow process waiting for ever (its tasks wait for files)."""

    def reap() -> None:
        if child.poll() is None:
            child.kill()
            child.communicate()

    request.addfinalizer(reap)


def _stop(child: subprocess.Popen[str], signum: int) -> str:
    """Send ``signum`` to the flow process and wait for its end: what it wrote on stderr."""
    try:
        child.send_signal(signum)
        return child.communicate(timeout=30)[1]
    finally:
        if child.poll() is None:
            child.kill()
            child.communicate()


def _wait_for(condition: str, check: object, child: subprocess.Popen[str], seconds: float = 60) -> None:
    """Poll ``check()`` (a file, the journal) until true; the child must stay alive."""
    assert callable(check)
    deadline = time.monotonic() + seconds
    while not check():
        assert child.poll() is None, f"the flow process ended before {condition}: {child.communicate()[1]}"
        assert time.monotonic() < deadline, f"never {condition}"
        time.sleep(0.01)


def _recorded(home: Path, names: set[str]) -> bool:
    """Whether the journal in ``home`` records each of ``names`` as succeeded."""
    journal = Journal(home / "journal.sqlite")
    try:
        runs = journal.runs()
        if not runs:
            return False
        done = {t.name for t in journal.load(runs[0].run_id).tasks if t.state == Success.__name__}
        return names <= done
    finally:
        journal.close()


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["local", "loky", "dask"])
def test_a_killed_run_reads_as_crashed_and_resume_runs_only_what_did_not_finish(
    kind: str, tmp_path: Path, taskloom_home: Path, request: pytest.FixtureRequest
) -> None:
    home = taskloom_home
    script, out, child = _launch(CRASHY, kind, tmp_path, home, request)
    # The four first tasks finished and are in the journal while the run goes on.
    firsts = {f"first[{i}]" for i in range(4)}
    _wait_for("the first tasks were journaled", lambda: _recorded(home, firsts), child)
    _wait_for("hold ran", lambda: _bodies(out)["hold"] == 1, child)
    _stop(child, signal.SIGKILL)
    (out / "resuming").touch()  # lets a hold still running on a Dask worker end

    listed = taskloom(home, "runs")
    assert listed.returncode == 0, describe(listed)
    assert re.search(rf"crashy\s+{Crashed.__name__}\b", listed.stdout), listed.stdout
    journal = Journal(home / "journal.sqlite")
    [run] = journal.runs()
    shown = taskloom(home, "show", run.run_id[:8])
    assert shown.returncode == 0, describe(shown)
    assert f"State       {Crashed.__name__}: The run's process (pid {child.pid} on" in shown.stdout
    assert re.search(r"^first\[2\]\s+Success", shown.stdout, re.M), shown.stdout
    assert re.search(rf"^hold\s+{Pending.__name__}\b", shown.stdout, re.M), shown.stdout

    resumed = taskloom(
        home, "resume", run.run_id, "--flow", f"{script}:flow", "--executor", "local",
        "--no-progress",
    )
    assert resumed.returncode == 0, describe(resumed)
    assert "Flow 'crashy': Success" in resumed.stdout, resumed.stdout
    assert _bodies(out) == {"first0": 1, "first1": 1, "first2": 1, "first3": 1, "hold": 2, "last": 1}
    final = journal.load(journal.runs()[0].run_id)
    assert final.resumed_from == run.run_id
    assert {t.name: t.state for t in final.tasks}["last"] == Success.__name__
    journal.close()


def _states(home: Path) -> dict[str, str]:
    """Each task's recorded state in the newest run of the journal in ``home``."""
    journal = Journal(home / "journal.sqlite")
    try:
        runs = journal.runs()
        return {t.name: t.state for t in journal.load(runs[0].run_id).tasks} if runs else {}
    finally:
        journal.close()


def _killed_and_resumed(
    home: Path, script: Path, out: Path, child: subprocess.Popen[str], flow_name: str, *opened: str
) -> dict[str, TaskRecord]:
    """SIGKILL the flow process, create the files ``opened`` in ``out`` (what its tasks
    wait for), and resume the run it left through the CLI on LocalExecutor, which must
    succeed: the tasks as the killed run recorded them."""
    _stop(child, signal.SIGKILL)
    for name in opened:
        (out / name).touch()
    journal = Journal(home / "journal.sqlite")
    try:
        run = journal.runs()[0]  # the newest
        killed = {t.name: t for t in journal.load(run.run_id).tasks}
    finally:
        journal.close()
    resumed = taskloom(
        home, "resume", run.run_id, "--flow", f"{script}:flow", "--executor", "local",
        "--no-progress",
    )
    assert resumed.returncode == 0, describe(resumed)
    assert f"Flow '{flow_name}': Success" in resumed.stdout, resumed.stdout
    return killed


#: ``big``'s result is large: loky leaves it in shared memory, Dask on its worker, and the
#: task log does not write ``big`` while the run goes. ``first`` runs in one group with it
#: (their outcomes reach the task log in one batch); ``hold`` is decided in the parent.
DEFERRED = _HEAD + """
@task
def first() -> int:
    mark("first")
    return 7

@task
def big(x: int) -> bytes:
    mark("big")
    return bytes([x]) * (2 << 20)

@task(skip_on_upstream_skip=False)  # decided in the parent: never a follow-on of big
def hold(data: bytes) -> int:
    mark("hold")
    while not Path(OUT, "resuming").exists():
        time.sleep(0.01)
    return len(data) + data[0]

with Flow("deferred") as flow:
    hold(big(first()))
""" + _MAIN


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["loky", "dask"])
def test_a_killed_run_keeps_the_result_a_task_left_in_a_worker_was_made_from(
    kind: str, tmp_path: Path, taskloom_home: Path, request: pytest.FixtureRequest
) -> None:
    """A task whose large result stayed in a worker is not written while the run goes (a
    resume runs it again), so the result it was made from must be kept, though both
    reached the task log together: the resume then runs it, not the task before it."""
    home = taskloom_home
    script, out, child = _launch(DEFERRED, kind, tmp_path, home, request)
    _wait_for("first was journaled", lambda: _recorded(home, {"first"}), child)
    _wait_for("hold ran", lambda: _bodies(out)["hold"] == 1, child)
    tasks = _killed_and_resumed(home, script, out, child, "deferred", "resuming")
    assert tasks["big"].state == Pending.__name__, tasks["big"]  # not written
    assert tasks["first"].has_result and tasks["first"].result == 7, tasks["first"]
    assert _bodies(out) == {"first": 1, "big": 2, "hold": 2}


#: ``d`` is decided ``TriggerFailed`` beside ``x``'s success (``f`` fails until the file
#: ``fixed`` exists): a resume runs ``f`` again, then ``d`` from ``x``'s stored result.
BLOCKED = _HEAD + _X + """
@task
def f() -> int:
    mark("f")
    if not Path(OUT, "fixed").exists():
        raise ValueError("the first time")
    return 10

@task
def d(a: int, b: int) -> int:
    mark("d")
    return a + b

""" + _HOLD + """
with Flow("blocked") as flow:
    d(x(), f())
    hold()
""" + _MAIN


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["local", "loky", "dask"])
def test_a_killed_run_keeps_the_result_a_task_blocked_by_a_failure_will_run_from(
    kind: str, tmp_path: Path, taskloom_home: Path, request: pytest.FixtureRequest
) -> None:
    """A task written as decided (``TriggerFailed``) runs again on resume when what
    blocked it does: the results it takes from the tasks that succeeded must be kept,
    though it was written."""
    home = taskloom_home
    script, out, child = _launch(BLOCKED, kind, tmp_path, home, request)
    _wait_for("d was journaled", lambda: _states(home).get("d") == "TriggerFailed", child)
    _wait_for("hold ran", lambda: _bodies(out)["hold"] == 1, child)
    tasks = _killed_and_resumed(home, script, out, child, "blocked", "fixed", "resuming")
    assert tasks["x"].has_result and tasks["x"].result == 5, tasks["x"]
    assert _bodies(out) == {"x": 1, "f": 2, "d": 1, "hold": 2}


#: ``d`` finishes beside ``y``, whose large result stays in a worker (``hold`` still needs
#: it): ``y`` is not written while the run goes, so a resume runs it again, and ``d``
#: after it, from ``x``'s stored result.
BESIDE = _HEAD + _X + """
@task
def y() -> bytes:
    mark("y")
    return b"\\x03" * (2 << 20)

@task
def d(a: int, data: bytes) -> int:
    mark("d")
    return a + len(data)

@task(skip_on_upstream_skip=False)  # decided in the parent: never a follow-on of y
def hold(data: bytes) -> int:
    mark("hold")
    while not Path(OUT, "resuming").exists():
        time.sleep(0.01)
    return len(data)

with Flow("beside") as flow:
    made = y()
    d(x(), made)
    hold(made)
""" + _MAIN


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["loky", "dask"])
def test_a_killed_run_keeps_the_result_a_task_beside_one_left_in_a_worker_was_made_from(
    kind: str, tmp_path: Path, taskloom_home: Path, request: pytest.FixtureRequest
) -> None:
    """A written task downstream of one not written (its result left in a worker) runs
    again on resume: the results it takes from the other tasks must be kept."""
    home = taskloom_home
    script, out, child = _launch(BESIDE, kind, tmp_path, home, request)
    _wait_for("d was journaled", lambda: _states(home).get("d") == "Success", child)
    _wait_for("hold ran", lambda: _bodies(out)["hold"] == 1, child)
    tasks = _killed_and_resumed(home, script, out, child, "beside", "resuming")
    assert tasks["y"].state == Pending.__name__, tasks["y"]  # not written
    assert tasks["x"].has_result and tasks["x"].result == 5, tasks["x"]
    assert _bodies(out) == {"x": 1, "y": 2, "d": 2, "hold": 2}


#: ``gate`` waits to be resumed with ``x``'s result as its input; ``after`` takes both.
PAUSED = _HEAD + _X + """
@task(trigger=triggers.manual_only)
def gate(a: int) -> int:
    mark("gate")
    return 2 * a

@task
def after(a: int, g: int) -> int:
    mark("after")
    return a + g

""" + _HOLD + """
with Flow("paused") as flow:
    made = x()
    after(made, gate(made))
    hold()
""" + _MAIN


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["local", "loky", "dask"])
def test_a_killed_run_resumes_its_paused_task_from_the_inputs_it_logged(
    kind: str, tmp_path: Path, taskloom_home: Path, request: pytest.FixtureRequest
) -> None:
    """A task paused (``manual_only``) before the kill is written with its inputs, and
    the results the tasks after it take are kept: the resume runs it, then them."""
    home = taskloom_home
    script, out, child = _launch(PAUSED, kind, tmp_path, home, request)
    _wait_for("gate was journaled", lambda: _states(home).get("gate") == "Paused", child)
    _wait_for("hold ran", lambda: _bodies(out)["hold"] == 1, child)
    tasks = _killed_and_resumed(home, script, out, child, "paused", "resuming")
    assert tasks["gate"].inputs == {"a": 5}, tasks["gate"]
    assert tasks["x"].has_result and tasks["x"].result == 5, tasks["x"]
    assert _bodies(out) == {"x": 1, "gate": 1, "after": 1, "hold": 2}


#: ``f`` fails until the file ``fixed`` exists; once ``second`` exists it first waits for
#: ``resuming`` (the resume of the run is killed while it waits). ``d`` takes ``x``'s
#: result itself (the run stores it: ``d`` runs again) or not (``f`` keeps ``x``'s result
#: as its input, and the run stores nothing else of ``x``); in shape ``none`` it takes it
#: and ``x`` returns None.
AGAIN = _HEAD + """
@task
def x() -> int | None:
    mark("x")
    return None if SHAPE == "none" else 5

@task
def f(a: int | None) -> int:
    mark("f")
    if Path(OUT, "second").exists():
        while not Path(OUT, "resuming").exists():
            time.sleep(0.01)
    if not Path(OUT, "fixed").exists():
        raise ValueError("not fixed yet")
    return (a or 0) + 10

@task
def d(a: int | None, b: int) -> int:
    mark("d")
    return (a or 0) + b

with Flow("again") as flow:
    made = x()
    d(1 if SHAPE == "through" else made, f(made))
""" + _MAIN


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["local", "loky"])
@pytest.mark.parametrize("shape", ["direct", "through", "none"])
def test_a_killed_resume_resumes_from_what_the_run_before_it_kept(
    kind: str, shape: str, tmp_path: Path, taskloom_home: Path, request: pytest.FixtureRequest
) -> None:
    """A run fails (``f``); its resume, its states seeded from the run, is killed while
    ``f`` runs again; resuming that resume runs ``f`` (from the inputs the killed resume
    wrote at its start) and ``d``, and ``x`` not again. ``x``'s result is written when
    it was stored; when it was not (``f`` kept its input instead), the killed resume
    writes ``x`` without one, not as a result of None. A result of None that was stored
    is written as such (``none``)."""
    home = taskloom_home
    failed = {"x": "Success", "f": "Failed", "d": "TriggerFailed"}
    script, out, resuming = _ran_then_resuming(AGAIN, kind, tmp_path, home, request, failed, SHAPE=shape)
    _wait_for("f ran again", lambda: _bodies(out)["f"] == 2, resuming)
    _wait_for("the resume was journaled", lambda: len(_runs(home)) == 2, resuming)
    (out / "fixed").touch()
    tasks = _killed_and_resumed(home, script, out, resuming, "again", "resuming")
    if shape != "through":
        assert tasks["x"].has_result and tasks["x"].result == (5 if shape == "direct" else None), tasks["x"]
    else:
        assert tasks["x"].state == Success.__name__ and not tasks["x"].has_result, tasks["x"]
    assert _bodies(out) == {"x": 1, "f": 3, "d": 1}


#: ``gate`` waits to be let through; once ``second`` exists it first waits for ``resuming``
#: (the resume that let it through is killed while it waits).
APPROVED = _HEAD + _X + """
@task(trigger=triggers.manual_only)
def gate(a: int) -> int:
    mark("gate")
    if Path(OUT, "second").exists():
        while not Path(OUT, "resuming").exists():
            time.sleep(0.01)
    return 2 * a

@task
def after(g: int) -> int:
    mark("after")
    return g + 1

with Flow("approved") as flow:
    after(gate(x()))
""" + _MAIN


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["local", "loky"])
def test_a_task_let_through_by_a_killed_resume_runs_on_its_resume_without_asking_again(
    kind: str, tmp_path: Path, taskloom_home: Path, request: pytest.FixtureRequest
) -> None:
    """``gate`` pauses; a resume lets it through (``--task gate``) and is killed while it
    runs. Resuming that resume runs ``gate`` again, let through (it does not pause
    again), from the inputs the killed resume wrote at its start: ``x``, whose result no
    run stored (``gate`` kept it as its input), does not run again."""
    home = taskloom_home
    paused = {"x": "Success", "gate": "Paused", "after": "Pending"}
    script, out, resuming = _ran_then_resuming(
        APPROVED, kind, tmp_path, home, request, paused, "--task", "gate"
    )
    _wait_for("gate ran", lambda: _bodies(out)["gate"] == 1, resuming)
    _wait_for("the resume was journaled", lambda: len(_runs(home)) == 2, resuming)
    tasks = _killed_and_resumed(home, script, out, resuming, "approved", "resuming")
    assert tasks["gate"].state == "Resume" and tasks["gate"].inputs == {"a": 5}, tasks["gate"]
    assert tasks["x"].state == Success.__name__ and not tasks["x"].has_result, tasks["x"]
    assert _bodies(out) == {"x": 1, "gate": 2, "after": 1}


#: ``gate`` is mapped over three items; once ``second`` exists, its child for 2 first
#: waits for ``resuming`` (the resume that let the children through is killed then).
APPROVED_MAP = _HEAD + """
@task
def items() -> list[int]:
    mark("items")
    return [1, 2, 3]

@task(trigger=triggers.manual_only)
def gate(a: int) -> int:
    mark("gate")
    if a == 2 and Path(OUT, "second").exists():
        while not Path(OUT, "resuming").exists():
            time.sleep(0.01)
    return 10 * a

@task
def total(values: list[int]) -> int:
    mark(f"total{sum(values)}")
    return sum(values)

with Flow("approved") as flow:
    total(gate.map(items()))
""" + _MAIN


@pytest.mark.slow
@pytest.mark.timeout(180)
@pytest.mark.parametrize("kind", ["local", "loky"])
def test_children_let_through_by_a_killed_resume_run_on_its_resume_without_asking_again(
    kind: str, tmp_path: Path, taskloom_home: Path, request: pytest.FixtureRequest
) -> None:
    """A mapped ``manual_only`` task's children pause; a resume lets them through and is
    killed while one runs. The killed resume recorded the children it had not finished
    as let through: resuming it runs them without pausing them again, and not those it
    recorded finished."""
    home = taskloom_home
    script, out, resuming = _ran_then_resuming(APPROVED_MAP, kind, tmp_path, home, request, None)
    _wait_for("the held child ran", lambda: _bodies(out)["gate"] >= 1, resuming)
    _wait_for("the children were journaled", lambda: len(_children(home)) == 3, resuming)
    _killed_and_resumed(home, script, out, resuming, "approved", "resuming")
    journal = Journal(home / "journal.sqlite")
    try:
        killed = journal.load(journal.runs()[1].run_id)
    finally:
        journal.close()
    states = [child.state for family in killed.children.values() for child in family]
    assert "Paused" not in states and "Resume" in states, states
    # Each child runs to its end once; the held one started twice; a child recorded
    # finished not again (one not recorded may have run in the killed resume: on loky,
    # children that came back in one batch with the held one).
    again = sum(state != Success.__name__ for state in states)
    bodies = _bodies(out)
    assert 4 <= bodies.pop("gate") <= 3 + again, (states, _bodies(out))
    assert bodies == {"items": 1, "total60": 1}


def _ran_then_resuming(
    body: str, kind: str, tmp_path: Path, home: Path, request: pytest.FixtureRequest,
    states: dict[str, str] | None, *resume_args: str, **values: Any,
) -> tuple[Path, Path, subprocess.Popen[str]]:
    """Write the flow file ``body`` (with ``values``), run it once on executor ``kind`` to
    its end (leaving its tasks in ``states``, if given), create the file ``second`` in its
    ``OUT``, and start ``taskloom resume`` of that run (with ``resume_args``) on ``kind``:
    the file, ``OUT`` and the resume."""
    out = tmp_path / "out"
    out.mkdir()
    script = write_flow(tmp_path / "flow_under_test.py", body, OUT=str(out), **values)
    first = subprocess.run(
        [sys.executable, str(script), kind], env={**os.environ, "TASKLOOM_HOME": str(home)},
        capture_output=True, text=True, timeout=120,
    )
    assert first.returncode == 0, describe(first)  # (the flow's failure is its state)
    assert states is None or _states(home) == states
    [ran] = _runs(home)
    (out / "second").touch()
    resuming = subprocess.Popen(
        [sys.executable, "-m", "taskloom", "resume", ran.run_id, *resume_args, "--flow",
         f"{script}:flow", "--executor", kind, "--no-progress"],
        env={**os.environ, "TASKLOOM_HOME": str(home)},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    _reaped(resuming, request)
    return script, out, resuming


def _runs(home: Path) -> list[RunRecord]:
    """The runs of the journal in ``home``, newest first."""
    journal = Journal(home / "journal.sqlite")
    try:
        return journal.runs()
    finally:
        journal.close()


#: CRASHY with ``first``'s results persisted: the task log keeps where they went.
PERSISTED = CRASHY.replace(
    "@task\ndef first(i: int) -> int:",
    "from taskloom.results import LocalResult\n\n"
    "@task(result=LocalResult(dir=str(Path(OUT).parent / 'results'), location='first-{i}.pkl'))\n"
    "def first(i: int) -> int:",
)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_killed_run_logs_where_persisted_results_went_and_resume_reads_them(
    tmp_path: Path, taskloom_home: Path, request: pytest.FixtureRequest
) -> None:
    home = taskloom_home
    assert PERSISTED != CRASHY
    script, out, child = _launch(PERSISTED, "local", tmp_path, home, request)
    firsts = {f"first[{i}]" for i in range(4)}
    _wait_for("the first tasks were journaled", lambda: _recorded(home, firsts), child)
    _wait_for("hold ran", lambda: _bodies(out)["hold"] == 1, child)
    _stop(child, signal.SIGKILL)
    (out / "resuming").touch()
    journal = Journal(home / "journal.sqlite")
    [run] = journal.runs()
    kept = {t.name: t.result for t in journal.load(run.run_id).tasks}
    assert isinstance(kept["first[1]"], Stored), kept  # the location, not the value
    assert kept["first[1]"].location.endswith("first-1.pkl")
    resumed = taskloom(
        home, "resume", run.run_id, "--flow", f"{script}:flow", "--executor", "local",
        "--no-progress",
    )
    assert resumed.returncode == 0, describe(resumed)
    assert _bodies(out) == {"first0": 1, "first1": 1, "first2": 1, "first3": 1, "hold": 2, "last": 1}
    final = journal.load(journal.runs()[0].run_id)
    assert {t.name: t.state for t in final.tasks}["last"] == Success.__name__
    journal.close()


MAPPED = _HEAD + """
@task
def child(i: int) -> int:
    mark(f"child{i}")
    if len(list(Path(OUT).glob("child*"))) == 3:  # the last child to start holds
        Path(OUT, "held").write_text(str(i))
        while not Path(OUT, "resuming").exists():
            time.sleep(0.01)
    return i

@task
def total(xs: list[int]) -> int:
    mark("total")
    return sum(xs)

with Flow("mappy") as flow:
    total(child.map([0, 1, 2]))

""" + _MAIN


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_killed_mapped_task_resumes_only_the_children_that_did_not_finish(
    tmp_path: Path, taskloom_home: Path, request: pytest.FixtureRequest
) -> None:
    """Two children finish, the third is in flight at the kill: the resume runs that
    child alone, then ``total`` over the three results."""
    home = taskloom_home
    script, out, child = _launch(MAPPED, "local", tmp_path, home, request)
    _wait_for("the third child started", (out / "held").exists, child)
    held = int((out / "held").read_text())
    others = {f"child[{i}]" for i in range(3) if i != held}
    _wait_for("two children journaled", lambda: _recorded(home, set()) and {
        t.name for t in _children(home) if t.state == Success.__name__
    } >= others, child)
    _stop(child, signal.SIGKILL)
    (out / "resuming").touch()
    journal = Journal(home / "journal.sqlite")
    [run] = journal.runs()
    assert run.crashed
    resumed = taskloom(home, "resume", run.run_id, "--flow", f"{script}:flow", "--no-progress")
    assert resumed.returncode == 0, describe(resumed)
    assert _bodies(out) == {f"child{i}": 1 for i in range(3)} | {f"child{held}": 2, "total": 1}
    final = journal.load(journal.runs()[0].run_id)
    [summed] = [t for t in final.tasks if t.name == "total"]
    assert summed.state == Success.__name__
    journal.close()


def _children(home: Path) -> list[TaskRecord]:
    """The children of the mapped tasks of the newest run in ``home``'s journal, as named
    in the journal (``child[2]``: the map index)."""
    journal = Journal(home / "journal.sqlite")
    try:
        record = journal.load(journal.runs()[0].run_id)
        return [
            dataclasses.replace(c, name=f"child[{c.map_index}]")
            for family in record.children.values() for c in family
        ]
    finally:
        journal.close()


def _begun(journal: Journal, run_id: str, pid: int, host: str, started: str | None) -> RunRecord:
    """A run recorded as begun by the process ``pid`` on ``host`` (started at ``started``)."""
    assert journal.begin(run_id, "who", None, {}, 1000.0, names=["a"])
    execute(
        journal.path, "UPDATE runs SET pid = ?, host = ?, process_start = ? WHERE run_id = ?",
        pid, host, started, run_id,
    )
    return journal.load(run_id)


def test_a_run_is_crashed_only_when_its_process_is_certainly_gone(tmp_path: Path) -> None:
    """By pid, host and start time: a live process's run is running, a dead pid's or a
    reused pid's (another start time) is crashed, another host's cannot be judged."""
    journal = Journal(tmp_path / "journal.sqlite")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    here = socket.gethostname()
    live = _begun(journal, "live", os.getpid(), here, None)  # no start time: the pid decides
    assert live.state == Running.__name__ and not live.crashed
    from taskloom._process import this_process

    me = this_process()
    assert _begun(journal, "me", me.pid, me.host, me.started).state == Running.__name__
    gone = _begun(journal, "gone", dead.pid, here, "x:1")
    assert gone.crashed and gone.message is not None and f"pid {dead.pid}" in gone.message
    reused = _begun(journal, "reused", me.pid, me.host, f"{me.started}0")
    assert reused.state == Crashed.__name__
    elsewhere = _begun(journal, "elsewhere", dead.pid, f"not-{here}", "x:1")
    assert elsewhere.state == Running.__name__
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])
    try:
        while Path(f"/proc/{zombie.pid}").exists() and "Z" not in Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1][:3]:
            time.sleep(0.01)  # until it exited (not waited for: a zombie)
        from taskloom._process import start_stamp

        assert start_stamp(zombie.pid) is None
    finally:
        zombie.wait()
    journal.close()


def test_resume_refuses_a_run_whose_process_still_runs(tmp_path: Path) -> None:
    from taskloom._process import this_process
    from taskloom.journal import JournalError
    from taskloom.resume import resume

    journal = Journal(tmp_path / "journal.sqlite")
    me = this_process()
    _begun(journal, "mine", me.pid, me.host, me.started)
    with Flow("who") as flow:
        one()
    with pytest.raises(JournalError, match=rf"run mine is still running \(pid {me.pid} on"):
        resume("mine", flow=flow, journal=journal)
    journal.close()


@task
def one() -> int:
    return 1


def test_a_run_that_never_finished_loads_what_it_logged(tmp_path: Path) -> None:
    """Its tasks from the log, in flow order; what it did not log reads as not recorded."""
    journal = Journal(tmp_path / "journal.sqlite")
    assert journal.begin("r", "f", None, {}, 1.0, names=["a", "b", "c"])
    from taskloom.trace import TaskTrace, outcome

    rows = [(1, *outcome(TaskTrace("b", Success("ok", 5), attempts=1)))]
    assert journal.log_tasks("r", 1, rows, {1: (None, 5, True)})
    rows = [(0, *outcome(TaskTrace("a", Failed("boom"), attempts=1)))]
    assert journal.log_tasks("r", 2, rows, {0: ({"x": 1}, None, False)})
    record = journal.load("r")
    assert [(t.name, t.state) for t in record.tasks] == [
        ("a", Failed.__name__), ("b", Success.__name__), ("c", Pending.__name__)
    ]
    assert record.tasks[0].inputs == {"x": 1}
    assert record.tasks[1].result == 5 and record.tasks[1].has_result
    assert record.tasks[2].message == NOT_RECORDED
    journal.close()


# -- an interrupt that lands in another thread ------------------------------------------------

#: ``hold`` waits for ``resuming``. A thread of the script's own, once ``hold`` runs and
#: the main thread has waited a while (asleep in /proc), sends SIGINT to itself: the
#: kernel may hand a Ctrl-C to any thread, and then no wait of the main thread ends.
ELSEWHERE = _HEAD + _HOLD + """
import signal, threading

def interrupt_from_another_thread() -> None:
    main = threading.main_thread().native_id
    while not any(p.name.startswith("hold.") for p in Path(OUT).iterdir()):
        time.sleep(0.01)
    asleep = 0
    while asleep < 5:  # the main thread is asleep five looks in a row: it waits
        stat = Path(f"/proc/self/task/{main}/stat").read_text()
        asleep = asleep + 1 if stat.rsplit(")", 1)[1].split()[0] == "S" else 0
        time.sleep(0.01)
    mark("interrupting")
    signal.pthread_kill(threading.get_ident(), signal.SIGINT)

threading.Thread(target=interrupt_from_another_thread, daemon=True).start()

with Flow("elsewhere") as flow:
    hold()
""" + _MAIN


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("kind", ["loky", "dask", "threads"])
def test_an_interrupt_that_lands_in_another_thread_ends_the_run(
    kind: str, tmp_path: Path, taskloom_home: Path, request: pytest.FixtureRequest
) -> None:
    """A Ctrl-C the kernel hands to another thread than the main one, while the main thread
    waits for a task that does not return, still ends the run (within a quarter second:
    the wait goes back to Python that often), recorded as interrupted. Before, the main
    thread waited for ever."""
    _, out, child = _launch(ELSEWHERE, kind, tmp_path, taskloom_home, request)
    _wait_for("the interrupt was sent", lambda: _bodies(out)["interrupting"] == 1, child)
    _, err = child.communicate(timeout=30)
    assert "KeyboardInterrupt" in err, err
    journal = Journal(taskloom_home / "journal.sqlite")
    [run] = journal.runs()
    journal.close()
    assert run.state == "Failed" and "interrupted" in (run.message or ""), run


#: A wide flow run twice: first to time ``step`` (a task never timed travels alone), then
#: with the file ``hold`` in ``OUT``: the first step of each batch marks and runs until the
#: interrupt reaches it, and the rest of the steps wait. Four hundred on two workers are
#: many a slot: loky queues a second batch behind each one running (``AHEAD_RUNS``).
QUEUED = _HEAD + """
@task
def step(i: int) -> int:
    if Path(OUT, "hold").exists():
        mark("step")
        while True:  # until the interrupt stops it
            time.sleep(0.01)
    return i

with Flow("queued") as flow:
    steps = [step(i) for i in range(400)]
""" + _MAIN.replace(
    "    flow.run(executor=chosen)\n",
    "    flow.run(executor=chosen)\n    Path(OUT, 'hold').touch()\n    flow.run(executor=chosen)\n",
)


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["local", "loky", "dask", "threads"])
def test_an_interrupted_run_starts_no_task_after_the_interrupt(
    kind: str, tmp_path: Path, taskloom_home: Path, request: pytest.FixtureRequest
) -> None:
    """SIGINT while a step of each batch runs: those stop, and no other step starts, not
    one of a batch queued for a worker either (before, loky's freed worker took the batch
    queued behind its own, and ran it until the run gave up waiting)."""
    _, out, child = _launch(QUEUED, kind, tmp_path, taskloom_home, request)
    running = 1 if kind == "local" else 2
    _wait_for("a step of each batch ran", lambda: _bodies(out)["step"] == running, child)
    err = _stop(child, signal.SIGINT)
    assert "KeyboardInterrupt" in err, err
    assert _bodies(out)["step"] == running
    journal = Journal(taskloom_home / "journal.sqlite")
    run = journal.runs()[0]
    journal.close()
    assert run.state == "Failed" and "interrupted" in (run.message or ""), run


# -- a chain interrupted in its second link -------------------------------------------------------

CHAIN = _HEAD + """
@task
def head() -> int:
    mark("head")
    return 1

@task
def link(x: int) -> int:
    mark("link")
    while not Path(OUT, "resuming").exists():
        time.sleep(0.01)
    return x + 1

with Flow("chained") as flow:
    link(head())
""" + _MAIN


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["local", "loky", "dask", "threads"])
def test_a_chain_interrupted_in_its_second_link_records_the_first_as_finished(
    kind: str, tmp_path: Path, taskloom_home: Path, request: pytest.FixtureRequest
) -> None:
    """``link`` follows ``head`` on the worker that ran it (one round trip): SIGINT while
    ``link`` runs (the parent only). ``head`` finished: it is journaled ``Success`` and
    does not run again. (Loky: the worker is told with SIGURG; Dask and threads: an
    asynchronous exception in the thread that runs it.)"""
    home = taskloom_home
    script, out, child = _launch(CHAIN, kind, tmp_path, home, request)
    _wait_for("link ran", lambda: _bodies(out)["link"] == 1, child)
    err = _stop(child, signal.SIGINT)
    assert "KeyboardInterrupt" in err, err
    journal = Journal(home / "journal.sqlite")
    [run] = journal.runs()
    states = {t.name: t.state for t in journal.load(run.run_id).tasks}
    assert states["head"] == Success.__name__, states
    assert states["link"] != Success.__name__, states
    (out / "resuming").touch()
    resumed = taskloom(
        home, "resume", run.run_id, "--flow", f"{script}:flow", "--executor", "local",
        "--no-progress",
    )
    assert resumed.returncode == 0, describe(resumed)
    assert _bodies(out) == {"head": 1, "link": 2}
    journal.close()


#: ``CHAIN`` whose ``link`` catches every exception while it waits (the interrupt too),
#: and whose result feeds a third link, ``after``.
CATCHING_CHAIN = _HEAD + """
@task
def head() -> int:
    mark("head")
    return 1

@task
def link(x: int) -> str:
    mark("link")
    try:
        while not Path(OUT, "resuming").exists():
            time.sleep(0.01)
    except BaseException:
        return "caught"
    return "waited"

@task
def after(y: str) -> str:
    mark("after")
    return y

with Flow("catching") as flow:
    after(link(head()))
""" + _MAIN


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("kind", ["loky", "threads"])
def test_a_chain_whose_link_catches_the_interrupt_starts_no_link_after_it(
    kind: str, tmp_path: Path, taskloom_home: Path, request: pytest.FixtureRequest
) -> None:
    """SIGINT while ``link`` runs in a chain's worker; its body catches the exception the
    worker stops it with and returns. No link starts after it (``after`` is left for the
    resume), and the run can be resumed: before, ``after`` ran after the interrupt, and
    the run, recorded interrupted with every task a success, could not be resumed."""
    home = taskloom_home
    script, out, child = _launch(CATCHING_CHAIN, kind, tmp_path, home, request)
    _wait_for("link ran", lambda: _bodies(out)["link"] == 1, child)
    err = _stop(child, signal.SIGINT)
    assert "KeyboardInterrupt" in err, err
    journal = Journal(home / "journal.sqlite")
    [run] = journal.runs()
    states = {t.name: t.state for t in journal.load(run.run_id).tasks}
    journal.close()
    assert states["after"] != Success.__name__ and _bodies(out)["after"] == 0, states
    (out / "resuming").touch()
    resumed = taskloom(
        home, "resume", run.run_id, "--flow", f"{script}:flow", "--executor", "local",
        "--no-progress",
    )
    assert resumed.returncode == 0, describe(resumed)
    assert _bodies(out)["after"] == 1 and _bodies(out)["head"] == 1


#: A ``sitecustomize`` that holds the first loky worker to start in interpreter start-up
#: (before loky runs taskloom's initializer) until the file ``$SLOW_WORKER_GATE.open`` exists.
SLOW_START = """
import os, sys, time
gate = os.environ.get("SLOW_WORKER_GATE")
if gate and "--process-name" in sys.argv:  # a loky worker
    try:
        os.rename(gate, gate + ".taken")  # only one worker takes it
    except OSError:
        pass
    else:
        deadline = time.monotonic() + 60
        while not os.path.exists(gate + ".open") and time.monotonic() < deadline:
            time.sleep(0.01)
"""

#: ``CHAIN`` whose ``link`` takes half a second to clean up when it is stopped.
SLOW_CLEANUP_CHAIN = CHAIN.replace(
    """    while not Path(OUT, "resuming").exists():
        time.sleep(0.01)
""",
    """    try:
        while not Path(OUT, "resuming").exists():
            time.sleep(0.01)
    finally:
        time.sleep(0.5)
""",
)
assert SLOW_CLEANUP_CHAIN != CHAIN


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_an_interrupt_while_a_worker_still_starts_keeps_what_finished(
    tmp_path: Path, taskloom_home: Path
) -> None:
    """The interrupt signal reaches every worker of the pool, one still starting too (seen
    on a loaded machine): it must leave that worker alone, not kill it and break the pool,
    which would lose ``head``'s result that the other worker sends back once ``link`` has
    cleaned up (half a second: the pool would be known broken by then)."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SLOW_START)
    gate = tmp_path / "gate"
    gate.touch()
    out = tmp_path / "out"
    out.mkdir()
    script = write_flow(tmp_path / "flow_under_test.py", SLOW_CLEANUP_CHAIN, OUT=str(out))
    child = subprocess.Popen(
        [sys.executable, str(script), "loky"],
        env={**os.environ, "TASKLOOM_HOME": str(taskloom_home), "SLOW_WORKER_GATE": str(gate),
             "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")])},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        _wait_for("link ran", lambda: _bodies(out)["link"] == 1, child)
        assert not gate.exists()  # one worker is held in its start-up
        err = _stop(child, signal.SIGINT)
    finally:
        (tmp_path / "gate.open").touch()
        if child.poll() is None:  # a failed wait: nothing may outlive the test
            child.kill()
            child.communicate()
    assert "KeyboardInterrupt" in err and "TerminatedWorkerError" not in err, err
    journal = Journal(taskloom_home / "journal.sqlite")
    try:
        [run] = journal.runs()
        states = {t.name: t.state for t in journal.load(run.run_id).tasks}
    finally:
        journal.close()
    assert states["head"] == Success.__name__ and states["link"] != Success.__name__, states


# -- rerun_after_crash=False -------------------------------------------------------------------------


@task(rerun_after_crash=False)
def pay(folder: str, i: int) -> int:
    Path(folder, f"pay{i}.{os.getpid()}.{time.monotonic_ns()}").touch()
    return i


@task
def bomb(folder: str) -> int:
    Path(folder, f"bomb.{os.getpid()}.{time.monotonic_ns()}").touch()
    if Path(folder, "armed").exists():
        os.kill(os.getpid(), signal.SIGKILL)
    return 0


def _paying_flow() -> Flow:
    with Flow("paying") as flow:
        folder = Parameter("folder", type=str)
        bomb(folder)
        for i in range(6):
            pay(folder, i)
    return flow


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_a_task_that_must_not_run_twice_ends_crashed_with_its_worker(
    pool_executor: Executor, tmp_path: Path
) -> None:
    """A worker dies (SIGKILL) with ``pay`` runs in flight beside the bomb (in its batch):
    with ``rerun_after_crash=False`` they end ``Crashed``, and no ``pay`` body runs twice
    (without it they would run again, one at a time, to find the culprit)."""
    flow = _paying_flow()
    warm, armed = tmp_path / "warm", tmp_path / "armed"
    for folder in (warm, armed):
        folder.mkdir()
    # A first run times the tasks, so the next one sends them in batches.
    assert flow.run({"folder": str(warm)}, executor=pool_executor).is_successful()
    (armed / "armed").touch()
    state = flow.run({"folder": str(armed)}, executor=pool_executor)
    assert state.result is not None
    pays = [s for t, s in state.result.items() if t.name == "pay"]
    crashed = [s for s in pays if isinstance(s, Crashed)]
    assert crashed, pays
    for lost in crashed:
        assert lost.message is not None and "lost with a crashed" in lost.message
        assert "rerun_after_crash=False" in lost.message
    ran = Counter(p.name.split(".")[0] for p in armed.iterdir() if p.name.startswith("pay"))
    assert ran and max(ran.values()) == 1, ran
    bombed = state.result[next(t for t in state.result if t.name == "bomb")]
    assert bombed.is_failed() and not isinstance(bombed, Crashed)


def test_rerun_after_crash_must_be_a_bool() -> None:
    from taskloom import TaskDefinitionError

    with pytest.raises(TaskDefinitionError, match="'careful': rerun_after_crash must be True or False"):
        task(name="careful", rerun_after_crash="no")(lambda: 1)  # type: ignore[call-overload]  # the bad input under test


# -- secrets stay out of what is written as the run goes ---------------------------------------------


@task
def refuse(token: str) -> None:
    raise ValueError(f"the API refused {token}")


@task(trigger=triggers.all_finished)
def after_the_log(token: str, journal: str) -> list[str]:
    """Wait until the task log holds ``refuse``'s outcome, then name the files of the
    home that hold the secret's value now."""
    home = Path(journal).parent
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        rows = query(Path(journal), "SELECT outcomes FROM task_log WHERE seq > 0")
        if any(b"refuse" in blob for (blob,) in rows):
            needle = token.encode()
            return [p.name for p in home.rglob("*") if p.is_file() and needle in p.read_bytes()]
        time.sleep(0.01)
    raise AssertionError("refuse's outcome was never written while the run went")


def test_a_secret_never_reaches_the_task_log(taskloom_home: Path) -> None:
    """What the writer thread writes while the run goes keeps secrets out as the run's end
    does: the failed task's input, the secret, is kept as a reference (a resume reads the
    secret again), and its message is masked. It writes in the run's context, where the
    run's secrets are known."""
    secret = f"tl-secret-{time.monotonic_ns()}"
    with Flow("secret-log") as flow:
        token: Any = PrefectSecret("API_TOKEN")
        failed = refuse(token)
        holding = after_the_log(token, str(taskloom_home / "journal.sqlite"))
        flow.set_dependencies(holding, upstream_tasks=[failed])
    state = flow.run(executor=LocalExecutor(), context={"secrets": {"API_TOKEN": secret}})
    assert state.result is not None
    assert state.result[holding] == Success(result=[])
