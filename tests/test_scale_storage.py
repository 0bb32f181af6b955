"""How a large flow is stored (issue 16, "Scale"): what a call, an edge and a compiled task
cost, and that the compact storage behaves as the plain one did.

A flow of a million calls must fit in memory: a call's copy shares its template's options,
the flow keeps no container for a task that has no edges or arguments, and the plan shares
what its nodes have in common. These tests check that structure (and the garbage collector
policy of a run), never a time or a process's memory.
"""

from __future__ import annotations

import gc
import os
import pickle
import sqlite3
import subprocess
import sys
import time
import traceback
import tracemalloc
from pathlib import Path
from collections.abc import Callable, Mapping
from typing import Any

import cloudpickle
import pytest
import taskloom
from taskloom import Edge, Flow, Parameter, task
from taskloom import _run_args, runner
from taskloom import journal as journal_module
from taskloom import recording
from taskloom._home import Signer
from taskloom.errors import FlowDefinitionError
from taskloom.executors import Executor, LocalExecutor
from taskloom.journal import Journal
from taskloom.plan import MappedNode, Node, plan
from taskloom.states import State, Success
from taskloom.trace import COLUMNS, ChildTrace, TaskTrace, outcome, record

from ._cli import query
from ._helpers import RaisesWhenATaskFinishes, as_task, in_process, kind, run_records


@task
def noop() -> None:
    return None


@task
def total(xs: list[Any]) -> int:
    return len(xs)


@task(nout=2)
def pair(x: int) -> tuple[int, int]:
    return x, x


def test_the_copies_of_a_task_share_one_dict_of_options() -> None:
    with Flow("f"):
        a, b = as_task(noop()), as_task(noop())
    assert vars(a) is vars(b)
    assert vars(a) is not vars(noop)
    assert a.name == b.name == "noop" and a.trigger is noop.trigger


def test_a_changed_copy_gets_options_of_its_own() -> None:
    with Flow("f"):
        a, b = as_task(noop()), as_task(noop())
    a.max_retries = 3
    assert (a.max_retries, b.max_retries, noop.max_retries) == (3, 0, 0)
    del a.max_retries
    assert "max_retries" not in vars(a) and b.max_retries == 0


def test_a_changed_template_is_seen_by_later_copies_only() -> None:
    @task
    def work() -> int:
        return 1

    with Flow("f") as flow:
        before = as_task(work())
        work.max_retries = 2
        after = as_task(work())
    assert (before.max_retries, after.max_retries) == (0, 2)
    assert vars(before) is not vars(after)
    state = flow.run(journal=False)
    assert state.is_successful()


def test_copies_run_with_the_options_they_share_on_every_executor(executor: Executor) -> None:
    # Copies made before their template changed share one dict of options, the template
    # another: each runs with its own (a worker's task is rebuilt from what travels).
    @task
    def tags_of() -> list[str]:
        return sorted(taskloom.context.task_tags)

    with Flow("f") as flow:
        before = [as_task(tags_of()) for _ in range(3)]
        tags_of.tags = frozenset({"new"})
        after = [as_task(tags_of()) for _ in range(2)]
    state = flow.run(executor=executor, journal=False)
    assert [state.result[t].result for t in before + after] == [[], [], [], ["new"], ["new"]]


def test_a_mapped_copy_of_a_task_with_nout_does_not_change_the_others() -> None:
    with Flow("f") as flow:
        pair(1)
        mapped = as_task(pair.map([1, 2]))
        again = as_task(pair(3))
    assert mapped.nout is None
    assert pair.nout == 2 and again.nout == 2 and flow.arguments(again) == {"x": 3}


def test_a_copy_pickles_as_a_copy_of_its_template() -> None:
    with Flow("f"):
        a = as_task(noop())
        changed = as_task(noop())
    changed.max_retries = 4
    again = pickle.loads(cloudpickle.dumps(a))
    assert again.name == "noop" and again.max_retries == 0
    assert pickle.loads(cloudpickle.dumps(changed)).max_retries == 4
    # What travels is options, not the bookkeeping of shared copies.
    template = pickle.loads(cloudpickle.dumps(noop))
    assert vars(template).keys() == vars(noop).keys() - {"_copy_options"}


