"""Tasks and helpers for the fault tests: rendezvous through files instead of sleeps, and
waiting for a process to end (psutil).

Module-level tasks: worker processes (loky, Dask) import them by reference.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import psutil  # type: ignore[import-untyped, unused-ignore]

from taskloom import task


def wait_for_a_file(folder: str, timeout: float = 10.0) -> None:
    """Wait (at most ``timeout`` s) until a file is in ``folder``: a ``started_sleeper``
    has started."""
    deadline = time.monotonic() + timeout
    while not os.listdir(folder) and time.monotonic() < deadline:
        time.sleep(0.005)


@task
def started_sleeper(folder: str, seconds: float) -> int:
    """Say it started (a new file in ``folder``), then sleep; returns its PID."""
    Path(folder, f"{os.getpid()}-{time.monotonic_ns()}").touch()
    time.sleep(seconds)
    return os.getpid()


def wait_gone(pid: int, timeout: float = 60) -> None:
    """Wait until process ``pid`` has ended (psutil raises TimeoutExpired if it does not)."""
    try:
        psutil.Process(pid).wait(timeout=timeout)
    except psutil.NoSuchProcess:
        pass
