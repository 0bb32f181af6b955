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
* W4 50 MB payload: wall ms; ratio taskloom / raw loky
* W5 grid: overhead µs/task
* scale: overhead µs/task at 1,000 and 10,000 tasks, their ratio, and the parent's peak RSS
  during an extra (untimed) 10,000-task run, sampled every 10 ms in a thread

Until ``LokyExecutor`` exists (its constructor raises ``NotImplementedError``) the taskloom
column reads "taskloom: not available"; nothing here needs to change when it lands.

    python benchmarks/bench_loky.py [--runs N] [--quick] [--json FILE]
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import _harness as h
import loky
import workloads as wl

from taskloom.executors import Executor, LocalExecutor, LokyExecutor

DESCRIPTION = "taskloom LokyExecutor vs raw loky and plain sequential calls (W1-W5, scale)."

SEQ, LOCAL, RAW, LOOM = "sequential", "LocalExecutor", "raw loky", "taskloom"


class System:
    """One way to run a workload. ``prepare`` once per workload (untimed), then per run
    ``before`` (untimed), ``run`` (timed) and ``results`` (untimed: the terminal results)."""

    name = ""

    def prepare(self, w: wl.Workload) -> None:
        self.w = w

    def before(self) -> None:
        pass

    def run(self) -> Any:
        raise NotImplementedError

    def results(self, value: Any) -> list[Any]:
        return list(value)


class Sequential(System):
    name = SEQ

    def run(self) -> Any:
        return wl.run_sequential(self.w)


class RawLoky(System):
    name = RAW

    def __init__(self) -> None:
        self.pool: loky.ProcessPoolExecutor | None = None
        self.pools_seen: set[int] = set()

    def before(self) -> None:
        # Fetched before every run: if something else asked loky's reusable executor for
        # other arguments it was replaced, and the round trip here starts the new workers.
        self.pool = wl.raw_loky_pool()
        self.pools_seen.add(id(self.pool))

    def run(self) -> Any:
        assert self.pool is not None
        return wl.run_raw_loky(self.w, self.pool)


class Taskloom(System):
    def __init__(self, name: str, executor: Executor) -> None:
        self.name = name
        self.executor = executor
        self.build_ms = 0.0

    def prepare(self, w: wl.Workload) -> None:
        super().prepare(w)
        seconds, (self.flow, self.tasks) = h.timed(lambda: wl.build_flow(w))
        self.build_ms = seconds * 1e3

    def run(self) -> Any:
        return self.flow.run(executor=self.executor)

    def results(self, value: Any) -> list[Any]:
        return wl.flow_terminal_results(self.w, value, self.tasks)