def test_a_call_costs_a_fraction_of_what_a_copied_dict_of_options_did() -> None:
    # Deterministic: tracemalloc counts the bytes each line allocates. A call used to cost
    # about 1,240 bytes (a 27-key dict of options per copy, three dicts per task in the
    # flow, an Edge and its dict entries); the bound leaves room for Python versions.
    calls = 20_000
    with Flow("warm") as warm:  # the template's shared options, made once
        total([noop() for _ in range(10)])
    del warm
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        with Flow("big") as flow:
            total([noop() for _ in range(calls)])
        per_call = (tracemalloc.get_traced_memory()[0] - before) / calls
    finally:
        tracemalloc.stop()
    assert len(flow.tasks) == calls + 1
    assert per_call < 600, f"{per_call:.0f} bytes a call"


def test_edges_of_tasks_with_none_one_and_many() -> None:
    lone = noop.copy()
    with Flow("f", tasks=[lone]) as flow:
        xs = [as_task(noop()) for _ in range(3)]
        t = as_task(total(xs))
        after = noop.copy().set_upstream(t)
    assert flow.edges_to(lone) == [] and flow.edges_from(lone) == []
    assert flow.edges_from(xs[0]) == [Edge(xs[0], t, key="xs")]
    assert flow.edges_to(t) == [Edge(x, t, key="xs") for x in xs]
    assert flow.downstream_tasks(t) == [after] and flow.upstream_tasks(after) == [t]
    assert flow.root_tasks() == [lone, *xs]
    assert flow.terminal_tasks() == [lone, after]
    assert flow.arguments(lone) == {} and flow.arguments(t) == {"xs": xs}


def test_a_copied_flow_gets_its_own_edges_of_a_task_with_one() -> None:
    with Flow("f") as flow:
        a = as_task(noop())
        b = noop.copy().set_upstream(a)
    copied = flow.copy()
    c = noop.copy()
    copied.add_edge(a, c)
    assert flow.edges_from(a) == [Edge(a, b)]
    assert copied.edges_from(a) == [Edge(a, b), Edge(a, c)]
    copied.add_edge(b, c)
    assert c not in flow.tasks and flow.edges_to(b) == [Edge(a, b)]
    assert copied.edges_to(c) == [Edge(a, c), Edge(b, c)]


def test_replace_moves_a_single_edge() -> None:
    with Flow("f") as flow:
        a = as_task(noop())
        t = as_task(total([a]))
    new = noop.copy()
    flow.replace(a, new)
    assert flow.edges_from(new) == [Edge(new, t, key="xs")]
    assert flow.arguments(t) == {"xs": [new]}
    assert flow.run(journal=False).result[t].result == 1


def test_plan_nodes_share_what_they_have_in_common() -> None:
    with Flow("f") as flow:
        xs = [as_task(noop()) for _ in range(3)]
        t = as_task(total(xs))
    compiled = plan(flow)
    nodes = [compiled.nodes[compiled.number(x)] for x in xs]
    reduce = compiled.nodes[compiled.number(t)]
    # A reduce's inputs have one downstream tuple between them, and nothing of their own
    # for what they lack.
    assert nodes[0].downstream == (compiled.number(t),)
    assert nodes[0].downstream is nodes[1].downstream is nodes[2].downstream
    assert nodes[0].constants is nodes[1].constants is reduce.constants
    assert nodes[0].in_edges == () and nodes[0].upstream == ()
    assert reduce.upstream == tuple(compiled.number(x) for x in xs)
    pairs = [(Edge(x, t, key="xs"), compiled.number(x)) for x in xs]
    assert list(reduce.in_edges) == pairs and len(reduce.in_edges) == 3
    assert reduce.in_edges[1] == pairs[1] and list(reduce.in_edges[1:]) == pairs[1:]


