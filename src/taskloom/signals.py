"""Signals: exceptions that set a task's state.

Raise one anywhere in a task's call stack, nested helpers included, and the task ends in
the matching state::

    @task
    def fetch(url: str) -> bytes:
        if not url:
            raise signals.SKIP("nothing to fetch")
        ...

Signals derive from ``BaseException``, like ``KeyboardInterrupt``, so a user's
``except Exception`` does not swallow them.

=================  ==================  ====================================================
signal             state               notes
=================  ==================  ====================================================
``SUCCESS``        ``Success``         ``result=`` is handed downstream
``FAIL``           ``Failed``          goes through retries like any failure
``TRIGGERFAIL``    ``TriggerFailed``   what a trigger raises to explain why it did not pass
``VALIDATIONFAIL`` ``ValidationFailed`` the task found its data invalid; retries apply
``RETRY``          ``Retrying``        retries even without ``max_retries``
``SKIP``           ``Skipped``         ``result=`` is handed downstream
``PAUSE``          ``Paused``          the task waits to be resumed
``LOOP``           ``Looped``          the task runs again at once, in the same place (a
                                       *pass*), reading ``context.task_loop_count`` (1 on
                                       the first pass) and ``context.task_loop_result``
                                       (this ``result=``); its final state is the last
                                       pass's; ``max_loops`` limits the passes
``ENDRUN(state)``  exactly ``state``   no retry, no output cache; not a ``State`` ->
                                       ``Failed`` naming the task and the type
=================  ==================  ====================================================

Without ``result=``, the state's result is the signal itself (as in Prefect Core).
A retried looping task (``max_retries``) starts again at the pass that failed, with the
loop result it had (``Retrying.loop_count``, ``Retrying.loop_result``); a ``RETRY``, as in
Prefect, starts it again at the first pass.
Outside a flow run (``t.run(...)``), a signal is raised like any exception.
"""

from __future__ import annotations

import datetime as _dt
from typing import Any, ClassVar

from . import states

__all__ = [
    "ENDRUN",
    "FAIL",
    "LOOP",
    "PAUSE",
    "RETRY",
    "SKIP",
    "SUCCESS",
    "TRIGGERFAIL",
    "TaskloomSignal",
    "VALIDATIONFAIL",
    "pause_task",
]

_UNSET: Any = object()


class TaskloomSignal(BaseException):
    """The base of every signal; a ``BaseException`` so ``except Exception`` lets it pass.

    Args:
        message: the message of the state the signal sets.
        result: the state's result; defaults to the signal itself.
    """

    state_class: ClassVar[type[states.State[Any]]] = states.State

    def __init__(self, message: str | None = None, *, result: Any = _UNSET) -> None:
        super().__init__(message)
        self.message = message
        self.result: Any = self if result is _UNSET else result

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only arguments do not survive BaseException's default pickling, and a
        # result that is the signal itself would recurse: rebuild both by hand.
        attrs = {k: v for k, v in self.__dict__.items() if k != "result"}
        result_is_self = self.result is self
        result = None if result_is_self else self.result
        return (_rebuild_signal, (type(self), self.message, result, result_is_self, attrs))

    def to_state(self) -> states.State[Any]:
        """The state this signal sets on the task that raised it."""
        return self.state_class(self.message, self.result)


def _rebuild_signal(
    cls: type[TaskloomSignal],
    message: str | None,
    result: Any,
    result_is_self: bool,
    attrs: dict[str, Any],
) -> TaskloomSignal:
    signal = cls.__new__(cls)
    BaseException.__init__(signal, message)
    signal.__dict__.update(attrs)
    signal.result = signal if result_is_self else result
    return signal


class FAIL(TaskloomSignal):
    """End the task ``Failed``; retries apply as for any error."""

    state_class = states.Failed


class TRIGGERFAIL(FAIL):
    """End the task ``TriggerFailed``; triggers raise it to say why they did not pass."""

    state_class = states.TriggerFailed


class VALIDATIONFAIL(FAIL):
    """End the task ``ValidationFailed`` (a ``Failed``): its data did not validate."""

    state_class = states.ValidationFailed


class SUCCESS(TaskloomSignal):
    """End the task ``Success`` at once; ``result=`` goes to downstream tasks."""

    state_class = states.Success


class SKIP(TaskloomSignal):
    """End the task ``Skipped``; downstream tasks are skipped too (see ``skip_on_upstream_skip``)."""

    state_class = states.Skipped


class RETRY(TaskloomSignal):
    """Run the task again, at ``start_time`` (default: now), even beyond ``max_retries``."""

    state_class = states.Retrying

    def __init__(
        self,
        message: str | None = None,
        *,
        result: Any = _UNSET,
        start_time: _dt.datetime | None = None,
    ) -> None:
        super().__init__(message, result=result)
        self.start_time = start_time

    def to_state(self) -> states.State[Any]:
        return states.Retrying(self.message, self.result, start_time=self.start_time)


class PAUSE(TaskloomSignal):
    """Pause the task until it is resumed (``Resume`` state, or ``start_tasks``)."""

    state_class = states.Paused

    def __init__(
        self,
        message: str | None = None,
        *,
        result: Any = _UNSET,
        start_time: _dt.datetime | None = None,
    ) -> None:
        super().__init__(message, result=result)
        self.start_time = start_time

    def to_state(self) -> states.State[Any]:
        return states.Paused(self.message, self.result, start_time=self.start_time)


def pause_task(message: str | None = None, duration: _dt.timedelta | None = None) -> None:
    """Pause the task that calls it, unless it runs resumed (Prefect 1.x's ``pause_task``):
    ``PAUSE`` with ``message``, which resumes by itself after ``duration`` if given.

    >>> @task                                       # doctest: +SKIP
    ... def deploy() -> None:
    ...     pause_task("approve the deploy")   # the next run that resumes it goes on
    ...     ...
    """
    from .context import context  # (the context imports states, as this module does)

    if not context.get("resume"):
        start = None if duration is None else _dt.datetime.now(_dt.timezone.utc) + duration
        raise PAUSE(message or "Pause signal raised during task execution.", start_time=start)


class LOOP(TaskloomSignal):
    """Run the task again at once, in the same place: the next pass reads ``result=`` as
    ``context.task_loop_result`` and ``context.task_loop_count`` one more.

    >>> state = LOOP("again", result=2).to_state()
    >>> state, state.result
    (<Looped: "again">, 2)
    """

    state_class = states.Looped


class ENDRUN(TaskloomSignal):
    """End the task in exactly ``state``: no retry, no output cache.

    Args:
        state: the state the task ends in; anything else ends it ``Failed``.
    """

    state_class = states.State

    def __init__(self, state: states.State[Any] | None = None) -> None:
        super().__init__(getattr(state, "message", None), result=None)
        self.state = state

    def to_state(self) -> states.State[Any]:
        if isinstance(self.state, states.State):
            return self.state
        return states.Failed(
            f"ENDRUN needs a State, not a {type(self.state).__qualname__}", TypeError(repr(self.state))
        )
