"""Type tests: ``@task``, ``Task[P, R]`` and class-based tasks. Only type-checked, never run.

``assert_type`` lines must be accepted; a line ending in ``# type: ignore[code]`` must be
rejected with that code (``warn_unused_ignores`` fails mypy once a rejection stops).
"""

from __future__ import annotations

from datetime import timedelta
from typing import assert_type

from taskloom import Flow, Task, task, triggers


@task
def add(x: int, y: int = 1) -> int:
    return x + y


@task(name="format", max_retries=2, retry_delay=timedelta(seconds=1), tags=["io"])
def fmt(value: float, unit: str = "kg", *, digits: int = 2) -> str:
    return f"{value:.{digits}f} {unit}"


@task()
def nothing() -> None:
    return None


# -- the bare and configured decorator forms both give Task[P, R] -----------------------------

# (`assert_type` would have to spell the parameter names, which the syntax cannot: mypy shows
# `add` as `Task[[Arg(int, 'x'), DefaultArg(int, 'y')], int]`. Assignments check the shape,
# and the calls below check the names and defaults.)
add_as_task: Task[[int, int], int] = add
fmt_as_task: Task[[float, str], str] = fmt
nothing_as_task: Task[[], None] = nothing
wrong_result: Task[[int, int], str] = add  # type: ignore[assignment]
wrong_params: Task[[str], int] = add  # type: ignore[assignment]

# -- `t.run(...)` is typed as the function: names, defaults and keyword-only parameters ---------

assert_type(add.run(1), int)
assert_type(add.run(1, 2), int)
assert_type(add.run(y=2, x=1), int)
assert_type(fmt.run(2.5), str)
assert_type(fmt.run(value=2, unit="g", digits=0), str)
assert_type(nothing.run(), None)

add.run("1")  # type: ignore[arg-type]
add.run()  # type: ignore[call-arg]
add.run(1, z=2)  # type: ignore[call-arg]
add.run(1, 2, 3)  # type: ignore[call-arg]
fmt.run(2.5, "g", 3)  # type: ignore[call-arg]  # digits is keyword-only
text: str = add.run(1)  # type: ignore[assignment]

# -- decorator options are checked too -------------------------------------------------------


# A rejected decorator call also makes mypy call the decorator untyped, hence two codes.
@task(max_retry=2)  # type: ignore[call-overload, untyped-decorator]
def misspelt_option(x: int) -> int:
    return x


@task(retry_delay=10)  # type: ignore[call-overload, untyped-decorator]
def seconds_not_timedelta(x: int) -> int:
    return x


@task(timeout=2.5, trigger=triggers.always_run, cache_for=timedelta(hours=1), cache_key="k")
def all_options(x: int) -> int:
    return x


@task(max_retries=1, retry_delay=timedelta(0), retry_on=(KeyError, OSError),
      task_run_name="load-{x}", slug="load")
def prefect_options(x: int) -> int:
    return x


@task(task_run_name=lambda **fields: f"load-{fields['x']}")
def named_by_callable(x: int) -> int:
    return x


@task(retry_on=KeyError("x"))  # type: ignore[call-overload, untyped-decorator]
def retry_on_an_instance(x: int) -> int:
    return x


@task(task_run_name=3)  # type: ignore[call-overload, untyped-decorator]
def run_name_not_a_string(x: int) -> int:
    return x


assert_type(add.inputs()["x"]["required"], bool)


task(42)  # type: ignore[call-overload]

# -- a Task has no attributes beyond its API: Task.__getattr__ is hidden from mypy -------------

assert_type(add.name, str)
assert_type(add.max_retries, int)
add.nonexistent  # type: ignore[attr-defined]

# -- class-based tasks -----------------------------------------------------------------------


class Add(Task[[int, int], int]):
    def run(self, x: int, y: int) -> int:
        return x + y


class Constant(Task[[], str]):
    def __init__(self, value: str) -> None:
        super().__init__(name="constant")
        self.value = value

    def run(self) -> str:
        return self.value


adder = Add(name="adder", max_retries=1, retry_delay=timedelta(0))
constant = Constant("x")
assert_type(adder.run(1, 2), int)
assert_type(adder.run(x=1, y=2), int)  # the subclass's own `run` keeps its names
assert_type(constant.run(), str)
adder.run(1, "2")  # type: ignore[arg-type]
Add(max_retries="2")  # type: ignore[arg-type]
Add(retries=2)  # type: ignore[call-arg]


class WrongRun(Task[[int], int]):
    def run(self, x: str) -> int:  # type: ignore[override]
        return len(x)


with Flow("class-based") as flow:
    total = adder(1, 2)
    assert_type(total, int)
    assert_type(adder(total, total), int)
    assert_type(constant(), str)
    assert_type(add(adder(1, 2), y=constant.run().count("x")), int)
    adder(1, constant())  # type: ignore[arg-type]
    # `Task[[int, int], int]` spells P without names, so calls wiring a class-based task
    # are positional; give the class a `run` and call it positionally.
    adder(x=1, y=2)  # type: ignore[call-arg]

# -- nout: how many values a task returns (so its handle unpacks) ------------------------------


@task(nout=2)
def split(x: int) -> list[int]:
    return [x, x]


@task
def pair(x: int) -> tuple[int, str]:
    return x, str(x)


@task(nout="2")  # type: ignore[call-overload, untyped-decorator]
def nout_not_a_number(x: int) -> int:
    return x


assert_type(split.nout, int | None)
Task(nout=2)
Task(nout="2")  # type: ignore[arg-type]

with Flow("unpacking") as unpacking:
    # A call reads as its result, so unpacking type-checks as the value's own unpacking.
    n, label = pair(1)
    assert_type(n, int)
    assert_type(label, str)
    low, high = split(3)
    assert_type(low, int)
    add(n, label)  # type: ignore[arg-type]
    one, two, three = pair(1)  # type: ignore[misc]
