"""The scheduler: runs a flow by deciding, task by task, what happens next.

It lives in the calling process and decides everything that needs no user code; only
tasks that must actually run go to the executor (see ``executors.base``). Vocabulary:

``waiting[i]``
    how many distinct upstream tasks of task ``i`` are not finished yet. When it reaches
    0, ``i`` is *ready*.
``ready``
    tasks to *decide*. Deciding (``_decide``) is a function of the task's upstream states:
    skip propagation, then the trigger, then the output cache. It ends in a final state
    without running the task (``Skipped``, ``TriggerFailed``, ``Paused``, ``Cached``),
    or in a ``TaskRun`` for the executor.
``in_flight``
    how many runs the executor has and has not handed back.
``retries``
    a heap of ``(due time, task)`` for tasks that failed with retries left (or raised
    ``RETRY``); when due they run again with the inputs stored on their ``Retrying`` state.
    Independent tasks keep running meanwhile.
``claimed``
    tasks offered to an executor as a *follow-on* of a run (``TaskRun.then``): a pure chain
    link whose outcome the worker can decide exactly as the scheduler would, so a chain of
    tasks costs one round trip instead of one per task. A claimed task is not readied when
    its upstream finishes; if the chain stops before it, it is released and decided here.

A task is ready as soon as its upstream tasks are finished: there are no level-by-level
barriers. The loop ends when nothing is ready, in flight or due to retry; tasks that
never became ready (downstream of a paused task, or outside ``start_tasks``) keep their
seeded state or end ``Pending("Task not run.")``.

The flow's state: ``Paused`` while any task waits to be resumed, otherwise ``Failed`` if a
reference task failed, ``Success`` if every reference task succeeded, and ``Running`` if a
reference task did not finish (a partial run).
"""

from __future__ import annotations

import datetime as _dt
import heapq
import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from ._hashing import UnhashableInputError, hash_inputs
from .attempt import FollowOn, TaskResult, TaskRun
from .caching import CacheStore, default_cache_store
from .context import context as _user_context
from .context import current as _current_context
from .context import ReadOnlyDict, date_keys, enter, leave
from .edges import Edge
from .errors import FlowDefinitionError
from .executors.base import DeferredResult, Executor, ExecutorRun, resolve_deferred
from .flow import Flow
from .journal import Journal, default_journal, task_records
from .plan import Node, plan, rebuild
from .progress import RunObserver, default_progress
from .signals import TaskloomSignal
from .states import (
    Cached,
    Failed,
    Finished,
    FlowResult,
    Paused,
    Pending,
    Resume,
    Retrying,
    Running,
    Skipped,
    State,
    Success,
    TriggerFailed,
)
from .task import ParameterTask, Task

__all__ = ["FlowResult", "run_flow"]

log = logging.getLogger("taskloom.runner")

SKIP_MESSAGE = (
    "Upstream task was skipped; if this was not the intended behavior, "
    "consider changing `skip_on_upstream_skip=False` for this task."
)
NOT_RUN_MESSAGE = "Task not run."
#: What observers are told when a task is handed to the executor.
_RUNNING: State[Any] = Running("Task handed to the executor.")


def _check_trigger(task: Task[Any, Any], upstream_states: Mapping[Edge, State[Any]]) -> State[Any] | None:
    """None when the trigger passes, else the state the task ends in."""
    try:
        # `object`: a trigger of untyped code may return anything, and "yes" must not pass.
        passed: object = task.trigger(upstream_states)
    except TaskloomSignal as signal:
        return signal.to_state()
    except Exception as error:
        return TriggerFailed(f"Unexpected error while checking task trigger: {error!r}", error)
    if passed is True:
        return None
    if passed is False:
        return TriggerFailed("Trigger failed")
    name = getattr(task.trigger, "__name__", repr(task.trigger))
    return TriggerFailed(
        f"Trigger {name!r} of task {task.name!r} returned {passed!r} "
        f"({type(passed).__name__}), not a bool: a trigger must return True or False"
    )


