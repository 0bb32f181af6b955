"""Control flow (API.md Part 2, "Control flow"): ``case``, ``merge``, ``switch``, ``ifelse``
and ``FilterTask``, on every executor. The scenarios follow Prefect Core 1.4.1's
(``prefect1-semantics.md`` §8.4, G105-G106): branches are built on skips, a skipped
terminal task counts as a success for the flow."""

from __future__ import annotations

from typing import Any

import pytest

from taskloom import Flow, Parameter, apply_map, case, merge, signals, task, unmapped, visualize
from taskloom.errors import FlowDefinitionError
from taskloom.executors import Executor
from taskloom.states import Mapped, Skipped, Success
from taskloom.tasks.control_flow import CompareValue, FilterTask, ifelse, switch

from ._helpers import as_task, kind


@task
def identity(x: Any) -> Any:
    return x


@task
def label(x: str) -> str:
    return x


@task
def yes() -> str:
    return "yes"


@task
def no() -> str:
    return "no"


@task
def shout(x: str) -> str:
    return x.upper()


@task
def inc(x: int) -> int:
    return x + 1


@task
def checked(x: int) -> int:
    if x == 2:
        raise ValueError("two")
    if x == 3:
        raise signals.SKIP("three")
    return x * 10


@pytest.mark.parametrize("flag", [True, False])
def test_case_true_and_false_branches_merge(executor: Executor, flag: bool) -> None:
    with Flow("classic") as flow:
        cond = identity(flag)
        with case(cond, True):
            a = yes()
        with case(cond, False):
            b = no()
        m = merge(a, b)
    state = flow.run(executor=executor, journal=False)
    assert isinstance(state, Success)
    taken, other = (a, b) if flag else (b, a)
    assert kind(state.result[taken]) == "Success"
    assert kind(state.result[other]) == "Skipped"
    assert state.result[m].result == ("yes" if flag else "no")


def test_nested_cases_run_only_when_both_match(executor: Executor) -> None:
    with Flow("nested") as flow:
        outer = identity(1)
        inner = identity("x")
        with case(outer, 1):
            with case(inner, "x"):
                both = yes()
            with case(inner, "y"):
                wrong_inner = no()
            only_outer = label("outer")
        with case(outer, 2):
            with case(inner, "x"):
                wrong_outer = no()
    state = flow.run(executor=executor, journal=False)
    assert isinstance(state, Success)
    assert state.result[both].result == "yes"
    assert state.result[only_outer].result == "outer"
    assert isinstance(state.result[wrong_inner], Skipped)
    assert isinstance(state.result[wrong_outer], Skipped)
    [gate_1, gate_x, gate_y, gate_2, gate_x2] = flow.case_blocks()
    assert gate_x.parent is gate_1 and gate_x2.parent is gate_2 and gate_1.parent is None
    assert set(gate_1.tasks) == {as_task(both), as_task(wrong_inner), as_task(only_outer)}


def test_a_task_in_a_block_taking_an_argument_from_outside_is_gated(executor: Executor) -> None:
    with Flow("outside-arg") as flow:
        word = label("hi")
        cond = identity(False)
        with case(cond, True):
            loud = shout(word)
        after = shout(loud)  # outside the block: skipped by propagation
    state = flow.run(executor=executor, journal=False)
    assert isinstance(state, Success)
    assert state.result[word].result == "hi"  # created before the block: not gated
    assert isinstance(state.result[loud], Skipped)
    assert isinstance(state.result[after], Skipped)
    compares = [t for t in flow.tasks if isinstance(t, CompareValue)]
    assert len(compares) == 1 and flow.upstream_tasks(compares[0]) == [as_task(cond)]
    assert set(flow.upstream_tasks(loud)) == {as_task(word), compares[0]}


def test_switch_with_three_values(executor: Executor) -> None:
    with Flow("switch") as flow:
        n = Parameter("n", default="b")
        a, b, c = label("A"), label("B"), label("C")
        switch(n, {"a": a, "b": b, "c": c})
        m = merge(a, b, c)
    state = flow.run(executor=executor, journal=False)
    assert isinstance(state, Success)
    assert [kind(state.result[t]) for t in (a, b, c)] == ["Skipped", "Success", "Skipped"]
    assert state.result[m].result == "B"
    state = flow.run(parameters={"n": "c"}, executor=executor, journal=False)
    assert state.result[m].result == "C"


