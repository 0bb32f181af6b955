"""taskloom's errors. Task failures are states, not exceptions; these are for misuse.

::

    TaskloomError (Exception)
    ├── FlowDefinitionError (+ ValueError)   a flow that cannot be built or run as given:
    │   │                                      a cycle, an unknown parameter, a bad start task
    │   └── CycleError                         the edge that closes a cycle
    ├── TaskDefinitionError (+ ValueError)   a task constructed with bad options
    ├── ScheduleError (+ ValueError)         a schedule that cannot be built (a bad cron
    │                                          string), or that has no due time left
    ├── HandleError (+ TypeError, AttributeError)
    │                                        a task handle used as a value while building a flow
    ├── ResultError                          a result store that cannot be used: a directory
    │   │                                      that cannot be created or written, a bad URL
    │   └── SerializationError (+ TypeError) a value the serializer cannot take (names both)
    └── RemoteTaskError                      a task's exception that could not travel back from
                                             a worker: its type name, text and traceback

``RemoteTaskError`` is the exception: it is never raised, only found as a failed state's result.
It is a ``states.StandInError``, what a state whose exception cannot be pickled pickles as.

Each derives from the built-in error a Prefect Core user would catch (``ValueError`` for
definitions), so ``except ValueError`` keeps working. ``RemoteTaskError`` is also importable
from ``taskloom.executors.loky``, its home in 0.1, so pickles that name it there still load.
"""

from __future__ import annotations

from typing import Any

from .states import StandInError

__all__ = [
    "CycleError",
    "FlowDefinitionError",
    "HandleError",
    "RemoteTaskError",
    "ResultError",
    "ScheduleError",
    "SerializationError",
    "TaskDefinitionError",
    "TaskloomError",
]


class TaskloomError(Exception):
    """The base of taskloom's own errors."""


class FlowDefinitionError(TaskloomError, ValueError):
    """A flow that cannot be built or run as given; the message names the culprit."""


class CycleError(FlowDefinitionError):
    """Adding this edge would close a cycle; the message lists the tasks on it."""


class TaskDefinitionError(TaskloomError, ValueError):
    """A task constructed with invalid options; the message names the task and the option."""


class ScheduleError(TaskloomError, ValueError):
    """A schedule that cannot be built (a bad cron string, a bad interval or date), or
    that has no due time left when a flow is run on it; the message names the value."""


class HandleError(TaskloomError, TypeError, AttributeError):
    """A task handle was used as a value while the flow was being built.

    Inside ``with Flow(...)``, calling a task returns a handle to the task in the flow,
    not its result: the result exists only once the flow has run.
    """


class ResultError(TaskloomError):
    """A result store (``taskloom.results``) that cannot be used; the message names it
    (the directory, the URL) and why."""


class SerializationError(ResultError, TypeError):
    """A value the chosen serializer cannot take; the message names the serializer and
    the value's type. Raised before any file is touched."""


class RemoteTaskError(TaskloomError, StandInError):
    """A task's exception that could not be sent back from a worker as itself: its type
    name, text and traceback (``StandInError``'s attributes), formatted in the worker."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_remote_task_error, self._parts())


def _remote_task_error(
    type_name: str, text: str, remote_traceback: str, original_repr: str = "", reason: str = ""
) -> RemoteTaskError:
    return RemoteTaskError(
        type_name, text, remote_traceback, original_repr=original_repr, reason=reason
    )
