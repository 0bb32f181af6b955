"""taskloom on a loky pool against the same-run baselines, for W1-W5 and the scale workload.

Systems, all run in this process and interleaved run by run (so they share the machine's
noise): plain sequential Python calls (the floor), raw loky (one future per task on
``loky.get_reusable_executor(max_workers=2)``, the parent resolving dependencies: the
anchors' "raw loky" row), ``LocalExecutor`` (W3 only) and taskloom's
``LokyExecutor(max_workers=2)``. Each measurement is a warm-up run (also checking that every
system computes the same terminal results) followed by ``--runs`` timed runs; figures are
medians of per-run values, with [min..max] after them.

* W1 wide: overhead µs/task vs sequential; ratio taskloom / raw loky
* W2 chain: µs per hop (overhead per task vs sequential)
* W3 cpu: speedup vs LocalExecutor (and vs sequential)
* W4 50 MB payload: wall ms; ratio taskloom / raw loky, and taskloom / the hand-off floor
  (the payload made in a worker, one copy out to shared memory, one copy into the parent);
  taskloom leaves the payload in shared memory until the caller reads it, so W4 also
  times "taskloom+read": the run, then the caller reading every task's result
* W5 grid: overhead µs/task
* scale: overhead µs/task at 1,000 and 10,000 tasks, their ratio, and the parent's peak RSS
  during an extra (untimed) 10,000-task run, sampled every 10 ms in a thread
* wake-up: W1, W2 and a raw loky no-op round trip, each timed after the pool was left idle
  for ``IDLE`` seconds, then again at once: how much of a figure above is the pool's
  processes and threads waking up (every timed run above follows another system's run, so
  its pool was idle). Not targets: the W1 and W2 rows above are.

Until ``LokyExecutor`` exists (its constructor raises ``NotImplementedError``) the taskloom
column reads "taskloom: not available"; nothing here needs to change when it lands.

    python benchmarks/bench_loky.py [--runs N] [--quick] [--json FILE]
"""

from __future__ import annotations

import os
import time
import traceback
from collections.abc import Callable
from typing import Any

import loky

import _harness as h
import _systems as sy
import workloads as wl

from taskloom import Flow, Task
from taskloom.executors import LocalExecutor, LokyExecutor
from taskloom.executors.loky import _worker_env

DESCRIPTION = "taskloom LokyExecutor vs raw loky and plain sequential calls (W1-W5, scale)."

SEQ, LOCAL, RAW, LOOM = sy.SEQ, "LocalExecutor", sy.RAW, "taskloom"
FLOOR = "hand-off floor"
READ = "taskloom+read"

System = sy.System[wl.Workload]
Result = sy.Result[wl.Workload]


def build(w: wl.Workload) -> tuple[Flow, list[Task[Any, Any]]]:
    """``w`` as a taskloom flow, and its terminal tasks."""
    flow, tasks = wl.build_flow(w)
    return flow, [tasks[i] for i in w.terminals]


class Bench(sy.Bench[wl.Workload]):
    def __init__(self, runs: int) -> None:
        super().__init__(
            runs, heading=lambda w: f"{w.name}: {w.description} ({w.size} tasks)",
            units=lambda w: w.size, width=14, pools=(RAW, LOOM, FLOOR, READ),
        )
        self.loom: sy.Taskloom[wl.Workload] | None = None
        self.loom_missing = ""
        try:
            self.loom = sy.Taskloom(LOOM, LokyExecutor(max_workers=wl.LOKY_WORKERS), build)
        except NotImplementedError as error:
            self.loom_missing = f"not available ({error})"
        except Exception as error:
            self.loom_missing = f"FAILED to construct: {error!r}"
            self.failed = True
            traceback.print_exc()
        self.raw: sy.RawLoky[wl.Workload] = sy.RawLoky(lambda w: w)

    def systems(self, with_local: bool = False) -> list[System | sy.Absent]:
        systems: list[System | sy.Absent] = [sy.Sequential(wl.run_sequential)]
        if with_local:
            systems.append(sy.Taskloom(LOCAL, LocalExecutor(), build))
        systems.append(self.raw)
        systems.append(self.loom if self.loom is not None else sy.Absent(LOOM, self.loom_missing))
        return systems

    def loom_note(self, result: Result) -> str:
        return result.missing.get(LOOM, "not available")


