"""The stores' security and robustness.

Both stores hold pickles, and loading a pickle runs code: the home and its files are
private, an unsafe home is refused, a planted or tampered blob is never unpickled, and a
store that is corrupt, shared by concurrent processes, or left by a killed writer never
breaks a flow run.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import os
import pickle
import re
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from taskloom import Flow, task
from taskloom._home import UnsafeHomeError
from taskloom.caching import SQLiteCacheStore
from taskloom.executors import LocalExecutor
from taskloom.journal import Journal

from ._cli import killed_after, Planted, describe, execute, lines, query, run_id, table_rows, taskloom, write_flow
from ._helpers import kind

HOUR = dt.timedelta(hours=1)

CACHED = """\
@task(cache_for=dt.timedelta(hours=1))
def compute() -> int:
    record(LOG, "compute")
    return 42


with Flow("private") as flow:
    compute()
"""

NEEDS = """\
@task
def produce() -> int:
    return 3


@task(trigger=triggers.manual_only)
def approve(x: int) -> int:
    record(CALLS, f"approve {x}")
    return x


@task
def label() -> str:
    return "label"


@task
def combine(x: int, label: str) -> str:
    record(CALLS, f"combine {label} {x}")
    return f"{label} {x}"


with Flow("needs") as flow:
    combine(approve(produce()), label())
"""

SHARED = """\
@task(cache_for=dt.timedelta(hours=1), cache_validator=cache_validators.all_inputs)
def square(x: int, offset: int) -> int:
    return (x + offset) ** 2


with Flow("shared") as flow:
    offset = Parameter("offset", type=int)
    for i in range(30):
        square(i, offset)
