"""Watching a run as it goes: the ``RunObserver`` hook, and progress displays.

The scheduler tells an observer when a run starts, each time a task changes state
(handed to the executor: ``Running``; then its final state, ``Retrying`` or ``Paused``),
and when the run ends. Pass your own ``RunObserver`` to ``flow.run(progress=...)`` to
feed a dashboard or a log; ``flow.run(progress=True)`` uses ``default_progress()``:

- ``RichProgress`` on a terminal when rich is installed (``pip install -e ".[progress]"`` from the clone):
  a live display, redrawn in place, of tasks done out of the total, counts by state, the
  tasks running now and the elapsed time. While it runs, log records (including those of
  task code in worker processes) and ``print`` output are printed above it, never into it.
- ``TerminalProgress`` otherwise (a log file, CI, or no rich): a plain line every few
  seconds and one at the end; no escape codes.

What the counts mean: a task is "done" when it is in a final state, including those a
resumed run starts with (the scheduler reports them at the start). The scheduler reports a
task ``Running`` when it hands it to the executor, which may hold it until a worker is
free; an observer that has a ``slots_known(n)`` method is told how many tasks the
executor runs at once, and the displays then show at most that many as "running" and the
rest as "queued" (``running 2, queued 198``). Without it (an executor that does not say),
every task handed over is "running". A run that ends ``Paused`` ends with a pause mark and
the command that resumes it, not as a failure.
"""

from __future__ import annotations

import atexit
import logging
import os
import sys
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from ._text import duration
from .states import Cached, Failed, Paused, Retrying, Running, Skipped, State, Success, by_name

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

__all__ = [
    "STATE_COLOURS",
    "RichProgress",
    "RunObserver",
    "TerminalProgress",
    "category",
    "category_of",
    "default_progress",
    "resume_command",
    "rich_available",
]


class RunObserver(Protocol):
    """What the scheduler reports to while a flow runs. Calls come from the thread that
    called ``flow.run``; keep them quick, they are on the scheduler's path."""

    def run_started(self, flow_name: str, run_id: str, total: int) -> None: ...

    def task_changed(self, key: int, task_name: str, state: State[Any]) -> None:
        """Task number ``key`` of the run (names repeat: copies of one task) is now in ``state``.

        The children of a mapped task are numbered after the flow's tasks, as they appear
        (each first reported ``Pending``), and named ``name[i]``."""

    def run_finished(self, state: State[Any]) -> None: ...

    # Optional, looked up with getattr (so an observer written without it still works):
    # ``slots_known(self, slots: int) -> None``, called right after ``run_started`` with
    # how many tasks the executor runs at once.


#: The progress bucket of each branch of the state hierarchy, most specific first: a state
#: is in the bucket of the first class it is an instance of, else "pending". A new state
#: class falls in its parent's bucket (a new kind of ``Failed`` is "failed").
_BUCKETS: tuple[tuple[type[State[Any]], str], ...] = (
    (Running, "running"),
    (Cached, "cached"),
    (Skipped, "skipped"),
    (Success, "succeeded"),
    (Failed, "failed"),
    (Retrying, "retrying"),
    (Paused, "paused"),
)


def _bucket(cls: type[State[Any]]) -> str:
    for klass, bucket in _BUCKETS:
        if issubclass(cls, klass):
            return bucket
    return "pending"


def category(state: State[Any]) -> str:
    """The progress bucket of a state: running, succeeded, failed, skipped, cached,
    retrying, paused, or pending (from its class: see ``_BUCKETS``)."""
    return _bucket(type(state))


def category_of(state_name: str) -> str:
    """``category`` for a state's class name, as the run journal records it (``"TimedOut"``
    is ``"failed"``); a name this version does not know is ``"pending"``."""
    try:
        return _bucket(by_name(state_name))
    except KeyError:
        return "pending"


#: The buckets in display order, and those of a task that is done.
_SHOWN = ("running", "succeeded", "failed", "skipped", "cached", "retrying", "paused")
_FINAL = ("succeeded", "failed", "skipped", "cached")


