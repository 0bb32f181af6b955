"""LocalExecutor overhead: taskloom's engine cost per task, against plain sequential calls.

For W1 (1,000 no-ops -> reduce) and W2 (chain of 200 no-ops), each timed run is a pair run
back to back in this process: the graph as plain Python calls, then ``flow.run(executor=
LocalExecutor())``. Figures are medians over the runs (at least 7, after a warm-up) of

* overhead per task = (taskloom wall - sequential wall) / tasks, in µs
* ratio = taskloom wall / sequential wall

Target: <= 10 µs of engine overhead per task (Prefect 1.4.1: 8,000-11,000 µs). The engine
is measured with ``journal=False``; what the run journal adds on top (it is on by default)
is measured on its own: ``flow.run(journal=False)`` and the default ``flow.run()`` back to
back on W1, journal cost per task = (with - without) / tasks (target: about 2 µs).

    python benchmarks/bench_local.py [--runs N] [--quick] [--json FILE]
"""

from __future__ import annotations

import sys

import _harness as h
import workloads as wl

from taskloom.executors import Executor, LocalExecutor

MIN_RUNS = 7
DESCRIPTION = "LocalExecutor overhead per task against plain sequential calls (W1, W2)."


def measure(
    w: wl.Workload, runs: int, executor: Executor | None = None, key: str = "local"
) -> h.Figures:
    """The engine's overhead per task on ``executor`` (default: a new ``LocalExecutor``
    per run) against plain sequential calls; figures under ``KEY.W.*``."""
    flow, tasks = wl.build_flow(w)
    label = type(executor).__name__ if executor is not None else "LocalExecutor"

    def run() -> object:
        return flow.run(executor=executor or LocalExecutor(), journal=False)

    # Warm-up (and a check that the engine computes what plain Python computes).
    expected = wl.run_sequential(w)
    got = wl.flow_terminal_results(w, run(), tasks)
    if got != expected:
        raise RuntimeError(f"{w.name}: taskloom gave {got!r}, plain Python {expected!r}")
    seq: list[float] = []
    loom: list[float] = []
    for _ in range(runs):
        seq.append(h.timed(lambda: wl.run_sequential(w))[0])
        loom.append(h.timed(run)[0])
    n = w.size
    overhead = h.paired(loom, seq, lambda a, b: (a - b) / n)
    ratio = h.paired(loom, seq, lambda a, b: a / b)
    print(f"  {w.name}: {w.description} ({n} tasks), {runs} runs")
    print(f"    sequential    {h.Series(seq).show(1e3, 2, ' ms')}")
    print(f"    {label:<13} {h.Series(loom).show(1e3, 2, ' ms')}")
    print(f"    overhead      {overhead.show(1e6, 2, ' µs/task')}   "
          f"ratio taskloom/sequential {ratio.show(1, 1, 'x')}")
    sys.stdout.flush()
    figures: h.Figures = {}
    h.put(figures, f"{key}.{w.name}.seq_ms", h.Series(seq), 1e3)
    h.put(figures, f"{key}.{w.name}.wall_ms", h.Series(loom), 1e3)
    h.put(figures, f"{key}.{w.name}.overhead_us", overhead, 1e6)
    h.put(figures, f"{key}.{w.name}.ratio", ratio)
    return figures


def measure_journal(w: wl.Workload, runs: int) -> h.Figures:
    flow, _ = wl.build_flow(w)
    flow.run(executor=LocalExecutor())
    without: list[float] = []
    with_journal: list[float] = []
    for _ in range(runs):
        without.append(h.timed(lambda: flow.run(executor=LocalExecutor(), journal=False))[0])
        with_journal.append(h.timed(lambda: flow.run(executor=LocalExecutor()))[0])
    cost = h.paired(with_journal, without, lambda a, b: (a - b) / w.size)
    print(f"  {w.name} journal: journal=False {h.Series(without).show(1e3, 2, ' ms')}, "
          f"journal on {h.Series(with_journal).show(1e3, 2, ' ms')}")
    print(f"    journal cost  {cost.show(1e6, 2, ' µs/task')}")
    sys.stdout.flush()
    figures: h.Figures = {}
    h.put(figures, f"local.{w.name}.journal_us", cost, 1e6)
    return figures


def main() -> None:
    args = h.parse_args(DESCRIPTION, default_runs=MIN_RUNS)
    runs = args.runs if args.quick else max(MIN_RUNS, args.runs)
    h.print_header("bench_local: LocalExecutor overhead vs plain sequential calls"
                   + (" (quick)" if args.quick else ""))
    figures: h.Figures = {}
    if args.quick:
        figures.update(measure(wl.w1_wide(100), runs))
        figures.update(measure(wl.w2_chain(20), runs))
        figures.update(measure_journal(wl.w1_wide(100), runs))
    else:
        figures.update(measure(wl.w1_wide(), runs))
        figures.update(measure(wl.w2_chain(), runs))
        figures.update(measure_journal(wl.w1_wide(), max(runs, 15)))
    print(f"  done; {h.load_text()}")
    h.write_figures(args.json, figures)


if __name__ == "__main__":
    main()
