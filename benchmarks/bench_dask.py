"""taskloom's DaskExecutor against plain Dask futures on the same cluster, for W1, W5 and W3.

One ``distributed.LocalCluster`` (2 worker processes x 1 thread, loopback) is started
untimed and shared by every system. Systems, all in this process and interleaved run by
run (so they share the machine's noise):

* sequential: plain Python calls (the floor);
* raw Dask: one ``client.submit`` per task with the upstream futures as arguments (a
  reduce gets the list of futures), then one ``client.gather`` of the terminal results:
  the anchors' "distributed ``client.submit`` per task" row;
* taskloom: ``flow.run(executor=DaskExecutor(address=<the same cluster>))``.

Each measurement is a warm-up run (also checking that every system computes the same
terminal results) followed by ``--runs`` timed runs; figures are medians of per-run
values, with [min..max] after them.

* W1 wide (1,000 no-ops -> reduce): wall ms; overhead µs/task vs sequential; ratio
  taskloom / raw Dask (target <= 1.2x)
* W5 grid (20 x 20, 2 upstreams each): wall ms; overhead µs/task vs sequential (target
  <= 300 µs/task); ratio taskloom / raw Dask
* W3 cpu (8 x ~0.25 s -> reduce): wall ms; speedup vs sequential; ratio taskloom / raw
  Dask (target <= 1.2x)

taskloom batches short runs into one Dask task (see ``taskloom.executors.dask``), so on W1
it makes ~5 Dask tasks where raw Dask makes 1,001.

Needs the dask extra (``pip install -e ".[dask]"``); without it, prints a note and
exits 0.

    python benchmarks/bench_dask.py [--runs N] [--quick] [--json FILE]
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from collections.abc import Callable
from typing import Any

import _harness as h
import workloads as wl

DESCRIPTION = "taskloom DaskExecutor vs raw Dask futures on one LocalCluster (W1, W5, W3)."

SEQ, RAW, LOOM = "sequential", "raw Dask", "taskloom"
#: The anchors' Dask cluster: 2 worker processes x 1 thread.
DASK_WORKERS = 2


def run_raw_dask(w: wl.Workload, client: Any) -> list[Any]:
    """Run ``w`` as plain Dask futures: one ``submit`` per node, upstream futures as its
    arguments (Dask resolves them on the workers), one ``gather`` of the terminals."""
    futures: list[Any] = []
    for node in w.nodes:
        ups = [futures[d] for d in node.deps]
        if node.gather:
            futures.append(client.submit(node.fn, ups, *node.consts, pure=False))
        else:
            futures.append(client.submit(node.fn, *ups, *node.consts, pure=False))
    results: list[Any] = client.gather([futures[i] for i in w.terminals])
    return results


class Bench:
    def __init__(self, runs: int, client: Any, address: str) -> None:
        from taskloom.executors import DaskExecutor

        self.runs = runs
        self.client = client
        self.executor = DaskExecutor(address=address)
        self.failed = False

    def measure(self, w: wl.Workload) -> dict[str, list[float]]:
        flow, tasks = wl.build_flow(w)
        systems: dict[str, Callable[[], list[Any]]] = {
            SEQ: lambda: wl.run_sequential(w),
            RAW: lambda: run_raw_dask(w, self.client),
            LOOM: lambda: wl.flow_terminal_results(w, flow.run(executor=self.executor), tasks),
        }
        walls: dict[str, list[float]] = {}
        expected: list[Any] | None = None
        for name, run in systems.items():  # warm-up, and the same answers everywhere
            try:
                got = run()
            except Exception as error:
                self._fail(name, f"FAILED: {error!r}")
                continue
            if expected is None:
                expected = got
            elif got != expected:
                self._fail(name, f"FAILED: wrong results {got!r:.80}, expected {expected!r:.80}")
                continue
            walls[name] = []
        for i in range(self.runs):
            order = [SEQ, RAW, LOOM] if i % 2 == 0 else [SEQ, LOOM, RAW]
            for name in order:
                if name not in walls:
                    continue
                try:
                    seconds, _ = h.timed(systems[name])
                except Exception as error:
                    self._fail(name, f"FAILED in a timed run: {error!r}")
                    del walls[name]
                    continue
                walls[name].append(seconds)
        print(f"  {w.name}: {w.description} ({w.size} tasks), {self.runs} runs")
        for name, values in walls.items():
            print(f"    {name:<10} wall {h.Series(values).show(1e3, 1, ' ms')}")
        sys.stdout.flush()
        return walls

    def _fail(self, name: str, why: str) -> None:
        self.failed = True
        print(f"    {name}: {why}", file=sys.stderr)
        traceback.print_exc()


def compare(
    w: wl.Workload, walls: dict[str, list[float]], figures: h.Figures, per_task: bool
) -> None:
    """Wall, ratio taskloom / raw Dask, and overhead per task (``per_task``) or speedup
    vs sequential, into ``figures``."""
    name = w.name
    for system, key in ((RAW, "raw"), (LOOM, "taskloom")):
        figures[f"dask.{name}.{key}.wall_ms"] = (
            h.Series(walls[system]).median * 1e3 if system in walls else None
        )
        if system not in walls or SEQ not in walls:
            continue
        if per_task:
            o = h.paired(walls[system], walls[SEQ], lambda a, b: (a - b) / w.size)
            h.put(figures, f"dask.{name}.{key}.overhead_us", o, 1e6)
            h.line(f"{system:<9} overhead {o.show(1e6, 1, ' µs/task')} vs sequential")
        else:
            s = h.paired(walls[SEQ], walls[system], lambda a, b: a / b)
            h.put(figures, f"dask.{name}.{key}.speedup_vs_seq", s)
            h.line(f"{system:<9} speedup {s.show(1, 2, 'x')} vs sequential")
    if RAW in walls and LOOM in walls:
        ratio = h.paired(walls[LOOM], walls[RAW], lambda a, b: a / b)
        h.put(figures, f"dask.{name}.taskloom_vs_raw", ratio)
        h.line(f"taskloom / raw Dask = {ratio.show(1, 3, 'x')} (target <= 1.2x)")
    else:
        figures[f"dask.{name}.taskloom_vs_raw"] = None


def main() -> None:
    args = h.parse_args(DESCRIPTION, default_runs=5)
    h.print_header("bench_dask: taskloom DaskExecutor vs raw Dask futures, same LocalCluster"
                   + (" (quick)" if args.quick else ""))
    if importlib.util.find_spec("distributed") is None:
        print('  skipped: Dask distributed is not installed (pip install -e ".[dask]")')
        h.write_figures(args.json, {})
        return
    import distributed

    from taskloom.executors.dask import close_clients

    print(f"  distributed {distributed.__version__}, {DASK_WORKERS} worker processes x 1 thread")
    cluster = distributed.LocalCluster(
        n_workers=DASK_WORKERS, threads_per_worker=1, processes=True,
        host="127.0.0.1", dashboard_address="127.0.0.1:0",
    )
    client = distributed.Client(cluster, set_as_default=False)
    figures: h.Figures = {}
    bench = Bench(args.runs, client, cluster.scheduler_address)
    try:
        client.submit(wl.noop, pure=False).result()  # the workers answer before timing
        if args.quick:
            w1, cpu_tasks, cpu_seconds = wl.w1_wide(100), 4, 0.02
        else:
            w1, cpu_tasks, cpu_seconds = wl.w1_wide(1000), 8, 0.25
        compare(w1, bench.measure(w1), figures, per_task=True)
        w5 = wl.w5_grid(5, 5) if args.quick else wl.w5_grid()
        compare(w5, bench.measure(w5), figures, per_task=True)
        loops = wl.calibrate_cpu_loops(cpu_seconds)
        w3 = wl.w3_cpu(loops, cpu_tasks)
        walls = bench.measure(w3)
        if SEQ in walls:
            per_task = h.Series(walls[SEQ]).median / cpu_tasks
            h.line(f"one CPU task ~ {per_task * 1e3:.0f} ms in this run (calibrated for "
                   f"{cpu_seconds * 1e3:.0f} ms: {loops:,} loops)")
        compare(w3, walls, figures, per_task=False)
    finally:
        close_clients()
        client.close()
        cluster.close()
    h.finish(args.json, figures, bench.failed)


if __name__ == "__main__":
    main()
