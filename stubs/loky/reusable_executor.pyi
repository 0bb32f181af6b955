# Hand-written stub for loky.reusable_executor (loky 3.7): complete for its public names.
from collections.abc import Callable, Mapping
from multiprocessing.context import BaseContext
from typing import Literal, TypeVarTuple, Unpack, overload

from .process_executor import ProcessPoolExecutor, _Reducers

__all__ = ["get_reusable_executor"]

_Ts = TypeVarTuple("_Ts")

# Returns this thread's reusable executor (a private ProcessPoolExecutor subclass),
# starting, replacing or resizing it as needed. `context` may be a start-method name
# ("loky", "spawn", ...; "fork" is refused) or a context object. The overloads tie
# `initargs` to the parameters of `initializer`, as in ProcessPoolExecutor.__init__.
@overload
def get_reusable_executor(
    max_workers: int | None = None,
    context: str | BaseContext | None = None,
    timeout: float | None = 10,
    kill_workers: bool = False,
    reuse: bool | Literal["auto"] = "auto",
    job_reducers: _Reducers | None = None,
    result_reducers: _Reducers | None = None,
    initializer: Callable[[], object] | None = None,
    initargs: tuple[()] = (),
    env: Mapping[str, str] | None = None,
) -> ProcessPoolExecutor: ...
@overload
def get_reusable_executor(
    max_workers: int | None = None,
    context: str | BaseContext | None = None,
    timeout: float | None = 10,
    kill_workers: bool = False,
    reuse: bool | Literal["auto"] = "auto",
    job_reducers: _Reducers | None = None,
    result_reducers: _Reducers | None = None,
    *,
    initializer: Callable[[Unpack[_Ts]], object],
    initargs: tuple[Unpack[_Ts]],
    env: Mapping[str, str] | None = None,
) -> ProcessPoolExecutor: ...
@overload
def get_reusable_executor(
    max_workers: int | None,
    context: str | BaseContext | None,
    timeout: float | None,
    kill_workers: bool,
    reuse: bool | Literal["auto"],
    job_reducers: _Reducers | None,
    result_reducers: _Reducers | None,
    initializer: Callable[[Unpack[_Ts]], object],
    initargs: tuple[Unpack[_Ts]],
    env: Mapping[str, str] | None = None,
) -> ProcessPoolExecutor: ...
