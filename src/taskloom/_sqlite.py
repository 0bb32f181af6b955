"""The SQLite file behind each of taskloom's stores (the output cache and the run journal).

Both live in the taskloom home, are shared by every process of the user, and must never
stop a flow run. What they share is here:

- one connection per process (a connection must not cross ``fork()``), opened on first
  use, in WAL mode, the file created private (0600), closed when the interpreter exits
  (so its WAL is checkpointed into the file and removed, whatever thread is still alive);
- a schema version (``PRAGMA user_version``): a file of an older version is brought up to
  date in place where the store knows how (``MIGRATIONS``); a file written by another
  version is moved aside with a warning and a new one started, rather than failing every
  run;
- a file that is not a database, or is damaged (truncated, overwritten), is healed the same
  way, once, whenever SQLite first says so (opening it, reading or writing it): moved
  aside under a timestamped name (``cache.sqlite.corrupt-20261202T101500Z``, kept for a
  post-mortem), a warning naming both paths, and a fresh store;
- a file that cannot be written (a read-only home or disk) is opened read-only: it still
  serves reads, and every write fails as SQLite does (the stores skip them and say so);
- ``BEGIN IMMEDIATE`` for every write: a deferred read-then-write transaction fails with
  "database is locked" under concurrent writers whatever the busy timeout;
- the WAL checkpointed into the file by a thread of its own, every ``CHECKPOINT_EVERY``
  writes: SQLite's own checkpoint runs in the commit that grows the WAL past a thousand
  pages, and that commit then took 1-8 ms instead of 0.1 (a flow run's start or end, once
  every 200 runs of a chain of 200: 3% of such a run's time on average). SQLite's own is
  kept for a WAL ten times that size, should the thread fall behind;
- patience with another process's lock, and no silent stall: a write (or the opening of
  the file) waits up to ``lock_timeout`` seconds, and after ``WARN_AFTER`` it warns, once,
  naming the file and the process holding it when that can be told (``_lockholders``).
"""

from __future__ import annotations

import atexit
import errno
import logging
import os
import sqlite3
import threading
import time
import urllib.parse
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from ._home import private_file, taskloom_home
from ._lockholders import describe, holders

__all__ = ["CHECKPOINT_EVERY", "LOCK_TIMEOUT", "WARN_AFTER", "SQLiteFile", "is_corrupt", "per_home"]


T = TypeVar("T")

#: How long a write waits for another process's lock before it gives up (seconds).
LOCK_TIMEOUT = 30.0

#: How long a write waits for another process's lock before it warns (seconds).
WARN_AFTER = 1.0

#: Every this many write transactions of a process, a thread of its own checkpoints the
#: WAL into the file (see the module docstring).
CHECKPOINT_EVERY = 64
#: The WAL's size, in pages, at which a commit checkpoints it itself (SQLite's default:
#: 1,000): only if the thread falls behind.
_AUTOCHECKPOINT_PAGES = 10_000

_CORRUPT = (sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB)
_LOCKED = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
_CANNOT_WRITE_SQLITE = (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PERM)
_CANNOT_WRITE_OS = (errno.EACCES, errno.EPERM, errno.EROFS)


def _code(error: BaseException) -> int:
    """SQLite's primary result code of ``error`` (0 for another error)."""
    code = getattr(error, "sqlite_errorcode", None)
    return code & 0xFF if isinstance(code, int) else 0


def is_corrupt(error: BaseException) -> bool:
    """Whether SQLite says the file is not a database, or a damaged one."""
    return _code(error) in _CORRUPT


def _is_locked(error: BaseException) -> bool:
    return _code(error) in _LOCKED or (isinstance(error, sqlite3.OperationalError) and "locked" in str(error))


def _cannot_write(error: BaseException) -> bool:
    """Whether ``error`` says the store's file or directory cannot be written."""
    if isinstance(error, sqlite3.Error):
        return _code(error) in _CANNOT_WRITE_SQLITE
    return isinstance(error, OSError) and error.errno in _CANNOT_WRITE_OS


