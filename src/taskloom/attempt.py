"""One attempt of one task: run its body and turn what happened into a State.

This is the only code that runs where the task runs (in the calling process, a loky
worker, or a Dask worker). It enters the task's context, calls ``task.run`` with its
inputs, and maps the outcome:

- a returned value          -> ``Success("Task run succeeded.", result=value)``
- a signal, at any depth    -> the signal's state (``SKIP`` -> ``Skipped``, ...)
- an exception              -> ``Failed("Error during execution of task: ValueError('boom')")``
- running past ``timeout``  -> ``TimedOut("Task timed out during execution.")``
- ``LOOP(result=x)``        -> another *pass*, at once, here: ``task.run`` again with
                               ``context.task_loop_count`` one more and
                               ``context.task_loop_result = x``; the attempt ends in the
                               state of the last pass. More passes than ``max_loops`` ->
                               ``Failed`` naming the task and the limit.
- ``ENDRUN(state)``         -> exactly ``state``, marked ``ended`` (``TaskResult.ended``):
                               the scheduler neither retries it nor caches it. Not a
                               ``State`` -> ``Failed`` naming the task and the type (ended too).

Loops, passes and retries. A pass is one call of ``task.run``; an attempt is one or more
passes, all in one place (a loky worker runs them all, with no round trip to the parent),
and ``timeout`` applies to each pass, as in Prefect (the timeout wraps one call of
``task.run``). The loop's position lives in the attempt's locals: ``TaskRun.loop_count``
and ``TaskRun.loop_result`` are where it starts (pass 1 and no result, unless it is a
retry). When a pass after the first fails and the scheduler will retry it (``run_count <=
max_retries``), the position travels back with the state (``TaskResult.loop``: the failing
pass's count and the result of the ``LOOP`` before it); the scheduler keeps it on the
``Retrying`` state and hands it to the next attempt, which starts at that pass. A ``LOOP``
result therefore travels between processes only in that case (and if a pass returns it):
one that cannot be pickled then fails the task, named, and never otherwise.

State handlers (``taskloom.handlers``). The changes of an attempt are handled here, where
the task runs, so they are the same on every executor and a handler's I/O never holds up
the scheduler: the task's ``state_handlers`` travel with it (a task is pickled anyway).
They are called, inside the task's context, on ``TaskRun.previous`` (``Pending``,
``Retrying``, ``Paused``, ``Resume``) -> ``Running``, then ``Running`` -> the pass's state,
and between the passes of a loop ``Running`` -> ``Looped``, then, as in Prefect 1.x,
``Pending("Looping task (on loop index N)")`` -> ``Running`` (N the pass that looped).
A handler that replaces ``Running`` with another state ends the attempt in it before the
body runs (as Prefect's ``SKIP`` on ``Running``). A handler that raises, or returns
something that is not a State or None, ends the attempt ``Failed`` naming it, marked
``ended`` as ``ENDRUN`` (no retry, no cache). ``on_failure`` is called here when the
attempt's state is failed and final: ended, or no retry left (``run_count >
max_retries``, the scheduler's rule); a failure the scheduler decides calls it there.
A task with neither pays nothing: no handler code runs.

Secrets. A pass's state whose message quotes a secret's value (an exception's message, a
signal's) is replaced by one with the value masked (``taskloom._secrets``), before any
handler sees it.

Logging. The attempt's context holds the task's logger (``context.logger``,
``taskloom.logging.task_logger``), which logs "Starting task run..." at INFO as the
attempt starts (the scheduler logs the line that ends it); with ``log_stdout=True`` on the
task, what its passes ``print`` goes to that logger at INFO, a record per line.

Results and targets (``taskloom.checkpoint``). For a task that persists, the attempt first
fills in its location; with a ``target`` that exists and reads, it ends ``Cached`` there
and the body does not run (handlers see the previous state -> ``Cached``); otherwise a pass
that ends a plain ``Success`` writes its result before the handlers see it, so a write
that fails is the pass's ``Failed``. ``TaskResult.location`` says where. All of it happens
here, where the task runs: the calling process never handles the bytes.

Most attempts are of a function task with none of the options above (no handlers, run
name, tags, timeout, ``log_stdout`` or result to persist), at their first pass: those take
a short path (``_plain_attempt``) that checks nothing that cannot apply, and hands a
``LOOP`` on to the general one (``_passes``) from the second pass.

Retries, caching and triggers are the scheduler's business, in the parent process, with
one exception: the members of a run's group of follow-ons (``TaskRun.then``, a chain being
the simplest group) are decided here, one rule for every member: it runs when each of its
upstream tasks in the group ran and ended in a state that ``follows`` (``member_inputs``),
which gives what the scheduler would decide for a task the plan marks followable (see
``taskloom.runner``).
"""

