"""The worker side of ``LokyExecutor`` and ``DaskExecutor``: one entry point for a batch
(``ThreadExecutor`` shares ``run_guarded``, one run and its group of follow-ons).

``run_batch`` is what a loky worker process or a Dask worker thread runs for one batch::

    context   the run context, unpickled once per flow run (cached by its pickle)
    logs      capture the records the batch emits (``LogCapture``)
    load      the runs (``load_runs``); a batch that does not unpickle fails each run
    run       each run and its group (``run_all``)
    prepare   per state, the back end's hook: a large result left where it was made
    encode    the states in one pickle (``_wire.encode_rows``), the records in another

What the batch ``print``s (``sys.stdout``, routed per context: ``logging.stdout_lines``)
is kept among its log records, as records of ``logging.STDOUT_LOGGER``, whatever the log
level: the parent writes them to its ``sys.stdout``, in order with the records.

What differs per back end is a parameter: the worker's name, where it runs (for
messages), how inputs are filled in (loky: shared-memory results read; Dask: futures'
values put in their slots), ``prepare``, and the log capture. A loky worker process is
the pool's own: its root logger keeps only the capture handler and takes the parent's
level. A Dask worker runs several batches at once in threads and belongs to whoever
started it: capture is per thread, beside the handlers it has.

Tracebacks do not pickle: the worker's traceback stays on the exception as a note
(``note_traceback``).
"""

from __future__ import annotations

import cProfile
import ctypes
import logging
import os
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from functools import partial, wraps
from typing import Any, ParamSpec, TypeVar

import cloudpickle

from .._tracebacks import NOTE_PREFIX, format_frames
from ..attempt import (
    BatchInterrupted, FollowOn, TaskResult, TaskRun, finished_before, run_chain, stop,
    stopped_link, unstop,
)
from ..context import current as _current_context
from ..logging import STDOUT_LOGGER, stdout_lines
from ..errors import RemoteTaskError
from ..states import Failed, State
from ..task import Task
from ._wire import encode_records, encode_rows, flatten_record

__all__ = [
    "LogCapture", "failed_to_load", "load_runs", "run_all", "run_batch", "run_guarded",
    "stop_thread", "thread_done",
]

P = ParamSpec("P")
T = TypeVar("T")

#: Fills in a run's inputs, and its members' constants, on the worker (``load_runs``).
Fill = Callable[[dict[str, Any]], dict[str, Any]]
#: Turns a finished state into the one sent back (``encode_rows``).
Prepare = Callable[[State[Any]], State[Any]]


def stop_thread(thread: int) -> None:
    """Stop the batch thread ``thread`` runs (Dask's workers, ``ThreadExecutor``): raise
    ``BatchInterrupted`` in it at its next Python bytecode, and let its group start no
    member after the one running (``attempt.stop``: if the body catches the exception).
    Call it under the lock that guards the thread's ``thread_done``."""
    stop(thread)
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), ctypes.py_object(BatchInterrupted))


def thread_done(thread: int) -> None:
    """Thread ``thread`` is done with its batch: an interrupt that came too late to be
    raised is dropped (it must not hit the pool's own code), and ``stop`` is undone.
    Called by the thread itself, under the lock ``stop_thread`` is called under."""
    unstop(thread)
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), None)


# A Dask worker serves several flow runs (and several parents): a few contexts, not one.
_CONTEXTS_KEPT = 8
_contexts: OrderedDict[bytes, Mapping[str, Any]] = OrderedDict()
_contexts_lock = threading.Lock()


def _run_context(header: bytes) -> Mapping[str, Any]:
    with _contexts_lock:
        found = _contexts.get(header)
        if found is not None:
            _contexts.move_to_end(header)
            return found
    values: Mapping[str, Any] = cloudpickle.loads(header)
    with _contexts_lock:
        _contexts[header] = values
        while len(_contexts) > _CONTEXTS_KEPT:
            _contexts.popitem(last=False)
    return values


