"""What happened to one task in one run: the trace the scheduler fills, the record the
journal gives back.

``TaskTrace`` is filled by the scheduler as the run goes (``taskloom.runner``): the task's
current state, how many attempts it had, the inputs of its last attempt, when it was
handed to the executor, when it ran and where. It is all the journal needs of a task
(``journal.task_records``), so the scheduler hands the journal one list of traces.

The journal records a trace by column name, not by position: ``COLUMNS`` are built from
the trace's ``FIELDS``, a recorded run carries them as its header, and ``record`` reads a
row back into a ``TaskRecord`` by name (dropping columns it does not know, defaulting those
it lacks). So a new plain field of ``TaskTrace`` is recorded and read back by adding it here,
to ``TaskTrace`` (and ``FIELDS``) and ``TaskRecord``, and to the code that fills it: the
journal does not change. ``state`` is recorded as its class name and message, and ``inputs`` only where a
resume needs them (in their own table: see ``taskloom.journal``).

A trace costs one small object per task (slots; a dict only for a task that logged,
failed with a traceback or has a run name); the scheduler writes its fields in place, the
way it used to write its parallel lists. A recorded row ends before the
optional columns (those after ``worker``) when all of them are None, as most tasks' are:
``record`` gives a column a row lacks its ``TaskRecord`` default, which for those is None.
``outcomes`` makes the journal's rows of a whole run in bulk (two comprehensions over the
traces, secrets masked only when one is known): a run records thousands at once.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, overload

from ._secrets import masked_rows
from .states import State

__all__ = ["COLUMNS", "ChildTrace", "FIELDS", "TAMPERED", "Stored", "TaskRecord", "TaskTrace", "outcome", "outcomes", "record"]


class _Rare:
    """A field of a trace that most tasks never set (``logs``, ``traceback``, ``run_name``):
    None until set, then kept in the trace's ``_more`` dict, made by the first one set."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.name = name

    @overload
    def __get__(self, trace: None, owner: type) -> _Rare: ...

    @overload
    def __get__(self, trace: TaskTrace, owner: type) -> str | None: ...

    def __get__(self, trace: TaskTrace | None, owner: type) -> _Rare | str | None:
        if trace is None:
            return self
        more = trace._more
        return None if more is None else more.get(self.name)

    def __set__(self, trace: TaskTrace, value: str | None) -> None:
        if trace._more is None:
            if value is None:
                return
            trace._more = {}
        trace._more[self.name] = value


class TaskTrace:
    """One task of a run, as the scheduler saw it (see the module docstring).

    Attributes:
        name: the task's name.
        state: its current state; its final one once the run ends.
        attempts: how many attempts it was handed to the executor for (0: decided without
            running, or never reached).
        inputs: the inputs of its last attempt (or those it was paused with), while a
            resume may need them: None when it was never handed to the executor, or once it
            finished in a state that does not ``keeps_inputs`` (a success).
        queued: when it was handed to the executor (seconds since the epoch).
        started: when its last attempt started.
        finished: when its last attempt finished.
        worker: where its last attempt ran (``"local"``, ``"loky:12345"``, ...).
        parent: for a child of a mapped task, the mapped task's number (children are
            numbered after the flow's tasks); None for a task of the flow.
        map_index: for a child of a mapped task, its index.
        logs: the formatted log records of its last attempt, as the run kept them
            (``taskloom.logging.RunLogs``: at most ``LOG_CAP`` characters, then a note of
            how many records were cut); None when it logged nothing or the run was not
            journaled.
        traceback: the traceback of its last attempt's exception, formatted where the
            failure was decided, with the real file names of the user's code
            (``taskloom._tracebacks``); None when it did not fail with an exception.
        run_name: the name of its last attempt, its ``task_run_name`` filled in; None
            when the task has none (or never ran).
        location: where its last attempt's result was written, or read from (a target
            found), by its ``result`` (``taskloom.checkpoint``); None when it does not
            persist. The journal keeps this instead of the value.

    A trace is 112 bytes, not 144: what most tasks never have (``logs``, ``traceback``,
    ``run_name``) is kept in a dict of the trace's made when the first is set, and
    ``parent`` and ``map_index`` are a child's (a ``ChildTrace`` has slots for them; a task
    of the flow reads None from the class).
    """

    __slots__ = ("_more", "attempts", "finished", "inputs", "location", "name", "queued",
                 "started", "state", "worker")

    # A child's own (``ChildTrace``); None for a task of the flow.
    parent: int | None = None
    map_index: int | None = None

    def __init__(
        self,
        name: str,
        state: State[Any],
        attempts: int = 0,
        inputs: dict[str, Any] | None = None,
        queued: float | None = None,
        started: float | None = None,
        finished: float | None = None,
        worker: str | None = None,
        logs: str | None = None,
        traceback: str | None = None,
        run_name: str | None = None,
        location: str | None = None,
    ) -> None:
        self.name = name
        self.state = state
        self.attempts = attempts
        self.inputs = inputs
        self.queued = queued
        self.started = started
        self.finished = finished
        self.worker = worker
        self.location = location
        #: ``logs``, ``traceback`` and ``run_name``, those set (None until one is).
        self._more: dict[str, str | None] | None = None
        if logs is not None or traceback is not None or run_name is not None:
            self._more = {"logs": logs, "traceback": traceback, "run_name": run_name}

    logs = _Rare()
    traceback = _Rare()
    run_name = _Rare()

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, TaskTrace)
        return all(getattr(self, name) == getattr(other, name) for name in FIELDS)

    __hash__ = None  # type: ignore[assignment]  # mutable, compared by value (as a dataclass)

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in FIELDS)
        return f"{type(self).__name__}({shown})"


