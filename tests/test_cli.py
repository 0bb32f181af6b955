"""The command line, in real subprocesses (``python -m taskloom``) against a private
``TASKLOOM_HOME``: run (exit statuses, the task table, parameters, usage errors), runs,
show, cache ls/clear, and --help everywhere."""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from taskloom import cli
from taskloom.executors import LocalExecutor
from taskloom.journal import Journal
from taskloom.loader import load_flow

from ._cli import describe, lines, run_id, table_rows, taskloom, write_flow

BASIC = """\
@task
def double(x: int) -> int:
    record(LOG, f"double {x}")
    return 2 * x


@task
def describe(y: int) -> str:
    record(LOG, f"describe {y}")
    return f"y is {y}"


with Flow("basic") as flow:
    n = Parameter("n", default=3, type=int)
    describe(double(n))

not_a_flow = 42
"""

FAILING = """\
@task
def ok() -> int:
    return 1


@task
def explode(x: int) -> int:
    raise RuntimeError("boom " + "x" * 200)


@task
def after(x: int) -> int:
    return x


with Flow("failing") as flow:
    after(explode(ok()))
"""

PAUSING = """\
@task
def first() -> int:
    return 1


@task(trigger=triggers.manual_only)
def approve(x: int) -> int:
    return x


with Flow("pausing") as flow:
    approve(first())
"""

REQUIRED = """\
@task
def use(name: str, count: int) -> None:
    record(LOG, f"use {name} {count}")


with Flow("required") as flow:
    name = Parameter("name")
    count = Parameter("count", default=1, type=int)
    use(name, count)
"""

ECHO = """\
@task
def show(
    n: object, name: object, xs: object, quoted: object, flag: object, empty: object, path: object
) -> None:
    values = dict(n=n, name=name, xs=xs, quoted=quoted, flag=flag, empty=empty, path=path)
    for key, value in sorted(values.items()):
        record(LOG, f"{key} {type(value).__name__} {value!r}")


with Flow("echo") as flow:
    show(
        n=Parameter("n"),
        name=Parameter("name"),
        xs=Parameter("xs"),
        quoted=Parameter("quoted"),
        flag=Parameter("flag"),
        empty=Parameter("empty"),
        path=Parameter("path"),
    )
"""

CACHED = """\
HOUR = dt.timedelta(hours=1)


@task(cache_for=HOUR, cache_validator=cache_validators.all_inputs)
def square(x: int) -> int:
    return x * x


@task(cache_for=HOUR, cache_key="shared-lookup")
def lookup() -> str:
    return "table"


@task(cache_for=HOUR)
def other() -> int:
    return 7


with Flow("cachey") as flow:
    n = Parameter("n", default=2, type=int)
    square(n)
    lookup()

with Flow("elsewhere") as other_flow:
    other()
"""


def recorded_runs(home: Path) -> list[str]:
    """The ids of the runs in the journal of ``home`` (none when it has no journal yet)."""
    if not (home / "journal.sqlite").exists():
        return []
    return [run.run_id for run in Journal(home / "journal.sqlite").runs()]


# -- run --------------------------------------------------------------------------------------------


def test_run_success_prints_the_table_and_the_run_id(tmp_path: Path, taskloom_home: Path) -> None:
    log = tmp_path / "log"
    flows = write_flow(tmp_path / "flows.py", BASIC, LOG=str(log))
    result = taskloom(taskloom_home, "run", f"{flows}:flow", "-p", "n=5", "--executor", "local")
    assert result.returncode == 0, describe(result)
    rows = table_rows(result.stdout)
    assert list(rows) == ["n", "double", "describe"]
    assert rows["double"] == ["double", "Success", "1", "local", rows["double"][4], "Task run succeeded."]
    assert re.fullmatch(r"[\d.]+(us|ms|s)", rows["double"][4])
    assert rows["n"][2:5] == ["0", "-", "-"]  # a parameter is not an attempt
    assert "Flow 'basic': Success" in result.stdout
    assert recorded_runs(taskloom_home) == [run_id(result.stdout)]
    assert lines(log) == ["double 5", "describe 10"]
    assert "Traceback" not in result.stderr


def test_run_with_a_module_spec_from_the_working_directory(tmp_path: Path, taskloom_home: Path) -> None:
    log = tmp_path / "log"
    write_flow(tmp_path / "my_flows.py", BASIC, LOG=str(log))
    result = taskloom(taskloom_home, "run", "my_flows:flow", "--executor", "local", cwd=tmp_path)
    assert result.returncode == 0, describe(result)
    assert lines(log) == ["double 3", "describe 6"]


