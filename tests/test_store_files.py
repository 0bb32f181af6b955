"""The output cache keeps large values (1 MiB or more, pickled) as files beside its SQLite
index: written whole before the row naming them commits, signed through the row, a miss
(and removed) when missing, unreadable or altered, and gone with expiry and clear."""

from __future__ import annotations

import datetime as dt
import logging
import os
import pickle
import re
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from taskloom import Flow, task
from taskloom._home import Signer
from taskloom.caching import LARGE_VALUE, SQLiteCacheStore
from taskloom.executors import Executor, LocalExecutor
from taskloom.states import Cached

from ._cli import killed_after, Planted, describe, query, taskloom, write_flow
from ._helpers import kind, lines, record

HOUR = dt.timedelta(hours=1)
BIG = 2 * LARGE_VALUE


@task(cache_for=HOUR)
def big(log: str) -> bytes:
    record(log, "big")
    return bytes([len(lines(log))]) * BIG


@task(cache_for=HOUR)
def small(log: str) -> str:
    record(log, "small")
    return "small"


def _flow(log: str) -> tuple[Flow, object, object]:
    with Flow("files") as flow:
        b = big(log)
        s = small(log)
    return flow, b, s


def _rows(home: Path) -> list[tuple[str, int, str | None, int]]:
    """(key, size, file, stored payload length) of every index row."""
    rows = query(home / "cache.sqlite", "SELECT cache_key, size, file, length(payload) FROM cache_entries ORDER BY cache_key")
    return [(str(k), int(n), f, int(p)) for k, n, f, p in rows]


def _value_files(home: Path) -> list[Path]:
    files = home / "cache.files"
    return sorted(files.iterdir()) if files.exists() else []


def test_a_large_result_is_kept_as_a_file_and_served_from_it(
    tmp_path: Path, taskloom_home: Path, executor: Executor
) -> None:
    log = str(tmp_path / "log")
    flow, b, s = _flow(log)
    first = flow.run(executor=executor)
    assert [kind(first.result[t]) for t in (b, s)] == ["Success", "Success"]
    [(big_key, big_size, big_file, big_blob), (small_key, small_size, small_file, _)] = _rows(taskloom_home)
    assert (big_key, small_key) == ("files/big", "files/small")
    assert big_size > BIG and big_file is not None
    assert big_blob < 1024, "the value is in a file, not in the index"
    assert small_file is None and small_size < LARGE_VALUE
    assert [p.name for p in _value_files(taskloom_home)] == [big_file]
    assert oct((taskloom_home / "cache.files").stat().st_mode & 0o777) == "0o700"
    assert (taskloom_home / "cache.files" / big_file).stat().st_mode & 0o077 == 0

    second = flow.run(executor=executor)
    assert [kind(second.result[t]) for t in (b, s)] == ["Cached", "Cached"]
    assert second.result[b].result == first.result[b].result
    assert lines(log).count("big") == 1


def _replace_with_a_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


