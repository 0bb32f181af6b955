"""``LocalExecutor``: runs tasks one at a time in the calling process."""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

from ..attempt import run_chain
from .base import TaskResult, TaskRun

__all__ = ["LocalExecutor"]


class LocalExecutor:
    """Run tasks in the calling process, one at a time, in the order they become ready.

    Nothing is pickled, so it suits debugging and tasks too small to be worth a process
    hop. Timeouts are hard in the main thread (``SIGALRM``) and soft elsewhere.
    """

    def begin(self, run_context: Mapping[str, Any]) -> _LocalRun:
        return _LocalRun(run_context)

    def __repr__(self) -> str:
        return "LocalExecutor()"


class _LocalRun:
    """One flow run on a ``LocalExecutor``: a queue run in ``collect``."""

    # The follow-ons of a run cost nothing to decide here: take them with it.
    runs_chains = True
    #: One task at a time, in the calling thread (progress displays count the rest as queued).
    slots = 1

    def __init__(self, run_context: Mapping[str, Any]) -> None:
        self._queue: deque[TaskRun] = deque()
        self._run_context = run_context

    def submit(self, runs: Sequence[TaskRun]) -> None:
        self._queue.extend(runs)

    def collect(self, timeout: float | None) -> list[TaskResult]:
        if not self._queue:
            return []
        run = self._queue.popleft()
        return run_chain(run, self._run_context, "local")

    def end(self) -> None:
        self._queue.clear()