def test_run_failed_flow_exits_1(tmp_path: Path, taskloom_home: Path) -> None:
    flows = write_flow(tmp_path / "flows.py", FAILING)
    result = taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local")
    assert result.returncode == 1, describe(result)
    rows = table_rows(result.stdout)
    assert rows["explode"][1] == "Failed"
    assert "boom" in rows["explode"][5] and rows["explode"][5].endswith("...")
    assert len(rows["explode"][5]) <= cli.MESSAGE_WIDTH
    assert rows["after"][1] == "TriggerFailed"
    assert "Flow 'failing': Failed" in result.stdout
    assert recorded_runs(taskloom_home) == [run_id(result.stdout)]


def test_run_paused_flow_exits_3(tmp_path: Path, taskloom_home: Path) -> None:
    flows = write_flow(tmp_path / "flows.py", PAUSING)
    result = taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local")
    assert result.returncode == 3, describe(result)
    assert table_rows(result.stdout)["approve"][1] == "Paused"
    rid = run_id(result.stdout)
    assert f"taskloom resume {rid}" in result.stdout


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ("{dir}/missing.py:flow", "missing.py"),
        ("{dir}/flows.py:nope", "nope"),
        ("{dir}/flows.py:not_a_flow", "not_a_flow"),
        ("no_such_module_xyz:flow", "no_such_module_xyz"),
        ("{dir}/flows.py", "FILE.py:FLOW"),
    ],
    ids=["missing-file", "missing-attribute", "not-a-flow", "missing-module", "no-flow-name"],
)
def test_run_unknown_flow_is_a_usage_error(
    tmp_path: Path, taskloom_home: Path, spec: str, named: str
) -> None:
    log = tmp_path / "log"
    write_flow(tmp_path / "flows.py", BASIC, LOG=str(log))
    result = taskloom(taskloom_home, "run", spec.format(dir=tmp_path), "--executor", "local")
    assert result.returncode == 2, describe(result)
    assert result.stderr.startswith("taskloom: error: "), describe(result)
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert not log.exists()
    assert recorded_runs(taskloom_home) == []


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["-p", "name=a", "-p", "colour=red"], "colour"),
        (["-p", "count=2"], "name"),
        (["-p", "name=a", "-p", "count=many"], "count"),
        (["-p", "name"], "'name'"),
        (["-p", "=3"], "'=3'"),
        (["-p", "name=a", "-p", "name=b"], "'name' is given twice"),
    ],
    ids=["unknown", "missing", "wrong-type", "no-equals", "no-name", "twice"],
)
def test_run_bad_parameter_is_a_usage_error_and_nothing_runs(
    tmp_path: Path, taskloom_home: Path, args: list[str], named: str
) -> None:
    log = tmp_path / "log"
    flows = write_flow(tmp_path / "flows.py", REQUIRED, LOG=str(log))
    result = taskloom(taskloom_home, "run", f"{flows}:flow", *args, "--executor", "local")
    assert result.returncode == 2, describe(result)
    assert result.stderr.startswith("taskloom: error: ")
    assert named in result.stderr
    assert "Traceback" not in result.stderr
    assert not log.exists()
    assert recorded_runs(taskloom_home) == []
    listing = taskloom(taskloom_home, "runs")
    assert listing.returncode == 0 and "No runs recorded" in listing.stdout, describe(listing)


def test_parameter_values_are_json_where_they_parse_else_strings(tmp_path: Path, taskloom_home: Path) -> None:
    log = tmp_path / "log"
    flows = write_flow(tmp_path / "flows.py", ECHO, LOG=str(log))
    result = taskloom(
        taskloom_home, "run", f"{flows}:flow", "--executor", "local",
        "-p", "n=5", "-p", "name=abc", "-p", "xs=[1,2]", "-p", 'quoted="5"',
        "-p", "flag=true", "-p", "empty=", "-p", "path=/tmp/a=b",
    )  # fmt: skip
    assert result.returncode == 0, describe(result)
    assert lines(log) == [
        "empty str ''",
        "flag bool True",
        "n int 5",
        "name str 'abc'",
        "path str '/tmp/a=b'",
        "quoted str '5'",
        "xs list [1, 2]",
    ]


