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

import datetime as _dt
import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ._runview import colour, critical_path, mismatch, run_time, tint, upstream_indices
from .progress import category_of

if TYPE_CHECKING:
    from .flow import Flow
    from .journal import RunRecord, TaskRecord

__all__ = ["RunStats", "render_report", "run_stats", "timeline_text"]

#: The lane of tasks decided in the scheduler, not run by a worker.
SCHEDULER_LANE = "scheduler (did not run)"


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

    def speedup_with(self, n: int) -> float | None:
        """The most ``n`` workers could speed the run up over one: min(n, best speed-up)."""
        if self.best_speedup is None:
            return None
        return min(float(n), self.best_speedup)


def run_stats(record: RunRecord, flow: Flow | None = None) -> RunStats:
    """Total work, wall time, workers, critical path and best speed-up of ``record``."""
    tasks = record.tasks
    work = sum(run_time(t) for t in tasks)
    wall = _span(record)
    workers = _workers(tasks)
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
        path, length = critical_path(tasks, flow)
        best = work / length if length > 0 else None
        return RunStats(work, wall, workers, path, length, best, True, None, upstream)
    longest = max((run_time(t) for t in tasks), default=0.0)
    best = work / longest if longest > 0 else None
    return RunStats(work, wall, workers, None, 0.0, best, False, note, None)


# -- placing the tasks on the timeline ----------------------------------------------------------


@dataclass(slots=True)
class _Bar:
    task: TaskRecord
    bucket: str
    lane: str
    queued: float | None  # seconds from the run's start
    start: float
    end: float
    ran: bool
    row: int = 0


@dataclass(slots=True)
class _Lane:
    name: str
    bars: list[_Bar] = field(default_factory=list)
    rows: int = 1


def _span(record: RunRecord) -> float:
    ends = [t.finished for t in record.tasks if t.finished is not None]
    if record.ended is not None:
        ends.append(record.ended)
    return max([0.0, *(e - record.started for e in ends)])


def _workers(tasks: Sequence[TaskRecord]) -> list[str]:
    first: dict[str, float] = {}
    for t in tasks:
        if t.worker is not None and t.started is not None:
            first[t.worker] = min(first.get(t.worker, t.started), t.started)
    return sorted(first, key=lambda w: (first[w], w))


def _bars(record: RunRecord, upstream: list[list[int]] | None) -> list[_Bar]:
    origin = record.started
    bars: list[_Bar] = []
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

    for t in record.tasks:
        bucket = category_of(t.state)
        if t.started is not None and t.finished is not None:
            queued = None if t.queued is None else min(t.queued, t.started) - origin
            bars.append(
                _Bar(t, bucket, t.worker or "?", queued, t.started - origin, t.finished - origin, True)
            )
        else:
            at = done_at(t.index)
            bars.append(_Bar(t, bucket, SCHEDULER_LANE, None, at, at, False))
    return bars


def _lanes(bars: list[_Bar], workers: list[str], min_width: float, max_rows: int = 10) -> list[_Lane]:
    lanes = {w: _Lane(w) for w in workers}
    for bar in bars:
        lanes.setdefault(bar.lane, _Lane(bar.lane)).bars.append(bar)
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


def _left(bar: _Bar, with_wait: bool) -> float:
    return bar.queued if with_wait and bar.queued is not None else bar.start


# -- formatting -------------------------------------------------------------------------------------


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.2f} s"
    minutes, secs = divmod(value, 60)
    return f"{int(minutes)} min {secs:.0f} s"


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}×"


def _step(span: float, ticks: int = 8) -> float:
    raw = max(span, 1e-6) / ticks
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * power:
            return m * power
    return 10 * power


def _tick_label(value: float, step: float) -> str:
    decimals = 0
    while decimals < 6 and abs(round(step, decimals) - step) > 1e-9:
        decimals += 1
    return f"{value:.{decimals}f}s"


# -- the HTML report ------------------------------------------------------------------------------

