"""``DaskExecutor``: runs tasks on Dask distributed (not built yet)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .base import TaskResult, TaskRun

__all__ = ["DaskExecutor"]


class DaskExecutor:
    """Run tasks on Dask distributed: a local cluster, or the scheduler at ``address``.

    Not available yet: constructing it raises ``NotImplementedError``.
    """

    def __init__(self, address: str | None = None, **cluster_kwargs: Any) -> None:
        raise NotImplementedError(
            "DaskExecutor is not available yet; use LokyExecutor for parallel runs on one machine"
        )

    def begin(self, run_context: Mapping[str, Any]) -> None:  # pragma: no cover
        raise NotImplementedError

    def submit(self, runs: Sequence[TaskRun]) -> None:  # pragma: no cover
        raise NotImplementedError

    def collect(self, timeout: float | None) -> list[TaskResult]:  # pragma: no cover
        raise NotImplementedError

    def end(self) -> None:  # pragma: no cover
        raise NotImplementedError