def _propagated(task: Task[Any, Any], upstream_states: Iterable[State[Any]]) -> State[Any] | None:
    """Skip propagation: a skipped upstream skips the task, unless one failed."""
    if not task.skip_on_upstream_skip:
        return None
    skipped = failed = False
    for state in upstream_states:
        if state.is_skipped():
            skipped = True
        elif state.is_failed():
            failed = True
    if skipped and not failed:
        return Skipped(SKIP_MESSAGE)
    return None


def _resolve_parameters(flow: Flow, given: Mapping[str, Any]) -> dict[str, Any]:
    declared = flow.parameters()
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise FlowDefinitionError(
            f"Flow {flow.name!r} got unknown parameter(s): {', '.join(unknown)}; "
            f"its parameters are: {', '.join(sorted(declared)) or 'none'}"
        )
    missing = sorted(n for n, p in declared.items() if p.required and n not in given)
    if missing:
        raise FlowDefinitionError(
            f"Flow {flow.name!r} is missing required parameter(s): {', '.join(missing)}; "
            f"pass them as flow.run(parameters={{{', '.join(repr(m) + ': ...' for m in missing)}}})"
        )
    values: dict[str, Any] = {}
    for name, parameter in declared.items():
        value = given[name] if name in given else parameter.default
        parameter.check(value)
        values[name] = value
    return values