from __future__ import annotations

import contextvars
import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from types import FrameType
from typing import Any, ClassVar, NamedTuple, Protocol, cast

from ._secrets import mask
from .checkpoint import RESULTS_KEY, Persist, completes, persist_of
from .context import current, enter, leave
from .errors import ResultError
from .handlers import (
    OnFailure, StateHandler, call_on_failure, call_state_handlers, has_handlers,
)
from ._run_name import RunNameError, run_name
from .locations import TARGET_FOUND, TemplateError, fill
from .logging import stdout_lines, task_logger
from .signals import ENDRUN, TaskloomSignal
from .states import Cached, Failed, Looped, Pending, Running, Skipped, State, Success, TimedOut
from .task import FunctionTask, Task

__all__ = [
    "Attempted",
    "FollowOn",
    "InGroup",
    "OVERRUN_THREAD",
    "TaskResult",
    "TaskRun",
    "finished_before",
    "follows",
    "member_inputs",
    "run_attempt",
    "run_chain",
    "task_context",
]

log = logging.getLogger("taskloom.task")

SUCCESS_MESSAGE = "Task run succeeded."
TIMEOUT_MESSAGE = "Task timed out during execution."
#: The name a soft timeout gives the thread of a body that outlived it and runs on (a
#: Dask worker restarts itself if such a thread is still alive after a grace period).
OVERRUN_THREAD = "taskloom-timed-out"
RUNNING_MESSAGE = "Starting task run."
#: The state handlers' old state for a run the scheduler gave none (``TaskRun.previous``).
_NOT_RUN: State[Any] = Pending("Task not run.")


@dataclass(slots=True)
class FollowOn:
    """A member of a run's group: a task that may run where the run ran, right after it.

    The scheduler offers one only when the outcome is certain to be the same as deciding
    in the parent (see ``taskloom.runner``, "Follow-ons"): the default trigger, skip
    propagation on, no cache, seeded state or retry history, and every upstream task either
    finished in a state that ``follows`` (its result is then among ``constants``) or an
    earlier member of the group, or its head (``sources``). It runs only if every one of
    ``sources`` ran and ended in a state that ``follows``. A chain is the group whose
    members each take the one before as their only source.

    Attributes:
        key: the task's number in this flow run.
        task: the task.
        constants: the inputs known in the parent.
        sources: (input name, or None for an upstream task that only orders it; key of
            the head or an earlier member) for each upstream task in the group.
        map_index: for a child of a mapped task, its index.
        nested: inputs that hold results of the group (a list of tasks, ``total([a, b])``):
            each value with ``InGroup`` markers where those results go (``member_inputs``).
    """

    key: int
    task: Task[Any, Any]
    constants: Mapping[str, Any]
    sources: tuple[tuple[str | None, int], ...] = ()
    map_index: int | None = None
    nested: tuple[tuple[str, Any], ...] = ()

    #: A member's attempt is its task's first, not a resume (``runner``'s ``_may_follow``):
    #: so a member is its own ``Attempted`` (``run_chain`` makes no ``TaskRun`` for it).
    run_count: ClassVar[int] = 1
    resume: ClassVar[bool] = False


class Attempted(Protocol):
    """What an attempt's context and its failures read of the run: a ``TaskRun``, or a
    ``FollowOn`` run by its group (a first attempt)."""

    @property
    def key(self) -> int: ...
    @property
    def task(self) -> Task[Any, Any]: ...
    @property
    def map_index(self) -> int | None: ...
    @property
    def run_count(self) -> int: ...
    @property
    def resume(self) -> bool: ...


class InGroup:
    """In a member's nested input (``FollowOn.nested``): where the result of the group's
    member (or head) ``key`` goes."""

    __slots__ = ("key",)

    def __init__(self, key: int) -> None:
        self.key = key

    def __reduce__(self) -> tuple[type[InGroup], tuple[int]]:
        return (InGroup, (self.key,))

    def __repr__(self) -> str:
        return f"InGroup({self.key})"


