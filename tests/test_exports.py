"""The public names: what API.md's "Imports" section promises, and tidy ``__all__`` lists."""

from __future__ import annotations

import importlib
import subprocess
import sys
import types
from collections.abc import Mapping

import pytest

#: The names API.md's "Imports" section (and its Triggers, Cache validators and Signals
#: sections) promise, by module. A name may be added to a module; none may go.
PROMISED: dict[str, list[str]] = {
    "taskloom": [
        "Flow",
        "Task",
        "Parameter",
        "task",
        "context",
        "signals",
        "triggers",
        "cache_validators",
    ],
    "taskloom.states": [
        "State",
        "Pending",
        "Scheduled",
        "Running",
        "Finished",
        "Success",
        "Failed",
        "TriggerFailed",
        "TimedOut",
        "Skipped",
        "Cached",
        "Retrying",
        "Paused",
        "Resume",
    ],
    "taskloom.executors": ["Executor", "LocalExecutor", "LokyExecutor", "DaskExecutor", "ThreadExecutor"],
    "taskloom.caching": ["CacheStore", "MemoryCacheStore", "SQLiteCacheStore"],
    "taskloom.schedules": ["IntervalSchedule", "CronSchedule"],
    "taskloom.triggers": [
        "Trigger",
        "all_successful",
        "all_failed",
        "any_successful",
        "any_failed",
        "all_finished",
        "always_run",
        "manual_only",
        "not_all_skipped",
        "some_successful",
        "some_failed",
    ],
    "taskloom.cache_validators": [
        "CacheValidator",
        "never_use",
        "duration_only",
        "all_inputs",
        "all_parameters",
        "partial_inputs_only",
        "partial_parameters_only",
    ],
    "taskloom.signals": ["SUCCESS", "FAIL", "RETRY", "SKIP", "PAUSE", "TRIGGERFAIL"],
}


def _module(name: str) -> types.ModuleType:
    return importlib.import_module(name)


def _all(module: types.ModuleType) -> list[str]:
    names = getattr(module, "__all__", None)
    assert isinstance(names, list), f"{module.__name__} has no __all__ list"
    assert all(isinstance(name, str) for name in names)
    return names


@pytest.mark.parametrize("module_name", sorted(PROMISED))
def test_promised_names_are_exported(module_name: str) -> None:
    module = _module(module_name)
    exported = _all(module)
    missing = [name for name in PROMISED[module_name] if not hasattr(module, name)]
    assert not missing, f"{module_name} does not define {missing}"
    unlisted = [name for name in PROMISED[module_name] if name not in exported]
    assert not unlisted, f"{module_name}.__all__ lacks {unlisted}"


@pytest.mark.parametrize("module_name", sorted(PROMISED))
def test_all_is_sorted_unique_and_resolves(module_name: str) -> None:
    module = _module(module_name)
    exported = _all(module)
    assert exported == sorted(exported), f"{module_name}.__all__ is not sorted"
    assert len(exported) == len(set(exported)), f"{module_name}.__all__ has duplicates"
    dangling = [name for name in exported if not hasattr(module, name)]
    assert not dangling, f"{module_name}.__all__ names {dangling}, which it does not define"


def test_star_import_gives_exactly_all() -> None:
    namespace: dict[str, object] = {}
    exec("from taskloom import *", namespace)
    namespace.pop("__builtins__")
    assert sorted(namespace) == sorted(_all(_module("taskloom")))


def test_promised_submodules_are_modules() -> None:
    import taskloom

    for name in ("signals", "triggers", "cache_validators"):
        assert isinstance(getattr(taskloom, name), types.ModuleType), name
    # `taskloom.context` is the context object (a mapping), not the module of that name.
    assert isinstance(taskloom.context, Mapping)


#: Imported only by the code that needs them: a cron schedule, a process pool, Dask.
HEAVY_DEPENDENCIES = ("croniter", "loky", "psutil", "asyncio", "distributed")


@pytest.mark.parametrize("module_name", ["taskloom", "taskloom.executors", "taskloom.cli"])
def test_importing_taskloom_leaves_the_heavy_dependencies_unloaded(module_name: str) -> None:
    """Every CLI command and every worker process pays for what ``import taskloom`` loads:
    croniter, loky and asyncio were two thirds of it. The names still resolve on use."""
    check = (
        f"import sys, {module_name}\n"
        f"print(sorted(set({HEAVY_DEPENDENCIES!r}) & set(sys.modules)))\n"
        "from taskloom.executors import DaskExecutor, LokyExecutor\n"
        "from taskloom.schedules import CronSchedule\n"
        "print(DaskExecutor.__module__, LokyExecutor.__module__, 'croniter' in sys.modules)\n"
        "CronSchedule('0 * * * *')\n"
        "print('croniter' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", check], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "[]",
        "taskloom.executors.dask taskloom.executors.loky False",
        "True",
    ], done.stdout
