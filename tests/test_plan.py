"""The compiled plan: the one place for order and closure queries on a flow's graph."""

from __future__ import annotations

import inspect
from typing import Any

from taskloom import Flow, Task, task
from taskloom.plan import plan
from taskloom.task import _PLANNED_OPTIONS


@task
def leaf() -> int:
    return 1


@task
def both(a: int, b: int) -> int:
    return a + b


@task
def inc(x: int) -> int:
    return x + 1


def _diamond() -> Flow:
    """0 top -> (1 left, 2 right) -> 3 bottom -> 4 tail; 5 alone."""
    with Flow("diamond") as flow:
        top = leaf()
        bottom = both(inc(top), inc(top))
        inc(bottom)
        leaf()
    return flow


def test_order_puts_every_task_after_its_upstream_tasks_depth_first() -> None:
    flow = _diamond()
    compiled = plan(flow)
    assert compiled.order() == [0, 1, 2, 3, 4, 5]
    assert flow.sorted_tasks() == [compiled.nodes[i].task for i in compiled.order()]
    position = {i: n for n, i in enumerate(compiled.order())}
    for node_index, node in enumerate(compiled.nodes):
        assert all(position[u] < position[node_index] for u in node.upstream)


def test_downstream_closure() -> None:
    compiled = plan(_diamond())
    assert compiled.downstream_closure([1]) == [False, True, False, True, True, False]
    assert compiled.downstream_closure([0]) == [True, True, True, True, True, False]
    assert compiled.downstream_closure([]) == [False] * 6


def test_upstream_lists_and_reuse_until_the_flow_changes() -> None:
    flow = _diamond()
    compiled = plan(flow)
    assert compiled.upstream_lists() == [[], [0], [0], [1, 2], [3], []]
    assert plan(flow) is compiled
    flow.add_task(leaf.copy())
    assert plan(flow) is not compiled and len(plan(flow).nodes) == 7


def test_compiling_reads_no_option_that_is_not_planned() -> None:
    """A plan is compiled once per flow version; a task option changed after that is seen
    only if it is in ``task._PLANNED_OPTIONS`` (the plan then reads them again). So every
    option compiling reads must be listed there: recorded here on a task that notes each
    attribute read while ``plan`` compiles."""
    reads: set[str] = set()

    class Noted(Task[Any, int]):
        def run(self, x: int = 0) -> int:
            return x

        def __getattribute__(self, name: str) -> Any:
            reads.add(name)
            return super().__getattribute__(name)

    with Flow("noted") as flow:
        Noted(name="b")(Noted(name="a")())
    reads.clear()
    plan(flow)
    options = set(inspect.signature(Task.__init__).parameters) - {"self"}
    options |= set(vars(flow.sorted_tasks()[0]))
    read_options = reads & options
    assert read_options, reads  # the recording works: compiling reads the trigger, at least
    unplanned = read_options - _PLANNED_OPTIONS
    assert not unplanned, f"compiling reads {unplanned}, not in task._PLANNED_OPTIONS"
