"""Finding a flow from a command line: ``path/to/file.py:name`` or ``package.module:name``.

The flow it returns remembers where it came from (``flow.source``, absolute for files), so
the run journal can find it again for ``taskloom resume`` in another process.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path

import cloudpickle

from .errors import TaskloomError
from .flow import Flow

__all__ = ["FlowNotFoundError", "load_flow"]


class FlowNotFoundError(TaskloomError, LookupError):
    """The file, module or flow a spec names does not exist, or is not a Flow."""


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
    """
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
