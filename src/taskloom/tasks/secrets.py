"""Secret tasks: a task whose result is a secret, as Prefect Core 1.x's ``PrefectSecret``.

::

    from taskloom import Flow, task
    from taskloom.tasks.secrets import PrefectSecret

    @task
    def call_api(token: str) -> int: ...

    with Flow("api") as flow:
        token = PrefectSecret("API_TOKEN")   # a task: passed on as its result
        call_api(token)

    flow.run(context={"secrets": {"API_TOKEN": "..."}})   # or TASKLOOM_SECRETS_API_TOKEN=...

The secret is read from ``taskloom.context.secrets``, else the environment
(``TASKLOOM_SECRETS_<NAME>``, then Prefect's ``PREFECT__CONTEXT__SECRETS__<NAME>``);
a missing one fails the task with a message naming it. At the start of a run the
scheduler reads each ``Secret`` task's value from the environment of the calling process
into the run's ``context.secrets``, so workers need not share that environment, and so
the value is known as a secret everywhere from the start: it is masked in log records,
state reprs and messages, never kept by the output cache, and kept by the journal only as
a reference that a resume reads again (``taskloom._secrets`` tells how). A ``Secret`` is
never cached (``cache_for`` is refused).
"""

from __future__ import annotations

from typing import Any

from .._secrets import read_secret
from ..errors import TaskDefinitionError
from ..task import Task

__all__ = ["PrefectSecret", "Secret"]


class Secret(Task[[], Any]):
    """A task whose result is the secret ``name`` (see the module docstring).

    Args:
        name: the secret's name; also the task's name unless ``name=`` is given in
            ``task_kwargs`` (as ``task_name``).
        task_name: the task's name, when it should differ from the secret's.
        **task_kwargs: the other keywords of ``Task`` (``cache_for`` is refused).

    >>> import taskloom
    >>> with taskloom.context(secrets={"TOKEN": "s3cr3t"}):
    ...     Secret("TOKEN").run()
    's3cr3t'
    """

    def __init__(self, name: str, *, task_name: str | None = None, **task_kwargs: Any) -> None:
        checked: object = name
        if not isinstance(checked, str) or not checked:
            raise TaskDefinitionError(f"{type(self).__name__} needs the secret's name, not {name!r}")
        if task_kwargs.get("cache_for") is not None:
            raise TaskDefinitionError(
                f"{type(self).__name__}({name!r}): a secret is never cached; drop cache_for"
            )
        super().__init__(task_name if task_name is not None else name, **task_kwargs)
        self.secret_name = name

    def run(self) -> Any:
        """Read the secret (``MissingSecretError`` naming it when it is nowhere)."""
        return read_secret(self.secret_name)


class PrefectSecret(Secret):
    """Prefect Core 1.x's name for ``Secret``: ``PrefectSecret("NAME")``."""
