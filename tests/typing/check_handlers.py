"""Type tests: state handlers, on_failure and terminal_state_handler. Only type-checked.

A line ending in ``# type: ignore[code]`` must be rejected with that code.
"""

from __future__ import annotations

from typing import Any

from taskloom import Flow, Task, task
from taskloom.notifications import slack_notifier, webhook_notifier
from taskloom.states import Failed, State, Success


def log_change(obj: Task[Any, Any], old: State[Any], new: State[Any]) -> None:
    return None


def rescue(obj: object, old: State[Any], new: State[Any]) -> State[Any] | None:
    return Success("ok") if isinstance(new, Failed) else None


def alert(obj: object, state: State[Any]) -> None:
    return None


def final(flow: Flow, state: State[Any], refs: set[State[Any]]) -> State[Any] | None:
    return None


def two(obj: object, new: State[Any]) -> None:
    return None


@task(state_handlers=[log_change, rescue, slack_notifier()], on_failure=alert)
def accepted() -> int:
    return 1


Task(name="t", state_handlers=[webhook_notifier("http://127.0.0.1/x")])
Flow("f", state_handlers=[rescue], on_failure=alert, terminal_state_handler=final)

Task(name="bad", state_handlers=[two])  # type: ignore[list-item]  # wrong arity
Task(name="bad", on_failure=log_change)  # type: ignore[arg-type]  # on_failure takes 2
Flow("bad", terminal_state_handler=rescue)  # type: ignore[arg-type]  # its 3rd argument is a set of states