def _filled(value: Any, states: Mapping[int, State[Any]]) -> Any:
    """``value`` with each ``InGroup`` marker in it (and its containers) replaced by that
    member's result (the containers ``plan.rebuild`` rebuilds)."""
    if isinstance(value, InGroup):
        return states[value.key].result
    if isinstance(value, (list, tuple, set, frozenset)):
        return type(value)(_filled(v, states) for v in value)
    if isinstance(value, dict):
        return {k: _filled(v, states) for k, v in value.items()}
    return value


def member_inputs(follow: FollowOn, states: Mapping[int, State[Any]]) -> dict[str, Any] | None:
    """The inputs of ``follow`` given the states its group's head and members ended in
    (by key), or None when it must not run here: a source did not run, or ended in a
    state that does not ``follows`` (the scheduler decides it then)."""
    inputs = dict(follow.constants)
    for key, source in follow.sources:
        state = states.get(source)
        # (``follows``, without its frame for a plain success: most members' sources.)
        if state is None or (type(state) not in _FOLLOWING and not follows(state)):
            return None
        if key is not None:
            inputs[key] = state.result
    for key, value in follow.nested:
        inputs[key] = _filled(value, states)
    return inputs


#: The state classes after which a member certainly follows (``follows``), by exact type.
_FOLLOWING: frozenset[type[State[Any]]] = frozenset({Success, Cached})


@dataclass(slots=True)
class TaskRun:
    """One attempt of one task, as handed to an executor.

    Attributes:
        key: the task's number in this flow run; results come back under it.
        task: the task to run.
        inputs: its arguments, by name.
        run_count: 1 for the first attempt, 2 for the first retry, ...
        resume: whether the task is being resumed (``context.resume``).
        then: the members of the run's group: tasks the executor may run next in the same
            place, in this order, without a round trip through the scheduler (see
            ``run_chain``); an executor may ignore it.
        map_index: for a child of a mapped task, its index (``context.map_index``).
        loop_count: the pass of a looping task the attempt starts at (1, unless a retry
            resumes a loop: see the module docstring).
        loop_result: ``context.task_loop_result`` on that pass (unset when ``loop_count``
            is 1).
        previous: the task's state before this attempt, for its state handlers (the
            scheduler sets it only for a task that has some: ``Pending``, ``Retrying``,
            ``Paused``, ``Resume``); None reads as ``Pending("Task not run.")``.
    """

    key: int
    task: Task[Any, Any]
    inputs: dict[str, Any]
    run_count: int = 1
    resume: bool = False
    then: tuple[FollowOn, ...] = ()
    map_index: int | None = None
    loop_count: int = 1
    loop_result: Any = None
    previous: State[Any] | None = None


class TaskResult(NamedTuple):
    """What an executor hands back for one attempt.

    Attributes:
        key: the run's key (``TaskRun.key``).
        state: the state the attempt ended in.
        started: when the attempt started (seconds since the epoch).
        finished: when it finished.
        worker: where it ran, e.g. ``"local"`` or ``"loky:12345"`` (a process id).
        ended: the task raised ``ENDRUN``: its state is final (no retry, no cache).
        loop: for a looping task that failed on a pass after the first and will be
            retried, ``(that pass, the result of the LOOP before it)``; else None.
        location: where the attempt's result was written, or read from (a target found:
            ``taskloom.checkpoint``); None for a task that does not persist.
    """

    key: int
    state: State[Any]
    started: float
    finished: float
    worker: str
    ended: bool = False
    loop: tuple[int, Any] | None = None
    location: str | None = None


#: A ``TaskResult`` from all eight of its fields in one tuple, made in C: the namedtuple's
#: own ``__new__`` is a Python function, a third of a µs on every task's path (twice where
#: a task runs, once more where its result is decoded).
result_row: Callable[
    [tuple[int, State[Any], float, float, str, bool, tuple[int, Any] | None, str | None]],
    TaskResult,
] = cast(Any, partial(tuple.__new__, TaskResult))


class _Timeout(BaseException):
    """Raised into a task's frame by the timeout alarm; never escapes ``run_attempt``."""


