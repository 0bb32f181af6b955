"""``LokyExecutor``: runs tasks in parallel on a loky process pool, and contains its faults.

Data flow::

    scheduler --submit--> pending --batch--> cloudpickle --loky--> worker: _run_batch
                                                                     run_chain per run
                                                                     encode each state
    scheduler <-collect-- decode each state <------ (key, bytes, seconds), log records

Design points, each a lesson measured on loky (see the reliability catalogue):

- **Batches.** One loky submission costs ~100-400 µs; a batch of ready runs costs a few µs
  per task. Each worker has one batch in flight, sized to share what waits among the free
  workers. A task seen to take long (or with a timeout), or never timed yet, travels alone,
  so two long tasks never share a worker while another idles.
- **Chains.** A run carries its follow-ons (``TaskRun.then``), so a chain of tasks costs one
  round trip, not one per task.
- **Opaque results.** The worker pickles each state itself and hands back bytes, so a result
  or exception that cannot be pickled (or unpickled) fails only its own task, never the pool.
- **Worker death.** loky fails every in-flight future when one worker dies. The runs that
  were in flight become suspects and run again one at a time on a fresh pool; the one that
  kills its worker alone is the culprit and ends ``Failed`` with the exit code in its
  message, the others finish normally (their bodies ran twice: make tasks idempotent).
- **Timeouts** are hard in the worker (``SIGALRM``); a task stuck in C code past its timeout
  gets its pool killed and ends ``TimedOut`` (the other runs in flight run again).
- **Interrupts.** Ctrl-C, SIGINT or SIGTERM stop the run: the pool is shut down with its
  workers and their children. Each worker also watches its parent and exits if it dies.
- **Large results** (``bytes``/``bytearray`` of 1 MiB or more) stay in shared memory
  (``/dev/shm``): only a ``SharedResult`` handle crosses the parent, and the next worker
  reads the value from there. The parent reads it only for the final states or the cache.
- **Logs** from tasks travel back with the results and are handed to the parent's
  ``logging`` loggers, with ``task_name`` and ``flow_run_id`` set on each record.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import queue
import signal
import threading
import time
import traceback
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from types import FrameType
from typing import Any

import cloudpickle
import loky
from loky.process_executor import BrokenProcessPool, ShutdownExecutorError

from ..attempt import FollowOn, TaskResult, TaskRun, run_chain
from ..context import current as _current_context
from ..errors import FlowDefinitionError, TaskloomError
from ..states import (
    Cached,
    Failed,
    Paused,
    Pending,
    Resume,
    Retrying,
    Running,
    Skipped,
    State,
    Success,
    TimedOut,
    TriggerFailed,
)
from ..task import Task, _same_options
from .base import DeferredResult, resolve_deferred

__all__ = ["LokyExecutor", "RemoteTaskError"]

log = logging.getLogger("taskloom.executors.loky")

#: A task seen to run longer than this (seconds) always travels in a batch of its own.
LONG_TASK = 0.005
#: The most runs in one batch.
MAX_BATCH = 512
#: How long past its timeout a task may stay stuck (in C code) before its pool is killed.
HARD_TIMEOUT_GRACE = 2.0


class RemoteTaskError(TaskloomError):
    """An exception raised by a task in a worker that could not be sent back as itself.

    Attributes:
        type_name: the qualified name of the original exception's type.
        text: ``str()`` of the original exception.
        remote_traceback: the traceback, formatted in the worker.
    """

    def __init__(self, type_name: str, text: str, remote_traceback: str) -> None:
        super().__init__(f"{type_name}: {text}")
        self.type_name = type_name
        self.text = text
        self.remote_traceback = remote_traceback

    def __reduce__(self) -> tuple[Any, ...]:
        return (RemoteTaskError, (self.type_name, self.text, self.remote_traceback))


# --- the worker side ------------------------------------------------------------------------

_records: list[logging.LogRecord] = []
_context_cache: list[tuple[bytes, Mapping[str, Any]]] = []


class _CaptureHandler(logging.Handler):
    """Keeps a worker's log records, flattened so they pickle, to send back with results."""

    def emit(self, record: logging.LogRecord) -> None:
        values = _current_context()
        record.task_name = values.get("task_name")
        record.flow_run_id = values.get("flow_run_id")
        record.attempt = values.get("task_run_count")
        record.msg = record.getMessage()
        record.args = None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        _records.append(record)


