"""The run journal and resume across processes.

What a run records (every task's state, message, attempts, timings and worker), that the
flow state's ``run_id`` names it, that only what a resume needs is stored, and that
``taskloom resume`` in a new process runs the paused or failed tasks with their stored
inputs and what they blocked, and nothing that already finished.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from typing import Any

import pytest

from taskloom import Flow, signals, task, triggers
from taskloom.executors import Executor, LocalExecutor, LokyExecutor
from taskloom.journal import Journal, RunRecord, TaskRecord
from taskloom.loader import load_flow
from taskloom.resume import resume

from ._cli import describe, lines, query, run_id, table_rows, taskloom, write_flow
from ._helpers import RaisesWhenATaskFinishes, kind, record

# -- tasks for the in-process flows (module level, so loky workers can import them) -----------------


@task
def one() -> int:
    return 1


@task(max_retries=1, retry_delay=dt.timedelta(0))
def fails_once(x: int, log: str) -> int:
    if not lines(Path(log)):
        record(log, "failed once")
        raise ValueError("first attempt fails")
    return x + 1


@task
def broken(x: int) -> int:
    raise ValueError(f"broken on {x}")


@task
def blocked(x: int) -> int:
    return x


@task
def skipper() -> int:
    raise signals.SKIP("nothing to do today")


@task
def big(size: int) -> bytes:
    return b"\x07" * size


@task
def measure(data: bytes) -> int:
    return len(data)


@task
def produce() -> list[int]:
    return [1, 2, 3]


@task(trigger=triggers.manual_only)
def gate(xs: list[int]) -> int:
    return sum(xs)


@task
def side() -> str:
    return "side value"


@task
def combine(total: int, label: str) -> str:
    return f"{label}: {total}"


@task
def unrelated() -> int:
    return 5


@task
def unrelated_down(x: int) -> int:
    return x * 2


@task
def pid() -> int:
    return os.getpid()


def journal(home: Path) -> Journal:
    return Journal(home / "journal.sqlite")


def by_name(run: RunRecord) -> dict[str, TaskRecord]:
    records = {t.name: t for t in run.tasks}
    assert len(records) == len(run.tasks), "task names repeat in this test flow"
    return records


def stored(home: Path, run: RunRecord) -> dict[str, tuple[bool, bool]]:
    """Which tasks have a resume_data row, and whether it holds inputs / a result."""
    names = {t.index: t.name for t in run.tasks}
    rows = query(
        home / "journal.sqlite",
        "SELECT task_index, inputs IS NOT NULL, result IS NOT NULL FROM resume_data WHERE run_id = ?",
        run.run_id,
    )
    return {names[i]: (bool(has_inputs), bool(has_result)) for i, has_inputs, has_result in rows}


# -- what a run records -----------------------------------------------------------------------------


def test_flow_state_run_id_names_the_run_in_the_journal(taskloom_home: Path) -> None:
    with Flow("named") as flow:
        blocked(one())
    first = flow.run(executor=LocalExecutor())
    second = flow.run(executor=LocalExecutor())
    assert first.run_id is not None and second.run_id is not None and first.run_id != second.run_id
    runs = journal(taskloom_home).runs()
    assert [r.run_id for r in runs] == [second.run_id, first.run_id]
    loaded = journal(taskloom_home).load(first.run_id[:13])  # a unique prefix will do
    assert loaded.run_id == first.run_id
    assert (loaded.flow_name, loaded.state, loaded.source) == ("named", "Success", None)
    assert loaded.ended is not None and loaded.started <= loaded.ended


def test_journal_records_every_task_state_message_attempts_timings_and_worker(
    tmp_path: Path, taskloom_home: Path
) -> None:
    log = str(tmp_path / "log")
    with Flow("recorded") as flow:
        x = one()
        fails_once(x, log)
        blocked(broken(x))
        skipper()
    state = flow.run(executor=LocalExecutor())
    assert state.run_id is not None
    run = journal(taskloom_home).load(state.run_id)
    assert [t.name for t in run.tasks] == [t.name for t in flow.tasks]
    assert [t.state for t in run.tasks] == [kind(s) for s in state.result.values()]
    assert [t.message for t in run.tasks] == [s.message for s in state.result.values()]
    records = by_name(run)
    assert {name: r.attempts for name, r in records.items()} == {
        "one": 1, "fails_once": 2, "broken": 1, "blocked": 0, "skipper": 1,
    }  # fmt: skip
    assert records["broken"].state == "Failed" and "broken on 1" in (records["broken"].message or "")
    assert records["blocked"].state == "TriggerFailed"
    assert records["skipper"].state == "Skipped" and records["skipper"].message == "nothing to do today"
    assert run.ended is not None
    for name in ("one", "fails_once", "broken", "skipper"):
        r = records[name]
        assert r.worker == "local", (name, r)
        assert r.started is not None and r.finished is not None, (name, r)
        assert run.started <= r.started <= r.finished <= run.ended, (name, r)
        if r.queued is not None:
            assert run.started <= r.queued <= r.started, (name, r)
    assert records["fails_once"].queued is not None  # its retry was queued
    never = records["blocked"]
    assert (never.queued, never.started, never.finished, never.worker) == (None, None, None, None)


def test_every_task_that_ran_records_when_it_was_queued(taskloom_home: Path) -> None:
    # A chain: the executor runs the two later tasks as follow-ons of the first, in one trip.
    with Flow("chain") as flow:
        unrelated_down(unrelated_down(unrelated()))
    state = flow.run(executor=LocalExecutor())
    assert state.run_id is not None
    run = journal(taskloom_home).load(state.run_id)
    assert [(t.name, t.attempts) for t in run.tasks] == [
        ("unrelated", 1), ("unrelated_down[0]", 1), ("unrelated_down[1]", 1),
    ]  # fmt: skip
    missing = [t.index for t in run.tasks if t.queued is None]
    assert missing == [], f"tasks {missing} ran but the journal has no queued time for them"


def test_loky_workers_are_named_by_process_id(taskloom_home: Path) -> None:
    with Flow("on-loky") as flow:
        pid()
        blocked(one())
    state = flow.run(executor=LokyExecutor(max_workers=2))
    assert state.is_successful() and state.run_id is not None
    run = journal(taskloom_home).load(state.run_id)
    for r in run.tasks:
        match = re.fullmatch(r"loky:(\d+)", r.worker or "")
        assert match is not None, r
        assert int(match.group(1)) != os.getpid()
    pid_task = next(t for t in flow.tasks if t.name == "pid")
    assert by_name(run)["pid"].worker == f"loky:{state.result[pid_task].result}"


# -- only what a resume needs is stored -------------------------------------------------------------


def test_successful_run_moving_a_large_result_stores_no_blob(taskloom_home: Path) -> None:
    size = 4 * 1024 * 1024
    with Flow("large") as flow:
        length = measure(big(size))
    state = flow.run(executor=LocalExecutor())
    assert state.is_successful() and state.result[length].result == size
    assert query(taskloom_home / "journal.sqlite", "SELECT COUNT(*) FROM resume_data") == [(0,)]
    stores = [p for p in taskloom_home.iterdir() if p.name.startswith("journal.sqlite")]
    assert sum(p.stat().st_size for p in stores) < size // 8, [(p.name, p.stat().st_size) for p in stores]


def _paused_flow() -> Flow:
    with Flow("needs") as flow:
        g = gate(produce())  # paused: its inputs are stored
        combine(g, side())  # runs again on resume: needs side's result
        unrelated_down(unrelated())  # finished, and nothing that runs again needs it
    return flow


def test_paused_run_stores_the_paused_inputs_and_the_results_a_resume_needs(taskloom_home: Path) -> None:
    state = _paused_flow().run(executor=LocalExecutor())
    assert state.is_paused() and state.run_id is not None
    run = journal(taskloom_home).load(state.run_id)
    records = by_name(run)
    assert records["gate"].inputs == {"xs": [1, 2, 3]}
    assert records["side"].has_result and records["side"].result == "side value"
    blobs = stored(taskloom_home, run)
    assert blobs["gate"] == (True, False)
    assert blobs["side"] == (False, True)
    assert not {"unrelated", "unrelated_down", "combine"} & set(blobs), blobs


def test_a_result_already_stored_as_the_paused_tasks_inputs_is_not_stored_again(taskloom_home: Path) -> None:
    # gate's inputs hold produce's result, and gate starts from them on resume: nothing that
    # runs again reads produce's result, so storing it too doubles what a large input costs.
    state = _paused_flow().run(executor=LocalExecutor())
    assert state.run_id is not None
    blobs = stored(taskloom_home, journal(taskloom_home).load(state.run_id))
    assert set(blobs) == {"gate", "side"}, blobs


def test_failed_run_stores_the_failed_tasks_inputs(taskloom_home: Path) -> None:
    with Flow("failing") as flow:
        blocked(broken(one()))
        unrelated_down(unrelated())
    state = flow.run(executor=LocalExecutor())
    assert state.is_failed() and state.run_id is not None
    run = journal(taskloom_home).load(state.run_id)
    assert by_name(run)["broken"].inputs == {"x": 1}
    blobs = stored(taskloom_home, run)
    assert blobs["broken"] == (True, False)
    assert not {"unrelated", "unrelated_down", "blocked"} & set(blobs), blobs


# -- resume in a new process -------------------------------------------------------------------------

GATED = """\
@task
def produce() -> int:
    value = time.time_ns()  # a new value on every call: a re-run would show
    record(CALLS, f"produce {value}")
    return value


