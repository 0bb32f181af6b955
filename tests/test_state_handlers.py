"""State handlers, on_failure and terminal_state_handler (issue 13), on every executor.

Handlers run where the task runs for the changes of an attempt (a worker process on loky
and Dask), so they record through files (``_helpers.record``)."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from taskloom import Flow, Task, task
from taskloom.errors import FlowDefinitionError, TaskDefinitionError
from taskloom.executors import Executor, LocalExecutor, LokyExecutor
from taskloom.notifications import Notifier, slack_notifier, webhook_notifier
from taskloom.signals import SKIP
from taskloom.states import Failed, State, Success

from ._helpers import kind, lines, record


class Recorder:
    """A state handler writing ``name: Old->New`` lines to a file (picklable)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __call__(self, obj: Any, old: State[Any], new: State[Any]) -> None:
        record(self.path, f"{obj.name}: {kind(old)}->{kind(new)}")


class OnFail:
    """An on_failure callback writing ``failed name message`` lines."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __call__(self, obj: Any, state: State[Any]) -> None:
        record(self.path, f"failed {obj.name}")


def fail_to_success(obj: Any, old: State[Any], new: State[Any]) -> State[Any] | None:
    """Turns a failure into a success with result 42."""
    return Success("rescued", 42) if isinstance(new, Failed) else None


def broken(obj: Any, old: State[Any], new: State[Any]) -> None:
    """Raises on the task's success."""
    if isinstance(new, Success):
        raise RuntimeError("handler broke")


def wrong_return(obj: Any, old: State[Any], new: State[Any]) -> Any:
    """Returns something that is not a State."""
    return "oops"


def skip_on_running(obj: Any, old: State[Any], new: State[Any]) -> None:
    """Skips the task as it starts (Prefect's G50)."""
    if kind(new) == "Running":
        raise SKIP("skipped by handler")


def changes(path: Path) -> list[str]:
    return lines(path)


def test_success_and_retry(executor: Executor, tmp_path: Path) -> None:
    """A task's changes, in order: Pending->Running->Success; a retried one
    Pending->Running->Failed->Retrying->Running->Success; on_failure not called."""
    log, marker = tmp_path / "log", tmp_path / "ran"
    rec = Recorder(log)

    @task(state_handlers=[rec])
    def ok() -> int:
        return 1

    @task(max_retries=2, retry_delay=timedelta(0), state_handlers=[rec], on_failure=OnFail(log))
    def flaky(x: int) -> int:
        if not marker.exists():
            marker.write_text("1")
            raise ValueError("first time")
        return x

    with Flow("f") as flow:
        flaky(ok())
    state = flow.run(executor=executor)
    assert kind(state) == "Success"
    got = changes(log)
    assert [c for c in got if c.startswith("ok")] == ["ok: Pending->Running", "ok: Running->Success"]
    assert [c for c in got if c.startswith("flaky")] == [
        "flaky: Pending->Running", "flaky: Running->Failed", "flaky: Failed->Retrying",
        "flaky: Retrying->Running", "flaky: Running->Success",
    ]


def test_on_failure_once_with_retries(executor: Executor, tmp_path: Path) -> None:
    """on_failure is called once, when the task ends failed after its last retry."""
    log = tmp_path / "log"

    @task(max_retries=2, retry_delay=timedelta(0), on_failure=OnFail(log))
    def always() -> None:
        raise ValueError("always")

    with Flow("f") as flow:
        always()
    assert kind(flow.run(executor=executor)) == "Failed"
    assert changes(log) == ["failed always"]


def test_trigger_failure_skip_and_downstream(executor: Executor, tmp_path: Path) -> None:
    """Decided changes go straight from Pending, with no Running: TriggerFailed, Skipped."""
    log = tmp_path / "log"
    rec = Recorder(log)

    @task
    def boom() -> int:
        raise ValueError("boom")

    @task
    def skipper() -> int:
        raise SKIP("no")

    @task(state_handlers=[rec], on_failure=OnFail(log))
    def after_boom(x: int) -> int:
        return x

    @task(state_handlers=[rec])
    def after_skip(x: int) -> int:
        return x

    with Flow("f") as flow:
        after_boom(boom())
        after_skip(skipper())
    flow.run(executor=executor)
    assert sorted(changes(log)) == [
        "after_boom: Pending->TriggerFailed", "after_skip: Pending->Skipped", "failed after_boom",
    ]


