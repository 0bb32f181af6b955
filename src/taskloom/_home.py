"""Where taskloom keeps its files: ``TASKLOOM_HOME``, else the user's cache directory."""

from __future__ import annotations

import os
import sys
from pathlib import Path

__all__ = ["taskloom_home"]


def _platform_cache_dir() -> Path:
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / "taskloom" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "taskloom"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "taskloom"


def taskloom_home(create: bool = True) -> Path:
    """The directory for taskloom's stores, created private to the user (0700) if missing."""
    override = os.environ.get("TASKLOOM_HOME")
    home = Path(override).expanduser() if override else _platform_cache_dir()
    if create:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
    return home
