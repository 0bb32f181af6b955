"""Task and flow states: what happened to a task run, and what it produced.

The hierarchy is Prefect Core's::

    State                                                      runs_again  keeps_inputs
    ├── Pending                                                    yes         -
    │   └── Scheduled                  start_time                  yes         -
    │       ├── Retrying               run_count, loop_count,      yes        yes
    │       │                          loop_result
    │       ├── Paused                                             yes        yes
    │       └── Resume                                             yes         -
    ├── Running                                                    yes         -
    └── Finished                                                    -          -
        ├── Looped                     loop_count                  yes        yes
        ├── Success
        │   ├── Cached                 cached_result_expiration, hashed_inputs, cached_parameters
        │   ├── Mapped                 map_states
        │   └── Skipped
        ├── Cancelled                                              yes        yes
        └── Failed                                                 yes        yes
            ├── TriggerFailed                                       -          -
            ├── TimedOut                                           yes        yes
            ├── ValidationFailed                                   yes        yes
            └── Crashed                                            yes        yes

Every predicate (``is_failed()`` and so on) is an ``isinstance`` test, so it is true for
every subclass: a ``TriggerFailed`` state ``is_failed()``, a ``Cached`` one ``is_successful()``.

States are plain data: they pickle (so they can cross process boundaries), compare equal
when their type and result are equal (the message does not count), and hash by identity.
They are generic in their result: ``Success[int]`` carries an ``int``. The engine treats a
state as immutable once made: ``state.replace(result=...)`` makes a changed copy, so a
state may be shared (between runs, or by every task a run never reached). A final
``Success`` of a large value an executor left outside this process (loky's shared memory)
reads it on the first read of ``result`` (``fetched_on_read``): to its reader it is a
``Success`` like any other.

This module is the one place that knows state names and what each state means to the rest
of the engine. ``by_name("TimedOut")`` gives the class a journal row or a wire code names
(every state class registers itself there); other modules classify a recorded state by its
class, ``issubclass(by_name(row.state), Failed)``, never by a set of names. Two class
attributes say what a run left to do (the columns above; a blank inherits the parent's):

``runs_again``
    a task left in this state by a run runs again when the run is resumed
    (``taskloom.resume``): it did not finish (every ``Pending`` state, ``Running``), or it
    ran and failed. ``TriggerFailed`` does not: it was decided without running, and is
    decided again only if what it waits for runs again.
``keeps_inputs``
    it then runs from inputs of its own, which the run journal keeps: a ``Retrying`` or
    ``Paused`` state's ``cached_inputs``, or the inputs of the attempt that failed. A task
    that runs again without them never ran, and runs after what it waits for.

``Looped`` is the state of a task between two passes of a loop (``signals.LOOP``). The
passes run where the task runs, inside one attempt (``taskloom.attempt``), so the scheduler,
observers and the journal see a ``Looped`` state only if something leaves one there (an
``ENDRUN(Looped(...))``, a seeded state): a task left ``Looped`` runs again, from its
inputs, on resume. ``Cancelled`` is what an interrupted run (Ctrl-C, SIGTERM) leaves on a
task that was waiting for its retry: neither a success nor a failure; it runs again on
resume, from the inputs the run gave it. (A task the interrupt caught running ends
``Failed``, and one never reached stays ``Pending``: see ``taskloom.runner``.)

``Resume`` means what it means in Prefect: a ``Pending`` state that lets a paused task
through (``manual_only`` passes). The task has not run yet. A task a run left in
``Resume`` (it was let through, but what it waits for never finished) is one that never
ran: a resume runs it after what it waits for, and keeps its permission.

``Crashed`` is what a process that died leaves behind. On a flow run: the process that ran
it is gone (by its recorded pid, host and start time: ``taskloom._process``) and the run
never recorded its end; the journal reads such a run as ``Crashed`` and ``taskloom resume``
completes it. On a task: it was in flight with a worker that died and asked not to run
again after a crash (``Task(rerun_after_crash=False)``); it runs again on resume only.

So adding a state is a change to this file: the class, and where it differs from its
parent, its two attributes (presentation buckets follow the hierarchy: see
``progress.category``).

>>> Success(result=3) == Success(result=3, message="done")
True
>>> TriggerFailed("nope").is_failed()
True
>>> by_name("TimedOut").runs_again, by_name("TriggerFailed").runs_again
(True, False)
"""

