"""The run journal: what every flow run did, kept so it can be read and resumed later.

One SQLite file, ``journal.sqlite`` in the taskloom home (see ``_home``), shared by every
process of the user. ``flow.run`` records a run when it starts and again when it ends:
its id, flow, where the flow came from, parameters, times and final state, the process
running it (pid, host, start time: ``taskloom._process``), and for every task what its
``TaskTrace`` holds (``taskloom.trace``): its final state, message, timings (queued,
started, finished), attempt count and the worker that ran it. The task outcomes of a run
are one row (a signed pickle of plain values, loaded with an unpickler that refuses every
class; a large run's in parts, below), written in one transaction at the end, so the
journal costs about a microsecond per task.

While the run goes, the outcomes of the tasks that settled are also written as they
settle, a batch at a time (``log_tasks``, driven by ``taskloom.recording``): one
``task_log`` row per batch, holding the outcomes (signed, plain), and after it a row of
the values a resume needs (the inputs of failed tasks, the results of finished tasks whose
downstream tasks have not finished; one signed cloudpickle), if any: the run's end deletes
that row, which costs far less than rewriting the outcomes without them. The batches'
rows are numbered 1, 3, 5, ... (``_outcomes_row``), their values' 2, 4, 6, ....
``begin`` writes the first, with the task names (a large flow's in parts of their own:
rows -1, -2, ...). A run that wrote no batch (one shorter than ``recording.FLUSH_SECONDS``)
has them replaced by the run's row (and its parts) at its end. One that did keeps its
batches: ``finish`` writes only the tasks whose outcome is not in them or is another
since (``LoggedTasks``, ``trace.changed``), as more batches, deletes the values kept
beside them, and its ``tasks`` row lists the batches (``{"columns", "rows": [], "count",
"logged": [seq, ...]}``); each task's outcome is its row in the last batch that holds it.
So each outcome of a long run is computed, pickled and written once, not again at its end
(at a million tasks, 1.7 µs a task). A run that never finished (its process was killed)
is read from them: ``load`` gives its recorded tasks, and the others as ``Pending``
(never recorded: in flight or never reached), and a run whose process is gone reads as
``Crashed`` (decided by pid, host and start time, never by its age).

The outcomes are stored by column name: ``{"columns": trace.COLUMNS, "rows": [one tuple
per task]}``, and read back by name (``trace.record``), so a field added to the trace is
recorded without a change here. The end of a run pickles them ``ROWS_PER_PICKLE`` rows at
a time: the run's ``tasks`` holds the first rows and how many parts follow (``"parts"``),
and each part is a ``task_log`` row of the run numbered -1, -2, ... (``(run_id, part,
rows)``, signed), so the parent never holds a row tuple per task of a large run, nor their
pickle, at once (a temporary file beside the journal holds the parts on their way in).
Journals written by taskloom 0.1 hold a bare list of 9-tuples (``_V01_COLUMNS``, the task's
number first) in the same table: they load as they are, so their runs can still be shown
and resumed.

To let a later process resume the run, and nothing more, it also keeps:

- the inputs of every task that a resume runs again from inputs of its own (a state whose
  class ``keeps_inputs``: left ``Paused``, ``Retrying`` or failed),
- the results of finished tasks that the tasks a resume runs again will need.

Neither keeps a secret's value (``taskloom._secrets``): an input or result that is a secret
is kept as a ``SecretRef`` (the resume reads the secret again), one that otherwise holds a
secret's value is not kept (a warning says so), and messages, logs and tracebacks are
recorded with secret values masked (``trace.outcome``).

Of a result that was persisted (``result=``, ``target=``: ``TaskTrace.location``), it keeps
where it is (``trace.Stored``) instead of the value, as a result and as another task's
stored input, so resuming a flow that moves large data reads its files, not journal blobs.

Blobs are cloudpickled and signed with the home's HMAC key; one whose signature does not
match is reported as tampered and never unpickled; a signed row of outcomes that holds a
class is reported as refused content and not loaded either. A damaged journal file is
moved aside and a fresh one started (``_sqlite``). A journal that cannot be written (a full
disk, a read-only home, a lock held too long) never stops a flow run: the run goes on and
a warning is logged.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import logging
import os
import pickle
import sqlite3
import tempfile
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cloudpickle

from ._home import Signer, taskloom_home
from ._secrets import as_refs, found_in
from ._process import ProcessMark, gone, this_process
from ._sqlite import LOCK_TIMEOUT, SQLiteFile, per_home
from .errors import TaskloomError
from .plan import Plan
from .locations import TARGET_FOUND
from .states import Crashed, Mapped, Pending, Running, State, picklable
from .trace import (
    COLUMNS, TAMPERED, Stored, TaskRecord, TaskTrace, changed, numbered_outcomes,
    outcomes, record,
)

__all__ = [
    "Journal",
    "JournalError",
    "LoggedTasks",
    "PersistedResult",
    "RunRecord",
    "TAMPERED",
    "TaskRecord",
    "default_journal",
    "kept_values",
    "task_records",
]

log = logging.getLogger("taskloom.journal")

#: Bumped when the tables change; a file of a version in ``_MIGRATIONS`` is brought up to
#: date in place, one of any other version is moved aside.
SCHEMA_VERSION = 2

#: The batches of task outcomes a run writes as it goes (``log_tasks``).
_TASK_LOG = """
CREATE TABLE IF NOT EXISTS task_log (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    outcomes BLOB NOT NULL,
    task_values BLOB,
    PRIMARY KEY (run_id, seq)
);
"""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    flow_name TEXT NOT NULL,
    source TEXT,
    parameters BLOB,
    started REAL NOT NULL,
    ended REAL,
    state TEXT NOT NULL,
    message TEXT,
    resumed_from TEXT,
    tasks BLOB,
    pid INTEGER,
    host TEXT,
    process_start TEXT
);
CREATE INDEX IF NOT EXISTS runs_by_flow ON runs (flow_name, started);
CREATE TABLE IF NOT EXISTS resume_data (
    run_id TEXT NOT NULL,
    task_index INTEGER NOT NULL,
    inputs BLOB,
    result BLOB,
    PRIMARY KEY (run_id, task_index)
);
""" + _TASK_LOG

