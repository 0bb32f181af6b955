"""The task log's writer: one thread shared by back-to-back runs that ends when idle, batches
bounded per transaction, and a process that exits with the thread alive leaves its journal
whole (no WAL file behind)."""

from __future__ import annotations

import pickle
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from taskloom import Flow, get_logger, task, unmapped
from taskloom import recording
from taskloom._home import Signer
from taskloom.executors import Executor, LocalExecutor
from taskloom.journal import Journal
from taskloom.resume import resume

from ._cli import query, write_flow


@task
def quick(i: int) -> int:
    return i


def _writers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "taskloom-journal"]


def test_back_to_back_runs_share_one_writer_thread_that_ends_when_idle(
    taskloom_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread start per run costs more than a short run's journal on a busy machine: the
    next run finds the thread still there. With no run left it ends by itself."""
    with Flow("twice") as flow:
        quick(1)
    assert flow.run(executor=LocalExecutor()).is_successful()
    first = _writers()
    assert len(first) == 1 and first[0].daemon  # never holds the process at exit
    assert flow.run(executor=LocalExecutor()).is_successful()
    assert _writers() == first
    monkeypatch.setattr(recording, "IDLE_SECONDS", 0.05)
    first[0].join(timeout=30)  # it waits the IDLE_SECONDS it read (2 s) once more at most
    assert not first[0].is_alive()
    assert flow.run(executor=LocalExecutor()).is_successful()  # a new one, for the next run
    assert len(_writers()) == 1 and _writers() != first


def _batches(journal: Path) -> list[list[tuple[Any, ...]]]:
    """The rows of each batch in the journal's task log, in order."""
    blobs = query(journal, "SELECT outcomes FROM task_log WHERE seq > 0 ORDER BY seq")
    return [pickle.loads(blob[Signer.DIGEST:])["rows"] for (blob,) in blobs]


def _wait_logged(journal: str, tasks: int) -> list[int]:
    """Wait until the task log holds ``tasks`` outcomes; the number of tasks in each batch."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        sizes = [len(rows) for rows in _batches(Path(journal))]
        if sum(sizes) >= tasks:
            return sizes
        time.sleep(0.01)
    raise AssertionError("the settled tasks were never written while the run went")


@task
def until_logged(values: list[int], journal: str, tasks: int) -> list[int]:
    """Wait until the task log holds ``tasks`` outcomes; the number of tasks in each batch."""
    return _wait_logged(journal, tasks)


def test_a_batch_writes_at_most_flush_tasks_per_transaction(
    taskloom_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tasks that settle faster than the writer writes are written in transactions of
    ``FLUSH_TASKS`` at most, all of them, in the batch that is due."""
    monkeypatch.setattr(recording, "FLUSH_TASKS", 3)
    monkeypatch.setattr(recording, "FLUSH_SECONDS", 0.05)
    with Flow("chunked") as flow:
        gate = until_logged([quick(i) for i in range(7)], str(taskloom_home / "journal.sqlite"), 7)
    state = flow.run(executor=LocalExecutor())
    assert state.is_successful(), state
    assert state.result is not None
    sizes = state.result[gate].result
    assert sum(sizes) == 7 and max(sizes) <= 3, sizes


#: Gates the held run of the next test waits on (it runs in this process).
_GATES: dict[str, threading.Event] = {}


@task
def held_until_opened(gate: str) -> int:
    _GATES[gate + ".started"].set()
    assert _GATES[gate].wait(60), "never opened"
    return 1


def test_a_run_whose_batch_is_due_first_wakes_the_writer_waiting_for_another(
    taskloom_home: Path, monkeypatch: pytest.MonkeyPatch, executor: Executor
) -> None:
    """The writer waits for the batch due first. A run that starts while it waits, with
    ``FLUSH_SECONDS`` changed since, has its batches written on time all the same; and
    an infinite ``FLUSH_SECONDS`` (a task log held off) is a wait, not the writer's end."""
    gate = f"gate-{id(executor)}"
    _GATES[gate], _GATES[gate + ".started"] = threading.Event(), threading.Event()
    monkeypatch.setattr(recording, "FLUSH_SECONDS", float("inf"))
    with Flow("held") as held_flow:
        held_until_opened(gate)
    held = threading.Thread(target=held_flow.run, kwargs={"executor": LocalExecutor()})
    held.start()
    try:
        assert _GATES[gate + ".started"].wait(60)  # its task log waits for ever
        monkeypatch.setattr(recording, "FLUSH_SECONDS", 0.05)
        with Flow("soon") as flow:
            until_logged([quick(i) for i in range(3)], str(taskloom_home / "journal.sqlite"), 3)
        assert flow.run(executor=executor).is_successful()
    finally:
        _GATES[gate].set()
        held.join(60)
    assert not held.is_alive()


EXITS_WITH_THE_WRITER = """
import threading
from taskloom import Flow, task

@task
def one() -> int:
    return 1

with Flow("exits") as flow:
    one()
flow.run()
alive = [t for t in threading.enumerate() if t.name == "taskloom-journal"]
assert alive, "the writer thread ended before the process: this test tests nothing"
"""


def test_a_process_that_exits_with_the_writer_alive_leaves_no_wal_file(
    tmp_path: Path, taskloom_home: Path
) -> None:
    """The writer thread is a daemon that outlives the run; the journal is closed at exit
    all the same, its WAL checkpointed into the file and removed."""
    script = write_flow(tmp_path / "exits.py", EXITS_WITH_THE_WRITER)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    files = sorted(p.name for p in taskloom_home.iterdir())
    assert "journal.sqlite" in files and "journal.sqlite-wal" not in files, files
    rows: list[Any] = query(taskloom_home / "journal.sqlite", "SELECT state FROM runs")
    assert rows == [("Success",)]


@pytest.fixture
def journal(taskloom_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The journal's file, with the task log writing every 0.05 s: a test's short run
    writes batches."""
    monkeypatch.setattr(recording, "FLUSH_SECONDS", 0.05)
    return taskloom_home / "journal.sqlite"


def test_a_finished_run_keeps_its_task_logs_batches_and_writes_each_outcome_once(
    journal: Path, executor: Executor
) -> None:
    """A run longer than ``FLUSH_SECONDS`` wrote most of its tasks as it went: its end
    writes only the others (no second copy of every outcome), drops the values kept for
    a killed run's resume, and the run reads back whole."""
    with Flow("kept") as flow:
        until_logged([quick(i) for i in range(7)], str(journal), 7)
    state = flow.run(executor=executor)
    assert state.is_successful(), state
    numbers = [row[0] for rows in _batches(journal) for row in rows]
    assert sorted(numbers) == list(range(8)), numbers  # each task once, the gate last
    assert query(journal, "SELECT count(*) FROM task_log WHERE seq <= 0") == [(0,)]
    assert query(journal, "SELECT count(*) FROM task_log WHERE task_values IS NOT NULL") == [(0,)]
    assert state.run_id is not None
    record = Journal().load(state.run_id)
    assert not record.tampered
    assert [(t.index, t.name, t.state) for t in record.tasks] == [
        *((i, f"quick[{i}]", "Success") for i in range(7)),
        (7, "until_logged", "Success"),
    ]
    assert all(t.finished is not None and t.attempts == 1 for t in record.tasks)


def test_a_mapped_run_written_as_it_went_reads_back_with_its_children(
    journal: Path, executor: Executor
) -> None:
    # Children are numbered after the flow's tasks: the task log makes room for them as
    # they map, and the run's end keeps their rows.
    with Flow("mapped") as flow:
        until_logged(quick.map(list(range(5))), str(journal), 6)  # the children and their task
    state = flow.run(executor=executor)
    assert state.is_successful() and state.run_id is not None
    [(kept,)] = query(journal, "SELECT count(*) FROM task_log WHERE seq > 0")
    assert kept >= 1  # the batches written as it went, kept
    assert query(journal, "SELECT count(*) FROM task_log WHERE seq <= 0") == [(0,)]
    record = Journal().load(state.run_id)
    assert not record.tampered
    assert [(t.name, t.state) for t in record.tasks] == [("quick", "Mapped"), ("until_logged", "Success")]
    [children] = record.children.values()
    assert sorted((c.map_index, c.state) for c in children) == [(k, "Success") for k in range(5)]


@task
def logs_a_line() -> int:
    get_logger().warning("written before the run ends")
    return 1


def test_a_task_logged_as_it_went_is_recorded_with_the_logs_its_run_attached_after(
    journal: Path,
) -> None:
    # A task's log records are attached to its trace when the run ends, after the task
    # log wrote its outcome: the run's end writes it again, with them.
    with Flow("logs") as flow:
        # Two upstreams: the log's task is not run in a chain with the gate (whose
        # outcomes come back with it).
        until_logged([logs_a_line(), quick(0)], str(journal), 2)
    state = flow.run(executor=LocalExecutor())
    assert state.is_successful(), state
    assert state.run_id is not None
    [logged, _, _] = Journal().load(state.run_id).tasks
    assert logged.logs is not None and "written before the run ends" in logged.logs


@task
def child(i: int, journal: str) -> int:
    _wait_logged(journal, 3)  # the children's Pending rows are written
    if i == 1:
        raise SystemExit(3)
    return i


def test_a_task_logged_then_changed_without_being_noted_again_is_recorded_as_it_ended(
    journal: Path,
) -> None:
    # Children are written as Pending when their task maps; a child the interrupt caught
    # in flight ends Failed without settling again: the run's end sees its state is not
    # the one written, and writes it again.
    with Flow("salvaged") as flow:
        child.map(list(range(3)), unmapped(str(journal)))
    with pytest.raises(SystemExit):
        flow.run(executor=LocalExecutor())
    [run] = Journal().runs()
    [children] = Journal().load(run.run_id).children.values()
    [interrupted] = [c for c in children if c.map_index == 1]
    assert interrupted.state == "Failed", interrupted  # not the Pending written as it mapped


def test_a_finished_run_whose_kept_batch_was_altered_reads_as_tampered(journal: Path) -> None:
    with Flow("altered") as flow:
        until_logged([quick(i) for i in range(3)], str(journal), 3)
    state = flow.run(executor=LocalExecutor())
    assert state.is_successful() and state.run_id is not None
    [(seq, blob)] = query(journal, "SELECT seq, outcomes FROM task_log ORDER BY seq LIMIT 1")
    connection = sqlite3.connect(journal)
    with connection:
        connection.execute(
            "UPDATE task_log SET outcomes = ? WHERE seq = ?", (blob[:-1] + bytes([blob[-1] ^ 1]), seq)
        )
    connection.close()
    assert Journal().load(state.run_id).tampered


@task
def fails_once(sizes: list[int], flag: str) -> int:
    if not Path(flag).exists():
        Path(flag).write_text("failed once")
        raise ValueError("the first time")
    return sum(sizes)


def test_a_long_run_that_failed_resumes_from_what_its_end_kept(journal: Path, tmp_path: Path) -> None:
    # Its outcomes are in the batches it wrote as it went: a resume reads them back and
    # runs only the failed task, from the result kept for it.
    flag = tmp_path / "flag"
    with Flow("resumed") as flow:
        fails_once(until_logged([quick(1), quick(2)], str(journal), 2), str(flag))
    first = flow.run(executor=LocalExecutor())
    assert first.is_failed() and first.run_id is not None
    assert query(journal, "SELECT count(*) FROM task_log WHERE seq > 0")[0][0] >= 1
    again = resume(first.run_id, flow=flow)
    assert again.is_successful(), again
    assert again.run_id is not None
    attempts = {t.name: t.attempts for t in Journal().load(again.run_id).tasks}
    assert attempts.pop("fails_once") == 1
    assert set(attempts.values()) == {0}, attempts  # the others did not run again


class _SeenAtBegin(Journal):
    """A journal that reads each run back as it stands the moment its start is recorded."""

    seen: dict[str, Any]

    def begin(self, run_id: str, *args: Any, **kwargs: Any) -> bool:
        begun = super().begin(run_id, *args, **kwargs)
        self.seen = {t.name: (t.state, t.has_result and t.result) for t in self.load(run_id).tasks}
        return begun


@task
def plus(a: int, b: int) -> int:
    return a + b


def test_a_resume_records_the_tasks_it_does_not_run_with_its_start(taskloom_home: Path, tmp_path: Path) -> None:
    # In the transaction that records the run's start, not after it: a kill between the
    # two would have left a resume of this resume to run them again. (``quick``'s result
    # is stored: ``plus``, which runs again, takes it.)
    flag = tmp_path / "flag"
    with Flow("seeds") as flow:
        a = quick(2)
        plus(a, fails_once([a], str(flag)))
    first = flow.run(executor=LocalExecutor())
    assert first.is_failed() and first.run_id is not None
    spy = _SeenAtBegin(taskloom_home / "journal.sqlite")
    try:
        again = resume(first.run_id, flow=flow, journal=spy)
    finally:
        spy.close()
    assert again.is_successful(), again
    assert spy.seen == {
        "quick": ("Success", 2), "fails_once": ("Pending", False), "plus": ("Pending", False)
    }, spy.seen


FIRST_TRIGGER_FAILED = """
from taskloom import Flow, task, triggers
from taskloom.journal import Journal
from taskloom.resume import resume
from taskloom.states import Success

@task
def start() -> str:
    return "s"

@task
def source() -> int:
    return 5

@task(trigger=triggers.all_failed)
def on_failure(x: int) -> int:
    return 0

@task(trigger=triggers.all_finished)
def after(x: object) -> str:
    return repr(x)

class SeenAtBegin(Journal):
    def begin(self, run_id, *args, **kwargs):
        begun = super().begin(run_id, *args, **kwargs)
        row = {t.name: t for t in self.load(run_id).tasks}["on_failure"]
        print(row.state, row.has_result)
        return begun

with Flow("first-seen") as flow:
    s, x = start(), source()
    after(on_failure(x))
first = flow.run(task_states={x: Success(result=5)}, start_tasks=[s])
resume(first.run_id, flow=flow, journal=SeenAtBegin())
"""


def test_a_state_class_a_process_writes_for_the_first_time_is_written_as_any_other(
    tmp_path: Path, taskloom_home: Path
) -> None:
    # In a fresh process the resume's opening batch is the first to write a TriggerFailed:
    # its result (the trigger's signal) was kept as if it had succeeded, and read back so
    # while the run went (or after a kill); the second run of a process wrote none.
    script = write_flow(tmp_path / "first_seen.py", FIRST_TRIGGER_FAILED)
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["TriggerFailed", "False"], done.stdout


@task
def big() -> bytes:
    return b"\x01" * (2 << 20)  # over both pools' threshold: left where it was made


@task
def size_of(data: bytes, gate: list[int]) -> int:
    return len(data)


@task(timeout=60)  # a timeout: never run in a group, after the task it waits to see written
def logged_numbers(journal: str, task_number: int) -> list[int]:
    """Wait until task ``task_number``'s outcome is in the task log: the numbers written."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        numbers = [row[0] for rows in _batches(Path(journal)) for row in rows]
        if task_number in numbers:
            return numbers
        time.sleep(0.01)
    raise AssertionError(f"task {task_number} was never written while the run went")


def test_a_result_left_in_a_worker_is_not_written_until_the_run_ends(
    journal: Path, pool_executor: Executor
) -> None:
    """A large result stays where it was made while the run goes: the task log does not
    write a task whose result a resume would need and is still there (the value is not
    the parent's to pickle, and a resume would find it gone), but writes the tasks beside
    it; the run's end writes it."""
    with Flow("deferred") as flow:
        made = big()
        after = quick(1)
        seen = logged_numbers(str(journal), 1)
        size_of(made, seen)  # needs the result: not written while it waits
    flow.set_dependencies(after, upstream_tasks=[made])  # settles after it
    flow.set_dependencies(seen, upstream_tasks=[after])
    numbers = {name: i for i, name in enumerate(t.name for t in flow.sorted_tasks())}
    assert numbers["big"] == 0 and numbers["quick"] == 1, numbers
    state = flow.run(executor=pool_executor)
    assert state.is_successful(), state
    assert state.result is not None
    written_while_running = state.result[seen].result
    assert 1 in written_while_running and 0 not in written_while_running, written_while_running
    assert state.run_id is not None
    record = Journal().load(state.run_id)
    assert [(t.name, t.state) for t in record.tasks][:2] == [("big", "Success"), ("quick", "Success")]
