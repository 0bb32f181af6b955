"""What crosses between the parent and the workers of ``LokyExecutor`` and ``DaskExecutor``,
and the steps both take in a worker.

Shared design (each executor's module docstring says what it does differently)::

    parent: Templates.encode(batch) --bytes--> worker: load_runs, run_all (run_chain per run)
    parent: _batching.decode_rows   <--bytes-- worker: encode_rows (one pickle, checked)

- **The wire format.** Objects cost cloudpickle ~10 µs each; tuples of builtins go through
  its C fast path in ~0.1 µs. So a batch is tuples (``WireRun``): tasks by template id,
  each template pickled once per flow run in the parent (``Templates``) and sent with
  every batch that runs it; states as (class code, slot values) (``pack_state``).
- **Chains.** A run carries its follow-ons (``TaskRun.then``), so a chain of tasks costs one
  round trip, not one per task (``run_chain`` runs them where their head ran).
- **Opaque results.** The worker pickles each state itself and hands back bytes, so a result
  or exception that cannot be pickled (or unpickled) fails only its own task, never the
  batch or the workers (``encode_rows``); an exception that cannot travel comes back as a
  ``RemoteTaskError`` with its type, text and traceback. A batch the worker cannot unpickle
  fails each of its runs (``failed_to_load``).
- **Tracebacks** do not pickle: the worker's traceback stays on the exception as a note.
- **Logs** from tasks travel back with the results, flattened so they pickle
  (``flatten_record``), and are handed to the parent's ``logging`` loggers with
  ``task_name`` and ``flow_run_id`` set on each record.
- **The run context** is pickled once per flow run (``check_context`` names a value that
  cannot be); SIGTERM in the parent becomes ``SystemExit`` so the run's cleanup happens.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from types import FrameType
from typing import Any

import cloudpickle

from ..attempt import FollowOn, TaskResult, TaskRun, run_chain
from ..errors import FlowDefinitionError, RemoteTaskError
from ..states import Failed, State, all_classes
from ..task import Task, _same_options


# --- states ---------------------------------------------------------------------------------

# Only the classes taskloom defines get a code: they register in the same order in every
# process. A user's subclass registers when its module is imported, which may differ
# between the parent and a worker, so it travels pickled whole.
_STATE_CLASSES = tuple(cls for cls in all_classes() if cls.__module__ == State.__module__)
_STATE_CODES = {cls: code for code, cls in enumerate(_STATE_CLASSES)}

#: A run on the wire: key, template id, inputs, run count, resume, follow-ons.
WireRun = tuple[
    int, int, dict[str, Any], int, bool, tuple[tuple[int, int, dict[str, Any], str | None], ...]
]
#: A state on the wire: class code (or -1: pickled whole), slot values (or the state).
WireState = tuple[int, Any]


def pack_state(state: State[Any]) -> WireState:
    code = _STATE_CODES.get(type(state))
    return (code, state.__getstate__()) if code is not None else (-1, state)


def unpack_state(wire: WireState) -> State[Any]:
    code, values = wire
    if code < 0:
        assert isinstance(values, State)
        return values
    cls = _STATE_CLASSES[code]
    state = cls.__new__(cls)
    state.__setstate__(values)
    return state


# --- the parent: runs out ---------------------------------------------------------------------


class Templates:
    """The task templates of one flow run, each pickled once and known by a small id.

    A task made from a template with the same options (``Task._template``) travels as that
    template; the worker's ``load_runs`` gives every run its template back."""

    __slots__ = ("_blobs", "_ids", "_of_task")

    def __init__(self) -> None:
        self._ids: dict[Task[Any, Any], int] = {}
        self._of_task: dict[Task[Any, Any], int] = {}
        self._blobs: dict[int, bytes] = {}

    def id(self, task: Task[Any, Any]) -> int:
        """The id of the task's template in this run, pickling the template on first sight."""
        known = self._of_task.get(task)
        if known is not None:
            return known
        template = task.__dict__.get("_template")
        if template is None or not _same_options(task, template):
            template = task
        tid = self._ids.get(template)
        if tid is None:
            tid = len(self._ids)
            self._blobs[tid] = cloudpickle.dumps(template)
            self._ids[template] = tid
        self._of_task[task] = tid
        return tid

    def encode(
        self,
        batch: Sequence[TaskRun],
        inputs_of: Callable[[TaskRun], dict[str, Any]] | None = None,
    ) -> bytes:
        """The batch as one pickle: the templates it needs, and its runs as ``WireRun``s
        (with ``inputs_of(run)`` as inputs, if given). Raises if any of it cannot pickle."""
        blobs: dict[int, bytes] = {}
        wire: list[WireRun] = []
        for run in batch:
            tid = self.id(run.task)
            blobs[tid] = self._blobs[tid]
            then = []
            for follow in run.then:
                ftid = self.id(follow.task)
                blobs[ftid] = self._blobs[ftid]
                then.append((follow.key, ftid, follow.constants, follow.input_key))
            inputs = run.inputs if inputs_of is None else inputs_of(run)
            wire.append((run.key, tid, inputs, run.run_count, run.resume, tuple(then)))
        return cloudpickle.dumps((blobs, wire))


def check_context(run_context: Mapping[str, Any]) -> bytes:
    """The run context pickled for the workers; FlowDefinitionError naming what cannot be."""
    try:
        return cloudpickle.dumps(dict(run_context))
    except Exception:
        pass
    for key, value in run_context.items():
        try:
            cloudpickle.dumps(value)
        except Exception as error:
            raise FlowDefinitionError(
                f"context value {key!r} ({type(value).__name__}) cannot be pickled to send it "
                f"to worker processes: {error!r}; pass only picklable values in the context"
            ) from None
    raise FlowDefinitionError("the run context cannot be pickled to send it to worker processes")


