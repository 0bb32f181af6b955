# A flow file that leans on Prefect Cloud and a Dask cluster.
from datetime import timedelta

import prefect
from prefect import Client, Flow, task, unmapped
from prefect.engine import state
from prefect.engine.results import LocalResult
from prefect.executors import DaskExecutor, LocalDaskExecutor
from prefect.run_configs import KubernetesRun
from prefect.schedules import IntervalSchedule
from prefect.storage import Docker
from prefect.tasks.shell import ShellTask
from prefect.utilities.logging import get_logger

shell = ShellTask()


@task(result=LocalResult(dir="/tmp/results"))
def add(x, y):
    return x + y


schedule = IntervalSchedule(interval=timedelta(minutes=10))

with Flow("cloud", schedule=schedule) as flow:
    total = add.map([1, 2, 3], unmapped(10))

flow.storage = Docker(registry_url="registry.example.com")
flow.run_config = KubernetesRun(labels=["k8s"])
flow.executor = DaskExecutor(
    address="tcp://127.0.0.1:8786",
    cluster_kwargs={"n_workers": 2, "threads_per_worker": 1},
)
local = LocalDaskExecutor()
log = get_logger("cloud")
if prefect.config.backend == "cloud":
    Client().create_project("cloud")
print(state.Success)
