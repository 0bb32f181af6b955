"""``DaskExecutor``: runs tasks on Dask distributed, on a local cluster or an existing one.

Data flow (the scheduler, caching and triggers stay in this process, as with loky)::

    scheduler --submit--> pending --batch--> client.submit(_run_batch, context, runs, *futures)
                                               worker thread: run_chain per run
                                               small states -> one pickle (bytes)
                                               large results -> stay in the worker's memory
    scheduler <-collect-- decode states, wrap large results in DaskResult <-- gather (bytes, logs)

What it shares with ``LokyExecutor`` is described with the shared code: batching (which
runs share a batch, batch sizes, suspects after a crash) in ``_batching``; the wire format,
chains, opaque results, tracebacks and logs in ``_wire``. Design points of its own (see the
reliability catalogue, section 3, for what Dask does on its own):

- **Batches**: one Dask task costs milliseconds (scheduler and worker talk through batched
  sends), a task run inside a batch microseconds. A task seen to take longer than
  ``LONG_TASK`` (20 ms), or with a timeout, or never timed yet, travels alone; the others
  are shared among the cluster's free threads, at most one batch per thread in flight.
- **Large results** (1 MiB or more, by ``len`` for bytes-like values, else Dask's
  ``sizeof``) stay on the worker that made them: the worker scatters the value locally
  and publishes it under a dataset name; the parent receives only that name, takes a
  Dask ``Future`` for it (``get_dataset``, then ``unpublish_dataset``) and keeps the state
  with a ``DaskResult``. A later run on the cluster gets the future as an argument of its
  Dask task, so Dask moves the value worker to worker (or not at all); the parent fetches
  it only where it needs the value (output cache, final states). ``end()`` releases them.
  Such a value is held by one worker: if that worker dies, the runs that need it fail.
- **Worker death.** Dask reschedules the Dask tasks a dead worker held, up to the
  scheduler's ``allowed-failures``, then fails them with ``KilledWorker``. A batch that
  gets ``KilledWorker`` with other batches in flight may be a bystander: its runs run
  again, one at a time with nothing else in flight; a run that then kills its worker is
  the culprit and ends ``Failed`` with a message naming it (bodies of bystanders ran more
  than once: make tasks idempotent). The local cluster this executor starts uses
  ``allowed-failures=0``, so a crash costs one worker restart, not four.
- **Timeouts** are soft: Dask runs tasks in worker threads, which cannot be interrupted;
  a task past its timeout ends ``TimedOut`` and its body runs on in the background.
- **Interrupts.** On Ctrl-C or SIGTERM the run's Dask tasks are cancelled and a local
  cluster is closed with its workers; on an existing cluster, bodies already running
  finish there (Dask cannot stop a running thread).
- **Logs.** A Dask worker runs several batches at once in threads and belongs to whoever
  started it: log capture is per thread, and adds a handler instead of replacing them.

``distributed`` is an optional dependency (``pip install "taskloom[dask]"``), imported when
a ``DaskExecutor`` is constructed, never when this module is.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import itertools
import logging
import os
import pickle
import queue
import threading
import time
import uuid
from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import cloudpickle

from ..attempt import TaskResult, TaskRun
from ..context import current as _current_context
from ..states import Failed, State, Success
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
from .base import DeferredResult

if TYPE_CHECKING:
    from distributed import Client, Future, LocalCluster

__all__ = ["DaskExecutor", "DaskResult"]

log = logging.getLogger("taskloom.executors.dask")

#: A task seen to run longer than this (seconds) always travels in a batch of its own.
#: Higher than loky's: one Dask task costs a few milliseconds, a loky one ~0.2 ms.
LONG_TASK = 0.02
#: Results at least this large (bytes) stay on the worker that made them.
LARGE_RESULT = 1 << 20
#: A batch payload at least this large is scattered first (Dask warns about large graphs).
LARGE_PAYLOAD = 4 << 20
#: The local cluster's ``allowed-failures``: fail a task at the first worker it kills.
LOCAL_ALLOWED_FAILURES = 0

#: Where ``pip`` finds the optional dependency.
INSTALL_HINT = 'pip install "taskloom[dask]"'


def _require_distributed() -> None:
    """Import ``distributed``, or raise an ImportError that says which extra to install."""
    try:
        import distributed  # noqa: F401
    except ImportError as error:
        raise ImportError(
            f"DaskExecutor needs Dask distributed, which is not installed ({error}); install "
            f"taskloom's dask extra: {INSTALL_HINT}"
        ) from error


# --- the worker side ------------------------------------------------------------------------
#
# A Dask worker runs several tasks at once in threads, and belongs to whoever started it:
# so log capture is per thread and adds a handler instead of replacing them, and caches
# are bounded.

_local = threading.local()
_capture_lock = threading.Lock()
_capture: list[logging.Handler] = []
_contexts: OrderedDict[bytes, Mapping[str, Any]] = OrderedDict()
_contexts_lock = threading.Lock()


class _ThreadCapture(logging.Handler):
    """Keeps the log records of the thread running a batch, flattened so they pickle."""

    def emit(self, record: logging.LogRecord) -> None:
        records: list[logging.LogRecord] | None = getattr(_local, "records", None)
        if records is None or record.levelno < _local.level:
            return  # not emitted by a batch of ours (another thread or Dask itself)
        flatten_record(record, _current_context())
        records.append(record)


def _start_capture(level: int) -> list[logging.LogRecord]:
    root = logging.getLogger()
    if not _capture:
        with _capture_lock:
            if not _capture:
                _capture.append(_ThreadCapture())
                root.addHandler(_capture[0])
    if root.getEffectiveLevel() > level:
        root.setLevel(level)  # as loky does: let records at the parent's level through
    records: list[logging.LogRecord] = []
    _local.records = records
    _local.level = level
    return records


def _run_context(header: bytes) -> Mapping[str, Any]:
    with _contexts_lock:
        found = _contexts.get(header)
        if found is not None:
            _contexts.move_to_end(header)
            return found
    values: Mapping[str, Any] = cloudpickle.loads(header)
    with _contexts_lock:
        _contexts[header] = values
        while len(_contexts) > 8:
            _contexts.popitem(last=False)
    return values


class _Slot:
    """In a batch payload: the place of the ``index``-th Dask future passed with it."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Slot, (self.index,))