def test_progress_is_on_by_default_as_plain_lines_off_a_terminal(
    tmp_path: Path, taskloom_home: Path
) -> None:
    flows = write_flow(tmp_path / "flows.py", BASIC, LOG=str(tmp_path / "log"))
    shown = taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local")
    assert shown.returncode == 0, describe(shown)
    assert "\x1b[" not in shown.stderr  # no terminal: no escape codes, plain lines
    assert re.search(r"^basic: 3/3 done \| succeeded 3 \| [\d.]+s \| Success", shown.stderr, re.M), (
        shown.stderr
    )
    quiet = taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local", "--no-progress")
    assert quiet.returncode == 0 and quiet.stderr == "", describe(quiet)


def test_run_on_threads_with_a_thread_count(tmp_path: Path, taskloom_home: Path) -> None:
    log = tmp_path / "log"
    flows = write_flow(tmp_path / "flows.py", BASIC, LOG=str(log))
    result = taskloom(
        taskloom_home, "run", f"{flows}:flow", "-p", "n=5", "--executor", "threads", "--workers", "3",
        "--no-progress",
    )
    assert result.returncode == 0, describe(result)
    rows = table_rows(result.stdout)
    assert rows["double"][1:3] == ["Success", "1"]
    assert re.fullmatch(r"thread:[012]", rows["double"][3]), rows["double"]  # one of 3 threads
    assert lines(log) == ["double 5", "describe 10"]


def test_bad_executor_options_are_usage_errors(tmp_path: Path, taskloom_home: Path) -> None:
    flows = write_flow(tmp_path / "flows.py", BASIC, LOG=str(tmp_path / "log"))
    for args, named in [
        (["--workers", "0"], "--workers"),
        (["--executor", "local", "--workers", "2"], "--workers"),
    ]:
        result = taskloom(taskloom_home, "run", f"{flows}:flow", *args)
        assert result.returncode == 2, describe(result)
        assert named in result.stderr and "Traceback" not in result.stderr
    argparse_error = taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "processes")
    assert argparse_error.returncode == 2 and "invalid choice" in argparse_error.stderr
    assert not (tmp_path / "log").exists()


def test_dask_executor_that_cannot_start_is_a_usage_error(tmp_path: Path, taskloom_home: Path) -> None:
    """A real ``taskloom run --executor dask`` where ``distributed`` cannot be imported (a
    module of that name first on the path raises ImportError)."""
    shadow = tmp_path / "shadow" / "distributed"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("no dask here")\n', encoding="utf-8")
    log = tmp_path / "log"
    flows = write_flow(tmp_path / "flows.py", BASIC, LOG=str(log))
    result = taskloom(
        taskloom_home, "run", f"{flows}:flow", "--executor", "dask",
        env_extra={"PYTHONPATH": str(shadow.parent)},
    )
    assert result.returncode == 2, describe(result)
    assert result.stderr.startswith("taskloom: error: --executor dask is not available: "), describe(result)
    assert "no dask here" in result.stderr and "Traceback" not in result.stderr
    assert not log.exists()


@pytest.mark.slow
def test_run_on_dask_starts_a_local_cluster_and_records_the_run(
    tmp_path: Path, taskloom_home: Path
) -> None:
    """``taskloom run --executor dask`` for real: the CLI starts a local cluster of one
    worker process, the tasks run there, and the run is journaled."""
    pytest.importorskip("distributed")
    log = tmp_path / "log"
    flows = write_flow(tmp_path / "flows.py", BASIC, LOG=str(log))
    result = taskloom(
        taskloom_home, "run", f"{flows}:flow", "-p", "n=5", "--executor", "dask", "--workers", "1",
        timeout=120,
    )
    assert result.returncode == 0, describe(result)
    rows = table_rows(result.stdout)
    assert [rows[name][1] for name in ("n", "double", "describe")] == ["Success"] * 3
    assert re.fullmatch(r"dask:tcp://127\.0\.0\.1:\d+", rows["double"][3]), describe(result)
    assert lines(log) == ["double 5", "describe 10"]
    assert recorded_runs(taskloom_home) == [run_id(result.stdout)]


def test_default_executor_is_loky(tmp_path: Path, taskloom_home: Path) -> None:
    flows = write_flow(tmp_path / "flows.py", BASIC, LOG=str(tmp_path / "log"))
    result = taskloom(taskloom_home, "run", f"{flows}:flow", "--workers", "1")
    assert result.returncode == 0, describe(result)
    assert re.fullmatch(r"loky:\d+", table_rows(result.stdout)["double"][3]), describe(result)


