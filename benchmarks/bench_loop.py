"""LOOP (``signals.LOOP``): taskloom's cost per loop pass against a same-run plain loop.

A looping task runs its passes inside one attempt, where the task runs (see
``taskloom.attempt``): on ``LokyExecutor`` every pass runs in the worker, with no round trip
to the parent. What a pass costs is the engine's work between two calls of ``task.run``:
catching the ``LOOP``, making its state, a new context. Systems, all run in this process and
interleaved run by run (so they share the machine's noise):

* plain loop: ``for _ in range(n): x = step(x)`` in this process: the floor;
* taskloom ``LokyExecutor(max_workers=2)``: a flow of one task that raises
  ``LOOP(result=step(x))`` until pass ``n`` (``flow.run(executor=...)``, journal on), and
  the same flow looping once (``1 pass``: the run's fixed cost, one round trip).

Each measurement is a warm-up run (also checking that both compute the same value) followed
by ``--runs`` timed runs; figures are medians of per-run values, with [min..max] after them.

* ``loop.loky.overhead_us``: (taskloom wall - plain loop wall) / passes, over 1,000 passes
  (``--quick``: 100), the run's fixed cost included. Target: <= 20 µs per pass.
* ``loop.loky.marginal_us``: the same without the run's fixed cost: (wall(n passes) -
  wall(1 pass) - (plain(n) - plain(1))) / (n - 1).

    python benchmarks/bench_loop.py [--runs N] [--quick] [--json FILE]
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import _harness as h

import taskloom
from taskloom import Flow, signals, task
from taskloom.executors import LokyExecutor

DESCRIPTION = "LOOP: taskloom's cost per loop pass on LokyExecutor vs a plain Python loop."

PLAIN, LOOM, ONE = "plain loop", "LokyExecutor", "LokyExecutor, 1 pass"


def step(x: int) -> int:
    """The work of one pass: one step of a linear congruential generator."""
    return (x * 1103515245 + 12345) % 2_147_483_648


def plain_loop(passes: int) -> int:
    x = 1
    for _ in range(passes):
        x = step(x)
    return x


@task(name="looper")
def looper(passes: int) -> int:
    """``passes`` passes: each applies ``step`` to the previous pass's LOOP result."""
    x: int = taskloom.context.get("task_loop_result", 1)
    x = step(x)
    if taskloom.context.task_loop_count < passes:
        raise signals.LOOP(result=x)
    return x


def loop_flow(passes: int) -> tuple[Flow, Any]:
    with Flow(f"loop-{passes}") as flow:
        t = looper(passes)
    return flow, t


def main() -> None:
    args = h.parse_args(DESCRIPTION, default_runs=7)
    passes = 100 if args.quick else 1_000
    h.print_header(f"bench_loop: a LOOP of {passes:,} passes on LokyExecutor(max_workers=2) "
                   "vs a plain Python loop" + (" (quick)" if args.quick else ""))
    figures: h.Figures = {"loop.loky.overhead_us": None, "loop.loky.marginal_us": None}
    failed = False
    try:
        executor = LokyExecutor(max_workers=2)
        many, many_task = loop_flow(passes)
        one, one_task = loop_flow(1)
        walls: dict[str, list[float]] = {PLAIN: [], LOOM: [], ONE: [], "plain 1": []}

        def run_loom(flow: Flow, t: Any) -> int:
            state = flow.run(executor=executor)
            value: int = state.result[t].result
            return value

        # Warm-up (starts the workers) and the check that both compute the same value.
        assert run_loom(many, many_task) == plain_loop(passes), "taskloom and the plain loop differ"
        assert run_loom(one, one_task) == plain_loop(1)
        for _ in range(args.runs):
            walls[PLAIN].append(h.timed(lambda: plain_loop(passes))[0])
            walls["plain 1"].append(h.timed(lambda: plain_loop(1))[0])
            walls[LOOM].append(h.timed(lambda: run_loom(many, many_task))[0])
            walls[ONE].append(h.timed(lambda: run_loom(one, one_task))[0])
        overhead = h.paired(walls[LOOM], walls[PLAIN], lambda a, b: (a - b) / passes)
        fixed = h.paired(walls[ONE], walls["plain 1"], lambda a, b: a - b)
        marginal = h.Series([
            ((loom - plain) - f) / (passes - 1)
            for loom, plain, f in zip(walls[LOOM], walls[PLAIN], fixed.values, strict=True)
        ])
        print(f"\n-- LOOP of {passes:,} passes ({args.runs} timed runs) --")
        print(f"  {PLAIN}: {h.Series(walls[PLAIN]).show(1e3, 3, ' ms')}")
        print(f"  {LOOM}: {h.Series(walls[LOOM]).show(1e3, 2, ' ms')}")
        print(f"  {ONE}: {h.Series(walls[ONE]).show(1e3, 2, ' ms')} (the run's fixed cost)")
        print(f"  overhead per pass: {overhead.show(1e6, 2, ' µs')} (target <= 20 µs)")
        print(f"  marginal per pass (fixed cost taken out): {marginal.show(1e6, 2, ' µs')}")
        h.put(figures, "loop.loky.overhead_us", overhead, 1e6)
        h.put(figures, "loop.loky.marginal_us", marginal, 1e6)
    except Exception:
        traceback.print_exc()
        failed = True
    print(f"  done; {h.load_text()}")
    h.write_figures(args.json, figures)
    if failed:
        sys.exit(1)


if __name__ == "__main__":
    main()
