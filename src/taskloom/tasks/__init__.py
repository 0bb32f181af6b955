"""Ready-made tasks, as in Prefect Core's ``prefect.tasks``.

``taskloom.tasks.control_flow``: ``case``, ``merge``, ``switch``, ``ifelse``, ``FilterTask``.
"""
