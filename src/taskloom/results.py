"""Results: where a task's output is persisted, so a later run can skip the task.

::

    from taskloom.results import LocalResult, JSONSerializer

    @task(result=LocalResult(dir="out", serializer=JSONSerializer()),
          target="{flow_name}/{task_name}/{today}.json")
    def extract() -> dict[str, int]: ...

A ``Result`` is a small protocol, so other stores plug in:

``location``
    the default location template of the tasks that use it (a task's ``target=`` wins;
    None: the engine's default, ``"{flow_name}/{task_name}/{task_run_id}"``). Templates
    are filled by the engine (``taskloom.locations``) before a result sees them.
``exists(location)``, ``read(location)``
    whether something is stored at a filled-in location, and its value.
``write(value, location) -> str``
    store ``value`` there, whole or not at all, and return where it went, as ``taskloom
    show`` and the journal record it (a full path, a URL).

A class written for Prefect 1.x against its ``Result`` base class (``read`` returning a
``Result``, ``write(value_, **kwargs)``) subclasses ``ResultBase``, and the engine calls
it through that API (``as_store``).

A result may also have ``finds_targets = False`` (a target finds nothing in it, and its
task always runs: ``PrefectResult``, whose locations are values), ``check()``, which the
engine calls in the calling process before a run that uses it (an unusable store, such as
a directory that cannot be created or written, is then an error before any task runs,
naming it), and ``where(location)``, the
full form of a location as ``write`` returns it (for a target found, in its message).
``exists`` and ``read`` take a location in either form.

These ship: ``LocalResult`` (files under a directory), ``FSSpecResult`` (any file system
``fsspec`` reaches: ``s3://``, ``gcs://``, ``memory://``, ``file://``...; the ``fsspec``
extra), Prefect 1.x's ``S3Result`` and ``GCSResult`` (an ``FSSpecResult`` of a bucket, made
with Prefect's arguments) and ``PrefectResult`` (Prefect 1.x's: a small JSON value kept in
the location itself, so the run journal holds it; no file). Those with files serialize
with a ``Serializer`` (``taskloom.serializers``; pickle by default) before touching a
file, and write atomically: the bytes go to a temporary file
in the same directory, which is flushed to disk and renamed over the target, so a crash
or two runs writing one target never leave a half-written file that a later run would
trust. Writes and reads happen where the task runs (a worker process, a Dask worker):
the calling process never handles the value's bytes.
"""

from __future__ import annotations

import copy
import datetime
import importlib
import os
import tempfile
import uuid
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from typing_extensions import Self

from ._home import taskloom_home
from .errors import ResultError
from .serializers import JSONSerializer, ParquetSerializer, PickleSerializer, Serializer

__all__ = [
    "FSSpecResult",
    "GCSResult",
    "JSONSerializer",
    "LocalResult",
    "ParquetSerializer",
    "PickleSerializer",
    "PrefectResult",
    "Result",
    "ResultBase",
    "S3Result",
    "Serializer",
    "as_store",
    "write_atomic",
]


class Result(Protocol):
    """Where a task's output is stored: see the module docstring."""

    @property
    def location(self) -> str | None:
        """The default location template of the tasks using this result (None: the engine's)."""
        ...

    def exists(self, location: str) -> bool:
        """Whether a value is stored at ``location`` (filled in)."""
        ...

    def read(self, location: str) -> Any:
        """The value stored at ``location``; raises if it cannot be read."""
        ...

    def write(self, value: Any, location: str) -> str:
        """Store ``value`` at ``location``, whole or not at all; where it went."""
        ...


_PICKLE = PickleSerializer()


def write_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to the file ``path`` whole or not at all: a temporary file in the same
    directory (created, with its parents, if missing), flushed to disk, then renamed over
    ``path``. A reader sees the old file or the new one, never part of one."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=directory, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        try:
            os.unlink(temporary)
        except OSError:
            pass
        raise


def _check_directory(directory: str, what: str) -> None:
    """Create ``directory`` if missing and make sure a file can be written in it;
    ``ResultError`` naming it (and ``what`` uses it) otherwise."""
    try:
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=directory, prefix=".taskloom-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        raise ResultError(
            f"{what}: the result directory {directory} cannot be created or written: {error}"
        ) from None