def overhead_figures(bench: Bench, r: Result, unit: str, figures: h.Figures) -> None:
    """Overhead per task (``unit``: "task" or "hop") for raw loky and taskloom."""
    name = r.workload.name
    for system, key in ((RAW, "raw"), (LOOM, "taskloom")):
        if r.has(system, SEQ):
            o = r.overhead(system)
            h.put(figures, f"{name}.{key}.overhead_us", o, 1e6)
            h.line(f"{system:<9} overhead {o.show(1e6, 1, f' µs/{unit}')} vs sequential")
        else:
            figures[f"{name}.{key}.overhead_us"] = None
            h.line(f"{system}: {bench.loom_note(r) if system == LOOM else 'n/a'}")


def ratio_vs_raw(r: Result, figures: h.Figures) -> None:
    sy.ratio_figure(r, LOOM, RAW, f"{r.workload.name}.taskloom_vs_raw", figures)


def bench_w1(bench: Bench, size: int) -> h.Figures:
    figures: h.Figures = {}
    r = bench.measure(wl.w1_wide(size), bench.systems())
    overhead_figures(bench, r, "task", figures)
    ratio_vs_raw(r, figures)
    return figures


def bench_w2(bench: Bench, size: int) -> h.Figures:
    figures: h.Figures = {}
    r = bench.measure(wl.w2_chain(size), bench.systems())
    overhead_figures(bench, r, "hop", figures)
    return figures


def bench_w3(bench: Bench, tasks: int, seconds: float) -> h.Figures:
    loops = wl.calibrate_cpu_loops(seconds)
    figures: h.Figures = {"W3.loops": float(loops)}
    r = bench.measure(wl.w3_cpu(loops, tasks), bench.systems(with_local=True))
    per_task = r.series(SEQ).median / tasks if r.has(SEQ) else 0.0
    h.line(f"one CPU task ~ {per_task * 1e3:.0f} ms in this run (calibrated for "
           f"{seconds * 1e3:.0f} ms: {loops:,} loops)")
    for system, key in ((RAW, "raw"), (LOOM, "taskloom")):
        if r.has(system, LOCAL, SEQ):
            vs_local = r.ratio(LOCAL, system)
            vs_seq = r.ratio(SEQ, system)
            h.put(figures, f"W3.{key}.speedup_vs_local", vs_local)
            h.put(figures, f"W3.{key}.speedup_vs_seq", vs_seq)
            h.line(f"{system:<9} speedup {vs_local.show(1, 2, 'x')} vs LocalExecutor, "
                   f"{vs_seq.show(1, 2, 'x')} vs sequential")
        else:
            figures[f"W3.{key}.speedup_vs_local"] = None
            figures[f"W3.{key}.speedup_vs_seq"] = None
            h.line(f"{system}: {bench.loom_note(r) if system == LOOM else 'n/a'}")
    return figures


class HandOffFloor(sy.System[wl.Workload]):
    """W4's floor for an engine that hands every result to the parent (a flow's state holds
    them all): on a loky pool of its own, one call makes the payload and runs the consumers
    and the reduce where it was made, then the parent reads the payload back from shared
    memory (``workloads.make_and_share``): the making, one copy out, one copy in. Its
    workers start with the environment taskloom's do (``_worker_env``: large allocations
    on huge pages), so the making costs what it costs in taskloom's workers."""

    name = FLOOR

    def __init__(self, nbytes: int, consumers: int) -> None:
        self.nbytes, self.consumers = nbytes, consumers
        self.pool: loky.ProcessPoolExecutor | None = None

    def before(self) -> None:
        if self.pool is None:
            self.pool = loky.ProcessPoolExecutor(
                max_workers=wl.LOKY_WORKERS, env=_worker_env()
            )
            self.pool.submit(wl.noop).result()  # its workers started, untimed

    def run(self) -> Any:
        assert self.pool is not None
        path, reduced = self.pool.submit(wl.make_and_share, self.nbytes, self.consumers).result()
        payload = wl.take_shared(path)
        assert len(payload) == self.nbytes
        return [reduced]


class ReadBack(sy.Taskloom[wl.Workload]):
    """taskloom's run, then the caller reading every task's result (W4's payload stays in
    shared memory until then: ``states.fetched_on_read``)."""

    def run(self) -> Any:
        state = super().run()
        for task_state in state.result.values():
            task_state.result  # noqa: B018 (the read is what is timed)
        return state


