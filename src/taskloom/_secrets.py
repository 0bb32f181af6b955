"""Secret values: where a secret is read, and how its value is kept out of what taskloom
writes or shows.

Lookup. ``read_secret(name)`` reads a secret from the context's ``secrets`` mapping
(``flow.run(context={"secrets": {"NAME": value}})``), else the environment:
``TASKLOOM_SECRETS_<NAME>``, then Prefect's ``PREFECT__CONTEXT__SECRETS__<NAME>`` (so a
ported flow's environment works as it is). A missing secret is a ``MissingSecretError``
that names it and where it was looked for, never a value.

Keeping values out. A value is known as a secret when it is in the current context's
``secrets`` (every task of a run sees the run's, in every process: at run start the
scheduler puts there each ``Secret`` task's value too, ``run_secrets``) or when this
process saw it in a run (``remember``). Then:

- log records made while a secret is known have its value replaced by ``<secret NAME>``
  in their message and traceback text, when they are made (a log-record factory,
  ``mask_records``), so the same holds in worker processes, whose records travel back
  already masked;
- a state's repr, and the message of a state an attempt ends in, are masked (``mask``);
- the journal's rows of task outcomes have every string masked (``masked_rows``: the
  rows of a run at once, untouched at the cost of one check while no secret is known);
- the journal and the output cache check the pickled bytes of what they would store
  (``found_in``): a value that *is* a (string) secret is stored as a ``SecretRef`` (a
  resume reads the secret again, ``resolve``), anything else holding a secret's value is
  not stored (a part of a structured secret too: a reference would read the whole).

What cannot be caught: a value transformed beyond recognition (hashed, base64-encoded,
encrypted) is not the secret's text and is treated as ordinary data.

Layer: data (it reads only the context).
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Iterator, Mapping
from typing import Any, Final

import cloudpickle

from .context import current
from .errors import TaskloomError
from .states import set_repr_filter

__all__ = [
    "ENV_PREFIXES",
    "MissingSecretError",
    "SecretRef",
    "as_refs",
    "found_in",
    "holds_secret",
    "lookup",
    "mask",
    "mask_records",
    "masked_rows",
    "read_secret",
    "remember",
    "resolve",
    "run_secrets",
]

#: Where a secret is looked for in the environment, in order: ``<prefix><NAME>``.
ENV_PREFIXES: Final = ("TASKLOOM_SECRETS_", "PREFECT__CONTEXT__SECRETS__")

#: Secret values this process saw in a run, by value: the secret's name.
_known: dict[str, str] = {}
#: Of those, the values that are a whole secret (a string secret), not a part of one:
#: that secret's name.
_known_whole: dict[str, str] = {}
_known_lock = threading.Lock()


class MissingSecretError(TaskloomError, KeyError):
    """A secret that is neither in the context's ``secrets`` nor in the environment."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(
            f"secret {name!r} not found: put it in the context's secrets "
            f"(flow.run(context={{'secrets': {{{name!r}: ...}}}})) or set the environment "
            f"variable {ENV_PREFIXES[0]}{name} (or {ENV_PREFIXES[1]}{name})"
        )

    def __str__(self) -> str:
        # KeyError's str is the repr of its argument; this one is a sentence.
        return str(self.args[0])


_MISSING: Final = object()


def _context_secrets() -> Mapping[str, Any]:
    secrets = current().get("secrets")
    return secrets if isinstance(secrets, Mapping) else {}


def lookup(name: str) -> Any:
    """The secret ``name`` (context, then environment: see the module docstring), or None."""
    secrets = _context_secrets()
    if name in secrets and secrets[name] is not None:
        return secrets[name]
    for prefix in ENV_PREFIXES:
        value = os.environ.get(prefix + name)
        if value is not None:
            return value
    return None


def read_secret(name: str) -> Any:
    """The secret ``name``; ``MissingSecretError`` naming it when it is nowhere.

    >>> import taskloom
    >>> with taskloom.context(secrets={"TOKEN": "s3cr3t"}):
    ...     read_secret("TOKEN")
    's3cr3t'
    """
    value = lookup(name)
    if value is None:
        raise MissingSecretError(name)
    return value


def _strings(value: Any) -> Iterator[str]:
    """The non-empty strings of a secret's value (a string, or a JSON-like structure)."""
    if isinstance(value, str):
        if value:
            yield value
    elif isinstance(value, Mapping):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def _by_value(secrets: Mapping[str, Any]) -> dict[str, str]:
    return {text: str(name) for name, value in secrets.items() for text in _strings(value)}


def remember(secrets: Mapping[str, Any]) -> None:
    """Know these secrets' values in this process from now on (masked even after a run)."""
    found = _by_value(secrets)
    if found:
        with _known_lock:
            _known.update(found)
            _known_whole.update(_whole_values(secrets))


def run_secrets(given: object, names: list[str]) -> dict[str, Any]:
    """A run's ``context.secrets``: the mapping the caller gave, plus the environment's
    value of each secret in ``names`` (the flow's ``Secret`` tasks) it lacks; remembered.

    Raises ``TypeError`` when ``given`` is not a mapping."""
    if given is None:
        given = {}
    if not isinstance(given, Mapping):
        raise TypeError(
            f"context 'secrets' must be a mapping of secret names to values, "
            f"not a {type(given).__name__}"
        )
    secrets = dict(given)
    for name in names:
        if secrets.get(name) is None:
            for prefix in ENV_PREFIXES:
                value = os.environ.get(prefix + name)
                if value is not None:
                    secrets[name] = value
                    break
    remember(secrets)
    return secrets


