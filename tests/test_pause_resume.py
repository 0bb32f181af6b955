"""Pausing and resuming (API.md, "Resuming, retries and input caching")."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

import taskloom
from taskloom import Flow, signals, task, triggers, unmapped
from taskloom.executors import Executor
from taskloom.states import Paused, Pending, Resume, State, Success, TriggerFailed

from ._helpers import as_task, kind, lines, record


@task
def produce(log: str) -> int:
    record(log, "produce")
    return 5


@task(trigger=triggers.manual_only)
def gate(x: int, log: str) -> int:
    record(log, f"gate resume={taskloom.context.get('resume')}")
    return x * 2


def finish_fn(x: int, log: str) -> int:
    record(log, "finish")
    return x + 1


finish = task(name="finish")(finish_fn)


@task
def branch(log: str, label: str, upstream: object = None) -> str:
    record(log, label)
    return label


@task
def ask(x: int, log: str) -> int:
    """Pauses for approval the first time; runs when resumed (Prefect's pause_task)."""
    if not taskloom.context.get("resume"):
        record(log, "ask paused")
        raise signals.PAUSE("waiting for approval")
    record(log, "ask resumed")
    return x * 3


def build(log: str, *, gated_by: str = "manual_only", independent: bool = True) -> tuple[Flow, Any, Any, Any, Any]:
    """produce -> (gate | ask) -> finish, plus an independent two-task branch."""
    with Flow(f"pause-{gated_by}") as flow:
        p = produce(log)
        g = gate(p, log) if gated_by == "manual_only" else ask(p, log)
        f = finish(g, log)
        tail = None
        if independent:
            tail = branch(log, "other 2", branch(log, "other 1"))
    return flow, p, g, f, tail


def assert_unfinished(state: State[Any]) -> None:
    """A run with a task waiting to be resumed ends ``Paused`` (never ``Running``: the run
    itself is over, and ``Running`` would read as a live run in the journal)."""
    assert type(state) is Paused, kind(state)
    assert state.is_paused() and not state.is_successful() and not state.is_failed()


def test_manual_only_pauses_and_does_not_block_independent_branches(
    tmp_path: Path, executor: Executor
) -> None:
    log = str(tmp_path / "log")
    flow, p, g, f, tail = build(log)
    state = flow.run(executor=executor)
    paused = state.result[g]
    assert type(paused) is Paused
    assert paused.is_paused() and paused.is_pending()
    assert paused.cached_inputs is not None and paused.cached_inputs["x"] == 5
    assert type(state.result[f]) is Pending  # downstream of the paused task: not run
    assert type(state.result[tail]) is Success  # the independent branch ran to its end
    assert type(state.result[p]) is Success
    assert set(state.result) == set(flow.tasks)
    assert_unfinished(state)
    assert sorted(lines(log)) == ["other 1", "other 2", "produce"]


def test_resume_with_start_tasks_and_stored_inputs(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    flow, p, g, f, _ = build(log, independent=False)
    first = flow.run(executor=executor)
    paused = first.result[g]
    assert type(paused) is Paused
    second = flow.run(
        task_states={g: Resume(cached_inputs=paused.cached_inputs)},
        start_tasks=[g],
        executor=executor,
    )
    assert type(second.result[g]) is Success
    assert second.result[g].result == 10
    assert second.result[f].result == 11
    assert not second.result[p].is_finished()  # upstream of a start task: not run
    assert type(second) is Success
    assert lines(log) == ["produce", "gate resume=True", "finish"]


def test_resume_prefect_style_with_the_previous_states(
    tmp_path: Path, executor: Executor
) -> None:
    log = str(tmp_path / "log")
    flow, p, g, f, tail = build(log)
    first = flow.run(executor=executor)
    assert type(first.result[g]) is Paused
    previous: dict[object, State[Any]] = {t: s for t, s in first.result.items()}
    previous[as_task(g)] = Resume()
    second = flow.run(task_states=previous, executor=executor)
    assert type(second.result[g]) is Success
    assert second.result[g].result == 10
    assert second.result[f].result == 11
    assert second.result[p].result == 5
    assert type(second) is Success
    # upstream and independent tasks kept their finished states: they did not run again
    assert sorted(lines(log)) == sorted(
        ["produce", "other 1", "other 2", "gate resume=True", "finish"]
    )


def test_pause_signal_and_both_ways_of_resuming(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    flow, p, a, f, _ = build(log, gated_by="signal", independent=False)
    first = flow.run(executor=executor)
    paused = first.result[a]
    assert type(paused) is Paused
    assert paused.message == "waiting for approval"
    assert paused.cached_inputs is not None and paused.cached_inputs["x"] == 5
    assert_unfinished(first)

    seeded = flow.run(
        task_states={a: Resume(cached_inputs=paused.cached_inputs)},
        start_tasks=[a],
        executor=executor,
    )
    assert seeded.result[a].result == 15
    assert seeded.result[f].result == 16

    previous: dict[object, State[Any]] = {t: s for t, s in first.result.items()}
    previous[as_task(a)] = Resume()
    prefect_style = flow.run(task_states=previous, executor=executor)
    assert prefect_style.result[a].result == 15
    assert prefect_style.result[f].result == 16
    assert type(prefect_style) is Success
    assert lines(log) == [
        "produce", "ask paused", "ask resumed", "finish", "ask resumed", "finish"
    ]


def test_resume_on_a_task_without_pause_logic_just_runs_it(
    tmp_path: Path, executor: Executor
) -> None:
    log = str(tmp_path / "log")
    with Flow("plain-resume") as flow:
        p = produce(log)
        f = finish(p, log)
    state = flow.run(task_states={f: Resume()}, executor=executor)
    assert state.result[f].result == 6
    assert type(state) is Success
    assert lines(log) == ["produce", "finish"]


def test_a_paused_reference_task_keeps_the_flow_unfinished(
    tmp_path: Path, executor: Executor
) -> None:
    log = str(tmp_path / "log")
    with Flow("paused-terminal") as flow:
        g = gate(produce(log), log)
    state = flow.run(executor=executor)
    assert type(state.result[g]) is Paused
    assert_unfinished(state)


def test_a_fresh_run_with_resume_runs_upstream_then_the_gate(
    tmp_path: Path, executor: Executor
) -> None:
    log = str(tmp_path / "log")
    flow, p, g, f, _ = build(log, independent=False)
    state = flow.run(task_states={g: Resume()}, executor=executor)
    assert state.result[g].result == 10
    assert state.result[f].result == 11
    assert type(state) is Success
    assert lines(log) == ["produce", "gate resume=True", "finish"]


@task(trigger=triggers.always_run)
def cleanup(log: str, upstream: object) -> str:
    record(log, "cleanup")
    return "cleaned"


def test_an_always_run_task_waits_for_a_paused_upstream(
    tmp_path: Path, executor: Executor
) -> None:
    log = str(tmp_path / "log")
    with Flow("paused-cleanup") as flow:
        g = gate(produce(log), log)
        c = cleanup(log, g)
    state = flow.run(executor=executor)
    assert type(state.result[g]) is Paused
    assert type(state.result[c]) is Pending
    assert_unfinished(state)
    assert lines(log) == ["produce"]


def test_a_paused_task_keeps_the_flow_unfinished_whatever_the_reference_tasks(
    tmp_path: Path, executor: Executor
) -> None:
    log = str(tmp_path / "log")
    flow, p, g, f, tail = build(log)
    flow.set_reference_tasks([tail])
    state = flow.run(executor=executor)
    assert type(state.result[tail]) is Success
    assert type(state.result[g]) is Paused
    assert_unfinished(state)


def never(upstream_states: object, /) -> bool:
    return False


def test_a_start_task_s_trigger_is_not_checked(tmp_path: Path, executor: Executor) -> None:
    log = str(tmp_path / "log")
    refusing = task(name="refusing", trigger=never)(finish_fn)
    with Flow("start-trigger") as flow:
        p = produce(log)
        r = refusing(p, log)
        f = finish(r, log)
    assert type(flow.run(executor=executor).result[r]) is TriggerFailed
    state = flow.run(
        task_states={r: Resume(cached_inputs={"x": 1, "log": log})},
        start_tasks=[r],
        executor=executor,
    )
    assert type(state.result[r]) is Success
    assert state.result[r].result == 2
    assert state.result[f].result == 3
    assert lines(log) == ["produce", "finish", "finish"]


# -- a resume that names some paused tasks (``resume(..., tasks=...)``, ``--task``) ------------


@task
def bearer(token: str, log: str) -> str:
    """Holds the secret's value: the journal does not store it (a resume makes it again)."""
    record(log, "bearer")
    return f"Bearer {token}"


@task
def length(header: str, log: str) -> int:
    record(log, "length")
    return len(header)


@task(trigger=triggers.manual_only)
def approve_length(n: int, log: str) -> int:
    record(log, f"approve_length {n}")
    return n + 1


@task
def joined(a: int, b: int, header: str) -> str:
    return f"{a} {b} {header[:6]}"


def test_paused_tasks_a_resume_does_not_name_stay_paused_with_their_inputs(
    tmp_path: Path, executor: Executor, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Naming one paused task lets only it through: the others stay paused, with the
    inputs they had, and are not decided again though a task upstream of them ran again;
    an unstored result only what waits for them needs is not made again until they run."""
    from taskloom.tasks.secrets import PrefectSecret
    from taskloom.journal import default_journal
    from taskloom.resume import resume

    log = str(tmp_path / "log")
    with Flow("resume-named") as flow:
        token: Any = PrefectSecret("API_TOKEN")
        header = bearer(token, log)
        a = gate(5, log)
        b = approve_length(length(header, log), log)
        j = joined(a, b, header)
    secret = "s3cr3t-" + tmp_path.name
    monkeypatch.setenv("TASKLOOM_SECRETS_API_TOKEN", secret)  # what a resume reads it from
    first = flow.run(executor=executor, context={"secrets": {"API_TOKEN": secret}})
    assert_unfinished(first)
    assert first.run_id is not None and lines(log) == ["bearer", "length"]

    only_gate = resume(first.run_id, flow=flow, tasks=["gate"], executor=executor)
    assert_unfinished(only_gate)
    assert only_gate.run_id is not None
    assert lines(log) == ["bearer", "length", "gate resume=True"]  # j waits for b: no bearer
    b_row = {t.name: t for t in default_journal().load(only_gate.run_id).tasks}["approve_length"]
    assert (b_row.state, b_row.inputs) == ("Paused", {"n": len(f"Bearer {secret}"), "log": log})

    rest = resume(only_gate.run_id, flow=flow, tasks=["approve_length"], executor=executor)
    assert type(rest) is Success, rest.result
    n = len(f"Bearer {secret}")
    assert rest.result[j].result == f"10 {n + 1} Bearer"
    assert sorted(lines(log)[3:]) == [f"approve_length {n}", "bearer"]  # (either may go first)


@task
def waits(x: int, log: str) -> int:
    """Pauses unless resumed (index 0 never pauses)."""
    record(log, f"waits {x} resume={taskloom.context.get('resume')}")
    if x > 0 and not taskloom.context.get("resume"):
        raise signals.PAUSE(f"wait {x}")
    return x


@task
def sum_of(xs: list[int]) -> int:
    return sum(xs)


def test_a_resume_lets_through_only_the_paused_children_it_names(
    tmp_path: Path, executor: Executor
) -> None:
    """A child named lets only it through; its paused siblings stay paused and do not run;
    the mapped task's name lets all its paused children through. A name that is not a
    paused task (nor one that runs again) is refused before anything runs."""
    from taskloom.journal import JournalError
    from taskloom.resume import resume

    log = str(tmp_path / "log")
    with Flow("resume-named-children") as flow:
        total = sum_of(waits.map([0, 1, 2], unmapped(log)))
    first = flow.run(executor=executor)
    assert_unfinished(first)
    assert first.run_id is not None and len(lines(log)) == 3
    for name, why in [("waits[0]", "is Success, so it does not run again"), ("nope", "named nope")]:
        with pytest.raises(JournalError, match=re.escape(why)):
            resume(first.run_id, flow=flow, tasks=[name], executor=executor)
    assert len(lines(log)) == 3

    one = resume(first.run_id, flow=flow, tasks=["waits[1]"], executor=executor)
    assert_unfinished(one)
    assert lines(log)[3:] == ["waits 1 resume=True"]
    assert one.run_id is not None
    # The first run, resumed again, is resumed from its resume: waits[1] does not run twice.
    last = resume(first.run_id, flow=flow, tasks=["waits[2]"], executor=executor)
    assert last.result[total].result == 3
    assert lines(log)[4:] == ["waits 2 resume=True"]

    second = flow.run(executor=executor)
    assert_unfinished(second)
    assert second.run_id is not None and len(lines(log)) == 8
    both = resume(second.run_id, flow=flow, tasks=["waits"], executor=executor)
    assert both.result[total].result == 3
    assert sorted(lines(log)[8:]) == ["waits 1 resume=True", "waits 2 resume=True"]


@task(trigger=triggers.manual_only)
def approve_all(log: str) -> int:
    record(log, "approve_all")
    return 1


@task
def tenfold(x: int) -> int:
    return x * 10


@task
def plus_one(x: int) -> int:
    return x + 1


def test_a_resume_runs_a_mapped_tasks_paused_child_beside_another_paused_task(
    tmp_path: Path, executor: Executor
) -> None:
    """A plain resume lets every paused task through: a mapped task's paused child too,
    though another paused task makes the resume's start tasks (it was left unrun, and the
    run ended with the map unfinished)."""
    from taskloom.resume import resume

    log = str(tmp_path / "log")
    with Flow("resume-child-and-task") as flow:
        waited = waits.map([0, 1, 2], unmapped(log))
        total = sum_of(waited)
        approve_all(log)
    first = flow.run(executor=executor)
    assert_unfinished(first)
    assert first.run_id is not None
    again = resume(first.run_id, flow=flow, executor=executor)
    assert type(again) is Success, again.result
    assert again.result[total].result == 3
    assert sorted(lines(log)[3:]) == ["approve_all", "waits 1 resume=True", "waits 2 resume=True"]


def test_a_map_over_a_mapped_task_a_resume_kept_maps_over_its_children(
    tmp_path: Path, executor: Executor
) -> None:
    """A resume that keeps a mapped task as it was (its children finished) records its
    children: the resume after it maps over them, where it mapped over none."""
    from taskloom.resume import resume

    log = str(tmp_path / "log")
    with Flow("resume-mapped-twice") as flow:
        made = plus_one.map([1, 2, 3])
        gate_a, gate_b = gate(1, log), approve_all(log)
        tens = tenfold.map(made, upstream_tasks=[unmapped(gate_b)])
    first = flow.run(executor=executor)
    assert first.run_id is not None
    only_a = resume(first.run_id, flow=flow, tasks=["gate"], executor=executor)
    assert_unfinished(only_a)
    assert only_a.run_id is not None
    rest = resume(only_a.run_id, flow=flow, executor=executor)
    assert type(rest) is Success, rest.result
    assert rest.result[tens].result == [20, 30, 40]
    assert rest.result[gate_a].is_successful()