def test_cache_hit(executor: Executor, tmp_path: Path) -> None:
    """The first run goes Pending->Running->Success (taskloom keeps Success where Prefect
    reported Success->Cached); a hit goes Pending->Cached."""
    log = tmp_path / "log"

    @task(cache_for=timedelta(hours=1), state_handlers=[Recorder(log)])
    def slow() -> int:
        return 3

    with Flow("cached") as flow:
        slow()
    flow.run(executor=executor)
    flow.run(executor=executor)
    assert changes(log) == [
        "slow: Pending->Running", "slow: Running->Success", "slow: Pending->Cached",
    ]


def test_mapped_task_and_children(executor: Executor, tmp_path: Path) -> None:
    """Each child goes Pending->Running->Success where it runs; the parent Pending->Mapped."""
    log = tmp_path / "log"

    @task(state_handlers=[Recorder(log)])
    def double(x: int) -> int:
        return 2 * x

    with Flow("f") as flow:
        double.map([1, 2])
    flow.run(executor=executor)
    got = changes(log)
    assert got.count("double: Pending->Running") == 2
    assert got.count("double: Running->Success") == 2
    assert got[-1] == "double: Pending->Mapped"
    assert len(got) == 5


def test_replacement_seen_downstream(executor: Executor, tmp_path: Path) -> None:
    """A handler turning Failed into Success: no retry, and downstream receives its result."""

    @task(max_retries=1, retry_delay=timedelta(0), state_handlers=[fail_to_success])
    def boom() -> int:
        raise ValueError("boom")

    @task
    def inc(x: int) -> int:
        return x + 1

    with Flow("f") as flow:
        b = boom()
        i = inc(b)
    state = flow.run(executor=executor)
    assert state.result is not None
    assert state.result[b].result == 42 and state.result[b].message == "rescued"
    assert state.result[i].result == 43


def test_raising_and_wrong_return_fail_the_task(executor: Executor) -> None:
    """A handler that raises, or returns a str, fails its task (named), not the run."""

    @task(state_handlers=[broken])
    def one() -> int:
        return 1

    @task(state_handlers=[wrong_return])
    def two() -> int:
        return 2

    @task(state_handlers=[skip_on_running])
    def three() -> int:
        raise AssertionError("the body must not run")

    with Flow("f") as flow:
        a, b, c = one(), two(), three()
    state = flow.run(executor=executor)
    assert state.result is not None
    sa, sb, sc = state.result[a], state.result[b], state.result[c]
    assert kind(sa) == "Failed" and "broken" in str(sa.message)
    assert "RuntimeError('handler broke')" in str(sa.message)
    assert kind(sb) == "Failed" and "wrong_return" in str(sb.message) and "str" in str(sb.message)
    assert kind(sc) == "Skipped" and sc.message == "skipped by handler"
    assert kind(state) == "Failed"


def test_flow_handlers_and_terminal_state_handler(tmp_path: Path) -> None:
    """Flow handlers: Scheduled->Running, Running->final; terminal_state_handler first."""
    log = tmp_path / "log"

    def terminal(flow: Flow, state: State[Any], refs: set[State[Any]]) -> State[Any]:
        record(str(log), f"terminal {kind(state)} {len(refs)}")
        return Success("overridden")

    @task
    def boom() -> int:
        raise ValueError("boom")

    with Flow(
        "f", state_handlers=[Recorder(log)], on_failure=OnFail(log), terminal_state_handler=terminal
    ) as flow:
        b = boom()
    state = flow.run()
    assert kind(state) == "Success" and state.message == "overridden"
    assert kind(state.result[b]) == "Failed"
    assert changes(log) == ["f: Scheduled->Running", "terminal Failed 1", "f: Running->Success"]

    with Flow("g", on_failure=OnFail(log)) as failing:
        boom()
    assert kind(failing.run()) == "Failed"
    assert changes(log)[-1] == "failed g"