from __future__ import annotations

import datetime as _dt
import operator
import pickle
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, cast

import cloudpickle
from typing_extensions import Self, TypeVar

__all__ = [
    "Cached",
    "Cancelled",
    "Crashed",
    "Failed",
    "Finished",
    "Looped",
    "Mapped",
    "Paused",
    "Pending",
    "Resume",
    "Retrying",
    "Running",
    "Scheduled",
    "Skipped",
    "StandInError",
    "State",
    "Success",
    "TimedOut",
    "TriggerFailed",
    "ValidationFailed",
    "all_classes",
    "by_name",
    "fetched_on_read",
    "loaded",
    "picklable",
    "restored_all",
    "stand_in",
]

#: The type of a state's result. It defaults to ``Any`` so that ``Pending()`` needs no
#: annotation; states are immutable, so it is covariant.
R_co = TypeVar("R_co", covariant=True, default=Any)
R = TypeVar("R")


#: Every state class by its name (``State`` and each subclass register themselves).
_BY_NAME: dict[str, type[State[Any]]] = {}


def _unfiltered(text: str) -> str:
    return text


#: What every state's repr passes through: ``taskloom._secrets`` installs its masking of
#: secret values here (``set_repr_filter``), so that this module stays a leaf.
_repr_filter: Callable[[str], str] = _unfiltered


def set_repr_filter(fn: Callable[[str], str]) -> None:
    """Make every state's repr pass through ``fn`` (taskloom's secret masking uses it)."""
    global _repr_filter
    _repr_filter = fn


def by_name(name: str) -> type[State[Any]]:
    """The state class called ``name`` (as journal rows and wire codes name them).

    Raises ``KeyError`` for a name this version does not know.

    >>> by_name("TimedOut").__mro__[1].__name__
    'Failed'
    """
    return _BY_NAME[name]


def all_classes() -> tuple[type[State[Any]], ...]:
    """Every state class, in a fixed order (the order they are defined in; for wire codes)."""
    return tuple(_BY_NAME.values())


def _utcnow() -> _dt.datetime:
    return _dt.datetime.now(_dt.timezone.utc)


