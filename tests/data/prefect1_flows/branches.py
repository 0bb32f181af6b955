"""Branches, triggers and signals, as in Prefect 1.x's docs on control flow."""
import random

import prefect
from prefect import Flow, task
from prefect import triggers
from prefect.engine import signals
from prefect.engine.state import Failed, Success
from prefect.tasks.control_flow import case, merge
from prefect.tasks.secrets import PrefectSecret


@task
def check_condition():
    return random.random() < 2  # always true, but the flow cannot know


@task
def action_if_true(token):
    prefect.artifacts.create_markdown(f"# used a token of {len(token)} characters")
    return "true branch"


@task
def action_if_false():
    raise signals.FAIL("this branch must not run")


@task(trigger=triggers.all_finished)
def report(value):
    logger = prefect.context.get("logger")
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

flow.register("my-project")
