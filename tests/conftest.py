"""Shared fixtures: a private TASKLOOM_HOME per test, and the executors under test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from taskloom.executors import Executor, LocalExecutor, LokyExecutor


@pytest.fixture(autouse=True)
def taskloom_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own TASKLOOM_HOME, so the default cache store starts empty."""
    home = tmp_path / "taskloom-home"
    monkeypatch.setenv("TASKLOOM_HOME", str(home))
    return home


EXECUTORS = ["local", "loky"]


@pytest.fixture(params=EXECUTORS)
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    """Each executor the engine must behave the same on (the conformance matrix).

    The loky pool is shared by every test in an xdist worker process (LokyExecutor reuses
    its pool), and kept at 2 workers: more would oversubscribe the 2 cores CI has.
    """
    if request.param == "local":
        yield LocalExecutor()
    elif request.param == "loky":
        yield LokyExecutor(max_workers=2)
    else:  # pragma: no cover
        raise ValueError(request.param)
