"""taskloom: the Prefect Core (1.x) execution model, typed and fast.

::

    from taskloom import Flow, Parameter, task

    @task
    def double(x: int) -> int:
        return 2 * x

    with Flow("demo") as flow:
        n = Parameter("n", default=3)
        result = double(n)

    state = flow.run(parameters={"n": 5})
    assert state.result[result].result == 10
"""

from __future__ import annotations

from . import cache_validators as cache_validators
from . import signals as signals
from .signals import pause_task as pause_task
from . import triggers as triggers
from .context import context as context
from .edges import Edge as Edge
from .edges import flatten as flatten
from .edges import unmapped as unmapped
from .errors import CycleError as CycleError
from .errors import FlowDefinitionError as FlowDefinitionError
from .errors import HandleError as HandleError
from .errors import TaskDefinitionError as TaskDefinitionError
from .errors import TaskloomError as TaskloomError
from . import logging as logging
from .flow import Flow as Flow
from .logging import get_logger as get_logger
from .mapping import apply_map as apply_map
from .parameters import DateTimeParameter as DateTimeParameter
from .task import Parameter as Parameter
from .task import ParameterTask as ParameterTask
from .task import Task as Task
from .task import defaults_from_attrs as defaults_from_attrs
from .task import task as task
from .tasks.control_flow import case as case
from .tasks.control_flow import ifelse as ifelse
from .tasks.control_flow import merge as merge
from .tasks.control_flow import switch as switch

__version__ = "0.1.0"

__all__ = [
    "CycleError",
    "DateTimeParameter",
    "Edge",
    "Flow",
    "FlowDefinitionError",
    "HandleError",
    "Parameter",
    "ParameterTask",
    "Task",
    "TaskDefinitionError",
    "TaskloomError",
    "apply_map",
    "cache_validators",
    "case",
    "context",
    "defaults_from_attrs",
    "flatten",
    "get_logger",
    "ifelse",
    "logging",
    "merge",
    "pause_task",
    "signals",
    "switch",
    "task",
    "triggers",
    "unmapped",
]
