"""Schedules (``taskloom.schedules``) and flows run on them: the due times Prefect 1.x's
``IntervalSchedule`` and ``CronSchedule`` give, ``flow.run()`` at each due time until the
schedule ends (each run journaled), ``run_on_schedule=False``, and bad input.

Runs use intervals of a few tenths of a second and an ``end_date``, so a schedule ends by
itself; the tests count runs and journal entries, never time them."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from taskloom import Flow, Parameter, context, task
from taskloom.errors import FlowDefinitionError, ScheduleError
from taskloom.executors import Executor
from taskloom.journal import Journal
from taskloom.schedules import CronSchedule, IntervalSchedule

from ._cli import RUN_ID, describe, interrupt, read_until, spawned, taskloom, write_flow
from ._helpers import lines, record

UTC = dt.timezone.utc
PARIS = ZoneInfo("Europe/Paris")  # daylight saving time starts on 2026-03-29 at 02:00


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0,
    tz: dt.tzinfo = UTC,
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=tz)


# -- due times ------------------------------------------------------------------------------------


def test_interval_times_fall_on_the_grid_of_the_start_date_strictly_after() -> None:
    s = IntervalSchedule(dt.timedelta(hours=6), start_date=at(2026, 1, 1))
    assert s.next(3, after=at(2026, 1, 1, 7)) == [at(2026, 1, 1, 12), at(2026, 1, 1, 18), at(2026, 1, 2)]
    assert s.next(1, after=at(2026, 1, 1, 6)) == [at(2026, 1, 1, 12)]  # strictly after
    assert s.next(2, after=at(2025, 6, 1)) == [at(2026, 1, 1), at(2026, 1, 1, 6)]  # from the start
    assert s.next(0) == []


def test_interval_without_a_start_counts_from_prefects_2019_and_reads_naive_as_utc() -> None:
    s = IntervalSchedule(dt.timedelta(days=7))
    [due] = s.next(1, after=dt.datetime(2026, 1, 1))
    assert due.tzinfo is not None
    assert (due - at(2019, 1, 1)) % dt.timedelta(days=7) == dt.timedelta(0)
    assert at(2026, 1, 1) < due <= at(2026, 1, 8)


def test_interval_end_date_is_inclusive_and_ends_the_schedule() -> None:
    s = IntervalSchedule(dt.timedelta(minutes=30), start_date=at(2026, 1, 1), end_date=at(2026, 1, 1, 1))
    assert s.next(10, after=at(2025, 12, 31)) == [at(2026, 1, 1), at(2026, 1, 1, 0, 30), at(2026, 1, 1, 1)]
    assert s.next(1, after=at(2026, 1, 1, 1)) == []


def test_interval_across_daylight_saving_time_days_keep_the_hour_hours_keep_elapsing() -> None:
    daily = IntervalSchedule(dt.timedelta(days=1), start_date=at(2026, 3, 27, 9, tz=PARIS))
    assert [t.isoformat() for t in daily.next(3, after=at(2026, 3, 27, tz=PARIS))] == [
        "2026-03-27T09:00:00+01:00", "2026-03-28T09:00:00+01:00", "2026-03-29T09:00:00+02:00"
    ]
    hourly = IntervalSchedule(dt.timedelta(hours=1), start_date=at(2026, 3, 29, tz=PARIS))
    assert [t.isoformat() for t in hourly.next(3, after=at(2026, 3, 28, 23, tz=PARIS))] == [
        "2026-03-29T00:00:00+01:00", "2026-03-29T01:00:00+01:00", "2026-03-29T03:00:00+02:00"
    ]


def test_cron_times_in_utc_by_default_strictly_after() -> None:
    s = CronSchedule("30 9 * * 1-5")  # 2026-01-02 is a Friday
    assert s.next(2, after=at(2026, 1, 2, 10)) == [at(2026, 1, 5, 9, 30), at(2026, 1, 6, 9, 30)]
    assert s.next(1, after=at(2026, 1, 5, 9, 30)) == [at(2026, 1, 6, 9, 30)]


def test_cron_start_date_is_due_if_it_matches_and_its_zone_is_the_cron_zone() -> None:
    s = CronSchedule("0 9 * * *", start_date=at(2026, 3, 28, 9, tz=PARIS), end_date=at(2026, 3, 30, tz=PARIS))
    assert [t.isoformat() for t in s.next(5, after=at(2026, 1, 1))] == [
        "2026-03-28T09:00:00+01:00", "2026-03-29T09:00:00+02:00"
    ]


def test_cron_seconds_field_and_a_cron_that_never_matches() -> None:
    every_two_seconds = CronSchedule("* * * * * */2")
    assert every_two_seconds.next(2, after=at(2026, 1, 1, 0, 0, 1)) == [
        at(2026, 1, 1, 0, 0, 2), at(2026, 1, 1, 0, 0, 4)
    ]
    assert CronSchedule("0 0 30 2 *").next(1) == []  # February 30th


def test_cron_day_or_false_needs_both_days() -> None:
    # the 13th of a month that is also a Friday: 2026-02-13, 2026-03-13
    friday_13th = CronSchedule("0 0 13 * 5", day_or=False)
    assert friday_13th.next(2, after=at(2026, 1, 1)) == [at(2026, 2, 13), at(2026, 3, 13)]


def test_schedules_built_alike_are_equal_and_print_their_settings() -> None:
    hourly = IntervalSchedule(dt.timedelta(hours=1), start_date=dt.datetime(2026, 1, 1))
    assert hourly == IntervalSchedule(dt.timedelta(hours=1), start_date=at(2026, 1, 1))  # naive: UTC
    assert len({hourly, IntervalSchedule(dt.timedelta(hours=1), start_date=at(2026, 1, 1))}) == 1
    assert hourly != IntervalSchedule(dt.timedelta(hours=2), start_date=at(2026, 1, 1))
    assert CronSchedule("0 9 * * *") != CronSchedule("0 9 * * *", day_or=False)
    assert repr(CronSchedule("0 9 * * *")) == (
        "CronSchedule(cron='0 9 * * *', start_date=None, end_date=None, day_or=True)"
    )


# -- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("cron", ["every hour", "61 * * * *", "* * *"])
def test_a_bad_cron_string_is_named(cron: str) -> None:
    with pytest.raises(ScheduleError, match=re.escape(f"invalid cron string {cron!r}")):
        CronSchedule(cron)


def test_bad_intervals_and_dates_are_named() -> None:
    with pytest.raises(ScheduleError, match="interval must be positive"):
        IntervalSchedule(dt.timedelta(0))
    with pytest.raises(ScheduleError, match="took start_date first"):
        IntervalSchedule(at(2026, 1, 1), dt.timedelta(hours=1))  # type: ignore[arg-type]  # Prefect's order
    with pytest.raises(ScheduleError, match="end_date 2025-01-01T00:00:00\\+00:00 is before start_date"):
        CronSchedule("* * * * *", start_date=at(2026, 1, 1), end_date=at(2025, 1, 1))
    with pytest.raises(ScheduleError, match="start_date must be a datetime, not str"):
        IntervalSchedule(dt.timedelta(hours=1), start_date="2026-01-01")  # type: ignore[arg-type]  # bad input
    with pytest.raises(ScheduleError, match=r"next\(n=-1\)"):
        IntervalSchedule(dt.timedelta(hours=1)).next(-1)


def test_a_flow_schedule_that_is_not_one_names_the_flow() -> None:
    with pytest.raises(ScheduleError, match="Flow 'nightly': schedule must be a schedule"):
        Flow("nightly", schedule="0 2 * * *")  # type: ignore[arg-type]  # the bad input under test


@task
def note(path: str) -> str:
    """Record the run's due time (``scheduled_start_time``)."""
    due: dt.datetime = context.scheduled_start_time
    record(path, due.isoformat())
    return due.isoformat()


