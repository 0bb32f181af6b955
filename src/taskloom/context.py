"""The run context: information about the current run, and values users put there.

``taskloom.context`` reads like an object and like a mapping::

    import taskloom

    @taskloom.task
    def greet() -> str:
        return f"{taskloom.context.key} from {taskloom.context['task_name']}"

    with taskloom.context(key="abc"):   # overlay values for a block
        flow.run()
    flow.run(context={"key": "abc"})    # or for one run

During a run it carries ``flow_name``, ``flow_run_id`` (and ``flow_run_name``, the same
unless given), ``parameters``, ``scheduled_start_time``, ``date``, ``today``, ``yesterday``,
``tomorrow`` (and their ``*_nodash`` forms), and inside a task ``task_name``,
``task_full_name``, ``task_slug``, ``task_run_id``, ``task_run_count``, ``task_tags`` and,
when the task is resumed, ``resume``.

It is built on ``contextvars``: values are immutable snapshots, so a task's writes never
leak into other tasks or back to the caller. The engine enters a task's context as a
``Later`` (what to call to make it): a task that never reads its context never pays for
building it (a copy of the run's values, and the task's own keys). The object pickles by
reference, so a task that keeps an alias to it (``ctx = taskloom.context``) still runs in
a worker process, where it reads the values the scheduler sent along with the task.
"""

from __future__ import annotations

import datetime as _dt
import functools
from collections.abc import Callable, Iterator, Mapping
from contextvars import ContextVar, Token
from types import TracebackType
from typing import Any, TypeAlias

__all__ = ["Context", "ReadOnlyDict", "context"]


#: Context values made when first read: a plain tuple ``(make, *args)`` stands for
#: ``make(*args)``, a mapping (no mapping is a tuple: ``current`` tells the two apart).
#:
#: The engine enters a task's context as one (``enter``): most tasks never read their
#: context, and building it cost a tenth of what the scheduler spends on a no-op task.
#: ``current()`` makes the values at the first read and keeps them for the rest of the
#: task (so a task reads one snapshot, and writes to it as to any other). A plain tuple,
#: not a class of its own: a tuple is made in C, an instance of a subclass of it by a
#: call, 80 ns more for every task::
#:
#:     token = enter((dict, {"task_name": "fetch"}))
#:     context.task_name   # 'fetch', made here
#:     leave(token)
Later: TypeAlias = "tuple[Any, ...]"


_EMPTY: Mapping[str, Any] = {}
_current: ContextVar[Mapping[str, Any] | Later] = ContextVar("taskloom.context", default=_EMPTY)


class ReadOnlyDict(dict[str, Any]):
    """A dict that refuses changes: what tasks see as ``context.parameters``.

    Tasks share the run's values, so a change made by one would reach the others; this
    makes that mistake an error instead. It pickles (``MappingProxyType`` does not).
    """

    __slots__ = ()

    def _refuse(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            "taskloom.context values are read-only inside a run; to pass a value to other "
            "tasks, return it from this task and make them depend on it"
        )

    __setitem__ = __delitem__ = _refuse
    clear = pop = popitem = setdefault = update = _refuse
    __ior__ = _refuse

    def __reduce__(self) -> tuple[Any, ...]:
        return (ReadOnlyDict, (dict(self),))

    def __copy__(self) -> dict[str, Any]:
        return dict(self)


class _Overlay:
    """The context manager returned by ``context(...)``: values on top of the current ones."""

    __slots__ = ("_token", "_values")

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = values
        self._token: Token[Mapping[str, Any] | Later] | None = None

    def __enter__(self) -> Context:
        self._token = _current.set({**current(), **self._values})
        return context

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _current.reset(self._token)
            self._token = None


class Context(Mapping[str, Any]):
    """The type of ``taskloom.context``; there is one instance, and it holds no values itself.

    Reads go to the values of the current run and task; ``context(**values)`` overlays
    values for a ``with`` block. Writing (``context["k"] = v``) changes only the current
    task's view (or, outside a run, the current thread's), never another task's.
    """

    __slots__ = ()

    def __getitem__(self, key: str) -> Any:
        return current()[key]

    def __getattr__(self, name: str) -> Any:
        try:
            return current()[name]
        except KeyError:
            if name.startswith("__"):
                raise AttributeError(name) from None
            raise AttributeError(
                f"taskloom.context has no key {name!r}; "
                f"use taskloom.context.get({name!r}) to read a key that may be missing"
            ) from None

    def __iter__(self) -> Iterator[str]:
        return iter(current())

    def __len__(self) -> int:
        return len(current())

    def __contains__(self, key: object) -> bool:
        return key in current()

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default`` when it is not set."""
        return current().get(key, default)

    def to_dict(self) -> dict[str, Any]:
        """A copy of every value currently visible."""
        return dict(current())

    def __call__(self, values: Mapping[str, Any] | None = None, /, **more: Any) -> _Overlay:
        """Overlay values for a ``with`` block: ``with taskloom.context(key="abc"): ...``."""
        return _Overlay({**(values or {}), **more})

    def __setitem__(self, key: str, value: Any) -> None:
        _current.set({**current(), key: value})

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delitem__(self, key: str) -> None:
        values = dict(current())
        del values[key]
        _current.set(values)

    def __repr__(self) -> str:
        return f"<taskloom.context {dict(current())!r}>"

    def __reduce__(self) -> str:
        # Pickle by reference: the receiving process has its own context, filled by the
        # engine from the snapshot that travels with each task.
        return "context"


#: The run context. See the module docstring.
context = Context()


# The engine's ways in: every task run enters and leaves, through the context variable's
# own methods (a Python function around each cost a frame apiece).


def current() -> Mapping[str, Any]:
    """The values visible now (the engine's way to read them; users read
    ``taskloom.context``). Values entered as a ``Later`` are made here, at the first read,
    and kept: the task's later reads, and its writes, see them."""
    values = _current.get()
    if isinstance(values, tuple):  # a ``Later``
        values = values[0](*values[1:])
        _current.set(values)  # ``leave`` resets past this too: it undoes the ``enter``
    return values


#: ``enter(values)``: make ``values`` (a mapping, or a ``Later`` one) the whole context
#: until ``leave(token)``.
enter: Callable[[Mapping[str, Any] | Later], Token[Mapping[str, Any] | Later]] = _current.set
#: ``leave(token)``: undo the matching ``enter``.
leave: Callable[[Token[Mapping[str, Any] | Later]], None] = _current.reset


def date_keys(date: _dt.datetime | _dt.date | str) -> dict[str, Any]:
    """The date keys Prefect Core puts in a run's context, computed from ``date``.

    >>> date_keys("2020-02-29T10:00")["tomorrow"]
    '2020-03-01'
    """
    if isinstance(date, str):
        date = _dt.datetime.fromisoformat(date)
    if not isinstance(date, _dt.datetime):
        date = _dt.datetime.combine(date, _dt.time(), tzinfo=_dt.timezone.utc)
    return {"date": date, **_day_keys(date.date())}


@functools.lru_cache(maxsize=4)
def _day_keys(day: _dt.date) -> dict[str, str]:
    """``date_keys``' keys of ``day`` but ``date``: the same strings for every run of a day
    (made once: every run needs them, and they cost more than the rest of its context)."""
    keys: dict[str, str] = {}
    for name, delta in (("today", 0), ("yesterday", -1), ("tomorrow", 1)):
        value = (day + _dt.timedelta(days=delta)).isoformat()
        keys[name] = value
        keys[f"{name}_nodash"] = value.replace("-", "")
    return keys