class LogCapture(logging.Handler):
    """Keeps the log records of the batch running, flattened so they pickle.

    ``sole=True`` (a process that is the pool's own): on first use it replaces the root
    logger's handlers, every thread's records belong to the batch, and the root logger
    takes the parent's level. ``sole=False`` (a process shared with others): on first use
    it joins the root logger's handlers, only the records of the thread running a batch
    are kept, and the root level is only ever lowered to the parent's (other handlers may
    want more)."""

    def __init__(self, sole: bool) -> None:
        super().__init__()
        self.sole = sole
        self._local = threading.local()
        self._records: list[logging.LogRecord] | None = None
        self._level = logging.NOTSET
        self._installed = False
        self._install_lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        """Keep ``record`` if a batch of this thread (of any thread, ``sole``) emitted it."""
        if self.sole:
            records, level = self._records, self._level
        else:
            records = getattr(self._local, "records", None)
            level = getattr(self._local, "level", logging.NOTSET)
        if records is None or record.levelno < level:
            return  # not emitted by a batch (another thread, or the worker itself)
        flatten_record(record, _current_context())
        records.append(record)

    def start(self, level: int) -> list[logging.LogRecord]:
        """Capture what this thread's batch logs at ``level`` or above, into the list returned."""
        root = logging.getLogger()
        if not self._installed:
            with self._install_lock:
                if not self._installed:
                    if self.sole:
                        root.handlers[:] = [self]
                    else:
                        root.addHandler(self)
                    self._installed = True
        if self.sole:
            if root.level != level:  # (setLevel clears every logger's cache: one a task name)
                root.setLevel(level)
        elif root.getEffectiveLevel() > level:
            root.setLevel(level)
        records: list[logging.LogRecord] = []
        if self.sole:
            self._records, self._level = records, level
        else:
            self._local.records, self._local.level = records, level
        return records

    def stop(self) -> None:
        """Stop capturing for this thread's batch."""
        if self.sole:
            self._records = None
        else:
            self._local.records = None


def run_batch(
    header: bytes,
    payload: bytes,
    keys: Sequence[tuple[int, str]],
    log_level: int,
    *,
    worker: str,
    where: str,
    capture: LogCapture | None,
    fill: Fill | None = None,
    prepare: Prepare | None = None,
) -> tuple[bytes, bytes]:
    """Run a batch (see the module docstring): its states in one pickle, and its log records
    (at ``log_level`` or above) in another. ``where`` ends messages ("in a worker process")."""
    records = capture.start(log_level) if capture is not None else []
    try:
        names = dict(keys)
        runs: list[TaskRun] = []
        with stdout_lines(partial(_stdout_record, records)) if capture is not None else nullcontext():
            try:
                run_context = _run_context(header)
                runs = load_runs(payload, fill)
            except Exception as error:
                rows = failed_to_load(keys, error, worker, where)
            else:
                rows = run_all(runs, run_context, worker, where)
        return encode_rows(worker, rows, names, prepare, runs), encode_records(records)
    finally:
        if capture is not None:
            capture.stop()


def _stdout_record(records: list[logging.LogRecord], line: str) -> None:
    """Keep a line the batch printed, among its log records, in order (``STDOUT_LOGGER``:
    the parent writes it to its own ``sys.stdout``)."""
    record = logging.makeLogRecord({"name": STDOUT_LOGGER, "msg": line, "levelno": logging.INFO})
    flatten_record(record, _current_context())
    records.append(record)


def load_runs(payload: bytes, fill: Fill | None = None) -> list[TaskRun]:
    """The runs of a batch encoded by ``Templates.encode`` (inputs, and the constants of
    their members, through ``fill``)."""
    blobs, wire_runs = cloudpickle.loads(payload)
    templates: dict[int, Task[Any, Any]] = {tid: cloudpickle.loads(b) for tid, b in blobs.items()}
    runs = []
    for key, tid, inputs, run_count, resume, then, map_index, loops, looped, previous in wire_runs:
        if fill is not None:
            inputs = fill(inputs)
        follow = tuple(
            FollowOn(
                # (Most members have no constants: their sources feed them.)
                k, templates[t], fill(constants) if fill is not None and constants else constants,
                sources, index, nested,
            )
            for k, t, constants, sources, index, nested in then
        ) if then else ()
        runs.append(
            TaskRun(
                key, templates[tid], inputs, run_count, resume, follow, map_index, loops, looped,
                previous,
            )
        )
    return runs


