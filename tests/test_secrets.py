"""Secrets (API.md Part 2, "Secrets"): ``Secret``/``PrefectSecret`` read a secret from
``context.secrets`` or the environment, a missing one fails naming it, and its value never
reaches the journal, the output cache, a report, a log record or a state's repr, on every
executor."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import taskloom
from taskloom import Flow, task, triggers
from taskloom.caching import SQLiteCacheStore
from taskloom.executors import Executor
from taskloom.journal import default_journal
from taskloom.report import render_report
from taskloom.resume import resume
from taskloom.states import Cached, Failed, Paused, Success
from taskloom.tasks.secrets import PrefectSecret, Secret

from ._helpers import Keep

MASK = "<secret API_TOKEN>"


@pytest.fixture
def secret() -> str:
    """A value found nowhere but where the secret goes."""
    return f"tl-secret-{uuid.uuid4().hex}"


@task
def log_it(token: str) -> int:
    taskloom.context.logger.warning("calling the API with %s", token)
    print(f"token={token}")
    return len(token)


@task(log_stdout=True)
def print_it(token: str) -> None:
    print(f"printed {token}")


@task
def fail_with(token: str) -> None:
    raise ValueError(f"the API refused {token}")


@task(max_retries=1, retry_delay=timedelta(seconds=0))
def flaky(token: str) -> str:
    if taskloom.context.task_run_count == 1:
        raise ConnectionError(f"reset while sending {token}")
    return "sent"


@task(cache_for=timedelta(hours=1))
def header(token: str) -> str:
    return f"Bearer {token}"


@task(cache_for=timedelta(hours=1))
def plain() -> str:
    return "cached in the store"


@task(trigger=triggers.manual_only)
def gated(token: str) -> int:
    return len(token)


def _secret_flow(name: str) -> tuple[Flow, dict[str, Any]]:
    with Flow(name) as flow:
        token: Any = PrefectSecret("API_TOKEN")  # Prefect's style: the task itself is passed
        handles = {
            "log_it": log_it(token),
            "print_it": print_it(token),
            "fail_with": fail_with(token),
            "flaky": flaky(token),
            "header": header(token),
            "plain": plain(),
            "gated": gated(token),
            "token": token,
        }
    return flow, handles


def _files_holding(home: Path, value: str) -> list[str]:
    needle = value.encode()
    return [p.name for p in home.rglob("*") if p.is_file() and needle in p.read_bytes()]


def test_a_secret_reaches_tasks_but_never_what_is_kept_or_shown(
    executor: Executor, kept: Keep, secret: str, taskloom_home: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    flow, h = _secret_flow(f"secrets-{uuid.uuid4().hex[:8]}")
    state = flow.run(executor=executor, context={"secrets": {"API_TOKEN": secret}})
    states = state.result

    # The tasks got the value itself.
    assert states[h["token"]].result == secret
    assert states[h["log_it"]].result == len(secret)
    assert isinstance(states[h["flaky"]], Success) and states[h["flaky"]].result == "sent"
    assert isinstance(states[h["header"]], Success)
    assert states[h["header"]].result == f"Bearer {secret}"
    assert isinstance(states[h["fail_with"]], Failed)
    assert isinstance(states[h["gated"]], Paused)
    assert states[h["gated"]].cached_inputs == {"token": secret}  # kept in memory to resume

    # States: reprs and messages are masked.
    failed = states[h["fail_with"]]
    assert failed.message == f"Error during execution of task: ValueError('the API refused {MASK}')"
    for shown in (repr(state), str(state), *(repr(s) for s in states.values())):
        assert secret not in shown
    # a state's repr shows its message (masked), never its result (Prefect's repr)
    assert MASK in repr(failed) and repr(states[h["token"]]) == '<Success: "Task run succeeded.">'

    # Log records, as made (worker processes included) and as a handler formats them.
    formatter = logging.Formatter("%(name)s %(message)s")
    lines = [formatter.format(record) for record in kept.records]
    assert any(f"calling the API with {MASK}" in line for line in lines)
    assert any(f"printed {MASK}" in line for line in lines)
    assert any("reset while sending" in line for line in lines)
    for record, line in zip(kept.records, lines):
        assert secret not in line and secret not in record.getMessage()
        error = record.exc_info[1] if record.exc_info else None
        assert error is None or secret not in repr(error.args)

    # The journal, the cache store and the report.
    assert state.run_id is not None
    journaled = default_journal().load(state.run_id)
    rows = {row.name: row for row in journaled.tasks}
    assert rows["fail_with"].message is not None and MASK in rows["fail_with"].message
    assert rows["fail_with"].traceback is not None and MASK in rows["fail_with"].traceback
    assert rows["log_it"].logs is not None and MASK in rows["log_it"].logs
    assert repr(rows["gated"].inputs) == "{'token': <secret API_TOKEN>}"
    page = render_report(journaled, flow=flow)
    assert secret not in page and "the API refused &lt;secret API_TOKEN&gt;" in page
    store = SQLiteCacheStore()
    assert [key for key, *_ in store.entries()] == [f"{flow.name}/plain"]  # not `header`
    assert not isinstance(states[h["header"]], Cached)
    assert _files_holding(taskloom_home, secret) == []

    # A resume reads the secret again (here from the environment) for the paused task.
    monkeypatch.setenv("TASKLOOM_SECRETS_API_TOKEN", secret)
    again = resume(state.run_id, flow=flow, tasks=["gated"], executor=executor)
    gated_state = next(s for t, s in again.result.items() if t.name == "gated")
    assert gated_state.result == len(secret)
    assert _files_holding(taskloom_home, secret) == []
    assert secret not in capsys.readouterr().err


def test_secret_from_the_environment_reaches_workers(
    executor: Executor, secret: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The pool's workers were started before this variable was set: the run reads it in
    # the calling process and hands it to them through the context.
    monkeypatch.setenv("PREFECT__CONTEXT__SECRETS__DB_PASSWORD", secret)
    monkeypatch.setenv("TASKLOOM_SECRETS_DB_USER", "reader")
    with Flow("env-secrets") as flow:
        n = log_it(Secret("DB_PASSWORD")())  # called: reads as Any for mypy
        m = log_it(PrefectSecret("DB_USER")())
    state = flow.run(executor=executor, journal=False)
    assert state.is_successful(), state.result
    assert state.result[n].result == len(secret)
    assert state.result[m].result == len("reader")


def test_taskloom_variable_wins_over_prefect_and_context_over_both(
    secret: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PREFECT__CONTEXT__SECRETS__KEY", "from-prefect")
    assert Secret("KEY").run() == "from-prefect"
    monkeypatch.setenv("TASKLOOM_SECRETS_KEY", secret)
    assert Secret("KEY").run() == secret
    with taskloom.context(secrets={"KEY": "from-context"}):
        assert PrefectSecret("KEY").run() == "from-context"


def test_a_missing_secret_fails_its_task_naming_it(executor: Executor) -> None:
    with Flow("missing-secret") as flow:
        token = PrefectSecret("NOWHERE_TO_BE_FOUND")()
        n = log_it(token)
    state = flow.run(executor=executor, journal=False)
    failed = state.result[token]
    assert isinstance(failed, Failed)
    assert failed.message is not None
    assert "secret 'NOWHERE_TO_BE_FOUND' not found" in failed.message
    assert "TASKLOOM_SECRETS_NOWHERE_TO_BE_FOUND" in failed.message
    assert state.result[n].is_failed()


def test_bad_secret_tasks_and_context_are_refused() -> None:
    with pytest.raises(ValueError, match="needs the secret's name"):
        Secret("")
    with pytest.raises(ValueError, match="a secret is never cached"):
        PrefectSecret("X", cache_for=timedelta(hours=1))
    with Flow("bad-secrets") as flow:
        log_it(Secret("X")())
    with pytest.raises(TypeError, match="context 'secrets' must be a mapping"):
        flow.run(context={"secrets": ["X"]}, journal=False)


def test_secret_task_name_and_prefect_alias() -> None:
    assert Secret("API_TOKEN").name == "API_TOKEN"
    assert Secret("API_TOKEN", task_name="token").name == "token"
    assert issubclass(PrefectSecret, Secret)


@task
def token_from_context() -> str:
    secret: str = taskloom.context.secrets["API_TOKEN"]
    return secret


@task
def refused(token: str) -> None:
    taskloom.context.logger.warning("sending %s", token)
    raise ValueError(f"the API refused {token}")


def test_a_resume_keeps_the_secrets_it_reads_back_out_of_what_it_writes_and_logs(
    executor: Executor, kept: Keep, secret: str, taskloom_home: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A task took the secret from the run's context (no ``Secret`` task: the resume's
    flow knows of no secret); the journal kept its failed consumer's input as a reference.
    The resume reads the secret again (from the environment) and the consumer fails again:
    the secret is kept out of the resume's journal rows and log records as it was out of
    the first run's."""
    with Flow(f"secret-ref-{uuid.uuid4().hex[:8]}") as flow:
        refused(token_from_context())
    first = flow.run(executor=executor, context={"secrets": {"API_TOKEN": secret}})
    assert first.run_id is not None and isinstance(first, Failed)
    monkeypatch.setenv("TASKLOOM_SECRETS_API_TOKEN", secret)
    kept.records.clear()
    again = resume(first.run_id, flow=flow, executor=executor)
    assert again.run_id is not None and isinstance(again, Failed)
    rows = {row.name: row for row in default_journal().load(again.run_id).tasks}
    assert repr(rows["refused"].inputs) == f"{{'token': {MASK}}}", rows["refused"]
    assert rows["refused"].message is not None and MASK in rows["refused"].message
    lines = [record.getMessage() for record in kept.records]
    assert f"sending {MASK}" in lines, lines
    assert not any(secret in line for line in lines), lines
    assert _files_holding(taskloom_home, secret) == []


