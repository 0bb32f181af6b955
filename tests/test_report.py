"""After a run: the HTML report (checked in a real headless Chromium) and the text timeline."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import taskloom
from taskloom import Flow, Parameter, signals, task
from taskloom.caching import MemoryCacheStore
from taskloom.executors import LokyExecutor
from taskloom.journal import RunRecord, TaskRecord, default_journal
from taskloom.report import SCHEDULER_LANE, render_report, run_stats, timeline_text


@task
def nap(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@task
def nap_after(before: float, seconds: float) -> float:
    time.sleep(seconds)
    return before + seconds


@task(max_retries=1, retry_delay=timedelta(seconds=0))
def flaky(x: float) -> float:
    if taskloom.context.task_run_count == 1:
        raise ConnectionError("first attempt fails")
    return x


@task(cache_for=timedelta(hours=1))
def rates() -> float:
    return 1.08


@task
def broken(x: float, rate: float) -> float:
    raise ValueError("3 rows exceed the limit")


@task
def publish(x: float) -> None:
    return None


@task
def optional() -> None:
    raise signals.SKIP("nothing to do")


def build() -> Flow:
    with Flow("report-demo") as flow:
        n = Parameter("n", default=0.01)
        long_chain = nap_after(nap(0.2), 0.2)
        short = nap(n)
        publish(broken(flaky(short), rates()))
        optional()
        flow.set_dependencies(long_chain)
    return flow


@pytest.fixture(scope="module")
def loky_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Flow, RunRecord]:
    """A real run on a process pool: a retry, a cache hit, a failure, a skip, a chain
    (made once for the module, in a home of its own)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TASKLOOM_HOME", str(tmp_path_factory.mktemp("report") / "home"))
        flow = build()
        store = MemoryCacheStore()
        executor = LokyExecutor(max_workers=2)
        with Flow("report-demo") as warm:  # the same cache key: flow name and task name
            rates()
        warm.run(cache_store=store, journal=False)  # fills the cache: a hit in the run
        state = flow.run(executor=executor, cache_store=store)
        return flow, default_journal().load(str(state.run_id))


def _by_name(record: RunRecord) -> dict[str, TaskRecord]:
    return {t.name: t for t in record.tasks if t.name != "nap"}


def test_the_run_has_what_the_report_shows(loky_run: tuple[Flow, RunRecord]) -> None:
    _, record = loky_run
    tasks = _by_name(record)
    assert tasks["flaky"].attempts == 2
    assert tasks["rates"].state == "Cached"
    assert tasks["broken"].state == "Failed"
    assert tasks["publish"].state == "TriggerFailed"
    assert tasks["optional"].state == "Skipped"
    assert all((t.worker or "").startswith("loky:") for t in record.tasks if t.started is not None)


def test_critical_path_and_speedup_come_from_the_flow(loky_run: tuple[Flow, RunRecord]) -> None:
    flow, record = loky_run
    stats = run_stats(record, flow)
    assert stats.critical is not None and stats.exact
    names = [record.tasks[i].name for i in stats.critical]
    assert names[-2:] == ["nap[0]", "nap_after"]  # copies of one task are numbered
    assert 0.38 < stats.critical_time < stats.work
    assert stats.best_speedup == pytest.approx(stats.work / stats.critical_time)
    assert stats.speedup_with(1) == 1.0
    without = run_stats(record)
    assert without.critical is None and not without.exact
    assert without.note is not None and "does not record the flow's edges" in without.note


def test_report_is_one_self_contained_page_with_a_bar_per_task(loky_run: tuple[Flow, RunRecord]) -> None:
    flow, record = loky_run
    page = render_report(record, flow=flow)
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing to fetch
    assert "<link" not in page and "@import" not in page
    assert page.count('<g class="task ') == len(record.tasks)
    critical = re.findall(r'<g class="task [^"]*\bcritical\b', page)
    assert len(critical) == len(run_stats(record, flow).critical or ()) == 2
    assert 'class="critpath"' in page
    assert len(re.findall(r'<g class="task [^"]*\bretried\b', page)) == 1 and ">×2</text>" in page
    assert 'data-bucket="cached"' in page and 'data-bucket="failed"' in page
    assert "3 rows exceed the limit" in page
    assert SCHEDULER_LANE in page
    assert "best possible speed-up" in page


