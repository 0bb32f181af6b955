"""Executors: where task runs happen.

- ``LocalExecutor``: in the calling process, one at a time (the default of ``flow.run``).
- ``LokyExecutor``: on a loky process pool, in parallel.
- ``ThreadExecutor``: on threads of the calling process, for I/O-bound tasks.
- ``DaskExecutor``: on Dask distributed, a local cluster or a remote one.

All implement the ``Executor`` protocol and give the same final states for the same flow.
"""

from __future__ import annotations

from .base import Executor as Executor
from .base import ExecutorRun as ExecutorRun
from .base import TaskResult as TaskResult
from .base import TaskRun as TaskRun
from .base import Timings as Timings
from .dask import DaskExecutor as DaskExecutor
from .local import LocalExecutor as LocalExecutor
from .loky import LokyExecutor as LokyExecutor
from .threads import ThreadExecutor as ThreadExecutor

__all__ = [
    "DaskExecutor", "Executor", "ExecutorRun", "LocalExecutor", "LokyExecutor", "TaskResult", "TaskRun",
    "ThreadExecutor", "Timings",
]
