"""The ``taskloom`` command line: run a flow, list and inspect recorded runs, resume one,
and look after the output cache.

::

    taskloom run flows.py:etl -p day=2024-05-01 --workers 4
    taskloom run flows.py:hourly --schedule --executor threads
    taskloom runs --flow etl
    taskloom show 3f2a9c1e
    taskloom resume 3f2a9c1e --task approve
    taskloom cache ls
    taskloom cache clear --flow etl --task extract

It only parses, calls the public API (``load_flow``, ``Flow.run``, ``taskloom.resume``,
the run journal, the cache store) and prints. Exit status: 0 when the flow succeeded (or
the command did its job), 1 when the flow failed (or did not finish), 3 when it is paused
waiting to be resumed, 2 for a usage error (an unknown flow, file or run, a bad
parameter, an unsafe home), reported as ``taskloom: error: ...`` before any task runs,
130 when Ctrl-C stopped it (a run, or ``run --schedule`` between runs).
"""

from __future__ import annotations

import argparse
import datetime
import json
import pprint
import textwrap
import logging
import os
import re
import shutil
import sqlite3
import sys
import traceback
from pathlib import Path
from collections.abc import Callable, Sequence
from typing import Any, Literal, TextIO, TypeVar

from ._home import UnsafeHomeError
from ._secrets import MissingSecretError
from ._text import clock, duration, one_line, size, table
from .errors import FlowDefinitionError
from .executors.base import Executor
from .flow import Flow, FlowResult
from .caching import LARGE_VALUE, default_cache_store
from .journal import TAMPERED, Journal, JournalError, RunRecord, TaskRecord, default_journal
from .loader import FlowLoadError, FlowNotFoundError, load_flow
from .logging import basic_config, get_logger
from .progress import RunObserver, default_progress
from .runner import check_run
from .schedules import run_on_schedule
from .visualize import MissingRendererError
from ._runview import mapped_outcome
from .states import Mapped, Paused, State, TriggerFailed

__all__ = ["main"]

T = TypeVar("T")

EXIT_SUCCESS, EXIT_FAILED, EXIT_USAGE, EXIT_PAUSED = 0, 1, 2, 3
#: Stopped by Ctrl-C (128 + SIGINT, as shells report it).
EXIT_INTERRUPTED = 130

#: The width a message is cut to in the run table.
MESSAGE_WIDTH = 60

#: The width of one stored input's repr in ``taskloom show`` (``--inputs``: whole).
INPUT_WIDTH = 80

#: How many failed tasks the run table points to ``taskloom show --task`` for.
SEE_WHY_LIMIT = 5


class UsageError(Exception):
    """A command that cannot be carried out as given; reported with exit status 2."""


# -- formatting ---------------------------------------------------------------------------------


def _offset(when: float | None, origin: float) -> str:
    """A moment as seconds after ``origin`` (the run's start)."""
    return "-" if when is None else f"+{duration(max(0.0, when - origin))}"


def _between(start: float | None, end: float | None) -> float | None:
    return None if start is None or end is None else max(0.0, end - start)


# -- options shared by run and resume -----------------------------------------------------------


def _parameters(items: Sequence[str]) -> dict[str, Any]:
    """``NAME=VALUE`` pairs; a value is JSON where it parses as JSON, else a string."""
    values: dict[str, Any] = {}
    for item in items:
        name, sep, text = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise UsageError(f"bad parameter {item!r}: write it as -p NAME=VALUE")
        if name in values:
            raise UsageError(f"parameter {name!r} is given twice")
        try:
            values[name] = json.loads(text)
        except ValueError:
            values[name] = text
    return values


def _executor(name: str | None, workers: int | None, flow: Flow | None = None) -> Executor:
    """The executor named on the command line; without ``--executor`` or ``--workers``, the
    flow's own (``flow.executor``), else loky on every core."""
    from .executors import DaskExecutor, LocalExecutor, LokyExecutor, ThreadExecutor

    if name is None and workers is None and flow is not None and flow.executor is not None:
        return flow.executor
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, not {workers}")
    if name == "local":
        if workers is not None:
            raise UsageError("--workers does not apply to --executor local (it runs one task at a time)")
        return LocalExecutor()
    if name == "threads":
        return ThreadExecutor(max_workers=workers)
    if name == "dask":
        try:
            return DaskExecutor() if workers is None else DaskExecutor(n_workers=workers)
        except Exception as error:
            raise UsageError(f"--executor dask is not available: {error}") from None
    return LokyExecutor(max_workers=workers)


def _progress(args: argparse.Namespace) -> RunObserver | bool:
    """The progress display (on unless --no-progress): live on a terminal, plain lines
    otherwise."""
    return False if args.progress is False else default_progress()


