"""``LokyExecutor``: runs tasks in parallel on a loky process pool, and contains its faults.

Batching, worker deaths and culprits, hard timeouts, large results and a run's lifecycle
are the dispatcher's (``_dispatch``); the worker's steps are ``_worker.run_batch``. What
is loky's own, each a lesson measured on loky (see the reliability catalogue):

- **One pool per process** (and per worker count), started by the first send that needs it
  and shared by every run after it, also by runs from several threads at once.
- **A channel to each worker** (``_Channel``): each worker runs ``_serve`` for as long as
  the pool lives, and batches go to it over a Unix socket of its own, written by the
  sending thread and read back by one thread of the channel's, not through loky's queues
  (three threads' hand-offs a round trip). loky still starts the workers, sees them die
  and kills them. On Linux the socket is abstract (no file to leave behind) and takes
  only the process's own children (``_own_worker``); elsewhere it is a file in a folder
  only this user may enter. At the interpreter's exit, batches out finish and no new one
  starts (``_Channel.finish``), as with loky's own exit hook.
- **Worker death** breaks the whole pool: every batch in flight on it, of every run,
  fails with the exit codes of the dead workers (the cause in a culprit's message). The
  next send replaces the broken pool, and only that one: a run that finds it already
  replaced by another run sends to the new pool. A batch its worker never took (the
  worker notes each batch it takes on a page it shares with the parent: ``_took_page``) fails
  as a bystander: its tasks did not run, so none is blamed (a worker killed while idle,
  an instant before a batch was sent to it).
- **Batches**: one round trip costs ~50-400 µs, so a task travels alone only past
  ``LONG_TASK`` (5 ms), which is also what a group of follow-ons seen to be short may add
  to its run (``runner``, "Follow-ons").
- **Timeouts** are hard in the worker (``SIGALRM``); a task stuck in C code past twice its
  timeout plus ``HARD_TIMEOUT_GRACE`` gets its pool killed (with the other runs' batches on
  it) and ends ``TimedOut``.
- **Process trees.** Each worker leads a process group of its own, which the processes
  its tasks start join: when a worker dies (a crash, a signal, a hard timeout), the
  parent kills what is left of its group (``_kill_orphans``, with ``_groups``), so a
  ``sleep 300`` started by a task does not outlive its dead worker. A worker whose parent
  dies kills its group.
- **Interrupts.** A run interrupted (Ctrl-C, SIGINT, SIGTERM) while it is the pool's only
  run first sends each worker ``INTERRUPT_SIGNAL``: the task a worker runs for it is stopped
  (``attempt.BatchInterrupted``) and the batch comes back with what finished before it, so
  the run records those tasks as finished (waiting at most ``runner.INTERRUPT_GRACE``).
  A run that ends with batches out (an interrupt, an exception in the scheduler) then
  shuts the pool down with its workers and their children, if no other run uses the pool.
  If another run does, only this run's batches that have not started
  are cancelled; bodies already running finish, and their results are dropped. Each worker
  also watches its parent and exits when it dies (SIGKILL leaves no time to stop the pool).
- **Large results** (``bytes``/``bytearray`` of ``SHARE_THRESHOLD`` or more) stay in shared
  memory (``/dev/shm``): a ``SharedResult`` holds the file's path, the next worker reads
  it from there, and the run's ``end()`` deletes the files, but those of final states
  (``SharedResult.keep``), which are read when the caller reads them (``_KeptFile``). A
  parent killed (SIGKILL, SIGTERM) has its workers delete the files they made for it
  (``_watch_parent``), and a pool's start deletes what processes now gone left
  (``_sweep_shared``). The workers'
  large allocations are backed by huge pages (``_worker_env``).
- **Logs.** A worker process is the pool's own: its root logger keeps only the capture
  handler, at the parent's level.
"""

from __future__ import annotations

import itertools
import logging
import mmap
import os
import pickle
import secrets
import select
import shutil
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import CancelledError, Future
from multiprocessing.connection import Connection, wait
from multiprocessing.reduction import recv_handle, send_handle
from typing import Any, cast

import cloudpickle
import loky
from loky.process_executor import BrokenProcessPool, ShutdownExecutorError

from ..attempt import BatchInterrupted, TaskResult, TaskRun, stop, unstop
from ..errors import RemoteTaskError
from ..states import State, Success
from ._dispatch import Dispatcher, Loss, Reply, Workers
from ._groups import alive, kill_group, lead
from ._groups import stat_fields as _stat_fields
from ._wire import Templates, unpack_state
from ._worker import LogCapture, run_batch
from .base import DeferredResult, ExecutorRun, resolve_deferred

# RemoteTaskError lived here in 0.1: pickles of old results name it so.
__all__ = ["LokyExecutor", "RemoteTaskError", "SharedResult"]

#: A task seen to run longer than this (seconds) always travels in a batch of its own.
LONG_TASK = 0.005
#: How long past twice its timeout a task may stay stuck (in C code) before its pool is killed.
HARD_TIMEOUT_GRACE = 2.0
#: Results at least this large (bytes) go through shared memory instead of the pipe.
SHARE_THRESHOLD = 1 << 20
_SHARED_DIR = "/dev/shm" if os.path.isdir("/dev/shm") else None


# --- the worker side ------------------------------------------------------------------------

_LOGS = LogCapture(sole=True)


#: What the parent sends its workers when its run is interrupted. Its default action must be
#: to ignore it: a worker still starting (its initializer not run yet, which on a loaded
#: machine can outlast a short run) would otherwise be killed by it, breaking the pool and
#: losing the results of every batch out. ``SIGURG`` is only ever sent for out-of-band data
#: on a socket the process claimed with ``F_SETOWN``.
INTERRUPT_SIGNAL = signal.SIGURG

