"""The built wheel ships the PEP 561 marker, so users' type checkers read taskloom's types,
and installs into a fresh virtual environment as the README's Install section says."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# hatchling (the build backend, installed with the dev tools) builds without network access
# or build isolation; `python -m build` is not a dev dependency.
BUILD = "import sys; from hatchling.build import build_wheel; print(build_wheel(sys.argv[1]))"


def test_wheel_ships_py_typed_and_no_stubs(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", BUILD, str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    wheel = tmp_path / done.stdout.strip().splitlines()[-1]
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "taskloom/py.typed" in names
    assert "taskloom/__init__.py" in names
    # stubs/ is a build-time aid for our own type checking: it must not leak into the
    # wheel (it would shadow loky's and cloudpickle's own types in users' environments).
    assert not [name for name in names if name.startswith(("stubs/", "loky/", "cloudpickle/"))]
    assert not [name for name in names if name.startswith("tests/")]


def _build(into: Path) -> Path:
    """Build the wheel into ``into`` and give its path."""
    done = subprocess.run(
        [sys.executable, "-c", BUILD, str(into)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return into / done.stdout.strip().splitlines()[-1]


def test_readme_install_lines_name_the_wheel_that_is_built() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    readme = (ROOT / "README.md").read_text()
    assert "python -m pip wheel --no-deps -w dist ." in readme
    assert f'pip install "dist/taskloom-{version}-py3-none-any.whl[dask]"' in readme
    # taskloom is on no package index: no install line may ask one for it.
    assert not re.search(r"pip install [\"']?taskloom", readme)


@pytest.mark.slow
def test_wheel_installs_into_a_fresh_venv_with_its_command(tmp_path: Path) -> None:
    """A fresh venv (no system site-packages) gets the wheel and its three dependencies
    (loky, cloudpickle, typing-extensions) from the package index, as a user's would."""
    wheel = _build(tmp_path / "dist")
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    done = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", str(wheel)],
        capture_output=True, text=True, timeout=240,
    )
    if done.returncode != 0 and re.search(r"connection|No matching distribution", done.stderr, re.I):
        pytest.skip(f"the package index is unreachable for the wheel's dependencies: {done.stderr[-300:]}")
    assert done.returncode == 0, done.stderr
    imported = subprocess.run(
        [str(python), "-c", "import taskloom; print(taskloom.__file__)"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert imported.returncode == 0, imported.stderr
    assert str(env_dir) in imported.stdout  # the installed copy, not the clone's src/
    helped = subprocess.run(
        [str(env_dir / "bin" / "taskloom"), "--help"], capture_output=True, text=True, timeout=60
    )
    assert helped.returncode == 0, helped.stderr
    assert helped.stdout.startswith("usage: taskloom")
