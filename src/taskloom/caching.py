"""Output cache stores: where results computed with ``cache_for`` wait for later runs.

A store maps a cache key (the flow's name and the task's name, or the task's ``cache_key``)
to the ``Cached`` states stored under it, newest first. The scheduler, in the parent
process, asks the task's cache validator about each candidate and reuses the first one it
accepts. Any ``CacheStore`` works; two ship:

- ``SQLiteCacheStore`` (the default): one SQLite file under ``TASKLOOM_HOME`` or the user's
  cache directory, shared by every process of the user, safe under concurrent writers and
  crashes (WAL, ``BEGIN IMMEDIATE`` for read-then-write, atomic commits). Entries are
  signed (HMAC) with the home's key, and one whose signature does not match is never
  unpickled.
- ``MemoryCacheStore``: a dict in this process, as Prefect Core's ``context.caches`` was.

A store never fails a flow run: an entry that cannot be read is a miss, and a result that
cannot be stored (it does not pickle, the disk is full, the database is locked) is logged
and not cached.

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

import datetime as _dt
import logging
import os
import pickle
import sqlite3
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ._hashing import UnhashableInputError, hash_inputs
from ._home import Signer, taskloom_home
from ._secrets import holds_secret
from ._sqlite import SQLiteFile, per_home
from .states import Cached, Failed, State

if TYPE_CHECKING:
    from .task import Task

__all__ = [
    "CacheStore",
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
    payload BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS cache_entries_by_key ON cache_entries (cache_key, created);
"""


class SQLiteCacheStore(SQLiteFile):
    """A persistent cache store in one SQLite file, shared by every process of the user.

    Args:
        path: the database file; default ``cache.sqlite`` in ``TASKLOOM_HOME`` (or the
            user's cache directory). The file is created readable by its owner only.

    Results are stored with the standard ``pickle``, so only values that pickle by
    reference to importable code are cached; others are logged and recomputed next time.

    Raises:
        UnsafeHomeError: the taskloom home belongs to another user or others may write to it.
    """

    SCHEMA = _SCHEMA
    VERSION = 1
    KIND = "cache store"

    def __init__(self, path: str | os.PathLike[str] | None = None) -> None:
        home = taskloom_home()
        super().__init__(Path(path) if path is not None else home / "cache.sqlite")
        self._signer = Signer.for_home(home)

    def get(self, key: str) -> list[Cached[Any]]:
        try:
            with self._lock:
                rows = self._connect().execute(
                    "SELECT id, payload FROM cache_entries WHERE cache_key = ? "
                    "AND (expires IS NULL OR expires > ?) ORDER BY created DESC, id DESC",
                    (key, time.time()),
                ).fetchall()
        except sqlite3.Error as error:
            log.warning("cache store %s unreadable (%s): treating %r as a miss", self.path, error, key)
            return []
        found: list[Cached[Any]] = []
        for row_id, blob in rows:
            payload = self._signer.verify(blob)
            if payload is None:
                log.warning(
                    "cache entry %s of %r in %s has a bad signature (tampered with, or written "
                    "with another key): not loading it",
                    row_id, key, self.path,
                )
                continue
            try:
                state = pickle.loads(payload)
            except Exception as error:
                log.warning("cache entry %s of %r cannot be loaded (%r): ignoring it", row_id, key, error)
                continue
            if isinstance(state, Cached):
                found.append(state)
        return found

    def put(self, key: str, state: Cached[Any]) -> None:
        try:
            payload = self._signer.sign(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
        except Exception as error:
            log.warning(
                "result for %r not cached: %s cannot be stored with pickle (%r)",
                key, type(state.result).__name__, error,
            )
            return
        expiration = state.cached_result_expiration
        expires = expiration.timestamp() if expiration is not None else None
        now = time.time()
        try:
            with self._transaction() as connection:
                connection.execute(
                    "DELETE FROM cache_entries WHERE cache_key = ? AND (fingerprint = ? "
                    "OR (expires IS NOT NULL AND expires <= ?))",
                    (key, _fingerprint(state), now),
                )
                connection.execute(
                    "INSERT INTO cache_entries (cache_key, fingerprint, created, expires, payload) "
                    "VALUES (?, ?, ?, ?, ?)",
                    (key, _fingerprint(state), now, expires, payload),
                )
                connection.execute(
                    "DELETE FROM cache_entries WHERE cache_key = ? AND id NOT IN (SELECT id FROM "
                    "cache_entries WHERE cache_key = ? ORDER BY created DESC, id DESC LIMIT ?)",
                    (key, key, MAX_ENTRIES_PER_KEY),
                )
        except sqlite3.Error as error:
            log.warning("result for %r not cached: cache store %s failed (%s)", key, self.path, error)

    def keys(self) -> list[str]:
        with self._lock:
            rows = self._connect().execute(
                "SELECT DISTINCT cache_key FROM cache_entries ORDER BY cache_key"
            ).fetchall()
        return [row[0] for row in rows]

    def entries(self) -> list[tuple[str, int, float]]:
        """Every key that has entries, by key: ``(key, unexpired entries, when the newest
        entry was stored)`` (seconds since the epoch). Reads no payload, so it is cheap."""
        with self._lock:
            rows = self._connect().execute(
                "SELECT cache_key, SUM(expires IS NULL OR expires > ?), MAX(created) "
                "FROM cache_entries GROUP BY cache_key ORDER BY cache_key",
                (time.time(),),
            ).fetchall()
        return [(key, int(count), float(newest)) for key, count, newest in rows]

    def clear(self, key: str | None = None) -> None:
        with self._transaction() as connection:
            if key is None:
                connection.execute("DELETE FROM cache_entries")
            else:
                connection.execute("DELETE FROM cache_entries WHERE cache_key = ?", (key,))

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
