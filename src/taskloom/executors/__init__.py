"""Executors: where task runs happen.

- ``LocalExecutor``: in the calling process, one at a time (the default of ``flow.run``).
- ``LokyExecutor``: on a loky process pool, in parallel.
- ``ThreadExecutor``: on threads of the calling process, for I/O-bound tasks.
- ``DaskExecutor``: on Dask distributed, a local cluster or a remote one.

All implement the ``Executor`` protocol and give the same final states for the same flow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .base import Executor as Executor
from .base import ExecutorRun as ExecutorRun
from .base import TaskResult as TaskResult
from .base import TaskRun as TaskRun
from .base import Timings as Timings
from .local import LocalExecutor as LocalExecutor
from .threads import ThreadExecutor as ThreadExecutor

if TYPE_CHECKING:
    from .dask import DaskExecutor as DaskExecutor
    from .loky import LokyExecutor as LokyExecutor

#: The executors whose module loads on first use: asyncio (Dask) and loky with psutil were
#: two thirds of `import taskloom.executors`, paid by every CLI command and every worker.
_LAZY = {"DaskExecutor": ".dask", "LokyExecutor": ".loky"}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        value: object = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later reads skip this function
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DaskExecutor", "Executor", "ExecutorRun", "LocalExecutor", "LokyExecutor", "TaskResult", "TaskRun",
    "ThreadExecutor", "Timings",
]
