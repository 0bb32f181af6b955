"""What crosses between the parent and the workers of ``LokyExecutor`` and ``DaskExecutor``.

One batch goes out as one pickle, its results come back as another::

    parent: Templates.encode(batch) --bytes--> worker: _worker.load_runs
    parent: _dispatch.decode_rows   <--bytes-- worker: encode_rows (checked to unpickle)
    parent: loggers handle records  <--bytes-- worker: encode_records

- **Tuples, not objects.** Objects cost cloudpickle ~10 µs each; tuples of builtins go
  through its C fast path in ~0.1 µs. So a batch is tuples (``WireRun``): tasks by template
  id, each template pickled once per flow run in the parent (``Templates``) and sent with
  every batch that runs it; states as (class code, slot values) (``pack_state``), the code
  being the class's place in ``states.all_classes()``.
- **Opaque results.** The worker pickles every state itself and checks that it unpickles,
  so a result or exception that cannot travel fails only its own task, never the batch
  or the workers (``encode_rows``); an exception that cannot travel comes back as a
  ``RemoteTaskError`` with its type, text and traceback (``unpicklable``). The members of
  its group that ran from such a result fail too (``ran_from_lost``): checked after the
  batch, not before each member, so a batch whose results travel (nearly all) pays no
  second pickle of any of them.
- **Logs** travel flattened, so they pickle (``flatten_record``); a record whose extra
  attributes still do not pickle travels as its text (``encode_records``).
- **The run context** is pickled once per flow run (``check_context`` names a value that
  cannot be), and the pickle is the worker's cache key for it.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import cloudpickle

from .._tracebacks import format_error
from ..attempt import TaskResult, TaskRun
from ..errors import FlowDefinitionError, RemoteTaskError
from ..logging import FIELDS, stamp
from ..states import Failed, State, Success, all_classes, restored_all, stand_in
from ..task import _SHARED, Task, _same_options

__all__ = [
    "PLAIN_CODES",
    "Templates",
    "UnpicklableParameterError",
    "WireRow",
    "WireFollowOn",
    "WireRun",
    "WireState",
    "check_context",
    "encode_records",
    "encode_rows",
    "flatten_record",
    "pack_state",
    "pickling_message",
    "ran_from_lost",
    "unpack_state",
    "unpicklable",
    "unpicklable_loop",
]

# --- states ---------------------------------------------------------------------------------

# Only the classes taskloom defines get a code: they register in the same order in every
# process. A user's subclass registers when its module is imported, which may differ
# between the parent and a worker, so it travels pickled whole.
_STATE_CLASSES = tuple(cls for cls in all_classes() if cls.__module__ == State.__module__)
_STATE_CODES = {cls: code for code, cls in enumerate(_STATE_CLASSES)}
#: The codes of the classes with only the slots every State has (``Success``, ``Failed``,
#: most): their values travel as those five, in ``State._fields`` order, read inline
#: where a batch's rows are made (``encode_rows``), as ``__getstate__`` gives them,
#: without its frame.
PLAIN_CODES = frozenset(
    code for code, cls in enumerate(_STATE_CLASSES) if cls._fields == State._fields
)
if State._fields != ("_result", "cached_inputs", "message", "run_id", "_context"):
    raise RuntimeError(f"State's slots changed ({State._fields}): update encode_rows")

#: A member of a run's group on the wire (``attempt.FollowOn``): key, template id,
#: constants, sources, map index, nested inputs.
WireFollowOn = tuple[
    int, int, Mapping[str, Any], tuple[tuple[str | None, int], ...], int | None,
    tuple[tuple[str, Any], ...],
]
#: A run on the wire: key, template id, inputs, run count, resume, follow-ons, map index,
#: loop count, loop result (where a retried loop starts: ``TaskRun.loop_count``).
WireRun = tuple[
    int, int, dict[str, Any], int, bool, tuple[WireFollowOn, ...], int | None, int, Any,
    State[Any] | None,
]
#: A state on the wire: class code (or -1: pickled whole), slot values (or the state).
WireState = tuple[int, Any]
#: A result row on the wire: key, state, started, finished, ended by ``ENDRUN``, the loop
#: position a retry starts from, where the result was persisted (``TaskResult.ended``,
#: ``TaskResult.loop``, ``TaskResult.location``).
WireRow = tuple[int, WireState, float, float, bool, tuple[int, Any] | None, str | None]


def pack_state(state: State[Any]) -> WireState:
    """A state as plain tuples (see the module docstring)."""
    code = _STATE_CODES.get(type(state))
    return (code, state.__getstate__()) if code is not None else (-1, state)


def unpack_state(wire: WireState) -> State[Any]:
    """The state ``pack_state`` packed, rebuilt the way pickle rebuilds one."""
    return restored_all(_STATE_CLASSES, (wire,))[0]


# --- runs out -------------------------------------------------------------------------------


class Templates:
    """The task templates of one flow run, each pickled once and known by a small id.

    A task made from a template with the same options (``Task._template``) travels as that
    template; the worker's ``load_runs`` gives every run its template back."""

    __slots__ = ("_blobs", "_ids", "_of_task")

    def __init__(self) -> None:
        self._ids: dict[Task[Any, Any], int] = {}
        #: By task, or by the ``id`` of the options dict unchanged copies share (a flow of
        #: a thousand calls of one task then looks its template up once a run, not a
        #: thousand times).
        self._of_task: dict[Task[Any, Any] | int, int] = {}
        self._blobs: dict[int, bytes] = {}

    def id(self, task: Task[Any, Any]) -> int:
        """The id of the task's template in this run, pickling the template on first sight."""
        options = task.__dict__
        # Copies that share one dict of options have the same options: one template. (The
        # dict lives as long as they do: its id names no other object during the run.)
        key: Task[Any, Any] | int = id(options) if _SHARED in options else task
        known = self._of_task.get(key)
        if known is not None:
            return known
        template = options.get("_template")
        if template is None or not _same_options(task, template):
            template = task
        tid = self._ids.get(template)
        if tid is None:
            tid = len(self._ids)
            self._blobs[tid] = cloudpickle.dumps(template)
            self._ids[template] = tid
        self._of_task[key] = tid
        return tid

    def encode(
        self,
        batch: Sequence[TaskRun],
        inputs_of: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> bytes:
        """The batch as one pickle: the templates it needs, and its runs as ``WireRun``s
        (their inputs, and their members' constants, through ``inputs_of``, if given).
        Raises if any of it cannot pickle."""
        blobs: dict[int, bytes] = {}
        wire: list[WireRun] = []
        known, every = self._of_task, self._blobs
        for run in batch:
            task = run.task
            options = task.__dict__
            # (``id``'s own first look, without its frame: most tasks were seen before.)
            tid = known.get(id(options) if _SHARED in options else task)
            if tid is None:
                tid = self.id(task)
            blobs[tid] = every[tid]
            then: tuple[WireFollowOn, ...] = ()
            if run.then:
                members = []
                # A chain is mostly copies of one task, which share their dict of options
                # (``id``): the same template as the member before, found without a call.
                last: dict[str, Any] | None = None
                ftid = -1
                for follow in run.then:
                    if follow.task.__dict__ is not last:
                        last = follow.task.__dict__
                        ftid = self.id(follow.task)
                        blobs[ftid] = every[ftid]
                    constants = (
                        follow.constants if inputs_of is None else inputs_of(dict(follow.constants))
                    )
                    members.append((
                        follow.key, ftid, constants, follow.sources, follow.map_index,
                        follow.nested,
                    ))
                then = tuple(members)
            inputs = run.inputs if inputs_of is None else inputs_of(run.inputs)
            wire.append(
                (
                    run.key, tid, inputs, run.run_count, run.resume, then, run.map_index,
                    run.loop_count, run.loop_result, run.previous,
                )
            )
        return cloudpickle.dumps((blobs, wire))


class UnpicklableParameterError(FlowDefinitionError):
    """A parameter's value cannot be pickled to reach worker processes.

    ``parameter`` is its name; ``with_consumers`` adds the tasks that take it as an input."""

    def __init__(self, parameter: str, value: object, error: Exception) -> None:
        self.parameter = parameter
        self.detail = (
            f"parameter {parameter!r} ({type(value).__qualname__}) cannot be pickled to send "
            f"it to worker processes: {error!r}"
        )
        super().__init__(f"{self.detail}; pass a picklable value, or run on LocalExecutor")

    def with_consumers(self, inputs: Sequence[tuple[str, str]]) -> UnpicklableParameterError:
        """This error, its message naming each (task, input) that takes the parameter."""
        if inputs:
            taken = ", ".join(f"task {t!r} (input {k!r})" for t, k in inputs)
            self.args = (f"{self.detail}; it is an input of {taken}: pass a picklable value, "
                         "or run on LocalExecutor",)
        return self


def check_context(run_context: Mapping[str, Any]) -> bytes:
    """The run context pickled for the workers; FlowDefinitionError naming what cannot be
    (``UnpicklableParameterError`` for a parameter's value)."""
    try:
        return cloudpickle.dumps(dict(run_context))
    except Exception:
        pass
    parameters = run_context.get("parameters")
    if isinstance(parameters, Mapping):  # a parameter's value: name the parameter
        for name, value in parameters.items():
            try:
                cloudpickle.dumps(value)
            except Exception as error:
                raise UnpicklableParameterError(str(name), value, error) from None
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


# --- results back ---------------------------------------------------------------------------


#: Results that unpickle wherever they pickled: checking them again costs a whole unpickle
#: of the batch, on every batch of plain results. A batch whose states are all plain
#: successes of these, with no inputs or context, is not checked (``encode_rows``).
_ATOMIC = frozenset({int, float, str, bytes, bool, type(None)})
#: Results never large enough to leave where they were made (``encode_rows``' ``prepare``).
_SMALL = frozenset({int, float, bool, type(None)})


def encode_rows(
    worker: str,
    rows: Sequence[TaskResult],
    names: Mapping[int, str],
    prepare: Callable[[State[Any]], State[Any]] | None = None,
    runs: Sequence[TaskRun] = (),
) -> bytes:
    """All results of a batch (of ``runs``) in one pickle, checked to unpickle; if any
    state cannot travel, that one becomes a failure of its own task, and so does each
    member of its group that ran from its result (``ran_from_lost``: the parent never
    sees that value, and would not have run it); the others go as they are.

    ``prepare`` (a large result left where it was made) applies once, before either try,
    so what it made (a shared-memory file, a value held on a worker) always reaches the
    parent, which releases it."""
    states = [r.state for r in rows]
    if prepare is not None:  # (a result of a type that is never large is not offered)
        states = [s if type(s._result) in _SMALL else prepare(s) for s in states]
    wire: list[WireRow] = []
    sure = True  # every state surely unpickles: plain successes of ``_ATOMIC`` results
    codes, plain = _STATE_CODES, PLAIN_CODES
    for (key, _, started, finished, _, ended, loop, location), state in zip(rows, states):
        code = codes.get(type(state))
        if code in plain:
            result, cached, context = state._result, state.cached_inputs, state._context
            packed: WireState = (code, (result, cached, state.message, state.run_id, context))
            if sure and not (
                type(state) is Success and type(result) in _ATOMIC
                and cached is None and context is None
            ):
                sure = False
        else:
            packed, sure = pack_state(state), False
        wire.append((key, packed, started, finished, ended, loop, location))
    try:
        data = cloudpickle.dumps((worker, wire))
        if not sure:
            pickle.loads(data)  # an exception can pickle yet fail to unpickle (custom __init__)
        return data
    except Exception:
        pass
    safe: list[WireRow] = []
    fed = {follow.key: follow.sources for run in runs for follow in run.then}
    lost: dict[int, str] = {}  # task -> the task whose result, that it ran from, cannot travel
    for r, state in zip(rows, states):  # (a member comes after its sources)
        loop, ended = r.loop, r.ended
        source = next((lost[s] for _, s in fed.get(r.key, ()) if s in lost), None)
        if source is not None:
            state, loop, lost[r.key] = ran_from_lost(names[r.key], source), None, source
            safe.append((r.key, pack_state(state), r.started, r.finished, ended, loop, r.location))
            continue
        try:
            pickle.loads(cloudpickle.dumps(pack_state(state)))
        except Exception as error:
            state, loop = unpicklable(names[r.key], state, error), None
            lost[r.key] = names[r.key]
        if loop is not None:
            try:
                pickle.loads(cloudpickle.dumps(loop))
            except Exception as error:
                # final (``ended``): a retry could not start where the loop was
                state, loop, ended = unpicklable_loop(names[r.key], loop, error), None, True
        safe.append((r.key, pack_state(state), r.started, r.finished, ended, loop, r.location))
    return cloudpickle.dumps((worker, safe))


def unpicklable_loop(task_name: str, loop: tuple[int, Any], error: Exception) -> State[Any]:
    """A state to send instead of a failed pass whose retry would need a ``LOOP`` result
    that cannot be pickled (or unpickled): the task cannot resume its loop elsewhere, so
    the state is final (sent as ended: no retry)."""
    count, result = loop
    message = (
        f"Task {task_name!r} failed on loop pass {count}, and its retry needs the result of "
        f"the LOOP before it, a {type(result).__qualname__} that cannot be pickled to send it "
        f"back from the worker process: {error!r}"
    )
    return Failed(message, TypeError(message))


def ran_from_lost(task_name: str, source: str) -> State[Any]:
    """The state to send for a member of a group that ran, in the worker, from a result of
    ``source`` that cannot be sent back (``encode_rows``): its outcome is dropped."""
    message = (
        f"Task {task_name!r} ran in the worker process from the result of {source!r}, which "
        f"cannot be sent back to the parent process (see {source!r}); its outcome is dropped. "
        f"Make {source!r} return a value that pickles, or run the flow on LocalExecutor"
    )
    return Failed(message, RuntimeError(message))


def unpicklable(task_name: str, state: State[Any], error: Exception) -> State[Any]:
    """A state to send instead of one whose result cannot be pickled (or unpickled)."""
    result = state.result
    if isinstance(result, BaseException):
        remote = stand_in(result, error, RemoteTaskError)
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
    mark it with the fields of ``values`` (the task's context: ``taskloom.logging.FIELDS``),
    keeping those it has (a taskloom logger's filter, or ``extra``, set them already)."""
    stamp(record, values)
    record.msg = record.getMessage()
    record.args = None
    if record.exc_info:
        error = record.exc_info[1]
        record.exc_text = (
            logging.Formatter().formatException(record.exc_info) if error is None
            else format_error(error)  # the real file names, not cloudpickle's <dynamic-code>
        )
        record.exc_info = None


def encode_records(records: Sequence[logging.LogRecord]) -> bytes:
    """A batch's log records in one pickle (empty bytes for none); a record with an extra
    attribute that cannot be pickled travels as its text."""
    if not records:
        return b""
    try:
        return cloudpickle.dumps(list(records))
    except Exception:
        plain = [
            logging.makeLogRecord(
                {
                    "name": r.name, "levelno": r.levelno, "levelname": r.levelname,
                    "msg": r.msg, "created": r.created, "process": r.process,
                    "thread": r.thread, "pathname": r.pathname, "lineno": r.lineno,
                    "exc_text": r.exc_text,
                    **{field: getattr(r, field, None) for field, _ in FIELDS},
                }
            )
            for r in records
        ]
        return cloudpickle.dumps(plain)