def test_in_edges_keep_an_upstream_task_with_two_edges_twice() -> None:
    @task
    def two(a: None, b: None) -> int:
        return 2

    with Flow("f") as flow:
        handle = noop()
        both = as_task(two(handle, handle))
    compiled = plan(flow)
    node = compiled.nodes[compiled.number(both)]
    assert node.upstream == (0,)
    assert [(e.key, j) for e, j in node.in_edges] == [("a", 0), ("b", 0)]


def _freeze_counts_seen_by_a_task() -> tuple[Flow, list[int]]:
    """A flow whose one task notes ``gc.get_freeze_count()`` as it runs, and the notes."""
    seen: list[int] = []

    @task
    def count_frozen() -> None:
        seen.append(gc.get_freeze_count())

    with Flow("f") as flow:
        count_frozen()
    return flow, seen


def test_a_run_leaves_the_heap_that_existed_out_of_collections_and_puts_it_back() -> None:
    flow, seen = _freeze_counts_seen_by_a_task()
    assert gc.get_freeze_count() == 0
    assert flow.run(executor=LocalExecutor(), journal=False).is_successful()
    assert seen[0] > 0
    assert gc.get_freeze_count() == 0


def test_a_run_leaves_a_freeze_it_did_not_make_alone() -> None:
    flow, seen = _freeze_counts_seen_by_a_task()
    gc.freeze()
    try:
        assert flow.run(executor=LocalExecutor(), journal=False).is_successful()
        assert gc.get_freeze_count() > 0  # the run did not unfreeze what it did not freeze
    finally:
        gc.unfreeze()
    assert seen[0] > 0


def test_a_full_collection_during_a_run_freezes_what_survived_and_frees_garbage() -> None:
    # What outlives a full collection in a run is left out of the next ones (so they do
    # not walk the run's states again and again); garbage is still collected.
    import weakref

    class Node:
        other: object = None

    seen: dict[str, object] = {}

    @task
    def collect() -> None:
        kept: list[list[int]] = [[] for _ in range(1_000)]  # alive through the collection
        cycle = Node()
        cycle.other = cycle
        gone = weakref.ref(cycle)
        del cycle
        gc.collect()
        # Frozen objects are in no generation (the frozen count alone moves as other
        # frozen objects are freed meanwhile).
        collected = {id(o) for o in gc.get_objects()}
        seen.update(
            frozen=sum(id(k) not in collected for k in kept), collected=gone() is None
        )

    with Flow("f") as flow:
        collect()
    assert flow.run(executor=LocalExecutor(), journal=False).is_successful()
    assert seen["collected"] is True
    assert seen["frozen"] == 1_000  # every object that survived it
    assert gc.get_freeze_count() == 0  # all of it put back at the end
    assert gc.isenabled()


@pytest.mark.parametrize("journal", [True, False])
def test_a_run_s_records_are_freed_when_it_ends_without_a_collection(
    executor: Executor, journal: bool
) -> None:
    """No reference cycle holds a finished run's scheduler: its traces, states and results
    go when the run's references do, not at some later full collection (a run of a
    million tasks would otherwise keep its records, and a gigabyte, until then). With the
    task log's back-reference it did, on every journaled run."""

    @task
    def one(i: int) -> int:
        return i

    with Flow("freed") as flow:
        [one(i) for i in range(20)]
    assert flow.run(executor=executor, journal=journal).is_successful()  # pools started
    gc.collect()
    before = run_records()
    gc.disable()
    try:
        assert flow.run(executor=executor, journal=journal).is_successful()
        alive = [o for i, o in run_records().items() if i not in before]
    finally:
        gc.enable()
    assert alive == [], f"{len(alive)} records of the finished run are still alive"


@task
def fails_holding(x: int) -> int:
    held = [x] * 3  # a local of the user's frame: kept for a post-mortem
    raise ValueError(f"failed holding {held}")