_CSS = """
:root { --ink:#1f2430; --muted:#6b7280; --line:#e3e6eb; --bg:#ffffff; --panel:#f6f7f9; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
  color: var(--ink); background: var(--bg); }
main { max-width: 1280px; margin: 0 auto; padding: 22px 28px 40px; }
h1 { font-size: 22px; margin: 0 0 2px; }
h2 { font-size: 16px; margin: 26px 0 8px; }
.sub { color: var(--muted); margin: 0 0 16px; }
.pill { display: inline-block; padding: 1px 9px; border-radius: 10px; color: #fff; font-weight: 600;
  font-size: 12px; vertical-align: 3px; margin-left: 6px; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(128px, 1fr)); gap: 10px; }
.card { background: var(--panel); border: 1px solid var(--line); border-radius: 8px; padding: 9px 12px; }
.card b { display: block; font-size: 19px; }
.card span { color: var(--muted); font-size: 12px; }
.legend { display: flex; flex-wrap: wrap; gap: 6px 16px; margin: 10px 0 6px; font-size: 12.5px;
  color: #374151; }
.legend .item { display: inline-flex; align-items: center; gap: 6px; cursor: pointer; user-select: none; }
.legend .item.off { opacity: .35; }
.legend svg { vertical-align: middle; }
.chart { border: 1px solid var(--line); border-radius: 8px; overflow-x: auto; background: #fff; }
#gantt { display: block; }
#gantt text { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; }
#gantt .lane-name { font-size: 12px; font-weight: 600; fill: #374151; }
#gantt .axis { font-size: 11px; fill: var(--muted); }
#gantt .grid { stroke: #eef0f3; }
#gantt .label { font-size: 10.5px; fill: #fff; pointer-events: none; }
#gantt .label.dark { fill: #1f2430; }
#gantt .badge { font-size: 10px; font-weight: 700; fill: #b45309; }
#gantt .task { cursor: default; }
#gantt .task.dim { opacity: .15; }
#gantt .task.hot .bar { stroke: #111; stroke-width: 2; }
#gantt .critical .bar { stroke: #111; stroke-width: 2.2; }
#gantt .retried .bar { stroke-dasharray: 4 2; stroke: #b45309; stroke-width: 1.6; }
#gantt .critical.retried .bar { stroke: #111; }
#gantt .critpath { stroke: #111; stroke-width: 1.4; stroke-dasharray: 3 3; fill: none; }
.notes { color: #4b5563; font-size: 13px; }
.notes li { margin: 3px 0; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { text-align: left; padding: 5px 8px; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--panel); font-weight: 600; position: sticky; top: 0; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.msg { color: #4b5563; max-width: 460px; overflow-wrap: anywhere; }
tr.hot td { background: #fff7d6; }
.dot { display: inline-block; width: 10px; height: 10px; border-radius: 3px; margin-right: 6px;
  vertical-align: -1px; }
.speed td, .speed th { width: auto; }
.speed { width: auto; }
footer { margin-top: 26px; color: var(--muted); font-size: 12px; }
"""

_JS = """
(function () {
  var svg = document.getElementById('gantt');
  var bars = svg.querySelectorAll('g.task');
  var rows = {};
  document.querySelectorAll('#tasks tr[data-index]').forEach(function (row) {
    rows[row.getAttribute('data-index')] = row;
  });
  var groups = {};
  bars.forEach(function (g) { groups[g.getAttribute('data-index')] = g; });
  function hot(index, on) {
    var g = groups[index], row = rows[index];
    if (g) g.classList.toggle('hot', on);
    if (row) row.classList.toggle('hot', on);
  }
  bars.forEach(function (g) {
    var i = g.getAttribute('data-index');
    g.addEventListener('mouseenter', function () { hot(i, true); });
    g.addEventListener('mouseleave', function () { hot(i, false); });
  });
  Object.keys(rows).forEach(function (i) {
    rows[i].addEventListener('mouseenter', function () { hot(i, true); });
    rows[i].addEventListener('mouseleave', function () { hot(i, false); });
  });
  document.querySelectorAll('.legend .item[data-bucket]').forEach(function (item) {
    item.addEventListener('click', function () {
      var bucket = item.getAttribute('data-bucket');
      var off = item.classList.toggle('off');
      bars.forEach(function (g) {
        if (g.getAttribute('data-bucket') === bucket) g.classList.toggle('dim', off);
      });
    });
  });
  document.documentElement.setAttribute('data-bars', String(bars.length));
  var count = document.getElementById('bar-count');
  if (count) count.textContent = bars.length + ' tasks drawn';
})();
"""

