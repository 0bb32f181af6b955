"""One table of states: only ``states.py`` knows state names and what each state means.

Every other module classifies a state by its class (``issubclass(by_name(name), Failed)``,
``runs_again``, ``keeps_inputs``, the progress buckets): so no module but ``states.py``
names a state class in a string, adding a state class is a change to ``states.py`` alone,
and states are never written to after they are made (``State.replace`` copies).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from taskloom import Flow, task, triggers
from taskloom import states as states_module
from taskloom.executors import LocalExecutor
from taskloom.journal import Journal, task_records
from taskloom.plan import plan
from taskloom.progress import category, category_of
from taskloom.resume import resume
from taskloom.states import (
    Failed,
    Paused,
    Resume,
    State,
    Success,
    all_classes,
    by_name,
)
from taskloom.trace import TaskTrace

from ._helpers import kind

SRC = Path(__file__).resolve().parent.parent / "src" / "taskloom"
NAMES = {cls.__name__ for cls in all_classes()}


def _strings(tree: ast.AST) -> list[ast.Constant]:
    """The string literals of a module that are not docstrings or parts of f-strings
    (messages, which may quote a state's name among other words)."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            skipped.add(id(body[0].value))  # a docstring
        if isinstance(node, ast.JoinedStr):
            skipped.update(id(value) for value in node.values)
    return [
        node for node in ast.walk(tree)
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skipped
    ]


def test_no_module_but_states_names_a_state_class() -> None:
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "states.py" and path.parent == SRC:
            continue
        for node in _strings(ast.parse(path.read_text(encoding="utf-8"))):
            if node.value in NAMES:
                found.append(f"{path.relative_to(SRC.parent)}:{node.lineno}: {node.value!r}")
    assert not found, (
        "state names outside states.py (classify by class: issubclass(by_name(name), ...), "
        "or a class attribute in states.py):\n" + "\n".join(found)
    )


def test_the_scan_finds_a_state_name(tmp_path: Path) -> None:
    tree = ast.parse('"""Docstring: Failed."""\nAGAIN = ("Failed", "Paused")\nX = f"{1} Failed"\n')
    assert [node.value for node in _strings(tree) if node.value in NAMES] == ["Failed", "Paused"]


#: What the engine writes when it makes a state; only states.py may set them, in place.
STATE_ATTRIBUTES = {"_result", "cached_inputs", "message", "run_id", "run_count", "start_time"}


def test_no_module_writes_to_a_state() -> None:
    """Outside states.py, nothing assigns a state's attributes (``state.replace`` makes a
    changed copy): not the scheduler, not the executors' large-result copies."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name == "states.py" and path.parent == SRC:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = list(node.targets)
            elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
                targets = [node.target]
            for target in targets:
                for item in target.elts if isinstance(target, ast.Tuple) else [target]:
                    if (
                        isinstance(item, ast.Attribute)
                        and item.attr in STATE_ATTRIBUTES
                        and not (isinstance(item.value, ast.Name) and item.value.id == "self")
                    ):
                        found.append(f"{path.relative_to(SRC.parent)}:{item.lineno}: {ast.unparse(item)}")
    assert not found, "\n".join(found)


# -- adding a state is a change to states.py --------------------------------------------------------


def test_a_new_kind_of_failed_needs_no_other_change(monkeypatch: pytest.MonkeyPatch) -> None:
    # Register it in a copy of the table, so no other test sees it (the wire codes do).
    monkeypatch.setattr(states_module, "_BY_NAME", dict(states_module._BY_NAME))

    class Cancelled(Failed[Any]):
        __slots__ = ()

    assert by_name("Cancelled") is Cancelled
    assert category(Cancelled()) == "failed" and category_of("Cancelled") == "failed"
    assert Cancelled.runs_again and Cancelled.keeps_inputs

    with Flow("new-state") as flow:
        double(one())
    traces = [
        TaskTrace("one", Success("done", 1)),
        TaskTrace("double", Cancelled("cancelled"), attempts=1, inputs={"x": 1}),
    ]
    rows, keep = task_records(traces, plan(flow))
    assert rows[1][0] == "Cancelled"
    assert keep == [(1, "double", {"x": 1}, None, False)]  # run again from its inputs


def test_every_state_class_classifies() -> None:
    """Each class answers every question the rest of the engine asks of it."""
    for cls in all_classes():
        assert not cls.keeps_inputs or cls.runs_again, cls  # inputs kept only to run again
        assert category_of(cls.__name__) in {
            "running", "succeeded", "failed", "skipped", "cached", "retrying", "paused", "pending"
        }  # fmt: skip
    assert category_of("NoSuchState") == "pending"


# -- what "Resume" means ------------------------------------------------------------------------------


@task
def one() -> int:
    return 1


@task
def double(x: int) -> int:
    return 2 * x


@task(trigger=triggers.manual_only)
def gate(x: int) -> int:
    return x + 1


@task(trigger=triggers.manual_only)
def second_gate(x: int) -> int:
    return x * 10


def test_a_task_left_in_resume_runs_on_resume_and_keeps_its_permission(taskloom_home: Path) -> None:
    """Resume is a Pending state: a task a run left in it never ran. Resuming the run runs
    it after what it waits for, and manual_only still lets it through."""
    with Flow("two-gates") as flow:
        g = gate(one())
        h = second_gate(g)
    first = flow.run(executor=LocalExecutor(), task_states={h: Resume()})
    assert first.is_paused() and first.run_id is not None
    assert kind(first.result[g]) == "Paused" and kind(first.result[h]) == "Resume"
    recorded = {t.name: t.state for t in Journal().load(first.run_id).tasks}
    assert recorded["second_gate"] == "Resume"

    again = resume(first.run_id, flow=flow, executor=LocalExecutor())
    assert again.is_successful(), again.result
    assert again.result[h].result == 20


def test_a_task_left_in_resume_outside_the_resumed_part_starts_from_stored_results(
    taskloom_home: Path,
) -> None:
    with Flow("partial-resume") as flow:
        a = one()
        g = gate(a)
        other = double(2)
    # A partial run: only `other` runs; `one` is given as done; the let-through gate is
    # never reached.
    first = flow.run(
        executor=LocalExecutor(),
        task_states={a: Success(result=4), g: Resume()},
        start_tasks=[other],
    )
    assert isinstance(first.result[g], Resume) and first.run_id is not None
    again = resume(first.run_id, flow=flow, executor=LocalExecutor())
    assert again.is_successful(), again.result
    assert again.result[g].result == 5  # from the stored result of `one`


# -- no writes to states --------------------------------------------------------------------------------


def _snapshot(state: State[Any]) -> tuple[Any, ...]:
    return state.__getstate__()


def test_a_run_does_not_change_the_states_it_is_given(taskloom_home: Path) -> None:
    with Flow("given") as flow:
        a = one()
        g = gate(a)
    given: dict[object, State[Any]] = {a: Success(result=3), g: Resume(cached_inputs={"x": 3})}
    before = {t: _snapshot(s) for t, s in given.items()}
    state = flow.run(executor=LocalExecutor(), task_states=given, start_tasks=[g])
    assert state.is_successful() and state.run_id is not None
    assert {t: _snapshot(s) for t, s in given.items()} == before


def test_a_paused_state_carries_its_inputs(taskloom_home: Path) -> None:
    with Flow("carry") as flow:
        g = gate(one())
    state = flow.run(executor=LocalExecutor())
    paused = state.result[g]
    assert isinstance(paused, Paused) and paused.cached_inputs == {"x": 1}
