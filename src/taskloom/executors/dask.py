"""``DaskExecutor``: runs tasks on Dask distributed, on a local cluster or an existing one.

Batching, worker deaths and culprits, large results and a run's lifecycle are the
dispatcher's (``_dispatch``); the worker's steps are ``_worker.run_batch``, run in a Dask
task. What is Dask's own (see the reliability catalogue, section 3, for what Dask does on
its own):

- **The cluster.** Without an address, each flow run starts a ``LocalCluster`` and closes
  it at its end. With one, the client of that scheduler is shared by every run of this
  process (also from several threads at once) and the cluster is left running.
- **Batches**: one Dask task costs milliseconds, so a task travels alone only past
  ``LONG_TASK`` (20 ms), which is also what a group of follow-ons seen to be short may
  add to its run (``runner``, "Follow-ons"): a 20x20 grid of small tasks is one Dask task. A batch's payload of ``LARGE_PAYLOAD`` or more is scattered
  first (Dask warns about large graphs), and so is a large run context (once per worker).
- **Large results** (``LARGE_RESULT`` or more, by ``len`` for bytes-like values, else
  Dask's ``sizeof``) stay on the worker that made them: the worker keeps the value in a
  dict of its process (``_kept``) under a name of its run; the parent then submits a Dask
  task of that name (``_take_kept``) bound to that worker, which takes the value out of
  the dict, and keeps its future as a ``DaskResult``. A later run gets the future as an
  argument of its Dask task (in the payload, a ``_Slot`` marks its place), so Dask moves
  the value worker to worker, or not at all. The Dask task carries a recipe: the run that
  made the value, with its inputs. If the worker holding the value dies, Dask computes
  the key again elsewhere (its own behaviour for its graph): the dict has no value there,
  so the task runs the recipe, and the runs that need the value still get it, as long as
  their own large inputs can be had again (Dask holds them while a key needs them).
- **Worker death.** Dask reschedules the tasks a dead worker held, up to the scheduler's
  ``allowed-failures``, then fails them with ``KilledWorker``: the batches on the dead
  worker, the culprit's and any queued behind it there. The local cluster this executor
  starts uses ``allowed-failures=0``, so a crash costs one worker restart, not four.
- **No workers.** A run waits at most ``worker_wait`` seconds for a first worker, then
  fails with ``NoWorkersError`` naming the scheduler's address (it never queues tasks on a
  cluster nobody serves).
- **Timeouts** end the run ``TimedOut`` when they pass, but Dask runs tasks in worker
  threads, which cannot be interrupted: the body runs on. So that a hung body never holds
  a worker for good, the worker is restarted through its nanny once a task outlives its
  timeout by ``hard_timeout_grace`` seconds: from the worker (``_watch_overrun``: a body
  still running in its timeout thread), or from the parent when the whole batch is stuck
  (C code holding the GIL: the dispatcher's hard deadline, ``kill``). Other tasks running
  on that worker are lost with it and run again (``_dispatch``: suspects).
- **Interrupts.** An interrupted run (Ctrl-C, SIGINT, SIGTERM) first asks the workers
  (``Client.run``) to stop the threads running its batches: ``BatchInterrupted`` is raised
  in them asynchronously (``PyThreadState_SetAsyncExc``: at the next Python bytecode, so a
  body in a long C call stops only when it returns), and each batch comes back with what
  finished before it, recorded as finished. A run that ends with batches out then has
  them cancelled, and a local cluster is closed with its workers; on an existing cluster,
  a body still running finishes there, and the large results it keeps are dropped.
- **Logs.** A Dask worker belongs to whoever started it: capture is per thread, beside its
  handlers. A worker thread in this very process (``processes=False``) logs to the
  parent's handlers already, and captures nothing.

``distributed`` is an optional dependency (the dask extra: ``pip install -e ".[dask]"``), imported when
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
import threading
import time
import uuid
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NamedTuple

import cloudpickle

from ..attempt import OVERRUN_THREAD, FollowOn, TaskResult, TaskRun, member_inputs
from ..errors import RemoteTaskError
from ..states import Failed, State, Success
from . import _groups
from ._dispatch import Dispatcher, Loss, Reply, Workers
from ._wire import Templates
from ._worker import LogCapture, run_batch, stop_thread, thread_done
from .base import DeferredResult, ExecutorRun

if TYPE_CHECKING:
    from distributed import Client, Future, LocalCluster

__all__ = ["DaskExecutor", "DaskResult", "NoWorkersError", "close_clients"]

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
#: Seconds a run waits for a first worker on a cluster that has none (``worker_wait``).
WORKER_WAIT = 30.0
#: Seconds a task may outlive its timeout before its worker is restarted (``hard_timeout_grace``).
HARD_TIMEOUT_GRACE = 5.0

#: Where ``pip`` finds the optional dependency.
INSTALL_HINT = 'pip install -e ".[dask]" in the taskloom clone (or: pip install distributed)'

#: The prefix of the names large results are kept under.
_DATASETS = "taskloom-result-"


class MainGuardError(RuntimeError):
    """A local cluster could not start because the script runs its flow on import.

    Dask's worker processes start by importing the main script again; a script that calls
    ``flow.run`` at module level (not under ``if __name__ == "__main__":``) makes each worker
    try to start a cluster of its own, and multiprocessing refuses.
    """

    def __init__(self, script: str) -> None:
        super().__init__(
            f"DaskExecutor could not start its local cluster: its worker processes import "
            f"{script} again, which runs the flow again. Put the flow run under "
            f'`if __name__ == "__main__":` in {script}.'
        )


class NoWorkersError(TimeoutError):
    """The Dask scheduler had no worker for a run within ``DaskExecutor(worker_wait=...)``."""


def _unguarded_main_script() -> str | None:
    """The main script's path when its source has no ``if __name__ == "__main__":`` guard."""
    import sys

    path = getattr(sys.modules.get("__main__"), "__file__", None)
    if not isinstance(path, str):
        return None
    try:
        with open(path, encoding="utf-8", errors="replace") as script:
            source = script.read()
    except OSError:
        return None
    if "__main__" in source:
        return None
    return os.path.basename(path)


