# Hand-written stub for loky.process_executor (loky 3.7): only the names taskloom uses.
import concurrent.futures.process
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from multiprocessing.context import BaseContext
from typing import Any, ParamSpec, TypeVar, TypeVarTuple, Unpack, overload

from ._base import Future

_P = ParamSpec("_P")
_T = TypeVar("_T")
_Ts = TypeVarTuple("_Ts")

# A reducer turns an object into a `__reduce__`-style tuple; loky installs the mapping
# in the pickler's dispatch table (it only calls `.items()` on it).
_Reducers = Mapping[type[Any], Callable[[Any], Any]]

class BrokenProcessPool(concurrent.futures.process.BrokenProcessPool): ...
class TerminatedWorkerError(BrokenProcessPool): ...
class ShutdownExecutorError(RuntimeError): ...

class ProcessPoolExecutor(Executor):
    # The three overloads (typeshed's pattern for concurrent.futures.ProcessPoolExecutor)
    # tie `initargs` to the parameters of `initializer`.
    @overload
    def __init__(
        self,
        max_workers: int | None = None,
        job_reducers: _Reducers | None = None,
        result_reducers: _Reducers | None = None,
        timeout: float | None = None,
        context: BaseContext | None = None,
        initializer: Callable[[], object] | None = None,
        initargs: tuple[()] = (),
        env: Mapping[str, str] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self,
        max_workers: int | None = None,
        job_reducers: _Reducers | None = None,
        result_reducers: _Reducers | None = None,
        timeout: float | None = None,
        context: BaseContext | None = None,
        *,
        initializer: Callable[[Unpack[_Ts]], object],
        initargs: tuple[Unpack[_Ts]],
        env: Mapping[str, str] | None = None,
    ) -> None: ...
    @overload
    def __init__(
        self,
        max_workers: int | None,
        job_reducers: _Reducers | None,
        result_reducers: _Reducers | None,
        timeout: float | None,
        context: BaseContext | None,
        initializer: Callable[[Unpack[_Ts]], object],
        initargs: tuple[Unpack[_Ts]],
        env: Mapping[str, str] | None = None,
    ) -> None: ...
    # Unlike the stdlib's, loky's `fn` is not positional-only, so a call can never pass a
    # keyword argument named `fn` through to the function (at run time that is a TypeError,
    # "got multiple values for argument 'fn'"); mypy rightly calls that an incompatible
    # override of Executor.submit. The stub keeps the real signature.
    def submit(  # type: ignore[override]
        self, fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs
    ) -> Future[_T]: ...
    # loky replaces the stdlib's keyword-only `cancel_futures` with a positional
    # `kill_workers`, so this is not a compatible override of Executor.shutdown: code that
    # calls `shutdown(cancel_futures=...)` through an `Executor` would fail on loky.
    def shutdown(self, wait: bool = True, kill_workers: bool = False) -> None: ...  # type: ignore[override]
