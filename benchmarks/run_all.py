"""Run every benchmark, each in its own process, and print a summary against the targets.

``bench_local.py``, ``bench_instructions.py`` (instruction counts under valgrind: two
minutes, and figures the machine's load does not move), ``bench_loky.py``,
``bench_dask.py`` then ``bench_map.py`` (separate
processes, so one's pool or cluster and garbage do not perturb the next; ``bench_dask.py`` is
skipped when Dask distributed, the dask extra, is not installed, and ``bench_map.py`` then
skips its Dask part; ``bench_loop.py`` and ``bench_targets.py`` (a fully cached rerun of a
10,000-child map with targets) follow; ``bench_scale.py``, last, builds and runs a
1,000,000-task flow: a minute and a few GB). ``--runs`` and ``--quick`` are passed through. The summary lists each
figure, its target and whether it was met; figures are ratios against baselines measured in
the same run (see each script's docstring). The exit status is 0 unless a benchmark failed:
missing a target is a result, not an error.

Every figure, with the [min..max] of the runs its median comes from, is written as JSON
(``--json FILE``, default ``benchmarks/results/latest.json``); ``--compare FILE`` then prints
each figure against an earlier such file and calls a change only when the two runs' ranges
do not overlap (``compare.py``). ``--profile`` runs ``profiling.py`` instead: the parent's
and the workers' top costs per task.

    python benchmarks/run_all.py [--runs N] [--quick] [--only bench_local.py]
        [--json FILE] [--compare EARLIER.json] [--profile]      (or: nox -s bench -- ...)
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
import compare

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    "bench_local.py", "bench_instructions.py", "bench_loky.py", "bench_dask.py", "bench_map.py", "bench_loop.py",
    "bench_targets.py",
    "bench_scale.py",  # last: the 1,000,000-task flow takes a minute and GBs
]
#: Benchmarks that need an optional dependency (module name), skipped without it.
NEEDS = {"bench_dask.py": "distributed"}
SUMMARY_HEADER = "== summary: taskloom against its targets =="
#: Where a run's figures go unless ``--json`` says otherwise (ignored by git).
DEFAULT_JSON = HERE / "results" / "latest.json"


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
    # The speed issue's targets (W1-W5 on loky and Dask, LocalExecutor with the journal on).
    Target("W1 LocalExecutor", "overhead per task", "local.W1.overhead_us", " µs", 6, operator.le),
    Target("W2 LocalExecutor", "overhead per task", "local.W2.overhead_us", " µs", 10, operator.le),
    Target("W1 run journal", "journal cost per task", "local.W1.journal_us", " µs", 2, operator.le),
    Target("W1 wide", "overhead per task", "W1.taskloom.overhead_us", " µs", 10, operator.le,
           "W1.raw.overhead_us"),
    Target("W2 chain", "overhead per hop", "W2.taskloom.overhead_us", " µs", 15, operator.le,
           "W2.raw.overhead_us"),
    Target("W3 cpu", "speedup vs LocalExecutor", "W3.taskloom.speedup_vs_local", "x", 1.85,
           operator.ge, "W3.raw.speedup_vs_local", 2),
    # Beside it the hand-off floor (bench_loky.py: made in a worker, one copy out, one in),
    # which the target lies below: it assumes the payload never reaches the parent.
    Target("W4 50 MB", "wall", "W4.taskloom.wall_ms", " ms", 60, operator.le,
           "W4.floor.wall_ms", 0, " ms (hand-off floor)"),
    Target("W5 grid", "overhead per task", "W5.taskloom.overhead_us", " µs", 30, operator.le,
           "W5.raw.overhead_us"),
    Target("scale 10k", "parent peak RSS", "scale.taskloom.peak_rss_mb", " MB", 150,
           operator.le, "scale.raw.peak_rss_mb", 0),
    Target("scale 10k/1k", "per-task overhead growth", "scale.taskloom.growth", "x", 1.2,
           operator.le, "scale.raw.growth", 2),
    Target("W1 on Dask", "wall vs raw Dask futures", "dask.W1.taskloom_vs_raw", "x", 1.2,
           operator.le, "dask.W1.raw.wall_ms", 2, " ms wall (raw Dask)", "distributed"),
    Target("W5 on Dask", "overhead per task", "dask.W5.taskloom.overhead_us", " µs", 300,
           operator.le, "dask.W5.raw.overhead_us", 0, " µs (raw Dask)", "distributed"),
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
    Target("targets: cached 10k map", "cost per task", "targets.local.cached_us", " µs", 50,
           operator.le),
    Target("1M tasks", "parent peak RSS", "big.1m.peak_rss_mb", " MB", 1024, operator.le,
           digits=0),
    Target("1M tasks", "memory per task", "big.1m.kb_per_task", " KB", 1, operator.le, digits=2),
    Target("1M tasks", "run µs/task growth vs 10k", "big.growth", "x", 1.2, operator.le,
           digits=2),
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


def write_run(path: Path, figures: h.Figures, args: argparse.Namespace) -> None:
    """The run's figures with what a later ``--compare`` needs to judge them."""
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "source": h.source_revision(),
        "load": h.load_text(),
        "runs": args.runs,
        "quick": args.quick,
        "benchmarks": args.only or BENCHMARKS,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"meta": meta, "figures": figures}, indent=2, sort_keys=True))
    print(f"  figures written to {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description="Run every benchmark and summarize.")
    parser.add_argument("--runs", type=int, help="timed runs per measurement (passed through)")
    parser.add_argument("--quick", action="store_true", help="smoke mode (passed through)")
    parser.add_argument(
        "--only", action="append", choices=BENCHMARKS, metavar="SCRIPT",
        help=f"run only this benchmark (repeatable; one of {', '.join(BENCHMARKS)})",
    )
    parser.add_argument(
        "--json", type=Path, default=DEFAULT_JSON,
        help=f"write every figure, with its spread, to this file (default {DEFAULT_JSON})",
    )
    parser.add_argument(
        "--compare", type=Path, metavar="FILE",
        help="print each figure against an earlier --json file, with both runs' spread",
    )
    parser.add_argument(
        "--profile", action="store_true",
        help="instead of the benchmarks: the parent's and a worker's top costs per task "
             "(benchmarks/profiling.py on W1, loky)",
    )
    args = parser.parse_args()
    if args.profile:
        sys.exit(subprocess.call([sys.executable, str(HERE / "profiling.py"),
                                  *(["--quick"] if args.quick else [])], cwd=HERE.parent))
    earlier = compare.load(args.compare) if args.compare is not None else None  # fail early
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
        for script in args.only or BENCHMARKS:
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
    write_run(args.json, figures, args)
    if earlier is not None:
        old_meta, old = earlier
        compare.print_comparison(compare.compare(old, figures), old_meta, str(args.compare))
    if failed:
        print(f"  FAILED: {', '.join(failed)} (see above)")
        sys.exit(1)


if __name__ == "__main__":
    main()
