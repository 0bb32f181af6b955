"""Ready-made tasks: ``taskloom.tasks.core`` holds the small tasks that operators on a handle
build (``GetItem``, ``Add``, ...)."""
