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
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import _harness as h
import _systems as sy
import workloads as wl

from taskloom import Flow, Task, task
from taskloom.executors import LocalExecutor, LokyExecutor

if TYPE_CHECKING:
    import distributed

DESCRIPTION = "Mapping: taskloom's cost per mapped child vs raw loky, Dask and plain calls."

SEQ, RAW, DASK = sy.SEQ, sy.RAW, "Dask client.map"
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

    def build_flow(self) -> tuple[Flow, list[Task[Any, Any]]]:
        """The workload as a taskloom flow, and its terminal task: the reduce."""
        with Flow(self.name) as flow:
            values: list[int] = self.xs
            for t in self.tasks:
                values = t.map(values)
            reduce = total(values)
        assert isinstance(reduce, Task)
        return flow, [reduce]

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


# -- the systems and measuring (``_systems``) ---------------------------------------------------

System = sy.System[MapWorkload]
Result = sy.Result[MapWorkload]


def sequential() -> sy.Sequential[MapWorkload]:
    return sy.Sequential(run_sequential)


def raw_loky() -> sy.RawLoky[MapWorkload]:
    return sy.RawLoky(MapWorkload.graph)


def local(name: str = LOCAL, journal: bool = False) -> sy.Taskloom[MapWorkload]:
    """taskloom on ``LocalExecutor``, by default without the run journal (the engine)."""
    return sy.Taskloom(name, LocalExecutor(), MapWorkload.build_flow, journal=journal)


def on_loky() -> sy.Taskloom[MapWorkload]:
    """taskloom on ``LokyExecutor``, run as ``bench_loky.py`` runs it (journal on)."""
    return sy.Taskloom(LOOM, LokyExecutor(max_workers=wl.LOKY_WORKERS), MapWorkload.build_flow)


class RawDask(System):
    name = DASK

    def __init__(self, client: distributed.Client) -> None:
        self.client = client

    def run(self) -> Any:
        assert self.w.stages == 1, "the Dask baseline maps one stage"
        futures = self.client.map(wl.inc, self.w.xs, pure=False)
        reduce = self.client.submit(wl.total, futures, pure=False)
        return [reduce.result()]


class Bench(sy.Bench[MapWorkload]):
    def __init__(self, runs: int) -> None:
        super().__init__(
            runs, heading=lambda m: f"{m.name}: {m.description} ({m.children:,} children)",
            units=lambda m: m.children, width=16, pools=POOLS,
        )


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
            h.line(f"{system}: {r.missing.get(system, 'n/a')}")
            continue
        o = r.overhead(system)
        h.put(figures, f"map.{name}.{key}.overhead_us", o, 1e6)
        target = f" (target <= {targets[key]:g})" if key in targets else ""
        h.line(f"{system:<16} overhead {o.show(1e6, 2, ' µs/child')} vs sequential{target}")


def bench_w6(bench: Bench, size: int) -> h.Figures:
    systems: list[System] = [
        sequential(), local(), local(JOURNAL, journal=True), raw_loky(), on_loky(),
    ]
    r = bench.measure(MapWorkload("W6", size), systems)
    figures: h.Figures = {"map.W6.size": float(size)}
    figures["map.W6.seq_ms"] = r.series(SEQ).median * 1e3 if r.has(SEQ) else None
    targets = {"local": 5.0, "loky": 10.0}
    per_child_figures(r, [(LOCAL, "local")], targets, figures)
    if r.has(JOURNAL, LOCAL):
        cost = r.overhead(JOURNAL, floor=LOCAL)
        h.put(figures, "map.W6.local.journal_us", cost, 1e6)
        h.line(f"{'run journal':<16} cost {cost.show(1e6, 2, ' µs/child')} (journal on - "
               "journal=False, back to back)")
    else:
        figures["map.W6.local.journal_us"] = None
    per_child_figures(r, [(RAW, "raw"), (LOOM, "loky")], targets, figures)
    sy.ratio_figure(r, LOOM, RAW, "map.W6.taskloom_vs_raw", figures)
    return figures