"""


@task(cache_for=HOUR)
def compute() -> int:
    return 42


@task
def plain() -> str:
    return "plain"


def _cached_flow() -> tuple[Flow, int]:
    with Flow("planted") as flow:
        result = compute()
        plain()
    return flow, result


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- a private home -------------------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o000], ids=["umask-022", "umask-000"])
def test_home_and_store_files_are_private(tmp_path: Path, umask: int) -> None:
    home = tmp_path / "not" / "there" / "yet"
    flows = write_flow(tmp_path / "flows.py", CACHED, LOG=str(tmp_path / "log"))
    result = taskloom(home, "run", f"{flows}:flow", "--executor", "local", umask=umask)
    assert result.returncode == 0, describe(result)
    assert _mode(home) == 0o700
    files = {p.name: _mode(p) for p in home.iterdir()}
    for name in ("journal.sqlite", "cache.sqlite", "signing.key"):
        assert files.get(name) == 0o600, files
    assert all(mode == 0o600 for mode in files.values()), files  # -wal/-shm too, if left
    assert len((home / "signing.key").read_bytes()) >= 32


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o702], ids=["world", "group", "other-write"])
def test_a_home_others_may_write_to_is_refused(tmp_path: Path, taskloom_home: Path, mode: int) -> None:
    log = tmp_path / "log"
    flows = write_flow(tmp_path / "flows.py", CACHED, LOG=str(log))
    taskloom_home.mkdir(mode=0o700)
    taskloom_home.chmod(mode)
    result = taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local")
    assert result.returncode == 2, describe(result)
    assert result.stderr.startswith(f"taskloom: error: taskloom home {taskloom_home} can be written by other users")
    assert f"chmod 700 {taskloom_home}" in result.stderr and "Traceback" not in result.stderr
    assert not log.exists()
    assert not (taskloom_home / "journal.sqlite").exists()
    if mode == 0o777:  # every command opens the home the same way; check them once
        for args in (["runs"], ["show", "abc"], ["cache", "ls"]):
            refused = taskloom(taskloom_home, *args)
            assert refused.returncode == 2 and str(taskloom_home) in refused.stderr, describe(refused)
    flow, _ = _cached_flow()
    with pytest.raises(UnsafeHomeError, match=re.escape(str(taskloom_home))):
        flow.run(executor=LocalExecutor())


def test_a_home_is_checked_again_at_every_run(taskloom_home: Path) -> None:
    # The home's path is worked out once per environment; its safety is not: a home that
    # became unsafe since the last run refuses the next, and a file in its place is named.
    flow, _ = _cached_flow()
    assert flow.run(executor=LocalExecutor()).is_successful()
    taskloom_home.chmod(0o777)
    with pytest.raises(UnsafeHomeError, match=re.escape(str(taskloom_home))):
        flow.run(executor=LocalExecutor())
    taskloom_home.chmod(0o700)
    assert flow.run(executor=LocalExecutor()).is_successful()
    elsewhere = taskloom_home.parent / "a-file"
    elsewhere.write_text("not a directory")
    os.environ["TASKLOOM_HOME"] = str(elsewhere)  # (the fixture's monkeypatch restores it)
    with pytest.raises(FileExistsError, match=re.escape(str(elsewhere))):
        flow.run(executor=LocalExecutor())


@pytest.mark.skipif(not hasattr(os, "getuid") or os.getuid() != 0, reason="chown needs root")
def test_a_home_owned_by_another_user_is_refused(tmp_path: Path, taskloom_home: Path) -> None:
    log = tmp_path / "log"
    flows = write_flow(tmp_path / "flows.py", CACHED, LOG=str(log))
    taskloom_home.mkdir(mode=0o700)
    os.chown(taskloom_home, 12345, -1)
    try:
        result = taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local")
        assert result.returncode == 2, describe(result)
        assert f"taskloom home {taskloom_home} belongs to user id 12345" in result.stderr
        assert "Traceback" not in result.stderr
        assert not log.exists()
        listing = taskloom(taskloom_home, "runs")
        assert listing.returncode == 2 and "belongs to user id 12345" in listing.stderr
        flow, _ = _cached_flow()
        with pytest.raises(UnsafeHomeError, match="belongs to user id 12345"):
            flow.run(executor=LocalExecutor())
    finally:
        os.chown(taskloom_home, os.getuid(), -1)


# -- planted and tampered blobs are never unpickled ---------------------------------------------------


def _signed_with_another_key(payload: bytes) -> bytes:
    return hmac.new(b"not the home's key" * 2, payload, hashlib.sha256).digest() + payload


@pytest.mark.parametrize(
    "forge",
    [
        lambda payload: payload,
        lambda payload: b"\x00" * 32 + payload,
        _signed_with_another_key,
    ],
    ids=["unsigned", "zero-signature", "another-key"],
)
def test_a_planted_cache_pickle_is_not_executed(
    tmp_path: Path, taskloom_home: Path, caplog: pytest.LogCaptureFixture, forge: object
) -> None:
    marker = tmp_path / "pwned"
    store = SQLiteCacheStore()
    store.keys()  # creates the file and its table
    store.close()
    payload = pickle.dumps(Planted(str(marker)), protocol=pickle.HIGHEST_PROTOCOL)
    assert callable(forge)
    execute(
        taskloom_home / "cache.sqlite",
        "INSERT INTO cache_entries (cache_key, fingerprint, created, expires, payload) "
        "VALUES ('planted/compute', 'x', ?, NULL, ?)",
        time.time(),
        forge(payload),
    )
    flow, result = _cached_flow()
    with caplog.at_level(logging.WARNING, logger="taskloom.caching"):
        state = flow.run(executor=LocalExecutor())
    assert not marker.exists(), "the planted pickle was loaded"
    assert state.is_successful()
    assert kind(state.result[result]) == "Success"  # a miss: computed, not Cached
    warnings = [r.getMessage() for r in caplog.records if r.name == "taskloom.caching"]
    assert any("bad signature" in w and "planted/compute" in w for w in warnings), warnings


def _paused_needs_run(tmp_path: Path, home: Path) -> tuple[str, Path, Path]:
    calls = tmp_path / "calls"
    flows = write_flow(tmp_path / "needs.py", NEEDS, CALLS=str(calls))
    result = taskloom(home, "run", f"{flows}:flow", "--executor", "local")
    assert result.returncode == 3, describe(result)
    return run_id(result.stdout), calls, flows


@pytest.mark.parametrize(
    ("column", "task_name"),
    [("inputs", "approve"), ("result", "label")],
)
def test_a_tampered_resume_blob_is_reported_and_never_unpickled(
    tmp_path: Path, taskloom_home: Path, column: str, task_name: str
) -> None:
    rid, calls, _ = _paused_needs_run(tmp_path, taskloom_home)
    index = next(t.index for t in Journal().load(rid).tasks if t.name == task_name)
    marker = tmp_path / "pwned"
    evil = b"\x00" * 32 + pickle.dumps(Planted(str(marker)))
    journal = taskloom_home / "journal.sqlite"
    assert query(journal, f"SELECT {column} IS NOT NULL FROM resume_data WHERE run_id = ? AND task_index = ?", rid, index) == [(1,)]
    execute(journal, f"UPDATE resume_data SET {column} = ? WHERE run_id = ? AND task_index = ?", evil, rid, index)

    shown = taskloom(taskloom_home, "show", rid)
    assert shown.returncode == 0, describe(shown)
    row = next(line for line in shown.stdout.splitlines() if line.startswith(task_name + " "))
    assert f"tampered ({column})" in row, shown.stdout
    assert f"Warning: the stored data of {task_name} is tampered with" in shown.stdout

    resumed = taskloom(taskloom_home, "resume", rid, "--executor", "local")
    assert resumed.returncode == 2, describe(resumed)
    assert "tampered" in resumed.stderr and task_name in resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert not marker.exists(), "the tampered blob was unpickled"
    assert lines(calls) == []  # nothing ran
    assert len(Journal().runs()) == 1


@pytest.mark.parametrize("column", ["tasks", "parameters"])
def test_a_tampered_run_row_is_reported_and_never_unpickled(
    tmp_path: Path, taskloom_home: Path, column: str
) -> None:
    rid, calls, _ = _paused_needs_run(tmp_path, taskloom_home)
    marker = tmp_path / "pwned"
    evil = b"\x00" * 32 + pickle.dumps(Planted(str(marker)))
    execute(taskloom_home / "journal.sqlite", f"UPDATE runs SET {column} = ? WHERE run_id = ?", evil, rid)
    for args in (["show", rid], ["resume", rid, "--executor", "local"]):
        result = taskloom(taskloom_home, *args)
        assert result.returncode == 2, describe(result)
        assert result.stderr.startswith(f"taskloom: error: run {rid}: its ")
        assert "tampered with" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists(), "the tampered blob was unpickled"
    assert lines(calls) == []


# -- robustness -----------------------------------------------------------------------------------------

GARBAGE = {
    "random-bytes": os.urandom(8192),
    "bad-pages": b"SQLite format 3\x00" + os.urandom(8192 - 16),
}


def test_the_cli_heals_a_corrupt_journal_and_cache_once(tmp_path: Path, taskloom_home: Path) -> None:
    """Garbage in place of both stores: the first run moves each aside (kept), says so
    once naming both paths, and records into fresh ones; later runs say nothing."""
    taskloom_home.mkdir(mode=0o700)
    for store in ("journal.sqlite", "cache.sqlite"):
        (taskloom_home / store).write_bytes(GARBAGE["random-bytes"])
    flows = write_flow(tmp_path / "flows.py", CACHED, LOG=str(tmp_path / "log"))
    result = taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local")
    assert result.returncode == 0, describe(result)
    assert table_rows(result.stdout)["compute"][1] == "Success"
    for store, logger, kind_ in (("journal.sqlite", "journal", "journal"), ("cache.sqlite", "caching", "cache store")):
        [aside] = taskloom_home.glob(f"{store}.corrupt-*")
        assert aside.read_bytes() == GARBAGE["random-bytes"], "the damaged file is kept as it was"
        said = [line for line in result.stderr.splitlines() if f"WARNING taskloom.{logger}:" in line]
        assert said == [
            f"WARNING taskloom.{logger}: {kind_} {taskloom_home / store} is damaged (file is not a "
            f"database): moved it to {aside} and started a new one"
        ], result.stderr
    listing = taskloom(taskloom_home, "runs")
    assert listing.returncode == 0 and run_id(result.stdout) in listing.stdout, describe(listing)
    again = taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local")
    assert again.returncode == 0 and "WARNING" not in again.stderr, describe(again)
    assert table_rows(again.stdout)["compute"][1] == "Cached"


def test_two_processes_share_one_home_and_lose_nothing(tmp_path: Path, taskloom_home: Path) -> None:
    flows = write_flow(tmp_path / "shared.py", SHARED)
    env = {**os.environ, "TASKLOOM_HOME": str(taskloom_home)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "taskloom", "run", f"{flows}:flow", "-p", f"offset={offset}",
             "--executor", "local"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        for offset in (0, 1000)
    ]
    ids = []
    for process in processes:
        out, err = process.communicate(timeout=60)
        assert process.returncode == 0, f"exit {process.returncode}\n{out}\n{err}"
        assert "WARNING" not in err, err
        ids.append(run_id(out))
    journal = Journal()
    assert sorted(r.run_id for r in journal.runs()) == sorted(ids)
    for rid in ids:
        run = journal.load(rid)
        assert run.state == "Success" and len(run.tasks) == 31
    results = sorted(s.result for s in SQLiteCacheStore().get("shared/square"))
    assert results == sorted((i + offset) ** 2 for i in range(30) for offset in (0, 1000))
    listing = taskloom(taskloom_home, "cache", "ls").stdout
    assert re.search(r"^shared/square\s+60\s", listing, re.MULTILINE), listing


WRITER = """\
import datetime as dt
from taskloom.caching import SQLiteCacheStore
from taskloom.states import Cached

store = SQLiteCacheStore()
i = 0
while True:
    state = Cached("ok", {"i": i, "pad": "x" * 2000}, hashed_inputs={"i": str(i)})
    store.put(f"key-{i % 4}", state)
    print(i, flush=True)  # after the commit
    i += 1
"""


def test_a_sigkilled_writer_leaves_a_readable_store(taskloom_home: Path) -> None:
    last = killed_after(WRITER, taskloom_home, 300)
    database = taskloom_home / "cache.sqlite"
    assert query(database, "PRAGMA integrity_check") == [("ok",)]
    store = SQLiteCacheStore(database)
    seen: set[int] = set()
    for k in range(4):
        entries = store.get(f"key-{k}")
        assert entries, k
        for state in entries:
            assert state.result["pad"] == "x" * 2000
            seen.add(state.result["i"])
    assert last in seen  # every committed entry is there (the newest of each key are kept)
    assert {i for i in range(last - 200, last + 1)} <= seen
    # ...and it still takes writes.
    flow, _ = _cached_flow()
    assert flow.run(executor=LocalExecutor(), cache_store=store).is_successful()
    assert [s.result for s in store.get("planted/compute")] == [42]
    store.close()
