"""The garbage collector held off while a large structure without cycles is built.

Building the plan of a flow (``taskloom.plan``) or a run's records (``runner._Scheduler``)
allocates several objects a task, and no cycle: what it drops goes by reference counting.
With the collector on, those allocations set off collection after collection, each walking
the flow's millions of objects: at a million tasks that doubled the cost of building them.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["collector_off"]


@contextmanager
def collector_off() -> Iterator[None]:
    """No automatic collection inside; the collector as it was after (one turned off by
    someone else stays off). The collection its allocations left due runs once after."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()
