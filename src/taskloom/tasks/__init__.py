"""Ready-made tasks, as in Prefect Core's ``prefect.tasks``.

- ``taskloom.tasks.core``: the small tasks that operators on a handle build (``GetItem``,
  ``Add``, ``LessThan``, ...).
- ``taskloom.tasks.control_flow``: ``case``, ``merge``, ``switch``, ``ifelse``, ``FilterTask``.
- ``taskloom.tasks.secrets``: ``Secret``, ``PrefectSecret``.
"""