def bench_w4(bench: Bench, nbytes: int) -> h.Figures:
    figures: h.Figures = {}
    w = wl.w4_payload(nbytes)
    consumers = sum(node.fn is wl.consume for node in w.nodes)
    floor: System | sy.Absent = (
        HandOffFloor(nbytes, consumers) if os.path.isdir(wl.SHARED_MEMORY)
        else sy.Absent(FLOOR, f"no {wl.SHARED_MEMORY} here")
    )
    read: System | sy.Absent = (
        ReadBack(READ, bench.loom.executor, build) if bench.loom is not None
        else sy.Absent(READ, bench.loom_missing)
    )
    r = bench.measure(w, [*bench.systems(), read, floor])
    if isinstance(floor, HandOffFloor) and floor.pool is not None:
        floor.pool.shutdown()  # (its two processes would share the cores with what follows)
    for system, key in (
        (SEQ, "seq"), (RAW, "raw"), (LOOM, "taskloom"), (READ, "taskloom_read"), (FLOOR, "floor")
    ):
        figures[f"W4.{key}.wall_ms"] = r.series(system).median * 1e3 if r.has(system) else None
    if r.has(RAW, LOOM):
        h.line(f"wall: raw loky {r.series(RAW).show(1e3, 0, ' ms')}, "
               f"taskloom {r.series(LOOM).show(1e3, 0, ' ms')}")
    else:
        h.line(f"taskloom: {bench.loom_note(r)}")
    if r.has(FLOOR):
        h.line(f"hand-off floor {r.series(FLOOR).show(1e3, 0, ' ms')} (made in a worker, one "
               "copy out, one in: where an engine that hands the result to the parent starts)")
    ratio_vs_raw(r, figures)
    sy.ratio_figure(r, LOOM, FLOOR, "W4.taskloom_vs_floor", figures)
    sy.ratio_figure(r, READ, FLOOR, "W4.taskloom_read_vs_floor", figures)
    return figures


def bench_w5(bench: Bench, side: int) -> h.Figures:
    figures: h.Figures = {}
    r = bench.measure(wl.w5_grid(side, side), bench.systems())
    overhead_figures(bench, r, "task", figures)
    return figures


def bench_scale(bench: Bench, small: int, large: int) -> h.Figures:
    figures: h.Figures = {"scale.small": float(small), "scale.large": float(large)}
    results = {n: bench.measure(wl.scale(n), bench.systems()) for n in (small, large)}
    for system, key in ((RAW, "raw"), (LOOM, "taskloom")):
        overheads = sy.growth_figures(
            results[small], results[large], system, f"scale.{key}", figures
        )
        if overheads is None:
            h.line(f"{system}: {bench.loom_note(results[large]) if system == LOOM else 'n/a'}")
            continue
        lo, hi = overheads
        h.line(f"{system:<9} overhead {lo * 1e6:,.1f} µs/task at {small:,} tasks, "
               f"{hi * 1e6:,.1f} at {large:,}: {large:,}/{small:,} = {hi / lo:.2f}x")
    # Peak RSS of the parent during one more (untimed) run of the large size.
    w = wl.scale(large)
    candidates: list[System] = [bench.raw]
    if bench.loom is not None and results[large].has(LOOM):
        candidates.append(bench.loom)
    for candidate in candidates:
        key = "raw" if candidate is bench.raw else "taskloom"
        try:
            sampler = sy.peak_rss(candidate, w)
        except Exception as error:
            bench.failed = True
            h.line(f"{candidate.name}: FAILED during the RSS run: {error!r}")
            figures[f"scale.{key}.peak_rss_mb"] = None
            continue
        before, peak = sampler.start_rss / 2**20, sampler.peak / 2**20
        figures[f"scale.{key}.peak_rss_mb"] = peak
        h.line(f"{candidate.name:<9} parent peak RSS {peak:,.0f} MB during a {large:,}-task run "
               f"({before:,.0f} MB before it; sampled every 10 ms)")
    figures.setdefault("scale.taskloom.peak_rss_mb", None)
    return figures


#: How long the pool is left idle before each run of ``bench_wakeup`` that starts a pair.
IDLE = 0.01


