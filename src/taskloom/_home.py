"""Where taskloom keeps its files, and how it keeps them safe.

``TASKLOOM_HOME``, else the user's cache directory (``~/.cache/taskloom`` on Linux). Both
stores in it (the output cache and the run journal) hold pickles, and loading a pickle runs
code, so anyone who could write there could run code as the user. Hence:

- the home and its files are created private to the user (directories 0700, files 0600),
  and a home that another user owns, or that others may write to, is refused;
- every stored blob is signed with an HMAC key kept in the home (``signing.key``, 0600);
  a blob whose signature does not match is never unpickled.
"""

from __future__ import annotations

import errno
import functools
import hashlib
import hmac
import os
import secrets
import stat
import sys
import tempfile
from pathlib import Path

from .errors import TaskloomError

__all__ = ["Signer", "UnsafeHomeError", "private_file", "taskloom_home"]

KEY_FILE = "signing.key"


class UnsafeHomeError(TaskloomError, PermissionError):
    """``TASKLOOM_HOME`` is owned by another user, or others may write to it."""


def _platform_cache_dir() -> Path:
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "taskloom" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "taskloom"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "taskloom"


def _check_private(path: Path, info: os.stat_result) -> None:
    """Refuse ``path`` (whose ``stat`` is ``info``) if another user owns it or others may
    write to it."""
    if os.name != "posix":
        return
    if info.st_uid != os.getuid():
        raise UnsafeHomeError(
            f"taskloom home {path} belongs to user id {info.st_uid}, not to you "
            f"({os.getuid()}): its stores hold pickles, which run code when loaded. Set "
            "TASKLOOM_HOME to a directory of your own."
        )
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeHomeError(
            f"taskloom home {path} can be written by other users (mode "
            f"{stat.filemode(info.st_mode)}): its stores hold pickles, which run code when "
            f"loaded. Fix it with `chmod 700 {path}`, or set TASKLOOM_HOME elsewhere."
        )


def taskloom_home(create: bool = True) -> Path:
    """The directory for taskloom's stores: created 0700 if missing, refused if unsafe.

    Raises:
        UnsafeHomeError: the directory belongs to another user or others may write to it.
    """
    environ = os.environ
    home = _home_path(*[environ.get(name) for name in _HOME_VARIABLES])
    # Every run asks, and is refused if the home became unsafe since: one ``stat`` when it
    # exists (the common case), the directory made only when it does not.
    try:
        info = os.stat(home)
    except FileNotFoundError:
        if not create:
            return home
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        info = os.stat(home)
    if create and not stat.S_ISDIR(info.st_mode):
        home.mkdir(mode=0o700, parents=True, exist_ok=True)  # raises: a file is in the way
    _check_private(home, info)
    return home


#: The environment variables the home's path depends on: ``TASKLOOM_HOME``, and what
#: ``_platform_cache_dir`` (``Path.home`` included) reads.
_HOME_VARIABLES = ("TASKLOOM_HOME", "XDG_CACHE_HOME", "LOCALAPPDATA", "HOME", "USERPROFILE")


@functools.lru_cache(maxsize=8)
def _home_path(override: str | None, *platform: str | None) -> Path:
    """The home's path for the values of ``_HOME_VARIABLES`` (``platform``: all but the
    first, read by ``_platform_cache_dir`` itself), made once for each."""
    return Path(override).expanduser() if override else _platform_cache_dir()


def private_file(path: Path) -> Path:
    """Create ``path`` empty and readable by its owner only (0600) if it does not exist."""
    if not path.exists():
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        except FileExistsError:
            pass
    return path


def _publish_key(path: Path, key: bytes) -> None:
    """Create the key file whole or not at all: write a private temporary file, then link
    it into place, which fails if another process published its key first (then theirs
    is the key, and readers never see a half-written file)."""
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".key-")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(key)
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
    finally:
        os.unlink(temporary)


class Signer:
    """Signs and checks stored blobs with the HMAC key in the taskloom home.

    >>> signer = Signer(b"k" * 32)
    >>> signer.verify(signer.sign(b"data"))
    b'data'
    """

    DIGEST = 32

    def __init__(self, key: bytes) -> None:
        self._key = key

    @classmethod
    def for_home(cls, home: Path) -> Signer:
        """The signer of ``home``: its key is created (0600) on first use."""
        path = home / KEY_FILE
        if not path.exists():
            try:
                _publish_key(path, secrets.token_bytes(32))
            except OSError as error:
                if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                    raise
                # A read-only home without a key: nothing stored there can be trusted, and
                # nothing can be stored; a key of this process's own says exactly that.
                return cls(secrets.token_bytes(32))
        key = path.read_bytes()
        if len(key) < 16:
            raise UnsafeHomeError(f"the signing key {path} is truncated; delete it to make a new one")
        return cls(key)

    def sign(self, payload: bytes) -> bytes:
        """``payload`` with its signature in front."""
        return hmac.new(self._key, payload, hashlib.sha256).digest() + payload

    def verify(self, blob: bytes) -> bytes | None:
        """The payload of a signed blob, or None when the signature does not match."""
        signature, payload = blob[: self.DIGEST], blob[self.DIGEST :]
        expected = hmac.new(self._key, payload, hashlib.sha256).digest()
        return payload if hmac.compare_digest(signature, expected) else None