class _Tally:
    """Counts by bucket of the tasks of one run (shared by both displays)."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.where: dict[int, str] = {}
        self.names: dict[int, str] = {}
        self.total = 0
        self.flow = ""
        self.run_id = ""
        self.started = 0.0
        self.slots: int | None = None  # tasks the executor runs at once, when it says

    def start(self, flow_name: str, run_id: str, total: int) -> None:
        self.flow, self.run_id, self.total = flow_name, run_id, total
        self.counts.clear()
        self.where.clear()
        self.names.clear()
        self.slots = None
        self.started = time.monotonic()

    def change(self, key: int, task_name: str, state: State[Any]) -> None:
        if key >= self.total:  # a child of a mapped task: numbered after the flow's tasks
            self.total = key + 1
        bucket = category(state)
        previous = self.where.get(key)
        if previous is not None:
            self.counts[previous] -= 1
        self.where[key] = bucket
        self.names[key] = task_name
        self.counts[bucket] += 1

    @property
    def done(self) -> int:
        return sum(self.counts[b] for b in _FINAL)

    def parts(self) -> list[tuple[str, int]]:
        """The non-zero counts in display order; tasks handed to the executor beyond its
        slots are "queued", not "running" (when the slots are known)."""
        shown: list[tuple[str, int]] = []
        for name in _SHOWN:
            n = self.counts[name]
            if not n:
                continue
            if name == "running" and self.slots is not None and n > self.slots:
                shown += [("running", self.slots), ("queued", n - self.slots)]
            else:
                shown.append((name, n))
        return shown


class TerminalProgress:
    """Counts by state, tasks done out of the total, and elapsed time, as plain lines.

    It prints a line when the run starts to move, then at most one every ``every``
    seconds, and one at the end: no escape codes, so it reads the same in a terminal,
    a log file or CI. On a terminal, ``RichProgress`` draws a live display instead.
    """

    def __init__(self, stream: TextIO | None = None, every: float = 5.0) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.every = every
        self._tally = _Tally()
        self.shown: float | None = None  # when the last line was printed

    @property
    def counts(self) -> Counter[str]:
        """Tasks by bucket (see ``category``) right now."""
        return self._tally.counts

    @property
    def total(self) -> int:
        return self._tally.total

    def run_started(self, flow_name: str, run_id: str, total: int) -> None:
        self._tally.start(flow_name, run_id, total)
        self.shown = None

    def slots_known(self, slots: int) -> None:
        """The executor runs ``slots`` tasks at once: more handed over are "queued"."""
        self._tally.slots = max(1, slots)

    def task_changed(self, key: int, task_name: str, state: State[Any]) -> None:
        self._tally.change(key, task_name, state)
        now = time.monotonic()
        if self.shown is None or now - self.shown >= self.every:
            self._show(now)

    def run_finished(self, state: State[Any]) -> None:
        final = f"{type(state).__name__}: {state.message}"
        if isinstance(state, Paused):
            final += f" | to resume: {resume_command(self._tally.run_id)}"
        self._show(time.monotonic(), final=final)

    def line(self, now: float | None = None) -> str:
        """The progress line as it would be shown now."""
        tally = self._tally
        elapsed = (now if now is not None else time.monotonic()) - tally.started
        parts = ", ".join(f"{name} {n}" for name, n in tally.parts()) or "starting"
        return f"{tally.flow}: {tally.done}/{tally.total} done | {parts} | {duration(elapsed, coarse=True)}"

    def _show(self, now: float, final: str | None = None) -> None:
        self.shown = now
        self.stream.write(self.line(now) + (f" | {final}" if final else "") + "\n")
        self.stream.flush()


#: Colours of the buckets, shared by the terminal display, flow pictures and the report.
STATE_COLOURS = {
    "running": "#e0b400",
    "succeeded": "#2e9d5b",
    "failed": "#d64545",
    "skipped": "#9aa0a8",
    "cached": "#3a86c8",
    "retrying": "#e8871e",
    "paused": "#8e6bbf",
    "pending": "#c9ced6",
}
#: The colours of the progress counts: the buckets, and tasks waiting for a free worker.
_COUNT_COLOURS = {**STATE_COLOURS, "queued": "#8a94a6"}


def resume_command(run_id: str) -> str:
    """What to type to resume the paused run ``run_id``."""
    return f"taskloom resume {run_id}"


def rich_available() -> bool:
    """Whether rich (the ``progress`` extra) can be imported."""
    try:
        import rich.live  # noqa: F401
    except ImportError:
        return False
    return True


class _ConsoleWriter:
    """A text stream for a logging handler: whole lines are printed through the rich
    console, so they land above the live display instead of inside it."""

    def __init__(self, console: Console, original: Any) -> None:
        self.console = console
        self.original = original
        self._buffer: list[str] = []

    def write(self, text: str) -> int:
        from rich.text import Text

        *lines, rest = text.split("\n")
        if lines:
            lines[0] = "".join(self._buffer) + lines[0]
            self._buffer.clear()
            for line in lines:
                self.console.print(Text.from_ansi(line), soft_wrap=True)
        if rest:
            self._buffer.append(rest)
        return len(text)

    def flush(self) -> None:
        if self._buffer:
            self.write("\n")

    def isatty(self) -> bool:
        return bool(getattr(self.original, "isatty", lambda: False)())


class RichProgress:
    """A live display of the run in the terminal, drawn with rich (the ``progress`` extra).

    Shows a bar of tasks done out of the total, the counts by state (running, succeeded,
    failed, skipped, cached, retrying, paused), the tasks running now and the elapsed
    time, redrawn ``refresh_per_second`` times a second. When the run ends the last
    frame stays, followed by one summary line.

    While the display runs, every logging handler that writes to the terminal (stderr
    or stdout, such as ``logging.basicConfig``'s) prints through the rich console, and so
    do ``print`` and ``sys.stderr``: their lines appear above the display, whole. The
    handlers get their streams back when the run ends.

    If ``flow.run`` is interrupted the display is not told; use it as a context manager
    (``with RichProgress() as p: flow.run(progress=p)``) or call ``close()``. At worst it
    is closed when the interpreter exits, or when it watches another run.

    Args:
        console: where to draw (default: a console on ``stream``).
        stream: the stream of the default console (default: ``sys.stderr``).
        refresh_per_second: how often the display is redrawn.
        show_running: how many names of running tasks to list (copies of one task are
            counted: ``download ×4``).
        route_logging: print log records through the console while the display runs.
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        stream: TextIO | None = None,
        refresh_per_second: float = 8.0,
        show_running: int = 4,
        route_logging: bool = True,
    ) -> None:
        try:
            from rich.console import Console
        except ImportError as error:  # pragma: no cover - exercised without rich only
            raise ImportError(
                "RichProgress needs rich: pip install -e \".[progress]\" from taskloom's clone (or: pip install rich)"
            ) from error
        self.console = console if console is not None else Console(
            file=stream if stream is not None else sys.stderr
        )
        self.refresh_per_second = refresh_per_second
        self.show_running = show_running
        self.route_logging = route_logging
        self._tally = _Tally()
        self._lock = threading.Lock()
        self._live: Any = None
        self._swapped: list[tuple[logging.StreamHandler[Any], Any]] = []
        self._final: State[Any] | None = None

    @property
    def counts(self) -> Counter[str]:
        """Tasks by bucket (see ``category``) right now."""
        return self._tally.counts

    # -- the observer ---------------------------------------------------------------------------

    def run_started(self, flow_name: str, run_id: str, total: int) -> None:
        from rich.live import Live

        self.close()  # a display left over by an interrupted run
        with self._lock:
            self._tally.start(flow_name, run_id, total)
            self._final = None
        live = Live(
            console=self.console,
            get_renderable=self.renderable,
            refresh_per_second=self.refresh_per_second,
            transient=False,
        )
        if self.route_logging:
            self._route_logging()
        live.start()
        self._live = live
        atexit.register(self.close)

    def slots_known(self, slots: int) -> None:
        """The executor runs ``slots`` tasks at once: more handed over are "queued"."""
        with self._lock:
            self._tally.slots = max(1, slots)

    def task_changed(self, key: int, task_name: str, state: State[Any]) -> None:
        with self._lock:
            self._tally.change(key, task_name, state)

    def run_finished(self, state: State[Any]) -> None:
        with self._lock:
            self._final = state
        self.close()
        self.console.print(self.summary(state), soft_wrap=True)

    def close(self) -> None:
        """Stop the live display and give logging handlers their streams back (idempotent)."""
        live, self._live = self._live, None
        if live is None:
            return
        atexit.unregister(self.close)
        try:
            live.stop()
        finally:
            self._restore_logging()

    def __enter__(self) -> RichProgress:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- what is shown --------------------------------------------------------------------------

    def renderable(self) -> RenderableType:
        """The display as it would be drawn now."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        with self._lock:
            tally = self._tally
            done, total, parts = tally.done, tally.total, tally.parts()
            running = [tally.names[k] for k, b in tally.where.items() if b == "running"]
            final = self._final
        elapsed = duration(time.monotonic() - tally.started, coarse=True)
        failed = any(name == "failed" for name, _ in parts)
        head = Table.grid(padding=(0, 1))
        head.add_row(
            Spinner("dots", style="cyan") if final is None else Text("●", style="bold"),
            Text(tally.flow, style="bold"),
            ProgressBar(
                total=max(total, 1),
                completed=done,
                width=40,
                complete_style=STATE_COLOURS["failed" if failed else "succeeded"],
                finished_style=STATE_COLOURS["failed" if failed else "succeeded"],
            ),
            Text(f"{done}/{total} done", style="bold"),
            Text(elapsed, style="dim"),
        )
        counts = Text("  ")
        for name, n in parts or [("starting", 0)]:
            if name == "starting":
                counts.append("starting", style="dim")
                continue
            counts.append(f"{name} ", style=_COUNT_COLOURS[name])
            counts.append(f"{n}", style=f"bold {_COUNT_COLOURS[name]}")
            counts.append("   ")
        lines: list[RenderableType] = [head, counts]
        if running and final is None:
            names = Counter(running)
            shown = [f"{name} ×{n}" if n > 1 else name for name, n in names.items()]
            more = len(shown) - self.show_running
            now = Text("  now: ", style="dim")
            now.append(", ".join(shown[: self.show_running]), style=STATE_COLOURS["running"])
            if more > 0:
                now.append(f" and {more} more", style="dim")
            lines.append(now)
        return Group(*lines)

    def summary(self, state: State[Any]) -> RenderableType:
        """The line printed when the run ends."""
        from rich.text import Text

        tally = self._tally
        ok = state.is_successful()
        paused = isinstance(state, Paused)
        if paused:  # not a failure: waiting for a person
            text = Text("⏸ ", style=f"bold {STATE_COLOURS['paused']}")
        else:
            text = Text("✔ " if ok else "✘ ", style="bold green" if ok else "bold red")
        text.append(f"{tally.flow}: {type(state).__name__}", style="bold")
        if state.message:
            text.append(f" ({state.message})")
        text.append(f" - {tally.done}/{tally.total} done in {duration(time.monotonic() - tally.started, coarse=True)}")
        text.append(f" - run {tally.run_id}", style="dim")
        if paused:
            text.append(" - to resume: ")
            text.append(resume_command(tally.run_id), style="bold")
        return text

    # -- logging --------------------------------------------------------------------------------

    def _route_logging(self) -> None:
        terminal = {id(s) for s in (sys.stderr, sys.stdout, sys.__stderr__, sys.__stdout__, self.console.file)}
        loggers: list[logging.Logger] = [logging.getLogger()]
        loggers.extend(
            logger for logger in list(logging.Logger.manager.loggerDict.values())
            if isinstance(logger, logging.Logger)
        )
        seen: set[int] = set()
        for logger in loggers:
            for handler in list(logger.handlers):
                if (
                    isinstance(handler, logging.StreamHandler)
                    and not isinstance(handler, logging.FileHandler)
                    and id(handler) not in seen
                    and id(handler.stream) in terminal
                ):
                    seen.add(id(handler))
                    original = handler.setStream(_ConsoleWriter(self.console, handler.stream))
                    self._swapped.append((handler, original))

    def _restore_logging(self) -> None:
        swapped, self._swapped = self._swapped, []
        for handler, original in swapped:
            handler.setStream(original)


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty() and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


def default_progress(stream: TextIO | None = None) -> RunObserver:
    """The display ``flow.run(progress=True)`` uses: ``RichProgress`` when ``stream``
    (default ``sys.stderr``) is a terminal and rich is installed, else ``TerminalProgress``."""
    stream = stream if stream is not None else sys.stderr
    if _is_terminal(stream) and rich_available():
        return RichProgress(stream=stream)
    return TerminalProgress(stream)