def _configure_logging(level_name: str) -> None:
    """The run log for ``--log-level``: tasks' and flows' records at that level on stderr,
    in Prefect's format (``taskloom.logging.basic_config``), and not also through the root
    logger's handler (which keeps printing taskloom's other warnings as before). The ``taskloom`` logger itself lets INFO through even when the
    display shows less, so that the journal keeps each task's INFO records for
    ``taskloom show --logs``."""
    level = logging.getLevelName(level_name.upper())
    if not isinstance(level, int):
        raise UsageError(f"--log-level: unknown level {level_name!r} (DEBUG, INFO, WARNING, ERROR)")
    root = logging.getLogger()
    for existing in root.handlers:  # main()'s basicConfig: not the run lines, not below its level
        existing.addFilter(_NotRunLog(root.getEffectiveLevel()))
    handler = basic_config(level)
    handler.setLevel(level)
    handler.addFilter(_is_run_log)
    get_logger().setLevel(min(level, logging.INFO))


_RUN_LOGGERS = ("taskloom.task.", "taskloom.flow.")


def _is_run_log(record: logging.LogRecord) -> bool:
    """Whether a record is a task's or a flow's (what ``--log-level`` prints)."""
    return record.name.startswith(_RUN_LOGGERS)


class _NotRunLog(logging.Filter):
    """For the root logger's handlers: leaves the run log to its own handler, and
    taskloom's other records below ``level`` (let through for the journal) unprinted."""

    def __init__(self, level: int) -> None:
        super().__init__()
        self.level = level

    def filter(self, record: logging.LogRecord) -> bool:
        """False for a run-log record, or a taskloom record below ``level``."""
        if _is_run_log(record):
            return False
        return not (record.name.startswith("taskloom") and record.levelno < self.level)


def _running(run: Callable[[RunObserver | bool], State[FlowResult]], args: argparse.Namespace) -> State[FlowResult]:
    _configure_logging(args.log_level)
    return _observed(run, args)


def _observed(run: Callable[[RunObserver | bool], State[FlowResult]], args: argparse.Namespace) -> State[FlowResult]:
    """``run(progress)`` with the progress display of ``args``, closed after the run."""
    observer = _progress(args)
    try:
        return run(observer)
    finally:
        close = getattr(observer, "close", None)
        if callable(close):
            close()


def _exit_status(state: State[Any]) -> int:
    if state.is_paused():
        return EXIT_PAUSED
    return EXIT_SUCCESS if state.is_successful() else EXIT_FAILED


def _report(state: State[FlowResult], flow_name: str, out: TextIO) -> int:
    """Print the table of task states (attempts, worker and durations from the run
    journal) and the run id; return the exit status."""
    recorded: dict[int, TaskRecord] = {}
    if state.run_id is not None:
        try:
            recorded = {t.index: t for t in default_journal().load(state.run_id).tasks}
        except (JournalError, sqlite3.Error, OSError):
            pass  # not recorded (the journal warned): the table shows what the state knows
    rows = []
    result: FlowResult = state.result or FlowResult()
    for key, (task, task_state) in enumerate(result.items()):
        record = recorded.get(key)
        name = record.name if record is not None else task.name  # copies numbered: parse[3]
        message = task_state.message
        if isinstance(task_state, Mapped):  # a mapped task: how its children ended
            message = mapped_outcome([type(s).__name__ for s in task_state.map_states]).message
        rows.append([
            name,
            type(task_state).__name__,
            "-" if record is None else str(record.attempts),
            "-" if record is None or record.worker is None else record.worker,
            duration(None if record is None else _between(record.started, record.finished)),
            one_line(message, MESSAGE_WIDTH),
        ])
    out.write(table(["TASK", "STATE", "ATTEMPTS", "WORKER", "DURATION", "MESSAGE"], rows, right=(2, 4)))
    out.write(f"\n\nFlow {flow_name!r}: {type(state).__name__} ({one_line(state.message)})\n")
    out.write(f"Run id: {state.run_id}\n")
    if state.is_paused():
        out.write(f"Resume it with: taskloom resume {state.run_id}\n")
    _see_why(result, state.run_id, out)
    return _exit_status(state)


def _see_why(result: FlowResult, run_id: str | None, out: TextIO) -> None:
    """Point to ``taskloom show RUN --task NAME`` for the tasks that failed themselves (not
    those whose trigger failed because of them), at most ``SEE_WHY_LIMIT``."""
    if run_id is None:
        return
    failed: list[str] = []
    for task, task_state in result.items():
        if isinstance(task_state, Mapped):
            broke = any(s.is_failed() and not isinstance(s, TriggerFailed) for s in task_state.map_states)
        else:
            broke = task_state.is_failed() and not isinstance(task_state, TriggerFailed)
        if broke and task.name not in failed:
            failed.append(task.name)
    for name in failed[:SEE_WHY_LIMIT]:
        out.write(f"See why: taskloom show {run_id} --task {name}\n")
    if len(failed) > SEE_WHY_LIMIT:
        out.write(f"(and {len(failed) - SEE_WHY_LIMIT} more failed tasks: taskloom show {run_id})\n")