def _watch_parent(parent_pid: int) -> None:
    """Exit when the parent dies (SIGKILL leaves no chance to shut the pool down)."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            _kill_children(os.getpid())
            os._exit(70)


def _kill_children(pid: int) -> None:
    """Kill the processes a task started (Linux: found through /proc)."""
    try:
        entries = os.listdir("/proc")
    except OSError:
        return
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as stat:
                fields = stat.read().rsplit(b")", 1)[1].split()
            if int(fields[1]) == pid:
                os.kill(int(entry), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue


def _init_worker(parent_pid: int) -> None:
    root = logging.getLogger()
    root.handlers[:] = [_CaptureHandler()]
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()


class SharedResult(DeferredResult):
    """A large ``bytes``/``bytearray`` result kept in a shared-memory file, not pickled."""

    __slots__ = ("kind", "path", "size")

    def __init__(self, path: str, size: int, kind: type[bytes] | type[bytearray]) -> None:
        self.path = path
        self.size = size
        self.kind = kind

    def resolve(self) -> bytes | bytearray:
        with open(self.path, "rb", buffering=0) as file:
            if self.kind is bytes:
                return file.read()  # one allocation of the known size, one copy
            data = bytearray(self.size)
            file.readinto(data)
            return data

    def __getstate__(self) -> tuple[str, int, type[bytes] | type[bytearray]]:
        return (self.path, self.size, self.kind)

    def __setstate__(self, state: tuple[str, int, type[bytes] | type[bytearray]]) -> None:
        self.path, self.size, self.kind = state

    def __repr__(self) -> str:
        return f"SharedResult({self.path!r}, {self.size} bytes)"


#: Results at least this large (bytes) go through shared memory instead of the pipe.
SHARE_THRESHOLD = 1 << 20
_SHARED_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None


def _share(state: State[Any]) -> State[Any]:
    """In a worker: move a large bytes result into a shared-memory file, if possible."""
    result: object = state._result
    if (
        _SHARED_DIR is None
        or not isinstance(state, Success)
        or not (type(result) is bytes or type(result) is bytearray)
        or len(result) < SHARE_THRESHOLD
    ):
        return state
    path = os.path.join(_SHARED_DIR, f"taskloom-{os.getppid()}-{os.getpid()}-{time.monotonic_ns()}")
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with open(fd, "wb") as file:
            file.write(result)
    except OSError:  # no room in /dev/shm: send it through the pipe instead
        _remove(path)
        return state
    shared = type(state).__new__(type(state))
    shared.__setstate__(state.__getstate__())
    shared._result = SharedResult(path, len(result), type(result))
    return shared


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# The wire format. Objects cost cloudpickle ~10 µs each; tuples of builtins go through
# its C fast path in ~0.1 µs. So a batch is tuples: tasks by template id (each template
# sent once per batch), states as (class code, slot values).
_STATE_CLASSES: tuple[type[State[Any]], ...] = (
    Success, Failed, Skipped, TriggerFailed, TimedOut, Retrying, Paused, Cached, Pending,
    Running, Resume,
)
_STATE_CODES = {cls: code for code, cls in enumerate(_STATE_CLASSES)}

#: A run on the wire: key, template id, inputs, run count, resume, follow-ons.
_WireRun = tuple[int, int, dict[str, Any], int, bool, tuple[tuple[int, int, dict[str, Any], str | None], ...]]
#: A state on the wire: class code (or -1: pickled whole), slot values (or the state).
_WireState = tuple[int, Any]


def _pack(state: State[Any]) -> _WireState:
    code = _STATE_CODES.get(type(state))
    return (code, state.__getstate__()) if code is not None else (-1, state)


def _unpack(wire: _WireState) -> State[Any]:
    code, values = wire
    if code < 0:
        assert isinstance(values, State)
        return values
    cls = _STATE_CLASSES[code]
    state = cls.__new__(cls)
    state.__setstate__(values)
    return state


def _encode_rows(rows: list[TaskResult], names: Mapping[int, str]) -> bytes:
    """All results of a batch in one pickle, checked to unpickle; if any state cannot
    travel, that one becomes a failure of its own task and the others go as they are."""
    worker = rows[0].worker if rows else ""
    wire = [(r.key, _pack(_share(r.state)), r.started, r.finished) for r in rows]
    try:
        data = cloudpickle.dumps((worker, wire))
        pickle.loads(data)  # an exception can pickle yet fail to unpickle (custom __init__)
        return data
    except Exception:
        pass
    safe = []
    for key, state, started, finished, _ in rows:
        try:
            pickle.loads(cloudpickle.dumps(_pack(state)))
        except Exception as error:
            state = _unpicklable(names[key], state, error)
        safe.append((key, _pack(state), started, finished))
    return cloudpickle.dumps((worker, safe))


def _unpicklable(task_name: str, state: State[Any], error: Exception) -> State[Any]:
    result = state.result
    if isinstance(result, BaseException):
        type_name = f"{type(result).__module__}.{type(result).__qualname__}"
        remote = RemoteTaskError(type_name, str(result), "".join(traceback.format_exception(result)))
        message = (
            f"Task {task_name!r}: {state.message} (the {type(result).__qualname__} cannot be "
            f"pickled to send it back from the worker process: {error!r}; the state's "
            "result is a RemoteTaskError with its type, text and traceback)"
        )
        if isinstance(state, Failed):
            return type(state)(message, remote)
        return Failed(message, remote)
    return Failed(
        f"Task {task_name!r} returned a {type(result).__qualname__} that cannot be pickled "
        f"to send it back from the worker process: {error!r}",
        TypeError(str(error)),
    )


_templates: dict[tuple[str, int], Task[Any, Any]] = {}


def _run_batch(
    header: bytes, payload: bytes, keys: list[tuple[int, str]], log_level: int
) -> tuple[bytes, list[logging.LogRecord]]:
    """Run a batch of task runs in a worker; return their states (one pickle) and logs."""
    _records.clear()
    logging.getLogger().setLevel(log_level)
    names = dict(keys)
    worker = f"loky:{os.getpid()}"
    rows: list[TaskResult] = []
    try:
        if _context_cache and _context_cache[0][0] == header:
            run_context = _context_cache[0][1]
        else:
            run_context = cloudpickle.loads(header)
            _context_cache[:] = [(header, run_context)]
            _templates.clear()
        run_id = str(run_context.get("flow_run_id"))
        blobs, wire_runs = cloudpickle.loads(payload)
        for tid, blob in blobs.items():
            _templates[run_id, tid] = cloudpickle.loads(blob)
        runs = [_as_run(run_id, wire) for wire in wire_runs]
    except Exception as error:
        for key, name in keys:
            state = Failed(
                f"Task {name!r} could not be unpickled in the worker process: {error!r}",
                RemoteTaskError(type(error).__qualname__, str(error), traceback.format_exc()),
            )
            now = time.time()
            rows.append(TaskResult(key, state, now, now, worker))
        return _encode_rows(rows, names), list(_records)
    for run in runs:
        started = time.time()
        try:
            results = run_chain(run, run_context, worker)
        except BaseException as error:  # SystemExit / KeyboardInterrupt raised by the task
            message = f"Task {run.task.name!r} raised {error!r} in a worker process"
            failed = Failed[Any](message, error)
            results = [TaskResult(run.key, failed, started, time.time(), worker)]
        for result in results:
            _note_traceback(result.state)
        rows.extend(results)
    return _encode_rows(rows, names), list(_records)


def _note_traceback(state: State[Any]) -> None:
    """Keep the worker's traceback on a task's exception: tracebacks do not pickle, notes do."""
    error = state.result
    if isinstance(state, Failed) and isinstance(error, Exception) and error.__traceback__:
        lines = traceback.format_tb(error.__traceback__)
        error.add_note(f"Traceback in worker process {os.getpid()}:\n{''.join(lines).rstrip()}")
        error.__traceback__ = None


def _as_run(run_id: str, wire: _WireRun) -> TaskRun:
    key, tid, inputs, run_count, resume, then = wire
    for name, value in inputs.items():
        if isinstance(value, (DeferredResult, list, tuple, dict, set, frozenset)):
            inputs[name] = resolve_deferred(value)
    follow = tuple(
        FollowOn(k, _templates[run_id, t], constants, input_key)
        for k, t, constants, input_key in then
    )
    return TaskRun(key, _templates[run_id, tid], inputs, run_count, resume, follow)


# --- the parent side ------------------------------------------------------------------------

_pools: dict[int, loky.ProcessPoolExecutor] = {}
#: How long each task (by name) took in workers, smoothed: decides what shares a batch.
#: Kept per process, like the pools, so a new LokyExecutor() per run still knows.
_durations: dict[str, float] = {}
_pools_lock = threading.Lock()


def _pool(workers: int, *, fresh: bool = False) -> loky.ProcessPoolExecutor:
    """The process's pool of ``workers`` processes, reused across runs."""
    with _pools_lock:
        pool = _pools.get(workers)
        if pool is not None and fresh:
            pool.shutdown(wait=True, kill_workers=True)
            pool = None
        if pool is None:
            pool = loky.ProcessPoolExecutor(
                max_workers=workers, initializer=_init_worker, initargs=(os.getpid(),)
            )
            _pools[workers] = pool
        return pool


