"""Which other processes hold a lock on a file: best effort, for a message to the user.

A store that waits for another process's lock says who holds it. SQLite locks its files
with POSIX advisory locks (``fcntl``): on Linux every one is listed in ``/proc/locks``
with the holding pid and the file's device and inode, which is exact and cheap. Elsewhere,
when ``psutil`` is installed, the processes that have the file open are named instead
(they may be readers, not the holder). Without either, nothing is named.

>>> holders([Path("/no/such/file")])
[]
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path

__all__ = ["describe", "holders"]

_PROC_LOCKS = Path("/proc/locks")


def _identity(path: Path) -> tuple[str, int] | None:
    """``path``'s device as ``/proc/locks`` writes it ("fe:00") and its inode."""
    try:
        info = path.stat()
    except OSError:
        return None
    return f"{os.major(info.st_dev):02x}:{os.minor(info.st_dev):02x}", info.st_ino


def _locks(text: str) -> Iterable[tuple[str, int, str, int]]:
    """Each granted lock of ``/proc/locks``: (READ or WRITE, pid, device, inode)."""
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 6 or fields[1] == "->":  # "->": a request waiting, not a lock held
            continue
        try:
            major, minor, inode = fields[5].split(":")
            yield fields[3], int(fields[4]), f"{major}:{minor}", int(inode)
        except ValueError:
            continue


def _from_proc_locks(files: set[tuple[str, int]], text: str) -> list[int]:
    """The pids holding a lock on one of ``files``: writers first (the one holding a write
    lock is the one a writer waits for), then readers."""
    writers: list[int] = []
    readers: list[int] = []
    for mode, pid, device, inode in _locks(text):
        if (device, inode) in files and pid > 0 and pid != os.getpid():
            found = writers if mode == "WRITE" else readers
            if pid not in found:
                found.append(pid)
    return writers + [pid for pid in readers if pid not in writers]


def _from_open_files(paths: Sequence[Path]) -> list[int]:
    """The pids that have one of ``paths`` open, by psutil (when it is installed)."""
    try:
        import psutil  # type: ignore[import-untyped, unused-ignore]  # ships no types (as in the tests)
    except ImportError:
        return []
    wanted = {str(path.resolve()) for path in paths}
    found: list[int] = []
    for process in psutil.process_iter(["pid"]):
        if process.pid == os.getpid():
            continue
        try:
            if any(f.path in wanted for f in process.open_files()):
                found.append(process.pid)
        except (psutil.Error, OSError):
            continue  # gone, or another user's
    return found


def holders(paths: Sequence[Path]) -> list[int]:
    """The other processes that hold a lock on (or, where locks cannot be listed, have
    open) one of ``paths``, most likely culprit first; [] when it cannot tell."""
    files = {identity for identity in map(_identity, paths) if identity is not None}
    if not files:
        return []
    try:
        text = _PROC_LOCKS.read_text(encoding="ascii", errors="replace")
    except OSError:
        return _from_open_files(paths)
    return _from_proc_locks(files, text)


def describe(pid: int, width: int = 60) -> str:
    """``pid`` and, when it can be read, its command line cut to ``width``:
    ``"pid 4242 (python holder.py)"``."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return f"pid {pid}"
    command = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    if len(command) > width:
        command = command[: width - 3] + "..."
    return f"pid {pid} ({command})" if command else f"pid {pid}"