#: Whether this worker runs a batch now (``INTERRUPT_SIGNAL`` stops it only then).
_in_batch = False
#: The token of the batch it runs, or ran last (``_Channel.send``).
_batch_token = 0
#: The parent's PID, as the worker started (``_init_worker``): what names the shared-memory
#: files it makes for it (``_share``). Not ``os.getppid()`` then: once the parent died, that
#: is another process's, and a file named for it would be left for good.
_parent_pid = 0


def _init_worker(parent_pid: int, environ: Mapping[str, str | None]) -> None:
    """A worker starts. ``environ``: the parent's values (None: unset) of what
    ``_worker_env`` added to the worker's environment, which glibc has read by now: the
    processes its tasks start get the parent's environment."""
    global _parent_pid
    _parent_pid = parent_pid
    lead()  # a group of its own: what its tasks start can be found once it died
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    signal.signal(INTERRUPT_SIGNAL, _stop_batch)
    for name, value in environ.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


def _stop_batch(signum: int, frame: object) -> None:
    """``INTERRUPT_SIGNAL`` from the parent, whose run was interrupted: stop the batch running."""
    if _in_batch:
        stop(threading.get_ident())  # (a body that catches the exception starts no follow-on)
        raise BatchInterrupted()


def _watch_parent(parent_pid: int) -> None:
    """Exit when the parent dies (SIGKILL leaves no chance to shut the pool down), and
    delete the large results it made for it that were left in shared memory (those of the
    parent's final states, never read: memory until the machine restarts otherwise)."""
    while True:
        time.sleep(0.5)
        if os.getppid() != parent_pid:
            _remove_made_for(parent_pid)
            _kill_children(os.getpid())
            if os.getpgid(0) == os.getpid():
                os.killpg(os.getpid(), signal.SIGKILL)  # the rest of its group, and itself
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


def _run_batch(
    header: bytes, payload: bytes, keys: list[tuple[int, str]], log_level: int, token: int
) -> Reply:
    """Run a batch in a pool worker (``_worker.run_batch``); ``token`` names it in the
    names of the shared-memory files of its results (``_share``)."""
    global _in_batch, _batch_token
    _in_batch, _batch_token = True, token
    try:
        return run_batch(
            header, payload, keys, log_level, worker=f"loky:{os.getpid()}",
            where="in a worker process", capture=_LOGS, fill=_resolve_inputs, prepare=_share,
        )
    finally:
        _in_batch = False
        unstop(threading.get_ident())


def _serve(path: str) -> None:
    """What each pool worker runs for as long as its pool lives (``_Channel``): connect to
    the parent at ``path``, say its PID, then run each batch the parent writes and write
    back the reply, until the parent closes the connection."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.connect(path)
    conn = Connection(sock.detach())
    conn.send_bytes(str(os.getpid()).encode())
    try:
        took = _took_page(recv_handle(conn))
    except (EOFError, OSError):
        return  # the parent closed the channel: its pool is going away
    while True:
        try:
            data = conn.recv_bytes()
        except (EOFError, OSError):
            return  # the parent closed the channel: its pool is going away
        try:
            token, header, payload, keys, level = pickle.loads(data)
            took[:_TOKEN_SIZE] = token.to_bytes(_TOKEN_SIZE, "little")  # before any task
            answer: tuple[str | None, Reply | None] = (
                None, _run_batch(header, payload, keys, level, token)
            )
        except Exception as error:  # not a task's (those are states): the batch's machinery
            answer = (f"the worker could not run the batch: {error!r}", None)
        conn.send_bytes(pickle.dumps(answer, protocol=pickle.HIGHEST_PROTOCOL))


#: The bytes of a batch's token on a worker's page (``_took_page``).
_TOKEN_SIZE = 8


def _page_file() -> int:
    """A new file for a worker's page (``_took_page``), unnamed: nothing is left behind
    by a process killed, as only descriptors hold it."""
    if hasattr(os, "memfd_create"):
        fd = os.memfd_create("taskloom-took")
    else:  # (macOS) a file removed at once
        fd, name = tempfile.mkstemp(prefix="taskloom-took-")
        os.unlink(name)
    try:
        os.ftruncate(fd, _TOKEN_SIZE)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _took_page(fd: int) -> mmap.mmap:
    """The page of file ``fd`` where a worker notes the token of the batch it took last
    (``_serve``), which the parent reads once the worker died (``_Channel._blamable``);
    ``fd`` is closed (the mapping holds the file)."""
    try:
        return mmap.mmap(fd, _TOKEN_SIZE)
    finally:
        os.close(fd)


def _resolve_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """The inputs with each ``SharedResult`` in them read from shared memory."""
    for name, value in inputs.items():
        if isinstance(value, (DeferredResult, list, tuple, dict, set, frozenset)):
            inputs[name] = resolve_deferred(value)
    return inputs


class SharedResult(DeferredResult):
    """A large ``bytes``/``bytearray`` result kept in a shared-memory file, not pickled.

    The run that made it deletes the file at its end, unless the value went on in a final
    state (``keep``): then the state's first read of it takes it in, and deletes it."""

    __slots__ = ("_kept", "kind", "path", "size")

    def __init__(self, path: str, size: int, kind: type[bytes] | type[bytearray]) -> None:
        self.path = path
        self.size = size
        self.kind = kind
        self._kept: _KeptFile | None = None

    def resolve(self) -> bytes | bytearray:
        """The value, read from the file."""
        if self._kept is not None:  # the final state's fetch may have taken it in already
            return self._kept()
        return _read_shared(self.path, self.size, self.kind)

    def keep(self) -> _KeptFile:
        """The file's fetch, for a final state (see ``DeferredResult.keep``)."""
        if self._kept is None:
            self._kept = _KeptFile(self.path, self.size, self.kind)
        return self._kept

    def __getstate__(self) -> tuple[str, int, type[bytes] | type[bytearray]]:
        return (self.path, self.size, self.kind)

    def __setstate__(self, state: tuple[str, int, type[bytes] | type[bytearray]]) -> None:
        self.path, self.size, self.kind = state
        self._kept = None

    def __repr__(self) -> str:
        return f"SharedResult({self.path!r}, {self.size} bytes)"


