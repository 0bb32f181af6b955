"""The compiled plan: the one place for order and closure queries on a flow's graph."""

from __future__ import annotations

from taskloom import Flow, task
from taskloom.plan import plan


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
