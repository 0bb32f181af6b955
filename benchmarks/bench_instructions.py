"""The engine's work per task in instructions, not seconds: a figure the machine's load does
not move.

On a shared 2-core machine a wall-clock figure moves by 30-70% from one minute to the next,
so ``--compare`` (which calls a change only beyond the run-to-run spread) misses any change
smaller than that. Counted by valgrind's callgrind, the instructions a flow run executes
repeat to about 0.3% for the same source, interpreter and environment, whatever else runs.

For each workload, two processes run under ``valgrind --tool=callgrind`` (``PYTHONHASHSEED=0``,
a taskloom home each): both build the flow and run it twice (imports, the plan, the
journal's file), then one runs it ``RUNS`` more times; the difference of their totals,
divided by ``RUNS`` and the tasks, is the instructions per task of a run, every thread of
the process counted (the journal's writer thread too). Figures (``instr.*``):

* W1 (1,000 no-ops -> reduce) and W2 (chain of 200) on ``LocalExecutor``, journal on: the
  engine's whole per-task path in one process (LocalExecutor runs tasks where it decides
  them), the parent's work of every executor;
* W1 with the journal off: the journal's share is the difference;
* W1 and W2 on ``LokyExecutor`` (two workers), the parent process alone (the workers are
  not run under valgrind): what the scheduler does around tasks run elsewhere (the runs
  decided, grouped and encoded, their results decoded and taken, the journal);
* a worker's share of a W2 hop: the chain of 200 as a worker runs it
  (``attempt.run_chain``, in one process), without the batch's loading and its results'
  encoding;
* sequential: W1 as plain Python calls, the baseline of the ratio;
* the task log's writer (``recording``), per task written: what a run longer than
  ``FLUSH_SECONDS`` pays on top of the rest, in a thread that holds the interpreter (the
  growth target at a million tasks is about it). Both processes run a flow of 10,000
  no-ops and a reduce once, with the task log held off; one then has the run's task log
  write those 10,000 tasks again ``RUNS`` times, as one batch each (their outcomes and the
  values a resume would need, pickled, signed and written to the journal).

The task log (``recording``) is held off, as in a run shorter than its 0.25 s: under
valgrind a run lasts 50 times longer, and would write batches a real run of W1 never does.
``compare.py`` calls an ``instructions`` figure changed when it moved by more than 1%.
Without valgrind, the figures are absent and the script says so.

``--quick`` counts only W1 with the journal off, at 20 tasks (a smoke test: each process
under valgrind takes ~12 s to start). The full script takes about four minutes.

    python benchmarks/bench_instructions.py [--runs N] [--quick] [--json FILE]
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import _harness as h
import workloads as wl

from taskloom.recording import FLUSH_TASKS

DESCRIPTION = "Instructions per task (callgrind): W1 and W2 on LocalExecutor, and the journal's share."
HERE = Path(__file__).resolve().parent
#: Runs counted beyond the two every process makes.
RUNS = 3

#: What one process under valgrind runs: the workload, then ``runs`` more flow runs (or
#: plain sequential passes, or chains run as a worker runs them); argv: workload, size,
#: mode (journal / nojournal / loky / chain / sequential / tasklog), runs.
_CHILD = r"""
import sys
sys.path.insert(0, sys.argv[5])
import workloads as wl
from taskloom import recording
from taskloom.executors import LocalExecutor
recording.FLUSH_SECONDS = float("inf")  # the task log held off: see the module docstring
w = getattr(wl, sys.argv[1])(int(sys.argv[2]))
mode, runs = sys.argv[3], int(sys.argv[4])
if mode == "tasklog":  # the writer: the run's own task log, writing its tasks again
    logs = []
    close = recording.TaskLog.close
    recording.TaskLog.close = lambda self: (logs.append(self), close(self))[1]
    flow, _ = wl.build_flow(w)
    flow.run(executor=LocalExecutor())
    log = logs[-1]
    log._waiting.clear()  # what the run noted is not part of the count
    log._closed = False  # (closed with its run: a closed log's flush writes nothing)
    keys = range(recording.FLUSH_TASKS)
    for _ in range(runs):
        log._written[:] = bytes(len(log._written))  # as if none was written yet
        log._waiting.extend(keys)
        log.flush()
        if log._waiting:  # (a count of nothing written would pass for a fast writer)
            raise SystemExit(f"the task log left {len(log._waiting):,} tasks unwritten")
    raise SystemExit(0)
if mode == "chain":  # a worker's part of W2: the chain as one group, run in this process
    from taskloom.attempt import FollowOn, TaskRun, run_chain
    inc = wl._TASKS[wl.inc]
    arg = inc.fn.__code__.co_varnames[0]
    head = TaskRun(0, inc, {arg: 0})
    head.then = tuple(FollowOn(j, inc, {}, ((arg, j - 1),)) for j in range(1, w.size))
    context = {"flow_name": "chain", "parameters": {}}
    run = lambda: run_chain(head, context, "worker")
elif mode == "sequential":
    run = lambda: wl.run_sequential(w)
else:
    from taskloom.executors import LokyExecutor
    flow, _ = wl.build_flow(w)
    executor = LokyExecutor(max_workers=2) if mode == "loky" else LocalExecutor()
    journal = mode != "nojournal"
    run = lambda: flow.run(executor=executor, journal=journal)