def _read_shared(path: str, size: int, kind: type[bytes] | type[bytearray]) -> bytes | bytearray:
    """The value of a ``SharedResult`` file."""
    try:
        with open(path, "rb", buffering=0) as file:
            if kind is bytes:
                return file.read()  # one allocation of the known size, one copy
            data = bytearray(size)
            file.readinto(data)
            return data
    except FileNotFoundError:
        raise FileNotFoundError(
            f"a task's result of {size:,} bytes, kept in shared memory at {path!r}, is "
            "gone: something removed the file (a cleaner of /dev/shm? or, in a child process, "
            "the death of the parent that ran the flow: its workers delete what it left)"
        ) from None


class _KeptFile:
    """A ``SharedResult`` kept past its run, as a final state's fetch: the first call reads
    the file and deletes it, and every call returns that value. Never called, it deletes
    the file as soon as it is dropped (with the last state holding it: it refers to
    nothing that could make a cycle), or at the interpreter's exit. In the process that
    kept it only: a child forked meanwhile may still read the file, so a read that follows
    a fork leaves the file to the drop or the exit (or, if the process is killed, to the
    worker that made it: ``_remove_made_for``)."""

    __slots__ = ("__weakref__", "_delete", "_forks", "_lock", "_path", "_read", "_value")

    def __init__(self, path: str, size: int, kind: type[bytes] | type[bytearray]) -> None:
        self._path = path
        self._read: tuple[int, type[bytes] | type[bytearray]] | None = (size, kind)
        self._lock = threading.Lock()
        self._value: bytes | bytearray | None = None
        self._forks = _forks[0]
        self._delete = weakref.finalize(self, _remove_own, path, os.getpid())

    def __call__(self) -> bytes | bytearray:
        with self._lock:
            read = self._read
            if read is not None:
                self._value = _read_shared(self._path, *read)
                self._read = None
                if _forks[0] == self._forks:  # (else a child may read it yet)
                    self._delete()
            assert self._value is not None
            return self._value


#: How many times this process forked (``_KeptFile``).
_forks = [0]


def _forked() -> None:
    _forks[0] += 1


def _remove_own(path: str, owner: int) -> None:
    if os.getpid() == owner:
        _remove(path)


def _share(state: State[Any]) -> State[Any]:
    """In a worker: move a large bytes result into a shared-memory file, if possible."""
    result: object = state.result
    if (
        _SHARED_DIR is None
        or not isinstance(state, Success)
        or not (type(result) is bytes or type(result) is bytearray)
        or len(result) < SHARE_THRESHOLD
    ):
        return state
    path = os.path.join(
        _SHARED_DIR,
        f"taskloom-{_parent_pid}-{os.getpid()}-{_PID_SPACE}-{_batch_token}.{time.monotonic_ns()}",
    )
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
        with open(fd, "wb") as file:
            file.write(result)
    except OSError:  # no room in /dev/shm: send it through the pipe instead
        _remove(path)
        return state
    return state.replace(result=SharedResult(path, len(result), type(result)))


def _pid_space() -> int:
    """Which PID namespace this process sees PIDs in (0: unknown), for the names of its
    shared-memory files: containers that share ``/dev/shm`` number their processes apart."""
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


_PID_SPACE = _pid_space()


def _sweep_shared() -> None:
    """Delete the shared-memory files that processes now gone left: a run ends by deleting
    its own, but a process killed (SIGKILL, the machine's out-of-memory killer) has no time
    to, and a file in ``/dev/shm`` holds its memory until the machine restarts. A pool's
    start does it, rarely enough to list the folder. Only files of this PID namespace,
    whose parent's PID no process has: never a live process's (one whose PID is in use
    again is left)."""
    if not _PID_SPACE:
        return
    for path in _shared_files("taskloom-"):
        fields = _shared_fields(path)
        if fields is not None and fields[2] == _PID_SPACE and not alive(fields[0]):
            _remove(path)


def _remove_batch_files(tokens: set[int]) -> None:
    """Delete the shared-memory files this process's workers made for the batches of
    ``tokens``, whose replies never came (``_Channel._break``)."""
    if not tokens:
        return
    for path in _shared_files(f"taskloom-{os.getpid()}-"):
        fields = _shared_fields(path)
        if fields is not None and fields[3] in tokens:
            _remove(path)


def _shared_fields(path: str) -> tuple[int, int, int, int] | None:
    """The parent's PID, the worker's PID, the PID namespace and the batch token in the name
    ``_share`` gives a file (``taskloom-{parent}-{worker}-{namespace}-{token}.{time}``);
    None for another name."""
    parts = os.path.basename(path).split("-")
    if len(parts) != 5 or parts[0] != "taskloom":
        return None
    numbers = [*parts[1:4], parts[4].partition(".")[0]]
    if not all(number.isdigit() for number in numbers):
        return None
    parent, worker, space, token = map(int, numbers)
    return parent, worker, space, token


