"""Triggers: which upstream states let a task run (API.md, "Triggers" and "Skip and failure")."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from taskloom import Edge, Flow, signals, task, triggers
from taskloom.executors import Executor
from taskloom.states import (
    Failed,
    Paused,
    Skipped,
    State,
    Success,
    TriggerFailed,
)
from taskloom.triggers import Trigger

from ._helpers import kind


@task
def ok() -> int:
    return 1


@task
def bad() -> int:
    raise ValueError("boom")


@task
def skip() -> int:
    raise signals.SKIP("skipped on purpose")


@task
def follow(x: int) -> int:
    return x


def gather_fn(**upstream: object) -> str:
    return "ran"


UPSTREAM = {"ok": ok, "bad": bad, "skip": skip}


def run_trigger(
    trigger: Trigger,
    upstream_kinds: list[str],
    executor: Executor,
    *,
    skip_on_upstream_skip: bool = True,
) -> tuple[State[Any], State[Any]]:
    """Run ``gather(u0=..., u1=...)`` with this trigger; return (its state, the flow's state).

    A kind "tfail" is an upstream task that ends TriggerFailed (downstream of a failure).
    """
    gather = task(name="gather", trigger=trigger, skip_on_upstream_skip=skip_on_upstream_skip)(
        gather_fn
    )
    with Flow("triggers") as flow:
        ups: dict[str, object] = {}
        for i, k in enumerate(upstream_kinds):
            ups[f"u{i}"] = follow(bad()) if k == "tfail" else UPSTREAM[k]()
        target = gather(**ups)
    state = flow.run(executor=executor)
    return state.result[target], state


CASES: list[tuple[str, Trigger, list[str], type[State[Any]]]] = [
    ("all_successful ok ok", triggers.all_successful, ["ok", "ok"], Success),
    ("all_successful ok bad", triggers.all_successful, ["ok", "bad"], TriggerFailed),
    ("all_successful none", triggers.all_successful, [], Success),
    ("all_failed bad bad", triggers.all_failed, ["bad", "bad"], Success),
    ("all_failed bad triggerfailed", triggers.all_failed, ["bad", "tfail"], Success),
    ("all_failed ok bad", triggers.all_failed, ["ok", "bad"], TriggerFailed),
    ("any_successful ok bad", triggers.any_successful, ["ok", "bad"], Success),
    ("any_successful bad bad", triggers.any_successful, ["bad", "bad"], TriggerFailed),
    ("any_successful none", triggers.any_successful, [], Success),
    ("any_failed ok bad", triggers.any_failed, ["ok", "bad"], Success),
    ("any_failed ok triggerfailed", triggers.any_failed, ["ok", "tfail"], Success),
    ("any_failed ok ok", triggers.any_failed, ["ok", "ok"], TriggerFailed),
    ("any_failed none", triggers.any_failed, [], Success),
    ("all_finished ok bad", triggers.all_finished, ["ok", "bad"], Success),
    ("all_finished bad bad", triggers.all_finished, ["bad", "bad"], Success),
    ("always_run ok bad", triggers.always_run, ["ok", "bad"], Success),
    ("always_run bad triggerfailed", triggers.always_run, ["bad", "tfail"], Success),
    ("manual_only ok", triggers.manual_only, ["ok"], Paused),
    ("manual_only none", triggers.manual_only, [], Paused),
    ("manual_only bad", triggers.manual_only, ["bad"], Paused),
    # fractions are of the number of upstream states, bounds inclusive
    ("some_successful >=0.5 2/4", triggers.some_successful(at_least=0.5), ["ok", "ok", "bad", "bad"], Success),
    ("some_successful >=0.5 1/4", triggers.some_successful(at_least=0.5), ["ok", "bad", "bad", "bad"], TriggerFailed),
    ("some_successful <=1 1/2", triggers.some_successful(at_most=1), ["ok", "bad"], Success),
    ("some_successful <=1 2/2", triggers.some_successful(at_most=1), ["ok", "ok"], TriggerFailed),
    ("some_successful >=2 2/3", triggers.some_successful(at_least=2), ["ok", "ok", "bad"], Success),
    ("some_successful >=2 1/3", triggers.some_successful(at_least=2), ["ok", "bad", "bad"], TriggerFailed),
    ("some_successful <=0.5 3/4", triggers.some_successful(at_most=0.5), ["ok", "ok", "ok", "bad"], TriggerFailed),
    ("some_failed >=0.5 2/4", triggers.some_failed(at_least=0.5), ["bad", "bad", "ok", "ok"], Success),
    ("some_failed >=0.5 1/4", triggers.some_failed(at_least=0.5), ["bad", "ok", "ok", "ok"], TriggerFailed),
    ("some_failed <=0.25 1/4", triggers.some_failed(at_most=0.25), ["bad", "ok", "ok", "ok"], Success),
    ("some_failed <=0.25 2/4", triggers.some_failed(at_most=0.25), ["bad", "bad", "ok", "ok"], TriggerFailed),
    ("some_failed 1..2 1/3", triggers.some_failed(at_least=1, at_most=2), ["bad", "ok", "ok"], Success),
    ("some_failed 1..2 0/3", triggers.some_failed(at_least=1, at_most=2), ["ok", "ok", "ok"], TriggerFailed),
    ("some_failed 1..2 3/3", triggers.some_failed(at_least=1, at_most=2), ["bad", "bad", "bad"], TriggerFailed),
    # with no upstream state there is nothing to count: they pass (Prefect 1.4.1)
    ("some_successful >=1 none", triggers.some_successful(at_least=1), [], Success),
    ("some_failed >=1 none", triggers.some_failed(at_least=1), [], Success),
]


@pytest.mark.parametrize(
    ("trigger", "upstream_kinds", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_stock_triggers(
    trigger: Trigger,
    upstream_kinds: list[str],
    expected: type[State[Any]],
    executor: Executor,
) -> None:
    got, _ = run_trigger(trigger, upstream_kinds, executor)
    assert type(got) is expected, f"{kind(got)}: {got.message!r}"
    if expected is Success:
        assert got.result == "ran"


def test_trigger_failure_message_names_the_trigger(executor: Executor) -> None:
    got, flow_state = run_trigger(triggers.all_successful, ["ok", "bad"], executor)
    assert type(got) is TriggerFailed
    assert "all_successful" in str(got.message)
    assert type(flow_state) is Failed


def test_one_upstream_through_two_edges_counts_once(executor: Executor) -> None:
    gather = task(name="gather", trigger=triggers.some_successful(at_most=1))(gather_fn)
    with Flow("two-edges") as flow:
        u = ok()
        target = gather(a=u, b=u)
    state = flow.run(executor=executor)
    assert type(state.result[target]) is Success


# -- not_all_skipped, the merge trigger (with skip_on_upstream_skip=False) -------------------


@pytest.mark.parametrize(
    ("upstream_kinds", "expected"),
    [
        (["skip", "ok"], Success),
        (["skip", "skip"], Skipped),
        (["ok", "ok"], Success),
        (["skip", "bad"], TriggerFailed),
        ([], Skipped),
    ],
    ids=["skip-ok", "skip-skip", "ok-ok", "skip-bad", "none"],
)
def test_not_all_skipped(
    upstream_kinds: list[str], expected: type[State[Any]], executor: Executor
) -> None:
    got, _ = run_trigger(
        triggers.not_all_skipped, upstream_kinds, executor, skip_on_upstream_skip=False
    )
    assert type(got) is expected, f"{kind(got)}: {got.message!r}"


# -- skip propagation, and failure outranking skip ---------------------------------------------


@pytest.mark.parametrize(
    "trigger",
    [triggers.all_successful, triggers.any_successful, triggers.all_finished],
    ids=lambda t: t.__name__,
)
def test_a_skipped_upstream_skips_the_task_before_its_trigger(
    trigger: Trigger, executor: Executor
) -> None:
    got, flow_state = run_trigger(trigger, ["skip", "ok"], executor)
    assert type(got) is Skipped
    assert type(flow_state) is Success


def test_failure_outranks_skip_with_the_default_trigger(executor: Executor) -> None:
    got, flow_state = run_trigger(triggers.all_successful, ["skip", "bad"], executor)
    assert type(got) is TriggerFailed, f"{kind(got)}: {got.message!r}"
    assert type(flow_state) is Failed


@pytest.mark.parametrize(
    "trigger", [triggers.always_run, triggers.any_failed], ids=lambda t: t.__name__
)
def test_failure_outranks_skip_and_the_trigger_decides(
    trigger: Trigger, executor: Executor
) -> None:
    got, _ = run_trigger(trigger, ["skip", "bad"], executor)
    assert type(got) is Success
    assert got.result == "ran"


def test_skip_on_upstream_skip_false_lets_the_trigger_count_skipped_as_success(
    executor: Executor,
) -> None:
    got, _ = run_trigger(
        triggers.all_successful, ["skip", "ok"], executor, skip_on_upstream_skip=False
    )
    assert type(got) is Success


def test_failure_far_upstream_of_a_skip_chain(executor: Executor) -> None:
    """A task that sees a Skipped and (transitively) a TriggerFailed upstream fails too."""
    got, flow_state = run_trigger(triggers.all_successful, ["skip", "tfail"], executor)
    assert type(got) is TriggerFailed
    assert type(flow_state) is Failed


# -- custom triggers ----------------------------------------------------------------------------


def key_x_succeeded(upstream_states: Mapping[Edge, State[Any]], /) -> bool:
    """Run when the upstream task wired to argument x succeeded (whatever the others did)."""
    return any(edge.key == "x" and s.is_successful() for edge, s in upstream_states.items())


@pytest.mark.parametrize(
    ("x", "y", "expected"),
    [("ok", "bad", Success), ("bad", "ok", TriggerFailed)],
)
def test_custom_trigger_sees_states_by_edge(
    x: str, y: str, expected: type[State[Any]], executor: Executor
) -> None:
    gather = task(name="gather", trigger=key_x_succeeded)(gather_fn)
    with Flow("custom") as flow:
        target = gather(x=UPSTREAM[x](), y=UPSTREAM[y]())
    state = flow.run(executor=executor)
    assert type(state.result[target]) is expected


def says_no(upstream_states: Mapping[Edge, State[Any]], /) -> bool:
    return False


def refuses_with_reason(upstream_states: Mapping[Edge, State[Any]], /) -> bool:
    raise signals.TRIGGERFAIL("not today, thanks")


def breaks(upstream_states: Mapping[Edge, State[Any]], /) -> bool:
    raise RuntimeError("bad trigger")


def skips_instead(upstream_states: Mapping[Edge, State[Any]], /) -> bool:
    raise signals.SKIP("trigger chose to skip")


def test_a_trigger_may_raise_skip(executor: Executor) -> None:
    got, flow_state = run_trigger(skips_instead, ["ok"], executor)
    assert type(got) is Skipped
    assert got.message == "trigger chose to skip"
    assert type(flow_state) is Success


def test_trigger_returning_false_gives_triggerfailed(executor: Executor) -> None:
    got, flow_state = run_trigger(says_no, ["ok"], executor)
    assert type(got) is TriggerFailed
    assert type(flow_state) is Failed


def test_trigger_raising_triggerfail_gives_its_message(executor: Executor) -> None:
    got, _ = run_trigger(refuses_with_reason, ["ok"], executor)
    assert type(got) is TriggerFailed
    assert got.message == "not today, thanks"


def test_trigger_raising_an_error_gives_triggerfailed_with_the_error(
    executor: Executor,
) -> None:
    got, flow_state = run_trigger(breaks, ["ok"], executor)
    assert type(got) is TriggerFailed
    assert isinstance(got.result, RuntimeError)
    assert "bad trigger" in str(got.message)
    assert type(flow_state) is Failed


@pytest.mark.parametrize("returned", ["yes", 1, None], ids=["str", "int", "None"])
def test_trigger_returning_a_non_bool_gives_triggerfailed_with_a_message(
    returned: object, executor: Executor
) -> None:
    def my_sloppy_trigger(upstream_states: Mapping[Edge, State[Any]], /) -> Any:
        return returned

    got, flow_state = run_trigger(my_sloppy_trigger, ["ok"], executor)
    assert type(got) is TriggerFailed, f"{kind(got)}: {got.message!r}"
    message = str(got.message)
    assert "my_sloppy_trigger" in message
    assert "bool" in message
    assert type(flow_state) is Failed


def test_a_non_callable_trigger_is_refused() -> None:
    not_callable: Any = "all_successful"
    with pytest.raises(ValueError, match="trigger"):
        task(name="strict", trigger=not_callable)(gather_fn)


@pytest.mark.parametrize(
    ("bounds", "culprit"),
    [
        ({"at_least": 1.5}, "whole number"),
        ({"at_least": float("nan")}, "at_least=nan"),
        ({"at_most": "2"}, "not a str"),
        ({"at_least": True}, "not a bool"),
        ({"at_least": 3, "at_most": 2}, "at_least is above at_most"),
        ({"at_least": 0.75, "at_most": 0.25}, "at_least is above at_most"),
    ],
    ids=["fractional-count", "nan", "str", "bool", "counts", "fractions"],
)
@pytest.mark.parametrize("factory", [triggers.some_successful, triggers.some_failed], ids=lambda f: f.__name__)
def test_a_bound_that_makes_no_sense_is_refused_when_the_trigger_is_built(
    factory: Any, bounds: dict[str, Any], culprit: str
) -> None:
    with pytest.raises(ValueError, match=factory.__name__) as raised:
        factory(**bounds)
    assert culprit in str(raised.value)

