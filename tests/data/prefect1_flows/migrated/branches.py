"""Branches, triggers and signals, as in Prefect 1.x's docs on control flow."""
import random

import taskloom
from taskloom import Flow, task
from taskloom import triggers
from taskloom import signals
from taskloom.states import Failed, Success
from taskloom.tasks.control_flow import case, merge
from taskloom.tasks.secrets import PrefectSecret


@task
def check_condition():
    return random.random() < 2  # always true, but the flow cannot know


@task
def action_if_true(token):
    # taskloom migrate: removed `prefect.artifacts.create_markdown(f"# used a token of {le...` (Prefect Cloud only)
    return "true branch"


@task
def action_if_false():
    raise signals.FAIL("this branch must not run")


@task(trigger=triggers.all_finished)
def report(value):
    logger = taskloom.context.get("logger")
    logger.info("chose %s", value)
    return value


def keep_failures(task, old_state, new_state):
    # A state handler, as Prefect documents them.
    if isinstance(new_state, Failed):
        return Success("recovered", result="recovered")
    return new_state


with Flow("branches", state_handlers=[keep_failures]) as flow:
    cond = check_condition()
    with case(cond, True):
        val1 = action_if_true(PrefectSecret("API_TOKEN"))
    with case(cond, False):
        val2 = action_if_false()
    val = merge(val1, val2)
    report(val)

# taskloom migrate: removed `flow.register("my-project")` (deployment-only: taskloom runs flows without a Prefect server or agent)
