"""Mapping (``t.map``): taskloom's cost per mapped child against same-run baselines (W6, W7,
scale).

A mapped task becomes one child run per element (see ``taskloom.mapped``); what it costs is
measured per child, against plain Python calls of the same bodies. Systems, all run in this
process and interleaved run by run (so they share the machine's noise):

* sequential: plain Python calls, ``total([inc(x) for x in xs])`` (per stage): the floor;
* raw loky: one future per child on ``loky.get_reusable_executor(max_workers=2)``, the parent
  submitting child ``i`` of stage ``s + 1`` when child ``i`` of stage ``s`` is done, then the
  reduce (``workloads.run_raw_loky`` on the same graph written out task by task);
* taskloom ``LocalExecutor``: with ``journal=False`` (the engine), and, right after it, with
  the run journal on (the default): the journal's cost is the difference of the two;
* taskloom ``LokyExecutor(max_workers=2)``, run as ``bench_loky.py`` runs it
  (``flow.run(executor=...)``, journal on);
* Dask ``client.map`` (W6 only; skipped when Dask distributed is not installed):
  ``client.map(inc, xs)`` on a ``LocalCluster`` of 2 single-threaded worker processes
  (loopback, started untimed), then ``client.submit(total, futures)``. It runs last, in a
  block of its own interleaved with sequential runs (its scheduler's threads in this process
  and its workers' clean-up after each run would perturb the other systems), with at most
  ``DASK_RUNS`` timed runs: it costs ~2 ms per child here, 10,000 children take ~20 s.

Each measurement is a warm-up run (also checking that every system computes the same
terminal result: the reduce's value) followed by ``--runs`` timed runs; figures are medians
of per-run values, with [min..max] after them.

* W6: ``total(noop1.map(xs))`` over 10,000 elements (``noop1`` returns ``x + 1``): overhead
  per child = (wall - sequential wall) / children. Targets: LocalExecutor <= 5 µs/child,
  LokyExecutor <= 10 µs/child; the journal's cost per child on its own.
* W7: ``total(c.map(b.map(a.map(xs))))`` over 1,000 elements (3,000 children): overhead per
  child. Target: LokyExecutor <= 15 µs/child.
* scale: ``total(noop1.map(xs))`` on LocalExecutor (``journal=False``) over 10,000 and
  100,000 elements (``--quick``: 2,000 and 20,000): overhead per child at each size and their
  ratio (target <= 1.1: the cost per child does not grow), and the parent's peak RSS during
  an extra (untimed) run of the large size, sampled every 10 ms in a thread (target <= 400 MB).

``--quick`` (the smoke test's mode) also shrinks W6 to 200 elements and W7 to 50.

    python benchmarks/bench_map.py [--runs N] [--quick] [--json FILE]
"""

from __future__ import annotations

import importlib.util
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import _harness as h
import loky
import workloads as wl

from taskloom import Flow, Task, task
from taskloom.executors import Executor, LocalExecutor, LokyExecutor

if TYPE_CHECKING:
    import distributed

DESCRIPTION = "Mapping: taskloom's cost per mapped child vs raw loky, Dask and plain calls."

SEQ, RAW, DASK = "sequential", "raw loky", "Dask client.map"
LOCAL, JOURNAL, LOOM = "LocalExecutor", "Local+journal", "LokyExecutor"
#: Systems that run in worker processes: their order alternates run by run.
POOLS = (RAW, LOOM, DASK)
#: The most timed runs Dask gets (at ~2 ms per child, 10,000 children take ~20 s a run).
DASK_RUNS = 3
#: The anchors' Dask cluster: 2 worker processes x 1 thread.
DASK_WORKERS = 2

# The mapped bodies as taskloom tasks (the plain functions stay in `workloads`, so that they
# pickle by reference into the workers).
noop1 = task(name="noop1")(wl.inc)
total = task(name="total")(wl.total)
STAGES: tuple[Task[[int], int], ...] = (
    task(name="a")(wl.inc), task(name="b")(wl.inc), task(name="c")(wl.inc),
)


