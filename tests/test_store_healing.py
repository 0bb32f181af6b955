"""Stores that heal and never hang silently (issue 18): a damaged store is moved aside and
started afresh, a read-only home still serves hits, a store locked by another process is
reported (with the holder) and then given up on, a full disk loses the write and nothing
else, and a journal row holding a refused class is reported, not a traceback."""

from __future__ import annotations

import datetime as dt
import logging
import os
import pickle
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from taskloom import Flow, Parameter, cache_validators, task
from taskloom._home import Signer
from taskloom.caching import SQLiteCacheStore
from taskloom.executors import LocalExecutor
from taskloom.journal import Journal
from taskloom.states import Cached
from taskloom.trace import COLUMNS

from ._cli import Planted, describe, execute, query, run_id, table_rows, taskloom, unprivileged, write_flow
from ._helpers import kind

HOUR = dt.timedelta(hours=1)


@task(cache_for=HOUR)
def answer() -> int:
    return 42


def _answer_flow() -> tuple[Flow, object]:
    with Flow("healing") as flow:
        result = answer()
    return flow, result


# -- damaged stores -----------------------------------------------------------------------------------


def _truncated(path: Path) -> None:
    """A real store with some rows, cut in half (as a full disk or a bad copy leaves it)."""
    if path.name == "cache.sqlite":
        store = SQLiteCacheStore(path)
        for i in range(100):
            store.put(f"k/{i}", _cached(i))
        store.close()
    else:
        journal = Journal(path)
        for i in range(100):
            assert journal.begin(f"run-{i}", "f", None, {"pad": "x" * 2000}, float(i))
        journal.close()
    assert not Path(f"{path}-wal").exists()  # checkpointed on close: all in the file
    os.truncate(path, path.stat().st_size // 2)


def _cached(i: int) -> Cached[str]:
    return Cached("ok", "x" * 2000, hashed_inputs={"i": str(i)})


DAMAGE: dict[str, Callable[[Path], object]] = {
    "garbage": lambda path: path.write_bytes(os.urandom(8192)),
    "bad-pages": lambda path: path.write_bytes(b"SQLite format 3\x00" + os.urandom(8192 - 16)),
    "truncated": _truncated,
}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("store", ["cache.sqlite", "journal.sqlite"])
def test_a_damaged_store_is_moved_aside_and_started_afresh(
    taskloom_home: Path, caplog: pytest.LogCaptureFixture, store: str, damage: str
) -> None:
    taskloom_home.mkdir(mode=0o700)
    path = taskloom_home / store
    DAMAGE[damage](path)
    damaged = path.read_bytes()
    flow, result = _answer_flow()
    with caplog.at_level(logging.WARNING, logger="taskloom"):
        first = flow.run(executor=LocalExecutor())
    assert kind(first) == "Success" and first.result[result].result == 42
    [aside] = taskloom_home.glob(f"{store}.corrupt-*")
    assert aside.read_bytes() == damaged, "the damaged file is kept, as it was"
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1, warnings
    assert str(path) in warnings[0] and str(aside) in warnings[0] and "is damaged" in warnings[0]

    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="taskloom"):
        second = flow.run(executor=LocalExecutor())
    assert caplog.records == [], "healed once: nothing more to say"
    assert kind(second.result[result]) == "Cached"  # the fresh cache took the first result
    assert {r.run_id for r in Journal().runs()} == {first.run_id, second.run_id}


# -- a read-only home -----------------------------------------------------------------------------------

THREE_CACHED = """\
@task(cache_for=dt.timedelta(hours=1))
def kept() -> int:
    record(LOG, "kept")
    return 7


@task(cache_for=dt.timedelta(hours=1), cache_validator=cache_validators.all_inputs)
def square(x: int) -> int:
    record(LOG, f"square {x}")
    return x * x


@task(cache_for=dt.timedelta(hours=1), cache_validator=cache_validators.all_inputs)
def cube(x: int) -> int:
    record(LOG, f"cube {x}")
    return x ** 3


with Flow("read-only") as flow:
    n = Parameter("n", default=2, type=int)
    kept()
    square(n)
    cube(n)
"""