class _Held:
    """In a state sent back: a large result left on the worker, published as ``name``."""

    __slots__ = ("name", "size", "type_name")

    def __init__(self, name: str, size: int, type_name: str) -> None:
        self.name = name
        self.size = size
        self.type_name = type_name

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Held, (self.name, self.size, self.type_name))


def _fill(value: Any, values: Sequence[Any]) -> Any:
    """``value`` with each ``_Slot`` in it (and in its containers) replaced by its value."""
    if isinstance(value, _Slot):
        return values[value.index]
    if isinstance(value, (list, tuple, set, frozenset)):
        return type(value)(_fill(v, values) for v in value)
    if isinstance(value, dict):
        return {k: _fill(v, values) for k, v in value.items()}
    return value


def _size(value: object) -> int:
    if isinstance(value, (bytes, bytearray, str)):
        return len(value)
    if isinstance(value, memoryview):
        return value.nbytes
    if value is None or isinstance(value, (int, float)):
        return 0
    from distributed.sizeof import safe_sizeof

    return safe_sizeof(value, 0)


def _travels(value: object) -> bool:
    """Whether a large value can move (to another worker, or the parent) once left on this
    worker: checked here, while a failure is still its own task's. Buffers (bytes-like
    values, numpy arrays) are not copied for the check."""
    if isinstance(value, (bytes, bytearray, memoryview, str)):
        return True
    buffers: list[pickle.PickleBuffer] = []
    try:
        data = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
        pickle.loads(data, buffers=buffers)
    except Exception:
        return False
    return True


