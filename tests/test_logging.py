"""Logging (API.md Part 2, "Hooks and logging"): task and flow loggers whose records carry
the run's fields on every executor, once each and in order; ``get_logger``;
``context.get("logger")``; ``log_stdout``; the Prefect-style run log (``basic_config``, and
``taskloom run --log-level INFO``); the log text the journal keeps per task, with its cap,
read back by ``taskloom show --logs`` from another process."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any

import pytest

import taskloom
from taskloom import Flow, task
from taskloom.executors import Executor
from taskloom.logging import DATEFMT, FORMAT, LOG_CAP, RunLogs, basic_config, get_logger

from ._helpers import Keep
from ._cli import RUN_ID, taskloom as run_cli, write_flow

FIELDS = ("flow_run_id", "task_name", "task_run_id", "map_index", "attempt")


@task
def chatty(n: int) -> int:
    log = taskloom.context.get("logger")
    log.info("one %d", n)
    log.warning("two %d", n)
    return os.getpid()


@task(log_stdout=True)
def printer() -> None:
    print("first line\nsecond line")


def test_get_logger() -> None:
    assert taskloom.logging.get_logger() is logging.getLogger("taskloom")
    assert get_logger("etl") is logging.getLogger("taskloom.etl")
    assert chatty.logger is logging.getLogger("taskloom.task.chatty")
    assert Flow("etl").logger is logging.getLogger("taskloom.flow.etl")


def test_records_carry_fields_from_every_executor(executor: Executor, kept: Keep) -> None:
    with Flow("fields") as flow:
        t = chatty.map([1, 2])
    state = flow.run(executor=executor, journal=False)
    assert state.is_successful(), state.result
    mine: list[Any] = [r for r in kept.records if r.name == "taskloom.task.chatty" and r.getMessage()[:3] in ("one", "two")]
    by_child: dict[int, list[str]] = {}
    for r in mine:
        by_child.setdefault(r.map_index, []).append(r.getMessage())
        assert r.flow_run_id == state.run_id
        assert r.task_name == "chatty"
        assert r.attempt == 1
        assert r.task_run_id.startswith(f"{state.run_id}.") and r.task_run_id.endswith(".1")
    assert by_child == {0: ["one 1", "two 1"], 1: ["one 2", "two 2"]}
    assert len(mine) == 4  # once each: no duplicates
    mapped: Any = state.result[t]
    pids = {c.result for c in mapped.map_states}
    assert all(r.process in pids for r in mine)


def test_context_logger_is_the_task_logger(executor: Executor) -> None:
    @task
    def name_of_logger() -> str:
        return str(taskloom.context.get("logger").name)

    with Flow("ctx") as flow:
        t = name_of_logger()
    state = flow.run(executor=executor, journal=False)
    assert state.result[t].result == "taskloom.task.name_of_logger"


def test_log_stdout_on_every_executor(executor: Executor, kept: Keep) -> None:
    with Flow("stdout") as flow:
        printer()
    state = flow.run(executor=executor, journal=False)
    assert state.is_successful(), state.result
    lines: list[Any] = [r for r in kept.records if r.name == "taskloom.task.printer" and "line" in r.getMessage()]
    assert [r.getMessage() for r in lines] == ["first line", "second line"]
    assert all(r.levelno == logging.INFO and r.task_name == "printer" for r in lines)


def test_log_stdout_is_validated() -> None:
    with pytest.raises(ValueError, match="log_stdout"):
        task(log_stdout="yes")(lambda: None)  # type: ignore[call-overload]


def test_worker_print_comes_back_to_parent_stdout(
    pool_executor: Executor, capsys: pytest.CaptureFixture[str]
) -> None:
    @task
    def prints() -> None:
        print("hello from a worker")

    with Flow("prints") as flow:
        prints()
    assert flow.run(executor=pool_executor, journal=False).is_successful()
    assert "hello from a worker\n" in capsys.readouterr().out


def test_basic_config_prefect_lines() -> None:
    stream = io.StringIO()
    handler = basic_config("INFO", stream=stream)
    try:
        with Flow("etl") as flow:
            chatty(1)
        flow.run(journal=False)
    finally:
        get_logger().removeHandler(handler)
        get_logger().setLevel(logging.NOTSET)
    text = stream.getvalue()
    assert "INFO - taskloom.flow.etl | Beginning Flow run for 'etl'" in text
    assert "INFO - taskloom.task.chatty | Task 'chatty': Starting task run..." in text
    assert "Task 'chatty': Finished task run for task with final state: 'Success'" in text
    assert "INFO - taskloom.flow.etl | Flow run SUCCESS: all reference tasks succeeded" in text
    assert text.startswith("[20")


def test_run_log_and_journal_lines_are_logging_formatters_text() -> None:
    """The run log and the journal's log text format records as ``logging.Formatter(FORMAT,
    DATEFMT)`` does, to the character: arguments, a message that is not a str, an
    exception's traceback, a stack, across a change of second. Each record is kept once."""
    stream = io.StringIO()
    handler = basic_config("INFO", stream=stream)
    logs = RunLogs("r")
    logs.attach()
    logger = logging.getLogger("taskloom.test.lines")
    keep = Keep()
    logger.addHandler(keep)
    try:
        extra = {"task_run_id": "r.4.1"}
        logger.info("rows %d of %s", 3, "orders", extra=extra)
        logger.warning(ValueError("not a str"), extra=extra)
        logger.info("déjà vu %r", {"k": [1, 2]}, extra=extra)
        try:
            raise KeyError("boom")
        except KeyError:
            logger.exception("failed", extra=extra)
        logger.info("with stack", stack_info=True, extra=extra)
        record = logger.makeRecord(logger.name, logging.INFO, __file__, 1, "a second later", (), None, extra=extra)
        record.created += 1.0
        logger.handle(record)
    finally:
        logs.detach()
        logger.removeHandler(keep)
        get_logger().removeHandler(handler)
        get_logger().setLevel(logging.NOTSET)
    expected = [logging.Formatter(FORMAT, DATEFMT).format(r) for r in keep.records]
    assert len(expected) == 6
    assert stream.getvalue() == "".join(line + "\n" for line in expected)
    assert logs.texts()[4] == "\n".join(expected)