def failed_to_load(
    keys: Sequence[tuple[int, str]], error: Exception, worker: str, where: str
) -> list[TaskResult]:
    """A batch that could not be unpickled ``where`` (call in the ``except``): each of its
    runs (``keys``: key, task name) fails with the error."""
    rows = []
    now = time.time()
    for key, name in keys:
        state = Failed(
            f"Task {name!r} could not be unpickled {where}: {error!r}",
            RemoteTaskError(type(error).__qualname__, str(error), traceback.format_exc()),
        )
        rows.append(TaskResult(key, state, now, now, worker))
    return rows


def run_all(
    runs: Sequence[TaskRun], run_context: Mapping[str, Any], worker: str, where: str
) -> list[TaskResult]:
    """Run each run (and its group); a task raising ``SystemExit`` or ``KeyboardInterrupt``
    fails, with ``where`` it was in the message (the tasks of its group before it keep
    their results). Tracebacks are kept as notes.

    ``BatchInterrupted`` (the parent's run was interrupted: see ``LokyExecutor``) stops
    the batch: the results of what finished go back, the run it stopped and those after
    it do not (the parent records them as interrupted)."""
    rows: list[TaskResult] = []
    for run in runs:
        try:
            results = run_guarded(run, run_context, worker, where)
        except BatchInterrupted as error:
            rows.extend(finished_before(error))
            break
        for result in results:
            if isinstance(result.state, Failed):  # (``note_traceback``'s own first check)
                note_traceback(result.state)
        rows.extend(results)
    return rows


def run_guarded(
    run: TaskRun, run_context: Mapping[str, Any], worker: str, where: str
) -> list[TaskResult]:
    """``run_chain`` (a run and its group), except that a task raising ``SystemExit`` or
    ``KeyboardInterrupt`` fails (with ``where`` it was in the message) instead of taking
    its worker down."""
    started = time.time()
    try:
        return run_chain(run, run_context, worker)
    except BatchInterrupted:
        raise
    except BaseException as error:  # SystemExit / KeyboardInterrupt raised by the task
        # Raised in a member: the tasks before it finished and keep their results.
        link = stopped_link(error)
        results = finished_before(error)
        name = run.task.name
        if link is not None:
            name = next(f.task.name for f in run.then if f.key == link)
            started = results[-1].finished
        message = f"Task {name!r} raised {error!r} {where}"
        failed = Failed[Any](message, error)
        key = run.key if link is None else link
        return [*results, TaskResult(key, failed, started, time.time(), worker)]


def note_traceback(state: State[Any]) -> None:
    """Keep the worker's traceback on a task's exception: tracebacks do not pickle, notes do."""
    error = state.result
    if isinstance(state, Failed) and isinstance(error, Exception) and error.__traceback__:
        # the user's frames, with the real file names cloudpickle dropped (``_tracebacks``)
        error.add_note(f"{NOTE_PREFIX}{os.getpid()}:\n{format_frames(error.__traceback__)}")
        error.__traceback__ = None


#: The environment variable naming where workers write ``worker-<pid>.prof``.
PROFILE_DIR_VARIABLE = "TASKLOOM_PROFILE_DIR"


def _profiled(fn: Callable[P, T], directory: str) -> Callable[P, T]:
    """``fn`` run under one profile per process, written to ``directory`` after each call
    (a pool's workers are never told the run is over)."""
    profile = cProfile.Profile()

    @wraps(fn)
    def profiled(*args: P.args, **kwargs: P.kwargs) -> T:
        profile.enable()
        try:
            return fn(*args, **kwargs)
        finally:
            profile.disable()
            profile.dump_stats(os.path.join(directory, f"worker-{os.getpid()}.prof"))

    return profiled


# Read once, when a worker imports this module (``benchmarks/profiling.py`` sets it for the
# workers it starts): without it, a batch pays nothing for profiling.
if os.environ.get(PROFILE_DIR_VARIABLE):
    run_batch = _profiled(run_batch, os.environ[PROFILE_DIR_VARIABLE])
