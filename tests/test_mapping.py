"""Mapping (API.md Part 2, "Mapping"): ``t.map``, ``unmapped``, ``flatten``, ``apply_map``,
children as full task runs, on every executor. The scenarios follow Prefect Core 1.4.1's
(``prefect1-semantics.md`` §8.6, G84-G96) except where API.md differs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import taskloom
from taskloom import runner
from taskloom import Flow, Parameter, apply_map, flatten, signals, task, triggers, unmapped
from taskloom.caching import MemoryCacheStore
from taskloom.errors import FlowDefinitionError
from taskloom.executors import Executor
from taskloom.states import Failed, Mapped, Running, Skipped, State, Success, TriggerFailed

from ._helpers import as_task, in_process, kind, lines, record


def children(state: object) -> list[str]:
    """The kinds of a mapped task's children's states."""
    assert isinstance(state, Mapped), state
    return [kind(s) for s in state.map_states]

NO_WAIT = dt.timedelta(0)


@task
def inc(x: int) -> int:
    return x + 1


@task
def inv(x: int) -> int:
    return 6 // (x - 2)


@task
def add(x: int, y: int) -> int:
    return x + y


@task
def pair(a: int, b: str) -> str:
    return f"{a}{b}"


@task
def total(xs: list[int]) -> int:
    return sum(xs)


@task
def numbers(n: int) -> list[int]:
    return list(range(1, n + 1))


@task
def maybe_skip(x: int) -> int:
    if x == 2:
        raise signals.SKIP("two")
    return x


@task(trigger=triggers.always_run)
def report(xs: list[Any]) -> list[str]:
    return [type(x).__name__ for x in xs]


@task
def where(x: int) -> tuple[int, Any, Any]:
    return (x, taskloom.context.map_index, taskloom.context.task_full_name)


def test_map_over_a_list_gives_a_mapped_parent_and_a_reduce_gets_the_list(executor: Executor) -> None:
    with Flow("map-basic") as flow:
        m = inc.map([1, 2, 3])
        t = total(m)
    state = flow.run(executor=executor)
    parent = state.result[m]
    assert isinstance(parent, Mapped) and parent.is_successful()
    assert parent.result == [2, 3, 4]
    assert [kind(s) for s in parent.map_states] == ["Success"] * 3
    assert state.result[t].result == 9
    assert type(state) is Success


class _Ahead:
    """An observer of the most runs handed to the executor and not finished at once."""

    def __init__(self) -> None:
        self.slots: int | None = None
        self.out: set[int] = set()
        self.most = 0

    def run_started(self, flow_name: str, run_id: str, total: int) -> None:
        pass

    def slots_known(self, slots: int) -> None:
        self.slots = slots

    def task_changed(self, key: int, task_name: str, state: State[Any]) -> None:
        if isinstance(state, Running):
            self.out.add(key)
            self.most = max(self.most, len(self.out))
        elif state.is_finished():
            self.out.discard(key)

    def run_finished(self, state: State[Any]) -> None:
        pass


def test_a_wide_map_is_handed_over_a_slice_at_a_time(
    executor: Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The children of a map wider than what the executor's slots take ahead
    (``runner.AHEAD_PER_SLOT`` each) are decided and handed over a slice at a time, so the
    run holds the runs and inputs of that many, not of every child."""
    monkeypatch.setattr(runner, "AHEAD_PER_SLOT", 8)
    observer = _Ahead()
    with Flow("map-wide") as flow:
        t = total(inc.map(list(range(200))))
    state = flow.run(executor=executor, progress=observer)
    assert state.result[t].result == sum(range(1, 201))
    assert observer.slots is not None
    assert 0 < observer.most <= 8 * observer.slots, (observer.most, observer.slots)


