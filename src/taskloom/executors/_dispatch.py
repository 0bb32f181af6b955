"""The parent's side of ``LokyExecutor`` and ``DaskExecutor``: one dispatcher for every pool.

A ``Dispatcher`` is one flow run's ``ExecutorRun`` on a pool of workers. It owns every
decision that does not depend on what the workers are (batching, worker deaths and
culprits, hard timeouts, logs, results); a ``Backend`` owns the workers and says only how
to reach them, the way ``dask.local.get_async`` serves threads, processes and a cluster
through an injected ``submit``. The worker's side is ``_worker.run_batch``; what travels
between them is ``_wire``. Data flow::

    submit(runs) -> pending --take_batch--> encode --Backend.send--> worker: run_batch
                    suspects --one, alone-/                            |
                                                                       v
    collect() <- ready <- decode_rows, take_over <- Backend.receive <- done-queue
                                                  (or a loss: suspects, a culprit)

Bookkeeping of one run (each name is an attribute of ``Dispatcher``):

- ``pending``: runs submitted and not sent yet, in order.
- ``suspects``: runs that were in flight when a worker died; they go before ``pending``.
- ``in_flight``: each batch sent and not handed back, by the back end's future for it.
- ``done``: the queue the futures' callbacks put finished futures on (``collect`` waits on
  it), and wake-ups (``None``) from other runs on the same workers.
- ``ready``: results decided in the parent (a run that cannot be pickled, a culprit, a
  hard timeout), handed back by the next ``collect``.
- ``names``: each key's task name, for durations and messages.
- ``templates``: the run's task templates, pickled once (``_wire.Templates``).

**Batches.** One submission costs far more than a run inside a batch (loky ~100-400 µs,
Dask milliseconds; a run in a batch a few µs). Each slot (a loky worker process, a Dask
worker thread) has one batch in flight: a second one queued behind it would wait, while
the runs it holds could have joined a fuller batch once a slot is free. But when at least
``AHEAD_RUNS`` runs a slot wait (a wide flow's start), they would fill every batch anyway:
then, on a back end that ``queues_ahead`` (loky), each slot gets a second batch queued
behind the one it runs, which its worker takes the moment it sends its reply, while the
parent decodes that reply (W1 on two workers: four batches of 250, not two of 500). A
batch is sized to share what waits among the room there is (``take_batch``): few large
batches (at most ``MAX_BATCH`` runs) when many runs wait, single runs when few do, so a
long task does not hold back a short one. A run travels alone (``alone``) if its task has
a timeout, was seen to take longer than the back end's ``long_task``, or was never timed
(its first run measures it): two long tasks never share a worker while another idles.
Workers time each run; ``decode_rows`` keeps the times by task name, smoothed, in a table
per back end kind and per process (``durations``), so a new executor still knows. A run
carries its group of follow-ons (``TaskRun.then``): a group costs one round trip. The
scheduler builds groups from the same table (``timings``: the durations and
``long_task`` as a group's budget), so a group of tasks seen to be short holds a worker
no longer than one long task would, and ``alone`` need only look at the run. A run that
cannot be pickled fails alone, saying what cannot be (``encode_batch``); the rest of its
batch goes.

**Worker deaths, suspects and the culprit.** When the back end reports that a batch's
worker died (``Backend.loss``; loky: the whole pool breaks and every batch in flight
fails; Dask: the batches on the dead worker fail), one rule decides:

1. Every run of a batch its worker's death took down is a *suspect*: it goes back to the
   front of the queue, its group dropped (the scheduler decides its members again).
2. Suspects run one at a time, each with nothing else in flight on the same workers: none
   of this run, and, through ``Workers``, none of another run sharing them.
3. A run that kills its worker while it was alone on them is the *culprit*: it ends
   ``Failed`` with a message naming it and the cause the back end reports. So is a batch
   of one run that happened to be alone the first time.
4. The others finish normally; their bodies ran more than once: make tasks idempotent,
   or mark those that must not run twice ``Task(rerun_after_crash=False)``: a run of one
   lost with a dead worker is not a suspect, it ends ``Crashed`` ("lost with a crashed
   worker", ``lost_with_worker``), and such a task never travels as a follow-on (whose
   fate a death hides). The same holds for the runs a hard timeout's kill takes down.

A back end that knows a batch's own worker did not die (``Loss.bystander``; loky: another
worker's connection ended, or the dead one was idle) keeps its runs from being the culprit
of that death, even alone (``MAX_BYSTANDING`` times at most each): they run again one at a
time, with the suspects, so that a suspect still runs alone.

A death is judged "alone" only if nothing else was in flight on the workers from before
the batch was sent until it came back (``Workers.release``); a doubt costs one more
replay, not a wrong culprit. (What ``Workers`` cannot see: other processes' clients of a
shared Dask cluster, and a Dask body still running after its run cancelled it.)

**Several runs on the same workers.** A loky pool, or a Dask cluster reached through one
address, serves every run of this process that uses it, from any thread. ``Workers`` is
what those runs share: how many batches are in flight, and which run's suspect needs the
workers alone. While a suspect waits for them or runs, the other runs send nothing new
(they are woken through their ``done`` queue when it returns): the price of naming the
right culprit is that every run on those workers pauses while the suspects of a death
run. Getting workers back after a death is the back end's business (loky replaces a
broken pool at the next send; Dask's nanny restarts the worker).

**Hard timeouts.** A back end whose tasks can get stuck out of reach of the worker's own
timeout (loky: a task in C code ignores ``SIGALRM``) gives a ``hard_timeout_grace``: a
run of a task with a timeout that is still out ``2 × timeout + grace`` seconds after a
worker took it (``Backend.started``: a batch may wait for a worker behind other runs'
batches on a shared pool) ends ``TimedOut``, and the back end stops it by killing its workers
(``Backend.kill``; Dask: restarting the one worker through its nanny). The other batches
of this run lost with them (loky: the whole pool) go back to ``pending`` (they did nothing
wrong); other runs see a worker death.

**Large results** stay where they were made: the worker's ``prepare`` hook leaves a
marker in the state, and ``Backend.take_over`` turns it into a ``DeferredResult`` the
scheduler passes along as an input (loky: a ``SharedResult`` in ``/dev/shm``; Dask: a
``DaskResult`` future). They live until ``end()``.

**Lifecycle of a run.** ``Executor.begin`` makes a ``Dispatcher`` for a new ``Backend``:
the context is pickled first (a context that cannot be fails the run before anything
starts), then ``Backend.start`` readies the workers and says how many slots they have.
(The scheduler turns SIGTERM into ``SystemExit`` for the run, so an interrupted run still
reaches ``end()``.) ``submit`` queues and sends; ``collect`` waits on ``done``, decodes,
sends what the freed slots can take, and returns at least one result or none at the
timeout. ``end()`` hands the back end whatever is still in flight (``Backend.stop``: an
interrupted or abandoned run) and releases what the run deferred; the runs' results are
dropped.
"""

