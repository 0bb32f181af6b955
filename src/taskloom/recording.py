"""Recording a run's tasks in the journal as they settle, so a killed run loses little.

The scheduler (``taskloom.runner``) tells a ``TaskLog`` each task that settled (finished,
or paused) with ``note``: an append to a queue, nothing more. One thread per process (the
writer, shared by every run) writes each run's queue every ``FLUSH_SECONDS`` from the
run's start (``Journal.log_tasks``: one transaction per ``FLUSH_TASKS`` tasks). A thread,
because the scheduler's thread may be busy for a long time where no check could run
(``LocalExecutor`` runs a task in it); one for all runs, a daemon that waits
``IDLE_SECONDS`` for the next run before it ends, so back-to-back runs pay no thread
start. So a run killed at any instant (SIGKILL, a power cut) loses the tasks in flight and
the outcomes of the last ``FLUSH_SECONDS``; more when tasks settle faster than the writer,
which shares the interpreter with the scheduler, writes them (no-ops on ``LocalExecutor``:
the queue grows, and a kill loses it). The run's end (``Journal.finish``)
keeps the batches written (``close`` tells it which, and the state each task's outcome
was taken from) and writes only the tasks whose outcome is not in them, or is another
since. A run shorter than ``FLUSH_SECONDS`` writes no batch: the writer's Python work
would compete with the scheduler for the interpreter, for rows its end writes at once.

With each outcome goes what a resume needs of the task (``_write``):

- its inputs, if its state ``keeps_inputs`` (a failed or paused task runs again from them);
- its result, if it succeeded and a task downstream of it is not written yet (in this
  batch or before), or is written but a resume would run it again without inputs of its
  own (it is downstream of a task in a state that runs again, or of one not written): a
  resume runs that task from it, as it does from what the run's end keeps
  (``journal.kept_values``). A mapped task's child's result is
  kept until its mapped task is written, and a mapped task's result (its children's)
  while a child did not finish well.

A resume (a run with seeded states) writes what it was given as its task log's first
batch, in the transaction that records the run's start (``TaskLog.opening``,
``Journal.begin``), so a resume of the resume, killed at any instant, starts from the
same place: the tasks it does not run (seeded finished, or left paused), with what a
resume needs of them; a success whose result its run did not store (the resume seeds it
None: ``runner.Resumed.unstored``) without a result, as that run recorded it; a task let
through (``Resume``), which keeps its permission; and a start task with the inputs it runs
from (a paused task approved, a failed one), which runs again from them, not from its
upstream tasks' results (those may not be stored).

A mapped task's children are noted when it maps (``mapping_run``), each as it stands
(``Pending``, or the state a resume gave it), so a killed run still knows how many it had:
a resume runs only those that did not finish.

A large result left where it was made (a ``DeferredResult``: loky's shared memory, a Dask
worker) is not fetched while the run goes: the parent holds such a value only at the end.
A task whose result a resume would need and that left it there is not written until the
end: a killed run runs it again (and what follows it) on resume, so the tasks it was made
from keep their results for it, those written in the same batch too (a group's results
come back together). Inputs a failed or paused
task keeps are fetched (rare, and a resume cannot do without them). The scheduler stops
the log (``close``) before it ends the executor's run, which releases deferred values.

The thread reads only what the scheduler will not change again: the trace of a task that
settled (a finished task's state, a paused task's inputs), and which tasks are written.
"""

from __future__ import annotations

import logging
import operator
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from itertools import repeat
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

from .context import enter, leave
from .executors.base import SCALARS, holds_deferred, resolve_deferred
from .journal import Journal, LoggedTasks, Values
from .mapped import unfinished_children
from .states import Finished, Mapped, Paused, Pending, Resume, Skipped, State, Success
from .trace import Stored, TaskTrace, numbered_outcomes

if TYPE_CHECKING:
    from .runner import _Scheduler

__all__ = ["FLUSH_SECONDS", "FLUSH_TASKS", "IDLE_SECONDS", "TaskLog"]

log = logging.getLogger("taskloom.journal")

