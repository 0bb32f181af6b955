"""Progress displays: plain lines anywhere, a rich live display on a terminal, and log
records (from worker processes too) printed above the display, never into it."""

from __future__ import annotations

import io
import logging
import re
from datetime import timedelta
from typing import Any

import pytest

import taskloom
from taskloom import Flow, task
from taskloom.executors import LocalExecutor, LokyExecutor
from taskloom.progress import (
    RichProgress,
    TerminalProgress,
    category_of,
    default_progress,
)
from taskloom.states import Cached, Failed, Paused, Retrying, Running, Skipped, Success, TimedOut, TriggerFailed

rich_console = pytest.importorskip("rich.console", reason="rich (the progress extra) is not installed")

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")
log = logging.getLogger("tests.progress")


@task
def one() -> int:
    return 1


@task
def add(x: int, y: int) -> int:
    log.warning("adding %d and %d in attempt %s", x, y, taskloom.context.task_run_count)
    return x + y


@task(max_retries=1, retry_delay=timedelta(seconds=0))
def flaky(x: int) -> int:
    if taskloom.context.task_run_count == 1:
        raise ConnectionError("first attempt fails")
    log.warning("flaky made it on attempt %s", taskloom.context.task_run_count)
    return x


@task
def broken(x: int) -> int:
    raise ValueError("no")


def small_flow() -> Flow:
    with Flow("progress-demo") as flow:
        a = one()
        b = add(a, 2)
        broken(flaky(b))
    return flow


def _plain(text: str) -> str:
    return ANSI.sub("", text)


CSI = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])")


def _screen(raw: str) -> list[str]:
    """What a terminal shows after ``raw``: a tiny emulator of the codes rich's live
    display uses (newline, carriage return, cursor up, erase line, colours ignored)."""
    rows: list[list[str]] = [[]]
    row = col = 0
    i = 0
    while i < len(raw):
        found = CSI.match(raw, i)
        if found:
            arg, code = found.groups()
            if code == "A":
                row = max(0, row - int(arg or 1))
            elif code == "K":
                rows[row] = []
                col = 0 if arg == "2" else col
            i = found.end()
            continue
        char = raw[i]
        i += 1
        if char == "\n":
            row += 1
            col = 0
            while len(rows) <= row:
                rows.append([])
        elif char == "\r":
            col = 0
        else:
            line = rows[row]
            line.extend(" " * (col - len(line)))
            if col < len(line):
                line[col] = char
            else:
                line.append(char)
            col += 1
    return ["".join(r).rstrip() for r in rows]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_category_of_journal_state_names() -> None:
    for state, expected in [
        (Success(), "succeeded"), (Cached(), "cached"), (Skipped(), "skipped"), (Failed(), "failed"),
        (TriggerFailed(), "failed"), (TimedOut(), "failed"), (Retrying(), "retrying"), (Running(), "running"),
    ]:
        assert category_of(type(state).__name__) == expected
    assert category_of("Pending") == "pending"


def test_terminal_progress_prints_plain_lines_with_counts(taskloom_home: Any) -> None:
    stream = io.StringIO()
    state = small_flow().run(executor=LocalExecutor(), progress=TerminalProgress(stream, every=0.0))
    assert state.is_failed()
    out = stream.getvalue()
    assert "\x1b" not in out and "\r" not in out
    lines = out.splitlines()
    assert len(lines) > 3
    assert lines[-1].startswith("progress-demo: 4/4 done | succeeded 3, failed 1 | ")
    assert lines[-1].endswith("Failed: Some reference tasks failed.")
    assert any("retrying 1" in line for line in lines)


def test_terminal_progress_prints_at_most_every_interval() -> None:
    stream = io.StringIO()
    progress = TerminalProgress(stream, every=3600.0)
    progress.run_started("f", "run", 3)
    for key in range(3):
        progress.task_changed(key, "t", Running())
        progress.task_changed(key, "t", Success())
    progress.run_finished(Success("done"))
    first, last = stream.getvalue().splitlines()  # the first change, and the end
    assert re.fullmatch(r"f: 0/3 done \| running 1 \| \d+\.\ds", first)
    assert re.fullmatch(r"f: 3/3 done \| succeeded 3 \| \d+\.\ds \| Success: done", last)


