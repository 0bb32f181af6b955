"""Type tests: ``t.map``, ``unmapped``, ``flatten`` and ``apply_map``. Only type-checked.

A mapped call reads as ``list[R]``. Mapped positional arguments are checked against the
task's parameters: each must be an iterable of the parameter's type, or ``unmapped(x)`` with
``x`` of that type. Keyword arguments of ``.map`` are accepted unchecked.
"""

from __future__ import annotations

from typing import assert_type

from taskloom import Flow, Parameter, apply_map, flatten, task, unmapped


@task
def inc(x: int) -> int:
    return x + 1


@task
def label(x: int, unit: str) -> str:
    return f"{x}{unit}"


@task
def scaled(x: int, factor: int = 2) -> int:
    return x * factor


@task
def words() -> list[str]:
    return ["a", "b"]


@task
def nested() -> list[list[int]]:
    return [[1, 2], [3]]


@task
def total(xs: list[int]) -> int:
    return sum(xs)


def pipeline(x: int, unit: str) -> str:
    return label(inc(x), unit)


with Flow("typed mapping") as flow:
    n = Parameter("n", default=[1, 2, 3])
    assert_type(inc.map([1, 2, 3]), list[int])
    assert_type(inc.map(n), list[int])
    assert_type(inc.map(inc.map(n)), list[int])
    assert_type(label.map(n, unmapped("kg")), list[str])
    assert_type(label.map(n, ["a", "b"]), list[str])
    assert_type(scaled.map(n), list[int])  # a parameter with a default may be left out
    assert_type(inc.map(flatten(nested())), list[int])
    assert_type(inc.map(n, upstream_tasks=[words()]), list[int])
    assert_type(label.map(x=n, unit=unmapped("kg")), list[str])  # keywords: unchecked
    assert_type(total(inc.map(n)), int)  # a reducer takes the list
    assert_type(apply_map(pipeline, n, unmapped("kg")), list[str])

    inc.map(words())  # type: ignore[arg-type]  # list[str] into an int parameter
    inc.map(["1"])  # type: ignore[list-item]
    label.map(n, unmapped(3))  # type: ignore[arg-type]  # unmapped(x) has the parameter's type
    label.map(n, [1, 2])  # type: ignore[list-item]
    inc.map(flatten(words()))  # type: ignore[arg-type]  # flatten needs a list of lists
    label.map(n)  # type: ignore[call-overload]  # `unit` is missing