#: The longest a settled task waits before its outcome is written (seconds).
FLUSH_SECONDS = 0.25
#: The most tasks one transaction of a run's batch writes (a batch of more writes several):
#: bounds what one transaction holds, and the values the writer pickles at once.
FLUSH_TASKS = 10_000
#: How long the writer thread waits for another run once none is left before it ends.
IDLE_SECONDS = 2.0

#: What ``TaskLog._guarded``'s work returns.
T = TypeVar("T")


class _Writer:
    """The one thread of this process that writes every run's task log (a thread per
    run would cost its start, and on a busy machine the wait for its first turn, on every
    run, however short)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._logs: set[TaskLog] = set()
        self._wake = threading.Event()
        self._pid = -1  # the process whose thread it is (threads do not cross fork)
        #: When the batch it waits for is due (None: it waits for a run). A run added with
        #: a batch due sooner must wake it (``FLUSH_SECONDS`` may have changed between runs).
        self._until: float | None = None

    def add(self, task_log: TaskLog) -> None:
        with self._lock:
            self._logs.add(task_log)
            if self._pid != os.getpid():  # no thread in this process now
                self._pid = os.getpid()
                self._wake = threading.Event()
                self._until = task_log.due
                threading.Thread(target=self._run, name="taskloom-journal", daemon=True).start()
            elif self._until is None or task_log.due < self._until:
                # Otherwise it wakes for another run's batch before this one's is due.
                self._until = task_log.due
                self._wake.set()

    def remove(self, task_log: TaskLog) -> None:
        with self._lock:
            self._logs.discard(task_log)

    def forked(self) -> None:
        """In a child of ``fork()``: no thread, no run of the parent's to write (a task
        that forks must not write its parent's run), and a lock no thread holds."""
        self._lock = threading.Lock()
        self._logs = set()
        self._pid = -1
        self._until = None

    def _run(self) -> None:
        # A daemon that stays ``IDLE_SECONDS`` after the last run, so back-to-back runs
        # share it, then ends (a process that forks later has no thread to copy). Idle, it
        # holds no run; the stores close at exit all the same (``_sqlite``).
        while True:
            with self._lock:
                due = self._until = min((task_log.due for task_log in self._logs), default=None)
            timeout = IDLE_SECONDS if due is None else max(0.0, due - time.monotonic())
            # (A wait longer than the platform's lock allows raises: FLUSH_SECONDS may be
            # infinite, a task log held off.)
            woken = self._wake.wait(min(timeout, threading.TIMEOUT_MAX))
            self._wake.clear()
            if due is None and not woken:
                with self._lock:
                    if not self._logs:
                        self._pid = -1
                        return
            self._tick()

    def _tick(self) -> None:
        # Its own frame: between ticks this thread holds no run.
        with self._lock:
            logs = list(self._logs)
        now = time.monotonic()
        for task_log in logs:
            if task_log.due <= now:
                task_log.tick()


_writer = _Writer()
os.register_at_fork(after_in_child=_writer.forked)


class _Batch(NamedTuple):
    """A batch of a run's task log, made (``TaskLog._batch``) and not yet written: its
    number, its tasks and the states their rows were taken from, the rows, and what a
    resume needs of them (by task)."""

    seq: int
    keys: Sequence[int]
    taken: Sequence[State[Any]]
    rows: list[tuple[Any, ...]]
    values: dict[int, Values]


#: ``TaskLog._kept``'s ``earlier`` on a batch's first call: nothing.
_NONE_KEPT: Mapping[int, Values] = MappingProxyType({})