def task_context(run: Attempted, run_context: Mapping[str, Any]) -> dict[str, Any]:
    """What ``taskloom.context`` holds while ``run`` executes."""
    task = run.task
    name, index = task.name, run.map_index
    # Every task run builds one: a copy of the run's dict (a memory copy), then its own
    # keys one by one, costs half of a ``{**run_context, ...}`` display.
    values = dict(run_context)
    values["task_name"] = name
    values["map_index"] = index
    values["task_full_name"] = name if index is None else f"{name}[{index}]"
    values["task_tags"] = task.tags
    values["task_slug"] = task.slug
    values["task_run_count"] = run.run_count
    values["task_run_id"] = f"{run_context.get('flow_run_id', '')}.{run.key}.{run.run_count}"
    values["logger"] = task_logger(name)
    if run.resume:
        values["resume"] = True
    return values


def _first_pass_context(run: Attempted, run_context: Mapping[str, Any]) -> dict[str, Any]:
    """The context of ``run``'s first pass."""
    values = task_context(run, run_context)
    values["task_loop_count"] = 1
    return values


def _call_with_alarm(body: Callable[[], Any], seconds: float) -> Any:
    """Hard timeout in the main thread: SIGALRM interrupts sleeps and Python loops."""

    def on_alarm(signum: int, frame: FrameType | None) -> None:
        raise _Timeout()

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return body()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _call_in_thread(body: Callable[[], Any], seconds: float) -> Any:
    """Soft timeout off the main thread: the body keeps running in the background."""
    outcome: list[Any] = []
    failure: list[BaseException] = []

    def target() -> None:
        try:
            outcome.append(body())
        except BaseException as error:  # handed to the caller below
            failure.append(error)

    # The thread must see the task's context: contextvars do not follow a new thread.
    worker = threading.Thread(
        target=contextvars.copy_context().run, args=(target,), daemon=True, name="taskloom-timeout"
    )
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        worker.name = OVERRUN_THREAD
        raise _Timeout()
    if failure:
        raise failure[0]
    return outcome[0]


def _body(task: Task[Any, Any], inputs: Mapping[str, Any]) -> Callable[[], Any]:
    return lambda: task.run(**inputs)


_FUNCTION_RUN = FunctionTask.run


def _one_pass(task: Task[Any, Any], run: TaskRun) -> State[Any]:
    """One call of ``task.run`` (a pass), under the timeout, as a state; ``ENDRUN``
    passes through to the caller."""
    try:
        if task.timeout is None:
            own = task.__dict__
            if type(task).run is _FUNCTION_RUN and "run" not in own:
                # ``FunctionTask.run`` only calls the function: a frame less a run.
                result = own["fn"](**run.inputs)
            else:
                result = task.run(**run.inputs)
        elif hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread():
            result = _call_with_alarm(_body(task, run.inputs), task.timeout)
        else:
            result = _call_in_thread(_body(task, run.inputs), task.timeout)
    except ENDRUN:
        raise
    except TaskloomSignal as raised:
        return raised.to_state()
    except _Timeout:
        return TimedOut(TIMEOUT_MESSAGE, TimeoutError(f"timed out after {task.timeout} s"))
    except Exception as error:
        return _failed(task, run, error)
    return Success(SUCCESS_MESSAGE, result)


def _looping(state: State[Any], count: int) -> State[Any]:
    """``state``, but a ``Looped`` one without a message (``raise LOOP(result=...)``) reads
    ``Task is looping (N)``, N the pass that looped, as in Prefect 1.x."""
    if type(state) is Looped and state.message is None:
        return state.replace(message=f"Task is looping ({count})")
    return state


def _failed(task: Task[Any, Any], run: Attempted, error: Exception) -> State[Any]:
    """The state of a pass that raised ``error`` (called while it is handled: the log
    record carries its traceback)."""
    log.info("Task %r failed on attempt %d: %r", task.name, run.run_count, error, exc_info=True)
    return Failed(f"Error during execution of task: {error!r}", error)