def _check_main_guard() -> None:
    """In a worker process that is importing the main script again, stop at once, in one line.

    multiprocessing marks a spawned process as ``_inheriting`` while it re-imports the
    parent's main module; starting a cluster there would fail with a page of traceback.
    """
    import multiprocessing

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise SystemExit(str(MainGuardError(_unguarded_main_script() or "the main script")))


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

_LOGS = LogCapture(sole=False)


class _Slot:
    """In a batch payload: the place of the ``index``-th Dask future passed with it."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index

    def __reduce__(self) -> tuple[type[_Slot], tuple[int]]:
        return (_Slot, (self.index,))


class _Held:
    """In a state sent back: a large result kept on the worker at ``address`` as ``name``."""

    __slots__ = ("address", "name", "size", "type_name")

    def __init__(self, name: str, size: int, type_name: str, address: str) -> None:
        self.name = name
        self.size = size
        self.type_name = type_name
        self.address = address

    def __reduce__(self) -> tuple[type[_Held], tuple[str, int, str, str]]:
        return (_Held, (self.name, self.size, self.type_name, self.address))


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


#: Large results kept in this worker process until the parent's ``_take_kept`` takes them.
_kept: dict[str, Any] = {}
_kept_lock = threading.Lock()


def _hold(prefix: str, state: State[Any]) -> State[Any]:
    """In a worker: keep a large result of a successful run in this process, under a name
    that starts with ``prefix``, until the parent's ``_take_kept`` task takes it."""
    value: object = state.result
    if not isinstance(state, Success):
        return state
    size = _size(value)
    if size < LARGE_RESULT or not _travels(value):
        return state  # an unpicklable one fails its task in encode_rows, as with loky
    from distributed import get_worker

    try:
        address = get_worker().address
    except ValueError:  # not in a worker (called directly): send the value along
        return state
    name = f"{prefix}{uuid.uuid4().hex}"
    with _kept_lock:
        _kept[name] = value
    type_name = f"{type(value).__module__}.{type(value).__qualname__}"
    return state.replace(result=_Held(name, size, type_name, address))


