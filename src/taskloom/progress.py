"""Watching a run as it goes: the ``RunObserver`` hook, and a terminal progress display.

The scheduler tells an observer when a run starts, each time a task changes state
(handed to the executor: ``Running``; then its final state, ``Retrying`` or ``Paused``),
and when the run ends. ``flow.run(progress=True)`` uses ``TerminalProgress``; pass your
own ``RunObserver`` to feed a dashboard or a log.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from typing import Any, Protocol, TextIO

from .states import State

__all__ = ["RunObserver", "TerminalProgress", "category"]


class RunObserver(Protocol):
    """What the scheduler reports to while a flow runs. Calls come from the thread that
    called ``flow.run``; keep them quick, they are on the scheduler's path."""

    def run_started(self, flow_name: str, run_id: str, total: int) -> None: ...

    def task_changed(self, key: int, task_name: str, state: State[Any]) -> None:
        """Task number ``key`` of the run (names repeat: copies of one task) is now in ``state``."""

    def run_finished(self, state: State[Any]) -> None: ...


def category(state: State[Any]) -> str:
    """The progress bucket of a state: running, succeeded, failed, skipped, cached,
    retrying, paused, or pending."""
    if state.is_running():
        return "running"
    if state.is_cached():
        return "cached"
    if state.is_skipped():
        return "skipped"
    if state.is_successful():
        return "succeeded"
    if state.is_failed():
        return "failed"
    if state.is_retrying():
        return "retrying"
    if state.is_paused():
        return "paused"
    return "pending"


_FINAL = ("succeeded", "failed", "skipped", "cached")


class TerminalProgress:
    """Counts by state, tasks done out of the total, and elapsed time.

    On a terminal it redraws one line in place (at most ten times a second); elsewhere
    (a log file, CI) it prints a plain line every ``every`` seconds and at the end.
    """

    def __init__(self, stream: TextIO | None = None, every: float = 5.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.every = every
        self.live = self.stream.isatty()
        self.counts: Counter[str] = Counter()
        self.where: dict[int, str] = {}
        self.total = 0
        self.flow = ""
        self.started = self.shown = 0.0

    def run_started(self, flow_name: str, run_id: str, total: int) -> None:
        self.flow, self.total = flow_name, total
        self.counts.clear()
        self.where.clear()
        self.started = time.monotonic()
        self.shown = 0.0

    def task_changed(self, key: int, task_name: str, state: State[Any]) -> None:
        bucket = category(state)
        previous = self.where.get(key)
        if previous is not None:
            self.counts[previous] -= 1
        self.where[key] = bucket
        self.counts[bucket] += 1
        now = time.monotonic()
        if now - self.shown >= (0.1 if self.live else self.every):
            self._show(now)

    def run_finished(self, state: State[Any]) -> None:
        self._show(time.monotonic(), final=f"{type(state).__name__}: {state.message}")

    def line(self, now: float | None = None) -> str:
        """The progress line as it would be shown now."""
        elapsed = (now if now is not None else time.monotonic()) - self.started
        done = sum(self.counts[b] for b in _FINAL)
        parts = [f"{name} {self.counts[name]}" for name in (
            "running", "succeeded", "failed", "skipped", "cached", "retrying", "paused"
        ) if self.counts[name]]
        return f"{self.flow}: {done}/{self.total} done | {', '.join(parts) or 'starting'} | {elapsed:.1f}s"

    def _show(self, now: float, final: str | None = None) -> None:
        self.shown = now
        text = self.line(now) + (f" | {final}" if final else "")
        if self.live:
            self.stream.write("\r\x1b[2K" + text + ("\n" if final else ""))
        else:
            self.stream.write(text + "\n")
        self.stream.flush()