_ROW = 22
_LANE_GAP = 10
_LEFT = 168
_CHART = 1040
_RIGHT = 96
_TOP = 28


def _wait_pattern() -> str:
    return (
        '<pattern id="waiting" width="6" height="6" patternUnits="userSpaceOnUse" '
        'patternTransform="rotate(45)"><rect width="6" height="6" fill="#eceff3"/>'
        '<line x1="0" y1="0" x2="0" y2="6" stroke="#9ca3af" stroke-width="2"/></pattern>'
    )


def _svg(record: RunRecord, stats: RunStats) -> str:
    bars = _bars(record, stats.upstream)
    span = max(stats.wall, max((b.end for b in bars), default=0.0), 1e-3)
    scale = _CHART / span
    min_width = 7 / scale
    lanes = _lanes(bars, stats.workers, min_width)
    height = _TOP + sum(lane.rows * _ROW + _LANE_GAP for lane in lanes) + 8
    width = _LEFT + _CHART + _RIGHT
    critical = set(stats.critical or ())
    out = [
        f'<svg id="gantt" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'style="width:100%;min-width:{width * 0.7:.0f}px;height:auto" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="timeline of run {html.escape(record.run_id)}">',
        f"<defs>{_wait_pattern()}</defs>",
    ]
    step = _step(span)
    tick = 0.0
    while tick <= span + 1e-9:
        x = _LEFT + tick * scale
        out.append(f'<line class="grid" x1="{x:.1f}" y1="{_TOP - 6}" x2="{x:.1f}" y2="{height - 4}"/>')
        out.append(f'<text class="axis" x="{x:.1f}" y="{_TOP - 12}" text-anchor="middle">{_tick_label(tick, step)}</text>')
        tick += step
    y = _TOP
    centre: dict[int, tuple[float, float, float]] = {}
    for n, lane in enumerate(lanes):
        lane_height = lane.rows * _ROW
        if n % 2:
            out.append(f'<rect x="0" y="{y - 3}" width="{width}" height="{lane_height + 6}" fill="#fafbfc"/>')
        out.append(f'<line x1="0" y1="{y + lane_height + _LANE_GAP / 2:.1f}" x2="{width}" '
                   f'y2="{y + lane_height + _LANE_GAP / 2:.1f}" stroke="#e3e6eb"/>')
        name = lane.name if len(lane.name) <= 24 else lane.name[:23] + "…"
        out.append(f'<text class="lane-name" x="10" y="{y + 15}">{html.escape(name)}'
                   f'<title>{html.escape(lane.name)}</title></text>')
        busy = sum(b.end - b.start for b in lane.bars if b.ran)
        if lane.name != SCHEDULER_LANE and lane.rows * _ROW >= 2 * _ROW:
            out.append(f'<text class="axis" x="10" y="{y + 30}">{len(lane.bars)} tasks · busy '
                       f'{100 * busy / span:.0f}%</text>')
        for bar in sorted(lane.bars, key=lambda b: b.task.index):
            out.append(_bar_svg(bar, y + bar.row * _ROW, scale, bar.task.index in critical, centre))
        y += lane_height + _LANE_GAP
    if stats.critical and len(stats.critical) > 1:
        # Join each task of the critical path to the next: from where one ends to where
        # the next starts.
        steps = []
        for a, b in zip(stats.critical, stats.critical[1:]):
            if a in centre and b in centre:
                _, right, y0 = centre[a]
                left, _, y1 = centre[b]
                steps.append(f"M{right:.1f},{y0:.1f} L{max(left, right):.1f},{y1:.1f}")
        if steps:
            out.append(f'<path class="critpath" d="{" ".join(steps)}"/>')
    out.append("</svg>")
    return "\n".join(out)


