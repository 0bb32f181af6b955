"""Parameters (API.md, "Parameters")."""

from __future__ import annotations

from pathlib import Path

import pytest

import taskloom
from taskloom import Flow, Parameter, task
from taskloom.executors import Executor
from taskloom.states import Success

from ._helpers import as_task, lines, record


@task
def scale(n: int, factor: int) -> int:
    return n * factor


@task
def side_effect(path: str) -> str:
    record(path, "ran")
    return "ran"


@task
def seen_parameters() -> dict[str, object]:
    return dict(taskloom.context.parameters)


def test_defaults_and_given_values(executor: Executor) -> None:
    with Flow("params") as flow:
        n = Parameter("n", default=3)
        factor = Parameter("factor", default=10)
        out = scale(n, factor)
        seen = seen_parameters()
    state = flow.run(executor=executor)
    assert state.result[out].result == 30
    assert state.result[n].result == 3
    assert state.result[seen].result == {"n": 3, "factor": 10}
    state = flow.run(parameters={"n": 5}, executor=executor)
    assert state.result[out].result == 50
    assert state.result[seen].result == {"n": 5, "factor": 10}
    assert type(state.result[n]) is Success
    state = flow.run({"n": 1, "factor": 2}, executor=executor)
    assert state.result[out].result == 2


def test_required_parameter(executor: Executor) -> None:
    with Flow("required") as flow:
        n = Parameter("n", type=int)
        out = scale(n, 2)
    state = flow.run(parameters={"n": 4}, executor=executor)
    assert state.result[out].result == 8


def test_a_parameter_joins_its_flow_even_when_unused(executor: Executor) -> None:
    with Flow("unused") as flow:
        p = Parameter("unused_param", default="v")
    assert flow.tasks == {as_task(p)}
    state = flow.run(executor=executor)
    assert state.result[p].result == "v"


def test_a_missing_required_parameter_is_named_before_any_task_runs(
    tmp_path: Path, executor: Executor
) -> None:
    log = str(tmp_path / "ran")
    with Flow("missing") as flow:
        side_effect(log)
        needed = Parameter("needed_value", type=int)
        Parameter("optional", default=1)
        scale(needed, 2)
    with pytest.raises(ValueError, match="needed_value"):
        flow.run(executor=executor)
    with pytest.raises(ValueError, match="needed_value"):
        flow.run(parameters={"optional": 2}, executor=executor)
    assert lines(log) == []


def test_an_unknown_parameter_is_named_before_any_task_runs(
    tmp_path: Path, executor: Executor
) -> None:
    log = str(tmp_path / "ran")
    with Flow("unknown") as flow:
        side_effect(log)
        n = Parameter("n", default=1)
        scale(n, 2)
    with pytest.raises(ValueError, match="not_a_param"):
        flow.run(parameters={"n": 1, "not_a_param": 2}, executor=executor)
    assert lines(log) == []


def test_a_flow_without_parameters_refuses_any(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "ran")
    with Flow("none") as flow:
        side_effect(log)
    with pytest.raises(ValueError, match="stray"):
        flow.run(parameters={"stray": 1}, executor=executor)
    assert lines(log) == []


def test_required_with_a_default_must_still_be_given(executor: Executor) -> None:
    with Flow("required-default") as flow:
        n = Parameter("must_give", default=1, required=True)
        out = scale(n, 3)
    with pytest.raises(ValueError, match="must_give"):
        flow.run(executor=executor)
    assert flow.run(parameters={"must_give": 2}, executor=executor).result[out].result == 6
