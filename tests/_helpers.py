"""Helpers shared by the behaviour tests.

Side effects are observed through files (``record``/``lines``), never through lists or
globals, because the same tests run on process executors where a task's writes to a
Python object in a worker are invisible to the test.
"""

from __future__ import annotations

import gc
import logging
import time
from pathlib import Path
from typing import Any

from taskloom import Task, runner
from taskloom.executors import Executor, LocalExecutor, ThreadExecutor
from taskloom.states import State
from taskloom.trace import TaskTrace


def record(path: str, line: str) -> None:
    """Append ``line`` to the file at ``path`` (one short O_APPEND write: safe across processes)."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def lines(path: str | Path) -> list[str]:
    """The lines ``record`` wrote to ``path`` ([] when nothing was written)."""
    p = Path(path)
    if not p.exists():
        return []
    return p.read_text(encoding="utf-8").splitlines()


def stamp(path: str, label: str) -> None:
    """Record ``label`` with the wall-clock time, for ordering and delay checks."""
    record(path, f"{label} {time.time():.6f}")


def stamps(path: str | Path) -> dict[str, float]:
    """The times ``stamp`` recorded, by label (labels must be unique)."""
    found: dict[str, float] = {}
    for line in lines(path):
        label, _, when = line.rpartition(" ")
        assert label not in found, f"label {label!r} recorded twice"
        found[label] = float(when)
    return found


def kind(state: State[Any]) -> str:
    """The name of a state's class, for readable assertions."""
    return type(state).__name__


def as_task(handle: object) -> Task[Any, Any]:
    """A handle (typed as its task's result for mypy) seen as the task it is at run time."""
    assert isinstance(handle, Task), handle
    return handle


class Keep(logging.Handler):
    """Keeps every record it is handed (the ``kept`` fixture puts one on ``taskloom``)."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def in_process(executor: Executor) -> bool:
    """Whether ``executor`` runs tasks in the calling process, where nothing is pickled
    (``LocalExecutor``, ``ThreadExecutor``): any value may be a result or an input."""
    return isinstance(executor, (LocalExecutor, ThreadExecutor))


def run_records() -> dict[int, object]:
    """The flow runs' schedulers and task traces alive in this process, by ``id``: take it
    before a run and compare after, so what earlier tests left is not counted against it."""
    return {
        id(o): o for o in gc.get_objects() if isinstance(o, (TaskTrace, runner._Scheduler))
    }


class RaisesWhenATaskFinishes:
    """A progress observer that raises ``kind(*args)`` each time a task finishes: a
    Ctrl-C (``KeyboardInterrupt``), again if the run takes more back, or an observer's
    bug (``ValueError``), both from outside every task."""

    def __init__(self, kind: type[BaseException], *args: object) -> None:
        self.kind, self.args = kind, args

    def run_started(self, flow_name: str, run_id: str, total: int) -> None:
        pass

    def task_changed(self, key: int, task_name: str, state: State[Any]) -> None:
        if state.is_finished():
            raise self.kind(*self.args)

    def run_finished(self, state: State[Any]) -> None:
        pass
