"""The garbage collector during the big, acyclic work of a run.

Building the plan of a flow (``taskloom.plan``) or a run's records (``runner._Scheduler``)
allocates several objects a task, and no cycle: what it drops goes by reference counting.
With the collector on, those allocations set off collection after collection, each walking
the flow's millions of objects: at a million tasks that doubled the cost of building them
(``collector_off``).

A run then leaves what existed when it started out of the collector's passes
(``RunHeap``): a full collection walks every tracked object, and the collector runs one
each time the objects that outlived the young generations grew by a quarter, so in a run
of a million tasks each would walk the flow's millions of objects again, and the time per
task would grow with the flow.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any

__all__ = ["RunHeap", "collector_off"]


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


def _freeze_survivors(phase: str, info: dict[str, Any]) -> None:
    """After a full collection inside a run: what survived it is alive, not garbage, so
    it joins the frozen heap. The next full collection walks only what came after it,
    where it would walk the run's every state and trace again (the collector runs one
    each time the old generation grew by a quarter: each object walked about five times
    over a long run, each walk of a million-task run's records taking 150 ms)."""
    if phase == "stop" and info["generation"] == 2:
        gc.freeze()


class RunHeap:
    """What a run builds, built with the collector off; then, while it runs, what existed
    before it and what it built left out of the collector's passes (``gc.freeze``), and
    put back when it ends.

    ``with RunHeap() as heap:`` build (the plan, the run's records: no collection walks
    them as they grow), then ``heap.built()`` and run. During the run, what survives a
    full collection is frozen too (``_freeze_survivors``). Garbage the run makes is
    collected as before; objects that were already garbage when frozen wait for the first
    collection after the run. Nothing is frozen when the collector is off, or when
    something (the application, a run in another thread) froze objects already: its
    unfreeze is its own.
    """

    __slots__ = ("_frozen", "_on")

    def __enter__(self) -> RunHeap:
        self._on = gc.isenabled()  # turned off here: to be turned on again
        self._frozen = False
        gc.disable()
        return self

    def built(self) -> None:
        """The run's records are built: freeze everything (before the collector is on
        again, so no collection walks them first), then collect as usual."""
        if self._on and not gc.get_freeze_count():
            gc.freeze()
            gc.callbacks.append(_freeze_survivors)
            self._frozen = True
        self._resume()

    def _resume(self) -> None:
        if self._on:
            self._on = False
            gc.enable()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._resume()
        if self._frozen:
            gc.callbacks.remove(_freeze_survivors)
            gc.unfreeze()