def test_a_schedule_with_no_due_time_left_is_an_error_before_any_run(tmp_path: Path) -> None:
    ended = IntervalSchedule(dt.timedelta(seconds=1), end_date=dt.datetime.now(UTC) - dt.timedelta(days=1))
    with Flow("ended", schedule=ended) as flow:
        note(str(tmp_path / "log"))
    with pytest.raises(ScheduleError, match=r"Flow 'ended': its schedule IntervalSchedule\(.*\) has no due time"):
        flow.run()
    never = CronSchedule("0 0 30 2 *")
    with Flow("february-30th", schedule=never) as flow30:
        note(str(tmp_path / "log"))
    with pytest.raises(ScheduleError, match="'0 0 30 2 \\*'.* has no due time"):
        flow30.run()
    assert lines(tmp_path / "log") == []
    assert Journal().runs() == []


def test_bad_parameters_fail_at_once_not_after_waiting_for_the_first_due_time() -> None:
    an_hour_away = IntervalSchedule(dt.timedelta(hours=1), start_date=dt.datetime.now(UTC) + dt.timedelta(hours=1))
    with Flow("waits", schedule=an_hour_away) as flow:
        Parameter("n", default=1)
    with pytest.raises(FlowDefinitionError, match="unknown parameter.*nope"):
        flow.run(parameters={"nope": 1})