def _ended(task: Task[Any, Any], run: Attempted, ended: ENDRUN) -> TaskResult:
    """The result of an attempt a pass of which raised ``ended``: exactly its state,
    or ``Failed`` naming what it was given instead of a State."""
    if isinstance(ended.state, State):
        return TaskResult(run.key, ended.state, 0.0, 0.0, "", ended=True)
    message = (
        f"Task {task.name!r} raised ENDRUN with a {type(ended.state).__qualname__}, "
        "which is not a State: pass the state the task ends in, e.g. ENDRUN(Failed(...))"
    )
    return TaskResult(run.key, Failed(message, TypeError(message)), 0.0, 0.0, "", ended=True)


def _masked(state: State[Any]) -> State[Any]:
    """``state`` with a message that quotes no secret (an exception's or a signal's message
    may): handlers, the scheduler, logs and the journal see it masked. The engine's own
    success message quotes nothing: ``_passes`` does not call this for it (most runs end
    in it)."""
    message = state.message
    if message:
        hidden = mask(message)
        if hidden != message:
            return state.replace(message=hidden)
    return state


def _label(task_name: str, values: Mapping[str, Any]) -> str:
    """How log lines name a task run: ``Task 'fetch'``, with its run name if it has one."""
    name = values.get("task_run_name")
    return f"Task {task_name!r}" if name is None else f"Task {task_name!r} ({name})"


def _too_many_loops(task: Task[Any, Any]) -> Failed[Any]:
    """The state of a task that asked for more passes than its ``max_loops``."""
    message = (
        f"Task {task.name!r} looped more than max_loops={task.max_loops} times "
        "(a LOOP on its last allowed pass)"
    )
    return Failed(message, RuntimeError(message))


class _Hooks:
    """A task's handlers, for one attempt (only built when it has some)."""

    __slots__ = ("handlers", "on_failure", "owner", "run", "task")

    def __init__(self, run: TaskRun) -> None:
        self.run = run
        self.task = task = run.task
        self.handlers: list[StateHandler] = list(getattr(task, "state_handlers", ()))
        self.on_failure: OnFailure | None = getattr(task, "on_failure", None)
        name = task.name if run.map_index is None else f"{task.name}[{run.map_index}]"
        self.owner = f"task {name!r}"

    def change(self, old: State[Any], new: State[Any]) -> tuple[State[Any], bool]:
        """The state handlers on ``old`` -> ``new`` (see ``handlers.call_state_handlers``)."""
        if not self.handlers:
            return new, False
        return call_state_handlers(self.task, self.owner, self.handlers, old, new)

    def end(self, result: TaskResult) -> TaskResult:
        """``on_failure`` if the attempt's state is the task's last and it failed: ended,
        or failed with no retry to follow (``Task.retries_after``, the scheduler's rule)."""
        state = result.state
        if (
            self.on_failure is not None
            and state.is_failed()
            and (result.ended or not self.task.retries_after(state, self.run.run_count))
        ):
            return result._replace(
                state=call_on_failure(self.task, self.owner, self.on_failure, state)
            )
        return result


def _attempt(
    run: TaskRun, run_context: Mapping[str, Any], worker: str = "", started: float = 0.0
) -> TaskResult:
    """Run one attempt (its passes: see the module docstring), started at ``started``
    in ``worker``; its result is stamped with those and the time it finished."""
    task = run.task
    own = task.__dict__
    # (``_plain_body``'s test, here without its frame: a frame on every run's path is 1% of
    # W1's instructions; a group's members take it from ``run_chain``, once a task.)
    if (
        type(task).run is _FUNCTION_RUN and "run" not in own
        and task.timeout is None and not task.tags and not task.log_stdout
        and not task.state_handlers and task.on_failure is None
        and own.get("task_run_name") is None and run.loop_count == 1
        and RESULTS_KEY not in run_context
    ):
        return _plain_attempt(run, run.inputs, run_context, own["fn"], worker, started)
    # None for a task without handlers: the attempt then calls nothing for them.
    hooks = _Hooks(run) if has_handlers(task) else None
    values = task_context(run, run_context)
    spec = own.get("task_run_name")
    name: str | None = None
    if spec is not None:
        try:
            # filled from inputs, which may hold a secret: masked like messages
            name = values["task_run_name"] = mask(run_name(task.name, spec, values, run.inputs))
        except RunNameError as error:  # the same every time: fail for good, no retry
            result = TaskResult(run.key, Failed(str(error), error), 0.0, 0.0, "", ended=True)
            result = result if hooks is None else hooks.end(result)
            return _placed(result, started, time.time(), worker)
    # persist_of's own first check, here: most runs persist nothing, and a call is a frame.
    persist = persist_of(task, run_context) if RESULTS_KEY in run_context else None
    if persist is None:
        result = _passes(run, values, hooks)
    else:
        result = _persisted(run, values, hooks, persist)
    if name is not None or task.tags:
        result = result._replace(state=_stamped(result.state, task, name))
    if hooks is not None:
        result = hooks.end(result)
    return _placed(result, started, time.time(), worker)