def _bar_svg(bar: _Bar, top: float, scale: float, critical: bool,
             centre: dict[int, tuple[float, float, float]]) -> str:
    t = bar.task
    strong = colour(bar.bucket)
    classes = ["task", f"s-{bar.bucket}"]
    if critical:
        classes.append("critical")
    if t.attempts > 1:
        classes.append("retried")
    tip = [f"{t.name} (task {t.index}): {t.state}"]
    if bar.ran:
        tip.append(f"worker {t.worker}")
        if bar.queued is not None:
            tip.append(f"waited {_seconds(bar.start - bar.queued)} in the queue")
        tip.append(f"ran {_seconds(bar.end - bar.start)} (from +{bar.start:.3f}s to +{bar.end:.3f}s)")
    else:
        tip.append("did not run on a worker (decided by the scheduler)")
    if t.attempts > 1:
        tip.append(f"{t.attempts} attempts (the last one is drawn)")
    if critical:
        tip.append("on the critical path")
    if t.message:
        tip.append(t.message if len(t.message) < 400 else t.message[:400] + "…")
    parts = [
        f'<g class="{" ".join(classes)}" data-index="{t.index}" data-bucket="{bar.bucket}" '
        f'data-state="{html.escape(t.state)}" data-name="{html.escape(t.name)}">',
        f"<title>{html.escape(chr(10).join(tip))}</title>",
    ]
    mid = top + _ROW / 2 - 1
    x0 = _LEFT + bar.start * scale
    if bar.ran:
        if bar.queued is not None and bar.start - bar.queued > 0:
            xq = _LEFT + bar.queued * scale
            parts.append(f'<rect class="wait" x="{xq:.1f}" y="{mid - 3:.1f}" width="{x0 - xq:.1f}" '
                         f'height="6" rx="1.5" fill="url(#waiting)"/>')
        w = max(2.0, (bar.end - bar.start) * scale)
        parts.append(f'<rect class="bar" x="{x0:.1f}" y="{mid - 7:.1f}" width="{w:.1f}" height="14" '
                     f'rx="3" fill="{strong}"/>')
        if w > 9 * 6.3 or w > len(t.name) * 6.3 + 8:
            room = int((w - 8) / 6.3)
            label = t.name if len(t.name) <= room else t.name[: max(1, room - 1)] + "…"
            if room >= 2:
                dark = " dark" if bar.bucket in ("running", "pending", "skipped") else ""
                parts.append(f'<text class="label{dark}" x="{x0 + 4:.1f}" y="{mid + 3.6:.1f}">{html.escape(label)}</text>')
        right = x0 + w
    else:
        # A marker: a diamond where the task was decided.
        r = 6.0
        cx = x0 + r
        parts.append(
            f'<path class="bar marker" d="M{cx:.1f},{mid - r:.1f} L{cx + r:.1f},{mid:.1f} '
            f'L{cx:.1f},{mid + r:.1f} L{cx - r:.1f},{mid:.1f} Z" fill="{strong}" stroke="{tint(strong, 0.2)}"/>'
        )
        parts.append(f'<text class="label dark" x="{cx + r + 3:.1f}" y="{mid + 3.6:.1f}" '
                     f'style="font-size:10px">{html.escape(t.name[:16])}</text>')
        right = cx + r
    if t.attempts > 1:
        parts.append(f'<text class="badge" x="{right + 3:.1f}" y="{mid + 3.5:.1f}">×{t.attempts}</text>')
    centre[t.index] = (x0, right, mid)
    parts.append("</g>")
    return "".join(parts)


