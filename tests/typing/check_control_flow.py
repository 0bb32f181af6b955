"""Type tests: ``case``, ``merge``, ``switch``, ``ifelse`` and ``FilterTask``. Only type-checked.

``merge(a, b)`` reads as the union of its branches' result types; ``case`` takes a handle;
``switch``'s keys must have the condition's type.
"""

from __future__ import annotations

from typing import Any, assert_type

from taskloom import Flow, case, merge, task
from taskloom.tasks.control_flow import FilterTask, ifelse, switch


@task
def number() -> int:
    return 1


@task
def word() -> str:
    return "a"


@task
def flag() -> bool:
    return True


@task
def numbers() -> list[int]:
    return [1, 2]


@task
def inc(x: int) -> int:
    return x + 1


def accepted() -> None:
    with Flow("f"):
        cond = flag()
        with case(cond, True) as block:
            a = number()
        with case(cond, False):
            b = word()
        assert_type(block, case)
        assert_type(merge(a), int)
        assert_type(merge(a, b), int | str)
        assert_type(merge(a, b, cond), int | str | bool)
        assert_type(merge(a, a, a, a, a, a, a), int)
        n = number()
        switch(n, {1: a, 2: b})
        ifelse(cond, a, b)
        ifelse(cond, a, None)
        kept = FilterTask()(inc.map(numbers()))
        assert_type(kept, list[Any])


def rejected() -> None:
    with Flow("f"):
        a, b = number(), word()
        merge()  # type: ignore[call-overload]  # nothing to merge
        x: int = merge(a, b)  # type: ignore[assignment]  # int | str is not int
        switch(a, {"one": b})  # type: ignore[misc]  # keys must have the condition's type
        switch(a, [b])  # type: ignore[arg-type]  # cases is a dict
        ifelse(a, b)  # type: ignore[call-arg]  # both branches are needed (None for none)
        FilterTask()(a)  # type: ignore[arg-type]  # filters a list (a mapped result)
        with case(a):  # type: ignore[call-arg]  # the value compared with is needed
            pass
        del x
