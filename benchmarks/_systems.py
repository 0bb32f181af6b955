"""What the benchmarks that compare systems side by side share (``bench_loky.py``,
``bench_map.py``): the systems (plain sequential calls, raw loky, taskloom on an executor),
the measuring loop that interleaves them run by run, and its per-run walls.

All of it is generic over the workload type ``W`` (``workloads.Workload``, or
``bench_map.MapWorkload``): a system is told how to run a ``W`` by the function it is given.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Callable, Collection, Sequence
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Generic, TypeVar

import _harness as h
import loky
import workloads as wl

from taskloom import Flow, Task
from taskloom.executors import Executor

__all__ = [
    "RAW",
    "SEQ",
    "Absent",
    "Bench",
    "RawLoky",
    "Result",
    "Sequential",
    "System",
    "Taskloom",
    "growth_figures",
    "peak_rss",
    "ratio_figure",
]

W = TypeVar("W")

SEQ, RAW = "sequential", "raw loky"


class System(Generic[W]):
    """One way to run a workload. ``prepare`` once per workload (untimed), then per run
    ``before`` (untimed), ``run`` (timed) and ``results`` (untimed: the terminal results)."""

    name = ""

    def prepare(self, w: W) -> None:
        self.w = w

    def before(self) -> None:
        pass

    def run(self) -> Any:
        raise NotImplementedError

    def results(self, value: Any) -> list[Any]:
        return list(value)


class Sequential(System[W]):
    """The floor: ``run_sequential(w)``, plain Python calls of the same bodies."""

    name = SEQ

    def __init__(self, run_sequential: Callable[[W], list[Any]]) -> None:
        self.run_sequential = run_sequential

    def run(self) -> Any:
        return self.run_sequential(self.w)


class RawLoky(System[W]):
    """``workloads.run_raw_loky`` on ``graph(w)`` (the workload written out task by task), on
    loky's reusable pool; ``pools_seen``: the pools it ran on."""

    name = RAW

    def __init__(self, graph: Callable[[W], wl.Workload]) -> None:
        self.to_graph = graph
        self.pool: loky.ProcessPoolExecutor | None = None
        self.pools_seen: set[int] = set()

    def prepare(self, w: W) -> None:
        super().prepare(w)
        self.graph = self.to_graph(w)

    def before(self) -> None:
        # Fetched before every run: if something else asked loky's reusable executor for
        # other arguments it was replaced, and the reusable pool lets idle workers exit after
        # 10 s (a Dask run takes longer); the round trip here starts the workers, untimed.
        self.pool = wl.raw_loky_pool()
        self.pools_seen.add(id(self.pool))

    def run(self) -> Any:
        assert self.pool is not None
        return wl.run_raw_loky(self.graph, self.pool)


class Taskloom(System[W]):
    """``flow.run(executor=executor, journal=journal)`` of the flow ``build(w)`` makes (timed
    apart, untimed for the walls: ``build_ms``); ``build`` also gives the terminal tasks."""

    def __init__(
        self,
        name: str,
        executor: Executor,
        build: Callable[[W], tuple[Flow, Sequence[Task[Any, Any]]]],
        journal: bool = True,
    ) -> None:
        self.name = name
        self.executor = executor
        self.build = build
        self.journal = journal
        self.build_ms = 0.0

    def prepare(self, w: W) -> None:
        super().prepare(w)
        seconds, (self.flow, self.terminals) = h.timed(lambda: self.build(w))
        self.build_ms = seconds * 1e3

    def run(self) -> Any:
        return self.flow.run(executor=self.executor, journal=self.journal)

    def results(self, value: Any) -> list[Any]:
        return wl.task_results(self.flow.name, value, self.terminals)


@dataclass(frozen=True)
class Absent:
    """A system that could not be set up, in a list of systems: ``why`` is reported in its
    place."""

    name: str
    why: str


@dataclass
class Result(Generic[W]):
    """Wall seconds of each system that ran, by timed run; why the others did not.
    ``units``: what an overhead is per (the workload's tasks, or mapped children)."""

    workload: W
    runs: int
    units: int
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

    def overhead(self, name: str, floor: str = SEQ) -> h.Series:
        """Seconds per unit ``name`` spends over ``floor``."""
        n = self.units
        return self.paired(name, floor, lambda a, b: (a - b) / n)

    def ratio(self, a: str, b: str) -> h.Series:
        return self.paired(a, b, lambda x, y: x / y)