class State(Generic[R_co]):
    """The base of every state.

    Args:
        message: a human-readable account of how the task got here.
        result: what the task produced (for a ``Failed`` state, usually the exception).
        cached_inputs: the inputs a task will need when it runs again later; the engine
            fills this on ``Retrying`` and ``Paused`` states, and reads it back when the
            task is resumed (see ``Flow.run(start_tasks=...)``).
        context: facts about the run that made the state (Prefect's ``State.context``):
            the engine records ``tags`` (a task's tags, when it has some),
            ``task_run_name`` (when the task has a ``task_run_name``) and, on ``Retrying``,
            ``task_run_count``. Read-only: ``state.replace(context=...)`` makes a copy.

    ``repr`` is Prefect's: ``<Success: "Task run succeeded.">``, ``<Pending>`` without a
    message; the result is never shown (it may be large, or a secret).

    >>> Success("Task run succeeded.", 42)
    <Success: "Task run succeeded.">
    >>> Failed(context={"tags": ["db"]}).context["tags"]
    ['db']
    """

    __slots__ = ("_context", "_result", "cached_inputs", "message", "run_id")

    #: A task left in this state by a run runs again when the run is resumed (see the
    #: module docstring).
    runs_again: ClassVar[bool] = True
    #: ... and from inputs of its own, which the run journal keeps.
    keeps_inputs: ClassVar[bool] = False

    def __init__(
        self,
        message: str | None = None,
        result: R_co | None = None,
        *,
        cached_inputs: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
    ) -> None:
        self.message = message
        self._result = result
        self.cached_inputs: dict[str, Any] | None = (
            dict(cached_inputs) if cached_inputs is not None else None
        )
        #: On the state ``flow.run`` returns: the run's id in the run journal.
        self.run_id: str | None = None
        # None, not an empty dict, for the many states with no context: one allocation
        # less per task run.
        self._context: dict[str, Any] | None = dict(context) if context else None

    if TYPE_CHECKING:

        @property
        def result(self) -> R_co:
            """What the task produced; ``None`` when it produced nothing (yet)."""
            # An unset result reads as None, as in Prefect; the static type is the one the
            # task declared, which is what readers of a finished state want.
            ...

    else:
        # The scheduler reads every task's result at least once: read by C code, it
        # costs no Python frame.
        result = property(
            operator.attrgetter("_result"),
            doc="What the task produced; ``None`` when it produced nothing (yet).",
        )

    @property
    def context(self) -> Mapping[str, Any]:
        """Facts about the run that made this state (see the class docstring); read-only."""
        values = self._context
        return _NO_CONTEXT if values is None else MappingProxyType(values)

    # -- predicates ---------------------------------------------------------------------

    def is_pending(self) -> bool:
        """True for ``Pending`` and its subclasses (``Scheduled``, ``Retrying``, ``Paused``, ``Resume``)."""
        return isinstance(self, Pending)

    def is_scheduled(self) -> bool:
        """True for ``Scheduled`` and its subclasses."""
        return isinstance(self, Scheduled)

    def is_running(self) -> bool:
        """True for ``Running``."""
        return isinstance(self, Running)

    def is_finished(self) -> bool:
        """True for ``Finished`` and its subclasses: the task will not run again in this run."""
        return isinstance(self, Finished)

    def is_successful(self) -> bool:
        """True for ``Success``, ``Cached`` and ``Skipped``."""
        return isinstance(self, Success)

    def is_failed(self) -> bool:
        """True for ``Failed``, ``TriggerFailed`` and ``TimedOut``."""
        return isinstance(self, Failed)

    def is_skipped(self) -> bool:
        """True for ``Skipped``."""
        return isinstance(self, Skipped)

    def is_cached(self) -> bool:
        """True for ``Cached``."""
        return isinstance(self, Cached)

    def is_retrying(self) -> bool:
        """True for ``Retrying``."""
        return isinstance(self, Retrying)

    def is_paused(self) -> bool:
        """True for ``Paused``."""
        return isinstance(self, Paused)

    def is_looped(self) -> bool:
        """True for ``Looped``: between two passes of a looping task."""
        return isinstance(self, Looped)

    def is_mapped(self) -> bool:
        """True for ``Mapped``: a mapped task whose children all finished."""
        return isinstance(self, Mapped)

    # -- copies -------------------------------------------------------------------------

    def replace(self, **changes: Any) -> Self:
        """A copy of this state with some attributes changed (``result``, ``message``,
        ``cached_inputs``, ``context``, ``run_id``, or a subclass's own, such as
        ``run_count``).

        >>> Success("done", 1).replace(result=2).result
        2
        """
        copy = object.__new__(type(self))
        copy.__setstate__(self.__getstate__())
        for name, value in changes.items():
            slot = _SLOT_OF.get(name, name)
            if slot not in self._fields:
                raise TypeError(f"{type(self).__name__} has no attribute {name!r} to replace")
            if name == "cached_inputs" and value is not None:
                value = dict(value)
            elif name == "context":
                value = dict(value) if value else None
            object.__setattr__(copy, slot, value)
        return copy

    # -- value semantics ------------------------------------------------------------------

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented if not isinstance(other, State) else False
        assert isinstance(other, State)
        mine, theirs = self.result, other.result  # (a result fetched on read is fetched)
        try:
            return bool(mine == theirs)
        except Exception:  # results whose == is not a bool (arrays) compare by identity
            return mine is theirs

    # States are used as dict keys and in sets by identity (a trigger that sees one state
    # through two edges counts it once), so equality does not change hashing.
    __hash__ = object.__hash__

    def __repr__(self) -> str:
        if self.message is not None:
            return _repr_filter(f'<{type(self).__name__}: "{self.message}">')
        return f"<{type(self).__name__}>"

    # Pickling is on the hot path of every process hop: one tuple of the slot values, in
    # an order fixed per class. ``__getstate__`` gives them as they are (``replace`` and
    # the executors' wire format use it); ``__reduce__``, what pickle calls, gives them
    # with an exception result that cannot travel replaced (``picklable``). ``_context``
    # comes last, so that states pickled before it existed (the cache store keeps some)
    # still line up.
    _fields: tuple[str, ...] = ("_result", "cached_inputs", "message", "run_id", "_context")

    def __init_subclass__(cls) -> None:
        super().__init_subclass__()
        cls._fields = (
            *(
                name
                for klass in reversed(cls.__mro__)
                for name in getattr(klass, "__slots__", ())
                if name != "_context"
            ),
            "_context",
        )
        # The latest class of a name wins (a test may register its own in a copy of the table).
        _BY_NAME[cls.__name__] = cls

    def __getstate__(self) -> tuple[Any, ...]:
        if len(self._fields) == 5:  # the base slots only (most classes): no loop
            return (self._result, self.cached_inputs, self.message, self.run_id, self._context)
        return tuple([getattr(self, name) for name in self._fields])

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        # As __getstate__: no loop (``restored_all`` takes this case inline: keep them alike).
        if len(state) == 5 and len(self._fields) == 5:
            self._result, self.cached_inputs, self.message, self.run_id, self._context = state
            return
        if len(state) < len(self._fields):  # pickled before a slot was added: leave it unset
            object.__setattr__(self, "_context", None)
        for name, value in zip(self._fields, state):
            object.__setattr__(self, name, value)

    def __reduce__(self) -> tuple[Any, ...]:
        values = self.__getstate__()
        result = self._result
        # Only where an exception can be: a failure's result, a mapped task's results, the
        # inputs kept for a retry or a resume (a long list result is not searched).
        if (
            isinstance(result, Exception)
            or (isinstance(result, list) and isinstance(self, Mapped))
            or self.cached_inputs
        ):
            values = tuple(
                picklable(value) if name in ("_result", "cached_inputs") else value
                for name, value in zip(self._fields, values)
            )
        return (_new_state, (type(self),), values)


