"""Development sessions: ``python3 noxfile.py -s NAME`` works with only Python installed.

Sessions:
    tests      the whole test suite, in parallel (``pytest -n auto``)
    typecheck  ``mypy --strict`` over src, tests, benchmarks, examples and this file
    stubtest   checks ``stubs/`` against the installed loky and cloudpickle
    bench      the benchmarks in ``benchmarks/`` (figures as ratios against baselines;
               ``-- --compare FILE`` against an earlier run, ``-- --profile`` top costs)
    demo       the example flow in ``examples/quickstart.py``, in parallel

Run as a script, this file first makes a private virtual environment with nox in it
(``.nox/_bootstrap``) when nox is not installed, so a fresh machine needs nothing else.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def _bootstrap() -> None:
    """Run nox on this file, installing it into ``.nox/_bootstrap`` when it is missing."""
    python = sys.executable
    try:
        import nox  # noqa: F401
    except ImportError:
        import venv

        env = ROOT / ".nox" / "_bootstrap"
        bindir = "Scripts" if os.name == "nt" else "bin"
        python = str(env / bindir / ("python.exe" if os.name == "nt" else "python"))
        if not Path(python).exists():
            venv.create(env, with_pip=True)
        check = subprocess.run([python, "-c", "import nox"], capture_output=True)
        if check.returncode != 0:
            subprocess.run([python, "-m", "pip", "install", "--quiet", "nox"], check=True)
    command = [python, "-m", "nox", "-f", str(Path(__file__).resolve()), *sys.argv[1:]]
    sys.exit(subprocess.call(command, cwd=ROOT))


if __name__ == "__main__":
    _bootstrap()

import logging  # noqa: E402

import nox  # noqa: E402  (after the bootstrap, which runs without nox)


class _QuietUvProbe(logging.Filter):
    """Drop nox's ``uv binary not found.`` note, which reads like an error but is not one.

    nox looks for uv at the start of every session, whichever backend is used; these
    sessions use virtualenv (nox's own dependency), so uv's absence does not matter.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "uv binary not found."


logging.getLogger("nox").addFilter(_QuietUvProbe())

nox.options.sessions = ["typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True
nox.options.default_venv_backend = "virtualenv"


def _compile_sources(session: nox.Session) -> None:
    """Write the bytecode of the editable install's sources, as ``pip install`` does for a
    wheel. Where ``PYTHONDONTWRITEBYTECODE`` is set (this machine and CI), no import writes
    it, and every process the tests and benchmarks start (CLI commands, pool workers, the
    instruction counts under valgrind) compiled taskloom again: about 0.15 s each, a sixth
    of the suite's CPU time. A stale file is never used: Python checks each against its
    source."""
    session.run("python", "-m", "compileall", "-q", "src", "benchmarks", silent=True)


@nox.session
def tests(session: nox.Session) -> None:
    """Run the whole test suite in parallel; extra arguments go to pytest."""
    session.install("-e", ".[dev]")
    _compile_sources(session)
    # pytest exits 5 when it collects no test: nox counts that as a failure.
    session.run("pytest", "-n", "auto", *session.posargs)


@nox.session
def typecheck(session: nox.Session) -> None:
    """mypy --strict (configured in pyproject.toml) over every Python file we ship or run."""
    session.install("-e", ".[dev]")
    session.run("mypy", *session.posargs)


@nox.session
def stubtest(session: nox.Session) -> None:
    """Check the hand-written stubs against the installed libraries."""
    session.install("-e", ".[dev]")
    env = {"MYPYPATH": str(ROOT / "stubs")}
    session.run(
        "python", "-m", "mypy.stubtest", "loky", "cloudpickle",
        "--mypy-config-file", "pyproject.toml",
        "--allowlist", "stubs/stubtest-allowlist.txt",
        env=env,
    )
    # croniter: only the names taskloom.schedules uses.
    session.run(
        "python", "-m", "mypy.stubtest", "croniter", "--ignore-missing-stub",
        "--mypy-config-file", "pyproject.toml",
        env=env,
    )
    # distributed is large and mostly unused: check only the names the stub declares.
    session.run(
        "python", "-m", "mypy.stubtest", "distributed", "--ignore-missing-stub",
        "--mypy-config-file", "pyproject.toml",
        "--allowlist", "stubs/distributed-stubtest-allowlist.txt",
        env=env,
    )


@nox.session
def bench(session: nox.Session) -> None:
    """Run every benchmark; each prints its figures as ratios against same-run baselines."""
    session.install("-e", ".[dask]", "psutil")
    _compile_sources(session)
    session.run("python", "benchmarks/run_all.py", *session.posargs)


@nox.session
def demo(session: nox.Session) -> None:
    """Run the example flow on a process pool and print every task's final state."""
    session.install("-e", ".")
    session.run("python", "examples/quickstart.py", *session.posargs)
