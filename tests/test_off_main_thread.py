"""flow.run called off the main thread: timeouts are soft there, and tasks still see the context."""

from __future__ import annotations

import threading

import taskloom
from taskloom import Flow, task
from taskloom.executors import LocalExecutor
from taskloom.flow import FlowResult
from taskloom.states import State, Success


@task(timeout=5)
def reads_context() -> str:
    return f"{taskloom.context.flow_name}:{taskloom.context.get('key')}"


def test_a_timed_task_off_the_main_thread_sees_the_run_context() -> None:
    with Flow("threaded") as flow:
        handle = reads_context()
    states: list[State[FlowResult]] = []

    def run() -> None:
        states.append(flow.run(executor=LocalExecutor(), context={"key": "abc"}, journal=False))

    runner = threading.Thread(target=run)
    runner.start()
    runner.join(30)
    [state] = states
    task_state = state.result[handle]
    assert isinstance(task_state, Success), task_state
    assert task_state.result == "threaded:abc"
