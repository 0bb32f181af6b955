"""Resuming a recorded run in a new process, without a server.

``resume(run_id)`` reads the run from the journal, finds its flow again (where the run
recorded it came from, or the ``flow`` you pass), and runs it on. A run resumed already is
resumed from its newest resume (``_newest_resume``, with a warning): resuming it twice, the
tasks the first resume ran would run again. What happens to a task
depends on the class of the state the run left it in (``states.by_name(row.state)``; see
``runs_again`` and ``keeps_inputs`` in ``taskloom.states``):

- paused tasks (all, or those named in ``tasks``; a mapped task's name names its paused
  children) get a ``Resume`` state with their stored inputs and run as ``start_tasks``;
  those not named stay paused with their inputs (``runner.Resumed.held``: not decided
  again, even after a task upstream of them ran again), and a success whose result was
  not stored is not made again for what waits for them;
- other tasks that run again from inputs of their own (failed, retrying, or interrupted
  while running) run again with their stored inputs, but one that follows another task
  that runs again is decided in the run after it, as in a whole run (an ``all_finished``
  task after a failure is fed the new result); inputs that could not be stored are
  taken from the upstream tasks' results (a paused or failed task then runs after the
  tasks whose results were not stored either, which run again, and what it blocked after
  it); so do the start tasks of a resume that was killed (it recorded each, with its
  inputs, when it started), and one that was let through (``Resume``) keeps its
  permission;
- what they blocked runs after them, and so do tasks the run never ran (an interrupted
  run, a partial one): those that follow no start task start from their upstream tasks'
  stored results, if their trigger, checked against those tasks' recorded states, lets
  them run (a ``manual_only`` task pauses, an ``all_failed`` one after successes ends
  ``TriggerFailed``). Only the upstream tasks that feed an argument need a result: an
  ``all_finished`` cleanup ordered after a task that did not succeed starts, and a task
  fed by one the resume decided (``TriggerFailed``) gets that state's result, as in a
  whole run. A task left in ``Resume`` keeps it, so ``manual_only`` lets it through;
- finished tasks are not run again, and their stored results feed the tasks that need
  them; a success whose result the run did not store (it could not be pickled, or held a
  secret's value) runs again when a task that runs needs it (before, it fed None), and
  what follows it keeps its outcome, but for the never-reached tasks the resume would
  decide from it: they are decided after it runs again. A mapped task whose children's
  results were not stored maps again;
- a mapped task whose children did not all finish well gets back a ``Mapped`` state with
  its children's: those that finished keep their states, the others (failed, paused,
  never run) run again, and so does what follows the mapped task; a mapped task after a
  task that runs again (failed, paused) maps again, as in a whole run.

A ``Crashed`` run (its process was killed before it recorded its end: see
``taskloom.journal``) is resumed from what it recorded as it went: its recorded tasks are
as above, and every task it did not record (in flight, or never reached) is one the run
never ran; a mapped task keeps the children it recorded finished. A run whose process
still runs on this host is refused.

A result the run persisted (``result=``, ``target=``) is kept in the journal as where it
went (``trace.Stored``); it is read back from there, through the task's result as the flow
now has it (``_read_stored``), only where a task that runs again needs it.

The flow's graph is read from its compiled plan (``taskloom.plan``), by task number: a
recorded run's tasks are numbered as the flow's are.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Set
from typing import TYPE_CHECKING, Any

from ._process import running_here
from ._secrets import resolve
from .checkpoint import persist_with
from .decide import decide
from .edges import Edge
from .flow import Flow, FlowResult
from .journal import TAMPERED, Journal, JournalError, RunRecord, TaskRecord, default_journal
from .loader import load_flow
from .plan import Node, Plan, plan, rebuild
from .results import LocalResult
from .runner import Resumed, run_flow
from .mapped import mapped_state, unfinished_children
from .states import Finished, Mapped, Paused, Pending, Resume, Skipped, State, Success, by_name
from .trace import Stored

if TYPE_CHECKING:
    from .executors.base import Executor
    from .progress import RunObserver

__all__ = ["resume"]

log = logging.getLogger("taskloom.resume")

RESUMED_MESSAGE = "Resumed from the journal."
#: A success that runs again because a task that runs needs its result, which was not
#: stored (it could not be pickled, or held a secret's value).
UNSTORED_MESSAGE = "Run again from the journal: its result was not stored."


def _match(flow: Flow, compiled: Plan, record: RunRecord) -> None:
    names = compiled.names
    recorded = [t.name for t in record.tasks]
    # Runs recorded before copies were numbered hold the tasks' plain names.
    if recorded != names and recorded != [node.task.name for node in compiled.nodes]:
        raise JournalError(
            f"flow {flow.name!r} has changed since run {record.run_id}: it now has tasks "
            f"{names[:8]}{'...' if len(names) > 8 else ''}, the run had {recorded[:8]}"
            f"{'...' if len(recorded) > 8 else ''}; resume it from the flow as it was"
        )


def _read_stored(record: RunRecord, flow: Flow, compiled: Plan) -> None:
    """Replace the ``Stored`` results and inputs of ``record``'s tasks (also inside a mapped
    task's list of results) with the values read from where they went, each through the
    result of the task that persisted it."""
    default: LocalResult | None = None

    def read(row: TaskRecord, value: Any) -> Any:
        nonlocal default
        if isinstance(value, list):
            return [read(row, item) for item in value]
        if not isinstance(value, Stored):
            return value
        if default is None:
            default = LocalResult()
        persist = persist_with(compiled.nodes[value.task].task, flow.result, default)
        store = persist.result if persist is not None else default
        try:
            return store.read(value.location)
        except Exception as error:
            raise JournalError(
                f"run {record.run_id}: a value task {row.name!r} needs was stored at "
                f"{value.location}, which cannot be read ({error!r}); run the flow again "
                "instead of resuming it"
            ) from None

    rows = [*record.tasks, *(child for family in record.children.values() for child in family)]
    for row in rows:
        if row.has_result:
            row.result = read(row, row.result)
        if isinstance(row.inputs, dict):
            row.inputs = {key: read(row, value) for key, value in row.inputs.items()}


def _kind(record: RunRecord, row: TaskRecord) -> type[State[Any]]:
    try:
        return by_name(row.state)
    except KeyError:
        raise JournalError(
            f"run {record.run_id}: task {row.name!r} ended in state {row.state!r}, which this "
            "version of taskloom does not know; resume it with the version that ran it"
        ) from None


def _succeeded(kind: type[State[Any]]) -> bool:
    """Whether a task that ended in a ``kind`` has a result to feed the tasks after it: a
    success, not a skip (which would skip them instead)."""
    return issubclass(kind, Success) and not issubclass(kind, Skipped)


def _has_result(kind: type[State[Any]], row: TaskRecord) -> bool:
    """Whether a task's stored result can feed a task that never ran: it ``_succeeded``
    and its result is stored, untampered."""
    return _succeeded(kind) and row.has_result and row.result is not TAMPERED


def _read_secrets(rows: list[TaskRecord], families: Iterable[list[TaskRecord]]) -> dict[str, Any]:
    """Read again the secrets the journal kept as references (``_secrets.SecretRef``): the
    secrets read, by name, for the resume's ``context.secrets`` (see ``resolve``)."""
    read: dict[str, Any] = {}
    for row in (*rows, *(child for family in families for child in family)):
        if row.inputs is not None and row.inputs is not TAMPERED:
            row.inputs = resolve(row.inputs, read)
        if row.has_result and row.result is not TAMPERED:
            row.result = resolve(row.result, read)
    return read