class TaskLog:
    """The outcomes of one run's settled tasks on their way to the journal (see the
    module docstring)."""

    __slots__ = ("_again", "_batches", "_closed", "_journal", "_lock", "_opening", "_rerun",
                 "_run_id", "_scheduler", "_seq", "_states", "_waiting", "_written", "due",
                 "note")

    def __init__(self, journal: Journal, run_id: str, scheduler: _Scheduler) -> None:
        self._journal = journal
        self._run_id = run_id
        self._scheduler = scheduler
        self._waiting: deque[int] = deque()  # appended by the scheduler, taken by the writer
        # Which tasks and children are written, a byte each (a set of a million task
        # numbers would cost 75 bytes a task); grown as a mapped task adds children.
        self._written = bytearray(len(scheduler.nodes))
        #: Which written tasks a resume of this run, killed now, would run again (``_kept``),
        #: a byte each, like ``_written``; all 0 while ``_rerun`` is False.
        self._again = bytearray(len(scheduler.nodes))
        #: Whether a resume would run any task again but those not written yet: a task
        #: settled in a state that runs again, one left where its result was made, or a
        #: task seeded to run (not written until it settles: a resume runs it, and what
        #: follows it, again).
        self._rerun = bool(scheduler.args.seeded)
        #: By task or child: the state its last written outcome was taken from (None: not
        #: written). The run's end rewrites only the tasks whose state is another since.
        self._states: list[State[Any] | None] = [None] * len(scheduler.nodes)
        self._seq = 0
        self._batches: list[int] = []  # the numbers of the batches written
        self._lock = threading.Lock()  # held while a batch is written
        self._closed = False
        #: When its next batch is due (``time.monotonic``): ``FLUSH_SECONDS`` after the run
        #: started, or after its last batch; so a run shorter than that writes none.
        self.due = time.monotonic() + FLUSH_SECONDS

        #: Task or child ``i`` settled: write it with the next batch (the queue's own
        #: append, the cheapest call there is: the scheduler makes one per task).
        self.note: Callable[[int], None] = self._waiting.append
        self._opening: _Batch | None = None  # see ``opening``
        seeded = scheduler.args.seeded
        if seeded:
            # Written with the run's start, in the transaction that records it (a batch
            # of their own, after it, left a moment in which a kill lost them), in an
            # order in which each comes after what it waits for (as tasks settle), so a
            # resume of this run, killed, has them (``_written_at_start``).
            starts = scheduler.args.starts
            settled = [
                i for i in scheduler.plan.order()
                if i in seeded and _written_at_start(seeded[i], i in starts)
            ]
            if settled:
                self._opening = self._guarded(partial(self._seeds, settled))

    @property
    def opening(self) -> tuple[list[tuple[Any, ...]], dict[int, Values]] | None:
        """The first batch (rows and values), for ``Journal.begin`` to write with the run's
        start; None when there is none (see ``opened``)."""
        batch = self._opening
        return None if batch is None else (batch.rows, batch.values)

    def _seeds(self, keys: Sequence[int]) -> _Batch:
        """The opening batch: these seeded tasks' outcomes (``_batch``), a success seeded
        without the result its run did not store (``runner.Resumed.unstored``) written
        without one (not as a result of None), and a start task seeded pending with the
        inputs it runs from written with them."""
        batch = self._batch(keys)
        for i in self._scheduler.unstored():
            batch.values.pop(i, None)
        seeded = self._scheduler.args.seeded
        for i in keys:
            state = seeded[i]
            if isinstance(state, Pending) and not type(state).keeps_inputs and state.cached_inputs:
                batch.values[i] = (dict(state.cached_inputs), None, False)
        return batch

    def opened(self) -> None:
        """The run's start is recorded, with ``opening`` if there was one: start writing."""
        if self._opening is not None:
            self._done(self._opening)
            self._opening = None
        _writer.add(self)

    def close(self) -> LoggedTasks | None:
        """Stop writing: wait for the transaction being written, drop what is queued. What
        was written, for the run's end to keep (``Journal.finish`` writes the rest), or
        None when no batch was."""
        # Set before the lock is taken: a writer behind the scheduler (it shares the
        # interpreter with it) stops after its transaction in progress, rather than
        # writing its whole queue while the run's end waits. The end writes those tasks'
        # rows for less: a finished run needs none of the values a resume would.
        self._closed = True
        with self._lock:
            pass
        _writer.remove(self)
        return LoggedTasks(self._batches, self._states) if self._batches else None

    def tick(self) -> None:
        """The writer's turn: write what is queued, unless the run ended."""
        with self._lock:
            if self._closed:
                return
            self.due = time.monotonic() + FLUSH_SECONDS
            self._guarded(self.flush)

    def _guarded(self, work: Callable[[], T]) -> T | None:
        """``work()`` in the run's context, so the secrets it knows are masked and kept out
        (``taskloom._secrets``) as in what the run's end records; None, and a warning, if it
        raises: never the run's failure, as its end records it all."""
        token = enter(self._scheduler.args.context)
        try:
            return work()
        except Exception as error:
            log.warning("journal: run %s: settled tasks not recorded yet: %r", self._run_id, error)
            return None
        finally:
            leave(token)

    def flush(self) -> None:
        """Write the queued outcomes, each task's latest, ``FLUSH_TASKS`` at most per
        transaction, until the queue is empty or the run closes (``close``)."""
        waiting = self._waiting
        take = waiting.popleft
        while waiting and not self._closed:
            # Each task once (its latest outcome), in the order they settled; taken in C
            # (``operator.call`` of ``popleft``), as the writer holds the interpreter.
            count = min(len(waiting), FLUSH_TASKS)
            self._write(list(dict.fromkeys(map(operator.call, repeat(take, count)))))

    def _write(self, keys: Sequence[int]) -> None:
        """Write these tasks' outcomes in one transaction (``_batch``)."""
        batch = self._batch(keys)
        if self._journal.log_tasks(self._run_id, batch.seq, batch.rows, batch.values):
            self._done(batch)

    def _batch(self, keys: Sequence[int]) -> _Batch:
        """The next batch: these tasks' outcomes, each with what a resume needs of it (see
        the module docstring). Each state is read once, for the row and what is kept
        beside it (``_kept``); the traces, states and their kinds are read in bulk: the
        writer holds the interpreter, which the scheduler wants, while it runs."""
        written = self._written
        top = max(keys, default=-1)
        if top >= len(written):  # children mapped since: room for twice as many
            room = max(top + 1, 2 * len(written)) - len(written)
            written.extend(bytes(room))
            self._again.extend(bytes(room))
            self._states.extend([None] * room)
        for i in keys:
            written[i] = 1
        traces = self._scheduler.traces
        picked = list(map(traces.__getitem__, keys))
        taken = [trace.state for trace in picked]
        values, left = self._kept(keys, picked, taken)
        while left:
            # A task left where its result was made is not written (a resume runs it
            # again): the tasks of this batch it was made from keep their results for it,
            # and may be left in turn.
            for i in left:
                written[i] = 0
            self._rerun = True
            values, more = self._kept(keys, picked, taken, values)
            if len(more) == len(left):  # (more holds left: unwritten tasks only add)
                break
            left = more
        if left:
            skip = set(left)
            taken = [state for i, state in zip(keys, taken) if i not in skip]
            keys = [i for i in keys if i not in skip]
        self._seq += 1
        return _Batch(self._seq, keys, taken, numbered_outcomes(keys, traces, taken), values)

    def _done(self, batch: _Batch) -> None:
        """``batch`` is written: the run's end keeps it, and rewrites only what changed."""
        self._batches.append(batch.seq)
        states = self._states
        for i, state in zip(batch.keys, batch.taken):
            states[i] = state

    def _kept(
        self,
        keys: Sequence[int],
        picked: Sequence[TaskTrace],
        taken: Sequence[State[Any]],
        earlier: Mapping[int, Values] = _NONE_KEPT,
    ) -> tuple[dict[int, Values], list[int]]:
        """What a resume needs of each of these tasks (by number), and the tasks whose
        result it needs but that left it where it was made (not written until the end).
        ``earlier``: what the same batch's last call gave, whose inputs are taken from it
        rather than resolved again (an input left in a worker would be read again).

        A resume runs again every task in a state that ``runs_again`` (one not written:
        ``Pending``), a mapped task with such a child, and every task downstream of those
        (``resume``, as ``journal.kept_values`` decides at a run's end). So a task's result
        is kept while a task downstream of it is not written, or is written but would run
        again without inputs of its own. One loop with no call for a task that needs
        nothing: the writer holds the interpreter."""
        written, again, traces = self._written, self._again, self._scheduler.traces
        nodes = self._scheduler.nodes
        n = len(nodes)
        if not self._rerun:
            # (Most runs: nothing to run again so far. Found here, the batch's flags are
            # made; none before it needed one: a task settles after what it waits for.)
            classes = {type(state) for state in taken}
            self._rerun = any(cls.runs_again for cls in classes) or (
                any(issubclass(cls, Mapped) for cls in classes)
                and any(unfinished_children(state) for state in taken)
            )
        if self._rerun:
            # Whether a resume would run each again, in the order they settled (each after
            # the tasks it waits for, written before it or in this batch: not written, it
            # was left where its result was made, or seeded).
            for i, state in zip(keys, taken):
                runs = type(state).runs_again or (
                    isinstance(state, Mapped) and unfinished_children(state)
                )
                if not runs and i < n:  # (a child runs again with its mapped task)
                    for u in nodes[i].upstream:  # (a loop: ``any`` of a generator is a frame)
                        if again[u] or not written[u]:
                            runs = True
                            break
                again[i] = runs
        values: dict[int, Values] = {}
        left: list[int] = []
        for i, trace, state, kind in zip(keys, picked, taken, map(_kinds.get, map(type, taken))):
            if kind is None:  # a state class this process writes for the first time
                kind = _kind(type(state))
            if kind == _NOTHING:
                continue
            if kind == _KEEPS_INPUTS:  # it runs again from them
                kept = earlier.get(i)
                if kept is None:
                    inputs = trace.inputs or state.cached_inputs or {}
                    kept = (resolve_deferred(dict(inputs)), None, False)
                values[i] = kept
                continue
            # Finished well: a task not written yet, or that would run again, may need it.
            if i < n:
                after = nodes[i].downstream
                if kind == _MAPPED and unfinished_children(state):
                    pass  # a resume maps it again, keeping its finished children's results
                # (One task downstream, most often: ``_needed_by``'s first two answers,
                # without its frame.)
                elif len(after) == 1 and not written[after[0]]:
                    pass
                elif len(after) == 1 and not again[after[0]]:
                    continue
                elif not _needed_by(after, written, again, traces):
                    continue
            elif trace.parent is not None and written[trace.parent] and not again[trace.parent]:
                continue  # a child: its mapped task needs it until it is written for good
            if trace.location is not None:  # persisted: where, not the value
                task = i if trace.parent is None else trace.parent
                values[i] = (None, Stored(trace.location, task), True)
            else:
                result = state.result
                if type(result) not in SCALARS and holds_deferred(result):
                    left.append(i)
                else:
                    values[i] = (None, result, True)
        return values, left