_BY_NAME["State"] = State

_NO_CONTEXT: Mapping[str, Any] = MappingProxyType({})
#: ``replace``'s names for the slots behind a property.
_SLOT_OF = {"result": "_result", "context": "_context"}


def _new_state(cls: type[State[Any]]) -> State[Any]:
    return cls.__new__(cls)


def restored_all(
    classes: Sequence[type[State[Any]]], packed: Iterable[tuple[int, Any]]
) -> list[State[Any]]:
    """The states packed as ``(code, values)``: each a ``classes[code]`` made from its slot
    values (what ``__getstate__`` gives), as pickle makes one; a negative code's values
    are the state itself (one of a class without a code, which travels whole). The
    executors rebuild every result's state here, with no call a state: most have
    ``State``'s five slots (``__setstate__``'s first case, inline).

    >>> [s.result for s in restored_all([Success], [(0, Success("done", 3).__getstate__())])]
    [3]
    """
    states: list[State[Any]] = []
    append = states.append
    for code, values in packed:
        if code < 0:
            append(values)
            continue
        cls = classes[code]
        state = cls.__new__(cls)
        if len(values) == 5 and len(cls._fields) == 5:
            state._result, state.cached_inputs, state.message, state.run_id, state._context = values
        else:
            state.__setstate__(values)
        append(state)
    return states


def picklable(value: Any) -> Any:
    """``value`` as it can be pickled and unpickled again: an exception that cannot (a
    lock on it, a custom ``__init__`` that unpickling cannot call) becomes a
    ``StandInError`` with its type name, text, repr and traceback (``stand_in``); so does
    each such exception in a list or tuple, or among a dict's values (a task's inputs, a
    ``Mapped`` state's results). Anything else is returned as it is. Signals are
    ``BaseException``s, never ``Exception``s: they pickle themselves.

    >>> import threading
    >>> error = ValueError("boom")
    >>> error.lock = threading.Lock()
    >>> picklable({"x": 1, "error": error})["error"].original_repr
    "ValueError('boom')"
    """
    if isinstance(value, Exception):
        if isinstance(value, StandInError):
            return value
        try:
            pickle.loads(cloudpickle.dumps(value))
            return value
        except Exception as error:
            return stand_in(value, error)
    if type(value) in (list, tuple):
        if any(isinstance(item, Exception) for item in value):
            return type(value)(picklable(item) for item in value)
    elif type(value) is dict:
        if any(isinstance(item, Exception) for item in value.values()):
            return {key: picklable(item) for key, item in value.items()}
    return value


