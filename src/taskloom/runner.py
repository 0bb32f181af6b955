"""The scheduler: runs a flow by deciding, task by task, what happens next.

It lives in the calling process and decides everything that needs no user code; only
tasks that must actually run go to the executor (see ``executors.base``). Like dask's
``local.get_async``, it is one loop over a few pieces of bookkeeping, here the attributes
of ``_Scheduler``. By task number ``i`` (a task's position in ``flow.tasks``):

``traces[i]``
    what happened to task ``i`` so far (``trace.TaskTrace``): its current state, attempts,
    the inputs of its last attempt, when it was queued, ran and where. The journal records
    the traces when the run ends.
``finished[i]``
    whether its state is ``Finished``: it will not run again in this run.
``waiting[i]``
    how many distinct upstream tasks of ``i`` are not finished yet. When it reaches 0,
    ``i`` is *ready*.
``runnable[i]``
    whether this run may run ``i`` at all: every task, or with ``start_tasks`` only they
    and what follows them (``plan.downstream_closure``); never a paused task a resume
    holds (``Resumed.held``).
``ready``
    a stack of tasks to *decide*. Deciding (``_decide``) is skip propagation and then the
    trigger (``decide.decide``, a pure function of the task and its upstream states), then
    the output cache (``caching.lookup``). It ends in a final state without running the task
    (``Skipped``, ``TriggerFailed``, ``Paused``, ``Cached``), or in a ``TaskRun`` for the
    executor.
``in_flight``
    how many runs the executor has and has not handed back.
``retries``
    a heap of ``(due time, task)`` for tasks that failed with retries left (or raised
    ``RETRY``, or paused until a time); when due they run again with the inputs of their
    trace. Independent tasks keep running meanwhile. A looping task's passes
    (``signals.LOOP``) never come back here: they run in one attempt, where the task runs
    (``taskloom.attempt``). Only when a pass after the first fails with retries left does
    the attempt hand back where the loop was (``TaskResult.loop``); the ``Retrying`` state
    keeps it (``loop_count``, ``loop_result``) and the retry's ``TaskRun`` starts there.
    A task that raised ``ENDRUN`` (``TaskResult.ended``) is settled in exactly its state:
    no retry, no output cache.
``claimed``, ``chains``
    follow-ons (below): tasks offered to the executor with a run, and each run's group.
``flow``, ``plan``, ``nodes``, ``args``
    the flow, compiled (``plan.Plan``; ``nodes`` is ``plan.nodes``), and what the run was
    given, checked (``_run_args.RunArgs``: parameters, context, seeded states, start tasks).
``executor``, ``session``, ``cache_store``, ``journal``, ``resumed``, ``observer``
    where tasks run and this run's side of it (``executor.begin``), where cached results
    live, where the run is recorded (and the run it resumes: ``Resumed``), and who is
    told as it goes.

A task is ready as soon as its upstream tasks are finished: there are no level-by-level
barriers. The loop ends when nothing is ready, in flight or due to retry; tasks that
never became ready (downstream of a paused task, or outside ``start_tasks``) keep their
seeded state or end ``Pending("Task not run.")``.

Follow-ons (fusion). Handing each task to the executor costs a round trip; instead, a run
is handed over with a *group* of tasks downstream of it (``TaskRun.then``) that the worker
runs right after it, where it ran, so their inputs never travel through the parent. A
chain (each task the sole downstream task of the one before) is the simplest group. The
rule has four parts, which must agree:

1. ``plan`` marks a task ``followable`` when the worker can decide it as ``decide`` would:
   the default trigger ``all_successful``, skip propagation on, no output cache, no
   timeout, not a parameter, not mapped, and ``rerun_after_crash`` (``plan``'s
   ``_decided_as_followable`` says why each).
2. The scheduler (``_grouped``, ``_grow``) builds each run's group, in an order in which
   every member comes after its sources: a task downstream of the run or of a member
   joins when it is followable, runnable, not finished, never attempted, not claimed,
   not seeded and not a start task, and each of its upstream tasks is either finished in
   a state that ``follows`` (its result is sent as a constant) or the run or a member (a
   *source*: a list of tasks, ``total([a, b])``, is rebuilt with ``InGroup`` markers). An
   upstream task that is another run of the same submission, a first attempt of a
   followable task, may join as a member too (``_may_join``): that is how a grid's rows
   fuse. A member is ``claimed``: it is not readied when its upstream tasks finish.
3. Parallelism is not lost for real work: a member that is the sole task after the one
   before and has it as its only source (a chain link) costs nothing, since it could not
   run anywhere sooner; a group that branches or takes in other runs must be known to be
   short: every member timed by the executor (``ExecutorRun.timings``) and their expected
   seconds in all (and the run's, when other runs join it) within the executor's budget
   (its ``long_task``), so it never holds a worker longer than one long task would.
   Executors that give no timings (``LocalExecutor``, ``ThreadExecutor``) get chains only;
   the first run of a flow on a pool fuses only chains until its tasks have been timed.
4. The worker (``attempt.run_chain``) runs a member only if every source ran and ended in
   a state that ``attempt.follows`` (a success that was not a skip). For a followable
   task that is exactly when ``decide.decide`` says "run": ``tests/test_follow_on.py``
   checks it for every trigger, skip setting, cache setting and pair of upstream states.
   ``_take`` reads the group's results back in the order they ran (the run's first); a
   claimed task the worker did not run comes back unclaimed and is decided here as any
   other (``TriggerFailed`` after a failed source, and so on), as is one its worker never
   reached (a worker death requeues the run without its group; an interrupt hands back
   what finished, ``attempt.finished_before``).

Mapping (``t.map``) is the other half of the scheduler, in ``taskloom.mapping_run``: a
mapped task's children get slots numbered after the flow's tasks, and the per-slot lists
``task_of``, ``parent``, ``map_index`` (with ``expansions`` and ``dependents``) cover
them; its docstring tells how. ``_Scheduler`` is a ``mapping_run._Mapping``; the loop goes
there only for a node that maps or a slot past the flow's tasks.

Lifecycle of one run (``_Scheduler.run``; the order matters):

1. ``executor.begin(context)`` may refuse the run (a context value that cannot reach the
   workers): before the journal records it, and before the context is entered.
2. ``journal.begin``: the run is recorded as ``Running``, with its process and its tasks'
   names; from then on each task that settles is recorded within ``FLUSH_SECONDS``
   (``recording.TaskLog``, fed by ``_finish`` and ``_settle``), so a killed run loses little.
3. enter the run's context; ``observer.run_started``.
4. the loop (``_loop``), until nothing is ready, in flight or due: each turn decides the
   ready tasks (up to ``AHEAD_PER_SLOT`` runs a slot ahead of the executor), hands their
   runs over, and takes back what finished.
5. leave the context (what follows runs no task code, and needs none).
6. ``_end``: stop the task log, materialise, then ``session.end()``. An executor may hand back results as
   ``DeferredResult`` (a value left in shared memory or on a worker) that live only until
   ``session.end()``; materialising turns the final states' results, and the inputs the
   journal keeps, into values. ``_end`` does both, in this order, and ``session.end()`` is
   called nowhere else.
7. ``journal.finish`` records every task's trace; ``observer.run_finished``.

``run_flow`` builds the plan and the run's records with the garbage collector off, then
runs all of it with what existed before (the flow, its plan, the run's records), and what
survives a full collection during the run, left out of the collector's passes
(``_collector.RunHeap``): at a million tasks, full collections walking the flow and the
run's states again and again made each task cost more the bigger the flow. After the
run, it lets go of the scheduler: the exceptions the final states hold (noted while
materialising) keep tracebacks whose frames reach the scheduler's, and taskloom's own
frames there drop their locals (``_tracebacks.release_frames``), so a caller holding the
final state holds the states, not every record of the run.

Logging (``taskloom.logging``): the flow's logger says "Beginning Flow run" after 3 and
how the run ended after 6; each task's logger says "Finished task run ... final state"
where a state is settled (``_finish``, and ``_schedule`` for a retry), the worker having
said "Starting task run..." (``taskloom.attempt``). A journaled run keeps each task's
records of its last attempt (``RunLogs``, attached from 3 to 5) in its trace.

When the loop is interrupted (Ctrl-C, SIGTERM, a task's ``SystemExit`` on the local
executor), the run is still recorded: tasks handed to the executor that did not come back
end ``Failed``, and tasks waiting for a retry end ``Cancelled``, each with the inputs it was
given (``_salvage``; ``taskloom resume`` runs them again from those); tasks never reached
keep ``Pending("Task not run.")`` (a resume runs them after what they wait for),
``_end`` keeps what it can, the journal records the run as ``Failed("Run interrupted")``,
and the interrupt goes on up. Any other error that stops the loop (from outside every
task: a progress observer's, taskloom's own) is recorded the same way, as
``Failed("Run stopped by an error")`` (else the run would read as running, and refuse a
resume, for as long as the process lives), and goes on up.
``_end`` and the journal's record of the end run whatever happens before them (a second
interrupt while the run takes back what finished): an executor's run or a task log left
open would keep the run for ever.

State handlers (``taskloom.handlers``). A change inside an attempt is handled where the
task runs (``taskloom.attempt``). A change the scheduler decides is handled here, when it
happens, through ``_handled`` (the task's ``state_handlers``, then ``on_failure`` if the
state they leave is failed and final): ``Pending`` -> ``Skipped``, ``TriggerFailed``,
``Paused`` (deciding), -> ``Cached`` (a cache hit), the attempt's ``Failed`` ->
``Retrying`` (a handler may turn it into a final state: then no retry), and a mapped task's
``Pending`` -> ``Mapped`` when its last child finishes (or -> ``Failed`` when it cannot map).
A replacement is what the scheduler records and downstream tasks see. For a task with
handlers, ``TaskRun.previous`` carries its state before the attempt (without
``cached_inputs``). The flow's handlers run here too: ``Scheduled`` -> ``Running`` before
the loop, and at the end ``terminal_state_handler``, then ``Running`` -> final, then
``on_failure`` (``_flow_handled``). A handler's failure fails its task or the flow, never
the run.

The flow's state: ``Paused`` while any task waits to be resumed, otherwise ``Failed`` if a
reference task failed, ``Success`` if every reference task succeeded, and ``Running`` if a
reference task did not finish (a partial run).

Layers: the scheduler uses the executors below it (the contract, and ``LocalExecutor`` as
the default) and the stores (journal, cache). It calls up into the presentation layer in
one place, lazily: ``run_flow(progress=True)`` builds ``progress.default_progress()``.
"""

