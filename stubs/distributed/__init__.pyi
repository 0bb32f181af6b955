# Stubs for the names of Dask distributed (2024.1+) that taskloom, its tests and its
# benchmarks call; anything else is deliberately missing (a new use means a new stub line).
# distributed ships inline types, but most of its API is unannotated (an error under
# --strict) and analysing it costs mypy several seconds, so taskloom reads these instead.

from abc import ABCMeta
from collections.abc import Callable, Collection, Iterable, Mapping
from types import TracebackType
from typing import Any, Generic, Literal, TypeVar, overload

_T = TypeVar("_T")

__version__: str

class Future(Generic[_T]):
    key: str
    # Futures come from a Client; Dask's docs say not to construct them.
    def __init__(
        self, key: str, client: Client | None = None, state: Any = None, _id: Any = None
    ) -> None: ...
    @property
    def status(self) -> Literal["pending", "cancelled", "finished", "lost", "error"] | None: ...
    def done(self) -> bool: ...
    def result(self, timeout: float | None = None) -> _T: ...
    def exception(self, timeout: float | None = None, **kwargs: Any) -> BaseException | None: ...
    def add_done_callback(self, fn: Callable[[Future[_T]], object]) -> None: ...
    def cancel(self, reason: str | None = None, msg: str | None = None, **kwargs: Any) -> None: ...
    def release(self) -> None: ...

class Client:
    status: str
    def __init__(
        self,
        address: str | LocalCluster | None = None,
        loop: Any = None,
        timeout: float | str = ...,
        set_as_default: bool = True,
        scheduler_file: str | None = None,
        security: Any = None,
        asynchronous: bool = False,
        name: str | None = None,
        heartbeat_interval: float | str | None = None,
        serializers: Any = None,
        deserializers: Any = None,
        extensions: Mapping[str, Any] = ...,
        direct_to_workers: bool | None = None,
        connection_limit: int = 512,
        **kwargs: Any,
    ) -> None: ...
    def __enter__(self) -> Client: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...
    def submit(
        self,
        func: Callable[..., _T],
        *args: Any,
        key: str | None = None,
        workers: Any = None,
        resources: Any = None,
        retries: int | None = None,
        priority: int = 0,
        fifo_timeout: str | float = "100 ms",
        allow_other_workers: bool = False,
        actor: bool = False,
        actors: bool = False,
        pure: bool = True,
        **kwargs: Any,
    ) -> Future[_T]: ...
    def map(
        self,
        func: Callable[..., _T],
        *iterables: Collection[Any],
        key: str | list[str] | None = None,
        workers: str | Iterable[str] | None = None,
        retries: int | None = None,
        resources: dict[str, Any] | None = None,
        priority: int = 0,
        allow_other_workers: bool = False,
        fifo_timeout: str = "100 ms",
        actor: bool = False,
        actors: bool = False,
        pure: bool = True,
        batch_size: int | None = None,
        **kwargs: Any,
    ) -> list[Future[_T]]: ...
    @overload
    def gather(
        self,
        futures: Future[_T],
        errors: Literal["raise", "skip"] = "raise",
        direct: bool | None = None,
        asynchronous: bool | None = None,
    ) -> _T: ...
    @overload
    def gather(
        self,
        futures: list[Future[_T]],
        errors: Literal["raise", "skip"] = "raise",
        direct: bool | None = None,
        asynchronous: bool | None = None,
    ) -> list[_T]: ...
    def scatter(
        self,
        data: dict[str, _T],
        workers: Iterable[str] | str | None = None,
        broadcast: bool = False,
        direct: bool | None = None,
        hash: bool = True,
        timeout: float | str = ...,
        asynchronous: bool | None = None,
    ) -> dict[str, Future[_T]]: ...
    def cancel(
        self,
        futures: Iterable[Future[Any]],
        asynchronous: bool | None = None,
        force: bool = False,
        reason: str | None = None,
        msg: str | None = None,
    ) -> None: ...
    def nthreads(self, workers: Iterable[str] | None = None, **kwargs: Any) -> dict[str, int]: ...
    def wait_for_workers(self, n_workers: int, timeout: float | None = None) -> None: ...
    def publish_dataset(
        self, *args: Any, name: str | None = None, override: bool = False, **kwargs: Any
    ) -> None: ...
    def get_dataset(self, name: list[str], default: Any = ..., **kwargs: Any) -> list[Any]: ...
    def unpublish_dataset(self, name: list[str], **kwargs: Any) -> None: ...
    def list_datasets(self, **kwargs: Any) -> tuple[str, ...]: ...
    def close(self, timeout: float | str = ...) -> None: ...
    def who_has(
        self, futures: Iterable[Future[Any]] | None = None, **kwargs: Any
    ) -> dict[str, tuple[str, ...]]: ...
    def run(self, function: Callable[..., _T], *args: Any, **kwargs: Any) -> dict[str, _T]: ...
    def scheduler_info(self, n_workers: int = 5, **kwargs: Any) -> dict[str, Any]: ...
    def processing(self, workers: Iterable[str] | None = None) -> dict[str, list[str]]: ...
    def restart_workers(
        self, workers: list[str], timeout: float | None = ..., raise_for_error: bool = True
    ) -> dict[str, str]: ...
    @property
    def scheduler(self) -> Any: ...

class LocalCluster:
    def __init__(
        self,
        name: str | None = None,
        n_workers: int | None = None,
        threads_per_worker: int | None = None,
        processes: bool | None = None,
        loop: Any = None,
        start: Any = None,
        host: str | None = None,
        ip: str | None = None,
        scheduler_port: int = 0,
        silence_logs: int | bool = ...,
        dashboard_address: str | None = ":8787",
        worker_dashboard_address: str | None = None,
        services: Any = None,
        worker_services: Any = None,
        service_kwargs: Any = None,
        asynchronous: bool = False,
        security: Any = None,
        protocol: str | None = None,
        blocked_handlers: Any = None,
        interface: str | None = None,
        worker_class: Any = None,
        scheduler_kwargs: Mapping[str, Any] | None = None,
        scheduler_sync_interval: int = 1,
        **worker_kwargs: Any,
    ) -> None: ...
    @property
    def scheduler_address(self) -> str: ...
    def close(self, timeout: float | None = None) -> None: ...
    def __enter__(self) -> LocalCluster: ...
    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None: ...

class Worker(metaclass=ABCMeta):
    # Only what a task reads of the worker running it (get_worker()); never constructed.
    @property
    def address(self) -> str: ...
    @property
    def nanny(self) -> str | None: ...

class KilledWorker(Exception):
    def __init__(self, task: str, last_worker: Any, allowed_failures: int) -> None: ...
    @property
    def task(self) -> str: ...
    @property
    def allowed_failures(self) -> int: ...

def get_client(
    address: str | None = None, timeout: float | str | None = None, resolve_address: bool = True
) -> Client: ...
def get_worker() -> Worker: ...
