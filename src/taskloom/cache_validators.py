"""Cache validators: whether a cached result may serve the current run.

A validator is any callable ``(state: Cached, inputs, parameters) -> bool`` (see
``CacheValidator``). The engine calls it, in the parent process, with a candidate ``Cached``
state from the cache store, the task's current inputs and the flow run's parameters.
Every stock validator except ``never_use`` also checks that the result has not expired.

    @task(cache_for=timedelta(hours=1), cache_validator=cache_validators.all_inputs)
    def load(path: str) -> bytes: ...

Inputs are compared by a deterministic hash (``hashed_inputs`` on the state), the same in
every process, so a result cached by one process is valid in another.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from ._hashing import UnhashableInputError, hash_value
from .states import Cached

__all__ = [
    "CacheValidator",
    "all_inputs",
    "all_parameters",
    "duration_only",
    "never_use",
    "partial_inputs_only",
    "partial_parameters_only",
]


class CacheValidator(Protocol):
    """What a cache validator is: a callable that accepts or rejects a cached state."""

    def __call__(
        self, state: Cached[Any], inputs: Mapping[str, Any], parameters: Mapping[str, Any], /
    ) -> bool: ...


def never_use(
    state: Cached[Any], inputs: Mapping[str, Any], parameters: Mapping[str, Any], /
) -> bool:
    """Never reuse a cached result."""
    return False


def duration_only(
    state: Cached[Any], inputs: Mapping[str, Any], parameters: Mapping[str, Any], /
) -> bool:
    """Reuse the result until it expires (``cache_for`` after it was computed). The default."""
    expiration = state.cached_result_expiration
    return expiration is None or expiration > _dt.datetime.now(_dt.timezone.utc)


def _inputs_match(state: Cached[Any], inputs: Mapping[str, Any], keys: Iterable[str]) -> bool:
    stored = state.hashed_inputs
    for key in keys:
        if key not in inputs:
            if key in stored:
                return False
            continue  # missing on both sides: equal
        try:
            if stored.get(key) != hash_value(inputs[key]):
                return False
        except UnhashableInputError:
            return False  # cannot prove equal: recompute
    return True


def all_inputs(
    state: Cached[Any], inputs: Mapping[str, Any], parameters: Mapping[str, Any], /
) -> bool:
    """Reuse the result while it is fresh and every input equals the one it was computed from."""
    return (
        duration_only(state, inputs, parameters)
        and set(state.hashed_inputs) == set(inputs)
        and _inputs_match(state, inputs, inputs)
    )


def all_parameters(
    state: Cached[Any], inputs: Mapping[str, Any], parameters: Mapping[str, Any], /
) -> bool:
    """Reuse the result while it is fresh and the flow's parameters are all unchanged."""
    return duration_only(state, inputs, parameters) and dict(state.cached_parameters) == dict(
        parameters
    )


def partial_inputs_only(validate_on: Iterable[str] | None = None) -> CacheValidator:
    """Reuse the result while it is fresh and the inputs named in ``validate_on`` are unchanged.

    ``validate_on=None`` checks the duration only.
    """
    keys = None if validate_on is None else _names("partial_inputs_only", validate_on)

    def partial_inputs_only(
        state: Cached[Any], inputs: Mapping[str, Any], parameters: Mapping[str, Any], /
    ) -> bool:
        return duration_only(state, inputs, parameters) and (
            keys is None or _inputs_match(state, inputs, keys)
        )

    return partial_inputs_only


def partial_parameters_only(validate_on: Iterable[str] | None = None) -> CacheValidator:
    """Reuse the result while it is fresh and the parameters named in ``validate_on`` are unchanged.

    ``validate_on=None`` checks the duration only.
    """
    keys = None if validate_on is None else _names("partial_parameters_only", validate_on)

    def partial_parameters_only(
        state: Cached[Any], inputs: Mapping[str, Any], parameters: Mapping[str, Any], /
    ) -> bool:
        if not duration_only(state, inputs, parameters):
            return False
        if keys is None:
            return True
        cached = state.cached_parameters
        missing = object()
        return all(cached.get(k, missing) == parameters.get(k, missing) for k in keys)

    return partial_parameters_only


def _names(validator: str, validate_on: Iterable[str]) -> tuple[str, ...]:
    if isinstance(validate_on, str):
        raise TypeError(
            f"{validator}(validate_on={validate_on!r}): pass a list of names, "
            f"e.g. validate_on=[{validate_on!r}]"
        )
    return tuple(validate_on)
