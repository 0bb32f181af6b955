"""The built wheel ships the PEP 561 marker, so users' type checkers read taskloom's types."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

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
