"""Output cache stores: where results computed with ``cache_for`` wait for later runs.

A store maps a cache key (the flow's name and the task's name, or the task's ``cache_key``)
to the ``Cached`` states stored under it, newest first. The scheduler, in the parent
process, asks the task's cache validator about each candidate and reuses the first one it
accepts. Any ``CacheStore`` works; two ship:

- ``SQLiteCacheStore`` (the default): one SQLite file under ``TASKLOOM_HOME`` or the user's
  cache directory, shared by every process of the user, safe under concurrent writers and
  crashes (WAL, ``BEGIN IMMEDIATE`` for read-then-write, atomic commits). Entries are
  signed (HMAC) with the home's key, and one whose signature does not match is never
  unpickled. Values of 1 MiB or more (pickled) are files beside the index, written whole
  (temporary file, fsync, rename) before the index row naming them commits; the row keeps
  the file's SHA-256, signed, so a file is unpickled only if it is the one written.
- ``MemoryCacheStore``: a dict in this process, as Prefect Core's ``context.caches`` was.

A store never fails a flow run: an entry that cannot be read is a miss (a row whose value
file is missing, unreadable or altered is removed too), and a result that cannot be stored
(it does not pickle, the disk is full, the database is locked, the store is read-only) is
logged and not cached.

The policy the scheduler follows is here too, as two functions of plain values:

- ``lookup``: before a task with ``cache_for`` runs, the first candidate its cache validator
  accepts (a ``Cached`` state it was seeded with, then the store's entries, newest first);
- ``remember``: after it ran and ended plain ``Success``, store its result as ``Cached``,
  with the hash of its inputs and the run's parameters, until ``cache_for`` runs out; a
  result holding a secret's value (``taskloom._secrets``) is never stored.

Both take values, not deferred handles: the scheduler resolves an executor's
``DeferredResult`` before calling them (this module sits below the executors).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import hmac
import logging
import os
import pickle
import re
import sqlite3
import tempfile
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol

from ._hashing import UnhashableInputError, hash_inputs
from ._home import Signer, taskloom_home
from ._secrets import holds_secret
from ._sqlite import LOCK_TIMEOUT, SQLiteFile, per_home
from .states import Cached, Failed, State

if TYPE_CHECKING:
    from .task import Task

__all__ = [
    "CacheStore",
    "KeyInfo",
    "LARGE_VALUE",
    "MemoryCacheStore",
    "SQLiteCacheStore",
    "cache_key",
    "default_cache_store",
    "lookup",
    "remember",
]

log = logging.getLogger("taskloom.caching")

#: How many entries one key keeps (different inputs or parameters); the oldest go first.
MAX_ENTRIES_PER_KEY = 64


class CacheStore(Protocol):
    """Where cached task results live between runs."""

    def get(self, key: str) -> list[Cached[Any]]:
        """The unexpired states stored under ``key``, newest first."""
        ...

    def put(self, key: str, state: Cached[Any]) -> None:
        """Store ``state`` under ``key``, replacing one computed from the same inputs and parameters."""
        ...

    def keys(self) -> list[str]:
        """Every key that has entries."""
        ...

    def clear(self, key: str | None = None) -> None:
        """Forget the entries of ``key``, or every entry."""
        ...


def _fingerprint(state: Cached[Any]) -> str:
    """Equal for two entries computed from the same inputs and parameters."""
    from ._hashing import hash_value

    return hash_value([state.hashed_inputs, sorted(state.cached_parameters.items())])


def _expired(state: Cached[Any], now: _dt.datetime) -> bool:
    expiration = state.cached_result_expiration
    return expiration is not None and expiration <= now


class MemoryCacheStore:
    """A cache store in this process's memory; every run in the process shares it."""

    def __init__(self) -> None:
        self._entries: dict[str, list[tuple[str, Cached[Any]]]] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> list[Cached[Any]]:
        now = _dt.datetime.now(_dt.timezone.utc)
        with self._lock:
            return [s for _, s in reversed(self._entries.get(key, [])) if not _expired(s, now)]

    def put(self, key: str, state: Cached[Any]) -> None:
        fingerprint = _fingerprint(state)
        now = _dt.datetime.now(_dt.timezone.utc)
        with self._lock:
            kept = [
                (f, s)
                for f, s in self._entries.get(key, [])
                if f != fingerprint and not _expired(s, now)
            ]
            kept.append((fingerprint, state))
            self._entries[key] = kept[-MAX_ENTRIES_PER_KEY:]

    def keys(self) -> list[str]:
        with self._lock:
            return [k for k, v in self._entries.items() if v]

    def clear(self, key: str | None = None) -> None:
        with self._lock:
            if key is None:
                self._entries.clear()
            else:
                self._entries.pop(key, None)


