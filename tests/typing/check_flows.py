"""Type tests: typed wiring inside ``with Flow(...)``. Only type-checked, never run.

Inside a flow, calling a task reads as its result type ``R`` (at run time it returns a
handle), so mypy checks the edges between tasks; ``flow_state.result[handle]`` reads as
``State[R]``. ``assert_type`` lines must be accepted; a line ending in
``# type: ignore[code]`` must be rejected with that code.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, assert_type

from taskloom import Flow, Parameter, ParameterTask, Task, task, triggers
from taskloom.flow import FlowResult
from taskloom.states import State


@task
def load(path: str) -> list[float]:
    return [1.0, 2.0]


@task(max_retries=3, retry_delay=timedelta(seconds=1))
def total(xs: list[float]) -> float:
    return sum(xs)


@task
def fmt(value: float, unit: str = "kg") -> str:
    return f"{value} {unit}"


@task
def double(x: int) -> int:
    return 2 * x


@task(trigger=triggers.always_run)
def report(label: str, count: int) -> None:
    print(label, count)


# -- a Prefect-style flow type-checks as written: no casts, no ignores ------------------------

with Flow("weights") as flow:
    path = Parameter("path", default="data.csv")
    unit = Parameter("unit", type=str)
    n = Parameter("n", default=10)
    xs = load(path)
    weight = total(xs)
    label = fmt(weight, unit=unit)
    doubled = double(double(n))
    report(label, count=doubled)

flow_state = flow.run(parameters={"unit": "g", "n": 3})

# -- what the names read as ----------------------------------------------------------------

assert_type(flow, Flow)
assert_type(path, str)
assert_type(unit, str)
assert_type(n, int)
assert_type(xs, list[float])
assert_type(weight, float)
assert_type(label, str)
assert_type(doubled, int)
assert_type(Parameter("ratio", default=0.5), float)
# flow.parameters(): the Parameter tasks, as Prefect code iterates them; also by name.
assert_type({p.name: p.default for p in flow.parameters()}, dict[str, Any | None])
assert_type(flow.parameters()["n"], ParameterTask)
assert_type("n" in flow.parameters().by_name(), bool)
assert_type(Parameter("tags", default=["a"]), list[str])
assert_type(Parameter("flag", type=bool, required=True), bool)
# optional without a default: a run that does not give it reads None
assert_type(Parameter("flag", type=bool, required=False), bool | None)
assert_type(Parameter("limit", default=None, type=int), int | None)

# -- reading results: flow_state.result[handle] is State[R] ---------------------------------

assert_type(flow_state, State[FlowResult])
assert_type(flow_state.result, FlowResult)
assert_type(flow_state.result[weight], State[float])
assert_type(flow_state.result[weight].result, float)
assert_type(flow_state.result[label].result, str)
assert_type(flow_state.result[n].result, int)
assert_type(flow_state.result[xs].result, list[float])
assert_type(flow_state.result[fmt], State[str])  # indexing with the Task object itself
assert_type(flow_state.is_successful(), bool)
for each_task, each_state in flow_state.result.items():
    assert_type(each_task, Task[Any, Any])
    assert_type(each_state, State[Any])
assert_type(flow_state.result.get(weight), State[float] | None)
assert_type(flow_state.result.get(fmt), State[str] | None)
assert_type(flow_state.result.get(label, None), State[str] | None)
# Limitation: under strict equality mypy refuses `handle in flow_state.result` (a `float`
# among `Task` keys); test membership with `.get(handle) is not None`.
weight in flow_state.result  # type: ignore[comparison-overlap]
assert_type(flow_state.result.get(weight) is not None, bool)
as_text: str = flow_state.result[weight].result  # type: ignore[assignment]

# -- what mypy rejects ---------------------------------------------------------------------

with Flow("mistakes"):
    xs2 = load("data.csv")
    fmt(xs2)  # type: ignore[arg-type]  # an upstream output of the wrong type (list[float])
    fmt("heavy")  # type: ignore[arg-type]  # a constant of the wrong type
    fmt(1.0, units="g")  # type: ignore[call-arg]  # an unknown keyword
    total()  # type: ignore[call-arg]  # a missing argument
    v: str = double(4)  # type: ignore[assignment]  # a result read as the wrong type
    double(Parameter("s", default="x"))  # type: ignore[arg-type]  # a str parameter
    Parameter("required")  # type: ignore[call-overload]  # a required Parameter needs type=
    Parameter(default=1)  # type: ignore[call-overload]  # a Parameter needs a name
    # A default of another type than `type=` widens the parameter to `object` (a TypeVar
    # cannot demand equality), which no typed task accepts:
    fmt(1.0, unit=Parameter("u", default=10, type=str))  # type: ignore[arg-type]

# -- ordering-only edges -------------------------------------------------------------------
# `upstream_tasks=` cannot be a typed keyword next to the ParamSpec's keywords (mypy refuses a
# keyword parameter after `*args: P.args`), so mypy rejects it on a call. Typed code adds
# ordering edges with `flow.set_dependencies(...)` or `flow.add_edge(...)`, which take
# handles (their parameters are `object`).

with Flow("ordering") as ordering:
    first = double(1)
    second = double(2, upstream_tasks=[first])  # type: ignore[call-arg]
    third = double(3)
    ordering.set_dependencies(third, upstream_tasks=[first])
    ordering.add_edge(first, third)

# -- the handle is a stand-in for the value, for the type checker only --------------------


def unsound_on_purpose() -> None:
    """Using a handle as a value type-checks but raises HandleError at flow-build time."""
    with Flow("unsound"):
        assert_type(double(1).bit_length(), int)


# -- operators on handles build tasks at run time; for mypy they are the values' operators ----


@task
def prices() -> dict[str, float]:
    return {"apple": 1.5}


with Flow("operators") as operators:
    size = double(1)
    weights = load("data.csv")
    assert_type(size + 1, int)
    assert_type(1 + size, int)
    assert_type(size / 2, float)
    assert_type(size // 2, int)
    assert_type(2**size, Any)  # int ** int: a negative exponent gives a float
    assert_type((size + 1) * 2, int)
    assert_type(size < 3, bool)
    assert_type(size >= size, bool)
    assert_type(size & 1, int)
    assert_type((size < 3) | (size > 5), bool)
    assert_type(weights[0], float)
    assert_type(prices()["apple"], float)
    assert_type(double(size % 3), int)
    fmt(size * 1.5, unit="g")
    fmt(weights[0] + size)
    double(size / 2)  # type: ignore[arg-type]
    fmt(prices()["apple"], unit=size)  # type: ignore[arg-type]
    size + "1"  # type: ignore[operator]
    prices()[0]  # type: ignore[index]
    size[0]  # type: ignore[index]
