"""Make the README's pictures of the "See the run" section (docs/report.png and
docs/progress.png) from a real run of ``examples/see_the_run.py`` on a LokyExecutor.

    python docs/make_screenshots.py          # needs rich, and Debian's chromium

The progress picture is the live display at the moment a dozen tasks are done, as the
terminal shows it (log lines above the display), recorded with rich and drawn by
headless Chromium; the report picture is the HTML report of the same run.
"""

from __future__ import annotations

import importlib
import io
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

see_the_run: Any = importlib.import_module("see_the_run")

from taskloom.executors import LokyExecutor  # noqa: E402
from taskloom.journal import default_journal  # noqa: E402
from taskloom.progress import RichProgress  # noqa: E402
from taskloom.report import render_report  # noqa: E402
from taskloom.states import State  # noqa: E402

WIDTH = 92


class Snapshot(RichProgress):
    """A RichProgress that records the terminal as it looks when ``at`` tasks are done."""

    def __init__(self, at: int, lines: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.at = at
        self.lines = lines
        self.svg: str | None = None

    def task_changed(self, key: int, task_name: str, state: State[Any]) -> None:
        super().task_changed(key, task_name, state)
        if self.svg is None and self._tally.done >= self.at and self.counts["retrying"]:
            screen = Console(record=True, width=WIDTH, file=io.StringIO(), force_terminal=True,
                             color_system="truecolor")
            screen.print("$ python examples/see_the_run.py", style="bold")
            for line in self.lines:
                screen.print(line, markup=False, highlight=False)
            screen.print(self.renderable())
            self.svg = screen.export_svg(title="taskloom: flow.run(progress=True)")


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise SystemExit("needs Chromium: apt-get install chromium")


def screenshot(page: Path, png: Path, width: int, height: int) -> None:
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={profile}", "--hide-scrollbars",
             f"--window-size={width},{height}", f"--screenshot={png}", page.as_uri()],
            check=True, capture_output=True, timeout=120,
        )


def main() -> None:
    os.environ.setdefault("TASKLOOM_HOME", tempfile.mkdtemp(prefix="taskloom-shots-"))
    lines: list[str] = []
    formatter = logging.Formatter("%(levelname)-7s %(task_name)s (attempt %(attempt)s): %(message)s",
                                  defaults={"task_name": "-", "attempt": "-"})

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.name == see_the_run.log.name or record.levelno >= logging.WARNING:
                lines.append(formatter.format(record).splitlines()[0])

    logging.basicConfig(level=logging.INFO, handlers=[Keep()])
    flow = see_the_run.build()
    executor = LokyExecutor(max_workers=3)
    flow.run(executor=executor)  # warms the cache: the next run has a cache hit
    lines.clear()
    snapshot = Snapshot(6, lines, console=Console(file=io.StringIO(), width=WIDTH))
    state = flow.run(executor=executor, progress=snapshot)
    record = default_journal().load(str(state.run_id))
    docs = ROOT / "docs"
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.html"
        report.write_text(render_report(record, flow=flow), encoding="utf-8")
        screenshot(report, docs / "report.png", 1320, 1010)
        assert snapshot.svg is not None
        page = Path(tmp) / "progress.html"
        found = re.search(r'viewBox="0 0 ([0-9.]+) ([0-9.]+)"', snapshot.svg)
        assert found is not None
        width, height = float(found.group(1)), float(found.group(2))
        page.write_text(
            "<!DOCTYPE html><html><body style='margin:0;background:#fff'>"
            f"<div style='width:{width:.0f}px'>{snapshot.svg}</div></body></html>",
            encoding="utf-8",
        )
        screenshot(page, docs / "progress.png", round(width), round(height))
    print("wrote docs/report.png and docs/progress.png")


if __name__ == "__main__":
    main()