def two_args(a: Any, b: Any) -> None:
    """Takes too few arguments for a state handler."""


@pytest.mark.parametrize(
    "options, words",
    [
        ({"state_handlers": [42]}, ["'t'", "42", "not callable"]),
        ({"state_handlers": [two_args]}, ["'t'", "two_args", "3 positional"]),
        ({"on_failure": fail_to_success}, ["'t'", "fail_to_success", "2 positional"]),
        ({"state_handlers": fail_to_success}, ["'t'", "list"]),
    ],
)
def test_task_validation(options: dict[str, Any], words: list[str]) -> None:
    with pytest.raises(TaskDefinitionError) as raised:
        Task(name="t", **options)
    for word in words:
        assert word in str(raised.value)


def test_flow_validation() -> None:
    with pytest.raises(FlowDefinitionError, match="'f'.*two_args.*3 positional"):
        Flow("f", state_handlers=[two_args])  # type: ignore[list-item]
    with pytest.raises(FlowDefinitionError, match="'f'.*terminal_state_handler.*two_args"):
        Flow("f", terminal_state_handler=two_args)  # type: ignore[arg-type]


# -- notifiers against a real local HTTP server ---------------------------------------------


@pytest.fixture
def server() -> Iterator[tuple[str, list[dict[str, Any]], threading.Event]]:
    """An HTTP server on 127.0.0.1 (a free port) keeping the JSON bodies posted to it."""
    bodies: list[dict[str, Any]] = []
    posted = threading.Event()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            bodies.append(json.loads(self.rfile.read(length)))
            self.send_response(200)
            self.end_headers()
            posted.set()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/hook", bodies, posted
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize("where", ["local", "loky"])
def test_webhook_notifier(
    where: str, server: tuple[str, list[dict[str, Any]], threading.Event]
) -> None:
    """The notifier posts the failure (name, state, message) as JSON; on loky from the
    worker process, where the handler runs."""
    url, bodies, posted = server

    @task(state_handlers=[webhook_notifier(url, only_states=[Failed])])
    def boom() -> int:
        raise ValueError("boom")

    with Flow("f") as flow:
        boom()
    executor = LocalExecutor() if where == "local" else LokyExecutor(max_workers=2)
    flow.run(executor=executor)
    assert posted.wait(10)
    Notifier.wait(5)
    assert len(bodies) == 1
    assert bodies[0]["name"] == "boom" and bodies[0]["kind"] == "task"
    assert bodies[0]["state"] == "Failed" and "ValueError('boom')" in bodies[0]["message"]


def test_slack_notifier_reads_the_secret(
    server: tuple[str, list[dict[str, Any]], threading.Event], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The URL comes from the context's secrets, else the environment; flows notify too."""
    url, bodies, posted = server
    with Flow("flow-s", state_handlers=[slack_notifier()]) as flow:
        pass
    flow.run(context={"secrets": {"SLACK_WEBHOOK_URL": url}})  # Success: not posted
    monkeypatch.setenv("PREFECT__CONTEXT__SECRETS__SLACK_WEBHOOK_URL", url)

    @task(state_handlers=[slack_notifier()])
    def boom() -> int:
        raise ValueError("boom")

    with Flow("flow-s") as failing:
        boom()
    failing.run()
    assert posted.wait(10)
    Notifier.wait(5)
    assert [b["name"] for b in bodies] == ["boom"]
    assert "text" in bodies[0]


def test_failed_post_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    """A refused post is logged as a warning; the task's state is unchanged."""

    @task(state_handlers=[webhook_notifier("http://127.0.0.1:9/none", timeout=1.0)])
    def ok() -> int:
        return 1

    with Flow("f") as flow:
        t = ok()
    with caplog.at_level("WARNING", logger="taskloom.notifications"):
        state = flow.run()
        Notifier.wait(5)
    assert kind(state.result[t]) == "Success"
    assert "could not be posted" in caplog.text
