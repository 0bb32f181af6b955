"""Location templates: where a task's result goes, named from its run.

A template (a task's ``target=``, a result's ``location``) is a ``str.format`` string. Its
fields name values of the task's run, looked up in this order (as in Prefect 1.x, an input
wins over a context key or parameter of the same name):

1. the task's inputs, by argument name;
2. the task's context: the run's keys (``flow_name``, ``flow_run_id``, ``today``, ``date``,
   ``yesterday``, ``tomorrow``, ``scheduled_start_time``, ``parameters``, your own
   ``context=`` keys...) and the task's (``TASK_FIELDS``: ``task_name``, ``map_index``,
   ``task_full_name``, ``task_run_id``...);
3. the flow's parameters, by name.

Format specs and attribute or item access work as in ``str.format``: ``"{map_index:05d}"``,
``"{parameters[n]}"``, ``"{date:%Y/%m}"``. A template is checked when a task is made (its
syntax: ``TemplateError``), its fields before a run (``unknown_fields``, against what the
run will give), and it is filled where the task runs (``fill``; a field the run does not
give after all is a ``TemplateError`` naming it and the fields it has).

>>> fill("{flow_name}/{x}-{map_index:03d}.pkl", {"x": "a"}, {"flow_name": "etl", "map_index": 7}, {})
'etl/a-007.pkl'
"""

from __future__ import annotations

import functools
import re
import string
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = [
    "DEFAULT_TEMPLATE", "TARGET_FOUND", "TASK_FIELDS", "Target", "TemplateError", "fields",
    "fill", "unknown_fields",
]

#: A task's target: a template, or a function of the same values returning the location.
Target = str | Callable[..., str]

#: Where a result goes when neither the task's ``target`` nor its result's ``location``
#: says: one file per task run.
DEFAULT_TEMPLATE = "{flow_name}/{task_name}/{task_run_id}"

#: How the message of a task that found its target starts (Prefect's), then the location.
TARGET_FOUND = "Result found at task target "

#: The context keys every task run has besides the run's (``attempt.task_context``), and
#: those it has when they apply (a loop's count, a resumed run, a run name).
TASK_FIELDS = frozenset(
    {
        "task_name", "task_full_name", "task_slug", "map_index", "task_tags", "task_run_count",
        "task_run_id", "task_loop_count", "task_loop_result", "task_run_name", "resume",
    }
)  # fmt: skip

_ROOT = re.compile(r"[.\[]")


class TemplateError(ValueError):
    """A location template that cannot be parsed or filled; the message says which field."""


@functools.lru_cache(maxsize=1024)
def fields(template: str) -> tuple[str, ...]:
    """The names a template's fields start with, in order, once each.

    Raises:
        TemplateError: the template is not a valid format string, or has a positional
            field (``{}``, ``{0}``): every field must name a value.

    >>> fields("{flow_name}/{parameters[n]}/{x.y}-{flow_name}")
    ('flow_name', 'parameters', 'x')
    """
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as error:
        raise TemplateError(f"template {template!r} is not a valid format string: {error}") from None
    for _, field, _, _ in parsed:
        if field is None:
            continue
        root = _ROOT.split(field, maxsplit=1)[0]
        if not root or root.isdigit():
            raise TemplateError(
                f"template {template!r} has a positional field {{{field}}}: name a value, "
                "e.g. {flow_name}, {task_name}, {map_index}, {today} or an input's name"
            )
        names.append(root)
    return tuple(dict.fromkeys(names))


def unknown_fields(template: str, known: Iterable[str]) -> list[str]:
    """The fields of ``template`` that are not in ``known``, in order."""
    have = set(known)
    return [name for name in fields(template) if name not in have]


class _Values(Mapping[str, Any]):
    """The values a template's fields are looked up in (see the module docstring)."""

    __slots__ = ("_inputs", "_context", "_parameters")

    def __init__(
        self, inputs: Mapping[str, Any], context: Mapping[str, Any], parameters: Mapping[str, Any]
    ) -> None:
        self._inputs, self._context, self._parameters = inputs, context, parameters

    def __getitem__(self, key: str) -> Any:
        if key in self._inputs:
            return self._inputs[key]
        if key in self._context:
            return self._context[key]
        return self._parameters[key]

    def __iter__(self) -> Any:
        return iter({**self._parameters, **self._context, **self._inputs})

    def __len__(self) -> int:
        return len({**self._parameters, **self._context, **self._inputs})


def _known(values: _Values) -> str:
    return ", ".join(sorted(k for k in values if not k.startswith("_") and k != "logger"))


def fill(
    template: Target,
    inputs: Mapping[str, Any],
    context: Mapping[str, Any],
    parameters: Mapping[str, Any],
) -> str:
    """The location ``template`` names for a task run with these ``inputs``, ``context``
    and flow ``parameters``; a function target is called with all of them by name.

    Raises:
        TemplateError: a field the run does not give (naming it and those it gives), a
            value its format spec does not fit, or a function target that fails or does
            not return a string.
    """
    values = _Values(inputs, context, parameters)
    if not isinstance(template, str):
        try:
            location = template(**{k: values[k] for k in values})
        except Exception as error:
            raise TemplateError(f"target function {template!r} failed: {error!r}") from error
        if not isinstance(location, str):
            raise TemplateError(
                f"target function {template!r} returned a {type(location).__qualname__}, not a str"
            )
        return location
    try:
        return template.format_map(values)
    except KeyError as error:
        raise TemplateError(
            f"template {template!r} names the field {error.args[0]!r}, which this task run "
            f"does not have; it has: {_known(values)}"
        ) from None
    except (ValueError, TypeError, AttributeError, IndexError) as error:
        raise TemplateError(f"template {template!r} cannot be filled: {error!r}") from None