class _Looked(dict[Any, Any]):
    """What ``plan.rebuild`` looks tasks up in: it notes each task looked up (``seen``), so
    rebuilding an argument tells which tasks the argument holds."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Any] = []

    def __missing__(self, task: Any) -> None:
        self.seen.append(task)


def _fed_by(compiled: Plan, i: int) -> list[int]:
    """The upstream tasks of task ``i`` whose results it takes as arguments (directly, or
    inside a list, tuple, set or dict argument), by number; not those that only order it."""
    node = compiled.nodes[i]
    fed = [u for _, u in node.direct]
    if node.nested:
        looked = _Looked()
        for _, value in node.nested:
            rebuild(value, looked)
        by_task = {compiled.nodes[u].task: u for u in node.upstream}
        fed.extend(by_task[task] for task in looked.seen)
    return fed


def _known_result(
    u: int, rows: list[TaskRecord], kinds: list[type[State[Any]]], decided: Mapping[int, State[Any]]
) -> tuple[bool, Any]:
    """Whether the resume knows the result task ``u`` feeds the tasks after it, and that
    result: that of a state the resume ``decided``, a success's stored result, or the
    result of a task that did not succeed as recorded (stored, else None: what the run
    feeds from the state it is seeded with). A success whose result the run did not
    store is not known: it runs again (``_run_unstored``)."""
    state = decided.get(u)
    if state is not None:
        return True, state.result
    kind, row = kinds[u], rows[u]
    if _succeeded(kind) and not _has_result(kind, row):
        return False, None
    return True, _recorded(kind, row).result


def _run_again(
    i: int, kind: type[State[Any]], inputs: dict[str, Any], states: dict[int, State[Any]],
    starts: list[int],
) -> None:
    """Task ``i``, recorded in a state of ``kind``, runs again from ``inputs`` as a start
    task: let through if it was paused (or let through already)."""
    if issubclass(kind, (Paused, Resume)):
        states[i] = Resume(RESUMED_MESSAGE, cached_inputs=inputs)
    else:
        states[i] = Pending("Run again from the journal.", cached_inputs=inputs)
    starts.append(i)


def _takes_all(node: Node, inputs: Mapping[str, Any]) -> bool:
    """Whether ``inputs`` hold every argument the task is given (from its upstream tasks,
    mapped or not, or a constant): a task the scheduler failed without running it kept
    none."""
    return all(key in inputs for key in node.constants) and all(
        edge.key is None or edge.key in inputs for edge, _ in node.in_edges
    )


def _inputs_from_results(
    compiled: Plan,
    i: int,
    rows: list[TaskRecord],
    kinds: list[type[State[Any]]],
    decided: Mapping[int, State[Any]],
) -> dict[str, Any] | None:
    """A never-run task's inputs, from its constants and the results of the upstream tasks
    that feed it an argument (``_fed_by``, ``_known_result``); None when one of those
    results is not known. An upstream task that only orders it feeds nothing."""
    node = compiled.nodes[i]
    results: dict[int, Any] = {}
    for u in _fed_by(compiled, i):
        known, results[u] = _known_result(u, rows, kinds, decided)
        if not known:
            return None
    inputs = dict(node.constants)
    for key, u in node.direct:
        inputs[key] = results[u]
    if node.nested:
        by_task = {compiled.nodes[u].task: results.get(u) for u in node.upstream}
        for key, value in node.nested:
            inputs[key] = rebuild(value, by_task)
    return inputs


def _run_unstored(
    compiled: Plan,
    rows: list[TaskRecord],
    kinds: list[type[State[Any]]],
    states: dict[int, State[Any]],
    starts: list[int],
    again: list[bool],
    waiting: list[int],
    decided: Mapping[int, State[Any]],
    remap: Set[int],
    stays: list[bool],
) -> list[int]:
    """Run again every success whose result the run did not store (seeded with None, it
    fed None) and that a task which runs takes as an argument: a task of ``again`` that is
    not a start task (those have inputs of their own), or one of ``waiting`` (tasks the
    run decides once what they take runs again: they join ``again`` then), unless it
    ``stays`` (it waits for a task the resume leaves paused: it does not run). Each such
    success joins ``again`` (it is not seeded; what follows it keeps its recorded
    outcome); it starts from its own inputs where the resume knows them (into ``states``
    and ``starts``), else it runs after the tasks it takes them from, which join in turn.
    A mapped task of ``remap`` (seeded from its children, all finished) whose results were
    not stored maps again. Each task is looked at once. Returns the successes that run
    again."""
    rerun: list[int] = []
    given = set(starts)
    check = [i for i, inside in enumerate(again) if inside and i not in given and not stays[i]]
    check.extend(i for i in waiting if not stays[i])
    while check:
        i = check.pop()
        for u in _fed_by(compiled, i):
            if again[u] or (u in states and u not in remap):
                continue
            if _known_result(u, rows, kinds, decided)[0]:
                continue
            again[u] = True
            rerun.append(u)
            inputs = _inputs_from_results(compiled, u, rows, kinds, decided)
            if inputs is None:
                states.pop(u, None)  # (a mapped one: not seeded from its children)
                check.append(u)
            else:
                states[u] = Pending(UNSTORED_MESSAGE, cached_inputs=inputs)
                starts.append(u)
    joined = []
    for i in waiting:  # decided in the run (not seeded) once what it waits for runs again
        again[i] = any(again[u] for u in compiled.nodes[i].upstream)
        if again[i]:
            joined.append(i)
    # What follows them runs after them, as what follows a start task does (a task their
    # failure ended ``TriggerFailed`` is decided again).
    for i, after in enumerate(compiled.downstream_closure(joined)):
        again[i] = again[i] or after
    return rerun


def _after_rerun(
    compiled: Plan,
    reached: set[int],
    rerun: list[int],
    states: dict[int, State[Any]],
    starts: list[int],
    again: list[bool],
) -> None:
    """The never-reached tasks the resume decided (``reached``: started, paused, ended by
    their trigger) from the recorded state of a success that runs again (``rerun``), or of
    one of them, are decided in the run instead, after it: as in a whole run, they wait
    for it (and end as their trigger decides if it fails now)."""
    after = set(rerun)
    moved: set[int] = set()
    for i in compiled.order():
        if i in reached and not after.isdisjoint(compiled.nodes[i].upstream):
            after.add(i)
            moved.add(i)
            del states[i]
            again[i] = True
    starts[:] = [i for i in starts if i not in moved]


def _recorded(kind: type[State[Any]], row: TaskRecord) -> State[Any]:
    """A task's state as the run recorded it: its class and message, with its result where
    it is stored (and untampered), else None."""
    return kind(row.message, row.result if row.has_result and row.result is not TAMPERED else None)


def _finished_upstream(
    compiled: Plan,
    i: int,
    rows: list[TaskRecord],
    kinds: list[type[State[Any]]],
    given: Mapping[int, State[Any]],
) -> dict[Edge, State[Any]] | None:
    """The states of never-run task ``i``'s upstream tasks, by edge, as the resume leaves
    them (``given``: what it decided or seeds, else as recorded: ``_recorded``); None when
    one of them is not finished (the run decides ``i`` after it)."""
    node = compiled.nodes[i]
    upstream: dict[Edge, State[Any]] = {}
    for edge, u in node.in_edges:
        state = given.get(u)
        if state is None:
            state = _recorded(kinds[u], rows[u])
        if not isinstance(state, Finished):
            return None
        upstream[edge] = state
    return upstream


def _mapped(
    record: RunRecord, row: TaskRecord, children: list[TaskRecord], wanted: set[str],
    held: list[int],
) -> Mapped[Any]:
    """A mapped task's state from its children's records: each child's class and message,
    with its result where it is stored (or in the mapped task's stored list of results).
    A paused child (every one, or those named in ``wanted``) gets ``Resume``: it runs;
    one not named stays paused with its stored inputs, its index noted in ``held``."""
    results = row.result if row.has_result and isinstance(row.result, list) else None
    states: list[State[Any]] = []
    for k, child in enumerate(children):
        if child.tampered:
            raise JournalError.tampered(record.run_id, child.name)
        kind = _kind(record, child)
        if issubclass(kind, Paused) and (not wanted or child.name in wanted):
            states.append(Resume(RESUMED_MESSAGE))
            continue
        if issubclass(kind, Paused):
            states.append(kind(child.message, cached_inputs=child.inputs or {}))
            held.append(k)
            continue
        if child.has_result:
            result = child.result
        elif results is not None and child.map_index is not None and child.map_index < len(results):
            result = results[child.map_index]
        else:
            result = None
        states.append(kind(child.message, result))
    return mapped_state(states)


def _wanted(record: RunRecord, kinds: list[type[State[Any]]], named: set[str]) -> set[str]:
    """The paused tasks and children ``named`` lets through (a mapped task's name: its
    paused children). A task that runs again anyway (failed, interrupted) may be named:
    it lets none through. A JournalError names any other name."""
    paused: set[str] = set()
    again: set[str] = set()
    states: dict[str, str] = {}
    by_parent: dict[str, list[str]] = {}
    for i, (row, kind) in enumerate(zip(record.tasks, kinds)):
        states[row.name] = row.state
        family = record.children.get(i, ())
        for child in family:
            states[child.name] = child.state
            child_kind = _kind(record, child)
            if issubclass(child_kind, Paused):
                paused.add(child.name)
            elif child_kind.runs_again:
                again.add(child.name)
        if family:
            by_parent[row.name] = [c.name for c in family if c.name in paused]
            if any(c.name in again for c in family):
                again.add(row.name)
        elif issubclass(kind, Paused):
            paused.add(row.name)
        elif kind.runs_again:
            again.add(row.name)
    wanted: set[str] = set()
    for name in sorted(named):
        if name not in states:
            raise JournalError(f"run {record.run_id} has no task named {name}")
        if name in paused or name in again:  # (named, a task that runs again holds the rest)
            wanted.add(name)
        if by_parent.get(name):
            wanted.update(by_parent[name])
        elif name not in wanted:
            choice = ", ".join(sorted(paused)[:8]) + (", ..." if len(paused) > 8 else "")
            raise JournalError(
                f"run {record.run_id}: task {name!r} is {states[name]}, so it does not run "
                "again; " + (f"--task names paused tasks to let through ({choice})" if paused
                             else "the run has no paused task: resume it without --task")
            )
    return wanted


def _newest_resume(journal: Journal, record: RunRecord) -> RunRecord:
    """The run to resume for ``record``: itself, or if it was resumed already, the newest
    resume of its newest resume, and so on. A run's record is as the run ended, not as its
    resumes left things: resumed again, the tasks a resume ran would run twice (a resume
    that failed again, resumed again after a fix, is the usual case)."""
    newest: RunRecord | None = None
    while later := journal.resumed_by((newest or record).run_id):
        newest = later[0]  # (without its tasks: only the last is loaded)
    if newest is None:
        return record
    log.warning(
        "run %s was resumed already: resuming its newest resume, run %s (%s)",
        record.run_id, newest.run_id, newest.state,
    )
    return journal.load(newest.run_id)


def resume(
    run_id: str,
    *,
    flow: Flow | None = None,
    tasks: Iterable[str] = (),
    executor: Executor | None = None,
    journal: Journal | None = None,
    progress: RunObserver | bool = False,
) -> State[FlowResult]:
    """Resume the recorded run ``run_id`` (a unique prefix will do); see the module docstring.

    Raises:
        JournalError: the run is unknown, its stored data is tampered with, nothing in it
            can be resumed, or its flow changed since.
        FlowNotFoundError: the flow cannot be found where the run came from.
    """
    journal = journal or default_journal()
    record = _newest_resume(journal, journal.load(run_id))
    if record.tampered:
        raise JournalError.tampered(record.run_id)
    if record.ended is None and record.process is not None and running_here(record.process):
        raise JournalError(
            f"run {record.run_id} is still running ({record.process}): resume it once it "
            "has ended (or been stopped)"
        )
    if flow is None:
        if record.source is None:
            raise JournalError(
                f"run {record.run_id} does not record where its flow came from (it was not "
                "started from the command line): pass the flow, e.g. --flow FILE.py:FLOW"
            )
        flow = load_flow(record.source)
    compiled = plan(flow)
    _match(flow, compiled, record)
    _read_stored(record, flow, compiled)
    rows = record.tasks
    secrets = _read_secrets(rows, record.children.values())
    kinds = [_kind(record, row) for row in rows]
    wanted = _wanted(record, kinds, set(tasks))
    states: dict[int, State[Any]] = {}
    starts: list[int] = []
    # Tasks the run decides once what they take, which the run did not store, runs again.
    waiting: list[int] = []
    # Tasks that run again from inputs of their own: those inputs (None: not stored).
    own: dict[int, dict[str, Any] | None] = {}
    # Mapped tasks, from their children: the state the run left each child in.
    partial: list[int] = []
    # Paused tasks not named (``tasks``): left paused, with their inputs (``Resumed.held``).
    left_paused: list[int] = []
    left_children: list[tuple[int, int]] = []
    for i, children in record.children.items():
        kept: list[int] = []
        mapped = _mapped(record, rows[i], children, wanted, kept)
        states[i] = mapped
        left_children.extend((i, k) for k in kept)
        if unfinished_children(mapped):
            partial.append(i)
    for i, (row, kind) in enumerate(zip(rows, kinds)):
        if row.tampered:
            raise JournalError.tampered(record.run_id, row.name)
        if i in record.children:
            continue
        if issubclass(kind, Paused) and wanted and row.name not in wanted:
            states[i] = kind(row.message, cached_inputs=row.inputs or {})
            left_paused.append(i)
            continue
        if not kind.keeps_inputs and not (issubclass(kind, Pending) and row.inputs is not None):
            continue  # (a pending task with inputs: a start task of a resume, killed)
        inputs = row.inputs
        if inputs is not None and not _takes_all(compiled.nodes[i], inputs):
            inputs = None  # failed where it never ran: a mapped task with nothing to map over
        own[i] = inputs
    # Each, in an order in which it comes after what it waits for: one downstream of a
    # task that runs again waits for it (decided in the run, as a whole run would decide
    # it: an ``all_finished`` task after a failure is fed the new result, not the failure
    # it kept); the others start from their own inputs, or where the run did not store
    # them (they could not be pickled), from their upstream tasks' results if the resume
    # knows them all, else they wait for those that run again.
    ahead = compiled.downstream_closure(partial)  # (what follows a task that runs again)
    for i in compiled.order():
        if i not in own:
            continue
        inputs = None if ahead[i] else own[i]
        if inputs is None and not ahead[i] and not any(
            kinds[u].runs_again for u in _fed_by(compiled, i)
        ):
            inputs = _inputs_from_results(compiled, i, rows, kinds, {})
        if inputs is not None:
            _run_again(i, kinds[i], inputs, states, starts)
        else:
            waiting.append(i)  # decided in the run once what it waits for runs again
            if issubclass(kinds[i], (Paused, Resume)):
                states[i] = Resume(RESUMED_MESSAGE)
        if not ahead[i]:  # (else what follows it is ahead already)
            compiled.downstream_closure([i], into=ahead)
    # A mapped task after one of those maps again, as in a whole run: its children were
    # decided from what that task left (``TriggerFailed`` after a failure it took whole,
    # through ``unmapped``).
    for i in record.children:
        if any(ahead[u] for u in compiled.nodes[i].upstream):
            del states[i]
            if i in partial:
                partial.remove(i)
    # Tasks that never ran (an interrupted or partial run) and do not follow a start task:
    # start them too, from their upstream tasks' stored results, if their trigger lets
    # them run (a start task's is not checked); else they end as it decides.
    # In an order in which each comes after what it waits for: what one decides (a
    # TriggerFailed, a skip) is what the tasks after it are decided from.
    again = compiled.downstream_closure([*starts, *partial])
    held = False
    decided_here: dict[int, State[Any]] = {}  # finished as their trigger decided
    reached: set[int] = set()  # never reached, given a state here
    for i in compiled.order():
        kind = kinds[i]
        if again[i] or not kind.runs_again or kind.keeps_inputs or i in record.children:
            continue
        upstream = _finished_upstream(compiled, i, rows, kinds, states)
        if upstream is None:  # it waits for a task that runs: decided in the run
            continue
        decided = decide(compiled.nodes[i].task, upstream, resume=issubclass(kind, Resume))
        if decided is not None and not isinstance(decided, Paused):  # TriggerFailed, Skipped
            states[i] = decided_here[i] = decided
            held = True
            reached.add(i)
            continue
        inputs = _inputs_from_results(compiled, i, rows, kinds, decided_here)
        if inputs is None:
            waiting.append(i)  # decided in the run, after what runs again for it
            continue
        reached.add(i)
        if decided is None:
            states[i] = Pending("Run from the journal.", cached_inputs=inputs)
            starts.append(i)
        else:  # paused (``manual_only``): a later resume runs it
            states[i], held = decided.replace(cached_inputs=inputs), True
    # What runs again: the start tasks and everything downstream of them, and what they
    # need that the run did not store.
    again = compiled.downstream_closure([*starts, *partial])
    rerun = _run_unstored(
        compiled, rows, kinds, states, starts, again, waiting, decided_here,
        record.children.keys() - set(partial),
        compiled.downstream_closure([*left_paused, *{i for i, _ in left_children}]),
    )
    if rerun:
        _after_rerun(compiled, reached, rerun, states, starts, again)
    if not starts and not partial and not held:
        raise JournalError(
            f"run {record.run_id} ({record.state}) has no paused or failed task to resume"
        )
    # Every other task keeps its recorded outcome (with its result, where a task that runs
    # again needs it); one left in Resume that runs again keeps its permission.
    unstored: set[int] = set()  # successes seeded without their result (not stored)
    for i, (row, kind) in enumerate(zip(rows, kinds)):
        if i in record.children:
            continue
        if again[i]:
            if i not in states and issubclass(kind, Resume):
                states[i] = Resume(RESUMED_MESSAGE)
        elif issubclass(kind, Finished):
            states[i] = _recorded(kind, row)
            if not _known_result(i, rows, kinds, decided_here)[0]:
                unstored.add(i)
    tasks_by_number = [node.task for node in compiled.nodes]
    return run_flow(
        flow,
        parameters=record.parameters,
        executor=executor,
        context={**record.context, **({"secrets": secrets} if secrets else {})},
        task_states={tasks_by_number[i]: state for i, state in states.items()},
        start_tasks=[tasks_by_number[i] for i in starts],
        cache_store=None,
        journal=journal,
        resumed=Resumed(
            record.run_id, frozenset(unstored), frozenset(left_paused), frozenset(left_children)
        ),
        progress=progress,
    )