#: Version 1 (taskloom 0.1) had no process columns and no task log.
_MIGRATIONS = {
    1: (
        "ALTER TABLE runs ADD COLUMN pid INTEGER",
        "ALTER TABLE runs ADD COLUMN host TEXT",
        "ALTER TABLE runs ADD COLUMN process_start TEXT",
        _TASK_LOG.strip().rstrip(";"),
    ),
}
#: The ``resume_data`` row (``task_index``) of a run's given context, in ``inputs``: a row
#: where a journal of this schema keeps it, which a taskloom that does not know it skips
#: (no task has a negative number), so that the journal stays the same version.
_CONTEXT_ROW = -1

#: Keys of a run's given context that are not kept for its resumes: its own (a resume is
#: another run) and its secrets (read again).
_CONTEXT_NOT_KEPT = frozenset({"flow_run_id", "flow_run_name", "secrets"})

def _keepable(key: str, value: Any) -> bool:
    """Whether a value of a run's given context is kept for its resumes: one that pickles
    and holds no secret's value (a secret is read again by the resume, as the run read
    it). Left out quietly: most runs are never resumed."""
    try:
        data = cloudpickle.dumps(value)
    except Exception as error:
        log.debug("journal: the context's %r not stored, it cannot be pickled (%r)", key, error)
        return False
    if found_in(data) is not None:
        log.debug("journal: the context's %r not stored, it holds a secret's value", key)
        return False
    return True


#: The message of a task a run that never finished did not record.
NOT_RECORDED = "Not recorded: the run ended before the task finished (in flight, or never reached)."

#: What a resume needs of one task, as ``log_tasks`` takes it: (inputs, result, has_result).
Values = tuple["dict[str, Any] | None", Any, bool]


class _PlainUnpickler(pickle.Unpickler):
    """Loads only builtin values: the task outcomes never need a class."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"the journal refuses to load {module}.{name}")


def _plain_loads(data: bytes) -> Any:
    return _PlainUnpickler(io.BytesIO(data)).load()


#: The most rows of a run's outcomes pickled at once (``_pickled_outcomes``).
ROWS_PER_PICKLE = 10_000
#: The most bytes of a run's pickled outcomes ``finish`` holds in memory before it moves
#: them to a temporary file (beside the journal) on their way into the journal.
SPOOL_BYTES = 1 << 20
#: The columns of a batch of outcomes (``Journal._batch``): the task's number first.
_BATCH_COLUMNS = ("index", *COLUMNS)


def _outcome_chunks(traces: Sequence[TaskTrace]) -> Iterator[list[tuple[Any, ...]]]:
    """The outcomes of a run's tasks (``trace.outcomes``), ``ROWS_PER_PICKLE`` at a time
    (at least one chunk, empty for no task)."""
    for start in range(0, max(len(traces), 1), ROWS_PER_PICKLE):
        yield outcomes(traces[start : start + ROWS_PER_PICKLE])


@dataclass(frozen=True)
class LoggedTasks:
    """What a run's task log (``recording.TaskLog``) wrote while the run went: the numbers
    of its batches, and by task number the state each task's written outcome was taken
    from (None: not written). ``finish`` keeps those batches and writes only the rest."""

    batches: list[int]
    states: Sequence[State[Any] | None]


def _refusing(run_id: str, payload: bytes) -> Any:
    """``_plain_loads(payload)``; what cannot be loaded (a class, or no pickle at all) is
    the run's refused content."""
    try:
        return _plain_loads(payload)
    except Exception as error:
        raise JournalError.refused(run_id, error) from None


def _part(run_id: str, chunk: object) -> tuple[int, list[Any]] | None:
    """A part of a run's task names or outcomes (``(run_id, number, items)``: ``_skeleton``,
    ``finish``) as ``(number, items)``; None when it is not a part of this run."""
    if isinstance(chunk, tuple) and len(chunk) == 3 and chunk[0] == run_id and type(chunk[1]) is int:
        return chunk[1], chunk[2]
    return None


def _joined(first: list[Any], parts: Mapping[int, list[Any]], count: int) -> bool:
    """Append the items of parts 1 to ``count``, in order, to ``first``; False (and
    ``first`` as it was) when the parts are not exactly those."""
    if sorted(parts) != list(range(1, count + 1)):
        return False
    for number in range(1, count + 1):
        first.extend(parts[number])
    return True


