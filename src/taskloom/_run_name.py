"""A task run's name: its ``task_run_name`` option filled in for one run.

The option is a template (``"fetch-{city}"``) or a callable. Both get the same fields,
Prefect's: the flow's parameters, then the run context (the task's own keys, such as
``task_name``, ``map_index``, ``today``), then the task's inputs; a later source wins a
name they share. A template is filled with ``str.format``; a callable is called with the
fields as keyword arguments and must return a string.

``run_name`` raises ``RunNameError`` (a ``ValueError``) naming the task and what went
wrong: the unknown field, the known ones, or the callable and its error. It runs where the
task runs (``taskloom.attempt``), which turns the error into the run's ``Failed`` state.

>>> run_name("fetch", "fetch-{city}-{today}", {"today": "2026-12-02"}, {"city": "Paris"})
'fetch-Paris-2026-12-02'
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["RunNameError", "run_name"]

#: Context keys that are objects, not values a name is made of: left out of the fields.
_NOT_FIELDS = frozenset({"logger"})


class RunNameError(ValueError):
    """A ``task_run_name`` that could not be filled for a run; the message says why."""


def _fields(context: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, Any]:
    parameters = context.get("parameters") or {}
    fields: dict[str, Any] = dict(parameters)
    fields.update((k, v) for k, v in context.items() if k not in _NOT_FIELDS)
    fields.update(inputs)
    return fields


def _unknown_field(template: str, fields: Mapping[str, Any]) -> str | None:
    """The first field ``template`` names that ``fields`` lacks (``{a.b}`` names ``a``)."""
    for _, field, _, _ in string.Formatter().parse(template):
        if field is None:
            continue
        head = field.split(".", 1)[0].split("[", 1)[0]
        if head not in fields:
            return head
    return None


def run_name(
    task_name: str,
    spec: str | Callable[..., str],
    context: Mapping[str, Any],
    inputs: Mapping[str, Any],
) -> str:
    """``spec`` (a task's ``task_run_name``) filled for one run of task ``task_name``.

    Raises:
        RunNameError: a template field that none of the parameters, the context or the
            inputs has (named, with the inputs and parameters it could use), a template
            that does not format, or a callable that raises or returns something other
            than a string.
    """
    fields = _fields(context, inputs)
    if isinstance(spec, str):
        unknown = _unknown_field(spec, fields)
        if unknown is not None:
            known = sorted(set(inputs) | set(context.get("parameters") or {}))
            raise RunNameError(
                f"Task {task_name!r}: task_run_name {spec!r} names the field {unknown!r}, "
                f"which is not an input of the task, a flow parameter or a context key "
                f"(inputs and parameters: {', '.join(known) or 'none'})"
            )
        try:
            return spec.format(**fields)
        except Exception as error:  # {} by position, a bad format spec, a failing attribute
            raise RunNameError(
                f"Task {task_name!r}: task_run_name {spec!r} could not be filled: {error!r}"
            ) from None
    label = getattr(spec, "__qualname__", None) or repr(spec)
    try:
        name = spec(**fields)
    except Exception as error:
        raise RunNameError(
            f"Task {task_name!r}: task_run_name callable {label} raised {error!r}"
        ) from None
    if not isinstance(name, str):
        raise RunNameError(
            f"Task {task_name!r}: task_run_name callable {label} returned a "
            f"{type(name).__qualname__}; it must return the name as a string"
        )
    return name