from __future__ import annotations

import logging
import math
import queue
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from operator import itemgetter
from typing import Any, Generic, NamedTuple, Protocol, TypeVar

import cloudpickle
from typing_extensions import Self

from .. import _interruptible as interruptible
from ..attempt import TIMEOUT_MESSAGE, TaskResult, TaskRun, result_row
from ..errors import RemoteTaskError
from ..logging import STDOUT_LOGGER, capture_level
from ..states import Crashed, Failed, State, TimedOut, restored_all
from ._wire import _STATE_CLASSES, Templates, check_context, pickling_message
from .base import Timings

__all__ = [
    "AHEAD_RUNS",
    "MAX_BATCH",
    "MAX_BYSTANDING",
    "Backend",
    "Dispatcher",
    "Loss",
    "Reply",
    "Sent",
    "Workers",
    "alone",
    "decided_here",
    "decode_rows",
    "encode_batch",
    "lost_with_worker",
    "requeue",
    "take_batch",
]

log = logging.getLogger("taskloom.executors")

#: The most runs in one batch.
MAX_BATCH = 512
#: With at least this many runs waiting a slot, each slot gets a batch queued behind the
#: one it runs (see "Batches" in the module docstring).
AHEAD_RUNS = 64
#: How many times a run may be lost as a bystander of another worker's death and escape
#: the culprit rule (``Loss.bystander``), before the rule judges it.
MAX_BYSTANDING = 2