def _plain_body(task: Task[Any, Any], run_context: Mapping[str, Any]) -> Callable[..., Any] | None:
    """The function of a task whose first pass ``_plain_attempt`` runs: one with none of
    the options an attempt handles, in a run whose results nothing persists; else None.
    (``_attempt`` tests the same, inline: keep the two alike.)"""
    own = task.__dict__
    if (
        type(task).run is _FUNCTION_RUN and "run" not in own
        and task.timeout is None and not task.tags and not task.log_stdout
        and not task.state_handlers and task.on_failure is None
        and own.get("task_run_name") is None and RESULTS_KEY not in run_context
    ):
        body: Callable[..., Any] = own["fn"]
        return body
    return None


def _plain_attempt(
    run: Attempted,
    inputs: dict[str, Any],
    run_context: Mapping[str, Any],
    fn: Callable[..., Any],
    worker: str,
    started: float,
) -> TaskResult:
    """An attempt of a function task with none of the options an attempt handles (state
    handlers, a run name, tags, a timeout, ``log_stdout``, a result to persist), at its
    first pass: what most runs are, with nothing checked that cannot apply. A ``LOOP``
    hands the passes after the first to ``_passes``. ``run``: a ``TaskRun`` (its
    ``inputs``), or a group's member (the inputs its sources gave it)."""
    task = run.task
    # Made only if the task reads it (``context.Later``): most never do.
    token = enter((_first_pass_context, run, run_context))
    try:
        logger = task_logger(task.name)
        if logger.isEnabledFor(logging.INFO):
            logger.info("%s: Starting task run...", _label(task.name, current()))
        try:
            state: State[Any] = Success(SUCCESS_MESSAGE, fn(**inputs))
        except ENDRUN as ended:
            return _placed(_ended(task, run, ended), started, time.time(), worker)
        except TaskloomSignal as raised:
            state = _masked(_looping(raised.to_state(), 1))
        except Exception as error:
            state = _masked(_failed(task, run, error))
    finally:
        leave(token)
    if isinstance(state, Looped):  # the next passes, as a retry that resumes a loop runs them
        again = TaskRun(
            run.key, task, inputs, run.run_count, run.resume, map_index=run.map_index,
            loop_count=2, loop_result=state.result, previous=state,
        )
        passes = _passes(again, _first_pass_context(run, run_context), None, announced=True)
        return _placed(passes, started, time.time(), worker)
    return result_row((run.key, state, started, time.time(), worker, False, None, None))


def _stamped(state: State[Any], task: Task[Any, Any], name: str | None) -> State[Any]:
    """``state`` with what Prefect keeps in a state's context: the task's tags, and here
    the run's name (the scheduler reads it back for the journal)."""
    extra: dict[str, Any] = {}
    if task.tags:
        extra["tags"] = sorted(task.tags)
    if name is not None:
        extra["task_run_name"] = name
    return state.replace(context={**state.context, **extra})


def _persisted(
    run: TaskRun, values: dict[str, Any], hooks: _Hooks | None, persist: Persist
) -> TaskResult:
    """An attempt of a task that persists (``taskloom.checkpoint``): its location filled
    in, its target read (the body then does not run), its passes, its result written."""
    name = values["task_full_name"]
    previous: State[Any] = run.previous if run.previous is not None else _NOT_RUN
    try:
        location = fill(persist.template, run.inputs, values, values.get("parameters") or {})
    except TemplateError as error:
        failed: State[Any] = Failed(f"Task {name!r}: {error}", error)
        if hooks is not None:
            failed, _ = hooks.change(previous, failed)
        return TaskResult(run.key, failed, 0.0, 0.0, "", ended=True)
    if persist.target:
        try:
            found, value = persist.read_target(name, location)
        except ResultError as error:  # (a store out of reach may be back for a retry)
            failed = Failed(str(error), error)
            if hooks is not None:
                failed, _ = hooks.change(previous, failed)
            return TaskResult(run.key, failed, 0.0, 0.0, "")
        if found:
            location = persist.where(location)
            cached: State[Any] = Cached(
                f"{TARGET_FOUND}{location}", value,
                cached_parameters=values.get("parameters"),
            )
            stop = False
            if hooks is not None:
                cached, stop = hooks.change(previous, cached)
            return TaskResult(run.key, cached, 0.0, 0.0, "", ended=stop, location=location)
    return _passes(run, values, hooks, persist, location)