def _active() -> dict[str, str]:
    """Every secret value known now (this process's and the current context's): its name."""
    secrets = _context_secrets()
    if not secrets:
        return _known
    return {**_known, **_by_value(secrets)}


def mask(text: str) -> str:
    """``text`` with every known secret value replaced by ``<secret NAME>``.

    >>> import taskloom
    >>> with taskloom.context(secrets={"TOKEN": "s3cr3t"}):
    ...     mask("Bearer s3cr3t")
    'Bearer <secret TOKEN>'
    """
    values = _active()
    if not values:
        return text
    return _masked(text, _longest_first(values))


def _longest_first(values: Mapping[str, str]) -> list[tuple[str, str]]:
    """(value, ``<secret NAME>``) of each known secret, longest value first, so that a
    secret containing another is masked whole."""
    return [(value, f"<secret {values[value]}>") for value in sorted(values, key=len, reverse=True)]


def _masked(text: str, secrets: list[tuple[str, str]]) -> str:
    for value, marker in secrets:
        if value in text:
            text = text.replace(value, marker)
    return text


def masked_rows(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """``rows`` with ``mask`` applied to each of their strings (``rows`` itself, at the
    cost of one check, when no secret is known: the journal's rows of every run pass here)."""
    values = _active()
    if not values:
        return rows
    secrets = _longest_first(values)
    return [
        tuple(_masked(value, secrets) if isinstance(value, str) else value for value in row)
        for row in rows
    ]


def found_in(data: bytes) -> str | None:
    """The name of a known secret whose value (UTF-8) occurs in ``data``, or None."""
    values = _active()
    for value, name in values.items():
        if value.encode("utf-8", "surrogatepass") in data:
            return name
    return None


def holds_secret(value: Any) -> str | None:
    """The name of a known secret whose value occurs anywhere in ``value`` (in its pickle:
    nested containers and objects' attributes included), or None."""
    if not _active():
        return None
    try:
        data = cloudpickle.dumps(value)
    except Exception:  # what cannot be pickled cannot be stored either
        return None
    return found_in(data)


class SecretRef:
    """Stands for a secret's value in the journal: a resume reads the secret again.

    >>> SecretRef("TOKEN")
    <secret TOKEN>
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<secret {self.name}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SecretRef) and other.name == self.name

    def __hash__(self) -> int:
        return hash((SecretRef, self.name))

    def __reduce__(self) -> tuple[Any, ...]:
        return (SecretRef, (self.name,))


def _whole_values(secrets: Mapping[str, Any]) -> dict[str, str]:
    """The values of the string secrets among ``secrets``, each with its name (not the
    parts of a structured one, such as a password in a mapping: a reference would read
    the whole secret, though the part's value may be another secret's too)."""
    return {value: str(name) for name, value in secrets.items() if isinstance(value, str) and value}


def as_refs(value: Any) -> Any:
    """``value`` with a ``SecretRef`` for itself, or for each of its mapping's values, that
    is exactly a known secret's (string) value. A part of a structured secret stays as it
    is (so what holds it is not stored: a resume runs the task that took it again)."""
    if not _active():
        return value
    whole = {**_known_whole, **_whole_values(_context_secrets())}
    if isinstance(value, str) and value in whole:
        return SecretRef(whole[value])
    if isinstance(value, dict):
        return {
            key: SecretRef(whole[item]) if isinstance(item, str) and item in whole else item
            for key, item in value.items()
        }
    return value


def resolve(value: Any, read: dict[str, Any] | None = None) -> Any:
    """Undo ``as_refs``: each ``SecretRef`` becomes the secret read now (``read_secret``),
    noted in ``read`` (by name) if given: a resume gives what it read to its run's
    ``context.secrets``, so the run keeps the values out of what it writes and logs, in
    every process, as the run that stored the references did."""
    if isinstance(value, SecretRef):
        secret = read_secret(value.name)
        if read is not None:
            read[value.name] = secret
        return secret
    if isinstance(value, dict) and any(isinstance(item, SecretRef) for item in value.values()):
        return {key: resolve(item, read) for key, item in value.items()}
    return value


def _mask_record(record: logging.LogRecord) -> None:
    try:
        message = record.getMessage()
    except Exception:  # a bad format string: logging reports it when the record is emitted
        return
    hidden = mask(message)
    if hidden != message:
        record.msg, record.args = hidden, ()
    if record.exc_info:
        text = logging.Formatter().formatException(record.exc_info)
        hidden = mask(text)
        if hidden != text:
            # The formatted text stands in for the exception: formatters print exc_text.
            record.exc_info, record.exc_text = None, hidden
    if record.stack_info:
        record.stack_info = mask(record.stack_info)


_installed = False


def mask_records() -> None:
    """Mask known secret values in every log record this process makes from now on
    (installed once per process, over whatever record factory is there)."""
    global _installed
    with _known_lock:
        if _installed:
            return
        _installed = True
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record: logging.LogRecord = previous(*args, **kwargs)
        if _known or _context_secrets():
            _mask_record(record)
        return record

    logging.setLogRecordFactory(factory)


# A state's repr may show a result or an exception that quotes a secret.
set_repr_filter(mask)
