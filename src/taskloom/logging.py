"""Logging for taskloom runs: loggers that know their task, ``print`` as log lines, a run
log on stderr, and the per-task log text the journal keeps.

Loggers. Every logger taskloom hands out is a plain ``logging.Logger`` under ``taskloom``:
``get_logger()`` is ``taskloom`` itself, ``task.logger`` is ``taskloom.task.<task name>``,
``flow.logger`` is ``taskloom.flow.<flow name>``, and ``taskloom.context.logger`` (or
``context.get("logger")``) is the running task's logger inside a task and the flow's
during a run. Each has a ``logging.Filter`` (``ContextFilter``) that stamps its records,
when they are made, with ``flow_run_id``, ``task_name``, ``task_run_id``, ``map_index``,
``attempt`` and ``task_run_name`` (None for a task without one) read from the run
context of the thread logging: plain
``logger.info("...")`` is enough. A field already on the record is kept, which matters
twice: records from worker processes arrive stamped (``_wire.flatten_record``, in the
worker) and the parent's filter must not restamp them with the scheduler's context, and
the engine's own lines about a task, logged by the scheduler, pass the fields in
``extra``.

Where records go. Records from task code on ``LocalExecutor`` and ``ThreadExecutor`` (and
on a Dask worker thread in the caller's own process) are emitted where they are made,
straight to the caller's handlers. On loky and Dask worker processes the worker's capture keeps them and they
travel back with the batch's results; the parent hands each to its logger's handlers, in
the order made, once, and only if that logger is enabled for its level in the parent (the
worker captures at the lowest level the parent may want: ``capture_level``).

``print``. ``stdout_lines(sink)`` routes what the current context writes to ``sys.stdout``
to ``sink``, line by line, for a ``with`` block. It swaps ``sys.stdout`` for a router
(once, while any block is open) that looks the sink up in a ``ContextVar``: other threads
and tasks print as before, and a timeout thread (which copies its task's context) is
routed with its task. ``log_stdout=True`` on a task uses it to send lines to the task's
logger at INFO; a worker process uses it for a whole batch, so that its ``print`` output
travels back with the log records (as records of the ``taskloom.stdout`` pseudo-logger,
which the parent writes to its own ``sys.stdout``: above the rich display when it runs).

The run log. ``basic_config(level)`` puts one stderr handler on ``taskloom`` with
Prefect's format::

    [2026-12-02 13:00:00] INFO - taskloom.task.extract | Task 'extract': Starting task run...

``flow.run()`` itself adds no handler: without ``basic_config`` (or your own logging
setup) records go wherever your logging sends them.

The journal. While a run is journaled, ``RunLogs`` (a handler on the root logger, and
on ``taskloom`` when that does not propagate as the run starts, for that run only, that
writes nothing anywhere) keeps the formatted text of each task's
records of its last attempt, bounded by ``LOG_CAP`` characters per task, after which a
final ``... (N records cut)`` note counts the rest. It stands in for ``logging.lastResort``
when it is the only handler a record finds, so that attaching it changes nothing visible.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import IO, Any, TextIO, cast

from ._secrets import mask_records
from .context import current

__all__ = [
    "FORMAT",
    "DATEFMT",
    "LOG_CAP",
    "STDOUT_LOGGER",
    "ContextFilter",
    "RunLogs",
    "basic_config",
    "capture_level",
    "flow_logger",
    "get_logger",
    "stamp",
    "stdout_lines",
    "task_logger",
]

#: The format of the run log (Prefect Core's), and of the journal's log text.
FORMAT = "[%(asctime)s] %(levelname)s - %(name)s | %(message)s"
DATEFMT = "%Y-%m-%d %H:%M:%S"
#: The most characters of log text the journal keeps per task (then a note counts the rest).
LOG_CAP = 64 * 1024
#: The name of the pseudo-logger a worker's ``print`` lines travel under (never a handler's).
STDOUT_LOGGER = "taskloom.stdout"

#: The fields ``ContextFilter`` stamps, and the context key each is read from.
FIELDS = (
    ("flow_run_id", "flow_run_id"),
    ("task_name", "task_name"),
    ("task_run_id", "task_run_id"),
    ("map_index", "map_index"),
    ("attempt", "task_run_count"),
    ("task_run_name", "task_run_name"),
)


class ContextFilter(logging.Filter):
    """Stamps a record with the run's fields (see the module docstring); keeps any field
    the record already has. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Add the missing fields from the current run context; always True."""
        stamp(record, current())
        return True


# Secret values never reach a record (``taskloom._secrets``), in this process or a worker.
mask_records()

def stamp(record: logging.LogRecord, values: Mapping[str, Any]) -> None:
    """Give ``record`` the run's fields (``FIELDS``) from ``values`` (a run context), keeping
    any it has already."""
    fields = record.__dict__
    for field, key in FIELDS:
        if field not in fields:
            fields[field] = values.get(key)


_FILTER = ContextFilter()
_loggers: dict[str, logging.Logger] = {}
_loggers_lock = threading.Lock()


def get_logger(name: str | None = None) -> logging.Logger:
    """The ``taskloom`` logger, or ``taskloom.<name>``; its records carry the run's fields.

    >>> get_logger("etl").name
    'taskloom.etl'
    """
    full = "taskloom" if not name else f"taskloom.{name}"
    found = _loggers.get(full)
    if found is not None:
        return found
    with _loggers_lock:
        logger = logging.getLogger(full)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        _loggers[full] = logger
    return logger


class _TaskLoggers(dict[str, logging.Logger]):
    """Task loggers by task name, each made on first use."""

    def __missing__(self, name: str) -> logging.Logger:
        found = self[name] = get_logger(f"task.{name}")
        return found


#: ``task_logger(name)``: the logger of the task named ``name``, ``taskloom.task.<name>``.
#: On every task run's path (its context, its end line), so a dict's own lookup: no
#: Python frame once the logger exists.
task_logger: Callable[[str], logging.Logger] = _TaskLoggers().__getitem__


def flow_logger(name: str) -> logging.Logger:
    """The logger of the flow named ``name``: ``taskloom.flow.<name>``."""
    return get_logger(f"flow.{name}")


def capture_level() -> int:
    """The level a worker captures records at: the lowest of the root logger's and the
    ``taskloom`` logger's effective levels (the parent drops what its loggers would not
    have emitted)."""
    return min(logging.getLogger().getEffectiveLevel(), logging.getLogger("taskloom").getEffectiveLevel())


# -- print -------------------------------------------------------------------------------------


class _Lines:
    """Collects written text and hands whole lines to a sink (the rest on ``close``)."""

    __slots__ = ("sink", "_buffer")

    def __init__(self, sink: Callable[[str], None]) -> None:
        self.sink = sink
        self._buffer = ""

    def write(self, text: str) -> None:
        text = self._buffer + text
        *lines, self._buffer = text.split("\n")
        for line in lines:
            self.sink(line)

    def close(self) -> None:
        if self._buffer:
            line, self._buffer = self._buffer, ""
            self.sink(line)


_sink: ContextVar[_Lines | None] = ContextVar("taskloom.stdout", default=None)


class _StdoutRouter:
    """What ``sys.stdout`` is while a ``stdout_lines`` block is open: writes of a routed
    context go to its sink, all others to the stream it replaced."""

    def __init__(self, original: TextIO) -> None:
        self.original = original

    def write(self, text: str) -> int:
        lines = _sink.get()
        if lines is None:
            return self.original.write(text)
        lines.write(text)
        return len(text)

    def flush(self) -> None:
        if _sink.get() is None:
            self.original.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.original, name)


_router: _StdoutRouter | None = None
_routed: int = 0
_router_lock = threading.Lock()


@contextmanager
def stdout_lines(sink: Callable[[str], None]) -> Iterator[None]:
    """Send what this context ``print``s to ``sink``, one call per line, for the block."""
    global _router, _routed
    with _router_lock:
        if _routed == 0 or _router is None or sys.stdout is not cast(Any, _router):
            _router = _StdoutRouter(sys.stdout)
            sys.stdout = cast(TextIO, _router)
        _routed += 1
    lines = _Lines(sink)
    token = _sink.set(lines)
    try:
        yield
    finally:
        _sink.reset(token)
        try:
            lines.close()
        finally:
            with _router_lock:
                _routed -= 1
                router = _router
                if _routed == 0 and router is not None:
                    if sys.stdout is cast(Any, router):  # else: replaced since; it passes through
                        sys.stdout = router.original
                    _router = None


# -- the run log -------------------------------------------------------------------------------

_handler: logging.Handler | None = None


def basic_config(level: int | str = "INFO", stream: IO[str] | None = None) -> logging.Handler:
    """Print taskloom's records at ``level`` or above on ``stream`` (default ``sys.stderr``)
    in Prefect's format (``FORMAT``); set the ``taskloom`` logger to ``level``. Calling it
    again replaces the handler it added before. Returns the handler."""
    global _handler
    logger = get_logger()
    if _handler is not None:
        logger.removeHandler(_handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(_FORMATTER)
    logger.addHandler(handler)
    logger.setLevel(level.upper() if isinstance(level, str) else level)
    _handler = handler
    return handler


# -- the journal's log text --------------------------------------------------------------------

class _LineFormatter(logging.Formatter):
    """``logging.Formatter(FORMAT, DATEFMT)``, the same text at a third of the cost for a
    record without exception or stack (all but a few): its time formatted once per
    second, not once per record. The run log and the journal's log text format every
    record of a run; the scheduler's own lines alone are two per task."""

    def __init__(self) -> None:
        super().__init__(FORMAT, DATEFMT)
        #: The last second formatted and its text, one tuple: threads replace it whole.
        self._time: tuple[int, str] = (-1, "")

    def format(self, record: logging.LogRecord) -> str:
        """The record's line, as ``logging.Formatter`` makes it (and the same attributes set)."""
        if record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)
        second = int(record.created)
        cached = self._time
        if cached[0] != second:
            cached = self._time = (second, time.strftime(DATEFMT, self.converter(second)))
        asctime = cached[1]
        message = record.getMessage()
        # What ``logging.Formatter.format`` sets on a record (a log record's ``message``,
        # not a state's: the state-table test looks for assignments by that name).
        record.__dict__.update(asctime=asctime, message=message)
        return f"[{asctime}] {record.levelname} - {record.name} | {message}"


