# loky's Future: concurrent.futures.Future with a different callback invocation.
from concurrent.futures import Future as _BaseFuture
from typing import TypeVar

_T = TypeVar("_T")

class Future(_BaseFuture[_T]): ...