class StandInError(Exception):
    """An exception standing in for one that could not be pickled (``stand_in``): what a
    failed state's result becomes when the state is pickled (to the run journal, to or
    from a worker process), so the state always pickles.

    Attributes:
        type_name: the qualified name of the original exception's type.
        text: ``str()`` of the original exception.
        remote_traceback: its traceback, formatted where it was raised.
        original_repr: ``repr()`` of the original exception ("" when not kept).
        reason: why it could not be pickled ("" when not known).
    """

    def __init__(
        self,
        type_name: str,
        text: str,
        remote_traceback: str,
        *,
        original_repr: str = "",
        reason: str = "",
    ) -> None:
        super().__init__(f"{type_name}: {text}")
        self.type_name = type_name
        self.text = text
        self.remote_traceback = remote_traceback
        self.original_repr = original_repr
        self.reason = reason

    def _parts(self) -> tuple[str, str, str, str, str]:
        return (self.type_name, self.text, self.remote_traceback, self.original_repr, self.reason)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_stand_in_error, self._parts())


_E = TypeVar("_E", bound=StandInError)


def _stand_in_error(
    type_name: str, text: str, remote_traceback: str, original_repr: str, reason: str
) -> StandInError:
    return StandInError(
        type_name, text, remote_traceback, original_repr=original_repr, reason=reason
    )


def stand_in(
    error: BaseException, why: BaseException | None = None, cls: type[_E] = StandInError  # type: ignore[assignment]  # mypy cannot tie a default to a TypeVar
) -> _E:
    """An exception that pickles, standing in for ``error``, which does not: its type name,
    ``str``, ``repr`` and traceback, and why it could not be pickled (``why``); a
    ``StandInError``, or the subclass ``cls``.

    >>> stand_in(ValueError("boom")).original_repr
    "ValueError('boom')"
    """
    kind = type(error)
    return cls(
        f"{kind.__module__}.{kind.__qualname__}",
        str(error),
        "".join(traceback.format_exception(error)),
        original_repr=repr(error),
        reason="" if why is None else repr(why),
    )


class Pending(State[R_co]):
    """The task has not run yet in this flow run."""

    __slots__ = ()


class Scheduled(Pending[R_co]):
    """The task is waiting for a time (``start_time``, timezone-aware UTC) to run."""

    __slots__ = ("start_time",)

    def __init__(
        self,
        message: str | None = None,
        result: R_co | None = None,
        *,
        cached_inputs: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        start_time: _dt.datetime | None = None,
    ) -> None:
        super().__init__(message, result, cached_inputs=cached_inputs, context=context)
        self.start_time: _dt.datetime | None = (
            start_time if start_time is not None else self._default_start_time()
        )

    def _default_start_time(self) -> _dt.datetime | None:
        return _utcnow()


class Retrying(Scheduled[R_co]):
    """The task failed on attempt ``run_count`` and will run again at ``start_time``.

    ``cached_inputs`` holds the inputs of the failed attempt, which the next attempt reuses.
    A looping task (``signals.LOOP``) that failed on pass ``loop_count`` retries from that
    pass, with ``loop_result`` (the result of the ``LOOP`` before it) as
    ``context.task_loop_result``; ``loop_count`` 1 is a retry from the first pass.
    """

    __slots__ = ("loop_count", "loop_result", "run_count")
    keeps_inputs = True

    def __init__(
        self,
        message: str | None = None,
        result: R_co | None = None,
        *,
        cached_inputs: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        start_time: _dt.datetime | None = None,
        run_count: int = 1,
        loop_count: int = 1,
        loop_result: Any = None,
    ) -> None:
        super().__init__(
            message, result, cached_inputs=cached_inputs, context=context, start_time=start_time
        )
        self.run_count = run_count
        self.loop_count = loop_count
        self.loop_result: Any = loop_result