def _take_kept(name: str, header: bytes, recipe: bytes | None, *values: Any) -> Any:
    """The Dask task of a large result: the value kept here under ``name`` (where it was
    made), else (its worker died) made again by running ``recipe``, the run that made it
    (``values``: its large inputs, for their ``_Slot``s)."""
    with _kept_lock:
        found = _kept.pop(name, _kept)
    if found is not _kept:
        return found
    if recipe is None:
        raise RuntimeError(f"the large result {name} was lost with its worker and cannot be made again")
    from ._worker import load_runs, run_all

    def fill(inputs: dict[str, Any]) -> dict[str, Any]:
        return {k: _fill(v, values) for k, v in inputs.items()}

    [run] = load_runs(recipe, fill if values else None)
    log.warning("Task %r: making its large result again, lost with the Dask worker that held it", run.task.name)
    [result] = run_all([run], cloudpickle.loads(header), "dask", "on a Dask worker")
    if not isinstance(result.state, Success):
        raise RuntimeError(
            f"Task {run.task.name!r}: its large result was lost with its Dask worker, and "
            f"running it again ended {type(result.state).__name__}: {result.state.message}"
        )
    return result.state.result


def _drop_kept(prefix: str) -> int:
    """In each worker (``client.run``), after an interrupted run: forget the large results
    kept under ``prefix`` that no ``_take_kept`` took."""
    with _kept_lock:
        names = [name for name in _kept if name.startswith(prefix)]
        for name in names:
            del _kept[name]
    return len(names)


#: The threads of this worker running a batch, by the run's token (its ``datasets``).
_batches: dict[str, set[int]] = {}
_batches_lock = threading.Lock()


def _interrupt_batches(token: str) -> int:
    """On a worker (``Client.run``): raise ``BatchInterrupted`` in the threads running a
    batch of the run ``token``; how many there were."""
    with _batches_lock:
        threads = list(_batches.get(token, ()))
        for thread in threads:
            stop_thread(thread)
    return len(threads)


def _run_batch(
    header: bytes,
    payload: bytes,
    keys_blob: bytes,
    log_level: int,
    parent_pid: int,
    datasets: str,
    grace: float | None,
    *values: Any,
) -> Reply:
    """Run a batch in a Dask worker thread (``_worker.run_batch``). ``values`` are the
    Dask futures the runs take as inputs, resolved by Dask on this worker; large results
    are published under names starting with ``datasets``; a body that outlives its
    timeout by ``grace`` seconds gets this worker restarted (``_watch_overrun``)."""
    from distributed import get_worker

    try:
        worker = f"dask:{get_worker().address}"
    except ValueError:  # not in a worker (called directly)
        worker = f"dask:{os.getpid()}"

    def fill(inputs: dict[str, Any]) -> dict[str, Any]:
        return {name: _fill(value, values) for name, value in inputs.items()}

    if os.getpid() != parent_pid:
        _join_groups()
    me = threading.get_ident()
    with _batches_lock:
        _batches.setdefault(datasets, set()).add(me)
    try:
        return run_batch(
            header, payload, pickle.loads(keys_blob), log_level, worker=worker,
            where="on a Dask worker", capture=_LOGS if os.getpid() != parent_pid else None,
            fill=fill if values else None, prepare=lambda state: _hold(datasets, state),
        )
    finally:
        with _batches_lock:
            running = _batches.get(datasets, set())
            running.discard(me)
            if not running:
                _batches.pop(datasets, None)
            thread_done(me)  # (an interrupt that came too late never reaches Dask's code)
        if grace is not None and os.getpid() != parent_pid:  # never restart the caller's process
            _watch_overrun(grace)


_joined: list[bool] = []


def _join_groups() -> None:
    """Once per worker process: lead a process group, noted on the host, and kill what
    the tasks of workers that died here before it left running (``_groups``)."""
    if _joined:
        return
    _joined.append(True)
    _groups.register()
    _groups.reap()


#: The overrun threads a watchdog already looks after (in this worker process).
_watched: weakref.WeakSet[threading.Thread] = weakref.WeakSet()
_watched_lock = threading.Lock()