def _hold(state: State[Any]) -> State[Any]:
    """In a worker: leave a large result of a successful run in this worker's memory."""
    value: object = state._result
    if not isinstance(state, Success):
        return state
    size = _size(value)
    if size < LARGE_RESULT or not _travels(value):
        return state  # an unpicklable one fails its task in encode_rows, as with loky
    try:
        from distributed import get_client

        client = get_client()
        name = f"taskloom-result-{uuid.uuid4().hex}"
        # A dict, so a list or tuple is kept whole (scatter would split it into items).
        future = client.scatter({name: value}, hash=False)[name]
        client.publish_dataset(future, name=name)  # held by the scheduler until unpublished
    except Exception as error:  # no worker client: send the value along instead
        log.warning("a %d-byte result could not stay on the worker (%r); sending it", size, error)
        return state
    held = type(state).__new__(type(state))
    held.__setstate__(state.__getstate__())
    held._result = _Held(name, size, f"{type(value).__module__}.{type(value).__qualname__}")
    return held


def _encode_records(records: list[logging.LogRecord]) -> bytes:
    try:
        return cloudpickle.dumps(records)
    except Exception:  # a record with an unpicklable `extra`: keep its text
        plain = [
            logging.makeLogRecord(
                {
                    "name": r.name, "levelno": r.levelno, "levelname": r.levelname,
                    "msg": r.msg, "created": r.created, "process": r.process,
                    "thread": r.thread, "pathname": r.pathname, "lineno": r.lineno,
                    "exc_text": r.exc_text, "task_name": getattr(r, "task_name", None),
                    "flow_run_id": getattr(r, "flow_run_id", None),
                }
            )
            for r in records
        ]
        return cloudpickle.dumps(plain)


def _run_batch(
    header: bytes,
    payload: bytes,
    names_blob: bytes,
    log_level: int,
    parent_pid: int,
    *values: Any,
) -> tuple[bytes, bytes]:
    """Run a batch of task runs in a Dask worker thread; return their states (one pickle)
    and the log records they emitted (another). ``values`` are the Dask futures the runs
    take as inputs, resolved by Dask on this worker."""
    from distributed import get_worker

    # A worker thread in the parent's own process (LocalCluster(processes=False)) logs to
    # the parent's handlers already: capture nothing there.
    records = _start_capture(log_level) if os.getpid() != parent_pid else []
    try:
        keys: list[tuple[int, str]] = pickle.loads(names_blob)
        names = dict(keys)
        try:
            worker = f"dask:{get_worker().address}"
        except ValueError:  # not in a worker (called directly)
            worker = f"dask:{os.getpid()}"
        try:
            run_context = _run_context(header)

            def fill(inputs: dict[str, Any]) -> dict[str, Any]:
                return {name: _fill(value, values) for name, value in inputs.items()}

            runs = load_runs(payload, fill if values else None)
        except Exception as error:
            rows = failed_to_load(keys, error, worker, "on the Dask worker")
            return encode_rows(worker, rows, names), _encode_records(records)
        rows = run_all(runs, run_context, worker, "in a Dask worker")
        rows = [row._replace(state=_hold(row.state)) for row in rows]
        return encode_rows(worker, rows, names), _encode_records(records)
    finally:
        _local.records = None


# --- the parent side ------------------------------------------------------------------------


class DaskResult(DeferredResult):
    """A large task result left on the Dask worker that made it (a Dask ``Future``).

    ``resolve()`` fetches the value (once; later calls return the same object). Passed as
    an input to a later run on the same executor, it travels as the future itself.
    """

    __slots__ = ("_future", "_has_value", "_value", "size", "type_name")

    def __init__(self, future: Future[Any], size: int, type_name: str) -> None:
        self._future: Future[Any] | None = future
        self._has_value = False
        self._value: Any = None
        self.size = size
        self.type_name = type_name

    @property
    def future(self) -> Future[Any] | None:
        """The Dask future of the value; None once released."""
        return self._future

    def resolve(self) -> Any:
        if not self._has_value:
            if self._future is None:
                raise RuntimeError(
                    f"the {self.type_name} result ({self.size} bytes) was released from the "
                    "Dask cluster when its flow run ended, before anything read it"
                )
            self._value = self._future.result()
            self._has_value = True
        return self._value

    def release(self) -> None:
        """Let the cluster forget the value (the parent keeps it if it was fetched)."""
        future, self._future = self._future, None
        if future is not None:
            try:
                future.release()
            except Exception:  # the client is already closed
                pass

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickled outside the executor (which sends the future instead): as the value.
        return (_identity, (self.resolve(),))

    def __repr__(self) -> str:
        where = "fetched" if self._has_value else "on the cluster"
        return f"DaskResult({self.type_name}, {self.size} bytes, {where})"


