"""What ``flow.run`` is given, checked before any task runs.

``check`` turns ``Flow.run``'s arguments into what the scheduler works with (``RunArgs``):
seeded states and start tasks by task number, every parameter's value, and the run's
context. Each mistake is a ``FlowDefinitionError`` that names the flow, the task or the
parameter, and says what to write instead; the checks run in the order the arguments are
documented (task states, start tasks, parameters), so one run reports its first mistake.
"""

from __future__ import annotations

import datetime as _dt
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ._secrets import run_secrets
from .context import ReadOnlyDict, current, date_keys
from .logging import flow_logger
from .errors import FlowDefinitionError
from .states import State, loaded
from .task import Task
from .tasks.secrets import Secret

if TYPE_CHECKING:
    from .flow import Flow
    from .plan import Plan

__all__ = ["RunArgs", "check", "resolve_parameters", "run_context"]


@dataclass(slots=True, frozen=True)
class RunArgs:
    """A run's checked arguments.

    Attributes:
        parameters: every parameter's value (given, or its default), by name.
        context: what ``taskloom.context`` holds during the run (``flow_run_id`` and the
            date keys filled in).
        seeded: the states ``task_states`` gives, by task number.
        starts: the numbers of the ``start_tasks``.
        given: the context the caller gave (``context=``, over the context the call
            was made in), which the journal keeps for a resume.
    """

    parameters: dict[str, Any]
    context: dict[str, Any]
    seeded: dict[int, State[Any]]
    starts: frozenset[int]
    given: dict[str, Any]

    @property
    def run_id(self) -> str:
        """The run's id (``context.flow_run_id``), which names it in the journal."""
        return str(self.context["flow_run_id"])


def check(
    flow: Flow,
    compiled: Plan,
    *,
    parameters: Mapping[str, Any],
    context: Mapping[str, Any],
    task_states: Mapping[object, State[Any]],
    start_tasks: Iterable[object] | None,
) -> RunArgs:
    """Check ``Flow.run``'s arguments against ``flow`` (compiled as ``compiled``).

    Raises:
        FlowDefinitionError: a ``task_states`` or ``start_tasks`` entry that is not in the
            flow, a seeded state that is not a State, a start task whose state lacks the
            inputs it needs, or an unknown or missing parameter.
    """
    starting = list(start_tasks or ())
    index = compiled.numbers([*task_states, *starting])
    seeded: dict[int, State[Any]] = {}
    for t, state in task_states.items():
        if t not in index:
            raise FlowDefinitionError(
                f"Flow {flow.name!r}: task_states names {t!r}, which is not in the flow"
            )
        if not isinstance(state, State):
            raise FlowDefinitionError(
                f"Flow {flow.name!r}: task_states[{t!r}] must be a State, not {state!r}"
            )
        seeded[index[t]] = loaded(state)  # (a value a past run left unread is read now)
    starts: set[int] = set()
    for t in starting:
        if t not in index:
            raise FlowDefinitionError(
                f"Flow {flow.name!r}: start task {t!r} is not in the flow"
            )
        assert isinstance(t, Task)
        i = index[t]
        starts.add(i)
        needed = {e.key for e, _ in compiled.nodes[i].in_edges if e.key is not None}
        stored = seeded.get(i)
        have = set((stored.cached_inputs or {}) if stored is not None else {})
        if needed - have:
            raise FlowDefinitionError(
                f"Flow {flow.name!r}: start task {t.name!r} needs input(s) "
                f"{', '.join(sorted(needed - have))}, but its state carries no cached_inputs "
                f"for them; pass task_states={{task: Resume(cached_inputs=paused.cached_inputs)}}"
            )
    values = resolve_parameters(flow, parameters)
    secrets = [compiled.nodes[i].task for i in compiled.secrets]
    given = {**current(), **context}
    return RunArgs(values, run_context(flow, values, given, secrets), seeded, frozenset(starts), given)


def resolve_parameters(flow: Flow, given: Mapping[str, Any]) -> dict[str, Any]:
    """Every parameter's value: given, or its default.

    Raises:
        FlowDefinitionError: an unknown parameter, a missing required one, or a value its
            parameter refuses.
    """
    declared = flow.parameters().by_name()
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise FlowDefinitionError(
            f"Flow {flow.name!r} got unknown parameter(s): {', '.join(unknown)}; "
            f"its parameters are: {', '.join(sorted(declared)) or 'none'}"
        )
    missing = sorted(n for n, p in declared.items() if p.required and n not in given)
    if missing:
        raise FlowDefinitionError(
            f"Flow {flow.name!r} is missing required parameter(s): {', '.join(missing)}; "
            f"pass them as flow.run(parameters={{{', '.join(repr(m) + ': ...' for m in missing)}}})"
        )
    values: dict[str, Any] = {}
    for name, parameter in declared.items():
        value = given[name] if name in given else parameter.default
        parameter.check(value)
        values[name] = value
    return values


def run_context(
    flow: Flow,
    parameters: dict[str, Any],
    given: Mapping[str, Any],
    secrets: Sequence[Task[Any, Any]],
) -> dict[str, Any]:
    """The run's context: what its caller gave (``given``: the current context, the
    run's ``context=`` over it), and the run's own keys (with the values of the flow's
    ``Secret`` tasks, ``secrets``)."""
    values = dict(given)
    now = _dt.datetime.now(_dt.timezone.utc)
    values.setdefault("flow_run_id", str(uuid.uuid4()))
    values.setdefault("flow_run_name", values["flow_run_id"])  # (Prefect's: a local run's id)
    values.setdefault("scheduled_start_time", now)
    for key, value in date_keys(values.get("date", now)).items():
        values.setdefault(key, value)
    if isinstance(values["date"], str):
        values["date"] = _dt.datetime.fromisoformat(values["date"])
    values["flow_name"] = flow.name
    values["logger"] = flow_logger(flow.name)
    values["parameters"] = ReadOnlyDict(parameters)
    names = [t.secret_name for t in secrets if isinstance(t, Secret)]
    if names or "secrets" in values:
        # Read in this process, so workers see the same values and every process masks them.
        values["secrets"] = ReadOnlyDict(run_secrets(values.get("secrets"), names))
    return values
