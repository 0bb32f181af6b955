"""``ThreadExecutor``: runs tasks on a pool of threads of the calling process.

For I/O-bound tasks (API calls, database queries, downloads), which spend their time
waiting with the GIL released: nothing is pickled and no process starts, so a task costs
a hand-over between two threads, and any value (a database connection, a lock, a
generator) can be an input or a result, as on ``LocalExecutor``. CPU-bound Python code
gains nothing from threads (the GIL runs one at a time): use ``LokyExecutor`` for it.

How it works:

- **One pool per executor**, of ``max_workers`` daemon threads started by its first run
  and shared by every run on it, also by runs from several threads at once. Each run has
  its own queue of results (``_ThreadRun``); the threads take task runs from one queue, in
  the order they were submitted, whatever run they belong to. The threads stop when the
  executor is garbage collected (after its last run ended).
- **A task run** runs with its follow-ons (``TaskRun.then``) in one thread
  (``_worker.run_guarded``), in a copy of the ``contextvars`` of the scheduler that
  submitted it: the run's ``taskloom.context`` (the task's own values are entered on top,
  as on every executor), and anything else the caller set in ``contextvars``. A task that
  raises ``SystemExit`` or ``KeyboardInterrupt`` fails, as on a process pool; it does not
  take its thread down.
- **Logging** happens in the thread, straight to the caller's handlers, stamped with the
  task's fields (``taskloom.logging``); ``print`` goes to ``sys.stdout`` (with
  ``log_stdout=True``, to the task's logger, routed per thread).
- **Timeouts are soft.** Python cannot interrupt a thread, so a task with a ``timeout``
  runs each pass in a helper thread of its own (``attempt``): at the timeout the task
  ends ``TimedOut`` and its pool thread takes the next task, but the body itself runs on in
  the background until it returns by itself. Its side effects (files written, requests
  sent) still happen after the ``TimedOut``, its result is dropped, and the process does
  not wait for it when it exits. Give I/O calls their own timeouts (``requests.get(...,
  timeout=10)``) to really stop them.
- **Interrupts.** Ctrl-C reaches the scheduler in the main thread: the run is journaled
  as interrupted (``taskloom.runner``). Task runs not started yet are dropped. The threads
  running this run's bodies get ``BatchInterrupted`` raised in them (``interrupt``,
  ``PyThreadState_SetAsyncExc``, as on Dask's workers: at the next Python bytecode), so a
  chain hands back the links that finished before it, and the run records them finished.
  A body inside one long C call cannot be stopped: past the scheduler's grace it finishes
  in the background (its results are dropped) or dies with the process, whose exit does
  not wait for it.
"""

from __future__ import annotations

import contextvars
import os
import queue
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from .. import _interruptible as interruptible
from ..attempt import BatchInterrupted, TaskResult, TaskRun, finished_before
from .base import Timings
from ._worker import run_guarded, stop_thread, thread_done

__all__ = ["ThreadExecutor"]

#: Ends the messages of a task that raised ``SystemExit`` or ``KeyboardInterrupt``.
_WHERE = "in a worker thread"


class _ThreadRun:
    """One flow run on a ``ThreadExecutor``: its results queue (the ``ExecutorRun``)."""

    # The follow-ons of a run cost nothing to decide in the thread: take them with it.
    runs_chains = True

    def __init__(self, executor: ThreadExecutor, run_context: Mapping[str, Any]) -> None:
        self._executor = executor  # kept alive while the run is: its pool stops with it
        self._pool = executor._pool
        #: How many tasks run at once (progress displays count the rest as queued).
        self.slots = executor.max_workers
        self.run_context = run_context
        self.done: queue.SimpleQueue[list[TaskResult]] = queue.SimpleQueue()
        #: Set by ``end``: task runs of this run not started yet are dropped.
        self.ended = False
        #: The threads running a job of this run now (``interrupt`` stops them).
        self.running: set[int] = set()
        self.lock = threading.Lock()

    def timings(self) -> Timings | None:
        """None: a hand-over between threads costs microseconds, and tasks that wait on I/O
        gain from running side by side: only chains are worth fusing."""
        return None

    def submit(self, runs: Sequence[TaskRun]) -> None:
        """Queue each run for the pool, with the caller's ``contextvars`` as they are now."""
        for run in runs:
            self._pool.put(_Job(self, run, contextvars.copy_context()))

    def collect(self, timeout: float | None) -> list[TaskResult]:
        """Results of finished runs: at least one, or none once ``timeout`` seconds passed."""
        try:
            results = interruptible.get(self.done, timeout)  # a list of this run's own: extended
        except queue.Empty:
            return []
        while True:  # take whatever else is done without waiting
            try:
                results.extend(self.done.get_nowait())
            except queue.Empty:
                return results

    def interrupt(self, grace: float) -> list[TaskResult]:
        """The run was interrupted (``end()`` follows): stop the bodies of this run that
        threads are running (``BatchInterrupted``), and hand back what finished, theirs
        (a chain's links before the one stopped) and what was waiting in ``done``, within
        ``grace`` seconds."""
        self.ended = True  # (a job not started yet starts no more)
        with self.lock:
            stopped = len(self.running)
            for thread in self.running:
                stop_thread(thread)
        results = self.collect(0)
        deadline = time.monotonic() + grace
        while stopped:
            with self.lock:
                stopped = len(self.running)
            results.extend(self.collect(max(0.0, min(0.05, deadline - time.monotonic()))))
            if time.monotonic() >= deadline:
                break
        return [*results, *self.collect(0)]

    def end(self) -> None:
        """Drop the task runs not started yet; bodies already running finish on their own."""
        self.ended = True


