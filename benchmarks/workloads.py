"""The benchmark workloads (W1-W5 of ``shared/reference/performance-anchors.md`` and a scale
workload) as plain data, and the three ways to run each of them.

A workload is a list of ``Node`` in topological order. Each node calls a module-level function
(so it pickles by reference into loky workers) with the results of its upstream nodes: as
positional arguments, or gathered into one list (``gather=True``, the "reduce" nodes),
followed by its constant arguments.

* ``build_flow(w)``      -> a ``taskloom.Flow`` with one task per node.
* ``run_sequential(w)``  -> plain Python calls in order: the floor every engine is measured on.
* ``run_raw_loky(w)``    -> one future per node on ``loky.get_reusable_executor(max_workers=2)``,
  the parent submitting a node as soon as its inputs are done and passing their results as
  arguments: the "raw loky, 1 future per task, parent resolves deps" row of the anchors.

All three return the results of the terminal nodes, so a harness can check that they agree.
"""

from __future__ import annotations

import functools
import os
import queue
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

import loky

from taskloom import Flow, Task, task

__all__ = [
    "LOKY_WORKERS",
    "Node",
    "Workload",
    "build_flow",
    "calibrate_cpu_loops",
    "flow_terminal_results",
    "raw_loky_pool",
    "run_raw_loky",
    "run_sequential",
    "scale",
    "w1_wide",
    "w2_chain",
    "w3_cpu",
    "w4_payload",
    "w5_grid",
]

#: Every pool in the anchors has 2 workers.
LOKY_WORKERS = 2


# -- the task bodies (module level: they pickle by reference) ----------------------------------


def noop() -> int:
    """A no-op task: returns a small constant."""
    return 1


def inc(x: int) -> int:
    """A no-op link of a chain."""
    return x + 1


def combine(a: int, b: int) -> int:
    """A grid node: depends on two nodes of the previous row."""
    return a + b


def total(xs: list[int]) -> int:
    """The reduce over every upstream result."""
    return sum(xs)


def cpu(loops: int) -> int:
    """Pure-Python CPU work that holds the GIL for ``loops`` iterations."""
    acc = 0
    for i in range(loops):
        acc = (acc + i * i) % 1_000_003
    return acc


def make_payload(nbytes: int) -> bytes:
    """A big result: ``nbytes`` of filled (touched) memory."""
    return b"\x01" * nbytes


def consume(data: bytes) -> int:
    """A consumer of the big result that returns something small."""
    return len(data) + data[-1]


#: Where ``make_and_share`` leaves W4's payload (tmpfs: memory, as taskloom's loky uses).
SHARED_MEMORY = "/dev/shm"


def make_and_share(nbytes: int, consumers: int) -> tuple[str, int]:
    """W4's hand-off floor, in a worker: the payload made and consumed there (no engine
    moves it between workers), then written once to a shared-memory file so the parent can
    read it: the copy out of the worker that any engine handing the result to the parent
    pays. Returns the file's path and the reduce's result."""
    data = make_payload(nbytes)
    reduced = total([consume(data) for _ in range(consumers)])
    fd, path = tempfile.mkstemp(prefix="bench-w4-", dir=SHARED_MEMORY)
    with open(fd, "wb") as file:
        file.write(data)
    return path, reduced


def take_shared(path: str) -> bytes:
    """The parent's side of ``make_and_share``: the payload read back (one copy in), the
    file removed."""
    try:
        with open(path, "rb", buffering=0) as file:
            return file.read()
    finally:
        os.unlink(path)


# The same bodies as taskloom tasks (distinct names: the plain functions must stay what
# `workloads.noop` etc. refer to, so that pickling them by reference finds them).
_TASKS: dict[Callable[..., Any], Task[..., Any]] = {
    fn: task(fn) for fn in (noop, inc, combine, total, cpu, make_payload, consume)
}


# -- graphs as data ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Node:
    """One task: ``fn(*upstream results, *consts)``, or ``fn([upstream results], *consts)``."""

    fn: Callable[..., Any]
    deps: tuple[int, ...] = ()
    consts: tuple[Any, ...] = ()
    gather: bool = False


