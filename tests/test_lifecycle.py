"""The order of a run's lifecycle (see ``taskloom.runner``), with an executor that logs.

The rule that matters most: results an executor hands back as ``DeferredResult`` live
only until the executor's run ends, so the scheduler materialises them before
``session.end()``, on a normal end and after an interrupt alike.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from taskloom import Flow, task
from taskloom.attempt import TaskResult, TaskRun, run_attempt
from taskloom.executors.base import DeferredResult, Timings, resolve_deferred
from taskloom.journal import Journal


class _Deferred(DeferredResult):
    """A result that may only be read while its run is open."""

    __slots__ = ("session", "value")

    def __init__(self, value: Any, session: _Session) -> None:
        self.value = value
        self.session = session

    def resolve(self) -> Any:
        assert not self.session.ended, "a deferred result was read after session.end()"
        self.session.log.append("resolve")
        return self.value


class _Session:
    runs_chains = False

    def __init__(self, log: list[str], context: Mapping[str, Any], interrupt_after: int | None) -> None:
        self.log = log
        self.context = context
        self.queue: deque[TaskRun] = deque()
        self.ended = False
        self.interrupt_after = interrupt_after

    def timings(self) -> Timings | None:
        return None

    def submit(self, runs: Sequence[TaskRun]) -> None:
        self.log.append("submit")
        self.queue.extend(runs)

    def collect(self, timeout: float | None) -> list[TaskResult]:
        if self.interrupt_after is not None:
            if self.interrupt_after == 0:
                raise KeyboardInterrupt
            self.interrupt_after -= 1
        run = self.queue.popleft()
        run.inputs = resolve_deferred(run.inputs)  # what a worker does
        state = run_attempt(run, self.context)
        now = time.time()
        return [TaskResult(run.key, state.replace(result=_Deferred(state.result, self)), now, now, "fake")]

    def end(self) -> None:
        self.log.append("end")
        self.ended = True


class _LoggingExecutor:
    def __init__(self, interrupt_after: int | None = None, refuse: bool = False) -> None:
        self.log: list[str] = []
        self.interrupt_after = interrupt_after
        self.refuse = refuse

    def begin(self, run_context: Mapping[str, Any]) -> _Session:
        self.log.append("begin")
        if self.refuse:
            raise ValueError("this context cannot reach the workers")
        return _Session(self.log, run_context, self.interrupt_after)


@task
def one() -> int:
    return 1


@task
def add_one(x: int) -> int:
    return x + 1


def _flow() -> tuple[Flow, Any]:
    with Flow("lifecycle") as flow:
        last = add_one(add_one(one()))
    return flow, last


def test_deferred_results_are_materialised_before_the_run_ends(taskloom_home: Path) -> None:
    flow, last = _flow()
    executor = _LoggingExecutor()
    state = flow.run(executor=executor)
    assert state.is_successful()
    assert [s.result for s in state.result.values()] == [1, 2, 3]  # values, not handles
    log = executor.log
    assert log[0] == "begin" and log[-1] == "end" and log.count("end") == 1
    assert "resolve" in log and log.index("end") > max(i for i, e in enumerate(log) if e == "resolve")
    assert Journal().load(str(state.run_id)).state == "Success"


def test_an_interrupted_run_keeps_values_before_it_ends(taskloom_home: Path) -> None:
    flow, _ = _flow()
    executor = _LoggingExecutor(interrupt_after=1)
    with pytest.raises(KeyboardInterrupt):
        flow.run(executor=executor)
    assert executor.log[-1] == "end" and executor.log.count("end") == 1
    [run] = Journal().runs()
    assert run.state == "Failed" and "interrupted" in (run.message or "")
    tasks = Journal().load(run.run_id).tasks
    assert [(t.name, t.state) for t in tasks] == [
        ("one", "Success"), ("add_one[0]", "Failed"), ("add_one[1]", "Pending"),
    ]  # fmt: skip
    assert tasks[1].inputs == {"x": 1}  # the value, read before the run ended


def test_an_executor_that_refuses_the_run_leaves_no_record(taskloom_home: Path) -> None:
    flow, _ = _flow()
    executor = _LoggingExecutor(refuse=True)
    with pytest.raises(ValueError, match="cannot reach"):
        flow.run(executor=executor)
    assert executor.log == ["begin"]
    assert Journal().runs() == []