for _ in range(2 + runs):
    run()
"""


def instructions(workload: str, size: int, mode: str, runs: int) -> float:
    """Instructions per task of one run of ``workload(size)`` in ``mode`` (see the module
    docstring): two processes under callgrind, ``runs`` runs apart."""
    totals = []
    for extra in (0, runs):
        # A home each: both processes then create their journal alike, and the difference
        # is the extra runs alone (with one home, the first created the journal the second
        # opened, and the figures with the journal moved by a thousand from one call to the
        # next).
        with tempfile.TemporaryDirectory(prefix="taskloom-instr-") as home:
            env = {**os.environ, "PYTHONHASHSEED": "0", "TASKLOOM_HOME": home}
            done = subprocess.run(
                [
                    "valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null",
                    sys.executable, "-c", _CHILD, workload, str(size), mode, str(extra), str(HERE),
                ],
                capture_output=True, text=True, env=env, check=False,
            )
        found = re.search(r"Collected : (\d+)", done.stderr)
        if done.returncode != 0 or found is None:
            raise RuntimeError(f"{workload} {mode}: callgrind failed:\n{done.stderr[-2000:]}")
        totals.append(int(found.group(1)))
    tasks: int = FLUSH_TASKS if mode == "tasklog" else getattr(wl, workload)(size).size
    return (totals[1] - totals[0]) / runs / tasks


#: Every figure this script writes (absent ones as None).
FIGURES = [
    *(
        f"instr.{key}.instructions_per_task"
        for key in (
            "W1.journal", "W1.nojournal", "W2.journal", "W1.loky_parent", "W2.loky_parent",
            "W2.worker_chain", "W1.sequential", "W1.journal_share", "tasklog",
        )
    ),
    "instr.W1.ratio_vs_sequential",
]


def main() -> None:
    args = h.parse_args(DESCRIPTION, RUNS)
    h.print_header("instructions per task (callgrind), LocalExecutor")
    figures: h.Figures = dict.fromkeys(FIGURES)
    if shutil.which("valgrind") is None:
        h.line("valgrind is not installed here: no instruction counts (apt install valgrind)")
        h.finish(args.json, figures, failed=False)
        return
    w1, w2 = 1000, 200
    failed = False
    try:
        if args.quick:  # a smoke test: one figure, two processes (each starts in ~12 s)
            w1 = 20
            counts = {"W1.nojournal": instructions("w1_wide", w1, "nojournal", 1)}
        else:
            counts = {
                "W1.journal": instructions("w1_wide", w1, "journal", args.runs),
                "W1.nojournal": instructions("w1_wide", w1, "nojournal", args.runs),
                "W2.journal": instructions("w2_chain", w2, "journal", args.runs),
                "W1.loky_parent": instructions("w1_wide", w1, "loky", args.runs),
                "W2.loky_parent": instructions("w2_chain", w2, "loky", args.runs),
                "W2.worker_chain": instructions("w2_chain", w2, "chain", args.runs),
                "W1.sequential": instructions("w1_wide", w1, "sequential", args.runs),
                "tasklog": instructions("scale", FLUSH_TASKS, "tasklog", args.runs),
            }
    except RuntimeError as error:
        h.line(f"failed: {error}")
        counts, failed = {}, True
    for key, value in counts.items():
        figures[f"instr.{key}.instructions_per_task"] = value
    if args.quick and counts:
        h.line(f"W1 ({w1} no-ops + reduce), journal off: {counts['W1.nojournal']:,.0f} "
               "instructions per task (--quick: this figure only)")
    elif counts:
        seq = counts["W1.sequential"]
        share = counts["W1.journal"] - counts["W1.nojournal"]
        figures["instr.W1.ratio_vs_sequential"] = counts["W1.journal"] / seq
        figures["instr.W1.journal_share.instructions_per_task"] = share
        h.line(f"W1 ({w1:,} no-ops + reduce), journal on: {counts['W1.journal']:9,.0f} "
               f"instructions per task ({counts['W1.journal'] / seq:,.0f}x the sequential calls' "
               f"{seq:,.0f})")
        h.line(f"W1, journal off:                       {counts['W1.nojournal']:9,.0f} "
               f"(the journal's share: {share:,.0f})")
        h.line(f"W2 (chain of {w2}), journal on:          {counts['W2.journal']:9,.0f} per hop")
        h.line(f"W1 on loky, the parent process alone:  {counts['W1.loky_parent']:9,.0f} per task "
               "(deciding, encoding, decoding, the journal)")
        h.line(f"W2 on loky, the parent process alone:  {counts['W2.loky_parent']:9,.0f} per hop "
               "(grouping, encoding, decoding, the journal)")
        h.line(f"W2 in a worker, the chain alone:       {counts['W2.worker_chain']:9,.0f} per hop "
               "(attempt.run_chain)")
        h.line(f"the task log's writer:                 {counts['tasklog']:9,.0f} per task "
               f"written (batches of {FLUSH_TASKS:,})")
    h.finish(args.json, figures, failed)


if __name__ == "__main__":
    main()
