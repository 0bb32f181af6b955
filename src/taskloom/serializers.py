"""Serializers: how a result (``taskloom.results``) turns a task's value into bytes and back.

A serializer is any object with ``serialize(value) -> bytes`` and ``deserialize(bytes)``
(the ``Serializer`` protocol). Three ship:

- ``PickleSerializer`` (the default): the standard ``pickle``, and ``cloudpickle`` for what
  plain pickle cannot take (a lambda, a class defined in ``__main__`` or in a function);
  either is read back by ``pickle.loads``. Loading a pickle runs code: read only results
  you wrote (the default results directory is private to you, as the taskloom home is).
- ``JSONSerializer``: ``json``, for values other programs read (dicts, lists, strings,
  numbers, booleans, None).
- ``ParquetSerializer``: a pandas ``DataFrame`` as Parquet (the ``parquet`` extra: pandas
  and pyarrow, imported when first used).

A value a serializer cannot take raises ``SerializationError`` naming the serializer and
the value's type, before anything is written.

>>> JSONSerializer().deserialize(JSONSerializer().serialize({"a": [1, 2]}))
{'a': [1, 2]}
"""

from __future__ import annotations

import importlib
import io
import json
import pickle
from typing import Any, Protocol

import cloudpickle

from .errors import SerializationError

__all__ = ["JSONSerializer", "ParquetSerializer", "PickleSerializer", "Serializer"]


class Serializer(Protocol):
    """Turns values into bytes and back (see the module docstring)."""

    def serialize(self, value: Any) -> bytes:
        """The bytes of ``value``; ``SerializationError`` if this serializer cannot take it."""
        ...

    def deserialize(self, data: bytes) -> Any:
        """The value ``serialize`` made ``data`` from; raises if ``data`` is not such bytes."""
        ...


def _refused(serializer: object, value: object, error: BaseException) -> SerializationError:
    return SerializationError(
        f"{type(serializer).__name__} cannot serialize a {type(value).__qualname__}: {error!r}"
    )


class _Named:
    """Serializers compare equal by type (and repr as their class), as in Prefect."""

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class PickleSerializer(_Named):
    """``pickle``, with ``cloudpickle`` for what plain pickle cannot take (the default)."""

    def serialize(self, value: Any) -> bytes:
        """The pickle of ``value`` (cloudpickle's when plain pickle refuses it)."""
        try:
            return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception:
            pass
        try:
            return cloudpickle.dumps(value)
        except Exception as error:
            raise _refused(self, value, error) from error

    def deserialize(self, data: bytes) -> Any:
        """The value pickled in ``data``."""
        return pickle.loads(data)


class JSONSerializer(_Named):
    """``json`` (UTF-8): for dicts, lists, strings, numbers, booleans and None."""

    def serialize(self, value: Any) -> bytes:
        """``value`` as JSON text, UTF-8 encoded."""
        try:
            return json.dumps(value).encode("utf-8")
        except (TypeError, ValueError) as error:
            raise _refused(self, value, error) from error

    def deserialize(self, data: bytes) -> Any:
        """The value the JSON text in ``data`` holds."""
        return json.loads(data.decode("utf-8"))


def _pandas() -> Any:
    try:
        # pandas ships no types; the two calls made here take and give plain values
        pandas = importlib.import_module("pandas")
    except ImportError:
        raise ImportError(
            "ParquetSerializer needs pandas and pyarrow: from the taskloom clone, "
            'pip install -e ".[parquet]"'
        ) from None
    return pandas


class ParquetSerializer(_Named):
    """A pandas ``DataFrame`` as Parquet (needs the ``parquet`` extra: pandas, pyarrow)."""

    def serialize(self, value: Any) -> bytes:
        """The Parquet bytes of the DataFrame ``value``."""
        pandas = _pandas()
        if not isinstance(value, pandas.DataFrame):
            raise _refused(self, value, TypeError("it takes a pandas DataFrame"))
        buffer = io.BytesIO()
        try:
            value.to_parquet(buffer)
        except Exception as error:
            raise _refused(self, value, error) from error
        return buffer.getvalue()

    def deserialize(self, data: bytes) -> Any:
        """The DataFrame stored in the Parquet bytes ``data``."""
        return _pandas().read_parquet(io.BytesIO(data))
