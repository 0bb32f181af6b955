"""``LocalExecutor``: runs tasks one at a time in the calling process.

With ``hard_timeouts=True``, a task that has a timeout runs in a worker process instead
(a one-worker loky pool, through the same ``_dispatch.Dispatcher`` as ``LokyExecutor``),
where the timeout can stop anything, C code included, by killing the worker.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from ..attempt import run_chain
from ..states import Failed
from ._dispatch import Dispatcher, decided_here
from .base import ExecutorRun, TaskResult, TaskRun, Timings, holds_deferred, resolve_deferred

__all__ = ["LocalExecutor"]


class LocalExecutor:
    """Run tasks in the calling process, one at a time, in the order they become ready.

    Nothing is pickled, so it suits debugging and tasks too small to be worth a process
    hop. Timeouts are hard in the main thread (``SIGALRM``: it stops sleeps and Python
    code, not a long call into C code) and soft elsewhere (the body runs on).

    ``hard_timeouts=True``: a task that has a timeout runs in a worker process (a
    one-worker loky pool, started at the first such task and reused), where its timeout
    stops it whatever it does, by killing the worker if it must. Its inputs and result
    are then pickled, as on ``LokyExecutor``.

    >>> flow.run(executor=LocalExecutor(hard_timeouts=True))   # doctest: +SKIP
    """

    def __init__(self, hard_timeouts: bool = False) -> None:
        if not isinstance(hard_timeouts, bool):
            raise TypeError(f"LocalExecutor(hard_timeouts={hard_timeouts!r}): use True or False")
        self.hard_timeouts = hard_timeouts

    def begin(self, run_context: Mapping[str, Any]) -> _LocalRun:
        return _LocalRun(run_context, self.hard_timeouts)

    def __repr__(self) -> str:
        return "LocalExecutor(hard_timeouts=True)" if self.hard_timeouts else "LocalExecutor()"


def _with_values(run: TaskRun) -> TaskRun:
    """``run`` with the values of the deferred results in its inputs and its group's."""
    if holds_deferred(run.inputs):
        run.inputs = resolve_deferred(run.inputs)
    if any(holds_deferred(dict(member.constants)) for member in run.then):
        run.then = tuple(
            replace(member, constants=resolve_deferred(dict(member.constants)))
            for member in run.then
        )
    return run


def _timed(run: TaskRun) -> bool:
    """Whether a run, or a follow-on it carries, has a timeout."""
    return run.task.timeout is not None or any(f.task.timeout is not None for f in run.then)


class _LocalRun:
    """One flow run on a ``LocalExecutor``: a queue run in ``collect``."""

    # The follow-ons of a run cost nothing to decide here: take them with it.
    runs_chains = True
    #: One task at a time, in the calling thread (progress displays count the rest as queued).
    slots = 1

    def __init__(self, run_context: Mapping[str, Any], hard_timeouts: bool) -> None:
        self._queue: deque[TaskRun] = deque()
        self._run_context = run_context
        self._hard_timeouts = hard_timeouts
        self._process: ExecutorRun | None = None  # the worker process, once a timed task came

    def timings(self) -> Timings | None:
        """None: one task at a time in this thread, where a group would save no round trip."""
        return None

    def submit(self, runs: Sequence[TaskRun]) -> None:
        self._queue.extend(runs)

    def collect(self, timeout: float | None) -> list[TaskResult]:
        if not self._queue:
            return []
        run = self._queue.popleft()
        if self._hard_timeouts and _timed(run):
            return self._in_process(run)
        if self._process is not None:
            # A large result of a task that ran in the worker process is in shared memory:
            # a task here takes its value.
            run = _with_values(run)
        return run_chain(run, self._run_context, "local")

    def _in_process(self, run: TaskRun) -> list[TaskResult]:
        """Run ``run`` (and its follow-ons) in the worker process, and wait for it."""
        if self._process is None:
            # loky loads with the first hard timeout, not with every LocalExecutor run.
            from .loky import _LokyRun

            try:
                self._process = Dispatcher(_LokyRun(1), self._run_context)
            except ValueError as error:  # the context cannot reach a process
                message = (
                    f"Task {run.task.name!r} could not run in a worker process for its hard "
                    f"timeout: {error}"
                )
                return [decided_here(run.key, Failed(message, error), "local")]
        self._process.submit([run])
        while True:
            results = self._process.collect(None)
            if results:
                return results

    def end(self) -> None:
        self._queue.clear()
        if self._process is not None:
            process, self._process = self._process, None
            process.end()
