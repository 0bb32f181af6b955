"""Building flows: calls, edges, constants, collections, and the graph queries (API.md, "Tasks", "Flows")."""

from __future__ import annotations

from pathlib import Path
from collections.abc import Callable

import pytest

from taskloom import Edge, Flow, Task, task
from taskloom.executors import Executor
from taskloom.states import Success

from ._helpers import as_task, record


@task
def one() -> int:
    return 1


@task
def two() -> int:
    return 2


@task
def add(x: int, y: int) -> int:
    return x + y


def inc_fn(x: int) -> int:
    return x + 1


inc = task(name="inc")(inc_fn)


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@task
def numbers() -> list[int]:
    return [1, 2, 3]


class Multiply(Task[[int, int], int]):
    def run(self, x: int, y: int) -> int:
        return x * y


def keys_into(flow: Flow, task_: object) -> set[tuple[str, str | None]]:
    return {(e.upstream_task.name, e.key) for e in flow.edges if e.downstream_task is task_}


def test_keyword_and_positional_data_edges(executor: Executor) -> None:
    with Flow("edges") as flow:
        a, b = one(), two()
        by_keyword = add(x=a, y=b)
        by_position = add(b, a)
        mixed = add(a, y=b)
    assert keys_into(flow, by_keyword) == {("one", "x"), ("two", "y")}
    assert keys_into(flow, by_position) == {("two", "x"), ("one", "y")}
    assert keys_into(flow, mixed) == {("one", "x"), ("two", "y")}
    state = flow.run(executor=executor)
    assert [state.result[t].result for t in (by_keyword, by_position, mixed)] == [3, 3, 3]


def test_constants_are_arguments_not_edges(executor: Executor) -> None:
    with Flow("constants") as flow:
        a = one()
        s = add(a, 10)
        c = add(4, 5)
    assert keys_into(flow, s) == {("one", "x")}
    assert keys_into(flow, c) == set()
    state = flow.run(executor=executor)
    assert state.result[s].result == 11
    assert state.result[c].result == 9


def test_calling_a_task_adds_a_copy_each_time(executor: Executor) -> None:
    with Flow("copies") as flow:
        first = inc(1)
        second = inc(first)
    assert as_task(first) is not as_task(second)
    assert as_task(first) is not inc and as_task(second) is not inc
    assert inc not in flow.tasks
    assert len(flow.get_tasks(name="inc")) == 2
    state = flow.run(executor=executor)
    assert state.result[second].result == 3


def test_collections_of_handles_become_edges(executor: Executor) -> None:
    @task
    def combine(items: list[int], pair: tuple[int, int], named: dict[str, int]) -> int:
        return sum(items) * 100 + pair[0] * 10 + pair[1] + sum(named.values()) * 1000

    with Flow("collections") as flow:
        a, b = one(), two()
        s = total([a, b, 5])
        c = combine([a, b], (b, a), {"k": b, "c": 3})
    assert keys_into(flow, s) == {("one", "xs"), ("two", "xs")}
    assert keys_into(flow, c) == {
        ("one", "items"), ("two", "items"), ("one", "pair"), ("two", "pair"), ("two", "named")
    }
    state = flow.run(executor=executor)
    assert state.result[s].result == 8
    assert state.result[c].result == 5000 + 300 + 21


def test_total_of_fresh_calls(executor: Executor) -> None:
    with Flow("total") as flow:
        s = total([one(), two(), inc(2)])
    state = flow.run(executor=executor)
    assert state.result[s].result == 6
    assert {t.name for t in flow.upstream_tasks(s)} == {"one", "two", "inc"}


@task
def mark(path: str, label: str) -> str:
    record(path, label)
    return label


@task
def seen(path: str) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        return handle.read().splitlines()


def test_upstream_tasks_adds_ordering_only_edges(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "order")
    with Flow("ordering") as flow:
        first = mark(log, "first")
        after = seen(log, upstream_tasks=[first])  # type: ignore[call-arg]
    into_after = [(e.upstream_task, e.key) for e in flow.edges if e.downstream_task is as_task(after)]
    assert into_after == [(as_task(first), None)]
    state = flow.run(executor=executor)
    assert state.result[after].result == ["first"]


def test_set_upstream_and_set_downstream(tmp_path: Path, executor: Executor) -> None:
    log_a, log_c = str(tmp_path / "a"), str(tmp_path / "c")
    with Flow("set-stream") as flow:
        a = mark(log_a, "a")
        b = seen(log_a)
        c = mark(log_c, "c")
        d = seen(log_c)
        # A handle reads as its result for mypy, so reach the methods through getattr.
        getattr(b, "set_upstream")(a)
        getattr(c, "set_downstream")(d)
    triples = {(e.upstream_task, e.downstream_task, e.key) for e in flow.edges}
    assert (as_task(a), as_task(b), None) in triples
    assert (as_task(c), as_task(d), None) in triples
    state = flow.run(executor=executor)
    assert state.result[b].result == ["a"]
    assert state.result[d].result == ["c"]


