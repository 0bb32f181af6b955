"""Resuming a recorded run in a new process, without a server.

``resume(run_id)`` reads the run from the journal, finds its flow again (where the run
recorded it came from, or the ``flow`` you pass), and runs it on:

- paused tasks (all, or those named in ``tasks``) get a ``Resume`` state with their stored
  inputs and run as ``start_tasks``;
- failed (and retrying, or interrupted while running) tasks run again with their stored
  inputs;
- what they blocked runs after them, and so do tasks an interrupted run never reached;
  finished tasks are not run again, and their stored results feed the tasks that need them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .executors.base import Executor
from .flow import Flow
from .journal import TAMPERED, Journal, JournalError, RunRecord, TaskRecord, default_journal
from .loader import load_flow
from .plan import rebuild
from .progress import RunObserver
from .runner import run_flow
from .states import (
    Cached,
    Failed,
    FlowResult,
    Paused,
    Pending,
    Resume,
    Skipped,
    State,
    Success,
    TimedOut,
    TriggerFailed,
)
from .task import Task

__all__ = ["resume"]

_FINISHED: dict[str, type[State[Any]]] = {
    cls.__name__: cls for cls in (Success, Cached, Skipped, TriggerFailed, Failed, TimedOut)
}
_AGAIN = {"Failed", "TimedOut", "Retrying"}
_NEVER_RAN = {"Pending", "Running", "Scheduled"}
_SUCCEEDED = {"Success", "Cached"}


def _match(flow: Flow, record: RunRecord) -> list[Task[Any, Any]]:
    tasks = list(flow.tasks)
    names = [t.name for t in tasks]
    recorded = [t.name for t in record.tasks]
    if names != recorded:
        raise JournalError(
            f"flow {flow.name!r} has changed since run {record.run_id}: it now has tasks "
            f"{names[:8]}{'...' if len(names) > 8 else ''}, the run had {recorded[:8]}"
            f"{'...' if len(recorded) > 8 else ''}; resume it from the flow as it was"
        )
    return tasks


def _inputs_from_results(
    flow: Flow, task: Task[Any, Any], recorded: dict[Task[Any, Any], TaskRecord]
) -> dict[str, Any] | None:
    """A never-run task's inputs, from its upstream tasks' stored results and its
    constants; None when an upstream task did not succeed or its result is not stored."""
    results: dict[Task[Any, Any], Any] = {}
    for up in flow.upstream_tasks(task):
        row = recorded[up]
        if row.state not in _SUCCEEDED or not row.has_result or row.result is TAMPERED:
            return None
        results[up] = row.result
    return {key: rebuild(value, results) for key, value in flow.arguments(task).items()}


def _downstream_closure(flow: Flow, starts: list[Task[Any, Any]]) -> set[Task[Any, Any]]:
    seen: set[Task[Any, Any]] = set()
    stack = list(starts)
    while stack:
        task = stack.pop()
        if task not in seen:
            seen.add(task)
            stack.extend(flow.downstream_tasks(task))
    return seen


def resume(
    run_id: str,
    *,
    flow: Flow | None = None,
    tasks: Iterable[str] = (),
    executor: Executor | None = None,
    journal: Journal | None = None,
    progress: RunObserver | bool = False,
) -> State[FlowResult]:
    """Resume the recorded run ``run_id`` (a unique prefix will do); see the module docstring.

    Raises:
        JournalError: the run is unknown, its stored data is tampered with, nothing in it
            can be resumed, or its flow changed since.
        FlowNotFoundError: the flow cannot be found where the run came from.
    """
    journal = journal or default_journal()
    record = journal.load(run_id)
    if record.tampered:
        raise JournalError(
            f"run {record.run_id}: its stored parameters or task outcomes are tampered with "
            "(their signature does not match); they were not loaded"
        )
    if flow is None:
        if record.source is None:
            raise JournalError(
                f"run {record.run_id} does not record where its flow came from (it was not "
                "started from the command line): pass the flow, e.g. --flow FILE.py:FLOW"
            )
        flow = load_flow(record.source)
    flow_tasks = _match(flow, record)
    wanted = set(tasks)
    unknown = wanted - {t.name for t in record.tasks}
    if unknown:
        raise JournalError(f"run {record.run_id} has no task named {', '.join(sorted(unknown))}")
    states: dict[object, State[Any]] = {}
    starts: list[Task[Any, Any]] = []
    for task, row in zip(flow_tasks, record.tasks):
        if row.tampered:
            raise JournalError(
                f"run {record.run_id}: the stored data of task {row.name!r} is tampered with "
                "(its signature does not match); it was not loaded"
            )
        if row.state == "Paused":
            if wanted and row.name not in wanted:
                states[task] = Paused(row.message, cached_inputs=row.inputs or {})
                continue
            states[task] = Resume("Resumed from the journal.", cached_inputs=row.inputs or {})
            starts.append(task)
        elif row.state in _AGAIN and row.inputs is not None:
            states[task] = Pending("Run again from the journal.", cached_inputs=row.inputs)
            starts.append(task)
    # Tasks that never ran (an interrupted run) and do not follow a start task: start
    # them too, from their upstream tasks' stored results.
    again = _downstream_closure(flow, starts)
    recorded = dict(zip(flow_tasks, record.tasks))
    for task, row in recorded.items():
        if task in again or row.state not in _NEVER_RAN:
            continue
        inputs = _inputs_from_results(flow, task, recorded)
        if inputs is not None:
            states[task] = Pending("Run from the journal.", cached_inputs=inputs)
            starts.append(task)
    if not starts:
        raise JournalError(
            f"run {record.run_id} ({record.state}) has no paused or failed task to resume"
        )
    # What runs again: the start tasks and everything downstream of them. Every other task
    # keeps its recorded outcome (with its result, where a task that runs again needs it).
    again = _downstream_closure(flow, starts)
    for task, row in recorded.items():
        if task not in again and row.state in _FINISHED:
            result = row.result if row.has_result and row.result is not TAMPERED else None
            states[task] = _FINISHED[row.state](row.message, result)
    return run_flow(
        flow,
        parameters=record.parameters,
        executor=executor,
        context={},
        task_states=states,
        start_tasks=starts,
        cache_store=None,
        journal=journal,
        resumed_from=record.run_id,
        progress=progress,
    )