_SCHEMA = """
CREATE TABLE IF NOT EXISTS cache_entries (
    id INTEGER PRIMARY KEY,
    cache_key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created REAL NOT NULL,
    expires REAL,
    payload BLOB NOT NULL,
    size INTEGER,
    file TEXT
);
CREATE INDEX IF NOT EXISTS cache_entries_by_key ON cache_entries (cache_key, created);
CREATE INDEX IF NOT EXISTS cache_entries_by_expiry ON cache_entries (expires);
"""

#: Version 1 (taskloom 0.1) kept every value in the index; its entries stay readable.
_MIGRATIONS = {
    1: (
        "ALTER TABLE cache_entries ADD COLUMN size INTEGER",
        "ALTER TABLE cache_entries ADD COLUMN file TEXT",
        "CREATE INDEX IF NOT EXISTS cache_entries_by_expiry ON cache_entries (expires)",
    ),
}

#: A value whose pickle is at least this big is kept as a file next to the index.
LARGE_VALUE = 1 << 20

#: What the index holds for a value kept as a file: this, the file's name, its SHA-256.
_FILE_REFERENCE = b"taskloom-cache-file:"

#: The names the store gives its value files (anything else in a row is refused).
_FILE_NAME = re.compile(r"[0-9a-f]{32}\.pickle")


class KeyInfo(NamedTuple):
    """What ``SQLiteCacheStore.entries`` says of one key."""

    #: The cache key ("flow/task", or the task's ``cache_key``).
    key: str
    #: How many unexpired entries it has.
    entries: int
    #: When its newest entry was stored (seconds since the epoch).
    newest: float
    #: The pickled size of its unexpired entries (bytes).
    size: int
    #: How many of them are kept as files (values of ``LARGE_VALUE`` or more).
    files: int