def bench_wakeup(bench: Bench, w1: int, w2: int, pairs: int) -> h.Figures:
    """W1 of ``w1`` tasks and W2 of ``w2`` hops on taskloom, and a raw loky no-op round
    trip, each in ``pairs`` pairs of runs: one after ``IDLE`` seconds of sleep, one right
    after it; with the sequential calls timed in the same rounds, for the overheads."""
    figures: h.Figures = {}
    if bench.loom is None:
        h.line(f"wake-up: taskloom {bench.loom_missing}")
        return figures
    loom = bench.loom
    pool = wl.raw_loky_pool()

    def pair(run: Callable[[], object]) -> tuple[float, float]:
        time.sleep(IDLE)
        start = time.perf_counter()
        run()
        middle = time.perf_counter()
        run()
        return middle - start, time.perf_counter() - middle

    print(f"  wake-up: W1 ({w1} tasks) and W2 ({w2} hops) on taskloom, and a raw loky no-op "
          f"round trip, {pairs} pairs each: after {IDLE * 1e3:g} ms idle, then again at once")
    for w, unit in ((wl.w1_wide(w1), "task"), (wl.w2_chain(w2), "hop")):
        loom.prepare(w)
        loom.run()  # warm-up
        seq: list[float] = []
        walls: tuple[list[float], list[float]] = ([], [])
        for _ in range(pairs):
            start = time.perf_counter()
            wl.run_sequential(w)
            seq.append(time.perf_counter() - start)
            for wall, kept in zip(pair(loom.run), walls):
                kept.append(wall)
        floor = h.Series(seq).median
        for kept, key, label in zip(walls, ("idle", "at_once"), ("after idle", "at once")):
            over = h.Series([(wall - floor) / w.size for wall in kept])
            h.put(figures, f"wakeup.{w.name}.{key}.overhead_us", over, 1e6)
            h.line(f"taskloom {w.name} {label:<10} overhead {over.show(1e6, 1, f' µs/{unit}')} "
                   "vs sequential")
    trips: tuple[list[float], list[float]] = ([], [])
    for _ in range(pairs):
        for wall, kept in zip(pair(lambda: pool.submit(wl.noop).result()), trips):
            kept.append(wall)
    for kept, key, label in zip(trips, ("idle", "at_once"), ("after idle", "at once")):
        trip = h.Series(kept)
        h.put(figures, f"wakeup.raw.{key}.round_trip_us", trip, 1e6)
        h.line(f"raw loky no-op round trip {label:<10} {trip.show(1e6, 0, ' µs')}")
    return figures


def main() -> None:
    args = h.parse_args(DESCRIPTION, default_runs=5)
    h.print_header("bench_loky: taskloom LokyExecutor(max_workers=2) vs raw loky vs sequential"
                   + (" (quick)" if args.quick else ""))
    bench = Bench(args.runs)
    if bench.loom is None:
        print(f"  taskloom: {bench.loom_missing}")
    # The reusable pool is started here, untimed, before any workload.
    wl.raw_loky_pool()
    figures: h.Figures = {}
    if args.quick:
        steps: list[Callable[[], h.Figures]] = [
            lambda: bench_w1(bench, 100),
            lambda: bench_w2(bench, 20),
            lambda: bench_w3(bench, 4, 0.02),
            lambda: bench_w4(bench, 2**20),
            lambda: bench_w5(bench, 5),
            lambda: bench_scale(bench, 100, 1000),
            lambda: bench_wakeup(bench, 100, 20, 2),
        ]
    else:
        steps = [
            lambda: bench_w1(bench, 1000),
            lambda: bench_w2(bench, 200),
            lambda: bench_w3(bench, 8, 0.25),
            lambda: bench_w4(bench, 50 * 2**20),
            lambda: bench_w5(bench, 20),
            lambda: bench_scale(bench, 1_000, 10_000),
            lambda: bench_wakeup(bench, 1000, 200, 5 * args.runs),
        ]
    for step in steps:
        figures.update(step())
    if len(bench.raw.pools_seen) > 1:
        print(f"  note: loky's reusable executor was replaced {len(bench.raw.pools_seen) - 1} "
              "time(s) between raw loky runs (something asked it for other arguments); "
              "each replacement's worker start was kept out of the timed runs")
    h.finish(args.json, figures, bench.failed)


if __name__ == "__main__":
    main()
