"""Results and targets of task runs: which tasks persist, what is checked before a run,
and the reads and writes, which happen where the task runs.

A task *persists* when it has ``result=``, ``target=`` or ``checkpoint=True``, or its flow
has ``result=``; its store is its own result, else the flow's, else ``LocalResult()`` (the
``results`` directory of the taskloom home). Then, where the task runs (``attempt``):

1. its location is filled in (``locations.fill``: the task's ``target``, else its store's
   ``location``, else ``locations.DEFAULT_TEMPLATE``), before its body runs; a field the
   run does not have ends it ``Failed``, naming the field;
2. with a ``target``, if the store ``exists`` there and ``read`` succeeds, the task ends
   ``Cached("Result found at task target <location>")`` with that value and its body does
   not run; a target that cannot be read (truncated, another serializer's) is logged and
   the task runs; a store that cannot tell whether the target exists (its ``exists``
   raises) fails the task, naming the task, the target and the store (a retry asks again);
3. unless ``checkpoint=False``, a ``Success`` whose result is not None (a returned value,
   or ``SUCCESS(result=...)``) is written there (``write_result``); a value the serializer
   cannot take, or a store that fails, ends it ``Failed`` naming the task, the store and
   the value's type, and nothing is left half-written. A value that holds a secret's
   (a ``Secret`` task's result, say) is never written: a warning says so.

The location read or written travels back with the attempt's result
(``TaskResult.location``); the scheduler keeps it on the task's trace, so the journal
records it instead of the value (``taskloom.journal``).

Before a run, in the calling process, ``prepare_run`` checks every persisting task's
template against what the run will give (an unknown field is a ``FlowDefinitionError``
naming the task, the field and the known ones; so is a mapped task whose target would be
the same for every child) and each store's ``check()`` (a directory that cannot be
created or written is a ``ResultError``), then gives what the workers need in the run
context under ``RESULTS_KEY``: the flow's result and the default one, resolved in the
calling process (a worker process may have another ``TASKLOOM_HOME``).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ._secrets import holds_secret
from .errors import FlowDefinitionError, ResultError
from .locations import DEFAULT_TEMPLATE, TASK_FIELDS, Target, fields, unknown_fields
from .results import LocalResult, Result, ResultBase, as_store
from .states import Failed, State, Success
from .task import ParameterTask, Task, persists_by_itself

__all__ = [
    "Persist", "RESULTS_KEY", "RunResults", "completes", "persist_of", "persist_with", "prepare_run",
]

log = logging.getLogger("taskloom.results")

#: Where the run context carries the run's ``RunResults`` (only in a run that persists).
RESULTS_KEY = "_taskloom_results"

#: Fields that differ between the children of a mapped task.
_PER_CHILD = frozenset({"map_index", "task_full_name", "task_run_id"})


class RunResults(NamedTuple):
    """The stores of one run's tasks that have no ``result=`` of their own."""

    flow: Result | ResultBase | None  # the flow's ``result=``: every task persists to it
    default: Result | None  # for a task with ``target=`` or ``checkpoint=True`` and no result


@dataclass(frozen=True, slots=True)
class Persist:
    """How one task persists (see the module docstring)."""

    result: Result
    template: Target
    target: bool  # look for the location first: the task may not run
    writes: bool  # write a successful result there

    def where(self, location: str) -> str:
        """The full form of ``location`` (the result's ``where``, if it has one)."""
        where = getattr(self.result, "where", None)
        return str(where(location)) if callable(where) else location

    def read_target(self, task_name: str, location: str) -> tuple[bool, Any]:
        """``(True, value)`` when the target exists and reads; else ``(False, None)``,
        logging a target that exists but cannot be read.

        Raises:
            ResultError: the store cannot say whether the target exists (its ``exists``
                raised), naming the task, the target and the store.
        """
        result = self.result
        if not getattr(result, "finds_targets", True):  # (``PrefectResult``: see results)
            return False, None
        # Read first, ask later: a rerun that finds every target (the case worth making
        # fast) pays one open per task, not a stat and an open.
        try:
            return True, result.read(location)
        except Exception as error:
            if isinstance(error, FileNotFoundError):
                return False, None
            try:
                there = result.exists(location)
            except Exception as failure:
                raise ResultError(
                    f"Task {task_name!r}: whether its target {location!r} exists in {result!r} "
                    f"cannot be told: {failure!r}"
                ) from failure
            if not there:
                return False, None
            log.warning(
                "Task %r: its target %s exists but cannot be read (%r); running the task again",
                task_name, location, error,
            )
            return False, None

    def write_result(
        self, task_name: str, state: State[Any], location: str
    ) -> tuple[State[Any], str | None]:
        """Write ``state``'s result to ``location``: the state and where it went, or a
        ``Failed`` state naming the task, the store and the value's type, and None. A
        value holding a secret's (``taskloom._secrets``) is not written (a warning says so)."""
        value = state.result
        secret = holds_secret(value)
        if secret is not None:
            log.warning(
                "Task %r: its result holds the value of secret %r, so it is not written to %s",
                task_name, secret, location,
            )
            return state, None
        try:
            return state, self.result.write(value, location)
        except Exception as error:
            message = (
                f"Task {task_name!r}: its result, a {type(value).__qualname__}, could not be "
                f"written to {location!r} by {self.result!r}: {error}"
            )
            return Failed(message, error), None