class JournalError(TaskloomError):
    """A run the journal cannot give: unknown, or its stored data is tampered with."""

    @classmethod
    def tampered(cls, run_id: str, task: str | None = None) -> JournalError:
        """The error for a run (or one of its tasks, by name) whose stored data failed its
        signature check: it was not loaded, and the run cannot be shown or resumed."""
        if task is None:
            what = "its stored parameters, context or task outcomes are tampered with (their signature"
            return cls(f"run {run_id}: {what} does not match); they were not loaded")
        what = f"the stored data of task {task!r} is tampered with (its signature"
        return cls(f"run {run_id}: {what} does not match); it was not loaded")

    @classmethod
    def refused(cls, run_id: str, why: BaseException) -> JournalError:
        """The error for a run whose task outcomes are signed but hold what the journal
        never loads there (a class: they are plain values, so this was not written by
        taskloom): they were not loaded, and the run cannot be shown or resumed."""
        return cls(
            f"run {run_id}: its stored task outcomes hold refused content ({why}; they are "
            "plain values when taskloom writes them); they were not loaded"
        )


#: The columns of the outcome rows journals written by taskloom 0.1 hold (a bare list of
#: tuples, the task's number first). Frozen: it describes files already written.
_V01_COLUMNS = (
    "index", "name", "state", "message", "queued", "started", "finished", "attempts", "worker",
)  # fmt: skip


@dataclass(slots=True)
class RunRecord:
    """One recorded flow run; ``tasks`` is filled by ``Journal.load``."""

    run_id: str
    flow_name: str
    source: str | None
    parameters: dict[str, Any]
    started: float
    ended: float | None
    state: str
    message: str | None
    resumed_from: str | None = None
    tasks: list[TaskRecord] = field(default_factory=list)
    #: The children of each mapped task (by its number), in map-index order.
    children: dict[int, list[TaskRecord]] = field(default_factory=dict)
    #: Whether a stored blob of the run (its parameters or task outcomes) failed its
    #: signature check; such a blob is never unpickled.
    tampered: bool = False
    #: The process that ran it (None in journals written before it was recorded).
    process: ProcessMark | None = None
    #: The context the caller gave the run (``flow.run(context=...)``, and that of an
    #: enclosing ``taskloom.context``), which its resumes get again: without its secrets,
    #: and without what could not be stored (see ``Journal.begin``). Filled by ``load``.
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def crashed(self) -> bool:
        """Whether the run never recorded its end and its process is gone (``Crashed``)."""
        return self.state == Crashed.__name__

    @property
    def duration(self) -> float | None:
        """Seconds from start to end, or None while (or if) it never ended."""
        return None if self.ended is None else self.ended - self.started