def test_set_upstream_and_set_downstream_with_a_key(executor: Executor) -> None:
    with Flow("set-key") as flow:
        a = two()
        times = Multiply(name="times")
        getattr(times, "set_upstream")(a, key="x")
        getattr(a, "set_downstream")(times, key="y")
    assert times in flow.tasks
    assert keys_into(flow, times) == {("two", "x"), ("two", "y")}
    state = flow.run(executor=executor)
    assert state.result[times].result == 4


def test_a_task_subclass_is_called_like_a_function_task(executor: Executor) -> None:
    with Flow("subclass") as flow:
        product = Multiply(name="times")(two(), 21)
    state = flow.run(executor=executor)
    assert state.result[product].result == 42
    assert Multiply().run(3, 4) == 12
    assert inc.run(1) == 2


# -- building without a flow context -------------------------------------------------------------


def test_add_edge_and_set_dependencies(executor: Executor) -> None:
    flow = Flow("explicit")
    a, b = Multiply(name="a"), Multiply(name="b")
    x = flow.add_task(one)
    assert flow.add_task(one) is x and len(flow.tasks) == 1
    edge = flow.add_edge(one, a, key="x")
    assert isinstance(edge, Edge)
    assert (edge.upstream_task, edge.downstream_task, edge.key) == (one, a, "x")
    flow.add_edge(two, a, key="y")
    flow.set_dependencies(b, upstream_tasks=[two], keyword_tasks={"x": a, "y": two})
    final = inc.copy()
    flow.set_dependencies(final, keyword_tasks={"x": b})
    flow.set_dependencies(one, downstream_tasks=[final])
    assert keys_into(flow, b) == {("two", None), ("a", "x"), ("two", "y")}
    assert keys_into(flow, final) == {("b", "x"), ("one", None)}
    state = flow.run(executor=executor)
    assert state.result[a].result == 2
    assert state.result[b].result == 4
    assert state.result[final].result == 5
    assert type(state) is Success


def test_add_edge_with_an_unknown_key_names_the_task_and_key() -> None:
    flow = Flow("bad-key")
    with pytest.raises(ValueError, match="inc.*nope|nope.*inc"):
        flow.add_edge(one, inc, key="nope")


# -- cycles ---------------------------------------------------------------------------------------


def test_a_cycle_is_refused_when_its_last_edge_is_added() -> None:
    flow = Flow("cycle")
    alpha, beta, gamma = Multiply(name="alpha"), Multiply(name="beta"), Multiply(name="gamma")
    flow.add_edge(alpha, beta)
    flow.add_edge(beta, gamma)
    edges_before = set(flow.edges)
    with pytest.raises(ValueError, match="alpha") as raised:
        flow.add_edge(gamma, alpha)
    message = str(raised.value)
    assert "beta" in message and "gamma" in message
    assert set(flow.edges) == edges_before  # the closing edge was not added
    assert [t.name for t in flow.sorted_tasks()] == ["alpha", "beta", "gamma"]


def test_a_cycle_through_handles_and_set_dependencies() -> None:
    with Flow("cycle-handles") as flow:
        first = inc(1)
        second = inc(first)
        third = Multiply(name="third")(second, second)
    with pytest.raises(ValueError, match="third"):
        flow.set_dependencies(first, upstream_tasks=[third])
    with pytest.raises(ValueError, match="inc"):
        flow.add_edge(second, first)
    with Flow("cycle-set-upstream"):
        head = Multiply(name="head")(1, 2)
        tail = Multiply(name="tail")(head, head)
        with pytest.raises(ValueError, match="head") as raised:
            getattr(head, "set_upstream")(tail)
        assert "tail" in str(raised.value)


def test_a_task_depending_on_itself_is_a_cycle() -> None:
    flow = Flow("self")
    lonely = Multiply(name="lonely")
    with pytest.raises(ValueError, match="lonely"):
        flow.add_edge(lonely, lonely)


# -- reading the graph ---------------------------------------------------------------------------


def test_root_terminal_reference_sorted_and_get_tasks() -> None:
    with Flow("diamond") as flow:
        top = one()
        left = inc(top)
        right = task(name="right")(inc_fn)(top)
        bottom = add(left, right)
        side = two()
    top_, left_, right_, bottom_, side_ = (as_task(h) for h in (top, left, right, bottom, side))
    tasks = [top_, left_, right_, bottom_, side_]
    assert set(flow.tasks) == set(tasks)
    assert set(flow.root_tasks()) == {top_, side_}
    assert set(flow.terminal_tasks()) == {bottom_, side_}
    assert set(flow.reference_tasks()) == {bottom_, side_}
    order = flow.sorted_tasks()
    assert set(order) == set(tasks) and len(order) == len(tasks)
    for edge in flow.edges:
        assert order.index(edge.upstream_task) < order.index(edge.downstream_task)
    assert flow.get_tasks(name="inc") == [left_]
    assert flow.get_tasks(name="right") == [right_]
    assert flow.get_tasks(name="missing") == []
    flow.set_reference_tasks([left])
    assert flow.reference_tasks() == [left_]
    assert len(flow.edges) == 4