def _legend(buckets: Sequence[str]) -> str:
    names = {
        "succeeded": "succeeded", "failed": "failed", "cached": "cache hit", "skipped": "skipped",
        "retrying": "retrying", "paused": "paused", "running": "running", "pending": "not run",
    }
    items = [
        f'<span class="item" data-bucket="{b}" title="click to dim or show">'
        f'<span class="dot" style="background:{colour(b)}"></span>{names.get(b, b)}</span>'
        for b in buckets
    ]
    items.append(
        '<span class="item"><svg width="28" height="10"><defs>' + _wait_pattern().replace('id="waiting"', 'id="waiting-key"')
        + '</defs><rect width="28" height="6" y="2" fill="url(#waiting-key)"/></svg>waiting in the queue</span>'
    )
    items.append('<span class="item"><svg width="28" height="14"><rect x="1" y="1" width="26" height="12" rx="3" '
                 'fill="#2e9d5b"/></svg>running (last attempt)</span>')
    items.append('<span class="item"><svg width="16" height="14"><path d="M8,1 L14,7 L8,13 L2,7 Z" '
                 'fill="#3a86c8"/></svg>did not run on a worker</span>')
    items.append('<span class="item"><svg width="28" height="14"><rect x="1" y="1" width="26" height="12" rx="3" '
                 'fill="#fff" stroke="#111" stroke-width="2.2"/></svg>critical path</span>')
    items.append('<span class="item"><svg width="28" height="14"><rect x="1" y="1" width="26" height="12" rx="3" '
                 'fill="#fff" stroke="#b45309" stroke-dasharray="4 2" stroke-width="1.6"/></svg>'
                 '<b style="color:#b45309">×N</b>&nbsp;retried</span>')
    return '<div class="legend">' + "".join(items) + "</div>"


def _speed_table(stats: RunStats) -> str:
    if stats.best_speedup is None:
        return "<p class=\"notes\">No task ran on a worker, so there is no speed-up to speak of.</p>"
    counts = sorted({1, 2, 4, 8, 16, 32, len(stats.workers) or 1})
    shown = []
    for n in counts:
        shown.append(n)
        if n >= stats.best_speedup:
            break
    bound = "" if stats.exact else " at most"
    head = "".join(f"<th>{n}{' (this run)' if n == len(stats.workers) else ''}</th>" for n in shown)
    cells = "".join(f'<td class="num">{bound} {_times(stats.speedup_with(n))}</td>' for n in shown)
    times = "".join(
        f'<td class="num">≥ {_seconds(max(stats.work / n, stats.critical_time))}</td>'
        for n in shown
    ) if stats.exact else ""
    rows = f"<tr><th>workers</th>{head}</tr><tr><th>best speed-up</th>{cells}</tr>"
    if times:
        rows += f"<tr><th>shortest possible run</th>{times}</tr>"
    return f'<table class="speed">{rows}</table>'