@dataclass(eq=False)
class Bench(Generic[W]):
    """Measures systems on workloads (``runs`` timed runs each, by default): ``heading(w)``
    names a workload in the output, ``units(w)`` is what overheads are per, ``width`` the
    column of system names, and ``pools`` the systems that run in worker processes (their
    order alternates run by run). ``failed``: whether any measurement failed."""

    runs: int
    _: KW_ONLY
    heading: Callable[[W], str]
    units: Callable[[W], int]
    width: int
    pools: Collection[str]
    failed: bool = field(default=False, init=False)

    def measure(
        self, w: W, systems: Sequence[System[W] | Absent], runs: int | None = None
    ) -> Result[W]:
        """A warm-up run of each system (checking their results agree), then ``runs``
        (default ``self.runs``) timed runs of each, interleaved."""
        runs = self.runs if runs is None else runs
        result = Result(w, runs, self.units(w))
        live: list[System[W]] = []
        expected: list[Any] | None = None
        for system in systems:
            if isinstance(system, Absent):
                result.missing[system.name] = system.why
                continue
            try:
                system.prepare(w)
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
        # Timed runs, interleaved: the in-process systems first (in their order: sequential,
        # then taskloom on LocalExecutor), then the pools, alternating their order so that
        # none always inherits another's debris.
        for run in range(runs):
            local = [s for s in live if s.name not in self.pools]
            pools = [s for s in live if s.name in self.pools]
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

    def _fail(self, result: Result[W], name: str, why: str) -> None:
        self.failed = True
        result.walls.pop(name, None)
        result.missing[name] = why
        print(f"    {name}: {why}", file=sys.stderr)
        traceback.print_exc()

    def _print_walls(self, result: Result[W], live: Sequence[System[W]]) -> None:
        print(f"  {self.heading(result.workload)}, {result.runs} runs")
        for system in live:
            if system.name not in result.walls:
                continue
            extra = ""
            if isinstance(system, Taskloom):
                extra = f"   (flow build {system.build_ms:.1f} ms, untimed)"
            wall = result.series(system.name).show(1e3, 2, " ms")
            print(f"    {system.name:<{self.width}} wall {wall}{extra}")
        for name, why in result.missing.items():
            print(f"    {name}: {why}")
        sys.stdout.flush()


def ratio_figure(r: Result[Any], a: str, b: str, key: str, figures: h.Figures) -> None:
    """``figures[key]``: the median of ``a``'s wall / ``b``'s (None unless both ran)."""
    if r.has(a, b):
        ratio = r.ratio(a, b)
        h.put(figures, key, ratio)
        h.line(f"{a} / {b} = {ratio.show(1, 3, 'x')}")
    else:
        figures[key] = None


def growth_figures(
    small: Result[Any], large: Result[Any], name: str, prefix: str, figures: h.Figures
) -> tuple[float, float] | None:
    """``name``'s overhead per unit over sequential at a small and a large size, and how much
    it grows, into ``figures`` (``{prefix}.small_us``, ``.large_us``, ``.growth``; None
    unless it ran at both): the two overheads in seconds, or None."""
    if not (small.has(name, SEQ) and large.has(name, SEQ)):
        for metric in ("small_us", "large_us", "growth"):
            figures[f"{prefix}.{metric}"] = None
        return None
    lo, hi = small.overhead(name).median, large.overhead(name).median
    figures[f"{prefix}.small_us"] = lo * 1e6
    figures[f"{prefix}.large_us"] = hi * 1e6
    figures[f"{prefix}.growth"] = hi / lo
    return lo, hi


def peak_rss(system: System[W], w: W) -> h.RssSampler:
    """One extra (untimed) run of ``w`` on ``system``, the parent's RSS sampled every 10 ms
    during it (``start_rss`` before it, ``peak`` during it, in bytes)."""
    system.prepare(w)
    system.before()
    with h.RssSampler(0.01) as sampler:
        value = system.run()
    system.results(value)
    del value
    return sampler