@task
def password_from_context() -> str:
    password: str = taskloom.context.secrets["DB"]["password"]
    return password


def test_a_part_of_a_structured_secret_is_not_kept_as_a_reference_to_the_whole(
    executor: Executor, secret: str, taskloom_home: Path
) -> None:
    """A task took one value out of a structured secret; its consumer failed. The journal
    keeps neither the value nor a reference to the whole secret (which a resume would
    read back and feed in its place): the consumer's inputs are not stored."""
    with Flow(f"secret-part-{uuid.uuid4().hex[:8]}") as flow:
        refused(password_from_context())
    first = flow.run(executor=executor, context={"secrets": {"DB": {"user": "bob", "password": secret}}})
    assert first.run_id is not None and isinstance(first, Failed)
    rows = {row.name: row for row in default_journal().load(first.run_id).tasks}
    assert rows["refused"].inputs is None, rows["refused"]
    assert _files_holding(taskloom_home, secret) == []


def test_a_string_secret_shared_with_a_part_of_another_is_kept_as_itself(
    executor: Executor, secret: str, taskloom_home: Path
) -> None:
    """A string secret whose value is also a part of a structured secret is kept as a
    reference to the string secret (a resume reads back that value), whatever order the
    secrets were given in."""
    with Flow(f"secret-shared-{uuid.uuid4().hex[:8]}") as flow:
        refused(token_from_context())
    given = {"API_TOKEN": secret, "DB": {"user": "bob", "password": secret}}
    first = flow.run(executor=executor, context={"secrets": given})
    assert first.run_id is not None and isinstance(first, Failed)
    rows = {row.name: row for row in default_journal().load(first.run_id).tasks}
    assert repr(rows["refused"].inputs) == f"{{'token': {MASK}}}", rows["refused"]
