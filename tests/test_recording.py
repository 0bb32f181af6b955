"""The task log's writer: one thread shared by back-to-back runs that ends when idle, batches
bounded per transaction, and a process that exits with the thread alive leaves its journal
whole (no WAL file behind)."""

from __future__ import annotations

import pickle
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from taskloom import Flow, task
from taskloom import recording
from taskloom._home import Signer
from taskloom.executors import LocalExecutor

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


@task
def until_logged(values: list[int], journal: str, tasks: int) -> list[int]:
    """Wait until the task log holds ``tasks`` outcomes; the number of tasks in each batch."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        blobs = query(Path(journal), "SELECT outcomes FROM task_log WHERE seq > 0 ORDER BY seq")
        sizes = [len(pickle.loads(blob[Signer.DIGEST:])["rows"]) for (blob,) in blobs]
        if sum(sizes) >= tasks:
            return sizes
        time.sleep(0.01)
    raise AssertionError("the settled tasks were never written while the run went")


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
