"""Journals of other versions: another schema is moved aside, not fatal; the task
outcomes of 0.1 (bare tuples) still load; outcomes are read back by column name."""

from __future__ import annotations

import dataclasses
import inspect
import os
import pickle
import sqlite3
from pathlib import Path

import cloudpickle
import pytest

import taskloom
from taskloom import Flow, task, triggers
from taskloom._home import Signer
from taskloom.executors import LocalExecutor
from taskloom.journal import Journal, TaskRecord, _plain_loads
from taskloom.resume import resume
from taskloom.flow import FlowResult
from taskloom.states import Failed, State, Success
from taskloom.trace import (
    COLUMNS, FIELDS, ChildTrace, TaskTrace, numbered_outcomes, outcome, outcomes, record,
)

from ._cli import execute


@task
def one() -> int:
    return 1


def _run_on(home: Path, script: str) -> State[FlowResult]:
    """A run of a one-task flow, journaled in ``home``'s journal made first by ``script``."""
    home.mkdir(mode=0o700, parents=True, exist_ok=True)
    old = sqlite3.connect(home / "journal.sqlite")
    old.executescript(script)
    old.commit()
    old.close()
    with Flow("schema") as flow:
        one()
    return flow.run(journal=Journal())


def test_a_journal_of_another_schema_is_moved_aside(
    taskloom_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    state = _run_on(taskloom_home, "CREATE TABLE runs (run_id TEXT PRIMARY KEY);")  # older
    assert state.is_successful()
    assert "moved it to" in caplog.text
    assert [p.name for p in taskloom_home.glob("journal.sqlite.v0-*")], "old file not kept"
    [run] = Journal().runs()
    assert run.run_id == state.run_id and run.state == "Success"


# -- the task outcomes' row format ------------------------------------------------------------------


@task(trigger=triggers.manual_only)
def gate(x: int) -> int:
    return x + 10


def test_a_journal_written_by_taskloom_0_1_loads_and_resumes(taskloom_home: Path) -> None:
    """0.1 stored a run's task outcomes as a bare list of 9-tuples (index, name, state,
    message, queued, started, finished, attempts, worker); this version stores them by
    column name. The tables did not change, so such a file is kept, and its runs load,
    show and resume as they did."""
    with Flow("old") as flow:
        gate(one())
    journal = Journal()
    run_id = "0a1b2c3d-0000-4000-8000-000000000001"
    assert journal.begin(run_id, "old", None, {}, 1000.0)
    signer = Signer.for_home(taskloom_home)
    outcomes = [
        (0, "one", "Success", "Task run succeeded.", 1000.1, 1000.2, 1000.3, 1, "local"),
        (1, "gate", "Paused", 'Trigger function is "manual_only"', None, None, None, 0, None),
    ]
    execute(
        taskloom_home / "journal.sqlite",
        "UPDATE runs SET ended = ?, state = ?, message = ?, tasks = ? WHERE run_id = ?",
        1000.5, "Paused", "Waiting to be resumed: gate",
        signer.sign(pickle.dumps(outcomes, protocol=5)), run_id,
    )
    execute(
        taskloom_home / "journal.sqlite",
        "INSERT INTO resume_data VALUES (?, ?, ?, ?)",
        run_id, 1, signer.sign(cloudpickle.dumps({"x": 1})), None,
    )

    record = Journal().load(run_id[:8])
    assert not record.tampered
    assert record.tasks == [
        TaskRecord(0, "one", "Success", "Task run succeeded.", 1000.1, 1000.2, 1000.3, 1, "local"),
        TaskRecord(1, "gate", "Paused", 'Trigger function is "manual_only"', inputs={"x": 1}),
    ]
    state = resume(run_id, flow=flow, executor=LocalExecutor())
    assert state.is_successful(), state.result
    assert [s.result for s in state.result.values()] == [None, 11]  # `one` did not run again
    assert Journal().load(str(state.run_id)).resumed_from == run_id


def test_outcomes_are_read_back_by_column_name() -> None:
    """A row of a newer version (a column this one lacks) or an older one (a column
    missing) still reads: unknown columns are dropped, missing ones keep their defaults."""
    newer = record(3, ("worker", "state", "name", "gpu", "message"), ("loky:7", "Failed", "t", 0, "boom"))
    assert newer == TaskRecord(3, "t", "Failed", "boom", worker="loky:7")
    older = record(0, ("state", "message", "name"), ("Success", None, "t"))
    assert older == TaskRecord(0, "t", "Success", None)


def test_every_recorded_trace_field_is_read_back() -> None:
    """A field added to TaskTrace is recorded (COLUMNS come from its fields); it must be
    a TaskRecord field too, in the same module, or it is dropped when read back."""
    read = {f.name for f in dataclasses.fields(TaskRecord)}
    assert set(COLUMNS) <= read, set(COLUMNS) - read
    traced = set(FIELDS) - {"inputs"}
    given = {*inspect.signature(TaskTrace.__init__).parameters, *inspect.signature(ChildTrace.__init__).parameters}
    assert set(FIELDS) == given - {"self", "more"}
    assert traced <= set(COLUMNS)
    trace = TaskTrace("t", Success("done", 1), attempts=2, queued=1.0, started=2.0, finished=3.0, worker="w")
    assert record(0, COLUMNS, outcome(trace)) == TaskRecord(0, "t", "Success", "done", 1.0, 2.0, 3.0, 2, "w")


class _Text(str):
    """A str subclass: pickled, it names its class, which the journal never loads."""


def test_outcomes_record_every_message_as_plain_text() -> None:
    """A message that is not a plain str (a user's signal may carry any object) is recorded
    as its text, so the row stays plain values the journal's unpickler loads."""
    traces = [
        TaskTrace("a", Failed(ValueError("boom"))),  # type: ignore[arg-type]  # what a user may pass
        TaskTrace("b", Success(_Text("done"))),
        TaskTrace("c", Success(None)),
        TaskTrace("d", Success("ok")),
    ]
    rows = outcomes(traces)
    assert [row[1] for row in rows] == ["boom", "done", None, "ok"]
    assert [type(row[1]) for row in rows] == [str, str, type(None), str]
    assert rows == [outcome(trace) for trace in traces]
    assert _plain_loads(pickle.dumps(rows, protocol=5)) == rows  # it refuses every class


def test_the_task_logs_rows_are_the_outcomes_with_their_numbers() -> None:
    """The task log's writer makes its rows in one pass with their numbers (and from the
    states it read, when it gives them): each is the task's outcome, its message plain
    text and its optional columns there, with its number in front."""
    traces = [
        TaskTrace("a", Failed(ValueError("boom"))),  # type: ignore[arg-type]  # what a user may pass
        TaskTrace("b", Success(_Text("done"))),
        ChildTrace("c[0]", Success(None, 1), parent=0, map_index=0),
        TaskTrace("d", Success("ok"), logs="a line", location="/data/d.pkl"),
        TaskTrace("e", Success(None)),
    ]
    numbers = [3, 1, 2, 0]
    expected = [(i, *outcome(traces[i])) for i in numbers]
    assert numbered_outcomes(numbers, traces) == expected
    assert numbered_outcomes(numbers, traces, [traces[i].state for i in numbers]) == expected
    assert [type(row[2]) for row in expected] == [str, str, type(None), str]
    assert len(expected[0]) == 1 + len(COLUMNS)  # d: its optional columns recorded
    assert len(expected[3]) < 1 + len(COLUMNS)  # a: its row ends before them


def test_outcomes_mask_a_known_secret_in_every_text_column() -> None:
    """Message, logs, traceback, run name and location may quote a secret: each is masked
    while the secret is known; without one the rows are as the traces hold them."""
    secret = "tl-s3cr3t-value"
    trace = TaskTrace(
        "t", Failed(f"refused {secret}"), logs=f"token={secret}", traceback=f"Error: {secret}",
        run_name=f"fetch-{secret}", location=f"/data/{secret}.pkl",
    )  # fmt: skip
    assert secret in repr(outcomes([trace]))
    with taskloom.context(secrets={"TOKEN": secret}):
        (row,) = outcomes([trace])
    assert secret not in repr(row)
    by_column = dict(zip(COLUMNS, row))
    assert by_column["message"] == "refused <secret TOKEN>"
    assert by_column["logs"] == "token=<secret TOKEN>"
    assert by_column["run_name"] == "fetch-<secret TOKEN>"


#: The tables of a version 1 journal (taskloom 0.1), as that version created them.
_V1_SCHEMA = """
CREATE TABLE runs (run_id TEXT PRIMARY KEY, flow_name TEXT NOT NULL, source TEXT,
    parameters BLOB, started REAL NOT NULL, ended REAL, state TEXT NOT NULL, message TEXT,
    resumed_from TEXT, tasks BLOB);
CREATE INDEX runs_by_flow ON runs (flow_name, started);
CREATE TABLE resume_data (run_id TEXT NOT NULL, task_index INTEGER NOT NULL, inputs BLOB,
    result BLOB, PRIMARY KEY (run_id, task_index));
PRAGMA user_version = 1;
"""


def test_a_version_1_journal_is_upgraded_in_place_and_keeps_its_runs(
    taskloom_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Version 2 adds the process columns and the task log: a version 1 file is upgraded,
    not moved aside, so the runs it holds can still be listed, shown and resumed."""
    state = _run_on(taskloom_home, _V1_SCHEMA + (
        "INSERT INTO runs (run_id, flow_name, started, ended, state) VALUES "
        "('0a1b2c3d-0000-4000-8000-000000000002', 'old', 1000.0, 1001.0, 'Success');"
    ))
    assert state.is_successful()
    assert "moved it to" not in caplog.text
    assert not list(taskloom_home.glob("journal.sqlite.v1-*"))
    runs = {run.run_id: run for run in Journal().runs()}
    assert runs["0a1b2c3d-0000-4000-8000-000000000002"].state == "Success"
    assert runs["0a1b2c3d-0000-4000-8000-000000000002"].process is None
    assert state.run_id is not None
    mine = runs[state.run_id]
    assert mine.process is not None and mine.process.pid == os.getpid()
