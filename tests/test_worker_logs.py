"""Log records from task code in worker processes reach the parent's logging, in order,
with the task's name (loky and Dask: the executors whose tasks run in other processes)."""

from __future__ import annotations

import logging
import os

import pytest

from taskloom import Flow, task
from taskloom.executors import DaskExecutor, Executor, LokyExecutor


@task
def logs_twice() -> int:
    logger = logging.getLogger("user")
    logger.warning("hello %s", 1)
    logger.warning("hello %s", 2)
    return os.getpid()


@pytest.fixture(params=["loky", "dask"])
def process_executor(request: pytest.FixtureRequest) -> Executor:
    if request.param == "loky":
        return LokyExecutor(max_workers=2)
    return DaskExecutor(address=request.getfixturevalue("dask_cluster"))


def test_worker_logs_reach_parent_handlers(
    process_executor: Executor, caplog: pytest.LogCaptureFixture
) -> None:
    with Flow("logs") as flow:
        t = logs_twice()
    with caplog.at_level(logging.WARNING, logger="user"):
        state = flow.run(executor=process_executor, journal=False)
    assert state.is_successful(), state.result
    worker_pid = state.result[t].result
    records = [r for r in caplog.records if r.name == "user"]
    assert [r.getMessage() for r in records] == ["hello 1", "hello 2"]
    for r in records:
        assert getattr(r, "task_name", None) == "logs_twice"
        assert r.levelno == logging.WARNING
        assert r.process == worker_pid != os.getpid()  # emitted in the worker
