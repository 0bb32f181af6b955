"""After a run: its timeline, as a self-contained HTML report or as text for the terminal.

::

    from taskloom.journal import default_journal
    from taskloom.report import render_report, timeline_text

    record = default_journal().load(run_id)
    Path("report.html").write_text(render_report(record, flow=flow))
    print(timeline_text(record, width=100, flow=flow))

The report is one HTML file with its CSS, script and SVG inline (it opens offline, and
can be mailed or attached to a CI run). It shows:

- a Gantt chart with one lane per worker process: for each task, the time it waited in
  the queue (handed to the executor until it started) and the time it ran, coloured by
  its final state; a task that retried carries its attempt count; tasks that never ran
  on a worker (cache hits, skips, parameters, failed triggers) are markers in a lane of
  their own;
- the critical path: the chain of dependent tasks with the most run time, outlined,
  and the best speed-up any number of workers could give (total work / critical path);
- a table of every task.

The run journal does not record the flow's edges, so the critical path needs the flow
(``flow=``); without it the report says so and highlights nothing. The journal keeps the
timings of the last attempt of each task: earlier attempts are counted, not drawn.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._report_html import render_report as render_report
from ._text import duration, factor
from ._timeline import SCHEDULER_LANE as SCHEDULER_LANE
from ._timeline import Bar, place_bars
from ._timeline import RunStats as RunStats
from ._timeline import run_stats as run_stats

if TYPE_CHECKING:
    from .flow import Flow
    from .journal import RunRecord

__all__ = ["SCHEDULER_LANE", "RunStats", "render_report", "run_stats", "timeline_text"]


def timeline_text(
    record: RunRecord, width: int = 100, *, flow: Flow | None = None, ascii: bool = False
) -> str:
    """The run's timeline as text bars, one line per task, grouped by worker.

    ``width`` is the width of the whole line (a terminal's columns). Each bar shows the
    time the task waited for its worker to start (``┄``: from being handed over to the
    worker's first task), waited in the queue (``░``) and ran (``█``); a task that did not
    run on a worker is a ``◆`` where it was decided. Past 200 tasks, the tasks of one name
    that ran on one worker are one line (``name ×N``). With ``flow``, tasks on the critical path are
    marked ``*``. ``ascii=True`` draws with ``:``, ``.``, ``#`` and ``o``.
    """
    wait_char, run_char, mark_char, rule = ("░", "█", "◆", "─") if not ascii else (".", "#", "o", "-")
    start_char = "┄" if not ascii else ":"
    arrow = "→" if not ascii else "->"

    def times(value: float | None) -> str:
        text = factor(value)
        return text.replace("×", "x") if ascii else text
    stats = run_stats(record, flow)
    bars = place_bars(record, stats.upstream)
    span = max(stats.wall, max((b.end for b in bars), default=0.0), 1e-3)
    critical = set(stats.critical or ())
    name_width = min(28, max([4, *(len(b.task.name) for b in bars)]))
    number_width = len(str(max([0, *(b.task.index for b in bars)])))
    status_width = 30
    head_width = number_width + name_width + 3  # "*" or " ", the number, " ", the name, " "
    columns = max(10, width - head_width - status_width - 2)
    per = span / columns

    def col(seconds: float) -> int:
        return min(columns - 1, max(0, int(seconds / per)))

    end_label = f"{span:.2f}s"
    lines = [
        f"Run {record.run_id}  flow {record.flow_name!r}  {record.state}  {duration(stats.wall, spaced=True)}  "
        f"{len(stats.workers)} worker(s)",
        f"{'':{head_width + 1}}0s{rule * max(1, columns - 3 - len(end_label))} {end_label}",
    ]
    lanes: dict[str, list[Bar]] = {w: [] for w in stats.workers}
    for bar in bars:
        lanes.setdefault(bar.lane, []).append(bar)
    if SCHEDULER_LANE in lanes:
        lanes[SCHEDULER_LANE] = lanes.pop(SCHEDULER_LANE)
    for lane, members in lanes.items():
        if not members:
            continue
        lines.append(lane)
        for bar in sorted(members, key=lambda b: (b.start, b.task.index)):
            t = bar.task
            cells = [" "] * columns
            if bar.ran:
                first, last = col(bar.start), col(max(bar.start, bar.end - 1e-9))
                for part, char in ((bar.startup(), start_char), (bar.queue_wait(), wait_char)):
                    if part is not None:
                        for c in range(col(part[0]), min(first, col(part[1]) + 1)):
                            cells[c] = char
                for c in range(first, last + 1):
                    cells[c] = run_char
            else:
                cells[col(bar.start)] = mark_char
            star = "*" if t.index in critical else " "
            name = t.name.replace("×", "x") if ascii else t.name
            name = name if len(name) <= name_width else name[: name_width - 1] + "~"
            status = t.state
            if bar.ran:
                status += f" {duration(bar.end - bar.start, spaced=True)}"
            if t.attempts > 1:
                status += f" x{t.attempts}"
            lines.append(f"{star}{t.index:>{number_width}} {name:<{name_width}} |{''.join(cells)}| {status}")
    lines.append("")
    lines.append(f"total work {duration(stats.work, spaced=True)}, wall time {duration(stats.wall, spaced=True)}")
    if stats.critical is not None:
        chain = f" {arrow} ".join(record.tasks[i].name for i in stats.critical)
        lines.append(f"critical path (*) {duration(stats.critical_time, spaced=True)}: {chain}")
        best = stats.overhead or times(stats.best_speedup)
        lines.append(f"best possible speed-up (work / critical path): {best}")
    else:
        if stats.note:
            lines.append(stats.note)
        if stats.overhead is not None:
            lines.append(f"best possible speed-up: {stats.overhead}")
        elif stats.best_speedup is not None:
            lines.append(f"best possible speed-up: at most {times(stats.best_speedup)} (work / longest task)")
    lines.append(
        f"{start_char} worker starting   {wait_char} waiting in the queue   {run_char} running   "
        f"{mark_char} did not run on a worker   * critical path"
    )
    return "\n".join(lines) + "\n"