class Journal(SQLiteFile):
    """The run journal in ``path`` (default ``journal.sqlite`` in the taskloom home).

    ``lock_timeout``: how long a write waits for another process's lock before the run
    goes on without recording it (seconds); after a second it warns, naming the holder.

    Raises:
        UnsafeHomeError: the taskloom home belongs to another user or others may write to it.
    """

    SCHEMA = _SCHEMA
    VERSION = SCHEMA_VERSION
    KIND = "journal"
    MIGRATIONS = _MIGRATIONS

    def __init__(
        self, path: str | os.PathLike[str] | None = None, lock_timeout: float = LOCK_TIMEOUT
    ) -> None:
        home = taskloom_home()
        super().__init__(Path(path) if path is not None else home / "journal.sqlite", lock_timeout)
        self._signer = Signer.for_home(home)
        self._last_skeleton: tuple[Sequence[str], list[bytes]] | None = None

    def _context_blob(self, context: Mapping[str, Any]) -> bytes | None:
        """The stored form of a run's given context: the values that can be kept
        (``_keepable``; one that cannot, such as a connection a ``LocalExecutor`` run's
        tasks share, is left out without a warning), without the run's own keys and its
        secrets. (Each value is pickled on its own first, so that one left out takes no
        other with it.)"""
        kept = {
            key: value for key, value in context.items()
            if key not in _CONTEXT_NOT_KEPT and _keepable(key, value)
        }
        return self._blob(kept, "the context") if kept else None

    def _read_context(self, record: RunRecord, blob: bytes | None) -> None:
        """Fill ``record.context`` from its stored form: a blob that fails its signature
        check makes the record ``tampered``; one that cannot be loaded here (a class only
        the run's process had) is left out, with a warning."""
        try:
            context = self._value(blob)
        except Exception as error:
            log.warning(
                "journal: run %s: its context cannot be read back (%r); a resume runs without it",
                record.run_id, error,
            )
            return
        if context is TAMPERED:
            record.tampered = True
        elif isinstance(context, dict):
            record.context = context

    def _blob(self, value: Any, what: str) -> bytes | None:
        """``value`` pickled and signed; None (with a warning) if it cannot be pickled or
        holds a secret's value."""
        try:
            # An exception among the values (a failed task's, fed to a task that runs
            # after failures) that would not unpickle is stored as a stand-in.
            value = picklable(value)
            data = cloudpickle.dumps(value)
            secret = found_in(data)
            if secret is not None:
                # A secret itself is kept as a reference a resume reads again; anything
                # else that holds its value is not kept at all.
                data = cloudpickle.dumps(as_refs(value))
                if found_in(data) is not None:
                    log.warning("journal: %s not stored, it holds the value of secret %r", what, secret)
                    return None
            return self._signer.sign(data)
        except Exception as error:
            log.warning("journal: %s not stored, it cannot be pickled (%r)", what, error)
            return None

    def _value(self, blob: bytes | None) -> Any:
        if blob is None:
            return None
        payload = self._signer.verify(blob)
        if payload is None:
            return TAMPERED
        return cloudpickle.loads(payload)

    # -- writing ------------------------------------------------------------------------------

    def begin(
        self,
        run_id: str,
        flow_name: str,
        source: str | None,
        parameters: Mapping[str, Any],
        started: float,
        resumed_from: str | None = None,
        *,
        names: Sequence[str] = (),
        opening: tuple[Sequence[tuple[Any, ...]], Mapping[int, Values]] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> bool:
        """Record that a run of the tasks ``names`` (by number) started, in this process,
        with ``opening`` (rows and values, as ``log_tasks`` takes them) as its task log's
        batch 1 if given, and the ``context`` its caller gave it (``_context_blob``); False
        (and a warning) if the journal is unusable."""
        try:
            params = self._blob(dict(parameters), "parameters")
            given = self._context_blob(context or {})
            skeleton = self._skeleton(run_id, names)
            first = () if opening is None else self._task_log_rows(run_id, 1, *opening)
            me = _this_process()
            with self._transaction() as connection:
                connection.execute(
                    "INSERT INTO runs (run_id, flow_name, source, parameters, started, state, "
                    "resumed_from, pid, host, process_start) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, flow_name, source, params, started, Running.__name__, resumed_from,
                     me.pid, me.host, me.started),
                )
                if given is not None:
                    connection.execute(
                        "INSERT OR REPLACE INTO resume_data VALUES (?, ?, ?, NULL)",
                        (run_id, _CONTEXT_ROW, given),
                    )
                connection.executemany(  # a part's pickle made as it is written
                    "INSERT INTO task_log VALUES (?, ?, ?, NULL)",
                    ((run_id, -part, signed) for part, signed in enumerate(skeleton)),
                )
                connection.executemany("INSERT OR REPLACE INTO task_log VALUES (?, ?, ?, ?)", first)
            return True
        except (sqlite3.Error, OSError) as error:
            log.warning("journal %s unusable (%s): this run is not recorded", self.path, error)
            return False

    def _skeleton(self, run_id: str, names: Sequence[str]) -> Iterable[bytes]:
        """The signed first rows of a run's task log: its task names, ``ROWS_PER_PICKLE``
        a row (the first ``{"names": [...], "name_parts": more}``, row 0; each next one
        ``(run_id, part, names)``, row -part), each pickled as it is written: the names of
        a million tasks pickled at once (and their copies on the way into SQLite) would
        hold their RSS for the rest of the run. The rows of a flow of at most
        ``ROWS_PER_PICKLE`` names are reused for the same sequence of names (a flow run
        again: its plan's names, the same object, kept as it is: names are never changed
        in place), as pickling thousands of names is not free."""
        last = self._last_skeleton
        if last is not None and last[0] is names:
            return last[1]
        first = list(names[:ROWS_PER_PICKLE])
        more = -(-(len(names) - len(first)) // ROWS_PER_PICKLE)  # rounded up
        head = self._signer.sign(pickle.dumps({"names": first, "name_parts": more}, protocol=5))
        if not more:
            self._last_skeleton = (names, [head])
            return [head]
        return itertools.chain([head], (
            self._signer.sign(pickle.dumps(
                (run_id, part, list(names[part * ROWS_PER_PICKLE : (part + 1) * ROWS_PER_PICKLE])),
                protocol=5,
            ))
            for part in range(1, more + 1)
        ))  # fmt: skip

    def log_tasks(
        self,
        run_id: str,
        seq: int,
        rows: Sequence[tuple[Any, ...]],
        values: Mapping[int, Values],
    ) -> bool:
        """Record batch ``seq`` (1, 2, ...) of a run's settled tasks: ``rows`` are each
        ``(task number, *trace.outcome(trace))``, ``values`` what a resume needs of some of
        them, by number. One transaction; False (and a warning) if it failed."""
        try:
            written = self._task_log_rows(run_id, seq, rows, values)
            with self._transaction() as connection:
                connection.executemany("INSERT OR REPLACE INTO task_log VALUES (?, ?, ?, ?)", written)
            return True
        except (sqlite3.Error, OSError) as error:
            log.warning("journal %s unusable (%s): tasks of run %s not recorded yet", self.path, error, run_id)
            return False

    def _task_log_rows(
        self, run_id: str, seq: int, rows: Sequence[tuple[Any, ...]], values: Mapping[int, Values]
    ) -> list[tuple[str, int, bytes, bytes | None]]:
        """Batch ``seq`` of a run's task log as its rows of the ``task_log`` table: its
        outcomes (row ``_outcomes_row(seq)``), and what a resume needs of them, if
        anything, in the row after it (with an empty batch as its outcomes). The run's end
        deletes that row; dropping the values from the outcomes' row instead would rewrite
        the outcomes (SQLite rewrites a whole row to change a column): at a million tasks,
        a third of a microsecond a task at the end of the run."""
        row = _outcomes_row(seq)
        outcomes = (run_id, row, self._batch(rows), None)
        blob = self._values_blob(values) if values else None
        return [outcomes] if blob is None else [outcomes, (run_id, row + 1, self._batch(()), blob)]

    def _batch(self, rows: Sequence[tuple[Any, ...]]) -> bytes:
        """A batch of outcomes as the task log and ``finish`` write it: signed, each row
        ``(task number, *outcome)``."""
        return self._signer.sign(
            pickle.dumps({"columns": _BATCH_COLUMNS, "rows": list(rows)}, protocol=5)
        )

    def _values_blob(self, values: Mapping[int, Values]) -> bytes | None:
        """One signed pickle of ``values``; where that cannot be (a value does not pickle,
        or holds a secret's value), each is kept as ``_blob`` keeps one, or left out."""
        try:
            data = cloudpickle.dumps(dict(values))
            if found_in(data) is None:
                return self._signer.sign(data)
        except Exception:
            pass
        kept: dict[int, Values] = {}
        for index, (inputs, result, has_result) in values.items():
            value = (as_refs(inputs), as_refs(result), has_result)
            if self._blob(value, f"the inputs or result of task number {index}") is not None:
                kept[index] = value
        return self._signer.sign(cloudpickle.dumps(kept)) if kept else None

    def finish(
        self,
        run_id: str,
        ended: float,
        state: State[Any],
        traces: Sequence[TaskTrace],
        plan: Plan,
        logged: LoggedTasks | None = None,
        unknown: Collection[int] = (),
    ) -> None:
        """Record how a run ended, what each task did, and what a resume needs (one transaction).
        ``unknown``: tasks whose results the run never had (a resume seeds None for a
        result its run did not store): not kept as results (``kept_values``).

        A run whose task log wrote batches (``logged``: a run longer than
        ``recording.FLUSH_SECONDS``) keeps them: only the tasks whose outcome is not in
        them, or is another since (``trace.changed``), are written, as more batches, and
        the values kept there for a resume of a killed run are dropped. Otherwise the
        outcomes are pickled a chunk of rows at a time (``_outcome_chunks``), kept in a
        temporary file once past ``SPOOL_BYTES``, and copied into the run's row a piece at
        a time. Either way, at the end of a run of a million tasks the parent holds one
        chunk of rows, not a million row tuples, their pickle, its signed copy and
        SQLite's copy of that."""
        blobs = [
            (
                run_id,
                index,
                None if inputs is None else self._blob(inputs, f"inputs of {name!r}"),
                self._blob(result, f"result of {name!r}") if has_result else None,
            )
            for index, name, inputs, result, has_result in kept_values(traces, plan, unknown)
        ]
        message = None if state.message is None else str(state.message)
        try:
            with self._outcomes(run_id, traces, logged) as (header, parts):
                with self._transaction() as connection:
                    connection.execute(
                        "UPDATE runs SET ended = ?, state = ?, message = ?, tasks = ? WHERE run_id = ?",
                        (ended, type(state).__name__, message, header, run_id),
                    )
                    if logged is None:
                        connection.execute("DELETE FROM task_log WHERE run_id = ?", (run_id,))
                    else:  # the names (rows 0, -1, ...) and the values' rows go; the batches stay
                        connection.execute(
                            "DELETE FROM task_log WHERE run_id = ? "
                            "AND (seq <= 0 OR task_values IS NOT NULL)",
                            (run_id,),
                        )
                    connection.executemany(  # one part made or read back at a time
                        "INSERT OR REPLACE INTO task_log VALUES (?, ?, ?, NULL)",
                        ((run_id, seq, signed) for seq, signed in parts),
                    )
                    if blobs:
                        connection.executemany(
                            "INSERT OR REPLACE INTO resume_data VALUES (?, ?, ?, ?)", blobs
                        )
        except (sqlite3.Error, OSError) as error:
            log.warning("journal %s unusable (%s): run %s is not fully recorded", self.path, error, run_id)

    @contextlib.contextmanager
    def _outcomes(
        self, run_id: str, traces: Sequence[TaskTrace], logged: LoggedTasks | None
    ) -> Iterator[tuple[bytes, Iterator[tuple[int, bytes]]]]:
        """The run's signed ``tasks`` header and its task log rows to insert (``(seq,
        signed)``, made as they are read): parts -1, -2, ... of a chunked record, or, after
        a task log's batches, more batches."""
        if logged is not None:
            stale = changed(traces, logged.states)
            after = max(logged.batches)
            numbers = range(0, len(stale), ROWS_PER_PICKLE)
            more = [_outcomes_row(after + 1 + k) for k in range(len(numbers))]
            header = self._signer.sign(pickle.dumps({
                "columns": COLUMNS, "rows": [], "count": len(traces),
                "logged": [*map(_outcomes_row, logged.batches), *more],
            }, protocol=5))  # fmt: skip
            yield header, (
                (row, self._batch(numbered_outcomes(stale[start : start + ROWS_PER_PICKLE], traces)))
                for row, start in zip(more, numbers)
            )
            return
        with tempfile.SpooledTemporaryFile(SPOOL_BYTES, dir=str(self.path.parent)) as spool:
            chunks = _outcome_chunks(traces)
            first = next(chunks)
            sizes = [
                spool.write(pickle.dumps((run_id, part, rows), protocol=5))
                for part, rows in enumerate(chunks, 1)
            ]
            header = self._signer.sign(pickle.dumps(
                {"columns": COLUMNS, "rows": first, "parts": len(sizes)}, protocol=5
            ))  # fmt: skip
            del first
            spool.seek(0)
            yield header, ((-part, self._signer.sign(spool.read(size))) for part, size in enumerate(sizes, 1))

    # -- reading ------------------------------------------------------------------------------

    def runs(self, flow_name: str | None = None, limit: int = 20) -> list[RunRecord]:
        """The most recent runs, newest first (without their tasks)."""
        return [self._run(row) for row in self._newest(_RUN_COLUMNS, flow_name, limit)]

    def resumed_by(self, run_id: str) -> list[RunRecord]:
        """The runs that resumed run ``run_id`` (its full id), newest first (without their tasks)."""
        rows = self._read(
            f"SELECT {_RUN_COLUMNS} FROM runs WHERE resumed_from = ? ORDER BY started DESC",
            (run_id,),
        )
        return [self._run(row) for row in rows]

    def _newest(self, columns: str, flow_name: str | None, limit: int) -> list[Any]:
        """These ``columns`` of the ``limit`` newest runs (of ``flow_name``, if given)."""
        query = f"SELECT {columns} FROM runs"
        args: tuple[Any, ...] = ()
        if flow_name is not None:
            query += " WHERE flow_name = ?"
            args = (flow_name,)
        query += " ORDER BY started DESC LIMIT ?"
        return self._read(query, (*args, limit))

    def _run(self, row: Sequence[Any]) -> RunRecord:
        parameters = self._value(row[3])
        tampered = parameters is TAMPERED
        process = None if row[9] is None else ProcessMark(row[9], row[10], row[11])
        state, message = row[6], row[7]
        if state == Running.__name__ and row[5] is None and process is not None and gone(process):
            state = Crashed.__name__
            message = (
                f"The run's process ({process}) is gone and the run never recorded its end: "
                f"it was killed or crashed. `taskloom resume {row[0][:8]}` completes it."
            )
        return RunRecord(
            run_id=row[0],
            flow_name=row[1],
            source=row[2],
            parameters={} if tampered else parameters or {},
            tampered=tampered,
            started=row[4],
            ended=row[5],
            state=state,
            message=message,
            resumed_from=row[8],
            process=process,
        )

    def load(self, run_id: str) -> RunRecord:
        """A run with its tasks.

        A run whose parameters or task outcomes fail their signature check comes back
        with ``tampered`` set (and without them).

        Raises:
            JournalError: no run has this id (a unique prefix of one is accepted).
        """
        rows = self._read(
            f"SELECT {_RUN_COLUMNS}, tasks FROM runs WHERE run_id = ? OR run_id LIKE ? LIMIT 2",
            (run_id, run_id.replace("%", "") + "%"),
        )
        if len(rows) != 1:
            why = "no run has" if not rows else "more than one run starts with"
            raise JournalError(f"{why} the id {run_id!r} in the journal {self.path}")
        blobs = self._read(
            "SELECT task_index, inputs, result FROM resume_data WHERE run_id = ?", (rows[0][0],)
        )
        logged = []
        signed = rows[0][_TASKS]
        if signed is None:  # it never finished: what it logged as it went
            logged = self._read(
                "SELECT outcomes, task_values FROM task_log WHERE run_id = ? ORDER BY seq",
                (rows[0][0],),
            )
        record = self._run(rows[0])
        if signed is None and logged:
            self._logged(record, logged)
        elif signed is not None:
            outcomes = self._recorded(record.run_id, signed)
            if outcomes is None:
                record.tampered = True
            else:
                for row in _task_records(outcomes):
                    if row.parent is None:
                        record.tasks.append(row)
                    else:
                        record.children.setdefault(row.parent, []).append(row)
        by_index = {t.index: t for t in record.tasks}
        by_index.update((t.index, t) for family in record.children.values() for t in family)
        for index, inputs, result in blobs:
            if index == _CONTEXT_ROW:
                self._read_context(record, inputs)
                continue
            task = by_index.get(index)
            if task is not None:
                task.inputs = self._value(inputs)
                task.result = self._value(result)
                task.has_result = result is not None
        return record

    def locations(self, flow_name: str | None = None, runs: int = 200) -> list[PersistedResult]:
        """Where the results of the last ``runs`` runs (of ``flow_name``, if given) were
        persisted (``TaskTrace.location``), newest first, each location once (its newest
        use). Reads only the task outcomes, never a stored value."""
        found: dict[str, PersistedResult] = {}
        newest = self._newest("run_id, flow_name, started, tasks", flow_name, runs)
        for run_id, flow, started, signed in newest:
            outcomes = None if signed is None else self._recorded(run_id, signed)
            if outcomes is None:
                continue
            for task in _task_records(outcomes):
                if task.location is not None and task.location not in found:
                    when = task.finished if task.finished is not None else started
                    read = (task.message or "").startswith(TARGET_FOUND)
                    found[task.location] = PersistedResult(task.location, flow, task.name, run_id, when, read)
        return list(found.values())

    def _recorded(self, run_id: str, signed: bytes) -> Any:
        """A finished run's outcomes as ``finish`` recorded them (``{"columns", "rows"}``),
        the rows of its parts after the first read back; None when a signature does not
        match, or a part is missing or not this run's.

        Raises:
            JournalError: some content is refused (a class, or not a pickle).
        """
        payload = self._signer.verify(signed)
        if payload is None:
            return None
        recorded = _refusing(run_id, payload)
        if isinstance(recorded, dict) and "logged" in recorded:
            return self._from_batches(run_id, recorded)
        parts = recorded.get("parts") if isinstance(recorded, dict) else None
        if not parts:  # a run of few tasks, or recorded before runs had parts
            return recorded
        stored = self._read(
            "SELECT outcomes FROM task_log WHERE run_id = ? AND seq < 0 ORDER BY seq DESC", (run_id,)
        )
        if len(stored) != parts:
            return None
        chunks: dict[int, list[Any]] = {}
        for (blob,) in stored:
            payload = self._signer.verify(blob)
            part = None if payload is None else _part(run_id, _refusing(run_id, payload))
            if part is None:
                return None
            chunks[part[0]] = part[1]
        return recorded if _joined(recorded["rows"], chunks, parts) else None

    def _from_batches(self, run_id: str, recorded: dict[str, Any]) -> Any:
        """A finished run's outcomes kept in its task log's batches (``finish``, after a
        task log): each task's row from the last batch that holds it, in task order; None
        when a listed batch is missing or fails its signature check, or a task has no row.

        Raises:
            JournalError: some content is refused (a class, or not a pickle).
        """
        listed = recorded["logged"]
        wanted = set(listed)
        stored = [
            (seq, blob) for seq, blob in self._read(
                "SELECT seq, outcomes FROM task_log WHERE run_id = ? AND seq > 0 ORDER BY seq", (run_id,)
            )
            if seq in wanted  # a batch whose write was reported failed is not the run's
        ]  # fmt: skip
        if [seq for seq, _ in stored] != listed:
            return None
        rows: dict[int, tuple[Any, ...]] = {}
        for _, blob in stored:
            payload = self._signer.verify(blob)
            batch = None if payload is None else _refusing(run_id, payload)
            if not isinstance(batch, dict) or batch.get("columns") != ("index", *recorded["columns"]):
                return None
            for row in batch["rows"]:
                rows[row[0]] = row[1:]
        count = recorded["count"]
        if len(rows) != count or not all(type(i) is int and 0 <= i < count for i in rows):
            return None
        return {"columns": recorded["columns"], "rows": [rows[i] for i in range(count)]}

    def _logged(self, run: RunRecord, logged: Sequence[tuple[bytes, bytes | None]]) -> None:
        """Fill a run that never finished from its task log: each recorded task's last
        outcome and values, the others ``Pending`` (``NOT_RECORDED``). A mapped task's
        children are all there once it mapped (``recording``)."""
        names: list[str] = []
        parts = 0
        more_names: dict[int, list[str]] = {}  # by part (``_skeleton``)
        found: dict[int, TaskRecord] = {}
        values: dict[int, Values] = {}
        for outcomes, task_values in logged:
            payload = self._signer.verify(outcomes)
            if payload is None:
                run.tampered = True
                return
            batch = _plain_loads(payload)
            if isinstance(batch, tuple):  # a part of the names
                part = _part(run.run_id, batch)
                if part is None:
                    run.tampered = True
                    return
                more_names[part[0]] = part[1]
                continue
            if "names" in batch:
                names, parts = batch["names"], batch.get("name_parts", 0)
            for row in batch.get("rows", ()):
                found[row[0]] = record(row[0], batch["columns"][1:], row[1:])
            stored = self._value(task_values)
            if stored is TAMPERED:
                run.tampered = True
                return
            values.update(stored or {})
        if not _joined(names, more_names, parts):
            run.tampered = True
            return
        n = len(names)
        run.tasks = [
            found.get(i) or TaskRecord(i, name, Pending.__name__, NOT_RECORDED)
            for i, name in enumerate(names)
        ]
        for index, task in sorted(found.items()):
            if index >= n and task.parent is not None:
                run.children.setdefault(task.parent, []).append(task)
        for index, (inputs, result, has_result) in values.items():
            kept = found.get(index)
            if kept is not None:
                kept.inputs, kept.result, kept.has_result = inputs, result, has_result


def _outcomes_row(batch: int) -> int:
    """The ``task_log`` row (its ``seq``) of a run's batch number ``batch`` (1, 2, ...); the
    row after it holds the batch's values, if any (``Journal._task_log_rows``)."""
    return 2 * batch - 1


_me: list[ProcessMark] = []


def _this_process() -> ProcessMark:
    """``this_process()``, read once per process (it reads ``/proc``; every run asks)."""
    if not _me or _me[0].pid != os.getpid():
        _me[:] = [this_process()]
    return _me[0]


#: The columns ``Journal._run`` reads, in its order.
_RUN_COLUMNS = (
    "run_id, flow_name, source, parameters, started, ended, state, message, resumed_from, "
    "pid, host, process_start"
)
#: Where ``load``'s row has the ``tasks`` column, after ``_RUN_COLUMNS``.
_TASKS = _RUN_COLUMNS.count(",") + 1


@dataclass(frozen=True, slots=True)
class PersistedResult:
    """A location a recorded run persisted a task's result at (``Journal.locations``)."""

    location: str
    flow_name: str
    task_name: str
    run_id: str
    when: float
    #: The run found it there (a target) rather than wrote it.
    read: bool


def default_journal() -> Journal:
    """The journal of the current taskloom home, one per process (its connection is reused)."""
    return per_home(Journal)


def _task_records(outcomes: Any) -> list[TaskRecord]:
    """The tasks of a recorded run, from its outcomes as stored: by column name, or a
    0.1 journal's bare list of tuples."""
    if isinstance(outcomes, list):  # written by taskloom 0.1
        return [TaskRecord(**dict(zip(_V01_COLUMNS, row))) for row in outcomes]
    columns = outcomes["columns"]
    return [record(i, columns, row) for i, row in enumerate(outcomes["rows"])]


def _state_classes(traces: Sequence[TaskTrace]) -> set[type[State[Any]]]:
    """The classes of the traces' states (a comprehension: an ``attrgetter`` of
    ``state.__class__`` took twice as long, see ``trace.outcomes``)."""
    return {type(trace.state) for trace in traces}


#: What a resume needs of a task: index, name, inputs (or None), result, whether to keep it.
Keep = tuple[int, str, "dict[str, Any] | None", Any, bool]


def task_records(traces: Sequence[TaskTrace], plan: Plan) -> tuple[list[tuple[Any, ...]], list[Keep]]:
    """What to record of each task: its outcome (``trace.outcome``), and only what a
    resume will need (``kept_values``)."""
    return outcomes(traces), kept_values(traces, plan)


def kept_values(traces: Sequence[TaskTrace], plan: Plan, unknown: Collection[int] = ()) -> list[Keep]:
    """What a resume will need of a run's tasks.

    A resume runs again the tasks whose state ``runs_again`` (with their stored inputs
    where the state ``keeps_inputs``) and everything downstream of them; so it needs those
    inputs, and the results of finished tasks outside that set that feed into it, but for
    those ``unknown`` to the run (a resume then runs them again: see ``taskloom.resume``).
    """
    if not any(kind.runs_again for kind in _state_classes(traces)):
        return []  # a resume runs nothing again: it needs nothing
    kinds = [type(trace.state) for trace in traces]
    nodes = plan.nodes
    n = len(nodes)
    # A mapped task runs again when one of its children does (only those children run).
    starts = [i for i in range(n) if kinds[i].runs_again]
    starts.extend(
        trace.parent for c, trace in enumerate(traces[n:], n)
        if kinds[c].runs_again and trace.parent is not None
    )
    again = plan.downstream_closure(starts)
    keep: list[Keep] = []
    for c, trace in enumerate(traces[n:], n):
        # A child of a mapped task that runs again: its inputs if it runs again itself
        # (for `taskloom show`), else its result, which the resumed mapped task keeps.
        if trace.parent is None or not again[trace.parent]:
            continue
        if kinds[c].keeps_inputs:
            keep.append((c, trace.name, dict(trace.inputs or trace.state.cached_inputs or {}), None, False))
        elif not kinds[c].runs_again:
            keep.append((c, trace.name, None, _kept(trace, trace.parent), True))
    for i, trace in enumerate(traces[:n]):
        if again[i]:
            if kinds[i].keeps_inputs:
                stored = dict(trace.inputs or trace.state.cached_inputs or {})
                for key, j in nodes[i].direct:  # an input another task persisted
                    persisted = _persisted(j, traces, n)
                    if key in stored and persisted is not None:
                        stored[key] = persisted
                keep.append((i, trace.name, stored, None, False))
            continue
        # A task that runs again from its own stored inputs does not need this result;
        # one that never ran (blocked, or downstream) will read it.
        if i not in unknown and any(again[d] and not kinds[d].keeps_inputs for d in nodes[i].downstream):
            keep.append((i, trace.name, None, _kept_result(i, traces, n), True))
    return keep


def _kept(trace: TaskTrace, task: int) -> Any:
    """What the journal keeps of task number ``task``'s result (or a child's, by its
    mapped task's number): where it was persisted, or the value."""
    return Stored(trace.location, task) if trace.location is not None else trace.state.result


def _kept_result(i: int, traces: Sequence[TaskTrace], n: int) -> Any:
    """What the journal keeps of task ``i``'s result: ``_persisted``, or the value."""
    persisted = _persisted(i, traces, n)
    return traces[i].state.result if persisted is None else persisted


def _persisted(i: int, traces: Sequence[TaskTrace], n: int) -> Stored | list[Any] | None:
    """Where task ``i``'s result was persisted; for a mapped task whose children persisted,
    the list of theirs (each child's location, or its value) in map-index order; None
    when it was not."""
    trace = traces[i]
    if trace.location is not None:
        return Stored(trace.location, i)
    if isinstance(trace.state, Mapped):
        children = sorted(
            (t for t in traces[n:] if t.parent == i), key=lambda t: t.map_index or 0
        )
        if any(child.location is not None for child in children):
            return [_kept(child, i) for child in children]
    return None