class SQLiteCacheStore(SQLiteFile):
    """A persistent cache store in one SQLite file, shared by every process of the user.

    Args:
        path: the database file (the index); default ``cache.sqlite`` in ``TASKLOOM_HOME``
            (or the user's cache directory). The file is created readable by its owner only.
        lock_timeout: how long a write waits for another process's lock before the result
            is not cached (seconds); after a second it warns, naming the holder.

    Results are stored with the standard ``pickle``, so only values that pickle by
    reference to importable code are cached; others are logged and recomputed next time.
    A value whose pickle is 1 MiB (``LARGE_VALUE``) or more is kept as a file in the
    ``files`` directory beside the index (``cache.files``), written whole before its
    index row commits; the row holds the file's name and SHA-256, signed, so a file is
    only unpickled when it is the one the store wrote. A row whose file is missing,
    unreadable or altered is a miss, and is removed.

    Raises:
        UnsafeHomeError: the taskloom home belongs to another user or others may write to it.
    """

    SCHEMA = _SCHEMA
    VERSION = 2
    KIND = "cache store"
    MIGRATIONS = _MIGRATIONS

    def __init__(
        self, path: str | os.PathLike[str] | None = None, lock_timeout: float = LOCK_TIMEOUT
    ) -> None:
        home = taskloom_home()
        super().__init__(Path(path) if path is not None else home / "cache.sqlite", lock_timeout)
        self._signer = Signer.for_home(home)
        self._warned_read_only = False

    @property
    def files(self) -> Path:
        """The directory of the values kept as files (created with the first one)."""
        return self.path.with_suffix(".files")

    def get(self, key: str) -> list[Cached[Any]]:
        try:
            rows = self._read(
                "SELECT id, payload, file FROM cache_entries WHERE cache_key = ? "
                "AND (expires IS NULL OR expires > ?) ORDER BY created DESC, id DESC",
                (key, time.time()),
            )
        except (sqlite3.Error, OSError) as error:
            if not self.path.exists():
                return []  # nothing stored, and it could not be created (a read-only home)
            log.warning("cache store %s unreadable (%s): treating %r as a miss", self.path, error, key)
            return []
        found: list[Cached[Any]] = []
        broken: list[tuple[int, str | None]] = []
        for row_id, blob, file in rows:
            payload = self._signer.verify(blob)
            if payload is None:
                log.warning(
                    "cache entry %s of %r in %s has a bad signature (tampered with, or written "
                    "with another key): not loading it",
                    row_id, key, self.path,
                )
                continue
            if file is not None:
                payload, ours = self._read_file(row_id, key, file, payload)
                if payload is None:
                    # A row naming a file it was not signed for must not take that file along.
                    broken.append((row_id, file if ours else None))
                    continue
            try:
                state = pickle.loads(payload)
            except Exception as error:
                log.warning("cache entry %s of %r cannot be loaded (%r): ignoring it", row_id, key, error)
                continue
            if isinstance(state, Cached):
                found.append(state)
        if broken:
            self._forget(broken)
        return found

    def _read_file(self, row_id: int, key: str, file: str, reference: bytes) -> tuple[bytes | None, bool]:
        """The pickle kept in ``file`` for an entry, if it is the one the signed
        ``reference`` names; None (and a warning) when it is missing, unreadable or not
        that file. Second: whether ``file`` is the entry's own (what its row was signed with)."""
        name, _, digest = reference.removeprefix(_FILE_REFERENCE).partition(b":")
        ours = reference.startswith(_FILE_REFERENCE) and name.decode(errors="replace") == file
        if not ours:
            why = "its index row names another file"
        elif not _FILE_NAME.fullmatch(file):
            why = "its file name is not one the store gives"
        else:
            try:
                data = (self.files / file).read_bytes()
            except OSError as error:
                why = f"its file cannot be read ({error.strerror or error})"
            else:
                if hmac.compare_digest(hashlib.sha256(data).hexdigest().encode(), digest):
                    return data, True
                why = "its file is not the one stored (damaged, or tampered with)"
        log.warning(
            "cache entry %s of %r in %s is not loaded: %s (%s); removing the entry",
            row_id, key, self.path, why, self.files / file,
        )
        return None, ours

    def _forget(self, rows: Sequence[tuple[int, str | None]]) -> None:
        """Remove broken entries and their own files; best effort (a read-only store keeps them)."""
        if self.read_only:
            return
        try:
            with self._transaction() as connection:
                connection.executemany("DELETE FROM cache_entries WHERE id = ?", [(i,) for i, _ in rows])
        except (sqlite3.Error, OSError) as error:
            log.warning("cache store %s: broken entries not removed (%s)", self.path, error)
            return
        self._unlink([file for _, file in rows if file is not None])

    def put(self, key: str, state: Cached[Any]) -> None:
        try:
            if not self.writable():
                self._skip_read_only(key)
                return
        except (sqlite3.Error, OSError) as error:
            log.warning("result for %r not cached: cache store %s failed (%s)", key, self.path, error)
            return
        try:
            payload = pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as error:
            log.warning(
                "result for %r not cached: %s cannot be stored with pickle (%r)",
                key, type(state.result).__name__, error,
            )
            return
        file: str | None = None
        size = len(payload)
        try:
            if size >= LARGE_VALUE:
                file = self._write_file(payload)
                payload = _FILE_REFERENCE + file.encode() + b":" + hashlib.sha256(payload).hexdigest().encode()
            self._insert(key, state, self._signer.sign(payload), size, file)
        except (sqlite3.Error, OSError) as error:
            if file is not None:
                self._unlink([file])
            log.warning("result for %r not cached: cache store %s failed (%s)", key, self.path, error)

    def _skip_read_only(self, key: str) -> None:
        if not self._warned_read_only:
            self._warned_read_only = True
            log.warning(
                "cache store %s is read-only (%s): results are not cached (from %r on; said once)",
                self.path, self._read_only_why, key,
            )

    def _write_file(self, payload: bytes) -> str:
        """Write ``payload`` to a new file of ``files``, whole or not at all: a private
        temporary file, flushed to disk, renamed into place. Returns its name."""
        self.files.mkdir(mode=0o700, exist_ok=True)
        name = f"{uuid.uuid4().hex}.pickle"
        descriptor, temporary = tempfile.mkstemp(dir=self.files, prefix=".writing-")  # 0600
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(payload)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.files / name)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise
        _sync_directory(self.files)  # the rename reaches the disk before the row that names it
        return name

    def _insert(self, key: str, state: Cached[Any], payload: bytes, size: int, file: str | None) -> None:
        """Store one entry under ``key``: it replaces the entry of the same fingerprint,
        expired entries (of every key) go, and so do the oldest beyond
        ``MAX_ENTRIES_PER_KEY``; their files are removed once the change is committed."""
        expiration = state.cached_result_expiration
        expires = expiration.timestamp() if expiration is not None else None
        now = time.time()
        fingerprint = _fingerprint(state)
        doomed = "(cache_key = ? AND fingerprint = ?) OR (expires IS NOT NULL AND expires <= ?)"
        with self._transaction() as connection:
            files = connection.execute(
                f"SELECT file FROM cache_entries WHERE file IS NOT NULL AND ({doomed})",
                (key, fingerprint, now),
            ).fetchall()
            connection.execute(f"DELETE FROM cache_entries WHERE {doomed}", (key, fingerprint, now))
            connection.execute(
                "INSERT INTO cache_entries (cache_key, fingerprint, created, expires, payload, size, "
                "file) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (key, fingerprint, now, expires, payload, size, file),
            )
            excess = (
                "FROM cache_entries WHERE cache_key = ? AND id NOT IN (SELECT id FROM "
                "cache_entries WHERE cache_key = ? ORDER BY created DESC, id DESC LIMIT ?)"
            )
            files += connection.execute(
                f"SELECT file {excess} AND file IS NOT NULL", (key, key, MAX_ENTRIES_PER_KEY)
            ).fetchall()
            connection.execute(f"DELETE {excess}", (key, key, MAX_ENTRIES_PER_KEY))
        self._unlink([name for (name,) in files])

    def _unlink(self, files: Sequence[str]) -> None:
        for name in files:
            if _FILE_NAME.fullmatch(name):
                with contextlib.suppress(OSError):  # gone already, or not a file: nothing to free
                    os.unlink(self.files / name)

    def _moved_aside(self, aside: Path) -> None:
        # The value files belong to the index moved aside: they go with it.
        if self.files.exists():
            with contextlib.suppress(OSError):
                os.replace(self.files, f"{aside}.files")

    def keys(self) -> list[str]:
        rows = self._read("SELECT DISTINCT cache_key FROM cache_entries ORDER BY cache_key")
        return [row[0] for row in rows]

    def entries(self) -> list[KeyInfo]:
        """Every key that has entries, by key, with how many are unexpired, when the newest
        was stored, their size and how many are files. Reads no value, so it is cheap."""
        rows = self._read(
            "SELECT cache_key, SUM(live), MAX(created), SUM(CASE WHEN live THEN "
            "COALESCE(size, length(payload)) ELSE 0 END), SUM(live AND file IS NOT NULL) "
            "FROM (SELECT *, (expires IS NULL OR expires > ?) AS live FROM cache_entries) "
            "GROUP BY cache_key ORDER BY cache_key",
            (time.time(),),
        )
        return [KeyInfo(key, int(n), float(newest), int(size), int(files)) for key, n, newest, size, files in rows]

    def clear(self, key: str | None = None) -> None:
        with self._transaction() as connection:
            if key is None:
                connection.execute("DELETE FROM cache_entries")
                files: list[str] = []
            else:
                files = [
                    name for (name,) in connection.execute(
                        "SELECT file FROM cache_entries WHERE cache_key = ? AND file IS NOT NULL", (key,)
                    )
                ]
                connection.execute("DELETE FROM cache_entries WHERE cache_key = ?", (key,))
        if key is None:
            # Every value file goes, with those a crash left behind (written, never indexed).
            with contextlib.suppress(FileNotFoundError):
                files = [p.name for p in self.files.iterdir()]
            for name in files:
                with contextlib.suppress(OSError):
                    os.unlink(self.files / name)
        else:
            self._unlink(files)