def test_report_without_the_flow_says_why_nothing_is_highlighted(loky_run: tuple[Flow, RunRecord]) -> None:
    _, record = loky_run
    page = render_report(record)
    assert "Critical path not shown: the run journal does not record the flow&#x27;s edges" in page
    assert not re.search(r'<g class="task [^"]*\bcritical\b', page)
    assert 'class="critpath"' not in page
    with Flow("another") as other:
        nap(1.0)
    assert "Critical path not shown: the flow &#x27;another&#x27; has 1 tasks" in render_report(record, flow=other)


def _record(tasks: list[TaskRecord], state: str = "Success", ended: float | None = 10.0) -> RunRecord:
    return RunRecord("run-1", "made <up>", None, {}, 0.0, ended, state, None, tasks=tasks)


def test_report_escapes_names_and_handles_an_empty_or_unfinished_run() -> None:
    evil = TaskRecord(0, "<script>alert(1)</script>", "Failed", "<img src=x onerror=alert(1)>",
                      0.0, 1.0, 2.0, 1, "loky:1")
    page = render_report(_record([evil]))
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    empty = render_report(_record([], state="Running", ended=None))
    assert empty.count('<g class="task ') == 0 and "made &lt;up&gt;" in empty


def test_timeline_text_draws_wait_and_run_per_task_grouped_by_worker() -> None:
    tasks = [
        TaskRecord(0, "extract", "Success", None, 0.0, 0.0, 5.0, 1, "loky:1"),
        TaskRecord(1, "transform", "Success", None, 0.0, 5.0, 10.0, 3, "loky:1"),
        TaskRecord(2, "rates", "Cached", None),
        TaskRecord(3, "load", "Failed", "boom", 0.0, 2.0, 4.0, 1, "loky:2"),
    ]
    text = timeline_text(_record(tasks), width=80)
    lines = text.splitlines()
    bars = {line.split()[1]: line for line in lines if "|" in line}
    assert set(bars) == {"extract", "transform", "rates", "load"}
    assert all(len(line) <= 80 for line in bars.values())
    extract = bars["extract"].split("|")[1]
    transform = bars["transform"].split("|")[1]
    assert extract.rstrip() == "█" * len(extract.rstrip())
    assert abs(len(extract.rstrip()) - len(extract) / 2) <= 1  # ran the first half
    assert transform.startswith("░") and transform.endswith("█")  # waited, then ran
    assert bars["transform"].endswith("Success 5.00 s x3")
    assert "◆" in bars["rates"] and bars["rates"].endswith("Cached")
    assert lines.index("loky:1") < lines.index("loky:2") < lines.index(SCHEDULER_LANE)
    assert "does not record the flow's edges" in text
    assert timeline_text(_record(tasks), width=80, ascii=True).isascii()


def test_timeline_text_marks_the_critical_path(loky_run: tuple[Flow, RunRecord]) -> None:
    flow, record = loky_run
    text = timeline_text(record, width=100, flow=flow)
    starred = [line.split()[1] for line in text.splitlines() if line.startswith("*")]
    assert starred[-2:] == ["nap[0]", "nap_after"] or sorted(starred[-2:]) == ["nap[0]", "nap_after"]
    assert "critical path (*)" in text and "nap[0] → nap_after" in text


