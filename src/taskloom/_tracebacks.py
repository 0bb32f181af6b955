"""A failed task's traceback as text, with the real file names of the user's code.

A task's exception is formatted where its failure is decided: in the worker (loky, Dask),
which keeps the text as a note on the exception (``executors._worker.note_traceback``:
tracebacks do not pickle, notes do), or in the calling process (local executor). The
scheduler keeps it on the task's trace (``TaskTrace.traceback``) for the journal, and
``taskloom show RUN --task NAME`` prints it.

Real file names on loky and Dask: the tasks of a flow file (and of ``__main__``) travel
pickled *by value*, and cloudpickle (3.1) replaces the ``co_filename`` of every code object
it pickles by value with ``"<dynamic-code>"``, so the worker's frames read
``File "<dynamic-code>", line 5, in parse``, with no source line. It keeps the line numbers
(``co_firstlineno`` and the line table) and the module's ``__file__`` in the function's
globals, so a frame whose file is ``<dynamic-code>`` is mapped back to
``frame.f_globals["__file__"]``, and its source line read with ``linecache`` from that file
(present when the worker runs on the same machine, or the file is at the same path).

A traceback also keeps its frames, and through them its callers' (``release_frames``
lets a run's go once the run ends).
"""

from __future__ import annotations

import linecache
import os
import traceback
from collections.abc import Iterable
from pathlib import Path
from types import FrameType, TracebackType

from .states import StandInError, State

__all__ = [
    "NOTE_PREFIX", "failure_traceback", "format_error", "format_frames", "release_frames",
]

#: How the worker's note starts (``executors._worker.note_traceback``).
NOTE_PREFIX = "Traceback in worker process "

_DYNAMIC = "<dynamic-code>"
#: taskloom's own directory, resolved and as imported: a symlinked install names its code's
#: files by the path it was imported from.
_PACKAGE: tuple[str, ...] = tuple({
    str(Path(__file__).resolve().parent) + os.sep,
    os.path.dirname(os.path.abspath(__file__)) + os.sep,
})  # fmt: skip
_HEADER = "Traceback (most recent call last):\n"


def _frames(tb: TracebackType | None) -> list[traceback.FrameSummary]:
    """The frames of ``tb``, file names mapped back from ``<dynamic-code>``, taskloom's own
    leading frames (the attempt calling the task) left out."""
    summaries: list[traceback.FrameSummary] = []
    for frame, lineno in traceback.walk_tb(tb):
        code = frame.f_code
        filename = code.co_filename
        if filename == _DYNAMIC:
            original = frame.f_globals.get("__file__")
            if isinstance(original, str):
                filename = original
        if not summaries and filename.startswith(_PACKAGE):
            continue  # taskloom calling the task: not the user's code
        line = linecache.getline(filename, lineno).strip() if lineno else ""
        summaries.append(traceback.FrameSummary(filename, lineno, code.co_name, line=line or None))
    return summaries


def format_frames(tb: TracebackType | None) -> str:
    """The frames of a traceback as ``traceback`` prints them (``File "...", line N, in f``
    and the source line), without the header or the exception line."""
    return "".join(traceback.StackSummary.from_list(_frames(tb)).format()).rstrip()


def _exception_lines(error: BaseException) -> str:
    """``ValueError: message`` and the exception's notes, but the worker's traceback note."""
    notes = getattr(error, "__notes__", None)
    if not notes:
        return "".join(traceback.format_exception_only(error))
    try:
        error.__notes__ = [n for n in notes if not (isinstance(n, str) and n.startswith(NOTE_PREFIX))]
        return "".join(traceback.format_exception_only(error))
    finally:
        error.__notes__ = notes


def _worker_frames(error: BaseException) -> tuple[str, str] | None:
    """(``in worker process N``, the frames) from the worker's note, if it has one."""
    for note in getattr(error, "__notes__", None) or ():
        if isinstance(note, str) and note.startswith(NOTE_PREFIX):
            where, _, frames = note[len(NOTE_PREFIX):].partition(":\n")
            return where, frames
    return None


def _format(error: BaseException, depth: int = 0) -> str:
    text = ""
    if depth < 5:
        if error.__cause__ is not None:
            text = _format(error.__cause__, depth + 1) + (
                "\nThe above exception was the direct cause of the following exception:\n\n"
            )
        elif error.__context__ is not None and not error.__suppress_context__:
            text = _format(error.__context__, depth + 1) + (
                "\nDuring handling of the above exception, another exception occurred:\n\n"
            )
    if error.__traceback__ is not None:
        frames = format_frames(error.__traceback__)
        header = _HEADER
    else:
        worker = _worker_frames(error)
        frames = "" if worker is None else worker[1]
        header = _HEADER if worker is None else (
            f"Traceback (most recent call last, in worker process {worker[0]}):\n"
        )
    body = header + frames + "\n" if frames else ""
    return text + body + _exception_lines(error)


def failure_traceback(state: State[object]) -> str | None:
    """The traceback of a failed state's exception, as text (None if its result is not an
    exception); a ``StandInError`` (``RemoteTaskError``) gives the traceback it carries."""
    error = state.result
    if not isinstance(error, BaseException):
        return None
    if isinstance(error, StandInError):
        if error.remote_traceback:
            return error.remote_traceback.rstrip()
    return _format(error).rstrip()


def format_error(error: BaseException) -> str:
    """An exception and its traceback (and its causes') as ``traceback`` prints them, with
    the real file names (a worker's log record of a failure: ``_wire.flatten_record``)."""
    return _format(error).rstrip()


def release_frames(errors: Iterable[BaseException], caller: FrameType) -> None:
    """Drop the local variables of taskloom's own finished frames that the tracebacks of
    ``errors`` (and of their causes and contexts) reach, up to ``caller``, the still
    running frame of the run's entry point.

    An exception raised in the calling process (a task on ``LocalExecutor``, a trigger, a
    state handler) keeps its traceback, whose frames keep their callers', up to the
    scheduler's: a run's final states would keep the scheduler, and every record of the
    run, alive for as long as the caller holds one of them (``concurrent.futures`` drops
    its work item from its frame for the same reason). The user's frames keep their
    locals (a post-mortem debugger reads them); taskloom's keep their file, line and name,
    so the traceback prints as before.
    """
    seen: set[int] = set()
    pending = list(errors)
    while pending:
        error = pending.pop()
        if id(error) in seen:
            continue
        seen.add(id(error))
        tb = error.__traceback__
        while tb is not None:
            frame: FrameType | None = tb.tb_frame
            while frame is not None and frame is not caller and id(frame) not in seen:
                seen.add(id(frame))
                if frame.f_code.co_filename.startswith(_PACKAGE):
                    try:
                        frame.clear()
                    except RuntimeError:  # still running (another thread's): it keeps them
                        pass
                frame = frame.f_back
            tb = tb.tb_next
        pending.extend(e for e in (error.__cause__, error.__context__) if e is not None)
        if isinstance(error, BaseExceptionGroup):
            pending.extend(error.exceptions)