@dataclass(frozen=True, slots=True)
class Workload:
    """A named graph; ``nodes`` are in topological order (deps point backwards)."""

    name: str
    description: str
    nodes: list[Node]
    terminals: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        for i, node in enumerate(self.nodes):
            if any(d >= i or d < 0 for d in node.deps):
                raise ValueError(f"{self.name}: node {i} depends on a later node")
        if not self.terminals:
            used = {d for node in self.nodes for d in node.deps}
            self.terminals.extend(i for i in range(len(self.nodes)) if i not in used)

    @property
    def size(self) -> int:
        """The number of tasks."""
        return len(self.nodes)


def _fan_in(name: str, description: str, leaves: list[Node]) -> Workload:
    """``leaves`` followed by one reduce over all of them."""
    reduce = Node(total, deps=tuple(range(len(leaves))), gather=True)
    return Workload(name, description, [*leaves, reduce])


def w1_wide(n: int = 1000) -> Workload:
    """W1: ``n`` independent no-op tasks and one reduce over all of them."""
    return _fan_in("W1", f"{n} no-op tasks -> 1 reduce", [Node(noop) for _ in range(n)])


def w2_chain(n: int = 200) -> Workload:
    """W2: a chain of ``n`` no-op tasks."""
    nodes = [Node(inc, consts=(0,))]
    nodes.extend(Node(inc, deps=(i,)) for i in range(n - 1))
    return Workload("W2", f"chain of {n} no-op tasks", nodes)


def w3_cpu(loops: int, n: int = 8) -> Workload:
    """W3: ``n`` CPU-bound tasks of ``loops`` iterations each, then a reduce."""
    return _fan_in(
        "W3", f"{n} CPU-bound tasks ({loops:,} loops each) -> 1 reduce",
        [Node(cpu, consts=(loops,)) for _ in range(n)],
    )


def w4_payload(nbytes: int = 50 * 2**20, consumers: int = 4) -> Workload:
    """W4: one task returns ``nbytes`` of bytes, consumed by ``consumers`` tasks, then a reduce."""
    nodes = [Node(make_payload, consts=(nbytes,))]
    nodes.extend(Node(consume, deps=(0,)) for _ in range(consumers))
    nodes.append(Node(total, deps=tuple(range(1, consumers + 1)), gather=True))
    mb = nbytes / 2**20
    return Workload("W4", f"{mb:g} MB payload -> {consumers} consumers -> 1 reduce", nodes)


def w5_grid(rows: int = 20, cols: int = 20) -> Workload:
    """W5: a ``rows`` x ``cols`` grid; each node depends on two nodes of the previous row
    (the one above it and the one above-right, wrapping around)."""
    nodes = [Node(noop) for _ in range(cols)]
    for r in range(1, rows):
        above = (r - 1) * cols
        nodes.extend(
            Node(combine, deps=(above + c, above + (c + 1) % cols)) for c in range(cols)
        )
    return Workload("W5", f"{rows}x{cols} grid, 2 upstream each", nodes)


def scale(n: int) -> Workload:
    """The scale workload: ``n`` independent no-op tasks and one reduce."""
    return _fan_in(f"scale-{n}", f"{n} no-op tasks -> 1 reduce", [Node(noop) for _ in range(n)])


# -- W3 calibration --------------------------------------------------------------------------------

_calibrated: dict[float, int] = {}


def calibrate_cpu_loops(seconds: float = 0.25) -> int:
    """The loop count for which ``cpu(loops)`` takes about ``seconds`` here (measured once per
    process and target duration: grow a trial until it takes >= 50 ms, then extrapolate)."""
    if seconds in _calibrated:
        return _calibrated[seconds]
    loops = 10_000
    while True:
        start = time.perf_counter()
        cpu(loops)
        took = time.perf_counter() - start
        if took >= min(0.05, seconds / 2):
            break
        loops *= 4
    # Best of three at the extrapolated size, so a scheduling hiccup does not shorten it.
    estimate = max(1, int(loops * seconds / took))
    best = min(_time_call(cpu, estimate) for _ in range(3))
    result = max(1, int(estimate * seconds / best))
    _calibrated[seconds] = result
    return result


