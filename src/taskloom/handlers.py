"""State handlers: user callbacks told of a task's or a flow's state changes.

Three kinds, each a Protocol here so that mypy checks them where they are passed:

- ``StateHandler``: ``fn(obj, old_state, new_state) -> State | None``, on ``Task(...)``,
  ``@task(...)`` and ``Flow(...)`` as ``state_handlers=[...]``. Called at every state change,
  in order; each sees the state the one before it returned (``None`` keeps it), as in
  Prefect 1.4.1.
- ``OnFailure``: ``fn(obj, state)``, called once when the task or flow *ends* failed (after
  its last retry), not on every failed attempt as Prefect 1.4.1 did.
- ``TerminalStateHandler``: ``fn(flow, state, reference_task_states) -> State | None``, which
  may replace a flow's final state.

Where they run (the engine's side is in ``taskloom.attempt`` and ``taskloom.runner``):
transitions inside an attempt (``Pending``/``Retrying``/``Resume`` -> ``Running``,
``Running`` -> the outcome; between passes ``Running`` -> ``Looped``, then ``Pending`` ->
``Running``, as in Prefect 1.x) are handled where the task runs; transitions the
scheduler decides (``Skipped``, ``TriggerFailed``, ``Cached``, ``Paused`` by a trigger,
``Failed`` -> ``Retrying``, ``Mapped``) in the calling process; flow handlers in the
calling process.

What a handler does wrong never ends a run: ``call_state_handlers`` turns an exception, or
a return value that is neither a State nor None, into a ``Failed`` state naming the handler
(and the type it returned), and a signal raised by a handler into the signal's state, as
Prefect did (``SKIP`` on entering ``Running`` skips the task). Validation
(``check_handlers``) happens when the task or flow is built: a handler that is not callable
or cannot take its positional arguments is a definition error naming both.

This module is a definition: it uses the data layer (states, signals) and nothing above.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Protocol

from .signals import ENDRUN, TaskloomSignal
from .states import Failed, State

__all__ = [
    "OnFailure",
    "StateHandler",
    "TerminalStateHandler",
    "call_on_failure",
    "call_state_handlers",
    "check_handlers",
    "handler_name",
    "has_handlers",
]


class StateHandler(Protocol):
    """``fn(obj, old_state, new_state)``: told of a state change; may return a replacement."""

    def __call__(
        self, obj: Any, old_state: State[Any], new_state: State[Any], /
    ) -> State[Any] | None: ...


class OnFailure(Protocol):
    """``fn(obj, state)``: told once that a task or flow ended failed."""

    def __call__(self, obj: Any, state: State[Any], /) -> object: ...


class TerminalStateHandler(Protocol):
    """``fn(flow, state, reference_task_states)``: may replace a flow's final state."""

    def __call__(
        self, flow: Any, state: State[Any], reference_task_states: set[State[Any]], /
    ) -> State[Any] | None: ...


def has_handlers(task: object) -> bool:
    """Whether ``task`` has state handlers or an ``on_failure`` to call (a task without
    either pays nothing for them: no handler code runs)."""
    return bool(getattr(task, "state_handlers", None)) or getattr(task, "on_failure", None) is not None


def handler_name(handler: object) -> str:
    """How messages name a handler: its qualified name, else its repr."""
    name = getattr(handler, "__qualname__", None)
    return name if isinstance(name, str) else repr(handler)


def _takes(handler: Callable[..., Any], count: int) -> bool:
    """Whether ``handler`` accepts ``count`` positional arguments (True when its signature
    cannot be read, e.g. some builtins)."""
    try:
        signature = inspect.signature(handler)
    except (TypeError, ValueError):
        return True
    try:
        signature.bind(*([None] * count))
    except TypeError:
        return False
    return True


def check_handlers(
    owner: str,
    error: type[Exception],
    state_handlers: object,
    on_failure: object,
    terminal_state_handler: object = None,
) -> list[StateHandler]:
    """Validate the handlers of ``owner`` (e.g. ``"Task 'load'"``); return the state
    handlers as a list.

    Raises ``error`` (``TaskDefinitionError`` or ``FlowDefinitionError``) naming the owner
    and the handler, for anything not callable or unable to take its positional arguments.
    """
    if state_handlers is None:
        handlers: list[Any] = []
    elif isinstance(state_handlers, (str, bytes)) or not isinstance(state_handlers, Iterable):
        raise error(
            f"{owner}: state_handlers must be a list of callables fn(obj, old_state, new_state), "
            f"not {state_handlers!r}"
        )
    else:
        handlers = list(state_handlers)
    checks: list[tuple[str, object, int, str]] = [
        ("state handler", h, 3, "fn(obj, old_state, new_state)") for h in handlers
    ]
    if on_failure is not None:
        checks.append(("on_failure", on_failure, 2, "fn(obj, state)"))
    if terminal_state_handler is not None:
        checks.append(
            ("terminal_state_handler", terminal_state_handler, 3,
             "fn(flow, state, reference_task_states)")
        )
    for what, handler, count, shape in checks:
        if not callable(handler):
            raise error(f"{owner}: {what} {handler!r} is not callable; it must be {shape}")
        if not _takes(handler, count):
            raise error(
                f"{owner}: {what} {handler_name(handler)} cannot take {count} positional "
                f"arguments; it must be {shape}"
            )
    return handlers


def call_state_handlers(
    obj: Any,
    owner: str,
    handlers: Sequence[StateHandler],
    old: State[Any],
    new: State[Any],
) -> tuple[State[Any], bool]:
    """Call ``handlers`` in order on the change ``old`` -> ``new`` of ``obj``.

    Returns the state to keep, and whether it ends the task as ``ENDRUN`` would (no retry,
    no cache, no later handlers): True for a handler that raised an exception, raised
    ``ENDRUN`` or returned something that is not a State. A state signal raised by a
    handler gives its state, and the handlers after it are not called (as in Prefect).
    Never raises, except ``KeyboardInterrupt`` and ``SystemExit``.
    """
    state = new
    change = f"{type(old).__name__} -> {type(new).__name__}"
    for handler in handlers:
        try:
            returned: object = handler(obj, old, state)
        except ENDRUN as ended:
            return ended.to_state(), True
        except TaskloomSignal as raised:
            return raised.to_state(), False
        except Exception as error:
            message = (
                f"Unexpected error while calling state handler {handler_name(handler)} of "
                f"{owner} ({change}): {error!r}"
            )
            return Failed(message, error), True
        if returned is None:
            continue
        if not isinstance(returned, State):
            message = (
                f"State handler {handler_name(handler)} of {owner} ({change}) returned a "
                f"{type(returned).__qualname__}; it must return a State or None"
            )
            return Failed(message, TypeError(message)), True
        state = returned
    return state, False


def call_on_failure(obj: Any, owner: str, on_failure: OnFailure, state: State[Any]) -> State[Any]:
    """Call ``on_failure(obj, state)``; return ``state``, or a ``Failed`` naming the
    callback if it raised (the task stays failed either way). Never raises, except
    ``KeyboardInterrupt`` and ``SystemExit``."""
    try:
        on_failure(obj, state)
    except (Exception, TaskloomSignal) as error:
        message = (
            f"Unexpected error while calling on_failure {handler_name(on_failure)} of "
            f"{owner}: {error!r} (after: {state.message})"
        )
        return Failed(message, error)
    return state
