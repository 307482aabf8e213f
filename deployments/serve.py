"""Serve the factory's deployments: runs them on this host when the UI, the API or a schedule asks.

    prefect server start --host 127.0.0.1 --port 4200    # in another terminal
    PREFECT_API_URL=http://127.0.0.1:4200/api python deployments/serve.py

Three deployments: ``produce/produce-local`` (the order as a typed form), the nightly
``floor-report/floor-report-local`` (cron, 02:00 UTC) and ``cache-gc/cache-gc-local``
(every 6 hours). Schedules added in the UI survive a restart of this script, and the
code-defined ones (deployments/schedules.py) are added only when missing.
"""

import os
from pathlib import Path

# Run as a script, so the modules beside it import by their module name.
from entrypoints import cache_gc, floor_report, produce
from prefect import serve
from prefect.client.orchestration import get_client
from prefect.deployments.runner import RunnerDeployment
from schedules import keep_schedules, settle_schedules

from flows.crashed_runs import mark_dead_runs_crashed

TAGS = ["asset-factory"]


ENTRYPOINTS = Path(__file__).with_name("entrypoints.py")


def _from_entrypoints(deployment: RunnerDeployment) -> RunnerDeployment:
    """Run ``deployment`` from entrypoints.py, as workers do, not from the flow's own module.

    A served run loads its flow through the deployment's entrypoint (relative to the
    directory serve.py runs in); flows/produce.py's ``produce`` would lack the task pool and
    the result storage that entrypoints.py gives it.
    """
    attribute = deployment.entrypoint.rpartition(":")[2]
    deployment.entrypoint = f"{os.path.relpath(ENTRYPOINTS, Path.cwd())}:{attribute}"
    return deployment


def deployments() -> list[RunnerDeployment]:
    """The served deployments, set to leave the server's schedules as they are."""
    return [
        keep_schedules(_from_entrypoints(deployment))
        for deployment in (
            produce.to_deployment(
                name="produce-local",
                tags=TAGS,
                description="Turn an order into a signed H.264 deliverable",
            ),
            floor_report.to_deployment(
                name="floor-report-local",
                tags=TAGS,
                description="Nightly: refresh the floor warehouse and publish its summary",
            ),
            cache_gc.to_deployment(
                name="cache-gc-local",
                tags=TAGS,
                description="Drop old segment-cache entries (never delivered lineage)",
            ),
        )
    ]


if __name__ == "__main__":
    # Runs of this host killed without a word (SIGKILL, OOM) would stay RUNNING forever.
    for run_id in mark_dead_runs_crashed():
        print(f"marked flow run {run_id} Crashed: its process is gone")
    served = deployments()
    # Registered before serving, so the code schedules can be added to them first.
    for deployment in served:
        deployment.apply()
    with get_client(sync_client=True) as client:
        for line in settle_schedules(client):
            print(line)
    serve(*served, limit=1)