def broken_trigger(upstream_states: Mapping[Edge, State[Any]], /) -> bool:
    raise RuntimeError("this trigger is broken")


def plus_one(i: int) -> int:
    return i + 1


def test_a_run_s_final_states_keep_none_of_its_records(executor: Executor) -> None:
    """A caller who keeps a run's final state keeps its states, not the run's scheduler
    and records, though the failures' exceptions were raised in this process (a task on
    an in-process executor; the default trigger and a broken one, in the scheduler's own
    frames) and keep their tracebacks. The task's frame keeps its locals."""

    one = task(plus_one)
    with Flow("kept") as flow:
        failed = fails_holding(7)
        after = one(failed)  # TriggerFailed: its trigger raised in the scheduler
        odd = task(name="odd", trigger=broken_trigger)(plus_one)(one(1))
    assert not flow.run(executor=executor).is_successful()  # pools started
    gc.collect()
    before = run_records()
    gc.disable()
    try:
        state = flow.run(executor=executor)
        alive = [o for i, o in run_records().items() if i not in before]
    finally:
        gc.enable()
    assert alive == [], f"{len(alive)} records of the finished run are still alive"
    states = state.result
    kinds = [kind(states[t]) for t in (failed, after, odd)]
    assert kinds == ["Failed", "TriggerFailed", "TriggerFailed"], kinds
    error: object = states[failed].result
    assert isinstance(error, ValueError)
    assert "this trigger is broken" in str(states[odd].message), states[odd]
    if in_process(executor):
        assert error.__traceback__ is not None
        frames = [frame for frame, _ in traceback.walk_tb(error.__traceback__)]
        assert frames[-1].f_code.co_name == "fails_holding"
        assert frames[-1].f_locals == {"x": 7, "held": [7, 7, 7]}
        assert "fails_holding" in "".join(traceback.format_exception(error))


def test_an_interrupted_run_s_error_keeps_none_of_its_records(executor: Executor) -> None:
    """The interrupt goes on up to the caller, who may keep it (a notebook keeps the last
    error); its traceback then keeps the scheduler's frames, not what they held."""
    one = task(plus_one)
    with Flow("interrupted") as flow:
        [one(i) for i in range(4)]
    assert flow.run(executor=executor).is_successful()  # pools started
    gc.collect()
    before = run_records()
    with pytest.raises(KeyboardInterrupt) as caught:
        flow.run(executor=executor, progress=RaisesWhenATaskFinishes(KeyboardInterrupt))
    gc.collect()
    alive = [o for i, o in run_records().items() if i not in before]
    assert alive == [], f"{len(alive)} records of the interrupted run are still alive"
    assert caught.value.__traceback__ is not None  # kept, and still printable
    assert "task_changed" in "".join(traceback.format_exception(caught.value))
    # On loky and Dask the observer raised again while the run took back what had
    # finished: the run is recorded as ended all the same.
    [run] = Journal().runs(flow_name="interrupted")[:1]
    assert run.state == "Failed" and (run.message or "").startswith("Run interrupted"), run


def test_a_run_whose_input_is_refused_leaves_the_collector_as_it_was() -> None:
    @task
    def needs(x: int) -> int:
        return x

    with Flow("f") as flow:
        needs(Parameter("x", type=int))
    with pytest.raises(FlowDefinitionError, match="nope"):
        flow.run(executor=LocalExecutor(), journal=False, parameters={"nope": 1})
    assert gc.isenabled()
    assert gc.get_freeze_count() == 0


def test_generated_and_own_slugs_never_collide() -> None:
    @task
    def step() -> None:
        return None

    mine = step.copy()
    mine.slug = "step-2"
    with Flow("f") as flow:
        first = as_task(step())
    flow.add_task(mine)
    second = step.copy()
    flow.add_task(second)
    # The generated number skips the slug a task has of its own.
    assert flow.slugs == {first: "step-1", mine: "step-2", second: "step-3"}
    clash = step.copy()
    clash.slug = "step-1"
    with pytest.raises(FlowDefinitionError, match="'step-1'"):
        flow.add_task(clash)
    assert flow.get_tasks(slug="step-3") == [second]
    # A replaced task's generated slug is free for a task's own; the new one gets a number.
    new = step.copy()
    flow.replace(first, new, validate=False)
    assert flow.slugs[new] == "step-4"
    flow.add_task(clash)
    assert flow.slugs[clash] == "step-1"