from __future__ import annotations

import datetime as _dt
import heapq
import logging
import operator
import signal
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from itertools import compress, islice
from types import FrameType
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _interruptible as interruptible
from . import _run_args
from ._collector import RunHeap, collector_off
from ._run_args import RunArgs
from ._tracebacks import failure_traceback, release_frames
from .attempt import FollowOn, InGroup, TaskResult, TaskRun, finished_before, follows
from .caching import CacheStore, cache_key, default_cache_store, lookup, remember
from .checkpoint import RESULTS_KEY, prepare_run
from .context import enter, leave
from .decide import PLAIN_SUCCESS, decide, runs_by_default
from .executors._wire import UnpicklableParameterError
from .executors.base import (
    SCALARS, DeferredResult, Executor, ExecutorRun, Timings, holds_deferred, resolve_deferred,
)
from .executors.local import LocalExecutor
from .flow import Flow, FlowResult
from .handlers import call_on_failure, call_state_handlers, handler_name, has_handlers
from .journal import Journal, LoggedTasks, default_journal
from .logging import RunLogs, flow_logger, task_logger
from .mapped import child_name, mapped_state, unfinished_children
from .mapping_run import NOT_RUN_MESSAGE, _children_of, _Expansion, _Mapping
from .plan import Node, Plan, plan, rebuild
from .recording import TaskLog
from .states import (
    Cancelled, Failed, Finished, Mapped, Paused, Pending, Resume, Retrying, Running, Scheduled,
    State, Success, fetched_on_read,
)
from .task import ParameterTask, Task
from .trace import ChildTrace, TaskTrace

if TYPE_CHECKING:
    from .progress import RunObserver

__all__ = ["FlowResult", "Resumed", "check_run", "run_flow"]

log = logging.getLogger("taskloom.runner")

#: How long an interrupted run waits for its workers to hand back what finished (seconds).
INTERRUPT_GRACE = 2.0

#: The most members of one group (a bound on the work of building one).
MAX_GROUP = 10_000
#: The most other runs of a submission one member may pull into a group: each saves no
#: round trip of its own and costs the parent as much as a member, so a reduce over
#: many runs (``total([a, b, ...])``) is left to its own round trip.
MAX_PULLED = 4

#: Runs decided ahead of the executor, at most, for each of its slots (runs it runs at
#: once: ``ExecutorRun.slots`` where it has one). A wide step decided whole held every run
#: and its inputs before the first ran: on ``LocalExecutor`` a map of 100,000 children
#: cost 18% more a child than a map of 10,000 (9% with this bound), its runs out of the
#: CPU's caches. Loky's batches (``_dispatch.MAX_BATCH``, two a worker) fill from fewer.
AHEAD_PER_SLOT = 1024

#: What observers are told when a task is handed to the executor.
_RUNNING: State[Any] = Running("Task handed to the executor.")


# -- the scheduler -----------------------------------------------------------------------------------


class Resumed(NamedTuple):
    """The recorded run a run resumes (``taskloom.resume``): its id, and the tasks (by
    number) it seeds successful without their results, which that run did not store
    (seeded with None: the task log does not write them as results, see ``recording``).

    ``held``: the paused tasks a resume that names some (``--task``) leaves paused, by
    number, and ``held_children`` the children (mapped task's number, map index): they
    keep their seeded ``Paused`` state and its inputs, and are not decided again, even
    after a task upstream of them ran again (it ran for another task)."""

    run_id: str
    unstored: frozenset[int] = frozenset()
    held: frozenset[int] = frozenset()
    held_children: frozenset[tuple[int, int]] = frozenset()


