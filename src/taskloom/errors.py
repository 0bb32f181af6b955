"""taskloom's errors. Task failures are states, not exceptions; these are for misuse.

::

    TaskloomError (Exception)
    ├── FlowDefinitionError (+ ValueError)   a flow that cannot be built or run as given:
    │   │                                      a cycle, an unknown parameter, a bad start task
    │   └── CycleError                         the edge that closes a cycle
    ├── TaskDefinitionError (+ ValueError)   a task constructed with bad options
    └── HandleError (+ TypeError, AttributeError)
                                             a task handle used as a value while building a flow

Each derives from the built-in error a Prefect Core user would catch (``ValueError`` for
definitions), so ``except ValueError`` keeps working.
"""

from __future__ import annotations

__all__ = [
    "CycleError",
    "FlowDefinitionError",
    "HandleError",
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


class HandleError(TaskloomError, TypeError, AttributeError):
    """A task handle was used as a value while the flow was being built.

    Inside ``with Flow(...)``, calling a task returns a handle to the task in the flow,
    not its result: the result exists only once the flow has run.
    """
