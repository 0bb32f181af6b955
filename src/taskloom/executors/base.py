"""The executor contract: how the scheduler hands task runs to whatever runs them.

The scheduler (``taskloom.runner``) lives in the calling process and decides everything
that needs no user code. Only a task that must actually run reaches the executor, as a
``TaskRun``: the task, its inputs, and which attempt this is. The executor runs it with
``taskloom.attempt.run_attempt`` (in this process, a worker process, or on a cluster) and
hands back the resulting ``State``::

    scheduler                              executor
    ---------                              --------
    run = executor.begin(run_context) --->  acquire workers; a new ExecutorRun for this run
    run.submit([TaskRun, ...])        --->  queue them; return at once
    run.collect(timeout)              <---  [(key, State), ...] as runs finish
    run.end()                         --->  stop what is still running; release the run

Everything one flow run needs (its queues, what is in flight, its deferred results) lives
on the ``ExecutorRun`` that ``begin`` returns, never on the executor: one executor serves
several flow runs at once (data jobs share one pool across threads, each calling
``flow.run``).

``collect`` returns at least one result, or an empty list once ``timeout`` seconds have
passed (the scheduler uses the timeout to wake up for retries). The results of a run and
of the members of its group (``TaskRun.then``) that ran come back together, in the order
they ran, in one ``collect``. ``timings`` tells the scheduler what the executor has seen of
how long tasks take, so that it puts in a group only tasks known to be short (see
"Follow-ons" in ``taskloom.runner``).

A state's result may be a ``DeferredResult``: a stand-in for a large value left where it
was made (shared memory, a worker). The scheduler passes it on as an input unchanged, so
the next worker fetches the value without a trip through the parent, and calls
``resolve()`` only where the parent needs the value itself (output caching, and the final
states before ``end()``). A ``DeferredResult`` whose value can outlive the run (``keep``)
leaves a final ``Success`` fetching it on its first read (``states.fetched_on_read``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

from ..attempt import TaskResult, TaskRun

__all__ = [
    "SCALARS", "DeferredResult", "Executor", "ExecutorRun", "TaskResult", "TaskRun", "Timings",
    "holds_deferred",
]


class DeferredResult:
    """A task result that stays where it was made until its value is needed."""

    __slots__ = ()

    def resolve(self) -> Any:
        """The value itself."""
        raise NotImplementedError

    def keep(self) -> Callable[[], Any] | None:
        """A fetch of the value that stays valid after the run's end: the run hands it
        what holds the value (``end()`` no longer releases it), and the fetch releases it
        once it has read the value (caching it) or is collected unread. None (the default):
        the value must be read before the run ends."""
        return None


def resolve_deferred(value: Any) -> Any:
    """``value`` with every ``DeferredResult`` in it (and in its lists, tuples, sets and
    dicts) replaced by its value; a list, tuple or set of ``SCALARS`` is ``value`` itself."""
    if isinstance(value, DeferredResult):
        return value.resolve()
    if isinstance(value, (list, tuple, set, frozenset)):
        if SCALARS.issuperset(map(type, value)):  # (a reduce's thousand results: looked at in C)
            return value
        return type(value)(resolve_deferred(v) for v in value)
    if isinstance(value, dict):
        return {k: resolve_deferred(v) for k, v in value.items()}
    return value


#: The types of most results, which are certainly no ``DeferredResult`` nor hold one (nor
#: are an exception): a check of ``type(result)`` against them spares the ``isinstance``
#: calls, each an attribute lookup when it fails, of a pass over a million results.
SCALARS: frozenset[type] = frozenset((type(None), bool, int, float, str, bytes))


def holds_deferred(value: Any) -> bool:
    """Whether ``value`` is a ``DeferredResult`` or holds one (where ``resolve_deferred``
    looks)."""
    if isinstance(value, DeferredResult):
        return True
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(holds_deferred(v) for v in value)
    if isinstance(value, dict):
        return any(holds_deferred(v) for v in value.values())
    return False


class Timings(NamedTuple):
    """What an executor has seen of how long tasks take, for the scheduler's groups.

    Attributes:
        seconds: how long a run of each task took where this executor runs them (by task
            name, smoothed); a task not in it was never timed.
        budget: the most seconds the members of one group may be expected to take in
            all: a group then holds a worker no longer than one long task would.
    """

    seconds: Mapping[str, float]
    budget: float


class ExecutorRun(Protocol):
    """One flow run on an executor, as ``Executor.begin`` returns it. See the module docstring."""

    @property
    def runs_chains(self) -> bool:
        """Whether ``submit`` honours ``TaskRun.then`` (runs follow-ons where their head ran)."""
        ...

    def timings(self) -> Timings | None:
        """How long tasks were seen to take here, or None: then only chains are fused
        (members that cost no parallelism), as where a round trip costs nothing to save."""
        ...

    def submit(self, runs: Sequence[TaskRun]) -> None:
        """Start running these task runs (without waiting for them)."""
        ...

    def collect(self, timeout: float | None) -> list[TaskResult]:
        """Wait for finished runs: at least one, or none once ``timeout`` seconds passed."""
        ...

    def end(self) -> None:
        """Finish the flow run: stop runs still in flight, release per-run resources."""
        ...


class Executor(Protocol):
    """What runs tasks for flow runs. See the module docstring for the protocol."""

    def begin(self, run_context: Mapping[str, Any]) -> ExecutorRun:
        """Start a flow run; ``run_context`` is what ``taskloom.context`` holds in it.

        May raise (a context value that cannot reach the workers): the run then does not
        start."""
        ...