def test_map_over_a_task_result_a_parameter_and_a_map(executor: Executor) -> None:
    with Flow("map-sources") as flow:
        n = Parameter("n", default=3)
        from_task = inc.map(numbers(n))
        from_parameter = inc.map(Parameter("xs", default=[10, 20]))
        twice = inc.map(inc.map(numbers(n)))
    state = flow.run(parameters={"n": 4}, executor=executor)
    assert state.result[from_task].result == [2, 3, 4, 5]
    assert state.result[from_parameter].result == [11, 21]
    assert state.result[twice].result == [3, 4, 5, 6]


def test_each_child_knows_its_map_index_and_full_name(executor: Executor) -> None:
    with Flow("map-context") as flow:
        m = where.map([7, 8])
    state = flow.run(executor=executor)
    assert state.result[m].result == [(7, 0, "where[0]"), (8, 1, "where[1]")]


def test_zip_shortest_unmapped_and_flatten(executor: Executor) -> None:
    with Flow("map-args") as flow:
        zipped = pair.map([1, 2, 3], ["a", "b"])
        broadcast = add.map([1, 2, 3], unmapped(10))
        broadcast_task = add.map(numbers(2), unmapped(inc(9)))
        flat = inc.map(flatten([[1, 2], [3]]))
    state = flow.run(executor=executor)
    assert state.result[zipped].result == ["1a", "2b"]
    assert state.result[broadcast].result == [11, 12, 13]
    assert state.result[broadcast_task].result == [11, 12]
    assert state.result[flat].result == [2, 3, 4]


@task
def chunks() -> list[list[int]]:
    return [[1, 2], [], [3]]


@task
def duplicate(x: int) -> list[int]:
    return [x, x]


def test_flatten_a_mapped_tasks_lists(executor: Executor) -> None:
    with Flow("map-flatten-children") as flow:
        doubled = duplicate.map([1, 2])
        flat = inc.map(flatten(doubled))
        from_chunks = inc.map(flatten(chunks()))
    state = flow.run(executor=executor)
    assert state.result[flat].result == [2, 2, 3, 3]
    assert state.result[from_chunks].result == [2, 3, 4]


def test_mapping_over_nothing_gives_zero_children_and_a_reduce_gets_an_empty_list(executor: Executor) -> None:
    with Flow("map-empty") as flow:
        m = inc.map(numbers(0))
        t = total(m)
        again = inc.map(m)
    state = flow.run(executor=executor)
    parent = state.result[m]
    assert isinstance(parent, Mapped) and parent.map_states == [] and parent.result == []
    assert state.result[t].result == 0
    assert state.result[again].result == []
    assert type(state) is Success


def test_a_failed_child_does_not_stop_its_siblings_and_fails_the_flow(executor: Executor) -> None:
    with Flow("map-fail") as flow:
        m = inv.map([1, 2, 3])
        downstream = inc.map(m)
        t = total(m)
    state = flow.run(executor=executor)
    parent = state.result[m]
    assert children(parent) == ["Success", "Failed", "Success"]
    failed_result: object = parent.result[1]  # a failed child's entry is its exception
    assert isinstance(failed_result, ZeroDivisionError)
    assert children(state.result[downstream]) == ["Success", "TriggerFailed", "Success"]
    assert isinstance(state.result[t], TriggerFailed)
    assert type(state) is Failed


def test_always_run_reduce_receives_the_failed_childs_exception(executor: Executor) -> None:
    with Flow("map-always") as flow:
        r = report(inv.map([1, 2, 3]))
    state = flow.run(executor=executor)
    assert state.result[r].result == ["int", "ZeroDivisionError", "int"]


def test_a_mapped_reference_task_fails_the_flow_only_when_it_is_a_reference(executor: Executor) -> None:
    with Flow("map-reference") as flow:
        m = inv.map([1, 2, 3])
        ok = inc(1)
    flow.set_reference_tasks([ok])
    assert type(flow.run(executor=executor)) is Success
    flow.set_reference_tasks([m])
    assert type(flow.run(executor=executor)) is Failed