def _run_context(flow: Flow, parameters: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    values = {**_current_context(), **extra}
    now = _dt.datetime.now(_dt.timezone.utc)
    values.setdefault("flow_run_id", str(uuid.uuid4()))
    values.setdefault("scheduled_start_time", now)
    for key, value in date_keys(values.get("date", now)).items():
        values.setdefault(key, value)
    if isinstance(values["date"], str):
        values["date"] = _dt.datetime.fromisoformat(values["date"])
    values["flow_name"] = flow.name
    values["parameters"] = ReadOnlyDict(parameters)
    return values


class _Scheduler:
    """The state of one flow run; see the module docstring."""

    def __init__(
        self,
        flow: Flow,
        executor: Executor,
        run_context: dict[str, Any],
        parameters: dict[str, Any],
        seeded: dict[int, State[Any]],
        starts: set[int],
        cache_store: CacheStore | None,
        journal: Journal | None = None,
        resumed_from: str | None = None,
        observer: RunObserver | None = None,
    ) -> None:
        self.flow = flow
        self.observer = observer
        self.journal = journal
        self.resumed_from = resumed_from
        self.nodes, self.index = plan(flow)
        self.executor = executor
        self.run_context = run_context
        self.parameters = parameters
        self.seeded = seeded
        self.starts = starts
        self._cache_store = cache_store
        n = len(self.nodes)
        self.states: list[State[Any]] = [seeded.get(i) or Pending(NOT_RUN_MESSAGE) for i in range(n)]
        self.finished = [isinstance(s, Finished) for s in self.states]
        self.waiting = [sum(not self.finished[u] for u in node.upstream) for node in self.nodes]
        self.run_counts = [0] * n
        # For the journal: when each task was handed to the executor, ran, and where.
        self.queued: list[float | None] = [None] * n
        self.timings: list[tuple[float, float, str] | None] = [None] * n
        self.inputs: dict[int, dict[str, Any]] = {}
        self.retries: list[tuple[float, int]] = []
        self.in_flight = 0
        self.claimed: set[int] = set()
        self.chains: dict[int, tuple[FollowOn, ...]] = {}
        #: The executor's side of this run: set by ``run`` (``executor.begin``).
        self.session: ExecutorRun | None = None
        self.follow_ons = False
        self.runnable = self._runnable()
        self.ready = [
            i for i in range(n)
            if self.runnable[i] and not self.finished[i] and (self.waiting[i] == 0 or i in starts)
        ]
        self.ready.reverse()  # a stack: pop() takes tasks in flow order

    def _runnable(self) -> list[bool]:
        """Which tasks this run may run: all, or the start tasks and what follows them."""
        if not self.starts:
            return [True] * len(self.nodes)
        runnable = [False] * len(self.nodes)
        stack = list(self.starts)
        while stack:
            i = stack.pop()
            if not runnable[i]:
                runnable[i] = True
                stack.extend(self.nodes[i].downstream)
        return runnable

    @property
    def cache_store(self) -> CacheStore:
        if self._cache_store is None:
            self._cache_store = default_cache_store()
        return self._cache_store

    # -- the loop -------------------------------------------------------------------------------

    def run(self) -> State[FlowResult]:
        run_id = str(self.run_context["flow_run_id"])
        journal = self.journal
        # begin() may refuse the run (a context value that cannot reach the workers):
        # before the journal records it, and before the run's context is entered.
        session = self.session = self.executor.begin(self.run_context)
        self.follow_ons = session.runs_chains
        try:
            if journal is not None and not journal.begin(
                run_id,
                self.flow.name,
                self.flow.source,
                self.parameters,
                time.time(),
                self.resumed_from,
            ):
                journal = None
            token = enter(self.run_context)
            if self.observer is not None:
                self.observer.run_started(self.flow.name, run_id, len(self.nodes))
            try:
                self._loop()
                self._materialize()
            finally:
                leave(token)
        except BaseException as error:
            # Interrupted (Ctrl-C, SIGTERM, a task's SystemExit on LocalExecutor): keep in
            # the journal what did finish, so the run does not read "Running" for ever.
            if journal is not None and isinstance(error, (KeyboardInterrupt, SystemExit)):
                # Tasks that were handed to the executor and did not come back are recorded
                # as failed with their inputs, so `taskloom resume` runs them again.
                for i, inputs in self.inputs.items():
                    if not self.finished[i] and not isinstance(self.states[i], Paused):
                        self.states[i] = Failed(
                            f"Run interrupted while the task ran: {error!r}", cached_inputs=inputs
                        )
                try:
                    self._materialize()  # before end() releases what executors deferred
                except Exception as failure:
                    log.warning("interrupted run %s: some values could not be kept: %r", run_id, failure)
                interrupted = Failed(f"Run interrupted: {error!r}", self._flow_state().result)
                self._record(journal, run_id, interrupted)
            raise
        finally:
            session.end()
        state = self._flow_state()
        state.run_id = run_id
        if journal is not None:
            self._record(journal, run_id, state)
        if self.observer is not None:
            self.observer.run_finished(state)
        return state

    def _record(self, journal: Journal, run_id: str, state: State[FlowResult]) -> None:
        timings = [
            (q, *t) if t is not None else (q, None, None, None)
            for q, t in zip(self.queued, self.timings)
        ]
        outcomes, keep = task_records(
            [node.task.name for node in self.nodes],
            self.states,
            self.inputs,
            self.run_counts,
            timings,
            [node.upstream for node in self.nodes],
            [node.downstream for node in self.nodes],
        )
        journal.finish(run_id, time.time(), type(state).__name__, state.message, outcomes, keep)

    def _loop(self) -> None:
        session = self.session
        assert session is not None
        while True:
            batch: list[TaskRun] = []
            ready = self.ready
            while ready:
                outcome = self._decide(ready.pop())
                if outcome is not None:
                    batch.append(outcome)
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
                time.sleep(timeout)
            self._release_due_retries()

    def _submit(self, batch: list[TaskRun]) -> None:
        if self.follow_ons:
            for run in batch:
                chain = self._chain_after(run.key)
                if chain:
                    run.then = chain
                    self.chains[run.key] = chain
        if self.observer is not None:
            for run in batch:
                self.observer.task_changed(run.key, run.task.name, _RUNNING)
        assert self.session is not None
        self.session.submit(batch)
        self.in_flight += len(batch)

    def _chain_after(self, i: int) -> tuple[FollowOn, ...]:
        """The follow-ons of run ``i``: each the sole downstream task of the one before."""
        chain: list[FollowOn] = []
        nodes = self.nodes
        while len(nodes[i].downstream) == 1 and len(chain) < 10_000:
            j = nodes[i].downstream[0]
            node = nodes[j]
            if (
                not node.followable
                or not self.runnable[j]
                or self.finished[j]
                or self.run_counts[j]
                or j in self.claimed
                or j in self.seeded
                or j in self.starts
            ):
                break
            self.claimed.add(j)
            input_key = node.direct[0][0] if node.direct else None
            chain.append(FollowOn(j, node.task, node.constants, input_key))
            i = j
        return tuple(chain)

    def _take(self, results: list[TaskResult]) -> None:
        """Process what the executor handed back: runs, and follow-ons that ran with them."""
        heads: list[int] = []
        timings = self.timings
        head_queued: float | None = None
        for key, state, started, finished, worker in results:
            timings[key] = (started, finished, worker)
            if key in self.claimed:
                self.claimed.discard(key)
                self.run_counts[key] = 1
                self.queued[key] = head_queued  # handed over with the run it follows
                self.inputs[key] = self._inputs(self.nodes[key])
            else:
                self.in_flight -= 1
                heads.append(key)
                head_queued = self.queued[key]
            self._complete(key, state)
        for head in heads:
            for follow in self.chains.pop(head, ()):
                j = follow.key
                if j in self.claimed:  # the chain stopped before it: decide it here
                    self.claimed.discard(j)
                    if self.waiting[j] == 0 and not self.finished[j]:
                        self.ready.append(j)

    def _release_due_retries(self) -> None:
        now = time.monotonic()
        batch: list[TaskRun] = []
        while self.retries and self.retries[0][0] <= now:
            _, i = heapq.heappop(self.retries)
            batch.append(self._task_run(i, self.inputs[i], resume=isinstance(self.states[i], Paused)))
        if batch:
            self._submit(batch)

    # -- deciding -------------------------------------------------------------------------------

    def _decide(self, i: int) -> TaskRun | None:
        """Finish task ``i`` without running it, or return the run the executor must do."""
        node = self.nodes[i]
        task = node.task
        if isinstance(task, ParameterTask):
            self._finish(i, Success("Task run succeeded.", self.parameters[task.name]))
            return None
        states = self.states
        seeded = self.seeded.get(i)
        resume = isinstance(seeded, Resume)
        if i in self.starts:
            inputs = self._start_inputs(i, seeded)
            resume = True
        else:
            upstream_states = {edge: states[j] for edge, j in node.in_edges}
            decided = _propagated(task, upstream_states.values())
            if decided is None:
                if resume:
                    with _user_context(resume=True, task_name=task.name):
                        decided = _check_trigger(task, upstream_states)
                else:
                    decided = _check_trigger(task, upstream_states)
            if decided is not None:
                if isinstance(decided, Paused):
                    decided.cached_inputs = self._inputs(node)
                self._settle(i, decided)
                return None
            inputs = self._inputs(node)
        if task.cache_for is not None:
            hit = self._cache_lookup(i, inputs)
            if hit is not None:
                self._finish(i, hit)
                return None
        return self._task_run(i, inputs, resume)

    def _inputs(self, node: Node) -> dict[str, Any]:
        states = self.states
        inputs = dict(node.constants)
        for key, j in node.direct:
            inputs[key] = states[j].result
        if node.nested:
            results = {self.nodes[j].task: states[j].result for j in node.upstream}
            for key, value in node.nested:
                inputs[key] = rebuild(value, results)
        return inputs

    def _start_inputs(self, i: int, seeded: State[Any] | None) -> dict[str, Any]:
        node = self.nodes[i]
        stored = dict(seeded.cached_inputs or {}) if seeded is not None else {}
        return {**node.constants, **stored}

    def _task_run(self, i: int, inputs: dict[str, Any], resume: bool) -> TaskRun:
        self.run_counts[i] += 1
        self.queued[i] = time.time()
        self.inputs[i] = inputs
        return TaskRun(i, self.nodes[i].task, inputs, self.run_counts[i], resume)

    def _cache_key(self, task: Task[Any, Any]) -> str:
        return task.cache_key if task.cache_key is not None else f"{self.flow.name}/{task.name}"

    def _materialize(self) -> None:
        """Give the final states real values where executors left deferred ones, and the
        inputs the journal keeps for a resume (those of tasks that will run again): the
        deferred values live only until the executor's ``end()``."""
        for i, state in enumerate(self.states):
            if isinstance(state._result, DeferredResult):
                state._result = state._result.resolve()
            if state.cached_inputs:
                state.cached_inputs = resolve_deferred(state.cached_inputs)
            if i in self.inputs and (state.is_failed() or not state.is_finished()):
                self.inputs[i] = resolve_deferred(self.inputs[i])

    def _cache_lookup(self, i: int, inputs: dict[str, Any]) -> State[Any] | None:
        task = self.nodes[i].task
        inputs = resolve_deferred(inputs)
        candidates: list[Cached[Any]] = []
        seeded = self.seeded.get(i)
        if isinstance(seeded, Cached):
            candidates.append(seeded)
        candidates.extend(self.cache_store.get(self._cache_key(task)))
        for candidate in candidates:
            try:
                valid = task.cache_validator(candidate, inputs, self.parameters)
            except Exception as error:
                return Failed(f"Unexpected error while checking the cache validator: {error!r}", error)
            if valid:
                return candidate
        return None

    # -- completing -----------------------------------------------------------------------------

    def _complete(self, i: int, state: State[Any]) -> None:
        """Take the state an attempt ended in: retry, store in the cache, or finish."""
        task = self.nodes[i].task
        run_count = self.run_counts[i]
        inputs = self.inputs[i]
        if isinstance(state, Retrying):  # the RETRY signal
            state.run_count = run_count
            state.cached_inputs = inputs
            self._schedule(i, state, state.start_time)
            return
        if state.is_failed() and run_count <= task.max_retries:
            delay = task.retry_delay or _dt.timedelta(0)
            retry = Retrying(
                f"Retrying Task (after attempt {run_count} of {task.max_retries + 1})",
                cached_inputs=inputs,
                start_time=_dt.datetime.now(_dt.timezone.utc) + delay,
                run_count=run_count,
            )
            self._schedule(i, retry, retry.start_time)
            return
        if isinstance(state, Paused):
            state.cached_inputs = inputs
        elif task.cache_for is not None and type(state) is Success:
            self._cache_store_result(task, state, inputs)
        self._settle(i, state)

    def _schedule(self, i: int, state: State[Any], start_time: _dt.datetime | None) -> None:
        self.states[i] = state
        if self.observer is not None:
            self.observer.task_changed(i, self.nodes[i].task.name, state)
        delay = 0.0
        if start_time is not None:
            delay = (start_time - _dt.datetime.now(_dt.timezone.utc)).total_seconds()
        heapq.heappush(self.retries, (time.monotonic() + max(0.0, delay), i))

    def _settle(self, i: int, state: State[Any]) -> None:
        """Record a decided or returned state: finished, or paused until resumed."""
        if isinstance(state, Paused):
            self.states[i] = state
            if self.observer is not None and state.start_time is None:
                self.observer.task_changed(i, self.nodes[i].task.name, state)
            if state.start_time is not None:  # PAUSE(start_time=...) resumes by itself
                self.inputs[i] = state.cached_inputs or {}
                self._schedule(i, state, state.start_time)
            return
        self._finish(i, state)

    def _finish(self, i: int, state: State[Any]) -> None:
        self.states[i] = state
        self.finished[i] = True
        if self.observer is not None:
            self.observer.task_changed(i, self.nodes[i].task.name, state)
        waiting, runnable, ready = self.waiting, self.runnable, self.ready
        for d in self.nodes[i].downstream:
            waiting[d] -= 1
            if (
                waiting[d] == 0
                and runnable[d]
                and not self.finished[d]
                and d not in self.starts
                and d not in self.claimed
            ):
                ready.append(d)

    def _cache_store_result(self, task: Task[Any, Any], state: State[Any], inputs: dict[str, Any]) -> None:
        assert task.cache_for is not None
        now = _dt.datetime.now(_dt.timezone.utc)
        try:
            expiration: _dt.datetime | None = now + task.cache_for
        except OverflowError:
            expiration = None  # longer than the calendar goes: never expires
        try:
            hashed = hash_inputs(resolve_deferred(inputs))
        except UnhashableInputError as error:
            log.warning("Task %r: result not cached, an input cannot be hashed: %s", task.name, error)
            return
        cached = Cached(
            state.message,
            resolve_deferred(state.result),
            cached_result_expiration=expiration,
            hashed_inputs=hashed,
            cached_parameters=self.parameters,
        )
        self.cache_store.put(self._cache_key(task), cached)

    # -- the end --------------------------------------------------------------------------------

    def _flow_state(self) -> State[FlowResult]:
        result = FlowResult(zip((node.task for node in self.nodes), self.states))
        paused = [n.task.name for n, s in zip(self.nodes, self.states) if isinstance(s, Paused)]
        if paused:
            return Paused(f"Waiting to be resumed: {', '.join(paused)}", result)
        references = [self.states[self.index[t]] for t in self.flow.reference_tasks()]
        if any(s.is_failed() for s in references):
            return Failed("Some reference tasks failed.", result)
        if all(s.is_successful() for s in references):
            return Success("All reference tasks succeeded.", result)
        if all(s.is_finished() for s in references):
            return Success("No reference tasks failed.", result)
        return Running("Some reference tasks did not run.", result)


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
    resumed_from: str | None = None,
    progress: RunObserver | bool = False,
) -> State[FlowResult]:
    """Run ``flow``; see ``Flow.run``. Every check on the input happens before any task runs."""
    index = plan(flow)[1]
    seeded: dict[int, State[Any]] = {}
    for t, state in task_states.items():
        if t not in index:
            raise FlowDefinitionError(
                f"Flow {flow.name!r}: task_states names {t!r}, which is not in the flow"
            )
        if not isinstance(state, State):
            raise FlowDefinitionError(
                f"Flow {flow.name!r}: task_states[{t!r}] must be a State, not {state!r}"
            )
        seeded[index[t]] = state
    starts: set[int] = set()
    for t in start_tasks or ():
        if t not in index:
            raise FlowDefinitionError(
                f"Flow {flow.name!r}: start task {t!r} is not in the flow"
            )
        assert isinstance(t, Task)
        starts.add(index[t])
        needed = {e.key for e in flow.edges_to(t) if e.key is not None}
        stored = task_states.get(t)
        have = set((stored.cached_inputs or {}) if stored is not None else {})
        if needed - have:
            raise FlowDefinitionError(
                f"Flow {flow.name!r}: start task {t.name!r} needs input(s) "
                f"{', '.join(sorted(needed - have))}, but its state carries no cached_inputs "
                f"for them; pass task_states={{task: Resume(cached_inputs=paused.cached_inputs)}}"
            )
    values = _resolve_parameters(flow, parameters)
    if executor is None:
        from .executors.local import LocalExecutor

        executor = LocalExecutor()
    # Open the stores now: an unsafe home must stop the run before any task runs.
    if cache_store is None and any(t.cache_for is not None for t in index):
        cache_store = default_cache_store()
    if journal is True:
        journal = default_journal()
    scheduler = _Scheduler(
        flow,
        executor,
        _run_context(flow, values, context),
        values,
        seeded,
        starts,
        cache_store,
        journal or None,
        resumed_from,
        default_progress() if progress is True else (progress or None),
    )
    return scheduler.run()