class SQLiteFile:
    """A store in one SQLite file; subclasses give ``SCHEMA``, ``VERSION`` and ``KIND``.

    Args:
        path: the database file.
        lock_timeout: how long a write waits for another process's lock before it gives up
            (seconds); after ``WARN_AFTER`` it warns, naming the holder.
    """

    SCHEMA: ClassVar[str]
    VERSION: ClassVar[int]
    #: What the file is, in messages ("cache store", "journal").
    KIND: ClassVar[str]
    #: The statements that bring a file of an older version to the next one, by the
    #: version they start from (``{1: (...)}`` takes a version 1 file to version 2).
    MIGRATIONS: ClassVar[Mapping[int, Sequence[str]]] = {}

    def __init__(self, path: Path, lock_timeout: float = LOCK_TIMEOUT) -> None:
        self.path = path
        self.lock_timeout = lock_timeout
        #: Whether the file could only be opened for reading (set when it is opened).
        self.read_only = False
        self._read_only_why = ""
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._pid = -1
        self._inode = -1
        self._writes = 0  # write transactions committed (``_checkpoint_later``)
        self._checkpointer: threading.Thread | None = None

    @property
    def _log(self) -> logging.Logger:
        """The logger of the store's module (``taskloom.caching``, ``taskloom.journal``)."""
        return logging.getLogger(type(self).__module__)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    # -- opening ----------------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        """This process's connection (call with ``self._lock`` held)."""
        if self._connection is None or self._pid != os.getpid():
            connection = self._open_healed()
            connection = self._up_to_date(connection)
            self._connection, self._pid = connection, os.getpid()
            _opened.add(self)
        return self._connection

    def _open_healed(self) -> sqlite3.Connection:
        """A connection to the file: writable if it can be, else read-only; a corrupt file
        is moved aside first."""
        try:
            try:
                self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                return self._open()
            except (sqlite3.Error, OSError) as error:
                if not _cannot_write(error) or not self.path.exists():
                    raise
                return self._open_read_only(error)
        except sqlite3.DatabaseError as error:
            if not is_corrupt(error) or self.read_only:
                raise
            self._move_corrupt(error)
            return self._open()

    def _open(self) -> sqlite3.Connection:
        private_file(self.path)
        connection = sqlite3.connect(
            self.path, timeout=WARN_AFTER, isolation_level=None, check_same_thread=False
        )
        try:
            self._inode = os.stat(self.path).st_ino
            self._patiently(lambda: connection.execute("PRAGMA journal_mode=WAL"))
            connection.execute("PRAGMA synchronous=NORMAL")
            connection.execute(f"PRAGMA wal_autocheckpoint={_AUTOCHECKPOINT_PAGES}")
            if not connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                self._patiently(
                    lambda: connection.executescript(
                        f"BEGIN IMMEDIATE; {self.SCHEMA} "
                        f"PRAGMA user_version = {self.VERSION}; COMMIT;"
                    )
                )
        except BaseException:
            connection.close()
            raise
        self.read_only = False
        return connection

    def _open_read_only(self, why: BaseException) -> sqlite3.Connection:
        """The file opened for reading only: through its WAL where that can be read, else
        as an immutable file (a read-only directory cannot hold the WAL's index)."""
        error: sqlite3.Error | None = None
        for mode in ("mode=ro", "immutable=1"):
            connection = sqlite3.connect(
                self._uri(mode), uri=True, timeout=WARN_AFTER, isolation_level=None,
                check_same_thread=False,
            )  # fmt: skip
            try:
                connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except sqlite3.Error as failed:
                connection.close()
                if is_corrupt(failed):
                    raise
                error = failed
                continue
            self.read_only = True
            self._read_only_why = str(why)
            # Said by each store when it first skips a write (once), not here as well.
            self._log.info("%s %s cannot be written (%s): opened it read-only", self.KIND, self.path, why)
            return connection
        assert error is not None
        raise error

    def _uri(self, query: str) -> str:
        """The file's SQLite URI with ``query`` (``mode=ro``, ``immutable=1``, ...)."""
        return f"file:{urllib.parse.quote(str(self.path.resolve()))}?{query}"

    def _up_to_date(self, connection: sqlite3.Connection) -> sqlite3.Connection:
        """``connection``, to a file of this version: an older one migrated in place where
        ``MIGRATIONS`` knows how, another moved aside for a new one."""
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version == self.VERSION:
            return connection
        tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
        if not tables and not version:
            return connection
        if self.read_only:
            connection.close()
            raise sqlite3.DatabaseError(
                f"{self.KIND} {self.path} has schema version {version}, not {self.VERSION}, "
                "and cannot be written: not using it"
            )
        if self._migrates(version):
            self._patiently(lambda: self._migrate(connection))
            return connection
        connection.close()
        aside = self._move_aside(f"v{version}")
        self._log.warning(
            "%s %s has schema version %d, not %d: moved it to %s and started a new one",
            self.KIND, self.path, version, self.VERSION, aside,
        )
        return self._open()

    def _migrates(self, version: int) -> bool:
        while version in self.MIGRATIONS:
            version += 1
        return version == self.VERSION

    def _migrate(self, connection: sqlite3.Connection) -> None:
        connection.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have migrated it while this one waited for the lock.
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            while version in self.MIGRATIONS:
                for statement in self.MIGRATIONS[version]:
                    connection.execute(statement)
                version += 1
            connection.execute(f"PRAGMA user_version = {version}")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
        connection.execute("COMMIT")

    def writable(self) -> bool:
        """Whether the file can be written (it is opened, if it was not, to tell): False
        too when it does not exist and cannot be created (a read-only home)."""
        with self._lock:
            try:
                self._connect()
            except (sqlite3.Error, OSError) as error:
                if not _cannot_write(error):
                    raise
                self._read_only_why = str(error)
                return False
            return not self.read_only

    # -- healing ----------------------------------------------------------------------------------

    def _move_aside(self, tag: str) -> Path:
        """Move the file (and its WAL) to ``NAME.TAG-TIMESTAMP``, a name no other file has."""
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        aside = self.path.with_name(f"{self.path.name}.{tag}-{stamp}")
        number = 1
        while aside.exists():
            number += 1
            aside = self.path.with_name(f"{self.path.name}.{tag}-{stamp}-{number}")
        os.replace(self.path, aside)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(f"{self.path}{suffix}"):
                os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
        self._moved_aside(aside)
        return aside

    def _moved_aside(self, aside: Path) -> None:
        """Called when the file was moved to ``aside``: a store keeping more than the one
        file moves the rest along."""

    def _move_corrupt(self, error: sqlite3.DatabaseError) -> None:
        """Move the corrupt file aside (unless another process did already) and warn;
        ``error`` again when it cannot be moved."""
        if self._connection is not None and self._pid == os.getpid():
            self._connection.close()
        self._connection = None
        try:
            if os.stat(self.path).st_ino != self._inode:
                return  # not the file this process found corrupt: another process healed it
            aside = self._move_aside("corrupt")
        except FileNotFoundError:
            return  # moved by another process
        except OSError as failed:
            raise error from failed
        self._log.warning(
            "%s %s is damaged (%s): moved it to %s and started a new one",
            self.KIND, self.path, error, aside,
        )

    def _healed(self, error: sqlite3.DatabaseError) -> bool:
        """Whether ``error`` said the file is corrupt and it was healed (moved aside, the
        next use opens a fresh one). Call with ``self._lock`` held."""
        if not is_corrupt(error) or self.read_only:
            return False
        self._move_corrupt(error)
        return True

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        """The rows of one query; on a file found corrupt, the rows of the fresh one."""
        with self._lock:
            try:
                return self._connect().execute(sql, args).fetchall()
            except sqlite3.DatabaseError as error:
                if not self._healed(error):
                    raise
                return self._connect().execute(sql, args).fetchall()

    # -- waiting for other processes ------------------------------------------------------------

    def _patiently(self, call: Callable[[], T]) -> T:
        """``call()``, tried again while another process holds the lock, up to
        ``lock_timeout``; once it has waited ``WARN_AFTER`` (SQLite's busy timeout, so
        usually at the first failed try) it warns, once, naming the holder."""
        start = time.monotonic()
        delay = 0.005
        warned = False
        while True:
            try:
                return call()
            except sqlite3.OperationalError as error:
                waited = time.monotonic() - start
                if not _is_locked(error) or waited >= self.lock_timeout:
                    raise
                if not warned and waited >= WARN_AFTER:
                    self._warn_locked()
                    warned = True
                # Most waits happen in SQLite's busy handler; this backs off the errors
                # it does not wait for (a lock that cannot be waited for without deadlock).
                time.sleep(delay)
                delay = min(2 * delay, 0.2)

    def _warn_locked(self) -> None:
        pids = holders([self.path, Path(f"{self.path}-shm")])
        who = ", ".join(describe(pid) for pid in pids) if pids else "which one cannot be told"
        self._log.warning(
            "%s %s is locked by another process (%s): waiting up to %.0f s for it",
            self.KIND, self.path, who, self.lock_timeout,
        )

    # -- writing ----------------------------------------------------------------------------------

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, holding the write lock from the start."""
        with self._lock:
            connection = self._connect()
            if self.read_only:
                raise sqlite3.OperationalError(f"read-only: {self._read_only_why}")
            try:
                self._patiently(lambda: connection.execute("BEGIN IMMEDIATE"))
            except sqlite3.DatabaseError as error:
                if not self._healed(error):
                    raise
                connection = self._connect()
                self._patiently(lambda: connection.execute("BEGIN IMMEDIATE"))
            try:
                yield connection
            except BaseException as error:
                if connection.in_transaction:  # SQLITE_FULL has rolled back already
                    connection.execute("ROLLBACK")
                if isinstance(error, sqlite3.DatabaseError):
                    self._healed(error)
                raise
            else:
                connection.execute("COMMIT")
                self._writes += 1
                if self._writes % CHECKPOINT_EVERY == 0:
                    self._checkpoint_later()

    def _checkpoint_later(self) -> None:
        """Checkpoint the WAL in a thread (call with ``self._lock`` held), unless the last
        one still runs."""
        running = self._checkpointer
        if running is not None and running.is_alive():
            return
        self._checkpointer = threading.Thread(
            target=self._checkpoint, name=f"taskloom-checkpoint-{self.path.name}", daemon=True
        )
        self._checkpointer.start()

    def _checkpoint(self) -> None:
        """The checkpointer thread: what the WAL holds, copied into the file, on a
        connection of its own (SQLite does it with the interpreter's lock released), as far
        as readers let it (``PASSIVE``: it waits for no one)."""
        # (``mode=rw``: a file moved aside meanwhile, being healed, is not made anew here.)
        try:
            connection = sqlite3.connect(
                self._uri("mode=rw"), uri=True, timeout=WARN_AFTER, isolation_level=None
            )
            try:
                connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            finally:
                connection.close()
        except sqlite3.Error as error:  # the next one, or SQLite's own, will do
            self._log.debug("%s %s: checkpoint failed: %s", self.KIND, self.path, error)

    def close(self) -> None:
        """Close this process's connection (it reopens on next use), once a checkpoint
        under way is done: the last connection closed removes the WAL."""
        with self._lock:
            running = self._checkpointer
            if running is not None and self._pid == os.getpid():
                running.join()
            self._checkpointer = None
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None


#: The stores with a connection open in this process: closed when the interpreter ends.
_opened: weakref.WeakSet[SQLiteFile] = weakref.WeakSet()


@atexit.register
def _close_all() -> None:
    # Explicitly, not left to the interpreter's teardown, which closes nothing a daemon
    # thread alive at exit can reach (``recording``'s writer): a store closed leaves no
    # WAL file behind, all of it checkpointed into the file.
    for store in list(_opened):
        store.close()


S = TypeVar("S")
_instances: dict[tuple[type, Path], object] = {}
_instances_lock = threading.Lock()


def per_home(cls: type[S]) -> S:
    """The one ``cls()`` of the current taskloom home in this process (its connection is
    reused by every run)."""
    home = taskloom_home()
    with _instances_lock:
        instance = _instances.get((cls, home))
        if not isinstance(instance, cls):
            instance = _instances[cls, home] = cls()
        return instance
