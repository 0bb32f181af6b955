"""The README's examples (every Python block runs and type-checks) and the Quickstart demo run as documented."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _run(script: Path, home: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TASKLOOM_HOME": str(home)}
    return subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120
    )


def _readme_example(section: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """Run the first Python block of the README's ``## section``; it must succeed."""
    readme = (ROOT / "README.md").read_text()
    found = re.search(rf"## {re.escape(section)}\n\n.*?```python\n(.*?)```", readme, re.S)
    assert found is not None, f"README lost its '## {section}' example"
    script = tmp_path / "readme_example.py"
    script.write_text(found.group(1))
    done = _run(script, tmp_path / "home")
    assert done.returncode == 0, done.stderr
    return done


@pytest.mark.slow
def test_readme_flow_prints_what_the_readme_says(tmp_path: Path) -> None:
    done = _readme_example("A flow", tmp_path)
    assert done.stdout.strip().splitlines()[-1] == "True 10.8"


@pytest.mark.slow
def test_quickstart_demo_succeeds_and_reuses_its_cache(tmp_path: Path) -> None:
    done = _run(ROOT / "examples" / "quickstart.py", tmp_path / "home")
    assert done.returncode == 0, done.stderr
    runs = done.stdout.split("\nrun ")[1:]
    assert len(runs) == 2
    assert "flow Success" in runs[0] and "flow Success" in runs[1]
    assert re.search(r"load_rates\s+Success", runs[0])
    assert re.search(r"load_rates\s+Cached", runs[1])


@pytest.mark.slow
def test_readme_prefect_style_example_prints_what_the_readme_says(tmp_path: Path) -> None:
    done = _readme_example("Flows, Prefect 1.x style", tmp_path)
    assert done.stdout.strip().splitlines()[-1] == "10 on 2024-05-01"


@pytest.mark.slow
def test_readme_results_example_skips_what_its_targets_hold(tmp_path: Path) -> None:
    done = _readme_example("Results and targets", tmp_path)
    lines = done.stdout.strip().splitlines()
    assert sorted(lines[:2]) == ["fetching part 0", "fetching part 1"]
    assert lines[2:] == ["6 ['Cached', 'Cached']"]


@pytest.mark.slow
def test_readme_mapping_example_prints_what_the_readme_says(tmp_path: Path) -> None:
    done = _readme_example("Mapping", tmp_path)
    first, second = done.stdout.strip().splitlines()[-2:]
    assert first == "6"
    assert second == "['Success', 'Success', 'Success']"


@pytest.mark.slow
def test_readme_branches_example_prints_what_the_readme_says(tmp_path: Path) -> None:
    done = _readme_example("Branches, loops and operators", tmp_path)
    assert done.stdout.strip().splitlines()[-1] == "relax 4 7 kg"


@pytest.mark.slow
def test_readme_secrets_example_prints_what_the_readme_says(tmp_path: Path) -> None:
    done = _readme_example("Secrets", tmp_path)
    assert done.stdout.strip().splitlines()[-1] == '12 <Success: "Task run succeeded.">'


@pytest.mark.slow
def test_readme_logging_example_prints_prefect_style_lines(tmp_path: Path) -> None:
    done = _readme_example("Logging", tmp_path)
    lines = done.stderr.splitlines()
    assert any(line.endswith("taskloom.task.extract | Task 'extract': Starting task run...") for line in lines)
    assert any(line.endswith("taskloom.task.extract | 3 rows") for line in lines), done.stderr


UNGUARDED_DASK_SCRIPT = '''
from taskloom import Flow, task
from taskloom.executors import DaskExecutor


@task
def one() -> int:
    return 1


with Flow("unguarded") as flow:
    one()

flow.run(executor=DaskExecutor(n_workers=1, threads_per_worker=1))
'''


@pytest.mark.slow
def test_dask_local_cluster_without_main_guard_says_so_in_one_line(tmp_path: Path) -> None:
    script = tmp_path / "unguarded.py"
    script.write_text(UNGUARDED_DASK_SCRIPT)
    done = _run(script, tmp_path / "home")
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("taskloom.executors.dask.MainGuardError: "), done.stderr
    assert 'if __name__ == "__main__":' in last and "unguarded.py" in last
    # Not the pages of multiprocessing traceback it used to be.
    assert len(done.stderr.splitlines()) < 60, done.stderr


def _python_blocks() -> list[tuple[str, str]]:
    """Every ```python block of the README, with an id naming its section."""
    readme = (ROOT / "README.md").read_text()
    blocks: list[tuple[str, str]] = []
    section = "top"
    for found in re.finditer(r"^(#+) ([^\n]+)$|^```python\n(.*?)^```$", readme, re.M | re.S):
        if found.group(1):
            section = found.group(2)
        else:
            slug = re.sub(r"[^a-z0-9]+", "-", section.lower()).strip("-")
            blocks.append((f"{len(blocks)}-{slug}", found.group(3)))
    return blocks


README_BLOCKS = _python_blocks()

#: The one block that cannot run everywhere: it draws an SVG with Graphviz's dot program.
NEEDS_GRAPHVIZ = "pictures-of-a-flow"


def test_readme_has_its_python_blocks() -> None:
    assert len(README_BLOCKS) >= 9, [name for name, _ in README_BLOCKS]
    # A ``` inside a block would end it early, and leave the rest untested.
    assert all("```" not in code for _, code in README_BLOCKS)


@pytest.mark.slow
@pytest.mark.parametrize("name,code", README_BLOCKS, ids=[name for name, _ in README_BLOCKS])
def test_every_readme_python_block_runs(name: str, code: str, tmp_path: Path) -> None:
    """Each block runs on its own, in a fresh process with its own TASKLOOM_HOME."""
    if name.endswith(NEEDS_GRAPHVIZ) and shutil.which("dot") is None:
        pytest.skip("draws an SVG: needs Graphviz's dot program, not installed here")
    script = tmp_path / "snippet.py"
    script.write_text(code)
    env = {**os.environ, "TASKLOOM_HOME": str(tmp_path / "home")}
    done = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr


@pytest.mark.slow
def test_every_readme_python_block_type_checks_strict(tmp_path: Path) -> None:
    """mypy --strict accepts every block, as a newcomer's own file would be checked."""
    files = []
    for i, (_, code) in enumerate(README_BLOCKS):
        path = tmp_path / f"readme_block_{i}.py"
        path.write_text(code)
        files.append(str(path))
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", *files],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_noxfile_silences_the_uv_probe_note() -> None:
    """nox logs ``uv binary not found.`` at every session start; the noxfile drops that note."""
    import importlib.util
    import logging

    spec = importlib.util.spec_from_file_location("taskloom_noxfile", ROOT / "noxfile.py")
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))
    nox_logger = logging.getLogger("nox")

    def record(message: str) -> logging.LogRecord:
        return nox_logger.makeRecord("nox", logging.INFO, __file__, 0, message, (), None)

    assert not nox_logger.filter(record("uv binary not found."))
    assert nox_logger.filter(record("Running session typecheck"))
