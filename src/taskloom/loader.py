"""Finding a flow from a command line: ``path/to/file.py:name`` or ``package.module:name``.

The flow it returns remembers where it came from (``flow.source``, absolute for files), so
the run journal can find it again for ``taskloom resume`` in another process.

A file or module that fails while it is loaded (a syntax error, an exception raised by its
code) is a ``FlowLoadError`` whose message is the user's side of it only: for a syntax
error the file, line and a caret under the place, as Python prints it; for an exception
the frames of the user's code (taskloom's and the import machinery's left out). The
original exception is its ``__cause__``, for a whole traceback.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
import traceback
from pathlib import Path

import cloudpickle

from .errors import TaskloomError
from .flow import Flow

__all__ = ["FlowLoadError", "FlowNotFoundError", "load_flow"]


class FlowNotFoundError(TaskloomError, LookupError):
    """The file, module or flow a spec names does not exist, or is not a Flow."""


class FlowLoadError(FlowNotFoundError):
    """The file or module a spec names raised while it was loaded (a syntax error, or an
    exception from its code): the message says where in the user's code; the exception
    itself is ``__cause__``."""


#: Where frames are not the user's: taskloom itself and Python's import machinery.
_INTERNAL = (str(Path(__file__).resolve().parent), "<frozen ")


def where_it_broke(error: BaseException) -> str:
    """``error`` and where in the user's code it came from, as Python prints it but
    without taskloom's frames: a syntax error's file, line and a caret under the place;
    else every frame outside taskloom and the import machinery."""
    text = f"{type(error).__name__}: {error.msg if isinstance(error, SyntaxError) else error}"
    if isinstance(error, SyntaxError):
        text += f'\n  File "{error.filename}", line {error.lineno}'
        if error.text:
            line = error.text.rstrip("\n")
            stripped = line.lstrip()
            text += f"\n    {stripped}"
            if error.offset:
                caret = max(0, error.offset - 1 - (len(line) - len(stripped)))
                text += "\n    " + " " * caret + "^"
        return text
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.filename.startswith(_INTERNAL):
            continue
        text += f'\n  File "{frame.filename}", line {frame.lineno}, in {frame.name}'
        if frame.line:
            text += f"\n    {frame.line}"
    return text


def _module_from_file(path: Path) -> object:
    # One stable module name per file, so that a resumed run (a new process) gives classes
    # and functions of the file the same qualified names as the run it resumes.
    digest = hashlib.blake2b(str(path).encode(), digest_size=6).hexdigest()
    name = f"taskloom_flow_{path.stem}_{digest}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise FlowNotFoundError(f"cannot load {path} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    # Worker processes cannot import this made-up module name: send what the file
    # defines (tasks, the helpers they call, its classes) by value.
    cloudpickle.register_pickle_by_value(module)
    sys.path.insert(0, str(path.parent))  # so the file can import its neighbours
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


def load_flow(spec: str) -> Flow:
    """The flow named by ``spec`` (``file.py:name`` or ``package.module:name``).

    Raises:
        FlowNotFoundError: with a message naming the file, module or attribute.
        FlowLoadError: the file or module raised while loading (``where_it_broke``).
    """
    try:
        return _load(spec)
    except FlowNotFoundError:
        raise
    except Exception as error:
        raise FlowLoadError(f"loading {spec} failed: {where_it_broke(error)}") from error


def _load(spec: str) -> Flow:
    where, sep, attribute = spec.rpartition(":")
    if not sep or not where or not attribute:
        raise FlowNotFoundError(
            f"{spec!r} does not name a flow: use FILE.py:FLOW or package.module:FLOW"
        )
    if where.endswith(".py") or "/" in where or "\\" in where:
        path = Path(where).expanduser().resolve()
        if not path.is_file():
            raise FlowNotFoundError(f"no such file: {where}")
        module = _module_from_file(path)
        source = f"{path}:{attribute}"
    else:
        try:
            module = importlib.import_module(where)
        except ModuleNotFoundError as error:
            raise FlowNotFoundError(f"cannot import module {where!r}: {error}") from None
        source = spec
    flow = getattr(module, attribute, None)
    if not isinstance(flow, Flow):
        kind = "nothing" if flow is None else f"a {type(flow).__name__}"
        flows = sorted(n for n, v in vars(module).items() if isinstance(v, Flow))
        hint = f"; flows there: {', '.join(flows)}" if flows else ""
        raise FlowNotFoundError(f"{where}:{attribute} is {kind}, not a Flow{hint}")
    flow.source = source
    return flow