class Paused(Scheduled[R_co]):
    """The task waits for a person: it runs again only when resumed (see ``Resume``).

    ``cached_inputs`` holds the inputs it will run with.
    """

    __slots__ = ()
    keeps_inputs = True

    def _default_start_time(self) -> _dt.datetime | None:
        return None  # indefinitely


class Resume(Scheduled[R_co]):
    """Given to a paused task to let it run: ``manual_only`` lets it through.

    ``Resume(cached_inputs=paused.cached_inputs)`` together with ``start_tasks=[t]`` runs
    ``t`` with the inputs it was paused with, without running its upstream tasks. Like
    every ``Pending`` state it says the task has not run yet.
    """

    __slots__ = ()


class Running(State[R_co]):
    """The task (or flow) is running, or started and did not finish."""

    __slots__ = ()


class Finished(State[R_co]):
    """The task will not run again in this flow run."""

    __slots__ = ()
    runs_again = False


class Looped(Finished[R_co]):
    """Between two passes of a looping task (``signals.LOOP``): pass ``loop_count`` ended
    with a ``LOOP`` whose ``result`` the next pass reads as ``context.task_loop_result``.

    It runs again on resume, from its inputs, like a failed task (see the module docstring).

    >>> Looped("again", 3, loop_count=2).loop_count
    2
    """

    __slots__ = ("loop_count",)
    runs_again = True
    keeps_inputs = True

    def __init__(
        self,
        message: str | None = None,
        result: R_co | None = None,
        *,
        cached_inputs: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        loop_count: int = 1,
    ) -> None:
        super().__init__(message, result, cached_inputs=cached_inputs, context=context)
        self.loop_count = loop_count


class Cancelled(Finished[R_co]):
    """The run was stopped (Ctrl-C, SIGTERM) while the task waited to run again: neither
    a success nor a failure. ``cached_inputs`` holds its inputs; a resume runs it from them."""

    __slots__ = ()
    runs_again = True
    keeps_inputs = True


class Success(Finished[R_co]):
    """The task finished and produced ``result``."""

    __slots__ = ()


class _Unfetched:
    """The result of a ``Success`` made by ``fetched_on_read``, until it is first read: how
    to fetch the value. A pickle or deep copy of it is the value itself."""

    __slots__ = ("fetch",)

    def __init__(self, fetch: Callable[[], Any]) -> None:
        self.fetch = fetch

    def __reduce__(self) -> tuple[Any, ...]:
        return (_same, (self.fetch(),))


def _same(value: object) -> object:
    return value


def _fetching_result(state: State[Any]) -> Any:
    """``Success.result`` once a state of this process was made by ``fetched_on_read``."""
    result = state._result
    if type(result) is _Unfetched:
        # The fetch caches its value, so that states sharing it (copies made by
        # ``replace``), and threads reading at once, get the same object. It stays in the
        # state: what it holds may have to live as long as the state does (loky's file,
        # once a child forked since the run may read it too).
        return result.fetch()
    return result


def fetched_on_read(state: State[R], fetch: Callable[[], R]) -> State[R]:
    """``state`` (a plain ``Success``) with its result left where it is until it is first
    read: that read calls ``fetch``, which must cache its value and may raise.

    Why: ``flow.run`` returns every task's state, and most large results are intermediate
    values the caller never reads (50 MB passed to consumers that ran where it was made).
    Read into this process at the run's end, each costs a copy the size of the value
    (W4: 30-46 ms for 50 MB) and that much of the caller's memory.

    The state is a ``Success`` like any other (``type(state) is Success``); it compares,
    pickles and copies with its value. The engine takes one into a run through
    ``loaded``. ``Success.result`` is read through C (``State.result``) until the first
    such state exists: from then on, through a Python function that fetches (a frame on
    every read of a success's result, which the scheduler makes on every task, spared a
    process that never has one).

    >>> s = fetched_on_read(Success("done"), lambda: 42)
    >>> s, type(s) is Success, s.result, s == Success(result=42)
    (<Success: "done">, True, 42, True)
    """
    if type(state) is not Success:
        raise TypeError(f"fetched_on_read takes a plain Success, not {state!r}")
    if Success.__dict__.get("result") is None:
        setattr(Success, "result", property(_fetching_result, doc=State.result.__doc__))
    return state.replace(result=_Unfetched(fetch))