class _Scheduler(_Mapping):
    """The state of one flow run; see the module docstring (and ``mapping_run``'s)."""

    def __init__(
        self,
        flow: Flow,
        compiled: Plan,
        args: RunArgs,
        executor: Executor,
        cache_store: CacheStore | None,
        journal: Journal | None = None,
        resumed: Resumed | None = None,
        observer: RunObserver | None = None,
    ) -> None:
        self.flow = flow
        self.plan = compiled
        self.nodes = nodes = compiled.nodes
        self.args = args
        self.executor = executor
        self.journal = journal
        self.resumed = resumed
        self.observer = observer
        self._cache_store = cache_store
        with collector_off():  # a trace and a few numbers a task, and no cycle
            self._records(compiled, args)
        #: The executor's side of this run: set by ``run`` (``executor.begin``).
        self.session: ExecutorRun | None = None
        #: The flow's Running state, as its state handlers left it (``_flow_started``).
        self._flow_running: State[Any] = Running("Running flow.")
        #: Settled tasks on their way to the journal, while the run goes (``recording``).
        self.task_log: TaskLog | None = None
        #: What the task log wrote before it stopped, for ``journal.finish`` to keep.
        self._logged: LoggedTasks | None = None
        #: The exceptions the final states hold (``_materialize``), for ``release_frames``.
        self.errors: list[BaseException] = []

    def _records(self, compiled: Plan, args: RunArgs) -> None:
        """The run's bookkeeping, by task (see the module docstring)."""
        nodes = compiled.nodes
        seeded, starts = args.seeded, args.starts
        # One "not run" state for the run: states are immutable, so tasks can share it.
        not_run: State[Any] = Pending(NOT_RUN_MESSAGE)
        self.traces = traces = [
            TaskTrace(name, seeded.get(i, not_run)) for i, name in enumerate(compiled.names)
        ] if seeded else [TaskTrace(name, not_run) for name in compiled.names]
        # Flags a byte a task (a list costs 8): ``finished`` and ``runnable``. Only a seeded
        # task (a resume, ``task_states``) can start finished.
        self.finished = finished = bytearray([  # from a list: a generator costs a call a task
            isinstance(t.state, Finished) and not unfinished_children(t.state) for t in traces
        ]) if seeded else bytearray(len(traces))
        self.waiting = waiting = (
            [sum(not finished[u] for u in node.upstream) for node in nodes]
            if any(finished) else [len(node.upstream) for node in nodes]
        )
        # With start tasks, only they and what follows them run, and a mapped task seeded
        # with children that did not finish well (a resume's), which maps again.
        remap = [i for i, state in seeded.items() if unfinished_children(state)] if starts else []
        self.runnable = runnable = (
            bytearray(compiled.downstream_closure([*starts, *remap])) if starts
            else bytearray(b"\x01") * len(nodes)
        )
        if self.resumed is not None:
            for i in self.resumed.held:
                runnable[i] = 0
        self.ready = [
            i for i in range(len(nodes))
            if runnable[i] and not finished[i] and (waiting[i] == 0 or i in starts)
        ] if starts or seeded else list(compress(range(len(nodes)), map(operator.not_, waiting)))
        # (Without either, every task is runnable and none finished: the ready ones are
        # those that wait for none, picked in C.)
        self.ready.reverse()  # a stack: pop() takes tasks in flow order
        #: Nothing seeded, no start tasks: every task is decided from its upstream states.
        self._fresh = not seeded and not starts
        # Mapped tasks add a slot per child after the tasks' own (``mapping_run``).
        self.task_of: list[Task[Any, Any]] = [node.task for node in nodes]
        self.parent: list[int] = [-1] * len(nodes)
        self.map_index: list[int | None] = [None] * len(nodes)
        self.expansions: dict[int, _Expansion] = {}
        self.dependents: dict[int, list[int]] = {}
        self.retries: list[tuple[float, int]] = []
        self.in_flight = 0
        self._queued_at = 0.0  # the last queue time given (``_task_run``)
        self.claimed: set[int] = set()
        self.chains: dict[int, tuple[FollowOn, ...]] = {}

    @property
    def cache_store(self) -> CacheStore:
        if self._cache_store is None:
            self._cache_store = default_cache_store()
        return self._cache_store

    # -- the lifecycle --------------------------------------------------------------------------

    def _tell_start(self, observer: RunObserver, session: Any) -> None:
        """Tell ``observer`` what it cannot see for itself at the start: how many tasks
        the executor runs at once (``slots_known``, when both sides have it) and each task
        already finished, seeded from an earlier run (a resume), as ``task_changed``."""
        slots = getattr(session, "slots", None)
        known = getattr(observer, "slots_known", None)
        if isinstance(slots, int) and callable(known):
            known(slots)
        for i, state in self.args.seeded.items():
            if 0 <= i < len(self.traces) and i not in self.args.starts and state.is_finished():
                observer.task_changed(i, self.traces[i].name, state)

    def _consumers(self, parameter: str) -> list[tuple[str, str]]:
        """The (task name, input) pairs that take ``parameter`` as an input."""
        found = self.flow.parameters().get(parameter)
        if found is None:
            return []
        return [
            (edge.downstream_task.name, edge.key)
            for edge in self.flow.edges_from(found)
            if edge.key is not None
        ]

    def run(self) -> State[FlowResult]:
        """Run the flow; see "Lifecycle" in the module docstring. SIGTERM raises
        ``SystemExit`` while it runs, on every executor: an interrupt, so the run is
        recorded as interrupted (and its workers stopped), as after Ctrl-C. Only where
        SIGTERM would kill the process (its default action, in the main thread): a
        handler of the program's own, or an ignored SIGTERM, stays as it is."""
        ours = (
            threading.current_thread() is threading.main_thread()  # (signals: only there)
            and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        )
        if ours:
            signal.signal(signal.SIGTERM, _sigterm_to_exit)
        try:
            return self._run()
        finally:
            if ours:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)

    def _run(self) -> State[FlowResult]:
        args, observer = self.args, self.observer
        run_id = args.run_id
        try:
            session = self.session = self.executor.begin(args.context)
        except UnpicklableParameterError as error:
            raise error.with_consumers(self._consumers(error.parameter)) from None
        journal = self.journal
        begun = False  # the journal recorded the run's start: it must record its end
        try:
            if journal is not None:
                task_log = TaskLog(journal, run_id, self)
                if journal.begin(
                    run_id,
                    self.flow.name,
                    self.flow.source,
                    args.parameters,
                    time.time(),
                    None if self.resumed is None else self.resumed.run_id,
                    names=self.plan.names,
                    opening=task_log.opening,
                    context=args.given,
                ):
                    begun = True
                    self.task_log = task_log
                    task_log.opened()
                else:
                    journal = None
                del task_log  # (an error's traceback keeps this frame: not the scheduler)
            logs = RunLogs(run_id) if journal is not None else None
            if logs is not None:
                logs.attach()
            token = enter(args.context)
            try:
                flow_log = flow_logger(self.flow.name)
                if flow_log.isEnabledFor(logging.INFO):
                    flow_log.info("Beginning Flow run for %r", self.flow.name)
                if observer is not None:
                    observer.run_started(self.flow.name, run_id, len(self.nodes))
                    self._tell_start(observer, session)
                self._flow_started()
                self._loop()
            finally:
                leave(token)
                if logs is not None:
                    logs.detach()
                    for key, text in logs.texts().items():
                        self.traces[key].logs = text
        except BaseException as error:
            interrupted = isinstance(error, (KeyboardInterrupt, SystemExit))
            why = "interrupted" if interrupted else "stopped by an error"
            try:
                if begun and interrupted:
                    self._take_finished(session, error)
                if begun:
                    self._salvage(error, why)
            finally:
                # Even when a second interrupt cuts that short: an executor's run and a task
                # log not ended would keep the pool's count and this run's records for ever,
                # and a run not recorded as ended reads as running while this process lives.
                try:
                    self._end(session, keep_values=begun)
                except Exception as failure:  # the error that stopped the run goes on up
                    log.warning(
                        "run %s: some values could not be kept, or ending it failed: %r",
                        run_id, failure,
                    )
                if begun:
                    # Recorded as it stopped, so ``taskloom resume`` takes it up now.
                    assert journal is not None
                    try:
                        journal.finish(
                            run_id, time.time(),
                            Failed(f"Run {why}: {error!r}", self._flow_result()),
                            self.traces, self.plan, self._logged, self.unstored(),
                        )
                    except Exception as failure:
                        log.warning("run %s: its end could not be recorded: %r", run_id, failure)
            raise
        self._end(session, keep_values=True)
        state = self._flow_handled(self._flow_state()).replace(run_id=run_id)
        _log_flow_end(self.flow.name, run_id, state)
        if journal is not None:
            journal.finish(
                run_id, time.time(), state, self.traces, self.plan, self._logged, self.unstored()
            )
        if observer is not None:
            observer.run_finished(state)
        return state

    def unstored(self) -> frozenset[int]:
        """The tasks this run (a resume) seeded successful without their results
        (``Resumed.unstored``): the journal keeps no result for them."""
        return frozenset() if self.resumed is None else self.resumed.unstored

    def _flow_started(self) -> None:
        """The flow's state handlers on ``Scheduled`` -> ``Running``. A replacement that is
        not ``Running`` is ignored (a run, once started, runs); a handler that raises is
        logged as a warning."""
        flow = self.flow
        self._flow_running = Running("Running flow.")
        if flow.state_handlers:
            state, failed = call_state_handlers(
                flow, f"flow {flow.name!r}", flow.state_handlers, Scheduled("Flow run scheduled."),
                self._flow_running,
            )
            if failed:
                log.warning("flow %r: %s", flow.name, state.message)
            elif isinstance(state, Running):
                self._flow_running = state

    def _end(self, session: ExecutorRun, *, keep_values: bool) -> None:
        """End the executor's side of the run; with ``keep_values``, first materialise.

        One method, because the order is the rule: a ``DeferredResult`` is valid only
        until ``session.end()`` releases it. ``session.end()`` is called nowhere else. The
        task log (``recording``), which may be fetching one, stops first.
        """
        if self.task_log is not None:
            self._logged = self.task_log.close()
            # It refers to this scheduler: dropped, the two are freed when the run's
            # references go, not by a collection of the cycle they were.
            self.task_log = None
        try:
            if keep_values:
                self._keep_seeded_children()
                self._materialize()
        finally:
            session.end()

    def _keep_seeded_children(self) -> None:
        """A mapped task seeded with its children (a resume's ``Mapped``) that did not map
        in this run (it had finished, or what it waits for did not, or the run stopped)
        keeps them in the record, as seeded: a resume of this run finds them (it would
        find a mapped task of no children, and what maps over it would map over none)."""
        seeded, nodes, expansions = self.args.seeded, self.nodes, self.expansions
        for i, state in seeded.items():
            if (
                isinstance(state, Mapped) and state.map_states and i not in expansions
                and nodes[i].mapped is not None
            ):
                name = self.traces[i].name
                self.traces.extend(
                    ChildTrace(child_name(name, k), child, i, k)
                    for k, child in enumerate(state.map_states)
                )

    def _materialize(self) -> None:
        """Give the final states real values where the executor left deferred ones (a
        success whose value can stay where it is fetches it when it is first read: the
        caller may never read it), and the inputs the journal keeps for a resume (of tasks
        whose state ``keeps_inputs``); note the exceptions they hold (``errors``) on the
        way, a pass over the traces being where the time goes at a million tasks."""
        errors = self.errors
        for trace in self.traces:
            state = trace.state
            result = state.result
            if type(result) not in SCALARS:  # most results are neither of these
                if isinstance(result, DeferredResult):
                    fetch = result.keep() if type(state) is Success else None
                    state = trace.state = (
                        _with_value(state) if fetch is None else fetched_on_read(state, fetch)
                    )
                elif isinstance(result, BaseException):
                    errors.append(result)
            if state.cached_inputs:
                state = trace.state = state.replace(cached_inputs=resolve_deferred(state.cached_inputs))
            if trace.inputs is not None and type(state).keeps_inputs:
                trace.inputs = resolve_deferred(trace.inputs)
        # A mapped task's state was made of its children's as they came back (``_mapped``):
        # where those left values deferred, it takes their final states, and their values.
        # One whose children did not all finish (one paused, the run stopped) is ``Mapped``
        # with them, as in Prefect, so its children's states can be read (a paused
        # child's inputs): its handlers are not told, as it did not finish.
        traces = self.traces
        for i, exp in self.expansions.items():
            state = traces[i].state
            if type(state) is Running:
                traces[i].state = mapped_state([traces[c].state for c in exp.slots])
                continue
            result = state.result  # (a list: a state handler may have made it another)
            if (
                isinstance(state, Mapped) and isinstance(result, list)
                and not SCALARS.issuperset(map(type, result)) and holds_deferred(result)
            ):
                children = [traces[c].state for c in exp.slots]
                traces[i].state = state.replace(
                    result=[child.result for child in children], map_states=children
                )

    def _take_finished(self, session: ExecutorRun, error: BaseException) -> None:
        """After an interrupt: take what finished before it and did not come back yet,
        so it is recorded as finished. A chain interrupted in one of its links hands back
        the links before it (``attempt.finished_before``); an executor that can
        (``interrupt``) stops its bodies and hands back what its workers finished."""
        results = finished_before(error)
        interrupt = getattr(session, "interrupt", None)
        if callable(interrupt):
            try:
                results = [*results, *interrupt(INTERRUPT_GRACE)]
            except Exception as failure:
                log.warning("run %s: what the workers finished was not taken back: %r",
                            self.args.run_id, failure)
        try:
            self._take(results)
        except Exception as failure:  # the interrupt goes on up, not this
            log.warning("run %s: finished tasks not taken: %r", self.args.run_id, failure)

    def _salvage(self, error: BaseException, why: str) -> None:
        """After the run stopped (``why``: "interrupted", or "stopped by an error"): tasks
        waiting for a retry end ``Cancelled``, and tasks handed to the executor that did not
        come back end ``Failed``, each with the inputs it was given, so a resume runs them
        again from those. Tasks never reached keep their ``Pending`` state (a resume runs
        them after what they wait for)."""
        due = {i for _, i in self.retries}
        for i, trace in enumerate(self.traces):
            if trace.inputs is None or self.finished[i] or isinstance(trace.state, Paused):
                continue
            if i in due:
                trace.state = Cancelled(
                    f"Run {why} while the task waited to retry: {error!r}",
                    cached_inputs=trace.inputs,
                )
            else:
                trace.state = Failed(
                    f"Run {why} while the task ran: {error!r}", cached_inputs=trace.inputs
                )

    # -- the loop -------------------------------------------------------------------------------

    def _loop(self) -> None:
        session = self.session
        assert session is not None
        # Runs decided ahead of the executor, at most: its slots' ``AHEAD_PER_SLOT``, topped
        # up once half are back (an executor that does not say its slots: no bound).
        slots = getattr(session, "slots", None)
        ahead = AHEAD_PER_SLOT * max(1, slots) if isinstance(slots, int) else sys.maxsize
        refill = ahead // 2
        while True:
            # (LocalExecutor: a result a turn, which most often readies none.)
            if self.ready and self.in_flight <= refill:
                batch = self._decide_ready(ahead - self.in_flight)
                if batch:
                    self._submit(batch)
            if not self.in_flight and not self.retries:
                return
            timeout = None
            if self.retries:
                timeout = max(0.0, self.retries[0][0] - time.monotonic())
            if self.in_flight:
                self._take(session.collect(timeout))
            elif timeout:
                interruptible.sleep(timeout)
            if self.retries:
                self._release_due_retries()

    def _submit(self, batch: list[TaskRun]) -> None:
        session = self.session
        assert session is not None
        if session.runs_chains:
            batch = self._grouped(batch, session.timings())
        if self.observer is not None:
            for run in batch:
                self.observer.task_changed(run.key, self.traces[run.key].name, _RUNNING)
        session.submit(batch)
        self.in_flight += len(batch)

    def _grouped(self, batch: list[TaskRun], timings: Timings | None) -> list[TaskRun]:
        """The runs of ``batch`` to hand over, each with its group (``TaskRun.then``); a
        run that joined the group of a run before it is handed over as its member."""
        # Tasks no run of the batch can take: what ``_may_follow`` refuses, it refuses for
        # every run of the batch.
        refused: set[int] = set()
        if timings is None or len(batch) == 1:  # no run of the batch may join another's
            n, dependents = len(self.nodes), self.dependents
            may_start = self._may_start_group
            for run in batch:
                # (``_group_after``'s own first checks, here: most runs start no group. A
                # child starts one only with a child after it: ``_child_chain_after``.)
                i = run.key
                if may_start(i) if i < n else i in dependents:
                    self._group_after(run, None, timings, refused)
            return batch
        roots = {run.key: run for run in batch}
        heads: list[TaskRun] = []
        nodes = self.nodes
        n = len(nodes)
        for run in batch:
            i = run.key
            if roots.pop(i, None) is None:
                continue  # a member of a group before it
            heads.append(run)
            # (``_group_after``'s first check, without its frame: W1's runs, all but the
            # first, find their reduce refused.)
            if i >= n or not refused.issuperset(nodes[i].downstream):
                self._group_after(run, roots, timings, refused)
        return heads

    def _group_after(
        self,
        head: TaskRun,
        roots: dict[int, TaskRun] | None,
        timings: Timings | None,
        refused: set[int],
    ) -> None:
        """Give run ``head`` its group: the tasks downstream of it that may follow it where
        it runs (see "Follow-ons" in the module docstring), in an order in which each comes
        after its sources. ``roots``: the other runs of its batch, which may join it as
        members (taken out of ``roots`` when they do); ``refused``: tasks found unable to
        join any group of this batch (not looked at again)."""
        i = head.key
        nodes = self.nodes
        if i >= len(nodes):
            group = self._child_chain_after(i)
        elif refused.issuperset(nodes[i].downstream):  # none, or refused (W1: its reduce)
            return
        elif not roots and not self._may_start_group(i):
            return
        else:
            group = self._grow(head, roots, timings, refused)
        if group:
            head.then = group
            self.chains[i] = group

    def _may_start_group(self, i: int) -> bool:
        """Whether some task right after run ``i`` waits for no other unfinished task: with
        no other run of its batch to pull in, a group's first member is such a task (``_grow``
        takes one only once its other upstream tasks finished). On LocalExecutor, each of
        W1's thousand runs is thus not walked to its reduce, which waits for the others."""
        waiting = self.waiting  # counts run ``i``, not finished
        for j in self.nodes[i].downstream:  # (a loop: ``any`` of a generator costs a frame)
            if waiting[j] == 1:
                return True
        return False

    def _grow(
        self,
        head: TaskRun,
        roots: dict[int, TaskRun] | None,
        timings: Timings | None,
        refused: set[int],
    ) -> tuple[FollowOn, ...]:
        """The group of ``head`` (see ``_group_after``), grown breadth first: a task is
        looked at each time one of its upstream tasks joins, and taken once every upstream
        task is finished or in the group (or is one of ``roots``, pulled in with it)."""
        nodes, finished, traces = self.nodes, self.finished, self.traces
        seconds: Mapping[str, float] = timings.seconds if timings is not None else {}
        budget = timings.budget if timings is not None else 0.0
        inside = {head.key}
        group: list[FollowOn] = []
        spent = 0.0  # the expected seconds of the members so far
        timed = True  # every member so far was timed
        chain = True  # so far a chain: each member the sole task after the one before
        last = head.key
        head_charged = False  # runs that join wait for the head: it counts from then on
        # For a task seen waiting for an upstream task that may still join: where in its
        # upstream list the first such one is (a task of many inputs is scanned once).
        blocked: dict[int, int] = {}
        # A chain first, the common case, in a tight loop (what the loop below would take
        # as links): the sole task after the one before, taking it as its only input.
        claimed, may_follow = self.claimed, self._may_follow
        while len(group) < MAX_GROUP:
            after = nodes[last].downstream
            if len(after) != 1:
                break
            j = after[0]
            node = nodes[j]
            if len(node.upstream) != 1 or len(node.direct) > 1 or node.nested or not may_follow(j):
                break
            key = node.direct[0][0] if node.direct else None
            group.append(FollowOn(j, node.task, node.constants, ((key, last),)))
            claimed.add(j)
            inside.add(j)
            last = j
            own = seconds.get(node.task.name)
            if own is None:
                timed = False
            else:
                spent += own
        queue = deque(nodes[last].downstream)
        while queue and len(group) < MAX_GROUP:
            j = queue.popleft()
            if j in inside or j in refused:
                continue
            upstream = nodes[j].upstream
            at = blocked.get(j)
            if at is None:
                if not self._may_follow(j):
                    refused.add(j)
                    continue
                at = 0
            elif upstream[at] not in inside:
                continue  # what it waits for has not joined
            pulled: list[TaskRun] = []
            cost = 0.0  # of the runs it pulls in, and of the head if they are the first
            link = chain and len(nodes[last].downstream) == 1 and at == 0
            waiting = first_pulled = -1
            for k in range(at, len(upstream)):
                u = upstream[k]
                if u in inside:
                    link = link and u == last
                    continue
                if finished[u]:
                    if not _upstream_follows(traces[u].state):
                        waiting = -2  # decided in the parent: skipped, trigger failed, ...
                        break
                    continue
                root = roots.get(u) if roots is not None else None
                if root is None:  # not ready: it may still join this group
                    waiting = k
                    break
                known = seconds.get(root.task.name)
                if known is None or len(pulled) == MAX_PULLED or not self._may_join(root):
                    waiting = -2
                    break
                if not head_charged and not pulled:
                    before = seconds.get(head.task.name)
                    if before is None:
                        waiting = -2
                        break
                    cost += before
                if not pulled:
                    first_pulled = k
                pulled.append(root)
                cost += known
                if spent + cost > budget:
                    waiting = -2
                    break
            if waiting == -2:
                refused.add(j)
                continue
            if waiting >= 0:  # looked at again once this one joins
                blocked[j] = first_pulled if pulled else waiting
                continue
            node = nodes[j]
            own = seconds.get(node.task.name)
            if not (link and not pulled):
                # The group branches: it must be known to fit in the budget.
                if not timed or own is None or spent + cost + own > budget:
                    continue
                chain = False
            if pulled and roots is not None:
                head_charged = True
                for root in pulled:
                    del roots[root.key]
                    group.append(self._joined(root))
                    inside.add(root.key)
                    queue.extend(nodes[root.key].downstream)
            group.append(self._member(j, node, inside))
            self.claimed.add(j)
            inside.add(j)
            queue.extend(node.downstream)
            last = j
            spent += cost
            if own is None:
                timed = False
            else:
                spent += own
        return tuple(group)

    def _may_follow(self, j: int) -> bool:
        """Whether task ``j`` may be a member of a group (its sources aside): followable
        (``plan``), runnable, not finished, never attempted, not claimed by another group,
        not seeded and not a start task (those are decided from their seeded state)."""
        args = self.args
        return (
            self.nodes[j].followable
            and self.runnable[j] != 0
            and not self.finished[j]
            and not self.traces[j].attempts
            and j not in self.claimed
            and j not in args.seeded
            and j not in args.starts
        )

    def _may_join(self, run: TaskRun) -> bool:
        """Whether a run decided here may join another run's group as a member: a first
        attempt of a followable task (no retry, resume or loop to carry on)."""
        j = run.key
        args = self.args
        return (
            j < len(self.nodes)
            and self.nodes[j].followable
            and run.run_count == 1
            and not run.resume
            and run.loop_count == 1
            and j not in args.seeded
            and j not in args.starts
        )

    def _joined(self, run: TaskRun) -> FollowOn:
        """Run ``run`` as a member of another's group: claimed, and its trace as if it was
        never handed over (``_take`` fills it in when it comes back; if it does not run,
        it is decided again from the start)."""
        trace = self.traces[run.key]
        trace.attempts = 0
        trace.inputs = None
        self.claimed.add(run.key)
        return FollowOn(run.key, run.task, run.inputs)

    def _member(self, j: int, node: Node, inside: set[int]) -> FollowOn:
        """Task ``j`` as a member of a group of the tasks ``inside``: the results of its
        finished upstream tasks as constants, the others as sources."""
        traces = self.traces
        known: dict[str, Any] | None = None  # the node's constants and finished results
        sources: list[tuple[str | None, int]] = []
        for key, u in node.direct:
            if u in inside:
                sources.append((key, u))
            else:
                if known is None:
                    known = dict(node.constants)
                known[key] = traces[u].state.result
        if len(sources) != len(node.upstream):  # upstream tasks that feed it no argument
            fed = {u for _, u in sources}
            sources.extend((None, u) for u in node.upstream if u in inside and u not in fed)
        nested: tuple[tuple[str, Any], ...] = ()
        if node.nested:
            results = {
                self.nodes[u].task: InGroup(u) if u in inside else traces[u].state.result
                for u in node.upstream
            }
            nested = tuple((key, rebuild(value, results)) for key, value in node.nested)
        constants = node.constants if known is None else known
        return FollowOn(j, node.task, constants, tuple(sources), None, nested)

    def _take(self, results: list[TaskResult]) -> None:
        """Process what the executor handed back: runs, and the members of their groups that
        ran with them (after the tasks they take from, in the order they ran)."""
        heads: list[int] = []
        traces, claimed, task_of = self.traces, self.claimed, self.task_of
        # For ``_finish``'s own steps, taken here for a plain success (most results), in
        # the loop, without its frame: what it reads of the run, read once.
        done, waiting, nodes = self.finished, self.waiting, self.nodes
        n = len(nodes)
        note = self.task_log.note if self.task_log is not None else None
        plain = self.observer is None
        head_queued: float | None = None
        for key, state, started, finished, worker, ended, loop, location in results:
            task = task_of[key]
            trace = traces[key]
            trace.started, trace.finished, trace.worker = started, finished, worker
            trace.location = location
            if key in claimed:
                claimed.discard(key)
                trace.attempts = 1
                trace.queued = head_queued  # handed over with the run it follows
                if type(state).keeps_inputs:  # else _finish drops them: not built at all
                    trace.inputs = self._inputs_of(key)
            else:
                heads.append(key)
                head_queued = trace.queued
            if isinstance(state, Failed):  # formatted here for the local executor, else in the worker
                trace.traceback = failure_traceback(state)
            if task.__dict__.get("task_run_name") is not None:
                trace.run_name = state.context.get("task_run_name", trace.run_name)
            if ended:  # ENDRUN: exactly this state, no retry and no cache
                self._settle(key, state)
            elif type(state) is not Success or task.cache_for is not None:
                self._complete(key, state, loop)
            elif not plain or task_logger(task.name).isEnabledFor(logging.INFO):
                self._finish(key, state)  # nothing to decide (see _complete)
            else:
                # Most runs: ``_finish``'s steps, inline (no observer to tell, nothing to
                # log: keep the two alike). A run's key is never a mapped task's (it maps,
                # it does not run), whose ``childwise`` downstream ``_finish`` skips.
                trace.state = state
                trace.inputs = None  # (a success keeps none)
                done[key] = True
                if note is not None:
                    note(key)
                if key >= n:
                    self._finish_child(key)
                    continue
                for d in nodes[key].downstream:
                    waiting[d] -= 1
                    # (``_ready_if_free``'s own check of a group's members, first: a chain's.)
                    if waiting[d] == 0 and d not in claimed:
                        self._ready_if_free(d)
        self.in_flight -= len(heads)
        if not self.chains:  # (most runs: no group, nothing to look at)
            return
        for head in heads:
            for follow in self.chains.pop(head, ()):
                j = follow.key
                if j in claimed:  # the worker did not run it (or never got to): decide it here
                    claimed.discard(j)
                    if self.waiting[j] == 0 and not self.finished[j]:
                        self.ready.append(j)

    def _release_due_retries(self) -> None:
        now = time.monotonic()
        batch: list[TaskRun] = []
        while self.retries and self.retries[0][0] <= now:
            _, i = heapq.heappop(self.retries)
            trace = self.traces[i]
            run = self._task_run(i, trace.inputs or {}, resume=isinstance(trace.state, Paused))
            if isinstance(trace.state, Retrying):  # a looping task retries at the pass it failed
                run.loop_count, run.loop_result = trace.state.loop_count, trace.state.loop_result
            batch.append(run)
        if batch:
            self._submit(batch)

    # -- deciding -------------------------------------------------------------------------------

    def _decide_ready(self, most: int) -> list[TaskRun]:
        """Decide ready tasks (``_decide``), the last readied first, until ``most`` runs are
        due or none is ready: the runs the executor must do."""
        batch: list[TaskRun] = []
        ready, nodes, traces = self.ready, self.nodes, self.traces
        n = len(nodes)
        fresh = self._fresh
        while ready and len(batch) < most:
            i = ready.pop()
            if i >= n:  # a child of a mapped task
                outcome = self._decide_child(i)
            else:
                if fresh and nodes[i].followable:
                    # The default trigger, no output cache, not a parameter (``plan``),
                    # nothing seeded: it runs when every upstream task succeeded plainly
                    # (``decide``'s shortcut, ``runs_by_default``), which is most tasks of
                    # most runs. Here, not in ``_decide``: a call less a task.
                    node = nodes[i]
                    for j in node.upstream:
                        if type(traces[j].state) not in PLAIN_SUCCESS:
                            break
                    else:
                        batch.append(self._task_run(i, self._inputs(node), False))
                        continue
                outcome = self._decide(i)
            if outcome is not None:
                batch.append(outcome)
        return batch

    def _decide(self, i: int) -> TaskRun | None:
        """Finish task ``i`` of the flow (not a child: ``_decide_child``) without running
        it, or return the run the executor must do (``_decide_ready`` takes the most common
        case first)."""
        node = self.nodes[i]
        task = node.task
        args = self.args
        if node.mapped is not None:
            self._map(i)
            return None
        if isinstance(task, ParameterTask):
            value = task.parse(args.parameters[task.name])
            self._finish(i, Success("Task run succeeded.", value))
            return None
        seeded = args.seeded.get(i)
        resume = isinstance(seeded, Resume)
        if i in args.starts:
            inputs = self._start_inputs(i, seeded)
            resume = True
        else:
            traces = self.traces
            upstream = node.upstream  # (a comprehension is a call: none for no upstream)
            if runs_by_default(task, [traces[j].state for j in upstream] if upstream else ()):
                decided = None
            else:
                states = {edge: traces[j].state for edge, j in node.in_edges}
                decided = decide(task, states, resume=resume)
            if decided is not None:
                if isinstance(decided, Paused):
                    decided = decided.replace(cached_inputs=self._inputs(node))
                self._settle(i, self._handled(i, decided))
                return None
            inputs = self._inputs(node)
        if task.cache_for is None:  # _cached_or_run's own first check: a frame less a task
            return self._task_run(i, inputs, resume)
        return self._cached_or_run(i, inputs, resume, seeded)

    def _cached_or_run(
        self, i: int, inputs: dict[str, Any], resume: bool, seeded: State[Any] | None
    ) -> TaskRun | None:
        """Finish ``i`` with a valid cached result, or return its run."""
        task = self.task_of[i]
        if task.cache_for is not None:
            hit = lookup(
                task,
                self._cache_key(i),
                resolve_deferred(inputs),
                self.args.parameters,
                self.cache_store,
                seeded,
            )
            if hit is not None:
                self._finish(i, self._handled(i, hit))
                return None
        return self._task_run(i, inputs, resume)

    def _cache_key(self, i: int) -> str:
        """The output cache's key of task or child ``i``: children keep apart by index."""
        key = cache_key(self.task_of[i], self.flow.name)
        index = self.map_index[i]
        return key if index is None else f"{key}[{index}]"

    def _release(self, d: int) -> None:
        """One fewer upstream task for ``d`` to wait for; ready it when none is left."""
        waiting = self.waiting
        waiting[d] -= 1
        if waiting[d] == 0:
            self._ready_if_free(d)

    def _ready_if_free(self, d: int) -> None:
        """Ready ``d``, which waits for no upstream task now, unless it may not run here,
        finished already, is a start task (decided from its seeded state) or is claimed by
        a group (its worker runs it)."""
        if (
            self.runnable[d]
            and not self.finished[d]
            and d not in self.args.starts
            and d not in self.claimed
        ):
            self.ready.append(d)

    def _inputs_of(self, i: int) -> dict[str, Any]:
        """The inputs of task or child ``i``, from its upstream tasks' states now."""
        if i < len(self.nodes):
            return self._inputs(self.nodes[i])
        return self._child_inputs_of(i)

    def _inputs(self, node: Node) -> dict[str, Any]:
        traces = self.traces
        inputs = dict(node.constants)
        for key, j in node.direct:
            inputs[key] = traces[j].state.result
        if node.nested:
            results = {self.nodes[j].task: traces[j].state.result for j in node.upstream}
            for key, value in node.nested:
                inputs[key] = rebuild(value, results)
        return inputs

    def _start_inputs(self, i: int, seeded: State[Any] | None) -> dict[str, Any]:
        stored = dict(seeded.cached_inputs or {}) if seeded is not None else {}
        return {**self.nodes[i].constants, **stored}

    def _task_run(self, i: int, inputs: dict[str, Any], resume: bool) -> TaskRun:
        trace = self.traces[i]
        trace.attempts += 1
        now = time.time()
        # Runs queued within a millisecond share one float (24 bytes a task at a million).
        if now - self._queued_at >= 0.001:
            self._queued_at = now
        trace.queued = self._queued_at
        trace.inputs = inputs
        task = self.task_of[i]
        # (Positional: a call with keywords costs more. ``()``: no group yet, ``_grouped``'s.)
        run = TaskRun(i, task, inputs, trace.attempts, resume, (), self.map_index[i])
        if task.state_handlers or task.on_failure is not None:  # (``has_handlers``, inline)
            # the state before the attempt, for its handlers
            run.previous = trace.state.replace(cached_inputs=None)
        return run

    # -- state handlers -------------------------------------------------------------------------

    def _handled(self, i: int, new: State[Any], old: State[Any] | None = None) -> State[Any]:
        """The state handlers of task or child ``i`` on a change the scheduler decided,
        from ``old`` (default: its state now) to ``new``; then ``on_failure`` if the state
        they leave is failed (a decided state is final, but for a ``Retrying``). Returns
        the state to keep. A task without handlers costs one check."""
        task = self.task_of[i]
        if not has_handlers(task):
            return new
        index = self.map_index[i]
        owner = f"task {task.name if index is None else f'{task.name}[{index}]'!r}"
        if old is None:
            old = self.traces[i].state
        state, _ = call_state_handlers(task, owner, task.state_handlers, old, new)
        if state.is_failed() and task.on_failure is not None:
            state = call_on_failure(task, owner, task.on_failure, state)
        return state

    def _mapped(self, i: int, exp: _Expansion) -> State[Any]:
        """The final state of mapped task ``i``, its children done: ``Mapped``, reported
        to its handlers as ``Pending`` -> ``Mapped`` (as Prefect reports a mapped task)."""
        state = mapped_state([self.traces[c].state for c in exp.slots])
        if not has_handlers(self.task_of[i]):
            return state
        if holds_deferred(state.result):  # (a handler reads values, as on every executor)
            state = mapped_state([_with_value(s) for s in state.map_states])
        return self._handled(i, state, self.args.seeded.get(i) or Pending(NOT_RUN_MESSAGE))

    def _flow_handled(self, final: State[FlowResult]) -> State[FlowResult]:
        """The flow's ``terminal_state_handler``, state handlers (``Running`` -> final) and
        ``on_failure`` on its final state. A replacement that does not hold the tasks'
        states as its result is given them; a handler that fails makes the flow
        ``Failed``, naming it."""
        flow = self.flow
        result = final.result
        assert result is not None
        state: State[Any] = final
        owner = f"flow {flow.name!r}"
        terminal = flow.terminal_state_handler
        if terminal is not None:
            references: set[State[Any]] = set()
            for i in self.plan.numbers(flow.reference_tasks()).values():
                references.update(_children_of(self.traces[i].state))
            try:
                returned: object = terminal(flow, state, references)
            except Exception as error:
                returned = Failed(
                    f"Unexpected error while calling terminal_state_handler "
                    f"{handler_name(terminal)} of {owner}: {error!r}", error
                )
            if isinstance(returned, State):
                state = returned
            elif returned is not None:
                state = Failed(
                    f"terminal_state_handler {handler_name(terminal)} of {owner} returned a "
                    f"{type(returned).__qualname__}; it must return a State or None"
                )
        if flow.state_handlers:
            state, _ = call_state_handlers(flow, owner, flow.state_handlers, self._flow_running, state)
        if state.is_failed() and flow.on_failure is not None:
            state = call_on_failure(flow, owner, flow.on_failure, state)
        if not isinstance(state.result, FlowResult):
            state = state.replace(result=result)
        return state

    # -- completing -----------------------------------------------------------------------------

    def _complete(
        self, i: int, state: State[Any], loop: tuple[int, Any] | None = None
    ) -> None:
        """Take the state an attempt ended in: retry, store in the cache, or finish.
        (``_take`` finishes a plain ``Success`` of a task without a cache itself: most
        runs, with nothing to decide.)

        ``loop`` is where a looping task's retry starts (``TaskResult.loop``)."""
        task = self.task_of[i]
        trace = self.traces[i]
        run_count = trace.attempts
        if isinstance(state, Retrying):  # the RETRY signal
            state = state.replace(
                run_count=run_count, cached_inputs=trace.inputs,
                context={**state.context, "task_run_count": run_count},
            )
            self._schedule(i, state, state.start_time)
            return
        if task.retries_after(state, run_count):
            delay = task.retry_delay or _dt.timedelta(0)
            loop_count, loop_result = loop if loop is not None else (1, None)
            retry = Retrying(
                f"Retrying Task (after attempt {run_count} of {task.max_retries + 1})",
                cached_inputs=trace.inputs,
                start_time=_dt.datetime.now(_dt.timezone.utc) + delay,
                run_count=run_count,
                loop_count=loop_count,
                loop_result=loop_result,
                # as Prefect: the attempt's facts (tags, run name) and which attempt it was
                context={**state.context, "task_run_count": run_count},
            )
            decided = self._handled(i, retry, state)
            if isinstance(decided, Retrying):
                self._schedule(i, decided, decided.start_time)
                return
            self._settle(i, decided)
            return
        if state.is_failed() and run_count <= task.max_retries:
            _log_no_retry(task, state)
        if isinstance(state, Paused):
            state = state.replace(cached_inputs=trace.inputs)
        elif task.cache_for is not None and type(state) is Success:
            remember(
                task,
                self._cache_key(i),
                resolve_deferred(state.result),
                state.message,
                resolve_deferred(trace.inputs or {}),
                self.args.parameters,
                self.cache_store,
            )
        self._settle(i, state)

    def _log_end(self, i: int, state: State[Any]) -> None:
        """Log the line that ends a task run (Prefect's), at INFO, with the task's fields."""
        logger = task_logger(self.task_of[i].name)
        if not logger.isEnabledFor(logging.INFO):
            return
        trace, run_id = self.traces[i], self.args.run_id
        fields = {
            "flow_run_id": run_id,
            "task_name": self.task_of[i].name,
            "task_run_id": f"{run_id}.{i}.{trace.attempts}",
            "map_index": trace.map_index,
            "attempt": trace.attempts,
            "task_run_name": trace.run_name,
        }
        label = f"Task {trace.name!r}" + ("" if trace.run_name is None else f" ({trace.run_name})")
        logger.info(
            "%s: Finished task run for task with final state: %r",
            label, type(state).__name__, extra=fields,
        )

    def _schedule(self, i: int, state: State[Any], start_time: _dt.datetime | None) -> None:
        self._log_end(i, state)
        self.traces[i].state = state
        if self.observer is not None:
            self.observer.task_changed(i, self.traces[i].name, state)
        delay = 0.0
        if start_time is not None:
            delay = (start_time - _dt.datetime.now(_dt.timezone.utc)).total_seconds()
        heapq.heappush(self.retries, (time.monotonic() + max(0.0, delay), i))

    def _settle(self, i: int, state: State[Any]) -> None:
        """Record a decided or returned state: finished, or paused until resumed."""
        if isinstance(state, Paused):
            trace = self.traces[i]
            trace.state = state
            if self.observer is not None and state.start_time is None:
                self.observer.task_changed(i, self.traces[i].name, state)
            if state.start_time is not None:  # PAUSE(start_time=...) resumes by itself
                trace.inputs = state.cached_inputs or {}
                self._schedule(i, state, state.start_time)
            elif self.task_log is not None:
                self.task_log.note(i)
            return
        self._finish(i, state)

    def _finish(self, i: int, state: State[Any]) -> None:
        # (``_take`` takes these steps inline for a plain success: keep the two alike.)
        # _log_end's own check, first here: most runs log nothing, and a call is a frame.
        if task_logger(self.task_of[i].name).isEnabledFor(logging.INFO):
            self._log_end(i, state)
        trace = self.traces[i]
        trace.state = state
        if not type(state).keeps_inputs:
            trace.inputs = None  # nothing will read them (a run of many tasks holds less)
        self.finished[i] = True
        if self.task_log is not None:
            self.task_log.note(i)
        if self.observer is not None:
            self.observer.task_changed(i, trace.name, state)
        if i >= len(self.nodes):  # a child: its dependents, then maybe its parent
            self._finish_child(i)
            return
        mapped = i in self.expansions
        waiting = self.waiting
        for d in self.nodes[i].downstream:
            if not (mapped and i in self.nodes[d].childwise):  # those were released by _map
                waiting[d] -= 1  # (``_release``, without its frame: a task has one or more)
                if waiting[d] == 0:
                    self._ready_if_free(d)

    # -- the end --------------------------------------------------------------------------------

    def _flow_result(self) -> FlowResult:
        # (Lists, not generators: a generator resumes a frame for every task. The traces
        # of mapped tasks' children come after the tasks': not read.)
        nodes = self.nodes
        states = [t.state for t in islice(self.traces, len(nodes))]
        return FlowResult(zip([node.task for node in nodes], states))

    def _flow_state(self) -> State[FlowResult]:
        """The flow's final state (see the module docstring), once the loop is over.

        What only the loop reads goes first: at a million tasks, the 48 MB of its
        per-slot lists are where the result's dict can go, not on top of them."""
        self.waiting, self.runnable, self.finished = [], bytearray(), bytearray()
        self.task_of, self.parent, self.map_index = [], [], []
        result = self._flow_result()
        traces = self.traces
        paused = [t.name for t in traces if isinstance(t.state, Paused)]
        if paused:
            return Paused(f"Waiting to be resumed: {', '.join(paused)}", result)
        references: list[State[Any]] = []
        for i in self.plan.numbers(self.flow.reference_tasks()).values():
            state = traces[i].state
            references.extend(state.map_states if isinstance(state, Mapped) else (state,))
        if any(s.is_failed() for s in references):
            return Failed("Some reference tasks failed.", result)
        if all(s.is_successful() for s in references):
            return Success("All reference tasks succeeded.", result)
        if all(s.is_finished() for s in references):
            return Success("No reference tasks failed.", result)
        return Running("Some reference tasks did not run.", result)


