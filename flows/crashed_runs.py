"""Runs whose process died: marked Crashed when the factory next starts, so the UI tells the truth.

A run killed with SIGKILL (or by the OOM killer, or a power cut) cannot report its own
end, and with no worker watching heartbeats it stays RUNNING in Prefect forever. Every
production therefore records the process that runs it in the flow run's
``infrastructure_pid`` (``host:pid``, as Prefect's process workers write it), and every
entry point, before it starts a run, marks the runs of this host whose process is gone.
"""

import os
import socket
from datetime import UTC, datetime

from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    FlowRunFilter,
    FlowRunFilterState,
    FlowRunFilterStateType,
)
from prefect.client.schemas.objects import StateType
from prefect.states import Crashed

from storage.cache import process_alive

_HOST = socket.gethostname()
_OPEN = [StateType.RUNNING, StateType.PENDING, StateType.CANCELLING]


def this_process() -> str:
    return f"{_HOST}:{os.getpid()}"


def claim_run(flow_run_id: str) -> None:
    """Record this process as the one running ``flow_run_id`` (a worker's own claim stays)."""
    with get_client(sync_client=True) as client:
        if client.read_flow_run(flow_run_id).infrastructure_pid:
            return
        client.update_flow_run(flow_run_id, infrastructure_pid=this_process())


def mark_dead_runs_crashed() -> list[str]:
    """Set Crashed on every open run of this host whose process no longer exists; their ids."""
    marked = []
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                state=FlowRunFilterState(type=FlowRunFilterStateType(any_=_OPEN))
            )
        )
        for run in runs:
            host, _, pid = (run.infrastructure_pid or "").rpartition(":")
            if host != _HOST or not pid.isdigit() or process_alive(int(pid)):
                continue
            client.set_flow_run_state(
                run.id,
                Crashed(
                    message=f"The process that ran it ({run.infrastructure_pid}) ended without "
                    f"reporting; found at {datetime.now(UTC):%Y-%m-%d %H:%M:%S} UTC. Rerun the "
                    "order: stages it finished are reused from the cache."
                ),
                force=True,
            )
            marked.append(str(run.id))
    return marked
