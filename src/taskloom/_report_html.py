"""The run report as one self-contained HTML page: cards of figures, a Gantt chart in SVG
(one lane per worker), a speed-up table and a table of tasks. The figures come from
``_timeline``; the page's CSS and script are package data (``_assets/report.css`` and
``report.js``), inlined so the page opens offline.
"""

from __future__ import annotations

import datetime as _dt
import functools
import html
import importlib.resources
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ._runview import colour, mapped_outcome, run_time, tint
from ._text import duration, factor
from ._timeline import CHILD_BARS, SCHEDULER_LANE, Bar, RunStats, place_bars, run_stats, stack_lanes
from .progress import category_of

if TYPE_CHECKING:
    from .flow import Flow
    from .journal import RunRecord

__all__ = ["render_report"]


@functools.cache
def _asset(name: str) -> str:
    return (importlib.resources.files("taskloom") / "_assets" / name).read_text(encoding="utf-8")


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
    bars = place_bars(record, stats.upstream)
    span = max(stats.wall, max((b.end for b in bars), default=0.0), 1e-3)
    scale = _CHART / span
    min_width = 7 / scale
    lanes = stack_lanes(bars, stats.workers, min_width)
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


def _bar_svg(bar: Bar, top: float, scale: float, critical: bool,
             centre: dict[int, tuple[float, float, float]]) -> str:
    t = bar.task
    strong = colour(bar.bucket)
    classes = ["task", f"s-{bar.bucket}"]
    if critical:
        classes.append("critical")
    if t.attempts > 1:
        classes.append("retried")
    tip = [f"{t.label} (task {t.index}): {t.state}"]
    if bar.ran:
        tip.append(f"worker {t.worker}")
        up, queue = bar.startup(), bar.queue_wait()
        if up is not None:
            tip.append(f"waited {duration(up[1] - up[0], spaced=True)} for the worker to start")
        if queue is not None:
            tip.append(f"waited {duration(queue[1] - queue[0], spaced=True)} in the queue")
        tip.append(f"ran {duration(bar.end - bar.start, spaced=True)} (from +{bar.start:.3f}s to +{bar.end:.3f}s)")
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
        up, queue = bar.startup(), bar.queue_wait()
        if up is not None:  # the worker was starting: a dotted line, not the queue's hatching
            xa, xb = _LEFT + up[0] * scale, _LEFT + up[1] * scale
            parts.append(f'<line class="startup" x1="{xa:.1f}" y1="{mid:.1f}" x2="{xb:.1f}" y2="{mid:.1f}" '
                         f'stroke="#9ca3af" stroke-width="2" stroke-dasharray="2 3"/>')
        if queue is not None:
            xq = _LEFT + queue[0] * scale
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
        '<span class="item"><svg width="28" height="10"><line x1="1" y1="5" x2="27" y2="5" stroke="#9ca3af" '
        'stroke-width="2" stroke-dasharray="2 3"/></svg>worker starting</span>'
    )
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
    if stats.overhead is not None:
        return f'<p class="notes">Speed-up with more workers: {html.escape(stats.overhead)}.</p>'
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
    cells = "".join(f'<td class="num">{bound} {factor(stats.speedup_with(n))}</td>' for n in shown)
    times = "".join(
        f'<td class="num">≥ {duration(max(stats.work / n, stats.critical_time), spaced=True)}</td>'
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
        (duration(stats.wall, spaced=True), "wall time"),
        (str(len(record.tasks)), "tasks: " + ", ".join(f"{n} {b}" for b, n in counts.items())),
        (str(len(stats.workers)), "worker processes"),
        (duration(stats.work, spaced=True), "total work (run time of every task)"),
    ]
    if stats.critical is not None:
        cards.append((duration(stats.critical_time, spaced=True), f"critical path ({len(stats.critical)} tasks)"))
        cards.append((factor(stats.best_speedup) if stats.overhead is None else "not meaningful",
                      "best possible speed-up (work / critical path)"))
    else:
        cards.append((("≤ " + factor(stats.best_speedup)) if stats.best_speedup and stats.overhead is None
                      else "not meaningful" if stats.overhead else "-",
                      "best speed-up (bound: work / longest task)"))
    cards.append((factor(stats.work / stats.wall) if stats.wall > 0 and stats.overhead is None
                  else "not meaningful" if stats.overhead else "-", "achieved parallelism (work / wall)"))
    cards_html = "".join(f'<div class="card"><b>{v}</b><span>{label}</span></div>' for v, label in cards)

    notes: list[str] = []
    if stats.overhead:
        notes.append(f"<b>Speed-up figures</b>: {e(stats.overhead)}. Tasks this short are dominated by "
                     "starting workers and handing tasks over; more workers would not make the run faster.")
    if stats.critical:
        chain = " → ".join(e(record.tasks[i].name) for i in stats.critical)
        notes.append(f"<b>Critical path</b> ({duration(stats.critical_time, spaced=True)}): {chain}. However many workers "
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
                 "that was up (a follow-on task run in the same batch as its upstream task waits for none); "
                 "before a worker's first task starts, the wait is the worker starting (a dotted line). "
                 "The <b>waited</b> column counts both. Tasks on the critical path are marked * in the table.")
    if len(record.tasks) > CHILD_BARS:
        notes.append(f"{len(record.tasks)} tasks: the tasks of one name that ran on one worker are drawn as one bar "
                     "(<b>name ×N</b>, from the first one's start to the last one's end); the table lists each.")

    table_rows = []
    for t in record.tasks:
        b = category_of(t.state)
        message = t.message or ""
        children = record.children.get(t.index)
        if children is not None:  # a mapped task: as its children ended
            outcome = mapped_outcome([c.state for c in children])
            b, message = outcome.bucket, outcome.message or ""
        waited = None if t.queued is None or t.started is None else max(0.0, t.started - t.queued)
        ran = None if t.started is None else run_time(t)
        crit = (' <b class="crit" title="on the critical path">*</b>'
                if stats.critical and t.index in stats.critical else "")
        table_rows.append(
            f'<tr data-index="{t.index}"><td class="num">{t.index}</td><td>{e(t.label)}{crit}</td>'
            f'<td><span class="dot" style="background:{colour(b)}"></span>{e(t.state)}</td>'
            f"<td>{e(t.worker or '-')}</td><td class=\"num\">{t.attempts}</td>"
            f'<td class="num">{duration(waited, spaced=True)}</td><td class="num">{duration(ran, spaced=True)}</td>'
            f'<td class="msg">{e(message)}</td></tr>'
        )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="taskloom">
<title>{e(heading)} - run {e(record.run_id)}</title>
<style>{_asset("report.css")}</style>
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
<script>{_asset("report.js")}</script>
</body>
</html>
"""