def _identity(value: Any) -> Any:
    return value


_clients: dict[str, Client] = {}
_atexit_registered: list[bool] = []
_clients_lock = threading.Lock()
#: How long each task (by name) took on workers, smoothed: decides what shares a batch
#: (see ``_batching``). Kept per process, apart from loky's (the costs differ).
_durations: dict[str, float] = {}
_sequence = itertools.count()


def _shared_client(address: str) -> Client:
    """This process's client of the scheduler at ``address``, reused across runs."""
    from distributed import Client

    with _clients_lock:
        client = _clients.get(address)
        if client is not None and client.status == "running":
            return client
        if client is not None:
            _close_quietly(client)
        if not _atexit_registered:
            atexit.register(close_clients)
            _atexit_registered.append(True)
        try:
            client = Client(address, set_as_default=False)
        except Exception as error:
            raise ConnectionError(
                f"DaskExecutor could not connect to the Dask scheduler at {address!r}: {error!r}"
            ) from error
        _clients[address] = client
        return client


def close_clients() -> None:
    """Close the clients kept for ``DaskExecutor(address=...)`` (also done at exit)."""
    with _clients_lock:
        clients = list(_clients.values())
        _clients.clear()
    for client in clients:
        _close_quietly(client)


def _close_quietly(client: Client) -> None:
    try:
        client.close(timeout=5)
    except Exception:
        pass


class _Batch:
    __slots__ = ("alone", "future", "payload", "runs")

    def __init__(
        self, runs: list[TaskRun], future: Future[Any], alone: bool, payload: Any
    ) -> None:
        self.runs = runs
        self.future = future
        #: Nothing else of this executor was in flight while it was (attributes crashes).
        self.alone = alone
        #: The payload, or the future of it when it was scattered (held until it returns).
        self.payload = payload


def _scatter(client: Client, key: str, data: bytes, broadcast: bool = False) -> Future[bytes]:
    """``data`` placed on the cluster ahead of the tasks that take it."""
    return client.scatter({key: data}, broadcast=broadcast, hash=False)[key]


