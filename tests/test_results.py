"""Results and targets (``result=``, ``target=``, ``checkpoint=``, ``Flow(result=...)``), on
every executor: results written where the task runs, atomically; a target found skips the
task (``Cached``); templates filled from the context, parameters and inputs; bad input
refused before the run or as a clear ``Failed``; the journal keeps locations, and a resume
reads them; the CLI lists them."""

from __future__ import annotations

import functools
import importlib
import json
import logging
import multiprocessing
import os
import pickle
from pathlib import Path
from typing import Any

import pytest

from taskloom import Flow, Parameter, task
from taskloom.errors import FlowDefinitionError, ResultError, TaskDefinitionError
from taskloom.executors import Executor, LocalExecutor
from taskloom.journal import Journal, JournalError
from taskloom.resume import resume
from taskloom.results import (
    FSSpecResult, GCSResult, JSONSerializer, LocalResult, PickleSerializer, ResultBase, S3Result,
    write_atomic,
)
from taskloom.states import Cached, Failed, State, Success, TriggerFailed
from taskloom.trace import Stored

from ._cli import describe, table_rows, taskloom, write_flow
from ._helpers import as_task


def record(path: str, line: str) -> None:
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(line + "\n")


def calls(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


@task
def square(x: int, log: str) -> int:
    record(log, f"square{x}")
    return x * x


@task
def add_up(xs: list[int]) -> int:
    return sum(xs)


def squares_flow(result: LocalResult, log: Path, target: str = "{task_name}/{map_index}.json") -> tuple[Flow, Any, Any]:
    persisted = square.copy()
    persisted.result, persisted.target = result, target
    with Flow("squares") as flow:
        mapped = persisted.map([1, 2, 3], [str(log)] * 3)
        total = add_up(mapped)
    return flow, mapped, total


def children(state: State[Any], handle: Any) -> list[State[Any]]:
    mapped = state.result[handle]
    return list(getattr(mapped, "map_states"))


def test_a_target_found_skips_the_task_and_its_value_flows_downstream(
    executor: Executor, tmp_path: Path
) -> None:
    out, log = tmp_path / "out", tmp_path / "calls"
    flow, mapped, total = squares_flow(LocalResult(dir=out, serializer=JSONSerializer()), log)
    first = flow.run(executor=executor)
    assert first.result[total].result == 14
    assert [type(s) for s in children(first, mapped)] == [Success] * 3
    assert [json.loads((out / "square" / f"{i}.json").read_text()) for i in range(3)] == [1, 4, 9]
    assert sorted(calls(log)) == ["square1", "square2", "square3"]

    second = flow.run(executor=executor)
    assert second.result[total].result == 14
    states = children(second, mapped)
    assert [type(s) for s in states] == [Cached] * 3
    assert states[1].message == f"Result found at task target {out / 'square' / '1.json'}"
    assert len(calls(log)) == 3  # no body ran again

    (out / "square" / "1.json").unlink()  # each child has its own target
    third = flow.run(executor=executor)
    assert [type(s) for s in children(third, mapped)] == [Cached, Success, Cached]
    assert calls(log)[3:] == ["square2"]
    assert third.result[total].result == 14


@task
def label(x: str, n: int) -> str:
    return f"{x}-{n}"


def test_templates_read_the_context_the_parameters_and_the_inputs(executor: Executor, tmp_path: Path) -> None:
    result = LocalResult(dir=tmp_path, serializer=JSONSerializer())
    persisted = label.copy()
    persisted.result = result
    persisted.target = "{flow_name}/{today}/{n}-{parameters[n]}-{x}-{task_name}.json"
    with Flow("templated") as flow:
        n = Parameter("n", default=0)
        made = persisted("a", n)
    state = flow.run(parameters={"n": 5}, executor=executor, context={"today": "2030-01-02"})
    assert state.result[made].result == "a-5"
    written = tmp_path / "templated" / "2030-01-02" / "5-5-a-label.json"
    assert json.loads(written.read_text()) == "a-5"


def test_an_unknown_field_is_an_error_before_the_run(tmp_path: Path) -> None:
    log = tmp_path / "calls"
    flow, _, _ = squares_flow(LocalResult(dir=tmp_path), log, "{task_name}/{map_index}/{colour}.pkl")
    with pytest.raises(FlowDefinitionError) as raised:
        flow.run()
    message = str(raised.value)
    assert "'square'" in message and "'colour'" in message and "flow_run_id" in message
    assert "map_index" in message and "x" in message.split("known fields:")[1]
    assert not log.exists()


def test_a_mapped_target_every_child_would_share_is_refused(tmp_path: Path) -> None:
    flow, _, _ = squares_flow(LocalResult(dir=tmp_path), tmp_path / "calls", "{task_name}.pkl")
    with pytest.raises(FlowDefinitionError, match=r"'square' is mapped.*\{map_index\}"):
        flow.run()


@task
def named(x: int) -> int:
    return x


def test_a_field_the_run_does_not_have_fails_the_task_clearly(executor: Executor, tmp_path: Path) -> None:
    persisted = named.copy()
    out = tmp_path / "out"
    persisted.result, persisted.target = LocalResult(dir=out), "{task_run_name}.pkl"
    with Flow("no-run-name") as flow:
        first = persisted(1)
        after = named(first)
    state = flow.run(executor=executor)
    failed = state.result[first]
    assert isinstance(failed, Failed)
    assert failed.message is not None
    assert "'task_run_name'" in failed.message and "flow_name" in failed.message
    assert isinstance(state.result[after], TriggerFailed)
    assert list(out.iterdir()) == []


def plain(x: int) -> int:
    return x


def test_bad_options_are_refused_when_the_task_is_made() -> None:
    with pytest.raises(TaskDefinitionError, match="'t': target template '{a' is not a valid"):
        task(name="t", target="{a")(plain)
    with pytest.raises(TaskDefinitionError, match="positional field"):
        task(name="t", target="{}.pkl")(plain)
    with pytest.raises(TaskDefinitionError, match="'t': result must be a Result"):
        task(name="t", result="out/")(plain)  # type: ignore[call-overload]  # the mistake under test
    with pytest.raises(TaskDefinitionError, match="'t': checkpoint must be"):
        task(name="t", checkpoint="yes")(plain)  # type: ignore[call-overload]  # the mistake under test
    with pytest.raises(FlowDefinitionError, match="Flow 'f': result must be a Result"):
        Flow("f", result=42)  # type: ignore[arg-type]  # the mistake under test


def test_a_result_directory_that_cannot_be_made_is_an_error_before_the_run(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    log = tmp_path / "calls"
    flow, _, _ = squares_flow(LocalResult(dir=blocker / "results"), log)
    with pytest.raises(ResultError, match=str(blocker / "results")):
        flow.run()
    assert not log.exists()


@task
def a_set() -> set[int]:
    return {1, 2}


def test_a_value_the_serializer_cannot_take_fails_the_task_and_writes_nothing(
    executor: Executor, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    persisted = a_set.copy()
    persisted.result = LocalResult(dir=out, serializer=JSONSerializer())
    persisted.target = "numbers.json"
    with Flow("sets") as flow:
        made = persisted()
    state = flow.run(executor=executor)
    failed = state.result[made]
    assert isinstance(failed, Failed) and failed.message is not None
    assert "'a_set'" in failed.message and "JSONSerializer" in failed.message and "a set" in failed.message
    assert list(out.iterdir()) == []  # no file, no temporary file


@task
def fresh(x: int) -> dict[str, int]:
    return {"x": x}


@pytest.mark.parametrize("garbage", [b"\x80\x05\x95", b'{"x": 1}'], ids=["truncated", "json-not-pickle"])
def test_an_unreadable_target_is_logged_and_the_task_runs_again(
    executor: Executor, tmp_path: Path, garbage: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "fresh.pkl").write_bytes(garbage)
    persisted = fresh.copy()
    persisted.result, persisted.target = LocalResult(dir=tmp_path), "fresh.pkl"
    with Flow("unreadable") as flow:
        made = persisted(7)
    with caplog.at_level(logging.WARNING, logger="taskloom"):
        state = flow.run(executor=executor)
    assert type(state.result[made]) is Success and state.result[made].result == {"x": 7}
    assert pickle.loads((tmp_path / "fresh.pkl").read_bytes()) == {"x": 7}
    assert any("cannot be read" in r.getMessage() and "fresh.pkl" in r.getMessage() for r in caplog.records)


def test_checkpoint_false_reads_a_target_but_never_writes(executor: Executor, tmp_path: Path) -> None:
    persisted = fresh.copy()
    persisted.result, persisted.target, persisted.checkpoint = LocalResult(dir=tmp_path), "f.pkl", False
    with Flow("no-checkpoint") as flow:
        made = persisted(1)
    assert type(flow.run(executor=executor).result[made]) is Success
    assert not (tmp_path / "f.pkl").exists()
    (tmp_path / "f.pkl").write_bytes(pickle.dumps({"x": 99}))
    state = flow.run(executor=executor)
    assert isinstance(state.result[made], Cached) and state.result[made].result == {"x": 99}


def test_a_target_given_after_a_run_is_written_by_the_next(executor: Executor, tmp_path: Path) -> None:
    # The plan keeps which tasks persist; a task given a target after a run is one now.
    with Flow("target-later") as flow:
        made = fresh(1)
    assert type(flow.run(executor=executor).result[made]) is Success
    handle = as_task(made)
    handle.result, handle.target = LocalResult(dir=tmp_path), "later.pkl"
    assert type(flow.run(executor=executor).result[made]) is Success
    assert (tmp_path / "later.pkl").is_file()
    assert isinstance(flow.run(executor=executor).result[made], Cached)


def test_the_flows_result_is_its_tasks_default(executor: Executor, tmp_path: Path) -> None:
    skipped = named.copy()
    skipped.checkpoint = False
    tmp_path = tmp_path / "out"
    with Flow("defaults", result=LocalResult(dir=tmp_path)) as flow:
        one = named(1)
        two = named(one)
        skipped(two)
    state = flow.run(executor=executor)
    assert state.is_successful() and state.run_id is not None
    written = sorted(p.relative_to(tmp_path).parts[:2] for p in tmp_path.rglob("*") if p.is_file())
    assert written == [("defaults", "named"), ("defaults", "named")]  # not the opted-out one
    record_ = Journal().load(state.run_id)
    locations = [t.location for t in record_.tasks]
    assert locations[2] is None and all(loc and Path(loc).is_file() for loc in locations[:2])


def test_a_target_without_a_result_goes_to_the_homes_results(
    executor: Executor, taskloom_home: Path
) -> None:
    persisted = named.copy()
    persisted.target = "{flow_name}/{x}.pkl"
    with Flow("home-default") as flow:
        persisted(3)
    assert flow.run(executor=executor).is_successful()
    assert pickle.loads((taskloom_home / "results" / "home-default" / "3.pkl").read_bytes()) == 3


@task
def big(n: int) -> bytes:
    return bytes(n)


@task
def size(data: bytes, flag: str) -> int:
    if not os.path.exists(flag):
        raise RuntimeError("not yet")
    return len(data)


def test_the_journal_keeps_a_location_and_resume_reads_it(tmp_path: Path, taskloom_home: Path) -> None:
    flag = tmp_path / "flag"
    persisted = big.copy()
    persisted.result = LocalResult(dir=tmp_path / "out")
    with Flow("resume-from-files") as flow:
        data = persisted(2_000_000)
        measured = size(data, str(flag))
    first = flow.run()
    assert isinstance(first.result[measured], Failed) and first.run_id is not None
    kept = Journal().load(first.run_id).tasks[1].inputs  # the failed task's input
    assert kept is not None and isinstance(kept["data"], Stored)
    location = kept["data"].location
    assert location == Journal().load(first.run_id).tasks[0].location
    assert Path(location).stat().st_size > 2_000_000
    journal_files = taskloom_home.glob("journal.sqlite*")
    assert sum(p.stat().st_size for p in journal_files) < 500_000  # the value is not in it

    flag.write_text("")
    Path(location).rename(f"{location}.away")
    with pytest.raises(JournalError, match=f"'size'.*{location}.*cannot be read"):
        resume(first.run_id, flow=flow)
    Path(f"{location}.away").rename(location)
    again = resume(first.run_id, flow=flow)
    assert again.result[measured].result == 2_000_000


@task
def checked_sum(xs: list[int], flag: str) -> int:
    if not os.path.exists(flag):
        raise RuntimeError("not yet")
    return sum(xs)


def test_a_resume_reads_a_mapped_tasks_children_from_their_files(tmp_path: Path) -> None:
    flag, log = tmp_path / "flag", tmp_path / "calls"
    persisted = square.copy()
    persisted.result, persisted.target = LocalResult(dir=tmp_path / "out"), "{map_index}.pkl"
    with Flow("resume-mapped") as flow:
        total = checked_sum(persisted.map([1, 2, 3], [str(log)] * 3), str(flag))
    first = flow.run()
    assert isinstance(first.result[total], Failed) and first.run_id is not None
    stored = Journal().load(first.run_id).tasks[1].inputs
    assert stored is not None and [type(x) for x in stored["xs"]] == [Stored] * 3
    flag.write_text("")
    assert resume(first.run_id, flow=flow).result[total].result == 14
    assert len(calls(log)) == 3  # the children did not run again


def _note(path: str, task: object, old: State[Any], new: State[Any]) -> None:
    record(path, f"{type(old).__name__}->{type(new).__name__}")


def test_state_handlers_see_a_target_found_as_one_change(executor: Executor, tmp_path: Path) -> None:
    changes = tmp_path / "changes"
    persisted = fresh.copy()
    persisted.result, persisted.target = LocalResult(dir=tmp_path / "out"), "f.pkl"
    persisted.state_handlers = [functools.partial(_note, str(changes))]
    with Flow("handled") as flow:
        persisted(1)
    flow.run(executor=executor)
    assert calls(changes) == ["Pending->Running", "Running->Success"]
    flow.run(executor=executor)
    assert calls(changes)[2:] == ["Pending->Cached"]


@task
def greet(token: str) -> str:
    return f"using {len(token)} characters"


def test_a_secret_is_never_written_to_a_result(executor: Executor, tmp_path: Path) -> None:
    from taskloom.tasks.secrets import Secret

    out = tmp_path / "out"
    with Flow("secretive", result=LocalResult(dir=out)) as flow:
        greeting = greet(Secret("TOKEN")())  # called: reads as Any for mypy
    state = flow.run(executor=executor, context={"secrets": {"TOKEN": "s3cr3t-value"}})
    assert state.result[greeting].result == "using 12 characters"
    written = [p for p in out.rglob("*") if p.is_file()]
    assert len(written) == 1  # greet's result; not the secret's
    assert all(b"s3cr3t-value" not in p.read_bytes() for p in written)


def _writer(path: str, fill: int, times: int) -> None:
    for _ in range(times):
        LocalResult(dir=os.path.dirname(path)).write(bytes([fill]) * 3_000_000, os.path.basename(path))


@pytest.mark.slow
def test_concurrent_writers_never_leave_a_half_written_target(tmp_path: Path) -> None:
    target = tmp_path / "shared.pkl"
    write_atomic(str(target), pickle.dumps(bytes(3_000_000)))
    context = multiprocessing.get_context("spawn")
    writers = [context.Process(target=_writer, args=(str(target), fill, 15)) for fill in (1, 2)]
    for writer in writers:
        writer.start()
    seen = set()
    while any(w.is_alive() for w in writers):
        value = PickleSerializer().deserialize(target.read_bytes())  # whole, or this raises
        seen.add(value[:1])
    for writer in writers:
        writer.join()
        assert writer.exitcode == 0
    assert seen <= {b"\x00", b"\x01", b"\x02"}
    assert [p.name for p in tmp_path.iterdir()] == ["shared.pkl"]  # no temporary file left


def test_fsspec_memory_and_file_systems(tmp_path: Path) -> None:
    pytest.importorskip("fsspec")
    for url in ("memory://taskloom-test/results", f"file://{tmp_path}/results"):
        persisted = fresh.copy()
        persisted.result = FSSpecResult(url, serializer=JSONSerializer())
        persisted.target = "{flow_name}/{x}.json"
        with Flow("remote") as flow:
            made = persisted(4)
        first = flow.run(executor=LocalExecutor())
        assert type(first.result[made]) is Success
        second = flow.run(executor=LocalExecutor())
        assert isinstance(second.result[made], Cached) and second.result[made].result == {"x": 4}
        message = second.result[made].message or ""
        assert message.startswith(f"Result found at task target {url.split('://')[0]}://")
        assert message.endswith("/results/remote/4.json")
    assert json.loads((tmp_path / "results" / "remote" / "4.json").read_text()) == {"x": 4}


def test_fsspec_file_urls_on_every_executor(executor: Executor, tmp_path: Path) -> None:
    pytest.importorskip("fsspec")
    log = tmp_path / "calls"
    persisted = square.copy()
    persisted.result = FSSpecResult(f"file://{tmp_path}/results")
    persisted.target = "{map_index}.pkl"
    with Flow("fsspec-file") as flow:
        total = add_up(persisted.map([1, 2], [str(log)] * 2))
    assert flow.run(executor=executor).result[total].result == 5
    assert flow.run(executor=executor).result[total].result == 5
    assert len(calls(log)) == 2


def test_prefect_s3_and_gcs_results_keep_their_options_and_store_in_their_bucket(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``S3Result``/``GCSResult`` as Prefect 1.x code makes them: boto3's keywords become
    s3fs's, and a target is a key in the bucket (here on fsspec's in-memory file system
    registered as ``s3``/``gcs``: one process, so LocalExecutor)."""
    pytest.importorskip("fsspec")
    memory = importlib.import_module("fsspec.implementations.memory")  # (fsspec has no types)

    s3 = S3Result(
        "bucket/etl",
        boto3_kwargs={"region_name": "eu-west-1", "aws_access_key_id": "K",
                      "aws_secret_access_key": "S", "endpoint_url": "http://minio:9000"},
        upload_options={"ServerSideEncryption": "AES256"},
    )
    assert s3.url == "s3://bucket/etl" and s3.storage_options == {
        "key": "K", "secret": "S", "endpoint_url": "http://minio:9000",
        "client_kwargs": {"region_name": "eu-west-1"},
        "s3_additional_kwargs": {"ServerSideEncryption": "AES256"},
    }
    with pytest.raises(ResultError, match="bucket name such as 'my-bucket', not 's3://b'"):
        S3Result("s3://b")

    in_memory = type("InMemory", (memory.MemoryFileSystem,), {
        "protocol": ("s3", "gcs"),
        "store": {},  # (not the memory file system's own, which every test shares)
        "pseudo_dirs": [""],
        # takes (and ignores) the cloud's options
        "__init__": lambda self, **options: memory.MemoryFileSystem.__init__(self),
    })
    for name in ("s3", "gcs"):
        monkeypatch.setitem(importlib.import_module("fsspec.registry")._registry, name, in_memory)
    for result in (S3Result("bucket", boto3_kwargs={"region_name": "eu"}), GCSResult("bucket")):
        persisted = fresh.copy()
        persisted.result, persisted.target = result, "{flow_name}/{x}.pkl"
        with Flow("cloud") as flow:
            made = persisted(5)
        assert type(flow.run(executor=LocalExecutor()).result[made]) is Success
        again = flow.run(executor=LocalExecutor()).result[made]
        assert isinstance(again, Cached) and again.result == {"x": 5}
        assert (again.message or "").endswith("://bucket/cloud/5.pkl"), again.message


@task
def frame(n: int) -> Any:
    pandas = importlib.import_module("pandas")  # pandas ships no types
    return pandas.DataFrame({"n": list(range(n))})


def test_dataframes_as_parquet(executor: Executor, tmp_path: Path) -> None:
    pytest.importorskip("pyarrow")
    pandas = pytest.importorskip("pandas")
    from taskloom.results import ParquetSerializer

    persisted = frame.copy()
    persisted.result = LocalResult(dir=tmp_path, serializer=ParquetSerializer())
    persisted.target = "frame-{n}.parquet"
    with Flow("frames") as flow:
        made = persisted(3)
    flow.run(executor=executor)
    assert list(pandas.read_parquet(tmp_path / "frame-3.parquet")["n"]) == [0, 1, 2]
    state = flow.run(executor=executor)
    assert isinstance(state.result[made], Cached) and list(state.result[made].result["n"]) == [0, 1, 2]
    with pytest.raises(TypeError, match="ParquetSerializer cannot serialize a list"):
        ParquetSerializer().serialize([1])


FLOW_FILE = """\
from taskloom.results import LocalResult

@task(result=LocalResult(dir=OUT), target="{flow_name}/{task_name}-{map_index}.pkl")
def part(x: int) -> int:
    return x + 1


with Flow("cli-targets") as flow:
    part.map([1, 2])
"""


def test_show_and_cache_ls_list_the_locations(tmp_path: Path, taskloom_home: Path) -> None:
    out = tmp_path / "out"
    path = write_flow(tmp_path / "flows.py", FLOW_FILE, OUT=str(out))
    ran = taskloom(taskloom_home, "run", f"{path}:flow", "--executor", "local")
    assert ran.returncode == 0, ran.stderr
    run_id = Journal(taskloom_home / "journal.sqlite").runs()[0].run_id
    shown = taskloom(taskloom_home, "show", run_id, "--children")
    assert str(out / "cli-targets" / "part-1.pkl") in shown.stdout, shown.stdout
    assert "Result locations" in shown.stdout
    (out / "cli-targets" / "part-0.pkl").unlink()
    listed = taskloom(taskloom_home, "cache", "ls")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines() if str(out) in line}
    assert rows[str(out / "cli-targets" / "part-0.pkl")][-1] == "no"
    assert rows[str(out / "cli-targets" / "part-1.pkl")][-1] == "yes"


@task
def settings(n: int) -> dict[str, int]:
    return {"rows": n}


@task
def rows_once_ready(config: dict[str, int], flag: str) -> int:
    if not os.path.exists(flag):
        raise RuntimeError("not yet")
    return config["rows"]


class FolderResult(ResultBase):
    """A result written for Prefect 1.x, in Prefect's own API: files under a folder."""

    def __init__(self, folder: str, **kwargs: Any) -> None:
        self.folder = folder
        super().__init__(**kwargs)

    def exists(self, location: str, **kwargs: Any) -> bool:
        return os.path.exists(os.path.join(self.folder, location.format(**kwargs)))

    def read(self, location: str) -> FolderResult:
        new = self.copy()
        new.location = location
        with open(os.path.join(self.folder, location), "rb") as file:
            new.value = self.serializer.deserialize(file.read())
        return new

    def write(self, value_: Any, **kwargs: Any) -> FolderResult:
        new = self.format(**kwargs)
        new.value = value_
        assert new.location is not None
        path = os.path.join(self.folder, new.location)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as file:
            file.write(self.serializer.serialize(value_))
        return new


def test_a_result_written_for_prefect_stores_and_finds_its_values(
    executor: Executor, tmp_path: Path
) -> None:
    """A ``Result`` subclass with Prefect's ``read``/``write``/``exists`` (``ResultBase``,
    which ``taskloom migrate`` imports as Prefect's ``Result``) plugs in as it is: written
    where its location template says, found there by a target, read back downstream."""
    log = tmp_path / "calls"
    persisted = square.copy()
    persisted.result = FolderResult(str(tmp_path / "out"), location="squares/{map_index}.pkl")
    persisted.target = "squares/{map_index}.pkl"
    with Flow("prefect-style") as flow:
        mapped = persisted.map([2, 3], [str(log)] * 2)
        total = add_up(mapped)
    first = flow.run(executor=executor)
    assert first.result[total].result == 13
    assert pickle.loads((tmp_path / "out" / "squares" / "1.pkl").read_bytes()) == 9
    second = flow.run(executor=executor)
    assert second.result[total].result == 13
    assert len(calls(log)) == 2  # found, not run again
    assert [s.message for s in children(second, mapped)] == [
        f"Result found at task target squares/{i}.pkl" for i in range(2)
    ]


class Unreachable(ResultBase):
    """A store that cannot be reached: a read fails, and so does the question."""

    def exists(self, location: str, **kwargs: Any) -> bool:
        raise ConnectionError("store unreachable")

    def read(self, location: str) -> ResultBase:
        raise KeyError(location)


class ReadsInPlace(FolderResult):
    """Prefect-style, as some were written: ``read`` moves its own location."""

    def read(self, location: str) -> FolderResult:
        self.location = location
        with open(os.path.join(self.folder, location), "rb") as file:
            self.value = self.serializer.deserialize(file.read())
        return self


def test_a_prefect_style_result_keeps_a_filled_in_location_and_its_own(
    executor: Executor, tmp_path: Path
) -> None:
    """A location filled in from a value with braces is not filled in again by the
    class's ``format()``; a class whose ``read`` moves its own location does not move
    that of the other tasks sharing it (each call is on a copy)."""
    shared = ReadsInPlace(str(tmp_path / "out"))
    first, second = fresh.copy(), fresh.copy()
    first.result, first.target = shared, "{parameters[key]}-first.pkl"
    second.result = shared
    with Flow("braces") as flow:
        key = Parameter("key", default="cfg{v2}")
        a, b = first(1), second(2)
        flow.add_edge(key, a)  # (its value reaches the template through the parameters)
    state = flow.run(executor=executor)
    assert type(state.result[a]) is Success, state.result[a]
    assert pickle.loads((tmp_path / "out" / "cfg{v2}-first.pkl").read_bytes()) == {"x": 1}
    again = flow.run(executor=executor)
    assert isinstance(again.result[a], Cached) and again.result[a].result == {"x": 1}
    assert again.result[b].result == {"x": 2}


def test_a_store_that_cannot_tell_whether_a_target_exists_fails_its_task(
    executor: Executor, tmp_path: Path
) -> None:
    looked_up = fresh.copy()
    looked_up.result, looked_up.target = Unreachable(), "{x}.pkl"
    with Flow("unreachable") as flow:
        made = looked_up(3)
    state = flow.run(executor=executor)
    failed = state.result[made]
    assert isinstance(failed, Failed), failed
    assert "Task 'fresh'" in str(failed.message) and "'3.pkl' exists" in str(failed.message)
    assert "store unreachable" in str(failed.message)


def test_a_prefect_result_keeps_the_value_in_its_location(executor: Executor, tmp_path: Path) -> None:
    """``PrefectResult`` (Prefect 1.x's): the location the journal records is the value as
    JSON, and a resume reads the value from it (the task does not run again); a value
    JSON cannot hold fails its task."""
    from taskloom.results import PrefectResult

    flag = tmp_path / "flag"
    kept = settings.copy(result=PrefectResult())
    with Flow("prefect-result") as flow:
        config = kept(3)
        rows = rows_once_ready(config, str(flag))
    first = flow.run(executor=executor)
    assert first.result[config].result == {"rows": 3}
    assert isinstance(first.result[rows], Failed) and first.run_id is not None
    recorded = {t.name: t for t in Journal().load(first.run_id).tasks}
    assert recorded["settings"].location == '{"rows": 3}'
    flag.write_text("")
    again = resume(first.run_id, flow=flow, executor=executor)
    assert again.result[rows].result == 3
    assert not isinstance(again.result[config], Failed)

    unjsonable = returns_set.copy(result=PrefectResult())
    with Flow("prefect-result-refused") as refused:
        made = unjsonable()
    state = refused.run(executor=executor)
    assert isinstance(state.result[made], Failed)
    assert "JSONSerializer cannot serialize" in str(state.result[made].result)


@task
def returns_set() -> set[int]:
    return {1, 2}


def test_cache_ls_does_not_take_a_stores_relative_location_for_a_kept_value(
    tmp_path: Path, taskloom_home: Path
) -> None:
    """A result class written for Prefect may say where a value went as a location of its
    own (relative): ``taskloom cache ls`` cannot check it ("?"), and it is no value the
    journal keeps ("in journal" is for ``PrefectResult``'s JSON)."""
    flows = write_flow(tmp_path / "own_locations.py", f'''
from tests.test_results import FolderResult, fresh

persisted = fresh.copy()
persisted.result = FolderResult({str(tmp_path / "out")!r}, location="own-{{x}}.pkl")
with Flow("own-locations") as flow:
    persisted(4)
''')
    done = taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local")
    assert done.returncode == 0, describe(done)
    listed = taskloom(taskloom_home, "cache", "ls")
    [row] = [line for line in listed.stdout.splitlines() if "own-4.pkl" in line]
    assert row.rstrip().endswith("?"), row


def test_a_prefect_result_has_no_target_to_find_and_cache_ls_lists_it(
    tmp_path: Path, taskloom_home: Path
) -> None:
    """A target of a task with a ``PrefectResult`` finds nothing (the task runs, even where
    the filled-in target reads as JSON, ``"7"``), and ``taskloom cache ls`` lists its
    values, cut, as kept in the journal."""
    flows = write_flow(tmp_path / "prefect_result.py", '''
from taskloom import Flow, Parameter, task
from taskloom.results import PrefectResult

@task(result=PrefectResult(), target="{n}")
def square(n: int) -> int:
    return n * n

@task(result=PrefectResult())
def long_settings() -> dict:
    return {"note": "x" * 300}

@task(result=PrefectResult())
def where_it_went() -> str:
    return "s3://bucket/data/part-0001.parquet"

with Flow("prefect-result-cli") as flow:
    square(Parameter("n", default=7))
    long_settings()
    where_it_went()
''')
    for _ in range(2):  # the second run finds no target either
        done = taskloom(taskloom_home, "run", f"{flows}:flow", "--executor", "local")
        assert done.returncode == 0, describe(done)
        assert table_rows(done.stdout)["square"][1] == "Success", done.stdout
    listed = taskloom(taskloom_home, "cache", "ls")
    assert listed.returncode == 0, describe(listed)
    assert "49" in listed.stdout and "in journal" in listed.stdout
    assert '{"note": "xxx' in listed.stdout and "x" * 100 not in listed.stdout
    [url_row] = [line for line in listed.stdout.splitlines() if "s3://bucket" in line]
    assert url_row.rstrip().endswith("in journal"), url_row  # a value, not a URL