def test_terminal_tasks_follow_every_change_to_the_flow() -> None:
    # Kept between calls until the flow changes: each change below must be seen.
    with Flow("f") as flow:
        called = one()
    first = as_task(called)
    terminal = flow.terminal_tasks()
    assert terminal == [first]
    terminal.clear()  # the caller's own list
    assert flow.terminal_tasks() == [first]
    with flow:
        later = as_task(inc(called))
    assert flow.terminal_tasks() == [later]
    alone = two.copy()
    flow.add_task(alone)
    assert flow.terminal_tasks() == [later, alone]
    copied = flow.copy()
    renamed = task(name="renamed")(inc_fn)
    flow.replace(later, renamed)
    assert flow.terminal_tasks() == [renamed, alone]
    assert copied.terminal_tasks() == [later, alone]
    # and a run decides by them (the reference tasks by default)
    assert flow.run(journal=False).result.keys() >= {renamed, alone}


# -- misuse ----------------------------------------------------------------------------------------


def test_calling_a_task_outside_a_flow_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="inc") as raised:
        inc(1)
    assert "flow" in str(raised.value).lower()
    with pytest.raises(ValueError, match="times"):
        Multiply(name="times")(1, 2)


def test_wrong_arguments_name_the_task() -> None:
    with Flow("bad-call"):
        with pytest.raises((TypeError, ValueError), match="add"):
            add(1)  # type: ignore[call-arg]
        with pytest.raises((TypeError, ValueError), match="inc"):
            inc(1, z=2)  # type: ignore[call-arg]


# -- a handle is not a value -----------------------------------------------------------------------


def _explains_the_handle(action: Callable[[], object], task_name: str) -> None:
    with pytest.raises((TypeError, AttributeError)) as raised:
        action()
    message = str(raised.value)
    assert "handle" in message.lower(), message
    assert task_name in message, message


def test_using_a_handle_as_a_value_explains_the_handle() -> None:
    with Flow("handles"):
        h = inc(1)
        xs = numbers()

        def truth_test() -> object:
            if h:
                return "yes"
            return "no"

        def unpack() -> object:
            first, second, third = xs
            return first

        # `h + 1`, `1 + h`, `h < 3` and `xs[0]` build tasks now (issue 12, API.md Part 2
        # "Task outputs and operators"; tests/test_operators.py); the rest still explain.
        _explains_the_handle(truth_test, "inc")
        _explains_the_handle(lambda: h.bit_length(), "inc")
        _explains_the_handle(lambda: [x for x in xs], "numbers")
        _explains_the_handle(unpack, "numbers")
        _explains_the_handle(lambda: len(xs), "numbers")
        _explains_the_handle(lambda: -h, "inc")
        _explains_the_handle(lambda: h ^ 1, "inc")
        _explains_the_handle(lambda: 3 in xs, "numbers")
        _explains_the_handle(lambda: int(h), "inc")


def test_reading_a_missing_attribute_explains_handles_only_while_a_flow_is_built() -> None:
    # The explanation lives on Task only while a `with Flow(...)` block is open (in any
    # thread): outside one, a task's attribute reads take CPython's fast path.
    with Flow("outer"):
        h = inc(1)
        with Flow("inner"):
            _explains_the_handle(lambda: h.bit_length(), "inc")
        _explains_the_handle(lambda: h.bit_length(), "inc")  # the outer block is still open
    with pytest.raises(AttributeError) as raised:
        h.bit_length()
    assert type(raised.value) is AttributeError
    assert "bit_length" in str(raised.value)
    with pytest.raises(ZeroDivisionError):
        with Flow("failing"):
            1 / 0
    assert "__getattr__" not in vars(Task)  # a block left by an error closes too
    with Flow("again"):
        _explains_the_handle(lambda: h.bit_length(), "inc")


def test_operators_on_a_handle_build_tasks_instead_of_raising() -> None:
    # These four used to raise HandleError (test above); Prefect 1.x builds tasks for them.
    with Flow("operators") as flow:
        h = inc(1)
        xs = numbers()
        built = [h + 1, 1 + h, h < 3, xs[0]]
    assert [type(t).__name__ for t in built] == ["Add", "Add", "LessThan", "GetItem"]
    assert all(as_task(t) in flow.tasks for t in built)


def test_unpacking_without_nout_says_to_pass_nout() -> None:
    with Flow("unpack"):
        xs = numbers()
        with pytest.raises(TypeError, match="nout") as raised:
            first, second, third = xs
    assert "numbers" in str(raised.value)