class ChildTrace(TaskTrace):
    """The trace of a child of a mapped task: ``parent`` and ``map_index`` of its own
    (its other fields start as ``TaskTrace``'s defaults)."""

    __slots__ = ("map_index", "parent")

    def __init__(self, name: str, state: State[Any], parent: int, map_index: int) -> None:
        TaskTrace.__init__(self, name, state)  # (a mapped task makes thousands: no super())
        self.parent: int | None = parent
        self.map_index: int | None = map_index


#: The fields of a trace, in order (its constructor's arguments, and a child's).
FIELDS: tuple[str, ...] = (
    "name", "state", "attempts", "inputs", "queued", "started", "finished", "worker", "parent",
    "map_index", "logs", "traceback", "run_name", "location",
)  # fmt: skip


#: The fields of a trace recorded as they are: plain values (str, int, float, None).
_PLAIN = tuple(name for name in FIELDS if name not in ("state", "inputs"))

#: The columns of a recorded task outcome, in the order ``outcome`` gives them.
COLUMNS: tuple[str, ...] = ("state", "message", *_PLAIN)
#: Where the columns that default to None begin (those after ``worker``).
_OPTIONAL = COLUMNS.index("worker") + 1

#: The columns of a row up to its optional ones, in the order ``outcomes`` reads them
#: (by name, in a comprehension: an ``attrgetter`` of them took 2.7x as long, as it looks
#: each name up where the interpreter's attribute reads on slots are specialised).
_LEADING = ("state", "message", "name", "attempts", "queued", "started", "finished", "worker")
if COLUMNS[:_OPTIONAL] != _LEADING:  # pragma: no cover - a column added or moved
    raise RuntimeError(f"trace.outcomes reads {_LEADING}, not the columns {COLUMNS[:_OPTIONAL]}")
#: A trace's optional columns (read only for the few that have one).
_optional = operator.attrgetter(*COLUMNS[_OPTIONAL:])
_TEXT = frozenset((str, type(None)))


def outcomes(traces: Sequence[TaskTrace]) -> list[tuple[Any, ...]]:
    """Each task's outcome as the journal records it (``outcome``), in bulk."""
    return _rows(traces, [t.state for t in traces], None)


def numbered_outcomes(
    numbers: Sequence[int],
    traces: Sequence[TaskTrace],
    states: Sequence[State[Any]] | None = None,
) -> list[tuple[Any, ...]]:
    """The outcomes of the traces numbered ``numbers``, each as ``(number, *outcome)``:
    the rows of a batch of the journal's task log. ``states``: the state of each, as the
    caller read it (the task log's writer reads them once, for the rows and what it keeps
    beside them), else read here."""
    picked = [traces[i] for i in numbers]
    return _rows(picked, [t.state for t in picked] if states is None else states, numbers)