_FORMATTER = _LineFormatter()


class _TaskLog:
    """One task's kept log text: lines of its last attempt, up to the cap."""

    __slots__ = ("attempt", "lines", "size", "cut")

    def __init__(self, attempt: int) -> None:
        self.attempt = attempt
        self.lines: list[str] = []
        self.size = 0
        self.cut = 0

    def text(self) -> str:
        body = "\n".join(self.lines)
        if self.cut:
            body += f"\n... ({self.cut} records cut)"
        return body


class RunLogs(logging.Handler):
    """Keeps, per task of one flow run, the formatted records of its last attempt (see
    the module docstring). A record belongs to task ``key`` of the run when its
    ``task_run_id`` (stamped, or read from the emitting context) is ``<run id>.<key>.<n>``."""

    def __init__(self, run_id: str, cap: int = LOG_CAP) -> None:
        super().__init__()
        self.run_id = run_id
        self.cap = cap
        self._prefix = f"{run_id}."
        self._tasks: dict[int, _TaskLog] = {}
        # Per thread: threads that log at once (ThreadExecutor) interleave their records.
        self._last = threading.local()

    def emit(self, record: logging.LogRecord) -> None:
        """Keep ``record`` under its task when it belongs to this run (once: the handler is
        on two loggers, and a record propagating reaches it twice in a row in its thread)."""
        last = self._last
        if getattr(last, "record", None) is record:
            return
        last.record = record
        self._fallback(record)
        run_id = record.__dict__.get("task_run_id")
        if run_id is None:
            run_id = current().get("task_run_id")
        if not isinstance(run_id, str) or not run_id.startswith(self._prefix):
            return
        try:
            key_text, attempt_text = run_id[len(self._prefix):].split(".")
            key, attempt = int(key_text), int(attempt_text)
        except ValueError:
            return
        log = self._tasks.get(key)
        if log is None or attempt > log.attempt:
            log = self._tasks[key] = _TaskLog(attempt)
        elif attempt < log.attempt:
            return
        if log.cut:
            log.cut += 1
            return
        line = _FORMATTER.format(record)
        if log.size + len(line) + 1 > self.cap:
            log.cut += 1
            return
        log.lines.append(line)
        log.size += len(line) + 1

    def _fallback(self, record: logging.LogRecord) -> None:
        """Do what ``logging.lastResort`` would have done, had this handler not been there."""
        last = logging.lastResort
        if last is None or record.levelno < last.level:
            return
        logger: logging.Logger | None = logging.getLogger(record.name)
        while logger is not None:
            if any(h is not self for h in logger.handlers):
                return
            logger = logger.parent if logger.propagate else None
        last.handle(record)

    def texts(self) -> Mapping[int, str]:
        """The kept text of each task that logged, by task number."""
        return {key: log.text() for key, log in self._tasks.items()}

    def attach(self) -> None:
        """Start keeping this run's records: a handler on the root logger, and on
        ``taskloom`` if it does not propagate (the command line's run log) now."""
        logging.getLogger().addHandler(self)
        taskloom = get_logger()
        if not taskloom.propagate:
            # On both, a record of taskloom's would reach it twice when it propagates.
            taskloom.addHandler(self)

    def detach(self) -> None:
        """Stop keeping records (``attach`` undone)."""
        get_logger().removeHandler(self)  # nothing happens where it was not added
        logging.getLogger().removeHandler(self)