#: What a worker sends back for a batch: its rows (``_wire.encode_rows``) and its log
#: records (``_wire.encode_records``).
Reply = tuple[bytes, bytes]
#: A wake-up: tells a run the workers are free again.
Wake = Callable[[], None]

#: How long each task took on workers, by back end name, then task name (smoothed).
_durations: dict[str, dict[str, float]] = {}


class Sent(Protocol):
    """What a back end returns for a batch sent: a future that calls back once done."""

    def add_done_callback(self, fn: Callable[[Self], object], /) -> None:
        """Call ``fn(self)`` once the batch is done (at once if it already is)."""
        ...


_Payload = TypeVar("_Payload")
_Sent = TypeVar("_Sent", bound=Sent)


class Loss(NamedTuple):
    """What a batch that did not come back means for its runs (``Backend.loss``).

    Attributes:
        died: its worker died (suspects and culprits); else the back end refused it and
            each of its runs fails.
        why: completes "Task 'name' ..." in the ``Failed`` message of a run it fails.
        error: the result of that ``Failed`` state.
        cause: for a death, the cause in a few words, for the log ("SIGKILL(-9)").
        bystander: for a death, the back end knows the batch's own worker did not die
            (another did, and took it down): its runs run again, and none is the culprit.
    """

    died: bool
    why: str
    error: BaseException
    cause: str = ""
    bystander: bool = False


class Backend(Protocol[_Payload, _Sent]):
    """One flow run's side of a pool of workers: what ``Dispatcher`` needs from it.

    A new one per run (``Executor.begin``); what outlives the run (a loky pool, a Dask
    client) is the back end's to share. ``_Payload`` is what ``encode`` makes of a batch
    for ``send``; ``_Sent`` is the future ``send`` returns."""

    @property
    def name(self) -> str:
        """The back end's kind ("loky", "dask"): the worker of results decided in the parent."""
        ...

    @property
    def long_task(self) -> float:
        """Seconds: a task seen to run longer always travels in a batch of its own."""
        ...

    @property
    def queues_ahead(self) -> bool:
        """Whether a slot may also hold a batch queued behind the one it runs (see
        "Batches"): the back end tells a queued batch from a started one (``started``), and
        its ``interrupt`` cancels the queued ones, which would run after it."""
        ...

    @property
    def hard_timeout_grace(self) -> float | None:
        """Seconds past twice its timeout after which a stuck run's workers are killed
        (``kill``); None: the back end has no hard timeouts."""
        ...

    def start(self, header: bytes, log_level: int) -> tuple[int, Workers]:
        """Ready the workers for a run whose pickled context is ``header`` and whose
        records at ``log_level`` or above go to the parent: how many batches may be in
        flight at once, and what the runs on the same workers share."""
        ...

    def encode(self, templates: Templates, batch: Sequence[TaskRun]) -> _Payload:
        """The batch ready to send (``templates.encode`` and what goes beside it); raises
        if it cannot be pickled."""
        ...

    def send(self, payload: _Payload, keys: Sequence[tuple[int, str]]) -> _Sent:
        """Start the batch on a worker (``_worker.run_batch``); ``keys`` are the (key,
        task name) of each run and follow-on in it."""
        ...

    def receive(self, sent: Sequence[_Sent]) -> list[Reply | BaseException]:
        """What each of these finished batches returned, or the error it ended with."""
        ...

    def loss(self, error: BaseException) -> Loss:
        """What ``error`` (a batch's, from ``receive``) means: a worker death or not."""
        ...

    def take_over(
        self, results: list[TaskResult], runs: Sequence[TaskRun], names: Mapping[int, str]
    ) -> None:
        """Turn the large-result markers in ``results`` (of the batch of ``runs``) into
        ``DeferredResult`` states, in place, and keep them for release at ``stop``."""
        ...

    def started(self, sent: _Sent) -> float | None:
        """When (``time.monotonic``) a worker took the batch, which a hard deadline counts
        from; None while it waits for one. A back end that cannot tell returns 0.0: the
        deadline then counts from when the batch was sent."""
        ...

    def kill(self, sent: _Sent) -> bool:
        """Stop a stuck batch by killing its workers (only with ``hard_timeout_grace``):
        whether the run's other batches in flight were lost with them (loky: the pool)."""
        ...

    def interrupt(self) -> bool:
        """The run was interrupted: make the workers stop this run's bodies and send back
        what finished, if the back end can without harming other runs; whether it did."""
        ...

    def stop(self, abandoned: Sequence[_Sent] | None) -> None:
        """The run ended: release what it deferred. ``abandoned``: it was interrupted (or
        given up) with these batches still out; stop them."""
        ...