def _upstream_follows(state: State[Any]) -> bool:
    """Whether a finished upstream task lets a followable task run (as ``decide`` would):
    it ended in a state that ``follows``, or, mapped, each of its children did."""
    if isinstance(state, Mapped):
        return all(follows(s) for s in state.map_states)
    return follows(state)


def _log_no_retry(task: Task[Any, Any], state: State[Any]) -> None:
    """Say why a failed task with retries left is not retried: ``retry_on`` (Prefect's line)."""
    logger = task_logger(task.name)
    if logger.isEnabledFor(logging.INFO):
        logger.info(
            "Task %r: Skipping retry. Exception of type %r is not an instance of the retry on "
            "exception types.", task.name, type(state.result).__name__,
        )


def _log_flow_end(flow_name: str, run_id: str, state: State[Any]) -> None:
    """Log the line that ends a flow run (Prefect's wording), at INFO."""
    logger = flow_logger(flow_name)
    if not logger.isEnabledFor(logging.INFO):
        return
    extra = {"flow_run_id": run_id}
    if isinstance(state, Success):
        logger.info("Flow run SUCCESS: all reference tasks succeeded", extra=extra)
    elif isinstance(state, Failed):
        logger.info("Flow run FAILED: some reference tasks failed.", extra=extra)
    else:
        logger.info("Flow run %s: %s", type(state).__name__.upper(), state.message, extra=extra)