def test_a_skip_in_one_child_skips_that_index_downstream_and_the_reduce(executor: Executor) -> None:
    with Flow("map-skip") as flow:
        first = maybe_skip.map([1, 2, 3])
        second = inc.map(first)
        t = total(second)
    state = flow.run(executor=executor)
    assert children(state.result[first]) == ["Success", "Skipped", "Success"]
    assert children(state.result[second]) == ["Success", "Skipped", "Success"]
    assert isinstance(state.result[t], Skipped)
    assert type(state) is Success


@task
def boom() -> list[int]:
    raise ValueError("no list")


@task
def five() -> int:
    return 5


def test_mapping_over_a_failed_upstream_or_a_non_iterable_fails_the_parent(executor: Executor) -> None:
    with Flow("map-unmappable") as flow:
        over_failed = inc.map(boom())
        after_failed = total(over_failed)
        over_int = inc.map(five())  # type: ignore[call-overload]  # mypy sees the mistake too
    state = flow.run(executor=executor)
    assert type(state.result[over_failed]) is Failed
    assert "No upstream states can be mapped over" in str(state.result[over_failed].message)
    assert isinstance(state.result[after_failed], TriggerFailed)
    failed = state.result[over_int]
    assert type(failed) is Failed
    assert "'inc'" in str(failed.message) and "int" in str(failed.message) and "'x'" in str(failed.message)


@task(trigger=triggers.all_finished)
def cleanup(x: int) -> str:
    return f"cleaned {x}"


def test_a_failed_task_among_what_a_map_maps_over_is_each_childs_upstream(executor: Executor) -> None:
    """As in Prefect 1.x, a map fails whole only when nothing it maps over succeeded; a
    failed upstream task it maps over beside a list (a data argument or an ordering edge
    of ``upstream_tasks``) is each child's upstream state: the children decide by their
    own trigger (an ``all_finished`` cleanup runs for every element)."""
    with Flow("map-beside-failed") as flow:
        failed = boom()
        cleaned = cleanup.map([1, 2], upstream_tasks=[failed])
        ordered = inc.map([1, 2], upstream_tasks=[failed])
        added = add.map([1, 2], failed)
        cleaned_after = cleanup.map(failed)  # nothing else to map over: fails whole
    state = flow.run(executor=executor)
    assert state.result[cleaned].result == ["cleaned 1", "cleaned 2"]
    assert children(state.result[ordered]) == ["TriggerFailed", "TriggerFailed"]
    assert children(state.result[added]) == ["TriggerFailed", "TriggerFailed"]
    assert type(state.result[cleaned_after]) is Failed
    assert "No upstream states can be mapped over" in str(state.result[cleaned_after].message)


@task
def explode(x: object) -> list[int]:
    if x == "skip":
        raise signals.SKIP("skip me")
    if x == "one":
        return 7  # type: ignore[return-value]  # not a list: flatten passes it as one element
    return list(range(int(x)))  # type: ignore[call-overload]  # "x" fails


def test_flatten_over_a_mapped_task_keeps_each_childs_state(executor: Executor) -> None:
    """``flatten`` over a mapped task: a child that failed or was skipped is one element,
    and the child downstream sees its state (``TriggerFailed``, ``Skipped``) while the
    others run; a child's result that is not a list is one element (Prefect 1.x)."""
    with Flow("map-flatten-states") as flow:
        made = explode.map([1, "x", 2, "skip", "one"])
        incremented = inc.map(flatten(made))
        described = describe.map(flatten(made))  # all_finished: it runs after the failure
    state = flow.run(executor=executor)
    assert children(state.result[made]) == ["Success", "Failed", "Success", "Skipped", "Success"]
    got = state.result[incremented]
    assert children(got) == ["Success", "TriggerFailed", "Success", "Success", "Skipped", "Success"]
    assert [got.result[k] for k in (0, 2, 3, 5)] == [1, 1, 2, 8]
    assert state.result[described].result[1] == "ValueError"  # the failure's exception