@dataclass(frozen=True)
class MapWorkload:
    """``stages`` no-op tasks mapped one over the other (child by child) over ``size``
    elements, then one reduce over the last stage's results."""

    name: str
    size: int
    stages: int = 1
    xs: list[int] = field(init=False)

    def __post_init__(self) -> None:
        if not 1 <= self.stages <= len(STAGES):
            raise ValueError(f"{self.name}: 1 to {len(STAGES)} stages, not {self.stages}")
        object.__setattr__(self, "xs", list(range(self.size)))

    @property
    def children(self) -> int:
        return self.size * self.stages

    @property
    def tasks(self) -> Sequence[Task[[int], int]]:
        """The mapped tasks, first stage first: ``noop1`` alone, or ``a``, ``b``, ``c``."""
        return (noop1,) if self.stages == 1 else STAGES[: self.stages]

    @property
    def description(self) -> str:
        calls = "xs"
        for t in self.tasks:
            calls = f"{t.name}.map({calls})"
        return f"total({calls}) over {self.size:,} elements"

    def build_flow(self) -> tuple[Flow, Task[Any, Any]]:
        """The workload as a taskloom flow, and its reduce task."""
        with Flow(self.name) as flow:
            values: list[int] = self.xs
            for t in self.tasks:
                values = t.map(values)
            reduce = total(values)
        assert isinstance(reduce, Task)
        return flow, reduce

    def graph(self) -> wl.Workload:
        """The workload written out task by task (child ``i`` of a stage depends on child
        ``i`` of the stage before it), for ``workloads.run_raw_loky``."""
        nodes = [wl.Node(wl.inc, consts=(x,)) for x in self.xs]
        for s in range(1, self.stages):
            first = (s - 1) * self.size
            nodes.extend(wl.Node(wl.inc, deps=(first + i,)) for i in range(self.size))
        last = (self.stages - 1) * self.size
        nodes.append(wl.Node(wl.total, deps=tuple(range(last, last + self.size)), gather=True))
        return wl.Workload(self.name, self.description, nodes)


def run_sequential(m: MapWorkload) -> list[int]:
    """The floor: the same bodies as plain calls, stage by stage, then the reduce."""
    values = m.xs
    for _ in range(m.stages):
        values = [wl.inc(x) for x in values]
    return [wl.total(values)]


# -- the systems ---------------------------------------------------------------------------------


class System:
    """One way to run a workload. ``prepare`` once per workload (untimed), then per run
    ``before`` (untimed), ``run`` (timed) and ``results`` (untimed: the terminal results)."""

    name = ""

    def prepare(self, m: MapWorkload) -> None:
        self.m = m

    def before(self) -> None:
        pass

    def run(self) -> Any:
        raise NotImplementedError

    def results(self, value: Any) -> list[Any]:
        return list(value)


class Sequential(System):
    name = SEQ

    def run(self) -> Any:
        return run_sequential(self.m)


class RawLoky(System):
    name = RAW

    def __init__(self) -> None:
        self.pool: loky.ProcessPoolExecutor | None = None

    def prepare(self, m: MapWorkload) -> None:
        super().prepare(m)
        self.graph = m.graph()

    def before(self) -> None:
        # Fetched before every run: the reusable pool lets idle workers exit after 10 s (a
        # Dask run takes longer), and the round trip here starts them again, untimed.
        self.pool = wl.raw_loky_pool()

    def run(self) -> Any:
        assert self.pool is not None
        return wl.run_raw_loky(self.graph, self.pool)


class RawDask(System):
    name = DASK

    def __init__(self, client: distributed.Client) -> None:
        self.client = client

    def run(self) -> Any:
        assert self.m.stages == 1, "the Dask baseline maps one stage"
        futures = self.client.map(wl.inc, self.m.xs, pure=False)
        reduce = self.client.submit(wl.total, futures, pure=False)
        return [reduce.result()]


class Taskloom(System):
    def __init__(self, name: str, executor: Executor, journal: bool) -> None:
        self.name = name
        self.executor = executor
        self.journal = journal
        self.build_ms = 0.0

    def prepare(self, m: MapWorkload) -> None:
        super().prepare(m)
        seconds, (self.flow, self.reduce) = h.timed(m.build_flow)
        self.build_ms = seconds * 1e3

    def run(self) -> Any:
        return self.flow.run(executor=self.executor, journal=self.journal)

    def results(self, value: Any) -> list[Any]:
        if not value.is_successful():
            failed = [
                f"{t.name}: {s!r}" for t, s in value.result.items() if not s.is_successful()
            ][:3]
            raise RuntimeError(f"{self.m.name}: flow run ended {value!r}; e.g. {failed}")
        return [value.result[self.reduce].result]