class _Ticket(NamedTuple):
    seq: int  # this send's number in Workers
    alone: bool  # nothing else was in flight on the workers when it was sent
    solo: bool  # a suspect, holding the workers to itself


class Workers:
    """What the runs on one set of workers (a loky pool, a Dask cluster) share: how many
    batches are in flight, and which run's suspect, if any, needs the workers alone.

    Thread-safe. See "Several runs on the same workers" in the module docstring."""

    __slots__ = ("_busy", "_held", "_lock", "_sent", "_solo", "_solo_out")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._busy = 0  # batches in flight, of every run
        self._sent = 0  # batches sent so far
        self._solo: Wake | None = None  # the run whose suspect needs the workers alone
        self._solo_out = False  # that suspect is in flight
        self._held: list[Wake] = []  # runs to wake when it comes back

    def admit(self, wake: Wake, solo: bool) -> bool:
        """Whether a run (known by its ``wake``) may send now; a suspect (``solo``) only
        with nothing in flight. If not, ``wake`` is called when it may try again."""
        if not solo and self._solo is None:
            return True  # without the lock: a race costs at most one more replay
        with self._lock:
            if self._solo is None and solo:
                self._solo, self._solo_out = wake, False
            if self._solo is None:
                return True
            if self._solo is not wake:
                if wake not in self._held:
                    self._held.append(wake)
                return False
            return not solo or (self._busy == 0 and not self._solo_out)

    def claim(self, solo: bool) -> _Ticket:
        """Count a batch about to be sent."""
        with self._lock:
            self._busy += 1
            self._sent += 1
            if solo:
                self._solo_out = True
            return _Ticket(self._sent, self._busy == 1, solo)

    def release(self, ticket: _Ticket) -> bool:
        """Count a batch back (from its future's callback): whether it was alone on the
        workers all the time it was out."""
        with self._lock:
            self._busy -= 1
            alone = ticket.alone and self._sent == ticket.seq
            woken: list[Wake] = []
            if ticket.solo:
                self._solo, self._solo_out = None, False
                woken, self._held = self._held, []
            elif self._busy == 0 and self._solo is not None and not self._solo_out:
                woken = [self._solo]
        for wake in woken:
            wake()
        return alone

    def leave(self, wake: Wake) -> None:
        """A run will send nothing more (or no suspect now): forget it, let the others on."""
        with self._lock:
            if wake in self._held:
                self._held.remove(wake)
            woken: list[Wake] = []
            if self._solo is wake and not self._solo_out:
                self._solo = None
                woken, self._held = self._held, []
        for other in woken:
            other()