def render_report(record: RunRecord, flow: Flow | None = None, *, title: str | None = None) -> str:
    """The run as one self-contained HTML page (inline CSS, script and SVG; no network).

    Args:
        record: the run, from the journal (``default_journal().load(run_id)``).
        flow: the flow that ran, to find the critical path (the journal does not record
            edges). Without it, or if it no longer matches the run, nothing is highlighted
            and the page says why.
        title: the page's title (default: the flow's name and the run id).
    """
    stats = run_stats(record, flow)
    bars_present = [category_of(t.state) for t in record.tasks]
    order = ("succeeded", "failed", "cached", "skipped", "retrying", "paused", "running", "pending")
    buckets = [b for b in order if b in bars_present]
    state_bucket = category_of(record.state)
    heading = title or f"{record.flow_name}"
    started = _dt.datetime.fromtimestamp(record.started).astimezone()
    retried = sum(1 for t in record.tasks if t.attempts > 1)
    counts = {b: bars_present.count(b) for b in buckets}
    e = html.escape

    cards = [
        (e(record.state), "final state"),
        (_seconds(stats.wall), "wall time"),
        (str(len(record.tasks)), "tasks: " + ", ".join(f"{n} {b}" for b, n in counts.items())),
        (str(len(stats.workers)), "worker processes"),
        (_seconds(stats.work), "total work (run time of every task)"),
    ]
    if stats.critical is not None:
        cards.append((_seconds(stats.critical_time), f"critical path ({len(stats.critical)} tasks)"))
        cards.append((_times(stats.best_speedup), "best possible speed-up (work / critical path)"))
    else:
        cards.append((("≤ " + _times(stats.best_speedup)) if stats.best_speedup else "-",
                      "best speed-up (bound: work / longest task)"))
    cards.append((_times(stats.work / stats.wall) if stats.wall > 0 else "-", "achieved parallelism (work / wall)"))
    cards_html = "".join(f'<div class="card"><b>{v}</b><span>{label}</span></div>' for v, label in cards)

    notes: list[str] = []
    if stats.critical:
        chain = " → ".join(e(record.tasks[i].name) for i in stats.critical)
        notes.append(f"<b>Critical path</b> ({_seconds(stats.critical_time)}): {chain}. However many workers "
                     f"run it, this run cannot take less than that; it is outlined in black in the chart.")
    if stats.note:
        notes.append(e(stats.note))
    if retried:
        notes.append(f"{retried} task(s) retried (marked ×N): the journal keeps the timings of the last attempt "
                     "only, so earlier attempts are counted but not drawn.")
    if any(t.started is None for t in record.tasks):
        where = ("when their upstream tasks were done" if stats.upstream is not None
                 else "at the start of the run (their upstream tasks are unknown without the flow)")
        notes.append(f"Tasks that did not run on a worker (cache hits, skips, parameters, failed triggers) "
                     f"are diamonds in the last lane, placed {where}.")
    notes.append("Waiting in the queue is the time from being handed to the executor to starting on a worker "
                 "(a follow-on task run in the same batch as its upstream task waits for none).")

    table_rows = []
    for t in record.tasks:
        b = category_of(t.state)
        waited = None if t.queued is None or t.started is None else max(0.0, t.started - t.queued)
        ran = None if t.started is None else run_time(t)
        crit = " ◆" if stats.critical and t.index in stats.critical else ""
        table_rows.append(
            f'<tr data-index="{t.index}"><td class="num">{t.index}</td><td>{e(t.name)}{crit}</td>'
            f'<td><span class="dot" style="background:{colour(b)}"></span>{e(t.state)}</td>'
            f"<td>{e(t.worker or '-')}</td><td class=\"num\">{t.attempts}</td>"
            f'<td class="num">{_seconds(waited)}</td><td class="num">{_seconds(ran)}</td>'
            f'<td class="msg">{e(t.message or "")}</td></tr>'
        )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="taskloom">
