"""Helpers for the command-line, journal and store tests: run ``python -m taskloom`` in a
real subprocess against a test's ``TASKLOOM_HOME``, write flow files, read the stores."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: A run id as the CLI prints it.
RUN_ID = re.compile(r"Run id: ([0-9a-f-]{36})")

#: What every flow file starts with.
PRELUDE = """\
from __future__ import annotations

import datetime as dt
import os
import time

from taskloom import Flow, Parameter, cache_validators, signals, task, triggers


def record(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\\n")


"""


def taskloom(
    home: Path,
    *args: str,
    cwd: Path | None = None,
    timeout: float = 60,
    umask: int = -1,
    env_extra: dict[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """``python -m taskloom ARGS`` with ``TASKLOOM_HOME=home`` (and ``env_extra``); output
    captured as text; ``preexec_fn`` runs in the child before it starts (e.g.
    ``unprivileged``)."""
    env = {**os.environ, "TASKLOOM_HOME": str(home), **(env_extra or {})}
    return subprocess.run(
        [sys.executable, "-m", "taskloom", *args],
        env=env,
        cwd=cwd,
        umask=umask,
        preexec_fn=preexec_fn,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@contextmanager
def spawned(args: list[str], home: Path) -> Iterator[subprocess.Popen[str]]:
    """``python ARGS`` with ``TASKLOOM_HOME=home``, its stdout and stderr piped as text;
    killed on the way out if it still runs."""
    child = subprocess.Popen(
        [sys.executable, *args],
        env={**os.environ, "TASKLOOM_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield child
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def read_until(child: subprocess.Popen[str], done: Any) -> list[str]:
    """The lines ``child`` prints, read until ``done(lines)`` is true (the test's event:
    a line printed); fails if its output ends first."""
    assert child.stdout is not None
    seen: list[str] = []
    while not done(seen):
        line = child.stdout.readline()
        assert line, f"the process ended its output early: {seen}"
        seen.append(line)
    return seen


def interrupt(child: subprocess.Popen[str]) -> tuple[str, str]:
    """Ctrl-C (SIGINT) to ``child``; the rest of its stdout and stderr once it ended."""
    child.send_signal(signal.SIGINT)
    return child.communicate(timeout=20)


def write_flow(path: Path, body: str, **values: Any) -> Path:
    """Write a flow file: the prelude, ``NAME = repr(value)`` for each value, then ``body``."""
    constants = "".join(f"{name} = {value!r}\n" for name, value in values.items())
    path.write_text(PRELUDE + constants + "\n" + textwrap.dedent(body), encoding="utf-8")
    return path


def run_id(output: str) -> str:
    """The run id a ``taskloom run``/``resume`` printed."""
    found = RUN_ID.search(output)
    assert found is not None, output
    return found.group(1)


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """A process's exit status and output, for assertion messages."""
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}--- stderr\n{result.stderr}"


def table_rows(output: str) -> dict[str, list[str]]:
    """The rows of the task table a ``run``/``resume`` printed, by task name (split on 2+ spaces)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("TASK "))
    rows: dict[str, list[str]] = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        cells = re.split(r"\s{2,}", line.strip())
        rows[cells[0]] = cells
    return rows


def query(database: Path, sql: str, *args: Any) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` on an SQLite file (a connection of its own, closed after)."""
    connection = sqlite3.connect(database)
    try:
        return connection.execute(sql, args).fetchall()
    finally:
        connection.close()


def execute(database: Path, sql: str, *args: Any) -> None:
    """Run one statement on an SQLite file and commit."""
    connection = sqlite3.connect(database)
    try:
        with connection:
            connection.execute(sql, args)
    finally:
        connection.close()


def lines(path: Path) -> list[str]:
    """The lines of a side-effect file ([] when nothing was written)."""
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


class Planted:
    """A pickle that creates ``marker`` when it is loaded: what an attacker would plant."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (open, (self.marker, "w"))


#: The capabilities that let root ignore file permissions: DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER.
_PERMISSION_CAPABILITIES = (1, 2, 3)


def unprivileged() -> None:
    """For ``preexec_fn``: a child of root that respects file permissions as any user does
    (it drops the capabilities that override them; a non-root child needs nothing).

    Raises:
        OSError: the capabilities cannot be dropped (the caller skips the test).
    """
    if os.geteuid() != 0:
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    for capability in _PERMISSION_CAPABILITIES:
        if libc.prctl(24, capability, 0, 0, 0) != 0:  # 24: PR_CAPBSET_DROP, effective at exec
            raise OSError(ctypes.get_errno(), "cannot drop a capability")


def killed_after(script: str, home: Path, count: int) -> int:
    """Run ``python -c script`` (it prints a number after each commit) with
    ``TASKLOOM_HOME=home`` and SIGKILL it once it has printed ``count``; the last number
    it printed."""
    writer = subprocess.Popen(
        [sys.executable, "-c", script],
        env={**os.environ, "TASKLOOM_HOME": str(home)},
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert writer.stdout is not None
    last = -1
    try:
        while last < count:
            line = writer.stdout.readline()
            assert line, f"the writer stopped early (exit {writer.poll()})"
            last = int(line)
    finally:
        writer.send_signal(signal.SIGKILL)
        writer.wait(timeout=30)
        writer.stdout.close()
    assert writer.returncode == -signal.SIGKILL
    return last
