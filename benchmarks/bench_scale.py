"""Scale: a flow of 10,000 / 100,000 / 1,000,000 plain tasks on LocalExecutor (slow).

The flow is what a user writes with a list comprehension: ``n`` no-op tasks in groups of
10,000, each group gathered by one reduce task (``total``), journal on (the default). Each size
runs in a fresh process of its own (``--one N``), so a size's peak memory is not inherited
from the one before. Per size, the figures are:

* build µs/task: building the flow, divided by its tasks (median of the timed runs);
* run µs/task: the first ``flow.run()`` of a flow built for it, wall minus the same calls
  as plain Python (measured in the same process just before), divided by its tasks
  (median of the timed runs; each builds its own flow, as a job that builds and runs a
  flow once does: the first run of a flow also compiles its plan);
* peak RSS of the process during build and run, and KB per task over the RSS before the build.

Targets (the speed issue): the 1,000,000-task flow builds and runs with the parent under
1 GB (<= 1 KB per task), and its run µs/task is within 1.2x of the 10,000-task flow's
(``big.growth``). ``--quick`` measures 1,000 and 10,000 tasks only.

    python benchmarks/bench_scale.py [--runs N] [--quick] [--json FILE]

Where the memory goes: ``--where N`` builds and runs one flow of ``N`` tasks under
``tracemalloc`` and prints the bytes per task alive after the build and those the run adds
and keeps (the flow's result, the cached plan), by the line that allocated them, and the
traced peak per task (no timing: tracing slows everything down)::

    python benchmarks/bench_scale.py --where 100000
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

import _harness as h
import workloads as wl

from taskloom import Flow, task
from taskloom.executors import LocalExecutor

GROUP = 10_000
SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (1_000, 10_000)
#: Timed runs per size at most (a 1,000,000-task run takes tens of seconds).
MAX_RUNS = {1_000_000: 1, 100_000: 3}
#: Timed runs per size at least: a run of 10,000 tasks takes a tenth of a second, and on a
#: busy machine its time per task moves by a third from one run to the next.
MIN_RUNS = {10_000: 9}
DESCRIPTION = "LocalExecutor at 10k, 100k and 1M tasks: build and run µs/task, peak RSS."

noop = task(wl.noop)
total = task(wl.total)


def build(n: int) -> Flow:
    with Flow(f"scale-{n}") as flow:
        for start in range(0, n, GROUP):
            total([noop() for _ in range(min(GROUP, n - start))])
    return flow


def sequential(n: int) -> list[int]:
    return [
        wl.total([wl.noop() for _ in range(min(GROUP, n - start))])
        for start in range(0, n, GROUP)
    ]


def one(n: int, runs: int) -> h.Figures:
    """Measure size ``n`` in this process: build, then ``runs`` pairs of sequential / run."""
    # Warm-up, untimed and before the RSS baseline: imports, the journal's file, the pool.
    build(1_000).run(executor=LocalExecutor())
    # Each timed run is the first run of a flow built for it, at every size: a flow's
    # first run also compiles its plan, which later runs reuse, so timing the later runs of
    # the small flows against the only run of the big one would make the big one look
    # slower per task than it is.
    with h.RssSampler(0.02) as rss:
        builds: list[float] = []
        seq: list[float] = []
        loom: list[float] = []
        tasks = n
        for _ in range(runs):
            build_s, flow = h.timed(lambda: build(n))
            builds.append(build_s)
            tasks = len(flow.tasks)
            seq.append(h.timed(lambda: sequential(n))[0])
            seconds, state = h.timed(lambda: flow.run(executor=LocalExecutor()))
            if not state.is_successful():
                raise RuntimeError(f"scale-{n}: the run ended {state!r}")
            loom.append(seconds)
            del state, flow
    overhead = h.paired(loom, seq, lambda a, b: (a - b) / tasks)
    figures: h.Figures = {
        "tasks": float(tasks),
        "build_us": sorted(builds)[len(builds) // 2] / tasks * 1e6,
        "peak_rss_mb": rss.peak / 2**20,
        "kb_per_task": (rss.peak - rss.start_rss) / tasks / 1024,
    }
    h.put(figures, "run_us", overhead, 1e6)
    return figures


def where(n: int, top: int = 15) -> None:
    """Print where a flow of ``n`` tasks keeps its memory (see the module docstring)."""
    build(1_000).run(executor=LocalExecutor())
    gc.collect()
    tracemalloc.start()
    flow = build(n)
    built = tracemalloc.take_snapshot()
    tracemalloc.reset_peak()
    state = flow.run(executor=LocalExecutor())
    peak = tracemalloc.get_traced_memory()[1]
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    alive, kept = (sum(stat.size for stat in snap.statistics("filename")) for snap in (built, after))
    if not state.is_successful():
        raise RuntimeError(f"scale-{n}: the run ended {state!r}")
    print(f"{n:,} tasks: {alive / n:.0f} B/task after the build, {kept / n:.0f} after the run, "
          f"traced peak {peak / n:.0f} B/task")
    print("  the build, by line:")
    for stat in built.statistics("lineno")[:top]:
        print(f"    {stat.size / n:7.1f} B/task  {stat.count / n:5.2f} blocks/task  {stat.traceback}")
    print("  what the run adds and keeps, by line:")
    for diff in after.compare_to(built, "lineno")[:top]:
        print(f"    {diff.size_diff / n:7.1f} B/task  {diff.count_diff / n:5.2f} blocks/task  {diff.traceback}")


def measure(n: int, runs: int, tmp: Path) -> dict[str, float] | None:
    out = tmp / f"scale-{n}.json"
    command = [sys.executable, __file__, "--one", str(n), "--runs", str(runs), "--json", str(out)]
    code = subprocess.call(command, cwd=Path(__file__).parent)
    if code != 0 or not out.exists():
        print(f"  scale {n:,}: FAILED (exit status {code})", file=sys.stderr)
        return None
    got: dict[str, float] = json.loads(out.read_text())
    return got


def key(n: int) -> str:
    return f"big.{n // 1000}k" if n < 1_000_000 else f"big.{n // 1_000_000}m"


def main() -> None:
    if "--where" in sys.argv:
        where(int(sys.argv[sys.argv.index("--where") + 1]))
        return
    if "--one" in sys.argv:
        i = sys.argv.index("--one")
        n = int(sys.argv[i + 1])
        del sys.argv[i : i + 2]
        args = h.parse_args(DESCRIPTION, default_runs=3)
        h.write_figures(args.json, one(n, args.runs))
        return
    args = h.parse_args(DESCRIPTION, default_runs=3)
    sizes = QUICK_SIZES if args.quick else SIZES
    h.print_header("bench_scale: LocalExecutor from 10k to 1M tasks" + (" (quick)" if args.quick else ""))
    figures: h.Figures = {}
    failed = False
    by_size: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="taskloom-scale-") as tmp:
        os.environ.setdefault("TASKLOOM_HOME", str(Path(tmp) / "home"))
        for n in sizes:
            runs = max(min(args.runs, MAX_RUNS.get(n, args.runs)), MIN_RUNS.get(n, 1))
            got = measure(n, runs, Path(tmp))
            if got is None:
                failed = True
                continue
            by_size[n] = got
            print(f"  {n:>9,} tasks ({runs} run{'s' if runs > 1 else ''}): build "
                  f"{got['build_us']:.1f} µs/task, run {got['run_us']:.1f} µs/task "
                  f"[{got['run_us~min']:.1f}..{got['run_us~max']:.1f}], peak RSS "
                  f"{got['peak_rss_mb']:,.0f} MB ({got['kb_per_task']:.2f} KB/task)", flush=True)
            for name, value in got.items():
                figures[f"{key(n)}.{name}"] = value
    small, large = sizes[0], sizes[-1]
    if small in by_size and large in by_size:
        growth = by_size[large]["run_us"] / by_size[small]["run_us"]
        figures["big.growth"] = growth
        h.line(f"run µs/task at {large:,} / at {small:,} = {growth:.2f}x (target <= 1.2x)")
    else:
        figures["big.growth"] = None
    h.finish(args.json, figures, failed)


if __name__ == "__main__":
    main()
