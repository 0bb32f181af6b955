"""How ``LokyExecutor`` and ``DaskExecutor`` group ready runs into batches and read their
results back: the parent's side of the wire format in ``_wire``.

- **Batches.** One submission costs far more than a run inside a batch (loky ~100-400 µs,
  Dask milliseconds; a run in a batch a few µs). Each slot (a loky worker process, a Dask
  worker thread) has at most one batch in flight: a second one queued behind it would only
  wait, while the runs it holds could have joined a fuller batch once a slot is free. A
  batch is sized to share what waits among the free slots (``take_batch``): few large
  batches (at most ``MAX_BATCH`` runs) when many runs wait, single runs when few do (then
  a long task does not hold back a short one).
- **Runs that travel alone** (``alone``): a task with a timeout, one seen to take longer
  than the executor's ``LONG_TASK``, or one never timed yet (its first run measures it),
  so two long tasks never share a worker while another idles. Workers time each run;
  ``decode_rows`` keeps the times by task name, smoothed, in a table each executor kind
  keeps per process (so a new executor per flow run still knows).
- **Suspects.** When a worker dies, the runs it may have been running go back to the front
  of a queue without their follow-ons (``requeue``: the scheduler decides those again) and
  run again one at a time; each executor decides when a death is the culprit's own.
- **Runs that cannot be pickled** fail alone, saying what cannot be (``encode_batch``);
  the rest of their batch goes.
"""

from __future__ import annotations

import math
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import cloudpickle

from ..attempt import TaskResult, TaskRun
from ..states import Failed, State
from ..errors import RemoteTaskError
from ._wire import pickling_message, unpack_state

#: The most runs in one batch.
MAX_BATCH = 512

_Payload = TypeVar("_Payload")
_Deferred = TypeVar("_Deferred")


def alone(run: TaskRun, durations: Mapping[str, float], long_task: float) -> bool:
    """Whether a run travels in a batch of its own: a task with a timeout, one seen to
    take longer than ``long_task`` seconds, or one never timed yet (its first run measures it)."""
    seconds = durations.get(run.task.name)
    return run.task.timeout is not None or seconds is None or seconds > long_task


def take_batch(
    pending: deque[TaskRun], free: int, durations: Mapping[str, float], long_task: float
) -> list[TaskRun]:
    """The next batch from ``pending``, for one of ``free`` free slots."""
    # Share what waits among the free slots: few large batches when many runs wait,
    # single runs when few do (then a long task does not hold back a short one).
    size = min(MAX_BATCH, max(1, math.ceil(len(pending) / free)))
    batch: list[TaskRun] = []
    while pending and len(batch) < size:
        if alone(pending[0], durations, long_task):
            if batch:
                break
            return [pending.popleft()]
        batch.append(pending.popleft())
    return batch


def requeue(queue: deque[TaskRun], runs: Sequence[TaskRun]) -> None:
    """Put ``runs`` back at the front of ``queue``, in order, follow-ons dropped (the
    scheduler decides them again once their head has run)."""
    for run in reversed(runs):
        run.then = ()
        queue.appendleft(run)


def encode_batch(
    batch: list[TaskRun],
    encode: Callable[[list[TaskRun]], _Payload],
    failed: list[TaskResult],
    where: str,
) -> tuple[list[TaskRun], _Payload, list[tuple[int, str]]] | None:
    """The batch, ``encode(batch)`` and the (key, task name) of each run and follow-on in it.

    If the batch cannot be encoded, each run whose task or inputs cannot be pickled fails
    (into ``failed``, decided ``where``) and the others go; None if none is left."""
    try:
        payload = encode(batch)
    except Exception:
        keep: list[TaskRun] = []
        for run in batch:
            try:
                encode([run])
            except Exception as error:
                state = Failed(pickling_message(run, error), error)
                failed.append(decided_here(run.key, state, where))
            else:
                keep.append(run)
        if not keep:
            return None
        batch = keep
        payload = encode(batch)
    keys = [(run.key, run.task.name) for run in batch]
    keys.extend((f.key, f.task.name) for run in batch for f in run.then)
    return batch, payload, keys


def decode_rows(
    data: bytes,
    runs: Sequence[TaskRun],
    names: Mapping[int, str],
    durations: dict[str, float],
    where: str,
    deferred: type[_Deferred],
) -> tuple[list[TaskResult], list[tuple[int, _Deferred]]]:
    """The results of a batch (of ``runs``) from a worker's ``encode_rows``, each run's time
    noted in ``durations`` (by task name, from ``names``); and those whose result is a
    ``deferred`` (by index in the results). If the bytes do not unpickle, every run of the
    batch fails (decided ``where``)."""
    try:
        worker, rows = cloudpickle.loads(data)
    except Exception as error:
        message = f"the results could not be unpickled in the parent process: {error!r}"
        failed = RemoteTaskError(type(error).__qualname__, str(error), traceback.format_exc())
        results = [
            decided_here(run.key, Failed(f"Task {run.task.name!r}: {message}", failed), where)
            for run in runs
        ]
        return results, []
    results = []
    found: list[tuple[int, _Deferred]] = []
    for key, wire, started, finished in rows:
        state = unpack_state(wire)
        if isinstance(state._result, deferred):
            found.append((len(results), state._result))
        results.append(TaskResult(key, state, started, finished, worker))
        name = names.get(key)
        if name is not None:
            seconds = finished - started
            previous = durations.get(name)
            durations[name] = seconds if previous is None else 0.7 * previous + 0.3 * seconds
    return results, found


def decided_here(key: int, state: State[Any], where: str) -> TaskResult:
    """A result decided in the parent (the run never reached a worker, or its worker died),
    with ``where`` (the executor's name) as its worker."""
    now = time.time()
    return TaskResult(key, state, now, now, where)
