"""Reading a flow run's task runs back from the Prefect API."""

import time

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId


def task_runs(flow_run_id) -> list:
    """The flow run's task runs once every one is final (states reach the API asynchronously)."""
    with get_client(sync_client=True) as client:
        for _ in range(50):
            runs = client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            )
            if runs and all(run.state and run.state.is_final() for run in runs):
                return runs
            time.sleep(0.2)
    return runs