@contextmanager
def _read_only(home: Path) -> Iterator[None]:
    """``home`` and everything in it read-only for the duration (restored after)."""
    paths = [home, *home.rglob("*")]
    modes = {p: p.stat().st_mode & 0o777 for p in paths}
    for p in paths:
        p.chmod(0o500 if p.is_dir() else 0o400)
    try:
        yield
    finally:
        for p in sorted(paths, key=lambda p: len(p.parts)):
            p.chmod(modes[p])


def test_a_read_only_home_still_serves_cache_hits(tmp_path: Path, taskloom_home: Path) -> None:
    try:
        subprocess.run([sys.executable, "-c", "pass"], preexec_fn=unprivileged, check=True)
    except subprocess.SubprocessError as error:  # pragma: no cover - a root without CAP_SETPCAP
        pytest.skip(f"cannot make a root process respect file permissions here: {error}")
    log = tmp_path / "log"
    flows = write_flow(tmp_path / "flows.py", THREE_CACHED, LOG=str(log))
    first = taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local")
    assert first.returncode == 0, describe(first)
    assert sorted(log.read_text().splitlines()) == ["cube 2", "kept", "square 2"]
    log.unlink()
    args = ("run", f"{flows}:flow", "-p", "n=2", "--executor", "local")
    with _read_only(taskloom_home):
        hit = taskloom(taskloom_home, *args, preexec_fn=unprivileged)
        # n=3: `kept` hits; square(3) and cube(3) are computed and cannot be stored.
        miss = taskloom(taskloom_home, *args[:-3], "n=3", *args[-2:], preexec_fn=unprivileged)
        again = taskloom(taskloom_home, *args[:-3], "n=3", *args[-2:], preexec_fn=unprivileged)
        listing = taskloom(taskloom_home, "cache", "ls", preexec_fn=unprivileged)
    assert hit.returncode == 0, describe(hit)
    assert [table_rows(hit.stdout)[t][1] for t in ("kept", "square", "cube")] == ["Cached"] * 3
    assert miss.returncode == 0, describe(miss)
    assert [table_rows(miss.stdout)[t][1] for t in ("kept", "square", "cube")] == ["Cached", "Success", "Success"]
    warnings = [line for line in miss.stderr.splitlines() if line.startswith("WARNING")]
    cache = [w for w in warnings if "taskloom.caching" in w]
    assert len(cache) == 1, miss.stderr  # two writes skipped, said once
    assert f"cache store {taskloom_home / 'cache.sqlite'} is read-only" in cache[0]
    assert "results are not cached" in cache[0]
    journal = [w for w in warnings if "taskloom.journal" in w]
    assert len(journal) == 1 and "this run is not recorded" in journal[0], miss.stderr
    assert len(warnings) == 2 and "Traceback" not in miss.stderr
    # Nothing was written: the next run computes square(3) and cube(3) again.
    assert again.returncode == 0, describe(again)
    assert sorted(log.read_text().splitlines()) == ["cube 3", "cube 3", "square 3", "square 3"]
    assert listing.returncode == 0 and "read-only/kept" in listing.stdout, describe(listing)


def test_an_empty_read_only_home_runs_flows_without_stores(tmp_path: Path, taskloom_home: Path) -> None:
    """No key, no stores, and none can be made: the run goes on, each store says once
    that it cannot be written."""
    try:
        subprocess.run([sys.executable, "-c", "pass"], preexec_fn=unprivileged, check=True)
    except subprocess.SubprocessError as error:  # pragma: no cover - a root without CAP_SETPCAP
        pytest.skip(f"cannot make a root process respect file permissions here: {error}")
    flows = write_flow(tmp_path / "flows.py", THREE_CACHED, LOG=str(tmp_path / "log"))
    taskloom_home.mkdir(mode=0o500)
    try:
        result = taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local", preexec_fn=unprivileged)
    finally:
        taskloom_home.chmod(0o700)
    assert result.returncode == 0, describe(result)
    warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
    assert len(warnings) == 2 and "Traceback" not in result.stderr, result.stderr
    assert "results are not cached" in warnings[0] or "results are not cached" in warnings[1]
    assert list(taskloom_home.iterdir()) == []


# -- a store locked by another process --------------------------------------------------------------------

