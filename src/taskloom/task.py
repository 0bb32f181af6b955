"""Tasks: the units of work of a flow.

Build one from a function with ``@task``, or subclass ``Task`` and implement ``run``::

    @task(max_retries=2, retry_delay=timedelta(seconds=1))
    def add(x: int, y: int = 1) -> int:
        return x + y

    class Multiply(Task[[int, int], int]):
        def run(self, x: int, y: int) -> int:
            return x * y

``add.run(1, 2)`` calls the function itself. Inside ``with Flow(...)``, ``add(x, 2)`` adds a
copy of ``add`` to the flow, wires its arguments (a task argument becomes a data edge, any
other value a constant), and returns that copy: a *handle*. For the type checker the call
reads as the task's result type, so ``mypy`` checks the wiring between tasks; at run time
the handle is a ``Task``. Operators on a handle build small tasks (``add(x, 2) + 1`` adds an
``Add`` task, ``pair(x)[0]`` a ``GetItem``; see ``taskloom.tasks.core``), and a task that
returns a tuple (``nout=2``, or a ``-> tuple[A, B]`` annotation) unpacks into one handle per
value: ``a, b = pair(x)``. Any other use of a handle as a value (``add(x, 2).bit_length()``,
``if add(x, 2):``, ``len(...)``) raises ``HandleError``.
"""

from __future__ import annotations

import datetime as _dt
import functools
import inspect
import itertools
import logging
import operator
import threading
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from itertools import repeat
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypedDict, TypeVar, cast, overload

from typing_extensions import ParamSpec, Self

from . import triggers as _triggers
from .cache_validators import CacheValidator, duration_only
from .edges import Unmapped
from .errors import FlowDefinitionError, HandleError, TaskDefinitionError
from .handlers import OnFailure, StateHandler, check_handlers
from .locations import Target, TemplateError, fields
from .logging import task_logger
from .states import StandInError, State
from .triggers import Trigger

if TYPE_CHECKING:
    from .flow import Flow
    from .results import Result, ResultBase

__all__ = [
    "Parameter", "ParameterTask", "RESERVED_PARAMETERS", "Task", "TaskInput", "defaults_from_attrs",
    "task",
]

P = ParamSpec("P")
R = TypeVar("R")
#: A ``run`` method's parameters and result (``defaults_from_attrs``).
P2 = ParamSpec("P2")
R2 = TypeVar("R2")
T = TypeVar("T")
A = TypeVar("A")
B = TypeVar("B")
C = TypeVar("C")
D = TypeVar("D")
_A = TypeVar("_A", contravariant=True)
_B = TypeVar("_B", contravariant=True)
_C = TypeVar("_C", contravariant=True)
_D = TypeVar("_D", contravariant=True)
_R = TypeVar("_R", covariant=True)


# What `Task.map` checks mapped positional arguments against: a task whose `run` takes that
# many positional arguments (more with defaults are fine). A ParamSpec cannot be taken
# apart argument by argument, but a Protocol on `run` can (see Task.map).
class _Run1(Protocol[_A, _R]):
    def run(self, a: _A, /) -> _R: ...


class _Run2(Protocol[_A, _B, _R]):
    def run(self, a: _A, b: _B, /) -> _R: ...


class _Run3(Protocol[_A, _B, _C, _R]):
    def run(self, a: _A, b: _B, c: _C, /) -> _R: ...


class _Run4(Protocol[_A, _B, _C, _D, _R]):
    def run(self, a: _A, b: _B, c: _C, d: _D, /) -> _R: ...


class _FlowBuilder(Protocol):
    """What a task needs from the flow being built (``Flow`` implements it)."""

    name: str

    def _bind(
        self,
        task: Task[Any, Any],
        arguments: Mapping[str, Any],
        upstream_tasks: Iterable[object],
        mapped: bool = False,
    ) -> None: ...

    def add_task(self, task: object) -> Any: ...

    def set_dependencies(
        self,
        task: object,
        upstream_tasks: Iterable[object] | None = (),
        downstream_tasks: Iterable[object] | None = (),
        keyword_tasks: Mapping[str, object] | None = None,
        mapped: bool = False,
    ) -> None: ...


#: The flow of the innermost ``with Flow(...)`` block, if any.
active_flow: ContextVar[_FlowBuilder | None] = ContextVar("taskloom.active_flow", default=None)


def _read_on_handle(self: Task[Any, Any], name: str) -> Any:
    """``Task.__getattr__`` while a flow is being built (``flow_block_opened``): reading an
    attribute a task does not have (``total(xs).bit_length()``) explains handles."""
    if name.startswith("__"):  # copy and pickle probe these
        raise AttributeError(name)
    if "name" not in self.__dict__:  # not a handle: a task whose __init__ never ran Task's
        raise not_initialised(self)
    if name == "fn":  # probed too
        raise AttributeError(name)
    raise _handle_error(self, f"reading attribute {name!r}")


def not_initialised(task: object) -> TaskDefinitionError:
    """The error for a ``Task`` subclass whose ``__init__`` did not call ``Task``'s."""
    kind = type(task).__qualname__
    return TaskDefinitionError(
        f"{kind}.__init__ did not call super().__init__(...): a Task subclass must call it, "
        f"passing the task's options (e.g. super().__init__(name={kind!r}, **kwargs)), "
        "before the task is used"
    )


# How many ``with Flow(...)`` blocks are open, in every thread. While one is, ``Task`` has
# the ``__getattr__`` that explains handles; otherwise it has none, and a missing attribute
# is a plain ``AttributeError``. Why not always: CPython 3.11 does not specialise attribute
# reads (``LOAD_ATTR``, ``LOAD_METHOD``) on a type with a ``__getattr__``, and the engine
# reads a task's options a few dozen times per run: with it, a plain task's run cost 5%
# more instructions (W1 on LocalExecutor, 98.7k -> 93.9k per task without it).
_open_flow_blocks = 0
_flow_blocks_lock = threading.Lock()


def flow_block_opened() -> None:
    """A ``with Flow(...)`` block opened: a task's unknown attribute explains handles."""
    global _open_flow_blocks
    with _flow_blocks_lock:
        _open_flow_blocks += 1
        if _open_flow_blocks == 1:
            setattr(Task, "__getattr__", _read_on_handle)


def flow_block_closed() -> None:
    """A ``with Flow(...)`` block closed: the last one takes the explanation away."""
    global _open_flow_blocks
    with _flow_blocks_lock:
        _open_flow_blocks -= 1
        if _open_flow_blocks == 0:
            delattr(Task, "__getattr__")