def test_ifelse_compares_the_truth_value(executor: Executor) -> None:
    with Flow("ifelse") as flow:
        cond = identity([])  # falsy, not False
        y, n = yes(), no()
        ifelse(cond, y, n)
        shown = shout(y)
    state = flow.run(executor=executor, journal=False)
    assert isinstance(state, Success)
    assert isinstance(state.result[y], Skipped)
    assert isinstance(state.result[shown], Skipped)
    assert state.result[n].result == "no"


def test_merge_of_all_skipped_branches_is_skipped_and_the_flow_succeeds(executor: Executor) -> None:
    with Flow("none-taken") as flow:
        cond = identity(3)
        with case(cond, 1):
            a = yes()
        with case(cond, 2):
            b = no()
        m = merge(a, b)
    state = flow.run(executor=executor, journal=False)
    assert isinstance(state, Success)
    assert state.message == "All reference tasks succeeded."
    assert isinstance(state.result[m], Skipped)


def test_filter_task_drops_failed_skipped_and_none_children(executor: Executor) -> None:
    with Flow("filter") as flow:
        results = checked.map([1, 2, 3, 4])
        kept = FilterTask()(results)
        big = FilterTask(filter_func=_over_15, name="big")(results)
    state = flow.run(executor=executor, journal=False)
    mapped = state.result[results]
    assert isinstance(mapped, Mapped)
    assert [kind(s) for s in mapped.map_states] == ["Success", "Failed", "Skipped", "Success"]
    assert state.result[kept].result == [10, 40]
    assert state.result[big].result == [40]
    assert isinstance(state, Success)  # the terminal tasks are the filters, which succeeded


def _over_15(x: object) -> bool:
    return isinstance(x, int) and x > 15


def test_a_mapped_task_inside_a_case(executor: Executor) -> None:
    with Flow("map-in-case") as flow:
        cond = identity(True)
        with case(cond, True):
            taken = inc.map([1, 2, 3])
        with case(cond, False):
            not_taken = inc.map([1, 2, 3])
    state = flow.run(executor=executor, journal=False)
    assert isinstance(state, Success)
    assert state.result[taken].result == [2, 3, 4]
    assert isinstance(state.result[not_taken], Skipped)
    gates = [e for e in flow.edges_to(taken) if e.key is None]
    assert len(gates) == 1 and not gates[0].mapped


def _branch(x: int, word: str) -> str:
    with case(x, 1):
        a = label(word)
    with case(x, 2):
        b = shout(word)
    return merge(a, b)


def test_a_case_inside_apply_map_branches_per_child(executor: Executor) -> None:
    with Flow("case-in-map") as flow:
        r = apply_map(_branch, [1, 2, 1, 3], unmapped("ok"))
    state = flow.run(executor=executor, journal=False)
    assert isinstance(state, Success)
    mapped = state.result[r]
    assert isinstance(mapped, Mapped)
    assert mapped.result == ["ok", "OK", "ok", None]
    assert [kind(s) for s in mapped.map_states] == ["Success", "Success", "Success", "Skipped"]
    assert all(isinstance(b.compare, CompareValue) for b in flow.case_blocks())
    assert all(flow.mapped_arguments(b.compare) is not None for b in flow.case_blocks())


def test_bad_control_flow_is_reported_before_anything_runs() -> None:
    with Flow("elsewhere"):
        foreign = identity(1)
    with Flow("bad") as flow:
        with pytest.raises(FlowDefinitionError, match=r"'identity'.*not in this flow"):
            with case(foreign, 1):
                pass
        with pytest.raises(FlowDefinitionError, match="merge.*at least one"):
            merge()  # type: ignore[call-overload]
        here = identity(2)
        with pytest.raises(FlowDefinitionError, match=r"switch\(identity, \{\}\) has no cases"):
            switch(here, {})
        with pytest.raises(FlowDefinitionError, match=r"switch\(\) on 'identity'.*case 1"):
            switch(here, {1: "not a task"})
    assert [t.name for t in flow.tasks] == ["identity"]
    with pytest.raises(FlowDefinitionError, match="outside a flow"):
        with case(foreign, 1):
            pass


def test_a_case_is_drawn_as_a_labelled_box() -> None:
    with Flow("drawn") as flow:
        cond = identity(True)
        with case(cond, True):
            with case(cond, True):
                yes()
        no()
    dot = visualize.to_dot(flow)
    assert 'subgraph cluster_case0 { label="case: identity == True"' in dot
    assert dot.index("cluster_case1") > dot.index("cluster_case0")
    inner = dot[dot.index("cluster_case1") :]
    assert 'label="yes"' in inner and 'label="no"' not in inner
    mermaid = visualize.to_mermaid(flow)
    assert 'subgraph case0["case: identity == True"]' in mermaid
    assert mermaid.count("end") == 2
