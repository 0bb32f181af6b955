"""What a task's timeout can stop on each executor: one task with ``timeout=1`` that runs
``sum(range(4 * 10**8))``, a single call into C code, and how long until its run ended.

Not part of ``run_all.py`` (each line takes seconds, and plain ``LocalExecutor`` waits
for the whole C call): run it by hand, ``python benchmarks/bench_timeouts.py``; the
README's executor section quotes its figures.
"""

from __future__ import annotations

import time

from taskloom import Flow, task
from taskloom.executors import DaskExecutor, Executor, LocalExecutor, LokyExecutor


@task(timeout=1)
def c_code() -> int:
    return sum(range(4 * 10**8))


def measure(name: str, executor: Executor) -> None:
    """Run the task once on ``executor``; print its final state and the seconds it took."""
    with Flow(f"timeouts-{name}") as flow:
        handle = c_code()
    started = time.monotonic()
    state = flow.run(executor=executor, journal=False)
    elapsed = time.monotonic() - started
    print(f"{name}: {type(state.result[handle]).__name__} after {elapsed:.1f} s", flush=True)


def main() -> None:
    measure("LocalExecutor()", LocalExecutor())
    measure("LocalExecutor(hard_timeouts=True)", LocalExecutor(hard_timeouts=True))
    measure("LokyExecutor(max_workers=2)", LokyExecutor(max_workers=2))
    measure(
        "DaskExecutor(n_workers=1, hard_timeout_grace=1)",
        DaskExecutor(n_workers=1, threads_per_worker=1, hard_timeout_grace=1),
    )


if __name__ == "__main__":
    main()
