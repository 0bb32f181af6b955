"""Process groups of worker processes: what a task starts dies with its worker.

A worker process (loky's, Dask's) leads a process group of its own (``lead``); the
processes its tasks start join it, and stay in it when the worker dies (they are then
reparented, so a tree walk no longer finds them). Whoever learns of a worker's death
kills what is left of its group (``kill_group``): the members are found through
``/proc`` and killed by PID, so a group id that was reused by a new, living leader is
never touched.

- loky: the parent knows its workers' PIDs and kills the groups of those that died.
- Dask: the parent may not be on the workers' host, so each worker notes its PID in a
  folder of the host (``register``), and a worker that is told of a death (or starts)
  kills the groups of the noted workers that are gone (``reap``).

Linux only (``/proc``); elsewhere these do nothing.
"""

from __future__ import annotations

import os
import signal
import tempfile

__all__ = ["alive", "kill_group", "lead", "reap", "register", "stat_fields"]

#: Where Dask workers of this user note their PIDs, one empty file each.
REGISTRY = os.path.join(tempfile.gettempdir(), f"taskloom-worker-groups-{os.getuid()}")


def lead() -> bool:
    """Make this process the leader of a new process group; whether it is one now."""
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    return os.getpgid(0) == os.getpid()


def stat_fields(pid: int | str) -> list[bytes] | None:
    """The fields of ``/proc/PID/stat`` after the command name (state, parent PID, group,
    ...), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[1].split()
    except (OSError, IndexError):
        return None


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead and not yet reaped, does not)."""
    fields = stat_fields(str(pid))
    if fields is not None:
        return fields[0] != b"Z"
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def kill_group(pgid: int) -> int:
    """Kill (SIGKILL) the live members of process group ``pgid`` whose leader is gone;
    how many there were. Nothing if the leader still runs."""
    if alive(pgid):
        return 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return 0
    killed = 0
    group = str(pgid).encode()
    for entry in entries:
        if not entry.isdigit():
            continue
        fields = stat_fields(entry)
        # fields: state, ppid, pgrp, ...
        if fields is None or len(fields) < 3 or fields[2] != group or fields[0] == b"Z":
            continue
        try:
            os.kill(int(entry), signal.SIGKILL)
            killed += 1
        except OSError:
            continue
    return killed


def register() -> None:
    """In a Dask worker: lead a process group and note this PID on the host (``REGISTRY``)."""
    if not lead():
        return
    try:
        os.makedirs(REGISTRY, mode=0o700, exist_ok=True)
        with open(os.path.join(REGISTRY, str(os.getpid())), "wb"):
            pass
    except OSError:
        pass


def reap() -> int:
    """Kill what is left of the groups of the noted workers of this host that are gone,
    and forget them; how many processes were killed."""
    try:
        noted = os.listdir(REGISTRY)
    except OSError:
        return 0
    killed = 0
    for name in noted:
        if not name.isdigit() or alive(int(name)):
            continue
        killed += kill_group(int(name))
        try:
            os.unlink(os.path.join(REGISTRY, name))
        except OSError:
            pass
    return killed