class LocalResult:
    """Results as files under a directory, on the machine where the task runs.

    Args:
        dir: the directory; relative paths are taken from the current directory when the
            result is made. Default: ``results`` in the taskloom home (``TASKLOOM_HOME``,
            else your user cache directory), private to you.
        location: the default location template (relative to ``dir``) of the tasks using
            it; a task's ``target=`` wins.
        serializer: how values become bytes (default ``PickleSerializer()``).

    >>> r = LocalResult(dir="/tmp/results", serializer=JSONSerializer())
    >>> r.where("etl/total.json")
    '/tmp/results/etl/total.json'
    """

    def __init__(
        self,
        dir: str | os.PathLike[str] | None = None,
        location: str | None = None,
        serializer: Serializer = _PICKLE,
    ) -> None:
        if dir is None:
            self.dir = str(taskloom_home(create=False) / "results")
        else:
            self.dir = os.path.abspath(os.path.expanduser(os.fspath(dir)))
        self.location = location
        self.serializer = serializer

    def where(self, location: str) -> str:
        """The file of ``location`` (relative to ``dir``; an absolute one stands as it is)."""
        return os.path.join(self.dir, location)

    def exists(self, location: str) -> bool:
        """Whether the file of ``location`` exists."""
        return os.path.exists(os.path.join(self.dir, location))

    def read(self, location: str) -> Any:
        """The value in the file of ``location``."""
        with open(os.path.join(self.dir, location), "rb") as file:
            data = file.read()
        return self.serializer.deserialize(data)

    def write(self, value: Any, location: str) -> str:
        """Serialize ``value`` (``SerializationError`` before any file is touched), write
        it atomically to the file of ``location``; that file's path."""
        data = self.serializer.serialize(value)
        path = os.path.join(self.dir, location)
        write_atomic(path, data)
        return path

    def check(self) -> None:
        """Create ``dir`` if missing and make sure it can be written (``ResultError`` naming it)."""
        _check_directory(self.dir, repr(self))

    def __repr__(self) -> str:
        return f"LocalResult(dir={self.dir!r}, serializer={self.serializer!r})"


class _FileSystem(Protocol):
    """The few methods of an ``fsspec`` file system that ``FSSpecResult`` calls."""

    protocol: str | tuple[str, ...]

    def exists(self, path: str) -> bool: ...

    def cat_file(self, path: str) -> bytes: ...

    def pipe_file(self, path: str, value: bytes) -> None: ...

    def mv(self, path1: str, path2: str) -> None: ...

    def makedirs(self, path: str, exist_ok: bool = False) -> None: ...

    def unstrip_protocol(self, name: str) -> str: ...

    def _strip_protocol(self, path: str) -> str: ...


def _fsspec_core() -> Any:
    try:
        return importlib.import_module("fsspec.core")
    except ImportError:
        raise ImportError(
            'FSSpecResult needs fsspec: from the taskloom clone, pip install -e ".[fsspec]"'
        ) from None


