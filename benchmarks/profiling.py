"""Where a workload's time goes: the parent's and the workers' top costs per task.

Runs a workload (``workloads.py``: W1, W2, W5 or the scale one) a few times on an executor,
with ``cProfile`` on in the parent and, for ``loky``, in every worker process (the engine's
``TASKLOOM_PROFILE_DIR`` hook in ``executors/_worker.py``: each worker profiles the batches
it runs). Prints, for each side, the functions with the most time of their own (``tottime``)
as µs per task, with calls per task and cumulative µs per task, so a change to the engine can
be aimed at what costs most (in the parent, a queue's ``get`` is the parent waiting for its
workers). Profiling slows everything (about 2x): read the figures as
shares, not as speeds; ``run_all.py`` gives the speeds.

    python benchmarks/profiling.py [--workload W1] [--executor loky] [--runs 5] [--top 15]
    (or: nox -s bench -- --profile)
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

import _harness as h
import workloads as wl

from taskloom.executors import Executor, LocalExecutor, LokyExecutor
from taskloom.executors._worker import PROFILE_DIR_VARIABLE

WORKLOADS: dict[str, Callable[[], wl.Workload]] = {
    "W1": wl.w1_wide, "W2": wl.w2_chain, "W5": wl.w5_grid, "scale": lambda: wl.scale(10_000),
}


def top(stats: pstats.Stats, tasks: int, count: int, title: str) -> None:
    """The ``count`` functions with the most time of their own, per task."""
    rows = sorted(
        stats.stats.items(),  # type: ignore[attr-defined]  # pstats keeps them untyped
        key=lambda item: item[1][2], reverse=True,
    )[:count]
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    print(f"\n  {title}: {total / tasks * 1e6:,.1f} µs of profiled time per task")
    print(f"    {'own µs/task':>11} {'cum µs/task':>11} {'calls/task':>10}  function")
    for (file, line, name), (_, calls, own, cum, _) in rows:
        where = f"{Path(file).name}:{line}" if line else file
        print(f"    {own / tasks * 1e6:>11.2f} {cum / tasks * 1e6:>11.2f} "
              f"{calls / tasks:>10.2f}  {name} ({where})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--workload", choices=sorted(WORKLOADS), default="W1")
    parser.add_argument("--executor", choices=("local", "loky"), default="loky")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="1 run, for smoke tests")
    args, _ = parser.parse_known_args()  # run_all.py passes its --json through: unused here
    runs = 1 if args.quick else args.runs
    h.print_header(f"profiling: {args.workload} on {args.executor}, {runs} runs")
    w = WORKLOADS[args.workload]()
    flow, _ = wl.build_flow(w)
    with tempfile.TemporaryDirectory(prefix="taskloom-profile-") as tmp:
        os.environ.setdefault("TASKLOOM_HOME", str(Path(tmp) / "home"))
        # Before the pool starts: its workers read the variable once, when they start.
        os.environ[PROFILE_DIR_VARIABLE] = tmp
        executor: Executor = (
            LocalExecutor() if args.executor == "local" else LokyExecutor(max_workers=wl.LOKY_WORKERS)
        )
        # A warm-up run: imports, the journal's file, the pool's start. The workers profile
        # it too (they cannot be told when to start), so their figures count it as a run.
        flow.run(executor=executor)
        profile = cProfile.Profile()
        walls = []
        for _ in range(runs):
            seconds, state = h.timed(lambda: profile.runcall(flow.run, executor=executor))
            if not state.is_successful():
                raise SystemExit(f"{w.name}: the run ended {state!r}")
            walls.append(seconds)
        tasks = w.size * runs
        print(f"  wall under the profiler: {h.Series(walls).show(1e3, 1, ' ms')} per run "
              f"({w.size:,} tasks)")
        top(pstats.Stats(profile), tasks, args.top, "parent")
        worker_files = sorted(Path(tmp).glob("worker-*.prof"))
        if worker_files:
            workers = pstats.Stats(*(str(f) for f in worker_files))
            top(workers, w.size * (runs + 1), args.top, f"workers ({len(worker_files)} processes, summed)")
        elif args.executor != "local":
            print("\n  workers: no profile written (did the pool start before this script?)")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