class _Flight:
    """A batch in flight."""

    __slots__ = ("alone", "deadline", "runs", "sent", "ticket")

    def __init__(
        self, runs: list[TaskRun], ticket: _Ticket, sent: float, deadline: float | None
    ) -> None:
        self.runs = runs
        self.ticket = ticket
        self.sent = sent  # when (``time.monotonic``)
        self.deadline = deadline
        #: Set when it comes back: it was alone on the workers all along (Workers.release).
        self.alone = False


class Dispatcher(Generic[_Payload, _Sent]):
    """One flow run on a ``Backend``: the ``ExecutorRun`` of ``LokyExecutor`` and
    ``DaskExecutor``. See the module docstring."""

    # The follow-ons of a run are sent with it and run where it ran.
    runs_chains = True

    def __init__(self, backend: Backend[_Payload, _Sent], run_context: Mapping[str, Any]) -> None:
        header = check_context(run_context)  # before anything starts
        self._backend = backend
        self._where = backend.name
        self._long_task = backend.long_task
        self._ahead = 2 if backend.queues_ahead else 1  # batches a slot, many runs waiting
        self._grace = backend.hard_timeout_grace
        self._durations = _durations.setdefault(backend.name, {})
        self._pending: deque[TaskRun] = deque()
        self._suspects: deque[TaskRun] = deque()
        #: How many times each run (by key) was lost as a bystander (``Loss.bystander``).
        self._bystanding: dict[int, int] = {}
        self._in_flight: dict[_Sent, _Flight] = {}
        self._done: queue.SimpleQueue[_Sent | None] = queue.SimpleQueue()
        self._wake: Wake = partial(self._done.put, None)
        self._ready: list[TaskResult] = []
        self._names: dict[int, str] = {}
        self._templates = Templates()
        self._encode: Callable[[list[TaskRun]], _Payload] = partial(backend.encode, self._templates)
        self._slots, self._workers = backend.start(header, capture_level())
        #: Batches ``interrupt`` took back: stopped at ``end`` like those still out.
        self._drained: list[_Sent] = []

    @property
    def slots(self) -> int:
        """How many tasks the workers run at once (progress displays count the rest as queued)."""
        return self._slots

    def timings(self) -> Timings:
        """The durations this process has seen on this kind of back end, and its
        ``long_task`` as the budget of a group (see "Batches" in the module docstring)."""
        return Timings(self._durations, self._long_task)

    # -- the ExecutorRun protocol ---------------------------------------------------------------

    def submit(self, runs: Sequence[TaskRun]) -> None:
        """Queue the runs and send what free slots can take."""
        self._pending.extend(runs)
        self._pump()

    def collect(self, timeout: float | None) -> list[TaskResult]:
        """Results of finished runs: at least one, or none once ``timeout`` seconds passed."""
        wait_until = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._ready:
                results, self._ready = self._ready, []
                return results
            until = self._next_deadline(wait_until)
            try:
                first = interruptible.get(
                    self._done, None if until is None else max(0.0, until - time.monotonic())
                )
            except queue.Empty:
                if self._expire_stuck():
                    continue
                return []
            done = [first]
            while True:  # take whatever else is done without waiting
                try:
                    done.append(self._done.get_nowait())
                except queue.Empty:
                    break
            self._ready.extend(self._finished(done))
            self._pump()

    def end(self) -> None:
        """Stop what is still out (if the run did not finish) and release the run."""
        try:
            unfinished = self._in_flight or self._pending or self._suspects or self._drained
            self._backend.stop([*self._in_flight, *self._drained] if unfinished else None)
        finally:
            self._drained = []
            self._workers.leave(self._wake)
            self._pending.clear()
            self._suspects.clear()
            self._in_flight.clear()
            self._ready = []

    def interrupt(self, grace: float) -> list[TaskResult]:
        """The run was interrupted (then ``end()`` follows): the results it has not handed
        back, and those of the batches out, which the back end stops (``Backend.interrupt``)
        so that they come back with what finished; waits at most ``grace`` seconds for them
        (not at all if the back end cannot stop them: only what already came back is taken).
        A batch that does not come back, or fails, is left for ``end()``."""
        results, self._ready = self._ready, []
        deadline = time.monotonic() + (grace if self._in_flight and self._backend.interrupt() else 0.0)
        while self._in_flight:
            try:
                sent = self._done.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if sent is None:
                continue  # a wake-up
            flight = self._in_flight.pop(sent, None)
            if flight is None:
                continue
            self._drained.append(sent)
            [reply] = self._backend.receive([sent])
            if not isinstance(reply, BaseException):
                results.extend(self._decode(flight, reply))
        return results

    # -- sending --------------------------------------------------------------------------------

    def _pump(self) -> None:
        in_flight, pending, slots = self._in_flight, self._pending, self._slots
        while True:
            if self._suspects:
                if in_flight or not self._workers.admit(self._wake, solo=True):
                    return
                self._send([self._suspects.popleft()], solo=True)
            elif pending:
                depth = self._ahead if len(pending) >= slots * AHEAD_RUNS else 1
                room = slots * depth - len(in_flight)
                if room <= 0 or not self._workers.admit(self._wake, solo=False):
                    return
                self._send(take_batch(pending, room, self._durations, self._long_task), False)
            else:
                return

    def _send(self, batch: list[TaskRun], solo: bool) -> None:
        encoded = encode_batch(batch, self._encode, self._ready, self._where)
        if encoded is None:
            if solo:
                self._workers.leave(self._wake)
            return
        batch, payload, keys = encoded
        self._names.update(keys)
        deadline, now = None, time.monotonic()
        if self._grace is not None and len(batch) == 1 and batch[0].task.timeout is not None:
            deadline = _hard_deadline(batch[0], now, self._grace)
        ticket = self._workers.claim(solo)
        try:
            sent = self._backend.send(payload, keys)
        except BaseException:
            self._workers.release(ticket)
            raise
        flight = _Flight(batch, ticket, now, deadline)
        self._in_flight[sent] = flight
        sent.add_done_callback(partial(self._returned, flight))

    def _returned(self, flight: _Flight, sent: _Sent) -> None:
        # In a thread of the back end's: count it back first, so "alone" is decided at once.
        flight.alone = self._workers.release(flight.ticket)
        self._done.put(sent)

    # -- results --------------------------------------------------------------------------------

    def _finished(self, done: list[_Sent | None]) -> list[TaskResult]:
        flights: list[_Flight] = []
        sent: list[_Sent] = []
        for future in done:
            if future is None:
                continue  # a wake-up: _pump will see whether the workers take more
            flight = self._in_flight.pop(future, None)
            if flight is not None:  # else a batch given up on (at a hard timeout)
                flights.append(flight)
                sent.append(future)
        if not sent:
            return []
        results: list[TaskResult] = []
        suspects = len(self._suspects)
        cause = ""
        for flight, reply in zip(flights, self._backend.receive(sent)):
            if isinstance(reply, BaseException):
                loss = self._backend.loss(reply)
                results.extend(self._lost(flight, loss))
                cause = loss.cause or cause
            else:
                results.extend(self._decode(flight, reply))
        if len(self._suspects) > suspects:
            log.warning(
                "a %s worker died (%s) with %d task runs of this flow run in flight; running "
                "them again one at a time to find the cause",
                self._where,
                cause,
                len(self._suspects) - suspects,
            )
        return results

    def _decode(self, flight: _Flight, reply: Reply) -> list[TaskResult]:
        data, logs = reply
        if logs:
            try:
                records: list[logging.LogRecord] = cloudpickle.loads(logs)
            except Exception as error:
                log.warning(
                    "log records from a %s worker could not be unpickled: %r", self._where, error
                )
            else:
                for record in records:
                    if record.name == STDOUT_LOGGER:
                        sys.stdout.write(f"{record.msg}\n")
                        continue
                    logger = logging.getLogger(record.name)
                    if logger.isEnabledFor(record.levelno):
                        logger.handle(record)
        results = decode_rows(data, flight.runs, self._names, self._durations, self._where)
        self._backend.take_over(results, flight.runs, self._names)
        return results

    def _lost(self, flight: _Flight, loss: Loss) -> list[TaskResult]:
        """A batch that did not come back: each run fails, or the culprit rule decides
        (but a run of a task that must not run twice ends ``Crashed``: ``lost``)."""
        runs = flight.runs
        if loss.died:
            bystander = loss.bystander and self._bystander(runs)
            if bystander or not (flight.alone and len(runs) == 1 and not runs[0].then):
                # Suspects all, a bystander too: sent back as a batch, it would be in flight
                # beside the suspects, none of which could then be judged alone.
                again, lost = self._rerun(runs, loss.cause)
                requeue(self._suspects, again)
                return lost
            if flight.deadline is not None and time.monotonic() >= flight.deadline:
                # Its workers died after its hard deadline: the timeout, not the task.
                timed_out = TimedOut(TIMEOUT_MESSAGE, TimeoutError(loss.cause))
                return [decided_here(runs[0].key, timed_out, self._where)]
        where = self._where
        return [
            decided_here(run.key, Failed(f"Task {run.task.name!r} {loss.why}", loss.error), where)
            for run in runs
        ]

    def _bystander(self, runs: list[TaskRun]) -> bool:
        """Whether runs lost as bystanders of a death are spared the culprit rule:
        twice at most each, after which it judges them (a task that kills another worker
        of its pool must not run for ever)."""
        counts = self._bystanding
        for run in runs:
            counts[run.key] = counts.get(run.key, 0) + 1
        return all(counts[run.key] <= MAX_BYSTANDING for run in runs)

    def _rerun(self, runs: list[TaskRun], cause: str) -> tuple[list[TaskRun], list[TaskResult]]:
        """The runs lost with a dead worker that may run again, and the results of those
        that may not (``Task.rerun_after_crash``): ``Crashed``, naming the cause."""
        again = [run for run in runs if getattr(run.task, "rerun_after_crash", True)]
        if len(again) == len(runs):
            return runs, []
        where = self._where
        lost = [
            decided_here(run.key, lost_with_worker(run, cause, where), where)
            for run in runs if not getattr(run.task, "rerun_after_crash", True)
        ]
        return again, lost

    # -- hard timeouts --------------------------------------------------------------------------

    def _next_deadline(self, wait_until: float | None) -> float | None:
        if self._grace is None:
            return wait_until
        deadlines = [f.deadline for f in self._in_flight.values() if f.deadline is not None]
        if wait_until is not None:
            deadlines.append(wait_until)
        return min(deadlines) if deadlines else None

    def _expire_stuck(self) -> bool:
        """Stop a run stuck past its hard deadline; True if there was one (keep waiting).
        A deadline counts from when a worker took the batch: one that waited for a worker
        (behind another run's batches on a shared pool) gets its full time from then."""
        now = time.monotonic()
        for sent, flight in self._in_flight.items():
            if flight.deadline is not None and flight.deadline <= now:
                started = self._backend.started(sent)
                begun = now if started is None else max(started, flight.sent)
                deadline = _hard_deadline(flight.runs[0], begun, self._grace)
                if deadline <= now:
                    break
                flight.deadline = deadline  # (not started yet: looked at again then at the latest)
        else:
            return False
        others = [run for f in self._in_flight.values() if f is not flight for run in f.runs]
        del self._in_flight[sent]  # what comes back of it now is dropped
        if self._backend.kill(sent):
            self._in_flight.clear()  # and of the others lost with it
            others, lost = self._rerun(others, "killed at another task's hard timeout")
            self._ready.extend(lost)
            requeue(self._pending, others)
        stopped = TimedOut(TIMEOUT_MESSAGE, TimeoutError("stopped by killing its worker"))
        self._ready.append(decided_here(flight.runs[0].key, stopped, self._where))
        self._pump()
        return True


