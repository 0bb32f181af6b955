# An ETL flow in the style of Prefect 1.x's "Getting started" docs.
from datetime import timedelta

import taskloom
from taskloom import Flow, Parameter, task
from taskloom.signals import SKIP
from taskloom.executors import LokyExecutor
# taskloom migrate: removed `from prefect.run_configs import LocalRun` (deployment-only, and nothing uses it now)
# taskloom migrate: removed `from prefect.storage import GitHub` (deployment-only, and nothing uses it now)


@task(max_retries=3, retry_delay=timedelta(seconds=1))
def extract(n):
    """Get the data."""
    logger = taskloom.context.get("logger")
    logger.info("extracting %s rows", n)  # the logger Prefect puts in the context
    return list(range(n))


@task
def transform(data):
    if not data:
        raise SKIP("no data")
    return [x * 10 for x in data]


@task(log_stdout=True)
def load(data):
    print(f"loaded {sum(data)}")
    return sum(data)


# taskloom migrate: removed `storage=GitHub(repo="org/flows", path="flows/etl.py")` from Flow(...) (deployment-only: taskloom runs flows without a Prefect server or agent)
# taskloom migrate: removed `run_config=LocalRun()` from Flow(...) (deployment-only: taskloom runs flows without a Prefect server or agent)
with Flow(
    "etl",
) as flow:
    n = Parameter("n", default=3)
    # Wire the three steps.
    data = extract(n)
    result = load(transform(data))

flow.executor = LokyExecutor(max_workers=2)

if __name__ == "__main__":
    pass  # taskloom migrate: removed `flow.register(project_name="examples")` (deployment-only: taskloom runs flows without a Prefect server or agent)
