"""Schedules: when a flow runs, as Prefect 1.x's ``IntervalSchedule`` and ``CronSchedule``.

::

    from datetime import timedelta
    from taskloom.schedules import CronSchedule, IntervalSchedule

    every_hour = IntervalSchedule(timedelta(hours=1))
    weekdays_at_nine = CronSchedule("0 9 * * 1-5", start_date=datetime(2026, 1, 1, tzinfo=paris))
    every_hour.next(3)          # the next 3 due times after now, as aware datetimes

    with Flow("etl", schedule=every_hour) as flow: ...
    flow.run()                              # runs at each due time, until Ctrl-C or end_date
    flow.run(run_on_schedule=False)         # runs once, now

A schedule is anything with ``next(n, after=None)`` (the ``Schedule`` protocol): the
next ``n`` due times strictly after ``after`` (default: now), earliest first, fewer (or
none) when the schedule ends. Times are timezone-aware; a naive ``start_date``,
``end_date`` or ``after`` is read as UTC, as Prefect (pendulum) does. ``end_date`` is
inclusive.

- ``IntervalSchedule(interval, start_date=None, end_date=None)``: ``start_date +
  k * interval``; without ``start_date``, counted from 2019-01-01 00:00 UTC (Prefect's
  default), so due times fall on the interval's grid. In a ``start_date`` with daylight
  saving time, whole days keep the wall-clock hour and the rest is elapsed time (a daily
  run stays at 9:00, an hourly one fires every real hour), as in Prefect.
- ``CronSchedule(cron, start_date=None, end_date=None, day_or=True)``: a cron string
  read by `croniter <https://github.com/pallets-eco/croniter>`_ (five fields; a sixth
  is seconds), in ``start_date``'s time zone (UTC without one); ``start_date`` itself is
  due if the cron string matches it. A string croniter refuses is a ``ScheduleError``
  naming it.

``run_on_schedule(schedule, run, ...)`` is the loop ``flow.run()`` and ``taskloom run
--schedule`` use: wait for the next due time, call ``run(due)``, and again, until the
schedule has no due time left after the run (then it returns the last run's result), as
Prefect 1.x's ``flow.run`` does. The next due time is always the first after *now*: a
run that outlasts an interval skips the due times it missed, as cron does. A schedule
with no due time at all is a ``ScheduleError`` before any waiting.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Callable
from typing import Protocol, TypeVar, runtime_checkable

from .errors import ScheduleError

__all__ = [
    "CronSchedule", "IntervalSchedule", "Schedule", "check_schedule", "next_due", "run_on_schedule",
]

T = TypeVar("T")

_UTC = _dt.timezone.utc
#: Where an ``IntervalSchedule`` without a ``start_date`` counts from (Prefect's default).
DEFAULT_START = _dt.datetime(2019, 1, 1, tzinfo=_UTC)
#: The longest single sleep while waiting: the wall clock is read again after each, so a
#: clock change (a laptop's sleep, NTP) does not make a run late by more than this.
_LONGEST_NAP = 60.0
#: How many cron matches ``CronSchedule.next`` looks at for ``n`` distinct times (daylight
#: saving time can give the same instant twice).
_CRON_TRIES = 1000


@runtime_checkable
class Schedule(Protocol):
    """When a flow runs: anything with ``next`` (``IntervalSchedule``, ``CronSchedule``,
    or your own)."""

    def next(self, n: int, after: _dt.datetime | None = None) -> list[_dt.datetime]:
        """The next ``n`` due times strictly after ``after`` (default: now), earliest
        first, as aware datetimes; fewer when the schedule ends."""
        ...


def _aware(value: object, role: str, owner: str) -> _dt.datetime:
    """``value`` with a time zone (a naive one is UTC), or a ``ScheduleError`` naming it."""
    if not isinstance(value, _dt.datetime):
        raise ScheduleError(f"{owner}: {role} must be a datetime, not {type(value).__name__} {value!r}")
    return value if value.tzinfo is not None else value.replace(tzinfo=_UTC)


def _bounds(
    start_date: _dt.datetime | None, end_date: _dt.datetime | None, owner: str
) -> tuple[_dt.datetime | None, _dt.datetime | None]:
    """The checked ``start_date`` and ``end_date`` (aware; end not before start)."""
    start = None if start_date is None else _aware(start_date, "start_date", owner)
    end = None if end_date is None else _aware(end_date, "end_date", owner)
    if start is not None and end is not None and end < start:
        raise ScheduleError(
            f"{owner}: end_date {end.isoformat()} is before start_date {start.isoformat()}, "
            "so it has no due time"
        )
    return start, end


def _after(after: _dt.datetime | None, owner: str) -> _dt.datetime:
    return _dt.datetime.now(_UTC) if after is None else _aware(after, "after", owner)


def _check_count(n: object, owner: str) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ScheduleError(f"{owner}.next(n={n!r}): n must be a whole number >= 0")


class _Described:
    """Equality, hash and repr from the attributes named in ``_fields`` (a schedule is its
    settings: two built alike are equal)."""

    _fields: tuple[str, ...] = ()

    def _key(self) -> tuple[object, ...]:
        return tuple(getattr(self, name) for name in self._fields)

    def __repr__(self) -> str:
        settings = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._fields)
        return f"{type(self).__name__}({settings})"

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, _Described)
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash((type(self), self._key()))


class IntervalSchedule(_Described):
    """Due every ``interval``, from ``start_date`` (default: 2019-01-01 UTC) until
    ``end_date`` (inclusive; default: never). See the module docstring.

    >>> s = IntervalSchedule(_dt.timedelta(hours=6), start_date=_dt.datetime(2026, 1, 1))
    >>> [t.hour for t in s.next(3, after=_dt.datetime(2026, 1, 1, 7))]
    [12, 18, 0]

    Raises:
        ScheduleError: (a ``ValueError``) an interval that is not a positive ``timedelta``,
            a date that is not a datetime, or an ``end_date`` before ``start_date``.
    """

    _fields = ("interval", "start_date", "end_date")

    def __init__(
        self,
        interval: _dt.timedelta,
        start_date: _dt.datetime | None = None,
        end_date: _dt.datetime | None = None,
    ) -> None:
        self.interval = _interval(interval)
        self.start_date, self.end_date = _bounds(start_date, end_date, "IntervalSchedule")

    def next(self, n: int, after: _dt.datetime | None = None) -> list[_dt.datetime]:
        """The next ``n`` due times strictly after ``after`` (default: now)."""
        _check_count(n, "IntervalSchedule")
        after = _after(after, "IntervalSchedule")
        start = self.start_date or DEFAULT_START
        elapsed = after - start
        # Intervals skipped at once: the first due time is the first past `after`.
        k = 0 if elapsed < _dt.timedelta(0) else elapsed // self.interval + 1
        times: list[_dt.datetime] = []
        while len(times) < n:
            due = _shift(start, self.interval * k)
            k += 1
            if due <= after:  # a daylight saving shift put it back: take the next one
                continue
            if self.end_date is not None and due > self.end_date:
                break
            times.append(due)
        return times



def _interval(interval: object) -> _dt.timedelta:
    """``interval`` if it is a positive ``timedelta``, else a ``ScheduleError`` naming it."""
    if not isinstance(interval, _dt.timedelta):
        hint = ""
        if isinstance(interval, _dt.datetime):
            hint = (
                "; Prefect 1.x's IntervalSchedule took start_date first: pass "
                "IntervalSchedule(interval=..., start_date=...) by keyword"
            )
        raise ScheduleError(
            f"IntervalSchedule: interval must be a timedelta, not "
            f"{type(interval).__name__} {interval!r}{hint}"
        )
    if interval <= _dt.timedelta(0):
        raise ScheduleError(f"IntervalSchedule: interval must be positive, not {interval!r}")
    return interval


def _shift(start: _dt.datetime, delta: _dt.timedelta) -> _dt.datetime:
    """``start + delta``: whole days on the wall clock of ``start``'s zone, the rest as
    elapsed time (Prefect's rule; the same thing in UTC)."""
    wall = start + _dt.timedelta(days=delta.days)  # aware arithmetic keeps the wall clock
    rest = delta - _dt.timedelta(days=delta.days)
    return (wall.astimezone(_UTC) + rest).astimezone(start.tzinfo)


class CronSchedule(_Described):
    """Due at each match of the cron string ``cron`` (read by croniter, in
    ``start_date``'s time zone, UTC without one), from ``start_date`` until ``end_date``
    (inclusive). ``day_or=False`` requires both the day of month and the day of week to
    match (croniter's ``day_or``). See the module docstring.

    >>> s = CronSchedule("30 9 * * 1-5")
    >>> [t.strftime("%a %H:%M") for t in s.next(2, after=_dt.datetime(2026, 1, 2, 10))]
    ['Mon 09:30', 'Tue 09:30']

    Raises:
        ScheduleError: (a ``ValueError``) a cron string croniter refuses (named, with
            croniter's reason), a date that is not a datetime, or an ``end_date`` before
            ``start_date``.
    """

    _fields = ("cron", "start_date", "end_date", "day_or")

    def __init__(
        self,
        cron: str,
        start_date: _dt.datetime | None = None,
        end_date: _dt.datetime | None = None,
        day_or: bool = True,
    ) -> None:
        self.cron = _cron(cron)
        self.day_or = day_or
        self.start_date, self.end_date = _bounds(start_date, end_date, "CronSchedule")

    def next(self, n: int, after: _dt.datetime | None = None) -> list[_dt.datetime]:
        """The next ``n`` due times strictly after ``after`` (default: now)."""
        _check_count(n, "CronSchedule")
        zone = self.start_date.tzinfo if self.start_date is not None else _UTC
        after = _after(after, "CronSchedule").astimezone(zone)
        base = after
        if self.start_date is not None and base < self.start_date:
            base = self.start_date - _dt.timedelta(seconds=1)  # start_date itself may be due
        from croniter import CroniterBadCronError, CroniterBadDateError, croniter

        # Cron times are whole seconds: from the second before, every match is after `after`.
        cron = croniter(self.cron, base.replace(microsecond=0), day_or=self.day_or)
        times: list[_dt.datetime] = []
        for _ in range(_CRON_TRIES):
            if len(times) >= n:
                break
            try:
                due: _dt.datetime = cron.get_next(_dt.datetime)
            except (CroniterBadDateError, CroniterBadCronError):
                break  # no match within croniter's search window (e.g. "0 0 30 2 *")
            if due <= after or (times and due <= times[-1]):
                continue  # the instant before, or a daylight saving repeat
            if self.end_date is not None and due > self.end_date:
                break
            times.append(due)
        return times



def _cron(cron: object) -> str:
    """``cron`` if croniter reads it, else a ``ScheduleError`` naming it (and croniter's why)."""
    if not isinstance(cron, str):
        raise ScheduleError(f"CronSchedule: cron must be a string, not {type(cron).__name__} {cron!r}")
    # croniter (with dateutil) is imported here, not with taskloom: most flows have no cron
    # schedule, and it is a third of `import taskloom`'s time.
    from croniter import CroniterError, croniter

    try:
        croniter(cron, DEFAULT_START)
    except (CroniterError, TypeError, ValueError) as error:
        raise ScheduleError(f"CronSchedule: invalid cron string {cron!r}: {error}") from None
    return cron


def check_schedule(schedule: object, owner: str) -> Schedule:
    """``schedule`` if it has a callable ``next``, else a ``ScheduleError`` naming ``owner``."""
    if not isinstance(schedule, Schedule) or not callable(schedule.next):
        raise ScheduleError(
            f"{owner}: schedule must be a schedule (IntervalSchedule, CronSchedule, or an "
            f"object with next(n, after=None)), not {type(schedule).__name__} {schedule!r}"
        )
    return schedule


def next_due(schedule: Schedule, after: _dt.datetime | None = None) -> _dt.datetime | None:
    """The schedule's first due time strictly after ``after`` (default: now), or None."""
    times = schedule.next(1, after=after)
    return times[0] if times else None


def run_on_schedule(
    schedule: Schedule,
    run: Callable[[_dt.datetime], T],
    *,
    owner: str,
    logger: logging.Logger,
    waiting: Callable[[_dt.datetime], None] | None = None,
) -> T:
    """Call ``run(due)`` at each due time of ``schedule``, until it has none left after a
    run; return the last run's result. ``waiting(due)`` is told before each wait.

    Ctrl-C (``KeyboardInterrupt``) while waiting goes on up: nothing is running then.

    Raises:
        ScheduleError: the schedule has no due time after now (``owner`` names what it
            schedules), before any waiting.
    """
    now = _dt.datetime.now(_UTC)
    due = next_due(schedule, now)
    if due is None:
        raise ScheduleError(
            f"{owner}: its schedule {schedule!r} has no due time after now ({now.isoformat()}), "
            "so it would never run; give it a later end_date, or run once with "
            "run_on_schedule=False"
        )
    while True:
        if waiting is not None:
            waiting(due)
        if logger.isEnabledFor(logging.INFO):
            logger.info("Waiting for next scheduled run at %s", due.isoformat())
        _wait_until(due)
        result = run(due)
        # Never `due` again, even if the clock reads a hair before it.
        due = next_due(schedule, max(_dt.datetime.now(_UTC), due))
        if due is None:
            return result


def _wait_until(due: _dt.datetime) -> None:
    """Sleep until the wall clock reaches ``due`` (in naps, reading the clock after each)."""
    while True:
        left = (due - _dt.datetime.now(_UTC)).total_seconds()
        if left <= 0:
            return
        time.sleep(min(left, _LONGEST_NAP))