def _hard_deadline(run: TaskRun, started: float, grace: float | None) -> float:
    """When a run with a timeout that started at ``started`` is stuck (see "Hard timeouts")."""
    assert run.task.timeout is not None and grace is not None
    return started + 2 * run.task.timeout + grace


# --- batching: pure bookkeeping ---------------------------------------------------------------


def alone(run: TaskRun, durations: Mapping[str, float], long_task: float) -> bool:
    """Whether a run travels in a batch of its own: a task with a timeout, one seen to
    take longer than ``long_task`` seconds, or one never timed yet (its first run measures
    it); or a run whose group (``TaskRun.then``) is expected to take longer in all, run
    and members (an untimed member, a chain's link, counts for nothing)."""
    seconds = durations.get(run.task.name)
    if run.task.timeout is not None or seconds is None or seconds > long_task:
        return True
    for follow in run.then:
        seconds += durations.get(follow.task.name, 0.0)
    return seconds > long_task


def take_batch(
    pending: deque[TaskRun], free: int, durations: Mapping[str, float], long_task: float
) -> list[TaskRun]:
    """The next batch from ``pending``, for one of ``free`` batches there is room for."""
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
    # (A comprehension, not a generator: that resumes a frame for every member.)
    keys += [(f.key, f.task.name) for run in batch for f in run.then]
    return batch, payload, keys