class DaskExecutor:
    """Run tasks on Dask distributed: the scheduler at ``address``, or a local cluster.

    With no ``address`` each flow run starts a ``distributed.LocalCluster`` on the loopback
    interface (keywords go to it: ``n_workers``, ``threads_per_worker``, ``processes``,
    ...; defaults: one single-threaded worker process per core, the web server on a free
    loopback port, ``allowed-failures=0``) and closes it when the run ends. With an
    ``address`` (``"tcp://host:8786"``) it connects a client to that scheduler, reused by
    later runs in this process, and leaves the cluster running.
    The workers need taskloom and the task's modules importable (functions defined in
    ``__main__`` or as closures travel by value).

    Needs the dask extra: ``pip install "taskloom[dask]"``.

    >>> flow.run(executor=DaskExecutor("tcp://127.0.0.1:8786"))   # doctest: +SKIP
    """

    runs_chains = True

    def __init__(self, address: str | None = None, **cluster_kwargs: Any) -> None:
        _require_distributed()
        if address is not None and cluster_kwargs:
            raise ValueError(
                f"DaskExecutor(address={address!r}) connects to an existing cluster; keyword "
                f"arguments ({', '.join(sorted(cluster_kwargs))}) configure the local cluster "
                "started when no address is given"
            )
        self.address = address
        self.cluster_kwargs: dict[str, Any] = cluster_kwargs
        self._cluster: LocalCluster | None = None
        self._client: Client | None = None
        self._slots = 1
        self._pending: deque[TaskRun] = deque()
        self._suspects: deque[TaskRun] = deque()
        #: A suspect runs alone: nothing else is sent until it returns.
        self._replaying = False
        self._in_flight: dict[str, _Batch] = {}
        self._done: queue.SimpleQueue[Future[Any]] = queue.SimpleQueue()
        self._ready: list[TaskResult] = []
        self._header = b""
        self._header_arg: Any = b""  # the header, or the future of it when it is large
        self._run_tag = ""
        self._templates = Templates()
        self._names: dict[int, str] = {}
        self._results: list[DaskResult] = []
        self._log_level = logging.WARNING
        self._previous_sigterm: Any = None

    def __repr__(self) -> str:
        if self.address is not None:
            return f"DaskExecutor(address={self.address!r})"
        options = "".join(f", {k}={v!r}" for k, v in self.cluster_kwargs.items())
        return f"DaskExecutor({options[2:]})"

    @property
    def client(self) -> Client | None:
        """The Dask client of the run in progress (None between runs)."""
        return self._client

    # -- the Executor protocol ----------------------------------------------------------------

    def begin(self, run_context: Mapping[str, Any]) -> DaskExecutor:
        self._header = check_context(run_context)
        self._run_tag = str(run_context.get("flow_run_id", ""))[:8]
        self._templates = Templates()
        self._names = {}
        self._results = []
        self._log_level = logging.getLogger().getEffectiveLevel()
        if self.address is None:
            self._client = self._start_cluster()
        else:
            self._client = _shared_client(self.address)
        try:
            self._slots = max(1, sum(self._client.nthreads().values()))
            self._header_arg = self._header
            if len(self._header) >= LARGE_PAYLOAD:  # a large context: sent once per worker
                key = f"taskloom-context-{self._run_tag}-{next(_sequence)}"
                self._header_arg = _scatter(self._client, key, self._header, broadcast=True)
        except BaseException:
            self.end()
            raise
        self._previous_sigterm = catch_sigterm()
        return self

    def submit(self, runs: Sequence[TaskRun]) -> None:
        self._pending.extend(runs)
        self._pump()

    def collect(self, timeout: float | None) -> list[TaskResult]:
        wait_until = None if timeout is None else time.monotonic() + timeout
        while True:
            if self._ready:  # failed before they could be sent
                results, self._ready = self._ready, []
                return results
            try:
                first = self._done.get(
                    timeout=None if wait_until is None else max(0.0, wait_until - time.monotonic())
                )
            except queue.Empty:
                return []
            done = [first]
            while True:  # take whatever else is done without waiting
                try:
                    done.append(self._done.get_nowait())
                except queue.Empty:
                    break
            results = self._finished(done)
            self._pump()
            results.extend(self._ready)
            self._ready = []
            if results:
                return results

    def end(self) -> None:
        client = self._client
        try:
            if client is not None and self._in_flight:  # interrupted, or abandoned
                futures = [batch.future for batch in self._in_flight.values()]
                try:
                    client.cancel(futures)
                except Exception:
                    pass
                if self._cluster is None:
                    self._unpublish_leftovers(client)
            for result in self._results:
                result.release()
        finally:
            self._results = []
            self._header_arg = b""
            self._pending.clear()
            self._suspects.clear()
            self._replaying = False
            self._in_flight.clear()
            self._ready = []
            self._done = queue.SimpleQueue()
            self._client = None
            if self._cluster is not None:
                cluster, self._cluster = self._cluster, None
                if client is not None:
                    _close_quietly(client)
                try:
                    cluster.close(timeout=10)
                except Exception as error:
                    log.warning("the local Dask cluster did not close cleanly: %r", error)
            restore_sigterm(self._previous_sigterm)
            self._previous_sigterm = None

    # -- the cluster ----------------------------------------------------------------------------

    def _start_cluster(self) -> Client:
        from distributed import Client, LocalCluster

        options: dict[str, Any] = {
            "host": "127.0.0.1",
            # None would mean port 8787, and a warning when another cluster has it.
            "dashboard_address": "127.0.0.1:0",
            "processes": True,
            "threads_per_worker": 1,
            **self.cluster_kwargs,
        }
        options["scheduler_kwargs"] = {
            "allowed_failures": LOCAL_ALLOWED_FAILURES,
            **(options.get("scheduler_kwargs") or {}),
        }
        cluster = LocalCluster(**options)
        try:
            client = Client(cluster, set_as_default=False)
        except BaseException:
            cluster.close()
            raise
        self._cluster = cluster
        return client

    def _unpublish_leftovers(self, client: Client) -> None:
        """After an interrupted run on a shared cluster: drop the large results its batches
        published that the parent never took over (a batch still running may add more)."""
        try:
            ours = [n for n in client.list_datasets() if str(n).startswith("taskloom-result-")]
            taken = {r.future.key for r in self._results if r.future is not None}
            leftovers = [n for n in ours if n not in taken]
            if leftovers:
                client.unpublish_dataset(leftovers)
        except Exception:
            pass

    # -- batching -------------------------------------------------------------------------------

    def _next_batch(self, free: int) -> list[TaskRun]:
        if self._suspects or self._replaying:  # after a crash: one at a time, alone
            if self._in_flight or not self._suspects:
                return []
            self._replaying = True
            return [self._suspects.popleft()]
        return take_batch(self._pending, free, _durations, LONG_TASK)

    def _pump(self) -> None:
        limit = self._slots
        while (self._pending or self._suspects) and len(self._in_flight) < limit:
            batch = self._next_batch(limit - len(self._in_flight))
            if not batch:
                return
            self._send(batch)

    def _encode(self, batch: list[TaskRun]) -> tuple[bytes, list[Future[Any]]]:
        """The batch as bytes, and the futures of the large results among its inputs."""
        futures: dict[str, tuple[int, Future[Any]]] = {}

        def slotted(run: TaskRun) -> dict[str, Any]:
            return {k: self._slotted(v, futures) for k, v in run.inputs.items()}

        payload = self._templates.encode(batch, slotted if self._results else None)
        return payload, [future for _, future in sorted(futures.values(), key=lambda p: p[0])]

    def _slotted(self, value: Any, futures: dict[str, tuple[int, Future[Any]]]) -> Any:
        """``value`` with each ``DaskResult`` in it replaced by a ``_Slot`` for its future."""
        if isinstance(value, DaskResult):
            future = value.future
            if future is None:  # released (a previous run's): send the value itself
                return value.resolve()
            entry = futures.get(future.key)
            if entry is None:
                entry = futures[future.key] = (len(futures), future)
            return _Slot(entry[0])
        if isinstance(value, (list, tuple, set, frozenset)):
            return type(value)(self._slotted(v, futures) for v in value)
        if isinstance(value, dict):
            return {k: self._slotted(v, futures) for k, v in value.items()}
        return value

    def _send(self, batch: list[TaskRun]) -> None:
        client = self._client
        assert client is not None, "DaskExecutor.submit() before begin()"
        encoded = encode_batch(batch, self._encode, self._ready, "dask")
        if encoded is None:
            return
        batch, (payload, futures), keys = encoded
        self._names.update(keys)
        name = batch[0].task.name if len(batch) == 1 else "batch"
        dask_key = f"taskloom-{name}-{self._run_tag}-{next(_sequence)}"
        payload_arg: Any = payload
        if len(payload) >= LARGE_PAYLOAD:  # large inputs: scattered, not in the graph
            payload_arg = _scatter(client, f"{dask_key}-payload", payload)
        future = client.submit(
            _run_batch, self._header_arg, payload_arg, pickle.dumps(keys), self._log_level,
            os.getpid(), *futures, key=dask_key, pure=False,
        )
        alone = not self._in_flight
        for other in self._in_flight.values():
            other.alone = False
        self._in_flight[dask_key] = _Batch(batch, future, alone, payload_arg)
        future.add_done_callback(self._done.put)

    # -- results ------------------------------------------------------------------------------

    def _finished(self, done: list[Future[Any]]) -> list[TaskResult]:
        client = self._client
        assert client is not None
        batches: list[_Batch] = []
        for future in done:
            batch = self._in_flight.pop(future.key, None)
            if batch is not None and batch.future is future:
                batches.append(batch)
        if not self._in_flight:
            self._replaying = False
        results: list[TaskResult] = []
        finished: list[_Batch] = []
        failed: list[_Batch] = []
        for batch in batches:  # sorted before any is released (released reads "cancelled")
            (finished if batch.future.status == "finished" else failed).append(batch)
        outputs: list[tuple[bytes, bytes]] = []
        if finished:
            try:
                outputs = client.gather([b.future for b in finished])
            except Exception:  # one of them was lost meanwhile: take them one by one
                outputs = []
        for i, batch in enumerate(finished):
            try:
                output = outputs[i] if outputs else batch.future.result()
            except BaseException as lost:
                results.extend(self._failed_batch(batch, lost))
            else:
                results.extend(self._decode(batch, *output))
            batch.future.release()
        for batch in failed:
            error = _batch_error(batch.future)
            results.extend(self._failed_batch(batch, error))
            batch.future.release()
        return results

    def _decode(self, batch: _Batch, data: bytes, logs: bytes) -> list[TaskResult]:
        try:
            for record in cloudpickle.loads(logs):
                logging.getLogger(record.name).handle(record)
        except Exception as error:
            log.warning("log records from a Dask worker could not be unpickled: %r", error)
        results, held = decode_rows(data, batch.runs, self._names, _durations, "dask", _Held)
        if held:
            self._take_over(results, held)
        return results

    def _take_over(self, results: list[TaskResult], held: list[tuple[int, _Held]]) -> None:
        """Take a future for each large result a worker published, and unpublish it."""
        client = self._client
        assert client is not None
        names = [h.name for _, h in held]
        try:
            futures = client.get_dataset(names)
            client.unpublish_dataset(names)
        except Exception as error:
            for index, h in held:
                result = results[index]
                message = (
                    f"Task {self._names.get(result.key, '?')!r}: its {h.type_name} result "
                    f"({h.size} bytes) was left on a Dask worker and is gone: {error!r}"
                )
                results[index] = result._replace(state=Failed(message, error))
            return
        for (index, h), future in zip(held, futures):
            deferred = DaskResult(future, h.size, h.type_name)
            self._results.append(deferred)
            results[index].state._result = deferred

    def _failed_batch(self, batch: _Batch, error: BaseException) -> list[TaskResult]:
        """A batch that did not return: its worker died, or Dask could not run it."""
        from distributed import KilledWorker

        if isinstance(error, KilledWorker):
            return self._killed(batch, error)
        results = []
        for run in batch.runs:
            if isinstance(error, (asyncio.CancelledError, concurrent.futures.CancelledError)):
                message = (
                    f"Task {run.task.name!r} was cancelled by the Dask cluster (a large input "
                    f"it needed may have been lost with its worker): {error}"
                )
            else:
                message = f"Task {run.task.name!r} could not run on the Dask cluster: {error!r}"
            results.append(_here(run.key, Failed(message, error)))
        return results

    def _killed(self, batch: _Batch, error: BaseException) -> list[TaskResult]:
        """``KilledWorker``: the culprit if it ran alone, else every run is a suspect."""
        runs = batch.runs
        if batch.alone and len(runs) == 1 and not runs[0].then:
            run = runs[0]
            message = (
                f"Task {run.task.name!r} killed the Dask worker running it: the worker process "
                "died (os._exit, a signal such as SIGKILL from the out-of-memory killer, a crash "
                "in native code, or the nanny stopping it over its memory limit)"
            )
            cause = RemoteTaskError("distributed.KilledWorker", str(error), "")
            return [_here(run.key, Failed(message, cause))]
        requeue(self._suspects, runs)
        log.warning(
            "a Dask worker died with %d task runs of this flow in flight; running them again "
            "one at a time to find the cause",
            len(runs),
        )
        return []


def _batch_error(future: Future[Any]) -> BaseException:
    try:
        error = future.exception(timeout=5)
    except BaseException as raised:  # cancelled: exception() raises the CancelledError
        return raised
    if error is None:
        return RuntimeError(f"the Dask task ended {future.status!r}")
    return error


def _here(key: int, state: State[Any]) -> TaskResult:
    """A result decided in the parent (the run never reached a worker, or its worker died)."""
    return decided_here(key, state, "dask")
