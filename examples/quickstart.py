"""A small ETL flow run in parallel on a process pool.

It shows the parts of the execution model: parameters, data edges, a task that retries,
a ``SKIP`` signal, triggers (a cleanup task that always runs, an alert that runs only when
something failed), the run context, and a cached task whose result serves the next run.

    python3 noxfile.py -s demo          # or: python examples/quickstart.py

On Dask distributed instead (needs the dask extra: ``pip install -e ".[dask]"`` from the clone): ``--executor dask``
starts a local Dask cluster for each run; add ``--address tcp://127.0.0.1:8786`` to run on
a cluster you started (``dask scheduler`` and ``dask worker``).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import taskloom
from taskloom import Flow, Parameter, signals, task, triggers
from taskloom.executors import DaskExecutor, Executor, LokyExecutor
from taskloom.journal import default_journal
from taskloom.states import Skipped, State, TriggerFailed


@task(cache_for=timedelta(minutes=10))
def load_rates() -> dict[str, float]:
    """Expensive to compute, so cached: the second run reuses the first run's result."""
    return {"EUR": 1.0, "USD": 1.08, "GBP": 0.85}


@task
def extract(n: int) -> list[int]:
    """Amounts to convert; the run context says which run this is."""
    print(f"extract: flow run {taskloom.context.flow_run_id[:8]} in process {os.getpid()}")
    return list(range(1, n + 1))


@task(max_retries=2, retry_delay=timedelta(seconds=0))
def convert(amounts: list[int], rates: dict[str, float], currency: str) -> float:
    """Runs in a worker process; fails on its first attempt to show a retry."""
    if taskloom.context.task_run_count == 1:
        print(f"convert {currency}: attempt 1 failed (rate service hiccup): taskloom retries it")
        raise ConnectionError("rate service hiccup")
    print(f"convert {currency}: attempt {taskloom.context.task_run_count} succeeded")
    return round(sum(amounts) * rates[currency], 2)


@task
def audit(amounts: list[int]) -> None:
    """Nothing to audit for small batches: skip, and let downstream tasks skip too."""
    if len(amounts) < 100:
        raise signals.SKIP("batch too small to audit")


@task
def report(totals: list[float]) -> str:
    return " | ".join(f"{t:,.2f}" for t in totals)


@task(trigger=triggers.any_failed)
def alert() -> str:
    return "something failed: paging the on-call engineer"


@task(trigger=triggers.always_run, skip_on_upstream_skip=False)
def cleanup() -> str:
    return "temporary files removed"


def build() -> Flow:
    with Flow("quickstart") as flow:
        n = Parameter("n", default=10)
        amounts = extract(n)
        rates = load_rates()
        totals = [convert(amounts, rates, c) for c in ("EUR", "USD", "GBP")]
        summary = report(totals)
        audited = audit(amounts)
        flow.set_dependencies(alert(), upstream_tasks=[summary])
        flow.set_dependencies(cleanup(), upstream_tasks=[summary, audited])
        # The flow succeeds when the report does: an alert that did not need to fire
        # (TriggerFailed) must not fail the run.
        flow.set_reference_tasks([summary])
    return flow


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run the quickstart flow twice.")
    parser.add_argument(
        "--executor", choices=["loky", "dask"], default="loky",
        help="where tasks run: a loky process pool (default) or Dask distributed",
    )
    parser.add_argument(
        "--address", metavar="tcp://HOST:PORT",
        help="with --executor dask: the scheduler of a running Dask cluster (default: start "
        "a local cluster of 2 workers for each run)",
    )
    args = parser.parse_args(argv)
    if args.address is not None and args.executor != "dask":
        parser.error("--address needs --executor dask")
    return args


def make_executor(args: argparse.Namespace) -> Executor:
    if args.executor == "dask":
        if args.address is not None:
            return DaskExecutor(address=args.address)
        return DaskExecutor(n_workers=2, threads_per_worker=1)
    return LokyExecutor(max_workers=2)


#: What a newcomer should read in each task's outcome, beside its state.
STORY = {
    "load_rates": "computed, and cached for 10 minutes",
    "audit": "a SKIP signal: nothing to do, not a failure",
    "alert": "did not fire, rightly: it fires only when something failed",
    "cleanup": "trigger always_run: runs whatever happened upstream",
}


def describe(name: str, task_state: State[Any], attempts: int, shown: str | None = None) -> str:
    """One line of the story for a task: what it gave, or why it gave nothing. ``shown`` is
    the name the run gave it (copies of one task are numbered: ``convert[1]``)."""
    kind = type(task_state).__name__
    if isinstance(task_state, (Skipped, TriggerFailed)) or not task_state.is_successful():
        # A skipped or untriggered task carries its signal as its result: show the message.
        outcome = task_state.message or ""
    else:
        outcome = f"-> {task_state.result!r}"
    notes: list[str] = []
    if attempts > 1:
        failed = "1 failed attempt" if attempts == 2 else f"{attempts - 1} failed attempts"
        notes.append(f"succeeded on attempt {attempts}, retried after {failed}")
    if kind == "Cached":
        notes.append("read from the first run's cache: not computed again")
    elif name in STORY:
        notes.append(STORY[name])
    note = f"   ({'; '.join(notes)})" if notes else ""
    return f"  {shown or name:<11} {kind:<14} {outcome}{note}"


def recorded(run_id: str | None) -> list[tuple[str, int]]:
    """Each task's name and number of attempts, in the run's task order, from the run
    journal (which numbers the copies of one task)."""
    if run_id is None:
        return []
    return [(t.name, t.attempts) for t in default_journal().load(run_id).tasks if t.parent is None]


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    flow = build()
    executor = make_executor(args)
    ok = True
    for run in (1, 2):
        print(f"\n--- run {run} of 2: the tasks' own output, from the worker processes ---")
        state = flow.run(parameters={"n": 10}, executor=executor)
        ok = ok and state.is_successful()
        print(f"\nrun {run}: flow {type(state).__name__}: {state.message}")
        rows = recorded(state.run_id)
        for i, (t, task_state) in enumerate(state.result.items()):
            shown, attempts = rows[i] if i < len(rows) else (t.name, 0)
            print(describe(t.name, task_state, attempts, shown))
    print(
        "\nThe alert's TriggerFailed is the good outcome here: nothing failed, so nobody is "
        "paged.\nThe flow's state follows its reference task (report), so it is a Success."
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