def _remove_made_for(parent_pid: int) -> None:
    """In a worker whose parent died: delete the shared-memory files it made for it (of its
    PID namespace only: a container sharing ``/dev/shm`` may have processes of the same
    PIDs). A child the parent forked can no longer read those it did not read yet."""
    for path in _shared_files(f"taskloom-{parent_pid}-{os.getpid()}-{_PID_SPACE}-"):
        _remove(path)


def _shared_files(prefix: str) -> list[str]:
    """The paths of the shared-memory files whose names start with ``prefix`` (none where
    the folder cannot be listed)."""
    if _SHARED_DIR is None:
        return []
    try:
        names = os.listdir(_SHARED_DIR)
    except OSError:
        return []
    return [os.path.join(_SHARED_DIR, name) for name in names if name.startswith(prefix)]


def _remove(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


# --- the parent side ------------------------------------------------------------------------


class _Pool:
    """This process's pool of one size, and what the runs on it share."""

    __slots__ = ("channel", "pids", "runs", "size", "starting", "workers")

    def __init__(self, size: int) -> None:
        self.size = size
        self.channel: _Channel | None = None  # started by the first send that needs it
        self.starting = threading.Lock()  # one run starts (or retires) the channel at a time
        self.runs = 0  # runs begun and not ended
        self.workers = Workers()
        #: The workers seen (each leads a process group): their groups are killed once they died.
        self.pids: set[int] = set()


def _kill_orphans(pool: _Pool) -> None:
    """Kill what is left of the process groups of the workers of ``pool`` that died: the
    processes their tasks started (see the module docstring)."""
    with _pools_lock:
        dead = [pid for pid in pool.pids if not alive(pid)]
        pool.pids.difference_update(dead)
    for pid in dead:
        kill_group(pid)


_pools: dict[int, _Pool] = {}
_pools_lock = threading.Lock()


def _join(size: int) -> _Pool:
    """The pool of ``size`` workers for one more run (its workers start at its first send)."""
    with _pools_lock:
        pool = _pools.get(size)
        if pool is None:
            pool = _pools[size] = _Pool(size)
        pool.runs += 1
        return pool


def _channel(pool: _Pool) -> _Channel:
    """``pool``'s working channel: started if it has none, a new one if it broke."""
    channel = pool.channel
    if channel is not None and channel.broken is None:
        return channel
    with pool.starting:
        channel = pool.channel
        if channel is not None and channel.broken is not None:
            _retire_locked(pool, channel)
            channel = None
        if channel is None:
            _sweep_shared()
            channel = pool.channel = _Channel(pool.size, pool.pids)
            _close_at_exit()
        return channel


def _retire(pool: _Pool, channel: _Channel | None) -> None:
    """Shut ``channel`` down if it is still ``pool``'s (the next send starts a new one)."""
    with pool.starting:
        if channel is not None and pool.channel is channel:
            _retire_locked(pool, channel)


def _retire_locked(pool: _Pool, channel: _Channel) -> None:
    pool.channel = None
    channel.close()
    _kill_orphans(pool)


def _leave(pool: _Pool, abandoned: Sequence[Future[Reply]] | None) -> None:
    """One run fewer on ``pool``; an abandoned one's batches are stopped (see the module
    docstring: by shutting the pool down if no other run uses it)."""
    with _pools_lock:
        pool.runs -= 1
        last = abandoned is not None and pool.runs == 0
    if last:
        _retire(pool, pool.channel)
    elif abandoned:
        for future in abandoned:
            if not future.cancel():  # running: it finishes, and no run takes its results
                future.add_done_callback(_drop_shared)


def _drop_shared(future: Future[Reply]) -> None:
    """Delete the shared-memory files of the results of a batch no run takes."""
    try:
        _, rows = cloudpickle.loads(future.result()[0])
    except Exception:
        return
    for _, wire, *_ in rows:
        result = unpack_state(wire).result
        if isinstance(result, SharedResult):
            _remove(result.path)


def _close_at_exit() -> None:
    """At the interpreter's exit, close every channel's connections first: each worker's
    ``_serve`` then returns, so loky's own exit hook, which waits for the calls its
    workers run, does not wait forever.

    loky registers its hook again for each new executor, and the last registered runs
    first. So ours is registered after each new pool of ours, and the hook loky registers
    for a later executor not ours (the caller's own, a library's on the ``loky`` package)
    closes our channels before it waits (``_loky_exit``): without it, a process that ran a
    flow on loky and then started a loky executor of its own never exited."""
    # (``threading._register_atexit``, as loky's hook: run before threads are joined)
    register: Callable[[Callable[[], None]], None] = getattr(threading, "_register_atexit")
    register(_close_channels)
    # loky reads the name when it registers (once per new executor); a loky that has no
    # such hook needs none of this.
    hook = getattr(_loky_module, "_python_exit", None)
    if hook is not None and hook is not _loky_exit:
        _loky_hooks.append(hook)
        setattr(_loky_module, "_python_exit", _loky_exit)


def _loky_exit() -> None:
    """loky's exit hook, our channels closed first (see ``_close_at_exit``)."""
    try:
        _close_channels()
    finally:
        _loky_hooks[0]()


_loky_module = sys.modules[loky.ProcessPoolExecutor.__module__]
_loky_hooks: list[Callable[[], None]] = []  # loky's own, once we replaced it


def _close_channels() -> None:
    for pool in list(_pools.values()):
        if pool.channel is not None:
            pool.channel.finish()


def _forget_pools() -> None:
    """In a child forked from a process with pools: they, and their channels, are the
    parent's (a child that wrote to them would take the parent's workers); the child starts
    its own if it runs tasks on loky."""
    global _pools, _pools_lock
    _pools = {}
    _pools_lock = threading.Lock()


os.register_at_fork(after_in_child=_forget_pools, after_in_parent=_forked)

#: The longest path of a Unix socket (``sun_path``, 108 bytes on Linux, less elsewhere).
_SOCKET_PATH_MAX = 100
#: Whether pools listen on an abstract socket (``_socket_address``): Linux has them.
_ABSTRACT = sys.platform.startswith("linux")

#: The glibc tunable that backs malloc's large blocks with transparent huge pages
#: (glibc 2.35 and newer, where the kernel allows them on request).
_HUGE_PAGES = "glibc.malloc.hugetlb=1"


def _worker_env() -> dict[str, str]:
    """What the workers' environment adds to the parent's: on Linux with glibc 2.35 or
    newer, ``_HUGE_PAGES``, unless ``GLIBC_TUNABLES`` already sets that tunable (so
    ``GLIBC_TUNABLES=glibc.malloc.hugetlb=0`` turns it off).

    The worker gives the processes its tasks start the parent's value (``_init_worker``).

    Why: a task that makes a large value (a 50 MB ``bytes``, a NumPy array) spends most of
    the time it takes faulting its memory in, 4 KiB at a time; in 2 MiB pages that is
    about a quarter of it (W4's 50 MB: 27-35 ms in the parent, 6-8 ms in a worker). It
    must be in the environment the worker's process starts with (glibc reads it then):
    loky execs each worker with this one."""
    if not sys.platform.startswith("linux"):
        return {}
    try:
        name, version = (os.confstr("CS_GNU_LIBC_VERSION") or "").split()
        major, minor = (int(part) for part in version.split(".")[:2])
        with open("/sys/kernel/mm/transparent_hugepage/enabled") as file:
            mode = file.read()
    except (ValueError, OSError):  # not glibc (musl has no such name), or no such setting
        return {}
    if name != "glibc" or (major, minor) < (2, 35) or "[never]" in mode:
        return {}
    given = os.environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb=" in given:
        return {}
    return {"GLIBC_TUNABLES": f"{given}:{_HUGE_PAGES}" if given else _HUGE_PAGES}


def _socket_address() -> tuple[str, str | None]:
    """Where a new pool listens for its workers, and the folder to remove with it (None).

    Linux: an abstract socket (no file: nothing is left behind by a process killed before
    its workers connected), which ``_own_worker`` guards, since any local process could
    reach it. Elsewhere: a socket file in a new folder only this user may enter, in the
    temporary folder, or in ``/tmp`` where that one's path is too long for a socket."""
    if _ABSTRACT:
        return f"\0taskloom-pool-{os.getpid()}-{secrets.token_hex(16)}", None
    folder = tempfile.mkdtemp(prefix="taskloom-pool-")  # 0700
    if len(os.path.join(folder, "socket")) > _SOCKET_PATH_MAX and os.path.isdir("/tmp"):
        os.rmdir(folder)
        folder = tempfile.mkdtemp(prefix="taskloom-pool-", dir="/tmp")
    return os.path.join(folder, "socket"), folder


def _hung_up(conn: Connection) -> bool:
    """Whether an idle worker's connection ended (its worker died): an idle worker never
    writes, so anything to read is the end. (``select.poll``, not ``conn.poll``: a fifth
    of the cost, under 1 µs, on every batch sent; ``select.select`` fails past 1,024
    descriptors.)"""
    try:
        if not hasattr(select, "poll"):  # (Windows)
            return conn.poll(0)
        poller = select.poll()
        poller.register(conn.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):  # (closed)
        return True


def _ended(conn: Connection) -> bool:
    """Whether a worker's connection ended (it died), though a reply may wait in it
    (``_hung_up``, for an idle worker's, takes a reply for an end)."""
    try:
        with socket.socket(fileno=os.dup(conn.fileno())) as sock:
            return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:  # nothing to read yet: alive
        return False
    except OSError:
        return True


def _own_worker(accepted: socket.socket) -> bool:
    """Whether the process at the other end of ``accepted`` is a worker of this process
    (a child of it, of this user): on Linux, what an abstract socket needs, since any
    process may connect to one. Elsewhere the socket's folder guards it."""
    if not _ABSTRACT:
        return True
    creds = accepted.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _ = struct.unpack("3i", creds)
    fields = _stat_fields(pid)
    return uid == os.getuid() and fields is not None and fields[1] == str(os.getpid()).encode()


class _Bystander(BrokenProcessPool):
    """The error of a batch whose worker did not die when another did and broke the pool
    (loky's error for that death is its ``cause``)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"another worker of the pool died: {cause}")
        self.cause = cause


class _Batch(Future[Reply]):
    """A batch sent on a ``_Channel``: its reply, and when a worker took it (``started``,
    ``time.monotonic``; None while it waits for one)."""

    started: float | None = None
    #: What names it in the names of its results' shared-memory files (``_share``).
    token = 0


#: The batches' tokens (``_Batch.token``), unique in this process.
_tokens = itertools.count(1)


class _Channel:
    """A loky pool whose workers each run ``_serve``: a batch goes to an idle worker over a
    connection of its own, written by the thread that sends it, and its reply is read by
    one thread of the channel's, which completes the batch's future.

    Why not ``executor.submit``: loky's queues pass a call through two threads of the
    parent on the way out (its manager thread, its queue's feeder) and one on the way back,
    and each waits for the interpreter the scheduler's thread holds (see "Where W1's and
    W2's time goes" in the README); here the way out has none. loky still owns the
    processes: it starts them (``_init_worker``), sees them die, and kills them.

    Workers connect as they start (the channel's thread accepts them); until one is idle,
    a batch waits in the channel, and the first worker free takes it. A worker's death
    breaks the pool, as in loky: every batch out, and every batch waiting, fails with
    ``BrokenProcessPool`` (loky's error, with the exit codes, when loky has it), and the
    next send starts a new pool (``_channel``)."""

    def __init__(self, size: int, noted: set[int]) -> None:
        self.size = size
        self.pids: list[int] = []
        self._noted = noted  # the pool's: every worker it had (``_kill_orphans``)
        self.broken: BaseException | None = None
        self._lock = threading.Lock()
        self._conns: list[Connection] = []
        self._idle: list[Connection] = []
        self._busy: dict[Connection, _Batch] = {}
        #: Each worker's page, where it notes the batch it took last (``_serve``).
        self._pages: dict[Connection, mmap.mmap] = {}
        self._waiting: deque[tuple[_Batch, bytes]] = deque()  # no worker was idle
        self._lost: set[int] = set()  # the tokens of the batches out when it broke
        self._closing = False
        self._ending = False  # the interpreter exits: no new batch (``finish``)
        path, self._folder = _socket_address()
        self._listener: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._wake_r, self._wake_w = -1, -1
        try:
            try:
                self._listener.bind(path)
                self._listener.listen(size)
            except OSError as error:
                raise BrokenProcessPool(
                    f"the pool's socket {path!r} could not be made: {error}; set TMPDIR to a "
                    "short path on a local file system"
                ) from None
            self._wake_r, self._wake_w = os.pipe()  # wakes the channel's thread (``close``)
            added = _worker_env()
            given = {name: os.environ.get(name) for name in added}
            self.executor = loky.ProcessPoolExecutor(
                max_workers=size, initializer=_init_worker, initargs=(os.getpid(), given),
                env=added,
            )
            self._serving = [self.executor.submit(_serve, path) for _ in range(size)]
        except BaseException:  # (an interrupt too: nothing of it may stay behind)
            self._listener.close()
            for end in (self._wake_r, self._wake_w):
                _close_fd(end)
            self._remove_folder()
            raise
        for serving in self._serving:  # a worker that cannot start breaks the pool
            serving.add_done_callback(self._served)
        threading.Thread(target=self._read, name="taskloom-loky-replies", daemon=True).start()

    def send(self, args: tuple[bytes, bytes, list[tuple[int, str]], int]) -> _Batch:
        """Start a batch (``_run_batch``'s arguments) on an idle worker, or on the first
        one free; raises ``BrokenProcessPool`` once the pool broke."""
        future = _Batch()
        future.token = next(_tokens)
        data = pickle.dumps((future.token, *args), protocol=pickle.HIGHEST_PROTOCOL)
        with self._lock:
            if self._ending:  # (as loky's submit then: the run ends with this error)
                raise RuntimeError("cannot run new batches: the interpreter is shutting down")
            if self.broken is not None:
                raise BrokenProcessPool(f"the pool broke: {self.broken}")
            if not self._idle:  # starting, or more runs share the pool than it has workers
                self._waiting.append((future, data))
                return future
            conn = self._idle[-1]
            dead = _hung_up(conn)
            if not dead:
                self._idle.pop()
                self._busy[conn] = future
        if dead:
            # The worker died while idle (killed between two batches): the pool broke before
            # this batch was sent, so none of its tasks is blamed (the next send starts a
            # new pool).
            self._break(self._death() or BrokenProcessPool("a worker died while idle"))
            raise BrokenProcessPool(f"the pool broke: {self.broken}")
        future.started = time.monotonic()
        future.set_running_or_notify_cancel()  # running: cancel() refuses it (``_leave``)
        self._write(conn, data)
        return future

    def _write(self, conn: Connection, data: bytes) -> None:
        try:
            conn.send_bytes(data)
        except OSError:
            pass  # the worker died: the channel's thread sees its connection end

    def _read(self) -> None:
        """The channel's thread: it accepts the workers as they start, completes a batch's
        future with its reply and gives the worker the next batch waiting; the first
        connection that ends breaks the pool, and ``close`` ends it."""
        conn: Connection | None = None  # (the one read from when a connection ended)
        try:
            while True:
                listener = self._listener
                waitables: list[Any] = [self._wake_r, *self._conns]
                if listener is not None:
                    waitables.append(listener)
                for ready in wait(waitables):
                    conn = None
                    if ready is self._wake_r:
                        return
                    if ready is listener:
                        self._accept(listener)
                        continue
                    conn = cast(Connection, ready)
                    error, reply = pickle.loads(conn.recv_bytes())
                    with self._lock:
                        future = self._busy.pop(conn)
                    self._free(conn)
                    if error is not None:
                        future.set_exception(RuntimeError(error))
                    else:
                        future.set_result(reply)
        except Exception as ended:  # (EOFError, OSError: a worker's connection ended)
            error = self._death() or BrokenProcessPool(f"a worker's connection ended: {ended!r}")
            self._break(error, dead=conn)
        finally:
            _close_fd(self._wake_r)

    def _accept(self, listener: socket.socket) -> None:
        """A worker started: take its connection and PID, and give it a batch waiting."""
        accepted, _ = listener.accept()
        if not _own_worker(accepted):  # not a worker of this pool: it gets nothing
            accepted.close()
            return
        conn = Connection(accepted.detach())
        pid = int(conn.recv_bytes())
        with _pools_lock:
            self._noted.add(pid)
        with self._lock:
            late = self._closing  # (``hang_up`` took the connections before this one)
            if not late:
                self.pids.append(pid)
                self._conns.append(conn)
                if len(self._conns) == self.size:
                    self._listener = None
        if late:
            # Hung up while the worker said its PID: ended here, or its ``_serve`` would
            # wait for a batch for ever, and loky's exit hook for that call (a process
            # whose run ended as its last worker started never exited).
            _end_connection(conn)
            return
        fd = _page_file()
        try:
            send_handle(conn, fd, pid)  # its ``_serve`` maps the same page
        except BaseException:
            os.close(fd)
            raise
        self._pages[conn] = _took_page(fd)
        if self._listener is None:
            listener.close()
            self._remove_folder()
        self._free(conn)

    def _free(self, conn: Connection) -> None:
        """``conn``'s worker is free (started, or done with its batch): it takes the next
        batch waiting, if any, else it is idle."""
        data = None
        with self._lock:
            while self._waiting:
                waiting, data = self._waiting.popleft()
                waiting.started = time.monotonic()
                if waiting.set_running_or_notify_cancel():  # (else cancelled: a run gave up)
                    self._busy[conn] = waiting
                    break
                data = None
            if data is None:
                self._idle.append(conn)
        if data is not None:
            self._write(conn, data)

    def cancel_waiting(self) -> None:
        """Cancel the batches waiting for a worker (their futures' callbacks run)."""
        with self._lock:
            waiting = [future for future, _ in self._waiting]
            self._waiting.clear()
        for future in waiting:
            future.cancel()

    def _served(self, serving: Future[None]) -> None:
        """A worker's ``_serve`` ended (loky's thread): if the pool broke (a worker that
        could not start, or died), every batch fails with loky's error."""
        error = None if serving.cancelled() else serving.exception()
        if error is not None and not self._closing:
            self._break(error)

    def _break(self, error: BaseException, dead: Connection | None = None) -> None:
        """The pool broke (or is shut down): fail every batch out and waiting with ``error``.
        ``dead``: the connection of the worker that died, when it is known; then the other
        batches, whose workers did not die (and those waiting for one), fail as bystanders
        (``_Bystander``): none of them is taken for the culprit of that death."""
        if self._closing:
            error = ShutdownExecutorError("the pool was shut down")
        with self._lock:
            if self.broken is None:
                self.broken = error
            error = self.broken
            out = list(self._busy.items())
            conns = list(self._conns)
            waiting = [future for future, _ in self._waiting]
            self._busy.clear()
            self._waiting.clear()
        closing = isinstance(error, ShutdownExecutorError)
        # Which workers died, when loky tells first (``_served``): loky fails its calls
        # before it kills the others, so only theirs have ended yet.
        dead_ones = {dead} if dead is not None else set() if closing else {
            conn for conn in conns if _ended(conn)
        }
        failed = [
            (future, error if closing or self._blamable(conn, future, dead_ones)
             else _Bystander(error))
            for conn, future in out
        ]
        # Their replies never came: what their workers left in shared memory is no one's
        # (deleted by ``hang_up``, once the workers are gone).
        self._lost.update(future.token for _, future in out)
        failed.extend((future, _Bystander(error) if dead_ones else error) for future in waiting)
        for future, why in failed:
            if not future.done() and (future.running() or future.set_running_or_notify_cancel()):
                future.set_exception(why)

    def _blamable(self, conn: Connection, batch: _Batch, dead: set[Connection]) -> bool:
        """Whether the tasks of ``batch``, out on ``conn``, may be taken for the culprit of
        a death: its worker is one that died (or which died is not known), and it took
        the batch (``_serve`` notes each on its page before it runs any task; a worker
        killed an instant before the batch reached it never did)."""
        if dead and conn not in dead:
            return False
        page = self._pages.get(conn)
        if page is None:
            return True
        try:
            return int.from_bytes(page[:_TOKEN_SIZE], "little") == batch.token
        except ValueError:  # (closed: the pool is shut down)
            return True

    def _death(self) -> BaseException | None:
        """loky's error for the worker that died (it names the exit codes), if loky tells
        within a moment."""
        if self._closing:
            return None
        deadline = time.monotonic() + 2.0
        for serving in self._serving:
            try:
                error = serving.exception(timeout=max(0.0, deadline - time.monotonic()))
            except Exception:  # (a timeout, or cancelled)
                continue
            if isinstance(error, BrokenProcessPool):
                return error
        return None

    def close(self) -> None:
        """Shut the pool down, its workers and what they run killed (``_retire``)."""
        self._closing = True
        self.executor.shutdown(wait=True, kill_workers=True)
        self.hang_up()

    def finish(self) -> None:
        """The interpreter exits: refuse new batches, fail those waiting for a worker, let
        those out finish (as loky's exit hook did: it waited for its workers' calls), then
        ``hang_up``."""
        with self._lock:
            self._ending = True
            waiting = [future for future, _ in self._waiting]
            self._waiting.clear()
        for future in waiting:
            if future.set_running_or_notify_cancel():
                future.set_exception(RuntimeError("the interpreter is shutting down"))
        while self._busy and self.broken is None:  # (the channel's thread empties it)
            time.sleep(0.01)
        self.hang_up()

    def hang_up(self) -> None:
        """Close the parent's ends of the connections and stop the channel's thread: each
        worker's ``_serve`` returns once it is done with its batch."""
        self._closing = True
        with self._lock:
            conns, listener, self._listener = list(self._conns), self._listener, None
            wake, self._wake_w = self._wake_w, -1
        if wake >= 0:
            try:
                os.write(wake, b"x")
            except OSError:
                pass  # the thread ended already
            _close_fd(wake)
        for conn in conns:
            _end_connection(conn)
        if listener is not None:
            listener.close()
        self._remove_folder()
        self._break(ShutdownExecutorError("the pool was shut down"))
        _remove_batch_files(self._lost)
        for page in list(self._pages.values()):  # (``_blamable`` takes a closed one as taken)
            page.close()

    def _remove_folder(self) -> None:
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)


def _end_connection(conn: Connection) -> None:
    """End a worker's connection: its ``_serve`` returns once done with its batch."""
    try:
        # shutdown, not only close: the channel's thread's poll may hold the socket open,
        # and a close alone would not end the connection for the worker
        with socket.socket(fileno=os.dup(conn.fileno())) as end:
            end.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # (the worker is gone: nothing to end)
    conn.close()


def _close_fd(fd: int) -> None:
    if fd >= 0:
        try:
            os.close(fd)
        except OSError:
            pass


class _LokyRun:
    """One flow run's side of the process's pool (the ``Backend`` of ``_dispatch``)."""

    name = "loky"
    long_task = LONG_TASK
    queues_ahead = True  # (``interrupt`` cancels the batches waiting for a worker)
    hard_timeout_grace: float | None = HARD_TIMEOUT_GRACE
    _pool: _Pool  # from start()

    def __init__(self, size: int) -> None:
        self._size = size
        self._header = b""
        self._log_level = logging.WARNING
        self._shared: list[SharedResult] = []  # its results' files, removed at stop

    def start(self, header: bytes, log_level: int) -> tuple[int, Workers]:
        self._header, self._log_level = header, log_level
        self._pool = _join(self._size)  # (its workers start at the first send)
        return self._size, self._pool.workers

    def encode(self, templates: Templates, batch: Sequence[TaskRun]) -> bytes:
        return templates.encode(batch)

    def send(self, payload: bytes, keys: Sequence[tuple[int, str]]) -> Future[Reply]:
        args = (self._header, payload, list(keys), self._log_level)
        try:
            return _channel(self._pool).send(args)
        except BrokenProcessPool:  # a worker died since the last send: a new pool takes it
            return _channel(self._pool).send(args)

    def receive(self, sent: Sequence[Future[Reply]]) -> list[Reply | BaseException]:
        # exception(), not a raising result(): raised here, the pool's error object would
        # take this run's frames in its traceback, and a broken pool keeps that object (and
        # so the run's scheduler, with all its records) for as long as the pool lives.
        replies: list[Reply | BaseException] = []
        for future in sent:
            if future.cancelled():  # queued for a worker when its run was interrupted
                replies.append(CancelledError("the batch never reached a worker"))
                continue
            error = future.exception()
            replies.append(future.result() if error is None else error)
        return replies

    def loss(self, error: BaseException) -> Loss:
        if isinstance(error, ShutdownExecutorError):
            cause = "the pool was shut down"
        elif isinstance(error, BrokenProcessPool):
            cause = _exit_codes(error.cause if isinstance(error, _Bystander) else error)
            _kill_orphans(self._pool)
        else:
            return Loss(False, f"could not run on the loky pool: {error!r}", error)
        why = (
            f"killed the worker process running it ({cause}); SIGKILL often means the system "
            "ran out of memory, SIGSEGV a crash in native code"
        )
        return Loss(True, why, error, cause, bystander=isinstance(error, _Bystander))

    def take_over(
        self, results: list[TaskResult], runs: Sequence[TaskRun], names: Mapping[int, str]
    ) -> None:
        for result in results:
            value = result.state.result
            if type(value) is SharedResult:
                self._shared.append(value)

    def interrupt(self) -> bool:
        with _pools_lock:
            channel = self._pool.channel if self._pool.runs == 1 else None
        if channel is None:  # other runs use the pool: their batches must go on
            return False
        # Its batches queued for a worker first: one freed by the interrupt would take the
        # next, and run its tasks after the interrupt.
        channel.cancel_waiting()
        for pid in channel.pids:
            try:
                os.kill(pid, INTERRUPT_SIGNAL)
            except OSError:
                pass
        return bool(channel.pids)

    def started(self, sent: Future[Reply]) -> float | None:
        return sent.started if isinstance(sent, _Batch) else 0.0

    def kill(self, sent: Future[Reply]) -> bool:
        if not sent.done():  # then it is on the current channel: its pool never broke
            _retire(self._pool, self._pool.channel)
        return True

    def stop(self, abandoned: Sequence[Future[Reply]] | None) -> None:
        try:
            _leave(self._pool, abandoned)
        finally:
            for shared in self._shared:
                if shared._kept is None:  # (a kept one is its final state's)
                    _remove(shared.path)
            self._shared = []


class LokyExecutor:
    """Run tasks in parallel on a loky process pool of ``max_workers`` processes.

    ``max_workers=None`` uses every core. The pool is started on first use and shared by
    later runs in the same process, also by runs in other threads at the same time. Task
    functions defined in ``__main__``, in a notebook, or as closures run in the workers
    (cloudpickle sends them by value).

    >>> flow.run(executor=LokyExecutor(max_workers=4))   # doctest: +SKIP
    """

    def __init__(self, max_workers: int | None = None) -> None:
        self.max_workers: int = _worker_count(max_workers)

    def __repr__(self) -> str:
        return f"LokyExecutor(max_workers={self.max_workers})"

    def begin(self, run_context: Mapping[str, Any]) -> ExecutorRun:
        """Start a flow run on the pool (see ``executors.base``)."""
        return Dispatcher(_LokyRun(self.max_workers), run_context)


def _worker_count(max_workers: object) -> int:
    if max_workers is None:
        return loky.cpu_count()
    if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
        raise ValueError(f"LokyExecutor(max_workers={max_workers!r}): use a whole number >= 1")
    return max_workers


def _exit_codes(error: BaseException) -> str:
    """The exit codes loky reports in a broken pool's error ("{EXIT(3)}"), else its type."""
    text = str(error)
    marker = "exit codes of the workers are "
    if marker not in text:
        return type(error).__name__
    return text[text.index(marker) + len(marker):].split("\n", 1)[0].strip()