def _passes(
    run: TaskRun,
    values: dict[str, Any],
    hooks: _Hooks | None,
    persist: Persist | None = None,
    location: str | None = None,
    announced: bool = False,
) -> TaskResult:
    """The passes of one attempt (in the task's context ``values``), from pass
    ``run.loop_count``, with the state handlers of each change when ``hooks``; a
    successful result written to ``location`` when ``persist`` says so. ``announced``:
    the attempt's start was logged already."""
    task = run.task
    count, loop_result = run.loop_count, run.loop_result
    limit: int | None = getattr(task, "max_loops", None)
    previous: State[Any] = run.previous if run.previous is not None else _NOT_RUN
    written: str | None = None
    logger: logging.Logger = values["logger"]
    log_stdout: bool = getattr(task, "log_stdout", False)
    first = not announced
    while True:
        if limit is not None and count > limit:  # the pass before asked for one too many
            return TaskResult(run.key, _too_many_loops(task), 0.0, 0.0, "")
        values["task_loop_count"] = count
        if count > 1:
            values["task_loop_result"] = loop_result
        token = enter(values)
        running: State[Any] = previous
        try:
            if first:
                first = False
                if logger.isEnabledFor(logging.INFO):
                    logger.info("%s: Starting task run...", _label(task.name, values))
            if hooks is not None:
                running, stop = hooks.change(previous, Running(RUNNING_MESSAGE))
                if stop or not isinstance(running, Running):  # the body does not run
                    return TaskResult(run.key, running, 0.0, 0.0, "", ended=True)
            if log_stdout:
                with stdout_lines(logger.info):
                    state = _one_pass(task, run)
            else:
                state = _one_pass(task, run)
            if state.message is not SUCCESS_MESSAGE:  # (most passes: nothing to mask)
                state = _masked(_looping(state, count))
            if persist is not None and location is not None and completes(persist, state):
                state, written = persist.write_result(values["task_full_name"], state, location)
            if hooks is not None:
                state, stop = hooks.change(running, state)
                if stop:
                    return TaskResult(run.key, state, 0.0, 0.0, "", ended=True, location=written)
        except ENDRUN as ended:
            return _ended(task, run, ended)
        finally:
            leave(token)
        if not isinstance(state, Looped):
            loop = None
            if count > 1 and task.retries_after(state, run.run_count):
                loop = (count, loop_result)
            return result_row((run.key, state, 0.0, 0.0, "", False, loop, written))
        # As in Prefect 1.x, the next pass starts from ``Pending``, not from ``Looped``:
        # its handlers see ``Pending("Looping task (on loop index N)")`` -> ``Running``.
        previous = Pending(f"Looping task (on loop index {count})")
        count += 1
        loop_result = state.result
        values = dict(values)  # a pass may have kept the context it ran in


def run_attempt(run: TaskRun, run_context: Mapping[str, Any]) -> State[Any]:
    """Run one attempt of ``run.task`` and return the state it ended in; never raises
    for anything the task does (``KeyboardInterrupt`` and ``SystemExit`` pass through).
    A looping task runs all its passes here (see the module docstring)."""
    return _attempt(run, run_context).state


def follows(previous: State[Any]) -> bool:
    """Whether a follow-on may run after an upstream task that ended in ``previous``: only
    after a success that was not a skip (``Success``, ``Cached``). For a task the plan
    marks followable, "every upstream task follows" is the scheduler's decision: its
    default trigger passes exactly when all succeeded, and skip propagation skips it after
    a skip.

    >>> follows(Success(result=None)), follows(Skipped()), follows(Failed())
    (True, False, False)
    """
    return isinstance(previous, Success) and not isinstance(previous, Skipped)