# -- commands ------------------------------------------------------------------------------------


#: ``-v``: a flow file that fails to load prints its whole traceback too.
_verbose = False


def _with_traceback(error: FlowLoadError) -> str:
    """``error``'s message and, under ``-v``, the whole traceback of what it wraps; else
    how to see it."""
    cause = error.__cause__
    if cause is None:
        return str(error)
    if not _verbose:
        return f"{error}\n(run with -v for the whole traceback)"
    whole = "".join(traceback.format_exception(type(cause), cause, cause.__traceback__))
    return f"{error}\n\nThe whole traceback:\n{whole.rstrip()}"


def cmd_run(args: argparse.Namespace) -> int:
    parameters = _parameters(args.parameter or [])
    flow = load_flow(args.flow)
    executor = _executor(args.executor, args.workers, flow)
    if args.schedule:
        return _run_scheduled(args, flow, parameters, executor)
    state = _running(
        lambda progress: flow.run(
            parameters, executor=executor, progress=progress, run_on_schedule=False
        ),
        args,
    )
    return _report(state, flow.name, sys.stdout)


def _run_scheduled(
    args: argparse.Namespace, flow: Flow, parameters: dict[str, Any], executor: Executor
) -> int:
    """``run --schedule``: run at each due time of the flow's schedule, a table per run,
    until the schedule ends (the last run's exit status) or Ctrl-C while waiting
    (``EXIT_INTERRUPTED``, saying how many runs were done). Ctrl-C during a run
    interrupts that run as without ``--schedule``."""
    schedule = flow.schedule
    if schedule is None:
        raise UsageError(
            f"--schedule: flow {flow.name!r} ({args.flow}) has no schedule; give it one "
            "(Flow(..., schedule=IntervalSchedule(...))) or run it once without --schedule"
        )
    check_run(flow, parameters=parameters, context={}, task_states={}, start_tasks=None)
    _configure_logging(args.log_level)
    statuses: list[int] = []
    running = False

    def once(due: datetime.datetime) -> int:
        nonlocal running
        running = True
        state = _observed(
            lambda progress: flow.run(
                parameters, executor=executor, progress=progress, run_on_schedule=False,
                context={"scheduled_start_time": due},
            ),
            args,
        )
        running = False
        statuses.append(_report(state, flow.name, sys.stdout))
        return statuses[-1]

    def waiting(due: datetime.datetime) -> None:
        print(f"Next run of {flow.name!r} at {due.isoformat()} (Ctrl-C to stop)", flush=True)

    try:
        return run_on_schedule(
            schedule, once, owner=f"Flow {flow.name!r} ({args.flow})", logger=flow.logger,
            waiting=waiting,
        )
    except KeyboardInterrupt:
        if running:
            raise
        print(
            f"taskloom: schedule stopped (Ctrl-C) between runs, after {len(statuses)} run(s) "
            f"of {flow.name!r}; none was interrupted",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


def cmd_resume(args: argparse.Namespace) -> int:
    from .resume import resume

    journal = default_journal()
    record = _reading(journal, lambda: journal.load(args.run_id))
    # The flow is loaded here, not by resume(), so that its own executor is known.
    spec = args.flow or record.source
    flow = load_flow(spec) if spec else None
    executor = _executor(args.executor, args.workers, flow)
    state = _running(
        lambda progress: resume(
            record.run_id,
            flow=flow,
            tasks=args.task or (),
            executor=executor,
            journal=journal,
            progress=progress,
        ),
        args,
    )
    return _report(state, record.flow_name if flow is None else flow.name, sys.stdout)


def _reading(journal: Journal, call: Callable[[], T]) -> T:
    try:
        return call()
    except sqlite3.Error as error:
        raise UsageError(f"cannot read the run journal {journal.path}: {error}") from None


def cmd_runs(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise UsageError(f"--limit must be at least 1, not {args.limit}")
    journal = default_journal()
    runs = _reading(journal, lambda: journal.runs(args.flow, limit=args.limit))
    if not runs:
        where = f" of flow {args.flow!r}" if args.flow else ""
        print(f"No runs{where} recorded in {journal.path}.")
        return EXIT_SUCCESS
    rows = [
        [
            run.run_id,
            run.flow_name,
            run.state,
            clock(run.started),
            duration(run.duration),
            run.resumed_from[:8] if run.resumed_from else "",
        ]
        for run in runs
    ]
    print(table(["RUN ID", "FLOW", "STATE", "STARTED", "DURATION", "RESUMED FROM"], rows, right=(4,)))
    return EXIT_SUCCESS


def _stored(task: TaskRecord) -> str:
    if task.tampered:
        parts = [what for what, value in (("inputs", task.inputs), ("result", task.result)) if value is TAMPERED]
        return f"tampered ({', '.join(parts)})"
    parts = []
    if task.inputs is not None:
        parts.append("inputs")
    if task.has_result:
        parts.append("result")
    return ",".join(parts) or "-"


def _show_row(task: TaskRecord, origin: float, indent: str = "") -> list[str]:
    return [
        indent + task.label,
        task.state,
        str(task.attempts),
        task.worker or "-",
        _offset(task.queued, origin),
        _offset(task.started, origin),
        _offset(task.finished, origin),
        duration(_between(task.queued, task.started)),
        duration(_between(task.started, task.finished)),
        _stored(task),
        one_line(task.message),
    ]


def cmd_show(args: argparse.Namespace) -> int:
    journal = default_journal()
    run = _reading(journal, lambda: journal.load(args.run_id))
    if run.tampered:
        raise JournalError.tampered(run.run_id)
    origin = run.started
    print(f"Run         {run.run_id}")
    print(f"Flow        {run.flow_name}" + (f"  ({run.source})" if run.source else ""))
    print(f"State       {run.state}" + (f": {one_line(run.message)}" if run.message else ""))
    print(f"Parameters  {one_line(repr(run.parameters))}")
    print(f"Started     {clock(run.started)}")
    print(f"Ended       {clock(run.ended)}  (took {duration(run.duration)})")
    if run.resumed_from:
        print(f"Resumed     from run {run.resumed_from}")
    for later in _reading(journal, lambda: journal.resumed_by(run.run_id)):
        print(f"Resumed     by run {later.run_id} ({later.state})")
    rows = []
    for task in run.tasks:
        rows.append(_show_row(task, origin))
        children = run.children.get(task.index)
        if children is None:
            continue
        if args.children:
            rows.extend(_show_row(child, origin, indent="  ") for child in children)
        else:
            # "10 children: 7 Success, 3 Failed", counted as the report and pictures count them
            counted = mapped_outcome([child.state for child in children]).message
            rows[-1][-1] = f"{counted} (--children lists them)"
    print()
    print(table(
        ["TASK", "STATE", "ATTEMPTS", "WORKER", "QUEUED", "STARTED", "FINISHED", "WAITED", "RAN",
         "STORED", "MESSAGE"],
        rows,
        right=(2, 4, 5, 6, 7, 8),
    ))
    if args.timeline:
        from .report import timeline_text

        width = shutil.get_terminal_size((100, 24)).columns
        plain = (sys.stdout.encoding or "").lower().replace("-", "") != "utf8"
        print()
        print(timeline_text(run, width=width, flow=_flow_of(run, None), ascii=plain))
    everyone = [*run.tasks, *(c for family in run.children.values() for c in family)]
    _print_locations(run, children=args.children)
    _print_inputs(everyone, whole=args.inputs)
    if args.task:
        _print_task(run, args.task, logs=True)
    elif args.logs:
        _print_logs(run, None)
    tampered = [task.name for task in everyone if task.tampered]
    if tampered:
        print(
            f"\nWarning: the stored data of {', '.join(tampered)} is tampered with (its signature "
            "does not match); it was not loaded, and this run cannot be resumed.",
        )
    return EXIT_SUCCESS


def _print_locations(run: RunRecord, children: bool) -> None:
    """Where tasks' results were persisted (``result=``, ``target=``): one line per task;
    a mapped task's children one line each with ``children``, else counted."""
    lines: list[str] = []
    for task in run.tasks:
        if task.location is not None:
            lines.append(f"  {task.name}  {task.location}")
        family = [c for c in run.children.get(task.index, ()) if c.location is not None]
        if not family:
            continue
        if children:
            lines.extend(f"    {child.name}  {child.location}" for child in family)
        else:
            lines.append(
                f"  {task.name}  {len(family)} children, e.g. {family[0].location} "
                "(--children lists them)"
            )
    if lines:
        print("\nResult locations (what `taskloom resume` reads):")
        print("\n".join(lines))


def _print_inputs(tasks: Sequence[TaskRecord], whole: bool) -> None:
    """The stored inputs a resume would run with: of paused tasks, each input's repr cut
    to ``INPUT_WIDTH``; with ``whole``, of every task that has some, pretty-printed."""
    shown = [
        t for t in tasks
        if isinstance(t.inputs, dict) and t.inputs is not TAMPERED and (whole or t.state == Paused.__name__)
    ]
    if not shown:
        return
    print("\nStored inputs (what `taskloom resume` runs the task with):"
          if whole else "\nInputs of paused tasks (--inputs shows them whole):")
    for task in shown:
        assert task.inputs is not None
        print(f"  {task.name} ({task.state})" + ("" if task.inputs else ": no inputs"))
        for name, value in task.inputs.items():
            if whole:
                text = pprint.pformat(value, width=max(40, shutil.get_terminal_size((100, 24)).columns - 8))
                print(f"    {name} =", textwrap.indent(text, " " * 6).lstrip())
            else:
                print(f"    {name} = {one_line(_safe_repr(value), INPUT_WIDTH)}")


def _safe_repr(value: Any) -> str:
    """``repr(value)``, or a note that it failed."""
    try:
        return repr(value)
    except Exception as error:
        return f"<{type(value).__qualname__}: repr failed: {error!r}>"


def _print_task(run: RunRecord, name: str, logs: bool) -> None:
    """Everything about task ``name`` (and its children, or the child of that name): its
    whole message, its traceback and its log records."""
    shown = 0
    for task in run.tasks:
        for member in (task, *run.children.get(task.index, ())):
            if name not in (member.name, task.name, member.run_name):
                continue
            shown += 1
            print(f"\n--- {member.label} ({member.state}) ---")
            if member.message:
                print(f"Message: {member.message}")
            if member.traceback:
                print(member.traceback)
            if logs:
                print("Log records:")
                print(member.logs if member.logs else "(no log records)")
    if not shown:
        raise UsageError(f"run {run.run_id} has no task named {name!r}")


def _print_logs(run: RunRecord, only: str | None) -> None:
    """Each task's log records of its last attempt, as the journal kept them (a mapped
    task's children after it); with ``only``, that task's (and its children's)."""
    shown = 0
    for task in run.tasks:
        family = [task, *run.children.get(task.index, ())]
        if only is not None and only not in {t.name for t in family} and task.name != only:
            continue
        for member in family:
            if only is not None and member.name != only and task.name != only:
                continue
            shown += 1
            print(f"\n--- {member.label} ({member.state}) ---")
            print(member.logs if member.logs else "(no log records)")
    if only is not None and not shown:
        raise UsageError(f"run {run.run_id} has no task named {only!r}")


def _flow_of(record: RunRecord, spec: str | None) -> Flow | None:
    """The run's flow, from ``--flow`` or where the run came from; None if it cannot be
    found (a report without it shows no critical path, and says why)."""
    if spec is not None:
        return load_flow(spec)
    if record.source is None:
        return None
    try:
        return load_flow(record.source)
    except Exception as error:
        why = str(error).splitlines()[0] if str(error) else type(error).__name__
        print(f"taskloom: note: cannot load {record.source} ({why}); no critical path", file=sys.stderr)
        return None


def cmd_visualize(args: argparse.Namespace) -> int:
    from .visualize import render

    flow = load_flow(args.flow)
    record = None
    if args.run is not None:
        journal = default_journal()
        record = _reading(journal, lambda: journal.load(args.run))
    fmt: Literal["dot", "mermaid", "svg", "png", "pdf"] | None = args.format
    if args.output is None:
        if fmt == "png" or fmt == "pdf":
            raise UsageError(f"--format {fmt} is binary: write it to a file with -o FILE")
        sys.stdout.write(render(flow, record, format=fmt or "dot"))
        return EXIT_SUCCESS
    render(flow, record, args.output, format=fmt)
    print(f"Wrote {args.output}")
    return EXIT_SUCCESS


def cmd_report(args: argparse.Namespace) -> int:
    from .report import render_report

    journal = default_journal()
    record = _reading(journal, lambda: journal.load(args.run_id))
    if record.tampered:
        raise JournalError.tampered(record.run_id)
    html = render_report(record, flow=_flow_of(record, args.flow))
    Path(args.output).write_text(html, encoding="utf-8")
    print(f"Wrote {args.output}")
    return EXIT_SUCCESS


def _matches(key: str, flow: str | None, task: str | None) -> bool:
    """Whether cache key ``key`` ("flow/task", unless a task set its own) is selected."""
    if flow is not None and not key.startswith(flow + "/"):
        return False
    if task is not None:
        return key.endswith("/" + task) if flow is None else key == f"{flow}/{task}"
    return True


def cmd_cache_ls(args: argparse.Namespace) -> int:
    store = default_cache_store()
    try:
        entries = store.entries()
    except (sqlite3.Error, OSError) as error:
        raise UsageError(f"cannot read the cache store {store.path}: {error}") from None
    rows = [
        [info.key, str(info.entries), size(info.size), str(info.files), clock(info.newest)]
        for info in entries
        if _matches(info.key, args.flow, None)
    ]
    where = f" for flow {args.flow!r}" if args.flow else ""
    if rows:
        print(table(["KEY", "ENTRIES", "SIZE", "FILES", "NEWEST"], rows, right=(1, 2, 3)))
        print(
            f"\nIndex: {store.path}; values of {size(LARGE_VALUE)} or more (FILES) are kept in "
            f"{store.files}{os.sep}"
        )
    else:
        print(f"No cached results{where} in {store.path}.")
    journal = default_journal()
    persisted = _reading(journal, lambda: journal.locations(args.flow))
    if not persisted:
        return EXIT_SUCCESS
    print("\nResult files and targets (newest first, from the run journal):")
    print(table(
        ["LOCATION", "FLOW", "TASK", "RUN", "WHEN", "HOW", "EXISTS"],
        [
            [_shown(p.location), p.flow_name, p.task_name, p.run_id[:8], clock(p.when),
             "target found" if p.read else "written", _exists(p.location)]
            for p in persisted
        ],
    ))
    return EXIT_SUCCESS


#: A URL (``FSSpecResult``'s locations), where the value of a ``PrefectResult`` is JSON
#: text: a number, or one that starts with a quote or a bracket.
_URL = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def _shown(location: str, width: int = 60) -> str:
    """A location as a table shows it: a value (``_is_value``) cut to ``width``; a path or
    a URL whole."""
    if len(location) <= width or not _is_value(location):
        return location
    return location[: width - 3] + "..."


def _is_value(location: str) -> bool:
    """Whether a location is a value (``PrefectResult``'s: JSON text), which the journal
    itself keeps, rather than where a value went: a URL, a path, or a relative location
    of a store's own (a ``ResultBase``'s)."""
    path = location.removeprefix("file://")
    if _URL.match(path) or os.path.isabs(path):
        return False
    try:
        json.loads(path)
    except ValueError:
        return False
    return True


def _exists(location: str) -> str:
    """Whether a persisted result is still there: checked for local files only (a value
    is in the journal)."""
    if _is_value(location):
        return "in journal"
    path = location.removeprefix("file://")
    if _URL.match(path) or not os.path.isabs(path):
        return "?"
    try:
        return "yes" if Path(path).exists() else "no"
    except OSError:  # (a name too long for this file system: no such file)
        return "no"


def cmd_cache_clear(args: argparse.Namespace) -> int:
    store = default_cache_store()
    try:
        if args.flow is None and args.task is None:
            keys = store.keys()
            store.clear()
        else:
            keys = [key for key in store.keys() if _matches(key, args.flow, args.task)]
            for key in keys:
                store.clear(key)
    except (sqlite3.Error, OSError) as error:
        raise UsageError(f"cannot clear the cache store {store.path}: {error}") from None
    noun = "key" if len(keys) == 1 else "keys"
    print(f"Cleared {len(keys)} cache {noun}" + (f": {', '.join(keys)}" if keys else "") + ".")
    return EXIT_SUCCESS


def _python_files(paths: Sequence[str]) -> list[Path]:
    """The files to migrate: each file given, and the ``*.py`` files under each folder."""
    files: list[Path] = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            files.extend(sorted(path.rglob("*.py")))
        elif path.is_file():
            files.append(path)
        else:
            raise UsageError(f"no such file or folder: {name}")
    return files


def cmd_migrate(args: argparse.Namespace) -> int:
    try:
        from .migrate import migrate_source
    except ImportError as error:
        if error.name != "libcst":
            raise
        raise UsageError(
            "taskloom migrate needs libcst: pip install -e \".[migrate]\" from taskloom's clone "
            "(or: pip install libcst)"
        ) from None
    done = []
    for path in _python_files(args.paths):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"cannot read {path}: {error}") from None
        done.append((path, migrate_source(text, str(path))))  # a file that does not parse: exit 2
    report = sys.stderr if args.diff else sys.stdout
    something_left = False
    for path, migration in done:
        if args.diff:
            sys.stdout.write(migration.diff(str(path)))
        elif migration.changed and not args.check:
            path.write_text(migration.code, encoding="utf-8")
        if not migration.changed:
            status = "unchanged"
        elif args.check or args.diff:
            status = "would be rewritten"
            something_left = something_left or args.check
        else:
            status = "rewritten"
        left = migration.leftovers
        if left:
            status += f", {len(left)} construct{'s' if len(left) != 1 else ''} left to translate by hand"
            something_left = True
        print(f"{path}: {status}", file=report)
        for removed in migration.removed:
            print(f"{path}:{removed.line}: removed ({removed.what})", file=report)
        for leftover in left:
            print(f"{path}:{leftover.line}: not translated: {leftover.what}", file=report)
    return EXIT_FAILED if something_left else EXIT_SUCCESS


# -- the parser ----------------------------------------------------------------------------------


def _example(*lines: str) -> str:
    return "example:\n" + "\n".join(f"  {line}" for line in lines)


def _add_execution_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--executor", choices=("local", "loky", "dask", "threads"), default=None,
        help="where tasks run (default: the flow's own flow.executor if it has one, "
        "else loky, one worker per core; threads: for I/O-bound tasks)",
    )
    parser.add_argument(
        "--workers", type=int, metavar="N", default=None,
        help="how many worker processes (loky or dask; default: every core) or threads "
        "(threads; default: cores + 4, at most 32)",
    )
    parser.add_argument(
        "--progress", action=argparse.BooleanOptionalAction, default=True,
        help="show progress on stderr: live on a terminal, plain lines otherwise (default: on)",
    )
    parser.add_argument(
        "--log-level", metavar="LEVEL", default="WARNING",
        help="print taskloom's log records at LEVEL or above on stderr (default WARNING; "
        "INFO shows a line as each task starts and ends)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``taskloom`` and its commands."""
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="taskloom",
        description="Run taskloom flows, inspect and resume recorded runs, manage the output cache.",
        epilog=_example(
            "taskloom run flows.py:etl -p day=2024-05-01",
            "taskloom runs",
            "taskloom resume 3f2a9c1e",
        ) + "\n\nexit status: 0 success, 1 flow failed, 2 usage error, 3 flow paused",
        formatter_class=formatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show info log messages too")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    run = commands.add_parser(
        "run", help="run a flow", formatter_class=formatter,
        description="Run a flow and print the state of each task and the run id. Exit status: "
        "0 success, 1 failed, 3 paused (resume it with `taskloom resume`), 2 usage error.",
        epilog=_example(
            "taskloom run flows.py:etl -p day=2024-05-01 -p limit=100 --workers 4",
            "taskloom run mypackage.pipelines:nightly --executor local",
            "taskloom run flows.py:hourly --schedule --executor threads",
        ) + "\n\nA value is read as JSON where it parses (5, [1, 2], true, \"5\"), else as a string.",
    )
    run.add_argument("flow", metavar="FLOW", help="FILE.py:NAME or package.module:NAME")
    run.add_argument(
        "-p", "--parameter", action="append", metavar="NAME=VALUE",
        help="a parameter of the flow (repeat for more)",
    )
    run.add_argument(
        "--schedule", action="store_true",
        help="run at each due time of the flow's schedule (Flow(..., schedule=...)), a table "
        "per run, until the schedule ends or Ctrl-C; without it the flow runs once, now",
    )
    _add_execution_options(run)
    run.set_defaults(handler=cmd_run)

    runs = commands.add_parser(
        "runs", help="list recent runs", formatter_class=formatter,
        description="List the most recent runs in the run journal, newest first.",
        epilog=_example("taskloom runs --flow etl --limit 5"),
    )
    runs.add_argument("--flow", metavar="NAME", help="only runs of this flow")
    runs.add_argument("--limit", type=int, default=20, metavar="N", help="at most N runs (default 20)")
    runs.set_defaults(handler=cmd_runs)

    show = commands.add_parser(
        "show", help="show one run task by task", formatter_class=formatter,
        description="Show a recorded run: each task's state, attempts, worker, timings (after "
        "the run's start), what is stored to resume it, and its message.",
        epilog=_example(
            "taskloom show 3f2a9c1e   # a unique prefix of the id will do",
            "taskloom show 3f2a9c1e --task explode   # why it failed: message and traceback",
            "taskloom show 3f2a9c1e --inputs         # what a resume will run with",
        ),
    )
    show.add_argument("run_id", metavar="RUN_ID")
    show.add_argument(
        "--timeline", action="store_true",
        help="also draw the run as a timeline: one lane per worker, queue wait and run time",
    )
    show.add_argument(
        "--children", action="store_true",
        help="list every child of a mapped task (by default: one line per mapped task, "
        "counting its children by state)",
    )
    show.add_argument(
        "--logs", action="store_true",
        help="also print each task's log records of its last attempt (as the journal kept them)",
    )
    show.add_argument(
        "--task", metavar="NAME",
        help="print this task's (and its children's) whole message, traceback and log records",
    )
    show.add_argument(
        "--inputs", action="store_true",
        help="print the stored inputs of every task that has some, whole (by default: those "
        "of paused tasks, each cut to one line)",
    )
    show.set_defaults(handler=cmd_show)

    visualize = commands.add_parser(
        "visualize", help="draw a flow (DOT, Mermaid, SVG, PNG)", formatter_class=formatter,
        description="Draw a flow's tasks and edges (edges labelled with their argument "
        "names). With --run, tasks are coloured by their final state in that run. DOT and "
        "Mermaid need nothing; SVG, PNG and PDF need `pip install graphviz` and Graphviz's "
        "`dot` program.",
        epilog=_example(
            "taskloom visualize flows.py:etl                     # DOT on stdout",
            "taskloom visualize flows.py:etl --format mermaid",
            "taskloom visualize flows.py:etl --run 3f2a9c1e -o etl.svg",
        ),
    )
    visualize.add_argument("flow", metavar="FLOW", help="FILE.py:NAME or package.module:NAME")
    visualize.add_argument("--run", metavar="RUN_ID", help="colour the tasks by this run's states")
    visualize.add_argument(
        "-o", "--output", metavar="FILE",
        help="write to FILE (its suffix picks the format: .dot .mmd .svg .png .pdf)",
    )
    visualize.add_argument(
        "--format", choices=("dot", "mermaid", "svg", "png", "pdf"), default=None,
        help="the format (default: from -o's suffix, else dot)",
    )
    visualize.set_defaults(handler=cmd_visualize)

    report = commands.add_parser(
        "report", help="write an HTML timeline report of a run", formatter_class=formatter,
        description="Write one self-contained HTML file (it opens without a network): a "
        "timeline with one lane per worker showing queue wait and run time, retries, cache "
        "hits and failures; the critical path; and the best possible speed-up with N workers.",
        epilog=_example("taskloom report 3f2a9c1e -o report.html"),
    )
    report.add_argument("run_id", metavar="RUN_ID")
    report.add_argument("-o", "--output", metavar="FILE", required=True, help="the HTML file to write")
    report.add_argument(
        "--flow", metavar="FLOW",
        help="FILE.py:NAME of the run's flow, for the critical path (default: where the run "
        "was started from)",
    )
    report.set_defaults(handler=cmd_report)

    resume = commands.add_parser(
        "resume", help="resume a paused or failed run", formatter_class=formatter,
        description="Resume a recorded run in this process: paused tasks (all, or those named "
        "with --task) run with their stored inputs, failed tasks run again, and so does what "
        "they blocked; finished tasks are not run again. Exit status as for `run`.",
        epilog=_example(
            "taskloom resume 3f2a9c1e",
            "taskloom resume 3f2a9c1e --task approve --executor local",
            "taskloom resume 3f2a9c1e --flow flows.py:etl   # the flow, if it moved",
        ),
    )
    resume.add_argument("run_id", metavar="RUN_ID")
    resume.add_argument(
        "--task", action="append", metavar="NAME",
        help="resume only this paused task (repeat for more; default: every paused task)",
    )
    resume.add_argument(
        "--flow", metavar="FLOW",
        help="FILE.py:NAME or package.module:NAME (default: where the run was started from)",
    )
    _add_execution_options(resume)
    resume.set_defaults(handler=cmd_resume)

    migrate = commands.add_parser(
        "migrate", help="rewrite Prefect 1.x flow files for taskloom", formatter_class=formatter,
        description="Rewrite Prefect 1.x flow files in place for taskloom: imports and renamed "
        "names (LocalDaskExecutor -> LokyExecutor or ThreadExecutor, prefect.engine.state -> "
        "taskloom.states, ...), keeping comments and formatting; deployment-only code (storage, "
        "run_config, register(), Prefect Cloud calls) is removed with a comment. Prints, per "
        "file, what it could not translate, with the line. Exit status: 0 done, 1 something "
        "is left to translate by hand (with --check: or a file would change), 2 a file does "
        "not parse (nothing is written then). Needs libcst: pip install -e \".[migrate]\".",
        epilog=_example(
            "taskloom migrate flows/etl.py --diff",
            "taskloom migrate flows/            # every *.py file under flows/",
            "taskloom migrate flows/ --check    # in CI: fails while something is left",
        ),
    )
    migrate.add_argument("paths", nargs="+", metavar="PATH", help="a flow file, or a folder of them")
    migrate.add_argument(
        "--check", action="store_true",
        help="write nothing; exit 1 if a file would change or something is left to translate",
    )
    migrate.add_argument("--diff", action="store_true", help="print a unified diff; write nothing")
    migrate.set_defaults(handler=cmd_migrate)

    cache = commands.add_parser(
        "cache", help="list or clear cached task results", formatter_class=formatter,
        description="The output cache: results of tasks with cache_for, under the key "
        "FLOW/TASK (or the task's cache_key).",
        epilog=_example("taskloom cache ls", "taskloom cache clear --flow etl --task extract"),
    )
    cache_commands = cache.add_subparsers(dest="cache_command", metavar="COMMAND", required=True)
    ls = cache_commands.add_parser(
        "ls", help="list cache keys, result files and targets", formatter_class=formatter,
        description="List cache keys with their number of unexpired entries and the newest; "
        "then the result files and targets recorded runs wrote or found (result=, target=), "
        "newest first, and whether each local file is still there.",
        epilog=_example("taskloom cache ls --flow etl"),
    )
    ls.add_argument("--flow", metavar="NAME", help="only the keys of this flow")
    ls.set_defaults(handler=cmd_cache_ls)
    clear = cache_commands.add_parser(
        "clear", help="forget cached results", formatter_class=formatter,
        description="Forget cached results: all of them, a flow's, or one task's.",
        epilog=_example(
            "taskloom cache clear --flow etl --task extract   # the key etl/extract",
            "taskloom cache clear --task extract              # extract in every flow",
            "taskloom cache clear                             # everything",
        ),
    )
    clear.add_argument("--flow", metavar="NAME", help="only the keys of this flow")
    clear.add_argument("--task", metavar="NAME", help="only the keys of this task")
    clear.set_defaults(handler=cmd_cache_clear)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    handler: Callable[[argparse.Namespace], int] = args.handler
    global _verbose
    _verbose = bool(args.verbose)
    try:
        return handler(args)
    except FlowLoadError as error:
        print(f"taskloom: error: {_with_traceback(error)}", file=sys.stderr)
        return EXIT_USAGE
    except (
        UsageError, FlowDefinitionError, FlowNotFoundError, JournalError, UnsafeHomeError, ValueError,
        MissingRendererError, MissingSecretError,  # (a secret a resume reads again)
    ) as error:
        print(f"taskloom: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("taskloom: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