# -- measuring -------------------------------------------------------------------------------------


@dataclass
class Result:
    """Wall seconds of each system that ran, by timed run; why the others did not."""

    workload: MapWorkload
    runs: int
    walls: dict[str, dict[int, float]] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)

    def has(self, *names: str) -> bool:
        return all(n in self.walls and self.walls[n] for n in names)

    def series(self, name: str) -> h.Series:
        return h.Series(list(self.walls[name].values()))

    def paired(self, a: str, b: str, op: Callable[[float, float], float]) -> h.Series:
        """``op`` of the runs ``a`` and ``b`` both made (pairs share the run's noise)."""
        runs = [r for r in self.walls[a] if r in self.walls[b]]
        return h.paired([self.walls[a][r] for r in runs], [self.walls[b][r] for r in runs], op)

    def per_child(self, name: str, floor: str = SEQ) -> h.Series:
        """Seconds per child ``name`` spends over ``floor``."""
        n = self.workload.children
        return self.paired(name, floor, lambda a, b: (a - b) / n)

    def ratio(self, a: str, b: str) -> h.Series:
        return self.paired(a, b, lambda x, y: x / y)


class Bench:
    def __init__(self, runs: int) -> None:
        self.runs = runs
        self.failed = False

    def measure(
        self, m: MapWorkload, systems: Sequence[System], runs: int | None = None
    ) -> Result:
        """A warm-up run of each system (checking their results agree), then ``runs``
        (default ``self.runs``) timed runs of each, interleaved."""
        runs = self.runs if runs is None else runs
        result = Result(m, runs)
        live: list[System] = []
        expected: list[Any] | None = None
        for system in systems:
            try:
                system.prepare(m)
                system.before()
                got = system.results(system.run())  # the warm-up run
            except Exception as error:
                self._fail(result, system.name, f"FAILED: {error!r}")
                continue
            if expected is None:
                expected = got
            elif got != expected:
                self._fail(result, system.name, f"FAILED: wrong results {got!r:.80}, expected "
                                                f"{expected!r:.80}")
                continue
            live.append(system)
            result.walls[system.name] = {}
        # Timed runs, interleaved: the in-process systems first (LocalExecutor with the
        # journal right after it without), then the pools, alternating their order so that
        # none always inherits another's debris.
        for run in range(runs):
            local = [s for s in live if s.name not in POOLS]
            pools = [s for s in live if s.name in POOLS]
            for system in local + (pools[::-1] if run % 2 else pools):
                if system.name not in result.walls:
                    continue
                try:
                    system.before()
                    seconds, value = h.timed(system.run)
                    system.results(value)
                except Exception as error:
                    self._fail(result, system.name, f"FAILED in a timed run: {error!r}")
                    continue
                result.walls[system.name][run] = seconds
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
        m = result.workload
        print(f"  {m.name}: {m.description} ({m.children:,} children), {result.runs} runs")
        for system in live:
            if system.name not in result.walls:
                continue
            extra = ""
            if isinstance(system, Taskloom):
                extra = f"   (flow build {system.build_ms:.1f} ms, untimed)"
            print(f"    {system.name:<16} wall {result.series(system.name).show(1e3, 2, ' ms')}"
                  f"{extra}")
        for name, why in result.missing.items():
            print(f"    {name}: {why}")
        sys.stdout.flush()


def line(text: str) -> None:
    print(f"    -> {text}")
    sys.stdout.flush()


