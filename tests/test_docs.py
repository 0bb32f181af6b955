"""The README's example and the Quickstart demo run as documented."""

from __future__ import annotations

import os
import re
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


@pytest.mark.slow
def test_readme_flow_prints_what_the_readme_says(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"## A flow\n\n```python\n(.*?)```", readme, re.S)
    assert found is not None, "README lost its '## A flow' example"
    script = tmp_path / "readme_flow.py"
    script.write_text(found.group(1))
    done = _run(script, tmp_path / "home")
    assert done.returncode == 0, done.stderr
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
def test_readme_mapping_example_prints_what_the_readme_says(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"## Mapping\n\n.*?```python\n(.*?)```", readme, re.S)
    assert found is not None, "README lost its '## Mapping' example"
    script = tmp_path / "readme_mapping.py"
    script.write_text(found.group(1))
    done = _run(script, tmp_path / "home")
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.strip().splitlines()[-2:]
    assert first == "6"
    assert second == "['Success', 'Success', 'Success']"


@pytest.mark.slow
def test_readme_branches_example_prints_what_the_readme_says(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"## Branches, loops and operators\n\n.*?```python\n(.*?)```", readme, re.S)
    assert found is not None, "README lost its '## Branches, loops and operators' example"
    script = tmp_path / "readme_branches.py"
    script.write_text(found.group(1))
    done = _run(script, tmp_path / "home")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "relax 4 7 kg"


@pytest.mark.slow
def test_readme_logging_example_prints_prefect_style_lines(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    found = re.search(r"## Logging\n\n.*?```python\n(.*?)```", readme, re.S)
    assert found is not None, "README lost its '## Logging' example"
    script = tmp_path / "readme_logging.py"
    script.write_text(found.group(1))
    done = _run(script, tmp_path / "home")
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert any(line.endswith("taskloom.task.extract | Task 'extract': Starting task run...") for line in lines)
    assert any(line.endswith("taskloom.task.extract | 3 rows") for line in lines), done.stderr