def _check_options(
    name: str,
    max_retries: object,
    retry_delay: object,
    timeout: object,
    trigger: object,
    cache_for: object,
    cache_validator: object,
    cache_key: object,
    tags: object,
    nout: object = None,
    max_loops: object = None,
    log_stdout: object = False,
) -> tuple[float | None, frozenset[str]]:
    """Validate a task's options; return its timeout in seconds and its tags.

    The options are typed ``object`` here because untyped callers pass anything, and a
    bad option must be reported before any task runs, naming the task.
    """

    def bad(option: str, why: str) -> TaskDefinitionError:
        return TaskDefinitionError(f"Task {name!r}: {option} {why}")

    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise bad("max_retries", f"must be a whole number >= 0, not {max_retries!r}")
    if max_loops is not None and (
        isinstance(max_loops, bool) or not isinstance(max_loops, int) or max_loops < 1
    ):
        raise bad("max_loops", f"must be a whole number >= 1 or None (no limit), not {max_loops!r}")
    if not isinstance(log_stdout, bool):
        raise bad("log_stdout", f"must be True or False, not {log_stdout!r}")
    if retry_delay is not None:
        if not isinstance(retry_delay, _dt.timedelta):
            raise bad("retry_delay", f"must be a datetime.timedelta, not {retry_delay!r}")
        if retry_delay < _dt.timedelta(0):
            raise bad("retry_delay", f"must not be negative, not {retry_delay!r}")
    if retry_delay is not None and max_retries == 0:
        raise bad(
            "retry_delay",
            "has no effect without max_retries: pass max_retries=N (how many times to run "
            "the task again after it fails), or drop retry_delay",
        )
    if max_retries > 0 and retry_delay is None:
        raise bad(
            f"max_retries={max_retries}",
            "needs a retry_delay: pass a datetime.timedelta, "
            "e.g. retry_delay=timedelta(seconds=10) (or timedelta(0) for no wait)",
        )
    seconds: float | None
    if timeout is None:
        seconds = None
    elif isinstance(timeout, _dt.timedelta):
        seconds = timeout.total_seconds()
    elif isinstance(timeout, (int, float)) and not isinstance(timeout, bool):
        seconds = float(timeout)
    else:
        raise bad("timeout", f"must be seconds (a number) or a datetime.timedelta, not {timeout!r}")
    if seconds is not None and not seconds > 0:
        raise bad("timeout", f"must be positive, not {timeout!r}")
    if trigger is not None and not callable(trigger):
        raise bad("trigger", f"must be callable (see taskloom.triggers), not {trigger!r}")
    if cache_for is not None:
        if not isinstance(cache_for, _dt.timedelta):
            raise bad(
                "cache_for",
                f"must be a datetime.timedelta, e.g. timedelta(hours=1), not {cache_for!r}",
            )
        if cache_for <= _dt.timedelta(0):
            raise bad("cache_for", f"must be positive, not {cache_for!r}")
    if cache_validator is not None:
        if not callable(cache_validator):
            raise bad(
                "cache_validator",
                f"must be callable (see taskloom.cache_validators), not {cache_validator!r}",
            )
        if cache_for is None:
            raise bad(
                "cache_validator",
                "has no effect without cache_for: pass cache_for=timedelta(...) to cache results",
            )
    if cache_key is not None and not isinstance(cache_key, str):
        raise bad("cache_key", f"must be a string, not {cache_key!r}")
    if isinstance(tags, str):
        raise bad("tags", f"must be a collection of strings, e.g. tags=[{tags!r}], not a string")
    tag_set = frozenset(tags) if isinstance(tags, Iterable) else None
    if tag_set is None or not all(isinstance(tag, str) for tag in tag_set):
        raise bad("tags", f"must be a collection of strings, not {tags!r}")
    if nout is not None and (isinstance(nout, bool) or not isinstance(nout, int) or nout < 1):
        raise bad(
            "nout",
            "must be a whole number >= 1 (how many values the task returns, so that "
            f"`a, b = t(...)` unpacks it) or None, not {nout!r}",
        )
    return seconds, tag_set


#: The keywords a call of a task in a flow takes for itself (``t(x, upstream_tasks=[...])``,
#: ``t.bind(..., flow=f)``): a ``run`` cannot use them as parameter names (Prefect's list).
RESERVED_PARAMETERS = ("upstream_tasks", "mapped", "flow", "task_args")


def _check_run_signature(name: str, signature: inspect.Signature) -> None:
    """Refuse a ``run`` (or ``@task`` function) that a call in a flow could not bind: one
    with ``*args``, or with a parameter named like a call keyword (``RESERVED_PARAMETERS``)."""
    parameters = signature.parameters.values()
    for parameter in parameters:
        if parameter.kind is inspect.Parameter.VAR_POSITIONAL:
            raise TaskDefinitionError(
                f"Task {name!r}: run() takes *{parameter.name}, which a flow cannot fill: "
                "every argument of a task is wired by name. Take the values as one list "
                "argument, or as **kwargs"
            )
    clashes = [p.name for p in parameters if p.name in RESERVED_PARAMETERS and
               p.kind is not inspect.Parameter.VAR_KEYWORD]
    if clashes:
        raise TaskDefinitionError(
            f"Task {name!r}: run() has parameters named {', '.join(map(repr, clashes))}, "
            f"which are reserved for the keywords of a task call "
            f"({', '.join(RESERVED_PARAMETERS)}); rename them"
        )


def _retry_on(name: str, retry_on: object, max_retries: int) -> frozenset[type[Exception]] | None:
    """The exception types ``retry_on`` names (one type or several), checked; None when
    it names none (every failure is retried)."""
    if retry_on is None:
        return None
    if isinstance(retry_on, type):
        kinds: list[object] = [retry_on]
    elif isinstance(retry_on, Iterable) and not isinstance(retry_on, (str, bytes)):
        kinds = list(retry_on)
    else:
        kinds = [retry_on]
    for kind in kinds:
        if not (isinstance(kind, type) and issubclass(kind, Exception)):
            what = (
                f"an instance of {type(kind).__name__}" if not isinstance(kind, type)
                else "not an Exception subclass"
            )
            raise TaskDefinitionError(
                f"Task {name!r}: retry_on={retry_on!r}: {kind!r} is {what}; pass an "
                "exception type or several, e.g. retry_on=(ConnectionError, TimeoutError)"
            )
    if not kinds:
        return None
    if max_retries == 0:
        raise TaskDefinitionError(
            f"Task {name!r}: retry_on has no effect without max_retries: pass max_retries=N "
            "and a retry_delay"
        )
    return frozenset(cast("list[type[Exception]]", kinds))


def _check_naming(name: str, slug: object, task_run_name: object) -> None:
    """Refuse a ``slug`` that is not a non-empty string, and a ``task_run_name`` that is
    neither a string nor a callable."""
    if slug is not None and (not isinstance(slug, str) or not slug):
        raise TaskDefinitionError(f"Task {name!r}: slug must be a non-empty string, not {slug!r}")
    if task_run_name is not None and not isinstance(task_run_name, str) and not callable(task_run_name):
        raise TaskDefinitionError(
            f"Task {name!r}: task_run_name must be a template string such as "
            f"'fetch-{{city}}', or a callable returning the name, not {task_run_name!r}"
        )
def _is_result(value: object) -> bool:
    """Whether ``value`` can be a task's or flow's ``result=`` (the ``Result`` protocol)."""
    return all(callable(getattr(value, method, None)) for method in ("exists", "read", "write"))


def persists_by_itself(task: Task[Any, Any]) -> bool:
    """Whether ``task``'s own options make it persist its result (``result=``,
    ``target=``, ``checkpoint=True``), whatever its flow's ``result``."""
    return (
        getattr(task, "result", None) is not None
        or getattr(task, "target", None) is not None
        or getattr(task, "checkpoint", None) is True
    )


