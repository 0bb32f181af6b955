"""Prefect 1.x's task options: ``retry_on``, ``task_run_name``, ``slug``, ``inputs()`` and
``outputs()``, a bare ``Task``, a ``Parameter`` outside a flow, and the checks made when a
task is built (issue 14, part B)."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from taskloom import Flow, Parameter, Task, signals, task, unmapped
from taskloom.errors import FlowDefinitionError
from taskloom.executors import Executor
from taskloom.journal import default_journal
from taskloom.report import render_report
from taskloom.states import Failed, Mapped, Retrying, State, Success, TimedOut

from ._cli import run_id, taskloom, write_flow
from ._helpers import as_task, kind, lines, record

NOW = dt.timedelta(0)

# -- retry_on ---------------------------------------------------------------------------------


@task(max_retries=2, retry_delay=NOW, retry_on=LookupError)
def raises(path: str, kind_of_error: str) -> int:
    record(path, kind_of_error)
    errors: dict[str, BaseException] = {
        "key": KeyError("missing"),  # a LookupError: retried
        "value": ValueError("bad"),  # not one: fails at once
        "fail": signals.FAIL("gave up"),  # a signal, not an exception of the types
        "fail-none": signals.FAIL("gave up", result=None),  # no exception to judge: retried
    }
    raise errors[kind_of_error]


@pytest.mark.parametrize(
    ("kind_of_error", "attempts"),
    [("key", 3), ("value", 1), ("fail", 1), ("fail-none", 3)],
)
def test_retry_on_retries_only_those_exception_types(
    executor: Executor, tmp_path: Path, kind_of_error: str, attempts: int
) -> None:
    path = str(tmp_path / "attempts.txt")
    with Flow("retry-on") as flow:
        failing = raises(path, kind_of_error)
    state = flow.run(executor=executor)
    assert isinstance(state.result[failing], Failed), state.result[failing]
    assert lines(path) == [kind_of_error] * attempts


@task(max_retries=1, retry_delay=NOW, retry_on=[ConnectionError])
def retries_by_signal(path: str) -> str:
    record(path, "ran")
    if len(lines(path)) < 3:
        raise signals.RETRY("again")  # retried whatever retry_on says, beyond max_retries
    return "done"


def test_a_retry_signal_retries_whatever_retry_on_says(executor: Executor, tmp_path: Path) -> None:
    path = str(tmp_path / "attempts.txt")
    with Flow("retry-signal") as flow:
        t = retries_by_signal(path)
    state = flow.run(executor=executor)
    assert state.result[t].result == "done"
    assert len(lines(path)) == 3


@task(max_retries=1, retry_delay=NOW, retry_on=TimeoutError, timeout=0.3)
def hangs(path: str) -> None:
    record(path, "ran")
    # past the timeout, but well within Dask's hard-timeout grace: no worker restart
    threading.Event().wait(1.5)


def test_retry_on_timeout_error_retries_a_timeout(executor: Executor, tmp_path: Path) -> None:
    path = str(tmp_path / "attempts.txt")
    with Flow("retry-timeout") as flow:
        t = hangs(path)
    state = flow.run(executor=executor)
    assert isinstance(state.result[t], TimedOut), state.result[t]
    assert lines(path) == ["ran", "ran"]


def test_on_failure_is_called_once_when_retry_on_ends_the_task(
    executor: Executor, tmp_path: Path
) -> None:
    path = str(tmp_path / "calls.txt")

    def on_failure(task: Task[Any, Any], state: State[Any]) -> None:
        record(path, f"on_failure {kind(state)}")

    picky = task(
        name="picky", max_retries=3, retry_delay=NOW, retry_on=KeyError, on_failure=on_failure
    )(_raise_value_error)
    with Flow("retry-on-failure") as flow:
        t = picky()
    state = flow.run(executor=executor)
    assert isinstance(state.result[t], Failed)
    assert lines(path) == ["on_failure Failed"]


def _raise_value_error() -> None:
    raise ValueError("not a KeyError")


def test_states_record_the_tags_and_a_retry_its_attempt_in_their_context(
    executor: Executor, tmp_path: Path
) -> None:
    path = str(tmp_path / "retrying.txt")

    def seen(task: Task[Any, Any], old: State[Any], new: State[Any]) -> None:
        if isinstance(new, Retrying):
            record(path, f"{new.context.get('task_run_count')} {new.context.get('tags')}")

    flaky = task(
        name="flaky", max_retries=2, retry_delay=NOW, tags=["net", "db"], state_handlers=[seen]
    )(_raise_value_error)
    with Flow("retry-context") as flow:
        t = flaky()
    state = flow.run(executor=executor)
    assert lines(path) == ["1 ['db', 'net']", "2 ['db', 'net']"]
    assert state.result[t].context == {"tags": ["db", "net"]}


def test_skipping_a_retry_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    picky = task(name="picky", max_retries=1, retry_delay=NOW, retry_on=KeyError)(_raise_value_error)
    with Flow("retry-log") as flow:
        picky()
    with caplog.at_level(logging.INFO, logger="taskloom"):
        flow.run()
    assert any(
        "Skipping retry" in r.getMessage() and "ValueError" in r.getMessage() for r in caplog.records
    )


@pytest.mark.parametrize(
    ("retry_on", "expected"),
    [(KeyError, {KeyError}), ((KeyError, OSError), {KeyError, OSError}), ([], None), (None, None)],
)
def test_retry_on_takes_one_type_or_several(retry_on: Any, expected: set[type] | None) -> None:
    t = task(name="t", max_retries=1, retry_delay=NOW, retry_on=retry_on)(_raise_value_error)
    assert t.retry_on == (None if expected is None else frozenset(expected))


@pytest.mark.parametrize(
    ("retry_on", "culprit"),
    [
        (ValueError("x"), "instance of ValueError"),
        ([KeyError, "OSError"], "instance of str"),
        (int, "not an Exception subclass"),
        (signals.FAIL, "not an Exception subclass"),
    ],
    ids=["instance", "string", "not-exception", "signal"],
)
def test_retry_on_must_be_exception_types(retry_on: Any, culprit: str) -> None:
    with pytest.raises(ValueError, match="'fetch'") as raised:
        task(name="fetch", max_retries=1, retry_delay=NOW, retry_on=retry_on)(_raise_value_error)
    assert "retry_on" in str(raised.value) and culprit in str(raised.value)


def test_retry_on_and_retry_delay_need_max_retries() -> None:
    with pytest.raises(ValueError, match="'fetch'.*retry_on.*max_retries"):
        task(name="fetch", retry_on=KeyError)(_raise_value_error)
    with pytest.raises(ValueError, match="'fetch'.*retry_delay.*max_retries"):
        task(name="fetch", retry_delay=dt.timedelta(seconds=1))(_raise_value_error)

    class Fetch(Task[[], None]):
        def run(self) -> None:
            pass

    with pytest.raises(ValueError, match="'fetcher'.*retry_delay"):
        Fetch(name="fetcher", retry_delay=dt.timedelta(seconds=1))


# -- checks on run's signature -----------------------------------------------------------------


RESERVED: dict[str, Any] = {
    "upstream_tasks": lambda x, upstream_tasks=None: x,
    "mapped": lambda x, *, mapped=False: x,
    "flow": lambda x, flow=None: x,
    "task_args": lambda x, task_args=None: x,
}


@pytest.mark.parametrize("reserved", sorted(RESERVED))
def test_run_may_not_use_a_call_keyword_as_a_parameter(reserved: str) -> None:
    with pytest.raises(ValueError, match=f"'work'.*'{reserved}'.*reserved"):
        task(name="work")(RESERVED[reserved])
    work_class: type[Task[Any, Any]] = type("Work", (Task,), {"run": RESERVED[reserved]})
    with pytest.raises(ValueError, match=f"'Work'.*'{reserved}'"):
        work_class()


def test_run_may_not_take_star_args() -> None:
    def gather(*values: int) -> int:
        return sum(values)

    with pytest.raises(ValueError, match="'gather'.*\\*values"):
        task(gather)

    class Gather(Task[..., int]):
        def run(self, *values: int) -> int:
            return sum(values)

    with pytest.raises(ValueError, match="'summing'.*\\*values"):
        Gather(name="summing")


# -- task_run_name ----------------------------------------------------------------------------


@task(task_run_name="fetch-{city}-{country}-{task_name}", max_retries=1, retry_delay=NOW)
def fetch(path: str, city: str) -> str:
    import taskloom

    taskloom.context.logger.info("fetching %s", city)
    record(path, f"{city} {taskloom.context.task_run_name}")
    return city.upper()


def test_task_run_name_fills_a_template_from_inputs_parameters_and_context(
    executor: Executor, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = str(tmp_path / "names.txt")
    with Flow("named") as flow:
        Parameter("country", default="fr")
        one = fetch(path, "paris")
        fetch.map(unmapped(path), ["rome", "oslo"])
    with caplog.at_level(logging.INFO, logger="taskloom"):  # workers capture at this level
        state = flow.run(executor=executor)
    assert state.is_successful()
    assert sorted(lines(path)) == [
        "oslo fetch-oslo-fr-fetch", "paris fetch-paris-fr-fetch", "rome fetch-rome-fr-fetch",
    ]
    # the state's context, the journal, the log records
    assert state.result[one].context["task_run_name"] == "fetch-paris-fr-fetch"
    run = default_journal().load(state.run_id or "")
    index = {t.name: t for t in run.tasks}
    assert index["fetch[0]"].run_name == "fetch-paris-fr-fetch"
    children = run.children[index["fetch[1]"].index]
    assert [c.run_name for c in children] == ["fetch-rome-fr-fetch", "fetch-oslo-fr-fetch"]
    assert index["fetch[1]"].run_name is None  # the mapped task itself did not run
    by_name = {
        getattr(r, "task_run_name", None) for r in caplog.records if r.getMessage() == "fetching rome"
    }
    assert by_name == {"fetch-rome-fr-fetch"}
    assert any(
        "(fetch-paris-fr-fetch): Starting task run" in r.getMessage() for r in caplog.records
    )


def _name_from(**fields: Any) -> str:
    return f"{fields['flow_name']}:{fields['n'] * 2}"


@task(task_run_name=_name_from)
def double(n: int) -> int:
    return n * 2


def test_task_run_name_may_be_a_callable_of_the_fields(executor: Executor) -> None:
    with Flow("callable-name") as flow:
        t = double(21)
    state = flow.run(executor=executor)
    assert state.result[t].context["task_run_name"] == "callable-name:42"


@task(task_run_name="load-{table}", max_retries=2, retry_delay=NOW)
def load(path: str, name: str) -> None:
    record(path, "ran")


def test_a_template_naming_an_unknown_field_fails_that_task_naming_it(
    executor: Executor, tmp_path: Path
) -> None:
    path = str(tmp_path / "ran.txt")
    with Flow("bad-name") as flow:
        t = load(path, "users")
        other = double(1)
    state = flow.run(executor=executor)
    got = state.result[t]
    assert isinstance(got, Failed), got
    message = str(got.message)
    assert "'load'" in message and "'table'" in message and "name, path" in message
    assert lines(path) == []  # the body never ran, and it was not retried
    assert isinstance(state.result[other], Success)
    run = default_journal().load(state.run_id or "")
    assert [t.attempts for t in run.tasks if t.name == "load"] == [1]


@pytest.mark.parametrize(
    ("spec", "why"),
    [(lambda **f: 3, "returned a int"), (lambda **f: f["nope"], "KeyError"), ("{0}", "'0'")],
    ids=["not-a-string", "raises", "positional"],
)
def test_a_run_name_that_cannot_be_made_fails_the_task(spec: Any, why: str) -> None:
    named = task(name="named", task_run_name=spec)(_raise_value_error)
    with Flow("bad-names") as flow:
        t = named()
    got = flow.run().result[t]
    assert isinstance(got, Failed) and "'named'" in str(got.message) and why in str(got.message)


def test_task_run_name_must_be_a_string_or_a_callable() -> None:
    with pytest.raises(ValueError, match="'named'.*task_run_name"):
        task(name="named", task_run_name=3)(_raise_value_error)  # type: ignore[call-overload]  # the wrong type is the test


FLOW_FILE = """
@task(task_run_name="fetch-{city}")
def fetch(city: str) -> str:
    return city

