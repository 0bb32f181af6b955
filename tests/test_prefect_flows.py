"""Flows written as Prefect 1.x code writes them (API.md Part 2, "Flows, Prefect 1.x style"):
the imperative API, ``flow.executor``, parameters as ``flow.run`` keywords, graph edits,
``DateTimeParameter`` and Prefect's construction-time checks.

Tasks are ``Task`` subclasses, as Prefect's documentation writes them, so a flow can be
built with and without ``with Flow(...)``. Results are compared between the two styles on
every executor.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path
from typing import Any

import pytest

import taskloom
from taskloom import (
    CycleError, DateTimeParameter, Edge, Flow, Parameter, Task, defaults_from_attrs, pause_task, task,
    unmapped,
)
from taskloom.errors import FlowDefinitionError
from taskloom.executors import Executor, LocalExecutor
from taskloom.migrate import migrate_source
from taskloom.states import Mapped, Paused, Resume, Success
from taskloom.tasks.control_flow import case

from ._cli import taskloom as run_cli
from ._cli import write_flow
from ._helpers import as_task, lines, record


class Extract(Task[[int], list[int]]):
    def run(self, n: int) -> list[int]:
        return list(range(n))


class Transform(Task[[list[int]], list[int]]):
    def run(self, numbers: list[int]) -> list[int]:
        return [10 * x for x in numbers]


class Load(Task[[list[int]], int]):
    def run(self, rows: list[int]) -> int:
        return sum(rows)


class Add(Task[[int, int], int]):
    def run(self, x: int, y: int = 1) -> int:
        return x + y


class Mark(Task[[str, str], str]):
    """Appends its label to a file and returns what the file held before."""

    def run(self, log: str, label: str) -> str:
        before = ",".join(lines(log))
        record(log, label)
        return before


class Pid(Task[[], int]):
    def run(self) -> int:
        return os.getpid()


class Square(Task[[int], int]):
    def run(self, x: int) -> int:
        return x * x


class Numbers(Task[[], list[int]]):
    def run(self) -> list[int]:
        return [1, 2, 3]


class Echo(Task[[Any], Any]):
    def run(self, value: Any) -> Any:
        return value


@task
def side_effect(path: str) -> str:
    record(path, "ran")
    return "ran"


@task
def inc(x: int) -> int:
    return x + 1


# -- the imperative API ----------------------------------------------------------------------


def _imperative_etl() -> tuple[Flow, Task[Any, Any]]:
    """Prefect's documented imperative style: tasks instantiated, then wired with
    ``flow=``, no ``with Flow(...)`` block."""
    flow = Flow("etl-imperative")
    n = Parameter("n", default=3)
    extract, transform, load = Extract(), Transform(), Load()
    flow.add_task(n)
    extract.bind(n=n, flow=flow)
    transform.set_upstream(extract, key="numbers", flow=flow)
    load.set_dependencies(flow=flow, keyword_tasks={"rows": transform})
    return flow, load


def _functional_etl() -> tuple[Flow, Task[Any, Any]]:
    with Flow("etl-functional") as flow:
        n = Parameter("n", default=3)
        load = Load()(Transform()(Extract()(n)))
    return flow, as_task(load)


def test_an_imperative_flow_runs_as_its_functional_twin(executor: Executor) -> None:
    imperative, load_i = _imperative_etl()
    functional, load_f = _functional_etl()
    assert {(e.upstream_task.name, e.downstream_task.name, e.key) for e in imperative.edges} == {
        (e.upstream_task.name, e.downstream_task.name, e.key) for e in functional.edges
    }
    for flow, load in ((imperative, load_i), (functional, load_f)):
        state = flow.run(executor=executor)
        assert type(state) is Success
        assert state.result[load].result == 30
        assert flow.run(n=5, executor=executor).result[load].result == 100


def test_set_upstream_and_set_downstream_take_flow_and_chain(
    tmp_path: Path, executor: Executor
) -> None:
    log = str(tmp_path / "order")
    flow = Flow("chained-calls")
    first, second, third, last = Mark("first"), Mark("second"), Mark("third"), Mark("last")
    for t in (first, second, third, last):
        t.bind(log, t.name, flow=flow)
    returned = third.set_upstream(second, flow=flow).set_upstream(first, flow=flow)
    assert returned is third
    assert second.set_downstream(last, flow=flow) is second
    assert set(flow.upstream_tasks(third)) == {first, second}
    state = flow.run(executor=executor)
    assert {"first", "second"} <= set(state.result[third].result.split(","))
    assert "second" in state.result[last].result.split(",")


def test_set_upstream_with_a_key_passes_the_result(executor: Executor) -> None:
    flow = Flow("keyed")
    two, plus = Add(name="two"), Add(name="plus")
    two.bind(1, 1, flow=flow)
    plus.set_upstream(two, key="x", flow=flow)
    two.set_downstream(plus, key="y", flow=flow)
    assert flow.run(executor=executor).result[plus].result == 4


def test_bind_binds_the_task_itself_once_per_flow() -> None:
    flow = Flow("bind-once")
    add = Add()
    assert add.bind(1, 2, flow=flow) is add
    assert flow.tasks == {add}
    with pytest.raises(FlowDefinitionError, match=r"'Add'.*x, y|x, y.*'Add'"):
        add.bind(3, 4, flow=flow)
    with pytest.raises(FlowDefinitionError, match="bind.*flow"):
        Add().bind(1, 2)
    other = Flow("bind-elsewhere")
    add.bind(5, 6, flow=other)  # another flow: its own arguments
    assert other.run(executor=LocalExecutor()).result[add].result == 11
    assert flow.run(executor=LocalExecutor()).result[add].result == 3


def test_calling_and_mapping_outside_a_with_block_with_flow(executor: Executor) -> None:
    flow = Flow("flow-keyword")
    numbers: Any = Numbers()  # a task where its result is expected, as imperative code does
    flow.add_task(numbers)
    called = Add()(1, 2, flow=flow)  # type: ignore[call-arg]  # flow= is the engine's keyword
    squares = Square().map(numbers, flow=flow)
    plus = Add().map(squares, unmapped(called), flow=flow)
    state = flow.run(executor=executor)
    assert state.result[called].result == 3
    assert state.result[plus].result == [4, 7, 12]


def test_set_dependencies_with_mapped_maps_the_task(executor: Executor) -> None:
    flow = Flow("mapped-dependencies")
    numbers, square, echo = Numbers(), Square(), Echo()
    square.set_dependencies(flow=flow, keyword_tasks={"x": numbers}, mapped=True)
    echo.set_dependencies(flow=flow, keyword_tasks={"value": square})
    state = flow.run(executor=executor)
    assert isinstance(state.result[square], Mapped)
    assert state.result[as_task(square)].result == [1, 4, 9]
    assert state.result[echo].result == [1, 4, 9]


def test_flow_constructor_takes_tasks_edges_and_reference_tasks(executor: Executor) -> None:
    numbers, square, echo, fails = Numbers(), Square(), Echo(), Add(name="fails")
    flow = Flow(
        "constructed",
        tasks=[numbers, fails],
        edges=[Edge(numbers, square, key="x", mapped=True), Edge(square, echo, key="value")],
        reference_tasks=[echo],
    )
    fails.bind("not a number", flow=flow)  # fails at run time; not a reference task
    state = flow.run(executor=executor)
    assert type(state) is Success
    assert state.result[echo].result == [1, 4, 9]
    assert state.result[fails].is_failed()


def test_chain_orders_the_tasks(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "order")
    flow = Flow("chain")
    marks = [Mark(name) for name in ("a", "b", "c", "d")]
    for m in marks:
        m.bind(log, m.name, flow=flow)
    edges = flow.chain(*marks)
    assert [(e.upstream_task.name, e.downstream_task.name) for e in edges] == [
        ("a", "b"), ("b", "c"), ("c", "d"),
    ]
    state = flow.run(executor=executor)
    assert state.result[marks[-1]].result == "a,b,c"


# -- flow.executor -----------------------------------------------------------------------------


def test_the_flows_executor_runs_its_tasks(pool_executor: Executor) -> None:
    pid = Pid()
    flow = Flow("own-executor", executor=pool_executor, tasks=[pid])
    assert flow.executor is pool_executor
    assert flow.run().result[pid].result != os.getpid()
    # Given to run, another executor wins for that run.
    assert flow.run(executor=LocalExecutor()).result[pid].result == os.getpid()


def test_setting_flow_executor_is_honoured(pool_executor: Executor) -> None:
    with Flow("set-executor") as flow:
        pid = Pid()()
    assert flow.run().result[pid].result == os.getpid()  # no executor: this process
    flow.executor = pool_executor
    assert flow.run().result[pid].result != os.getpid()


def test_a_flow_executor_that_is_not_one_is_refused() -> None:
    flow = Flow("bad-executor")
    with pytest.raises(FlowDefinitionError, match="bad-executor.*executor.*'loky'"):
        flow.executor = "loky"  # type: ignore[assignment]
    with pytest.raises(FlowDefinitionError, match="executor"):
        Flow("bad", executor=object())  # type: ignore[arg-type]


@pytest.mark.slow
def test_the_command_line_uses_the_flows_executor(tmp_path: Path, taskloom_home: Path) -> None:
    log = tmp_path / "pids"
    path = write_flow(
        tmp_path / "pids.py",
        """\
        from taskloom.executors import LokyExecutor


        @task
        def where() -> None:
            record(LOG, str(os.getpid()))


        flow = Flow("pids", executor=LokyExecutor(max_workers=2))
        where.bind(flow=flow)
        """,
        LOG=str(log),
    )
    done = run_cli(taskloom_home, "run", f"{path}:flow", "--no-progress")
    assert done.returncode == 0, done.stderr
    done = run_cli(taskloom_home, "run", f"{path}:flow", "--no-progress", "--executor", "local")
    assert done.returncode == 0, done.stderr
    in_worker, in_cli = (int(x) for x in lines(log))
    assert in_worker != in_cli  # the first ran in a loky worker, the second in the CLI's process


# -- parameters as flow.run keywords ------------------------------------------------------------


def test_keywords_of_run_are_parameter_values(executor: Executor) -> None:
    with Flow("keywords") as flow:
        x = Parameter("x", default=1)
        y = Parameter("y", default=2)
        total = Add()(x, y)
    assert flow.run(x=10, executor=executor).result[total].result == 12
    assert flow.run({"x": 5}, y=7, executor=executor).result[total].result == 12


def test_a_parameter_named_like_a_run_option_is_given_in_parameters(executor: Executor) -> None:
    @task
    def both(setting: str, n: int) -> tuple[str, int, object]:
        return setting, n, taskloom.context.get("region")

    with Flow("option-names") as flow:
        out = both(Parameter("context", default="dev"), Parameter("n", default=1))
    state = flow.run(parameters={"context": "prod"}, n=2, executor=executor)
    assert state.result[out].result == ("prod", 2, None)
    state = flow.run(context={"region": "eu"}, n=3, executor=executor)  # the run option
    assert state.result[out].result == ("dev", 3, "eu")


def test_an_unknown_keyword_is_named_with_the_parameters_and_run_options(
    tmp_path: Path, executor: Executor
) -> None:
    log = str(tmp_path / "ran")
    with Flow("unknown-keyword") as flow:
        side_effect(log)
        Parameter("alpha", default=1)
        Parameter("beta", default=2)
    with pytest.raises(FlowDefinitionError) as raised:
        flow.run(unknown=1, executor=executor)
    message = str(raised.value)
    assert "unknown" in message
    assert "alpha, beta" in message
    assert "executor" in message and "context" in message and "task_states" in message
    with pytest.raises(FlowDefinitionError, match="alpha.*twice"):
        flow.run({"alpha": 1}, alpha=2, executor=executor)
    assert lines(log) == []


def test_run_inside_the_flows_own_block_is_refused() -> None:
    with Flow("inside") as flow:
        inc(1)
        with pytest.raises(FlowDefinitionError, match="inside"):
            flow.run(executor=LocalExecutor())


# -- parameters join once --------------------------------------------------------------------


def test_a_parameter_called_or_used_joins_once(executor: Executor) -> None:
    x = Parameter("x", default=4)
    with Flow("called-parameter") as flow:
        assert getattr(x, "__call__")() is x
        first = inc(x)
        second = inc(getattr(x, "__call__")())
    assert flow.parameters() == {x}
    assert sum(isinstance(t, taskloom.ParameterTask) for t in flow.tasks) == 1
    state = flow.run(x=9, executor=executor)
    assert state.result[first].result == state.result[second].result == 10
    elsewhere = Flow("elsewhere")
    assert getattr(x, "__call__")(flow=elsewhere) is x
    assert elsewhere.parameters() == {x}
    with pytest.raises(FlowDefinitionError, match="'x'.*outside a flow"):
        getattr(x, "__call__")()


def test_flow_parameters_is_a_set_of_the_parameter_tasks_as_in_prefect() -> None:
    """Prefect 1.x code iterates ``flow.parameters()`` for the tasks; taskloom's also finds
    one by name."""
    with Flow("parameters-set") as flow:
        n_value = Parameter("n", default=3)
        day_value = Parameter("day", type=int)
        inc(n_value)
        inc(day_value)
    n, day = as_task(n_value), as_task(day_value)
    parameters = flow.parameters()
    assert {p.name: p.default for p in parameters if not p.required} == {"n": 3}
    assert parameters == {n, day} and n in parameters
    assert parameters["day"] is day and parameters.get("zzz") is None
    assert "n" in parameters.by_name() and "zzz" not in parameters.by_name()
    assert parameters.__contains__("n") and not parameters.__contains__("zzz")  # (at run time)
    assert list(parameters.by_name()) == ["n", "day"]
    with pytest.raises(KeyError, match="no parameter 'zzz'.*'n', 'day'"):
        parameters["zzz"]


def test_datetime_parameter_parses_iso_strings(executor: Executor) -> None:
    with Flow("dates") as flow:
        day = DateTimeParameter("day")
        since = DateTimeParameter("since", required=False)
        seen_day, seen_since = Echo()(day), Echo()(since)
    state = flow.run(day="2024-05-01T06:00:00+02:00", executor=executor)
    assert state.result[seen_day].result == dt.datetime(
        2024, 5, 1, 6, tzinfo=dt.timezone(dt.timedelta(hours=2))
    )
    assert state.result[seen_since].result is None
    state = flow.run(day="2024-05-01", since=dt.datetime(2024, 4, 1), executor=executor)
    assert state.result[seen_day].result == dt.datetime(2024, 5, 1, tzinfo=dt.timezone.utc)
    assert state.result[seen_since].result == dt.datetime(2024, 4, 1, tzinfo=dt.timezone.utc)


def test_a_bad_datetime_is_named_before_any_task_runs(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "ran")
    with Flow("bad-date") as flow:
        side_effect(log)
        Echo()(DateTimeParameter("when"))
    with pytest.raises(FlowDefinitionError, match="'when'.*'next tuesday'"):
        flow.run(when="next tuesday", executor=executor)
    with pytest.raises(FlowDefinitionError, match="'when'.*int"):
        flow.run(when=20240501, executor=executor)
    assert lines(log) == []
    with pytest.raises(FlowDefinitionError, match="'start'.*'soon'"):
        DateTimeParameter("start", default="soon")


def test_migrate_translates_datetime_parameter() -> None:
    done = migrate_source("from prefect.core.parameter import DateTimeParameter\n")
    assert done.code == "from taskloom import DateTimeParameter\n"
    assert done.leftovers == []


# -- copy, replace, update, validate -------------------------------------------------------------


def test_copy_is_an_independent_graph(executor: Executor) -> None:
    with Flow("original") as flow:
        cond = Echo()(True)
        with case(cond, True):
            gated = inc(1)
        last = inc(gated)
    twin = flow.copy()
    extra = twin.add_task(Add())
    twin.add_edge(last, extra, key="x")
    assert extra not in flow.tasks and len(flow.edges) == len(twin.edges) - 1
    assert twin.case_blocks()[0].flow is twin and flow.case_blocks()[0].flow is flow
    assert flow.run(executor=executor).result[last].result == 3
    state = twin.run(executor=executor)
    assert state.result[extra].result == 4
    assert twin.name == flow.name


def test_replace_moves_edges_and_arguments(executor: Executor) -> None:
    with Flow("replace") as flow:
        start = inc(1)
        middle = inc(start)
        total = Add()(middle, 1)
        listed = Echo()([middle, start])
    flow.set_reference_tasks([middle, total])
    doubled = Square(name="square")  # takes x, as inc did
    flow.replace(middle, doubled)
    assert as_task(middle) not in flow.tasks and doubled in flow.tasks
    assert flow.upstream_tasks(doubled) == [as_task(start)]
    assert doubled in flow.reference_tasks()
    state = flow.run(executor=executor)
    assert state.result[doubled].result == 4  # 2 squared, from start
    assert state.result[total].result == 5
    assert state.result[listed].result == [4, 2]


def test_replace_refuses_what_cannot_take_the_place() -> None:
    with Flow("replace-bad") as flow:
        first = inc(1)
        second = inc(first)
    edges = set(flow.edges)
    with pytest.raises(FlowDefinitionError, match=r"'inc'.*'numbers'.*x|x.*'numbers'"):
        flow.replace(second, Numbers(name="numbers"))
    with pytest.raises(FlowDefinitionError, match="'p'.*Parameter has no upstream tasks"):
        flow.replace(second, Parameter("p", default=1))
    with pytest.raises(FlowDefinitionError, match="not in the flow"):
        flow.replace(inc, Square())
    assert set(flow.edges) == edges


def test_replace_a_parameter(executor: Executor) -> None:
    with Flow("replace-parameter") as flow:
        old = Parameter("n", default=1)
        out = inc(old)
    new = Parameter("m", default=41)
    flow.replace(old, new)
    assert flow.parameters() == {as_task(new)}
    assert flow.run(executor=executor).result[out].result == 42


def test_update_merges_another_flows_graph(executor: Executor) -> None:
    with Flow("first") as first:
        n = Parameter("n", default=2)
        a = inc(n)
    with Flow("second"):
        with pytest.raises(FlowDefinitionError, match="'first'"):
            inc(a)  # a was called in first, with its argument there
    # Functional code builds on another flow through update:
    merged = Flow("merged")
    merged.update(first)
    with merged:
        c = inc(a)
    state = merged.run(n=5, executor=executor)
    assert state.result[c].result == 7
    assert first.tasks == {as_task(n), as_task(a)}  # first is unchanged


def test_update_with_parameters_of_the_same_name(executor: Executor) -> None:
    with Flow("left") as left:
        out_left = inc(Parameter("n", default=1))
    with Flow("right") as right:
        out_right = inc(Parameter("n", default=10))
    with pytest.raises(FlowDefinitionError, match="'n'.*merge_parameters"):
        left.update(right)
    left.update(right, merge_parameters=True, merge_reference_tasks=True)
    assert left.parameters()["n"] is right.parameters()["n"]
    assert set(left.reference_tasks()) == {as_task(out_left), as_task(out_right)}
    state = left.run(executor=executor)
    assert state.result[out_left].result == state.result[out_right].result == 11


def test_validate_names_every_problem() -> None:
    flow = Flow("validate")
    add, square = Add(name="adder"), Square(name="squarer")
    flow.add_task(add)
    flow.add_task(square)
    with pytest.raises(FlowDefinitionError) as raised:
        flow.validate()
    message = str(raised.value)
    assert "'adder' needs argument(s) x" in message
    assert "'squarer' needs argument(s) x" in message
    add.bind(1, flow=flow)
    square.set_upstream(add, key="x", flow=flow)
    flow.validate()


# -- construction checks -----------------------------------------------------------------------


def test_an_edge_from_a_task_to_itself_is_refused() -> None:
    lonely = Add(name="lonely")
    with pytest.raises(CycleError, match="lonely"):
        Edge(lonely, lonely)
    with pytest.raises(CycleError, match="lonely"):
        lonely.set_upstream(lonely, flow=Flow("self"))


@pytest.mark.parametrize("key", ["not-an-identifier", "class", "1x", ""])
def test_an_edge_key_must_be_an_identifier(key: str) -> None:
    with pytest.raises(FlowDefinitionError, match=f"'up' -> 'down'.*{key!r}"):
        Edge(Add(name="up"), Add(name="down"), key=key)


def test_a_parameter_has_no_upstream_tasks() -> None:
    flow = Flow("parameter-upstream")
    p, work = as_task(Parameter("p", default=1)), Numbers(name="work")
    with pytest.raises(FlowDefinitionError, match="parameter 'p'.*'work'"):
        work.set_downstream(p, flow=flow)
    with pytest.raises(FlowDefinitionError, match="parameter 'p'"):
        p.set_upstream(work, flow=flow)
    with pytest.raises(FlowDefinitionError, match="parameter 'p'"):
        Flow("edges", edges=[Edge(work, p)])
    assert flow.tasks == set()


def test_a_cycle_built_imperatively_is_refused() -> None:
    flow = Flow("cycle")
    a, b, c = Add(name="a"), Add(name="b"), Add(name="c")
    flow.chain(a, b, c)
    with pytest.raises(CycleError, match="a.*b.*c"):
        a.set_upstream(c, flow=flow)


def test_a_task_called_in_one_flow_is_refused_as_an_input_of_another() -> None:
    with Flow("builder") as builder:
        made = inc(1)
    with Flow("user") as user:
        with pytest.raises(FlowDefinitionError, match="'user'.*'inc'.*'builder'"):
            inc(made)
    with pytest.raises(FlowDefinitionError, match="'user'.*'builder'"):
        Echo().set_upstream(made, key="value", flow=user)
    with pytest.raises(FlowDefinitionError, match="'user'.*'builder'"):
        as_task(made).set_downstream(Echo(), flow=user)
    assert user.tasks == set()
    # Prefect code shares tasks that were never called between flows; that keeps working.
    numbers: Any = Numbers()  # a task object passed as an argument, as Prefect code does
    with user:
        first = Echo()(numbers)
    with Flow("two") as two:
        second = Load()(numbers)
    assert user.run(executor=LocalExecutor()).result[first].result == [1, 2, 3]
    assert two.run(executor=LocalExecutor()).result[second].result == 6


# -- prefect.utilities.tasks: defaults_from_attrs, pause_task ---------------------------------


class Query(Task[..., str]):
    """A Prefect 1.x style task class: ``run``'s defaults come from the instance."""

    def __init__(self, table: str | None = None, **options: Any) -> None:
        self.table = table
        super().__init__(**options)

    @defaults_from_attrs("table")
    def run(self, table: str | None = None, limit: int = 1) -> str:
        return f"{table}:{limit}"


@task
def deploy(log: str) -> str:
    pause_task("approve the deploy")
    record(log, "deployed")
    return "done"


def test_defaults_from_attrs_and_pause_task_as_in_prefect(executor: Executor, tmp_path: Path) -> None:
    log = str(tmp_path / "log")
    with Flow("task-utilities") as flow:
        users = Query(table="users", name="users")()
        orders = Query(table="users", name="orders")(table="orders", limit=2)
        given_none = Query(table="users", name="none")(table=None)  # stays None (Prefect's)
        done = deploy(log)
    state = flow.run(executor=executor)
    assert state.result[users].result == "users:1"
    assert state.result[orders].result == "orders:2"
    assert state.result[given_none].result == "None:1"
    paused = state.result[done]
    assert isinstance(paused, Paused) and paused.message == "approve the deploy"
    assert not Path(log).exists()
    again = flow.run(executor=executor, task_states={**state.result, done: Resume()})
    assert again.result[done].result == "done" and lines(log) == ["deployed"]