def _check_persistence(name: str, result: object, target: object, checkpoint: object) -> None:
    """Validate ``result``, ``target`` and ``checkpoint`` (``taskloom.results``), naming the task."""
    if result is not None and not _is_result(result):
        raise TaskDefinitionError(
            f"Task {name!r}: result must be a Result (exists, read, write and location), e.g. "
            f"taskloom.results.LocalResult(dir=...), not {result!r}"
        )
    if isinstance(target, str):
        try:
            fields(target)
        except TemplateError as error:
            raise TaskDefinitionError(f"Task {name!r}: target {error}") from None
    elif target is not None and not callable(target):
        raise TaskDefinitionError(
            f"Task {name!r}: target must be a location template such as "
            f"'{{flow_name}}/{{task_name}}/{{today}}.pkl', or a function returning one, not {target!r}"
        )
    if checkpoint is not None and not isinstance(checkpoint, bool):
        raise TaskDefinitionError(f"Task {name!r}: checkpoint must be True, False or None, not {checkpoint!r}")


def _tuple_length(fn: Callable[..., Any]) -> int | None:
    """How many values ``fn`` returns, read from a fixed-length ``tuple[A, B]`` return
    annotation; None for any other annotation, or one that cannot be resolved."""
    try:
        return _cached_tuple_length(fn)
    except TypeError:  # an unhashable callable object: read it without the cache
        return _cached_tuple_length.__wrapped__(fn)


@functools.lru_cache(maxsize=1024)
def _cached_tuple_length(fn: Callable[..., Any]) -> int | None:
    try:
        hints = typing.get_type_hints(fn)
    except Exception:  # an unresolvable annotation only means: no nout
        return None
    hint = hints.get("return")
    if typing.get_origin(hint) is not tuple:
        return None
    args = typing.get_args(hint)
    if not args or args == ((),) or (len(args) == 2 and args[1] is Ellipsis):
        return None  # tuple[()], bare tuple, or tuple[X, ...]: no fixed length
    return len(args)


def _nonempty_name(name: object, what: str) -> str:
    if not isinstance(name, str) or not name:
        raise TaskDefinitionError(f"{what} needs a non-empty string name, not {name!r}")
    return name


def _handle_error(task: Task[Any, Any], what: str) -> HandleError:
    return HandleError(
        f"{what} on task {task.name!r}: inside `with Flow(...)`, calling a task returns a "
        "handle to that task in the flow, not its result, because nothing has run yet. Pass "
        "the handle to other tasks to wire them; after `state = flow.run()`, read the value "
        "with `state.result[handle].result`."
    )


class TaskInput(TypedDict):
    """One input of a task, as ``Task.inputs`` describes it (Prefect's keys)."""

    type: Any
    default: Any
    required: bool


_NO_PARAMETERS = inspect.Signature()


def _annotation(annotation: Any) -> Any:
    """An annotation as ``inputs``/``outputs`` report it: ``Any`` for none."""
    return Any if annotation is inspect.Parameter.empty else annotation


def _hints(fn: Callable[..., Any]) -> dict[str, Any]:
    """``fn``'s annotations resolved to types (string annotations, ``from __future__ import
    annotations``); empty when they cannot be resolved, so the raw annotations are used."""
    try:
        return typing.get_type_hints(fn)
    except Exception:  # a forward reference that does not resolve: fall back
        return {}