class FSSpecResult:
    """Results on any file system ``fsspec`` reaches, under the URL ``url``.

    Args:
        url: where results go, e.g. ``"s3://bucket/prefix"``, ``"memory://results"``,
            ``"file:///data/results"``.
        location: the default location template (relative to ``url``).
        serializer: how values become bytes (default ``PickleSerializer()``).
        storage_options: passed to the file system (credentials, endpoint, ...).

    On ``file://`` a write is ``write_atomic``'s; elsewhere the bytes go to a temporary
    object next to the target, then are moved over it (an object store's put is whole
    anyway). ``memory://`` lives in one process: use it with ``LocalExecutor``.
    """

    def __init__(
        self,
        url: str,
        location: str | None = None,
        serializer: Serializer = _PICKLE,
        **storage_options: Any,
    ) -> None:
        if not url:
            raise ResultError(f"FSSpecResult needs a URL such as 's3://bucket/prefix', not {url!r}")
        self.url = url.rstrip("/")
        self.location = location
        self.serializer = serializer
        self.storage_options = storage_options
        self._fs: _FileSystem | None = None
        self._root = ""

    def _filesystem(self) -> _FileSystem:
        if self._fs is None:
            fs, root = _fsspec_core().url_to_fs(self.url, **self.storage_options)
            self._fs, self._root = fs, str(root).rstrip("/")
        return self._fs

    def _path(self, location: str) -> str:
        fs = self._filesystem()
        if "://" in location:  # a full URL, as ``write`` returns it
            return fs._strip_protocol(location)
        return f"{self._root}/{location}"

    def where(self, location: str) -> str:
        """The URL of ``location``."""
        return self._filesystem().unstrip_protocol(self._path(location))

    def _is_local(self, fs: _FileSystem) -> bool:
        protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
        return "file" in protocols

    def exists(self, location: str) -> bool:
        """Whether an object is stored at ``location``."""
        return self._filesystem().exists(self._path(location))

    def read(self, location: str) -> Any:
        """The value stored at ``location``."""
        return self.serializer.deserialize(self._filesystem().cat_file(self._path(location)))

    def write(self, value: Any, location: str) -> str:
        """Serialize ``value`` (``SerializationError`` before anything is written), store it
        at ``location`` whole; its URL."""
        data = self.serializer.serialize(value)
        fs = self._filesystem()
        path = self._path(location)
        if self._is_local(fs):
            write_atomic(path, data)
        else:
            parent, _, name = path.rpartition("/")
            fs.makedirs(parent, exist_ok=True)
            temporary = f"{parent}/.{name}.{uuid.uuid4().hex}.tmp"
            fs.pipe_file(temporary, data)
            fs.mv(temporary, path)
        return fs.unstrip_protocol(path)

    def check(self) -> None:
        """Open the file system (``ResultError`` naming the URL if it cannot be); on
        ``file://``, create the directory and make sure it can be written."""
        try:
            fs = self._filesystem()
        except ImportError:
            raise
        except Exception as error:
            raise ResultError(f"{self!r}: cannot open {self.url!r}: {error!r}") from None
        if self._is_local(fs):
            _check_directory(self._root, repr(self))

    def __getstate__(self) -> dict[str, Any]:
        # The file system is opened again where the result is used (a worker process).
        state = dict(self.__dict__)
        state["_fs"], state["_root"] = None, ""
        return state

    def __repr__(self) -> str:
        return f"FSSpecResult({self.url!r}, serializer={self.serializer!r})"


