# The few names of croniter (which ships no types) that taskloom.schedules uses; checked
# against the installed croniter by `nox -s stubtest` (with --ignore-missing-stub).
import datetime
from typing import overload

class CroniterError(ValueError): ...
class CroniterBadCronError(CroniterError): ...
class CroniterBadDateError(CroniterError): ...

class croniter:
    def __init__(
        self,
        expr_format: str,
        start_time: datetime.datetime | float | None = None,
        ret_type: type = ...,
        day_or: bool = True,
        max_years_between_matches: int | None = None,
        is_prev: bool = False,
        hash_id: bytes | str | None = None,
        implement_cron_bug: bool = False,
        second_at_beginning: bool = False,
        expand_from_start_time: bool = False,
    ) -> None: ...
    @overload
    def get_next(
        self,
        ret_type: type[datetime.datetime],
        start_time: datetime.datetime | float | None = None,
        update_current: bool = True,
    ) -> datetime.datetime: ...
    @overload
    def get_next(
        self,
        ret_type: type[float] | None = None,
        start_time: datetime.datetime | float | None = None,
        update_current: bool = True,
    ) -> float: ...