def _discard_pool(workers: int) -> None:
    with _pools_lock:
        pool = _pools.pop(workers, None)
    if pool is not None:
        pool.shutdown(wait=True, kill_workers=True)


def _check_context(run_context: Mapping[str, Any]) -> bytes:
    try:
        return cloudpickle.dumps(dict(run_context))
    except Exception:
        pass
    for key, value in run_context.items():
        try:
            cloudpickle.dumps(value)
        except Exception as error:
            raise FlowDefinitionError(
                f"context value {key!r} ({type(value).__name__}) cannot be pickled to send it "
                f"to worker processes: {error!r}; pass only picklable values in the context"
            ) from None
    raise FlowDefinitionError("the run context cannot be pickled to send it to worker processes")


class _Batch:
    __slots__ = ("deadline", "runs")

    def __init__(self, runs: list[TaskRun], deadline: float | None) -> None:
        self.runs = runs
        self.deadline = deadline


class LokyExecutor:
    """Run tasks in parallel on a loky process pool of ``max_workers`` processes.

    ``max_workers=None`` uses every core. The pool is started on first use and reused by
    later runs in the same process. Task functions defined in ``__main__``, in a notebook,
    or as closures run in the workers (cloudpickle sends them by value).

    >>> flow.run(executor=LokyExecutor(max_workers=4))   # doctest: +SKIP
    """

    runs_chains = True

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers: int = _worker_count(max_workers)
        self._pending: deque[TaskRun] = deque()
        self._suspects: deque[TaskRun] = deque()
        self._in_flight: dict[Future[Any], _Batch] = {}
        self._done: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()
        self._ready: list[TaskResult] = []
        self._header = b""
        self._template_ids: dict[Task[Any, Any], int] = {}
        self._task_templates: dict[Task[Any, Any], int] = {}
        self._template_blobs: dict[int, bytes] = {}
        self._names: dict[int, str] = {}
        self._shared: list[str] = []
        self._log_level = logging.WARNING
        self._previous_sigterm: Any = None

    def __repr__(self) -> str:
        return f"LokyExecutor(max_workers={self.max_workers})"

    # -- the Executor protocol ----------------------------------------------------------------

    def begin(self, run_context: Mapping[str, Any]) -> None:
        self._header = _check_context(run_context)
        self._template_ids = {}
        self._task_templates = {}
        self._template_blobs = {}
        self._names = {}
        self._log_level = logging.getLogger().getEffectiveLevel()
        _pool(self.max_workers)  # start the workers while the scheduler decides
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.signal(signal.SIGTERM, _sigterm_to_exit)

    def submit(self, runs: Sequence[TaskRun]) -> None:
        self._pending.extend(runs)
        self._pump()

    def collect(self, timeout: float | None) -> list[TaskResult]:
        wait_until = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._ready:  # failed before they could be sent, or stopped by force
                results, self._ready = self._ready, []
                return results
            deadline = self._next_deadline(wait_until)
            try:
                future = self._done.get(
                    timeout=None if deadline is None else max(0.0, deadline - time.monotonic())
                )
            except queue.Empty:
                if self._expire_stuck():
                    continue
                return []
            results = self._finished(future)
            while True:  # take whatever else is done without waiting
                try:
                    results.extend(self._finished(self._done.get_nowait()))
                except queue.Empty:
                    break
            self._pump()
            results.extend(self._ready)
            self._ready = []
            if results:
                return results

    def end(self) -> None:
        try:
            if self._in_flight or self._pending or self._suspects:
                # Interrupted (or abandoned): stop the workers and whatever they started.
                _discard_pool(self.max_workers)
        finally:
            for path in self._shared:
                _remove(path)
            self._shared = []
            self._pending.clear()
            self._suspects.clear()
            self._in_flight.clear()
            self._ready = []
            self._done = queue.SimpleQueue()
            if self._previous_sigterm is not None:
                signal.signal(signal.SIGTERM, self._previous_sigterm)
                self._previous_sigterm = None

    # -- batching -----------------------------------------------------------------------------

    def _alone(self, run: TaskRun) -> bool:
        """Whether a run travels in a batch of its own: a task with a timeout, one seen to
        take long, or one never timed yet (its first run measures it)."""
        seconds = _durations.get(run.task.name)
        return run.task.timeout is not None or seconds is None or seconds > LONG_TASK

    def _next_batch(self, free: int) -> list[TaskRun]:
        if self._suspects:  # after a crash: one at a time, to find the culprit
            return [self._suspects.popleft()] if not self._in_flight else []
        pending = self._pending
        # Share what waits among the free slots: few large batches when many runs wait,
        # single runs when few do (then a long task does not hold back a short one).
        size = min(MAX_BATCH, max(1, math.ceil(len(pending) / free)))
        batch: list[TaskRun] = []
        while pending and len(batch) < size:
            if self._alone(pending[0]):
                if batch:
                    break
                return [pending.popleft()]
            batch.append(pending.popleft())
        return batch

    def _pump(self) -> None:
        # One batch per worker: a second one queued behind it would only wait, while
        # the runs it holds could have joined a fuller batch once a worker is free.
        limit = self.max_workers
        while (self._pending or self._suspects) and len(self._in_flight) < limit:
            batch = self._next_batch(limit - len(self._in_flight))
            if not batch:
                return
            self._send(batch)

    def _template_id(self, task: Task[Any, Any]) -> int:
        """The id of the task's template in this run, pickling the template on first sight."""
        known = self._task_templates.get(task)
        if known is not None:
            return known
        template = task.__dict__.get("_template")
        if template is None or not _same_options(task, template):
            template = task
        tid = self._template_ids.get(template)
        if tid is None:
            tid = len(self._template_ids)
            self._template_blobs[tid] = cloudpickle.dumps(template)
            self._template_ids[template] = tid
        self._task_templates[task] = tid
        return tid

    def _wire(self, run: TaskRun, blobs: dict[int, bytes]) -> _WireRun:
        tid = self._template_id(run.task)
        blobs[tid] = self._template_blobs[tid]
        then = []
        for follow in run.then:
            ftid = self._template_id(follow.task)
            blobs[ftid] = self._template_blobs[ftid]
            then.append((follow.key, ftid, follow.constants, follow.input_key))
        return (run.key, tid, run.inputs, run.run_count, run.resume, tuple(then))

    def _encode(self, batch: list[TaskRun]) -> bytes:
        blobs: dict[int, bytes] = {}
        wire = [self._wire(run, blobs) for run in batch]
        return cloudpickle.dumps((blobs, wire))

    def _send(self, batch: list[TaskRun]) -> None:
        try:
            payload = self._encode(batch)
        except Exception:
            batch = self._drop_unpicklable(batch)
            if not batch:
                return
            payload = self._encode(batch)
        keys = [(run.key, run.task.name) for run in batch]
        keys.extend((f.key, f.task.name) for run in batch for f in run.then)
        self._names.update(keys)
        deadline = None
        if len(batch) == 1 and batch[0].task.timeout is not None:
            deadline = time.monotonic() + 2 * batch[0].task.timeout + HARD_TIMEOUT_GRACE
        try:
            future = _pool(self.max_workers).submit(
                _run_batch, self._header, payload, keys, self._log_level
            )
        except (BrokenProcessPool, ShutdownExecutorError, RuntimeError):
            # The pool broke between runs (a worker was killed while idle): start another.
            future = _pool(self.max_workers, fresh=True).submit(
                _run_batch, self._header, payload, keys, self._log_level
            )
        self._in_flight[future] = _Batch(batch, deadline)
        future.add_done_callback(self._done.put)

    def _drop_unpicklable(self, batch: list[TaskRun]) -> list[TaskRun]:
        """Fail the runs whose task or inputs cannot be pickled; return the others."""
        keep: list[TaskRun] = []
        for run in batch:
            try:
                self._encode([run])
            except Exception as error:
                self._ready.append(_here(run.key, Failed(_pickling_message(run, error), error)))
            else:
                keep.append(run)
        return keep

    # -- results ------------------------------------------------------------------------------

    def _finished(self, future: Future[Any]) -> list[TaskResult]:
        batch = self._in_flight.pop(future, None)
        if batch is None:
            return []  # a future of a pool abandoned after a crash
        try:
            data, records = future.result()
        except BrokenProcessPool as error:
            return self._crashed(batch, error)
        except ShutdownExecutorError:
            return self._crashed(batch, None)
        for record in records:
            logging.getLogger(record.name).handle(record)
        try:
            worker, rows = cloudpickle.loads(data)
        except Exception as error:
            message = f"the results could not be unpickled in the parent process: {error!r}"
            failed = RemoteTaskError(type(error).__qualname__, str(error), traceback.format_exc())
            return [
                _here(run.key, Failed(f"Task {run.task.name!r}: {message}", failed))
                for run in batch.runs
            ]
        results: list[TaskResult] = []
        durations = _durations
        for key, wire, started, finished in rows:
            state = _unpack(wire)
            if isinstance(state._result, SharedResult):
                self._shared.append(state._result.path)
            results.append(TaskResult(key, state, started, finished, worker))
            name = self._names.get(key)
            if name is not None:
                seconds = finished - started
                previous = durations.get(name)
                durations[name] = seconds if previous is None else 0.7 * previous + 0.3 * seconds
        return results

    def _crashed(self, batch: _Batch, error: BaseException | None) -> list[TaskResult]:
        """A worker died: every run in flight is a suspect; one alone is the culprit."""
        suspects = [run for b in [batch, *self._in_flight.values()] for run in b.runs]
        self._in_flight.clear()
        self._done = queue.SimpleQueue()
        _pool(self.max_workers, fresh=True)
        cause = _exit_codes(error)
        if len(suspects) == 1 and not suspects[0].then:
            run = suspects[0]
            if batch.deadline is not None and time.monotonic() >= batch.deadline:
                return [_here(run.key, TimedOut("Task timed out during execution.", TimeoutError(cause)))]
            return [
                _here(
                    run.key,
                    Failed(
                        f"Task {run.task.name!r} killed the worker process running it ({cause}); "
                        "SIGKILL often means the system ran out of memory, SIGSEGV a crash in "
                        "native code",
                        error,
                    ),
                )
            ]
        # Run each suspect alone (follow-ons dropped: the scheduler decides them again).
        for run in reversed(suspects):
            run.then = ()
            self._suspects.appendleft(run)
        log.warning(
            "a worker process died (%s) with %d task runs in flight; running them again one "
            "at a time to find the cause",
            cause,
            len(suspects),
        )
        return []

    def _next_deadline(self, wait_until: float | None) -> float | None:
        deadlines = [b.deadline for b in self._in_flight.values() if b.deadline is not None]
        if wait_until is not None:
            deadlines.append(wait_until)
        return min(deadlines) if deadlines else None

    def _expire_stuck(self) -> bool:
        """Kill the pool under a task stuck past its timeout (in C code, out of SIGALRM's
        reach); True if that happened, so the caller keeps waiting for the rest."""
        now = time.monotonic()
        stuck = [
            (f, b) for f, b in self._in_flight.items() if b.deadline is not None and b.deadline <= now
        ]
        if not stuck:
            return False
        future, batch = stuck[0]
        del self._in_flight[future]
        others = [run for b in self._in_flight.values() for run in b.runs]
        self._in_flight.clear()
        self._done = queue.SimpleQueue()
        _pool(self.max_workers, fresh=True)
        for run in reversed(others):
            run.then = ()
            self._pending.appendleft(run)
        run = batch.runs[0]
        self._ready.append(
            _here(run.key, TimedOut("Task timed out during execution.", TimeoutError("stopped by killing its worker")))
        )
        self._pump()
        return True


def _here(key: int, state: State[Any]) -> TaskResult:
    """A result decided in the parent (the run never reached a worker, or its worker died)."""
    now = time.time()
    return TaskResult(key, state, now, now, "loky")


def _worker_count(max_workers: object) -> int:
    if max_workers is None:
        return loky.cpu_count()
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise ValueError(f"LokyExecutor(max_workers={max_workers!r}): use a whole number >= 1")
    return max_workers


def _pickling_message(run: TaskRun, error: Exception) -> str:
    for key, value in run.inputs.items():
        try:
            cloudpickle.dumps(value)
        except Exception as input_error:
            return (
                f"Task {run.task.name!r}: input {key!r} ({type(value).__qualname__}) cannot be "
                f"pickled to send it to a worker process: {input_error!r}"
            )
    return f"Task {run.task.name!r} cannot be pickled to send it to a worker process: {error!r}"


def _exit_codes(error: BaseException | None) -> str:
    if error is None:
        return "the pool was shut down"
    text = str(error)
    marker = "exit codes of the workers are "
    return text[text.index(marker) + len(marker):].strip() if marker in text else type(error).__name__


def _sigterm_to_exit(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM into an exception so the run's cleanup (killing the pool) happens.
    raise SystemExit(128 + signum)
