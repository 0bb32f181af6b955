"""Waits of the thread that runs a flow that an interrupt (Ctrl-C, SIGTERM) always ends.

CPython runs a signal's Python handler in the main thread, between two bytecodes. The
kernel may hand the signal to any thread of the process that does not block it (a worker
thread, the journal's writer), or to the main thread just before it blocks: then no wait
of the main thread is interrupted, and the handler runs only once that wait returns. A
wait with no end (for the next result, while a task never returns) kept the interrupt
pending for ever: Ctrl-C did nothing. So these waits block ``SLICE`` seconds at most at a
time, and go back to Python between two slices, where a pending handler runs.
"""

from __future__ import annotations

import queue
import time
from typing import TypeVar

__all__ = ["SLICE", "get", "sleep"]

T = TypeVar("T")

#: The longest a wait here blocks at once: how late an interrupt that landed elsewhere
#: is handled, at worst.
SLICE = 0.25


def get(source: queue.SimpleQueue[T], timeout: float | None) -> T:
    """``source.get(timeout=timeout)``: the next item, or ``queue.Empty`` once ``timeout``
    seconds passed (None: no end), waiting ``SLICE`` seconds at most at a time."""
    if timeout is not None and timeout <= SLICE:
        return source.get(timeout=timeout)
    end = None if timeout is None else time.monotonic() + timeout
    while True:
        left = SLICE if end is None else min(SLICE, end - time.monotonic())
        try:
            return source.get(timeout=max(0.0, left))
        except queue.Empty:
            if end is not None and time.monotonic() >= end:
                raise


def sleep(seconds: float) -> None:
    """``time.sleep(seconds)``, ``SLICE`` seconds at most at a time."""
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        time.sleep(min(SLICE, left))
