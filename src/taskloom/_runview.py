"""What the flow pictures and the run report share: matching a run record to its flow,
the state of each task of a run, colours, and the critical path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .plan import plan
from .progress import STATE_COLOURS, category, category_of
from .states import Mapped, State

if TYPE_CHECKING:
    from .flow import Flow
    from .journal import RunRecord, TaskRecord


def tint(colour: str, amount: float = 0.78) -> str:
    """``colour`` (``#rrggbb``) mixed with white: ``amount`` 1 is white."""
    rgb = [int(colour[i : i + 2], 16) for i in (1, 3, 5)]
    mixed = [round(c + (255 - c) * amount) for c in rgb]
    return "#" + "".join(f"{c:02x}" for c in mixed)


def colour(bucket: str) -> str:
    return STATE_COLOURS.get(bucket, STATE_COLOURS["pending"])


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    """How one task of a flow ended in a run: its state's class name and bucket."""

    state: str
    bucket: str
    attempts: int | None = None
    message: str | None = None


def mismatch(record: RunRecord, flow: Flow) -> str | None:
    """Why ``record`` is not a run of ``flow`` as it is now, or None when it is."""
    tasks = list(flow.tasks)
    if len(tasks) != len(record.tasks):
        return (
            f"the flow {flow.name!r} has {len(tasks)} tasks, the run {record.run_id} "
            f"recorded {len(record.tasks)}"
        )
    for t, shown, r in zip(tasks, plan(flow).names, record.tasks):
        if r.name not in (shown, t.name):  # runs recorded before copies were numbered: plain
            return (
                f"task {r.index} is {shown!r} in the flow {flow.name!r} but {r.name!r} in "
                f"the run {record.run_id}"
            )
    return None


def outcomes(flow: Flow, run: State[Any] | RunRecord) -> list[TaskOutcome | None]:
    """The outcome of each task of ``flow`` (in ``flow.tasks`` order) in ``run``: a flow
    state (``flow.run``'s) or a journal record; None for a task the run does not know.

    Raises:
        ValueError: ``run`` is a record of another flow (or of an older version of it).
    """
    from .journal import RunRecord

    if isinstance(run, RunRecord):
        why = mismatch(run, flow)
        if why is not None:
            raise ValueError(f"cannot show this run on this flow: {why}")
        return [
            TaskOutcome(r.state, category_of(r.state), r.attempts, r.message) for r in run.tasks
        ]
    if not isinstance(run, State):
        raise TypeError(f"expected a flow state or a RunRecord, not {type(run).__name__}")
    states: Mapping[Any, State[Any]] = run.result if isinstance(run.result, Mapping) else {}
    found: list[TaskOutcome | None] = []
    for t in flow.tasks:
        state = states.get(t)
        if state is None:
            found.append(None)
        elif isinstance(state, Mapped):
            found.append(mapped_outcome([type(s).__name__ for s in state.map_states]))
        else:
            message = None if state.message is None else str(state.message)
            found.append(TaskOutcome(type(state).__name__, category(state), None, message))
    return found


#: Which children's bucket colours a mapped task, most telling first.
_MAPPED_BUCKETS = ("failed", "paused", "retrying", "running", "pending", "skipped", "cached")


def mapped_outcome(children: Sequence[str]) -> TaskOutcome:
    """The outcome of a mapped task whose children ended in the states named ``children``:
    ``Mapped: 3 Success, 1 Failed``, coloured by the most telling child (a failed one, else
    a paused one, ..., else succeeded)."""
    counts: dict[str, int] = {}
    for name in children:
        counts[name] = counts.get(name, 0) + 1
    buckets = {category_of(name) for name in counts}
    bucket = next((b for b in _MAPPED_BUCKETS if b in buckets), "succeeded")
    summary = ", ".join(f"{n} {name}" for name, n in counts.items()) or "no children"
    return TaskOutcome(f"Mapped: {summary}", bucket, None, f"{len(children)} children: {summary}")


def upstream_indices(flow: Flow) -> list[list[int]]:
    """For each task (by index in ``flow.tasks``), the indices of its upstream tasks."""
    return plan(flow).upstream_lists()


def run_time(task: TaskRecord) -> float:
    """Seconds the task's last attempt ran (0 when it did not run)."""
    if task.started is None or task.finished is None:
        return 0.0
    return max(0.0, task.finished - task.started)


def critical_path(times: Sequence[float], flow: Flow) -> tuple[list[int], float]:
    """The chain of dependent tasks with the most run time, and that run time.

    ``times`` are the run times of a run's tasks (task ``i`` of the run is task ``i`` of
    the flow; a mapped task's is its longest child's, as its children run side by side).
    Ties go to the chain found first. An empty run has an empty path.
    """
    compiled = plan(flow)
    n = len(times)
    best = [0.0] * n
    via: list[int | None] = [None] * n
    for i in compiled.order():
        before = max(compiled.nodes[i].upstream, key=lambda u: best[u], default=None)
        best[i] = times[i] + (best[before] if before is not None else 0.0)
        via[i] = before
    if not n:
        return [], 0.0
    end: int | None = max(range(n), key=lambda i: best[i])
    length = best[end] if end is not None else 0.0
    path: list[int] = []
    while end is not None:
        path.append(end)
        end = via[end]
    path.reverse()
    return path, length
