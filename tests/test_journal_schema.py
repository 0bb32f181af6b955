"""A journal written by another version of taskloom is moved aside, not fatal."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from taskloom import Flow, task
from taskloom.journal import Journal


@task
def one() -> int:
    return 1


def test_a_journal_of_another_schema_is_moved_aside(
    taskloom_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    taskloom_home.mkdir(mode=0o700, parents=True, exist_ok=True)
    old = sqlite3.connect(taskloom_home / "journal.sqlite")
    old.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY)")  # an older layout
    old.commit()
    old.close()
    with Flow("schema") as flow:
        one()
    state = flow.run(journal=Journal())
    assert state.is_successful()
    assert "moved it to" in caplog.text
    assert [p.name for p in taskloom_home.glob("journal.sqlite.v0-*")], "old file not kept"
    [run] = Journal().runs()
    assert run.run_id == state.run_id and run.state == "Success"