def _sync_directory(path: Path) -> None:
    """Flush ``path``'s entries (a rename into it) to disk, where the platform can."""
    try:
        descriptor = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some file systems cannot sync a directory; the rename stands
    finally:
        os.close(descriptor)


def default_cache_store() -> SQLiteCacheStore:
    """The cache store of the current taskloom home, one per process."""
    return per_home(SQLiteCacheStore)


# -- the policy ------------------------------------------------------------------------------------


def cache_key(task: Task[Any, Any], flow_name: str) -> str:
    """Where ``task``'s results are stored: its ``cache_key``, else ``"flow/task"``."""
    return task.cache_key if task.cache_key is not None else f"{flow_name}/{task.name}"


def lookup(
    task: Task[Any, Any],
    key: str,
    inputs: Mapping[str, Any],
    parameters: Mapping[str, Any],
    store: CacheStore,
    seeded: State[Any] | None = None,
) -> State[Any] | None:
    """The state ``task`` ends in without running, from the cache: the first candidate
    (``seeded`` if it is ``Cached``, then ``store``'s entries under ``key``) that its
    cache validator accepts for these ``inputs`` and ``parameters``; ``Failed`` when the
    validator raises; None for a miss."""
    candidates: list[Cached[Any]] = []
    if isinstance(seeded, Cached):
        candidates.append(seeded)
    candidates.extend(store.get(key))
    for candidate in candidates:
        try:
            valid = task.cache_validator(candidate, inputs, parameters)
        except Exception as error:
            return Failed(f"Unexpected error while checking the cache validator: {error!r}", error)
        if valid:
            return candidate
    return None


def remember(
    task: Task[Any, Any],
    key: str,
    result: Any,
    message: str | None,
    inputs: Mapping[str, Any],
    parameters: Mapping[str, Any],
    store: CacheStore,
) -> None:
    """Store ``result`` (which ``task`` ran to with ``inputs``, ending with ``message``)
    under ``key`` for ``task.cache_for``; logged and skipped when an input cannot be
    hashed."""
    assert task.cache_for is not None
    secret = holds_secret(result)
    if secret is not None:
        log.warning("Task %r: result not cached, it holds the value of secret %r", task.name, secret)
        return
    now = _dt.datetime.now(_dt.timezone.utc)
    try:
        expiration: _dt.datetime | None = now + task.cache_for
    except OverflowError:
        expiration = None  # longer than the calendar goes: never expires
    try:
        hashed = hash_inputs(inputs)
    except UnhashableInputError as error:
        log.warning("Task %r: result not cached, an input cannot be hashed: %s", task.name, error)
        return
    cached = Cached(
        message,
        result,
        cached_result_expiration=expiration,
        hashed_inputs=hashed,
        cached_parameters=parameters,
    )
    store.put(key, cached)