def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def test_report_renders_a_bar_per_task_in_headless_chromium(
    loky_run: tuple[Flow, RunRecord], tmp_path: Path
) -> None:
    browser = _chromium()
    if browser is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium)")
    flow, record = loky_run
    page = tmp_path / "report.html"
    page.write_text(render_report(record, flow=flow), encoding="utf-8")
    done = subprocess.run(
        [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000",
            "--dump-dom", page.as_uri(),
        ],
        capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    n = len(record.tasks)
    # The script ran (it counts the bars it found in the page as the browser built it)...
    assert f'data-bars="{n}"' in dom, dom[:500]
    assert f"{n} tasks drawn" in dom
    # ...and every task has its bar: a rect, or a diamond for a task that did not run.
    groups = re.findall(r'<g class="task [^"]*"[^>]*>(.*?)</g>', dom, re.S)
    assert len(groups) == n
    assert all(re.search(r'class="bar', g) for g in groups)
    ran = sum(1 for t in record.tasks if t.started is not None)
    assert sum(1 for g in groups if '<rect class="bar"' in g) == ran


@task
def square(x: int) -> int:
    if x == 3:
        raise ValueError("three")
    return x * x


@task(trigger=taskloom.triggers.always_run)
def count(xs: list[Any]) -> int:
    return len(xs)


@pytest.mark.parametrize("n", [5, 250])
def test_the_report_draws_the_children_of_a_mapped_task(n: int) -> None:
    with Flow(f"mapped report {n}") as flow:
        count(square.map(list(range(n))))
    state = flow.run()
    assert state.run_id is not None
    record = default_journal().load(state.run_id)
    assert len(record.children[0]) == n
    stats = run_stats(record, flow)
    assert stats.critical is not None and stats.critical[0] == 0  # the mapped task, then count
    page = render_report(record, flow=flow)
    text = timeline_text(record, width=120, flow=flow)
    if n <= 200:  # a bar per child
        assert 'data-name="square[4]"' in page and "square[3]" in text
    else:  # the children of one worker are one bar, coloured by the failed one
        assert "square ×250" in page and "square ×250" in text
        assert 'data-name="square[4]"' not in page
        assert "Mapped: 249 Success, 1 Failed" in page


# -- issue 17, point 5: short runs read right ----------------------------------------------------


def test_worker_start_up_is_drawn_apart_from_the_queue() -> None:
    tasks = [
        TaskRecord(0, "first", "Success", None, 0.0, 5.0, 6.0, 1, "loky:1"),  # the worker starts
        TaskRecord(1, "second", "Success", None, 0.0, 8.0, 10.0, 1, "loky:1"),  # then queues
    ]
    text = timeline_text(_record(tasks), width=80)
    bars = {line.split()[1]: line.split("|")[1] for line in text.splitlines() if "|" in line}
    assert bars["first"].startswith("┄") and "░" not in bars["first"]
    assert "┄" in bars["second"] and "░" in bars["second"]
    assert "┄ worker starting" in text
    page = render_report(_record(tasks))
    assert page.count('class="startup"') == 2 and page.count('class="wait"') == 1
    assert "for the worker to start" in page and "worker starting</span>" in page


def test_speed_up_of_a_run_that_is_mostly_overhead_is_not_meaningful() -> None:
    tasks = [TaskRecord(i, "parse", "Success", None, 0.0, 0.5 + i / 1000, 0.5 + i / 1000 + 5e-6, 1, "loky:1")
             for i in range(200)]
    record = RunRecord("run-1", "short", None, {}, 0.0, 0.861, "Success", None, tasks=tasks)
    assert run_stats(record).overhead is not None
    text = timeline_text(record, width=100)
    assert "not meaningful: the run was mostly overhead (work 1.0 ms of 861.0 ms wall)" in text
    page = render_report(record)
    assert "not meaningful: the run was mostly overhead" in page
    assert "×</b><span>best speed-up" not in page and '<table class="speed">' not in page


def test_the_task_table_marks_the_critical_path_with_its_own_mark(loky_run: tuple[Flow, RunRecord]) -> None:
    flow, record = loky_run
    page = render_report(record, flow=flow)
    table = page[page.index('<table id="tasks">'):]
    assert "◆" not in table  # the diamond means "did not run on a worker", in the legend
    assert table.count('title="on the critical path">*</b>') == len(run_stats(record, flow).critical or ())


def test_many_tasks_of_one_name_are_one_labelled_bar_per_worker() -> None:
    tasks = [TaskRecord(i, "parse", "Success", None, 0.0, 1.0 + i / 100, 1.0 + i / 100 + 0.005, 1,
                        f"loky:{1 + i % 2}") for i in range(250)]
    tasks.append(TaskRecord(250, "total", "Success", None, 0.0, 3.6, 3.7, 1, "loky:1"))
    page = render_report(_record(tasks))
    assert page.count('<g class="task ') == 3
    assert page.count('data-name="parse ×125"') == 2
    text = timeline_text(_record(tasks), width=100)
    assert text.count("parse x125") + text.count("parse ×125") == 2
