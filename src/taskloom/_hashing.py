"""Deterministic hashes of task inputs, equal in every process and on every run.

cloudpickle bytes are not stable (they embed memory layout and set order varies with hash
randomisation), so values are encoded canonically: containers recursively, sets and dicts
in a sorted order, and other objects through their ``__dict__`` or, as a last resort, the
standard pickle.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import decimal
import enum
import hashlib
import pathlib
import pickle
import uuid
from collections.abc import Mapping
from typing import Any

__all__ = ["UnhashableInputError", "hash_inputs", "hash_value"]


class UnhashableInputError(TypeError):
    """An input could not be hashed for cache validation."""


_SIMPLE = (_dt.datetime, _dt.date, _dt.time, _dt.timedelta, decimal.Decimal, uuid.UUID, pathlib.PurePath)


def _encode(value: Any, out: list[bytes], depth: int = 0) -> None:
    if depth > 100:
        raise UnhashableInputError("nested more than 100 levels deep (a cycle?)")
    kind = type(value)
    if value is None or kind is bool:
        out.append(b"c" + repr(value).encode())
    elif kind is int or kind is float or kind is complex:
        out.append(kind.__name__.encode() + b":" + repr(value).encode() + b";")
    elif kind is str:
        data = value.encode("utf-8", "surrogatepass")
        out.append(b"s%d:" % len(data) + data)
    elif kind is bytes or kind is bytearray or kind is memoryview:
        data = bytes(value)
        out.append(b"b%d:" % len(data) + data)
    elif isinstance(value, (list, tuple)):
        out.append(b"%s%d[" % (type(value).__qualname__.encode(), len(value)))
        for item in value:
            _encode(item, out, depth + 1)
        out.append(b"]")
    elif isinstance(value, Mapping):
        items = sorted((hash_value(k), hash_value(v)) for k, v in value.items())
        out.append(b"m%d{" % len(items) + "".join(k + v for k, v in items).encode() + b"}")
    elif isinstance(value, (set, frozenset)):
        members = sorted(hash_value(item) for item in value)
        out.append(b"S%d{" % len(members) + "".join(members).encode() + b"}")
    elif isinstance(value, enum.Enum):
        out.append(f"e{kind.__module__}.{kind.__qualname__}.{value.name};".encode())
    elif isinstance(value, _SIMPLE):
        out.append(f"r{kind.__module__}.{kind.__qualname__}:{value!r};".encode())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        out.append(f"d{kind.__module__}.{kind.__qualname__}(".encode())
        for field in dataclasses.fields(value):
            out.append(field.name.encode() + b"=")
            _encode(getattr(value, field.name), out, depth + 1)
        out.append(b")")
    elif hasattr(value, "tobytes") and hasattr(value, "dtype") and hasattr(value, "shape"):
        # numpy-like arrays: their pickle is stable, but this is cheaper and exact.
        out.append(f"a{kind.__qualname__}{value.dtype}{value.shape}".encode())
        out.append(value.tobytes())
    elif type(getattr(value, "__dict__", None)) is dict and not callable(value):
        out.append(f"o{kind.__module__}.{kind.__qualname__}(".encode())
        _encode(value.__dict__, out, depth + 1)
        out.append(b")")
    else:
        try:
            out.append(b"p" + pickle.dumps(value, protocol=4))
        except Exception as error:
            raise UnhashableInputError(
                f"cannot hash a value of type {kind.__qualname__}: {error}"
            ) from error


def hash_value(value: Any) -> str:
    """A hex digest of ``value`` that is equal for equal values in any process."""
    parts: list[bytes] = []
    _encode(value, parts)
    return hashlib.blake2b(b"".join(parts), digest_size=16).hexdigest()


def hash_inputs(inputs: Mapping[str, Any]) -> dict[str, str]:
    """``hash_value`` of each input, by name."""
    return {key: hash_value(value) for key, value in inputs.items()}
