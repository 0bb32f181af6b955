"""The benchmark harness runs end to end (``benchmarks/run_all.py --quick``: every benchmark,
``bench_map.py`` included, in its quick mode).

Only that it runs and prints its summary: speed is measured by the benchmarks themselves,
never asserted in tests.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_run_all_quick_prints_summary(tmp_path: Path) -> None:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=280,
        env=None,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "== summary: taskloom against its targets ==" in completed.stdout, output
    # bench_map.py --quick ran, and its figures reached the summary.
    assert "(bench_map.py took" in completed.stdout, output
    summary = completed.stdout.split("== summary: taskloom against its targets ==")[1]
    for workload in ("W6 map LocalExecutor", "W6 map ", "W7 3-stage map", "map scale 100k "):
        rows = [row for row in summary.splitlines() if row.strip().startswith(workload)]
        assert rows and all("not measured" not in row for row in rows), summary