HOLDER = """\
import sqlite3, sys
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
connection.execute("COMMIT")
"""


@contextmanager
def _held(database: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``database``'s write lock until it is sent a line."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(database)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout is not None and holder.stdin is not None
    try:
        assert holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        if holder.poll() is None:
            holder.stdin.write("release\n")
            holder.stdin.flush()
        holder.wait(timeout=30)
        holder.stdin.close()
        holder.stdout.close()


class _OnWarning(logging.Handler):
    """Calls ``then`` (once) when a record containing ``text`` is logged."""

    def __init__(self, text: str, then: Callable[[], None]) -> None:
        super().__init__(logging.WARNING)
        self.text, self.then = text, then
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage() and not self.seen.is_set():
            self.seen.set()
            self.then()


def test_a_journal_held_locked_is_reported_naming_the_holder(
    taskloom_home: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal()
    journal.runs()  # the file exists, so another process can lock it
    flow, _ = _answer_flow()
    with _held(taskloom_home / "journal.sqlite") as holder:
        assert holder.stdin is not None
        stdin = holder.stdin

        def release() -> None:
            stdin.write("release\n")
            stdin.flush()

        handler = _OnWarning("is locked by another process", release)
        logging.getLogger("taskloom.journal").addHandler(handler)
        try:
            with caplog.at_level(logging.WARNING, logger="taskloom"):
                state = flow.run(executor=LocalExecutor(), journal=journal)
        finally:
            logging.getLogger("taskloom.journal").removeHandler(handler)
    assert handler.seen.is_set(), "the stall was silent"
    [said] = [r.getMessage() for r in caplog.records if "locked" in r.getMessage()]
    assert said.startswith(f"journal {taskloom_home / 'journal.sqlite'} is locked by another process (pid {holder.pid} (")
    assert "waiting up to 30 s" in said
    assert kind(state) == "Success"
    assert [r.run_id for r in journal.runs()] == [state.run_id], "recorded once the lock was released"


@pytest.mark.parametrize("store", ["cache.sqlite", "journal.sqlite"])
def test_a_lock_held_too_long_loses_the_write_not_the_run(
    taskloom_home: Path, caplog: pytest.LogCaptureFixture, store: str
) -> None:
    cache = SQLiteCacheStore(lock_timeout=1.5 if store == "cache.sqlite" else 30)
    journal = Journal(lock_timeout=1.5 if store == "journal.sqlite" else 30)
    cache.keys(), journal.runs()  # both files exist
    flow, result = _answer_flow()
    with _held(taskloom_home / store), caplog.at_level(logging.WARNING, logger="taskloom"):
        state = flow.run(executor=LocalExecutor(), cache_store=cache, journal=journal)
    assert kind(state) == "Success" and state.result[result].result == 42
    messages = [r.getMessage() for r in caplog.records]
    assert any("is locked by another process" in m and str(taskloom_home / store) in m for m in messages), messages
    if store == "cache.sqlite":
        assert any("result for 'healing/answer' not cached" in m and "locked" in m for m in messages), messages
        assert cache.get("healing/answer") == []
        assert [r.run_id for r in journal.runs()] == [state.run_id]
    else:
        assert any("this run is not recorded" in m for m in messages), messages
        assert journal.runs() == []
        assert [s.result for s in cache.get("healing/answer")] == [42]


# -- a full disk ---------------------------------------------------------------------------------------------

FULL = """\
@task(cache_for=dt.timedelta(hours=1))
def large() -> bytes:
    return b"L" * (3 * 2**20)


@task(cache_for=dt.timedelta(hours=1))
def medium() -> bytes:
    return b"m" * 400_000


with Flow("full") as flow:
    Parameter("padding", default="")
    large()
    medium()
"""

ON_A_FULL_DISK = """\
import resource, signal, sys
from taskloom.caching import default_cache_store
from taskloom.executors import LocalExecutor
from taskloom.journal import default_journal
from taskloom.loader import load_flow

flow = load_flow(sys.argv[1])
default_journal().runs(), default_cache_store().keys()  # the stores exist, small
# A full disk fails writes (ENOSPC); past RLIMIT_FSIZE a write fails too (EFBIG) once the
# signal the kernel sends first is ignored. 256 KiB: the stores' files may not grow past it.
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))
state = flow.run(parameters={"padding": "p" * int(sys.argv[2])}, executor=LocalExecutor())
print(type(state).__name__, {t.name: type(s).__name__ for t, s in state.result.items()})
"""


@pytest.mark.parametrize("journal_fits", [True, False], ids=["journal-fits", "journal-full"])
def test_a_full_disk_loses_the_writes_and_nothing_else(
    tmp_path: Path, taskloom_home: Path, journal_fits: bool
) -> None:
    """A process whose files cannot grow past 256 KiB (RLIMIT_FSIZE: what a full disk does
    to writes, without root or a mount): a 3 MiB result (a value file), a 400 KB result
    (into the index) and, without ``journal_fits``, a 400 KB parameter (the journal) cannot
    be written. The run succeeds, says what was lost, and leaves both stores whole."""
    flows = write_flow(tmp_path / "full.py", FULL)
    padding = "0" if journal_fits else "400000"
    done = subprocess.run(
        [sys.executable, "-c", ON_A_FULL_DISK, f"{flows}:flow", padding],
        env={**os.environ, "TASKLOOM_HOME": str(taskloom_home)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stdout}\n{done.stderr}"
    assert done.stdout.startswith("Success {'padding': 'Success', 'large': 'Success', 'medium': 'Success'}")
    warnings = done.stderr.splitlines()  # logging's last resort: the messages alone
    assert any("result for 'full/large' not cached" in w for w in warnings), done.stderr
    assert any("result for 'full/medium' not cached" in w for w in warnings), done.stderr
    assert any("this run is not recorded" in w for w in warnings) is not journal_fits, done.stderr
    assert "Traceback" not in done.stderr
    for database in ("cache.sqlite", "journal.sqlite"):
        assert query(taskloom_home / database, "PRAGMA integrity_check") == [("ok",)]
    assert not list(taskloom_home.glob("*.corrupt-*")), "a full disk is not a damaged store"
    files = taskloom_home / "cache.files"
    assert not files.exists() or list(files.iterdir()) == [], "no partial value file is left"
    assert query(taskloom_home / "cache.sqlite", "SELECT count(*) FROM cache_entries") == [(0,)]
    runs = Journal().runs()
    assert [r.state for r in runs] == (["Success"] if journal_fits else [])
    # With room again, the same stores take the writes.
    again = taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local")
    assert again.returncode == 0 and "WARNING" not in again.stderr, describe(again)
    assert len(list(files.iterdir())) == 1
    assert {e.key: e.files for e in SQLiteCacheStore().entries()} == {"full/large": 1, "full/medium": 0}


# -- refused content in the journal --------------------------------------------------------------------------


def test_show_reports_a_signed_row_holding_a_refused_class(tmp_path: Path, taskloom_home: Path) -> None:
    """The task outcomes are plain values, loaded by an unpickler that refuses every class:
    a row that is signed (written with the home's key) but holds one is reported as
    refused content, with exit status 2, never a traceback, and never loaded."""
    flows = write_flow(tmp_path / "flows.py", "with Flow('plain') as flow:\n    Parameter('x', default=1)\n")
    ran = taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local")
    assert ran.returncode == 0, describe(ran)
    rid = run_id(ran.stdout)
    marker = tmp_path / "pwned"
    signed = Signer.for_home(taskloom_home).sign(
        pickle.dumps({"columns": COLUMNS, "rows": [Planted(str(marker))]}, protocol=5)
    )
    execute(taskloom_home / "journal.sqlite", "UPDATE runs SET tasks = ? WHERE run_id = ?", signed, rid)
    for args in (["show", rid], ["resume", rid, "--executor", "local"], ["report", rid, "-o", str(tmp_path / "r.html")]):
        result = taskloom(taskloom_home, *args)
        assert result.returncode == 2, describe(result)
        assert result.stderr.startswith(f"taskloom: error: run {rid}: its stored task outcomes hold refused content ("), describe(result)
        assert "the journal refuses to load io.open" in result.stderr
        assert "Traceback" not in result.stderr
    assert not marker.exists(), "the refused class was loaded"