def pickling_message(run: TaskRun, error: Exception) -> str:
    """Why a run cannot be sent: the first input that cannot be pickled, else the task."""
    for key, value in run.inputs.items():
        try:
            cloudpickle.dumps(value)
        except Exception as input_error:
            return (
                f"Task {run.task.name!r}: input {key!r} ({type(value).__qualname__}) cannot be "
                f"pickled to send it to a worker process: {input_error!r}"
            )
    return f"Task {run.task.name!r} cannot be pickled to send it to a worker process: {error!r}"


def sigterm_to_exit(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into an exception so the run's cleanup (stopping the workers) happens.
    raise SystemExit(128 + signum)


def catch_sigterm() -> Any:
    """In the main thread, let SIGTERM raise ``SystemExit``; the handler it replaced (for
    ``restore_sigterm``), or None."""
    if threading.current_thread() is threading.main_thread():
        return signal.signal(signal.SIGTERM, sigterm_to_exit)
    return None


def restore_sigterm(previous: Any) -> None:
    if previous is not None:
        signal.signal(signal.SIGTERM, previous)


# --- the worker ------------------------------------------------------------------------------


def load_runs(
    payload: bytes, fill: Callable[[dict[str, Any]], dict[str, Any]] | None = None
) -> list[TaskRun]:
    """The runs of a batch encoded by ``Templates.encode`` (inputs through ``fill``)."""
    blobs, wire_runs = cloudpickle.loads(payload)
    templates: dict[int, Task[Any, Any]] = {tid: cloudpickle.loads(b) for tid, b in blobs.items()}
    runs = []
    for key, tid, inputs, run_count, resume, then in wire_runs:
        if fill is not None:
            inputs = fill(inputs)
        follow = tuple(
            FollowOn(k, templates[t], constants, input_key) for k, t, constants, input_key in then
        )
        runs.append(TaskRun(key, templates[tid], inputs, run_count, resume, follow))
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
    """Run each run (and its chain); a task raising ``SystemExit`` or ``KeyboardInterrupt``
    fails, with ``where`` it was in the message. Tracebacks are kept as notes."""
    rows: list[TaskResult] = []
    for run in runs:
        started = time.time()
        try:
            results = run_chain(run, run_context, worker)
        except BaseException as error:  # SystemExit / KeyboardInterrupt raised by the task
            message = f"Task {run.task.name!r} raised {error!r} {where}"
            failed = Failed[Any](message, error)
            results = [TaskResult(run.key, failed, started, time.time(), worker)]
        for result in results:
            note_traceback(result.state)
        rows.extend(results)
    return rows


def note_traceback(state: State[Any]) -> None:
    """Keep the worker's traceback on a task's exception: tracebacks do not pickle, notes do."""
    error = state.result
    if isinstance(state, Failed) and isinstance(error, Exception) and error.__traceback__:
        lines = traceback.format_tb(error.__traceback__)
        error.add_note(f"Traceback in worker process {os.getpid()}:\n{''.join(lines).rstrip()}")
        error.__traceback__ = None


def encode_rows(
    worker: str,
    rows: Sequence[TaskResult],
    names: Mapping[int, str],
    prepare: Callable[[State[Any]], State[Any]] | None = None,
) -> bytes:
    """All results of a batch in one pickle, checked to unpickle; if any state cannot
    travel, that one becomes a failure of its own task and the others go as they are.

    ``prepare`` (loky: a large result into shared memory) applies once, before either
    try, so what it made (a shared-memory file) is always handed to the parent."""
    states = [r.state if prepare is None else prepare(r.state) for r in rows]
    wire = [(r.key, pack_state(state), r.started, r.finished) for r, state in zip(rows, states)]
    try:
        data = cloudpickle.dumps((worker, wire))
        pickle.loads(data)  # an exception can pickle yet fail to unpickle (custom __init__)
        return data
    except Exception:
        pass
    safe = []
    for r, state in zip(rows, states):
        try:
            pickle.loads(cloudpickle.dumps(pack_state(state)))
        except Exception as error:
            state = unpicklable(names[r.key], state, error)
        safe.append((r.key, pack_state(state), r.started, r.finished))
    return cloudpickle.dumps((worker, safe))


def unpicklable(task_name: str, state: State[Any], error: Exception) -> State[Any]:
    """A state to send instead of one whose result cannot be pickled (or unpickled)."""
    result = state.result
    if isinstance(result, BaseException):
        type_name = f"{type(result).__module__}.{type(result).__qualname__}"
        remote = RemoteTaskError(type_name, str(result), "".join(traceback.format_exception(result)))
        message = (
            f"Task {task_name!r}: {state.message} (the {type(result).__qualname__} cannot be "
            f"pickled to send it back from the worker process: {error!r}; the state's "
            "result is a RemoteTaskError with its type, text and traceback)"
        )
        if isinstance(state, Failed):
            return type(state)(message, remote)
        return Failed(message, remote)
    return Failed(
        f"Task {task_name!r} returned a {type(result).__qualname__} that cannot be pickled "
        f"to send it back from the worker process: {error!r}",
        TypeError(str(error)),
    )


def flatten_record(record: logging.LogRecord, values: Mapping[str, Any]) -> None:
    """Make a worker's log record picklable (message formatted, exception as text) and
    mark it with the task and flow run of ``values`` (the task's context)."""
    record.task_name = values.get("task_name")
    record.flow_run_id = values.get("flow_run_id")
    record.msg = record.getMessage()
    record.args = None
    if record.exc_info:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
        record.exc_info = None