def _time_call(fn: Callable[[int], object], arg: int) -> float:
    start = time.perf_counter()
    fn(arg)
    return time.perf_counter() - start


# -- (a) taskloom -----------------------------------------------------------------------------------


def build_flow(w: Workload) -> tuple[Flow, list[Task[Any, Any]]]:
    """``w`` as a taskloom ``Flow``; also returns the task of each node (by node index)."""
    handles: list[Any] = []
    with Flow(w.name) as flow:
        for node in w.nodes:
            t = _TASKS[node.fn]
            ups = [handles[d] for d in node.deps]
            if node.gather:
                handles.append(t(ups, *node.consts))
            else:
                handles.append(t(*ups, *node.consts))
    tasks: list[Task[Any, Any]] = []
    for h in handles:
        assert isinstance(h, Task)
        tasks.append(h)
    return flow, tasks


def flow_terminal_results(w: Workload, state: Any, tasks: Sequence[Task[Any, Any]]) -> list[Any]:
    """The terminal nodes' results from a flow run's final state (raises if it failed)."""
    return task_results(w.name, state, [tasks[i] for i in w.terminals])


def task_results(name: str, state: Any, tasks: Sequence[Task[Any, Any]]) -> list[Any]:
    """The results of ``tasks`` from the final state of a run of the flow ``name`` (raises
    if the run failed)."""
    if not state.is_successful():
        failed = [
            f"{t.name}: {s!r}" for t, s in state.result.items() if not s.is_successful()
        ][:3]
        raise RuntimeError(f"{name}: flow run ended {state!r}; e.g. {failed}")
    return [state.result[t].result for t in tasks]


# -- (b) plain sequential Python -------------------------------------------------------------------


def run_sequential(w: Workload) -> list[Any]:
    """Run ``w`` as plain Python calls in topological order; the terminal results."""
    results: list[Any] = [None] * len(w.nodes)
    for i, node in enumerate(w.nodes):
        ups = [results[d] for d in node.deps]
        if node.gather:
            results[i] = node.fn(ups, *node.consts)
        else:
            results[i] = node.fn(*ups, *node.consts)
    return [results[i] for i in w.terminals]


# -- (c) raw loky: one future per task, the parent resolves dependencies ---------------------------


def raw_loky_pool() -> loky.ProcessPoolExecutor:
    """The reusable loky pool with ``LOKY_WORKERS`` workers, its workers started."""
    pool = loky.get_reusable_executor(max_workers=LOKY_WORKERS)
    # A round trip makes sure the workers exist (they are spawned lazily, and the reusable
    # pool lets idle workers exit after 10 s), so no worker start lands in a timed run.
    pool.submit(noop).result()
    return pool


def _put_done(
    done: queue.SimpleQueue[tuple[int, Future[Any]]], i: int, future: Future[Any]
) -> None:
    done.put((i, future))


def run_raw_loky(w: Workload, pool: loky.ProcessPoolExecutor) -> list[Any]:
    """Run ``w`` on ``pool``: one ``submit`` per node, as soon as its inputs are done, with
    their results as arguments. A done callback queues finished nodes for the parent."""
    n = len(w.nodes)
    results: list[Any] = [None] * n
    waiting = [len(set(node.deps)) for node in w.nodes]
    downstream: list[list[int]] = [[] for _ in range(n)]
    for i, node in enumerate(w.nodes):
        for d in dict.fromkeys(node.deps):
            downstream[d].append(i)
    done: queue.SimpleQueue[tuple[int, Future[Any]]] = queue.SimpleQueue()

    def submit(i: int) -> None:
        node = w.nodes[i]
        ups = [results[d] for d in node.deps]
        if node.gather:
            future = pool.submit(node.fn, ups, *node.consts)
        else:
            future = pool.submit(node.fn, *ups, *node.consts)
        future.add_done_callback(functools.partial(_put_done, done, i))

    for i in range(n):
        if waiting[i] == 0:
            submit(i)
    remaining = n
    while remaining:
        i, future = done.get()
        results[i] = future.result()
        remaining -= 1
        for d in downstream[i]:
            waiting[d] -= 1
            if waiting[d] == 0:
                submit(d)
    return [results[i] for i in w.terminals]
