"""The SQLite file behind each of taskloom's stores (the output cache and the run journal).

Both live in the taskloom home, are shared by every process of the user, and must never
stop a flow run. What they share is here:

- one connection per process (a connection must not cross ``fork()``), opened on first
  use, in WAL mode, the file created private (0600);
- a schema version (``PRAGMA user_version``): a file written by another version of
  taskloom is moved aside with a warning and a new one started, rather than failing every
  run;
- ``BEGIN IMMEDIATE`` for every write: a deferred read-then-write transaction fails with
  "database is locked" under concurrent writers whatever the busy timeout;
- a retry for what the busy timeout does not cover (switching to WAL, creating tables
  while another process does the same).
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import ClassVar, TypeVar

from ._home import private_file, taskloom_home

__all__ = ["SQLiteFile", "per_home", "retrying"]

log = logging.getLogger("taskloom")

T = TypeVar("T")


def retrying(call: Callable[[], T], patience: float = 30.0) -> T:
    """``call()``, tried again while SQLite says the database is locked."""
    deadline = time.monotonic() + patience
    delay = 0.005
    while True:
        try:
            return call()
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(2 * delay, 0.2)


class SQLiteFile:
    """A store in one SQLite file; subclasses give ``SCHEMA``, ``VERSION`` and ``KIND``."""

    SCHEMA: ClassVar[str]
    VERSION: ClassVar[int]
    #: What the file is, in messages ("cache store", "journal").
    KIND: ClassVar[str]

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._connection: sqlite3.Connection | None = None
        self._pid = -1

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"

    def _connect(self) -> sqlite3.Connection:
        """This process's connection (call with ``self._lock`` held)."""
        if self._connection is None or self._pid != os.getpid():
            self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            connection = self._open()
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            tables = connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
            if version != self.VERSION and (tables or version):
                connection.close()
                aside = self._move_aside(version)
                log.warning(
                    "%s %s has schema version %d, not %d: moved it to %s and started a new one",
                    self.KIND, self.path, version, self.VERSION, aside,
                )
                connection = self._open()
            self._connection, self._pid = connection, os.getpid()
        return self._connection

    def _open(self) -> sqlite3.Connection:
        private_file(self.path)
        connection = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        try:
            retrying(lambda: connection.execute("PRAGMA journal_mode=WAL"))
            connection.execute("PRAGMA synchronous=NORMAL")
            if not connection.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                retrying(
                    lambda: connection.executescript(
                        f"BEGIN IMMEDIATE; {self.SCHEMA} "
                        f"PRAGMA user_version = {self.VERSION}; COMMIT;"
                    )
                )
        except BaseException:
            connection.close()
            raise
        return connection

    def _move_aside(self, version: int) -> Path:
        aside = self.path.with_name(f"{self.path.name}.v{version}-{int(time.time())}")
        os.replace(self.path, aside)
        for suffix in ("-wal", "-shm"):
            if os.path.exists(f"{self.path}{suffix}"):
                os.replace(f"{self.path}{suffix}", f"{aside}{suffix}")
        return aside

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction, holding the write lock from the start."""
        with self._lock:
            connection = self._connect()
            retrying(lambda: connection.execute("BEGIN IMMEDIATE"))
            try:
                yield connection
            except BaseException:
                if connection.in_transaction:  # SQLITE_FULL has rolled back already
                    connection.execute("ROLLBACK")
                raise
            else:
                connection.execute("COMMIT")

    def close(self) -> None:
        """Close this process's connection (it reopens on next use)."""
        with self._lock:
            if self._connection is not None and self._pid == os.getpid():
                self._connection.close()
            self._connection = None


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