def test_default_progress_picks_rich_on_a_terminal_and_plain_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(default_progress(io.StringIO()), TerminalProgress)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert isinstance(default_progress(_Terminal()), RichProgress)
    monkeypatch.setenv("TERM", "dumb")
    assert isinstance(default_progress(_Terminal()), TerminalProgress)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setattr("taskloom.progress.rich_available", lambda: False)
    assert isinstance(default_progress(_Terminal()), TerminalProgress)


def test_flow_run_progress_true_uses_the_default_display(monkeypatch: pytest.MonkeyPatch) -> None:
    stream = io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    with Flow("quiet") as flow:
        one()
    flow.run(progress=True)
    assert stream.getvalue().splitlines()[-1].startswith("quiet: 1/1 done | succeeded 1 | ")


def _rich(width: int = 100) -> tuple[RichProgress, io.StringIO]:
    out = io.StringIO()
    console = rich_console.Console(file=out, force_terminal=True, width=width, color_system="truecolor")
    return RichProgress(console, refresh_per_second=20), out


def test_rich_progress_draws_counts_done_total_and_a_summary(taskloom_home: Any) -> None:
    progress, out = _rich()
    state = small_flow().run(executor=LocalExecutor(), progress=progress)
    assert state.is_failed()
    text = _plain(out.getvalue())
    assert "\x1b[" in out.getvalue()  # drawn in place, with colours
    assert "4/4 done" in text
    assert re.search(r"succeeded 3\s+failed 1", text)
    assert "✘ progress-demo: Failed (Some reference tasks failed.) - 4/4 done in" in text
    assert progress._live is None


def test_rich_progress_frame_lists_running_tasks_and_retries() -> None:
    progress, out = _rich()
    progress.route_logging = False
    progress.run_started("frame", "run-1", 5)
    try:
        for key in range(3):
            progress.task_changed(key, "download", Running())
        progress.task_changed(3, "clean", Running())
        progress.task_changed(3, "clean", Retrying())
        progress.task_changed(4, "load", Cached())
        frame = rich_console.Console(file=io.StringIO(), width=100, record=True)
        frame.print(progress.renderable())
        text = frame.export_text()
    finally:
        progress.close()
    assert "1/5 done" in text
    assert re.search(r"running 3\s+cached 1\s+retrying 1", text)
    assert "now: download ×3" in text


