"""The figures of a run's timeline, from its journal record: work, wall time, workers, the
critical path and the best speed-up (``run_stats``), and where each task sits on the chart
(``place_bars``, ``stack_lanes``). The HTML report (``_report_html``) and the text timeline
(``report.timeline_text``) draw these; neither computes a figure of its own.
"""

from __future__ import annotations

import re

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._text import duration
from ._runview import critical_path, mapped_outcome, mismatch, run_time, upstream_indices
from .progress import category_of
from .trace import TaskRecord

if TYPE_CHECKING:
    from .flow import Flow
    from .journal import RunRecord

__all__ = ["SCHEDULER_LANE", "Bar", "Lane", "RunStats", "place_bars", "run_stats", "stack_lanes"]

#: The lane of tasks decided in the scheduler, not run by a worker.
SCHEDULER_LANE = "scheduler (did not run)"
#: Up to this many children of mapped tasks (or tasks) in a run, each is a bar of its own;
#: past it, the children of a mapped task (the copies of a task) that ran on one worker
#: are one labelled bar (``name ×N``): more rows than this would be too thin to label.
CHILD_BARS = 60
#: Below this share of the wall time in task run time, speed-up figures are not shown.
OVERHEAD_SHARE = 0.1


@dataclass(slots=True)
class RunStats:
    """The figures of a run's timeline.

    ``critical`` is the critical path (task indices, first to last), or None when the flow
    was not given (or does not match the run: ``note`` says why). ``best_speedup`` is
    total work / critical path, the most any number of workers could give; without the
    flow it is an upper bound (work / the longest task), and ``exact`` is False.
    """

    work: float
    wall: float
    workers: list[str]
    critical: list[int] | None
    critical_time: float
    best_speedup: float | None
    exact: bool
    note: str | None = None
    upstream: list[list[int]] | None = None

    @property
    def overhead(self) -> str | None:
        """Why speed-up figures mean nothing for this run, or None when they do: when the
        tasks' run time is under ``OVERHEAD_SHARE`` of the wall time, the wall time is
        mostly starting workers and moving tasks, which more workers do not shorten."""
        if self.wall <= 0 or self.work >= OVERHEAD_SHARE * self.wall:
            return None
        return (
            f"not meaningful: the run was mostly overhead (work {duration(self.work, spaced=True)} "
            f"of {duration(self.wall, spaced=True)} wall)"
        )

    def speedup_with(self, n: int) -> float | None:
        """The most ``n`` workers could speed the run up over one: min(n, best speed-up)."""
        if self.best_speedup is None:
            return None
        return min(float(n), self.best_speedup)


def run_stats(record: RunRecord, flow: Flow | None = None) -> RunStats:
    """Total work, wall time, workers, critical path and best speed-up of ``record``."""
    tasks = record.tasks
    everyone = _everyone(record)
    work = sum(run_time(t) for t in everyone)
    wall = _span(record)
    workers = _workers(everyone)
    note = None
    upstream = None
    if flow is None:
        note = (
            "Critical path not shown: the run journal does not record the flow's edges; "
            "give the flow (flow=...) to find it."
        )
    else:
        why = mismatch(record, flow)
        if why is None:
            upstream = upstream_indices(flow)
        else:
            note = f"Critical path not shown: {why}."
    if flow is not None and upstream is not None:
        times = [
            max((run_time(c) for c in record.children.get(t.index, ())), default=run_time(t))
            for t in tasks
        ]
        path, length = critical_path(times, flow)
        best = work / length if length > 0 else None
        return RunStats(work, wall, workers, path, length, best, True, None, upstream)
    longest = max((run_time(t) for t in everyone), default=0.0)
    best = work / longest if longest > 0 else None
    return RunStats(work, wall, workers, None, 0.0, best, False, note, None)


# -- placing the tasks on the timeline ----------------------------------------------------------


@dataclass(slots=True)
class Bar:
    task: TaskRecord
    bucket: str
    lane: str
    queued: float | None  # seconds from the run's start
    start: float
    end: float
    ran: bool
    row: int = 0
    #: When the task's worker started its first task (seconds from the run's start): the
    #: wait before it is the worker starting up, not the queue.
    ready: float | None = None

    def startup(self) -> tuple[float, float] | None:
        """The part of the wait spent while the worker was still starting, or None."""
        if self.queued is None or self.ready is None or self.ready <= self.queued:
            return None
        return self.queued, min(self.ready, self.start)

    def queue_wait(self) -> tuple[float, float] | None:
        """The part of the wait spent queued for a worker that was up, or None."""
        if self.queued is None:
            return None
        left = max(self.queued, self.ready if self.ready is not None else self.queued)
        return (left, self.start) if self.start > left else None


@dataclass(slots=True)
class Lane:
    name: str
    bars: list[Bar] = field(default_factory=list)
    rows: int = 1


def _everyone(record: RunRecord) -> list[TaskRecord]:
    """The run's tasks and the children of its mapped tasks."""
    return [*record.tasks, *(c for family in record.children.values() for c in family)]


def _span(record: RunRecord) -> float:
    ends = [t.finished for t in _everyone(record) if t.finished is not None]
    if record.ended is not None:
        ends.append(record.ended)
    return max([0.0, *(e - record.started for e in ends)])


def _workers(tasks: Sequence[TaskRecord]) -> list[str]:
    first: dict[str, float] = {}
    for t in tasks:
        if t.worker is not None and t.started is not None:
            first[t.worker] = min(first.get(t.worker, t.started), t.started)
    return sorted(first, key=lambda w: (first[w], w))