def _watch_overrun(grace: float) -> None:
    """In a Dask worker, after a batch: if a task body outlived its timeout (its thread is
    an ``OVERRUN_THREAD``), give it ``grace`` seconds more, then restart this worker."""
    with _watched_lock:
        overrun = [
            t for t in threading.enumerate()
            if t.name == OVERRUN_THREAD and t.is_alive() and t not in _watched
        ]
        _watched.update(overrun)
    if not overrun:
        return
    from distributed import get_client, get_worker

    try:  # in the batch's thread: a worker task, where both are known
        worker = get_worker()
        address, client = worker.address, get_client()
    except ValueError:
        return
    if not worker.nanny:
        return  # nothing would start it again
    threading.Thread(
        target=_restart_if_running, args=(overrun, grace, address, client),
        daemon=True, name="taskloom-overrun-watch",
    ).start()


def _restart_if_running(threads: list[threading.Thread], grace: float, address: str, client: Client) -> None:
    deadline = time.monotonic() + grace
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    if not any(thread.is_alive() for thread in threads):
        return
    log.warning(
        "a task body still runs %.1f s past its timeout on Dask worker %s: restarting the "
        "worker through its nanny", grace, address,
    )
    try:
        client.restart_workers([address], raise_for_error=False)
    except Exception as error:  # the worker may be gone before the answer comes back
        log.debug("restart of %s: %r", address, error)


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
        """The value, fetched from the cluster on first call."""
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
#: What the runs on the cluster at each address share (see ``_dispatch.Workers``).
_workers: dict[str, Workers] = {}
_atexit_registered: list[bool] = []
_clients_lock = threading.Lock()
_sequence = itertools.count()


def _shared_client(address: str) -> tuple[Client, Workers]:
    """This process's client of the scheduler at ``address``, reused across runs."""
    from distributed import Client

    with _clients_lock:
        workers = _workers.setdefault(address, Workers())
        client = _clients.get(address)
        if client is not None and client.status == "running":
            return client, workers
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
        return client, workers


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


def _scatter(client: Client, key: str, data: bytes, broadcast: bool = False) -> Future[bytes]:
    """``data`` placed on the cluster ahead of the tasks that take it."""
    return client.scatter({key: data}, broadcast=broadcast, hash=False)[key]


class _Out(NamedTuple):
    """A batch ready to send: its payload, the futures of the large results among its
    inputs (in the order of their ``_Slot``s), and a label for its Dask key."""

    payload: bytes
    futures: list[Future[Any]]
    label: str


