"""An interrupted run is recorded as such in the journal, with what finished."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from taskloom.journal import Journal

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from taskloom import Flow, task

    @task
    def quick() -> int:
        return 1

    @task
    def other() -> int:
        return 2

    @task
    def slow(x: int, y: int, flag: str) -> int:
        Path(flag).write_text("started")
        time.sleep(60)
        return x + y

    with Flow("interrupted") as flow:
        slow(quick(), other(), sys.argv[1])
    flow.run()
    """
)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_an_interrupted_run_is_recorded_with_what_finished(tmp_path: Path) -> None:
    home = tmp_path / "home"
    flag = tmp_path / "started"
    script = tmp_path / "flow.py"
    script.write_text(SCRIPT)
    child = subprocess.Popen(
        [sys.executable, str(script), str(flag)],
        env={**os.environ, "TASKLOOM_HOME": str(home)},
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while not flag.exists():  # wait until the slow task runs
            assert child.poll() is None and time.monotonic() < deadline, "flow never started"
            time.sleep(0.02)
        child.send_signal(signal.SIGINT)
        _, err = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "KeyboardInterrupt" in err
    os.environ["TASKLOOM_HOME"] = str(home)  # the autouse fixture restores it
    journal = Journal()
    [run] = journal.runs()
    assert run.state == "Failed"
    assert run.message is not None and "interrupted" in run.message
    tasks = {t.name: t.state for t in journal.load(run.run_id).tasks}
    assert tasks == {"quick": "Success", "other": "Success", "slow": "Pending"}
