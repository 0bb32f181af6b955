"""Type tests: states are generic in their result. Only type-checked, never run.

``assert_type`` lines must be accepted; a line ending in ``# type: ignore[code]`` must be
rejected with that code.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, assert_type

from taskloom.states import (
    Cached,
    Failed,
    Finished,
    Paused,
    Pending,
    Resume,
    Retrying,
    Running,
    Scheduled,
    Skipped,
    State,
    Success,
    TimedOut,
    TriggerFailed,
)

now = datetime.now(timezone.utc)

# -- the result type is inferred from `result=` -----------------------------------------------

assert_type(Success(result=5), Success[int])
assert_type(Success("done", 5), Success[int])
assert_type(Success(result=5).result, int)
assert_type(Success(result=[1.5]).result, list[float])
assert_type(Failed(result=ValueError("boom")), Failed[ValueError])
assert_type(Cached(result="x", hashed_inputs={"x": "h"}, cached_result_expiration=now), Cached[str])
assert_type(Retrying(result=1, run_count=2, start_time=now + timedelta(seconds=1)), Retrying[int])
assert_type(Skipped(result=None), Skipped[Any])  # `result: R | None`: None says nothing of R

# -- with no result, the type parameter defaults to Any: no annotation needed -------------------

assert_type(Pending(), Pending[Any])
assert_type(Scheduled(start_time=now), Scheduled[Any])
assert_type(Running("started"), Running[Any])
assert_type(Paused(cached_inputs={"x": 1}), Paused[Any])
assert_type(Resume(cached_inputs={"x": 1}), Resume[Any])
assert_type(TriggerFailed("no"), TriggerFailed[Any])
assert_type(TimedOut(), TimedOut[Any])

# -- the attributes every state has ------------------------------------------------------

state: State[int] = Success(result=5)
assert_type(state.message, str | None)
assert_type(state.cached_inputs, dict[str, Any] | None)
assert_type(state.is_successful(), bool)
assert_type(state.is_failed(), bool)
assert_type(state.is_cached(), bool)
assert_type(Scheduled().start_time, datetime | None)
assert_type(Retrying().run_count, int)
assert_type(Cached().hashed_inputs, dict[str, str])
assert_type(Cached().cached_parameters, dict[str, Any])

# -- states are covariant in their result (they are immutable) -------------------------------

as_float: State[float] = Success(result=5)
as_finished: Finished[object] = Success(result="x")
as_int: State[int] = Success(result="x")  # type: ignore[arg-type]
as_failed: Failed[int] = Success(result=5)  # type: ignore[assignment]
text: str = Success(result=5).result  # type: ignore[assignment]
Success(result=5).result = 6  # type: ignore[misc]  # `result` is a read-only property
Retrying(run_count="2")  # type: ignore[arg-type]
Scheduled(start_time="now")  # type: ignore[arg-type]
