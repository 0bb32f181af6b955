"""Imported by every Python process the tests start (``tests/conftest.py`` puts this folder
first on ``PYTHONPATH``): a process still alive after ``TASKLOOM_TEST_STACKS_AFTER``
seconds (90) writes its threads' stacks to a file of its own in ``TASKLOOM_TEST_STACKS``,
so a test whose subprocess hangs (until the test's timeout kills it, with no trace of
where it was) reports where it was (``conftest.pytest_runtest_makereport``)."""

import faulthandler
import os
import sys

_folder = os.environ.get("TASKLOOM_TEST_STACKS")
if _folder:
    try:
        _stacks = open(os.path.join(_folder, f"{os.getpid()}.txt"), "w")  # noqa: SIM115 (for life)
        _stacks.write(f"pid {os.getpid()}: {' '.join(sys.argv)}\n")
        _stacks.flush()
        faulthandler.dump_traceback_later(
            float(os.environ.get("TASKLOOM_TEST_STACKS_AFTER", "90")), file=_stacks
        )
    except OSError:
        pass
