"""Watch a run, then look back at it: a live progress display, a picture of the flow,
a timeline in the terminal and an HTML report.

    pip install -e ".[progress]"              # from the clone: rich, for the live display
    python examples/see_the_run.py out/       # writes out/report.html and out/flow.mmd

The flow has 20 tasks: a parameter, a cached task (a cache hit from the second run on),
six downloads of which one is flaky (it fails once, then succeeds on its retry), six
cleaning steps, and a validation that fails, so the publish step after it never runs.
Tasks log through ``logging``: the records come back from the worker processes with the
run id and task name, and are printed above the progress display.
"""

from __future__ import annotations

import logging
import sys
import time
from datetime import timedelta
from pathlib import Path

import taskloom
from taskloom import Flow, Parameter, signals, task
from taskloom.executors import LokyExecutor
from taskloom.journal import default_journal
from taskloom.report import render_report, timeline_text

log = logging.getLogger("see_the_run")


@task(cache_for=timedelta(hours=1))
def load_rates() -> dict[str, float]:
    time.sleep(0.6)
    return {"EUR": 1.0, "USD": 1.08}


@task(max_retries=2, retry_delay=timedelta(seconds=0.3))
def download(day: int) -> list[float]:
    time.sleep(0.25 + 0.09 * day)
    if day == 3 and taskloom.context.task_run_count == 1:
        raise ConnectionError("server closed the connection")
    log.info("day %d: downloaded 24 rows", day)
    return [float(day * 24 + h) for h in range(24)]


@task
def clean(rows: list[float]) -> list[float]:
    time.sleep(0.2)
    return [r for r in rows if r % 7]


@task
def merge(parts: list[list[float]], rates: dict[str, float]) -> list[float]:
    time.sleep(0.4)
    return [r * rates["USD"] for part in parts for r in part]


@task
def summarize(rows: list[float]) -> str:
    time.sleep(0.3)
    return f"{len(rows)} rows, total {sum(rows):,.0f}"


@task
def validate(rows: list[float]) -> list[float]:
    time.sleep(0.25)
    log.warning("found %d rows above the limit", sum(r > 150 for r in rows))
    raise ValueError("3 rows exceed the daily limit")


@task
def publish(rows: list[float]) -> None:
    time.sleep(0.2)


@task
def archive(rows: list[float]) -> int:
    time.sleep(0.15)
    return len(rows)


@task
def notify(summary: str) -> None:
    raise signals.SKIP("notifications are off on weekends")


def build() -> Flow:
    with Flow("daily-sales") as flow:
        days = Parameter("days", default=6)
        rates = load_rates()
        parts = [clean(download(day)) for day in range(1, 7)]
        rows = merge(parts, rates)
        notify(summarize(rows))
        publish(validate(rows))
        archive(rows)
        flow.set_dependencies(days)
    return flow


def main(out: Path) -> int:
    # Records from the worker processes carry the run id, task name and attempt number.
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(
        "%(levelname)-7s %(task_name)s (attempt %(attempt)s): %(message)s",
        defaults={"task_name": "-", "attempt": "-"},
    ))
    handler.addFilter(lambda record: record.name == log.name or record.levelno >= logging.WARNING)
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    flow = build()
    executor = LokyExecutor(max_workers=3)
    flow.run(executor=executor, progress=False)  # warms the cache: a hit next time
    state = flow.run(executor=executor, progress=True)
    record = default_journal().load(str(state.run_id))
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.html").write_text(render_report(record, flow=flow), encoding="utf-8")
    flow.visualize(record, out / "flow.mmd")
    print(timeline_text(record, width=110, flow=flow))
    print(f"wrote {out / 'report.html'} and {out / 'flow.mmd'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1] if len(sys.argv) > 1 else ".")))
