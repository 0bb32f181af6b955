# An ETL flow in the style of Prefect 1.x's "Getting started" docs.
from datetime import timedelta

import prefect
from prefect import Flow, Parameter, task
from prefect.engine.signals import SKIP
from prefect.executors import LocalDaskExecutor
from prefect.run_configs import LocalRun
from prefect.storage import GitHub


@task(max_retries=3, retry_delay=timedelta(seconds=1))
def extract(n):
    """Get the data."""
    logger = prefect.context.get("logger")
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


with Flow(
    "etl",
    storage=GitHub(repo="org/flows", path="flows/etl.py"),
    run_config=LocalRun(),
) as flow:
    n = Parameter("n", default=3)
    # Wire the three steps.
    data = extract(n)
    result = load(transform(data))

flow.executor = LocalDaskExecutor(scheduler="processes", num_workers=2)

if __name__ == "__main__":
    flow.register(project_name="examples")