def per_child_figures(
    r: Result, systems: Sequence[tuple[str, str]], targets: dict[str, float], figures: h.Figures
) -> None:
    """Wall and overhead per child against sequential of each (system, key) into ``figures``."""
    name = r.workload.name
    for system, key in systems:
        figures[f"map.{name}.{key}.wall_ms"] = (
            r.series(system).median * 1e3 if r.has(system) else None
        )
        if not r.has(system, SEQ):
            figures[f"map.{name}.{key}.overhead_us"] = None
            line(f"{system}: {r.missing.get(system, 'n/a')}")
            continue
        o = r.per_child(system)
        figures[f"map.{name}.{key}.overhead_us"] = o.median * 1e6
        target = f" (target <= {targets[key]:g})" if key in targets else ""
        line(f"{system:<16} overhead {o.show(1e6, 2, ' µs/child')} vs sequential{target}")


def bench_w6(bench: Bench, size: int) -> h.Figures:
    m = MapWorkload("W6", size)
    systems: list[System] = [
        Sequential(),
        Taskloom(LOCAL, LocalExecutor(), journal=False),
        Taskloom(JOURNAL, LocalExecutor(), journal=True),
        RawLoky(),
        Taskloom(LOOM, LokyExecutor(max_workers=wl.LOKY_WORKERS), journal=True),
    ]
    r = bench.measure(m, systems)
    figures: h.Figures = {"map.W6.size": float(size)}
    figures["map.W6.seq_ms"] = r.series(SEQ).median * 1e3 if r.has(SEQ) else None
    targets = {"local": 5.0, "loky": 10.0}
    per_child_figures(r, [(LOCAL, "local")], targets, figures)
    if r.has(JOURNAL, LOCAL):
        cost = r.paired(JOURNAL, LOCAL, lambda a, b: (a - b) / m.children)
        figures["map.W6.local.journal_us"] = cost.median * 1e6
        line(f"{'run journal':<16} cost {cost.show(1e6, 2, ' µs/child')} (journal on - "
             "journal=False, back to back)")
    else:
        figures["map.W6.local.journal_us"] = None
    per_child_figures(r, [(RAW, "raw"), (LOOM, "loky")], targets, figures)
    if r.has(LOOM, RAW):
        ratio = r.ratio(LOOM, RAW)
        figures["map.W6.taskloom_vs_raw"] = ratio.median
        line(f"LokyExecutor / raw loky = {ratio.show(1, 3, 'x')}")
    else:
        figures["map.W6.taskloom_vs_raw"] = None
    return figures


def bench_w6_dask(bench: Bench, size: int) -> h.Figures:
    """W6 as ``client.map`` on a LocalCluster, against sequential calls interleaved with it.

    Run last, in a block of its own: the cluster's scheduler lives in this process (threads
    and an event loop) and, after each run, keeps its workers busy forgetting 10,000 keys;
    either would perturb the other systems. At most ``DASK_RUNS`` timed runs."""
    figures: h.Figures = {"map.W6.dask.wall_ms": None, "map.W6.dask.overhead_us": None}
    if importlib.util.find_spec("distributed") is None:
        print(f"  W6 on Dask: skipped: Dask distributed is not installed "
              '(pip install "taskloom[dask]")')
        return figures
    import distributed

    print(f"  W6 on Dask: distributed {distributed.__version__}, LocalCluster of "
          f"{DASK_WORKERS} worker processes x 1 thread (started untimed)")
    try:
        cluster = distributed.LocalCluster(
            n_workers=DASK_WORKERS, threads_per_worker=1, processes=True,
            host="127.0.0.1", dashboard_address="127.0.0.1:0",
        )
    except Exception as error:  # the other figures are still worth writing
        bench.failed = True
        traceback.print_exc()
        line(f"{DASK}: FAILED to start the LocalCluster: {error!r}")
        return figures
    try:
        with distributed.Client(cluster, set_as_default=False) as client:
            client.submit(wl.noop, pure=False).result()  # the workers answer before timing
            r = bench.measure(
                MapWorkload("W6", size), [Sequential(), RawDask(client)],
                runs=min(bench.runs, DASK_RUNS),
            )
    finally:
        cluster.close()
    per_child_figures(r, [(DASK, "dask")], {}, figures)
    return figures