class ResultBase:
    """Prefect 1.x's ``Result`` base class (``prefect.engine.result.Result``), for the
    results written for Prefect: a subclass implements, as Prefect documents,
    ``exists(location, **kwargs) -> bool``, ``read(location) -> Result`` (a copy whose
    ``value`` is the value read) and ``write(value_, **kwargs) -> Result`` (a copy whose
    ``location`` is where the value went, usually made with ``self.format(**kwargs)``).
    ``taskloom migrate`` imports it under Prefect's name, so such a class runs unchanged.

    taskloom fills in the location template itself (``taskloom.locations``), and calls
    ``write`` on a copy whose ``location`` is the filled-in one, with no keywords; a
    location given as a callable (Prefect's formatter) is not called: the task's
    ``target``, or taskloom's default template, is used.

    >>> class InMemory(ResultBase):
    ...     stored: dict[str, Any] = {}
    ...     def exists(self, location: str, **kwargs: Any) -> bool:
    ...         return location.format(**kwargs) in self.stored
    ...     def read(self, location: str) -> "InMemory":
    ...         new = self.copy()
    ...         new.location, new.value = location, self.stored[location]
    ...         return new
    ...     def write(self, value_: Any, **kwargs: Any) -> "InMemory":
    ...         new = self.format(**kwargs)
    ...         new.value = value_
    ...         self.stored[new.location] = value_
    ...         return new
    """

    def __init__(
        self,
        value: Any = None,
        location: str | Callable[..., str] | None = None,
        serializer: Serializer | None = None,
    ) -> None:
        self.value = value
        self.location: str | None = location if isinstance(location, str) else None
        self._formatter = None if isinstance(location, str) or location is None else location
        self.serializer: Serializer = serializer if serializer is not None else _PICKLE

    def copy(self) -> Self:
        """A shallow copy."""
        return copy.copy(self)

    def from_value(self, value: Any) -> Self:
        """A copy holding ``value``, with no location."""
        new = self.copy()
        new.location, new.value = None, value
        return new

    @property
    def default_location(self) -> str:
        """Where a value goes when no location is given (Prefect's default)."""
        return f"{datetime.datetime.now(datetime.timezone.utc):%Y/%m/%d}/{uuid.uuid4()}.prefect_result"

    def format(self, **kwargs: Any) -> Self:
        """A copy whose ``location`` is this one's template filled in with ``kwargs``;
        with none, a location is kept as it is (taskloom filled it in already: a value
        with braces in it must not be taken for a template again)."""
        new = self.copy()
        if isinstance(new.location, str):
            if kwargs:
                new.location = new.location.format(**kwargs)
        elif new._formatter is not None:
            new.location = new._formatter(**kwargs)
        else:
            new.location = new.default_location
        return new

    def exists(self, location: str, **kwargs: Any) -> bool:
        """Whether a value is stored at ``location``: a subclass's to say."""
        raise NotImplementedError(f"{type(self).__name__} does not implement exists()")

    def read(self, location: str) -> ResultBase:
        """A copy holding the value stored at ``location``: a subclass's to read."""
        raise NotImplementedError(f"{type(self).__name__} does not implement read()")

    def write(self, value_: Any, **kwargs: Any) -> ResultBase:
        """Store ``value_``; a copy whose ``location`` says where: a subclass's to write."""
        raise NotImplementedError(f"{type(self).__name__} does not implement write()")

    def __repr__(self) -> str:
        return f"<{type(self).__name__}: {self.value!r}>"


class _PrefectStyle:
    """A ``ResultBase`` as the ``Result`` protocol the engine calls (``as_store``)."""

    __slots__ = ("inner",)

    def __init__(self, inner: ResultBase) -> None:
        self.inner = inner

    @property
    def location(self) -> str | None:
        return self.inner.location

    # Each call on a copy, as ``write``: a class that sets ``self.location`` in ``read``
    # (and returns ``self``), as some written for Prefect do, must not move the location
    # of every task that shares it.
    def exists(self, location: str) -> bool:
        return bool(self.inner.copy().exists(location))

    def read(self, location: str) -> Any:
        return self.inner.copy().read(location).value

    def write(self, value: Any, location: str) -> str:
        target = self.inner.copy()
        target.location, target._formatter = location, None
        written = target.write(value)
        where = getattr(written, "location", None)
        return where if isinstance(where, str) else location

    def check(self) -> None:
        check = getattr(self.inner, "check", None)
        if callable(check):
            check()

    def __repr__(self) -> str:
        return repr(self.inner)


def as_store(result: Result | ResultBase) -> Result:
    """``result`` as the engine calls a store: a ``ResultBase`` (Prefect's API) through
    ``_PrefectStyle``, any other as it is."""
    return _PrefectStyle(result) if isinstance(result, ResultBase) else result


#: Prefect's ``boto3_kwargs`` that name credentials, as ``s3fs`` calls them.
_BOTO3_CREDENTIALS = {
    "aws_access_key_id": "key",
    "aws_secret_access_key": "secret",
    "aws_session_token": "token",
    "endpoint_url": "endpoint_url",
}


class _BucketResult(FSSpecResult):
    """An ``FSSpecResult`` of one bucket, made with Prefect's arguments (``S3Result``,
    ``GCSResult``): the bucket's name checked, the URL ``{scheme}://{bucket}``."""

    def __init__(
        self,
        scheme: str,
        bucket: str,
        location: str | None,
        serializer: Serializer,
        storage_options: Mapping[str, Any],
    ) -> None:
        if not bucket or "://" in bucket or bucket.startswith("/"):
            raise ResultError(
                f"{type(self).__name__} needs a bucket name such as 'my-bucket', not {bucket!r}"
            )
        super().__init__(f"{scheme}://{bucket}", location, serializer, **storage_options)
        self.bucket = bucket

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.bucket!r}, serializer={self.serializer!r})"


