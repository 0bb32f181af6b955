"""Flows for the cross-process cache tests, run both in the test process and in subprocesses.

Run as ``python -c "from tests._cache_processes import <main>; <main>()" ARGS`` from the
repository root, with the test's ``TASKLOOM_HOME`` in the environment.
"""

from __future__ import annotations

import datetime as dt
import json
import sys

from taskloom import Flow, cache_validators, task
from taskloom.states import State

from ._helpers import record

HOUR = dt.timedelta(hours=1)

WORDS = [
    "alpha", "bravo", "charlie", "delta", "echo", "foxtrot",
    "golf", "hotel", "india", "juliett", "kilo", "lima",
]


@task
def make_items() -> set[str]:
    return set(WORDS)


@task
def make_counts(items: set[str]) -> dict[str, int]:
    # Insertion order follows the set's iteration order, which follows PYTHONHASHSEED.
    return {word: len(word) for word in items}


@task(cache_for=HOUR, cache_validator=cache_validators.all_inputs)
def summarize(items: set[str], counts: dict[str, int], log: str) -> int:
    record(log, "computed")
    return sum(counts.values()) + len(items)


def summary_flow(log: str) -> tuple[Flow, int]:
    """make_items -> make_counts -> summarize(all_inputs): a set and a dict as inputs."""
    with Flow("cross-process-summary") as flow:
        items = make_items()
        counts = make_counts(items)
        total = summarize(items, counts, log)
    return flow, total


def describe(state: State[object]) -> dict[str, object]:
    return {"state": type(state).__name__, "result": state.result}


def summary_main() -> None:
    """ARGS: LOG. Prints the summarize state and this process's set iteration order."""
    flow, total = summary_flow(sys.argv[1])
    state = flow.run()
    print(json.dumps({**describe(state.result[total]), "order": list(set(WORDS))}))


CONCURRENT_KEY = "concurrent-writers"


@task(cache_for=HOUR, cache_validator=cache_validators.never_use, cache_key=CONCURRENT_KEY)
def write_entry(tag: str, i: int) -> str:
    return f"{tag}-{i}"


def writer_main() -> None:
    """ARGS: TAG N. Waits for a line on stdin, then stores N results under one cache key."""
    tag, n = sys.argv[1], int(sys.argv[2])
    print("ready", flush=True)
    sys.stdin.readline()
    for i in range(n):
        with Flow(f"writer-{tag}") as flow:
            entry = write_entry(tag, i)
        state = flow.run()
        assert type(state.result[entry]).__name__ == "Success", state.result[entry]
    print("done", flush=True)