# -- runs and show ------------------------------------------------------------------------------------


def test_runs_lists_recent_runs_newest_first(tmp_path: Path, taskloom_home: Path) -> None:
    basic = write_flow(tmp_path / "basic.py", BASIC, LOG=str(tmp_path / "log"))
    failing = write_flow(tmp_path / "failing.py", FAILING)
    ids = []
    for spec in (f"{basic}:flow", f"{failing}:flow", f"{basic}:flow"):
        ids.append(run_id(taskloom(taskloom_home, "run", spec, "--executor", "local").stdout))
    listing = taskloom(taskloom_home, "runs")
    assert listing.returncode == 0, describe(listing)
    header, *rows = listing.stdout.splitlines()
    assert header.split() == ["RUN", "ID", "FLOW", "STATE", "STARTED", "DURATION", "RESUMED", "FROM"]
    assert [row.split()[:3] for row in rows] == [
        [ids[2], "basic", "Success"],
        [ids[1], "failing", "Failed"],
        [ids[0], "basic", "Success"],
    ]
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\s+[\d.]+(us|ms|s)", rows[0]), rows[0]
    only_basic = taskloom(taskloom_home, "runs", "--flow", "basic", "--limit", "1").stdout.splitlines()
    assert [row.split()[0] for row in only_basic[1:]] == [ids[2]]
    none = taskloom(taskloom_home, "runs", "--flow", "nothing-like-it")
    assert none.returncode == 0 and "No runs of flow 'nothing-like-it'" in none.stdout