@dataclass
class Result:
    """Wall seconds per timed run for each system that ran; why the others did not."""

    workload: wl.Workload
    walls: dict[str, list[float]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    def has(self, *names: str) -> bool:
        return all(n in self.walls for n in names)

    def series(self, name: str) -> h.Series:
        return h.Series(self.walls[name])

    def overhead(self, name: str) -> h.Series:
        n = self.workload.size
        return h.paired(self.walls[name], self.walls[SEQ], lambda a, b: (a - b) / n)

    def ratio(self, a: str, b: str) -> h.Series:
        return h.paired(self.walls[a], self.walls[b], lambda x, y: x / y)


class Bench:
    def __init__(self, runs: int) -> None:
        self.runs = runs
        self.failed = False
        self.loom: Taskloom | None = None
        self.loom_missing = ""
        try:
            self.loom = Taskloom(LOOM, LokyExecutor(max_workers=wl.LOKY_WORKERS))
        except NotImplementedError as error:
            self.loom_missing = f"not available ({error})"
        except Exception as error:
            self.loom_missing = f"FAILED to construct: {error!r}"
            self.failed = True
            traceback.print_exc()
        self.raw = RawLoky()

    def systems(self, with_local: bool = False) -> list[System | str]:
        systems: list[System | str] = [Sequential()]
        if with_local:
            systems.append(Taskloom(LOCAL, LocalExecutor()))
        systems.append(self.raw)
        systems.append(self.loom if self.loom is not None else self.loom_missing)
        return systems

    def measure(self, w: wl.Workload, systems: Sequence[System | str]) -> Result:
        result = Result(w)
        live: list[System] = []
        expected: list[Any] | None = None
        for entry in systems:
            if isinstance(entry, str):
                result.missing[LOOM] = entry
                continue
            try:
                entry.prepare(w)
                entry.before()
                got = entry.results(entry.run())  # the warm-up run
            except Exception as error:
                self._fail(result, entry.name, f"FAILED: {error!r}")
                continue
            if expected is None:
                expected = got
            elif got != expected:
                self._fail(result, entry.name, f"FAILED: wrong results {got!r:.80}, expected "
                                               f"{expected!r:.80}")
                continue
            live.append(entry)
            result.walls[entry.name] = []
        # Timed runs, interleaved: sequential (and LocalExecutor) first, then the two pools,
        # alternating which goes first so neither always inherits the other's debris.
        for run in range(self.runs):
            order = list(live)
            if run % 2:
                order = [s for s in live if s.name not in (RAW, LOOM)] + [
                    s for s in reversed(live) if s.name in (RAW, LOOM)
                ]
            for system in order:
                if system.name not in result.walls:
                    continue
                try:
                    system.before()
                    seconds, value = h.timed(system.run)
                    system.results(value)
                except Exception as error:
                    self._fail(result, system.name, f"FAILED in a timed run: {error!r}")
                    continue
                result.walls[system.name].append(seconds)
                del value
        self._print_walls(result, live)
        return result

    def _fail(self, result: Result, name: str, why: str) -> None:
        self.failed = True
        result.walls.pop(name, None)
        result.missing[name] = why
        print(f"    {name}: {why}", file=sys.stderr)
        traceback.print_exc()

    def _print_walls(self, result: Result, live: Sequence[System]) -> None:
        w = result.workload
        print(f"  {w.name}: {w.description} ({w.size} tasks), {self.runs} runs")
        for system in live:
            if system.name in result.walls:
                extra = ""
                if isinstance(system, Taskloom):
                    extra = f"   (flow build {system.build_ms:.1f} ms, untimed)"
                print(f"    {system.name:<14} wall {result.series(system.name).show(1e3, 2, ' ms')}"
                      f"{extra}")
        for name, why in result.missing.items():
            print(f"    {name}: {why}")

    def loom_note(self, result: Result) -> str:
        return result.missing.get(LOOM, "not available")


def line(text: str) -> None:
    print(f"    -> {text}")
    sys.stdout.flush()


def overhead_figures(bench: Bench, r: Result, unit: str, figures: h.Figures) -> None:
    """Overhead per task (``unit``: "task" or "hop") for raw loky and taskloom."""
    name = r.workload.name
    for system, key in ((RAW, "raw"), (LOOM, "taskloom")):
        if r.has(system, SEQ):
            o = r.overhead(system)
            figures[f"{name}.{key}.overhead_us"] = o.median * 1e6
            line(f"{system:<9} overhead {o.show(1e6, 1, f' µs/{unit}')} vs sequential")
        else:
            figures[f"{name}.{key}.overhead_us"] = None
            line(f"{system}: {bench.loom_note(r) if system == LOOM else 'n/a'}")


def ratio_vs_raw(r: Result, figures: h.Figures) -> None:
    name = r.workload.name
    if r.has(LOOM, RAW):
        ratio = r.ratio(LOOM, RAW)
        figures[f"{name}.taskloom_vs_raw"] = ratio.median
        line(f"taskloom / raw loky = {ratio.show(1, 3, 'x')}")
    else:
        figures[f"{name}.taskloom_vs_raw"] = None


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
    line(f"one CPU task ~ {per_task * 1e3:.0f} ms in this run (calibrated for "
         f"{seconds * 1e3:.0f} ms: {loops:,} loops)")
    for system, key in ((RAW, "raw"), (LOOM, "taskloom")):
        if r.has(system, LOCAL, SEQ):
            vs_local = r.ratio(LOCAL, system)
            vs_seq = r.ratio(SEQ, system)
            figures[f"W3.{key}.speedup_vs_local"] = vs_local.median
            figures[f"W3.{key}.speedup_vs_seq"] = vs_seq.median
            line(f"{system:<9} speedup {vs_local.show(1, 2, 'x')} vs LocalExecutor, "
                 f"{vs_seq.show(1, 2, 'x')} vs sequential")
        else:
            figures[f"W3.{key}.speedup_vs_local"] = None
            figures[f"W3.{key}.speedup_vs_seq"] = None
            line(f"{system}: {bench.loom_note(r) if system == LOOM else 'n/a'}")
    return figures


def bench_w4(bench: Bench, nbytes: int) -> h.Figures:
    figures: h.Figures = {}
    r = bench.measure(wl.w4_payload(nbytes), bench.systems())
    for system, key in ((SEQ, "seq"), (RAW, "raw"), (LOOM, "taskloom")):
        figures[f"W4.{key}.wall_ms"] = r.series(system).median * 1e3 if r.has(system) else None
    if r.has(RAW, LOOM):
        line(f"wall: raw loky {r.series(RAW).show(1e3, 0, ' ms')}, "
             f"taskloom {r.series(LOOM).show(1e3, 0, ' ms')}")
    else:
        line(f"taskloom: {bench.loom_note(r)}")
    ratio_vs_raw(r, figures)
    return figures


def bench_w5(bench: Bench, side: int) -> h.Figures:
    figures: h.Figures = {}
    r = bench.measure(wl.w5_grid(side, side), bench.systems())
    overhead_figures(bench, r, "task", figures)
    return figures


def peak_rss(system: System, w: wl.Workload) -> tuple[float, float]:
    """(RSS before, peak RSS during) one extra run of ``w``, in MiB."""
    system.prepare(w)
    system.before()
    with h.RssSampler(0.01) as sampler:
        value = system.run()
    system.results(value)
    del value
    return sampler.start_rss / 2**20, sampler.peak / 2**20


def bench_scale(bench: Bench, small: int, large: int) -> h.Figures:
    figures: h.Figures = {"scale.small": float(small), "scale.large": float(large)}
    results = {n: bench.measure(wl.scale(n), bench.systems()) for n in (small, large)}
    for system, key in ((RAW, "raw"), (LOOM, "taskloom")):
        if all(r.has(system, SEQ) for r in results.values()):
            lo, hi = (results[n].overhead(system).median for n in (small, large))
            figures[f"scale.{key}.small_us"] = lo * 1e6
            figures[f"scale.{key}.large_us"] = hi * 1e6
            figures[f"scale.{key}.growth"] = hi / lo
            line(f"{system:<9} overhead {lo * 1e6:,.1f} µs/task at {small:,} tasks, "
                 f"{hi * 1e6:,.1f} at {large:,}: {large:,}/{small:,} = {hi / lo:.2f}x")
        else:
            for metric in ("small_us", "large_us", "growth"):
                figures[f"scale.{key}.{metric}"] = None
            line(f"{system}: {bench.loom_note(results[large]) if system == LOOM else 'n/a'}")
    # Peak RSS of the parent during one more (untimed) run of the large size.
    w = wl.scale(large)
    candidates: list[System] = [bench.raw]
    if bench.loom is not None and results[large].has(LOOM):
        candidates.append(bench.loom)
    for candidate in candidates:
        key = "raw" if candidate is bench.raw else "taskloom"
        try:
            before, peak = peak_rss(candidate, w)
        except Exception as error:
            bench.failed = True
            line(f"{candidate.name}: FAILED during the RSS run: {error!r}")
            figures[f"scale.{key}.peak_rss_mb"] = None
            continue
        figures[f"scale.{key}.peak_rss_mb"] = peak
        line(f"{candidate.name:<9} parent peak RSS {peak:,.0f} MB during a {large:,}-task run "
             f"({before:,.0f} MB before it; sampled every 10 ms)")
    figures.setdefault("scale.taskloom.peak_rss_mb", None)
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
        ]
    else:
        steps = [
            lambda: bench_w1(bench, 1000),
            lambda: bench_w2(bench, 200),
            lambda: bench_w3(bench, 8, 0.25),
            lambda: bench_w4(bench, 50 * 2**20),
            lambda: bench_w5(bench, 20),
            lambda: bench_scale(bench, 1_000, 10_000),
        ]
    for step in steps:
        figures.update(step())
    if len(bench.raw.pools_seen) > 1:
        print(f"  note: loky's reusable executor was replaced {len(bench.raw.pools_seen) - 1} "
              "time(s) between raw loky runs (something asked it for other arguments); "
              "each replacement's worker start was kept out of the timed runs")
    print(f"  done; {h.load_text()}")
    h.write_figures(args.json, figures)
    if bench.failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
