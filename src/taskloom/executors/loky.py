"""``LokyExecutor``: runs tasks on Dask distributed (not built yet)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from .base import TaskResult, TaskRun

__all__ = ["LokyExecutor"]


class LokyExecutor:
    """Run tasks on a loky process pool of ``max_workers`` processes.

    Not available yet: constructing it raises ``NotImplementedError``.
    """

    def __init__(self, max_workers: int | None = None) -> None:
        raise NotImplementedError(
            "LokyExecutor is not available yet"
        )

    def begin(self, run_context: Mapping[str, Any]) -> None:  # pragma: no cover
        raise NotImplementedError

    def submit(self, runs: Sequence[TaskRun]) -> None:  # pragma: no cover
        raise NotImplementedError

    def collect(self, timeout: float | None) -> list[TaskResult]:  # pragma: no cover
        raise NotImplementedError

    def end(self) -> None:  # pragma: no cover
        raise NotImplementedError