@task(trigger=triggers.all_finished)
def describe(x: object) -> str:
    return type(x).__name__


def test_a_map_over_a_failed_task_and_only_an_ordering_edge_fails(executor: Executor) -> None:
    """An ordering edge to a plain task gives no elements: beside a failed task mapped
    over, nothing is left to map over (not a map of no children, which reads as success)."""
    with Flow("map-failed-and-order") as flow:
        over = inc.map(boom(), upstream_tasks=[five()])
        only_order = five.map(upstream_tasks=[five()])  # nothing at all to map over
    state = flow.run(executor=executor)
    for mapped in (over, only_order):
        assert type(state.result[mapped]) is Failed and state.is_failed()
        assert "No upstream states can be mapped over" in str(state.result[mapped].message)


@task
def generated(n: int) -> Iterator[int]:
    return (i * i for i in range(n))


def test_a_generator_result_is_materialised_once_in_order(executor: Executor) -> None:
    with Flow("map-generator") as flow:
        g = generated(4)
        m = inc.map(g)
    state = flow.run(executor=executor)
    if in_process(executor):
        assert state.result[m].result == [1, 2, 5, 10]
    else:  # a generator cannot travel back from a worker: that fails its own task, by name
        assert type(state.result[g]) is Failed
        assert "'generated'" in str(state.result[g].message) and "generator" in str(state.result[g].message)
        assert type(state.result[m]) is Failed


@task(max_retries=1, retry_delay=NO_WAIT)
def flaky_child(log: str, x: int) -> int:
    record(log, f"{x} {taskloom.context.task_run_count}")
    if x == 2 and taskloom.context.task_run_count == 1:
        raise ValueError("first try fails")
    return x * 10