# -- runs on a schedule ---------------------------------------------------------------------------


def schedule_soon(flow: Flow, interval: float, span: float) -> list[str]:
    """Give ``flow`` a schedule due every ``interval`` seconds for ``span`` seconds from
    half a second from now; its due times, ISO-formatted."""
    start = dt.datetime.now(UTC) + dt.timedelta(seconds=0.5)
    flow.schedule = IntervalSchedule(
        dt.timedelta(seconds=interval), start_date=start, end_date=start + dt.timedelta(seconds=span)
    )
    return [t.isoformat() for t in flow.schedule.next(100, after=start - dt.timedelta(seconds=1))]


def test_a_scheduled_flow_runs_at_each_due_time_until_its_end_date(tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    with Flow("scheduled") as flow:
        noted = note(log)
    due = schedule_soon(flow, 0.5, 1.0)
    assert len(due) == 3

    state = flow.run()

    assert lines(log) == due  # each due time once, in order (no run outlasts 0.5 s)
    assert state.is_successful() and state.result[noted].result == due[-1]  # the last run's
    runs = list(reversed(Journal().runs(flow_name="scheduled")))  # oldest first
    assert [r.state for r in runs] == ["Success"] * 3 and state.run_id == runs[-1].run_id
    for run, when in zip(runs, due):
        assert run.started >= dt.datetime.fromisoformat(when).timestamp()  # not before its time


def test_scheduled_runs_on_every_executor_are_each_journaled(executor: Executor, tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    with Flow("scheduled-on") as flow:
        noted = note(log)
    # Warm up (a pool's workers, a Dask client): the first scheduled run is then on time.
    assert flow.run(executor=executor, run_on_schedule=False).is_successful()
    due = schedule_soon(flow, 0.5, 1.0)

    state = flow.run(executor=executor)

    ran = lines(log)[1:]
    # On a loaded machine a run may outlast the interval: the due times it missed are
    # skipped (as cron does), never run late or twice.
    assert ran[0] == due[0] and ran == sorted(set(ran)) and set(ran) <= set(due)
    assert state.is_successful() and state.result[noted].result == ran[-1]
    runs = list(reversed(Journal().runs(flow_name="scheduled-on")))[1:]  # oldest first
    assert [r.state for r in runs] == ["Success"] * len(ran) and state.run_id == runs[-1].run_id


def test_run_on_schedule_false_runs_once_now(tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    ended = IntervalSchedule(dt.timedelta(seconds=1), end_date=dt.datetime.now(UTC) - dt.timedelta(days=1))
    with Flow("once", schedule=ended) as flow:
        note(log)
    state = flow.run(run_on_schedule=False)
    assert state.is_successful()
    assert len(lines(log)) == 1 and len(Journal().runs()) == 1


# -- the command line -----------------------------------------------------------------------------

SCHEDULED = """\
from taskloom.schedules import CronSchedule, IntervalSchedule

START = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=LEAD)


@task
def stamp() -> str:
    return "ran"


with Flow("ticking", schedule=IntervalSchedule(dt.timedelta(seconds=INTERVAL), start_date=START,
                                               end_date=START + dt.timedelta(seconds=SPAN))) as flow:
    stamp()

with Flow("unscheduled") as plain:
    stamp()

with Flow("over", schedule=IntervalSchedule(dt.timedelta(seconds=1), end_date=START - dt.timedelta(days=1))) as over:
    stamp()
"""


def scheduled_flows(tmp_path: Path, interval: float, span: float, lead: float = 1.0) -> Path:
    """A flow file whose flow ``ticking`` is due every ``interval`` seconds for ``span``
    seconds from ``lead`` seconds after it is loaded (room for a loaded machine)."""
    return write_flow(tmp_path / "flows.py", SCHEDULED, INTERVAL=interval, SPAN=span, LEAD=lead)


def test_cli_schedule_runs_at_each_due_time_with_a_table_per_run(tmp_path: Path, taskloom_home: Path) -> None:
    flows = scheduled_flows(tmp_path, 0.5, 1.0)
    done = taskloom(
        taskloom_home, "run", f"{flows}:flow", "--schedule", "--executor", "threads", "--no-progress"
    )
    assert done.returncode == 0, describe(done)
    ids = RUN_ID.findall(done.stdout)
    # 3 due times; a run started late on a loaded machine skips the ones it missed.
    assert 1 <= len(ids) <= 3 and done.stdout.count("Next run of 'ticking' at ") == len(ids)
    assert done.stdout.count("Flow 'ticking': Success") == len(ids)
    assert sorted(ids) == sorted(r.run_id for r in Journal(taskloom_home / "journal.sqlite").runs())


def test_cli_without_schedule_runs_a_scheduled_flow_once(tmp_path: Path, taskloom_home: Path) -> None:
    flows = scheduled_flows(tmp_path, 3600, 7200)
    done = taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local", "--no-progress")
    assert done.returncode == 0, describe(done)
    assert len(RUN_ID.findall(done.stdout)) == 1 and "Next run" not in done.stdout


def test_cli_schedule_bad_input_is_a_usage_error(tmp_path: Path, taskloom_home: Path) -> None:
    flows = scheduled_flows(tmp_path, 3600, 7200)
    plain = taskloom(taskloom_home, "run", f"{flows}:plain", "--schedule", "--executor", "local")
    assert plain.returncode == 2 and "flow 'unscheduled'" in plain.stderr and "has no schedule" in plain.stderr
    over = taskloom(taskloom_home, "run", f"{flows}:over", "--schedule", "--executor", "local")
    assert over.returncode == 2 and "Flow 'over'" in over.stderr and "has no due time" in over.stderr
    bad = write_flow(tmp_path / "bad.py", 'from taskloom.schedules import CronSchedule\n'
                     'flow = Flow("bad", schedule=CronSchedule("every monday"))\n')
    broken = taskloom(taskloom_home, "run", f"{bad}:flow", "--schedule", "--executor", "local")
    assert broken.returncode == 2, describe(broken)
    assert "invalid cron string 'every monday'" in broken.stderr and f"{bad}\", line" in broken.stderr
    for result in (plain, over, broken):
        assert "Traceback" not in result.stderr
    assert not (taskloom_home / "journal.sqlite").exists() or not Journal(taskloom_home / "journal.sqlite").runs()


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_ctrl_c_between_scheduled_runs_exits_cleanly(tmp_path: Path, taskloom_home: Path) -> None:
    flows = scheduled_flows(tmp_path, 3600, 7200, lead=2.0)  # one run soon, the next in an hour
    args = ["-m", "taskloom", "run", f"{flows}:flow", "--schedule", "--executor", "local", "--no-progress"]
    with spawned(args, taskloom_home) as child:
        # Waiting after the first run: its table is printed, then the next due time.
        seen = read_until(child, lambda lines: sum(x.startswith("Next run of") for x in lines) == 2)
        out, err = interrupt(child)
    assert child.returncode == 130, (seen, out, err)
    assert "schedule stopped (Ctrl-C) between runs, after 1 run(s) of 'ticking'" in err
    assert "Traceback" not in err
    [run] = Journal(taskloom_home / "journal.sqlite").runs()
    assert run.state == "Success" and run.run_id in "".join(seen)
