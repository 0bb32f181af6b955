"""Which process ran a flow, and whether it is gone: the journal's test for a crashed run.

A run records the process that runs it (``ProcessMark``): its pid, the host's name, and
when the process started. Whether that process is still alive is then a fact, never a
guess from how old the run is:

- on another host, nothing can be known: the run is taken to be alive (``gone`` is False);
- on this host, the process is gone when no process has its pid, when it is a zombie
  (killed, and not yet waited for by its parent), or when the process that has it now
  started at another time (the pid was reused);
- where the start time cannot be read (no ``/proc``: not Linux), only a pid that no
  process has decides; a live pid is taken to be the run's.

The start time is Linux's (``/proc/PID/stat`` field 22, clock ticks since boot) with the
boot's id (``/proc/sys/kernel/random/boot_id``), so a process of an earlier boot never
passes for one of this boot.

>>> mark = this_process()
>>> gone(mark)
False
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from functools import cache

__all__ = ["ProcessMark", "gone", "running_here", "start_stamp", "this_process"]


@dataclass(frozen=True, slots=True)
class ProcessMark:
    """A process, as a journal row names it: ``pid`` on ``host``, started at ``started``
    (an opaque stamp from ``start_stamp``; None where it cannot be read)."""

    pid: int
    host: str
    started: str | None

    def __str__(self) -> str:
        return f"pid {self.pid} on {self.host}"


@cache
def _boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id") as file:
            return file.read().strip()
    except OSError:
        return None


def _stat(pid: int) -> tuple[str, str] | None:
    """Linux: process ``pid``'s state letter and start time (ticks since boot), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            # The command name (field 2) may hold spaces and parentheses: split after it.
            fields = stat.read().rsplit(b")", 1)[1].split()
        return fields[0].decode(), fields[19].decode()  # fields 3 and 22 of the line
    except (OSError, IndexError):
        return None


def start_stamp(pid: int) -> str | None:
    """When process ``pid`` started, as a stamp two reads of the same process agree on;
    None if no live process has that pid (a zombie is dead) or this host cannot tell."""
    boot = _boot_id()
    if boot is not None:
        stat = _stat(pid)
        if stat is None or stat[0] in ("Z", "X"):
            return None
        return f"{boot}:{stat[1]}"
    return None


def _exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process has this pid now
        return True
    return True


def this_process() -> ProcessMark:
    """The mark of the calling process."""
    pid = os.getpid()
    return ProcessMark(pid, socket.gethostname(), start_stamp(pid))


def gone(mark: ProcessMark) -> bool:
    """Whether the process ``mark`` names is certainly gone (see the module docstring)."""
    if mark.host != socket.gethostname() or mark.pid <= 0:
        return False
    if not _exists(mark.pid):
        return True
    if mark.started is None:
        return False
    now = start_stamp(mark.pid)
    if now is None:  # a zombie, or it ended since: gone if this host can read stamps at all
        return start_stamp(os.getpid()) is not None
    return now != mark.started


def running_here(mark: ProcessMark) -> bool:
    """Whether the process ``mark`` names runs on this host now."""
    return mark.host == socket.gethostname() and not gone(mark)