def test_run_logs_cap_with_note() -> None:
    logs = RunLogs("r", cap=100)
    logger = logging.getLogger("taskloom.test.cap")
    logger.setLevel(logging.INFO)
    logger.addHandler(logs)
    logger.propagate = False
    try:
        for n in range(10):
            logger.info("record number %d", n, extra={"task_run_id": "r.3.1"})
    finally:
        logger.removeHandler(logs)
    text = logs.texts()[3]
    kept_lines = text.splitlines()
    assert kept_lines[-1].startswith("... (") and kept_lines[-1].endswith(" records cut)")
    cut = int(kept_lines[-1][5:].split()[0])
    assert len(kept_lines) - 1 + cut == 10
    assert len("\n".join(kept_lines[:-1])) <= 100
    assert LOG_CAP == 64 * 1024


FLOW = """\
import logging

import taskloom

@task
def extract() -> int:
    logging.getLogger("taskloom.task.extract").info("extracting rows")
    print("plain print")
    return 1

@task
def transform(x: int) -> int:
    taskloom.context.logger.info("about to fail")
    raise ValueError("bad row 7")

with Flow("etl") as flow:
    transform(extract())
"""


def test_cli_log_level_info_and_show_logs_after_failure(tmp_path: Path) -> None:
    path = write_flow(tmp_path / "flows.py", FLOW)
    done = run_cli(tmp_path / "home", "run", f"{path}:flow", "--executor", "loky", "--workers", "1",
                   "--no-progress", "--log-level", "INFO")
    assert done.returncode == 1, done.stderr
    assert "INFO - taskloom.task.extract | Task 'extract': Starting task run..." in done.stderr
    assert "Task 'transform': Finished task run for task with final state: 'Failed'" in done.stderr
    assert "Flow run FAILED: some reference tasks failed." in done.stderr
    assert "plain print" in done.stdout
    match = RUN_ID.search(done.stdout + done.stderr)
    assert match is not None
    shown = run_cli(tmp_path / "home", "show", match.group(1), "--logs", "--task", "transform")
    assert shown.returncode == 0, shown.stderr
    assert "--- transform (Failed) ---" in shown.stdout
    assert "about to fail" in shown.stdout
    assert "extracting rows" not in shown.stdout
    every = run_cli(tmp_path / "home", "show", match.group(1), "--logs")
    assert "extracting rows" in every.stdout and "bad row 7" in every.stdout


def test_cli_default_level_keeps_info_in_journal_not_on_stderr(tmp_path: Path) -> None:
    path = write_flow(tmp_path / "flows.py", FLOW)
    done = run_cli(tmp_path / "home", "run", f"{path}:flow", "--executor", "local", "--no-progress")
    assert done.returncode == 1
    assert "Starting task run" not in done.stderr
    match = RUN_ID.search(done.stdout + done.stderr)
    assert match is not None
    shown = run_cli(tmp_path / "home", "show", match.group(1), "--logs")
    assert "about to fail" in shown.stdout


def test_get_logger_is_exported() -> None:
    assert taskloom.get_logger("x") is logging.getLogger("taskloom.x")
