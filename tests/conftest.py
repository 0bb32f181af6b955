"""Shared fixtures: a private TASKLOOM_HOME per test, and the executors under test."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from typing import Any
from pathlib import Path

import pytest

from taskloom.executors import DaskExecutor, Executor, LocalExecutor, LokyExecutor, ThreadExecutor
from taskloom.logging import get_logger

from ._helpers import Keep


# -- where a hung subprocess was ----------------------------------------------------------------

#: Each Python process the tests start writes its stacks here if it lives 90 s
#: (``tests/_stacks/sitecustomize.py``); one folder per process of the test session.
_STACKS = Path(tempfile.mkdtemp(prefix="taskloom-test-stacks-"))
os.environ["TASKLOOM_TEST_STACKS"] = str(_STACKS)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(Path(__file__).parent / "_stacks"), *filter(None, [os.environ.get("PYTHONPATH")])]
)


def pytest_sessionfinish() -> None:
    shutil.rmtree(_STACKS, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """A failed test's report gets the stacks its subprocesses wrote while it ran (those
    that lived long enough: see ``tests/_stacks``)."""
    report = yield
    if report.failed and call.when == "call":
        since = time.time() - call.duration - 1
        for path in sorted(_STACKS.glob("*.txt")):
            try:
                if path.stat().st_mtime >= since:
                    text = path.read_text(errors="replace")
                    if "most recent call first" in text:
                        report.sections.append((f"stacks of a subprocess ({path.stem})", text))
            except OSError:
                continue
    return report


@pytest.fixture(autouse=True)
def taskloom_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own TASKLOOM_HOME, so the default cache store starts empty."""
    home = tmp_path / "taskloom-home"
    monkeypatch.setenv("TASKLOOM_HOME", str(home))
    return home


@pytest.fixture
def kept() -> Iterator[Keep]:
    """A ``Keep`` handler on the ``taskloom`` logger, which logs INFO and up meanwhile."""
    handler = Keep()
    logger = get_logger()
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


EXECUTORS = ["local", "loky", "dask", "threads"]

#: Conformance tests known to fail on one executor, and why (strict: a fix makes them fail
#: as XPASS, so the entry must then go).
#: The shared Dask cluster of this xdist worker process, by address (``pool_executor``
#: renews its workers when a nanny did not bring a killed one back).
_CLUSTERS: dict[str, Any] = {}


@pytest.fixture(scope="session")
def dask_cluster() -> Iterator[str]:
    """The address of one Dask ``LocalCluster`` shared by every test in this xdist worker
    process: 2 single-threaded worker processes on loopback (HTTP server on a free port), and
    ``allowed-failures=0`` as a ``DaskExecutor`` uses for the clusters it starts.

    Skips the test when Dask distributed is not installed.
    """
    distributed = pytest.importorskip("distributed", reason="the dask extra is not installed")
    from taskloom.executors.dask import close_clients

    cluster = distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",  # None means port 8787: taken by the other xdist worker
        scheduler_kwargs={"allowed_failures": 0},
    )
    _CLUSTERS[cluster.scheduler_address] = cluster
    try:
        yield cluster.scheduler_address
    finally:
        close_clients()  # the executors' client of this cluster, before the cluster goes
        cluster.close()


@pytest.fixture(params=EXECUTORS)
def executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    """Each executor the engine must behave the same on (the conformance matrix).

    A ``ThreadExecutor`` has 2 threads, like the pools, so that tasks do run at once.

    The loky pool is shared by every test in an xdist worker process (LokyExecutor reuses
    its pool), and kept at 2 workers: more would oversubscribe the 2 cores CI has. The
    Dask executor connects to the ``dask_cluster`` of this xdist worker process.
    """
    if request.param == "local":
        yield LocalExecutor()
    elif request.param == "loky":
        yield LokyExecutor(max_workers=2)
    elif request.param == "dask":
        address = request.getfixturevalue("dask_cluster")
        yield DaskExecutor(address=address)
    elif request.param == "threads":
        yield ThreadExecutor(max_workers=2)
    else:  # pragma: no cover
        raise ValueError(request.param)


@pytest.fixture(params=["loky", "dask"])
def pool_executor(request: pytest.FixtureRequest) -> Iterator[Executor]:
    """The executors whose tasks run in worker processes, as the ``executor`` fixture makes
    them: a 2-worker ``LokyExecutor``, a ``DaskExecutor`` on ``dask_cluster``.

    A test may kill a worker: on Dask, the fixture then waits until the cluster's nanny
    has started it again, so the tests after it find the shared cluster whole."""
    if request.param == "loky":
        yield LokyExecutor(max_workers=2)
        return
    from distributed import Client

    address = request.getfixturevalue("dask_cluster")
    yield DaskExecutor(address=address)
    with Client(address, set_as_default=False) as client:
        try:
            client.wait_for_workers(2, timeout=30)
        except TimeoutError:
            # Seen on CI under load: a killed worker's nanny did not start it again, and
            # every Dask test after it failed. New workers make the shared cluster whole.
            cluster = _CLUSTERS[address]
            cluster.scale(0)
            cluster.scale(2)
            client.wait_for_workers(2, timeout=60)
