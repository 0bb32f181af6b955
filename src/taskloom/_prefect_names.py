"""What Prefect Core 1.x's names are in taskloom: the table ``taskloom migrate`` rewrites by.

``translate("prefect.engine.state.Success")`` is ``"taskloom.states.Success"``; a Prefect
path taskloom has no equivalent for translates to None. The table (``_spec``) lists, for
each Prefect 1.4.1 module a flow file imports from, the taskloom module it becomes and the
names it has there, each checked against taskloom's exports and ``API.md`` by
``tests/test_migrate.py``. Also here: which Prefect modules, ``Flow`` keywords and flow
methods are deployment-only (a Prefect server or agent honours them; taskloom cannot).
"""

from __future__ import annotations

__all__ = [
    "DASK_LEFT",
    "DEPLOYMENT_KEYWORDS",
    "DEPLOYMENT_METHODS",
    "DEPLOYMENT_MODULES",
    "LOCAL_DASK",
    "canonical",
    "is_deployment",
    "is_module",
    "translate",
]


def _spec() -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """``_MODULES`` and ``_NAMES``, from a compact table: for each Prefect module, the
    taskloom module it becomes and its names there (``"old=new"`` for a renamed one)."""
    states = (
        "State Pending Scheduled Paused Resume Retrying Running Finished Looped Success "
        "Cached Mapped Cancelled Failed TimedOut TriggerFailed ValidationFailed Skipped"
    )
    signals = "ENDRUN FAIL LOOP TRIGGERFAIL VALIDATIONFAIL SUCCESS RETRY SKIP PAUSE"
    triggers = (
        "all_finished always_run manual_only all_successful all_failed any_successful "
        "any_failed some_failed some_successful not_all_skipped"
    )
    validators = (
        "never_use duration_only all_inputs all_parameters partial_parameters_only "
        "partial_inputs_only"
    )
    control = "case merge switch ifelse FilterTask"
    executors = "LocalExecutor DaskExecutor Executor"
    table: dict[str, tuple[str, str]] = {
        "prefect": ("taskloom", "Flow Task Parameter task context unmapped flatten apply_map case"),
        "prefect.core": ("taskloom", "Flow Task Parameter Edge"),
        "prefect.core.flow": ("taskloom", "Flow"),
        "prefect.core.task": ("taskloom", "Task"),
        "prefect.core.parameter": ("taskloom", "Parameter DateTimeParameter"),
        "prefect.core.edge": ("taskloom", "Edge"),
        "prefect.engine": ("taskloom", "signals state=states cache_validators"),
        "prefect.engine.state": ("taskloom.states", states),
        "prefect.engine.signals": ("taskloom.signals", signals),
        "prefect.triggers": ("taskloom.triggers", triggers),
        "prefect.engine.cache_validators": ("taskloom.cache_validators", validators),
        "prefect.tasks.control_flow": ("taskloom.tasks.control_flow", control),
        "prefect.tasks.control_flow.conditional": ("taskloom.tasks.control_flow", "merge switch ifelse"),
        "prefect.tasks.control_flow.case": ("taskloom.tasks.control_flow", "case"),
        "prefect.tasks.control_flow.filter": ("taskloom.tasks.control_flow", "FilterTask"),
        "prefect.tasks": ("taskloom.tasks", "control_flow secrets"),
        "prefect.tasks.secrets": ("taskloom.tasks.secrets", "PrefectSecret SecretBase=Secret"),
        "prefect.executors": ("taskloom.executors", executors),
        "prefect.engine.executors": ("taskloom.executors", executors),
        "prefect.engine.result": ("taskloom.results", "Result=ResultBase"),
        "prefect.engine.result.base": ("taskloom.results", "Result=ResultBase"),
        "prefect.engine.results": (
            "taskloom.results", "LocalResult PrefectResult S3Result GCSResult"
        ),
        "prefect.engine.serializers": ("taskloom.results", "PickleSerializer JSONSerializer"),
        "prefect.schedules": ("taskloom.schedules", "IntervalSchedule CronSchedule"),
        "prefect.utilities.logging": ("taskloom", "get_logger"),
        "prefect.utilities.edges": ("taskloom", "unmapped flatten"),
        "prefect.utilities.tasks": ("taskloom", "task apply_map defaults_from_attrs pause_task"),
        "prefect.utilities.notifications": ("taskloom.notifications", "slack_notifier"),
    }
    modules = {old: new for old, (new, _) in table.items()}
    names = {
        old: {
            before: f"{new}.{after or before}"
            for before, _, after in (name.partition("=") for name in spelled.split())
        }
        for old, (new, spelled) in table.items()
    }
    return modules, names


#: Prefect modules -> taskloom's; for each Prefect module, its names -> taskloom paths.
_MODULES, _NAMES = _spec()

#: Prefect modules whose every use is deployment-only: their imports go when nothing is
#: left that uses them.
DEPLOYMENT_MODULES = ("prefect.storage", "prefect.run_configs", "prefect.environments", "prefect.artifacts")
#: Keywords of ``Flow(...)`` that only a Prefect server or agent honours.
DEPLOYMENT_KEYWORDS = ("storage", "run_config", "environment")
#: Methods of a flow that only a Prefect server or agent honours (as statements).
DEPLOYMENT_METHODS = ("register", "run_agent", "deploy")
DASK_LEFT = ("cluster_class", "adapt_kwargs", "client_kwargs", "debug", "performance_report_path")
LOCAL_DASK = "prefect.executors.LocalDaskExecutor"


def canonical(path: str) -> str:
    """A Prefect path with the old ``prefect.engine.executors`` spelled as 1.x spells it."""
    return path.replace("prefect.engine.executors.", "prefect.executors.")


def translate(path: str) -> str | None:
    """The taskloom path of a Prefect dotted path, or None when taskloom has no equivalent.

    >>> translate("prefect.engine.state.Success"), translate("prefect.context.get")
    ('taskloom.states.Success', 'taskloom.context.get')
    >>> translate("prefect.config.flows") is None
    True
    """
    path = canonical(path)
    parts = path.split(".")
    # A name of a module first, the longest module first (`prefect.tasks.control_flow.case`
    # is the function `case`, though a module of that name exists too).
    for end in range(len(parts) - 1, 0, -1):
        target = _NAMES.get(".".join(parts[:end]), {}).get(parts[end])
        if target is not None:
            return ".".join([target, *parts[end + 1 :]])
    return _MODULES.get(path)


def is_module(path: str) -> bool:
    """Whether a Prefect path is a module that taskloom has (its name does not win)."""
    return path in _MODULES and translate(path) == _MODULES[path]


def is_deployment(path: str) -> bool:
    return any(path == m or path.startswith(m + ".") for m in DEPLOYMENT_MODULES)