def _written_at_start(state: State[Any], start: bool) -> bool:
    """Whether a task seeded in ``state`` is written at the run's start (``TaskLog._seeds``):
    finished (the run does not change it), left paused (decided paused again), let
    through (``Resume``: a resume of this run keeps the permission), or a start task
    with the inputs it runs from (a resume of this run, killed while it ran, runs it
    again from them). Not a mapped task (its children are noted when it maps), nor a
    start task seeded finished."""
    if start:
        return isinstance(state, Resume) or (isinstance(state, Pending) and bool(state.cached_inputs))
    return isinstance(state, (Paused, Resume)) or (
        isinstance(state, Finished) and not isinstance(state, Mapped)
    )


def _needed_by(
    after: Sequence[int], written: bytearray, again: bytearray, traces: Sequence[TaskTrace]
) -> bool:
    """Whether one of the tasks ``after`` a task needs its result on resume: not written
    yet, or written but to run again without inputs of its own (see ``TaskLog._kept``)."""
    for d in after:
        if not written[d] or (again[d] and not type(traces[d].state).keeps_inputs):
            return True
    return False


#: What the writer keeps of a task, by its state's class (``_kind``).
_KEEPS_INPUTS, _FINISHED_WELL, _MAPPED, _NOTHING = range(4)
_kinds: dict[type[State[Any]], int] = {}


def _kind(cls: type[State[Any]]) -> int:
    """What a resume needs of a task whose state is a ``cls``: its inputs (a state that
    ``keeps_inputs``), its result (finished well: a success, not a skip; a mapped task's
    also while some child runs again), or nothing."""
    if cls.keeps_inputs:
        kind = _KEEPS_INPUTS
    elif not issubclass(cls, Success) or issubclass(cls, Skipped):
        kind = _NOTHING
    else:
        kind = _MAPPED if issubclass(cls, Mapped) else _FINISHED_WELL
    _kinds[cls] = kind
    return kind