class Task(Generic[P, R]):
    """A unit of work: subclass it and implement ``run``, or build one with ``@task``.

    Args:
        name: shown in states, logs and errors; defaults to the class name.
        max_retries: how many times to run the task again after it fails.
        retry_delay: how long to wait before a retry (needed when ``max_retries > 0``);
            other tasks keep running meanwhile.
        timeout: seconds (or a timedelta) after which the task is stopped, ending ``TimedOut``.
        trigger: decides from the upstream states whether the task runs
            (default ``triggers.all_successful``).
        skip_on_upstream_skip: skip the task when an upstream task was skipped (unless one
            failed: failure outranks skip, and the trigger decides).
        cache_for: how long a computed result may serve later runs (output caching).
        cache_validator: decides whether a cached result is still valid
            (default ``cache_validators.duration_only``).
        cache_key: the cache entry's name; tasks sharing it share results. Defaults to the
            flow's name plus the task's name.
        tags: free-form labels.
        nout: how many values the task returns, so that ``a, b = t(...)`` unpacks its handle
            into one handle per value (each a ``GetItem`` task). Defaults to the length of a
            ``tuple[A, B]`` return annotation on ``run`` (or on an ``@task`` function).
        max_loops: the most passes a looping task (``signals.LOOP``) may run in one
            attempt (``context.task_loop_count`` never exceeds it); a ``LOOP`` on the last
            one ends the task ``Failed``. None (the default, as in Prefect): no limit.
        state_handlers: callables ``fn(task, old_state, new_state)`` called at every state
            change, in order; one may return a replacement state (None keeps the new one).
            See ``taskloom.handlers`` for where they run (where the task runs, for the
            changes of an attempt).
        on_failure: ``fn(task, state)``, called once when the task ends failed (after its
            last retry).
        log_stdout: send what the task ``print``s to its logger (``task.logger``) at INFO,
            a record per line, instead of ``sys.stdout``.
        slug: the task's id in its flow, unique there (Prefect's ``slug``). Without one, the
            flow gives it ``<name>-<sorted tags>-<n>`` (``flow.slugs``). A copy of a task
            (what calling it in a flow adds) has the slug ``<slug>-copy``, as in Prefect.
        retry_on: the exception type, or types, that are retried (subclasses too); a
            failure with any other exception ends the task at once. Needs ``max_retries``.
            A ``RETRY`` signal retries whatever ``retry_on`` says; a timeout is retried when
            ``TimeoutError`` is among the types (its state's result is one).
        task_run_name: the name of each run of the task, shown in its log records, the
            run journal, ``taskloom show`` and the report: a template such as
            ``"fetch-{city}"``, filled from the flow's parameters, the run context and the
            task's inputs (the latter win), or a callable taking them as keyword arguments
            and returning the name. A template naming a field none of them has fails
            that task run, naming the field.
        rerun_after_crash: whether a run of the task that was in flight on a worker
            process that died (``LokyExecutor``, ``DaskExecutor``) runs again. True (the
            default): it runs again, alone, to find which task killed the worker, so its
            body may run twice. False, for a task that must not run twice (it charges a
            card, sends a mail): it ends ``Crashed`` ("lost with a crashed worker")
            instead, and never travels in a chain. Prefect has no such option.
        result: where a successful result is persisted (``taskloom.results``, e.g.
            ``LocalResult(dir=...)``); default: the flow's ``result=``.
        target: a location template (``taskloom.locations``), e.g.
            ``"{flow_name}/{task_name}/{today}.pkl"``, or a function of the same values
            returning the location: when something is stored there already, the task does
            not run and ends ``Cached`` with that value; otherwise its result goes there.
        checkpoint: ``False`` never writes the result (a target is still read); ``True``
            writes it even without a result or target (to ``LocalResult()``). Default: write
            when the task or its flow has a result, or the task a target.

    Raises:
        TaskDefinitionError: (a ``ValueError``) for an invalid option, naming it: e.g.
            ``retry_delay`` or ``retry_on`` without ``max_retries``, or a ``run`` taking
            ``*args`` or a parameter named like a call keyword (``RESERVED_PARAMETERS``).
    """

    def __init__(
        self,
        name: str | None = None,
        *,
        max_retries: int = 0,
        retry_delay: _dt.timedelta | None = None,
        timeout: float | _dt.timedelta | None = None,
        trigger: Trigger | None = None,
        skip_on_upstream_skip: bool = True,
        cache_for: _dt.timedelta | None = None,
        cache_validator: CacheValidator | None = None,
        cache_key: str | None = None,
        tags: Iterable[str] = (),
        nout: int | None = None,
        max_loops: int | None = None,
        state_handlers: Iterable[StateHandler] | None = None,
        on_failure: OnFailure | None = None,
        log_stdout: bool = False,
        slug: str | None = None,
        retry_on: type[Exception] | Iterable[type[Exception]] | None = None,
        task_run_name: str | Callable[..., str] | None = None,
        rerun_after_crash: bool = True,
        result: Result | ResultBase | None = None,
        target: Target | None = None,
        checkpoint: bool | None = None,
    ) -> None:
        self.name: str = _nonempty_name(name, "Task") if name is not None else type(self).__name__
        try:
            signature = self.signature()
        except (TypeError, ValueError) as error:  # a builtin that inspect cannot read
            raise TaskDefinitionError(
                f"Task {self.name!r}: its function's signature cannot be read ({error}); "
                "wrap it in a def that calls it"
            ) from None
        _check_run_signature(self.name, signature)
        _check_naming(self.name, slug, task_run_name)
        self.slug: str | None = slug
        self.task_run_name: str | Callable[..., str] | None = task_run_name
        if not isinstance(rerun_after_crash, bool):
            raise TaskDefinitionError(
                f"Task {self.name!r}: rerun_after_crash must be True or False, not {rerun_after_crash!r}"
            )
        self.rerun_after_crash = rerun_after_crash
        _check_persistence(self.name, result, target, checkpoint)
        self.result: Result | ResultBase | None = result
        self.target: Target | None = target
        self.checkpoint: bool | None = checkpoint
        self.state_handlers: list[StateHandler] = check_handlers(
            f"Task {self.name!r}", TaskDefinitionError, state_handlers, on_failure
        )
        self.on_failure: OnFailure | None = on_failure
        self.timeout, self.tags = _check_options(
            self.name,
            max_retries,
            retry_delay,
            timeout,
            trigger,
            cache_for,
            cache_validator,
            cache_key,
            tags,
            nout,
            max_loops,
            log_stdout,
        )
        self.nout: int | None = (
            nout if nout is not None else _tuple_length(self.__dict__.get("fn") or type(self).run)
        )
        self.max_retries = max_retries
        self.retry_on: frozenset[type[Exception]] | None = _retry_on(self.name, retry_on, max_retries)
        self.max_loops = max_loops
        self.log_stdout = log_stdout
        self.retry_delay = retry_delay
        self.trigger: Trigger = trigger if trigger is not None else _triggers.all_successful
        self.skip_on_upstream_skip = skip_on_upstream_skip
        self.cache_for = cache_for
        self.cache_validator: CacheValidator = (
            cache_validator if cache_validator is not None else duration_only
        )
        self.cache_key = cache_key

    @property
    def logger(self) -> logging.Logger:
        """The task's logger, ``taskloom.task.<name>``: its records carry the run's fields
        (``taskloom.logging``); inside the task, ``taskloom.context.logger`` is the same."""
        return task_logger(self.name)

    def run(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """The task's work. Subclasses implement it; ``@task`` tasks call their function.

        A bare ``Task`` does nothing and returns None, as in Prefect (a placeholder, or a
        task that only orders others).
        """
        return cast(R, None)

    def signature(self) -> inspect.Signature:
        """The parameters ``run`` takes: what a call in a flow binds its arguments to
        (none for a bare ``Task``, whose ``run`` is the placeholder)."""
        if type(self).run is Task.run:
            return _NO_PARAMETERS
        return inspect.signature(self.run)

    def inputs(self) -> dict[str, TaskInput]:
        """The task's inputs, read from ``run``'s signature (Prefect's ``Task.inputs``):
        for each parameter, its ``type`` (the annotation, ``Any`` without one), whether it
        is ``required`` (it has no default), and its ``default`` (None when required).

        >>> @task
        ... def greet(name: str, punctuation: str = "!") -> str:
        ...     return name + punctuation
        >>> greet.inputs()["punctuation"]
        {'type': <class 'str'>, 'default': '!', 'required': False}
        """
        hints = _hints(self._run_function())
        found: dict[str, TaskInput] = {}
        for name, parameter in self.signature().parameters.items():
            if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
                continue
            required = parameter.default is inspect.Parameter.empty
            found[name] = TaskInput(
                type=hints.get(name, _annotation(parameter.annotation)),
                default=None if required else parameter.default,
                required=required,
            )
        return found

    def outputs(self) -> Any:
        """The type ``run`` returns, read from its annotation (``Any`` without one, None
        for ``-> None`` and a bare ``Task``), as Prefect's ``Task.outputs``.

        >>> @task
        ... def count(text: str) -> int:
        ...     return len(text)
        >>> count.outputs()
        <class 'int'>
        """
        fn = self._run_function()
        if fn is Task.run:  # the placeholder, which returns None
            return None
        hints = _hints(fn)
        hint = hints["return"] if "return" in hints else _annotation(self.signature().return_annotation)
        return None if hint is type(None) else hint  # `-> None` reads None, as in Prefect

    def retries_after(self, state: State[Any], run_count: int) -> bool:
        """Whether attempt ``run_count`` (1 for the first), ending in ``state``, is
        followed by a retry: the state is failed, attempts are left (``run_count <=
        max_retries``), and, with ``retry_on``, its result is an instance of one of those
        types, or None (as Prefect: a ``FAIL`` signal's result is the signal, so it is not
        retried). ``RETRY`` is not a failure: the scheduler retries it regardless."""
        if not state.is_failed() or run_count > self.max_retries:
            return False
        kinds: frozenset[type[Exception]] | None = self.__dict__.get("retry_on")
        if kinds is None:
            return True
        error = state.result
        if error is None or any(isinstance(error, kind) for kind in kinds):
            return True
        # An exception that could not be pickled stands in by its type's name.
        return isinstance(error, StandInError) and any(
            error.type_name == f"{kind.__module__}.{kind.__qualname__}" for kind in kinds
        )

    def _run_function(self) -> Callable[..., Any]:
        """The function whose signature is the task's: the ``@task`` function, or ``run``."""
        fn: Callable[..., Any] | None = self.__dict__.get("fn")
        return fn if fn is not None else type(self).run

    def copy(self, **task_args: Any) -> Self:
        """A new task with the same options (what calling a task in a flow adds); a task
        with a ``slug`` gives its copy ``<slug>-copy``. ``task_args`` set options (checked
        as the constructor checks them) or attributes of the copy, as in Prefect 1.x:
        ``load.copy(name="load-users", max_retries=2, retry_delay=timedelta(0))``.

        Copies share their options: the unchanged copies of one task have one ``__dict__``
        between them (``_SHARED`` marks it), made at the first copy and kept by the
        template (``_COPY_OPTIONS``) until the template changes, so a flow of a million
        calls holds one dict of options, not a million. Setting an attribute of a copy
        first gives it a dict of its own (``__setattr__``).
        """
        if task_args:
            return self._copy_with(task_args)
        new = object.__new__(type(self))
        mine = self.__dict__
        slug = mine.get("slug")
        if slug is None:
            if _SHARED in mine:  # an unchanged copy: its copies share the same options
                object.__setattr__(new, "__dict__", mine)
                return new
            if "_template" not in mine:  # a template
                shared = mine.get(_COPY_OPTIONS)
                if shared is None:
                    shared = {k: v for k, v in mine.items() if k != _COPY_OPTIONS}
                    shared["_template"] = self
                    shared[_SHARED] = True
                    mine[_COPY_OPTIONS] = shared
                object.__setattr__(new, "__dict__", shared)
                return new
        new.__dict__.update(_options(self))
        new.__dict__["_template"] = mine.get("_template", self)
        if slug is not None:  # as Prefect's copy: a flow's slugs stay unique
            new.slug = f"{slug}-copy"
        return new

    # Hidden from the type checker, which would otherwise accept any attribute name.
    if not TYPE_CHECKING:

        def __setattr__(self, name: str, value: Any) -> None:
            _unshare(self)
            changes = name in _PLANNED_OPTIONS and name in self.__dict__  # (not a first set)
            object.__setattr__(self, name, value)
            if changes:
                _options_changed()

        def __delattr__(self, name: str) -> None:
            _unshare(self)
            object.__delattr__(self, name)
            if name in _PLANNED_OPTIONS:
                _options_changed()

    def __reduce__(self) -> tuple[Any, ...]:
        # A flow holds many copies of one task; pickled together (a batch of runs sent to a
        # worker), each unchanged copy is a reference to the shared template, not a dict.
        template = self.__dict__.get("_template")
        if template is not None and _same_options(self, template):
            return (_copy_of, (template,))
        # The state goes third, set after the object exists: a task whose own body refers to
        # it (``transform.logger`` in ``transform``, pickled by value) is a cycle.
        return (_new_task, (type(self),), _options(self))

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Add a copy of this task to the current flow, wired to ``args`` and ``kwargs``.

        The special keyword ``upstream_tasks=[...]`` adds ordering-only edges,
        ``flow=`` names the flow outside a ``with Flow(...)`` block (as ``bind`` does),
        ``task_args={"name": ..., "tags": [...], ...}`` sets options of the copy (as in
        Prefect 1.x; tags are added to the task's), and ``mapped=True`` maps it (``map``).
        Returns the copy (typed as the task's result, so the type checker checks the wiring).
        """
        given = cast("_FlowBuilder | None", kwargs.pop("flow", None))
        flow = given if given is not None else active_flow.get()
        if flow is None:
            raise FlowDefinitionError(
                f"Task {self.name!r} was called outside a flow. Calling a task wires it into "
                f"the flow of the enclosing `with Flow(...)` block (or the one given as "
                f"flow=...); to call the work itself, use {self.name}.run(...)"
            )
        upstream_tasks = cast("Iterable[object]", kwargs.pop("upstream_tasks", ()))
        task_args = cast("Mapping[str, Any] | None", kwargs.pop("task_args", None))
        if kwargs.pop("mapped", False):  # Prefect 1.x's t(xs, mapped=True): t.map(xs)
            return cast(R, self._map_in(flow, args, kwargs, upstream_tasks, task_args))
        bound = self.copy() if task_args is None else self._copy_with(task_args)
        flow._bind(bound, bound.bind_arguments(args, kwargs), upstream_tasks)
        # The type checker reads the call as the result type; see the module docstring.
        return cast(R, bound)

    def _copy_with(self, task_args: object) -> Self:
        """A copy (``copy``) with the options ``task_args`` gives it, checked as the
        constructor checks them (Prefect 1.x's ``t(..., task_args={"name": ...})``); its
        tags are the task's and those given."""
        if not isinstance(task_args, Mapping):
            raise FlowDefinitionError(
                f"Task {self.name!r}: task_args must be a dict of task options (e.g. "
                f"{{'name': 'load-users'}}), not {task_args!r}"
            )
        unknown = sorted(
            str(option) for option in task_args
            if option not in _OPTIONS and not (isinstance(option, str) and hasattr(self, option))
        )
        if unknown:
            raise FlowDefinitionError(
                f"Task {self.name!r}: task_args has {', '.join(map(repr, unknown))}, neither a "
                f"task option nor an attribute of the task; the options are {', '.join(_OPTIONS)}"
            )
        given = {option: value for option, value in task_args.items() if option in _OPTIONS}
        attributes = {name: value for name, value in task_args.items() if name not in _OPTIONS}
        if "tags" in given:
            given["tags"] = set(self.tags) | set(given["tags"])
        options = {option: getattr(self, option) for option in _OPTIONS}
        if options["cache_validator"] is duration_only:  # the default, which needs no cache_for
            options["cache_validator"] = None
        try:
            checked: Task[..., Any] = Task(**(options | given))
        except TaskDefinitionError as error:  # it names the throwaway: name the call's task
            raise FlowDefinitionError(f"Task {self.name!r}, task_args: {error}") from None
        new = self.copy()
        for option in given:
            setattr(new, option, getattr(checked, option))
        for name, value in attributes.items():  # a subclass's own (Prefect's copy sets any)
            setattr(new, name, value)
        return new

    # -- mapping ------------------------------------------------------------------------------
    # Mapped positional arguments are checked against `run`'s parameters (up to four, each
    # an iterable of the parameter's type, or `unmapped(x)` of it); keyword arguments are
    # accepted unchecked (mypy cannot pair a keyword with a ParamSpec's parameter).

    @overload
    def map(
        self: _Run1[A, T], a: Iterable[A] | Unmapped[A], /, *,
        upstream_tasks: Iterable[object] | None = None, flow: Flow | None = None,
        task_args: Mapping[str, Any] | None = None,
    ) -> list[T]: ...

    @overload
    def map(
        self: _Run2[A, B, T], a: Iterable[A] | Unmapped[A], b: Iterable[B] | Unmapped[B], /, *,
        upstream_tasks: Iterable[object] | None = None, flow: Flow | None = None,
        task_args: Mapping[str, Any] | None = None,
    ) -> list[T]: ...

    @overload
    def map(
        self: _Run3[A, B, C, T], a: Iterable[A] | Unmapped[A], b: Iterable[B] | Unmapped[B],
        c: Iterable[C] | Unmapped[C], /, *, upstream_tasks: Iterable[object] | None = None,
        flow: Flow | None = None, task_args: Mapping[str, Any] | None = None,
    ) -> list[T]: ...

    @overload
    def map(
        self: _Run4[A, B, C, D, T], a: Iterable[A] | Unmapped[A], b: Iterable[B] | Unmapped[B],
        c: Iterable[C] | Unmapped[C], d: Iterable[D] | Unmapped[D], /, *,
        upstream_tasks: Iterable[object] | None = None, flow: Flow | None = None,
        task_args: Mapping[str, Any] | None = None,
    ) -> list[T]: ...

    @overload
    def map(
        self, *, upstream_tasks: Iterable[object] | None = None, flow: Flow | None = None,
        task_args: Mapping[str, Any] | None = None, **kwargs: Any,
    ) -> list[R]: ...

    def map(
        self,
        *args: Any,
        upstream_tasks: Iterable[object] | None = None,
        flow: Flow | None = None,
        task_args: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> Any:
        """Add a mapped copy of this task to the current flow: one child run per element.

        Child ``i`` gets element ``i`` of every mapped argument (the shortest decides how
        many children there are); ``unmapped(x)`` passes ``x`` whole to every child, and
        ``flatten(x)`` maps over a list of lists as one list. Arguments may be task results,
        parameters, mapped tasks (child by child) or constants. For the type checker the call
        reads as ``list[R]``; the run's state of the copy is ``Mapped``, whose ``result`` is
        the list of the children's results.

        >>> with Flow("squares") as flow:                 # doctest: +SKIP
        ...     squares = square.map([1, 2, 3])
        ...     total = add_up(squares)

        Outside a ``with Flow(...)`` block, ``flow=`` names the flow; ``task_args`` sets
        options of the copy (as on a call). ``t(xs, mapped=True)`` is ``t.map(xs)``.
        """
        target: _FlowBuilder | None = flow if flow is not None else active_flow.get()
        if target is None:
            raise FlowDefinitionError(
                f"Task {self.name!r}: .map() was called outside a flow; call it inside "
                f"`with Flow(...)` or pass flow=... (to run the work itself, use "
                f"{self.name}.run(...) in a loop)"
            )
        return self._map_in(target, args, kwargs, upstream_tasks or (), task_args)

    def _map_in(
        self,
        flow: _FlowBuilder,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        upstream_tasks: Iterable[object],
        task_args: Mapping[str, Any] | None,
    ) -> Task[P, R]:
        """The mapped copy ``map`` adds to ``flow`` (also ``t(xs, mapped=True)``)."""
        bound = self.copy() if task_args is None else self._copy_with(task_args)
        if bound.__dict__.get("nout") is not None:
            # Its result is a list of the children's results, not the tuple nout counts
            # (as in Prefect 1.x, a mapped copy does not unpack).
            bound.nout = None
        flow._bind(bound, bound.bind_arguments(args, kwargs), upstream_tasks, mapped=True)
        return bound

    # -- the imperative API (Prefect 1.x): this task itself, not a copy ----------------------
    # Each works in ``flow`` when given, else in the flow of the enclosing ``with Flow(...)``.
    # Typed with ``Any``/``object`` arguments: imperative code passes tasks, not handles.

    def bind(
        self,
        *args: Any,
        flow: Flow | None = None,
        upstream_tasks: Iterable[object] | None = None,
        mapped: bool = False,
        **kwargs: Any,
    ) -> Task[P, R]:
        """Wire this task itself (not a copy, as calling it does) to ``args`` and ``kwargs``
        in ``flow``: each task argument becomes a data edge, any other value a constant;
        ``upstream_tasks`` adds ordering edges; ``mapped`` maps it over its arguments (not
        those in ``unmapped(...)``). A task is bound once per flow. Returns the task::

            flow = Flow("imperative")
            total = add.bind(one, 2, flow=flow)     # add itself is now in flow

        Raises:
            FlowDefinitionError: no flow given and none being built; arguments that do not
                fit ``run``; an argument the task already has in that flow.
        """
        target = self._target_flow(flow, "bind")
        target._bind(self, self.bind_arguments(args, kwargs), upstream_tasks or (), mapped=mapped)
        return self

    def set_dependencies(
        self,
        flow: Flow | None = None,
        upstream_tasks: Iterable[object] | None = None,
        downstream_tasks: Iterable[object] | None = None,
        keyword_tasks: Mapping[str, object] | None = None,
        mapped: bool = False,
    ) -> Task[P, R]:
        """Add this task to ``flow`` with ordering edges from ``upstream_tasks`` and to
        ``downstream_tasks``, and arguments from ``keyword_tasks`` (name -> task or
        constant); see ``Flow.set_dependencies``. Returns the task."""
        target = self._target_flow(flow, "set_dependencies")
        target.set_dependencies(self, upstream_tasks, downstream_tasks, keyword_tasks, mapped)
        return self

    def set_upstream(
        self, task: object, key: str | None = None, flow: Flow | None = None, mapped: bool = False
    ) -> Task[P, R]:
        """Make this task depend on ``task`` in ``flow`` (receiving its result as argument
        ``key`` when given). Returns this task, so calls chain::

            load.set_upstream(transform, key="rows", flow=flow).set_upstream(check, flow=flow)
        """
        if key is not None:
            return self.set_dependencies(flow, keyword_tasks={key: task}, mapped=mapped)
        return self.set_dependencies(flow, upstream_tasks=[task], mapped=mapped)

    def set_downstream(
        self, task: object, key: str | None = None, flow: Flow | None = None, mapped: bool = False
    ) -> Task[P, R]:
        """Make ``task`` depend on this one in ``flow`` (receiving this task's result as its
        argument ``key`` when given). Returns this task, so calls chain.

        Raises:
            FlowDefinitionError: ``task`` is a ``Parameter`` (a parameter has no upstream
                tasks), or not a task.
        """
        if not isinstance(task, Task):
            raise FlowDefinitionError(
                f"Task {self.name!r}: set_downstream() needs a task, not "
                f"{type(task).__name__} {task!r}"
            )
        if key is not None:
            task.set_dependencies(flow, keyword_tasks={key: self}, mapped=mapped)
        else:
            task.set_dependencies(flow, upstream_tasks=[self], mapped=mapped)
        return self

    def _target_flow(self, flow: Flow | None, method: str) -> _FlowBuilder:
        target: _FlowBuilder | None = flow if flow is not None else active_flow.get()
        if target is None:
            raise FlowDefinitionError(
                f"Task {self.name!r}: {method}() needs a flow; call it inside `with Flow(...)`, "
                f"or pass flow=..."
            )
        return target

    def bind_arguments(self, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Map a call's arguments to ``run``'s parameter names, or raise naming the task."""
        signature = self.signature()
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as error:
            raise FlowDefinitionError(f"Task {self.name!r}: {error}") from None
        arguments: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            kind = signature.parameters[name].kind
            if kind is inspect.Parameter.VAR_POSITIONAL:
                if value:
                    raise FlowDefinitionError(
                        f"Task {self.name!r}: extra positional arguments (*{name}) cannot be "
                        "wired in a flow; pass them by keyword, or as one list argument"
                    )
            elif kind is inspect.Parameter.VAR_KEYWORD:
                arguments.update(value)
            else:
                arguments[name] = value
        return arguments

    # -- a handle is not a value ------------------------------------------------------------
    # Hidden from the type checker, which must keep rejecting unknown attributes. (Reading
    # an unknown attribute explains handles too, while a flow is being built: see
    # ``flow_block_opened``.)
    if not TYPE_CHECKING:

        def __bool__(self) -> bool:
            raise _handle_error(self, "testing the truth value")

        def __iter__(self) -> Any:
            nout = self.__dict__.get("nout")
            if nout is None:
                raise HandleError(
                    f"iterating or unpacking task {self.name!r}: a handle unpacks only when "
                    "the task says how many values it returns. Pass nout "
                    f"(`@task(nout=2)` or `Task(nout=2)`), or annotate the return type as a "
                    "fixed-length tuple (`-> tuple[int, str]`); then `a, b = t(...)` gives one "
                    "handle per value. For one value, index the handle: `t(...)[0]`."
                )
            return (self[i] for i in range(nout))

        def __getitem__(self, key: Any) -> Any:
            label = key.name if isinstance(key, Task) else repr(key)
            return _operator_task(self, "[]", "GetItem", f"{self.name}[{label}]", self, key)

        def __len__(self) -> int:
            raise _handle_error(self, "taking len()")

    def __repr__(self) -> str:
        return f"<Task: {self.name}>"


def _tasks_in(value: Any) -> Iterator[Task[Any, Any]]:
    """The tasks inside a call's argument: the argument itself, or members of a collection
    (what ``Flow`` wires as edges, and ``plan.rebuild`` replaces with results)."""
    if isinstance(value, Task):
        yield value
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _tasks_in(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tasks_in(item)


_ABSENT = object()

#: The options a flow's compiled plan reads (``plan._mark_options``): a change to one, on
#: any task, after a plan was compiled makes ``plan`` read them again. Compiling a plan
#: reads no other option (``tests/test_plan.py`` records what it reads).
_PLANNED_OPTIONS = frozenset({
    "trigger", "skip_on_upstream_skip", "cache_for", "timeout", "rerun_after_crash",
    "result", "target", "checkpoint", "name",
})
_option_changes = itertools.count(1)
_options_stamp = 0


def _options_changed() -> None:
    # Each change takes a number never handed out before: even if threads store theirs
    # out of order, the stamp differs from any a plan recorded before the change.
    global _options_stamp
    _options_stamp = next(_option_changes)


def options_stamp() -> int:
    """A number that changes whenever a task's option in ``_PLANNED_OPTIONS`` changes
    (``plan`` compares it with the one it compiled under)."""
    return _options_stamp


#: The key that marks a ``__dict__`` shared by the unchanged copies of a task (``copy``).
_SHARED = "_shared_by_copies"
#: The key under which a template keeps the dict its copies share, while it is unchanged.
_COPY_OPTIONS = "_copy_options"


def _without_bookkeeping(options: dict[str, Any]) -> dict[str, Any]:
    """A task's ``__dict__`` without the bookkeeping of shared copies (itself when it has none)."""
    if _SHARED in options or _COPY_OPTIONS in options:
        return {k: v for k, v in options.items() if k != _SHARED and k != _COPY_OPTIONS}
    return options


def _options(task: Task[Any, Any]) -> dict[str, Any]:
    """``task``'s ``__dict__`` without the bookkeeping of shared copies (what a pickle and
    a copy of its own carry)."""
    return _without_bookkeeping(task.__dict__)


def _unshare(task: Task[Any, Any]) -> None:
    """Before ``task`` changes: a copy sharing its options gets a dict of its own, and a
    template forgets the dict its copies share (later copies get the changed options)."""
    mine = task.__dict__
    if _SHARED in mine:
        object.__setattr__(task, "__dict__", _options(task))
    elif _COPY_OPTIONS in mine:
        del mine[_COPY_OPTIONS]


def _same_options(task: Task[Any, Any], template: Task[Any, Any]) -> bool:
    """Whether ``task`` (a copy of ``template``) still has exactly the template's options:
    the same keys (but ``_template``) holding the same objects."""
    mine, theirs = task.__dict__, template.__dict__
    if mine is theirs.get(_COPY_OPTIONS):  # an unchanged copy shares the template's options
        return True
    mine, theirs = _without_bookkeeping(mine), _without_bookkeeping(theirs)
    if len(mine) != len(theirs) + ("_template" not in theirs):
        return False
    # In C (map/operator.is_): this runs for every task of every run sent to workers.
    return all(map(operator.is_, map(mine.get, theirs, repeat(_ABSENT)), theirs.values()))


def _copy_of(template: Task[Any, Any]) -> Task[Any, Any]:
    return template.copy()


def _new_task(cls: type[Task[Any, Any]], state: dict[str, Any] | None = None) -> Task[Any, Any]:
    new = object.__new__(cls)
    if state is not None:  # pickles made before the state went third
        new.__dict__.update(state)
    return new


def _raise_for_operator(name: str) -> Callable[..., Any]:
    def operator(self: Task[Any, Any], *args: Any) -> Any:
        raise _handle_error(self, f"using an operator ({name})")

    operator.__name__ = name
    return operator


def _operator_task(
    task: Task[Any, Any], symbol: str, class_name: str, name: str | None, *operands: object
) -> Any:
    """Add the ``taskloom.tasks.core`` task ``class_name`` to the flow being built, called
    with ``operands`` (handles become data edges, anything else constants); return its
    handle."""
    if active_flow.get() is None:
        raise HandleError(
            f"`{symbol}` on task {task.name!r} outside a flow: an operator on a task adds a "
            f"task ({class_name}) to the flow being built, so use it inside `with Flow(...)` on "
            "the handle that calling a task returns. To compute with a task's result, read "
            "it after `state = flow.run()`: `state.result[handle].result`."
        )
    from .tasks import core  # tasks.core defines its tasks with Task: imported when used

    cls: type[Task[Any, Any]] = getattr(core, class_name)
    operator_task = cls(name=name)
    return operator_task(*operands)


def _binary_operator(name: str, symbol: str, class_name: str, reflected: bool) -> Callable[..., Any]:
    def operator(self: Task[Any, Any], other: object) -> Any:
        left, right = (other, self) if reflected else (self, other)
        return _operator_task(self, symbol, class_name, None, left, right)

    operator.__name__ = name
    operator.__doc__ = (
        f"Build a {class_name} task: ``{'x' if reflected else 'self'} {symbol} "
        f"{'self' if reflected else 'y'}`` in the flow being built."
    )
    return operator


# The operators Prefect 1.x's Task defines build tasks (`taskloom.tasks.core`), as there:
# dunder -> (symbol, task class). Comparisons have no reflected form: Python turns `1 < h`
# into `h > 1`. `==` and `!=` are left alone: tasks hash and compare by identity (in flows,
# sets and dicts). `|` builds `Or` (Prefect 1.x made it an ordering edge, which typed wiring
# cannot express: mypy reads `a | b` as the values' `|`; use `upstream_tasks=`).
# Hidden from the type checker (set with setattr), which reads a handle as its result type.
_OPERATORS: dict[str, tuple[str, str]] = {
    "add": ("+", "Add"),
    "sub": ("-", "Sub"),
    "mul": ("*", "Mul"),
    "truediv": ("/", "Div"),
    "floordiv": ("//", "FloorDiv"),
    "mod": ("%", "Mod"),
    "pow": ("**", "Pow"),
    "and": ("&", "And"),
    "or": ("|", "Or"),
}
_COMPARISONS: dict[str, tuple[str, str]] = {
    "gt": (">", "GreaterThan"),
    "ge": (">=", "GreaterThanOrEqual"),
    "lt": ("<", "LessThan"),
    "le": ("<=", "LessThanOrEqual"),
}
for _op, (_symbol, _class_name) in _OPERATORS.items():
    setattr(Task, f"__{_op}__", _binary_operator(f"__{_op}__", _symbol, _class_name, False))
    setattr(Task, f"__r{_op}__", _binary_operator(f"__r{_op}__", _symbol, _class_name, True))
for _op, (_symbol, _class_name) in _COMPARISONS.items():
    setattr(Task, f"__{_op}__", _binary_operator(f"__{_op}__", _symbol, _class_name, False))

# The other operators are mistakes at build time: say so, instead of Python's
# "unsupported operand type(s) for ^: 'Task' and 'int'".
for _name in (
    "__xor__ __rxor__ __neg__ __pos__ __abs__ __invert__ __contains__ __int__ __float__ "
    "__index__ __matmul__ __rmatmul__ __lshift__ __rlshift__ __rshift__ __rrshift__"
).split():
    setattr(Task, _name, _raise_for_operator(_name))



def defaults_from_attrs(*names: str) -> Callable[[Callable[P2, R2]], Callable[P2, R2]]:
    """Fill the keyword arguments ``names`` of a ``Task`` subclass's ``run`` that are not
    given from the task's attributes of the same names (Prefect 1.x's: an argument given
    as None stays None).

    >>> class Query(Task[..., list[str]]):            # doctest: +SKIP
    ...     def __init__(self, table: str | None = None, **options: Any) -> None:
    ...         self.table = table
    ...         super().__init__(**options)
    ...     @defaults_from_attrs("table")
    ...     def run(self, table: str | None = None) -> list[str]:
    ...         return [f"SELECT * FROM {table}"]
    """

    def wrapper(run: Callable[P2, R2]) -> Callable[P2, R2]:
        @functools.wraps(run)
        def method(*args: P2.args, **kwargs: P2.kwargs) -> R2:
            task = args[0]
            for name in names:
                if name not in kwargs:
                    kwargs[name] = getattr(task, name)
            return run(*args, **kwargs)

        return method

    return wrapper


#: The options a task is made with (``Task``'s keywords), which ``task_args`` may set.
_OPTIONS = tuple(inspect.signature(Task.__init__).parameters)[1:]


class FunctionTask(Task[P, R]):
    """A task whose work is a function; what ``@task`` builds."""

    def __init__(self, fn: Callable[P, R], name: str | None = None, **options: Any) -> None:
        if not callable(fn):
            raise TaskDefinitionError(f"@task needs a function, not {fn!r}")
        self.fn: Callable[P, R] = fn
        super().__init__(name if name is not None else getattr(fn, "__name__", None), **options)
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__wrapped__ = fn

    def run(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the function."""
        return self.fn(*args, **kwargs)

    def signature(self) -> inspect.Signature:
        return _function_signature(self.fn)


@functools.lru_cache(maxsize=4096)
def _function_signature(fn: Callable[..., Any]) -> inspect.Signature:
    return inspect.signature(fn)


@overload
def task(fn: Callable[P, R], /) -> Task[P, R]: ...


@overload
def task(
    *,
    name: str | None = None,
    max_retries: int = 0,
    retry_delay: _dt.timedelta | None = None,
    timeout: float | _dt.timedelta | None = None,
    trigger: Trigger | None = None,
    skip_on_upstream_skip: bool = True,
    cache_for: _dt.timedelta | None = None,
    cache_validator: CacheValidator | None = None,
    cache_key: str | None = None,
    tags: Iterable[str] = (),
    nout: int | None = None,
    max_loops: int | None = None,
    state_handlers: Iterable[StateHandler] | None = None,
    on_failure: OnFailure | None = None,
    log_stdout: bool = False,
    slug: str | None = None,
    retry_on: type[Exception] | Iterable[type[Exception]] | None = None,
    task_run_name: str | Callable[..., str] | None = None,
    rerun_after_crash: bool = True,
    result: Result | ResultBase | None = None,
    target: Target | None = None,
    checkpoint: bool | None = None,
) -> Callable[[Callable[P, R]], Task[P, R]]: ...


def task(
    fn: Callable[P, R] | None = None, /, **options: Any
) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
    """Turn a function into a ``Task`` that keeps its signature for the type checker.

    Use it bare (``@task``) or with the options of ``Task`` (``@task(max_retries=2, ...)``).

    >>> @task
    ... def double(x: int) -> int:
    ...     return 2 * x
    >>> double.run(4)
    8
    """
    if fn is not None:
        return FunctionTask(fn, **options)

    def decorate(fn: Callable[P, R]) -> Task[P, R]:
        return FunctionTask(fn, **options)

    return decorate


_NO_DEFAULT: Any = object()


class ParameterTask(Task[[], Any]):
    """A task whose value comes from ``flow.run(parameters=...)``.

    Build it with ``Parameter(...)``; created inside ``with Flow(...)``, it joins that flow
    even if no task uses it.

    Args:
        name: the parameter's name, unique in its flow.
        default: the value when the run does not give one.
        required: whether a run must give it (default: when there is no default).
        type: the expected type; a run that passes another is refused before any task runs.
    """

    def __init__(
        self,
        name: str,
        default: Any = _NO_DEFAULT,
        *,
        required: bool | None = None,
        type: type | None = None,
    ) -> None:
        super().__init__(name=_nonempty_name(name, "Parameter"), slug=name)
        self.default = None if default is _NO_DEFAULT else default
        self.required = (default is _NO_DEFAULT) if required is None else required
        self.type = type
        flow = active_flow.get()
        if flow is not None:
            flow.add_task(self)

    def __call__(self, flow: Flow | None = None) -> ParameterTask:
        """Add this parameter itself to ``flow`` (default: the flow being built), once: a
        parameter is one task however often it is called or used. Returns it."""
        target: _FlowBuilder | None = flow if flow is not None else active_flow.get()
        if target is None:
            raise FlowDefinitionError(
                f"Parameter {self.name!r} was called outside a flow; call it inside "
                "`with Flow(...)` or pass flow=..."
            )
        target.add_task(self)
        return self

    def run(self) -> Any:
        """The run's value for this parameter; outside a flow run, its default.

        >>> Parameter("x", default=2).run()
        2
        """
        from .context import current

        parameters = current().get("parameters") or {}
        return parameters.get(self.name, self.default)

    def parse(self, value: Any) -> Any:
        """The parameter's result for the value a run gives it (here: that value). A
        parameter of a given kind (``DateTimeParameter``) converts it; the run's context
        keeps the value as given."""
        return value

    def check(self, value: Any) -> None:
        """Raise ``FlowDefinitionError`` naming the parameter if ``value`` has the wrong type."""
        expected = self.type
        if expected is None or isinstance(value, expected):
            return
        if expected is float and isinstance(value, int) and not isinstance(value, bool):
            return  # int where float is expected, as the type checker allows
        raise FlowDefinitionError(
            f"Parameter {self.name!r} expects {expected.__name__}, "
            f"got {type(value).__name__} {value!r}"
        )

    def __repr__(self) -> str:
        return f"<Parameter: {self.name}>"


if TYPE_CHECKING:
    # For the type checker a parameter reads as its value, like a called task; at run time
    # it is a ParameterTask. (A class alone cannot read as `int`: mypy ignores a metaclass
    # `__call__` on a class with `__init__`.)

    @overload
    def Parameter(
        name: str, default: T, *, required: bool | None = None, type: type[T] | None = None
    ) -> T: ...

    @overload
    def Parameter(name: str, *, required: Literal[True] | None = None, type: type[T]) -> T: ...

    # Optional with no default: a run that does not give it reads None.
    @overload
    def Parameter(name: str, *, required: bool, type: type[T]) -> T | None: ...

    def Parameter(
        name: str, default: Any = ..., *, required: bool | None = None, type: Any = None
    ) -> Any:
        """A flow parameter; see ``ParameterTask``."""

else:
    Parameter = ParameterTask