class S3Result(_BucketResult):
    """Prefect 1.x's ``S3Result``: results in an S3 bucket, through ``fsspec`` (it needs
    ``s3fs`` installed beside the ``fsspec`` extra). A location is a key in the bucket.

    Args:
        bucket: the bucket, optionally with a key prefix (``"bucket/prefix"``).
        boto3_kwargs: what Prefect passed to boto3's client: the credentials
            (``aws_access_key_id``, ``aws_secret_access_key``, ``aws_session_token``) and
            ``endpoint_url`` go to ``s3fs`` under its own names, the rest (``region_name``,
            ``config``...) to the client it makes (``client_kwargs``).
        upload_options: the extra arguments of every upload, as in Prefect
            (``{"ServerSideEncryption": "AES256"}``...).
        location, serializer: as ``FSSpecResult``'s; other keywords go to ``s3fs``.

    >>> S3Result("my-bucket/etl", boto3_kwargs={"region_name": "eu-west-1"}).url
    's3://my-bucket/etl'
    """

    def __init__(
        self,
        bucket: str,
        boto3_kwargs: Mapping[str, Any] | None = None,
        upload_options: Mapping[str, Any] | None = None,
        *,
        location: str | None = None,
        serializer: Serializer = _PICKLE,
        **storage_options: Any,
    ) -> None:
        options = dict(storage_options)
        client = dict(options.pop("client_kwargs", {}))
        for name, value in (boto3_kwargs or {}).items():
            if name in _BOTO3_CREDENTIALS:
                options[_BOTO3_CREDENTIALS[name]] = value
            else:
                client[name] = value
        if client:
            options["client_kwargs"] = client
        if upload_options:
            options["s3_additional_kwargs"] = {
                **options.get("s3_additional_kwargs", {}), **upload_options
            }
        super().__init__("s3", bucket, location, serializer, options)


class GCSResult(_BucketResult):
    """Prefect 1.x's ``GCSResult``: results in a Google Cloud Storage bucket, through
    ``fsspec`` (it needs ``gcsfs`` installed beside the ``fsspec`` extra). A location is
    an object's name in the bucket; credentials are ``gcsfs``'s (its ``token=``, or the
    environment's default).

    >>> GCSResult("my-bucket").url
    'gcs://my-bucket'
    """

    def __init__(
        self,
        bucket: str,
        *,
        location: str | None = None,
        serializer: Serializer = _PICKLE,
        **storage_options: Any,
    ) -> None:
        super().__init__("gcs", bucket, location, serializer, storage_options)


class PrefectResult:
    """Prefect 1.x's ``PrefectResult``: a JSON-serializable value kept in its location
    itself (the JSON text), not in a file: what ``write`` returns is the value, which the
    run journal records, ``taskloom show`` prints and a resume reads back. For small
    values (a count, a path, a few settings); a value JSON cannot hold fails its task
    (``SerializationError``).

    A ``target`` finds nothing here: the task always runs. (Prefect 1.x took a target
    that happens to be JSON, such as ``"{map_index}"`` filled in as ``0``, for a stored
    value, and skipped the task with that value.)

    >>> r = PrefectResult()
    >>> r.write({"rows": 3}, "etl/count"), r.read('{"rows": 3}'), r.exists("0")
    ('{"rows": 3}', {'rows': 3}, False)
    """

    location: str | None = None
    #: A target finds nothing here (see ``Result``).
    finds_targets = False

    def __init__(self, location: str | None = None) -> None:
        self.location = location
        self.serializer = JSONSerializer()

    def exists(self, location: str) -> bool:
        """False: a location is a value, not a place where one waits (see the class)."""
        return False

    def read(self, location: str) -> Any:
        """The value the JSON text ``location`` holds."""
        return self.serializer.deserialize(location.encode("utf-8"))

    def write(self, value: Any, location: str) -> str:
        """``value`` as JSON text (``SerializationError`` if JSON cannot hold it); the
        filled-in ``location`` template is not used."""
        return self.serializer.serialize(value).decode("utf-8")

    def __repr__(self) -> str:
        return "PrefectResult()"
