"""How taskloom writes numbers and tables for people: one style for the command line, the
run report and the progress display.

>>> duration(0.0123), duration(4.567, spaced=True), duration(123), duration(0.25, coarse=True)
('12.3ms', '4.57 s', '2m03s', '0.2s')
>>> size(512), size(1536), size(50 * 2**20)
('512 B', '1.5 KiB', '50.0 MiB')
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence

__all__ = ["clock", "duration", "factor", "one_line", "size", "table"]


def duration(seconds: float | None, *, coarse: bool = False, spaced: bool = False) -> str:
    """A duration: ``-`` (None), ``45us``, ``12.3ms``, ``4.56s``, ``2m03s``, ``1h02m``.

    ``spaced`` puts a space before each unit, for prose and charts (``12.3 ms``, ``2 min
    03 s``); the compact form is for table cells. ``coarse`` is for a clock that ticks (the
    progress display): tenths of a second below a minute (``0.2s``), so the width does not
    jump between units."""
    if seconds is None:
        return "-"
    gap = " " if spaced else ""
    if seconds < 60:
        if coarse:
            return f"{seconds:.1f}{gap}s"
        if seconds < 0.001:
            return f"{seconds * 1e6:.0f}{gap}us"
        if seconds < 1:
            return f"{seconds * 1000:.1f}{gap}ms"
        return f"{seconds:.2f}{gap}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}{gap}{'min ' if spaced else 'm'}{secs:02d}{gap}s"
    return f"{minutes // 60}{gap}h{gap}{minutes % 60:02d}{gap}{'min' if spaced else 'm'}"


def size(num_bytes: int) -> str:
    """An amount of data in binary units: ``512 B``, ``1.5 KiB``, ``50.0 MiB``, ``1.2 GiB``."""
    if num_bytes < 1024:
        return f"{num_bytes} B"
    value = float(num_bytes)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024 or unit == "GiB":
            break
    return f"{value:.1f} {unit}"


def factor(value: float | None) -> str:
    """A ratio such as a speed-up: ``3.2×``, or ``-`` (None)."""
    return "-" if value is None else f"{value:.1f}×"


def clock(when: float | None) -> str:
    """A moment (seconds since the epoch) in local time: ``2026-05-02 14:03:09``, or ``-``."""
    if when is None:
        return "-"
    return _dt.datetime.fromtimestamp(when).strftime("%Y-%m-%d %H:%M:%S")


def one_line(message: object, width: int | None = None) -> str:
    """``message`` on one line (line breaks become `` | ``), cut to ``width`` with ``...``."""
    text = "" if message is None else " | ".join(str(message).split("\n"))
    if width is not None and len(text) > width:
        text = text[: width - 3] + "..."
    return text


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()) -> str:
    """Rows in aligned columns under ``headers``; columns numbered in ``right`` align right."""
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(cell)) for w, cell in zip(widths, row)]
    lines = []
    for row in (headers, *rows):
        cells = [
            cell.rjust(width) if i in right else cell.ljust(width)
            for i, (cell, width) in enumerate(zip(row, widths))
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