class _DaskRun:
    """One flow run's side of a Dask cluster (the ``Backend`` of ``_dispatch``)."""

    name = "dask"
    long_task = LONG_TASK
    # A batch queued on the cluster cannot be told from one running (``started``), so an
    # interrupt could not hold it back.
    queues_ahead = False

    def __init__(self, executor: DaskExecutor, tag: str) -> None:
        self._executor = executor
        self.hard_timeout_grace = executor.hard_timeout_grace
        self._tag = tag
        self._datasets = f"{_DATASETS}{uuid.uuid4().hex[:12]}-"
        self._cluster: LocalCluster | None = None
        self._client: Client | None = None
        self._header: bytes | Future[bytes] = b""  # or the future of it, when it is large
        self._log_level = logging.WARNING
        self._results: list[DaskResult] = []  # its large results, released at stop
        self._payloads: dict[str, Future[bytes]] = {}  # scattered payloads, until they return
        self._templates: Templates | None = None

    @property
    def client(self) -> Client | None:
        """The run's Dask client (None before start and after stop)."""
        return self._client

    def start(self, header: bytes, log_level: int) -> tuple[int, Workers]:
        self._log_level = log_level
        address = self._executor.address
        if address is None:
            client, workers = self._start_cluster(), Workers()
        else:
            client, workers = _shared_client(address)
        self._client = client
        self._executor._live.append(self)
        try:
            slots = _wait_for_workers(client, self._executor.worker_wait)
            self._header = header
            if len(header) >= LARGE_PAYLOAD:  # a large context: sent once per worker
                key = f"taskloom-context-{self._tag}-{next(_sequence)}"
                self._header = _scatter(client, key, header, broadcast=True)
        except BaseException:
            self.stop(None)
            raise
        return slots, workers

    def _start_cluster(self) -> Client:
        from distributed import Client, LocalCluster

        options: dict[str, Any] = {
            "host": "127.0.0.1",
            # None would mean port 8787, and a warning when another cluster has it.
            "dashboard_address": "127.0.0.1:0",
            "processes": True,
            "threads_per_worker": 1,
            **self._executor.cluster_kwargs,
        }
        options["scheduler_kwargs"] = {
            "allowed_failures": LOCAL_ALLOWED_FAILURES,
            **(options.get("scheduler_kwargs") or {}),
        }
        _check_main_guard()
        try:
            cluster = LocalCluster(**options)
        except RuntimeError:
            script = _unguarded_main_script()
            if script is None:
                raise
            raise MainGuardError(script) from None
        try:
            client = Client(cluster, set_as_default=False)
        except BaseException:
            cluster.close()
            raise
        self._cluster = cluster
        return client

    def encode(self, templates: Templates, batch: Sequence[TaskRun]) -> _Out:
        self._templates = templates  # the run's: recipes of large results use it too
        futures: dict[str, tuple[int, Future[Any]]] = {}

        def slotted(inputs: dict[str, Any]) -> dict[str, Any]:
            return {k: self._slotted(v, futures) for k, v in inputs.items()}

        payload = templates.encode(batch, slotted if self._results else None)
        ordered = [future for _, future in sorted(futures.values(), key=lambda p: p[0])]
        return _Out(payload, ordered, batch[0].task.name if len(batch) == 1 else "batch")

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

    def send(self, out: _Out, keys: Sequence[tuple[int, str]]) -> Future[Reply]:
        client = self._client
        assert client is not None, "send() before start()"
        key = f"taskloom-{out.label}-{self._tag}-{next(_sequence)}"
        payload: bytes | Future[bytes] = out.payload
        if len(out.payload) >= LARGE_PAYLOAD:  # large inputs: scattered, not in the graph
            payload = self._payloads[key] = _scatter(client, f"{key}-payload", out.payload)
        return client.submit(
            _run_batch, self._header, payload, pickle.dumps(list(keys)), self._log_level,
            os.getpid(), self._datasets, self.hard_timeout_grace, *out.futures, key=key,
            pure=False,
        )

    def receive(self, sent: Sequence[Future[Reply]]) -> list[Reply | BaseException]:
        client = self._client
        assert client is not None
        # Read before any is released: a released future reads "cancelled".
        finished = [future.status == "finished" for future in sent]
        gathered: list[Reply] = []
        if any(finished):
            try:
                gathered = client.gather([f for f, ok in zip(sent, finished) if ok])
            except Exception:  # one of them was lost meanwhile: take them one by one
                gathered = []
        replies: list[Reply | BaseException] = []
        outputs = iter(gathered)
        for future, ok in zip(sent, finished):
            reply: Reply | BaseException
            if not ok:
                reply = _batch_error(future)
            elif gathered:
                reply = next(outputs)
            else:
                try:
                    reply = future.result()
                except (Exception, asyncio.CancelledError) as lost:
                    reply = lost
            replies.append(reply)
            future.release()
            self._payloads.pop(future.key, None)
        return replies

    def loss(self, error: BaseException) -> Loss:
        from distributed import KilledWorker

        if isinstance(error, KilledWorker):
            self._reap()
            why = (
                "killed the Dask worker running it: the worker process died (os._exit, a "
                "signal such as SIGKILL from the out-of-memory killer, a crash in native "
                "code, or the nanny stopping it over its memory limit)"
            )
            cause = RemoteTaskError("distributed.KilledWorker", str(error), "")
            return Loss(True, why, cause, "KilledWorker")
        if isinstance(error, (asyncio.CancelledError, concurrent.futures.CancelledError)):
            why = (
                "was cancelled by the Dask cluster (a large input it needed may have been "
                f"lost with its worker): {error}"
            )
            return Loss(False, why, error)
        return Loss(False, f"could not run on the Dask cluster: {error!r}", error)

    def _reap(self) -> None:
        """After a worker died: this process (for workers on its own host, even when none
        of them is left alive) and each live worker kill what the tasks of dead workers on
        their host left running (``_groups.reap``)."""
        _groups.reap()
        client = self._client
        if client is None:
            return
        try:
            client.run(_groups.reap)
        except Exception as error:
            log.debug("could not reap the processes of a dead Dask worker: %r", error)

    def take_over(
        self, results: list[TaskResult], runs: Sequence[TaskRun], names: Mapping[int, str]
    ) -> None:
        """Take a future for each large result a worker kept: a Dask task that takes the
        value where it is, or makes it again from its run (``_take_kept``)."""
        if not any(isinstance(result.state.result, _Held) for result in results):
            return
        client = self._client
        assert client is not None
        made = {run.key: run for run in runs}
        follow_ons = {f.key: f for run in runs for f in run.then}
        states = {result.key: result.state for result in results}
        for index, result in enumerate(results):
            held = result.state.result
            if not isinstance(held, _Held):
                continue
            futures: dict[str, tuple[int, Future[Any]]] = {}
            recipe = self._recipe(result.key, made, follow_ons, states, futures)
            ordered = [future for _, future in sorted(futures.values(), key=lambda p: p[0])]
            future = client.submit(
                _take_kept, held.name, self._header, recipe, *ordered, key=held.name,
                workers=[held.address], allow_other_workers=True, pure=False,
            )
            deferred = DaskResult(future, held.size, held.type_name)
            self._results.append(deferred)
            state = result.state.replace(result=deferred)
            results[index] = result._replace(state=state)
            states[result.key] = state

    def _recipe(
        self,
        key: int,
        made: Mapping[int, TaskRun],
        follow_ons: Mapping[int, FollowOn],
        states: Mapping[int, State[Any]],
        futures: dict[str, tuple[int, Future[Any]]],
    ) -> bytes | None:
        """The run that made result ``key``, encoded with its inputs (large ones as
        ``_Slot``s for ``futures``), to run again if the value is lost; None if unknown."""
        run = made.get(key)
        if run is not None:
            again = replace(run, then=())
        elif key in follow_ons:  # a member: its inputs from the states of its group
            follow = follow_ons[key]
            inputs = member_inputs(follow, states)
            if inputs is None:
                return None
            again = TaskRun(key, follow.task, inputs, map_index=follow.map_index)
        else:
            return None
        templates = self._templates
        if templates is None:
            return None
        try:
            return templates.encode(
                [again], lambda inputs: {k: self._slotted(v, futures) for k, v in inputs.items()}
            )
        except Exception:  # its inputs no longer pickle: the value cannot be made again
            return None

    def started(self, sent: Future[Reply]) -> float | None:
        """Unknown here (Dask's scheduler gives a batch its worker): a deadline counts from
        when the batch was sent."""
        return 0.0

    def kill(self, sent: Future[Reply]) -> bool:
        """Restart the worker running the stuck batch through its nanny (the batches of
        this run on other workers go on)."""
        client = self._client
        assert client is not None
        try:
            workers = client.scheduler_info().get("workers", {})
            holders = [
                w for w, keys in client.processing().items()
                if sent.key in keys and workers.get(w, {}).get("nanny")  # else it cannot restart
            ]
            client.cancel([sent])  # not rescheduled on another worker once its own goes
            if holders:
                log.warning(
                    "a task is stuck past its timeout on Dask worker %s: restarting the worker "
                    "through its nanny", ", ".join(holders),
                )
                client.restart_workers(holders, raise_for_error=False)
                self._reap()  # what the stuck task started, left by the worker
        except Exception as error:
            log.warning("could not restart the Dask worker of a stuck task: %r", error)
        return False

    def interrupt(self) -> bool:
        client = self._client
        if client is None:
            return False
        try:
            stopped: dict[str, int] = client.run(_interrupt_batches, self._datasets)
        except Exception:  # a cluster that cannot be reached: take what came back
            return False
        return any(stopped.values())

    def stop(self, abandoned: Sequence[Future[Reply]] | None) -> None:
        client = self._client
        try:
            if client is not None and abandoned:
                try:
                    client.cancel(list(abandoned))
                except Exception:
                    pass
                if self._cluster is None:
                    self._unpublish_leftovers(client)
            for result in self._results:
                result.release()
        finally:
            self._results = []
            self._payloads.clear()
            self._client = None
            if self in self._executor._live:
                self._executor._live.remove(self)
            if self._cluster is not None:
                cluster, self._cluster = self._cluster, None
                if client is not None:
                    _close_quietly(client)
                try:
                    cluster.close(timeout=10)
                except Exception as error:
                    log.warning("the local Dask cluster did not close cleanly: %r", error)

    def _unpublish_leftovers(self, client: Client) -> None:
        """After an interrupted run on a shared cluster: drop the large results its batches
        kept that it never took over (a batch still running may add more)."""
        try:
            client.run(_drop_kept, self._datasets)
        except Exception:
            pass