def test_a_recorded_row_without_optional_values_is_short_and_reads_the_same() -> None:
    plain = TaskTrace("t", Success("done"), attempts=1, queued=1.0, started=2.0, finished=3.0,
                      worker="w")
    row = outcome(plain)
    assert len(row) < len(COLUMNS)
    full = (*row, *(None,) * (len(COLUMNS) - len(row)))
    assert record(0, COLUMNS, row) == record(0, COLUMNS, full)
    child = ChildTrace("t", Success("done"), 3, 0)
    assert len(outcome(child)) == len(COLUMNS)
    assert record(0, COLUMNS, outcome(child)).parent == 3


# -- what the end of a run and its task log hold -------------------------------------------------


def test_a_run_s_outcomes_are_recorded_in_parts_and_load_whole(
    taskloom_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The end of a run pickles its rows a chunk at a time: the first in the run's row,
    the others in parts of their own; they load back as every task, in order."""
    monkeypatch.setattr(journal_module, "ROWS_PER_PICKLE", 3)
    with Flow("parts") as flow:
        total([noop() for _ in range(7)])
    state = flow.run(executor=LocalExecutor())
    assert state.is_successful() and state.run_id is not None
    database = taskloom_home / "journal.sqlite"
    [(blob,)] = query(database, "SELECT tasks FROM runs")
    first = pickle.loads(blob[Signer.DIGEST :])
    assert first["columns"] == COLUMNS and len(first["rows"]) == 3 and first["parts"] == 2
    parts = query(database, "SELECT seq, outcomes FROM task_log ORDER BY seq DESC")
    assert [seq for seq, _ in parts] == [-1, -2]
    assert [len(pickle.loads(part[Signer.DIGEST :])[2]) for _, part in parts] == [3, 2]
    tasks = Journal().load(state.run_id).tasks
    assert [t.name for t in tasks] == [*(f"noop[{i}]" for i in range(7)), "total"]
    assert {t.state for t in tasks} == {"Success"}


def test_a_run_whose_part_is_missing_or_moved_reads_as_tampered(
    taskloom_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_module, "ROWS_PER_PICKLE", 2)
    with Flow("parts") as flow:
        total([noop() for _ in range(3)])
    first, second = (flow.run(executor=LocalExecutor()).run_id for _ in range(2))
    assert first is not None and second is not None
    database = taskloom_home / "journal.sqlite"
    # A part of the other run, signed all the same, put in place of this run's.
    connection = sqlite3.connect(database)
    with connection:
        connection.execute("DELETE FROM task_log WHERE run_id = ? AND seq = -1", (first,))
        connection.execute(
            "UPDATE task_log SET run_id = ? WHERE run_id = ? AND seq = -1", (first, second)
        )
    connection.close()
    assert Journal().load(first).tampered
    assert Journal().load(second).tampered  # its part is gone
    assert Journal().locations() == []


def test_the_end_of_a_run_holds_its_outcomes_pickled_not_as_row_tuples() -> None:
    # Deterministic: tracemalloc counts bytes. Rows built all at once cost about 300 bytes
    # a task at the peak (the row tuples, their pickle and its signed copy); a chunk at a
    # time, about 80: the pickle and one chunk's rows.
    n = 100_000
    with Flow("end") as flow:
        noop()
    traces = [
        TaskTrace(f"noop[{i}]", Success("Task run succeeded."), attempts=1, queued=1.0 + i,
                  started=2.0 + i, finished=3.0 + i, worker="local")
        for i in range(n)
    ]  # fmt: skip
    store = Journal()
    assert store.begin("run", "end", None, {}, 0.0)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store.finish("run", 1.0, Success("done"), traces, plan(flow))
        peak = (tracemalloc.get_traced_memory()[1] - before) / n
    finally:
        tracemalloc.stop()
    assert len(store.load("run").tasks) == n
    assert peak < 150, f"{peak:.0f} bytes a task"


@task
def written_bytes(xs: list[None], tasks: int) -> int:
    """Wait until this run's task log has written ``tasks`` tasks; the size of its record
    of which tasks are written."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        [task_log] = recording._writer._logs
        if sum(task_log._written) >= tasks:
            return sys.getsizeof(task_log._written)
        time.sleep(0.01)
    raise AssertionError("the settled tasks were never written while the run went")


def test_the_task_log_knows_which_tasks_are_written_in_a_byte_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A set of task numbers cost about 75 bytes a task (its table and the numbers).
    monkeypatch.setattr(recording, "FLUSH_SECONDS", 0.01)
    n = 20_000
    with Flow("written") as flow:
        gate = written_bytes([noop() for _ in range(n)], n)
    state = flow.run(executor=LocalExecutor())
    assert state.is_successful(), state
    assert state.result is not None
    assert state.result[gate].result < 2 * n


def test_a_plan_keeps_no_dict_of_its_tasks_and_plain_nodes_no_mapping_fields() -> None:
    # Deterministic: tracemalloc counts bytes. A compiled copy of a task cost about 270
    # bytes with a dict of every task's number and 11 slots a node; now about 215.
    n = 20_000
    with Flow("warm") as warm:  # what compiling makes once (the shared empty containers)
        total([noop() for _ in range(3)])
    plan(warm)
    with Flow("big") as flow:
        xs = [as_task(noop()) for _ in range(n)]
        t = as_task(total(xs))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        compiled = plan(flow)
        per_task = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert per_task < 240, f"{per_task:.0f} bytes a task"
    assert compiled.numbers([t, xs[5], noop]) == {t: n, xs[5]: 5}  # the template is not in it
    assert compiled.number(xs[0]) == 0
    node = compiled.nodes[0]
    assert type(node) is Node and node.mapped is None and not node.chainable
    assert not node.childwise


def test_a_mapped_task_s_node_holds_what_mapping_needs() -> None:
    @task
    def first(x: tuple[int, int]) -> int:
        return x[0]

    with Flow("f") as flow:
        handle = pair.map([1, 2])
        xs, after = as_task(handle), as_task(first.map(handle))
    compiled = plan(flow)
    mapped = compiled.nodes[compiled.number(after)]
    assert isinstance(mapped, MappedNode) and mapped.mapped == {"x": False}
    assert mapped.childwise == frozenset({compiled.number(xs)})
    assert mapped.chainable
    assert flow.run(journal=False).result[after].is_mapped()


def test_a_trace_holds_what_most_tasks_never_have_only_once_set() -> None:
    # A trace of 14 slots was 144 bytes; logs, traceback and run name in a dict of their
    # own, made when one is set, and a child's parent and map index in a subclass: 112.
    plain = TaskTrace("t", Success("done"), attempts=1, worker="local")
    assert sys.getsizeof(plain) <= 112
    assert (plain.logs, plain.traceback, plain.run_name, plain.parent, plain.map_index) == (None,) * 5
    plain.traceback = "Traceback ..."
    plain.run_name = "t-1"
    assert (plain.logs, plain.traceback, plain.run_name) == (None, "Traceback ...", "t-1")
    assert plain == TaskTrace("t", plain.state, attempts=1,
                              worker="local", traceback="Traceback ...", run_name="t-1")
    child = ChildTrace("t[0]", Success("done"), 2, 0)
    assert (child.parent, child.map_index) == (2, 0) and sys.getsizeof(child) <= 128
    assert outcome(plain)[COLUMNS.index("run_name")] == "t-1"
    assert record(0, COLUMNS, outcome(child)).map_index == 0


def test_a_large_run_s_names_are_logged_in_parts_and_load_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``begin`` writes a large flow's names a part at a time (pickled at once, a
    million names and their copies on the way into SQLite held the parent's memory for
    the rest of the run); a run that never finished reads them back in order."""
    monkeypatch.setattr(journal_module, "ROWS_PER_PICKLE", 2)
    store = Journal(tmp_path / "journal.sqlite")
    names = ["a", "b", "c", "d", "e"]
    assert store.begin("r", "f", None, {}, 1.0, names=names)
    seqs = query(store.path, "SELECT seq FROM task_log WHERE run_id = 'r' ORDER BY seq")
    assert [seq for (seq,) in seqs] == [-2, -1, 0]
    assert [t.name for t in store.load("r").tasks] == names
    assert {t.state for t in store.load("r").tasks} == {"Pending"}
    assert store.begin("other", "f", None, {}, 1.0, names=names)
    connection = sqlite3.connect(store.path)
    with connection:  # a part of another run's names in place of this run's
        connection.execute("DELETE FROM task_log WHERE run_id = 'r' AND seq = -1")
        connection.execute("UPDATE task_log SET run_id = 'r' WHERE run_id = 'other' AND seq = -1")
    connection.close()
    assert store.load("r").tampered and store.load("other").tampered
    store.close()


def _collections_during(build: Callable[[], object]) -> int:
    """How many garbage collections ran while ``build()`` ran."""
    passes: list[str] = []

    def seen(phase: str, info: dict[str, int]) -> None:
        passes.append(phase)

    gc.callbacks.append(seen)
    try:
        assert gc.isenabled()
        build()
    finally:
        gc.callbacks.remove(seen)
    assert gc.isenabled()
    return passes.count("start")


def test_compiling_a_flow_and_a_run_s_records_set_off_no_garbage_collection() -> None:
    """Compiling makes thousands of objects and no cycle, and so does setting up a run's
    records: the collections they would set off walk the whole flow each time (issue 16:
    the cost per task grew with the flow). The collection the allocations left due may
    run once the collector is back, once."""
    with Flow("big") as flow:
        total([noop() for _ in range(20_000)])
    assert _collections_during(lambda: plan(flow)) <= 1
    compiled = plan(flow)
    args = _run_args.check(
        flow, compiled, parameters={}, context={}, task_states={}, start_tasks=None
    )
    scheduler = _collections_during(
        lambda: runner._Scheduler(flow, compiled, args, LocalExecutor(), None)
    )
    assert scheduler <= 1
    gc.disable()
    try:  # a collector turned off by someone else stays off
        with Flow("again") as other:
            noop()
        plan(other)
        assert not gc.isenabled()
    finally:
        gc.enable()


HELD_THROUGH_A_LINK = """
import gc
from taskloom import Flow, runner, task
from taskloom.executors import LocalExecutor

@task
def fails(x: int) -> int:
    raise ValueError(x)

with Flow("linked") as flow:
    fails(1)
state = flow.run(executor=LocalExecutor(), journal=False)
gc.collect()
alive = [o for o in gc.get_objects() if isinstance(o, runner._Scheduler)]
assert not alive, f"{len(alive)} scheduler(s) kept by the held state"
print("freed")
"""


def test_a_held_final_state_keeps_no_records_when_taskloom_is_imported_through_a_link(
    tmp_path: Path,
) -> None:
    """taskloom's frames are known by their files' paths: imported through a symbolic link
    (a linked install), they still are, and a held final state keeps none of the run."""
    link = tmp_path / "linked-src"
    link.symlink_to(Path(journal_module.__file__).resolve().parent.parent)
    done = subprocess.run(
        [sys.executable, "-c", HELD_THROUGH_A_LINK],
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": str(link), "TASKLOOM_HOME": str(tmp_path / "home")},
    )
    assert done.returncode == 0 and "freed" in done.stdout, done.stderr[-2000:]