def test_show_gives_every_task_state_attempts_worker_and_timings(tmp_path: Path, taskloom_home: Path) -> None:
    flows = write_flow(tmp_path / "flows.py", FAILING)
    rid = run_id(taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local").stdout)
    shown = taskloom(taskloom_home, "show", rid[:8])  # a unique prefix will do
    assert shown.returncode == 0, describe(shown)
    out = shown.stdout
    assert f"Run         {rid}" in out
    assert f"Flow        failing  ({flows}:flow)" in out
    assert "State       Failed: Some reference tasks failed." in out
    table = out[out.index("TASK ") :].splitlines()
    assert table[0].split() == [
        "TASK", "STATE", "ATTEMPTS", "WORKER", "QUEUED", "STARTED", "FINISHED", "WAITED", "RAN",
        "STORED", "MESSAGE",
    ]  # fmt: skip
    rows = {row.split()[0]: row.split(maxsplit=10) for row in table[1:] if row.strip()}
    assert rows["ok"][1:4] == ["Success", "1", "local"]
    assert all(re.fullmatch(r"\+[\d.]+(us|ms|s)", cell) for cell in rows["ok"][4:7]), rows["ok"]
    assert rows["explode"][1:4] == ["Failed", "1", "local"]
    assert rows["explode"][9] == "inputs"  # what a resume will need
    assert "RuntimeError('boom xxx" in rows["explode"][10]  # the whole message
    # explode starts again from its stored inputs: ok's result is not needed twice
    assert rows["ok"][9] == "-"
    assert rows["after"][1:5] == ["TriggerFailed", "0", "-", "-"]


def test_show_unknown_run_is_a_usage_error(taskloom_home: Path) -> None:
    result = taskloom(taskloom_home, "show", "0000-no-such-run")
    assert result.returncode == 2
    assert result.stderr.startswith("taskloom: error: no run has the id '0000-no-such-run'")


# -- cache ---------------------------------------------------------------------------------------------


def test_cache_ls_and_clear(tmp_path: Path, taskloom_home: Path) -> None:
    flows = write_flow(tmp_path / "flows.py", CACHED)
    cachey, elsewhere = load_flow(f"{flows}:flow"), load_flow(f"{flows}:other_flow")
    for n in (2, 3, 3):  # two entries: n=3 the second time is a cache hit
        assert cachey.run({"n": n}, executor=LocalExecutor()).is_successful()
    assert elsewhere.run(executor=LocalExecutor()).is_successful()

    def listed(*args: str) -> dict[str, str]:
        result = taskloom(taskloom_home, "cache", "ls", *args)
        assert result.returncode == 0, describe(result)
        table, _, footer = result.stdout.partition("\n\n")
        header, *rows = table.splitlines()
        assert header.split() == ["KEY", "ENTRIES", "SIZE", "FILES", "NEWEST"]
        assert footer.startswith(f"Index: {taskloom_home / 'cache.sqlite'};"), footer
        return {row.split()[0]: row.split()[1] for row in rows}

    assert listed() == {"cachey/square": "2", "elsewhere/other": "1", "shared-lookup": "1"}
    assert listed("--flow", "cachey") == {"cachey/square": "2"}

    cleared = taskloom(taskloom_home, "cache", "clear", "--flow", "cachey", "--task", "square")
    assert cleared.returncode == 0 and "Cleared 1 cache key: cachey/square." in cleared.stdout
    assert listed() == {"elsewhere/other": "1", "shared-lookup": "1"}
    assert taskloom(taskloom_home, "cache", "clear", "--task", "other").stdout.startswith("Cleared 1 cache key")
    assert listed() == {"shared-lookup": "1"}
    assert "Cleared 1 cache key: shared-lookup." in taskloom(taskloom_home, "cache", "clear").stdout
    empty = taskloom(taskloom_home, "cache", "ls")
    assert empty.returncode == 0 and "No cached results" in empty.stdout


# -- help ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "command",
    [[], ["run"], ["runs"], ["show"], ["resume"], ["migrate"], ["cache"], ["cache", "ls"], ["cache", "clear"]],
)
def test_help_on_every_command_has_an_example(command: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main([*command, "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: taskloom")
    assert "example:\n  taskloom " in out


def test_python_dash_m_and_console_script(taskloom_home: Path) -> None:
    result = taskloom(taskloom_home, "--help")
    assert result.returncode == 0, describe(result)
    listed = [line.split()[0] for line in result.stdout.splitlines() if line.startswith("    ")]
    assert listed == ["run", "runs", "show", "visualize", "report", "resume", "migrate", "cache"], result.stdout
    missing = taskloom(taskloom_home)
    assert missing.returncode == 2 and "required" in missing.stderr
    scripts = importlib.metadata.entry_points(group="console_scripts", name="taskloom")
    assert [entry.value for entry in scripts] == ["taskloom.cli:main"]


# -- issue 17: debugging a failure, approving a pause, a flow file that fails to load ----------

EXPLODING = """\
def parse_line(text: str) -> int:
    return int(text)  # the failing line


@task
def explode(x: int) -> int:
    return parse_line("not a number " + "y" * 100)


with Flow("exploding") as flow:
    explode(1)
"""


@pytest.mark.parametrize("executor", ["local", "loky"])
def test_show_task_prints_the_whole_message_and_the_traceback_with_real_files(
    tmp_path: Path, taskloom_home: Path, executor: str
) -> None:
    flows = write_flow(tmp_path / "flows.py", EXPLODING)
    result = taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", executor, "--no-progress")
    assert result.returncode == 1, describe(result)
    rid = run_id(result.stdout)
    assert f"See why: taskloom show {rid} --task explode" in result.stdout
    shown = taskloom(taskloom_home, "show", rid, "--task", "explode")
    assert shown.returncode == 0, describe(shown)
    assert "y" * 100 in shown.stdout  # the whole message
    assert f'File "{flows}", line' in shown.stdout
    assert "return int(text)  # the failing line" in shown.stdout
    assert 'return parse_line("not a number "' in shown.stdout
    assert "<dynamic-code>" not in shown.stdout
    assert "ValueError: invalid literal" in shown.stdout


def test_show_gives_a_paused_tasks_inputs_bounded_and_whole(tmp_path: Path, taskloom_home: Path) -> None:
    body = PAUSING.replace("return 1\n", "return list(range(100))\n", 1)
    flows = write_flow(tmp_path / "flows.py", body)
    result = taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local", "--no-progress")
    assert result.returncode == 3, describe(result)
    rid = run_id(result.stdout)
    shown = taskloom(taskloom_home, "show", rid)
    assert shown.returncode == 0, describe(shown)
    line = next(line for line in shown.stdout.splitlines() if line.strip().startswith("x = "))
    assert line.strip().startswith("x = [0, 1, 2,") and line.endswith("...")
    assert len(line.strip()) <= len("x = ") + cli.INPUT_WIDTH
    whole = taskloom(taskloom_home, "show", rid, "--inputs")
    assert "99]" in whole.stdout and "approve (Paused)" in whole.stdout


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ("x = 1\ndef broken(:\n    pass\n", ["SyntaxError", "def broken(:", "^"]),
        (
            "def boom() -> None:\n    raise KeyError('missing')\n\n\nboom()\n",
            ["KeyError", ", in <module>\n    boom()\n", ", in boom\n    raise KeyError('missing')\n"],
        ),
    ],
    ids=["syntax-error", "raises-on-import"],
)
def test_flow_file_that_fails_to_load_names_the_line_without_a_traceback(
    tmp_path: Path, taskloom_home: Path, body: str, expected: list[str]
) -> None:
    flows = write_flow(tmp_path / "flows.py", body)
    result = taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local")
    assert result.returncode == 2, describe(result)
    assert result.stderr.startswith("taskloom: error: "), describe(result)
    assert "Traceback" not in result.stderr
    assert str(flows) in result.stderr
    for text in expected:
        assert text in result.stderr, describe(result)
    # The user's frames only: none of taskloom's, none of the import machinery's.
    assert "taskloom/" not in result.stderr and "<frozen" not in result.stderr, result.stderr
    assert result.stderr.rstrip().endswith("(run with -v for the whole traceback)")
    verbose = taskloom(taskloom_home, "-v", "run", f"{flows}:flow", "--executor", "local")
    assert verbose.returncode == 2 and "Traceback" in verbose.stderr
    assert "loader.py" in verbose.stderr  # the whole of it


