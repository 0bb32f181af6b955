"""``LokyExecutor``: runs tasks in parallel on a loky process pool, and contains its faults.

Data flow::

    scheduler --submit--> pending --batch--> cloudpickle --loky--> worker: _run_batch
                                                                     run_chain per run
                                                                     encode each state
    scheduler <-collect-- decode each state <------ (key, bytes, seconds), log records

What it shares with ``DaskExecutor`` is described with the shared code: batching (which
runs share a batch, batch sizes, suspects after a crash) in ``_batching``; the wire format,
chains, opaque results, tracebacks and logs in ``_wire``. Design points of its own, each a
lesson measured on loky (see the reliability catalogue):

- **Batches.** One loky submission costs ~100-400 µs; a batch of ready runs costs a few µs
  per task. Each worker has one batch in flight. A task seen to take longer than
  ``LONG_TASK`` (5 ms), or with a timeout, or never timed yet, travels alone.
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
- **Logs.** A worker process is the pool's own: its root logger keeps only the handler
  that captures records for the parent; each record also carries the task's ``attempt``.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from typing import Any

import cloudpickle
import loky
from loky.process_executor import BrokenProcessPool, ShutdownExecutorError

from ..attempt import TaskResult, TaskRun
from ..context import current as _current_context
from ..states import Failed, State, Success, TimedOut
from ._batching import decided_here, decode_rows, encode_batch, requeue, take_batch
from ..errors import RemoteTaskError
from ._wire import (
    Templates,
    catch_sigterm,
    check_context,
    encode_rows,
    failed_to_load,
    flatten_record,
    load_runs,
    restore_sigterm,
    run_all,
)
from .base import DeferredResult, resolve_deferred

__all__ = ["LokyExecutor", "RemoteTaskError"]

log = logging.getLogger("taskloom.executors.loky")

#: A task seen to run longer than this (seconds) always travels in a batch of its own.
LONG_TASK = 0.005
#: How long past its timeout a task may stay stuck (in C code) before its pool is killed.
HARD_TIMEOUT_GRACE = 2.0


# --- the worker side ------------------------------------------------------------------------

_records: list[logging.LogRecord] = []
_context_cache: list[tuple[bytes, Mapping[str, Any]]] = []


class _CaptureHandler(logging.Handler):
    """Keeps a worker's log records, flattened so they pickle, to send back with results."""

    def emit(self, record: logging.LogRecord) -> None:
        values = _current_context()
        flatten_record(record, values)
        record.attempt = values.get("task_run_count")
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


def _run_batch(
    header: bytes, payload: bytes, keys: list[tuple[int, str]], log_level: int
) -> tuple[bytes, list[logging.LogRecord]]:
    """Run a batch of task runs in a worker; return their states (one pickle) and logs."""
    _records.clear()
    logging.getLogger().setLevel(log_level)
    names = dict(keys)
    worker = f"loky:{os.getpid()}"
    try:
        if _context_cache and _context_cache[0][0] == header:
            run_context = _context_cache[0][1]
        else:
            run_context = cloudpickle.loads(header)
            _context_cache[:] = [(header, run_context)]
        runs = load_runs(payload, _resolve_inputs)
    except Exception as error:
        rows = failed_to_load(keys, error, worker, "in the worker process")
        return encode_rows(worker, rows, names, _share), list(_records)
    rows = run_all(runs, run_context, worker, "in a worker process")
    return encode_rows(worker, rows, names, _share), list(_records)


def _resolve_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """The inputs with each ``SharedResult`` in them read from shared memory."""
    for name, value in inputs.items():
        if isinstance(value, (DeferredResult, list, tuple, dict, set, frozenset)):
            inputs[name] = resolve_deferred(value)
    return inputs


# --- the parent side ------------------------------------------------------------------------

_pools: dict[int, loky.ProcessPoolExecutor] = {}
#: How long each task (by name) took in workers, smoothed: decides what shares a batch
#: (see ``_batching``). Kept per process, like the pools, so a new LokyExecutor() per run
#: still knows.
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
        self._templates = Templates()
        self._names: dict[int, str] = {}
        self._shared: list[str] = []
        self._log_level = logging.WARNING
        self._previous_sigterm: Any = None

    def __repr__(self) -> str:
        return f"LokyExecutor(max_workers={self.max_workers})"

    # -- the Executor protocol ----------------------------------------------------------------

    def begin(self, run_context: Mapping[str, Any]) -> LokyExecutor:
        self._header = check_context(run_context)
        self._templates = Templates()
        self._names = {}
        self._log_level = logging.getLogger().getEffectiveLevel()
        _pool(self.max_workers)  # start the workers while the scheduler decides
        self._previous_sigterm = catch_sigterm()
        return self

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
            restore_sigterm(self._previous_sigterm)
            self._previous_sigterm = None

    # -- batching -----------------------------------------------------------------------------

    def _next_batch(self, free: int) -> list[TaskRun]:
        if self._suspects:  # after a crash: one at a time, to find the culprit
            return [self._suspects.popleft()] if not self._in_flight else []
        return take_batch(self._pending, free, _durations, LONG_TASK)

    def _pump(self) -> None:
        # One batch per worker (see _batching).
        limit = self.max_workers
        while (self._pending or self._suspects) and len(self._in_flight) < limit:
            batch = self._next_batch(limit - len(self._in_flight))
            if not batch:
                return
            self._send(batch)

    def _send(self, batch: list[TaskRun]) -> None:
        encoded = encode_batch(batch, self._templates.encode, self._ready, "loky")
        if encoded is None:
            return
        batch, payload, keys = encoded
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
        results, shared = decode_rows(
            data, batch.runs, self._names, _durations, "loky", SharedResult
        )
        self._shared.extend(result.path for _, result in shared)
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
        requeue(self._suspects, suspects)  # each to run alone
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
        requeue(self._pending, others)
        run = batch.runs[0]
        self._ready.append(
            _here(run.key, TimedOut("Task timed out during execution.", TimeoutError("stopped by killing its worker")))
        )
        self._pump()
        return True


def _here(key: int, state: State[Any]) -> TaskResult:
    """A result decided in the parent (the run never reached a worker, or its worker died)."""
    return decided_here(key, state, "loky")


def _worker_count(max_workers: object) -> int:
    if max_workers is None:
        return loky.cpu_count()
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise ValueError(f"LokyExecutor(max_workers={max_workers!r}): use a whole number >= 1")
    return max_workers


def _exit_codes(error: BaseException | None) -> str:
    if error is None:
        return "the pool was shut down"
    text = str(error)
    marker = "exit codes of the workers are "
    return text[text.index(marker) + len(marker):].strip() if marker in text else type(error).__name__