#: The attribute of an interrupt (``KeyboardInterrupt``, ``SystemExit``) raised in a member
#: of a group that holds the results of the tasks that ran before it, and the key of the
#: member it stopped (``run_chain``).
_FINISHED = "taskloom_finished_before"


def finished_before(error: BaseException) -> list[TaskResult]:
    """The results of the tasks of a group that finished before ``error``, raised by a
    member, stopped it (``run_chain``); [] for any other error."""
    kept: tuple[list[TaskResult], int] | None = getattr(error, _FINISHED, None)
    return [] if kept is None else kept[0]


def stopped_link(error: BaseException) -> int | None:
    """The key of the member of a group ``error`` stopped (None: it stopped the head)."""
    kept: tuple[list[TaskResult], int] | None = getattr(error, _FINISHED, None)
    return None if kept is None else kept[1]


class BatchInterrupted(BaseException):
    """Raised into a batch's task by its worker when the parent's run is interrupted
    (``LokyExecutor``: a signal; Dask and ``ThreadExecutor``: an asynchronous exception):
    the batch stops and sends back what finished (``executors._worker.run_all``)."""


#: The threads whose batch was interrupted (``stop``): the group each runs starts no
#: member after the one running, even if its body caught the ``BatchInterrupted``.
_stopped: set[int] = set()


def stop(thread: int) -> None:
    """Stop the group thread ``thread`` runs before its next member (``run_chain``); the
    executor raises ``BatchInterrupted`` in the one running, and calls ``unstop`` when its
    batch is done."""
    _stopped.add(thread)


def unstop(thread: int) -> None:
    """Thread ``thread`` is done with its batch (see ``stop``)."""
    _stopped.discard(thread)


def run_chain(run: TaskRun, run_context: Mapping[str, Any], worker: str) -> list[TaskResult]:
    """Run ``run``, then each member of its group (``run.then``, in order) whose sources
    all ran and ended in a state that ``follows`` (``member_inputs``).

    Returns a result for every task that ran, in the order they ran; the scheduler decides
    the rest. An interrupt (``KeyboardInterrupt``, ``SystemExit``) in a member goes on up
    carrying the results of the tasks that finished before it (``finished_before``): they
    finished, and are recorded so, wherever the interrupt is caught.
    """
    first = _attempt(run, run_context, worker, time.time())
    results = [first]
    if not run.then:
        return results
    states: dict[int, State[Any]] = {run.key: first.state}
    finished = first.finished
    # Each task's ``_plain_body``, looked at once: a chain is mostly one task, many times
    # (in a worker, one template), or its unchanged copies, which share one dict of options
    # (``task.copy``). By that dict's id: it lives as long as the group.
    bodies: dict[int, Callable[..., Any] | None] = {}
    for follow in run.then:
        if _stopped and threading.get_ident() in _stopped:  # a body caught the interrupt
            stopped = BatchInterrupted()
            setattr(stopped, _FINISHED, (results, follow.key))
            raise stopped
        inputs = member_inputs(follow, states)
        if inputs is None:
            continue
        task = follow.task
        options = id(task.__dict__)
        if options in bodies:
            body = bodies[options]
        else:
            body = bodies[options] = _plain_body(task, run_context)
        try:  # (each member starts when the one before it finished: a clock read less)
            if body is None:  # (positional: a call with keywords costs more)
                member = TaskRun(follow.key, task, inputs, 1, False, (), follow.map_index)
                outcome = _attempt(member, run_context, worker, finished)
            else:  # (a plain member is its own ``Attempted``: no ``TaskRun`` made)
                outcome = _plain_attempt(follow, inputs, run_context, body, worker, finished)
        except BaseException as error:  # only interrupts: _attempt turns the rest into states
            setattr(error, _FINISHED, (results, follow.key))
            raise
        states[follow.key] = outcome.state
        finished = outcome.finished
        results.append(outcome)
    return results


def _placed(result: TaskResult, started: float, finished: float, worker: str) -> TaskResult:
    """``result`` with its times and worker (``_replace`` costs a microsecond more per run)."""
    key, state, _, _, _, ended, loop, location = result
    return result_row((key, state, started, finished, worker, ended, loop, location))
