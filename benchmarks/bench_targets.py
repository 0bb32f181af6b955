"""Targets: what a fully cached rerun of a 10,000-child map costs per task on LocalExecutor.

A task with ``target=`` does not run when its target exists: the attempt fills in the
location, finds the file and reads the value back (``taskloom.checkpoint``), and the child
ends ``Cached``. Systems, all in this process and interleaved run by run (so they share the
machine's noise), over ``n`` = 10,000 elements (``--quick``: 1,000):

* plain map: ``inc.map(range(n))`` plus a reduce, no result (journal on): the engine's own
  cost, the baseline;
* cached rerun: the same map with ``result=LocalResult(dir)`` and
  ``target="{flow_name}/{map_index}.pkl"``, after a first run wrote every target: each
  child checks and reads its file instead of running;
* raw reads: a Python loop that builds the ``n`` paths, checks each exists, reads and
  unpickles it: the file system's floor.

Each measurement is a warm-up (the first run, which writes the targets, and a check that
every child ended ``Cached`` with the right value) followed by ``--runs`` timed runs;
figures are medians of per-run values, with [min..max] after them.

* ``targets.local.cached_us``: cached rerun wall / n. Target: <= 50 µs per task.
* ``targets.local.vs_plain``: cached rerun wall / plain map wall (the ratio to the baseline).
* ``targets.local.added_us``: (cached rerun - plain map) / n: what checking and reading a
  target adds to a task.
* ``targets.raw.read_us``: raw reads wall / n.

    python benchmarks/bench_targets.py [--runs N] [--quick] [--json FILE]
"""

from __future__ import annotations

import os
import pickle
import tempfile
import traceback
from typing import Any

import _harness as h

from taskloom import Flow, task
from taskloom.executors import LocalExecutor
from taskloom.results import LocalResult
from taskloom.states import Cached, Mapped

DESCRIPTION = "Targets: a fully cached rerun of a 10,000-child map on LocalExecutor, per task."

PLAIN, CACHED, RAW = "plain map", "cached rerun", "raw reads"


@task
def inc(x: int) -> int:
    return x + 1


@task
def total(xs: list[int]) -> int:
    return sum(xs)


def map_flow(n: int, directory: str | None) -> tuple[Flow, Any, Any]:
    """``total(inc.map(range(n)))``; with ``directory``, ``inc`` has a target there."""
    child = inc.copy()
    if directory is not None:
        child.result = LocalResult(dir=directory)
        child.target = "{flow_name}/{map_index}.pkl"
    with Flow("bench-targets" if directory is not None else "bench-plain-map") as flow:
        mapped = child.map(list(range(n)))
        reduced = total(mapped)
    return flow, mapped, reduced


def raw_reads(directory: str, n: int) -> int:
    """Check and read the ``n`` targets by hand: the file system's floor."""
    found = 0
    for i in range(n):
        path = os.path.join(directory, f"bench-targets/{i}.pkl")
        if os.path.exists(path):
            with open(path, "rb") as file:
                found += pickle.loads(file.read())
    return found


def main() -> None:
    args = h.parse_args(DESCRIPTION, default_runs=5)
    n = 1_000 if args.quick else 10_000
    h.print_header(f"bench_targets: a fully cached rerun of a {n:,}-child map on LocalExecutor"
                   + (" (quick)" if args.quick else ""))
    figures: h.Figures = {
        "targets.local.cached_us": None, "targets.local.vs_plain": None,
        "targets.local.added_us": None, "targets.raw.read_us": None,
    }
    failed = False
    try:
        with tempfile.TemporaryDirectory(prefix="bench-targets-") as directory:
            executor = LocalExecutor()
            plain, _, plain_total = map_flow(n, None)
            cached, cached_map, cached_total = map_flow(n, directory)
            expected = sum(range(1, n + 1))

            def run(flow: Flow, reduced: Any) -> Any:
                state = flow.run(executor=executor)
                assert state.result[reduced].result == expected, "wrong total"
                return state

            run(cached, cached_total)  # writes every target
            warm = run(cached, cached_total)
            mapped = warm.result[cached_map]
            assert isinstance(mapped, Mapped)
            assert all(isinstance(s, Cached) for s in mapped.map_states), "a child ran again"
            run(plain, plain_total)
            assert raw_reads(directory, n) == expected
            walls: dict[str, list[float]] = {PLAIN: [], CACHED: [], RAW: []}
            for _ in range(args.runs):
                walls[PLAIN].append(h.timed(lambda: run(plain, plain_total))[0])
                walls[CACHED].append(h.timed(lambda: run(cached, cached_total))[0])
                walls[RAW].append(h.timed(lambda: raw_reads(directory, n))[0])
        per_task = h.Series([wall / n for wall in walls[CACHED]])
        ratio = h.paired(walls[CACHED], walls[PLAIN], lambda a, b: a / b)
        added = h.paired(walls[CACHED], walls[PLAIN], lambda a, b: (a - b) / n)
        raw = h.Series([wall / n for wall in walls[RAW]])
        print(f"\n-- {n:,} children ({args.runs} timed runs) --")
        for name in (PLAIN, CACHED, RAW):
            print(f"  {name}: {h.Series(walls[name]).show(1e3, 1, ' ms')}")
        print(f"  cached rerun per task: {per_task.show(1e6, 1, ' µs')} (target <= 50 µs)")
        print(f"  cached rerun / plain map: {ratio.show(1, 2, 'x')}")
        print(f"  added by checking and reading a target: {added.show(1e6, 1, ' µs')} per task")
        print(f"  raw reads per file: {raw.show(1e6, 1, ' µs')}")
        h.put(figures, "targets.local.cached_us", per_task, 1e6)
        h.put(figures, "targets.local.vs_plain", ratio)
        h.put(figures, "targets.local.added_us", added, 1e6)
        h.put(figures, "targets.raw.read_us", raw, 1e6)
    except Exception:
        traceback.print_exc()
        failed = True
    h.finish(args.json, figures, failed)


if __name__ == "__main__":
    main()