def _persists(task: Task[Any, Any], flow_result: Result | ResultBase | None) -> bool:
    """Whether ``task`` persists in a run whose flow has ``flow_result`` (module docstring)."""
    return flow_result is not None or persists_by_itself(task)


def persist_with(
    task: Task[Any, Any], flow_result: Result | ResultBase | None, default: Result | None
) -> Persist | None:
    """How ``task`` persists with these stores for tasks without a result of their own;
    None: it does not (or needs ``default`` and none was given)."""
    if not _persists(task, flow_result):
        return None
    own: Result | None = getattr(task, "result", None)
    store = own if own is not None else flow_result if flow_result is not None else default
    if store is None:
        return None
    store = as_store(store)
    target: Target | None = getattr(task, "target", None)
    template = target if target is not None else store.location or DEFAULT_TEMPLATE
    return Persist(store, template, target is not None, getattr(task, "checkpoint", None) is not False)


def persist_of(task: Task[Any, Any], run_context: Mapping[str, Any]) -> Persist | None:
    """How ``task`` persists in the run whose context is ``run_context``; None: it does not."""
    results: RunResults | None = run_context.get(RESULTS_KEY)
    if results is None:
        return None
    return persist_with(task, results.flow, results.default)


def completes(persist: Persist, state: State[Any]) -> bool:
    """Whether a pass's state is written: a plain ``Success`` with a result (not a skip,
    a loop, a cache hit, a state ``ENDRUN`` gave)."""
    return persist.writes and type(state) is Success and state.result is not None


def _inputs_known(task: Task[Any, Any]) -> set[str] | None:
    """The argument names of ``task``'s run; None when it takes ``**kwargs`` (any name)."""
    parameters = task.signature().parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return None
    return set(parameters)


def _check_template(
    flow_name: str, task: Task[Any, Any], template: str, known: set[str], mapped: Mapping[str, bool] | None
) -> None:
    inputs = _inputs_known(task)
    what = "target" if getattr(task, "target", None) is not None else "result location"
    if inputs is not None:
        unknown = unknown_fields(template, known | inputs)
        if unknown:
            raise FlowDefinitionError(
                f"Task {task.name!r}: its {what} {template!r} names the field(s) "
                f"{', '.join(repr(u) for u in unknown)}, which a run of flow {flow_name!r} "
                f"does not give; known fields: {', '.join(sorted(known | inputs))}"
            )
    if mapped is not None and not (set(fields(template)) & (_PER_CHILD | set(mapped))):
        raise FlowDefinitionError(
            f"Task {task.name!r} is mapped, but its {what} {template!r} is the same for every "
            "child, which would share one file: add {map_index} (or a mapped argument) to it"
        )


def prepare_run(
    flow: Any,
    tasks: Sequence[tuple[Task[Any, Any], Mapping[str, bool] | None]],
    context: Mapping[str, Any],
    parameters: Mapping[str, Any],
) -> RunResults | None:
    """Check the results and targets of ``flow``'s ``tasks`` (each with its mapped
    arguments, or None) before a run with this ``context`` and ``parameters``; the
    ``RunResults`` for ``RESULTS_KEY``, or None when no task persists.

    Raises:
        FlowDefinitionError: a template naming a field the run does not give, or a mapped
            task's target that every child would share.
        ResultError: a store that cannot be used (its ``check()``).
    """
    flow_result: Result | None = getattr(flow, "result", None)
    default: Result | None = None
    checked: dict[int, Result] = {}
    known = {k for k in context if not k.startswith("_")} | TASK_FIELDS | set(parameters)
    for task, mapped in tasks:
        if isinstance(task, ParameterTask) or not _persists(task, flow_result):
            continue
        if default is None and flow_result is None and getattr(task, "result", None) is None:
            default = LocalResult()
        persist = persist_with(task, flow_result, default)
        assert persist is not None
        if isinstance(persist.template, str):
            _check_template(flow.name, task, persist.template, known, mapped)
        store = persist.result
        if id(store) not in checked:
            checked[id(store)] = store
            check = getattr(store, "check", None)
            if callable(check):
                check()
    if not checked:
        return None
    return RunResults(flow_result, default)