def _wait_for_workers(client: Client, wait: float) -> int:
    """How many threads the cluster's workers have, once it has a worker: at most ``wait``
    seconds, else ``NoWorkersError`` naming the scheduler."""
    threads = sum(client.nthreads().values())
    if threads:
        return threads
    address = client.scheduler.address if client.scheduler is not None else "?"
    try:
        client.wait_for_workers(1, timeout=wait)
    except TimeoutError:
        raise NoWorkersError(
            f"DaskExecutor: the Dask scheduler at {address} has no workers; none joined "
            f"within {wait:g} s (DaskExecutor(worker_wait=...)). Start one: dask worker {address}"
        ) from None
    return max(1, sum(client.nthreads().values()))


def _seconds(name: str, value: object) -> float:
    """``value`` as seconds; ValueError naming the keyword if it is not a number >= 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"DaskExecutor({name}={value!r}): use a number of seconds >= 0")
    return float(value)


def _batch_error(future: Future[Any]) -> BaseException:
    try:
        error = future.exception(timeout=5)
    except BaseException as raised:  # cancelled: exception() raises the CancelledError
        return raised
    if error is None:
        return RuntimeError(f"the Dask task ended {future.status!r}")
    return error


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

    ``worker_wait``: seconds a run waits for a first worker on a cluster that has none,
    before it fails with ``NoWorkersError`` naming the scheduler. ``hard_timeout_grace``:
    seconds a task may outlive its ``timeout`` (its body runs on in a worker thread) before
    its worker is restarted through its nanny; None: never.

    Needs the dask extra: ``pip install -e ".[dask]"`` from the taskloom clone.

    >>> flow.run(executor=DaskExecutor("tcp://127.0.0.1:8786"))   # doctest: +SKIP
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        worker_wait: float = WORKER_WAIT,
        hard_timeout_grace: float | None = HARD_TIMEOUT_GRACE,
        **cluster_kwargs: Any,
    ) -> None:
        _require_distributed()
        self.worker_wait: float = _seconds("worker_wait", worker_wait)
        self.hard_timeout_grace: float | None = (
            None if hard_timeout_grace is None else _seconds("hard_timeout_grace", hard_timeout_grace)
        )
        if address is not None and cluster_kwargs:
            raise ValueError(
                f"DaskExecutor(address={address!r}) connects to an existing cluster; keyword "
                f"arguments ({', '.join(sorted(cluster_kwargs))}) configure the local cluster "
                "started when no address is given"
            )
        self.address = address
        self.cluster_kwargs: dict[str, Any] = cluster_kwargs
        # The runs in progress, newest last: only for ``client``.
        self._live: list[_DaskRun] = []

    def __repr__(self) -> str:
        if self.address is not None:
            return f"DaskExecutor(address={self.address!r})"
        options = "".join(f", {k}={v!r}" for k, v in self.cluster_kwargs.items())
        return f"DaskExecutor({options[2:]})"

    @property
    def client(self) -> Client | None:
        """The Dask client of the newest run in progress (None when no run is)."""
        live = self._live[-1:]
        return live[0].client if live else None

    def begin(self, run_context: Mapping[str, Any]) -> ExecutorRun:
        """Start a flow run on the cluster (see ``executors.base``)."""
        tag = str(run_context.get("flow_run_id", ""))[:8]
        return Dispatcher(_DaskRun(self, tag), run_context)