def loaded(state: State[R]) -> State[R]:
    """``state`` with its value in it, fetched now if ``fetched_on_read`` left it where it
    was (else ``state`` itself). A run takes the states it is given (``task_states``)
    through this: the executors send a state's value, not how to fetch it."""
    if type(state._result) is not _Unfetched:
        return state
    return state.replace(result=state.result)


class Cached(Success[R_co]):
    """The task's result came from the output cache, or was just stored in it.

    Attributes:
        cached_result_expiration: when the cached result stops being valid (UTC), or None
            for never.
        hashed_inputs: a deterministic hash of each input the result was computed from.
        cached_parameters: the flow parameters of the run that computed it.
    """

    __slots__ = ("cached_parameters", "cached_result_expiration", "hashed_inputs")

    def __init__(
        self,
        message: str | None = None,
        result: R_co | None = None,
        *,
        cached_inputs: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        cached_result_expiration: _dt.datetime | None = None,
        hashed_inputs: Mapping[str, str] | None = None,
        cached_parameters: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(message, result, cached_inputs=cached_inputs, context=context)
        self.cached_result_expiration = cached_result_expiration
        self.hashed_inputs: dict[str, str] = dict(hashed_inputs or {})
        self.cached_parameters: dict[str, Any] = dict(cached_parameters or {})


class Mapped(Success[R_co]):
    """A mapped task (``t.map(...)``) whose children have all finished.

    ``map_states`` lists the children's final states, in map-index order, and ``result``
    their results (a failed child's entry is its exception, as in Prefect); a ``Mapped``
    made with children and no result (seeded by hand: ``flow.run(task_states=...)``) takes
    its children's, so what maps over it, or takes it whole, gets them. It is a
    ``Success`` whatever its children did: triggers and the flow's state look at the
    children one by one.

    >>> Mapped("Ready to proceed with mapping.", [2, 3], map_states=[Success(result=2), Success(result=3)]).n_map_states
    2
    >>> Mapped(map_states=[Success(result=2), Failed(result=ValueError("x"))]).result
    [2, ValueError('x')]
    """

    __slots__ = ("map_states",)

    def __init__(
        self,
        message: str | None = None,
        result: R_co | None = None,
        *,
        cached_inputs: Mapping[str, Any] | None = None,
        context: Mapping[str, Any] | None = None,
        map_states: list[State[Any]] | None = None,
    ) -> None:
        children = list(map_states or [])
        if result is None and children:
            result = cast(R_co, [child.result for child in children])
        super().__init__(message, result, cached_inputs=cached_inputs, context=context)
        self.map_states: list[State[Any]] = children

    @property
    def n_map_states(self) -> int:
        """How many children the mapped task had."""
        return len(self.map_states)


class Skipped(Success[R_co]):
    """The task did not run, on purpose (a ``SKIP`` signal, or a skipped upstream task).

    It counts as successful for the flow's state and for most triggers.
    """

    __slots__ = ()


class Failed(Finished[R_co]):
    """The task finished without producing a result; ``result`` is usually the exception."""

    __slots__ = ()
    runs_again = True
    keeps_inputs = True


class TriggerFailed(Failed[R_co]):
    """The task's trigger did not pass, so the task did not run."""

    __slots__ = ()
    runs_again = False
    keeps_inputs = False


class TimedOut(Failed[R_co]):
    """The task ran for longer than its ``timeout`` and was stopped."""

    __slots__ = ()


class ValidationFailed(Failed[R_co]):
    """The task found its data invalid (``signals.VALIDATIONFAIL``); retries apply."""

    __slots__ = ()


class Crashed(Failed[R_co]):
    """A process died under it: the flow run's own (a run read back from the journal
    whose process is gone), or the worker running the task (a task with
    ``rerun_after_crash=False``, failed instead of run again). A resume runs it again."""

    __slots__ = ()


#: The exact state classes that are successes and neither skips nor mapped tasks: a check
#: by type, with no call a state (a trigger over a map's thousands of children, the
#: scheduler's shortcut for the default trigger). A user's subclass of ``Success`` is not
#: in it, and goes through the methods.
PLAIN_SUCCESS: frozenset[type[State[Any]]] = frozenset({Success, Cached})