def test_rich_progress_prints_log_lines_whole_above_the_display_and_restores_handlers(
    taskloom_home: Any,
) -> None:
    progress, out = _rich()
    handler = logging.StreamHandler(progress.console.file)  # a handler on the same terminal
    handler.setFormatter(logging.Formatter("LOG %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        small_flow().run(executor=LocalExecutor(), progress=progress)
    finally:
        root.removeHandler(handler)
    assert handler.stream is progress.console.file  # given back after the run
    screen = [line for line in _screen(out.getvalue()) if line]
    assert screen[:2] == ["LOG adding 1 and 2 in attempt 1", "LOG flaky made it on attempt 2"]
    assert "progress-demo" in screen[2] and "4/4 done" in screen[2]  # the last frame stays
    assert re.fullmatch(r"succeeded 3\s+failed 1", screen[3].strip())
    assert screen[4].startswith("✘ progress-demo: Failed")
    assert len(screen) == 5


def test_rich_progress_closes_when_used_as_a_context_manager() -> None:
    progress, _ = _rich()
    handler = logging.StreamHandler(progress.console.file)
    logging.getLogger().addHandler(handler)
    try:
        with progress:
            progress.run_started("interrupted", "run-2", 1)
            assert progress._live is not None
            assert handler.stream is not progress.console.file
        assert progress._live is None
        assert handler.stream is progress.console.file
        progress.close()  # idempotent
    finally:
        logging.getLogger().removeHandler(handler)


def test_worker_log_records_carry_run_task_and_attempt(taskloom_home: Any) -> None:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    keep = Keep()
    logging.getLogger("tests.progress").addHandler(keep)
    progress, out = _rich()
    try:
        state = small_flow().run(executor=LokyExecutor(max_workers=2), progress=progress)
    finally:
        logging.getLogger("tests.progress").removeHandler(keep)
    made_it = [r for r in records if r.getMessage() == "flaky made it on attempt 2"]
    assert len(made_it) == 1
    record = made_it[0]
    assert record.__dict__["task_name"] == "flaky"
    assert record.__dict__["attempt"] == 2
    assert record.__dict__["flow_run_id"] == state.run_id
    assert "4/4 done" in _plain(out.getvalue())


def test_progress_counts_the_children_of_a_mapped_task(taskloom_home: Any) -> None:
    @task
    def half(x: int) -> float:
        return 1 / (x - 2)

    with Flow("progress-map") as flow:
        half.map([0, 1, 2, 3])
    stream = io.StringIO()
    flow.run(executor=LocalExecutor(), progress=TerminalProgress(stream, every=0.0))
    last = stream.getvalue().splitlines()[-1]
    # the mapped task and its four children: three succeed, one fails
    assert last.startswith("progress-map: 5/5 done | succeeded 4, failed 1 | "), last


# -- issue 17, point 6: counts that add up ------------------------------------------------------


@task(trigger=taskloom.triggers.manual_only)
def approve(x: int) -> int:
    return x


def five_with_a_gate() -> Flow:
    with Flow("progress-gate") as flow:
        a = one()
        b = add(a, 1)
        c = add(b, 1)
        d = approve(c)
        add(d, 1)
    return flow


def test_a_paused_run_ends_with_a_pause_mark_and_the_resume_command(taskloom_home: Any) -> None:
    progress, out = _rich()
    stream = io.StringIO()
    state = five_with_a_gate().run(executor=LocalExecutor(), progress=progress)
    assert isinstance(state, Paused)
    text = _plain(out.getvalue())
    assert "✘" not in text
    assert "⏸ progress-gate: Paused" in text
    assert f"to resume: taskloom resume {state.run_id}" in text
    plain = TerminalProgress(stream, every=0.0)
    again = five_with_a_gate().run(executor=LocalExecutor(), progress=plain)
    assert stream.getvalue().splitlines()[-1].endswith(f"to resume: taskloom resume {again.run_id}")


def test_a_resumed_run_counts_the_tasks_it_starts_with_as_done(taskloom_home: Any) -> None:
    from taskloom.resume import resume

    state = five_with_a_gate().run(executor=LocalExecutor())
    assert state.run_id is not None
    stream = io.StringIO()
    again = resume(state.run_id, flow=five_with_a_gate(), executor=LocalExecutor(),
                   progress=TerminalProgress(stream, every=0.0))
    assert again.is_successful()
    last = stream.getvalue().splitlines()[-1]
    assert last.startswith("progress-gate: 5/5 done | succeeded 5 | "), last


def test_tasks_handed_over_beyond_the_executors_slots_are_queued() -> None:
    stream = io.StringIO()
    progress = TerminalProgress(stream, every=0.0)
    progress.run_started("wide", "run", 200)
    progress.slots_known(2)
    for key in range(200):
        progress.task_changed(key, "parse", Running("Task handed to the executor."))
    assert "| running 2, queued 198 |" in progress.line()
    for key in range(199):
        progress.task_changed(key, "parse", Success())
    assert "| running 1, succeeded 199 |" in progress.line()
    rich, _ = _rich()
    rich.route_logging = False
    rich.run_started("wide", "run", 10)
    try:
        rich.slots_known(2)
        for key in range(10):
            rich.task_changed(key, "parse", Running())
        frame = rich_console.Console(file=io.StringIO(), width=100, record=True)
        frame.print(rich.renderable())
    finally:
        rich.close()
    assert re.search(r"running 2\s+queued 8", frame.export_text())


def test_the_scheduler_tells_the_display_the_executors_slots(taskloom_home: Any) -> None:
    told: list[int] = []

    class Watch(TerminalProgress):
        def slots_known(self, slots: int) -> None:
            told.append(slots)
            super().slots_known(slots)

    with Flow("slots") as flow:
        for _ in range(3):
            one()
    flow.run(executor=LokyExecutor(2), progress=Watch(io.StringIO()))
    flow.run(executor=LocalExecutor(), progress=Watch(io.StringIO()))
    assert told == [2, 1]