@task(trigger=triggers.manual_only)
def approve(value: int) -> int:
    record(CALLS, f"approve {value}")
    return value + 1


@task(trigger=triggers.manual_only)
def audit(value: int) -> int:
    record(CALLS, f"audit {value}")
    return value + 2


@task
def report(x: int) -> None:
    record(CALLS, f"report {x}")


with Flow("gated") as flow:
    report(approve(produce()))

with Flow("two-gates") as two_gates:
    value = produce()
    report(approve(value))
    report(audit(value))
"""

FLAKY = """\
@task
def source() -> int:
    value = time.time_ns()
    record(CALLS, f"source {value}")
    return value


@task
def flaky(value: int) -> int:
    record(CALLS, f"flaky {value}")
    if not os.path.exists(MARKER):
        raise RuntimeError("the service is down")
    return value + 1


@task
def after(x: int) -> None:
    record(CALLS, f"after {x}")


with Flow("flaky") as flow:
    after(flaky(source()))
"""


def _value(calls: list[str], prefix: str) -> int:
    (value,) = [int(line.split()[1]) for line in calls if line.startswith(prefix + " ")]
    return value


def test_resume_a_paused_gate_in_a_new_process(tmp_path: Path, taskloom_home: Path) -> None:
    calls = tmp_path / "calls"
    flows = write_flow(tmp_path / "gated.py", GATED, CALLS=str(calls))
    first = taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local")
    assert first.returncode == 3, describe(first)
    rid = run_id(first.stdout)
    value = _value(lines(calls), "produce")
    assert lines(calls) == [f"produce {value}"]

    resumed = taskloom(taskloom_home, "resume", rid, "--executor", "local")
    assert resumed.returncode == 0, describe(resumed)
    # The gate ran with its stored input, then what follows; produce did not run again.
    assert lines(calls) == [f"produce {value}", f"approve {value}", f"report {value + 1}"]
    rows = table_rows(resumed.stdout)
    assert [rows[name][1] for name in ("produce", "approve", "report")] == ["Success"] * 3
    assert rows["produce"][2] == "0" and rows["approve"][2] == "1"
    new = run_id(resumed.stdout)
    assert new != rid
    record_ = journal(taskloom_home).load(new)
    assert (record_.state, record_.resumed_from) == ("Success", rid)
    listing = taskloom(taskloom_home, "runs").stdout
    assert re.search(rf"^{new}\s+gated\s+Success\s.*\s{rid[:8]}$", listing, re.MULTILINE), listing
    assert f"Resumed     from run {rid}" in taskloom(taskloom_home, "show", new).stdout
    assert f"Resumed     by run {new} (Success)" in taskloom(taskloom_home, "show", rid).stdout


def test_resume_only_the_named_task(tmp_path: Path, taskloom_home: Path) -> None:
    calls = tmp_path / "calls"
    flows = write_flow(tmp_path / "gated.py", GATED, CALLS=str(calls))
    first = taskloom(taskloom_home, "run", f"{flows}:two_gates", "--executor", "local")
    assert first.returncode == 3, describe(first)
    rid = run_id(first.stdout)
    value = _value(lines(calls), "produce")

    unknown = taskloom(taskloom_home, "resume", rid, "--task", "nope", "--executor", "local")
    assert unknown.returncode == 2 and "nope" in unknown.stderr, describe(unknown)

    only_audit = taskloom(taskloom_home, "resume", rid, "--task", "audit", "--executor", "local")
    assert only_audit.returncode == 3, describe(only_audit)  # approve still waits
    assert lines(calls) == [f"produce {value}", f"audit {value}", f"report {value + 2}"]
    rows = table_rows(only_audit.stdout)
    assert (rows["approve"][1], rows["audit"][1]) == ("Paused", "Success")

    # Resuming that run lets approve through, with the input stored by the first run.
    rest = taskloom(taskloom_home, "resume", run_id(only_audit.stdout), "--executor", "local")
    assert rest.returncode == 0, describe(rest)
    assert lines(calls)[3:] == [f"approve {value}", f"report {value + 1}"]


def test_resume_runs_a_failed_task_and_what_it_blocked_with_stored_inputs(
    tmp_path: Path, taskloom_home: Path
) -> None:
    calls, marker = tmp_path / "calls", tmp_path / "service-is-up"
    flows = write_flow(tmp_path / "flaky.py", FLAKY, CALLS=str(calls), MARKER=str(marker))
    first = taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local")
    assert first.returncode == 1, describe(first)
    assert table_rows(first.stdout)["after"][1] == "TriggerFailed"
    rid = run_id(first.stdout)
    value = _value(lines(calls), "source")

    still_down = taskloom(taskloom_home, "resume", rid, "--executor", "local")
    assert still_down.returncode == 1, describe(still_down)
    marker.touch()
    resumed = taskloom(taskloom_home, "resume", rid, "--executor", "local")
    assert resumed.returncode == 0, describe(resumed)
    assert lines(calls) == [
        f"source {value}", f"flaky {value}",  # the run
        f"flaky {value}",  # the resume that failed again
        f"flaky {value}", f"after {value + 1}",  # the resume that worked
    ]  # fmt: skip


def test_resume_a_run_that_did_not_record_its_flow_needs_flow(tmp_path: Path, taskloom_home: Path) -> None:
    calls = tmp_path / "calls"
    flows = write_flow(tmp_path / "gated.py", GATED, CALLS=str(calls))
    flow = load_flow(f"{flows}:flow")
    flow.source = None  # as if built in a script rather than started from the command line
    state = flow.run(executor=LocalExecutor())
    assert state.is_paused() and state.run_id is not None
    value = _value(lines(calls), "produce")

    without = taskloom(taskloom_home, "resume", state.run_id, "--executor", "local")
    assert without.returncode == 2, describe(without)
    assert "--flow FILE.py:FLOW" in without.stderr and "Traceback" not in without.stderr
    with_flow = taskloom(
        taskloom_home, "resume", state.run_id, "--flow", f"{flows}:flow", "--executor", "local"
    )
    assert with_flow.returncode == 0, describe(with_flow)
    assert lines(calls)[1:] == [f"approve {value}", f"report {value + 1}"]


def test_resume_library_api_returns_a_recorded_run(tmp_path: Path, taskloom_home: Path) -> None:
    state = _paused_flow().run(executor=LocalExecutor())
    assert state.run_id is not None
    again = resume(state.run_id, flow=_paused_flow(), executor=LocalExecutor())
    assert again.is_successful() and again.run_id is not None
    results: dict[str, Any] = {t.name: s.result for t, s in again.result.items()}
    assert results["combine"] == "side value: 6"
    assert journal(taskloom_home).load(again.run_id).resumed_from == state.run_id


@task
def add_one(i: int) -> int:
    return i + 1


def test_a_run_stopped_by_an_error_outside_its_tasks_is_recorded_and_resumes_at_once(
    executor: Executor, taskloom_home: Path
) -> None:
    """An error from outside every task (here a progress observer's) stops the run and goes
    on up; the journal records the run as ended by it, not as running for as long as the
    process lives, so ``resume`` takes it up in the same process."""
    with Flow("stopped") as flow:
        last = add_one(add_one(add_one(1)))
    with pytest.raises(ValueError, match="observer bug"):
        flow.run(executor=executor, progress=RaisesWhenATaskFinishes(ValueError, "observer bug"))
    [run] = journal(taskloom_home).runs()
    assert run.state == "Failed", run
    assert run.message == "Run stopped by an error: ValueError('observer bug')", run.message
    assert run.ended is not None
    again = resume(run.run_id, flow=flow, executor=executor)
    assert again.is_successful(), again
    assert again.result[last].result == 4


class _RaisesAtStart(RaisesWhenATaskFinishes):
    """Raises as the run starts, before it hands any task over."""

    def run_started(self, flow_name: str, run_id: str, total: int) -> None:
        raise self.kind(*self.args)


@pytest.mark.parametrize(
    ("kind", "why"), [(ValueError, "stopped by an error"), (KeyboardInterrupt, "interrupted")]
)
def test_a_run_stopped_before_it_hands_a_task_over_is_recorded_and_resumes(
    executor: Executor, taskloom_home: Path, kind: type[BaseException], why: str
) -> None:
    """A run stopped before it hands any task over (here by its progress observer, as it
    starts) is recorded as stopped, not as running, and resumes from the start."""
    with Flow("stopped early") as flow:
        last = add_one(add_one(1))
    with pytest.raises(kind, match="at once"):
        flow.run(executor=executor, progress=_RaisesAtStart(kind, "at once"))
    [run] = journal(taskloom_home).runs()
    assert (run.state, run.message) == ("Failed", f"Run {why}: {kind.__name__}('at once')"), run
    assert run.ended is not None and run.started <= run.ended
    again = resume(run.run_id, flow=flow, executor=executor)
    assert again.is_successful(), again
    assert again.result[last].result == 3


@task(trigger=triggers.manual_only)
def add_one_by_hand(i: int) -> int:
    return i + 1


def test_a_run_that_hands_no_task_over_is_recorded(executor: Executor, taskloom_home: Path) -> None:
    """A run whose every task is decided in the parent (a parameter, a task that waits
    for a hand) never hands a task over: it is recorded all the same, start and end."""
    from taskloom import Parameter

    with Flow("decided here") as flow:
        add_one_by_hand(Parameter("n", default=2))
    state = flow.run(executor=executor, parameters={"n": 5})
    [run] = journal(taskloom_home).runs()
    assert run.run_id == state.run_id and run.state == type(state).__name__, (run, state)
    assert {t.name: t.state for t in journal(taskloom_home).load(run.run_id).tasks} == {
        "n": "Success", "add_one_by_hand": "Paused"
    }


@task
def fails_until(flag: str, log: str) -> str:
    record(log, "ran")
    if not os.path.exists(flag):
        raise RuntimeError("not yet")
    return "done"


def test_a_run_resumed_again_is_resumed_from_its_newest_resume(
    tmp_path: Path, executor: Executor, caplog: pytest.LogCaptureFixture
) -> None:
    """Resuming a run a second time resumes its resume (the run's own record is as it
    ended): a resume that failed again is taken up after a fix, and one that finished
    leaves nothing to run twice."""
    from taskloom.journal import JournalError

    flag, log = tmp_path / "flag", str(tmp_path / "log")
    with Flow("resumed-twice") as flow:
        fails_until(str(flag), log)
    first = flow.run(executor=executor)
    assert first.is_failed() and first.run_id is not None
    failed_again = resume(first.run_id, flow=flow, executor=executor)
    assert failed_again.is_failed() and failed_again.run_id is not None
    flag.touch()
    with caplog.at_level("WARNING", logger="taskloom.resume"):
        fixed = resume(first.run_id, flow=flow, executor=executor)
    assert fixed.is_successful() and fixed.run_id is not None
    assert failed_again.run_id in caplog.text
    assert Journal().load(fixed.run_id).resumed_from == failed_again.run_id
    assert lines(Path(log)) == ["ran"] * 3
    with pytest.raises(JournalError, match=f"run {fixed.run_id} .*no paused or failed task"):
        resume(first.run_id, flow=flow, executor=executor)
    assert lines(Path(log)) == ["ran"] * 3


@task
def reads_the_context(flag: str) -> str:
    import taskloom

    if not os.path.exists(flag):
        raise RuntimeError("not yet")
    return f"{taskloom.context.env}/{taskloom.context.get('lock', 'no lock')}"


def test_a_resume_gets_the_context_the_run_was_given_but_its_secrets(
    tmp_path: Path, taskloom_home: Path, executor: Executor, caplog: pytest.LogCaptureFixture
) -> None:
    """``flow.run(context=...)``: a resume (here from the Python API; from the command line
    alike) gets that context again. A value that cannot be pickled is left out without a
    warning (a lock a local run's tasks share), and the secrets are not written down."""
    import threading

    flag = tmp_path / "flag"
    with Flow("resume-context") as flow:
        read = reads_the_context(str(flag))
    key = "ctx-key-7f31c9"
    context = {
        "env": "prod", "lock": threading.Lock(), "secrets": {"API_KEY": key},
        "token": key, "auth": {"token": key},  # a secret's value: read again, not kept
    }
    with caplog.at_level("WARNING", logger="taskloom.journal"):
        first = flow.run(executor=LocalExecutor(), context=context)
    assert first.is_failed() and first.run_id is not None
    assert "context" not in caplog.text
    assert Journal().load(first.run_id).context == {"env": "prod"}
    journal_bytes = b"".join(p.read_bytes() for p in taskloom_home.glob("journal.sqlite*"))
    assert b"ctx-key-7f31c9" not in journal_bytes
    flag.touch()
    again = resume(first.run_id, flow=flow, executor=executor)
    assert again.result[read].result == "prod/no lock"


UNLOADABLE = """
import sys
sys.path.insert(0, sys.argv[1])
import only_here
from taskloom import Flow, task

@task
def one() -> int:
    return 1

with Flow("context-only-here") as flow:
    one()
state = flow.run(context={"thing": only_here.Thing(), "env": "prod"})
print(state.run_id)
"""


def test_a_context_that_cannot_be_read_back_leaves_the_run_listed_and_resumable(
    tmp_path: Path, taskloom_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A run given a value of a class only its process had: the journal lists it, and
    reading it back says the context is left out, instead of failing every listing."""
    import subprocess
    import sys

    (tmp_path / "only_here.py").write_text("class Thing:\n    pass\n")
    script = tmp_path / "run_it.py"
    script.write_text(UNLOADABLE)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path)],
        env={**os.environ, "TASKLOOM_HOME": str(taskloom_home)},
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    run_id_ = done.stdout.split()[-1]
    assert [run.run_id for run in Journal().runs()] == [run_id_]
    with caplog.at_level("WARNING", logger="taskloom.journal"):
        record_ = Journal().load(run_id_)
    assert record_.context == {} and not record_.tampered
    assert "its context cannot be read back" in caplog.text
    listed = taskloom(taskloom_home, "runs")
    assert listed.returncode == 0 and run_id_ in listed.stdout, describe(listed)


def _runs_in_the_file(path: Path) -> int:
    """How many runs the journal's file itself holds, its WAL left aside (``immutable``)."""
    import sqlite3
    import urllib.parse

    reader = sqlite3.connect(f"file:{urllib.parse.quote(str(path))}?immutable=1", uri=True)
    try:
        return int(reader.execute("SELECT count(*) FROM runs").fetchone()[0])
    except sqlite3.DatabaseError:  # a checkpoint writing the file as it is read
        return -1
    finally:
        reader.close()


def test_the_journal_is_checkpointed_into_its_file_by_a_thread_of_its_own(taskloom_home: Path) -> None:
    """Every ``CHECKPOINT_EVERY`` writes (a run short of the task log's first batch writes
    two: its start and its end), a thread copies the journal's WAL into its file; before,
    only the commit that grew the WAL past a thousand pages did, in that commit (one run's
    start or end then took milliseconds), and these runs stayed in the WAL."""
    import time

    from taskloom._sqlite import CHECKPOINT_EVERY

    with Flow("checkpointed") as flow:
        one()
    for _ in range(CHECKPOINT_EVERY // 2):
        assert flow.run(executor=LocalExecutor()).is_successful()
    deadline = time.monotonic() + 30
    while _runs_in_the_file(taskloom_home / "journal.sqlite") != CHECKPOINT_EVERY // 2:
        assert time.monotonic() < deadline, "the journal's file never held the runs"
        time.sleep(0.01)