with Flow("cli-named") as flow:
    fetch.map(["rome", "oslo"])
"""


def test_show_and_the_report_name_each_run(tmp_path: Path, taskloom_home: Path) -> None:
    path = write_flow(tmp_path / "named.py", FLOW_FILE)
    done = taskloom(taskloom_home, "run", f"{path}:flow", "--executor", "local", "--no-progress")
    assert done.returncode == 0, done.stderr
    rid = run_id(done.stdout)
    shown = taskloom(taskloom_home, "show", rid, "--children")
    assert shown.returncode == 0, shown.stderr
    assert "fetch[0] (fetch-rome)" in shown.stdout and "fetch[1] (fetch-oslo)" in shown.stdout
    one = taskloom(taskloom_home, "show", rid, "--task", "fetch-oslo")
    assert one.returncode == 0, one.stderr
    assert "--- fetch[1] (fetch-oslo) (Success) ---" in one.stdout
    report = render_report(default_journal().load(rid))
    assert "fetch[0] (fetch-rome)" in report


# -- slug -------------------------------------------------------------------------------------


def test_slugs_are_unique_in_a_flow_and_copies_get_a_suffix() -> None:
    keyed = task(name="keyed", slug="key")(_raise_value_error)
    plain = task(name="plain", tags=["io", "db"])(_raise_value_error)
    with Flow("slugs") as flow:
        n = Parameter("n", default=1)
        a = keyed()
        b = plain()
        c = plain()
    slugs = flow.slugs
    assert slugs[as_task(a)] == "key-copy"
    assert [slugs[as_task(b)], slugs[as_task(c)]] == ["plain-db-io-1", "plain-db-io-2"]
    assert slugs[as_task(n)] == "n"
    assert flow.get_tasks(slug="plain-db-io-2") == [c]
    with pytest.raises(FlowDefinitionError, match="'keyed'.*'key-copy'.*unique"):
        with Flow("twice"):
            keyed()
            keyed()
    added = Flow("added")
    added.add_task(keyed)
    with pytest.raises(ValueError, match="'other'.*'key'"):
        added.add_task(task(name="other", slug="key")(_raise_value_error))


def test_a_slug_must_be_a_non_empty_string() -> None:
    with pytest.raises(ValueError, match="'t'.*slug"):
        task(name="t", slug="")(_raise_value_error)


# -- inputs, outputs, bare tasks, parameters -----------------------------------------------------


def test_inputs_and_outputs_describe_run() -> None:
    def greet(name: str, times: int = 1, *, loud: bool = False, **extra: object) -> str:
        return name * times

    class Shout(Task[[str], str]):
        def run(self, text: str) -> str:
            return text.upper()

    def untyped(x, y=2):  # type: ignore[no-untyped-def]  # inputs() of an unannotated run is the test
        return x

    assert task(greet).inputs() == {
        "name": {"type": str, "default": None, "required": True},
        "times": {"type": int, "default": 1, "required": False},
        "loud": {"type": bool, "default": False, "required": False},
    }
    assert task(greet).outputs() is str
    assert Shout().inputs() == {"text": {"type": str, "default": None, "required": True}}
    assert Shout().outputs() is str
    assert task(untyped).inputs()["y"] == {"type": Any, "default": 2, "required": False}
    assert task(untyped).outputs() is Any
    assert task(_raise_value_error).outputs() is None
    assert Task().inputs() == {} and Task().outputs() is None


def test_a_bare_task_returns_none_and_runs_in_a_flow(executor: Executor) -> None:
    assert Task().run() is None
    with Flow("bare") as flow:
        placeholder: Task[[], None] = Task(name="placeholder")
        flow.add_task(placeholder)
    state = flow.run(executor=executor)
    assert isinstance(state.result[placeholder], Success)
    assert state.result[placeholder].result is None


def test_a_parameter_outside_a_flow_run_returns_its_default() -> None:
    # `Parameter(...)` reads as its value for mypy; at run time it is a task
    assert as_task(Parameter("x", default=2)).run() == 2
    assert as_task(Parameter("y", required=False, type=int)).run() is None


def test_a_copied_or_edited_flow_keeps_its_slugs_unique() -> None:
    keyed = task(name="keyed", slug="key")(_raise_value_error)
    other = task(name="other")(_raise_value_error)
    flow = Flow("edited")
    flow.add_task(keyed)
    copied = flow.copy()
    assert copied.slugs == {keyed: "key"}
    with pytest.raises(FlowDefinitionError, match="'key'"):
        copied.add_task(task(name="again", slug="key")(_raise_value_error))
    flow.replace(keyed, other)
    assert flow.slugs == {other: "other-1"}
    flow.add_task(task(name="again", slug="key")(_raise_value_error))  # free again


# -- a call's own options: task_args, mapped=True (Prefect 1.x's call keywords) ---------------


@task(tags=["etl"])
def flaky_once(x: int, folder: str) -> int:
    """Fails on its first attempt in ``folder`` (a marker file), then returns ``x + 1``."""
    marker = Path(folder, f"failed-{x}")
    if not marker.exists():
        marker.touch()
        raise RuntimeError("first attempt")
    return x + 1


def test_task_args_set_a_calls_own_options_and_mapped_true_maps(
    executor: Executor, tmp_path: Path
) -> None:
    """``t(..., task_args={...})`` (and ``t.map(..., task_args=...)``) gives that call's
    copy its own options, the task's tags kept; ``t(xs, mapped=True)`` is ``t.map(xs)``;
    the task itself, and its other calls, keep theirs."""
    folder = str(tmp_path)
    with Flow("task-args") as flow:
        retried = flaky_once(1, folder, task_args={  # type: ignore[call-arg]
            "name": "load-users", "tags": ["users"], "max_retries": 1, "retry_delay": NOW,
        })
        plain = flaky_once(2, folder)
        mapped = flaky_once.map([3, 4], unmapped(folder), task_args={"name": "load-many"})
        mapped_too = flaky_once([5], unmapped(folder), mapped=True)  # type: ignore[call-arg, arg-type]
    state = flow.run(executor=executor)
    names = [as_task(t).name for t in (retried, plain, mapped, mapped_too)]
    assert names == ["load-users", "flaky_once", "load-many", "flaky_once"]
    assert as_task(retried).tags == frozenset({"etl", "users"})
    assert as_task(plain).tags == frozenset({"etl"}) and flaky_once.name == "flaky_once"
    assert state.result[retried].result == 2 and kind(state.result[plain]) == "Failed"
    many = state.result[mapped]
    assert isinstance(many, Mapped) and [kind(c) for c in many.map_states] == ["Failed", "Failed"]
    assert as_task(mapped).name == "load-many"
    assert kind(state.result[mapped_too]) == "Mapped"


@pytest.mark.parametrize(
    ("task_args", "shown"),
    [
        ({"nmae": "x"}, "task_args has 'nmae', neither a task option nor an attribute"),
        ({"max_retries": -1}, "max_retries must be a whole number >= 0"),
        ({"max_retries": 1}, "needs a retry_delay"),
        (["name"], "task_args must be a dict of task options"),
    ],
)
def test_bad_task_args_are_refused_when_the_flow_is_built(task_args: Any, shown: str) -> None:
    with pytest.raises(FlowDefinitionError, match="Task 'flaky_once'") as caught:
        with Flow("bad-task-args"):
            flaky_once(1, "x", task_args=task_args)  # type: ignore[call-arg]
    assert shown in str(caught.value)


class Scaled(Task[[int], int]):
    def __init__(self, factor: int = 1, **options: Any) -> None:
        self.factor = factor
        super().__init__(**options)

    def run(self, x: int) -> int:
        return x * self.factor


def test_copy_takes_options_and_attributes_as_in_prefect(executor: Executor) -> None:
    """``t.copy(**task_args)`` (Prefect 1.x): options checked as the constructor checks
    them, a subclass's own attributes set; the task itself keeps its own."""
    base = Scaled(2, name="scaled")
    copied = base.copy(name="tripled", factor=3, tags=["x"])
    assert (copied.name, copied.factor, copied.tags) == ("tripled", 3, frozenset({"x"}))
    assert (base.name, base.factor, base.tags) == ("scaled", 2, frozenset())
    with Flow("copy-options") as flow:
        a, b = base(5), copied(5)
    state = flow.run(executor=executor)
    assert (state.result[a].result, state.result[b].result) == (10, 15)
    with pytest.raises(FlowDefinitionError, match="'nope', neither a task option nor an attribute"):
        base.copy(nope=1)
    with pytest.raises(FlowDefinitionError, match="needs a retry_delay"):
        base.copy(max_retries=1)