def bench_w6_dask(bench: Bench, size: int) -> h.Figures:
    """W6 as ``client.map`` on a LocalCluster, against sequential calls interleaved with it.

    Run last, in a block of its own: the cluster's scheduler lives in this process (threads
    and an event loop) and, after each run, keeps its workers busy forgetting 10,000 keys;
    either would perturb the other systems. At most ``DASK_RUNS`` timed runs."""
    figures: h.Figures = {"map.W6.dask.wall_ms": None, "map.W6.dask.overhead_us": None}
    if importlib.util.find_spec("distributed") is None:
        print(f"  W6 on Dask: skipped: Dask distributed is not installed "
              '(pip install -e ".[dask]")')
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
        h.line(f"{DASK}: FAILED to start the LocalCluster: {error!r}")
        return figures
    try:
        with distributed.Client(cluster, set_as_default=False) as client:
            client.submit(wl.noop, pure=False).result()  # the workers answer before timing
            r = bench.measure(
                MapWorkload("W6", size), [sequential(), RawDask(client)],
                runs=min(bench.runs, DASK_RUNS),
            )
    finally:
        cluster.close()
    per_child_figures(r, [(DASK, "dask")], {}, figures)
    return figures


def bench_w7(bench: Bench, size: int) -> h.Figures:
    systems: list[System] = [
        sequential(), local(), raw_loky(), on_loky(),
    ]
    r = bench.measure(MapWorkload("W7", size, stages=3), systems)
    figures: h.Figures = {"map.W7.size": float(size)}
    per_child_figures(r, [(LOCAL, "local"), (RAW, "raw"), (LOOM, "loky")], {"loky": 15}, figures)
    sy.ratio_figure(r, LOOM, RAW, "map.W7.taskloom_vs_raw", figures)
    return figures


def bench_scale(bench: Bench, small: int, large: int) -> h.Figures:
    figures: h.Figures = {"map.scale.small": float(small), "map.scale.large": float(large)}
    results = {
        n: bench.measure(MapWorkload(f"scale-{n}", n), [sequential(), local()])
        for n in (small, large)
    }
    overheads = sy.growth_figures(
        results[small], results[large], LOCAL, "map.scale.local", figures
    )
    if overheads is not None:
        lo, hi = overheads
        wall_lo, wall_hi = (results[n].series(LOCAL).median / n for n in (small, large))
        h.line(f"LocalExecutor overhead {lo * 1e6:,.2f} µs/child at {small:,} children, "
               f"{hi * 1e6:,.2f} at {large:,}: {large:,}/{small:,} = {hi / lo:.2f}x "
               "(target <= 1.1)")
        h.line(f"(wall per child {wall_lo * 1e6:,.2f} µs at {small:,}, {wall_hi * 1e6:,.2f} µs "
               f"at {large:,}: {wall_hi / wall_lo:.2f}x)")
    else:
        h.line(f"{LOCAL}: {results[large].missing.get(LOCAL, 'n/a')}")
    # The parent's peak RSS during one more (untimed) run of the large size.
    try:
        sampler = sy.peak_rss(local(), MapWorkload(f"scale-{large}", large))
    except Exception as error:
        bench.failed = True
        traceback.print_exc()
        h.line(f"{LOCAL}: FAILED during the RSS run: {error!r}")
        figures["map.scale.local.peak_rss_mb"] = figures["map.scale.local.start_rss_mb"] = None
        return figures
    before, peak = sampler.start_rss / 2**20, sampler.peak / 2**20
    figures["map.scale.local.peak_rss_mb"] = peak
    figures["map.scale.local.start_rss_mb"] = before
    h.line(f"LocalExecutor parent peak RSS {peak:,.0f} MB during a {large:,}-child run "
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
    h.finish(args.json, figures, bench.failed)


if __name__ == "__main__":
    main()
