"""The benchmark harness runs end to end (``benchmarks/run_all.py --quick``: every benchmark,
``bench_map.py`` included, in its quick mode).

Only that it runs and prints its summary: speed is measured by the benchmarks themselves,
never asserted in tests.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_run_all_quick_prints_summary(tmp_path: Path) -> None:
    figures_file = tmp_path / "run.json"
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick", "--json",
         str(figures_file)],
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
    # Every figure went to the JSON file, medians with the spread of their runs.
    written = json.loads(figures_file.read_text())
    assert written["meta"]["quick"] is True and "git" in written["meta"]["source"]
    figures = written["figures"]
    assert figures["local.W1.overhead_us"] is not None
    assert {"local.W1.overhead_us~min", "local.W1.overhead_us~max"} <= set(figures)
    assert figures["big.10k.tasks"] == 10_001  # bench_scale.py: 10,000 tasks and a reduce
    # bench_loky.py's wake-up pairs: W1, W2 and the raw round trip, after idle and at once.
    for key in ("W1", "W2"):
        for when in ("idle", "at_once"):
            assert figures[f"wakeup.{key}.{when}.overhead_us"] is not None, figures
    assert 0 < figures["wakeup.raw.idle.round_trip_us"] < 10_000_000
    # bench_instructions.py --quick: one instruction count, where valgrind is (every CI kind).
    count = figures["instr.W1.nojournal.instructions_per_task"]
    assert (count is None) == (shutil.which("valgrind") is None), output
    assert count is None or 5_000 < count < 1_000_000, count


@pytest.mark.slow
def test_compare_prints_each_figure_against_an_earlier_run(tmp_path: Path) -> None:
    """``--compare``: a figure whose range lies wholly above the earlier one's is SLOWER.
    (Not --quick: one run has no spread, and its changes are not judged.)"""
    run = [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--only", "bench_local.py"]
    first = subprocess.run([*run, "--json", str(tmp_path / "a.json")], cwd=ROOT,
                           capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stdout + first.stderr
    earlier = json.loads((tmp_path / "a.json").read_text())
    # Make the earlier run 1000x faster on one figure: this run must be called slower on it.
    for suffix in ("", "~min", "~max"):
        earlier["figures"]["local.W2.overhead_us" + suffix] /= 1000
    (tmp_path / "a.json").write_text(json.dumps(earlier))
    second = subprocess.run([*run, "--json", str(tmp_path / "b.json"), "--compare",
                             str(tmp_path / "a.json")], cwd=ROOT, capture_output=True,
                            text=True, timeout=120)
    output = second.stdout + second.stderr
    assert second.returncode == 0, output
    table = output.split("== compared with")[1]
    rows = {line.split("|")[0].strip(): line for line in table.splitlines() if "|" in line}
    assert "SLOWER" in rows["local.W2.overhead_us"], table
    assert "local.W1.overhead_us~min" not in rows  # spreads ride beside their figure
    # The closing line lists every worse figure; others may join W2 on a noisy machine.
    worse = re.search(r"figure\(s\) worse beyond the run-to-run spread: (.*)", table)
    assert worse and "local.W2.overhead_us" in worse.group(1).split(", "), table


def test_compare_calls_an_instruction_count_changed_beyond_one_percent(tmp_path: Path) -> None:
    """A count has no spread: it is judged by how far it moved (``compare.EXACT_TOLERANCE``)."""
    counts = {"a.instructions_per_task": 100_000.0, "b.instructions_per_task": 100_000.0,
              "c.instructions_per_task": 100_000.0}
    (tmp_path / "old.json").write_text(json.dumps({"figures": counts}))
    counts = {"a.instructions_per_task": 100_500.0, "b.instructions_per_task": 102_000.0,
              "c.instructions_per_task": 97_000.0}
    (tmp_path / "new.json").write_text(json.dumps({"figures": counts}))
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "compare.py"), str(tmp_path / "old.json"),
         str(tmp_path / "new.json")], cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    rows = {line.split("|")[0].strip(): line for line in completed.stdout.splitlines() if "|" in line}
    assert "same (within 1%" in rows["a.instructions_per_task"], completed.stdout
    assert "SLOWER" in rows["b.instructions_per_task"], completed.stdout
    assert "better" in rows["c.instructions_per_task"], completed.stdout


def test_compare_refuses_a_file_that_is_not_a_benchmark_run(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick", "--only",
         "bench_local.py", "--compare", str(bad)],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )
    assert completed.returncode != 0
    assert f"{bad} is not a benchmark JSON" in completed.stderr


def test_profile_mode_prints_parent_and_worker_costs() -> None:
    completed = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--profile", "--quick"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    # One worker or both: a quick run's batches may all go to the first worker that is free.
    assert "parent:" in output and re.search(r"workers \([12] processes, summed\)", output), output
    assert "(runner.py:" in output  # the scheduler's own costs are listed
