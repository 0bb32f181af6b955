# A flow file that leans on Prefect Cloud and a Dask cluster.
from datetime import timedelta

import taskloom, prefect
from taskloom import Flow, task, unmapped
from prefect import Client
from taskloom import states as state
from taskloom.results import LocalResult
from taskloom.executors import DaskExecutor, ThreadExecutor
# taskloom migrate: removed `from prefect.run_configs import KubernetesRun` (deployment-only, and nothing uses it now)
from taskloom.schedules import IntervalSchedule
# taskloom migrate: removed `from prefect.storage import Docker` (deployment-only, and nothing uses it now)
from prefect.tasks.shell import ShellTask
from taskloom import get_logger

shell = ShellTask()


@task(result=LocalResult(dir="/tmp/results"))
def add(x, y):
    return x + y


schedule = IntervalSchedule(interval=timedelta(minutes=10))

with Flow("cloud", schedule=schedule) as flow:
    total = add.map([1, 2, 3], unmapped(10))

# taskloom migrate: removed `flow.storage = Docker(registry_url="registry.example.com")` (deployment-only: taskloom runs flows without a Prefect server or agent)
# taskloom migrate: removed `flow.run_config = KubernetesRun(labels=["k8s"])` (deployment-only: taskloom runs flows without a Prefect server or agent)
flow.executor = DaskExecutor(
    address="tcp://127.0.0.1:8786",
    n_workers=2, threads_per_worker=1,
)
local = ThreadExecutor()
log = get_logger("cloud")
if prefect.config.backend == "cloud":
    Client().create_project("cloud")
print(state.Success)