def _rows(
    traces: Sequence[TaskTrace], states: Sequence[State[Any]], numbers: Sequence[int] | None
) -> list[tuple[Any, ...]]:
    """The outcome rows of ``traces`` in ``states``, each led by its number if ``numbers``
    are given: one comprehension reads the ``_LEADING`` columns, and the number goes in
    the same pass (a second pass to prepend it took half as long again as the first)."""
    rows: list[tuple[Any, ...]] = [
        (type(s).__name__, s.message, t.name, t.attempts, t.queued, t.started, t.finished, t.worker)
        for t, s in zip(traces, states)
    ] if numbers is None else [
        (i, type(s).__name__, s.message, t.name, t.attempts, t.queued, t.started, t.finished, t.worker)
        for i, t, s in zip(numbers, traces, states)
    ]  # fmt: skip
    # Most tasks have none of the optional columns: their row ends before them (``record``
    # reads a short row with those at their defaults), which spares the journal's end of a
    # run of a million tasks 48 MB of Nones. (A child has a parent and a map index; a trace
    # with logs, a traceback or a run name has its ``_more``.)
    extra = [t.parent is not None or t._more is not None or t.location is not None for t in traces]
    if True in extra:
        rows = [row + _optional(t) if has else row for row, has, t in zip(rows, extra, traces)]
    message = 1 if numbers is None else 2
    if not _TEXT.issuperset(map(type, map(operator.itemgetter(message), rows))):
        # A message typed ``str`` that is not one (a user's signal may carry any
        # object): recorded as its text, as a state's repr shows it.
        rows = [
            row if row[message] is None or type(row[message]) is str
            else (*row[:message], str(row[message]), *row[message + 1 :])
            for row in rows
        ]
    # Messages, logs, tracebacks, run names and locations may quote a secret: the
    # journal keeps them masked.
    return masked_rows(rows)


def changed(traces: Sequence[TaskTrace], taken: Sequence[State[Any] | None]) -> list[int]:
    """The numbers of the traces whose outcome may differ from the one recorded when their
    state was ``taken[i]`` (None: none recorded): their state is another since, or they
    have a rare field set (a task's logs are attached at the end of its run, after it was
    recorded). Every other field of an outcome changes only with the state."""
    stale = [
        i for i, (trace, state) in enumerate(zip(traces, taken))
        if trace.state is not state or trace._more is not None
    ]  # fmt: skip
    stale.extend(range(len(taken), len(traces)))
    return stale


def outcome(trace: TaskTrace) -> tuple[Any, ...]:
    """A task's outcome as the journal records it: one plain value per name in ``COLUMNS``."""
    return outcomes((trace,))[0]


@dataclass(frozen=True, slots=True)
class Stored:
    """A result the journal keeps as where it was persisted (``TaskTrace.location``) by
    task number ``task`` (through that task's result) instead of its value: ``taskloom
    resume`` reads it from there."""

    location: str
    task: int


#: The marker of a blob whose signature did not match.
TAMPERED: Any = type("Tampered", (), {"__repr__": lambda self: "<tampered>"})()


@dataclass(slots=True)
class TaskRecord:
    """One task of a recorded run, as ``Journal.load`` gives it back.

    ``state`` is the name of its final state's class (``states.by_name`` gives the class).
    A child of a mapped task has the mapped task's number as ``parent`` and its
    ``map_index``; ``RunRecord.children`` holds them, by parent.
    ``inputs`` is set for tasks left paused, retrying or failed; ``result`` (with
    ``has_result``) for finished tasks whose result a resume needs. Either is ``TAMPERED``
    when its signature did not match. ``logs`` is the text of its last attempt's log
    records (``TaskTrace.logs``; None in journals written before it was recorded),
    ``traceback`` its last exception's traceback (``TaskTrace.traceback``, likewise), and
    ``run_name`` the name of its last run (``TaskTrace.run_name``, likewise).
    ``location`` where its result was persisted (``TaskTrace.location``, likewise).
    """

    index: int
    name: str
    state: str
    message: str | None
    queued: float | None = None
    started: float | None = None
    finished: float | None = None
    attempts: int = 0
    worker: str | None = None
    inputs: dict[str, Any] | None = None
    result: Any = None
    has_result: bool = False
    parent: int | None = None
    map_index: int | None = None
    logs: str | None = None
    traceback: str | None = None
    run_name: str | None = None
    location: str | None = None

    @property
    def label(self) -> str:
        """How displays name the task: its name, with its run's name when it has one,
        e.g. ``fetch[0] (fetch-paris)``."""
        return self.name if self.run_name is None else f"{self.name} ({self.run_name})"

    @property
    def tampered(self) -> bool:
        """Whether a stored blob of this task failed its signature check."""
        return self.inputs is TAMPERED or self.result is TAMPERED


_READ = frozenset(COLUMNS) & frozenset(f.name for f in fields(TaskRecord))


def record(index: int, columns: Sequence[str], row: Sequence[Any]) -> TaskRecord:
    """Task number ``index`` of a run, from a ``row`` recorded under ``columns``.

    Columns this version does not know (a newer taskloom's) are dropped; those the row
    lacks (an older one's) keep their defaults.
    """
    values = {name: value for name, value in zip(columns, row) if name in _READ}
    values.setdefault("name", "?")
    values.setdefault("state", State.__name__)
    values.setdefault("message", None)
    return TaskRecord(index=index, **values)
