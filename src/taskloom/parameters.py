"""Parameters of a given kind: ``DateTimeParameter``, Prefect 1.x's parameter whose value is
a date and time, given as a ``datetime`` or an ISO-8601 string::

    with Flow("daily") as flow:
        day = DateTimeParameter("day")                  # reads as `datetime` to mypy
        report(day)

    flow.run(day="2024-05-01T06:00:00+02:00")          # the task gets a datetime

A string is parsed when the run starts, so a bad one stops the run before any task runs,
naming the parameter. The run's context (``context.parameters``) keeps the value as given,
as Prefect does; the parameter's result is the ``datetime``.
"""

from __future__ import annotations

import datetime as _dt
from typing import TYPE_CHECKING, Any, Literal, overload

from .errors import FlowDefinitionError
from .task import _NO_DEFAULT, ParameterTask

__all__ = ["DateTimeParameter", "DateTimeParameterTask", "parse_datetime"]


def parse_datetime(name: str, value: object) -> _dt.datetime:
    """``value`` (a ``datetime``, a ``date``, or an ISO-8601 string) as an aware ``datetime``;
    one without a time zone is read as UTC, as Prefect 1.x (pendulum) read it.

    >>> parse_datetime("day", "2024-05-01")
    datetime.datetime(2024, 5, 1, 0, 0, tzinfo=datetime.timezone.utc)

    Raises:
        FlowDefinitionError: naming parameter ``name`` and the value, when it is neither.
    """
    if isinstance(value, _dt.datetime):
        moment = value
    elif isinstance(value, _dt.date):
        moment = _dt.datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        try:
            moment = _dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise FlowDefinitionError(
                f"Parameter {name!r}: {value!r} is not an ISO-8601 date and time "
                "(e.g. '2024-05-01', '2024-05-01T06:00:00+02:00' or '2024-05-01T04:00:00Z')"
            ) from None
    else:
        raise FlowDefinitionError(
            f"Parameter {name!r} expects a datetime or an ISO-8601 string, "
            f"got {type(value).__name__} {value!r}"
        )
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=_dt.timezone.utc)


class DateTimeParameterTask(ParameterTask):
    """A parameter whose value is a ``datetime`` (build it with ``DateTimeParameter``).

    Args:
        name: the parameter's name, unique in its flow.
        default: the value when the run does not give one (a ``datetime`` or an ISO-8601
            string, checked now).
        required: whether a run must give it. Default: when there is no default. (Prefect
            1.x made it required even with a default, which then never applied.)

    Raises:
        FlowDefinitionError: a default that is not a date and time, naming the parameter.
    """

    def __init__(
        self, name: str, default: Any = _NO_DEFAULT, *, required: bool | None = None
    ) -> None:
        if default is not _NO_DEFAULT and default is not None:
            parse_datetime(name, default)  # before the parameter joins a flow
        super().__init__(name, default, required=required)

    def run(self) -> _dt.datetime | None:
        """The run's value for this parameter, as a ``datetime`` (None when optional and
        not given)."""
        return self.parse(super().run())

    def parse(self, value: Any) -> _dt.datetime | None:
        """``value`` as an aware ``datetime`` (``parse_datetime``); None stays None."""
        return None if value is None else parse_datetime(self.name, value)

    def check(self, value: Any) -> None:
        """Raise ``FlowDefinitionError`` naming the parameter if ``value`` is not a date and
        time (None is allowed: an optional parameter that was not given)."""
        self.parse(value)

    def __repr__(self) -> str:
        return f"<DateTimeParameter: {self.name}>"


if TYPE_CHECKING:
    # As with `Parameter`: for the type checker the parameter reads as its value.

    @overload
    def DateTimeParameter(
        name: str,
        default: _dt.datetime | _dt.date | str = ...,
        *,
        required: Literal[True] | None = None,
    ) -> _dt.datetime: ...

    @overload
    def DateTimeParameter(
        name: str, default: _dt.datetime | _dt.date | str | None = ..., *, required: bool
    ) -> _dt.datetime | None: ...

    def DateTimeParameter(
        name: str, default: Any = ..., *, required: bool | None = None
    ) -> Any:
        """A flow parameter whose value is a ``datetime``; see ``DateTimeParameterTask``."""

else:
    DateTimeParameter = DateTimeParameterTask