def place_bars(record: RunRecord, upstream: list[list[int]] | None) -> list[Bar]:
    origin = record.started
    bars: list[Bar] = []
    placed: dict[int, float] = {}  # when each task was done, from the run's start
    for t in record.tasks:
        if t.started is not None and t.finished is not None:
            placed[t.index] = t.finished - origin
    by_index = {t.index: t for t in record.tasks}

    def done_at(i: int, depth: int = 0) -> float:
        if i in placed:
            return placed[i]
        when = 0.0
        if upstream is not None and depth < 1000 and i < len(upstream):
            when = max((done_at(u, depth + 1) for u in upstream[i] if u in by_index), default=0.0)
        placed[i] = when
        return when

    def bar(t: TaskRecord, bucket: str, at: int) -> Bar:
        if t.started is not None and t.finished is not None:
            queued = None if t.queued is None else min(t.queued, t.started) - origin
            return Bar(t, bucket, t.worker or "?", queued, t.started - origin, t.finished - origin, True)
        when = done_at(at)
        return Bar(t, bucket, SCHEDULER_LANE, None, when, when, False)

    many = sum(len(family) for family in record.children.values()) > CHILD_BARS
    if len(record.tasks) > CHILD_BARS:
        bars = _grouped(record, [bar(t, category_of(t.state), t.index) for t in record.tasks])
        return _with_ready(bars)
    for t in record.tasks:
        bars.append(bar(t, category_of(t.state), t.index))
        children = record.children.get(t.index)
        if children is None:
            continue
        if not many:
            bars.extend(bar(c, category_of(c.state), t.index) for c in children)
            continue
        groups: dict[str | None, list[TaskRecord]] = {}
        for c in children:
            groups.setdefault(c.worker if c.started is not None else None, []).append(c)
        for group in groups.values():
            summary = _collapsed(t, group)
            bars.append(bar(summary, mapped_outcome([c.state for c in group]).bucket, t.index))
    return _with_ready(bars)


def _with_ready(bars: list[Bar]) -> list[Bar]:
    """Set each bar's ``ready``: when its worker started its first task."""
    first: dict[str, float] = {}
    for b in bars:
        if b.ran:
            first[b.lane] = min(first.get(b.lane, b.start), b.start)
    for b in bars:
        if b.ran:
            b.ready = first[b.lane]
    return bars


#: The number ``plan.Plan.names`` gives a copy of a task: ``parse[3]``.
_COPY = re.compile(r"\[\d+\]$")


def _grouped(record: RunRecord, bars: list[Bar]) -> list[Bar]:
    """More than ``CHILD_BARS`` tasks: the tasks of one name that ran on one worker are
    one bar (``name ×N``, from the first one's start to the last one's end), as the
    children of a mapped task are; tasks that did not run stay markers."""
    groups: dict[tuple[str, str], list[Bar]] = {}
    out: list[Bar] = []
    for b in bars:
        if b.ran:  # copies of one task (parse[0], parse[1], ...) share a group
            groups.setdefault((b.lane, _COPY.sub("", b.task.name)), []).append(b)
        else:
            out.append(b)
    for (lane, name), members in groups.items():
        if len(members) == 1:
            out.append(members[0])
            continue
        tasks = [m.task for m in members]
        outcome = mapped_outcome([t.state for t in tasks])
        queued = [m.queued for m in members if m.queued is not None]
        summary = TaskRecord(
            index=tasks[0].index,
            name=f"{name} ×{len(tasks)}",
            state=outcome.state.replace("Mapped: ", ""),
            message=outcome.message,
            queued=None,
            started=None,
            finished=None,
            attempts=max(t.attempts for t in tasks),
            worker=lane,
        )
        out.append(Bar(summary, outcome.bucket, lane, min(queued) if queued else None,
                       min(m.start for m in members), max(m.end for m in members), True))
    out.sort(key=lambda b: b.task.index)
    return out


def _collapsed(parent: TaskRecord, children: list[TaskRecord]) -> TaskRecord:
    """One bar for the children of ``parent`` that ran on one worker (or none): from the
    first one's start to the last one's end."""
    outcome = mapped_outcome([c.state for c in children])
    ran = [c for c in children if c.started is not None and c.finished is not None]
    queued = [c.queued for c in ran if c.queued is not None]
    return TaskRecord(
        index=parent.index,
        name=f"{parent.name} ×{len(children)}",
        state=outcome.state,
        message=outcome.message,
        queued=min(queued) if queued else None,
        started=min((c.started for c in ran if c.started is not None), default=None),
        finished=max((c.finished for c in ran if c.finished is not None), default=None),
        attempts=max((c.attempts for c in children), default=0),
        worker=children[0].worker,
        parent=parent.index,
    )


def stack_lanes(bars: list[Bar], workers: list[str], min_width: float, max_rows: int = 10) -> list[Lane]:
    lanes = {w: Lane(w) for w in workers}
    for bar in bars:
        lanes.setdefault(bar.lane, Lane(bar.lane)).bars.append(bar)
    if SCHEDULER_LANE in lanes:  # last
        lanes[SCHEDULER_LANE] = lanes.pop(SCHEDULER_LANE)
    for lane in lanes.values():
        for with_wait in (True, False):
            rows: list[float] = []
            for bar in sorted(lane.bars, key=lambda b: (_left(b, with_wait), b.task.index)):
                left = _left(bar, with_wait)
                right = max(bar.end, bar.start + min_width)
                for r, free in enumerate(rows):
                    if free <= left:
                        bar.row, rows[r] = r, right
                        break
                else:
                    bar.row = len(rows)
                    rows.append(right)
            lane.rows = max(1, len(rows))
            if lane.rows <= max_rows:
                break
    return [lane for lane in lanes.values() if lane.bars]


def _left(bar: Bar, with_wait: bool) -> float:
    return bar.queued if with_wait and bar.queued is not None else bar.start
