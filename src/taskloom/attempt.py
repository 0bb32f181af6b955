"""One attempt of one task: run its body and turn what happened into a State.

This is the only code that runs where the task runs (in the calling process, a loky
worker, or a Dask worker). It enters the task's context, calls ``task.run`` with its
inputs, and maps the outcome:

- a returned value          -> ``Success("Task run succeeded.", result=value)``
- a signal, at any depth    -> the signal's state (``SKIP`` -> ``Skipped``, ...)
- an exception              -> ``Failed("Error during execution of task: ValueError('boom')")``
- running past ``timeout``  -> ``TimedOut("Task timed out during execution.")``

Retries, caching and triggers are the scheduler's business, in the parent process, with
one exception: a chain of follow-ons (``TaskRun.then``) is decided here, one rule for every
link (``follows``), which gives what the scheduler would decide for a task the plan marks
followable (see ``taskloom.runner``).
"""

from __future__ import annotations

import contextvars
import logging
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Any, NamedTuple

from .context import enter, leave
from .signals import TaskloomSignal
from .states import Failed, Skipped, State, Success, TimedOut

if TYPE_CHECKING:
    from .task import Task

__all__ = [
    "FollowOn",
    "TaskResult",
    "TaskRun",
    "follows",
    "run_attempt",
    "run_chain",
    "task_context",
]

log = logging.getLogger("taskloom.task")

SUCCESS_MESSAGE = "Task run succeeded."
TIMEOUT_MESSAGE = "Task timed out during execution."


@dataclass(slots=True)
class FollowOn:
    """A task that may run right after the one before it in a chain, where that one ran.

    The scheduler offers one only when the outcome is certain to be the same as deciding
    in the parent: the task's sole upstream task is the previous one in the chain, its
    trigger is the default, skip propagation is on, and it has no cache, seeded state or
    retry history. It runs only if the previous task ended in a state that ``follows``;
    its inputs are ``constants`` plus that result under ``input_key``.
    """

    key: int
    task: Task[Any, Any]
    constants: dict[str, Any]
    input_key: str | None
    map_index: int | None = None


@dataclass(slots=True)
class TaskRun:
    """One attempt of one task, as handed to an executor.

    Attributes:
        key: the task's number in this flow run; results come back under it.
        task: the task to run.
        inputs: its arguments, by name.
        run_count: 1 for the first attempt, 2 for the first retry, ...
        resume: whether the task is being resumed (``context.resume``).
        then: a chain of tasks the executor may run next in the same place, without a
            round trip through the scheduler (see ``run_chain``); an executor may ignore it.
        map_index: for a child of a mapped task, its index (``context.map_index``).
    """

    key: int
    task: Task[Any, Any]
    inputs: dict[str, Any]
    run_count: int = 1
    resume: bool = False
    then: tuple[FollowOn, ...] = ()
    map_index: int | None = None


class TaskResult(NamedTuple):
    """What an executor hands back for one attempt.

    Attributes:
        key: the run's key (``TaskRun.key``).
        state: the state the attempt ended in.
        started: when the attempt started (seconds since the epoch).
        finished: when it finished.
        worker: where it ran, e.g. ``"local"`` or ``"loky:12345"`` (a process id).
    """

    key: int
    state: State[Any]
    started: float
    finished: float
    worker: str


class _Timeout(BaseException):
    """Raised into a task's frame by the timeout alarm; never escapes ``run_attempt``."""


def task_context(run: TaskRun, run_context: Mapping[str, Any]) -> dict[str, Any]:
    """What ``taskloom.context`` holds while ``run`` executes."""
    task = run.task
    values = dict(run_context)
    values["task_name"] = task.name
    values["map_index"] = run.map_index
    values["task_full_name"] = task.name if run.map_index is None else f"{task.name}[{run.map_index}]"
    values["task_tags"] = task.tags
    values["task_run_count"] = run.run_count
    values["task_run_id"] = f"{run_context.get('flow_run_id', '')}.{run.key}.{run.run_count}"
    if run.resume:
        values["resume"] = True
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
        raise _Timeout()
    if failure:
        raise failure[0]
    return outcome[0]


def _body(run: TaskRun) -> Callable[[], Any]:
    task, inputs = run.task, run.inputs
    return lambda: task.run(**inputs)


def run_attempt(run: TaskRun, run_context: Mapping[str, Any]) -> State[Any]:
    """Run one attempt of ``run.task`` and return the state it ended in; never raises
    for anything the task does (``KeyboardInterrupt`` and ``SystemExit`` pass through)."""
    task = run.task
    token = enter(task_context(run, run_context))
    try:
        if task.timeout is None:
            result = task.run(**run.inputs)
        elif hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread():
            result = _call_with_alarm(_body(run), task.timeout)
        else:
            result = _call_in_thread(_body(run), task.timeout)
    except TaskloomSignal as raised:
        return raised.to_state()
    except _Timeout:
        return TimedOut(TIMEOUT_MESSAGE, TimeoutError(f"timed out after {task.timeout} s"))
    except Exception as error:
        log.info("Task %r failed on attempt %d: %r", task.name, run.run_count, error, exc_info=True)
        return Failed(f"Error during execution of task: {error!r}", error)
    finally:
        leave(token)
    return Success(SUCCESS_MESSAGE, result)


def follows(previous: State[Any]) -> bool:
    """Whether a follow-on runs after a task that ended in ``previous``: only after a
    success that was not a skip (``Success``, ``Cached``). For a task the plan marks
    followable this is the scheduler's decision: its default trigger passes exactly on
    success, and skip propagation skips it after a skip.

    >>> follows(Success(result=None)), follows(Skipped()), follows(Failed())
    (True, False, False)
    """
    return isinstance(previous, Success) and not isinstance(previous, Skipped)


def run_chain(run: TaskRun, run_context: Mapping[str, Any], worker: str) -> list[TaskResult]:
    """Run ``run``, then each of ``run.then`` while the previous one ``follows``.

    Returns a result for every task that ran; the scheduler decides the rest.
    """
    started = time.time()
    state = run_attempt(run, run_context)
    finished = time.time()
    results = [TaskResult(run.key, state, started, finished, worker)]
    for follow in run.then:
        if not follows(state):
            break
        inputs = dict(follow.constants)
        if follow.input_key is not None:
            inputs[follow.input_key] = state.result
        started = finished
        state = run_attempt(
            TaskRun(follow.key, follow.task, inputs, map_index=follow.map_index), run_context
        )
        finished = time.time()
        results.append(TaskResult(follow.key, state, started, finished, worker))
    return results