def bench_w7(bench: Bench, size: int) -> h.Figures:
    m = MapWorkload("W7", size, stages=3)
    systems: list[System] = [
        Sequential(),
        Taskloom(LOCAL, LocalExecutor(), journal=False),
        RawLoky(),
        Taskloom(LOOM, LokyExecutor(max_workers=wl.LOKY_WORKERS), journal=True),
    ]
    r = bench.measure(m, systems)
    figures: h.Figures = {"map.W7.size": float(size)}
    per_child_figures(r, [(LOCAL, "local"), (RAW, "raw"), (LOOM, "loky")], {"loky": 15}, figures)
    if r.has(LOOM, RAW):
        ratio = r.ratio(LOOM, RAW)
        figures["map.W7.taskloom_vs_raw"] = ratio.median
        line(f"LokyExecutor / raw loky = {ratio.show(1, 3, 'x')}")
    else:
        figures["map.W7.taskloom_vs_raw"] = None
    return figures


def bench_scale(bench: Bench, small: int, large: int) -> h.Figures:
    figures: h.Figures = {"map.scale.small": float(small), "map.scale.large": float(large)}
    results = {
        n: bench.measure(
            MapWorkload(f"scale-{n}", n),
            [Sequential(), Taskloom(LOCAL, LocalExecutor(), journal=False)],
        )
        for n in (small, large)
    }
    if all(r.has(LOCAL, SEQ) for r in results.values()):
        lo, hi = (results[n].per_child(LOCAL).median for n in (small, large))
        wall_lo, wall_hi = (results[n].series(LOCAL).median / n for n in (small, large))
        figures["map.scale.local.small_us"] = lo * 1e6
        figures["map.scale.local.large_us"] = hi * 1e6
        figures["map.scale.local.growth"] = hi / lo
        line(f"LocalExecutor overhead {lo * 1e6:,.2f} µs/child at {small:,} children, "
             f"{hi * 1e6:,.2f} at {large:,}: {large:,}/{small:,} = {hi / lo:.2f}x "
             "(target <= 1.1)")
        line(f"(wall per child {wall_lo * 1e6:,.2f} µs at {small:,}, {wall_hi * 1e6:,.2f} µs "
             f"at {large:,}: {wall_hi / wall_lo:.2f}x)")
    else:
        for metric in ("small_us", "large_us", "growth"):
            figures[f"map.scale.local.{metric}"] = None
        line(f"{LOCAL}: {results[large].missing.get(LOCAL, 'n/a')}")
    # The parent's peak RSS during one more (untimed) run of the large size.
    system = Taskloom(LOCAL, LocalExecutor(), journal=False)
    try:
        system.prepare(MapWorkload(f"scale-{large}", large))
        with h.RssSampler(0.01) as sampler:
            value = system.run()
        system.results(value)
        del value
    except Exception as error:
        bench.failed = True
        traceback.print_exc()
        line(f"{LOCAL}: FAILED during the RSS run: {error!r}")
        figures["map.scale.local.peak_rss_mb"] = figures["map.scale.local.start_rss_mb"] = None
        return figures
    before, peak = sampler.start_rss / 2**20, sampler.peak / 2**20
    figures["map.scale.local.peak_rss_mb"] = peak
    figures["map.scale.local.start_rss_mb"] = before
    line(f"LocalExecutor parent peak RSS {peak:,.0f} MB during a {large:,}-child run "
         f"({before:,.0f} MB before it; {sampler.samples} samples, every 10 ms) (target <= 400)")
    return figures


def main() -> None:
    args = h.parse_args(DESCRIPTION, default_runs=5)
    h.print_header("bench_map: mapped children on LocalExecutor and LokyExecutor(max_workers=2) "
                   "vs raw loky, Dask client.map and sequential"
                   + (" (quick)" if args.quick else ""))
    bench = Bench(args.runs)
    if args.quick:
        w6, w7, small, large = 200, 50, 2_000, 20_000
    else:
        w6, w7, small, large = 10_000, 1_000, 10_000, 100_000
    # The loky pool is started here, untimed, before any workload.
    wl.raw_loky_pool()
    figures: h.Figures = {}
    steps: list[Callable[[], h.Figures]] = [
        lambda: bench_w6(bench, w6),
        lambda: bench_w7(bench, w7),
        lambda: bench_scale(bench, small, large),
        lambda: bench_w6_dask(bench, w6),  # last: see its docstring
    ]
    for step in steps:
        figures.update(step())
    print(f"  done; {h.load_text()}")
    h.write_figures(args.json, figures)
    if bench.failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
