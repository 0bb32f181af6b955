"""ThreadExecutor: what it costs per task, and what it gives on I/O-bound work.

* W1 (1,000 no-ops -> reduce) on ``ThreadExecutor(max_workers=2)`` against plain sequential
  calls, with ``bench_local.measure`` (as for ``LocalExecutor``): engine overhead per task,
  in µs (each task is a hand-over between the scheduler's thread and a pool thread).
* I/O: ``IO_TASKS`` tasks that each wait ``IO_WAIT`` s (``time.sleep``, which releases the
  GIL as a socket read does), on ``LocalExecutor`` (one at a time: about tasks x wait) and
  on ``ThreadExecutor`` with 8 and 32 threads; speed-up = local wall / threads wall.

Runs are interleaved, figures are medians with their spread; ``journal=False`` throughout.
Not part of ``run_all.py``.

    python benchmarks/bench_threads.py [--runs N] [--quick] [--json FILE]
"""

from __future__ import annotations

import time

import _harness as h
import bench_local
import workloads as wl

from taskloom import Flow, task
from taskloom.executors import Executor, LocalExecutor, ThreadExecutor

MIN_RUNS = 5
DESCRIPTION = "ThreadExecutor overhead per task (W1) and speed-up on I/O-bound tasks."
IO_TASKS = 32
IO_WAIT = 0.05


@task
def wait_io(i: int) -> int:
    time.sleep(IO_WAIT)  # a request's round trip: the GIL is released while waiting
    return i


def measure_io(tasks: int, runs: int) -> h.Figures:
    with Flow("io-bound") as flow:
        wait_io.map(list(range(tasks)))
    executors: dict[str, Executor] = {
        "local": LocalExecutor(), "threads8": ThreadExecutor(8), "threads32": ThreadExecutor(32)
    }
    walls: dict[str, list[float]] = {name: [] for name in executors}
    for executor in executors.values():  # warm-up: threads started
        flow.run(executor=executor, journal=False)
    for _ in range(runs):
        for name, executor in executors.items():
            walls[name].append(h.timed(lambda: flow.run(executor=executor, journal=False))[0])
    print(f"  I/O: {tasks} tasks waiting {IO_WAIT * 1e3:.0f} ms each, {runs} runs")
    figures: h.Figures = {}
    for name, wall in walls.items():
        print(f"    {name:<10} {h.Series(wall).show(1e3, 1, ' ms')}")
        h.put(figures, f"threads.io.{name}_ms", h.Series(wall), 1e3)
    for name in ("threads8", "threads32"):
        speedup = h.paired(walls["local"], walls[name], lambda a, b: a / b)
        h.line(f"speed-up {name} over local {speedup.show(1, 1, 'x')}")
        h.put(figures, f"threads.io.{name}_speedup", speedup)
    return figures


def main() -> None:
    args = h.parse_args(DESCRIPTION, default_runs=MIN_RUNS)
    runs = args.runs if args.quick else max(MIN_RUNS, args.runs)
    h.print_header("bench_threads: ThreadExecutor" + (" (quick)" if args.quick else ""))
    figures: h.Figures = {}
    w1 = wl.w1_wide(100 if args.quick else 1000)
    figures.update(bench_local.measure(w1, runs, ThreadExecutor(max_workers=2), key="threads"))
    figures.update(measure_io(8 if args.quick else IO_TASKS, runs))
    h.finish(args.json, figures, False)


if __name__ == "__main__":
    main()