def _executor_for(flow: Flow, given: Executor | None) -> Executor:
    """The run's executor: the one given, else the flow's own (``flow.executor``), else
    ``LocalExecutor()``. Never silently another: a flow's executor is what its runs use."""
    if given is not None:
        return given
    return flow.executor if flow.executor is not None else LocalExecutor()


def _with_value(state: State[Any]) -> State[Any]:
    """``state`` with the value of a deferred result (valid until the run's end)."""
    result = state.result
    return state.replace(result=result.resolve()) if isinstance(result, DeferredResult) else state


def check_run(
    flow: Flow,
    *,
    parameters: Mapping[str, Any],
    context: Mapping[str, Any],
    task_states: Mapping[object, State[Any]],
    start_tasks: Iterable[object] | None,
) -> None:
    """Raise what ``run_flow`` would raise for these arguments before any task runs,
    without running (a scheduled flow checks before it waits for its first due time)."""
    _run_args.check(
        flow, plan(flow), parameters=parameters, context=context, task_states=task_states,
        start_tasks=start_tasks,
    )


def _sigterm_to_exit(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def run_flow(
    flow: Flow,
    *,
    parameters: Mapping[str, Any],
    executor: Executor | None,
    context: Mapping[str, Any],
    task_states: Mapping[object, State[Any]],
    start_tasks: Iterable[object] | None,
    cache_store: CacheStore | None,
    journal: Journal | bool = True,
    resumed: Resumed | None = None,
    progress: RunObserver | bool = False,
) -> State[FlowResult]:
    """Run ``flow``; see ``Flow.run``. Every check on the input happens before any task runs."""
    # The plan and the run's records built with the collector off, then left out of its
    # passes while the run goes, as is everything that existed before (``RunHeap``).
    with RunHeap() as heap:
        compiled = plan(flow)
        args = _run_args.check(
            flow,
            compiled,
            parameters=parameters,
            context=context,
            task_states=task_states,
            start_tasks=start_tasks,
        )
        # Results and targets: templates and stores checked before any task runs, of
        # every task if the flow has a result, else of those the plan says persist.
        nodes = compiled.nodes
        persisting = nodes if flow.result is not None else [nodes[i] for i in compiled.persisting]
        results = prepare_run(
            flow, [(node.task, node.mapped) for node in persisting], args.context, args.parameters
        )
        if results is not None:
            args.context[RESULTS_KEY] = results
        # Open the stores now: an unsafe home must stop the run before any task runs.
        if cache_store is None and compiled.caching:
            cache_store = default_cache_store()
        if journal is True:
            journal = default_journal()
        observer: RunObserver | None
        if progress is True:
            from .progress import default_progress  # the one call up into presentation

            observer = default_progress()
        else:
            observer = progress or None
        scheduler = _Scheduler(
            flow,
            compiled,
            args,
            _executor_for(flow, executor),
            cache_store,
            journal or None,
            resumed,
            observer,
        )
        heap.built()
        try:
            state = scheduler.run()
        except BaseException as error:
            # What goes on up (an interrupt, a refused input) must not keep the scheduler
            # either: its traceback reaches the scheduler's frames, and a caller may keep it
            # (a notebook keeps the last one). The states' errors, if it got to note them,
            # let go of them too, so no cycle is left for the collector.
            errors = [error, *scheduler.errors]
            del scheduler
            release_frames(errors, sys._getframe())
            del errors  # (this frame, which the traceback keeps, then holds neither)
            raise
        # Its final states must not keep the scheduler: neither through the tracebacks of
        # the errors they hold, nor through this frame, which such a traceback reaches.
        release_frames(scheduler.errors, sys._getframe())
        del scheduler
        return state