def decode_rows(
    data: bytes,
    runs: Sequence[TaskRun],
    names: Mapping[int, str],
    durations: dict[str, float],
    where: str,
) -> list[TaskResult]:
    """The results of a batch (of ``runs``) from a worker's ``encode_rows``, each run's time
    noted in ``durations`` (by task name, from ``names``). If the bytes do not unpickle,
    every run of the batch fails (decided ``where``)."""
    try:
        worker, rows = cloudpickle.loads(data)
    except Exception as error:
        message = f"the results could not be unpickled in the parent process: {error!r}"
        failed = RemoteTaskError(type(error).__qualname__, str(error), traceback.format_exc())
        return [
            decided_here(run.key, Failed(f"Task {run.task.name!r}: {message}", failed), where)
            for run in runs
        ]
    results: list[TaskResult] = []
    append = results.append
    states = restored_all(_STATE_CLASSES, map(itemgetter(1), rows))  # (no call a state)
    for (key, _, started, finished, ended, loop, location), state in zip(rows, states):
        append(result_row((key, state, started, finished, worker, ended, loop, location)))
        name = names.get(key)
        if name is not None:
            seconds = finished - started
            previous = durations.get(name)
            durations[name] = seconds if previous is None else 0.7 * previous + 0.3 * seconds
    return results


def lost_with_worker(run: TaskRun, cause: str, where: str) -> Crashed[Any]:
    """The state of a run of a task with ``rerun_after_crash=False`` whose worker died."""
    message = (
        f"Task {run.task.name!r} was lost with a crashed {where} worker ({cause or 'it died'}): "
        "not run again because the task has rerun_after_crash=False (its body may have run, "
        "in whole or in part)"
    )
    return Crashed(message, RuntimeError(message))


def decided_here(key: int, state: State[Any], where: str) -> TaskResult:
    """A result decided in the parent (the run never reached a worker, or its worker died),
    with ``where`` (the back end's name) as its worker."""
    now = time.time()
    return TaskResult(key, state, now, now, where)