DAMAGE: dict[str, Callable[[Path], None]] = {
    "missing": Path.unlink,
    "truncated": lambda path: os.truncate(path, path.stat().st_size // 2),
    "a-directory": _replace_with_a_directory,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_missing_or_unreadable_value_file_is_a_miss_and_its_row_goes(
    tmp_path: Path, taskloom_home: Path, caplog: pytest.LogCaptureFixture, damage: str
) -> None:
    log = str(tmp_path / "log")
    flow, b, _ = _flow(log)
    flow.run(executor=LocalExecutor())
    [path] = _value_files(taskloom_home)
    DAMAGE[damage](path)
    with caplog.at_level(logging.WARNING, logger="taskloom.caching"):
        again = flow.run(executor=LocalExecutor())
    assert kind(again) == "Success"
    assert kind(again.result[b]) == "Success", "a damaged entry must be a miss, never an error"
    assert again.result[b].result == bytes([3]) * BIG  # computed again (big, small, big)
    warnings = [r.getMessage() for r in caplog.records if r.name == "taskloom.caching"]
    assert any(path.name in w and "removing the entry" in w for w in warnings), warnings
    [(_, _, file, _), _] = _rows(taskloom_home)
    assert file is not None and file != path.name, "the broken row was removed, the new one kept"
    assert (taskloom_home / "cache.files" / file).is_file()


def test_a_value_file_replaced_by_a_planted_pickle_is_never_unpickled(
    tmp_path: Path, taskloom_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = str(tmp_path / "log")
    flow, b, _ = _flow(log)
    flow.run(executor=LocalExecutor())
    [path] = _value_files(taskloom_home)
    marker = tmp_path / "pwned"
    planted = pickle.dumps(Planted(str(marker)))
    path.write_bytes(planted + b"\0" * (BIG - len(planted)))  # same size: only the content differs
    with caplog.at_level(logging.WARNING, logger="taskloom.caching"):
        again = flow.run(executor=LocalExecutor())
    assert not marker.exists(), "the planted file was unpickled"
    assert kind(again.result[b]) == "Success"
    assert any("not the one stored" in r.getMessage() for r in caplog.records), caplog.text


def test_a_row_pointing_at_another_file_is_refused(
    tmp_path: Path, taskloom_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The file a row names is part of what its signature covers: editing the row's
    ``file`` column to point at another file does not make the store load that file."""
    store = SQLiteCacheStore()
    store.put("a/one", Cached("ok", b"1" * BIG, hashed_inputs={}))
    store.put("a/two", Cached("ok", b"2" * BIG, hashed_inputs={}))
    files = dict(query(taskloom_home / "cache.sqlite", "SELECT cache_key, file FROM cache_entries"))
    connection = sqlite3.connect(taskloom_home / "cache.sqlite")
    with connection:
        connection.execute("UPDATE cache_entries SET file = ? WHERE cache_key = 'a/one'", (files["a/two"],))
    connection.close()
    with caplog.at_level(logging.WARNING, logger="taskloom.caching"):
        assert store.get("a/one") == []
    assert "names another file" in caplog.text
    assert [s.result[:1] for s in store.get("a/two")] == [b"2"]
    store.close()


def test_expiry_and_clear_remove_the_files(taskloom_home: Path) -> None:
    store = SQLiteCacheStore()
    past = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=1)
    store.put("f/expired", Cached("ok", b"e" * BIG, cached_result_expiration=past, hashed_inputs={}))
    [expired] = _value_files(taskloom_home)
    # Any write removes the expired entries, of every key, with their files...
    store.put("f/kept", Cached("ok", b"k" * BIG, hashed_inputs={}))
    [kept] = _value_files(taskloom_home)
    assert kept != expired and not expired.exists()
    assert store.keys() == ["f/kept"]
    # ...and an entry replaced by one of the same inputs takes its file with it.
    store.put("f/kept", Cached("ok", b"K" * BIG, hashed_inputs={}))
    [replaced] = _value_files(taskloom_home)
    assert replaced != kept and not kept.exists()
    assert [s.result[:1] for s in store.get("f/kept")] == [b"K"]

    store.put("f/other", Cached("ok", b"o" * BIG, hashed_inputs={}))
    store.clear("f/kept")
    assert len(_value_files(taskloom_home)) == 1
    assert store.keys() == ["f/other"]

    # A crash between writing a file and committing its row leaves a file no row names:
    # clearing the whole store removes it too.
    orphan = taskloom_home / "cache.files" / ("0" * 32 + ".pickle")
    orphan.write_bytes(b"never indexed")
    (taskloom_home / "cache.files" / ".writing-crashed").write_bytes(b"half")
    store.clear()
    assert _value_files(taskloom_home) == []
    assert store.keys() == []
    store.close()


def test_the_cli_lists_sizes_and_where_values_are(tmp_path: Path, taskloom_home: Path) -> None:
    flows = write_flow(
        tmp_path / "flows.py",
        """\
        @task(cache_for=dt.timedelta(hours=1))
        def big() -> bytes:
            return b"x" * (3 * 2**20)


        @task(cache_for=dt.timedelta(hours=1))
        def small() -> str:
            return "small"


        with Flow("sizes") as flow:
            big()
            small()
        """,
    )
    ran = taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local")
    assert ran.returncode == 0, describe(ran)
    listing = taskloom(taskloom_home, "cache", "ls")
    assert listing.returncode == 0, describe(listing)
    rows = {line.split()[0]: line for line in listing.stdout.splitlines() if line.startswith("sizes/")}
    assert re.match(r"sizes/big\s+1\s+3\.0 MiB\s+1\s+\d{4}-", rows["sizes/big"]), listing.stdout
    assert re.match(r"sizes/small\s+1\s+\d+ B\s+0\s+\d{4}-", rows["sizes/small"]), listing.stdout
    assert listing.stdout.splitlines()[0].split() == ["KEY", "ENTRIES", "SIZE", "FILES", "NEWEST"]
    assert f"Index: {taskloom_home / 'cache.sqlite'}" in listing.stdout
    assert f"{taskloom_home / 'cache.files'}{os.sep}" in listing.stdout


def test_a_store_of_the_previous_version_keeps_its_entries(
    taskloom_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """taskloom 0.1's cache (schema version 1, every value in the index) is brought up to
    date in place: its entries still hit, and nothing is moved aside."""
    taskloom_home.mkdir(mode=0o700)
    database = taskloom_home / "cache.sqlite"
    old = sqlite3.connect(database)
    old.executescript(
        """
        CREATE TABLE cache_entries (id INTEGER PRIMARY KEY, cache_key TEXT NOT NULL,
            fingerprint TEXT NOT NULL, created REAL NOT NULL, expires REAL, payload BLOB NOT NULL);
        CREATE INDEX cache_entries_by_key ON cache_entries (cache_key, created);
        PRAGMA user_version = 1;
        """
    )
    signer = Signer.for_home(taskloom_home)
    state = Cached("ok", {"from": "0.1"}, hashed_inputs={})
    with old:
        old.execute(
            "INSERT INTO cache_entries (cache_key, fingerprint, created, expires, payload) VALUES (?, ?, ?, NULL, ?)",
            ("old/task", "f", time.time(), signer.sign(pickle.dumps(state))),
        )
    old.close()
    store = SQLiteCacheStore()
    with caplog.at_level(logging.WARNING):
        assert [s.result for s in store.get("old/task")] == [{"from": "0.1"}]
    assert "moved it" not in caplog.text
    assert query(database, "PRAGMA user_version") == [(2,)]
    assert [(e.key, e.entries, e.files) for e in store.entries()] == [("old/task", 1, 0)]
    store.put("old/task", Cached("ok", b"n" * BIG, hashed_inputs={"x": "1"}))
    assert [type(s.result).__name__ for s in store.get("old/task")] == ["bytes", "dict"]
    store.close()


WRITER = """\
from taskloom.caching import SQLiteCacheStore
from taskloom.states import Cached

store = SQLiteCacheStore()
i = 0
while True:
    value = bytes([i % 251]) * (2**20 + 4096 * (i % 7))
    store.put(f"key-{i % 3}", Cached("ok", {"i": i, "value": value}, hashed_inputs={"i": str(i)}))
    print(i, flush=True)  # after the commit
    i += 1
"""


@pytest.mark.slow
def test_a_writer_killed_mid_write_leaves_only_whole_files_indexed(taskloom_home: Path) -> None:
    last = killed_after(WRITER, taskloom_home, 40)
    assert query(taskloom_home / "cache.sqlite", "PRAGMA integrity_check") == [("ok",)]
    store = SQLiteCacheStore()
    seen = set()
    for k in range(3):
        for state in store.get(f"key-{k}"):
            i = state.result["i"]
            assert state.result["value"] == bytes([i % 251]) * (2**20 + 4096 * (i % 7))
            seen.add(i)
    assert last in seen, "every committed entry is there, whole"
    indexed = {f for (f,) in query(taskloom_home / "cache.sqlite", "SELECT file FROM cache_entries")}
    on_disk = {p.name for p in _value_files(taskloom_home) if not p.name.startswith(".")}
    assert indexed <= on_disk
    assert len(on_disk - indexed) <= 1  # at most the one written when the writer was killed
    store.close()
