"""Task outputs and operators (API.md Part 2, "Task outputs and operators"): ``nout`` and
tuple annotations unpack a handle, and ``h[k]``, arithmetic, comparisons, ``&`` and ``|``
on handles build small tasks (``taskloom.tasks.core``), on every executor. As Prefect 1.x
(``prefect1-semantics.md`` G109) except where the module docstring of ``tasks.core`` says."""

from __future__ import annotations

import pickle
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from taskloom import Flow, HandleError, Task, task
from taskloom.errors import TaskDefinitionError
from taskloom.executors import Executor
from taskloom.states import Success, TriggerFailed
from taskloom.tasks import core

from ._helpers import as_task, kind


@task
def seven() -> int:
    return 7


@task
def three() -> int:
    return 3


@task
def flag(value: bool) -> bool:
    return value


@task
def pair(x: int) -> tuple[int, str]:
    return x, f"#{x}"


@task(nout=2)
def halves(x: int) -> list[int]:
    return [x // 2, x - x // 2]


@task
def describe(n: int, label: str) -> str:
    return f"{label}={n}"


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@task
def prices() -> dict[str, float]:
    return {"apple": 1.5, "pear": 2.0}


@task
def letters() -> list[str]:
    return ["a", "b", "c"]


@task
def boom() -> int:
    raise RuntimeError("boom")


@task
def broken() -> list[int]:
    raise RuntimeError("broken")


def test_unpacking_with_nout_and_with_a_tuple_annotation_feeds_two_downstream_tasks(
    executor: Executor,
) -> None:
    with Flow("unpack") as flow:
        n, label = pair(5)  # -> tuple[int, str]
        low, high = halves(seven())  # nout=2
        text = describe(n, label)
        both = total([low, high])
    state = flow.run(executor=executor)
    assert isinstance(state, Success), state
    assert state.result[text].result == "#5=5"
    assert state.result[low].result == 3
    assert state.result[high].result == 4
    assert state.result[both].result == 7
    assert [as_task(h).name for h in (n, label, low, high)] == [
        "pair[0]", "pair[1]", "halves[0]", "halves[1]",
    ]


# Every operator Prefect 1.x's Task defines, as (symbol, function); `/` on ints gives a float.
OPERATORS: list[tuple[str, Callable[[Any, Any], Any]]] = [
    ("+", lambda a, b: a + b),
    ("-", lambda a, b: a - b),
    ("*", lambda a, b: a * b),
    ("/", lambda a, b: a / b),
    ("//", lambda a, b: a // b),
    ("%", lambda a, b: a % b),
    ("**", lambda a, b: a**b),
    ("&", lambda a, b: a & b),
    ("|", lambda a, b: a | b),
    ("<", lambda a, b: a < b),
    ("<=", lambda a, b: a <= b),
    (">", lambda a, b: a > b),
    (">=", lambda a, b: a >= b),
]


def test_every_operator_with_a_handle_on_the_left_on_the_right_and_on_both_sides(
    executor: Executor,
) -> None:
    built: dict[tuple[str, str], Any] = {}
    with Flow("operators") as flow:
        x, y = seven(), three()
        for symbol, op in OPERATORS:
            built[symbol, "left"] = op(x, 3)
            built[symbol, "right"] = op(7, y)
            built[symbol, "both"] = op(x, y)
    assert all(isinstance(h, Task) for h in built.values())
    state = flow.run(executor=executor)
    assert isinstance(state, Success), state
    for (symbol, side), handle in built.items():
        op = dict(OPERATORS)[symbol]
        assert state.result[handle].result == op(7, 3), (symbol, side)


def test_boolean_operators_and_chained_arithmetic(executor: Executor) -> None:
    with Flow("chains") as flow:
        yes, no = flag(True), flag(False)
        both = yes & no
        either = yes | no
        doubled = (seven() + 1) * 2
        mixed = 100 - (seven() ** 2 // three()) % 5
        small = (seven() + 1) < 10
    state = flow.run(executor=executor)
    assert isinstance(state, Success), state
    assert state.result[both].result is False
    assert state.result[either].result is True
    assert state.result[doubled].result == 16
    assert state.result[mixed].result == 100 - (49 // 3) % 5
    assert state.result[small].result is True
    assert [type(as_task(h)).__name__ for h in (both, either, doubled, small)] == [
        "And", "Or", "Mul", "LessThan",
    ]


def test_getitem_on_a_dict_a_list_and_with_a_handle_as_key(executor: Executor) -> None:
    with Flow("getitem") as flow:
        apple = prices()["apple"]
        second = letters()[1]
        last = letters()[-1]
        picked = letters()[three() - 2]  # the key is itself a task
        cheap = prices()["pear"] < 3
    state = flow.run(executor=executor)
    assert isinstance(state, Success), state
    assert state.result[apple].result == 1.5
    assert state.result[second].result == "b"
    assert state.result[last].result == "c"
    assert state.result[picked].result == "b"
    assert state.result[cheap].result is True
    assert as_task(apple).name == "prices['apple']"
    assert as_task(picked).name == "letters[Sub]"


def test_a_failed_upstream_makes_an_operator_task_trigger_failed(executor: Executor) -> None:
    with Flow("failed-upstream") as flow:
        failed = boom()
        plus = failed + 1
        first = broken()[0]
        after = plus * 2
    state = flow.run(executor=executor)
    assert not isinstance(state, Success)
    assert kind(state.result[failed]) == "Failed"
    for handle in (plus, first, after):
        assert isinstance(state.result[handle], TriggerFailed), state.result[handle]


def test_an_operator_that_fails_at_run_time_fails_its_task(executor: Executor) -> None:
    with Flow("zero") as flow:
        ratio = seven() / (three() - 3)
        missing = prices()["plum"]
    state = flow.run(executor=executor)
    assert kind(state.result[ratio]) == "Failed"
    assert "ZeroDivisionError" in str(state.result[ratio].message) or isinstance(
        state.result[ratio].result, ZeroDivisionError
    )
    assert kind(state.result[missing]) == "Failed"


# -- building: names, edges, errors ------------------------------------------------------------


def test_operator_tasks_are_wired_with_their_argument_names() -> None:
    with Flow("edges") as flow:
        x = seven()
        s = x + 1
        g = letters()[x]
        r = 2 ** x
    assert {(e.upstream_task.name, e.key) for e in flow.edges_to(s)} == {("seven", "x")}
    assert flow.arguments(s)["y"] == 1
    assert {(e.upstream_task.name, e.key) for e in flow.edges_to(g)} == {
        ("letters", "task_result"), ("seven", "key"),
    }
    assert flow.arguments(r)["x"] == 2  # reflected: the constant is the left operand
    assert {e.key for e in flow.edges_to(r)} == {"y"}
    dot = flow.visualize(format="dot")
    assert isinstance(dot, str)
    for label in ('"x"', '"task_result"', '"key"', '"y"', '"Add"', '"letters[seven]"', '"Pow"'):
        assert label in dot, label


def test_an_operator_outside_a_flow_names_the_task() -> None:
    with pytest.raises(HandleError, match="'seven'.*outside a flow"):
        seven + 1  # type: ignore[operator]
    with pytest.raises(HandleError, match="'letters'"):
        letters[0]  # type: ignore[index]
    with pytest.raises(HandleError, match="'seven'"):
        1 < seven  # type: ignore[operator]


def test_handles_still_hash_and_compare_by_identity() -> None:
    with Flow("identity") as flow:
        a, b = seven(), seven()
        tasks = {as_task(a), as_task(b)}
    assert len(tasks) == 2
    assert as_task(a) != as_task(b) and as_task(a) == as_task(a)
    assert len(flow.tasks) == 2  # == and hashing built nothing


def test_nout_is_validated_and_inferred() -> None:
    bad: object
    for bad in (0, -1, 1.5, "2", True):
        with pytest.raises(TaskDefinitionError, match="'odd'.*nout"):
            task(name="odd", nout=bad)(lambda: (1, 2))  # type: ignore[arg-type]
    assert task(nout=3)(lambda: (1, 2, 3)).nout == 3
    assert pair.nout == 2 and halves.nout == 2 and total.nout is None

    @task
    def many() -> tuple[int, ...]:
        return (1, 2)

    @task
    def unresolvable() -> "tuple[Nowhere, int]":  # type: ignore[name-defined]  # noqa: F821
        return (1, 2)

    class Triple(Task[[], tuple[int, int, int]]):
        def run(self) -> tuple[int, int, int]:
            return (1, 2, 3)

    assert many.nout is None and unresolvable.nout is None
    assert Triple().nout == 3 and Triple(nout=1).nout == 1
    with Flow("unpack-class") as flow:
        a, b, c = Triple()()
        with pytest.raises(HandleError, match="'many'.*nout"):
            first, second = many()
    assert flow.run().result[c].result == 3


def test_a_mapped_copy_does_not_unpack() -> None:
    with Flow("mapped") as flow:
        mapped = pair.map([1, 2, 3])
        with pytest.raises(HandleError, match="nout"):
            first, second = mapped
        firsts = mapped[0]  # the first child's result, as a downstream task receives it
    assert flow.run().result[firsts].result == (1, "#1")


def test_operator_tasks_pickle_as_module_level_classes() -> None:
    with Flow("pickle"):
        built = [as_task(seven() + 1), as_task(letters()[0]), as_task(seven() >= 3)]
    for t in built:
        again = pickle.loads(pickle.dumps(t))
        assert type(again) is type(t) and again.name == t.name
    assert core.Not().run(0) is True
    assert {name for name in core.__all__} >= {
        "GetItem", "Add", "Sub", "Mul", "Div", "FloorDiv", "Mod", "Pow", "And", "Or", "Not",
        "GreaterThan", "GreaterThanOrEqual", "LessThan", "LessThanOrEqual",
    }


def test_an_operator_task_takes_task_options_like_any_task() -> None:
    adder = core.Add(name="plus", max_retries=1, retry_delay=timedelta(0))
    with Flow("options") as flow:
        s = adder(seven(), 1)
    assert as_task(s).name == "plus"
    assert flow.run().result[s].result == 8