class _Job:
    """One task run (and its chain) of one flow run, as the pool's threads take it."""

    __slots__ = ("context", "owner", "run")

    def __init__(self, owner: _ThreadRun, run: TaskRun, context: contextvars.Context) -> None:
        self.owner = owner
        self.run = run
        self.context = context

    def __call__(self, worker: str) -> None:
        owner = self.owner
        if owner.ended:
            return
        me = threading.get_ident()
        with owner.lock:
            owner.running.add(me)
        try:
            results = self.context.run(run_guarded, self.run, owner.run_context, worker, _WHERE)
        except BatchInterrupted as error:  # the run was interrupted (``interrupt``)
            results = finished_before(error)
        finally:
            while True:
                # An interrupt that came as the body ended must not hit the pool's code: out
                # of ``running`` (under the lock ``interrupt`` holds), none comes after, and
                # one still pending is dropped, or raised here and this is done again.
                try:
                    with owner.lock:
                        owner.running.discard(me)
                        thread_done(me)
                    break
                except BatchInterrupted:
                    continue
        owner.done.put(results)


class _Pool:
    """The threads of one ``ThreadExecutor``: all started by the first job, then each
    takes jobs from one queue until it gets ``None`` (``stop``)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._started = 0

    def put(self, job: _Job) -> None:
        """Queue ``job``; the first one starts the threads."""
        if self._started < self.size:
            self._start()
        self._jobs.put(job)

    def _start(self) -> None:
        with self._lock:
            while self._started < self.size:
                worker = f"thread:{self._started}"
                thread = threading.Thread(
                    target=_serve, args=(self._jobs, worker), name=f"taskloom-{worker}", daemon=True
                )
                thread.start()
                self._started += 1

    def stop(self) -> None:
        """Tell every thread to stop once it has taken the jobs queued before."""
        with self._lock:
            for _ in range(self._started):
                self._jobs.put(None)
            self._started = 0


def _serve(jobs: queue.SimpleQueue[_Job | None], worker: str) -> None:
    """A pool thread: run jobs until told to stop. Holds no reference to its executor, so
    that dropping the executor stops its threads."""
    while True:
        job = jobs.get()
        if job is None:
            return
        job(worker)
        del job  # let the run's values go while this thread waits


class ThreadExecutor:
    """Run tasks on ``max_workers`` threads of the calling process, for I/O-bound work.

    ``max_workers=None`` uses ``min(32, cores + 4)`` threads, as ``concurrent.futures``
    does. One executor may serve several flow runs at once, from several threads; its
    threads are shared by them. Final states are the same as on the other executors.
    Timeouts are soft: see the module docstring for exactly what that means.

    >>> flow.run(executor=ThreadExecutor(max_workers=8))   # doctest: +SKIP
    """

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers: int = _thread_count(max_workers)
        self._pool = _Pool(self.max_workers)
        weakref.finalize(self, self._pool.stop)

    def __repr__(self) -> str:
        return f"ThreadExecutor(max_workers={self.max_workers})"

    def begin(self, run_context: Mapping[str, Any]) -> _ThreadRun:
        """Start a flow run on the pool (see ``executors.base``)."""
        return _ThreadRun(self, run_context)


def _thread_count(max_workers: object) -> int:
    if max_workers is None:
        return min(32, (os.cpu_count() or 1) + 4)
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise ValueError(f"ThreadExecutor(max_workers={max_workers!r}): use a whole number >= 1")
    return max_workers