<title>{e(heading)} - run {e(record.run_id)}</title>
<style>{_CSS}</style>
</head>
<body>
<main>
<h1>{e(heading)}<span class="pill" style="background:{colour(state_bucket)}">{e(record.state)}</span></h1>
<p class="sub">run <code>{e(record.run_id)}</code> · started {started:%Y-%m-%d %H:%M:%S %Z}
{(" · " + e(record.message)) if record.message else ""}{(" · resumed from " + e(record.resumed_from)) if record.resumed_from else ""}</p>
<div class="cards">{cards_html}</div>
<h2>Timeline</h2>
{_legend(buckets)}
<div class="chart">
{_svg(record, stats)}
</div>
<ul class="notes">{"".join(f"<li>{n}</li>" for n in notes)}</ul>
<h2>Speed-up with more workers</h2>
{_speed_table(stats)}
<h2>Tasks</h2>
<table id="tasks">
<thead><tr><th>#</th><th>task</th><th>state</th><th>worker</th><th>attempts</th><th>waited</th><th>ran</th><th>message</th></tr></thead>
<tbody>
{"".join(table_rows)}
</tbody>
</table>
<footer>taskloom run report · <span id="bar-count">{len(record.tasks)} tasks</span> · flow {e(record.flow_name)}{(" from " + e(record.source)) if record.source else ""}</footer>
</main>
<script>{_JS}</script>
</body>
</html>
"""


# -- the text timeline -------------------------------------------------------------------------------


def timeline_text(
    record: RunRecord, width: int = 100, *, flow: Flow | None = None, ascii: bool = False
) -> str:
    """The run's timeline as text bars, one line per task, grouped by worker.

    ``width`` is the width of the whole line (a terminal's columns). Each bar shows the
    time the task waited in the queue (``░``) and ran (``█``); a task that did not run on
    a worker is a ``◆`` where it was decided. With ``flow``, tasks on the critical path are
    marked ``*``. ``ascii=True`` draws with ``.``, ``#`` and ``o``.
    """
    wait_char, run_char, mark_char, rule = ("░", "█", "◆", "─") if not ascii else (".", "#", "o", "-")
    arrow = "→" if not ascii else "->"

    def times(value: float | None) -> str:
        text = _times(value)
        return text.replace("×", "x") if ascii else text
    stats = run_stats(record, flow)
    bars = _bars(record, stats.upstream)
    span = max(stats.wall, max((b.end for b in bars), default=0.0), 1e-3)
    critical = set(stats.critical or ())
    name_width = min(28, max([4, *(len(t.name) for t in record.tasks)]))
    number_width = len(str(max(0, len(record.tasks) - 1)))
    status_width = 30
    head_width = number_width + name_width + 3  # "*" or " ", the number, " ", the name, " "
    columns = max(10, width - head_width - status_width - 2)
    per = span / columns

    def col(seconds: float) -> int:
        return min(columns - 1, max(0, int(seconds / per)))

    end_label = f"{span:.2f}s"
    lines = [
        f"Run {record.run_id}  flow {record.flow_name!r}  {record.state}  {_seconds(stats.wall)}  "
        f"{len(stats.workers)} worker(s)",
        f"{'':{head_width + 1}}0s{rule * max(1, columns - 3 - len(end_label))} {end_label}",
    ]
    lanes: dict[str, list[_Bar]] = {w: [] for w in stats.workers}
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
                if bar.queued is not None:
                    for c in range(col(bar.queued), first):
                        cells[c] = wait_char
                for c in range(first, last + 1):
                    cells[c] = run_char
            else:
                cells[col(bar.start)] = mark_char
            star = "*" if t.index in critical else " "
            name = t.name if len(t.name) <= name_width else t.name[: name_width - 1] + "~"
            status = t.state
            if bar.ran:
                status += f" {_seconds(bar.end - bar.start)}"
            if t.attempts > 1:
                status += f" x{t.attempts}"
            lines.append(f"{star}{t.index:>{number_width}} {name:<{name_width}} |{''.join(cells)}| {status}")
    lines.append("")
    lines.append(f"total work {_seconds(stats.work)}, wall time {_seconds(stats.wall)}")
    if stats.critical is not None:
        chain = f" {arrow} ".join(record.tasks[i].name for i in stats.critical)
        lines.append(f"critical path (*) {_seconds(stats.critical_time)}: {chain}")
        lines.append(f"best possible speed-up (work / critical path): {times(stats.best_speedup)}")
    else:
        if stats.note:
            lines.append(stats.note)
        if stats.best_speedup is not None:
            lines.append(f"best possible speed-up: at most {times(stats.best_speedup)} (work / longest task)")
    lines.append(f"{wait_char} waiting in the queue   {run_char} running   {mark_char} did not run on a worker")
    return "\n".join(lines) + "\n"