def test_a_flow_file_broken_after_its_run_fails_resume_and_visualize_cleanly(
    tmp_path: Path, taskloom_home: Path
) -> None:
    """``resume`` loads the flow from where the run came from: a file broken since is the
    same one-line error (file, line, caret) as for ``run``, not a traceback."""
    flows = write_flow(tmp_path / "flows.py", PAUSING)
    result = taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local")
    assert result.returncode == 3, describe(result)
    rid = run_id(result.stdout)
    flows.write_text(flows.read_text() + "\nbroken = (\n", encoding="utf-8")
    lineno = len(flows.read_text().splitlines())
    for args in (["resume", rid, "--executor", "local"], ["visualize", f"{flows}:flow"]):
        failed = taskloom(taskloom_home, *args)
        assert failed.returncode == 2, describe(failed)
        assert failed.stderr.startswith(f"taskloom: error: loading {flows}:flow failed: SyntaxError: "), describe(failed)
        assert f'  File "{flows}", line {lineno}\n    broken = (\n             ^\n' in failed.stderr, failed.stderr
        assert "Traceback" not in failed.stderr
    report = taskloom(taskloom_home, "report", rid, "-o", str(tmp_path / "r.html"))
    assert report.returncode == 0, describe(report)
    assert report.stderr.count("\n") == 1 and "SyntaxError" in report.stderr  # one note line


SECRET_FROM_CONTEXT = """
import taskloom

@task
def token() -> str:
    return taskloom.context.secrets["API_TOKEN"]

@task
def call(value: str) -> int:
    raise ValueError("refused")

with Flow("secret-ref") as flow:
    call(token())

if __name__ == "__main__":
    flow.run(context={"secrets": {"API_TOKEN": "tl-not-here"}})
"""


def test_resume_without_a_secret_the_journal_refers_to_says_which_and_where(
    tmp_path: Path, taskloom_home: Path
) -> None:
    """A run kept a task's input as a reference to a secret (given in its context); its
    resume, where the secret is not set, stops before anything runs with a one-line error
    that names the secret and where to put it, not a traceback."""
    flows = write_flow(tmp_path / "flows.py", SECRET_FROM_CONTEXT)
    first = subprocess.run(
        [sys.executable, str(flows)], env={**os.environ, "TASKLOOM_HOME": str(taskloom_home)},
        capture_output=True, text=True, timeout=60,
    )
    assert first.returncode == 0, describe(first)
    [run] = Journal(taskloom_home / "journal.sqlite").runs()
    failed = taskloom(taskloom_home, "resume", run.run_id, "--flow", f"{flows}:flow", "--executor", "local")
    assert failed.returncode == 2, describe(failed)
    assert failed.stderr.startswith(
        "taskloom: error: secret 'API_TOKEN' not found: put it in the context's secrets"
    ), describe(failed)
    assert "TASKLOOM_SECRETS_API_TOKEN" in failed.stderr and "Traceback" not in failed.stderr