def test_only_the_failed_child_retries_with_its_own_inputs(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    with Flow("map-retry") as flow:
        m = flaky_child.map(unmapped(log), [1, 2, 3])
    state = flow.run(executor=executor)
    assert state.result[m].result == [10, 20, 30]
    assert sorted(lines(log)) == ["1 1", "2 1", "2 2", "3 1"]




@task(cache_for=dt.timedelta(hours=1), cache_validator=taskloom.cache_validators.all_inputs)
def cached_square(log: str, x: int) -> int:
    record(log, str(x))
    return x * x


@task(cache_for=dt.timedelta(hours=1))
def cached_by_duration(x: int) -> int:
    return x * x


def test_the_output_cache_keeps_each_child_apart(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    store = MemoryCacheStore()
    with Flow("map-cache") as flow:
        m = cached_square.map(unmapped(log), [1, 2, 3])
        d = cached_by_duration.map([1, 2, 3])
    first = flow.run(executor=executor, cache_store=store)
    second = flow.run(executor=executor, cache_store=store)
    assert first.result[m].result == second.result[m].result == [1, 4, 9]
    # duration_only: Prefect 1.x gave [1, 1, 1] here (every child shared one entry).
    assert second.result[d].result == [1, 4, 9]
    assert children(second.result[m]) == ["Cached"] * 3
    assert sorted(lines(log)) == ["1", "2", "3"]


@task
def slow_then_fast(log: str, x: int) -> int:
    record(log, f"a{x}")
    return x


@task
def second_stage(log: str, x: int) -> int:
    record(log, f"b{x}")
    return x


def test_map_over_map_runs_child_by_child(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    with Flow("map-of-map") as flow:
        a = slow_then_fast.map(unmapped(log), [1, 2, 3])
        b = second_stage.map(unmapped(log), a)
    state = flow.run(executor=executor)
    assert state.result[b].result == [1, 2, 3]
    seen = lines(log)
    for x in (1, 2, 3):
        assert seen.index(f"a{x}") < seen.index(f"b{x}")


def test_upstream_tasks_on_a_map_order_it(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")

    @task
    def first() -> None:
        record(log, "first")

    @task
    def child(x: int) -> int:
        record(log, f"child {x}")
        return x

    with Flow("map-upstream") as flow:
        f = first()
        m = child.map([1, 2], upstream_tasks=[f])
    state = flow.run(executor=executor)
    assert state.result[m].result == [1, 2]
    assert lines(log)[0] == "first"


def double_then_add(x: int, y: int) -> int:
    return add(inc(x), y)


def test_apply_map_maps_a_function_that_builds_tasks(executor: Executor) -> None:
    with Flow("apply-map") as flow:
        out = apply_map(double_then_add, [1, 2, 3], unmapped(100))
        t = total(out)
    state = flow.run(executor=executor)
    assert state.result[out].result == [102, 103, 104]
    assert state.result[t].result == 309
    mapped = [t for t in flow.tasks if flow.mapped_arguments(t) is not None]
    assert sorted(t.name for t in mapped) == ["add", "inc"]


def test_map_misuse_is_reported_before_any_task_runs() -> None:
    with pytest.raises(FlowDefinitionError, match="outside a flow"):
        inc.map([1, 2])
    with Flow("misuse") as flow:
        with pytest.raises(FlowDefinitionError, match=r"'add'.*unmapped.*\.map"):
            add(unmapped(1), 2)  # type: ignore[arg-type]
        with pytest.raises(FlowDefinitionError, match=r"'inc'.*flatten"):
            inc(flatten([[1]]))  # type: ignore[arg-type]
        with pytest.raises(FlowDefinitionError, match="nothing to map over"):
            inc.map(unmapped(1))
    with pytest.raises(FlowDefinitionError, match="outside a flow"):
        apply_map(double_then_add, [1], unmapped(2))
    assert not flow.tasks


def test_a_mapped_task_is_drawn_as_one_node_marked_mapped() -> None:
    with Flow("map-picture") as flow:
        total(inc.map([1, 2]))
    dot = flow.visualize()
    assert isinstance(dot, str)
    assert "inc" in dot and "mapped" in dot


def test_handles_of_a_map_are_tasks() -> None:
    with Flow("map-handle") as flow:
        m = inc.map([1])
    assert flow.mapped_arguments(as_task(m)) == {"x": False}


@task
def picky(log: str, ok_file: str, x: int) -> int:
    record(log, str(x))
    if x % 4 == 1 and not Path(ok_file).exists():
        raise ValueError(f"{x} is not ready")
    return x * 2


def test_the_journal_keeps_every_child_and_a_resume_runs_only_the_failed_ones(
    tmp_path: Path, executor: Executor
) -> None:
    from taskloom.journal import default_journal
    from taskloom.resume import resume

    log, ok = str(tmp_path / "log"), str(tmp_path / "ok")
    with Flow("map-resume") as flow:
        doubled = picky.map(unmapped(log), unmapped(ok), list(range(10)))
        t = total(doubled)
    first = flow.run(executor=executor)
    assert type(first) is Failed
    assert children(first.result[doubled]).count("Failed") == 3
    assert first.run_id is not None
    record = default_journal().load(first.run_id)
    assert [r.name for r in record.tasks] == ["picky", "total"]
    kids = record.children[0]
    assert [k.name for k in kids] == [f"picky[{i}]" for i in range(10)]
    assert [k.state for k in kids].count("Failed") == 3 and kids[1].inputs == {"log": log, "ok_file": ok, "x": 1}

    Path(ok).touch()
    Path(log).unlink()
    second = resume(first.run_id, flow=flow, executor=executor)
    assert sorted(lines(log), key=int) == ["1", "5", "9"]  # only the three that failed
    assert second.result[doubled].result == [x * 2 for x in range(10)]
    assert second.result[t].result == 90
    assert type(second) is Success


@task(trigger=triggers.manual_only)
def approve(x: int) -> int:
    return x * 100


def test_paused_children_wait_for_a_resume_that_lets_them_through(executor: Executor) -> None:
    from taskloom.journal import default_journal
    from taskloom.resume import resume

    with Flow("map-pause") as flow:
        approved = approve.map([1, 2, 3])
        t = total(approved)
    first = flow.run(executor=executor)
    assert first.is_paused() and "approve[0]" in str(first.message)
    assert first.run_id is not None
    only_two = resume(first.run_id, flow=flow, tasks=["approve[1]"], executor=executor)
    assert only_two.is_paused()
    assert only_two.run_id is not None
    # The mapped task is Mapped, as in Prefect, with its children as they stand: the paused
    # ones with the inputs they will run from.
    waiting = only_two.result[approved]
    assert isinstance(waiting, Mapped)
    assert [type(c).__name__ for c in waiting.map_states] == ["Paused", "Success", "Paused"]
    assert [c.cached_inputs for c in waiting.map_states[::2]] == [{"x": 1}, {"x": 3}]
    kids = default_journal().load(only_two.run_id).children[0]
    assert [k.state for k in kids] == ["Paused", "Success", "Paused"]
    rest = resume(only_two.run_id, flow=flow, executor=executor)
    assert rest.result[approved].result == [100, 200, 300]
    assert rest.result[t].result == 600
    assert type(rest) is Success


def test_a_mapped_state_seeded_by_hand_is_mapped_over_child_by_child(executor: Executor) -> None:
    """A ``Mapped`` given in ``task_states`` with children and no result (as Prefect 1.x
    users build one) gives its children's results to what maps over it or takes it whole,
    and each child's state to the child downstream; a child that did not finish well runs
    again (a resume's rule), the others do not."""
    with Flow("map-seeded") as flow:
        made = inc.map(numbers(3))
        mapped_over = inc.map(made)
        whole = total(made)
    seeded = Mapped(map_states=[Success(result=5), Skipped(), Success(result=7)])
    state = flow.run(executor=executor, task_states={made: seeded})
    assert children(state.result[mapped_over]) == ["Success", "Skipped", "Success"]
    assert state.result[mapped_over].result[::2] == [6, 8]
    assert kind(state.result[whole]) == "Skipped"  # a skipped child skips the reduce
    again = Mapped(map_states=[Success(result=5), Failed(result=ValueError("no")), Success(result=7)])
    state = flow.run(executor=executor, task_states={made: again})
    assert state.result[made].result == [5, 3, 7]  # child 1 ran again, from its element
    assert state.result[mapped_over].result == [6, 4, 8]
    assert state.result[whole].result == 15


def test_a_mapped_ordering_edge_pairs_children_and_bounds_their_number(executor: Executor) -> None:
    with Flow("map-ordering") as flow:
        first = inc.map([1, 2])
        second = inc.map([10, 20, 30], upstream_tasks=[first])  # child i after first's child i
        third = inc.map([5, 6, 7], upstream_tasks=[unmapped(first)])  # after all of first
    state = flow.run(executor=executor)
    assert state.result[second].result == [11, 21]  # zip-shortest counts the ordering edge
    assert state.result[third].result == [6, 7, 8]


@task
def pauses_on_one(x: int) -> int:
    if x == 1:
        raise signals.PAUSE("wait for x=1")
    return x


def test_a_mapped_task_with_a_paused_child_shows_its_children(executor: Executor) -> None:
    """As in Prefect 1.x, ``flow.run``'s result holds a ``Mapped`` state for a mapped task
    whose child paused, with every child's state: the paused one with its inputs."""
    with Flow("map-paused-child") as flow:
        parts = pauses_on_one.map([0, 1, 2])
        t = total(parts)
    state = flow.run(executor=executor)
    assert state.is_paused()
    mapped = state.result[parts]
    assert isinstance(mapped, Mapped), mapped
    assert [type(c).__name__ for c in mapped.map_states] == ["Success", "Paused", "Success"]
    assert mapped.map_states[1].cached_inputs == {"x": 1}
    assert [mapped.map_states[i].result for i in (0, 2)] == [0, 2]
    assert not state.result[t].is_finished()
