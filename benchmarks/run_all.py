"""Run every benchmark, each in its own process, and print a summary against the targets.

``bench_local.py``, ``bench_loky.py``, ``bench_dask.py`` then ``bench_map.py`` (separate
processes, so one's pool or cluster and garbage do not perturb the next; ``bench_dask.py`` is
skipped when Dask distributed, the dask extra, is not installed, and ``bench_map.py`` then
skips its Dask part). ``--runs`` and ``--quick`` are passed through. The summary lists each
figure, its target and whether it was met; figures are ratios against baselines measured in
the same run (see each script's docstring). The exit status is 0 unless a benchmark failed:
missing a target is a result, not an error.

    python benchmarks/run_all.py [--runs N] [--quick]      (or: nox -s bench -- --runs N)
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import operator
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import _harness as h

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    "bench_local.py", "bench_loky.py", "bench_dask.py", "bench_map.py", "bench_loop.py",
]
#: Benchmarks that need an optional dependency (module name), skipped without it.
NEEDS = {"bench_dask.py": "distributed"}
SUMMARY_HEADER = "== summary: taskloom against its targets =="


@dataclass(frozen=True)
class Target:
    workload: str
    figure: str
    key: str  # the figure's key in the benchmarks' JSON
    unit: str
    limit: float
    op: Callable[[float, float], bool]  # op(value, limit) -> met
    baseline_key: str | None = None  # the raw loky figure of the same kind, for context
    digits: int = 1
    baseline_unit: str | None = None  # when the baseline is another kind of figure
    needs: str | None = None  # the optional module its benchmark needs

    def describe(self) -> str:
        sign = "<=" if self.op is operator.le else ">="
        return f"{sign} {self.limit:g}{self.unit}"


TARGETS = [
    Target("W1 LocalExecutor", "overhead per task", "local.W1.overhead_us", " µs", 10, operator.le),
    Target("W2 LocalExecutor", "overhead per task", "local.W2.overhead_us", " µs", 10, operator.le),
    Target("W1 run journal", "journal cost per task", "local.W1.journal_us", " µs", 2, operator.le),
    Target("W1 wide", "overhead per task", "W1.taskloom.overhead_us", " µs", 20, operator.le,
           "W1.raw.overhead_us"),
    Target("W2 chain", "overhead per hop", "W2.taskloom.overhead_us", " µs", 50, operator.le,
           "W2.raw.overhead_us"),
    Target("W3 cpu", "speedup vs LocalExecutor", "W3.taskloom.speedup_vs_local", "x", 1.85,
           operator.ge, "W3.raw.speedup_vs_local", 2),
    Target("W4 50 MB", "wall vs raw loky", "W4.taskloom_vs_raw", "x", 0.3, operator.le,
           "W4.raw.wall_ms", 2, " ms wall"),
    Target("W5 grid", "overhead per task", "W5.taskloom.overhead_us", " µs", 60, operator.le,
           "W5.raw.overhead_us"),
    Target("scale 10k", "parent peak RSS", "scale.taskloom.peak_rss_mb", " MB", 150,
           operator.le, "scale.raw.peak_rss_mb", 0),
    Target("scale 10k/1k", "per-task overhead growth", "scale.taskloom.growth", "x", 1.2,
           operator.le, "scale.raw.growth", 2),
    Target("W1 on Dask", "wall vs raw Dask futures", "dask.W1.taskloom_vs_raw", "x", 1.2,
           operator.le, "dask.W1.raw.wall_ms", 2, " ms wall (raw Dask)", "distributed"),
    Target("W3 on Dask", "wall vs raw Dask futures", "dask.W3.taskloom_vs_raw", "x", 1.2,
           operator.le, "dask.W3.raw.wall_ms", 2, " ms wall (raw Dask)", "distributed"),
    Target("W6 map LocalExecutor", "overhead per child", "map.W6.local.overhead_us", " µs", 5,
           operator.le),
    Target("W6 map", "overhead per child", "map.W6.loky.overhead_us", " µs", 10, operator.le,
           "map.W6.raw.overhead_us"),
    Target("W7 3-stage map", "overhead per child", "map.W7.loky.overhead_us", " µs", 15,
           operator.le, "map.W7.raw.overhead_us"),
    Target("map scale 100k", "parent peak RSS", "map.scale.local.peak_rss_mb", " MB", 400,
           operator.le, digits=0),
    Target("map scale 100k/10k", "per-child overhead growth", "map.scale.local.growth", "x",
           1.1, operator.le, digits=2),
    Target("LOOP 1,000 passes", "overhead per pass", "loop.loky.overhead_us", " µs", 20,
           operator.le, digits=2),
]


def run_benchmark(script: str, passthrough: list[str], out: Path) -> int:
    command = [sys.executable, str(HERE / script), *passthrough, "--json", str(out)]
    print(f"\n$ {' '.join(command[1:])}", flush=True)
    start = time.perf_counter()
    code = subprocess.call(command, cwd=HERE.parent)
    print(f"  ({script} took {time.perf_counter() - start:.1f} s, exit status {code})",
          flush=True)
    return code


def installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def summary(figures: h.Figures, quick: bool) -> None:
    print(f"\n{SUMMARY_HEADER}")
    if quick:
        print("  (--quick: reduced sizes and 1 run; the figures are not comparable to the targets)")
    rows = [("workload", "figure", "taskloom", "raw loky (or as noted)", "target", "met")]
    for t in TARGETS:
        value = figures.get(t.key)
        baseline = figures.get(t.baseline_key) if t.baseline_key else None
        if value is None and t.needs is not None and not installed(t.needs):
            met = f"n/a ({t.needs} not installed)"
        elif value is None:
            met = "no (not measured)"
        elif quick:
            met = "n/a (quick)"
        else:
            met = "yes" if t.op(value, t.limit) else "no"
        rows.append((
            t.workload,
            t.figure,
            h.fmt(value, t.digits, t.unit),
            (h.fmt(baseline, 0, t.baseline_unit) if t.baseline_unit
             else h.fmt(baseline, t.digits, t.unit) if t.baseline_key else ""),
            t.describe(),
            met,
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  " + " | ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  " + "-+-".join("-" * w for w in widths))
    print(f"  {h.load_text()}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Run every benchmark and summarize.")
    parser.add_argument("--runs", type=int, help="timed runs per measurement (passed through)")
    parser.add_argument("--quick", action="store_true", help="smoke mode (passed through)")
    args = parser.parse_args()
    passthrough: list[str] = []
    if args.runs is not None:
        passthrough += ["--runs", str(args.runs)]
    if args.quick:
        passthrough.append("--quick")
    h.print_header("taskloom benchmarks" + (" (quick)" if args.quick else ""))
    figures: h.Figures = {}
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="taskloom-bench-") as tmp:
        # Keep any default cache store the engine might open out of the user's cache dir.
        os.environ.setdefault("TASKLOOM_HOME", str(Path(tmp) / "home"))
        for script in BENCHMARKS:
            needs = NEEDS.get(script)
            if needs is not None and not installed(needs):
                print(f"\n$ {script}: skipped ({needs} is not installed; pip install -e "
                      '".[dask]")', flush=True)
                continue
            out = Path(tmp) / f"{script}.json"
            if run_benchmark(script, passthrough, out) != 0:
                failed.append(script)
            if out.exists():
                figures.update(json.loads(out.read_text()))
    summary(figures, args.quick)
    if failed:
        print(f"  FAILED: {', '.join(failed)} (see above)")
        sys.exit(1)


if __name__ == "__main__":
    main()
